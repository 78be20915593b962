package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/testwait"
)

// binary is the longpoll executable built once for the end-to-end tests
// (with -race), in buildDir.
var binary, buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "longpoll-e2e")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	binary = filepath.Join(dir, "longpoll")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building longpoll: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running longpoll binary.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	done chan error
	logs *syncBuffer
	// freshc, when set, replaces freshClient for this server (TLS).
	freshc *http.Client
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// listenLine matches the start line in the text and the JSON log formats.
var listenLine = regexp.MustCompile(`(?:msg="longpoll listening" addr=|"msg":"longpoll listening","addr":")(127\.0\.0\.1:\d+)`)

// start runs the binary on a free loopback port and waits (bounded) until
// it logs its address.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	return startCmd(t, []string{binary}, args...)
}

// startCmd is start with the command line argv followed by the server's
// flags: a binary, or a wrapper that sets something up and execs one
// ("prlimit --nofile=512:512 BINARY"), so that the process started is the
// server (s.cmd.Process.Pid is its PID).
func startCmd(t *testing.T, argv []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(argv[0], append(append(argv[1:len(argv):len(argv)], "--addr", "127.0.0.1:0"), args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, done: make(chan error, 1), logs: &syncBuffer{}}
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.logs.String())
		}
	})
	select {
	case a := <-addr:
		s.base = "http://" + a
	case err := <-s.done: // exited before listening: a bad flag, say
		t.Fatalf("server exited at start (%v):\n%s", err, s.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("server did not start:\n%s", s.logs.String())
	}
	return s
}

// stop sends SIGTERM and returns how long exiting took and the exit error.
func (s *server) stop() (time.Duration, error) {
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return time.Since(start), err
	case <-time.After(15 * time.Second):
		s.t.Fatal("server did not exit within 15 s of SIGTERM")
		return 0, nil
	}
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

var client = &http.Client{Timeout: 30 * time.Second}

func (s *server) do(method, path, ctype, body string) response {
	s.t.Helper()
	return s.doAuth(method, path, ctype, body, "")
}

func (s *server) connect(payload string) map[string]any {
	s.t.Helper()
	r := s.do("POST", "/connect", "application/json", payload)
	if r.status != http.StatusCreated {
		s.t.Fatalf("connect %s: %d %s", payload, r.status, r.body)
	}
	var out map[string]any
	r.json(s.t, &out)
	return out
}

func (s *server) push(payload string) response {
	s.t.Helper()
	return s.do("POST", "/push", "application/json", payload)
}

type pollBody struct {
	Cursor   uint64 `json:"cursor"`
	Messages []struct {
		Seq   uint64          `json:"seq"`
		ID    string          `json:"id"`
		Topic string          `json:"topic"`
		From  string          `json:"from"`
		Data  json.RawMessage `json:"data"`
	} `json:"messages"`
}

func (s *server) poll(sid, query string) (int, pollBody) {
	s.t.Helper()
	r := s.do("GET", "/data?sessionId="+sid+query, "", "")
	var b pollBody
	if r.status == http.StatusOK {
		r.json(s.t, &b)
	}
	return r.status, b
}

func TestEndToEndWalkThrough(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0")

	if r := s.do("GET", "/healthz", "", ""); r.status != 200 || !strings.Contains(string(r.body), `"ok"`) {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/", "", ""); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("console page: %d", r.status)
	}

	// connect
	sess := s.connect(`{"deviceId":"lamp-42","userId":"alice","topics":["home/kitchen"]}`)
	sid := sess["sessionId"].(string)
	if len(sid) < 22 || sess["cursor"].(float64) != 0 || sess["pollTimeout"].(float64) != 30 {
		t.Fatalf("connect body %v", sess)
	}

	// poll with nothing pending: 204 after the hold
	if st, _ := s.poll(sid, "&timeout=0"); st != http.StatusNoContent {
		t.Fatalf("empty poll: %d", st)
	}

	// a parked poll is answered by a push
	got := make(chan pollBody, 1)
	go func() {
		_, b := s.poll(sid, "&timeout=20")
		got <- b
	}()
	waitFor(t, "poll parked", func() bool { return s.parked() > 0 })
	if r := s.push(`{"to":{"userId":"alice"},"topic":"alerts","data":{"text":"door open"}}`); r.status != 202 {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	var b pollBody
	select {
	case b = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("parked poll not answered")
	}
	if len(b.Messages) != 1 || b.Cursor != 1 || b.Messages[0].Topic != "alerts" || string(b.Messages[0].Data) != `{"text":"door open"}` {
		t.Fatalf("delivery %+v", b)
	}

	// unacknowledged: delivered again; acknowledged with cursor: gone
	if _, b := s.poll(sid, "&timeout=0"); len(b.Messages) != 1 {
		t.Fatalf("unacknowledged message not redelivered: %+v", b)
	}
	if st, _ := s.poll(sid, "&cursor=1&timeout=0"); st != http.StatusNoContent {
		t.Fatalf("after ack: %d", st)
	}
	if st, _ := s.poll(sid, "&cursor=5&timeout=0"); st != http.StatusBadRequest {
		t.Fatalf("cursor beyond newest: %d", st)
	}

	// offline: a message for a device that has not connected waits
	r := s.push(`{"to":{"deviceId":"gw-7"},"data":"for later"}`)
	var res map[string]any
	r.json(t, &res)
	if r.status != 202 || res["stored"].(float64) != 1 || res["delivered"].(float64) != 0 {
		t.Fatalf("offline push: %d %s", r.status, r.body)
	}
	gw := s.connect(`{"deviceId":"gw-7"}`)
	if _, b := s.poll(gw["sessionId"].(string), "&timeout=0"); len(b.Messages) != 1 || string(b.Messages[0].Data) != `"for later"` {
		t.Fatalf("offline message on connect: %+v", b)
	}

	// reconnect of the same device: the old session's unacknowledged
	// message moves to the new session; a parked poll of a replaced session
	// is answered 410
	s.push(`{"to":{"deviceId":"lamp-42"},"data":"unacked"}`)
	if _, b := s.poll(sid, "&cursor=1&timeout=0"); len(b.Messages) != 1 || b.Messages[0].Seq != 2 {
		t.Fatalf("before reconnect: %+v", b)
	}
	sess2 := s.connect(`{"deviceId":"lamp-42","userId":"alice"}`)
	sid2 := sess2["sessionId"].(string)
	if _, b := s.poll(sid2, "&timeout=0"); len(b.Messages) != 1 || string(b.Messages[0].Data) != `"unacked"` || b.Messages[0].Seq != 1 {
		t.Fatalf("moved messages: %+v", b)
	}
	if st, _ := s.poll(sid, "&timeout=0"); st != http.StatusNotFound {
		t.Fatalf("old session after replace: %d", st)
	}
	status := make(chan int, 1)
	go func() {
		st, _ := s.poll(sid2, "&cursor=1&timeout=20")
		status <- st
	}()
	waitFor(t, "poll parked", func() bool { return s.parked() > 0 })
	sess3 := s.connect(`{"deviceId":"lamp-42","userId":"alice"}`)
	if st := <-status; st != http.StatusGone {
		t.Fatalf("replaced session's parked poll: %d, want 410", st)
	}

	// shutdown: a parked poll is answered 204 at once, exit 0
	sid3 := sess3["sessionId"].(string)
	go func() {
		st, _ := s.poll(sid3, "&timeout=60")
		status <- st
	}()
	waitFor(t, "poll parked", func() bool { return s.parked() > 0 })
	took, err := s.stop()
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	if st := <-status; st != http.StatusNoContent {
		t.Fatalf("parked poll at shutdown: %d, want 204", st)
	}
	if took > 5*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	// Session IDs are credentials: logs at info and above show them shortened only.
	for _, id := range []string{sid, sid2, sid3} {
		if strings.Contains(s.logs.String(), id) {
			t.Fatalf("a full session id appears in the server log")
		}
	}
	if !strings.Contains(s.logs.String(), sid[:8]+"…") {
		t.Fatalf("the log does not name sessions by their short id:\n%s", s.logs.String())
	}
}

// parked returns the server's count of parked polls (0 when /stats fails),
// so tests need no sleeps to know a poll is parked.
func (s *server) parked() int {
	r := s.do("GET", "/stats", "", "")
	var st struct{ Parked int }
	if r.status == 200 {
		_ = json.Unmarshal(r.body, &st)
	}
	return st.Parked
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, 15*time.Second, cond)
}

func TestEndToEndConcurrentPollersOverHTTP(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0")
	const sessions, each = 50, 20
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = s.connect(fmt.Sprintf(`{"deviceId":"d%d"}`, i))["sessionId"].(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			for n := range each {
				if r := s.push(fmt.Sprintf(`{"to":{"sessionId":%q},"data":%d}`, ids[i], n)); r.status != 202 {
					t.Errorf("push: %d %s", r.status, r.body)
					return
				}
			}
		})
		wg.Go(func() {
			var cursor uint64
			for next := 0; next < each && ctx.Err() == nil; {
				st, b := s.poll(ids[i], fmt.Sprintf("&cursor=%d&timeout=5", cursor))
				if st == http.StatusNoContent {
					continue
				}
				if st != 200 {
					t.Errorf("poll: %d", st)
					return
				}
				for _, m := range b.Messages {
					if string(m.Data) != fmt.Sprint(next) {
						t.Errorf("session %d: got %s, want %d", i, m.Data, next)
						return
					}
					next++
				}
				cursor = b.Cursor
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("timed out")
	}
	if _, err := s.stop(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func TestEndToEndBadConfigurationFailsAtStart(t *testing.T) {
	for _, args := range [][]string{
		{"--poll-timeout", "soon"},
		{"--max-mailbox", "0"},
		{"--poll-timeout", "3m", "--max-poll-timeout", "2m"},
		{"--log-format", "xml"},
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "longpoll") {
			t.Errorf("%v: exit %v, output %s", args, err, out)
		}
	}
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "LONGPOLL_SESSION_TTL=-1s")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "session-ttl") {
		t.Errorf("bad env value: %v %s", err, out)
	}
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--max-poll-timeout") && !strings.Contains(string(out), "-max-poll-timeout") {
		t.Errorf("--help: %v %s", err, out)
	}
}

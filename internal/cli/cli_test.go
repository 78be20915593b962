package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/cli"
	"github.com/longpoll/longpoll/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

func noEnv(string) string { return "" }

// run runs the CLI in process.
func run(t *testing.T, stdin string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = cli.Run(ctx, args, strings.NewReader(stdin), &out, &errOut, getenv)
	return code, out.String(), errOut.String()
}

func TestBadUsageExits2WithUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nonsense"},
		{"push"},
		{"push", "1", "2"},
		{"push", "--user", "u", "--device", "d", "1"},
		{"push", "not json"},
		{"push", "--batch", "--id", "x", "[]"},
		{"push", "--batch", `[1]`},
		{"push", "--batch", `{"to":{"userId":"u"},"data":1,"colour":"red"}`},
		{"push", "--ttl", "-1s", "1"},
		{"push", "--no-such-flag", "1"},
		{"push", "--url", "ftp://x", "1"},
		{"sub"},
		{"sub", "--device", "d", "extra"},
		{"presence"},
		{"presence", "--user", "u", "--device", "d"},
		{"stats", "extra"},
	} {
		code, out, errOut := run(t, "", nil, args...)
		if code != cli.ExitUsage || out != "" || !strings.Contains(errOut, "Usage") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing, the usage", args, code, out, errOut)
		}
	}
	if code, _, errOut := run(t, "", nil, "push", "--help"); code != cli.ExitOK || !strings.Contains(errOut, "--ttl") && !strings.Contains(errOut, "-ttl") {
		t.Errorf("--help: %d %s", code, errOut)
	}
}

// TestHelp: `longpoll help` prints the usage on standard output and exits
// 0; `help CMD` is `CMD --help`; sub, which publishes nothing, has no --key.
func TestHelp(t *testing.T) {
	code, out, errOut := run(t, "", nil, "help")
	if code != cli.ExitOK || errOut != "" || !strings.Contains(out, "Usage") {
		t.Fatalf("help: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, cmd := range []string{"sub", "push", "presence", "stats", "help", "--version"} {
		if !strings.Contains(out, "longpoll "+cmd) {
			t.Errorf("help does not mention longpoll %s:\n%s", cmd, out)
		}
	}
	if code, _, errOut := run(t, "", nil, "help", "push"); code != cli.ExitOK || !strings.Contains(errOut, "-batch") {
		t.Errorf("help push: exit %d, %q", code, errOut)
	}
	code, _, errOut = run(t, "", nil, "sub", "--help")
	if code != cli.ExitOK || !strings.Contains(errOut, "-device") || strings.Contains(errOut, "-key") {
		t.Errorf("sub --help: exit %d, %q; want its flags without -key", code, errOut)
	}
	if code, _, errOut := run(t, "", nil, "sub", "--device", "d", "--key", "k"); code != cli.ExitUsage || !strings.Contains(errOut, "-key") {
		t.Errorf("sub --key: exit %d, %q; want 2 (no such flag)", code, errOut)
	}
	for _, cmd := range []string{"push", "presence", "stats"} {
		if _, _, errOut := run(t, "", nil, cmd, "--help"); !strings.Contains(errOut, "-key") {
			t.Errorf("%s --help has no -key: %q", cmd, errOut)
		}
	}
}

func TestHandles(t *testing.T) {
	for arg, want := range map[string]bool{"sub": true, "push": true, "presence": true, "stats": true, "help": true, "--version": true, "-version": true, "--addr": false, "serve": false, "": false} {
		if cli.Handles(arg) != want {
			t.Errorf("Handles(%q) = %v", arg, !want)
		}
	}
}

func TestServerErrorsExit1WithTheAPIMessage(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0", "--publish-key", "pk-0123456789abcdef", "--max-mailbox", "1")
	env := map[string]string{"LONGPOLL_URL": s.URL}
	code, out, errOut := run(t, "", env, "push", "--user", "u", `{"a":1}`)
	if code != cli.ExitError || out != "" || !strings.Contains(errOut, "longpoll push: 401 unauthorized: a valid Authorization") {
		t.Fatalf("without a key: exit %d, %q %q", code, out, errOut)
	}
	env["LONGPOLL_PUBLISH_KEY"] = "pk-0123456789abcdef"
	code, out, errOut = run(t, "", env, "push", "--session", "nope", "1")
	if code != cli.ExitError || !strings.Contains(errOut, "404 session_not_found") {
		t.Fatalf("unknown session: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = run(t, "", env, "push", "--device", "full", "--ttl", "1h", "--id", "k1", `"x"`)
	var res struct {
		ID     string
		Stored int
	}
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.Stored != 1 {
		t.Fatalf("push: exit %d, %q", code, out)
	}
	// a batch with a refused item prints every result and exits 1
	code, out, errOut = run(t, `{"data":2}`+"\n"+`{"to":{"deviceId":"other"},"data":3}`+"\n", env, "push", "--batch", "--device", "full", "-")
	var batch []map[string]any
	if code != cli.ExitError || json.Unmarshal([]byte(out), &batch) != nil || len(batch) != 2 || batch[0]["error"] == nil || batch[1]["stored"] != 1.0 || !strings.Contains(errOut, "item 0: mailbox_full") {
		t.Fatalf("batch: exit %d, %q %q", code, out, errOut)
	}
	// a key is needed for stats and presence too
	if code, out, _ := run(t, "", env, "stats"); code != cli.ExitOK || !strings.Contains(out, `"sessions":0`) {
		t.Fatalf("stats: %d %q", code, out)
	}
	if code, out, _ := run(t, "", env, "presence", "--user", "nobody"); code != cli.ExitOK || strings.TrimSpace(out) != `{"sessions":[]}` {
		t.Fatalf("presence: %d %q", code, out)
	}
	if code, _, errOut := run(t, "", map[string]string{"LONGPOLL_URL": s.URL}, "stats"); code != cli.ExitError || !strings.Contains(errOut, "401 unauthorized") {
		t.Fatalf("stats without key: %d %q", code, errOut)
	}
	// nothing listening: exit 1 naming the failure
	if code, _, errOut := run(t, "", nil, "stats", "--url", "http://127.0.0.1:1"); code != cli.ExitError || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("no server: %d %q", code, errOut)
	}
}

// TestBatchDefaultsFillOnlyAbsentKeys: the target, --label and --ttl of
// push --batch go into the items that leave those keys out; an item's own
// "to": null is sent as it is, and the server's refusal exits 1 with its
// message (not a broadcast, not a push to --user).
func TestBatchDefaultsFillOnlyAbsentKeys(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0")
	env := map[string]string{"LONGPOLL_URL": s.URL}
	for _, args := range [][]string{
		{"push", "--batch", `[{"to":null,"data":1}]`},
		{"push", "--batch", "--user", "nulled", "--label", "l", "--ttl", "1h", `[{"to":null,"data":1}]`},
		{"push", "--batch", "--user", "nulled", `{"data":0}` + "\n" + `{"to":null}`},
	} {
		code, out, errOut := run(t, "", env, args...)
		if code != cli.ExitError || out != "" || !strings.Contains(errOut, "longpoll push: 400 invalid_payload: item ") || !strings.Contains(errOut, "to must be an object") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 1 and the server's refusal", args, code, out, errOut)
		}
	}
	if _, out, _ := run(t, "", env, "stats"); !strings.Contains(out, `"offlineMessages":0`) {
		t.Fatalf("a refused batch stored something: %s", out)
	}

	// absent "to" and "topic": filled in; present ones ({} is a broadcast,
	// null a topic left to the server's default) stay
	items := `[{"data":1},{"to":{},"data":2},{"data":3,"topic":null,"to":{"deviceId":"filled-dev"}},{"topic":"own","data":4}]`
	code, out, errOut := run(t, "", env, "push", "--batch", "--user", "filled", "--label", "lbl", "--ttl", "1h", items)
	var res []map[string]any
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &res) != nil || len(res) != 4 {
		t.Fatalf("batch: exit %d, %q %q", code, out, errOut)
	}
	for i, want := range []float64{1, 0, 1, 1} {
		if res[i]["stored"] != want {
			t.Errorf("item %d: %v, want stored %v", i, res[i], want)
		}
	}
	sess, err := http.Post(s.URL+"/connect", "application/json", strings.NewReader(`{"deviceId":"filled-dev","userId":"filled"}`))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ SessionID string }
	json.NewDecoder(sess.Body).Decode(&c)
	sess.Body.Close()
	poll, err := http.Get(s.URL + "/data?timeout=0&sessionId=" + c.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Messages []struct {
			Topic string
			Data  json.RawMessage
		}
	}
	json.NewDecoder(poll.Body).Decode(&got)
	poll.Body.Close()
	topics := map[string]string{}
	for _, m := range got.Messages {
		topics[string(m.Data)] = m.Topic
	}
	if want := map[string]string{"1": "lbl", "3": "", "4": "own"}; !maps.Equal(topics, want) {
		t.Fatalf("stored messages by data -> topic: %v, want %v", topics, want)
	}
}

// lines collects a process's output lines.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		l.mu.Unlock()
	}
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

func (l *lines) contains(s string) bool {
	for _, line := range l.get() {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// startSub runs `longpoll sub` as its own process.
func startSub(t *testing.T, url string, args ...string) (*exec.Cmd, *lines, *lines, chan error) {
	t.Helper()
	cmd := exec.Command(testserver.Binary(t), append([]string{"sub", "--url", url}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out, errOut := &lines{}, &lines{}
	var wg sync.WaitGroup
	wg.Go(func() { out.collect(stdout) })
	wg.Go(func() { errOut.collect(stderr) })
	done := make(chan error, 1)
	go func() {
		wg.Wait()
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("sub stderr:\n%s", strings.Join(errOut.get(), "\n"))
		}
	})
	testserver.WaitFor(t, "sub to connect", 30*time.Second, func() bool { return errOut.contains("connected as device") })
	return cmd, out, errOut, done
}

func waitExit(t *testing.T, done chan error) int {
	t.Helper()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatal("sub did not exit")
		return -1
	}
}

// TestSubReceivesWhatPushSends runs the built binary twice: `sub` in one
// process prints what `push` sends from another, one JSON line each, and
// exits 0 on SIGINT after disconnecting.
func TestSubReceivesWhatPushSends(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0")
	bin := testserver.Binary(t)
	sub, out, _, done := startSub(t, s.URL, "--device", "cli-lamp", "--user", "cli-alice", "--topic", "home/kitchen", "--topic", "news")

	push := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"push"}, args...)...)
		cmd.Env = append(os.Environ(), "LONGPOLL_URL="+s.URL)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("push %q: %v %s", args, err, stderr.String())
		}
		return stdout.String()
	}
	if got := push("", "--device", "cli-lamp", "--label", "cmd", `{"light":"on"}`); !strings.Contains(got, `"delivered":1`) {
		t.Fatalf("push answered %q", got)
	}
	push(`"from stdin"`, "--topic", "news", "-")
	push(`[{"data":1},{"to":{"topic":"home/kitchen"},"data":2}]`, "--batch", "--user", "cli-alice", "-")
	testserver.WaitFor(t, "4 lines from sub", 30*time.Second, func() bool { return len(out.get()) >= 4 })

	var msgs []struct {
		Seq   int             `json:"seq"`
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	for _, line := range out.get() {
		var m struct {
			Seq   int             `json:"seq"`
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	want := []string{`1 cmd {"light":"on"}`, `2 news "from stdin"`, `3  1`, `4 home/kitchen 2`}
	for i, m := range msgs {
		if got := strings.Join([]string{strconv.Itoa(m.Seq), m.Topic, string(m.Data)}, " "); i >= len(want) || got != want[i] {
			t.Fatalf("line %d: %q, want %q (all: %q)", i, got, want[min(i, len(want)-1)], out.get())
		}
	}
	_ = sub.Process.Signal(syscall.SIGINT)
	if code := waitExit(t, done); code != 0 {
		t.Fatalf("sub exit %d after SIGINT, want 0", code)
	}
	// it disconnected, acknowledging what it printed: nothing waits for the device
	code, stdout, _ := run(t, "", map[string]string{"LONGPOLL_URL": s.URL}, "stats")
	if code != 0 || !strings.Contains(stdout, `"sessions":0`) || !strings.Contains(stdout, `"offlineMessages":0`) {
		t.Fatalf("stats after sub exited: %s", stdout)
	}
}

func httpPost(url string, body []byte) (int, error) {
	res, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// TestSubExits1WhenTheSessionIsEnded: a publisher's disconnect ends sub's
// session (410): sub exits 1 naming it.
func TestSubExits1WhenTheSessionIsEnded(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0")
	_, _, errOut, done := startSub(t, s.URL, "--device", "cli-ended")
	testserver.WaitFor(t, "a parked poll", 30*time.Second, func() bool {
		_, out, _ := run(t, "", map[string]string{"LONGPOLL_URL": s.URL}, "stats")
		return strings.Contains(out, `"parked":1`)
	})
	code, out, _ := run(t, "", map[string]string{"LONGPOLL_URL": s.URL}, "presence", "--device", "cli-ended")
	if code != 0 || !strings.Contains(out, `"deviceId":"cli-ended"`) {
		t.Fatalf("presence: %d %s", code, out)
	}
	req, _ := json.Marshal(map[string]string{"deviceId": "cli-ended"})
	res, err := httpPost(s.URL+"/disconnect", req)
	if err != nil || res != 200 {
		t.Fatalf("disconnect: %d %v", res, err)
	}
	if code := waitExit(t, done); code != cli.ExitError {
		t.Fatalf("sub exit %d, want 1", code)
	}
	if !errOut.contains("410 session_closed") {
		t.Fatalf("stderr %q does not name 410 session_closed", errOut.get())
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(testserver.Binary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "longpoll ") || !strings.Contains(string(out), "commit ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("--version: %q %v", out, err)
	}
	if got := cli.Version(); !strings.HasPrefix(got, "longpoll ") {
		t.Fatalf("Version() = %q", got)
	}
}

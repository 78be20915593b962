package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/testserver"
)

// The crash test: a server with --data-dir, 200 sessions polling with
// their cursors, 32 publishers each pushing its numbered messages to
// sessions one at a time, and the server killed with SIGKILL at random
// moments (and once stopped gracefully), each time started again on the
// same directory and address. Afterwards: every message answered 202 was
// delivered to its session exactly once, each publisher's messages to a
// session in its order; no message answered with an error appeared; every
// session kept its id (no poll ever got 404).
func TestCrashRestartKeepsEveryAcceptedMessage(t *testing.T) {
	const (
		sessions   = 200
		publishers = 32
		kills      = 3
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	srv := testserver.Start(t, "--data-dir", dir, "--heartbeat-interval", "0")
	base := srv.URL
	load := startLoad(t, seed, []string{base}, sessions, publishers, false)

	// Kill at random moments, then stop gracefully once.
	for k := range kills + 1 {
		load.waitAccepted(t, load.col.accepted.Load()+200+int64(rng.IntN(800)))
		if k < kills {
			srv.Kill()
		} else if err := srv.Stop(); err != nil {
			t.Fatalf("graceful stop: %v", err)
		}
		load.col.restarts.Add(1)
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		if srv.URL != base {
			t.Fatalf("restarted on %s, not %s", srv.URL, base)
		}
	}
	load.waitAccepted(t, load.col.accepted.Load()+200)
	load.finish(t)
}

// load is the crash tests' load: sessions, each polling with its cursor
// on one of the servers at random each time (and retrying while they are
// down, for at most a minute in a row), and publishers pushing numbered
// messages to random sessions on random servers, each waiting for its
// answer before the next, so that a session gets each publisher's
// messages in order; col records what was answered and what arrived.
type load struct {
	col            *collector
	sids           []string
	stopAll        context.CancelFunc
	stopPublishing context.CancelFunc
	pollers        sync.WaitGroup
	published      sync.WaitGroup
}

// startLoad connects sessions (on bases in turn) and starts the pollers
// and publishers. uncertain503: see collector.
func startLoad(t *testing.T, seed uint64, bases []string, sessions, publishers int, uncertain503 bool) *load {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: sessions + publishers + 8}}
	l := &load{col: newCollector(sessions), sids: make([]string, sessions)}
	l.col.uncertain503 = uncertain503
	for i := range l.sids {
		var out struct{ SessionID string }
		code, err := postJSON(client, bases[i%len(bases)]+"/connect", fmt.Sprintf(`{"deviceId":"dev-%d"}`, i), &out)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("connect %d: %d %v", i, code, err)
		}
		l.sids[i] = out.SessionID
	}
	ctx, stopAll := context.WithCancel(context.Background())
	l.stopAll = stopAll
	t.Cleanup(stopAll)
	for i, sid := range l.sids {
		l.pollers.Add(1)
		go func() {
			defer l.pollers.Done()
			l.col.poll(ctx, t, client, bases, i, sid, time.Minute)
		}()
	}
	pubCtx, stopPublishing := context.WithCancel(ctx)
	l.stopPublishing = stopPublishing
	for p := range publishers {
		l.published.Add(1)
		go func() {
			defer l.published.Done()
			prng := rand.New(rand.NewPCG(seed, uint64(p)+2))
			for n := 0; pubCtx.Err() == nil; n++ {
				to := prng.IntN(sessions)
				base := bases[prng.IntN(len(bases))]
				body := fmt.Sprintf(`{"to":{"sessionId":%q},"data":{"p":%d,"n":%d}}`, l.sids[to], p, n)
				code, err := postJSON(client, base+"/push", body, nil)
				l.col.pushed(p, n, to, code, err)
				if err != nil || code != http.StatusAccepted {
					select { // a server is down or draining: try the next message shortly
					case <-pubCtx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}()
	}
	return l
}

// waitAccepted waits (bounded) until atLeast pushes were answered 202.
func (l *load) waitAccepted(t *testing.T, atLeast int64) {
	t.Helper()
	testserver.WaitFor(t, "pushes accepted", 60*time.Second, func() bool { return l.col.accepted.Load() >= atLeast })
}

// finish stops the publishers, waits (bounded: past it, check names the
// missing ones) until every accepted message has arrived, stops the
// pollers and checks what arrived.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.stopPublishing()
	l.published.Wait()
	for deadline := time.Now().Add(30 * time.Second); !l.col.allDelivered() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded above; nothing to synchronise with
	}
	l.stopAll()
	l.pollers.Wait()
	l.col.check(t, l.sids)
}

// postJSON posts body and decodes a 2xx answer into out (if not nil).
func postJSON(c *http.Client, url, body string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// collector records what the publishers were told and what the pollers
// got. Its fields are guarded by mu but the counters.
type collector struct {
	mu        sync.Mutex
	outcome   map[[2]int]pushOutcome // (publisher, n) -> what the push was answered
	got       map[[2]int]int         // (publisher, n) -> times delivered
	lastN     []map[int]int          // per session: publisher -> last n delivered
	errs      []string
	accepted  atomic.Int64
	delivered atomic.Int64
	restarts  atomic.Int32
	// uncertain503: a 503 may or may not have stored the push (a store
	// that lost its answer mid-write, as Redis going away): it is
	// counted with the pushes cut off, not with the refused.
	uncertain503 bool
}

type pushOutcome struct {
	to     int
	status int // 202, an error status, or 0: no answer
	sent   bool
}

func newCollector(sessions int) *collector {
	c := &collector{outcome: map[[2]int]pushOutcome{}, got: map[[2]int]int{}, lastN: make([]map[int]int, sessions)}
	for i := range c.lastN {
		c.lastN[i] = map[int]int{}
	}
	return c
}

func (c *collector) fail(format string, a ...any) {
	c.mu.Lock()
	if len(c.errs) < 20 {
		c.errs = append(c.errs, fmt.Sprintf(format, a...))
	}
	c.mu.Unlock()
}

// pushed records the answer to a push. A connection refused never sent
// the request: like an error status, the message must not appear. Any
// other transport failure (the server died mid-request) leaves it unknown.
func (c *collector) pushed(p, n, to, status int, err error) {
	o := pushOutcome{to: to, status: status, sent: true}
	if err != nil {
		o.status = 0
		o.sent = !errors.Is(err, syscall.ECONNREFUSED)
	} else if status == http.StatusServiceUnavailable && c.uncertain503 {
		o.status = 0
	}
	c.mu.Lock()
	c.outcome[[2]int{p, n}] = o
	c.mu.Unlock()
	if status == http.StatusAccepted && err == nil {
		c.accepted.Add(1)
	}
}

// poll is one session's poller; each poll goes to one of bases, at random.
func (c *collector) poll(ctx context.Context, t *testing.T, client *http.Client, bases []string, i int, sid string, downBound time.Duration) {
	var cursor uint64
	var downSince time.Time
	for ctx.Err() == nil {
		url := fmt.Sprintf("%s/data?sessionId=%s&timeout=2", bases[rand.IntN(len(bases))], sid)
		if cursor > 0 {
			url += fmt.Sprintf("&cursor=%d", cursor)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if downSince.IsZero() {
				downSince = time.Now()
			} else if time.Since(downSince) > downBound {
				c.fail("session %d: server unreachable for %s: %v", i, downBound, err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		downSince = time.Time{}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			continue // cut off by a kill: poll again with the same cursor
		case resp.StatusCode == http.StatusNoContent:
			continue
		case resp.StatusCode == http.StatusServiceUnavailable:
			continue // draining for the graceful stop
		case resp.StatusCode != http.StatusOK:
			c.fail("session %d (%s): poll answered %d %s", i, sid, resp.StatusCode, b)
			return
		}
		var ans struct {
			Cursor   uint64
			Messages []struct {
				Seq  uint64
				Data struct{ P, N int }
			}
		}
		if err := json.Unmarshal(b, &ans); err != nil {
			c.fail("session %d: answer %s: %v", i, b, err)
			return
		}
		c.mu.Lock()
		for _, m := range ans.Messages {
			if m.Seq <= cursor {
				c.errs = append(c.errs, fmt.Sprintf("session %d: seq %d at cursor %d", i, m.Seq, cursor))
				continue
			}
			if m.Seq != cursor+1 {
				c.errs = append(c.errs, fmt.Sprintf("session %d: seq %d after %d (a gap)", i, m.Seq, cursor))
			}
			cursor = m.Seq
			k := [2]int{m.Data.P, m.Data.N}
			c.got[k]++
			if c.got[k] > 1 {
				c.errs = append(c.errs, fmt.Sprintf("session %d: message %v delivered %d times", i, k, c.got[k]))
			}
			if last, ok := c.lastN[i][m.Data.P]; ok && m.Data.N <= last {
				c.errs = append(c.errs, fmt.Sprintf("session %d: publisher %d's message %d after its %d", i, m.Data.P, m.Data.N, last))
			}
			c.lastN[i][m.Data.P] = m.Data.N
			c.delivered.Add(1)
		}
		c.mu.Unlock()
	}
}

// allDelivered reports whether every accepted push has been delivered.
func (c *collector) allDelivered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, o := range c.outcome {
		if o.status == http.StatusAccepted && c.got[k] == 0 {
			return false
		}
	}
	return true
}

// check reports what went wrong.
func (c *collector) check(t *testing.T, sids []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	reported := 0
	report := func(format string, a ...any) {
		if reported++; reported <= 20 {
			t.Errorf(format, a...)
		}
	}
	defer func() {
		if reported > 20 {
			t.Errorf("… and %d more", reported-20)
		}
	}()
	for _, e := range c.errs {
		report("%s", e)
	}
	var accepted, refused, unknown, unknownArrived int
	for k, o := range c.outcome {
		switch {
		case o.status == http.StatusAccepted:
			accepted++
			if c.got[k] != 1 {
				report("message %v (answered 202) delivered %d times", k, c.got[k])
			}
		case o.status != 0 || !o.sent:
			refused++
			if c.got[k] != 0 {
				report("message %v was refused (status %d) but delivered", k, o.status)
			}
		default:
			unknown++
			if c.got[k] > 0 {
				unknownArrived++
			}
		}
	}
	for k := range c.got {
		if _, ok := c.outcome[k]; !ok {
			report("message %v delivered but never pushed", k)
		}
	}
	t.Logf("%d restarts; %d pushes answered 202 (each delivered once, in order), %d refused or never sent (none delivered), %d cut off by a kill (%d of them delivered); %d sessions kept their ids",
		c.restarts.Load(), accepted, refused, unknown, unknownArrived, len(sids))
}

// startFails runs the binary with args and wants it to exit 1 within a
// bound, saying each of want on its output.
func startFails(t *testing.T, cmd *exec.Cmd, want ...string) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v: still running after 30s:\n%s", cmd.Args, out.String())
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("%v: exit %v, want 1:\n%s", cmd.Args, err, out.String())
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("%v: output does not say %q:\n%s", cmd.Args, w, out.String())
		}
	}
}

// A data directory that another server holds, that this user cannot
// write, or whose files are damaged, fails the start with a message that
// names the directory and what to do; none is started over fresh.
func TestDataDirFaultsFailTheStart(t *testing.T) {
	dir := t.TempDir()
	srv := testserver.Start(t, "--data-dir", dir, "--heartbeat-interval", "0")
	if code, err := postJSON(http.DefaultClient, srv.URL+"/connect", `{"deviceId":"lamp"}`, nil); code != http.StatusCreated || err != nil {
		t.Fatalf("connect: %d %v", code, err)
	}

	t.Run("locked", func(t *testing.T) {
		startFails(t, exec.Command(testserver.Binary(t), "--addr", "127.0.0.1:0", "--data-dir", dir),
			dir, "in use by another longpoll")
	})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	t.Run("not writable", func(t *testing.T) {
		cmd := exec.Command(testserver.Binary(t), "--addr", "127.0.0.1:0", "--data-dir", dir)
		if os.Geteuid() == 0 {
			// root writes anywhere: run as nobody, from a copy of the
			// binary that nobody may execute.
			bin := filepath.Join(os.TempDir(), fmt.Sprintf("longpoll-nobody-%d", os.Getpid()))
			b, err := os.ReadFile(testserver.Binary(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(bin)
			if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil { // nobody must reach dir to be refused by it
				t.Fatal(err)
			}
			cmd = exec.Command(bin, "--addr", "127.0.0.1:0", "--data-dir", dir)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		startFails(t, cmd, dir, "not writable")
	})

	t.Run("corrupt", func(t *testing.T) {
		manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
		if len(manifests) == 0 {
			t.Fatal("no MANIFEST in the data directory")
		}
		name := manifests[len(manifests)-1]
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] ^= 0xa5
		}
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		startFails(t, exec.Command(testserver.Binary(t), "--addr", "127.0.0.1:0", "--data-dir", dir),
			dir, "restore it from a backup")
	})
}

// longpoll backup takes a consistent copy while the server runs and
// messages are being pushed: a server started on the extracted copy (tar,
// as the README says) has the sessions, and exactly the first K messages
// of the one publisher for some K (a copy as of one moment, nothing torn).
// With the server stopped, backup copies the directory itself.
func TestBackupWhileServing(t *testing.T) {
	dir := t.TempDir()
	srv := testserver.Start(t, "--data-dir", dir, "--heartbeat-interval", "0")
	const sessions = 20
	sids := make([]string, sessions)
	for i := range sids {
		var out struct{ SessionID string }
		if code, err := postJSON(http.DefaultClient, srv.URL+"/connect", fmt.Sprintf(`{"deviceId":"d%d"}`, i), &out); code != http.StatusCreated || err != nil {
			t.Fatalf("connect: %d %v", code, err)
		}
		sids[i] = out.SessionID
	}
	ctx, cancel := context.WithCancel(context.Background())
	var pushed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ctx.Err() == nil; n++ {
			body := fmt.Sprintf(`{"to":{"sessionId":%q},"data":%d}`, sids[n%sessions], n)
			if code, err := postJSON(http.DefaultClient, srv.URL+"/push", body, nil); code != http.StatusAccepted || err != nil {
				t.Errorf("push %d: %d %v", n, code, err)
				return
			}
			pushed.Add(1)
		}
	}()
	testserver.WaitFor(t, "pushes", 30*time.Second, func() bool { return pushed.Load() >= 300 })
	for path, wants := range map[string][]string{
		"/metrics": {"longpoll_storage_commit_seconds_count ", "longpoll_storage_disk_bytes ", "longpoll_storage_write_errors_total 0"},
		"/stats":   {`"store":"disk"`},
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range wants {
			if !strings.Contains(string(body), w) {
				t.Errorf("GET %s does not show %q", path, w)
			}
		}
	}
	out := filepath.Join(t.TempDir(), "backup.tar")
	b, err := exec.Command(testserver.Binary(t), "backup", "--data-dir", dir, "--out", out).CombinedOutput()
	if err != nil || !strings.Contains(string(b), `"bytes"`) {
		t.Fatalf("backup: %v %s", err, b)
	}
	before := pushed.Load()
	testserver.WaitFor(t, "pushes after the backup", 30*time.Second, func() bool { return pushed.Load() >= before+100 })
	cancel()
	<-done

	restored := filepath.Join(t.TempDir(), "restored")
	if err := os.Mkdir(restored, 0o700); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-xf", out, "-C", restored).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	copySrv := testserver.Start(t, "--data-dir", restored, "--heartbeat-interval", "0")
	var got []int
	for i, sid := range sids {
		resp, err := http.Get(fmt.Sprintf("%s/data?sessionId=%s&timeout=0", copySrv.URL, sid))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			continue
		}
		var ans struct{ Messages []struct{ Data int } }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ans) != nil {
			t.Fatalf("session %d on the restored copy: %d %s", i, resp.StatusCode, body)
		}
		for _, m := range ans.Messages {
			got = append(got, m.Data)
		}
	}
	slices.Sort(got)
	for i, n := range got {
		if n != i {
			t.Fatalf("the restored copy holds messages %v…: not the first %d pushed", got[:min(len(got), i+3)], len(got))
		}
	}
	if len(got) < 300 || int64(len(got)) > before+1 {
		t.Fatalf("the restored copy holds %d messages; %d were accepted before the backup started, %d when it ended", len(got), 300, before)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "stopped.tar")
	if b, err := exec.Command(testserver.Binary(t), "backup", "--data-dir", dir, "--out", out2).CombinedOutput(); err != nil {
		t.Fatalf("backup of a stopped server's directory: %v %s", err, b)
	}
}

package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/internal/testserver"
)

// fastBackoff keeps the tests' retries short.
var fastBackoff = client.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2, Jitter: 0.5}

const waitLimit = 30 * time.Second

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, append([]client.Option{client.WithBackoff(fastBackoff)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup starts a server with args and returns it, a context for the test,
// and a client of it (which publishes from loopback).
func setup(t *testing.T, args ...string) (*testserver.Server, context.Context, *client.Client) {
	t.Helper()
	s := testserver.Start(t, append([]string{"--heartbeat-interval", "0"}, args...)...)
	return s, testContext(t), newClient(t, s.URL)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// receiver runs a device's Run in a goroutine and records what its
// handler got.
type receiver struct {
	hold    chan struct{} // when not nil, the handler waits for it to close after each message
	mu      sync.Mutex
	got     []client.Message
	retries []client.RetryInfo
	done    chan error
	cancel  context.CancelFunc
}

func (r *receiver) hook(info client.RetryInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries = append(r.retries, info)
}

func (r *receiver) run(ctx context.Context, dev *client.Device) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan error, 1)
	go func() {
		r.done <- dev.Run(ctx, func(_ context.Context, m client.Message) error {
			r.mu.Lock()
			r.got = append(r.got, m)
			r.mu.Unlock()
			if r.hold != nil {
				<-r.hold
			}
			return nil
		})
	}()
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *receiver) data() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.got))
	for i, m := range r.got {
		out[i] = string(m.Data)
	}
	return out
}

func (r *receiver) retryInfos() []client.RetryInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.retries)
}

func (r *receiver) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
		return nil
	}
}

// numbers returns `"1"`, `"2"` … `"n"` as JSON numbers' text: what the
// handler must see, in order, once each.
func numbers(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func pushNumbers(t *testing.T, ctx context.Context, pub *client.Client, to client.Target, from, upto int) {
	t.Helper()
	for i := from; i <= upto; i++ {
		if _, err := pub.Push(ctx, client.Push{To: to, Data: i}); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
}

func wantExactly(t *testing.T, r *receiver, want []string) {
	t.Helper()
	testserver.WaitFor(t, fmt.Sprintf("%d messages", len(want)), waitLimit, func() bool { return r.count() >= len(want) })
	if got := r.data(); !slices.Equal(got, want) {
		t.Fatalf("handler got %v\nwant %v (each once, in order)", got, want)
	}
}

func parkedPolls(t *testing.T, pub *client.Client) int {
	st, err := pub.Stats(context.Background())
	if err != nil {
		t.Logf("stats: %v", err)
		return -1
	}
	return st.Parked
}

func TestDeviceAndPublisher(t *testing.T) {
	s, ctx, pub := setup(t)
	c := newClient(t, s.URL)

	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "lamp-1", UserID: "alice", Topics: []string{"home"}, Meta: map[string]string{"fw": "1.2"}})
	if err != nil {
		t.Fatal(err)
	}
	sess := dev.Session()
	if sess.ID == "" || sess.DeviceID != "lamp-1" || sess.UserID != "alice" || sess.PollTimeout != 30*time.Second || sess.SessionTTL != 300*time.Second || string(sess.Meta) != `{"fw":"1.2"}` {
		t.Fatalf("session %+v", sess)
	}
	r := &receiver{}
	r.run(ctx, dev)
	testserver.WaitFor(t, "the poll to park", waitLimit, func() bool { return parkedPolls(t, pub) == 1 })

	res, err := pub.Push(ctx, client.Push{To: client.Target{UserID: "alice"}, Topic: "alerts", Data: 1, ID: "once"})
	if err != nil || res.Delivered != 1 || !strings.HasPrefix(res.ID, "m_") {
		t.Fatalf("push: %+v %v", res, err)
	}
	again, err := pub.Push(ctx, client.Push{To: client.Target{UserID: "alice"}, Data: 1, ID: "once"})
	if err != nil || !again.Duplicate || again.ID != res.ID {
		t.Fatalf("repeated idempotency id: %+v %v", again, err)
	}
	batch, err := pub.PushBatch(ctx, []client.Push{
		{To: client.Target{DeviceID: "lamp-1"}, Data: json.RawMessage(`2`)},
		{To: client.Target{Topic: "home"}, Data: []byte(`3`), TTL: time.Hour},
		{Data: 4}, // broadcast
	})
	if err != nil || len(batch) != 3 || batch[2].Err != nil || batch[0].Delivered != 1 {
		t.Fatalf("batch: %+v %v", batch, err)
	}
	wantExactly(t, r, numbers(1, 4))
	if m := r.got[0]; m.Topic != "alerts" || m.Seq != 1 || m.ID != res.ID || m.SentAt.IsZero() || !strings.Contains(string(m.Raw), `"seq":1`) {
		t.Fatalf("first message %+v", m)
	}
	testserver.WaitFor(t, "the acknowledging poll", waitLimit, func() bool { return parkedPolls(t, pub) == 1 })
	if got := dev.Cursor(); got != 4 {
		t.Fatalf("cursor %d, want 4", got)
	}

	// a device sends to another user; the server sets from
	bob, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "phone-1", UserID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := dev.Send(ctx, client.Push{To: client.Target{UserID: "bob"}, Topic: "chat", Data: "hi"})
	if err != nil || sent.Delivered != 1 {
		t.Fatalf("send: %+v %v", sent, err)
	}
	rb := &receiver{}
	rb.run(ctx, bob)
	wantExactly(t, rb, []string{`"hi"`})
	if rb.got[0].From != "alice/lamp-1" {
		t.Fatalf("from %q", rb.got[0].From)
	}
	if _, err := dev.Send(ctx, client.Push{Data: 1}); !errors.Is(err, client.ErrInvalidPayload) {
		t.Fatalf("send without a target: %v, want invalid_payload", err)
	}
	if res, err := dev.SendBatch(ctx, []client.Push{{To: client.Target{DeviceID: "phone-1"}, Data: "a"}, {To: client.Target{DeviceID: "phone-1"}, Data: "b"}}); err != nil || len(res) != 2 {
		t.Fatalf("send batch: %+v %v", res, err)
	}
	wantExactly(t, rb, []string{`"hi"`, `"a"`, `"b"`})

	// presence and stats
	list, err := pub.Presence(ctx, client.Target{UserID: "alice"})
	if err != nil || len(list) != 1 || list[0].DeviceID != "lamp-1" || list[0].ConnectedAt.IsZero() || list[0].SessionID != sess.ID {
		t.Fatalf("presence: %+v %v", list, err)
	}
	if list, err := pub.Presence(ctx, client.Target{DeviceID: "nobody"}); err != nil || len(list) != 0 {
		t.Fatalf("presence of nobody: %+v %v", list, err)
	}
	if _, err := pub.Presence(ctx, client.Target{}); !errors.Is(err, client.ErrInvalidPayload) {
		t.Fatalf("presence without a query: %v", err)
	}
	st, err := pub.Stats(ctx)
	if err != nil || st.Sessions != 2 || st.Users != 2 || !json.Valid(st.Raw) {
		t.Fatalf("stats: %+v %v", st, err)
	}

	// the publisher disconnects alice: her Run stops with 410
	n, err := pub.Disconnect(ctx, client.Target{UserID: "alice"})
	if err != nil || n != 1 {
		t.Fatalf("disconnect: %d %v", n, err)
	}
	if err := r.wait(t); !errors.Is(err, client.ErrSessionClosed) {
		t.Fatalf("Run after an admin disconnect: %v, want session_closed", err)
	}
	var ae *client.Error
	if _, err := pub.Disconnect(ctx, client.Target{UserID: "a", DeviceID: "b"}); !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "invalid_payload" {
		t.Fatalf("disconnect with two fields: %v", err)
	}

	// bob disconnects himself: Run returns nil
	if err := bob.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rb.wait(t); err != nil {
		t.Fatalf("Run after Disconnect: %v, want nil", err)
	}
	if _, err := bob.Send(ctx, client.Push{To: client.Target{UserID: "x"}}); !errors.Is(err, client.ErrDeviceClosed) {
		t.Fatalf("send after Disconnect: %v", err)
	}
	if err := bob.Run(ctx, nil); !errors.Is(err, client.ErrDeviceClosed) {
		t.Fatalf("Run after Disconnect: %v", err)
	}
}

// TestRunAcrossKillAndRestart: the server is killed (SIGKILL) mid-stream
// and started again on the same address. It is in memory, so the session
// is gone: the device gets 404 and connects again, and what was pushed to
// the device meanwhile waits for it. Nothing lost, nothing twice, in order.
func TestRunAcrossKillAndRestart(t *testing.T) {
	for _, how := range []string{"kill", "stop"} {
		t.Run(how, func(t *testing.T) {
			s := testserver.Start(t, "--heartbeat-interval", "0")
			ctx := testContext(t)
			pub := newClient(t, s.URL)
			r := &receiver{}
			dev, err := newClient(t, s.URL, client.WithRetryHook(r.hook)).Connect(ctx, client.ConnectRequest{DeviceID: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			r.run(ctx, dev)
			to := client.Target{DeviceID: "gw-1"}
			pushNumbers(t, ctx, pub, to, 1, 20)
			testserver.WaitFor(t, "20 messages", waitLimit, func() bool { return r.count() == 20 })
			first := dev.Session().ID

			if how == "kill" {
				s.Kill()
			} else if err := s.Stop(); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			// the device is now retrying against a closed port
			testserver.WaitFor(t, "a failed retry", waitLimit, func() bool { return len(r.retryInfos()) > 0 })
			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			pushNumbers(t, ctx, pub, to, 21, 40) // stored for the device, or delivered if it is back already
			wantExactly(t, r, numbers(1, 40))
			if dev.Session().ID == first {
				t.Fatal("the device did not connect again")
			}
			reconnected := false
			for _, info := range r.retryInfos() {
				reconnected = reconnected || info.Reconnect && errors.Is(info.Err, client.ErrSessionNotFound)
			}
			if !reconnected {
				t.Fatalf("no reconnect after 404 among the retries %+v", r.retryInfos())
			}
			pushNumbers(t, ctx, pub, to, 41, 45)
			wantExactly(t, r, numbers(1, 45))
			r.cancel()
			if err := r.wait(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestRunReconnectsAfterExpiry: the handler holds the device up past its
// session's TTL, so the session expires (404); the device connects again.
// The message being handled is handed to the new session again by the
// server (it was not acknowledged) and is skipped by id; the one pushed
// while the device was offline arrives.
func TestRunReconnectsAfterExpiry(t *testing.T) {
	s, ctx, pub := setup(t, "--session-ttl", "1s", "--cleanup-interval", "100ms")
	var retries []client.RetryInfo
	var mu sync.Mutex
	c := newClient(t, s.URL, client.WithRetryHook(func(i client.RetryInfo) { mu.Lock(); retries = append(retries, i); mu.Unlock() }))
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "sleepy", UserID: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- dev.Run(ctx, func(ctx context.Context, m client.Message) error {
			got <- string(m.Data)
			if string(m.Data) == `"first"` {
				<-release
			}
			return nil
		})
	}()
	if _, err := pub.Push(ctx, client.Push{To: client.Target{DeviceID: "sleepy"}, Data: "first"}); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != `"first"` {
		t.Fatalf("got %s", m)
	}
	testserver.WaitFor(t, "the session to expire", waitLimit, func() bool {
		l, err := pub.Presence(ctx, client.Target{DeviceID: "sleepy"})
		return err == nil && len(l) == 0
	})
	if res, err := pub.Push(ctx, client.Push{To: client.Target{UserID: "carol"}, Data: "second"}); err != nil || res.Stored != 1 {
		t.Fatalf("push while offline: %+v %v", res, err)
	}
	close(release)
	select {
	case m := <-got:
		if m != `"second"` {
			t.Fatalf("after the reconnect the handler got %s, want \"second\" (\"first\" must not come twice)", m)
		}
	case <-time.After(waitLimit):
		t.Fatal("nothing after the reconnect")
	}
	// the new session got "first" again from the server; make sure it was
	// seen and skipped rather than still on its way
	testserver.WaitFor(t, "the new session's messages acknowledged", waitLimit, func() bool { return dev.Cursor() == 2 })
	select {
	case m := <-got:
		t.Fatalf("handler got %s again", m)
	default:
	}
	mu.Lock()
	if len(retries) == 0 || !retries[0].Reconnect || !errors.Is(retries[0].Err, client.ErrSessionNotFound) || retries[0].Wait != 0 {
		t.Fatalf("retries %+v, want an immediate reconnect after 404", retries)
	}
	mu.Unlock()
}

func TestRunStopsOnSupersededAndReplaced(t *testing.T) {
	s, ctx, pub := setup(t)
	c := newClient(t, s.URL)

	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	r.run(ctx, dev)
	testserver.WaitFor(t, "the poll to park", waitLimit, func() bool { return parkedPolls(t, pub) == 1 })
	// another poller of the same session takes over: 409 for the device
	res, err := http.Get(s.URL + "/data?timeout=0&sessionId=" + dev.Session().ID)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if err := r.wait(t); !errors.Is(err, client.ErrSuperseded) {
		t.Fatalf("Run: %v, want superseded", err)
	}
	var ae *client.Error

	// the same deviceId connects elsewhere: 410 for this one
	dev2, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "d2"})
	if err != nil {
		t.Fatal(err)
	}
	r2 := &receiver{}
	r2.run(ctx, dev2)
	testserver.WaitFor(t, "the poll to park", waitLimit, func() bool { return parkedPolls(t, pub) == 1 })
	if _, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "d2"}); err != nil {
		t.Fatal(err)
	}
	err = r2.wait(t)
	if !errors.As(err, &ae) || ae.Status != http.StatusGone || ae.Code != "session_closed" || !errors.Is(err, client.ErrSessionClosed) {
		t.Fatalf("Run: %v, want 410 session_closed", err)
	}
}

// TestRunHonoursRetryAfter: with --max-parked-per-ip 1, a second device's
// poll is refused 429 rate_limited with Retry-After: 1; the device waits
// at least that long, then polls on.
func TestRunHonoursRetryAfter(t *testing.T) {
	s, ctx, pub := setup(t, "--max-parked-per-ip", "1")
	a, err := newClient(t, s.URL).Connect(ctx, client.ConnectRequest{DeviceID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ra := &receiver{hold: make(chan struct{})}
	defer close(ra.hold)
	ra.run(ctx, a)
	testserver.WaitFor(t, "a's poll to park", waitLimit, func() bool { return parkedPolls(t, pub) == 1 })

	rb := &receiver{}
	b, err := newClient(t, s.URL, client.WithRetryHook(rb.hook)).Connect(ctx, client.ConnectRequest{DeviceID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	rb.run(ctx, b)
	testserver.WaitFor(t, "b's first 429", waitLimit, func() bool { return len(rb.retryInfos()) > 0 })
	refused := time.Now()
	info := rb.retryInfos()[0]
	var ae *client.Error
	if !errors.As(info.Err, &ae) || ae.Status != 429 || !errors.Is(ae, client.ErrRateLimited) || ae.RetryAfter != time.Second || info.Wait < time.Second {
		t.Fatalf("retry %+v (%v), want 429 rate_limited, Retry-After 1s, a wait of at least 1s", info, info.Err)
	}
	// a's poll is answered and its handler holds it: a has no poll open
	pushNumbers(t, ctx, pub, client.Target{DeviceID: "a"}, 1, 1)
	testserver.WaitFor(t, "a's handler", waitLimit, func() bool { return ra.count() == 1 })
	pushNumbers(t, ctx, pub, client.Target{DeviceID: "b"}, 1, 1)
	wantExactly(t, rb, numbers(1, 1))
	if waited := time.Since(refused); waited < 900*time.Millisecond {
		t.Fatalf("b polled again %v after the 429, before its Retry-After", waited)
	}
}

func TestConnectReturnsARetryAfterBeyondTheDeadline(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0", "--connect-rate", "0.01", "--connect-burst", "1")
	c := newClient(t, s.URL)
	if _, err := c.Connect(testContext(t), client.ConnectRequest{DeviceID: "first"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	_, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "second"})
	var ae *client.Error
	if !errors.As(err, &ae) || !errors.Is(err, client.ErrRateLimited) || ae.RetryAfter != 100*time.Second {
		t.Fatalf("connect: %v, want rate_limited with Retry-After 100s", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("Connect waited %v for a Retry-After beyond its deadline", took)
	}
}

// proxy is a TCP proxy on 127.0.0.1 that the test can break: cut closes
// every connection through it, and truncate cuts the next answer from the
// server after its first bytes.
type proxy struct {
	ln       net.Listener
	target   string
	mu       sync.Mutex
	conns    map[net.Conn]bool
	truncate bool
	cuts     int
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go p.pipe(s, c, false)
		go p.pipe(c, s, true)
	}
}

func (p *proxy) pipe(dst, src net.Conn, fromServer bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromServer && p.takeTruncate() {
				_, _ = dst.Write(buf[:min(n, 30)])
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) takeTruncate() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.truncate
	p.truncate = false
	if t {
		p.cuts++
	}
	return t
}

func (p *proxy) setTruncate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.truncate = true
}

func (p *proxy) truncated() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.truncate
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.cuts++
}

// TestRunSurvivesNetworkErrors: the device's connections are cut while it
// is parked, while messages are being pushed, and in the middle of an
// answer; nothing is lost, nothing comes twice, all in order.
func TestRunSurvivesNetworkErrors(t *testing.T) {
	s, ctx, pub := setup(t)
	p := newProxy(t, s.Addr)
	r := &receiver{}
	dev, err := newClient(t, p.url(), client.WithRetryHook(r.hook)).Connect(ctx, client.ConnectRequest{DeviceID: "flaky", UserID: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	r.run(ctx, dev)
	to := client.Target{UserID: "dave"}
	const rounds, per = 12, 10
	next := 1
	for round := range rounds {
		testserver.WaitFor(t, "the poll to park", waitLimit, func() bool { return parkedPolls(t, pub) == 1 })
		switch round % 3 {
		case 0: // cut while parked, then push
			p.cut()
			pushNumbers(t, ctx, pub, to, next, next+per-1)
		case 1: // cut halfway through the pushes
			pushNumbers(t, ctx, pub, to, next, next+per/2-1)
			p.cut()
			pushNumbers(t, ctx, pub, to, next+per/2, next+per-1)
		case 2: // the answer is cut after its first bytes
			p.setTruncate()
			pushNumbers(t, ctx, pub, to, next, next+per-1)
			testserver.WaitFor(t, "a truncated answer", waitLimit, p.truncated)
		}
		next += per
		wantExactly(t, r, numbers(1, next-1))
	}
	// A cut of an idle pooled connection is retried by net/http itself;
	// a truncated answer always reaches the device.
	if len(r.retryInfos()) < rounds/3 {
		t.Fatalf("only %d retries for %d truncated answers: the cuts did not reach the device", len(r.retryInfos()), rounds/3)
	}
	if dev.Session().ID == "" {
		t.Fatal("no session")
	}
}

func TestErrorsAreTyped(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0", "--max-mailbox", "1", "--publish-key", "pk-0123456789abcdef")
	ctx := testContext(t)
	pub := newClient(t, s.URL, client.WithPublishKey("pk-0123456789abcdef"))
	var ae *client.Error

	_, err := newClient(t, s.URL).Push(ctx, client.Push{Data: 1})
	if !errors.As(err, &ae) || ae.Status != 401 || !errors.Is(err, client.ErrUnauthorized) || ae.Message == "" {
		t.Fatalf("no key: %v", err)
	}
	if _, err := pub.Push(ctx, client.Push{To: client.Target{SessionID: "nope"}, Data: 1}); !errors.Is(err, client.ErrSessionNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if _, err := pub.Push(ctx, client.Push{Data: strings.Repeat("x", 70<<10)}); !errors.Is(err, client.ErrPayloadTooLarge) {
		t.Fatalf("large data: %v", err)
	}
	if _, err := pub.Push(ctx, client.Push{To: client.Target{UserID: "bad user"}, Data: 1}); !errors.Is(err, client.ErrInvalidPayload) || errors.Is(err, client.ErrForbidden) {
		t.Fatalf("bad user id: %v", err)
	}
	if _, err := pub.Push(ctx, client.Push{To: client.Target{DeviceID: "full"}, Data: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Push(ctx, client.Push{To: client.Target{DeviceID: "full"}, Data: 2}); !errors.Is(err, client.ErrMailboxFull) || !errors.As(err, &ae) || ae.Status != 429 {
		t.Fatalf("full mailbox: %v", err)
	}
	res, err := pub.PushBatch(ctx, []client.Push{{To: client.Target{DeviceID: "full"}, Data: 3}, {To: client.Target{DeviceID: "other"}, Data: 4}})
	if err != nil || len(res) != 2 || !errors.Is(res[0].Err, client.ErrMailboxFull) || res[1].Err != nil || res[1].Stored != 1 {
		t.Fatalf("batch with a full item: %+v %v", res, err)
	}
	if res, err := pub.PushBatch(ctx, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %+v %v", res, err)
	}
	// items already JSON go as they are: "to": null is the server's to refuse
	if _, err := pub.PushBatchJSON(ctx, []json.RawMessage{json.RawMessage(`{"to":null,"data":1}`)}); !errors.Is(err, client.ErrInvalidPayload) || !strings.Contains(err.Error(), "item 0") {
		t.Fatalf("batch item with \"to\": null: %v", err)
	}
	if res, err := pub.PushBatchJSON(ctx, []json.RawMessage{json.RawMessage(`{"data":5,"to":{"deviceId":"other-2"}}`)}); err != nil || len(res) != 1 || res[0].Stored != 1 {
		t.Fatalf("batch of JSON items: %+v %v", res, err)
	}
	if _, err := pub.PushBatchJSON(ctx, []json.RawMessage{json.RawMessage(`{"data":`)}); err == nil || errors.As(err, &ae) {
		t.Fatalf("an item that is not JSON: %v, want an error before sending", err)
	}
	if _, err := pub.Push(ctx, client.Push{Data: make(chan int)}); err == nil || errors.As(err, &ae) {
		t.Fatalf("unencodable data: %v", err)
	}
	if _, err := newClient(t, s.URL).Connect(ctx, client.ConnectRequest{DeviceID: "no spaces"}); !errors.Is(err, client.ErrInvalidPayload) {
		t.Fatalf("bad device id: %v", err)
	}
	// a path that is no endpoint (a base URL with a wrong prefix)
	if _, err := newClient(t, s.URL+"/prefix", client.WithPublishKey("pk-0123456789abcdef")).Stats(ctx); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("wrong prefix: %v", err)
	}
	// nothing listening: a network error, not an *Error
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	if _, err := newClient(t, dead).Stats(ctx); err == nil || errors.As(err, &ae) {
		t.Fatalf("closed port: %v", err)
	}
	if _, err := client.New("ftp://x"); err == nil {
		t.Fatal("New accepted an ftp URL")
	}
}

// TestHTMLErrorPage: a proxy's non-JSON error answer becomes an *Error
// with the code http_STATUS; a device retries a 502 like any 5xx.
func TestHTMLErrorPage(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0")
	ctx := testContext(t)
	var mu sync.Mutex
	bad := 2 // the first polls get a gateway's HTML page
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fail := r.URL.Path == "/data" && bad > 0
		if fail {
			bad--
		}
		mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, s.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	t.Cleanup(func() { front.Close() })

	r := &receiver{}
	dev, err := newClient(t, "http://"+ln.Addr().String(), client.WithRetryHook(r.hook)).Connect(ctx, client.ConnectRequest{DeviceID: "behind-gw"})
	if err != nil {
		t.Fatal(err)
	}
	r.run(ctx, dev)
	pushNumbers(t, ctx, newClient(t, s.URL), client.Target{DeviceID: "behind-gw"}, 1, 3)
	wantExactly(t, r, numbers(1, 3))
	infos := r.retryInfos()
	var ae *client.Error
	if len(infos) != 2 || !errors.As(infos[0].Err, &ae) || ae.Code != "http_502" || ae.Status != 502 || !strings.Contains(ae.Message, "Bad Gateway") {
		t.Fatalf("retries %+v", infos)
	}
}

// TestTokenSource: against a server with --connect-secret the token source
// is asked before every connect, reconnects included.
func TestTokenSource(t *testing.T) {
	ctx := testContext(t)
	var mu sync.Mutex
	calls := 0
	tokens := client.WithToken(func(ctx context.Context) (string, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return signHS256(exampleSecret, map[string]any{"sub": "erin", "dev": "tok-1", "exp": time.Now().Add(time.Minute).Unix()}), nil
	})
	if _, err := newClient(t, secretURL).Connect(ctx, client.ConnectRequest{DeviceID: "tok-1"}); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("without a token: %v", err)
	}
	dev, err := newClient(t, secretURL, tokens).Connect(ctx, client.ConnectRequest{DeviceID: "tok-1"})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Session().UserID != "erin" {
		t.Fatalf("userId %q: not taken from the token", dev.Session().UserID)
	}
	// the session vanishes (an admin disconnect is a 410, so end it with
	// DELETE behind the device's back): Send connects again, with a new token
	req, _ := http.NewRequest("DELETE", secretURL+"/session?sessionId="+dev.Session().ID, nil)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 204 {
		t.Fatalf("delete: %v", err)
	}
	if _, err := dev.Send(ctx, client.Push{To: client.Target{UserID: "erin"}, Data: 1}); err != nil {
		t.Fatalf("send after the session vanished: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("token source called %d times, want 2 (connect, reconnect)", calls)
	}
	failing := client.WithToken(func(context.Context) (string, error) { return "", errors.New("backend down") })
	if _, err := newClient(t, secretURL, failing).Connect(ctx, client.ConnectRequest{DeviceID: "tok-2"}); err == nil || !strings.Contains(err.Error(), "backend down") {
		t.Fatalf("failing token source: %v", err)
	}
}

// TestDisconnectAcknowledgesAndHandlerErrorDoesNot: Disconnect sends the
// cursor, so what the handler finished does not come to the device's next
// session; a message whose handler failed comes again.
func TestDisconnectAcknowledgesAndHandlerErrorDoesNot(t *testing.T) {
	s, ctx, pub := setup(t)
	c := newClient(t, s.URL)
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "acker"})
	if err != nil {
		t.Fatal(err)
	}
	pushNumbers(t, ctx, pub, client.Target{DeviceID: "acker"}, 1, 3)
	failAt := errors.New("cannot handle 3 now")
	var got []string
	err = dev.Run(ctx, func(_ context.Context, m client.Message) error {
		if string(m.Data) == "3" {
			return failAt
		}
		got = append(got, string(m.Data))
		return nil
	})
	if !errors.Is(err, failAt) || !slices.Equal(got, []string{"1", "2"}) || dev.Cursor() != 2 {
		t.Fatalf("Run: %v, got %v, cursor %d", err, got, dev.Cursor())
	}
	if err := dev.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dev.Disconnect(ctx); err != nil {
		t.Fatalf("second Disconnect: %v", err)
	}
	next, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "acker"})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	r.run(ctx, next)
	pushNumbers(t, ctx, pub, client.Target{DeviceID: "acker"}, 4, 4)
	wantExactly(t, r, []string{"3", "4"})
}

func TestRunTwiceAtOnce(t *testing.T) {
	dev, err := newClient(t, serverURL).Connect(testContext(t), client.ConnectRequest{DeviceID: "twice"})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	r.run(testContext(t), dev)
	pub := newClient(t, serverURL)
	testserver.WaitFor(t, "a parked poll", waitLimit, func() bool {
		l, err := pub.Presence(context.Background(), client.Target{DeviceID: "twice"})
		return err == nil && len(l) == 1 && parkedPolls(t, pub) >= 1
	})
	if err := dev.Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run: %v", err)
	}
	r.cancel()
	r.wait(t)
	dev.Disconnect(context.Background())
}

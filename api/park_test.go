package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// parkServer is an api.Server on a real loopback listener: polls park
// without a goroutine and answered connections go on on the raw path.
type parkServer struct {
	hub  *poll.Hub
	addr string
	srv  *api.Server
	ln   *h1.Listener
	// net counts the requests net/http served: the raw path's are not.
	net *atomic.Int64
}

func newParkServer(t *testing.T, acfg api.Config) *parkServer {
	t.Helper()
	return newParkServerOn(t, acfg, nil)
}

// newParkServerOn is newParkServer on inner (nil: a new loopback
// listener).
func newParkServerOn(t *testing.T, acfg api.Config, inner net.Listener) *parkServer {
	t.Helper()
	if inner == nil {
		var err error
		if inner, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	hub := poll.NewHub(poll.Config{Render: wire.Render})
	if acfg.Jitter == nil {
		acfg.Jitter = func() float64 { return 1 }
	}
	if acfg.Timeouts.ReadHeader == 0 {
		acfg.Timeouts.ReadHeader = bound
	}
	srv := api.NewServer(hub, inner, acfg, nil)
	served := api.CountNetHTTP(srv)
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &parkServer{hub: hub, addr: inner.Addr().String(), srv: srv, ln: api.H1(srv), net: served}
}

func (p *parkServer) connect(t *testing.T, device string) string {
	t.Helper()
	s, err := p.hub.Connect(session.Request{DeviceID: device})
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

// rawClient speaks HTTP/1.1 over one kept-alive connection.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(3 * bound))
	return &rawClient{t, c, bufio.NewReader(c)}
}

func (c *rawClient) send(method, target, extra string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%s %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", method, target, extra); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) read() (*http.Response, string) {
	c.t.Helper()
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestParkedPollIsAnsweredOnItsConnectionWhichStaysUsable(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	c.send("GET", "/data?timeout=20&sessionId="+sid, "")
	waitUntil(t, "poll parked", func() bool { return p.hub.Stats().Parked == 1 })
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{DeviceID: "lamp"}, Data: []byte(`{"text":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	res, body := c.read()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" ||
		res.Header.Get("Cache-Control") != "no-store" || !strings.Contains(body, `"data":{"text":"hi"}`) ||
		!strings.HasPrefix(body, `{"cursor":1,"messages":[{"seq":1,`) || res.ContentLength != int64(len(body)) {
		t.Fatalf("delivery: %d %v %q", res.StatusCode, res.Header, body)
	}
	// The same connection serves the next requests: an acknowledging poll
	// that times out (204), then an error answered while parked.
	c.send("GET", "/data?timeout=0.05&cursor=1&sessionId="+sid, "")
	if res, body := c.read(); res.StatusCode != 204 || body != "" {
		t.Fatalf("hold over: %d %q", res.StatusCode, body)
	}
	c.send("GET", "/data?timeout=20&sessionId="+sid, "")
	waitUntil(t, "poll parked", func() bool { return p.hub.Stats().Parked == 1 })
	other := dialRaw(t, p.addr)
	other.send("GET", "/data?timeout=20&sessionId="+sid, "")
	res, body = c.read()
	if res.StatusCode != 409 || !strings.Contains(body, `"code":"superseded"`) || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("superseded: %d %q", res.StatusCode, body)
	}
	waitUntil(t, "newer poll parked", func() bool { return p.hub.Stats().Parked == 1 })
	if err := p.hub.Disconnect(sid, 0, false); err != nil {
		t.Fatal(err)
	}
	if res, body := other.read(); res.StatusCode != 410 || !strings.Contains(body, `"code":"session_closed"`) {
		t.Fatalf("closed: %d %q", res.StatusCode, body)
	}
	c.send("GET", "/healthz", "")
	if res, _ := c.read(); res.StatusCode != 200 {
		t.Fatalf("connection not handed back: %d", res.StatusCode)
	}
}

func TestParkedPollKeepsMiddlewareHeadersAndPipelinedRequests(t *testing.T) {
	p := newParkServer(t, api.Config{CORSOrigins: []string{"https://app.example"}})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	// Two requests in one write: the second is read ahead while the first
	// is parked, and must still be served after it.
	req := func(q string) string {
		return "GET /data?" + q + "&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n\r\n"
	}
	if _, err := io.WriteString(c.conn, req("timeout=0.1")+"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, _ := c.read()
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("parked answer: %d %v", res.StatusCode, res.Header)
	}
	if res, body := c.read(); res.StatusCode != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("pipelined request: %d %q", res.StatusCode, body)
	}
}

func TestParkedPollsHoldNoGoroutineAndCloseAnswersThem(t *testing.T) {
	const n = 200
	p := newParkServer(t, api.Config{})
	before := runtime.NumGoroutine()
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, p.addr)
		clients[i].send("GET", "/data?timeout=60&sessionId="+p.connect(t, fmt.Sprint("d", i)), "")
	}
	waitUntil(t, "all parked", func() bool { return p.hub.Stats().Parked == n })
	// Parked polls hold no handler or connection goroutine of their own.
	if g := runtime.NumGoroutine() - before; g > n/4 {
		t.Fatalf("%d goroutines for %d parked polls", g, n)
	}
	p.hub.Close()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			res, _ := c.read()
			if res.StatusCode != 204 || !res.Close {
				t.Errorf("at close: %d, Connection: close %v", res.StatusCode, res.Close)
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := p.ln.WaitHeld(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitUntil is waitFor.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, cond)
}

func TestQueryValueMatchesURLValues(t *testing.T) {
	for _, q := range []string{
		"sessionId=abc&cursor=3&timeout=0.5",
		"cursor=1&cursor=2&sessionId=a%2Bb",
		"session%49d=x&timeout=1+2",
		"sessionId=&cursor=",
		"sessionId=%zz&cursor=4",
		"a=1&&b&sessionId=last",
		"",
	} {
		want, _ := url.ParseQuery(q)
		for _, k := range []string{"sessionId", "cursor", "timeout"} {
			if got := api.QueryValue(q, k); got != want.Get(k) && !strings.Contains(q, "%zz") {
				t.Errorf("%q %s: got %q, want %q", q, k, got, want.Get(k))
			}
		}
	}
}

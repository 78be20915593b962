package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
)

// answeredPoll parks a poll of sid (with nothing pending) on a fresh
// connection and answers it with message 1, so that the connection is
// owned by the API (owned.go). Later polls acknowledge with cursor=1.
func answeredPoll(t *testing.T, p *parkServer, sid string) *rawClient {
	t.Helper()
	c := dialRaw(t, p.addr)
	c.send("GET", "/data?timeout=20&sessionId="+sid, "")
	waitUntil(t, "poll parked", func() bool { return p.hub.Stats().Parked == 1 })
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`{"n":0}`)}); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.read(); res.StatusCode != 200 {
		t.Fatalf("first poll: %d", res.StatusCode)
	}
	return c
}

func TestRepollsOnAnOwnedConnectionAreServedWithoutNetHTTP(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	before := p.net.Load()

	// A message already waiting: answered at once.
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	c.send("GET", "/data?cursor=1&timeout=20&sessionId="+sid, "User-Agent: gateway/1.0\r\nAccept: */*\r\nConnection: keep-alive\r\n")
	res, body := c.read()
	if res.StatusCode != 200 || !strings.HasPrefix(body, `{"cursor":2,"messages":[{"seq":2,`) ||
		res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Content-Type-Options") != "nosniff" ||
		res.Header.Get("Content-Type") != "application/json" || res.Header.Get("Date") == "" ||
		res.ContentLength != int64(len(body)) || res.Header.Get("Vary") != "" {
		t.Fatalf("pending: %d %v %q", res.StatusCode, res.Header, body)
	}
	// Nothing waiting: parked, then answered by a push.
	c.send("GET", "/data?cursor=2&timeout=20&sessionId="+sid, "")
	waitUntil(t, "re-poll parked", func() bool { return p.hub.Stats().Parked == 1 })
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`{"n":3}`)}); err != nil {
		t.Fatal(err)
	}
	if res, body := c.read(); res.StatusCode != 200 || !strings.Contains(body, `"seq":3,`) {
		t.Fatalf("parked re-poll: %d %q", res.StatusCode, body)
	}
	// A hold that runs out, an unknown session (the JSON error of API.md).
	c.send("GET", "/data?cursor=3&timeout=0&sessionId="+sid, "")
	if res, body := c.read(); res.StatusCode != 204 || body != "" {
		t.Fatalf("timeout 0: %d %q", res.StatusCode, body)
	}
	c.send("GET", "/data?timeout=5&sessionId=nobody-0123456789abcdef", "")
	if res, body := c.read(); res.StatusCode != 404 || !strings.Contains(body, `"code":"session_not_found"`) {
		t.Fatalf("unknown session: %d %q", res.StatusCode, body)
	}
	if n := p.net.Load() - before; n != 0 {
		t.Fatalf("net/http served %d of 4 re-polls on the owned connection, want none", n)
	}
	// Two re-polls in one write: the second is read ahead and still served.
	req := "GET /data?cursor=3&timeout=0&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\n\r\n"
	if _, err := io.WriteString(c.conn, req+req); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if res, _ := c.read(); res.StatusCode != 204 {
			t.Fatalf("pipelined re-poll %d: %d", i, res.StatusCode)
		}
	}
	// A re-poll answered at once (a message waits) with another request
	// read ahead behind it, which goes to net/http: each served once,
	// nothing replayed.
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`{"n":4}`)}); err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(req, "cursor=3", "cursor=4", 1)
	if _, err := io.WriteString(c.conn, req+"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"+next); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 200, 204} {
		if res, _ := c.read(); res.StatusCode != want {
			t.Fatalf("mixed pipeline %d: %d, want %d", i, res.StatusCode, want)
		}
	}
	c.send("GET", "/nope-404", "")
	if res, _ := c.read(); res.StatusCode != 404 {
		t.Fatalf("after the pipeline: %d, want 404 (a request replayed?)", res.StatusCode)
	}
}

// Everything but a plain re-poll or push goes to net/http, byte for byte,
// and gets the answer the echo route gives.
func TestOwnedConnectionHandsOtherRequestsToTheServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    func(sid string) string
		status int
		check  func(res *http.Response, body string) bool
		raw    bool // not served by the echo route: the raw path's, or net/http's own refusal
	}{
		{"healthz", func(string) string { return "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n" }, 200, nil, false},
		{"push with a body", func(sid string) string {
			b := `{"to":{"sessionId":"` + sid + `"},"data":1}`
			return "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(b)) + "\r\n\r\n" + b
		}, 202, nil, true},
		{"poll from an allowed origin gets CORS headers", func(sid string) string {
			return "GET /data?cursor=1&timeout=0&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n\r\n"
		}, 204, func(res *http.Response, _ string) bool {
			return res.Header.Get("Access-Control-Allow-Origin") == "https://app.example"
		}, false},
		{"invalid cursor", func(sid string) string {
			return "GET /data?cursor=x&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\n\r\n"
		}, 400, func(_ *http.Response, body string) bool { return strings.Contains(body, `"code":"invalid_cursor"`) }, true},
		{"missing Host", func(sid string) string { return "GET /data?cursor=1&timeout=0&sessionId=" + sid + " HTTP/1.1\r\n\r\n" }, 400, nil, true}, // net/http's own 400
		{"bare LF line ends", func(sid string) string {
			return "GET /data?cursor=1&timeout=0&sessionId=" + sid + " HTTP/1.1\nHost: x\n\n"
		}, 204, nil, false},
		{"folded header", func(sid string) string {
			return "GET /data?cursor=1&timeout=0&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n 2\r\n\r\n"
		}, 204, nil, false}, // net/http unfolds it
		{"headers over the cap", func(sid string) string {
			return "GET /data?cursor=1&timeout=0&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + strings.Repeat("p", 600) + "\r\n\r\n"
		}, 431, nil, false},
		{"head over the fast path's buffer", func(sid string) string {
			return "GET /data?cursor=1&timeout=0&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + strings.Repeat("p", 5000) + "\r\n\r\n"
		}, 204, nil, false},
		{"path not /data", func(sid string) string { return "GET /data/?sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\n\r\n" }, 404, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := 512
			if strings.Contains(tc.name, "buffer") {
				limit = 8192
			}
			p := newParkServer(t, api.Config{CORSOrigins: []string{"https://app.example"}, MaxHeaderBytes: limit})
			sid := p.connect(t, "lamp")
			c := answeredPoll(t, p, sid)
			before := p.net.Load()
			if _, err := io.WriteString(c.conn, tc.req(sid)); err != nil {
				t.Fatal(err)
			}
			res, body := c.read()
			if res.StatusCode != tc.status || tc.check != nil && !tc.check(res, body) {
				t.Fatalf("got %d %v %q, want %d", res.StatusCode, res.Header, body, tc.status)
			}
			if n, want := p.net.Load()-before, int64(1); tc.raw && n != 0 || !tc.raw && n != want {
				t.Fatalf("net/http served %d requests (raw path: %v)", n, tc.raw)
			}
		})
	}
}

// The per-address poll cap holds on owned connections too: a re-poll over
// the cap is refused 429, as the echo route refuses it.
func TestOwnedRepollTakesAPollSlot(t *testing.T) {
	p := newParkServer(t, api.Config{MaxParkedPerIP: 1})
	a, b := p.connect(t, "a"), p.connect(t, "b")
	c := answeredPoll(t, p, a)
	other := dialRaw(t, p.addr)
	other.send("GET", "/data?timeout=20&sessionId="+b, "")
	waitUntil(t, "other poll parked", func() bool { return p.hub.Stats().Parked == 1 })
	c.send("GET", "/data?cursor=1&timeout=20&sessionId="+a, "")
	if res, body := c.read(); res.StatusCode != 429 || res.Header.Get("Retry-After") == "" || !strings.Contains(body, `"code":"rate_limited"`) {
		t.Fatalf("over the cap: %d %v %q", res.StatusCode, res.Header, body)
	}
	// Once the other poll is answered the slot is free again.
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: b}, Data: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	other.read()
	c.send("GET", "/data?cursor=1&timeout=0&sessionId="+a, "")
	if res, _ := c.read(); res.StatusCode != 204 {
		t.Fatalf("under the cap again: %d", res.StatusCode)
	}
}

// An owned connection that sends nothing is closed after the idle timeout;
// one that starts a request and stalls, after the read-header timeout.
func TestOwnedConnectionTimeouts(t *testing.T) {
	p := newParkServer(t, api.Config{Timeouts: h1.Timeouts{Idle: 100 * time.Millisecond, ReadHeader: 100 * time.Millisecond}})
	for i, partial := range []string{"", "GET /data?sessionId=x HTTP/1.1\r\nHost: localhost\r\n"} {
		c := answeredPoll(t, p, p.connect(t, strconv.Itoa(i)))
		if _, err := io.WriteString(c.conn, partial); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if n, err := c.r.ReadByte(); err == nil {
			t.Fatalf("partial %q: read %q, want the connection closed", partial, n)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Fatalf("partial %q: closed after %v, before the timeout", partial, d)
		}
	}
}

// After re-polls that did not re-arm the idle deadline (readDeadline), an
// idle owned connection is still closed when the idle timeout has passed
// since its last request, not earlier (TestReadDeadline has the rules).
func TestOwnedIdleDeadlineAcrossRequests(t *testing.T) {
	const idle = 300 * time.Millisecond
	p := newParkServer(t, api.Config{Timeouts: h1.Timeouts{Idle: idle}})
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	for i := range 3 {
		c.send("GET", "/data?cursor=1&timeout=0&sessionId="+sid, "")
		if res, _ := c.read(); res.StatusCode != 204 {
			t.Fatalf("re-poll %d: %d", i, res.StatusCode)
		}
	}
	start := time.Now()
	if n, err := c.r.ReadByte(); err != io.EOF { // not the client's own read deadline
		t.Fatalf("read %q, %v; want the connection closed by the server", n, err)
	}
	if d := time.Since(start); d < idle*3/4 {
		t.Fatalf("closed after %v of idleness, the idle timeout is %v", d, idle)
	}
}

// A stray CRLF after a push does not start the read-header timeout: the
// publisher's next push may come any time within the idle timeout, as with
// net/http.
func TestStrayCRLFKeepsTheIdleTimeout(t *testing.T) {
	p := newParkServer(t, api.Config{Timeouts: h1.Timeouts{Idle: bound, ReadHeader: 50 * time.Millisecond}})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	one := `{"to":{"sessionId":"` + sid + `"},"data":1}`
	for i := range 2 { // the first push is echo's, the second the owned path's
		if _, err := io.WriteString(c.conn, pushRequest(one, "")+"\r\n"); err != nil {
			t.Fatal(err)
		}
		if res, _ := c.read(); res.StatusCode != 202 {
			t.Fatalf("push %d: %d", i, res.StatusCode)
		}
		time.Sleep(150 * time.Millisecond) // the publisher idles past the read-header timeout
	}
	if _, err := io.WriteString(c.conn, pushRequest(one, "")); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.read(); res.StatusCode != 202 || p.net.Load() != 1 {
		t.Fatalf("push after an idle gap: %d (net/http served %d of 3)", res.StatusCode, p.net.Load())
	}
}

// Shutting the listener down closes owned connections that wait for a
// request; no serving goroutine is left behind.
func TestListenerCloseEndsIdleOwnedConnections(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	waitUntil(t, "connection owned", func() bool { return p.ln.Stats().Idle == 1 })
	p.ln.Close()
	_ = c.conn.SetReadDeadline(time.Now().Add(bound))
	if _, err := c.r.ReadByte(); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read after close: %v, want the connection closed", err)
	}
	if n := p.ln.Stats().Idle; n != 0 {
		t.Fatalf("%d owned connections still recorded", n)
	}
}

func pushRequest(body, extra string) string {
	return "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n" + extra + "\r\n" + body
}

// A publisher's connection is kept after its first push (answered by the
// echo route, then taken over); later pushes are served without net/http,
// with the same answer.
func TestPushesOnAnOwnedConnection(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	send := func(req string) (*http.Response, string) {
		t.Helper()
		if _, err := io.WriteString(c.conn, req); err != nil {
			t.Fatal(err)
		}
		return c.read()
	}
	one := `{"to":{"sessionId":"` + sid + `"},"data":{"n":1}}`
	first, firstBody := send(pushRequest(one, ""))
	if n := p.net.Load(); first.StatusCode != 202 || n != 1 {
		t.Fatalf("first push: %d %q (net/http served %d)", first.StatusCode, firstBody, n)
	}
	res, body := send(pushRequest(one, "User-Agent: pub/1\r\n"))
	if n := p.net.Load(); res.StatusCode != 202 || n != 1 {
		t.Fatalf("second push: %d %q (net/http served %d)", res.StatusCode, body, n)
	}
	for _, h := range []string{"Content-Type", "X-Content-Type-Options"} {
		if res.Header.Get(h) != first.Header.Get(h) || res.Header.Get(h) == "" {
			t.Errorf("%s: %q on the fast path, %q from echo", h, res.Header.Get(h), first.Header.Get(h))
		}
	}
	if res.ContentLength != int64(len(body)) || !strings.HasSuffix(body, "\n") ||
		!strings.Contains(body, `"delivered":1,"stored":0`) || len(body) != len(firstBody) {
		t.Fatalf("answer: %q, echo's was %q", body, firstBody)
	}
	// A batch; an error of the hub (an unknown session: 404); the body in
	// a later segment than the head.
	batch := `[{"to":{"sessionId":"` + sid + `"},"data":2},{"data":3}]`
	if res, body := send(pushRequest(batch, "")); res.StatusCode != 202 || !strings.HasPrefix(body, `[{"id":`) {
		t.Fatalf("batch: %d %q", res.StatusCode, body)
	}
	if res, body := send(pushRequest(`{"to":{"sessionId":"nobody-0123456789"},"data":1}`, "")); res.StatusCode != 404 ||
		!strings.Contains(body, `"code":"session_not_found"`) || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("unknown session: %d %q", res.StatusCode, body)
	}
	req := pushRequest(one, "")
	if _, err := io.WriteString(c.conn, req[:len(req)-len(one)]); err != nil {
		t.Fatal(err)
	}
	if res, body := send(one); res.StatusCode != 202 {
		t.Fatalf("split push: %d %q", res.StatusCode, body)
	}
	// A stray CRLF after a body, as old clients send, is skipped as
	// net/http skips it: before a push served here, and before a request
	// handed to net/http.
	if res, body := send("\r\n" + pushRequest(one, "")); res.StatusCode != 202 {
		t.Fatalf("push after a stray CRLF: %d %q", res.StatusCode, body)
	}
	if res, body := send("\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); res.StatusCode != 200 {
		t.Fatalf("request after a stray CRLF: %d %q", res.StatusCode, body)
	}
	// The same after the first push of a connection (answered by echo,
	// then taken over).
	c2 := dialRaw(t, p.addr)
	if _, err := io.WriteString(c2.conn, pushRequest(one, "")+"\r\n"); err != nil {
		t.Fatal(err)
	}
	if res, _ := c2.read(); res.StatusCode != 202 {
		t.Fatalf("first push: %d", res.StatusCode)
	}
	c2.send("GET", "/healthz", "")
	if res, body := c2.read(); res.StatusCode != 200 {
		t.Fatalf("request after a stray CRLF after the first push: %d %q", res.StatusCode, body)
	}
	// net/http served the first push of each connection and the two
	// /healthz: the other 5 pushes were the raw path's.
	if n := p.net.Load(); n != 4 {
		t.Fatalf("net/http served %d requests, want 4", n)
	}
	msgs, err := p.hub.Poll(context.Background(), sid, 0, false)
	if err != nil || len(msgs) != 7 {
		t.Fatalf("the session got %d messages (%v), want 7", len(msgs), err)
	}
}

// Refusals on an owned publisher connection are the echo route's own.
func TestOwnedPushRefusalsGoToTheServer(t *testing.T) {
	const key = "0123456789abcdef-publisher-key"
	p := newParkServer(t, api.Config{PublishKeys: []string{key}})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	auth := "Authorization: Bearer " + key + "\r\n"
	ok := `{"to":{"sessionId":"` + sid + `"},"data":1}`
	for _, tc := range []struct {
		req    string
		status int
		check  func(*http.Response, string) bool
	}{
		{pushRequest(ok, auth), 202, nil}, // echo, then taken over
		{pushRequest(ok, auth), 202, nil}, // fast path
		{pushRequest(ok, "Authorization: Bearer wrong-key-0123456789\r\n"), 401, func(res *http.Response, body string) bool {
			return res.Header.Get("WWW-Authenticate") != "" && strings.Contains(body, `"code":"unauthorized"`)
		}},
		{pushRequest(ok, auth), 202, nil}, // echo (after a refusal), taken over
		{pushRequest(ok, auth), 202, nil}, // fast path
		{pushRequest(`{"to":{"sessionId":1},"data":1}`, auth), 400, func(_ *http.Response, body string) bool {
			return strings.Contains(body, `{"error":{"code":"invalid_payload","message":"invalid payload: to.sessionId must be a string"}}`)
		}}, // fast path
		{pushRequest(ok, auth), 202, nil},                                        // fast path
		{pushRequest(`{"data":`+strings.Repeat(" ", 5000)+`1}`, auth), 202, nil}, // beyond the buffer: fast path
		{"POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 9000000\r\n" + auth + "\r\n", 413, func(_ *http.Response, body string) bool {
			return strings.Contains(body, `"code":"payload_too_large"`)
		}}, // over MaxPushBody: echo
	} {
		if _, err := io.WriteString(c.conn, tc.req); err != nil {
			t.Fatal(err)
		}
		res, body := c.read()
		if res.StatusCode != tc.status || tc.check != nil && !tc.check(res, body) {
			t.Fatalf("%.60q: %d %v %q, want %d", tc.req, res.StatusCode, res.Header, body, tc.status)
		}
	}
	if n := p.net.Load(); n != 4 { // 9 requests, 5 of them on the raw path
		t.Fatalf("net/http served %d of 9 pushes, want 4", n)
	}
	// The fast path's 400 is byte for byte the echo route's.
	fresh := dialRaw(t, p.addr)
	bad := pushRequest(`{"to":{"sessionId":1},"data":1}`, auth)
	if _, err := io.WriteString(fresh.conn, bad); err != nil {
		t.Fatal(err)
	}
	echoRes, echoBody := fresh.read()
	c = dialRaw(t, p.addr)
	for _, req := range []string{pushRequest(ok, auth), bad} {
		if _, err := io.WriteString(c.conn, req); err != nil {
			t.Fatal(err)
		}
	}
	c.read()
	res, body := c.read()
	if body != echoBody || res.StatusCode != echoRes.StatusCode || res.Header.Get("Content-Type") != echoRes.Header.Get("Content-Type") ||
		res.Header.Get("X-Content-Type-Options") != echoRes.Header.Get("X-Content-Type-Options") {
		t.Fatalf("fast path: %d %v %q; echo: %d %v %q", res.StatusCode, res.Header, body, echoRes.StatusCode, echoRes.Header, echoBody)
	}
}

// An answer larger than the socket can take at once (about 1 MiB of 60 KB
// messages to a client with a small receive buffer) is written partly at
// once and the rest under a deadline: the client gets all of it, intact,
// and the connection serves the next poll. An answer carries at most about
// 1 MiB (poll.MaxAnswerBytes): 100 such messages come in several.
func TestLargeAnswerOnAnOwnedConnection(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	// 1 MB cannot fit the socket buffers at once.
	if err := c.conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	data := []byte(`"` + strings.Repeat("x", 60<<10) + `"`)
	for range 100 {
		if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	cursor, answers := uint64(1), 0
	for cursor < 101 {
		c.send("GET", "/data?cursor="+strconv.FormatUint(cursor, 10)+"&timeout=20&sessionId="+sid, "")
		res, body := c.read()
		var got struct {
			Cursor   uint64
			Messages []struct {
				Seq  uint64
				Data json.RawMessage
			}
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil || res.StatusCode != 200 || res.ContentLength != int64(len(body)) {
			t.Fatalf("large answer: %d, %d of %d bytes: %v", res.StatusCode, len(body), res.ContentLength, err)
		}
		if len(body) > poll.MaxAnswerBytes+len(data)+200 || answers == 0 && len(body) < poll.MaxAnswerBytes/2 {
			t.Fatalf("answer %d: %d bytes, %d messages", answers, len(body), len(got.Messages))
		}
		for i, m := range got.Messages {
			if m.Seq != cursor+uint64(i)+1 || !bytes.Equal(m.Data, data) {
				t.Fatalf("answer %d, message %d: seq %d, %d bytes of data", answers, i, m.Seq, len(m.Data))
			}
		}
		cursor, answers = got.Cursor, answers+1
	}
	if answers < 6 || answers > 8 {
		t.Fatalf("100 messages of 60 KB in %d answers", answers)
	}
	c.send("GET", "/data?cursor=101&timeout=0&sessionId="+sid, "")
	if res, _ := c.read(); res.StatusCode != 204 {
		t.Fatalf("after the large answers: %d", res.StatusCode)
	}
}

// A shutdown waits for a push being served on an owned connection, so its
// answer gets out; and a re-poll asking for ?pretty goes to net/http,
// whose error bodies honour it.
func TestOwnedPushHeldForShutdownAndPrettyRepolls(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	one := `{"to":{"sessionId":"` + sid + `"},"data":1}`
	if _, err := io.WriteString(c.conn, pushRequest(one, "")); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.read(); res.StatusCode != 202 {
		t.Fatalf("first push: %d", res.StatusCode)
	}
	req := pushRequest(one, "")
	if _, err := io.WriteString(c.conn, req[:len(req)-3]); err != nil { // the body's end still to come
		t.Fatal(err)
	}
	waitUntil(t, "push held", func() bool { return p.ln.Stats().Held == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.ln.WaitHeld(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitHeld with a push in flight: %v", err)
	}
	if _, err := io.WriteString(c.conn, req[len(req)-3:]); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.read(); res.StatusCode != 202 || p.net.Load() != 1 {
		t.Fatalf("held push: %d (net/http served %d of 2)", res.StatusCode, p.net.Load())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), bound)
	defer cancel2()
	if err := p.ln.WaitHeld(ctx2); err != nil {
		t.Fatalf("WaitHeld after the answer: %v", err)
	}

	for i, q := range []string{"&pretty", "&pr%65tty"} {
		c := answeredPoll(t, p, p.connect(t, "pretty"+strconv.Itoa(i))) // an owned connection
		c.send("GET", "/data?sessionId=nobody-0123456789"+q, "")
		if res, body := c.read(); res.StatusCode != 404 || !strings.Contains(body, "\n  ") {
			t.Fatalf("%s: %d %q", q, res.StatusCode, body)
		}
	}
}

// A client that stops reading its answers holds up nobody: once its
// socket is full, the push that answers it still returns at once (the
// rest of that answer is written on a goroutine of its own), and when the
// client reads again it gets every answer, intact and in order, and its
// connection serves the next poll.
func TestClientNotReadingDoesNotHoldUpThePublisher(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	if err := c.conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	data := []byte(`"` + strings.Repeat("x", poll.MaxDataBytes-2) + `"`)
	// Each round parks a re-poll and answers it with 64 KB the client does
	// not read; the socket buffers (a few MB on loopback) fill within 400.
	rounds := 0
	for p.ln.Stats().Held == 0 {
		if rounds++; rounds > 400 {
			t.Fatal("the socket never filled")
		}
		c.send("GET", "/data?timeout=20&cursor="+strconv.Itoa(rounds)+"&sessionId="+sid, "")
		waitUntil(t, "re-poll parked", func() bool { return p.hub.Stats().Parked == 1 })
		published := make(chan error, 1)
		go func() {
			_, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: data})
			published <- err
		}()
		select {
		case err := <-published:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Second): // a publish takes microseconds; the write deadline is 10 s
			t.Fatalf("round %d: the publish waits for a client that does not read", rounds)
		}
	}
	for i := 1; i <= rounds; i++ {
		res, body := c.read()
		want := `{"cursor":` + strconv.Itoa(i+1) + `,"messages":[{"seq":` + strconv.Itoa(i+1) + `,`
		if res.StatusCode != 200 || !strings.HasPrefix(body, want) || !strings.Contains(body, string(data)) {
			t.Fatalf("answer %d of %d: %d, %d of %d bytes: %.60q", i, rounds, res.StatusCode, len(body), res.ContentLength, body)
		}
	}
	waitUntil(t, "the late answer finished", func() bool { return p.ln.Stats().Held == 0 })
	c.send("GET", "/data?timeout=0&cursor="+strconv.Itoa(rounds+1)+"&sessionId="+sid, "")
	if res, _ := c.read(); res.StatusCode != 204 {
		t.Fatalf("next poll: %d", res.StatusCode)
	}
}

// panicObserver panics on every answered poll while armed.
type panicObserver struct{ armed atomic.Bool }

func (o *panicObserver) PollAnswered(time.Duration, string, []poll.Message, time.Time) {
	if o.armed.Load() {
		panic("observer")
	}
}

// A panic while a re-poll on an owned connection is answered at once gives
// back what the poll held: a shutdown does not wait for it, and the
// client's place under --max-parked-per-ip is free again. The second half
// goes through echo: its first poll, on a new connection right after the
// echo-served answer of "fresh", checks that echo gives the slot back
// before the answer (429 otherwise); echo's panic itself comes after the
// slot is back, so that half does not test the panic path.
func TestPanicOnAnOwnedRepollGivesBackItsHoldAndSlot(t *testing.T) {
	obs := &panicObserver{}
	p := newParkServer(t, api.Config{Polls: obs, MaxParkedPerIP: 1})
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	obs.armed.Store(true)
	c.send("GET", "/data?cursor=1&timeout=20&sessionId="+sid, "") // answered at once, then the panic
	if res, _ := c.read(); res.StatusCode != 200 {
		t.Fatalf("re-poll: %d", res.StatusCode)
	}
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("after the panic the connection is closed; read: %v", err)
	}
	obs.armed.Store(false)
	waitUntil(t, "the hold given back", func() bool { return p.ln.Stats().Held == 0 })
	fresh := dialRaw(t, p.addr)
	fresh.send("GET", "/data?cursor=2&timeout=0&sessionId="+sid, "")
	if res, body := fresh.read(); res.StatusCode != 204 {
		t.Fatalf("next poll from the same address: %d %s", res.StatusCode, body)
	}

	// A connection's first poll, served through echo (whose recover
	// middleware answers 500).
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`2`)}); err != nil {
		t.Fatal(err)
	}
	obs.armed.Store(true)
	first := dialRaw(t, p.addr)
	first.send("GET", "/data?cursor=1&timeout=20&sessionId="+sid, "")
	if res, _ := first.read(); res.StatusCode != 500 {
		t.Fatalf("first poll with the panic: %d", res.StatusCode)
	}
	obs.armed.Store(false)
	waitUntil(t, "the hold given back", func() bool { return p.ln.Stats().Held == 0 })
	first.send("GET", "/data?cursor=1&timeout=0&sessionId="+sid, "")
	if res, body := first.read(); res.StatusCode != 200 {
		t.Fatalf("next poll from the same address: %d %s", res.StatusCode, body)
	}
}

// blockObserver holds PollAnswered while armed, until release is closed.
type blockObserver struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (o *blockObserver) PollAnswered(time.Duration, string, []poll.Message, time.Time) {
	if o.armed.CompareAndSwap(true, false) {
		o.entered <- struct{}{}
		<-o.release
	}
}

// A poll answered at once on an owned connection gives its
// --max-parked-per-ip place back before the answer goes out: the client,
// at its cap, may poll again at once from another connection.
func TestPollSlotFreeBeforeTheAnswer(t *testing.T) {
	obs := &blockObserver{entered: make(chan struct{}, 1), release: make(chan struct{})}
	p := newParkServer(t, api.Config{Polls: obs, MaxParkedPerIP: 1})
	defer close(obs.release)
	sid := p.connect(t, "lamp")
	c := answeredPoll(t, p, sid)
	if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`2`)}); err != nil {
		t.Fatal(err)
	}
	obs.armed.Store(true)
	c.send("GET", "/data?cursor=1&timeout=20&sessionId="+sid, "") // answered at once
	if res, _ := c.read(); res.StatusCode != 200 {
		t.Fatalf("re-poll: %d", res.StatusCode)
	}
	<-obs.entered // the server is still busy with that poll
	other := dialRaw(t, p.addr)
	other.send("GET", "/data?cursor=2&timeout=0&sessionId="+sid, "")
	if res, body := other.read(); res.StatusCode != 204 {
		t.Fatalf("poll from another connection right after the answer: %d %s", res.StatusCode, body)
	}
}

// A connection the raw path drops (a client that does not read its answer
// past the write timeout) serves nothing of what the client had pipelined
// behind: a push read ahead is not published, no more polls are answered.
func TestNothingServedAfterADrop(t *testing.T) {
	p := newParkServer(t, api.Config{Timeouts: h1.Timeouts{Write: 200 * time.Millisecond}})
	sid := p.connect(t, "lamp")
	witness := p.connect(t, "witness")
	c := answeredPoll(t, p, sid)
	big := `"` + strings.Repeat("x", 60<<10) + `"`
	for range 16 { // 1 MiB waiting: more than the socket buffers take of one answer
		if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(big)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.conn.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	push := `{"to":{"sessionId":"` + witness + `"},"data":"after the drop"}`
	req := strings.Repeat("GET /data?cursor=1&timeout=0&sessionId="+sid+" HTTP/1.1\r\nHost: localhost\r\n\r\n", 4) + pushRequest(push, "")
	if _, err := io.WriteString(c.conn, req); err != nil {
		t.Fatal(err)
	}
	// The client never reads: the server drops it once the write timeout
	// has passed.
	waitUntil(t, "the client dropped", func() bool { return p.ln.Stats().Dropped >= 1 })
	deadline := time.Now().Add(500 * time.Millisecond) // bounded: what must not happen would happen within it
	for time.Now().Before(deadline) {
		if msgs, err := p.hub.Poll(canceled(), witness, 0, false); err != nil || len(msgs) > 0 {
			t.Fatalf("the push pipelined behind a dropped answer was served: %d message(s), %v", len(msgs), err)
		}
		time.Sleep(10 * time.Millisecond) // interval of a bounded wait
	}
}

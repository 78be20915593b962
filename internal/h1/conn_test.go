package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/h1"
)

const bound = 10 * time.Second

// handler serves GET /hello and POST /echo itself, parks GET /park (its
// connection goes to parked), and passes everything else.
type handler struct {
	parked chan *h1.Conn
}

func (h *handler) ServeH1(r *h1.Request) h1.Outcome {
	switch {
	case string(r.Method) == "GET" && string(r.Target) == "/hello":
		r.Conn().Write(200, []byte("\r\nX-Raw: 1"), []byte(`"hi"`))
		return h1.Served
	case string(r.Method) == "POST" && string(r.Target) == "/echo":
		body, err := r.Body()
		if err != nil {
			return h1.Served
		}
		r.Conn().Write(200, nil, body)
		return h1.Served
	case string(r.Method) == "GET" && string(r.Target) == "/park":
		r.Hold()
		h.parked <- r.Conn()
		return h1.Parked
	}
	return h1.Pass
}

// server is a Listener in front of net/http, whose handler takes the
// connection of GET /take over and answers it raw.
type server struct {
	ln   *h1.Listener
	addr string
	net  atomic.Int64 // requests net/http served
	h    *handler
}

func newServer(t *testing.T, timeouts h1.Timeouts) *server {
	t.Helper()
	return newServerUnsent(t, timeouts, 0)
}

// newServerUnsent is newServer with maxUnsent for the listener.
func newServerUnsent(t *testing.T, timeouts h1.Timeouts, maxUnsent int64) *server {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: h1.NewListener(inner, timeouts, maxUnsent), addr: inner.Addr().String(), h: &handler{parked: make(chan *h1.Conn, 1)}}
	s.ln.Handler = s.h
	srv := &http.Server{ReadHeaderTimeout: bound, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.net.Add(1)
		if r.URL.Path == "/take" {
			nc, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			c := s.ln.Take(nc, brw.Reader)
			if c.Write(200, nil, []byte(`"taken"`)) {
				c.Next(false)
			}
			return
		}
		fmt.Fprint(w, "net")
	})}
	go srv.Serve(s.ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		srv.Shutdown(ctx)
		s.ln.Close()
	})
	return s
}

type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (s *server) dial(t *testing.T) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(3 * bound))
	return &client{t, c, bufio.NewReader(c)}
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read() (*http.Response, string) {
	c.t.Helper()
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// take makes a connection the listener's: its first request is net/http's.
func (s *server) take(t *testing.T) *client {
	t.Helper()
	c := s.dial(t)
	c.write(get("/take"))
	if res, body := c.read(); res.StatusCode != 200 || body != `"taken"` {
		t.Fatalf("take: %d %q", res.StatusCode, body)
	}
	return c
}

func TestServedPassedAndPipelined(t *testing.T) {
	s := newServer(t, h1.Timeouts{})
	c := s.take(t)
	c.write(get("/hello") + get("/hello") + get("/other") + get("/hello"))
	for i, want := range []string{`"hi"`, `"hi"`, "net", "net"} {
		res, body := c.read()
		if res.StatusCode != 200 || body != want {
			t.Fatalf("answer %d: %d %q, want %q", i, res.StatusCode, body, want)
		}
		if want == `"hi"` && (res.Header.Get("X-Raw") != "1" || res.Header.Get("Content-Type") != "application/json" ||
			res.Header.Get("Date") == "" || res.ContentLength != 4) {
			t.Fatalf("answer %d headers %v", i, res.Header)
		}
	}
	// net/http served /take and /other, and the /hello after it (the
	// connection went back to net/http with /other); h1 the first two.
	if n := s.net.Load(); n != 3 {
		t.Fatalf("net/http served %d requests, want 3 (/take, /other, the /hello after it)", n)
	}
}

func TestBodyAcrossSegmentsAndStrayCRLF(t *testing.T) {
	s := newServer(t, h1.Timeouts{})
	c := s.take(t)
	c.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab") // most likely its own segment
	c.write("cde\r\n" + get("/hello"))
	if res, body := c.read(); res.StatusCode != 200 || body != "abcde" {
		t.Fatalf("echo: %d %q", res.StatusCode, body)
	}
	if res, body := c.read(); res.StatusCode != 200 || body != `"hi"` {
		t.Fatalf("after a stray CRLF: %d %q", res.StatusCode, body)
	}
	if n := s.net.Load(); n != 1 {
		t.Fatalf("net/http served %d requests, want 1", n)
	}
}

func TestParkedConnectionKeepsWhatWasReadAhead(t *testing.T) {
	s := newServer(t, h1.Timeouts{})
	c := s.take(t)
	c.write(get("/park") + get("/hello"))
	var conn *h1.Conn
	select {
	case conn = <-s.h.parked:
	case <-time.After(bound):
		t.Fatal("not parked")
	}
	if st := s.ln.Stats(); st.Idle != 0 {
		t.Fatalf("a parked connection counted idle: %+v", st)
	}
	if conn.Write(200, nil, []byte(`"late"`)) {
		conn.Next(false)
	}
	for _, want := range []string{`"late"`, `"hi"`} {
		if res, body := c.read(); res.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want %q", res.StatusCode, body, want)
		}
	}
	if n := s.net.Load(); n != 1 {
		t.Fatalf("net/http served %d requests, want 1", n)
	}
}

func TestIdleTimeoutAndClose(t *testing.T) {
	s := newServer(t, h1.Timeouts{Idle: 100 * time.Millisecond})
	c := s.take(t)
	start := time.Now()
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("read %v, want the connection closed by the server", err)
	}
	if d := time.Since(start); d < 75*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}

	s = newServer(t, h1.Timeouts{})
	c = s.take(t)
	deadline := time.Now().Add(bound)
	for s.ln.Stats().Idle != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the connection never waited for a request")
		}
		time.Sleep(time.Millisecond) // interval of a bounded wait
	}
	s.ln.Close()
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("a connection waiting for a request survived Close")
	}
	if st := s.ln.Stats(); st.Idle != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}

func TestWaitHeld(t *testing.T) {
	s := newServer(t, h1.Timeouts{})
	s.ln.Hold()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.ln.WaitHeld(ctx); err == nil {
		t.Fatal("WaitHeld returned with a hold outstanding")
	}
	done := make(chan error, 1)
	go func() { done <- s.ln.WaitHeld(context.Background()) }()
	s.ln.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(bound):
		t.Fatal("WaitHeld did not return after Release")
	}
}

func TestDrainingClosesAfterTheAnswer(t *testing.T) {
	s := newServer(t, h1.Timeouts{})
	var draining atomic.Bool
	s.ln.Draining = draining.Load
	c := s.take(t)
	c.write(get("/park"))
	conn := <-s.h.parked
	draining.Store(true)
	if conn.Write(200, nil, []byte(`1`)) {
		t.Fatal("a draining answer kept its connection")
	}
	res, _ := c.read()
	if !res.Close { // net/http reads Connection: close into Close
		t.Fatalf("a draining answer without Connection: close: %v", res.Header)
	}
}

// bigHandler answers GET /big with 16 MiB, given as pieces: more than a
// loopback socket takes at once.
type bigHandler struct{ handler }

func (h *bigHandler) ServeH1(r *h1.Request) h1.Outcome {
	if string(r.Target) != "/big" {
		return h.handler.ServeH1(r)
	}
	body := bytes.Repeat([]byte("b"), bigBody)
	rest, closing := r.Conn().Start(200, nil, body, func() [][]byte { return [][]byte{body} })
	go r.Conn().Finish(rest, closing)
	return h1.Parked
}

const bigBody = 16 << 20

// A client whose unsent rest does not fit the listener's budget is
// dropped at once rather than held; the budget is given back.
func TestUnsentBudgetDropsTheSlowest(t *testing.T) {
	s := newServer(t, h1.Timeouts{})
	s.ln.Handler = &bigHandler{*s.h}
	c := s.take(t)
	c.write(get("/big"))
	// With the default budget the rest (a list of pieces) fits: the whole
	// answer arrives.
	res, body := c.read()
	if res.StatusCode != 200 || len(body) != bigBody {
		t.Fatalf("big answer: %d, %d bytes", res.StatusCode, len(body))
	}

	s = newServerUnsent(t, h1.Timeouts{}, 10) // not even a rest of one piece fits
	s.ln.Handler = &bigHandler{*s.h}
	c = s.take(t)
	_ = c.conn.(*net.TCPConn).SetReadBuffer(4096)
	c.write(get("/big"))
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err == nil || n >= bigBody {
		t.Fatalf("read %d bytes (%v): want the connection closed before the whole answer", n, err)
	}
	ln := s.ln
	if st := ln.Stats(); st.Dropped != 1 || st.Unsent != 0 {
		t.Fatalf("stats %+v, want one dropped and nothing unsent", st)
	}
}

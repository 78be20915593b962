package api_test

import (
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/session"
)

type depthConn struct {
	net.Conn
	max *atomic.Int64
}

func (c depthConn) Read(b []byte) (int, error) {
	pcs := make([]uintptr, 1<<20)
	if n := int64(runtime.Callers(0, pcs)); n > c.max.Load() {
		c.max.Store(n)
	}
	return c.Conn.Read(b)
}

type depthListener struct {
	net.Listener
	max *atomic.Int64
}

func (l depthListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return depthConn{c, l.max}, nil
}

// A client that keeps its polls pipelined must not grow a chain of
// bufferedConn wrappers, one per poll, that every Read walks (withBuffered
// flattens them): the deepest Read stays shallow after thousands of polls.
func TestPipelinedPollsDoNotNestConnectionWrappers(t *testing.T) {
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	var max atomic.Int64
	p := newParkServerOn(t, api.Config{}, depthListener{inner, &max})
	s, _ := p.hub.Connect(session.Request{DeviceID: "lamp"})
	c := dialRaw(t, p.addr)
	req := "GET /data?timeout=0&sessionId=" + s.ID + " HTTP/1.1\r\nHost: localhost\r\n\r\n"
	for _, n := range []int{10, 1000, 5000} {
		go io.WriteString(c.conn, strings.Repeat(req, n))
		for range n {
			if res, _ := c.read(); res.StatusCode != 204 {
				t.Fatalf("status %d", res.StatusCode)
			}
		}
		t.Logf("after %d more pipelined polls: deepest Read stack %d frames", n, max.Load())
	}
	if max.Load() > 200 {
		t.Fatalf("Read call depth grew to %d frames", max.Load())
	}
}

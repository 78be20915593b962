package api_test

import (
	"io"
	"strconv"
	"testing"

	"github.com/longpoll/longpoll/api"
)

// A GET /data carrying a body (legal in HTTP/1.1; proxies forward it) is
// one request. The parked path hijacks the connection with the body still
// unread and hands the connection back to the server, which then parses
// the body as a second request: a request-smuggling desync behind any
// proxy that pools upstream connections.
func TestParkedPollBodyIsNotASecondRequest(t *testing.T) {
	p := newParkServer(t, api.Config{})
	sid := p.connect(t, "lamp")
	c := dialRaw(t, p.addr)
	smuggled := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	req := "GET /data?timeout=0.05&sessionId=" + sid + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
		strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled
	if _, err := io.WriteString(c.conn, req); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.read(); res.StatusCode != 204 {
		t.Fatalf("poll: %d", res.StatusCode)
	}
	// The only further response must be to a request the client sends now.
	c.send("GET", "/nope-404", "")
	if res, body := c.read(); res.StatusCode != 404 {
		t.Fatalf("the poll's body was served as a request: got %d %q, want the 404 of the next real request", res.StatusCode, body)
	}
}

package api_test

import (
	"io"
	"strconv"
	"testing"

	"github.com/longpoll/longpoll/api"
)

// A GET /data carrying a body (legal in HTTP/1.1; proxies forward it) is
// one request. A path that takes the connection over with the body still
// unread, and hands it back to the server later, would have the server
// parse the body as a second request: a request-smuggling desync behind any
// proxy that pools upstream connections. Checked for a first poll (parked
// after echo routed it) and for a re-poll on a connection the API owns.
func TestPollBodyIsNotASecondRequest(t *testing.T) {
	smuggled := "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
	framings := []string{
		"Content-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled,
		"Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n",
	}
	for _, owned := range []bool{false, true} {
		p := newParkServer(t, api.Config{})
		sid := p.connect(t, "lamp")
		c, cursor := dialRaw(t, p.addr), ""
		if owned {
			c, cursor = answeredPoll(t, p, sid), "cursor=1&"
		}
		for _, framing := range framings {
			req := "GET /data?" + cursor + "timeout=0.05&sessionId=" + sid + " HTTP/1.1\r\nHost: localhost\r\n" + framing
			if _, err := io.WriteString(c.conn, req); err != nil {
				t.Fatal(err)
			}
			if res, _ := c.read(); res.StatusCode != 204 {
				t.Fatalf("owned %v: poll: %d", owned, res.StatusCode)
			}
		}
		// The only further response must be to a request the client sends now.
		c.send("GET", "/nope-404", "")
		if res, body := c.read(); res.StatusCode != 404 {
			t.Fatalf("owned %v: the poll's body was served as a request: got %d %q, want the 404 of the next real request", owned, res.StatusCode, body)
		}
	}
}

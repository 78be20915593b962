package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		head   string
		ok     bool
		method string
		target string
		host   string
		length int
		fields int
	}{
		{"GET /data?sessionId=a&cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n", true, "GET", "/data?sessionId=a&cursor=1", "x", -1, 0},
		{"POST /push HTTP/1.1\r\nhost:x:80\r\nConnection: Keep-Alive\r\ncontent-length:7\r\nA:\t b \r\n\r\n", true, "POST", "/push", "x:80", 7, 3},
		{"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n", true, "GET", "/", "[::1]:8080", 0, 1},
		{"GET /a HTTP/1.0\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"get /a HTTP/1.1\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"GET * HTTP/1.1\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a\x00 HTTP/1.1\r\nHost: x\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\n\r\n", false, "", "", "", 0, 0},                       // no Host
		{"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", false, "", "", "", 0, 0}, // two
		{"GET /a HTTP/1.1\r\nHost: \r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x/y\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\n X-Folded: 1\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\nX: \xff\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET", false, "", "", "", 0, 0}, // more than one head
		{"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, "", "", "", 0, 0},
		{"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", false, "", "", "", 0, 0},
		{"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890\r\n\r\n", false, "", "", "", 0, 0},
		{"GET /a HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: 1\r\n", maxFields+1) + "\r\n", false, "", "", "", 0, 0},
	} {
		var h Head
		ok := parseHead([]byte(tc.head), &h)
		if ok != tc.ok {
			t.Errorf("%q: ok %v, want %v", tc.head, ok, tc.ok)
			continue
		}
		if ok && (string(h.Method) != tc.method || string(h.Target) != tc.target || string(h.Host) != tc.host ||
			h.ContentLength != tc.length || len(h.Fields()) != tc.fields) {
			t.Errorf("%q: %s %s host %s length %d fields %d", tc.head, h.Method, h.Target, h.Host, h.ContentLength, len(h.Fields()))
		}
	}
	var h Head
	parseHead([]byte("GET /p?q=1 HTTP/1.1\r\nHost: x\r\nA: 1\r\na: 2\r\n\r\n"), &h)
	if v, n := h.Get("A"); string(v) != "1" || n != 2 {
		t.Errorf("Get(A) = %q, %d", v, n)
	}
	if q, ok := h.Query(); string(q) != "q=1" || !ok || string(h.Path()) != "/p" {
		t.Errorf("Query %q %v, Path %q", q, ok, h.Path())
	}
}

// FuzzParseHead checks the parser against net/http's: every head it
// accepts, net/http reads as the same plain HTTP/1.1 request: method,
// target, host, length, keep-alive, no other body framing, and each field
// with the same value.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET /data?sessionId=a&cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /data HTTP/1.1\r\nhost:x:80\r\nConnection: Keep-Alive\r\nUser-Agent: a b\r\n\r\n",
		"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\nAuthorization: Bearer k\r\n\r\n",
		"GET /data?%zz&timeout=1e3 HTTP/1.1\r\nHost: [::1]\r\nA:\t\r\nA: 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		var h Head
		if !parseHead(head, &h) {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted %q, net/http refuses it: %v", head, err)
		}
		wantLen := int64(h.ContentLength)
		if h.ContentLength < 0 {
			wantLen = 0
		}
		if r.Proto != "HTTP/1.1" || r.Method != string(h.Method) || r.RequestURI != string(h.Target) ||
			r.Host != string(h.Host) || len(r.Header["Host"]) != 0 || r.ContentLength != wantLen ||
			len(r.TransferEncoding) != 0 || r.Close {
			t.Fatalf("accepted %q as %s %s host %s length %d; net/http reads %s %s host %s length %d te %v close %v",
				head, h.Method, h.Target, h.Host, h.ContentLength, r.Method, r.RequestURI, r.Host, r.ContentLength, r.TransferEncoding, r.Close)
		}
		for _, fl := range h.Fields() {
			vs := r.Header.Values(string(fl.Name))
			found := false
			for _, v := range vs {
				found = found || v == string(fl.Value)
			}
			if !found {
				t.Fatalf("accepted %q with %s: %q; net/http has %q", head, fl.Name, fl.Value, vs)
			}
		}
	})
}

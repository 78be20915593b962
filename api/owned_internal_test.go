package api

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestParseRepoll(t *testing.T) {
	const max = 1024
	for _, tc := range []struct {
		head  string
		query string
		ok    bool
	}{
		{"GET /data?sessionId=a&cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n", "sessionId=a&cursor=1", true},
		{"GET /data HTTP/1.1\r\nhost:x:80\r\nConnection: Keep-Alive\r\nUser-Agent: a b\r\n\r\n", "", true},
		{"GET /data?a HTTP/1.1\r\nHost: [::1]:8080\r\nAccept:\t*/*\r\n\r\n", "a", true},
		{"GET /data?a HTTP/1.0\r\nHost: x\r\n\r\n", "", false},
		{"get /data?a HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"HEAD /data?a HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET /data/?a HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET /datax HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET http://x/data?a HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET /data?a#f HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET  /data?a HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET /data?a\x00 HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\n\r\n", "", false},                                 // no Host
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "", false},           // two
		{"GET /data?a HTTP/1.1\r\nHost: \r\n\r\n", "", false},                       // empty
		{"GET /data?a HTTP/1.1\r\nHost: x/y\r\n\r\n", "", false},                    // not a host
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "", false}, // a body framing
		{"GET /data?a HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n\r\n", "", false}, // CORS: echo route
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\n X-Folded: 1\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nX: \xff\r\n\r\n", "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\n\r\nGET", "", false}, // more than one head
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", max) + "\r\n\r\n", "", false},
	} {
		rp, ok := parseRepoll([]byte(tc.head), max)
		if ok != tc.ok || ok && rp.query != tc.query {
			t.Errorf("%q: got %v %q, want %v %q", tc.head, ok, rp.query, tc.ok, tc.query)
		}
	}
}

// FuzzParseRepoll checks the fast path's parser against net/http's: every
// head it accepts, net/http reads as the same plain GET /data (same query,
// one Host, no body, keep-alive, no Origin) within the header cap as
// limitHeaders counts it.
func FuzzParseRepoll(f *testing.F) {
	for _, s := range []string{
		"GET /data?sessionId=a&cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /data HTTP/1.1\r\nhost:x:80\r\nConnection: Keep-Alive\r\nUser-Agent: a b\r\n\r\n",
		"GET /data?a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
		"GET /data?%zz&timeout=1e3 HTTP/1.1\r\nHost: [::1]\r\nA:\t\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const max = 512
	f.Fuzz(func(t *testing.T, head []byte) {
		rp, ok := parseRepoll(head, max)
		if !ok {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted %q, net/http refuses it: %v", head, err)
		}
		if r.Method != http.MethodGet || r.URL.Path != "/data" || r.URL.RawQuery != rp.query ||
			r.Proto != "HTTP/1.1" || r.Host == "" || len(r.Header["Host"]) > 0 || r.ContentLength != 0 ||
			len(r.TransferEncoding) != 0 || r.Close || r.Header.Get("Origin") != "" {
			t.Fatalf("accepted %q as query %q; net/http reads %s %q %q host %q len %d te %v close %v",
				head, rp.query, r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.ContentLength, r.TransferEncoding, r.Close)
		}
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 12
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > max {
			t.Fatalf("accepted %q of %d header bytes over the cap %d", head, n, max)
		}
	})
}

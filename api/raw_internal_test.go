package api

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// hot is what the raw path makes of head: parsed by h1, routed by the
// API with a header cap of max.
func hot(head []byte, max int) (r rawRoute, bodyLen int, ok bool) {
	var h h1.Head
	if !h1.ParseHead(head, &h) {
		return rawRoute{}, 0, false
	}
	a := New(poll.NewHub(poll.Config{}), Config{MaxHeaderBytes: max})
	r, ok = a.route(&h)
	return r, h.ContentLength, ok
}

func TestRawRouteRepoll(t *testing.T) {
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
		h, _, ok := hot([]byte(tc.head), max)
		if ok != tc.ok || ok && (h.query != tc.query || h.push) {
			t.Errorf("%q: got %v %+v, want %v %q", tc.head, ok, h, tc.ok, tc.query)
		}
	}
}

func TestRawRoutePush(t *testing.T) {
	const max = 1024
	for _, tc := range []struct {
		head string
		n    int
		auth string
		ok   bool
	}{
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n", 12, "", true},
		{"POST /push HTTP/1.1\r\nhost: x\r\ncontent-length:7\r\ncontent-type: application/json \r\nAuthorization: Bearer k\r\nConnection: keep-alive\r\n\r\n", 7, "Bearer k", true},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n", 0, "", false},                                           // no length
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n", 0, "", false},                      // empty
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, "", false}, // twice
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: +5\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1234567890\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", 0, "", false}, // no type
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 5\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nContent-Encoding: gzip\r\n\r\n", 0, "", false},
		{"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 0, "", false},
		{"POST /push?x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n", 0, "", false},
		{"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n", 0, "", false},
		{"PUT /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n", 0, "", false},
		{"GET /data?a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", 0, "", false}, // a poll with a body
	} {
		h, n, ok := hot([]byte(tc.head), max)
		if ok != tc.ok || ok && (!h.push || n != tc.n || h.auth != tc.auth) {
			t.Errorf("%q: got %v %+v, want %v", tc.head, ok, h, tc.ok)
		}
	}
}

// FuzzRawRoute checks the raw path's reading of a head (h1's parser and
// the API's route) against net/http's: every head it serves, net/http
// reads as the same plain GET /data (same query) or POST /push (same
// length, JSON, same Authorization): one Host, no other body framing,
// keep-alive, no Origin, within the header cap as limitHeaders counts it.
func FuzzRawRoute(f *testing.F) {
	for _, s := range []string{
		"GET /data?sessionId=a&cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /data HTTP/1.1\r\nhost:x:80\r\nConnection: Keep-Alive\r\nUser-Agent: a b\r\n\r\n",
		"GET /data?a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
		"GET /data?%zz&timeout=1e3 HTTP/1.1\r\nHost: [::1]\r\nA:\t\r\n\r\n",
		"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\nAuthorization: Bearer k\r\n\r\n",
		"GET /data?sessionId=a HTTP/1.1\r\nHost: x\r\nPragma: no-cache\r\nX: " + strings.Repeat("a", 440) + "\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const max = 512
	f.Fuzz(func(t *testing.T, head []byte) {
		h, bodyLen, ok := hot(head, max)
		if !ok {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted %q, net/http refuses it: %v", head, err)
		}
		same := r.Proto == "HTTP/1.1" && r.Host != "" && len(r.Header["Host"]) == 0 &&
			len(r.TransferEncoding) == 0 && !r.Close && r.Header.Get("Origin") == ""
		if h.push {
			same = same && r.Method == http.MethodPost && r.URL.Path == "/push" && r.URL.RawQuery == "" &&
				r.ContentLength == int64(bodyLen) && bodyLen > 0 &&
				r.Header.Get("Content-Type") == "application/json" && len(r.Header["Authorization"]) <= 1 &&
				r.Header.Get("Authorization") == h.auth
		} else {
			same = same && r.Method == http.MethodGet && r.URL.Path == "/data" && r.URL.RawQuery == h.query &&
				r.ContentLength == 0
		}
		if !same {
			t.Fatalf("accepted %q as %+v; net/http reads %s %q %q host %q len %d te %v close %v header %v",
				head, h, r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.ContentLength, r.TransferEncoding, r.Close, r.Header)
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

func TestLogPath(t *testing.T) {
	sid := session.NewID()
	for in, want := range map[string]string{
		"/data":                        "/data",
		"/longpoll.js":                 "/longpoll.js",
		"/data/" + sid:                 "/data/" + sid[:8] + "…",
		"/data?sessionId=" + sid:       "/data?sessionId=" + sid[:8] + "…",
		"/x/" + sid + "/y/" + sid:      "/x/" + sid[:8] + "…/y/" + sid[:8] + "…",
		"/data;sessionId=" + sid + ";": "/data;sessionId=" + sid[:8] + "…;",
		"/a-very-long_name-of-15":      "/a-very-l…",
	} {
		if got := logPath(in); got != want {
			t.Errorf("logPath(%q) = %q, want %q", in, got, want)
		}
		if got := logPath(in); strings.Contains(got, sid) {
			t.Errorf("logPath(%q) keeps the session ID", in)
		}
	}
}

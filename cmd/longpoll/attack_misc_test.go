package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The smaller items of issue 13: loopback publishers without a key need a
// loopback Host and no cross-site Origin (DNS rebinding); logs never carry
// a full session id; a JWT with a "crit" header is refused.

// TestLoopbackPublisherNeedsLoopbackHost: with no publish key, a
// publisher request from loopback is accepted only with a loopback Host
// (localhost, 127.0.0.0/8, [::1], any port) and no cross-site Origin:
// a page on the server's host that reached it through DNS rebinding
// (Host: evil.example) or a cross-site fetch (Origin: http://evil.example)
// gets 403, with a message that tells the operator about --publish-key.
// Both paths: net/http, and the raw path's second push on a publisher's
// kept connection.
func TestLoopbackPublisherNeedsLoopbackHost(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0")
	s.connect(`{"deviceId":"d","userId":"u"}`)
	_, port, _ := strings.Cut(s.addr(), ":")
	endpoints := []struct {
		method, path, body string
		ok                 int
	}{
		{"POST", "/push", `{"to":{"topic":"t"},"data":1}`, 202},
		{"GET", "/presence?userId=u", "", 200},
		{"GET", "/stats", "", 200},
		{"POST", "/disconnect", `{"userId":"nobody"}`, 200},
	}
	ctype := func(body string) string {
		if body == "" {
			return ""
		}
		return "application/json"
	}
	for _, e := range endpoints {
		for _, h := range [][]string{
			{"Host", "evil.example"},
			{"Host", "evil.example:" + port},
			{"Host", "127.0.0.1.evil.example:" + port},
			{"Host", "localhost.evil.example"},
			{"Origin", "http://evil.example"},
			{"Origin", "https://evil.example:" + port},
		} {
			r := s.fresh(e.method, e.path, ctype(e.body), e.body, h...)
			if r.status != 403 || errorCode(r.body) != "forbidden" || !strings.Contains(errorMessage(r.body), "--publish-key") {
				t.Errorf("%s %s with %s: %q: %d %s, want 403 forbidden naming --publish-key", e.method, e.path, h[0], h[1], r.status, r.body)
			}
		}
		for _, host := range []string{"localhost", "localhost:8080", "localhost:" + port, "127.0.0.1", "127.0.0.1:" + port, "127.1.2.3:9", "[::1]", "[::1]:8080"} {
			if r := s.fresh(e.method, e.path, ctype(e.body), e.body, "Host", host); r.status != e.ok {
				t.Errorf("%s %s with Host: %s: %d %s, want %d", e.method, e.path, host, r.status, r.body, e.ok)
			}
		}
	}

	// The raw path: a publisher's connection is kept after its first push
	// (202); its next push names another Host.
	c := dialTCP(t, s.addr(), 0)
	defer c.Close()
	br := bufio.NewReader(c)
	writeAll(t, c, pushRequest(s.addr(), `{"to":{"topic":"t"},"data":1}`))
	if res, body := readAnswer(t, c, br); res.StatusCode != 202 || res.Close {
		t.Fatalf("first push: %d (close %v) %s", res.StatusCode, res.Close, body)
	}
	body := `{"to":{"topic":"t"},"data":2}`
	writeAll(t, c, fmt.Sprintf("POST /push HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if res, b := readAnswer(t, c, br); res.StatusCode != 403 || !strings.Contains(errorMessage(b), "--publish-key") {
		t.Errorf("second push on a kept connection with Host: evil.example: %d %s, want 403 naming --publish-key", res.StatusCode, b)
	}
}

// TestLogsNeverCarrySessionIDs: whatever a request looks like (a session
// id in a malformed target, in a path segment, beside a bad escape, in
// headers, in a request net/http itself refuses, on both paths), at
// --log-level debug and in both log formats, the server's output never
// holds a full session id (its 8-character prefix may name it).
func TestLogsNeverCarrySessionIDs(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			s := start(t, "--heartbeat-interval", "0", "--log-level", "debug", "--log-format", format)
			sid := s.connect(`{"deviceId":"secret-holder","topics":["t"]}`)["sessionId"].(string)
			addr := s.addr()
			host := "Host: " + addr + "\r\n"
			reqs := []string{
				"GET /data;sessionId=" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"GET /data/" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"GET /" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"GET /data/../" + sid + "/x HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&timeout=0&x=%zz HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?x=%zz&sessionId=" + sid + "&timeout=0 HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "%zz HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&cursor=abc HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&timeout=-1 HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&cursor=99 HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + ";cursor=1 HTTP/1.1\r\n" + host + "\r\n",
				"GET http://" + addr + "/data?sessionId=" + sid + "&timeout=0 HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&timeout=0 HTTP/1.0\r\n\r\n",
				"GET /data?sessionId=" + sid + " HTTP/9.9\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "\r\n\r\n",
				"GET /data?sessionId=" + sid + " HTTP/1.1\r\n" + host + "Bad Header " + sid + "\r\n\r\n",
				"GET /data?sessionId=" + sid + " HTTP/1.1\r\n" + host + "X-Pad: " + strings.Repeat("p", 17000) + "\r\n\r\n",
				"GET /data?sessionId=" + sid + "&timeout=0 HTTP/1.1\r\n" + host + "X-Forwarded-For: " + sid + "\r\nReferer: http://x/?sessionId=" + sid +
					"\r\nCookie: sessionId=" + sid + "\r\nUser-Agent: " + sid + "\r\nX-Session-Id: " + sid + "\r\n\r\n",
				"GET /data?sessionId=" + sid + "&timeout=0 HTTP/1.1\r\n" + host + "Origin: http://" + sid + ".example\r\n\r\n",
				"POST /send?sessionId=" + sid + " HTTP/1.1\r\n" + host + "Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"to\"",
				"POST /send?sessionId=" + sid + " HTTP/1.1\r\n" + host + "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
				"POST /send;sessionId=" + sid + " HTTP/1.1\r\n" + host + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
				"DELETE /session;sessionId=" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"DELETE /session/" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"POST /push HTTP/1.1\r\n" + host + "Authorization: Bearer " + sid + "\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
				"POST /connect?sessionId=" + sid + " HTTP/1.1\r\n" + host + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
				"OPTIONS /data?sessionId=" + sid + " HTTP/1.1\r\n" + host + "Origin: http://evil.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
			}
			for _, r := range reqs {
				if _, err := rawExchange(addr, []byte(r)); err != nil {
					t.Errorf("%q: %v", clip([]byte(r)), err)
				}
			}
			// The raw path: a connection taken over by a parked poll,
			// then malformed re-polls on it.
			c := dialTCP(t, addr, 0)
			defer c.Close()
			br := bufio.NewReader(c)
			writeAll(t, c, pollRequest(addr, sid, "&timeout=20"))
			s.waitParked(t, 1, 15*time.Second)
			if r := s.fresh("POST", "/push", "application/json", `{"to":{"topic":"t"},"data":1}`); r.status != 202 {
				t.Fatalf("push: %d", r.status)
			}
			readAnswer(t, c, br)
			for _, r := range []string{
				"GET /data?sessionId=" + sid + "&cursor=zz HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&cursor=77 HTTP/1.1\r\n" + host + "\r\n",
				"GET /data;sessionId=" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"GET /data/" + sid + " HTTP/1.1\r\n" + host + "\r\n",
				"GET /data?sessionId=" + sid + "&cursor=99&x=%zz HTTP/1.1\r\n" + host + "\r\n",
			} {
				writeAll(t, c, r)
				if res, _ := readAnswer(t, c, br); res.StatusCode < 400 {
					t.Errorf("%q: %d", clip([]byte(r)), res.StatusCode)
				}
			}
			c.Close()
			// the session ends: its end is logged too
			if r := s.fresh("DELETE", "/session?sessionId="+sid, "", ""); r.status != 204 {
				t.Errorf("delete: %d", r.status)
			}
			if _, err := s.stop(); err != nil {
				t.Errorf("exit: %v", err)
			}
			logs := s.logs.String()
			if n := strings.Count(logs, "request"); n < len(reqs)/2 {
				t.Fatalf("only %d log lines about requests at --log-level debug:\n%s", n, logs)
			}
			if strings.Contains(logs, sid) {
				var lines []string
				for _, l := range strings.Split(logs, "\n") {
					if strings.Contains(l, sid) {
						lines = append(lines, l)
					}
				}
				t.Errorf("the full session id appears in %d log lines, e.g.:\n%s", len(lines), strings.Join(lines[:min(len(lines), 5)], "\n"))
			}
		})
	}
}

// TestJWTCritHeaderRefused: a connect token with a "crit" header (RFC 7515
// section 4.1.11: the recipient must understand every extension it
// lists, and longpoll understands none) is refused 401, whether crit names
// an extension or a registered claim; the same token without it is
// accepted.
func TestJWTCritHeaderRefused(t *testing.T) {
	t.Setenv("LONGPOLL_CONNECT_SECRET", e2eSecret)
	s := start(t, "--heartbeat-interval", "0")
	token := func(header map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		for k, v := range header {
			tok.Header[k] = v
		}
		str, err := tok.SignedString([]byte(e2eSecret))
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	connect := func(tok string) response {
		return s.doAuth("POST", "/connect", "application/json", `{"deviceId":"lamp"}`, "Bearer "+tok)
	}
	if r := connect(token(nil)); r.status != http.StatusCreated {
		t.Fatalf("the token without crit: %d %s", r.status, r.body)
	}
	for _, h := range []map[string]any{
		{"crit": []string{"x-must-understand"}, "x-must-understand": true},
		{"crit": []string{"exp"}},
		{"crit": []string{"b64"}, "b64": false},
		{"crit": []string{}},
	} {
		wantCode(t, connect(token(h)), 401, "unauthorized")
	}
}

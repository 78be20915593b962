package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The hostile-input test: a few thousand malformed requests (random
// methods, paths, queries, headers and bodies over HTTP; junk, oversized
// and slow requests over raw TCP) against the running binary. None may get
// a 5xx, a 4xx must carry API.md's JSON error body, the server must not
// panic or race, every goroutine it started for them must end, and it must
// still answer a normal poll afterwards.

const (
	hostileKey      = "hostile-publish-key-0123456789"
	hostileRequests = 3000 // over HTTP
	hostileRaw      = 300  // over raw TCP
	hostileSlow     = 16   // slow-header connections
	hostileWorkers  = 8
)

// crashed matches a Go runtime panic, a panic recovered by the server and a
// race report in the server's output.
var crashed = regexp.MustCompile(`(?m)^panic: |msg="panic serving request"|WARNING: DATA RACE`)

// hostileSeed is the generator's seed; LONGPOLL_HOSTILE_SEED replays
// another run.
func hostileSeed(t *testing.T) uint64 {
	if s := os.Getenv("LONGPOLL_HOSTILE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LONGPOLL_HOSTILE_SEED: %v", err)
		}
		return n
	}
	return 6
}

func TestHostileInput(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0", "--publish-key", hostileKey,
		"--cors-origins", "https://app.example", "--poll-timeout", "200ms", "--max-poll-timeout", "200ms",
		"--read-header-timeout", "1s", "--max-header-bytes", "8192", "--max-parked-per-ip", "64")
	addr := strings.TrimPrefix(s.base, "http://")
	var sids []string
	for i := range 3 {
		sids = append(sids, s.connect(fmt.Sprintf(`{"deviceId":"known-%d","userId":"u","topics":["t","$presence"]}`, i))["sessionId"].(string))
	}
	client.CloseIdleConnections()
	before := stableGoroutines(t, s.base)

	seed := hostileSeed(t)
	g := &hostileGen{rng: rand.New(rand.NewPCG(seed, 0x10c9011)), sids: sids}
	var (
		mu       sync.Mutex
		failures []string
		statuses = map[int]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	began := time.Now()

	// slow headers, alongside everything else
	var slow sync.WaitGroup
	for range hostileSlow {
		slow.Go(func() {
			if err := slowloris(addr, 15*time.Second); err != nil {
				fail("slow headers: %v", err)
			}
		})
	}

	// HTTP: generated up front, so the request set depends on the seed only
	reqs := make([]hostileReq, hostileRequests)
	for i := range reqs {
		reqs[i] = g.request()
	}
	work := make(chan hostileReq)
	var wg sync.WaitGroup
	var transports []*http.Transport
	for range hostileWorkers {
		tr := &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}
		transports = append(transports, tr)
		hc := &http.Client{Transport: tr, Timeout: 15 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		wg.Go(func() {
			for r := range work {
				status, body, err := r.send(hc, s.base)
				if err != nil {
					fail("%s: %v", r, err)
					continue
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
				if status >= 500 {
					fail("%s: %d %s", r, status, clip(body))
				} else if status >= 400 && r.method != "HEAD" && !isErrorBody(body) {
					fail("%s: %d without the JSON error body: %q", r, status, clip(body))
				}
			}
		})
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()

	// raw TCP: junk, oversized, half-sent requests
	raws := make([][]byte, hostileRaw)
	for i := range raws {
		raws[i] = g.raw()
	}
	rawWork := make(chan []byte)
	for range hostileWorkers {
		wg.Go(func() {
			for payload := range rawWork {
				if status, err := rawExchange(addr, payload); err != nil {
					fail("raw %q: %v", clip(payload), err)
				} else if status >= 500 && status != http.StatusHTTPVersionNotSupported {
					// 505 is net/http's answer to an HTTP version it does not speak
					fail("raw %q: %d", clip(payload), status)
				}
			}
		})
	}
	for _, p := range raws {
		rawWork <- p
	}
	close(rawWork)
	wg.Wait()
	slow.Wait()
	t.Logf("seed %d: %d HTTP + %d raw + %d slow requests in %v; statuses %v", seed, hostileRequests, hostileRaw, hostileSlow, time.Since(began).Round(time.Millisecond), statuses)

	for _, f := range failures {
		t.Error(f)
	}
	if logs := s.logs.String(); crashed.MatchString(logs) {
		t.Errorf("the server panicked or raced:\n%s", logs)
	}

	// The server still works: a normal connect, park, push, poll.
	if r := s.do("GET", "/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz after the hostile run: %d", r.status)
	}
	sid := s.connect(`{"deviceId":"after","topics":["after"]}`)["sessionId"].(string)
	got := make(chan pollBody, 1)
	go func() {
		_, b := s.poll(sid, "&timeout=0.2") // capped at the server's 200ms; retried below
		got <- b
	}()
	b := <-got
	if len(b.Messages) != 0 {
		t.Fatalf("unexpected messages %+v", b)
	}
	go func() {
		for {
			st, b := s.poll(sid, "")
			if st != http.StatusNoContent {
				got <- b
				return
			}
		}
	}()
	r := s.doAuth("POST", "/push", "application/json", `{"to":{"topic":"after"},"data":"still here"}`, "Bearer "+hostileKey)
	if r.status != 202 {
		t.Fatalf("push after the hostile run: %d %s", r.status, r.body)
	}
	select {
	case b := <-got:
		if len(b.Messages) != 1 || string(b.Messages[0].Data) != `"still here"` {
			t.Fatalf("poll after the hostile run: %+v", b)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("poll after the hostile run not answered")
	}

	// No goroutine leaked: once the clients' connections are closed, the
	// count returns to where it was.
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	client.CloseIdleConnections()
	var now int
	deadline := time.Now().Add(15 * time.Second)
	for now = goroutines(t, s.base); now > before+2; now = goroutines(t, s.base) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after the hostile run", before, now)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
	t.Logf("goroutines: %d before, %d after", before, now)
	if _, err := s.stop(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// goroutines reads the server's go_goroutines gauge from GET /metrics over
// a connection that is closed right after.
func goroutines(t *testing.T, base string) int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	res, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}

// stableGoroutines waits (bounded) until two readings agree.
func stableGoroutines(t *testing.T, base string) int {
	t.Helper()
	prev := goroutines(t, base)
	for range 200 {
		n := goroutines(t, base)
		if n == prev {
			return n
		}
		prev = n
	}
	return prev
}

func isErrorBody(b []byte) bool {
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal(b, &body) == nil && body.Error != nil && body.Error.Code != "" && body.Error.Message != ""
}

func clip(b []byte) string {
	if len(b) > 160 {
		return string(b[:160]) + "…"
	}
	return string(b)
}

// hostileReq is one generated HTTP request.
type hostileReq struct {
	method, target string
	header         http.Header
	body           []byte
}

func (r hostileReq) String() string {
	return fmt.Sprintf("%s %s (%d header, %d body bytes) %q", r.method, clip([]byte(r.target)), headerSize(r.header), len(r.body), clip(r.body))
}

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}

func (r hostileReq) send(hc *http.Client, base string) (int, []byte, error) {
	req, err := http.NewRequest(r.method, base+r.target, bytes.NewReader(r.body))
	if err != nil {
		return 0, nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header = r.header.Clone()
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}

// hostileGen generates requests from a seeded source.
type hostileGen struct {
	rng  *rand.Rand
	sids []string
	n    int
}

func (g *hostileGen) pick(list ...string) string { return list[g.rng.IntN(len(list))] }

func (g *hostileGen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *hostileGen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	return b
}

func (g *hostileGen) sid() string {
	switch g.rng.IntN(6) {
	case 0, 1, 2:
		return g.sids[g.rng.IntN(len(g.sids))]
	case 3:
		return base64.RawURLEncoding.EncodeToString(g.bytes(18))
	case 4:
		return url.QueryEscape(string(g.bytes(g.rng.IntN(40))))
	}
	return g.pick("", "%zz", "%", strings.Repeat("A", 2000), "../../etc/passwd", "null", "\u00e9\u00e9", "a%00b")
}

func (g *hostileGen) number() string {
	return g.pick("0", "1", "2", "-1", "1.5", "1e3", "1e308", "-0", "NaN", "Inf", "-Inf", "0x10", "18446744073709551615",
		"18446744073709551616", "99999999999999999999999", "", " 1", "1 ", "+1", "0.0001", "%31", strconv.Itoa(g.rng.IntN(1000)))
}

func (g *hostileGen) query() string {
	var parts []string
	for range g.rng.IntN(5) {
		switch g.rng.IntN(9) {
		case 0, 1:
			parts = append(parts, "sessionId="+g.sid())
		case 2:
			parts = append(parts, "cursor="+url.QueryEscape(g.number()))
		case 3:
			parts = append(parts, "timeout="+url.QueryEscape(g.number()))
		case 4:
			parts = append(parts, "userId="+g.pick("u", "alice", "", "a+b", "a%20b", strings.Repeat("x", 300)))
		case 5:
			parts = append(parts, "deviceId="+g.pick("known-0", "d", "", "%zz"))
		case 6:
			parts = append(parts, g.pick("cursor=1&cursor=2", ";", "&&", "=", "sessionId", "%zz=1", "a=%", "timeout=0;cursor=1"))
		default:
			parts = append(parts, url.QueryEscape(string(g.bytes(4)))+"="+url.QueryEscape(string(g.bytes(8))))
		}
	}
	if len(parts) == 0 && g.chance(0.5) {
		return ""
	}
	return "?" + strings.Join(parts, "&")
}

// methodOf is the method of each endpoint, used most of the time.
var publisherPaths = map[string]bool{"/push": true, "/disconnect": true, "/stats": true, "/presence": true}

var methodOf = map[string]string{
	"/connect": "POST", "/data": "GET", "/send": "POST", "/session": "DELETE", "/push": "POST", "/disconnect": "POST",
	"/stats": "GET", "/presence": "GET", "/healthz": "GET", "/metrics": "GET", "/": "GET", "/index.html": "GET", "/longpoll.js": "GET",
}

func (g *hostileGen) path() string {
	if g.chance(0.75) {
		return g.pick("/connect", "/data", "/send", "/session", "/push", "/disconnect", "/stats", "/presence", "/healthz", "/metrics", "/", "/index.html", "/longpoll.js")
	}
	return g.pick("/connect/", "//data", "/DATA", "/data;x", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/push%00", "/%ff", "/.git/config",
		"/session/..", "/index.html/", "/"+strings.Repeat("a/", 500), "/"+url.PathEscape(string(g.bytes(10))), "/\u00fcber", "/*")
}

// bodyKind is the jsonBody case that fits each endpoint.
var bodyKind = map[string]int{"/connect": 0, "/push": 1, "/send": 3, "/disconnect": 4}

// jsonBody returns a JSON body, most of the time one made for path.
func (g *hostileGen) jsonBody(path string) []byte {
	n := g.n
	g.n++
	kind, ok := bodyKind[path]
	if !ok || g.chance(0.3) {
		kind = g.rng.IntN(9)
	}
	if kind == 1 && g.chance(0.5) {
		kind = 2 // a batch
	}
	var b string
	switch kind {
	case 0:
		b = fmt.Sprintf(`{"deviceId":"h-%d","userId":"u","topics":["t","a/b","$presence"],"meta":{"fw":"1.2","n":[1,2,{"x":null}]}}`, n%50)
	case 1:
		b = fmt.Sprintf(`{"to":{"sessionId":%q},"topic":"t","data":{"n":%d},"ttl":60,"id":"k-%d"}`, g.sids[n%len(g.sids)], n, n%20)
	case 2:
		b = `[{"to":{"userId":"u"},"data":1},{"to":{"topic":"t"},"data":"x"},{"data":[1,2,3]}]`
	case 3:
		b = `{"to":{"deviceId":"known-1"},"topic":"t","data":"hi"}`
	case 4:
		b = g.pick(`{"userId":"nobody"}`, `{"deviceId":"nobody"}`, `{"sessionId":"nope"}`)
	case 5:
		b = g.pick(strings.Repeat("[", 20000), strings.Repeat(`{"a":`, 5000), `"\ud800"`, `{"deviceId":"\u0000"}`, `1e999`, `{"data":1e999}`,
			`{"deviceId":"d","deviceId":"e"}`, `{"to":{"topic":"t"},"data":`+strings.Repeat("9", 70000)+`}`, `{"deviceId":"d","meta":{"a":"`+strings.Repeat("x", 5000)+`"}}`)
	case 6:
		items := make([]string, 1001)
		for i := range items {
			items[i] = `{"data":1}`
		}
		b = "[" + strings.Join(items, ",") + "]"
	case 7:
		b = `{"to":{"topic":"$presence"},"data":{"event":"online"}}`
	default:
		return g.bytes(g.rng.IntN(2000))
	}
	return g.mutate([]byte(b))
}

// mutate damages a valid body some of the time.
func (g *hostileGen) mutate(b []byte) []byte {
	if len(b) == 0 || g.chance(0.5) {
		return b
	}
	for range 1 + g.rng.IntN(4) {
		i := g.rng.IntN(len(b))
		switch g.rng.IntN(5) {
		case 0: // truncate
			b = b[:i]
		case 1: // flip a byte
			b[i] = byte(g.rng.UintN(256))
		case 2: // insert junk
			b = append(b[:i:i], append(g.bytes(1+g.rng.IntN(8)), b[i:]...)...)
		case 3: // duplicate a stretch
			j := i + g.rng.IntN(len(b)-i)
			b = append(b[:j:j], append(append([]byte{}, b[i:j]...), b[j:]...)...)
		case 4: // swap in a weird value
			w := g.pick(`null`, `true`, `-0`, `1e400`, `""`, `[]`, `{}`, `"\u0000"`, `"$heartbeat"`, `"`+strings.Repeat("z", 300)+`"`)
			b = append(b[:i:i], append([]byte(w), b[i:]...)...)
		}
		if len(b) == 0 {
			break
		}
	}
	return b
}

func (g *hostileGen) formBody() []byte {
	return g.mutate([]byte(g.pick("deviceId=f&userId=u&topics=a,b&topics=c&meta=%7B%22k%22%3A1%7D", "deviceId=%zz", "deviceId=a&deviceId=b",
		"topics="+strings.Repeat("t,", 100), "deviceId=f&meta=not-json", "=&=&", "deviceId=f&extra=1")))
}

func (g *hostileGen) request() hostileReq {
	r := hostileReq{header: http.Header{}}
	path := g.path()
	r.target = path + g.query()
	r.method = methodOf[path]
	if r.method == "" || g.chance(0.2) {
		r.method = g.pick("GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO", "get", "M-SEARCH")
	}
	switch {
	case g.chance(0.6):
		r.header.Set("Content-Type", "application/json")
	case g.chance(0.9):
		r.header.Set("Content-Type", g.pick("application/x-www-form-urlencoded", "application/json; charset=utf-8", "APPLICATION/JSON",
			"text/plain", "multipart/form-data; boundary=x", "application/", ";;", "application/json; charset=\"", "*/*"))
	}
	switch ct := r.header.Get("Content-Type"); {
	case strings.Contains(ct, "form"):
		r.body = g.formBody()
	case g.chance(0.9):
		r.body = g.jsonBody(path)
	}
	switch {
	case publisherPaths[path] && g.chance(0.7):
		r.header.Set("Authorization", "Bearer "+hostileKey)
	case g.chance(0.5):
		r.header.Set("Authorization", g.pick("Bearer "+hostileKey, "Bearer "+hostileKey, "Bearer wrong", "Bearer ", "Basic Zm9vOmJhcg==", hostileKey,
			"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "Bearer "+base64.RawURLEncoding.EncodeToString(g.bytes(30))+"."+base64.RawURLEncoding.EncodeToString(g.bytes(60))+".sig",
			"Bearer "+strings.Repeat("k", 3000)))
	}
	if g.chance(0.3) {
		r.header.Set("Origin", g.pick("https://app.example", "https://evil.example", "null", "http://"+strings.Repeat("o", 300), "garbage"))
		r.header.Set("Sec-Fetch-Site", g.pick("cross-site", "same-origin", "same-site", "none", "bogus"))
	}
	if g.chance(0.2) {
		r.header.Set("Access-Control-Request-Method", g.pick("POST", "GET", "DELETE", "PUT", ""))
		r.header.Set("Access-Control-Request-Headers", g.pick("authorization", "x-evil", ""))
	}
	if g.chance(0.15) {
		r.header.Set("X-Forwarded-For", g.pick("127.0.0.1", "::1, 10.0.0.1", "garbage", strings.Repeat("1.1.1.1, ", 200)))
	}
	if g.chance(0.1) {
		r.header.Set("Range", g.pick("bytes=0-10", "bytes=99999-", "bytes=-1", "bytes=a-b", "bytes=0-1,2-3,4-5"))
	}
	if g.chance(0.05) {
		r.header.Set("X-Pad", strings.Repeat("p", 6000+g.rng.IntN(6000))) // around --max-header-bytes: 200 or JSON 431
	}
	if g.chance(0.03) {
		for i := range 200 {
			r.header.Set("X-Many-"+strconv.Itoa(i), "v")
		}
	}
	if g.chance(0.05) {
		r.header.Set("Accept-Encoding", g.pick("gzip", "br, deflate", "*;q=0", "identity;q=0"))
	}
	return r
}

// raw returns bytes to send over a fresh TCP connection.
func (g *hostileGen) raw() []byte {
	switch g.rng.IntN(16) {
	case 0:
		return g.bytes(1 + g.rng.IntN(512))
	case 1:
		return []byte("GET / HTTP/1.1\r\n\r\n") // no Host
	case 2:
		return []byte(g.pick("GET /healthz HTTP/1.0\r\n\r\n", "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", "GET /healthz\r\n\r\n", "GET  /  HTTP/1.1\r\nHost: x\r\n\r\n",
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"))
	case 3:
		return []byte("POST /connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + g.pick("-1", "abc", "1, 2", "99999999999999999999") + "\r\n\r\n{}")
	case 4: // both Content-Length and chunked
		return []byte("POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	case 5: // bad chunks
		return []byte("POST /connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + g.pick("zz\r\n", "5\r\n{\"de\r\nffffffffffffffffff\r\n", "3\r\nabcdef\r\n0\r\n\r\n"))
	case 6: // malformed header lines
		return []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n" + g.pick("NoColon\r\n", "Bad Name: v\r\n", "X: a\x00b\r\n", " folded: v\r\n", ": empty\r\n", "X-\x7f: v\r\n") + "\r\n")
	case 7: // huge header: net/http's own 431
		return []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 100<<10) + "\r\n\r\n")
	case 8: // a flood of small headers
		var b strings.Builder
		b.WriteString("GET /healthz HTTP/1.1\r\nHost: x\r\n")
		for i := range 5000 {
			fmt.Fprintf(&b, "X-%d: v\r\n", i)
		}
		b.WriteString("\r\n")
		return []byte(b.String())
	case 9: // pipelined
		return []byte(strings.Repeat("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 3) + "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	case 10: // a body shorter than announced, then the client leaves
		return []byte("POST /connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"deviceId\":")
	case 11: // headers never finished: cut by the read-header timeout
		return []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
	case 12: // huge request line
		return []byte("GET /data?sessionId=" + strings.Repeat("s", 50<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n")
	case 13: // a real request with a random body
		body := g.jsonBody("")
		return append([]byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
			g.pick("/push", "/connect", "/send?sessionId="+g.sids[0], "/disconnect"), hostileKey, len(body))), body...)
	case 14: // upgrade attempts
		return []byte("GET /data HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: " + g.pick("h2c", "websocket", "TLS/1.0") + "\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	}
	return []byte(g.pick("\r\n\r\n\r\n", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"))
}

// rawExchange sends payload on a fresh connection, closes its sending
// side, and returns the status of the first response (0 for none: the
// server closed the connection without an answer).
func rawExchange(addr string, payload []byte) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(payload) // the server may close before reading it all
	// The client is done: an unfinished request ends at EOF instead of at
	// the server's timeouts (the slow clients test those).
	_ = conn.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if line == "" {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 0, fmt.Errorf("no answer and no close within 5 s of the end of the request")
		}
		return 0, nil
	}
	if !strings.HasPrefix(line, "HTTP/1.") {
		return 0, fmt.Errorf("not an HTTP response: %q (%v)", line, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	return strconv.Atoi(f[1])
}

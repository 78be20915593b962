package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, raw, body string
		status          int
		keep            bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nEtag: 7\r\n\r\nhello", "hello", 200, true},
		{"chunked", "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", "abcde", 202, true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, true},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", 200, false},
		{"until eof", "HTTP/1.0 200 OK\r\n\r\nrest", "rest", 200, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, body, h, keep, got, err := readResponse(bufio.NewReader(strings.NewReader(c.raw)), "GET")
			if err != nil || !got {
				t.Fatalf("err %v got %v", err, got)
			}
			if st != c.status || string(body) != c.body || keep != c.keep {
				t.Fatalf("got %d %q keep=%v, want %d %q keep=%v", st, body, keep, c.status, c.body, c.keep)
			}
			if c.name == "length" && h.etag != "7" {
				t.Fatalf("etag %q", h.etag)
			}
		})
	}
}

func TestRawClientKeepAliveAndCancel(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		if r.URL.Path == "/park" {
			<-r.Context().Done()
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Last-Modified", "x")
		w.Write(append([]byte(r.Method+" "), b...))
	}))
	defer srv.Close()
	f, err := newClientFactory(srv.URL, &sourceDialer{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := f.client(ctx, false)
	for i := range 3 {
		st, b, h, err := c.do(ctx, "POST", "/x", []byte(`{"i":1}`), nil)
		if err != nil || st != 200 || string(b) != `POST {"i":1}` || h.lastModified != "x" {
			t.Fatalf("request %d: %d %q %+v %v", i, st, b, h, err)
		}
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d connections for 3 requests, want 1", n)
	}
	done := make(chan error, 1)
	go func() {
		_, _, _, err := c.do(ctx, "GET", "/park", nil, nil)
		done <- err
	}()
	cancel() // whether the request is parked yet or not, it must end with an error
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("parked request returned no error after cancel")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("cancel did not end the parked request")
	}
}

// TestPublishKey: with --key the longpoll target sends the key as a
// bearer token on pushes, batches, broadcasts and /stats, and never on a
// device's requests; without it, no Authorization header at all.
func TestPublishKey(t *testing.T) {
	var mu sync.Mutex
	auth := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth[r.Method+" "+r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		switch r.URL.Path {
		case "/connect":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"sessionId":"s1","cursor":0}`)
		case "/data":
			w.WriteHeader(http.StatusNoContent)
		case "/stats":
			io.WriteString(w, `{"parked":0}`)
		default: // /push: a single push or a batch of one
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusAccepted)
			if strings.HasPrefix(string(b), "[") {
				io.WriteString(w, `[{"delivered":1}]`)
			} else {
				io.WriteString(w, `{"delivered":1}`)
			}
		}
	}))
	defer srv.Close()
	f, err := newClientFactory(srv.URL, &sourceDialer{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"pk-secret", ""} {
		tg, err := newTarget("longpoll", "r", 1, 0, key)
		if err != nil {
			t.Fatal(err)
		}
		c := f.client(ctx, false)
		s, err := tg.newSub(ctx, c, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tg.poll(ctx, c, s); err != nil {
			t.Fatal(err)
		}
		if o, err := tg.push(ctx, c, s, []byte(`{}`)); o != accepted || err != nil {
			t.Fatalf("push: %v %v", o, err)
		}
		pubAuth := map[string]string{}
		mu.Lock()
		pubAuth["push"] = auth["POST /push"]
		mu.Unlock()
		if outs, err := tg.pushBatch(ctx, c, []*sub{s}, [][]byte{[]byte(`{}`)}); err != nil || outs[0] != accepted {
			t.Fatalf("batch: %v %v", outs, err)
		}
		mu.Lock()
		pubAuth["batch"] = auth["POST /push"]
		mu.Unlock()
		if _, err := tg.broadcast(ctx, c, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		tg.parked(ctx, c)
		c.Close()
		mu.Lock()
		pubAuth["broadcast"], pubAuth["stats"] = auth["POST /push"], auth["GET /stats"]
		device := auth["POST /connect"] + auth["GET /data"]
		mu.Unlock()
		want := ""
		if key != "" {
			want = "Bearer " + key
		}
		for what, got := range pubAuth {
			if got != want {
				t.Errorf("key %q: %s sent Authorization %q, want %q", key, what, got, want)
			}
		}
		if device != "" {
			t.Errorf("key %q: a device request sent Authorization %q", key, device)
		}
	}
}

// TestFailedRun: a scenario fails the invocation when it recorded errors
// or any push failed, not when pushes were only refused (429).
func TestFailedRun(t *testing.T) {
	for _, c := range []struct {
		r    result
		want bool
	}{
		{result{Metrics: map[string]float64{"push_errors": 0, "refused": 12}}, false},
		{result{Metrics: map[string]float64{"push_errors": 3}}, true},
		{result{Metrics: map[string]float64{}, Errors: []string{"round 1: broadcast: HTTP 401"}}, true},
		{result{Metrics: map[string]float64{}}, false},
	} {
		if got := failedRun(&c.r); got != c.want {
			t.Errorf("%+v: failed %v, want %v", c.r, got, c.want)
		}
	}
}

func TestTrackerCounts(t *testing.T) {
	tr := newTracker("r", 2, 2, 0)
	for _, k := range []int{0, 0, 1} {
		s := tr.next(0, k)
		tr.record(0, k, s, accepted)
	}
	s := tr.next(1, 1)
	tr.record(1, 1, s, refused)
	msg := func(k, p int, s uint32) []byte {
		return mustJSON(payload{R: "r", K: k, P: p, S: s, T: nowNS()})
	}
	// Subscriber 0 gets seq 2 then 1 (reordered) and 2 again (duplicate);
	// subscriber 1 gets the refused message and never its accepted one.
	tr.onMsgs(0, nowNS(), [][]byte{msg(0, 0, 2), msg(0, 0, 1), msg(0, 0, 2)})
	tr.onMsgs(1, nowNS(), [][]byte{msg(1, 1, 1), msg(0, 0, 1), []byte(`{"r":"other"}`)})
	got := tr.tally()
	if got.delivered != 3 || got.lost != 1 || got.dup != 1 || got.reord != 1 ||
		got.refusedDelivered != 1 || got.misrouted != 1 || got.stale != 1 {
		t.Fatalf("tally %+v", got)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:1", "http://localhost:2", "http://[::1]:3", "http://127.9.9.9:4/p"} {
		if err := checkLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:1", "http://192.168.1.1", "http://example.com", "https://127.0.0.1"} {
		if checkLoopback(u) == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if ips, err := parseIPRange("127.0.0.2-127.0.0.4,127.0.1.1"); err != nil || len(ips) != 4 {
		t.Errorf("range: %v %v", ips, err)
	}
	if _, err := parseIPRange("10.0.0.1-10.0.0.2"); err == nil {
		t.Error("non-loopback source accepted")
	}
}

func TestTable(t *testing.T) {
	rs := []result{
		{Target: "longpoll", Scenario: "throughput", Metrics: map[string]float64{"deliveries_per_s": 20000, "p99_ms": 6, "lost": 0}},
		{Target: "nchan", Scenario: "throughput", Metrics: map[string]float64{"deliveries_per_s": 18000, "p99_ms": 8.5, "lost": 0}},
		{Target: "golongpoll", Scenario: "throughput", Metrics: map[string]float64{"deliveries_per_s": 10600, "p99_ms": 21}},
		{Target: "nchan", Scenario: "batch", Skipped: "no batch"},
	}
	out := renderTable(rs)
	for _, want := range []string{"| throughput: deliveries/s | 20,000 | 18,000 | 10,600 | ≥ Nchan, ≥ 2× golongpoll | **no** |",
		"| throughput: latency p99, ms | 6 | 8.50 | 21 | ≤ 1.5× Nchan | yes |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// The ab table shows each metric's median over the runs of each file and
// their ratio.
func TestRenderAB(t *testing.T) {
	res := func(v float64) result {
		return result{Target: "longpoll", Scenario: "throughput", Time: fmt.Sprint(v), Metrics: map[string]float64{"deliveries_per_s": v}}
	}
	out := renderAB("longpoll", []result{res(100), res(300), res(200)}, []result{res(250), res(150)})
	if !strings.Contains(out, "| throughput: deliveries/s | 200 | 200 | 1.00 |") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(out, "3 and 2 scenario runs") {
		t.Fatalf("runs not counted:\n%s", out)
	}
}

// -h and --help print the usage and exit 0; an unknown flag exits 2.
func TestHelpExitCodes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{{[]string{"--help"}, 0}, {[]string{"-h"}, 0}, {[]string{"--bogus"}, 2}} {
		if got := benchMain(c.args); got != c.want {
			t.Errorf("benchMain(%v) = %d, want %d", c.args, got, c.want)
		}
	}
	if got := abMain([]string{"-h"}); got != 0 {
		t.Errorf("ab -h = %d, want 0", got)
	}
	if got := tableMain([]string{"-h"}); got != 0 {
		t.Errorf("table -h = %d, want 0", got)
	}
}

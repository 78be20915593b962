package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Session i polls on node i%n and is pushed to on node (i+1)%n: with one
// node both are node 0, with three always two different nodes; a
// broadcast goes to node 1%n.
func TestNodeAssignment(t *testing.T) {
	for i := range 7 {
		if p, q := pollNode(i, 1), pushNode(i, 1); p != 0 || q != 0 {
			t.Errorf("one node: session %d polls on %d, pushed on %d; want 0, 0", i, p, q)
		}
	}
	want := [][2]int{{0, 1}, {1, 2}, {2, 0}, {0, 1}, {1, 2}, {2, 0}, {0, 1}}
	for i, w := range want {
		if p, q := pollNode(i, 3), pushNode(i, 3); p != w[0] || q != w[1] {
			t.Errorf("three nodes: session %d polls on %d, pushed on %d; want %d, %d", i, p, q, w[0], w[1])
		}
	}
	if b1, b3 := broadcastNode(1), broadcastNode(3); b1 != 0 || b3 != 1 {
		t.Errorf("broadcast on node %d of 1, %d of 3; want 0, 1", b1, b3)
	}
}

func TestParseURLs(t *testing.T) {
	for _, c := range []struct {
		raw, target string
		want        []string
	}{
		{"http://127.0.0.1:8080", "longpoll", []string{"http://127.0.0.1:8080"}},
		{"http://127.0.0.1:8080", "nchan", []string{"http://127.0.0.1:8080"}},
		{"http://127.0.0.1:1, http://127.0.0.2:1,http://[::1]:3", "longpoll", []string{"http://127.0.0.1:1", "http://127.0.0.2:1", "http://[::1]:3"}},
	} {
		got, err := parseURLs(c.raw, c.target)
		if err != nil || strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("parseURLs(%q, %s) = %q, %v; want %q", c.raw, c.target, got, err, c.want)
		}
	}
	for _, c := range []struct{ raw, target, errHas string }{
		{"http://127.0.0.1:1,http://10.0.0.1:2", "longpoll", `"http://10.0.0.1:2": only loopback`},
		{"http://192.168.1.1:1,http://127.0.0.1:2", "longpoll", `"http://192.168.1.1:1": only loopback`},
		{"http://127.0.0.1:1,http://example.com:2,http://127.0.0.1:3", "longpoll", "example.com"},
		{"http://127.0.0.1:1,https://127.0.0.1:2", "longpoll", "https://127.0.0.1:2"},
		{"http://127.0.0.1:1,http://127.0.0.1:2", "nchan", "needs --target longpoll"},
		{"http://127.0.0.1:1,http://127.0.0.1:2", "golongpoll", "needs --target longpoll"},
		{"http://127.0.0.1:1,", "longpoll", "empty"},
		{"http://127.0.0.1:1,http://127.0.0.1:1/", "longpoll", "twice"},
	} {
		_, err := parseURLs(c.raw, c.target)
		if err == nil || !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("parseURLs(%q, %s): error %v, want one with %q", c.raw, c.target, err, c.errHas)
		}
	}
	// The command refuses them before it talks to anything.
	if got := benchMain([]string{"-q", "--url", "http://127.0.0.1:1,http://10.1.2.3:80"}); got != 2 {
		t.Errorf("benchMain with a non-loopback URL in the list = %d, want 2", got)
	}
	if got := benchMain([]string{"-q", "--target", "nchan", "--url", "http://127.0.0.1:1,http://127.0.0.1:2"}); got != 2 {
		t.Errorf("benchMain with a list for nchan = %d, want 2", got)
	}
}

// fakeCluster is a few in-process longpoll nodes sharing their sessions
// (as nodes sharing Redis do), recording which node got which request.
type fakeCluster struct {
	mu     sync.Mutex
	boxes  map[string]*fakeBox
	index  map[string]int // sessionId -> index in its device id
	parked []int
	reqs   [][]fakeReq // per node
	n      int
	srvs   []*httptest.Server
}

type fakeBox struct {
	msgs [][]byte
	wake chan struct{}
}

type fakeReq struct {
	what string // connect, data, push, broadcast, close
	idx  int    // session index (device id suffix); -1 for a broadcast
}

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	fc := &fakeCluster{boxes: map[string]*fakeBox{}, index: map[string]int{}, parked: make([]int, n), reqs: make([][]fakeReq, n)}
	for node := range n {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fc.serve(node, w, r) }))
		t.Cleanup(srv.Close)
		fc.srvs = append(fc.srvs, srv)
	}
	return fc
}

func (fc *fakeCluster) urls() []string {
	var out []string
	for _, s := range fc.srvs {
		out = append(out, s.URL)
	}
	return out
}

func (fc *fakeCluster) note(node int, what string, idx int) {
	fc.reqs[node] = append(fc.reqs[node], fakeReq{what, idx})
}

func (fc *fakeCluster) deliver(sid string, data []byte) bool {
	b := fc.boxes[sid]
	if b == nil {
		return false
	}
	b.msgs = append(b.msgs, data)
	close(b.wake)
	b.wake = make(chan struct{})
	return true
}

type fakePush struct {
	To   map[string]string `json:"to"`
	Data json.RawMessage   `json:"data"`
}

func (fc *fakeCluster) serve(node int, w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sid := r.URL.Query().Get("sessionId")
	switch r.Method + " " + r.URL.Path {
	case "POST /connect":
		var c struct {
			DeviceID string `json:"deviceId"`
		}
		json.Unmarshal(body, &c)
		i, _ := strconv.Atoi(c.DeviceID[strings.LastIndexByte(c.DeviceID, '-')+1:])
		fc.mu.Lock()
		sid := fmt.Sprintf("s%d", len(fc.index))
		fc.index[sid] = i
		fc.boxes[sid] = &fakeBox{wake: make(chan struct{})}
		fc.note(node, "connect", i)
		fc.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"sessionId":%q,"cursor":0}`, sid)
	case "GET /data":
		cursor, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		fc.mu.Lock()
		fc.note(node, "data", fc.index[sid])
		fc.mu.Unlock()
		deadline := time.After(150 * time.Millisecond)
		for {
			fc.mu.Lock()
			b := fc.boxes[sid]
			if b == nil {
				fc.mu.Unlock()
				w.WriteHeader(http.StatusGone)
				return
			}
			if len(b.msgs) > cursor {
				var sb strings.Builder
				fmt.Fprintf(&sb, `{"cursor":%d,"messages":[`, len(b.msgs))
				for i := cursor; i < len(b.msgs); i++ {
					if i > cursor {
						sb.WriteByte(',')
					}
					fmt.Fprintf(&sb, `{"seq":%d,"data":%s}`, i+1, b.msgs[i])
				}
				sb.WriteString("]}")
				fc.mu.Unlock()
				io.WriteString(w, sb.String())
				return
			}
			wake := b.wake
			fc.parked[node]++
			fc.mu.Unlock()
			var timeout bool
			select {
			case <-wake:
			case <-deadline:
				timeout = true
			case <-r.Context().Done():
				timeout = true
			}
			fc.mu.Lock()
			fc.parked[node]--
			fc.mu.Unlock()
			if timeout {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	case "POST /push":
		fc.mu.Lock()
		defer fc.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		if strings.HasPrefix(string(body), "[") {
			var items []fakePush
			json.Unmarshal(body, &items)
			out := make([]string, len(items))
			for i, it := range items {
				sid := it.To["sessionId"]
				fc.note(node, "push", fc.index[sid])
				fc.deliver(sid, it.Data)
				out[i] = `{"delivered":1}`
			}
			io.WriteString(w, "["+strings.Join(out, ",")+"]")
			return
		}
		var it fakePush
		json.Unmarshal(body, &it)
		if it.To == nil {
			fc.note(node, "broadcast", -1)
			for sid := range fc.boxes {
				fc.deliver(sid, it.Data)
			}
			fmt.Fprintf(w, `{"delivered":%d}`, len(fc.boxes))
			return
		}
		sid := it.To["sessionId"]
		fc.note(node, "push", fc.index[sid])
		fc.deliver(sid, it.Data)
		io.WriteString(w, `{"delivered":1}`)
	case "GET /stats":
		fc.mu.Lock()
		fmt.Fprintf(w, `{"parked":%d}`, fc.parked[node])
		fc.mu.Unlock()
	case "DELETE /session":
		fc.mu.Lock()
		fc.note(node, "close", fc.index[sid])
		delete(fc.boxes, sid)
		fc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// check verifies that every request went to its node: a session's
// connect, polls and close to pollNode, pushes to pushNode, broadcasts to
// broadcastNode. It returns how many requests of each kind it saw.
func (fc *fakeCluster) check(t *testing.T) map[string]int {
	t.Helper()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	seen := map[string]int{}
	for node, reqs := range fc.reqs {
		for _, q := range reqs {
			seen[q.what]++
			var want int
			switch q.what {
			case "push":
				want = pushNode(q.idx, fc.n)
			case "broadcast":
				want = broadcastNode(fc.n)
			default:
				want = pollNode(q.idx, fc.n)
			}
			if node != want {
				t.Errorf("%d nodes: %s of session %d went to node %d, want %d", fc.n, q.what, q.idx, node, want)
			}
		}
	}
	return seen
}

func fakeEnv(t *testing.T, fc *fakeCluster, run string) *env {
	cfg := config{target: "longpoll", urls: fc.urls(), url: strings.Join(fc.urls(), ","),
		sessions: 7, publishers: 3, singlePublishers: 2, batch: 5, rate: 300, latencyDuration: 300 * time.Millisecond, rounds: 2, fanoutN: 7, connects: 7, connectConc: 2,
		duration: 300 * time.Millisecond, concurrency: 4, hold: 1, setupTimeout: 5 * time.Second,
		drain: 3 * time.Second, cleanup: true, fillSessions: 5, fillMessages: 12, quiet: true}
	tg, err := newTarget("longpoll", run, cfg.hold, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: tg, cfg: cfg, run: run, log: func(string, ...any) {}}
	for _, u := range cfg.urls {
		cf, err := newClientFactory(u, &sourceDialer{}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		e.cfs = append(e.cfs, cf)
	}
	return e
}

// TestMultiNodeRouting runs the scenarios against one and three fake
// nodes: each request reaches the node its session is assigned to, every
// message arrives, and the result lists the URLs when there are several.
func TestMultiNodeRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("runs scenarios for a few seconds")
	}
	for _, n := range []int{1, 3} {
		for _, scen := range []string{"throughput", "latency", "batch", "single-session", "fanout", "connect", "fill"} {
			t.Run(fmt.Sprintf("%d/%s", n, scen), func(t *testing.T) {
				fc := newFakeCluster(t, n)
				fc.n = n
				e := fakeEnv(t, fc, "r"+strconv.Itoa(n)+scen)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				r := runScenario(ctx, e, scen)
				if len(r.Errors) > 0 || r.Skipped != "" {
					t.Fatalf("errors %q skipped %q", r.Errors, r.Skipped)
				}
				seen := fc.check(t)
				switch scen {
				case "fanout":
					if seen["broadcast"] != 2 || r.Metrics["lost"] != 0 {
						t.Errorf("broadcasts %d, lost %v", seen["broadcast"], r.Metrics["lost"])
					}
				case "connect":
					if seen["connect"] != 7 {
						t.Errorf("connects %d", seen["connect"])
					}
				case "fill":
					if seen["push"] != 12 || r.Metrics["accepted"] != 12 {
						t.Errorf("pushed %d, accepted %v", seen["push"], r.Metrics["accepted"])
					}
				default:
					if seen["push"] == 0 || r.Metrics["delivered"] == 0 || r.Metrics["lost"] != 0 || r.Metrics["dup"] != 0 {
						t.Errorf("pushes %d, metrics %v", seen["push"], r.Metrics)
					}
				}
				urls, ok := r.Params["urls"]
				if n == 1 && ok {
					t.Errorf("one URL: params list urls %v", urls)
				}
				if n > 1 && fmt.Sprint(urls) != fmt.Sprint(fc.urls()) {
					t.Errorf("params urls %v, want %v", urls, fc.urls())
				}
				if n > 1 && scen != "connect" && scen != "fill" && scen != "single-session" {
					for node := range n {
						if len(fc.reqs[node]) == 0 {
							t.Errorf("node %d got no request", node)
						}
					}
				}
			})
		}
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/redistest"
	"github.com/longpoll/longpoll/internal/testserver"
)

// startNodes starts n servers of one deployment on redisArgs.
func startNodes(t *testing.T, n int, redisArgs ...string) []*testserver.Server {
	t.Helper()
	nodes := make([]*testserver.Server, n)
	for i := range nodes {
		nodes[i] = testserver.Start(t, append([]string{"--heartbeat-interval", "0"}, redisArgs...)...)
	}
	return nodes
}

func urls(nodes []*testserver.Server) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.URL
	}
	return out
}

// The cluster test: three nodes on one Redis (AOF, appendfsync always),
// 200 sessions polling on a random node each time, 32 publishers pushing
// on random nodes; one node killed with SIGKILL mid-run, and Redis killed
// and started again mid-run. Every push answered 202 is delivered exactly
// once, in each publisher's order; none refused appears (a 503 while Redis
// is away may have stored its push or not: such pushes are counted with
// the cut-off ones).
func TestClusterKeepsEveryAcceptedMessage(t *testing.T) {
	const (
		sessions   = 200
		publishers = 32
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	nodes := startNodes(t, 3, "--redis-url", rs.URL())
	bases := urls(nodes)
	load := startLoad(t, seed, bases, sessions, publishers, true)
	load.waitAccepted(t, 500+int64(rng.IntN(500)))
	victim := rng.IntN(len(nodes))
	nodes[victim].Kill()
	load.col.restarts.Add(1)
	t.Logf("node %d killed at %d accepted", victim, load.col.accepted.Load())
	load.waitAccepted(t, load.col.accepted.Load()+500)
	rs.Stop()
	load.col.restarts.Add(1)
	t.Logf("redis killed at %d accepted", load.col.accepted.Load())
	rs.Restart()
	load.waitAccepted(t, load.col.accepted.Load()+500)
	if err := nodes[victim].Restart(); err != nil {
		t.Fatal(err)
	}
	load.waitAccepted(t, load.col.accepted.Load()+500)
	load.finish(t)
}

// The same load on three nodes of a three-master Redis Cluster, one node
// killed with SIGKILL mid-run and started again.
func TestClusterOnRedisClusterKeepsEveryAcceptedMessage(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rc := redistest.Cluster(t)
	nodes := startNodes(t, 3, "--redis-cluster", strings.Join(redistest.Addrs(rc), ","))
	load := startLoad(t, seed, urls(nodes), 200, 32, false)
	load.waitAccepted(t, 500)
	victim := int(seed % 3)
	nodes[victim].Kill()
	load.col.restarts.Add(1)
	load.waitAccepted(t, load.col.accepted.Load()+500)
	if err := nodes[victim].Restart(); err != nil {
		t.Fatal(err)
	}
	load.waitAccepted(t, load.col.accepted.Load()+500)
	load.finish(t)
}

// clusterClient is a test's view of one deployment.
type clusterClient struct {
	t     *testing.T
	c     *http.Client
	nodes []string
}

func (cc clusterClient) post(node int, path, body string, out any) int {
	cc.t.Helper()
	code, err := postJSON(cc.c, cc.nodes[node]+path, body, out)
	if err != nil {
		cc.t.Fatalf("POST %s on node %d: %v", path, node, err)
	}
	return code
}

func (cc clusterClient) connect(node int, body string) string {
	cc.t.Helper()
	var out struct{ SessionID string }
	if code := cc.post(node, "/connect", body, &out); code != http.StatusCreated {
		cc.t.Fatalf("connect %s on node %d: %d", body, node, code)
	}
	return out.SessionID
}

type pollAnswer struct {
	code int
	body string
	msgs []pollMessage
}

type pollMessage struct {
	Seq   uint64
	Topic string
	Data  json.RawMessage
}

// poll polls on node and returns its answer; async, on a channel.
func (cc clusterClient) poll(node int, sid string, cursor uint64, timeout int) <-chan pollAnswer {
	ch := make(chan pollAnswer, 1)
	go func() {
		url := fmt.Sprintf("%s/data?sessionId=%s&cursor=%d&timeout=%d", cc.nodes[node], sid, cursor, timeout)
		resp, err := cc.c.Get(url)
		if err != nil {
			ch <- pollAnswer{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := pollAnswer{code: resp.StatusCode, body: string(b)}
		if a.code == http.StatusOK {
			var v struct{ Messages []pollMessage }
			_ = json.Unmarshal(b, &v)
			a.msgs = v.Messages
		}
		ch <- a
	}()
	return ch
}

// next polls sid on node from *cursor, holding at most hold seconds, and
// moves the cursor past what it got; false: the hold ended empty (204).
func (cc clusterClient) next(node int, sid string, cursor *uint64, hold int) ([]pollMessage, bool) {
	cc.t.Helper()
	a := recv(cc.t, cc.poll(node, sid, *cursor, hold), "a poll")
	switch a.code {
	case http.StatusNoContent:
		return nil, false
	case http.StatusOK:
	default:
		cc.t.Fatalf("poll of %s on node %d: %d %s", sid, node, a.code, a.body)
	}
	for _, m := range a.msgs {
		*cursor = m.Seq
	}
	return a.msgs, true
}

// parked waits until node says it holds n parked polls.
func (cc clusterClient) parked(node, n int) {
	cc.t.Helper()
	testserver.WaitFor(cc.t, fmt.Sprintf("%d parked polls on node %d", n, node), 10*time.Second, func() bool {
		var st struct{ Parked int }
		resp, err := cc.c.Get(cc.nodes[node] + "/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st.Parked == n
	})
}

func recv(t *testing.T, ch <-chan pollAnswer, what string) pollAnswer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: no answer within 15s", what)
		return pollAnswer{}
	}
}

// Cross-node behaviour, each on three nodes of one Redis (and of a
// three-master Redis Cluster): a push on one node reaches a poll parked on
// another; a newer poll on another node supersedes (409); a replacement
// connect and a disconnect on another node close a parked poll (410);
// presence events come once per change; an idempotency id is recognised on
// every node; /stats counts the whole cluster.
func TestClusterCrossNode(t *testing.T) {
	t.Run("one server", func(t *testing.T) {
		rs := redistest.Start(t)
		crossNode(t, startNodes(t, 3, "--redis-url", rs.URL()))
	})
	t.Run("redis cluster", func(t *testing.T) {
		rc := redistest.Cluster(t)
		crossNode(t, startNodes(t, 3, "--redis-cluster", strings.Join(redistest.Addrs(rc), ",")))
	})
}

func crossNode(t *testing.T, nodes []*testserver.Server) {
	cc := clusterClient{t: t, c: &http.Client{}, nodes: urls(nodes)}
	watcher := cc.connect(2, `{"deviceId":"watcher","topics":["$presence"]}`)

	// A push on C reaches a poll parked on B; the poll after it on A.
	sid := cc.connect(0, `{"deviceId":"lamp","userId":"ann","topics":["news"]}`)
	p := cc.poll(1, sid, 0, 20)
	cc.parked(1, 1)
	if code := cc.post(2, "/push", `{"to":{"topic":"news"},"data":1}`, nil); code != http.StatusAccepted {
		t.Fatalf("push: %d", code)
	}
	if a := recv(t, p, "the poll on B"); a.code != 200 || len(a.msgs) != 1 || a.msgs[0].Seq != 1 {
		t.Fatalf("the poll on B: %d %s", a.code, a.body)
	}

	// A newer poll on C supersedes the one parked on A.
	older := cc.poll(0, sid, 1, 20)
	cc.parked(0, 1)
	newer := cc.poll(2, sid, 1, 20)
	if a := recv(t, older, "the older poll"); a.code != http.StatusConflict || !strings.Contains(a.body, "superseded") {
		t.Fatalf("the older poll: %d %s", a.code, a.body)
	}
	// A disconnect on B closes the poll parked on C; what was not
	// acknowledged waits offline for the device.
	cc.parked(2, 1)
	if code := cc.post(0, "/push", `{"to":{"userId":"ann"},"data":2}`, nil); code != http.StatusAccepted {
		t.Fatalf("push to the user: %d", code)
	}
	if a := recv(t, newer, "the newer poll"); a.code != 200 || len(a.msgs) != 1 || a.msgs[0].Seq != 2 {
		t.Fatalf("the newer poll: %d %s", a.code, a.body)
	}
	parked := cc.poll(2, sid, 1, 20) // 2 not acknowledged: it is answered at once
	if a := recv(t, parked, "a poll with 2 pending"); a.code != 200 || len(a.msgs) != 1 || a.msgs[0].Seq != 2 {
		t.Fatalf("a poll with 2 pending: %d %s", a.code, a.body)
	}
	parked = cc.poll(2, sid, 2, 20)
	cc.parked(2, 1)
	if code := cc.post(1, "/disconnect", fmt.Sprintf(`{"sessionId":%q}`, sid), nil); code != http.StatusOK {
		t.Fatalf("disconnect: %d", code)
	}
	if a := recv(t, parked, "the poll of the disconnected session"); a.code != http.StatusGone {
		t.Fatalf("the poll of the disconnected session: %d %s", a.code, a.body)
	}

	// A replacement connect on A closes the poll parked on B.
	sid = cc.connect(1, `{"deviceId":"lamp","userId":"ann"}`)
	if code := cc.post(2, "/push", `{"to":{"deviceId":"lamp"},"data":3}`, nil); code != http.StatusAccepted {
		t.Fatalf("push to the device: %d", code)
	}
	if a := recv(t, cc.poll(0, sid, 0, 20), "the first poll"); a.code != 200 || len(a.msgs) != 1 || string(a.msgs[0].Data) != "3" {
		t.Fatalf("the first poll: %d %s (want 3, kept offline at the disconnect)", a.code, a.body)
	}
	parked = cc.poll(1, sid, 1, 20)
	cc.parked(1, 1)
	repl := cc.connect(0, `{"deviceId":"lamp","userId":"ann"}`)
	if a := recv(t, parked, "the replaced session's poll"); a.code != http.StatusGone {
		t.Fatalf("the replaced session's poll: %d %s", a.code, a.body)
	}
	// A replacement on B carries what was not acknowledged.
	if code := cc.post(2, "/push", fmt.Sprintf(`{"to":{"sessionId":%q},"data":4}`, repl), nil); code != http.StatusAccepted {
		t.Fatalf("push to the session: %d", code)
	}
	repl = cc.connect(1, `{"deviceId":"lamp","userId":"ann"}`)
	if a := recv(t, cc.poll(2, repl, 0, 20), "the replacement's poll"); a.code != 200 || len(a.msgs) != 1 || string(a.msgs[0].Data) != "4" {
		t.Fatalf("the replacement's poll: %d %s (want 4, carried)", a.code, a.body)
	}

	// An idempotency id is recognised on every node.
	var first, again struct {
		ID        string
		Duplicate bool
	}
	cc.post(0, "/push", `{"to":{"deviceId":"nobody"},"data":5,"id":"once"}`, &first)
	cc.post(1, "/push", `{"to":{"deviceId":"nobody"},"data":5,"id":"once"}`, &again)
	if !again.Duplicate || again.ID != first.ID {
		t.Fatalf("the same id on another node: %+v after %+v", again, first)
	}

	// /stats on any node counts the whole cluster: the watcher and lamp;
	// GET /presence on any node finds lamp's session, connected on node B.
	for i := range cc.nodes {
		var pr struct{ Sessions []struct{ SessionID string } }
		resp, err := cc.c.Get(cc.nodes[i] + "/presence?deviceId=lamp")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if len(pr.Sessions) != 1 || pr.Sessions[0].SessionID != repl {
			t.Fatalf("node %d: /presence?deviceId=lamp says %+v, want %s", i, pr.Sessions, repl)
		}
	}
	for i := range cc.nodes {
		var st struct{ Sessions, Devices int }
		resp, err := cc.c.Get(cc.nodes[i] + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Sessions != 2 {
			t.Fatalf("node %d: /stats says %d sessions, want 2", i, st.Sessions)
		}
	}

	// Presence: the watcher heard each change once, whichever node made it.
	var events []string
	var cursor uint64
	for len(events) < 8 {
		msgs, ok := cc.next(rand.IntN(3), watcher, &cursor, 2)
		if !ok {
			break
		}
		for _, m := range msgs {
			var ev struct{ Event, Reason, DeviceID string }
			_ = json.Unmarshal(m.Data, &ev)
			events = append(events, ev.Event+"/"+ev.Reason)
		}
	}
	want := []string{"online/connect" /* the watcher's own */, "online/connect", "offline/disconnect", "online/connect", "offline/replaced", "online/connect", "offline/replaced", "online/connect"}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("presence events %v, want %v", events, want)
	}
	if a := recv(t, cc.poll(0, watcher, cursor, 1), "the watcher's last poll"); a.code != http.StatusNoContent {
		t.Fatalf("more presence events: %d %s", a.code, a.body)
	}
}

// Redis unreachable: the client and publisher endpoints answer 503
// unavailable with Retry-After, /healthz says why, a parked poll is
// answered by its hold; when Redis is back the node serves again by
// itself, and the session and its messages are there.
func TestRedisUnreachableAnswers503ThenRecovers(t *testing.T) {
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	node := startNodes(t, 1, "--redis-url", rs.URL())[0]
	cc := clusterClient{t: t, c: &http.Client{}, nodes: []string{node.URL}}
	sid := cc.connect(0, `{"deviceId":"lamp"}`)
	if code := cc.post(0, "/push", `{"to":{"deviceId":"lamp"},"data":1}`, nil); code != http.StatusAccepted {
		t.Fatalf("push: %d", code)
	}
	if a := recv(t, cc.poll(0, sid, 0, 2), "the first poll"); a.code != 200 || len(a.msgs) != 1 {
		t.Fatalf("the first poll: %d %s", a.code, a.body)
	}
	parked := cc.poll(0, sid, 1, 2)
	cc.parked(0, 1)
	rs.Stop()
	if a := recv(t, parked, "the poll parked when Redis went"); a.code != http.StatusNoContent && a.code != http.StatusServiceUnavailable {
		t.Fatalf("the poll parked when Redis went: %d %s", a.code, a.body)
	}
	get := func(path string) (int, http.Header, string) {
		resp, err := cc.c.Get(node.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	unavailable := func(what string, code int, h http.Header, body string) {
		t.Helper()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) {
			t.Fatalf("%s with Redis away: %d %s", what, code, body)
		}
		if what != "/healthz" && h.Get("Retry-After") == "" {
			t.Fatalf("%s with Redis away: no Retry-After", what)
		}
	}
	code, h, body := get(fmt.Sprintf("/data?sessionId=%s&cursor=1&timeout=1", sid))
	unavailable("/data", code, h, body)
	code, h, body = get("/presence?deviceId=lamp")
	unavailable("/presence", code, h, body)
	for _, r := range []struct{ path, body string }{
		{"/push", `{"to":{"deviceId":"lamp"},"data":2}`},
		{"/connect", `{"deviceId":"tv"}`},
		{"/send?sessionId=" + sid, `{"to":{"deviceId":"tv"},"data":3}`},
		{"/disconnect", `{"deviceId":"lamp"}`},
	} {
		req, _ := http.NewRequest(http.MethodPost, node.URL+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := cc.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		unavailable(r.path, resp.StatusCode, resp.Header, string(b))
	}
	code, h, body = get("/healthz")
	unavailable("/healthz", code, h, body)
	if !strings.Contains(body, "redis") {
		t.Fatalf("/healthz does not say Redis is the trouble: %s", body)
	}

	rs.Restart()
	testserver.WaitFor(t, "/healthz to say ok again", 20*time.Second, func() bool {
		code, _, _ := get("/healthz")
		return code == http.StatusOK
	})
	if code := cc.post(0, "/push", `{"to":{"deviceId":"lamp"},"data":4}`, nil); code != http.StatusAccepted {
		t.Fatalf("push after Redis came back: %d", code)
	}
	if a := recv(t, cc.poll(0, sid, 1, 5), "the poll after Redis came back"); a.code != 200 || len(a.msgs) != 1 || string(a.msgs[0].Data) != "4" {
		t.Fatalf("the poll after Redis came back: %d %s", a.code, a.body)
	}
}

// The jobs run once per cluster: three nodes with a heartbeat every
// second send one $heartbeat a second, not three.
func TestClusterRunsTheJobsOnce(t *testing.T) {
	rs := redistest.Start(t)
	var nodes []*testserver.Server
	for range 3 {
		nodes = append(nodes, testserver.Start(t, "--heartbeat-interval", "1s", "--redis-url", rs.URL()))
	}
	cc := clusterClient{t: t, c: &http.Client{}, nodes: urls(nodes)}
	sid := cc.connect(0, `{"deviceId":"lamp"}`)
	var sent []time.Time
	var cursor uint64
	deadline := time.Now().Add(30 * time.Second)
	for len(sent) < 4 && time.Now().Before(deadline) {
		msgs, _ := cc.next(len(sent)%3, sid, &cursor, 5)
		for _, m := range msgs {
			if m.Topic != "$heartbeat" {
				continue
			}
			var hb struct{ Time time.Time }
			if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Time.IsZero() {
				t.Fatalf("heartbeat %s: %v", m.Data, err)
			}
			sent = append(sent, hb.Time)
		}
	}
	if len(sent) < 4 {
		t.Fatalf("%d heartbeats in 30s", len(sent))
	}
	for i := 1; i < len(sent); i++ {
		if gap := sent[i].Sub(sent[i-1]); gap < 700*time.Millisecond {
			t.Fatalf("heartbeats %v apart (%v): more than one node sends them", gap, sent)
		}
	}
}

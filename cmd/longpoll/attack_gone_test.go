package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Attack 4 of issue 13: "a parked poll whose client has gone keeps its
// socket and its per-address slot until the hold ends". With ulimit -n
// 512, 600 polls with timeout=120 each reset by the client left the
// server at 512 open files and /healthz unanswered; with
// --max-parked-per-ip 2, two reset polls kept that address at 429.

// fileLimited returns the command line that runs bin with its limit of
// open files (soft and hard: Go raises the soft limit to the hard one at
// start) set to n.
func fileLimited(bin string, n int) []string {
	if p, err := exec.LookPath("prlimit"); err == nil {
		return []string{p, fmt.Sprintf("--nofile=%d:%d", n, n), bin}
	}
	return []string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, n), bin}
}

// parkedWithin waits up to d for n parked polls; false (and the last
// count, -1 when /stats did not answer) when they were not.
func (s *server) parkedWithin(n int, d time.Duration) (bool, int) {
	deadline := time.Now().Add(d)
	for {
		got := -1
		if r, err := s.try("GET", "/stats", "", ""); err == nil && r.status == 200 {
			var st attackStats
			if json.Unmarshal(r.body, &st) == nil {
				got = st.Parked
			}
		}
		if got == n {
			return true, got
		}
		if time.Now().After(deadline) {
			return false, got
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a bounded wait
	}
}

const (
	resetAttackLimit = 512
	resetAttackPolls = 600
	resetAttackWave  = 100
	// resetAttackRSS bounds the growth of the peak RSS: 100 parked polls
	// at a time, a few KiB each.
	resetAttackRSS = 64 << 20
)

// TestAttackResetPollsUnderFileLimit reproduces attack 4: the server runs
// with 512 open files at most; 600 polls with timeout=120 (distinct
// sessions, so that none supersedes another) park in waves of 100 from
// fresh connections, and each client resets its connection. After each
// wave the server's open files are back to the baseline within 5 s; every
// reset poll counts as gone; the server answers /healthz and a normal poll
// throughout, and its RSS grows by at most resetAttackRSS.
func TestAttackResetPollsUnderFileLimit(t *testing.T) {
	s := startCmd(t, fileLimited(noRaceBinary(t), resetAttackLimit), "--heartbeat-interval", "0")
	if got := s.fdLimit(t); got != resetAttackLimit {
		t.Fatalf("the server's open files limit is %d, want %d", got, resetAttackLimit)
	}
	ids := s.connectMany(t, resetAttackPolls, func(i int) string { return fmt.Sprintf(`{"deviceId":"d-%d"}`, i) })
	baseFiles, baseRSS := s.quiet(t)
	gone0 := s.metric(t, metricPolls, labelGone)
	w := s.watch(t, true)
	rss := s.sampleRSS(t)
	began := time.Now()
	late, reset, failed := 0, 0, false
	for wave := range resetAttackPolls / resetAttackWave {
		_, before := s.parkedWithin(0, 0) // those a server that does not notice still holds
		conns := make([]*net.TCPConn, 0, resetAttackWave)
		for _, id := range ids[wave*resetAttackWave : (wave+1)*resetAttackWave] {
			c := dialTCP(t, s.addr(), 0)
			conns = append(conns, c)
			writeAll(t, c, pollRequest(s.addr(), id, "&timeout=120"))
		}
		ok, n := s.parkedWithin(before+resetAttackWave, 10*time.Second)
		for _, c := range conns {
			resetConn(c)
		}
		reset += len(conns)
		if !ok {
			failed = true
			if n < 0 {
				t.Errorf("wave %d: /stats unanswered 10 s after the wave's polls were sent (the server has %d open files of %d)",
					wave+1, s.openFiles(), resetAttackLimit)
			} else {
				t.Errorf("wave %d: %d of %d polls parked within 10 s (%d parked before; the server has %d open files of %d)",
					wave+1, n-before, resetAttackWave, before, s.openFiles(), resetAttackLimit)
			}
			break
		}
		if late > 0 {
			continue // not noticed before: the next waves go on at once, to the limit
		}
		if ok, n := s.waitFiles(baseFiles+3, 5*time.Second); !ok {
			late++
			failed = true
			t.Errorf("wave %d: %d polls reset, the server still has %d open files 5 s later (baseline %d, limit %d)",
				wave+1, resetAttackWave, n, baseFiles, resetAttackLimit)
		}
	}
	peak := rss.end()
	t.Logf("%d polls reset in %v: open files %d (baseline %d), peak RSS %s (baseline %s)",
		reset, time.Since(began).Round(time.Millisecond), s.openFiles(), baseFiles, mib(peak), mib(baseRSS))
	if grew := peak - baseRSS; grew > resetAttackRSS {
		t.Errorf("the peak RSS grew by %s; the bound is %s", mib(grew), mib(resetAttackRSS))
	}
	if failed {
		w.end(t) // what the watcher saw of the server while it held the dead polls
		return
	}
	if gone := s.metric(t, metricPolls, labelGone) - gone0; gone != resetAttackPolls {
		t.Errorf("%s{%s} rose by %v, want %d", metricPolls, labelGone, gone, resetAttackPolls)
	}
	s.checkFilesBack(t, baseFiles, 3, "after the attack")
	w.end(t)
}

// deadPath is one way a poll is held, and its clients ended.
type deadPath struct {
	name string
	tls  bool
	// park parks a poll for each of sids (two) and returns end, which
	// ends the first client with a reset and the second with a close
	// (FIN), or both as the path allows.
	park func(t *testing.T, s *server, sids []string) (end func())
	// files is how many open files the server keeps after end (the
	// HTTP/2 connection whose streams were reset).
	files int
}

var deadPaths = []deadPath{
	// The first request of a plain HTTP/1.1 connection, parked with the
	// connection taken over (no goroutine reads it).
	{name: "raw-fresh", park: func(t *testing.T, s *server, sids []string) func() {
		conns := parkRaw(t, s, sids, false)
		return func() { resetConn(conns[0]); conns[1].Close() }
	}},
	// A re-poll parked by the raw path on a connection already taken over.
	{name: "raw-owned", park: func(t *testing.T, s *server, sids []string) func() {
		conns := parkRaw(t, s, sids, true)
		return func() { resetConn(conns[0]); conns[1].Close() }
	}},
	// "Connection: close": held in its net/http handler.
	{name: "nethttp", park: func(t *testing.T, s *server, sids []string) func() {
		conns := make([]*net.TCPConn, len(sids))
		for i, sid := range sids {
			conns[i] = dialTCP(t, s.addr(), 0)
			writeAll(t, conns[i], pollRequest(s.addr(), sid, "&timeout=120", "Connection: close"))
		}
		s.waitParked(t, len(sids), 15*time.Second)
		return func() { resetConn(conns[0]); conns[1].Close() }
	}},
	// HTTP/2 over TLS, both polls on one connection, which the client
	// resets.
	{name: "h2-conn", tls: true, park: func(t *testing.T, s *server, sids []string) func() {
		h := parkH2(t, s, sids)
		return func() { resetConn(h.raw()); h.wait(t) }
	}},
	// HTTP/2 over TLS, each poll's stream cancelled by the client
	// (RST_STREAM); the connection stays.
	{name: "h2-stream", tls: true, files: 1, park: func(t *testing.T, s *server, sids []string) func() {
		h := parkH2(t, s, sids)
		return func() {
			for _, cancel := range h.cancels {
				cancel()
			}
			h.wait(t)
		}
	}},
}

// parkRaw parks a poll for each sid from a fresh plain connection; owned
// first parks one, answers it with a push and reads it, so that the poll
// left parked is a re-poll on the raw path.
func parkRaw(t *testing.T, s *server, sids []string, owned bool) []*net.TCPConn {
	t.Helper()
	conns := make([]*net.TCPConn, len(sids))
	for i, sid := range sids {
		conns[i] = dialTCP(t, s.addr(), 0)
		t.Cleanup(func() { conns[i].Close() })
		writeAll(t, conns[i], pollRequest(s.addr(), sid, "&timeout=120"))
	}
	s.waitParked(t, len(sids), 15*time.Second)
	if !owned {
		return conns
	}
	for i, sid := range sids {
		if r := s.fresh("POST", "/push", "application/json", fmt.Sprintf(`{"to":{"sessionId":%q},"data":"first"}`, sid)); r.status != 202 {
			t.Fatalf("push: %d %s", r.status, r.body)
		}
		if res, body := readAnswer(t, conns[i], bufio.NewReader(conns[i])); res.StatusCode != 200 || res.Close {
			t.Fatalf("first poll: %d (close %v) %s", res.StatusCode, res.Close, body)
		}
		writeAll(t, conns[i], pollRequest(s.addr(), sid, "&cursor=1&timeout=120"))
	}
	s.waitParked(t, len(sids), 15*time.Second)
	return conns
}

// h2Polls are polls held on one HTTP/2 connection.
type h2Polls struct {
	mu      sync.Mutex
	conn    *net.TCPConn
	cancels []context.CancelFunc
	done    chan error
	n       int
}

func (h *h2Polls) raw() *net.TCPConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn
}

// wait waits (bounded) for the client side of every poll to end.
func (h *h2Polls) wait(t *testing.T) {
	t.Helper()
	for range h.n {
		select {
		case <-h.done:
		case <-time.After(15 * time.Second):
			t.Fatal("an HTTP/2 poll did not end on the client after its stream or connection was reset")
		}
	}
}

// parkH2 parks a poll for each sid over one HTTP/2 connection.
func parkH2(t *testing.T, s *server, sids []string) *h2Polls {
	t.Helper()
	h := &h2Polls{done: make(chan error, len(sids)), n: len(sids)}
	tr := &http.Transport{
		TLSClientConfig:   s.freshc.Transport.(*http.Transport).TLSClientConfig.Clone(),
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				h.mu.Lock()
				h.conn = c.(*net.TCPConn)
				h.mu.Unlock()
			}
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 150 * time.Second}
	// one request first, so that the polls share its connection
	if res, err := hc.Get(s.base + "/healthz"); err != nil || res.ProtoMajor != 2 {
		t.Fatalf("healthz over HTTP/2: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	for _, sid := range sids {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		h.cancels = append(h.cancels, cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/data?timeout=120&sessionId="+sid, nil)
		go func() {
			res, err := hc.Do(req)
			if err == nil {
				res.Body.Close()
			}
			h.done <- err
		}()
	}
	s.waitParked(t, len(sids), 15*time.Second)
	return h
}

// startTLS starts the binary serving HTTPS (HTTP/2) with a fresh
// certificate; s.fresh and s.try then speak TLS.
func startTLS(t *testing.T, args ...string) *server {
	t.Helper()
	certFile, keyFile, pool := writeCert(t, t.TempDir(), "longpoll-test")
	s := start(t, append([]string{"--tls-cert", certFile, "--tls-key", keyFile}, args...)...)
	s.base = strings.Replace(s.base, "http://", "https://", 1)
	s.freshc = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	return s
}

// TestDeadClientsAreNoticed: on every path, a parked poll whose client
// reset or closed its connection is found within a few seconds: its
// socket is closed (the server's open files return to the baseline within
// 5 s), its place under --max-parked-per-ip 2 is given back (a new poll
// from the address is answered, not 429), it counts as gone in /metrics,
// and its session and mailbox stay (a message pushed afterwards is
// delivered to the next poll).
func TestDeadClientsAreNoticed(t *testing.T) {
	for _, p := range deadPaths {
		t.Run(p.name, func(t *testing.T) {
			args := []string{"--heartbeat-interval", "0", "--max-parked-per-ip", "2"}
			var s *server
			if p.tls {
				s = startTLS(t, args...)
			} else {
				s = start(t, args...)
			}
			var sids []string
			for i := range 3 {
				r := s.fresh("POST", "/connect", "application/json", fmt.Sprintf(`{"deviceId":"dead-%d"}`, i))
				var c struct{ SessionID string }
				r.json(t, &c)
				sids = append(sids, c.SessionID)
			}
			baseFiles, _ := s.quiet(t)
			gone0 := s.metric(t, metricPolls, labelGone)
			end := p.park(t, s, sids[:2])
			// the cap holds while the two polls are parked
			if r := s.fresh("GET", "/data?timeout=0&sessionId="+sids[2], "", ""); r.status != 429 {
				t.Fatalf("a third poll from the address with two parked: %d %s, want 429", r.status, r.body)
			}
			began := time.Now()
			end()
			if ok, n := s.parkedWithin(0, 5*time.Second); !ok {
				t.Errorf("%d polls still parked 5 s after their clients left", n)
			}
			s.checkFilesBack(t, baseFiles, p.files, "after the clients left")
			// the place is given back: a poll is answered, not refused 429
			var last response
			for deadline := time.Now().Add(5 * time.Second); ; {
				last = s.fresh("GET", "/data?timeout=0&sessionId="+sids[2], "", "")
				if last.status != 429 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
			}
			if last.status != 204 {
				t.Errorf("a new poll from the address %v after its two polls' clients left: %d %s, want 204", time.Since(began).Round(time.Millisecond), last.status, last.body)
			}
			if gone := s.metric(t, metricPolls, labelGone) - gone0; gone != 2 {
				t.Errorf("%s{%s} rose by %v, want 2", metricPolls, labelGone, gone)
			}
			// the sessions and their mailboxes stay
			for i, sid := range sids[:2] {
				if r := s.fresh("POST", "/push", "application/json", fmt.Sprintf(`{"to":{"sessionId":%q},"data":"after-%d"}`, sid, i)); r.status != 202 {
					t.Fatalf("push to a session whose poll's client left: %d %s", r.status, r.body)
				}
				r := s.fresh("GET", "/data?timeout=0&sessionId="+sid, "", "")
				if r.status != 200 || !strings.Contains(string(r.body), fmt.Sprintf(`"after-%d"`, i)) {
					t.Errorf("poll after the client left: %d %s", r.status, r.body)
				}
			}
		})
	}
}

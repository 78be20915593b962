package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Attack 2 of issue 13: "answers to clients that do not read are held
// whole". 150 sessions on one topic park a poll each from a socket that
// never reads (a 4 KiB receive buffer), and one /send of 100 items of
// 64 KiB goes to the topic. The issue measured 2.88 GB resident for about
// 150 s on the net/http path and 613 MB for 10 s on the raw path.

const (
	answerAttackClients = 150
	answerAttackItems   = 100
	// answerAttackRSS bounds the growth of the server's peak resident
	// size and Go heap (checkMemory) on the raw path. Each client is owed
	// two answers (answerPaths); capped at 1 MiB each, the kernel takes
	// both at once (about 3 MB fits in the socket buffers of a loopback
	// connection whose reader has a 4 KiB receive buffer), and the bytes
	// of answers being written are bounded globally besides; the 6.5 MB
	// batch is held once, shared by every mailbox. Measured here: the
	// vulnerable server keeps what the kernel did not take of each 6.5 MB
	// answer, 580-770 MiB; the same server with answers capped at 1 MiB
	// and nothing else changed, 35-145 MiB. What this server keeps is far
	// less than its peak: the peak is mostly garbage (each 1 MiB answer is
	// rendered and copied before the kernel takes it), which GOGC=400 lets
	// grow to five times the heap live at the last collection, so it
	// varies with the scheduling: 66-196 MiB in four runs on an idle
	// machine (2026-12-02), 272 MiB once in CI on a loaded one. The bound
	// sits above that spread and well below the vulnerable server's.
	answerAttackRSS = 384 << 20
	// answerAttackNetHTTP is the bound on the net/http path, where each
	// answer is rendered into a buffer of its own and written by its
	// handler: the garbage of 300 answers of 1 MiB (and the doubling
	// buffers they were rendered in), which GOGC=400 lets pile up, peaked
	// at 176-328 MiB with answers capped at 1 MiB and nothing else
	// changed; the vulnerable server, 990-2400 MiB.
	answerAttackNetHTTP = 512 << 20
	// The receive buffer of a client that does not read (Linux doubles
	// it).
	nonReaderBuffer = 4096
)

// bigBatch is a /send or /push body of n items of 64 KiB of data each to
// topic.
func bigBatch(topic string, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"to":{"topic":%q},"data":%s}`, topic, bigData)
	}
	return batch(items)
}

// answerPath is one of the ways a poll is held and answered.
type answerPath struct {
	name string
	// poll is the request of a poll of sid the path's way (query
	// appended).
	poll func(addr, sid, query string) string
	// owned: a first poll is parked, answered by a push to the topic,
	// and read, so that the polls that follow are read by the raw path.
	owned bool
	// bound is the path's bound on memory growth in attack 2.
	bound int64
}

// The paths of attack 2. On each, a client that does not read parks a
// poll and pipelines more behind it, acknowledging nothing: the first
// answer carries what had arrived when the poll was woken (some of a
// batch, or all of it: that is up to the scheduler), the next ones
// everything pending, so that the answers owed to the client are as
// large as the server allows whatever the timing.
var answerPaths = []answerPath{
	// The first request of a plain HTTP/1.1 connection: read by net/http,
	// parked with the connection taken over (hijacked), answered by the
	// raw writer (h1.Conn.Start); the polls behind it are read by the raw
	// path.
	{name: "fresh", bound: answerAttackRSS, poll: func(addr, sid, query string) string {
		return pollRequest(addr, sid, query)
	}},
	// Polls on a connection already taken over: read and parked by the
	// raw path (api/raw.go).
	{name: "owned", owned: true, bound: answerAttackRSS, poll: func(addr, sid, query string) string {
		return pollRequest(addr, sid, "&cursor=1"+query)
	}},
	// Polls with a body, which net/http reads and the handler holds (on a
	// kept-alive connection: README "which requests take which path"),
	// written by net/http.
	{name: "nethttp", bound: answerAttackNetHTTP, poll: func(addr, sid, query string) string {
		return pollRequest(addr, sid, query, "Content-Length: 2") + "{}"
	}},
}

// openNonReaders connects n sessions subscribed to topic "big" and, for
// each, sends polls polls over p from a socket with a small receive
// buffer, the first parked and the rest pipelined behind it; nothing more
// is read from the sockets.
func openNonReaders(t *testing.T, s *server, p answerPath, n, polls int) ([]*net.TCPConn, []string) {
	t.Helper()
	ids := s.connectMany(t, n, func(i int) string { return fmt.Sprintf(`{"deviceId":"reader-%d","topics":["big"]}`, i) })
	conns := make([]*net.TCPConn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i] = dialTCP(t, s.addr(), nonReaderBuffer)
		brs[i] = bufio.NewReader(conns[i])
		t.Cleanup(func() { conns[i].Close() })
	}
	if p.owned {
		for i, c := range conns {
			writeAll(t, c, pollRequest(s.addr(), ids[i], "&timeout=60"))
		}
		s.waitParked(t, n, 20*time.Second)
		if r := s.fresh("POST", "/push", "application/json", `{"to":{"topic":"big"},"data":"small"}`); r.status != 202 {
			t.Fatalf("push: %d %s", r.status, r.body)
		}
		for i, c := range conns {
			if res, body := readAnswer(t, c, brs[i]); res.StatusCode != 200 || res.Close {
				t.Fatalf("first poll of %d: %d (close %v) %s", i, res.StatusCode, res.Close, body)
			}
		}
	}
	for i, c := range conns {
		writeAll(t, c, strings.Repeat(p.poll(s.addr(), ids[i], "&timeout=60"), polls))
	}
	s.waitParked(t, n, 20*time.Second)
	return conns, ids
}

// TestAttackUnreadAnswers reproduces attack 2 on each path, with default
// limits: 150 clients that do not read, each with a poll parked and a
// second one pipelined behind it, and a batch of 100 items of 64 KiB to
// their topic. The peak RSS and the heap grow by at most the path's bound
// (answerAttackRSS, answerAttackNetHTTP), the server
// answers /healthz and a normal poll throughout, and once the clients
// close, its open files are back to the baseline within 5 s.
func TestAttackUnreadAnswers(t *testing.T) {
	for _, p := range answerPaths {
		t.Run(p.name, func(t *testing.T) {
			s := startCmd(t, []string{noRaceBinary(t)}, "--heartbeat-interval", "0")
			sender := s.connect(`{"deviceId":"sender"}`)["sessionId"].(string)
			body := bigBatch("big", answerAttackItems)
			baseFiles, baseRSS := s.quiet(t)
			w := s.watch(t, true)
			conns, _ := openNonReaders(t, s, p, answerAttackClients, 2)
			_, parkedRSS := s.quiet(t) // the polls' own cost is not the attack's
			parkedHeap := s.heapInUse(t)
			rss := s.sampleRSS(t)
			began := time.Now()
			r := s.fresh("POST", "/send?sessionId="+sender, "application/json", body)
			if r.status != 202 {
				t.Fatalf("send: %d %s", r.status, clip(r.body))
			}
			// Observation window: until the server has begun to answer
			// every client (bytes wait in each client's socket; at most
			// 15 s), and 1 s more for what it keeps of the answers (the
			// write timeout is 10 s).
			answered := waitAnswered(conns, 15*time.Second)
			for end := time.Now().Add(time.Second); time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond) // sampling interval of the window
			}
			heap := s.heapInUse(t) // the clients still do not read
			t.Logf("%s: %d of %d clients answered %v after the send", p.name, answered, len(conns), time.Since(began).Round(time.Millisecond))
			t.Logf("%s: baseline RSS %s before the polls parked", p.name, mib(baseRSS))
			checkMemory(t, fmt.Sprintf("%s: %d polls that do not read answered with a %s batch", p.name, len(conns), mib(int64(len(body)))),
				p.bound, parkedRSS, rss.end(), parkedHeap, heap)
			for _, c := range conns {
				c.Close() // unread data in its buffer: the kernel resets the connection
			}
			s.checkFilesBack(t, baseFiles, 3, "after the non-reading clients closed")
			w.end(t)
		})
	}
}

// TestAttackUnreadAnswersWriteTimeout: with --write-timeout 2s, a client
// that does not read its answers is dropped by the server itself within a
// few seconds on every path, while the client keeps its socket open. Each
// client has a poll parked when the batch comes, and then pipelines 8 more
// that acknowledge nothing: with the whole batch waiting, each is answered
// with 1 MiB (the same messages, redelivered), more than the kernel
// buffers between the two ends take (about 3 MB on loopback with a 4 KiB
// receive buffer), so the server's write has to wait. (Polls pipelined
// before the batch could be answered with a few messages each, as they
// come in, all of which the kernel would take.) On the
// net/http path the polls carry a body (which keeps them in their handler
// on a kept-alive connection, README "which requests take which path").
func TestAttackUnreadAnswersWriteTimeout(t *testing.T) {
	const clients, pipelined = 10, 8
	for _, p := range answerPaths {
		t.Run(p.name, func(t *testing.T) {
			s := start(t, "--heartbeat-interval", "0", "--write-timeout", "2s")
			sender := s.connect(`{"deviceId":"sender"}`)["sessionId"].(string)
			body := bigBatch("big", answerAttackItems)
			baseFiles, _ := s.quiet(t)
			conns, ids := openNonReaders(t, s, p, clients, 1)
			began := time.Now()
			if r := s.fresh("POST", "/send?sessionId="+sender, "application/json", body); r.status != 202 {
				t.Fatalf("send: %d %s", r.status, clip(r.body))
			}
			for i, c := range conns {
				writeAll(t, c, strings.Repeat(p.poll(s.addr(), ids[i], "&timeout=60"), pipelined))
			}
			// 2 s of write timeout, and a few seconds for the fan-out and
			// for the kernel to take what it can.
			if ok, n := s.waitFiles(baseFiles, 8*time.Second); !ok {
				t.Errorf("%s: %d clients that do not read still hold %d open files of the server 8 s after their answers began (baseline %d; --write-timeout 2s)",
					p.name, clients, n, baseFiles)
			} else {
				t.Logf("%s: dropped after %v", p.name, time.Since(began).Round(time.Millisecond))
			}
			// The clients see their connection end: what the kernel
			// holds for them, then EOF or a reset.
			for i, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := drain(c)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("client %d: its connection is still open (read %d bytes)", i, n)
					break
				}
			}
		})
	}
}

// queued returns how many bytes wait unread in c's receive queue (-1 on
// failure).
func queued(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := int32(-1)
	_ = rc.Control(func(fd uintptr) {
		var v int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&v))); e == 0 {
			n = v
		}
	})
	return int(n)
}

// waitAnswered waits (up to within) until bytes of an answer wait in
// every one of conns, without reading them, and returns for how many
// they do.
func waitAnswered(conns []*net.TCPConn, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := 0
		for _, c := range conns {
			if queued(c) > 0 {
				n++
			}
		}
		if n == len(conns) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// drain reads c to its end and returns how much it read and the error
// that ended it (nil at EOF).
func drain(c net.Conn) (int64, error) {
	n, err := io.Copy(io.Discard, c)
	return n, err
}

// TestAnswersAreBounded: a poll answer carries at most 100 messages and
// at most 1 MiB; the rest comes on the next polls, in order, exactly once.
// 150 messages of 12 KiB wait (1.8 MB: the byte bound binds before the
// count), on both paths: polls answered at once through net/http, and on
// the raw path (a connection taken over, whose first answer is written by
// the raw writer after the hijack, and its re-polls read by the raw path).
func TestAnswersAreBounded(t *testing.T) {
	const n, size = 150, 12 << 10
	s := start(t, "--heartbeat-interval", "0")
	fill := func(device string) {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"to":{"deviceId":%q},"data":{"i":%d,"pad":"%s"}}`, device, i, strings.Repeat("p", size))
		}
		if r := s.push(batch(items)); r.status != 202 {
			t.Fatalf("push: %d %s", r.status, clip(r.body))
		}
	}
	// check reads the answers of one session in turn; next returns the
	// raw body of the poll acknowledging cursor (nil for 204).
	check := func(path string, next func(cursor uint64) []byte) {
		var cursor uint64
		seen := 0
		for polls := 0; seen < n; polls++ {
			if polls > n {
				t.Fatalf("%s: %d polls for %d messages", path, polls, n)
			}
			raw := next(cursor)
			if raw == nil {
				t.Fatalf("%s: 204 after %d of %d messages", path, seen, n)
			}
			var b struct {
				Cursor   uint64 `json:"cursor"`
				Messages []struct {
					Seq  uint64 `json:"seq"`
					Data struct {
						I int `json:"i"`
					} `json:"data"`
				} `json:"messages"`
			}
			if err := json.Unmarshal(raw, &b); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(b.Messages) == 0 || len(b.Messages) > 100 {
				t.Errorf("%s: an answer with %d messages", path, len(b.Messages))
			}
			if len(raw) > 1<<20 {
				t.Errorf("%s: an answer of %d bytes (%d messages), more than 1 MiB", path, len(raw), len(b.Messages))
			}
			for _, m := range b.Messages {
				if m.Data.I != seen {
					t.Fatalf("%s: got message %d, want %d (in order, exactly once)", path, m.Data.I, seen)
				}
				seen++
			}
			if polls == 0 {
				t.Logf("%s: first answer %d messages, %d bytes", path, len(b.Messages), len(raw))
			}
			cursor = b.Cursor
		}
		if raw := next(cursor); raw != nil {
			t.Errorf("%s: a poll after the last message got %s", path, clip(raw))
		}
	}

	// net/http: every poll is answered at once through echo.
	sid := s.connect(`{"deviceId":"h"}`)["sessionId"].(string)
	fill("h")
	check("net/http", func(cursor uint64) []byte {
		r := s.do("GET", fmt.Sprintf("/data?sessionId=%s&cursor=%d&timeout=0", sid, cursor), "", "")
		switch r.status {
		case 200:
			return r.body
		case 204:
			return nil
		}
		t.Fatalf("poll: %d %s", r.status, r.body)
		return nil
	})

	// the raw path: the first poll parks (hijack) and the batch answers
	// it through the raw writer; the next ones are re-polls on the
	// taken-over connection, read by the raw path.
	sid = s.connect(`{"deviceId":"r"}`)["sessionId"].(string)
	client.CloseIdleConnections()
	c := dialTCP(t, s.addr(), 0)
	defer c.Close()
	br := bufio.NewReader(c)
	writeAll(t, c, pollRequest(s.addr(), sid, "&timeout=20"))
	s.waitParked(t, 1, 15*time.Second)
	fill("r")
	first := true
	check("raw", func(cursor uint64) []byte {
		if !first {
			writeAll(t, c, pollRequest(s.addr(), sid, fmt.Sprintf("&cursor=%d&timeout=0", cursor)))
		}
		first = false
		res, body := readAnswer(t, c, br)
		switch res.StatusCode {
		case 200:
			return body
		case 204:
			return nil
		}
		t.Fatalf("raw poll: %d %s", res.StatusCode, body)
		return nil
	})
}

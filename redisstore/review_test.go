package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/redistest"
	"github.com/longpoll/longpoll/internal/testwait"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/redisstore"
	"github.com/longpoll/longpoll/session"
)

// Regression tests for what a review of the Redis store found: each is a
// way one client, or Redis failing, broke a guarantee.

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)} }

// openStore opens a store of the deployment prefix on srv.
func openStore(t *testing.T, srv *redistest.Server, prefix string, clk *clock) *redisstore.Store {
	t.Helper()
	cfg := poll.StoreConfig{MaxMailbox: 5, SessionTTL: time.Minute, OfflineTTL: time.Hour}
	if clk != nil {
		cfg.Now = clk.Now
	}
	st, err := redisstore.Open(redisstore.Options{URL: srv.URL(), Prefix: prefix, Timeout: time.Second}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newSession(device string) *session.Session {
	return session.Request{DeviceID: device}.NewSession(time.Now())
}

func message(data string) *poll.Envelope {
	return poll.NewEnvelope("t", "", json.RawMessage(data), time.Now(), time.Hour)
}

// A client's meta is opaque to the scripts: one nested deeper than Lua's
// JSON decoder allows must not stop expiry, disconnects or replacement.
func TestDeepMetaIsOpaqueToTheScripts(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := openStore(t, srv, "meta", clk)
	meta := `{"a":` + strings.Repeat("[", 1100) + strings.Repeat("]", 1100) + `}`
	req, err := session.NewRequest("deep", "", nil, json.RawMessage(meta))
	if err != nil {
		t.Skipf("connect validation refuses such meta now: %v", err)
	}
	deep := req.NewSession(clk.Now())
	if _, err := st.Connect(deep, 0, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Connect(req.NewSession(clk.Now()), 0, clk.Now()); err != nil {
		t.Fatalf("replacing the session: %v", err)
	}
	other := newSession("other")
	if _, err := st.Connect(other, 0, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Minute)
	if got := st.Expire(clk.Now()); len(got) != 2 {
		t.Fatalf("expired %d sessions, want 2", len(got))
	}
}

// Two polls of one session parking at once on one node: the one Redis
// holds parked gets the next message at once, the other is superseded.
func TestConcurrentParksOnOneNode(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv, "parks", nil)
	for trial := range 20 {
		s := newSession(fmt.Sprint("dev", trial))
		if _, err := st.Connect(s, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err, ok := st.Park(new(poll.Ticket), s.ID, 0, false, time.Minute, func(m []poll.Message, err error) func() {
					got <- fmt.Sprint(len(m), " ", err)
					return nil
				})
				if !ok {
					got <- fmt.Sprint("not parked ", err)
				}
			}()
		}
		wg.Wait()
		if r := testwait.Recv(t, got, "the superseded poll", 5*time.Second); r != "0 "+poll.ErrSuperseded.Error() {
			t.Fatalf("trial %d: first answer %q, want superseded", trial, r)
		}
		if _, err := st.Append(s.ID, message("1")); err != nil {
			t.Fatal(err)
		}
		if r := testwait.Recv(t, got, "the parked poll", 5*time.Second); r != "1 <nil>" {
			t.Fatalf("trial %d: the parked poll got %q, want the message", trial, r)
		}
	}
}

// Node A holds many parked polls, all superseded from node B at once: A
// answers them all promptly and stays usable (its notifications do not
// wait on its own Redis calls).
func TestNotificationBurst(t *testing.T) {
	srv := redistest.Start(t)
	a := openStore(t, srv, "burst", nil)
	b := openStore(t, srv, "burst", nil)
	const n = 200
	var answered atomic.Int64
	var ids []string
	for i := range n {
		s := newSession(fmt.Sprint("dev", i))
		if _, err := a.Connect(s, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
		if _, err, ok := a.Park(new(poll.Ticket), s.ID, 0, false, time.Minute, func(_ []poll.Message, err error) func() {
			a.Touch(s.ID) // an answer that itself asks Redis something
			if err == poll.ErrSuperseded {
				answered.Add(1)
			}
			return nil
		}); !ok {
			t.Fatal("not parked:", err)
		}
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Park(new(poll.Ticket), id, 0, false, time.Minute, func([]poll.Message, error) func() { return nil })
		}()
	}
	wg.Wait()
	testwait.For(t, "A to answer every superseded poll", 10*time.Second, func() bool { return answered.Load() == n })
	if err := a.Err(); err != nil {
		t.Fatalf("A marked Redis unreachable: %v", err)
	}
}

// A blocking Wait holds the session only for its own deadline: a client
// gone after it expires as usual.
func TestWaitHoldsTheSessionOnlyWhileItWaits(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := openStore(t, srv, "wait", clk)
	s := newSession("dev")
	if _, err := st.Connect(s, 0, clk.Now()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if msgs, err := st.Wait(ctx, s.ID, nil, 0, false); err != nil || len(msgs) != 0 {
		t.Fatalf("wait: %v %v", msgs, err)
	}
	clk.advance(2 * time.Minute)
	if got := st.Expire(clk.Now()); len(got) != 1 {
		t.Fatalf("expired %d sessions two minutes after its last poll, want 1", len(got))
	}
}

// An idempotency key whose push never settled (its node died, or lost
// Redis before its Settle or Forget) is not answered "duplicate": it was
// only pending, and lapses.
func TestFailedPushDoesNotKeepItsKey(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	st := openStore(t, srv, "idem", clk)
	if _, seen := st.Remember("k", poll.Result{ID: "m_1"}, time.Hour); seen {
		t.Fatal("a new key seen")
	}
	// No Settle, no Forget: the push's node is gone.
	clk.advance(time.Minute) // past the pending time
	if prev, seen := st.Remember("k", poll.Result{ID: "m_2"}, time.Hour); seen {
		t.Fatalf("the retry of a push that failed is a duplicate of %+v", prev)
	}
	// While a push with the key is under way, another waits for its outcome.
	got := rememberAsync(st, "k", "m_3")
	st.Settle("k", poll.Result{ID: "m_2", Delivered: 1}, time.Hour)
	if r := testwait.Recv(t, got, "the concurrent push", 10*time.Second); r != "m_2 true" {
		t.Fatalf("the concurrent push: %s, want a duplicate of m_2", r)
	}
}

// A fan-out that Redis refuses (out of memory) fails instead of counting
// nobody reached.
func TestFanOutRefusedIsAnError(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv, "oom", nil)
	s := newSession("dev")
	if _, err := st.Connect(s, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Command("CONFIG", "SET", "maxmemory", "1"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := st.FanOut([]*session.Session{s}, message("1")); err == nil {
		t.Fatal("a refused fan-out reported no error")
	}
}

// A push on node B reaches a poll parked on node A: small messages ride
// in the notification, a large one is read from the mailbox; both carry
// their seq, and a redelivery is marked.
func TestCrossNodeDelivery(t *testing.T) {
	srv := redistest.Start(t)
	a := openStore(t, srv, "cross", nil)
	b := openStore(t, srv, "cross", nil)
	s := newSession("dev")
	if _, err := a.Connect(s, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	large := `"` + strings.Repeat("x", 20000) + `"`
	for i, data := range []string{`"small"`, large} {
		got := make(chan string, 1)
		if _, err, ok := a.Park(new(poll.Ticket), s.ID, uint64(i), true, time.Minute, func(m []poll.Message, err error) func() {
			got <- describe(m, err)
			return nil
		}); !ok {
			t.Fatal("not parked:", err)
		}
		if _, err := b.Append(s.ID, message(data)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint("1: ", i+1, " false ", len(data), " <nil>")
		if r := testwait.Recv(t, got, "the poll on A", 5*time.Second); r != want {
			t.Fatalf("message %d on A: %s, want %s", i+1, r, want)
		}
	}
	msgs, err, _ := b.Park(nil, s.ID, 1, true, time.Minute, func([]poll.Message, error) func() { return nil })
	if err != nil || len(msgs) != 1 || msgs[0].Seq != 2 || !msgs[0].Redelivery {
		t.Fatalf("the unacknowledged message again, on B: %+v %v", msgs, err)
	}
}

// A notification carrying messages ("m") that is lost — the node's
// subscription was cut as they were sent — is made up for by the sweep
// after it subscribes again: the poll gets them then, not at its hold's
// end (flagged as a redelivery: they may have been carried).
func TestLostHandOffIsRecoveredBySweep(t *testing.T) {
	srv := redistest.Start(t)
	a := openStore(t, srv, "lost", nil)
	b := openStore(t, srv, "lost", nil)
	s := newSession("dev")
	if _, err := a.Connect(s, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	if _, err, ok := a.Park(new(poll.Ticket), s.ID, 0, false, time.Minute, func(m []poll.Message, err error) func() {
		got <- describe(m, err)
		return nil
	}); !ok {
		t.Fatal("not parked:", err)
	}
	if _, err := srv.Command("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(s.ID, message("1")); err != nil { // its notification finds nobody
		t.Fatal(err)
	}
	if r := testwait.Recv(t, got, "the poll, after the sweep", 10*time.Second); r != fmt.Sprint("1: 1 true ", len("1"), " <nil>") {
		t.Fatalf("the poll: %s, want the message", r)
	}
}

// WakeAll (a shutdown) while a park's script is under way does not answer
// that poll twice: either Park returns what it found, or done is called,
// never both.
func TestWakeAllDuringAPark(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv, "inflight", nil)
	for _, pending := range []bool{true, false} {
		s := newSession(fmt.Sprint("dev-", pending))
		if _, err := st.Connect(s, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		if pending {
			if _, err := st.Append(s.ID, message("1")); err != nil {
				t.Fatal(err)
			}
		}
		var calls atomic.Int32
		type result struct {
			n      int
			parked bool
		}
		parkDone := make(chan result, 1)
		// Redis holds every client's commands for 300 ms: the park's
		// script waits in line while WakeAll runs.
		if _, err := srv.Command("CLIENT", "PAUSE", "300", "ALL"); err != nil {
			t.Fatal(err)
		}
		go func() {
			msgs, _, parked := st.Park(new(poll.Ticket), s.ID, 0, false, time.Minute, func([]poll.Message, error) func() {
				calls.Add(1)
				return nil
			})
			parkDone <- result{len(msgs), parked}
		}()
		time.Sleep(50 * time.Millisecond) // the park under way; were it not yet, the test would be weaker, not wrong
		st.WakeAll()
		r := testwait.Recv(t, parkDone, "the park", 10*time.Second)
		if !r.parked {
			time.Sleep(100 * time.Millisecond) // a wrong second answer would come within this; nothing to wait for otherwise
			if n := calls.Load(); n != 0 {
				t.Fatalf("pending %v: Park returned %d messages and done was called %d times", pending, r.n, n)
			}
		} else {
			testwait.For(t, "the woken park to be answered", 5*time.Second, func() bool { return calls.Load() == 1 })
		}
	}
}

// A push that is still under way keeps its idempotency key pending past
// the pending time (its node renews it), so a retry on another node waits
// for its outcome instead of delivering again.
func TestPendingKeyRenewedWhileItsPushRuns(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	a := openStore(t, srv, "renew", clk)
	b := openStore(t, srv, "renew", clk)
	if _, seen := a.Remember("k", poll.Result{ID: "m_1"}, time.Hour); seen {
		t.Fatal("a new key seen")
	}
	first, err := srv.Command("ZSCORE", "{renew}:k", "k")
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(9 * time.Second) // A's push is slow
	testwait.For(t, "A to renew its pending key", 10*time.Second, func() bool {
		cur, err := srv.Command("ZSCORE", "{renew}:k", "k")
		return err == nil && cur != first
	})
	clk.advance(5 * time.Second) // past the first pending time
	got := rememberAsync(b, "k", "m_2")
	a.Settle("k", poll.Result{ID: "m_1", Delivered: 1}, time.Hour)
	if r := testwait.Recv(t, got, "the retry on B", 10*time.Second); r != "m_1 true" {
		t.Fatalf("the retry on B: %s, want a duplicate of m_1", r)
	}
}

// rememberAsync runs st.Remember(key) for a push with message id on
// another goroutine; the channel yields "<recorded id> <seen>".
func rememberAsync(st *redisstore.Store, key, id string) <-chan string {
	got := make(chan string, 1)
	go func() {
		prev, seen := st.Remember(key, poll.Result{ID: id}, time.Hour)
		got <- fmt.Sprint(prev.ID, " ", seen)
	}()
	return got
}

// describe is a poll's answer in brief: "<count>: <first seq> <its
// redelivery flag> <its data's length> <error>".
func describe(m []poll.Message, err error) string {
	if len(m) == 0 {
		return fmt.Sprint("0: ", err)
	}
	return fmt.Sprint(len(m), ": ", m[0].Seq, " ", m[0].Redelivery, " ", len(m[0].Data), " ", err)
}

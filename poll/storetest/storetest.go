// Package storetest is the conformance suite of poll.Store: one table of
// behaviours (append, acknowledge, limits, replace and move, end to
// offline, offline order and ttl, the client-send rule, idempotency ids,
// expiry, the storage budget, the session cap) that every implementation
// runs in its own tests, the memory store, the disk store and a shared
// one alike. A durable implementation gives Impl.Reopen, and the suite
// then also checks each behaviour across a restart.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/testwait"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// Impl is a Store implementation under test.
type Impl struct {
	// New makes a fresh, empty store for one test (its cleanup is the
	// implementation's, with t.Cleanup).
	New func(t *testing.T, cfg poll.StoreConfig) poll.Store
	// Reopen, for a durable store, closes st as a server stopping would
	// and opens what it kept with cfg; nil: the store does not outlive its
	// process, and restarts are not tested.
	Reopen func(t *testing.T, st poll.Store, cfg poll.StoreConfig) poll.Store
	// Settle, if set, makes what Flush has written visible to polls at
	// once, for a store that shows it only later (a disk store syncing on
	// an interval); it is called after Flush before every read.
	Settle func(t *testing.T, st poll.Store)
}

// restartable is a store under test that a behaviour may restart at the
// points where it matters (restart is nothing without Impl.Reopen).
type restartable struct {
	poll.Store
	impl Impl
	cfg  poll.StoreConfig
}

// flush is what the hub does before it answers a write (Flush), and
// Settle.
func (r *restartable) flush(t *testing.T) {
	t.Helper()
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if r.impl.Settle != nil {
		r.impl.Settle(t, r.Store)
	}
}

func (r *restartable) restart(t *testing.T) {
	t.Helper()
	if r.impl.Reopen != nil {
		r.Store = r.impl.Reopen(t, r.Store, r.cfg)
	}
}

// storeClock is a settable clock.
type storeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *storeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *storeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// bound is how long one step may take before the suite fails.
const bound = 10 * time.Second

// waitUntil waits (bounded) until cond holds, failing after bound.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, bound, cond)
}

// receive returns what ch yields, failing after bound.
func receive(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	return testwait.Recv(t, ch, what, bound)
}

// online reports whether the session with id is online (Store.Session),
// failing t on an error that is not ErrSessionNotFound.
func online(t *testing.T, st poll.Store, id string) bool {
	t.Helper()
	_, err := st.Session(id)
	if err != nil && !errors.Is(err, poll.ErrSessionNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// Run runs the suite against impl.
func Run(t *testing.T, impl Impl) {
	const limit = 5
	newStore := func(t *testing.T) (*restartable, *storeClock) {
		clk := &storeClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
		cfg := poll.StoreConfig{MaxMailbox: limit, SessionTTL: time.Minute, OfflineTTL: time.Hour, Now: clk.Now}
		return &restartable{impl: impl, cfg: cfg, Store: impl.New(t, cfg)}, clk
	}
	sess := func(device, user string, topics ...string) *session.Session {
		return session.Request{DeviceID: device, UserID: user, Topics: topics}.NewSession(time.Now())
	}
	connect := func(t *testing.T, st poll.Store, clk *storeClock, s *session.Session) *session.Session {
		t.Helper()
		old, err := st.Connect(s, 0, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return old
	}
	msg := func(clk *storeClock, data string) *poll.Envelope {
		return poll.NewEnvelope("t", "", json.RawMessage(data), clk.Now(), time.Hour)
	}
	read := func(t *testing.T, st *restartable, id string, ack uint64, hasAck bool) ([]string, error) {
		t.Helper()
		st.flush(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // answer at once
		msgs, err := st.Wait(ctx, id, nil, ack, hasAck)
		out := make([]string, 0, len(msgs))
		for _, m := range msgs {
			out = append(out, fmt.Sprintf("%d:%s", m.Seq, m.Data))
		}
		return out, err
	}
	want := func(t *testing.T, what string, got []string, err error, w ...string) {
		t.Helper()
		if err != nil || !slices.Equal(got, w) {
			t.Fatalf("%s: %v %v, want %v", what, got, err, w)
		}
	}

	t.Run("append, read in order, acknowledge", func(t *testing.T) {
		st, clk := newStore(t)
		s := sess("d", "")
		connect(t, st, clk, s)
		for i := range 3 {
			if _, err := st.Append(s.ID, msg(clk, fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		got, err := read(t, st, s.ID, 0, false)
		want(t, "read", got, err, "1:0", "2:1", "3:2")
		st.restart(t)
		got, err = read(t, st, s.ID, 2, true)
		want(t, "after acknowledging 2", got, err, "3:2")
		if _, err := read(t, st, s.ID, 9, true); !errors.Is(err, poll.ErrInvalidCursor) {
			t.Fatalf("cursor beyond the newest: %v", err)
		}
		got, err = read(t, st, s.ID, 3, true)
		want(t, "all acknowledged", got, err)
		st.restart(t)
		if _, err := st.Append(s.ID, msg(clk, "x")); err != nil {
			t.Fatal(err)
		}
		got, err = read(t, st, s.ID, 3, true)
		want(t, "seqs continue", got, err, "4:x")
		if st.Stats().Backlog != 1 {
			t.Fatalf("backlog %d, want 1", st.Stats().Backlog)
		}
	})

	t.Run("the mailbox by id: wait, park, supersede, cancel, acknowledge", func(t *testing.T) {
		st, clk := newStore(t)
		s := sess("d", "")
		connect(t, st, clk, s)
		if _, err := st.Append("nope", msg(clk, "1")); !errors.Is(err, poll.ErrSessionNotFound) {
			t.Fatalf("append to an unknown session: %v", err)
		}
		if err := st.Ack("nope", 0); !errors.Is(err, poll.ErrSessionNotFound) {
			t.Fatalf("ack of an unknown session: %v", err)
		}
		// A blocking Wait returns when a message arrives.
		got := make(chan string, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			msgs, err := st.Wait(ctx, s.ID, nil, 0, false)
			got <- fmt.Sprint(len(msgs), err)
		}()
		// deliver appends data and answers the parked poll it wakes (its
		// Wakeup, or the store's own once the message is durable).
		deliver := func(data string) {
			t.Helper()
			u, err := st.Append(s.ID, msg(clk, data))
			if err != nil {
				t.Fatal(err)
			}
			poll.RunWakeups([]poll.Wakeup{u})
			st.flush(t)
		}
		waitUntil(t, "the wait to park", func() bool { return st.Stats().Parked == 1 })
		deliver("1")
		if r := receive(t, got, "the blocking wait"); r != "1 <nil>" {
			t.Fatalf("wait: %s", r)
		}
		// Park with an owner; a newer park supersedes it; Cancel ends the newer.
		parked := func(owner *poll.Ticket, ack uint64) <-chan string {
			ch := make(chan string, 1)
			msgs, err, ok := st.Park(owner, s.ID, ack, true, time.Hour, func(m []poll.Message, err error) func() {
				ch <- fmt.Sprint(len(m), " ", err)
				return nil
			})
			if !ok {
				t.Fatalf("park at %d answered at once: %v %v", ack, msgs, err)
			}
			return ch
		}
		first := parked(nil, 1)
		var owner poll.Ticket
		second := parked(&owner, 1)
		if r := receive(t, first, "the superseded park"); r != "0 "+poll.ErrSuperseded.Error() {
			t.Fatalf("superseded: %s", r)
		}
		if !st.Cancel(s.ID, &owner) {
			t.Fatal("Cancel found no poll of its owner")
		}
		if r := receive(t, second, "the canceled park"); r != "0 "+poll.ErrCanceled.Error() {
			t.Fatalf("canceled: %s", r)
		}
		if st.Cancel(s.ID, &owner) {
			t.Fatal("Cancel twice")
		}
		// A park is answered by an append (its Wakeup, or the store's own
		// once the message is durable).
		third := parked(&owner, 1)
		deliver("2")
		if r := receive(t, third, "the park"); r != "1 <nil>" {
			t.Fatalf("park: %s", r)
		}
		if err := st.Ack(s.ID, 9); !errors.Is(err, poll.ErrInvalidCursor) {
			t.Fatalf("ack beyond the newest: %v", err)
		}
		if err := st.Ack(s.ID, 2); err != nil {
			t.Fatal(err)
		}
		got2, err := read(t, st, s.ID, 0, false)
		want(t, "after Ack(2)", got2, err)
		st.restart(t)
		got2, err = read(t, st, s.ID, 2, true)
		want(t, "after Ack(2) and a restart", got2, err)
	})

	t.Run("a full mailbox refuses", func(t *testing.T) {
		st, clk := newStore(t)
		s := sess("d", "")
		connect(t, st, clk, s)
		for range limit {
			if _, err := st.Append(s.ID, msg(clk, "1")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Append(s.ID, msg(clk, "1")); !errors.Is(err, poll.ErrMailboxFull) {
			t.Fatalf("append past the limit: %v", err)
		}
		_, delivered, rejected, err := st.FanOut([]*session.Session{s}, msg(clk, "1"))
		if err != nil || delivered != 0 || rejected != 1 {
			t.Fatalf("fan-out to a full mailbox: %d delivered, %d rejected", delivered, rejected)
		}
	})

	t.Run("replace moves the unacknowledged, then the offline, in order", func(t *testing.T) {
		st, clk := newStore(t)
		old := sess("lamp", "")
		connect(t, st, clk, old)
		for _, d := range []string{"1", "2", "3"} {
			if _, err := st.Append(old.ID, msg(clk, d)); err != nil {
				t.Fatal(err)
			}
		}
		st.flush(t)
		if _, err := read(t, st, old.ID, 1, true); err != nil { // 1 acknowledged
			t.Fatal(err)
		}
		// Alice has no session online: the message waits in her offline list.
		if _, res, err := st.DeliverUser("alice", msg(clk, "o"), limit, false); err != nil || res.Stored != 1 {
			t.Fatalf("offline for alice: %+v %v", res, err)
		}
		repl := sess("lamp", "alice")
		if got := connect(t, st, clk, repl); got == nil || got.ID != old.ID {
			t.Fatalf("replaced %v, want the old session", got)
		}
		st.restart(t)
		got, err := read(t, st, repl.ID, 0, false)
		want(t, "the new session", got, err, "1:2", "2:3", "3:o")
	})

	t.Run("replace answers the parked poll and carries nothing acknowledged", func(t *testing.T) {
		st, clk := newStore(t)
		old := sess("lamp", "alice")
		connect(t, st, clk, old)
		for _, d := range []string{"1", "2", "3"} {
			if _, err := st.Append(old.ID, msg(clk, d)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := read(t, st, old.ID, 1, true); err != nil {
			t.Fatal(err)
		}
		// Offline for the user (no session of hers but old, which is the
		// lamp's): a message to another device of hers that is offline.
		if _, _, stored, err := st.DeliverDevice("lamp-offline", msg(clk, "o"), limit, false); err != nil || !stored {
			t.Fatalf("offline: %v %v", stored, err)
		}
		parked := make(chan error, 1)
		if _, _, ok := st.Park(nil, old.ID, 3, true, time.Minute, func(_ []poll.Message, err error) func() { parked <- err; return nil }); !ok {
			t.Fatal("not parked")
		}
		repl := sess("lamp", "alice")
		if got := connect(t, st, clk, repl); got == nil || got.ID != old.ID {
			t.Fatalf("replaced %v, want the old session", got)
		}
		if err := <-parked; !errors.Is(err, poll.ErrSessionClosed) {
			t.Fatalf("the old session's parked poll: %v", err)
		}
		st.restart(t)
		if online(t, st, old.ID) {
			t.Fatal("the old session is still online")
		}
		got, err := read(t, st, repl.ID, 0, false)
		want(t, "the new session", got, err) // 2 and 3 were acknowledged with cursor 3 by the parked poll
		if s, err := st.ByDevice("lamp"); err != nil || s == nil || s.ID != repl.ID {
			t.Fatalf("ByDevice: %v %v", s, err)
		}
	})

	t.Run("replace carries what was not acknowledged", func(t *testing.T) {
		st, clk := newStore(t)
		old := sess("lamp", "")
		connect(t, st, clk, old)
		for _, d := range []string{"1", "2"} {
			st.Append(old.ID, msg(clk, d))
		}
		if _, _, stored, err := st.DeliverDevice("lamp", msg(clk, "3"), limit, false); err != nil || stored {
			t.Fatalf("to the online device: stored %v %v", stored, err)
		}
		repl := sess("lamp", "")
		connect(t, st, clk, repl)
		st.restart(t)
		got, err := read(t, st, repl.ID, 0, false)
		want(t, "carried", got, err, "1:1", "2:2", "3:3")
		if online(t, st, old.ID) {
			t.Fatal("the replaced session is online again")
		}
	})

	t.Run("end moves the rest offline, the next connect gets it", func(t *testing.T) {
		st, clk := newStore(t)
		s := sess("lamp", "bob")
		connect(t, st, clk, s)
		st.Append(s.ID, msg(clk, "1"))
		st.Append(s.ID, msg(clk, "2"))
		st.Append(s.ID, poll.NewEnvelope(session.TopicHeartbeat, "", json.RawMessage(`{}`), clk.Now(), time.Hour))
		st.flush(t) // as the hub does before its 202: a client can acknowledge only what it could see
		if _, err := st.End(s.ID, 9, true, poll.ErrSessionClosed, clk.Now()); !errors.Is(err, poll.ErrInvalidCursor) {
			t.Fatalf("end with a bad cursor: %v", err)
		}
		if !online(t, st, s.ID) {
			t.Fatal("a refused end ended the session")
		}
		if _, err := st.End(s.ID, 1, true, poll.ErrSessionClosed, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := st.End(s.ID, 0, false, poll.ErrSessionClosed, clk.Now()); !errors.Is(err, poll.ErrSessionNotFound) {
			t.Fatalf("a second end: %v", err)
		}
		st.restart(t)
		if online(t, st, s.ID) {
			t.Fatal("an ended session is online again")
		}
		if st.Stats().OfflineMessages != 1 {
			t.Fatalf("offline %d, want 1 (2; 1 acknowledged, the heartbeat dropped)", st.Stats().OfflineMessages)
		}
		next := sess("lamp", "bob")
		connect(t, st, clk, next)
		got, err := read(t, st, next.ID, 0, false)
		want(t, "next session", got, err, "1:2")
	})

	t.Run("offline lists keep send order across device and user, and their ttl", func(t *testing.T) {
		st, clk := newStore(t)
		for i, to := range []string{"device", "user", "device", "user"} {
			e := msg(clk, fmt.Sprint(i))
			var err error
			if to == "device" {
				_, _, _, err = st.DeliverDevice("tv", e, limit, false)
			} else {
				_, _, err = st.DeliverUser("carol", e, limit, false)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		short := poll.NewEnvelope("t", "", json.RawMessage(`"short"`), clk.Now(), time.Minute)
		st.DeliverDevice("tv", short, limit, false)
		st.restart(t)
		clk.advance(2 * time.Minute)
		s := sess("tv", "carol")
		connect(t, st, clk, s)
		got, err := read(t, st, s.ID, 0, false)
		want(t, "offline in send order, the expired one left out", got, err, "1:0", "2:1", "3:2", "4:3")

		st.DeliverDevice("radio", poll.NewEnvelope("t", "", json.RawMessage(`1`), clk.Now(), time.Minute), limit, false)
		clk.advance(2 * time.Minute)
		if n := st.Cleanup(clk.Now()); n != 1 || st.Stats().OfflineMessages != 0 {
			t.Fatalf("cleanup dropped %d, %d left", n, st.Stats().OfflineMessages)
		}
		st.restart(t)
		if st.Stats().OfflineMessages != 0 {
			t.Fatalf("an expired offline message is back: %d", st.Stats().OfflineMessages)
		}
	})

	t.Run("an offline list is bounded", func(t *testing.T) {
		st, clk := newStore(t)
		for range limit {
			if _, _, _, err := st.DeliverDevice("tv", msg(clk, "1"), limit, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, _, err := st.DeliverDevice("tv", msg(clk, "1"), limit, false); !errors.Is(err, poll.ErrMailboxFull) {
			t.Fatalf("past the limit: %v", err)
		}
	})

	t.Run("a client's send is kept only for names online within the offline ttl", func(t *testing.T) {
		st, clk := newStore(t)
		s := sess("lamp", "dave")
		connect(t, st, clk, s)
		if _, err := st.End(s.ID, 0, false, poll.ErrSessionClosed, clk.Now()); err != nil {
			t.Fatal(err)
		}
		st.restart(t)
		if _, _, stored, _ := st.DeliverDevice("lamp", msg(clk, "1"), limit, true); !stored {
			t.Fatal("a send to a device online a moment ago was not kept")
		}
		if _, res, _ := st.DeliverUser("dave", msg(clk, "1"), limit, true); res.Stored != 1 {
			t.Fatal("a send to a user online a moment ago was not kept")
		}
		if _, _, stored, _ := st.DeliverDevice("invented", msg(clk, "1"), limit, true); stored {
			t.Fatal("a send to an invented device was kept")
		}
		clk.advance(2 * time.Hour)
		st.Cleanup(clk.Now())
		if _, _, stored, _ := st.DeliverDevice("lamp", msg(clk, "1"), limit, true); stored {
			t.Fatal("a send to a device offline past the ttl was kept")
		}
	})

	t.Run("idempotency ids and their ttl", func(t *testing.T) {
		st, clk := newStore(t)
		if _, seen := st.Remember("k", poll.Result{ID: "m_1"}, time.Minute); seen {
			t.Fatal("a new key seen")
		}
		st.Settle("k", poll.Result{ID: "m_1", Delivered: 2}, time.Minute)
		st.flush(t)
		st.restart(t)
		if prev, seen := st.Remember("k", poll.Result{ID: "m_2"}, time.Minute); !seen || prev.ID != "m_1" || prev.Delivered != 2 {
			t.Fatalf("a repeated key: %+v %v", prev, seen)
		}
		st.Forget("k")
		st.restart(t)
		if _, seen := st.Remember("k", poll.Result{ID: "m_3"}, time.Minute); seen {
			t.Fatal("a forgotten key seen")
		}
		if st.Stats().IdempotencyIDs != 1 {
			t.Fatalf("ids %d, want 1", st.Stats().IdempotencyIDs)
		}
		clk.advance(2 * time.Minute)
		st.Cleanup(clk.Now())
		st.restart(t)
		if st.Stats().IdempotencyIDs != 0 {
			t.Fatalf("ids %d past their ttl, want 0", st.Stats().IdempotencyIDs)
		}
	})

	t.Run("an idle session expires, a parked one does not", func(t *testing.T) {
		st, clk := newStore(t)
		idle, busy := sess("a", ""), sess("b", "")
		connect(t, st, clk, idle)
		connect(t, st, clk, busy)
		st.Append(idle.ID, msg(clk, `"kept"`))
		st.restart(t)
		if _, _, ok := st.Park(nil, busy.ID, 0, false, time.Hour, func([]poll.Message, error) func() { return nil }); !ok {
			t.Fatal("not parked")
		}
		clk.advance(30 * time.Second)
		if got := st.Expire(clk.Now()); len(got) != 0 {
			t.Fatalf("expired before the ttl: %v", got)
		}
		clk.advance(time.Minute)
		got := st.Expire(clk.Now())
		if len(got) != 1 || got[0].ID != idle.ID {
			t.Fatalf("expired %v, want the idle one only", got)
		}
		if !online(t, st, busy.ID) {
			t.Fatal("the parked session expired")
		}
		st.restart(t)
		if online(t, st, idle.ID) {
			t.Fatal("the expired session is back")
		}
		next := sess("a", "")
		connect(t, st, clk, next)
		got2, err := read(t, st, next.ID, 0, false)
		want(t, "the expired session's message", got2, err, "1:\"kept\"")
	})

	t.Run("the storage budget counts each message once, and frees it", func(t *testing.T) {
		st, clk := newStore(t)
		a, b := sess("a", "erin"), sess("b", "erin")
		connect(t, st, clk, a)
		connect(t, st, clk, b)
		e := msg(clk, `"shared"`)
		_, res, err := st.DeliverUser("erin", e, limit, false)
		if err != nil || res.Delivered != 2 {
			t.Fatalf("delivered %d: %v", res.Delivered, err)
		}
		st.restart(t)
		if got := st.StoredBytes(); got < int64(e.Size()) || got >= int64(2*e.Size()) {
			t.Fatalf("stored %d bytes for one message of %d to two sessions: not counted once", got, e.Size())
		}
		read(t, st, a.ID, 1, true)
		read(t, st, b.ID, 1, true)
		if st.StoredBytes() != 0 {
			t.Fatalf("all acknowledged: %d bytes stored", st.StoredBytes())
		}
	})

	t.Run("subscribe changes the topics as one change, durably, patterns included", func(t *testing.T) {
		st, clk := newStore(t)
		s := sess("d", "u", "a")
		connect(t, st, clk, s)
		if _, err := st.Append(s.ID, msg(clk, "kept")); err != nil {
			t.Fatal(err)
		}
		cur, err := st.Subscribe(s.ID, []string{"b/*", "a", "c"}, []string{"a"}, 3)
		if err != nil || !slices.Equal(cur.Topics, []string{"b/*", "c"}) || cur.ID != s.ID {
			t.Fatalf("subscribe: %+v %v", cur, err)
		}
		if _, err := st.Subscribe(s.ID, []string{"x", "y"}, nil, 3); !errors.Is(err, session.ErrInvalidPayload) {
			t.Fatalf("past the cap: %v", err)
		}
		if _, err := st.Subscribe("nope", []string{"x"}, nil, 3); !errors.Is(err, poll.ErrSessionNotFound) {
			t.Fatalf("unknown session: %v", err)
		}
		st.flush(t)
		st.restart(t)
		byTopic := func(topic string) []string {
			var out []string
			list, err := st.ByTopic(topic)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range list {
				out = append(out, x.DeviceID+" "+fmt.Sprint(x.Topics))
			}
			return out
		}
		if got := byTopic("b/x"); !slices.Equal(got, []string{"d [b/* c]"}) {
			t.Fatalf("ByTopic(b/x) = %v", got)
		}
		if got := byTopic("a"); len(got) != 0 {
			t.Fatalf("ByTopic(a) = %v after unsubscribing", got)
		}
		if got, err := st.Session(s.ID); err != nil || got.UserID != "u" || !slices.Equal(got.Topics, []string{"b/*", "c"}) {
			t.Fatalf("session %+v %v", got, err)
		}
		got, err := read(t, st, s.ID, 0, false)
		want(t, "the mailbox is the session's still", got, err, "1:kept")
	})

	t.Run("a session cap", func(t *testing.T) {
		st, clk := newStore(t)
		if _, err := st.Connect(sess("a", ""), 1, clk.Now()); err != nil {
			t.Fatal(err)
		}
		st.restart(t)
		if _, err := st.Connect(sess("b", ""), 1, clk.Now()); !errors.Is(err, poll.ErrTooManySessions) {
			t.Fatalf("past the cap: %v", err)
		}
		if _, err := st.Connect(sess("a", ""), 1, clk.Now()); err != nil {
			t.Fatalf("a replacement at the cap: %v", err)
		}
		if n, _ := st.Counts(); n != 1 {
			t.Fatalf("%d sessions", n)
		}
	})
}

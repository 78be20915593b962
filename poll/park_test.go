package poll

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// result of an asynchronous poll.
type parkResult struct {
	msgs []Message
	err  error
}

func parkOn(t *testing.T, h *Hub, id string, ack uint64, hold time.Duration) chan parkResult {
	t.Helper()
	ch := make(chan parkResult, 2) // 2: a second call would be caught below
	msgs, err, parked := h.Park(nil, id, ack, ack > 0, hold, func(m []Message, e error) func() { ch <- parkResult{m, e}; return nil })
	if !parked {
		t.Fatalf("not parked: %v %v", msgs, err)
	}
	return ch
}

func once(t *testing.T, ch chan parkResult) parkResult {
	t.Helper()
	r := <-ch
	synctest.Wait()
	if len(ch) != 0 {
		t.Fatal("done called twice")
	}
	return r
}

func TestParkDeliversOnAppend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "")
		ch := parkOn(t, h, s.ID, 0, time.Minute)
		if h.Stats().Parked != 1 {
			t.Fatalf("parked %d", h.Stats().Parked)
		}
		publish(t, h, Target{DeviceID: "lamp"}, `1`)
		publish(t, h, Target{DeviceID: "lamp"}, `2`)
		r := once(t, ch)
		if r.err != nil || len(r.msgs) == 0 || string(r.msgs[0].Data) != "1" {
			t.Fatalf("got %+v", r)
		}
		if h.Stats().Parked != 0 {
			t.Fatalf("parked %d after delivery", h.Stats().Parked)
		}
		// The timer is stopped: no second call when the hold would have passed.
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if len(ch) != 0 {
			t.Fatal("done called again at the end of the hold")
		}
	})
}

func TestParkReturnsPendingAtOnce(t *testing.T) {
	h := NewHub(Config{})
	s := connect(t, h, "lamp", "")
	publish(t, h, Target{DeviceID: "lamp"}, `1`)
	msgs, err, parked := h.Park(nil, s.ID, 0, false, time.Minute, func([]Message, error) func() { t.Error("done called"); return nil })
	if parked || err != nil || len(msgs) != 1 {
		t.Fatalf("%v %v %v", msgs, err, parked)
	}
	if _, err, parked := h.Park(nil, s.ID, 9, true, time.Minute, nil); parked || !errors.Is(err, ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v %v", err, parked)
	}
	if _, err, _ := h.Park(nil, "nope", 0, false, time.Minute, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
}

func TestParkHoldEndsWithNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "")
		start := time.Now()
		ch := parkOn(t, h, s.ID, 0, 30*time.Second)
		r := once(t, ch)
		if r.err != nil || r.msgs != nil || time.Since(start) != 30*time.Second {
			t.Fatalf("got %+v after %v", r, time.Since(start))
		}
	})
}

func TestParkSupersededClosedAndShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "")
		first := parkOn(t, h, s.ID, 0, time.Minute)
		second := parkOn(t, h, s.ID, 0, time.Minute)
		if r := once(t, first); !errors.Is(r.err, ErrSuperseded) {
			t.Fatalf("older parked poll: %+v", r)
		}
		// A blocking poll supersedes a parked one too, and the other way round.
		blocking := make(chan error)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := h.Poll(ctx, s.ID, 0, false)
			blocking <- err
		}()
		if r := once(t, second); !errors.Is(r.err, ErrSuperseded) {
			t.Fatalf("parked poll superseded by a blocking one: %+v", r)
		}
		synctest.Wait()
		third := parkOn(t, h, s.ID, 0, time.Minute)
		if err := <-blocking; !errors.Is(err, ErrSuperseded) {
			t.Fatalf("blocking poll superseded by a parked one: %v", err)
		}
		if err := h.Disconnect(s.ID, 0, false); err != nil {
			t.Fatal(err)
		}
		if r := once(t, third); !errors.Is(r.err, ErrSessionClosed) {
			t.Fatalf("parked poll at disconnect: %+v", r)
		}
		s2 := connect(t, h, "gw", "")
		fourth := parkOn(t, h, s2.ID, 0, time.Hour)
		start := time.Now()
		h.Close()
		if r := once(t, fourth); r.err != nil || r.msgs != nil || time.Since(start) != 0 {
			t.Fatalf("parked poll at close: %+v after %v", r, time.Since(start))
		}
		if _, err, _ := h.Park(nil, s2.ID, 0, false, time.Hour, nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("park after close: %v", err)
		}
		if h.Stats().Parked != 0 {
			t.Fatalf("parked %d", h.Stats().Parked)
		}
	})
}

// TestParkExactlyOnceUnderRaces: appends, supersedes and short holds race
// with each other; every parked poll is answered exactly once and every
// message is delivered exactly once, in order.
func TestParkExactlyOnceUnderRaces(t *testing.T) {
	const total = 2000
	h := NewHub(Config{MaxMailbox: total})
	s := connect(t, h, "lamp", "")
	var pub sync.WaitGroup
	pub.Go(func() {
		for i := range total {
			publish(t, h, Target{SessionID: s.ID}, fmt.Sprint(i))
		}
	})
	next := 0
	var cursor uint64
	deadline := time.Now().Add(30 * time.Second)
	for next < total {
		if time.Now().After(deadline) {
			t.Fatalf("stuck at %d", next)
		}
		ch := make(chan parkResult, 2)
		msgs, err, parked := h.Park(nil, s.ID, cursor, cursor > 0, time.Millisecond, func(m []Message, e error) func() { ch <- parkResult{m, e}; return nil })
		if parked {
			r := <-ch
			msgs, err = r.msgs, r.err
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if string(m.Data) != fmt.Sprint(next) {
				t.Fatalf("got %s, want %d", m.Data, next)
			}
			next++
			cursor = m.Seq
		}
		if parked && len(ch) != 0 {
			t.Fatal("done called twice")
		}
	}
	pub.Wait()
}

// A Ticket carries the session from one Park to the next without changing
// what Park answers: the same messages while the session is online, and
// ErrSessionNotFound (not the mailbox's close error) once it is gone,
// however recently the ticket was filled in.
func TestParkWithATicket(t *testing.T) {
	h := NewHub(Config{})
	s := connect(t, h, "lamp", "")
	other := connect(t, h, "tv", "")
	var tk Ticket
	publish(t, h, Target{DeviceID: "lamp"}, `1`)
	msgs, err, parked := h.Park(&tk, s.ID, 0, false, time.Minute, nil)
	if parked || err != nil || len(msgs) != 1 || tk.s != s {
		t.Fatalf("first park: %v %v %v; ticket for %v", msgs, err, parked, tk.s)
	}
	publish(t, h, Target{DeviceID: "lamp"}, `2`)
	if msgs, err, _ := h.Park(&tk, s.ID, 1, true, time.Minute, nil); err != nil || len(msgs) != 1 || msgs[0].Seq != 2 {
		t.Fatalf("second park with the ticket: %v %v", msgs, err)
	}
	publish(t, h, Target{DeviceID: "tv"}, `3`)
	if msgs, err, _ := h.Park(&tk, other.ID, 0, false, time.Minute, nil); err != nil || len(msgs) != 1 || tk.s != other {
		t.Fatalf("another session with the same ticket: %v %v; ticket for %v", msgs, err, tk.s)
	}
	if err := h.Disconnect(other.ID, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err, _ := h.Park(&tk, other.ID, 0, false, time.Minute, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("after disconnect: %v", err)
	}
	if tk.s != nil {
		t.Fatal("the ticket still holds the session that is gone")
	}
	if msgs, err, _ := h.Park(&tk, s.ID, 1, true, time.Minute, nil); err != nil || len(msgs) != 1 || tk.s != s {
		t.Fatalf("back to the first session: %v %v", msgs, err)
	}
	connect(t, h, "lamp", "") // replaces s
	if _, err, _ := h.Park(&tk, s.ID, 2, true, time.Minute, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("after replacement: %v", err)
	}
}

// Cancel ends the poll its owner parked, and no other: the done of a
// canceled poll gets ErrCanceled and no messages; the messages stay.
func TestParkCancel(t *testing.T) {
	h := NewHub(Config{})
	defer h.Close()
	s := connect(t, h, "lamp", "")
	var mine, theirs Ticket
	ch := make(chan parkResult, 2)
	done := func(m []Message, e error) func() { ch <- parkResult{m, e}; return nil }
	if _, _, parked := h.Park(&mine, s.ID, 0, false, time.Minute, done); !parked {
		t.Fatal("not parked")
	}
	if h.Cancel(s.ID, &theirs) || h.Cancel("nope", &mine) {
		t.Fatal("Cancel of another owner's poll, or of an unknown session, canceled something")
	}
	if !h.Cancel(s.ID, &mine) {
		t.Fatal("Cancel of the owner's poll canceled nothing")
	}
	if r := <-ch; !errors.Is(r.err, ErrCanceled) || r.msgs != nil {
		t.Fatalf("canceled poll: %v %v", r.msgs, r.err)
	}
	if h.Cancel(s.ID, &mine) {
		t.Fatal("a second Cancel canceled something")
	}
	// A newer poll of another connection supersedes the first; canceling
	// the first then leaves the newer one alone.
	publish(t, h, Target{SessionID: s.ID}, `1`)
	if msgs, _, parked := h.Park(&theirs, s.ID, 0, false, time.Minute, done); parked || len(msgs) != 1 {
		t.Fatalf("the message did not stay: %v parked %v", msgs, parked)
	}
	if _, _, parked := h.Park(&theirs, s.ID, 1, true, time.Minute, done); !parked {
		t.Fatal("not parked")
	}
	if h.Cancel(s.ID, &mine) {
		t.Fatal("Cancel by the first connection ended the newer poll")
	}
	if st := h.Stats(); st.Parked != 1 {
		t.Fatalf("parked %d, want 1", st.Parked)
	}
}

package poll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func env(t testing.TB, data string) *Envelope {
	t.Helper()
	return NewEnvelope("t", "", json.RawMessage(data), time.Now(), time.Hour)
}

func seqs(msgs []Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func TestMailboxAppendThenWaitReturnsAtOnce(t *testing.T) {
	m := newMailbox(10)
	for i := range 3 {
		if err := m.Append(env(t, fmt.Sprint(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := m.Wait(context.Background(), nil, 0, false)
	if err != nil || fmt.Sprint(seqs(msgs)) != "[1 2 3]" {
		t.Fatalf("Wait = %v, %v; want seqs 1..3", seqs(msgs), err)
	}
	// Without a cursor nothing is acknowledged: the same messages again.
	msgs, _ = m.Wait(context.Background(), nil, 0, false)
	if len(msgs) != 3 {
		t.Fatalf("unacknowledged messages were dropped: %v", seqs(msgs))
	}
	// cursor=2 acknowledges 1 and 2.
	msgs, _ = m.Wait(context.Background(), nil, 2, true)
	if fmt.Sprint(seqs(msgs)) != "[3]" || m.Len() != 1 {
		t.Fatalf("after ack 2: %v, len %d", seqs(msgs), m.Len())
	}
}

func TestMailboxWaitThenAppendWakesParkedPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMailbox(10)
		got := make(chan []Message)
		go func() {
			msgs, _ := m.Wait(context.Background(), nil, 0, false)
			got <- msgs
		}()
		synctest.Wait() // the poll is parked
		if !m.Parked() {
			t.Fatal("poll not parked")
		}
		if err := m.Append(env(t, `"x"`), false); err != nil {
			t.Fatal(err)
		}
		msgs := <-got
		if len(msgs) != 1 || string(msgs[0].Data) != `"x"` {
			t.Fatalf("got %v", msgs)
		}
		if m.Parked() {
			t.Fatal("waiter not cleared")
		}
	})
}

func TestMailboxWaitTimeoutAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMailbox(10)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		msgs, err := m.Wait(ctx, nil, 0, false)
		if msgs != nil || err != nil || time.Since(start) != 30*time.Second {
			t.Fatalf("timeout: %v %v after %v", msgs, err, time.Since(start))
		}
		stop := make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := m.Wait(context.Background(), stop, 0, false)
			done <- err
		}()
		synctest.Wait()
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("stop: %v", err)
		}
	})
}

func TestMailboxSupersede(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMailbox(10)
		first := make(chan error)
		go func() {
			_, err := m.Wait(context.Background(), nil, 0, false)
			first <- err
		}()
		synctest.Wait()
		second := make(chan []Message)
		go func() {
			msgs, _ := m.Wait(context.Background(), nil, 0, false)
			second <- msgs
		}()
		if err := <-first; !errors.Is(err, ErrSuperseded) {
			t.Fatalf("older poll: %v, want ErrSuperseded", err)
		}
		synctest.Wait()
		_ = m.Append(env(t, "1"), false)
		if msgs := <-second; len(msgs) != 1 {
			t.Fatalf("newer poll got %v", msgs)
		}
	})
}

func TestMailboxInvalidCursorChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMailbox(10)
		parked := make(chan error)
		go func() {
			_, err := m.Wait(context.Background(), nil, 0, false)
			parked <- err
		}()
		synctest.Wait()
		if _, err := m.Wait(context.Background(), nil, 5, true); !errors.Is(err, ErrInvalidCursor) {
			t.Fatalf("cursor beyond newest: %v", err)
		}
		if !m.Parked() {
			t.Fatal("a rejected poll superseded the parked one")
		}
		_ = m.Append(env(t, "1"), false)
		if err := <-parked; err != nil {
			t.Fatal(err)
		}
		if err := m.Ack(2); !errors.Is(err, ErrInvalidCursor) || m.Len() != 1 {
			t.Fatalf("Ack(2) = %v, len %d", err, m.Len())
		}
	})
}

func TestMailboxLimitAndBatchSize(t *testing.T) {
	m := newMailbox(150)
	for i := range 150 {
		if err := m.Append(env(t, fmt.Sprint(i)), false); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := m.Append(env(t, `"x"`), false); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("append past limit: %v", err)
	}
	if err := m.Append(env(t, `"forced"`), true); err != nil {
		t.Fatalf("forced append: %v", err)
	}
	msgs, _ := m.Wait(context.Background(), nil, 0, false)
	if len(msgs) != MaxBatch || msgs[0].Seq != 1 || msgs[99].Seq != 100 {
		t.Fatalf("first batch: %d messages, %v..", len(msgs), msgs[0].Seq)
	}
	msgs, _ = m.Wait(context.Background(), nil, msgs[len(msgs)-1].Seq, true)
	if len(msgs) != 51 || msgs[0].Seq != 101 || msgs[50].Seq != 151 {
		t.Fatalf("second batch: %v", seqs(msgs))
	}
	if err := m.Append(env(t, `"room"`), false); err != nil {
		t.Fatalf("append after ack freed room: %v", err)
	}
}

func TestMailboxRetireForwardsAndClosesParkedPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old, next := newMailbox(10), newMailbox(10)
		_ = old.Append(env(t, `"a"`), false)
		_ = old.Append(env(t, `"b"`), false)
		_, _ = old.Wait(context.Background(), nil, 1, true) // ack a
		parked := make(chan error)
		go func() {
			// Pending b is returned at once, so park with a fresh ack.
			_, err := old.Wait(context.Background(), nil, 2, true)
			parked <- err
		}()
		synctest.Wait()
		// b was acknowledged by the parked poll's cursor; add c.
		_ = old.Append(env(t, `"c"`), false)
		if err := <-parked; err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := old.Wait(context.Background(), nil, 3, true)
			parked <- err
		}()
		synctest.Wait()
		_ = old.Append(env(t, `"d"`), false)
		<-parked
		// d is pending (the poll above had it but has not acknowledged
		// it), so no poll can park on old; a poll parked on an empty
		// mailbox shows what retire does to it.
		parkedOn := newMailbox(10)
		go func() {
			_, err := parkedOn.Wait(context.Background(), nil, 0, false)
			parked <- err
		}()
		synctest.Wait()
		parkedOn.retire(ErrSessionClosed, func([]*Envelope) *Mailbox { return nil })
		if err := <-parked; !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("parked poll on retired mailbox: %v", err)
		}
		old.retire(ErrSessionClosed, func(p []*Envelope) *Mailbox {
			for _, e := range p {
				_ = next.Append(e, true)
			}
			return next
		})
		if err := old.Append(env(t, `"e"`), false); err != nil {
			t.Fatalf("append to retired mailbox with successor: %v", err)
		}
		msgs, _ := next.Wait(context.Background(), nil, 0, false)
		var data []string
		for _, m := range msgs {
			data = append(data, string(m.Data))
		}
		if fmt.Sprint(data) != `["d" "e"]` || fmt.Sprint(seqs(msgs)) != "[1 2]" {
			t.Fatalf("successor holds %v seqs %v", data, seqs(msgs))
		}
		if _, err := old.Wait(context.Background(), nil, 0, false); !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("poll on retired mailbox: %v", err)
		}
	})
}

// TestMailboxConcurrentAppendAckIsExactlyOnce: 8 writers, one reader
// acknowledging with its cursor; every message arrives once, per-writer
// order kept.
func TestMailboxConcurrentAppendAckIsExactlyOnce(t *testing.T) {
	const writers, each = 8, 500
	m := newMailbox(writers * each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := m.Append(env(t, fmt.Sprintf(`[%d,%d]`, w, i)), false); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, writers)
	var cursor uint64
	lastSeq := uint64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got := 0; got < writers*each; {
		msgs, err := m.Wait(ctx, nil, cursor, true)
		if err != nil || ctx.Err() != nil {
			t.Fatalf("after %d messages: %v %v", got, err, ctx.Err())
		}
		for _, msg := range msgs {
			if msg.Seq != lastSeq+1 {
				t.Fatalf("seq %d after %d", msg.Seq, lastSeq)
			}
			lastSeq = msg.Seq
			var wi [2]int
			_ = json.Unmarshal(msg.Data, &wi)
			if wi[1] != next[wi[0]] {
				t.Fatalf("writer %d: got %d, want %d", wi[0], wi[1], next[wi[0]])
			}
			next[wi[0]]++
			got++
		}
		if len(msgs) > 0 {
			cursor = msgs[len(msgs)-1].Seq
		}
	}
	wg.Wait()
}

// An answer carries messages while they fit in MaxAnswerBytes, oldest
// first, and always at least one: a message larger than that goes alone.
func TestMailboxAnswerBytes(t *testing.T) {
	m := newMailbox(1000)
	big := `"` + strings.Repeat("x", MaxDataBytes-2) + `"` // 64 KiB of data
	for range 40 {
		if err := m.Append(env(t, big), false); err != nil {
			t.Fatal(err)
		}
	}
	huge := &Envelope{ID: "m_huge", Data: []byte(`"x"`), Rendered: make([]byte, 2*MaxAnswerBytes)}
	if err := m.Append(huge, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Append(env(t, `1`), false); err != nil {
		t.Fatal(err)
	}
	var cursor uint64
	var sizes []int
	done, cancel := context.WithCancel(context.Background())
	cancel() // answer at once
	for {
		msgs, err := m.Wait(done, nil, cursor, cursor > 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		total := 0
		for i, msg := range msgs {
			if msg.Seq != cursor+uint64(i)+1 {
				t.Fatalf("answer after %d: seq %d at %d", cursor, msg.Seq, i)
			}
			total += msg.AnswerSize()
		}
		if total > MaxAnswerBytes && len(msgs) > 1 {
			t.Fatalf("an answer of %d messages, %d bytes", len(msgs), total)
		}
		sizes = append(sizes, len(msgs))
		cursor = msgs[len(msgs)-1].Seq
		if len(sizes) > 10 {
			t.Fatal("too many answers")
		}
	}
	// 15 of the 64 KiB messages fit in 1 MiB; the huge one goes alone.
	if want := []int{15, 15, 10, 1, 1}; !slices.Equal(sizes, want) {
		t.Fatalf("answers of %v messages, want %v", sizes, want)
	}
}

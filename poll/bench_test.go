package poll

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/longpoll/longpoll/session"
)

// BenchmarkMailboxAppendAck: one message in, polled, acknowledged.
func BenchmarkMailboxAppendAck(b *testing.B) {
	m := newMailbox(1000)
	e := env(b, `{"n":1}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Append(e, false)
		msgs, _ := m.Wait(ctx, nil, 0, false)
		_ = m.Ack(msgs[len(msgs)-1].Seq)
	}
}

// BenchmarkPublishToSession: a targeted push through the hub, including
// envelope encoding, into a mailbox that is drained every 500 pushes.
func BenchmarkPublishToSession(b *testing.B) {
	h := NewHub(Config{MaxMailbox: 1000})
	s := connect(b, h, "dev", "")
	p := Push{To: Target{SessionID: s.ID}, Data: json.RawMessage(`{"text":"door open"}`)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := h.Publish(p); err != nil {
			b.Fatal(err)
		}
		if i++; i%500 == 0 {
			_ = h.store.Ack(s.ID, uint64(i))
		}
	}
}

// BenchmarkBroadcast10k: one broadcast fanned out to 10,000 sessions (the
// envelope is encoded once and shared).
func BenchmarkBroadcast10k(b *testing.B) {
	const n = 10000
	h := NewHub(Config{MaxMailbox: 1 << 30})
	ids := make([]string, n)
	for i := range n {
		ids[i] = connect(b, h, fmt.Sprint("d", i), "").ID
	}
	p := Push{Data: json.RawMessage(`{"text":"all"}`)}
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		res, err := h.Publish(p)
		if err != nil || res.Delivered != n {
			b.Fatalf("%+v %v", res, err)
		}
		seq++
		if seq%64 == 0 {
			b.StopTimer()
			for _, id := range ids {
				_ = h.store.Ack(id, seq)
			}
			b.StartTimer()
		}
	}
}

// BenchmarkConnect: a connect (session, registry, mailbox, presence).
func BenchmarkConnect(b *testing.B) {
	h := NewHub(Config{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := h.Connect(session.Request{DeviceID: fmt.Sprint("d", i%5000), UserID: "u"}); err != nil {
			b.Fatal(err)
		}
	}
}

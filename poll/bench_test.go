package poll

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

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
			_ = h.mailbox(s.ID).Ack(uint64(i))
		}
	}
}

// BenchmarkBroadcast10k: one broadcast fanned out to 10,000 sessions (the
// envelope is encoded once and shared).
func BenchmarkBroadcast10k(b *testing.B) {
	const n = 10000
	h := NewHub(Config{MaxMailbox: 1 << 30})
	boxes := make([]*Mailbox, n)
	for i := range n {
		boxes[i] = h.mailbox(connect(b, h, fmt.Sprint("d", i), "").ID)
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
			for _, m := range boxes {
				_ = m.Ack(seq)
			}
			b.StartTimer()
		}
	}
}

// BenchmarkEncodeDelivery: the JSON of a poll response with 1 and with 10
// messages, written from the pre-encoded envelopes.
func BenchmarkEncodeDelivery(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			msgs := make([]Message, n)
			for i := range msgs {
				e, _ := NewEnvelope("home/kitchen", "alice/phone-1", json.RawMessage(`{"text":"door open","n":12345}`), time.Now(), time.Hour)
				msgs[i] = Message{Seq: uint64(i + 1), Envelope: e}
			}
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendBatchJSON(buf[:0], msgs)
			}
		})
	}
}

// BenchmarkParsePush: decoding and validating a single push body.
func BenchmarkParsePush(b *testing.B) {
	body := []byte(`{"to":{"sessionId":"ZG5xJ0IHu3Vz1gzSq5Y1WloW"},"topic":"alerts","data":{"text":"door open"},"ttl":3600}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParsePushes(body, Publisher); err != nil {
			b.Fatal(err)
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

// BenchmarkParseBatch100: decoding and validating a batch of 100 pushes.
func BenchmarkParseBatch100(b *testing.B) {
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf(`{"to":{"sessionId":"ZG5xJ0IHu3Vz1gzSq5Y1W%03d"},"data":{"n":%d}}`, i, i)
	}
	body := []byte("[" + strings.Join(items, ",") + "]")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParsePushes(body, Publisher); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewEnvelope: encoding one pushed message's envelope.
func BenchmarkNewEnvelope(b *testing.B) {
	data := json.RawMessage(`{"r":1,"k":2,"p":3,"s":4,"t":1234567890123}`)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEnvelope("alerts", "u1/d1", data, now, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

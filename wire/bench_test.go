package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/poll"
)

// BenchmarkEncodeDelivery: the JSON of a poll response with 1 and with 10
// messages, written from the pre-encoded envelopes.
func BenchmarkEncodeDelivery(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			msgs := make([]poll.Message, n)
			for i := range msgs {
				e := poll.NewEnvelope("home/kitchen", "alice/phone-1", json.RawMessage(`{"text":"door open","n":12345}`), time.Now(), time.Hour)
				e.Rendered, _ = Render(e)
				msgs[i] = poll.Message{Seq: uint64(i + 1), Envelope: e}
			}
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendAnswer(buf[:0], msgs)
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

// BenchmarkRender: rendering one pushed message.
func BenchmarkRender(b *testing.B) {
	data := json.RawMessage(`{"r":1,"k":2,"p":3,"s":4,"t":1234567890123}`)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(poll.NewEnvelope("alerts", "u1/d1", data, now, time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
}

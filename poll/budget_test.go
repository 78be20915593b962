package poll

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// The storage budget counts every message once while a mailbox or the
// offline store holds it, and the idempotency ids; beyond it a push is
// refused whole, and what acknowledgments and expiry free is room again.
func TestHubStorageBudget(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	h := NewHub(Config{MaxStoredBytes: 64 << 10, Now: clock})
	defer h.Close()
	a := connect(t, h, "a", "", "news")
	b := connect(t, h, "b", "", "news")
	data := json.RawMessage(`"` + strings.Repeat("x", 4000) + `"`)
	// A broadcast to two sessions is one message: counted once.
	if _, err := h.Publish(Push{To: Target{Topic: "news"}, Data: data}); err != nil {
		t.Fatal(err)
	}
	one := h.StoredBytes()
	if one < 4000 || one > 2*4000+2*holderCost+envelopeOverhead+200 {
		t.Fatalf("one message to two sessions counted as %d bytes", one)
	}
	// Offline messages count; fill up to the budget.
	n := 1
	var err error
	for ; n < 100; n++ {
		if _, err = h.Publish(Push{To: Target{DeviceID: "offline"}, Data: data}); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrStorageFull) || n < 5 {
		t.Fatalf("after %d pushes: %v, want ErrStorageFull", n, err)
	}
	full := h.StoredBytes()
	if full > 64<<10 {
		t.Fatalf("stored %d bytes, beyond the budget", full)
	}
	// A batch that would not fit is refused whole; the store is unchanged.
	batch := []Push{{To: Target{SessionID: a.ID}, Data: json.RawMessage(`1`)}, {Data: data}}
	if err := h.Room(batch); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("Room of a batch past the budget: %v", err)
	}
	// Acknowledging frees room: both sessions must acknowledge the
	// broadcast before its bytes are free.
	pollNow(t, h, a.ID, 0)
	msgs := pollNow(t, h, a.ID, 0)
	pollNow(t, h, a.ID, msgs[len(msgs)-1].Seq)
	if h.StoredBytes() != full-holderCost {
		t.Fatalf("one of two holders acknowledged: %d, want %d", h.StoredBytes(), full-holderCost)
	}
	msgs = pollNow(t, h, b.ID, 0)
	pollNow(t, h, b.ID, msgs[len(msgs)-1].Seq)
	if h.StoredBytes() >= full-one+holderCost {
		t.Fatalf("both acknowledged: %d, want at most %d", h.StoredBytes(), full-one)
	}
	if _, err := h.Publish(Push{To: Target{SessionID: a.ID}, Data: data}); err != nil {
		t.Fatalf("after acknowledgments: %v", err)
	}
	// Offline messages past their ttl are dropped by Cleanup, and their
	// bytes freed; so are those of the sessions that expire meanwhile.
	now = now.Add(DefaultOfflineTTL + time.Second)
	h.Cleanup(now)
	if got := h.StoredBytes(); got != 0 {
		t.Fatalf("all acknowledged or expired: %d bytes stored", got)
	}
	// Idempotency ids count too.
	a = connect(t, h, "a", "")
	if _, err := h.Publish(Push{To: Target{SessionID: a.ID}, Data: json.RawMessage(`1`), Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	if st := h.Stats(); st.IdempotencyIDs != 1 || st.StoredBytes < idCost {
		t.Fatalf("stats with one id: %+v", st)
	}
}

// A client's send is kept offline only for a device or user that was
// online within the offline ttl, and may not ask for a longer ttl; a
// publisher's push may address anyone.
func TestHubSendOfflineOnlyForKnownNames(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h := NewHub(Config{Now: func() time.Time { return now }})
	defer h.Close()
	sender := connect(t, h, "phone", "alice")
	left := connect(t, h, "lamp", "bob")
	if err := h.Disconnect(left.ID, 0, false); err != nil {
		t.Fatal(err)
	}
	send := func(to Target) Result {
		t.Helper()
		res, err := h.Send(sender.ID, Push{To: to, Data: json.RawMessage(`1`)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, to := range []Target{{DeviceID: "invented"}, {UserID: "nobody"}} {
		if res := send(to); res.Stored != 0 || res.Delivered != 0 {
			t.Errorf("send to %+v: %+v, want nothing stored", to, res)
		}
	}
	for _, to := range []Target{{DeviceID: "lamp"}, {UserID: "bob"}} {
		if res := send(to); res.Stored != 1 {
			t.Errorf("send to %+v, online a moment ago: %+v, want stored", to, res)
		}
	}
	if res := publish(t, h, Target{DeviceID: "invented"}, `1`); res.Stored != 1 {
		t.Errorf("a publisher's push to an invented device: %+v, want stored", res)
	}
	// Past the offline ttl, and once Cleanup has run, lamp is forgotten.
	now = now.Add(DefaultOfflineTTL + time.Second)
	h.Cleanup(now)
	sender = connect(t, h, "phone", "alice") // it expired meanwhile
	if res := send(Target{DeviceID: "lamp"}); res.Stored != 0 {
		t.Errorf("send to a device offline for longer than the ttl: %+v", res)
	}
	if _, err := h.Send(sender.ID, Push{To: Target{UserID: "bob"}, Data: json.RawMessage(`1`), TTL: DefaultOfflineTTL + time.Second}); err == nil {
		t.Error("a send with a ttl beyond the offline ttl was accepted")
	}
}

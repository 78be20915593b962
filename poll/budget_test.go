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
	// The expired sessions' devices are remembered as recently online
	// (counted too) until the offline ttl passes again.
	now = now.Add(DefaultOfflineTTL + time.Second)
	h.Cleanup(now)
	if got := h.StoredBytes(); got <= 0 || got > 4*(64+8) {
		t.Fatalf("all acknowledged or expired, two names remembered: %d bytes stored", got)
	}
	now = now.Add(DefaultOfflineTTL + time.Second)
	h.Cleanup(now)
	if got := h.StoredBytes(); got != 0 {
		t.Fatalf("all acknowledged or expired, names forgotten: %d bytes stored", got)
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

// A fan-out counts a holder per recipient: a broadcast to many sessions
// that would pass the budget is refused whole, and heartbeats and presence
// events stop at half the budget rather than fill it.
func TestHubFanOutAndSystemMessagesBudget(t *testing.T) {
	h := NewHub(Config{MaxStoredBytes: 100 * holderCost, MaxMailbox: 1000})
	defer h.Close()
	for i := range 60 {
		connect(t, h, "d"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), "", "news", "$presence")
	}
	// Connect events filled the mailboxes up to half the budget, no further.
	if got := h.StoredBytes(); got > 50*holderCost || got < 30*holderCost {
		t.Fatalf("presence events stored %d bytes, want them to fill up to half of %d", got, 100*holderCost)
	}
	before := h.StoredBytes()
	if n := h.Heartbeat(time.Now()); n != 0 {
		t.Fatalf("a heartbeat past half the budget reached %d mailboxes", n)
	}
	if h.StoredBytes() != before {
		t.Fatalf("a skipped heartbeat changed the store: %d -> %d", before, h.StoredBytes())
	}
	// 60 holders of one small message do not fit what is left: refused,
	// nothing delivered.
	if _, err := h.Publish(Push{To: Target{Topic: "news"}, Data: json.RawMessage(`1`)}); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("a fan-out past the budget: %v", err)
	}
	if h.StoredBytes() != before {
		t.Fatalf("a refused fan-out changed the store: %d -> %d", before, h.StoredBytes())
	}
	// A single target still fits.
	s := connect(t, h, "solo", "")
	if _, err := h.Publish(Push{To: Target{SessionID: s.ID}, Data: json.RawMessage(`1`)}); err != nil {
		t.Fatalf("one holder: %v", err)
	}
}

// Recently online names are counted in the budget and not recorded past
// it: connecting and disconnecting invented devices cannot grow the
// process without bound.
func TestHubRecentNamesBounded(t *testing.T) {
	h := NewHub(Config{MaxStoredBytes: 4 << 10})
	defer h.Close()
	for i := range 200 {
		s := connect(t, h, "dev-"+strings.Repeat("y", 20)+string(rune('A'+i%50))+string(rune('A'+i/50)), "")
		if err := h.Disconnect(s.ID, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.StoredBytes(); got > 4<<10 {
		t.Fatalf("recent names counted as %d bytes, past the budget", got)
	}
	if h.StoredBytes() < 2<<10 {
		t.Fatalf("recent names counted as %d bytes: not counted", h.StoredBytes())
	}
}

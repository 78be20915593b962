package poll

import (
	"errors"
	"sync/atomic"
)

// DefaultMaxStoredBytes is Config.MaxStoredBytes's default: 1 GiB.
const DefaultMaxStoredBytes = 1 << 30

// ErrStorageFull: what the hub stores (messages and idempotency ids) is at
// Config.MaxStoredBytes; the push is refused whole until clients have
// acknowledged messages, or messages and ids have expired.
var ErrStorageFull = errors.New("the server's message store is full")

// holderCost is what one more holder of a message (a mailbox slot, an
// offline list entry) costs beyond the message itself.
const holderCost = 32

// idCost is what one idempotency id is counted as: its key (at most
// MaxKeyLen, plus the sender's scope), its result and the cache's entry.
const idCost = 384

// stored counts the bytes of the messages the hub holds: each message once
// (Envelope.Size) however many mailboxes and offline lists hold it, plus
// holderCost per holder. Its methods are safe for concurrent use (atomic).
type stored struct {
	bytes atomic.Int64
}

// hold records that one more mailbox or offline list holds e.
func (s *stored) hold(e *Envelope) {
	n := int64(holderCost)
	if e.holders.Add(1) == 1 {
		n += int64(e.Size())
	}
	s.bytes.Add(n)
}

// drop records that a mailbox or offline list no longer holds e.
func (s *stored) drop(e *Envelope) {
	n := int64(holderCost)
	if e.holders.Add(-1) == 0 {
		n += int64(e.Size())
	}
	s.bytes.Add(-n)
}

// Size is about how many bytes the message p would make, for
// the budget's admission before the envelope exists.
func (p Push) Size() int {
	return 2*len(p.Data) + len(p.Topic) + len(p.Key) + 2*idCost
}

// StoredBytes is what the hub stores now, as Config.MaxStoredBytes
// counts it.
func (h *Hub) StoredBytes() int64 { return h.store.StoredBytes() }

// Room checks that pushes, applied, would fit Config.MaxStoredBytes:
// ErrStorageFull, reported to the observer for each push, when they would
// not. A batch is checked whole before any of it is delivered; each push is
// checked again as it is delivered (deliver), since others may have come in
// between.
func (h *Hub) Room(pushes []Push) error {
	need := int64(0)
	for _, p := range pushes {
		need += int64(p.Size())
	}
	if h.fits(need) {
		return nil
	}
	for _, p := range pushes {
		h.obs.Pushed(p.To.Kind(), Result{}, ErrStorageFull)
	}
	return ErrStorageFull
}

// fits reports whether n more bytes fit the budget.
func (h *Hub) fits(n int64) bool {
	return h.cfg.MaxStoredBytes < 0 || h.StoredBytes()+n <= h.cfg.MaxStoredBytes
}

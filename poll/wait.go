package poll

import (
	"context"
	"time"

	"github.com/longpoll/longpoll/session"
)

// Poll acknowledges messages up to ack (when hasAck) on the session with id
// and waits for messages as Store.Wait does: until one is pending, ctx
// ends, or the hub closes (both of which answer (nil, nil)). Every poll
// refreshes the session's idle timer, at its start and at its end.
func (h *Hub) Poll(ctx context.Context, id string, ack uint64, hasAck bool) ([]Message, error) {
	if h.stopped() {
		return nil, ErrClosed
	}
	s, err := h.store.Touch(id)
	if err != nil {
		return nil, err
	}
	msgs, err := h.store.Wait(ctx, id, h.stop, ack, hasAck)
	h.store.Refresh(s)
	return msgs, err
}

// Park is Poll without a waiting goroutine, for an HTTP edge that lets go
// of the connection while the poll is parked. Pending messages or an error
// come back at once (parked false). Otherwise done is called exactly once,
// later, from another goroutine: as Store.Park says, and with (nil, nil)
// when the hub closes. Both ends refresh the session's idle timer.
//
// t (may be nil) carries the session from one poll to the next on the
// same connection (and what the store keeps there): Park fills it in, and
// a later Park for the same session with the same t skips looking it up
// while the session is online and was refreshed within the registry's
// slack (Store.Refresh). It is also the poll's owner: Cancel(id, t) ends
// it early.
func (h *Hub) Park(t *Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]Message, error) func()) (msgs []Message, err error, parked bool) {
	if h.stopped() {
		return nil, ErrClosed, false
	}
	if t == nil {
		t = new(Ticket)
	}
	if t.s == nil || t.s.ID != id || !h.store.Refresh(t.s) {
		s, err := h.store.Touch(id)
		*t = Ticket{s: s}
		if err != nil {
			return nil, err, false
		}
	}
	s := t.s
	msgs, err, parked = h.store.Park(t, id, ack, hasAck, hold, func(msgs []Message, err error) func() {
		h.store.Refresh(s)
		return done(msgs, err)
	})
	if parked && h.stopped() {
		h.store.WakeAll() // Close ran while we parked: do not wait out the hold
	}
	return msgs, err, parked
}

// Cancel ends the poll that t's connection has parked on the session with
// id (Park), if it is still parked: its done gets ErrCanceled, and its
// messages stay for the next poll. An edge calls it when it finds the
// poll's client gone. It reports whether there was such a poll.
func (h *Hub) Cancel(id string, t *Ticket) bool { return h.store.Cancel(id, t) }

// Ticket is a connection's handle on its polls (Hub.Park): it remembers
// the session of the last one (and whatever the store keeps to find its
// mailbox again), and identifies the connection's parked poll (Cancel).
// The zero Ticket remembers nothing.
type Ticket struct {
	s   *session.Session
	box *Mailbox // MemoryStore's: the mailbox of s's last Park
}

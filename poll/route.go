package poll

import (
	"fmt"
	"runtime"
	"time"

	"github.com/longpoll/longpoll/session"
)

// Routing: a push to its target's mailboxes, or to the offline store.

// Publish delivers a publisher's push. See deliver. It returns once the
// push is durable (Store.Flush).
func (h *Hub) Publish(p Push) (Result, error) {
	return h.flushed(h.deliver(p, "", "push:"))
}

// PublishAll delivers a batch of a publisher's pushes, each as Publish
// would, and returns once all are durable: one Store.Flush for the batch.
// Each push has its result or its error; err (the store's failure) means
// none is known to be stored.
func (h *Hub) PublishAll(pushes []Push) (res []Result, errs []error, err error) {
	return h.deliverAll(pushes, func(p Push) (Result, error) { return h.deliver(p, "", "push:") })
}

// deliverAll delivers each push with deliver, then flushes once.
func (h *Hub) deliverAll(pushes []Push, deliver func(Push) (Result, error)) ([]Result, []error, error) {
	res := make([]Result, len(pushes))
	errs := make([]error, len(pushes))
	for i, p := range pushes {
		res[i], errs[i] = deliver(p)
	}
	if err := h.store.Flush(); err != nil {
		return nil, nil, err
	}
	return res, errs, nil
}

// flushed is a single push's outcome once the store has made it durable.
func (h *Hub) flushed(res Result, err error) (Result, error) {
	if err != nil {
		return Result{}, err
	}
	if err := h.store.Flush(); err != nil { // a 202 means stored: on disk, with a durable store
		return Result{}, err
	}
	return res, nil
}

// Send delivers a push from the client session with id, stamped with the
// session's "userId/deviceId". The send refreshes the sender's idle timer.
// A client may not ask for a ttl beyond the hub's OfflineTTL
// (ErrInvalidPayload), and its message is kept offline only for a device
// or user that was online within the offline ttl: anyone else's gets
// nothing stored (Stored 0), so that a client cannot fill the store with
// messages for names it makes up. A publisher may address any name.
func (h *Hub) Send(id string, p Push) (Result, error) {
	if err := h.CheckSend([]Push{p}); err != nil {
		return Result{}, err
	}
	return h.flushed(h.send(id, p))
}

// SendAll is PublishAll for a batch of the session's sends (CheckSend
// them first): each push is Send's, and one Store.Flush covers them.
func (h *Hub) SendAll(id string, pushes []Push) (res []Result, errs []error, err error) {
	return h.deliverAll(pushes, func(p Push) (Result, error) { return h.send(id, p) })
}

// send delivers one of the session's sends, not flushed.
func (h *Hub) send(id string, p Push) (Result, error) {
	s, err := h.store.Touch(id)
	if err != nil {
		return Result{}, err
	}
	return h.deliver(p, s.From(), "send:"+s.From()+":")
}

// CheckSend checks what a client may not ask of its sends: a ttl beyond
// the hub's OfflineTTL (ErrInvalidPayload, naming the item of a batch). An
// edge checks a batch whole with it before delivering any of it.
func (h *Hub) CheckSend(pushes []Push) error {
	for i, p := range pushes {
		if p.TTL > h.cfg.OfflineTTL {
			err := fmt.Errorf("%w: ttl of a send is at most %d s (the server's offline ttl)", session.ErrInvalidPayload, int64(h.cfg.OfflineTTL/time.Second))
			if len(pushes) > 1 {
				err = fmt.Errorf("item %d: %w", i, err)
			}
			return err
		}
	}
	return nil
}

// deliver routes p. A single target (session, device) whose mailbox or
// offline store is full fails with ErrMailboxFull; fan-out targets (user,
// topic, broadcast) count full mailboxes in Rejected. A push to an unknown
// session fails with ErrSessionNotFound. A failed push changes nothing and
// does not consume its idempotency key. The caller flushes the store
// before it says the push was accepted.
func (h *Hub) deliver(p Push, from, keyScope string) (Result, error) {
	if h.stopped() {
		return Result{}, ErrClosed
	}
	if err := h.store.Err(); err != nil { // a failed store changes nothing more
		h.obs.Pushed(p.To.Kind(), Result{}, err)
		return Result{}, err
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = h.cfg.OfflineTTL
	}
	env, err := h.envelope(p.Topic, from, p.Data, h.now(), ttl)
	if err != nil {
		return Result{}, err
	}
	if !h.fits(int64(env.Size()) + idCost) {
		h.obs.Pushed(p.To.Kind(), Result{}, ErrStorageFull)
		return Result{}, ErrStorageFull
	}
	key := ""
	if p.Key != "" {
		key = keyScope + p.Key
		if prev, seen := h.store.Remember(key, Result{ID: env.ID}, ttl); seen {
			prev.Duplicate = true
			return prev, nil
		}
	}
	res, err := h.route(p.To, env, from != "")
	if key != "" {
		if err != nil {
			h.store.Forget(key)
		} else {
			h.store.Settle(key, res, ttl)
		}
	}
	h.obs.Pushed(p.To.Kind(), res, err)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// route delivers env to its target; a client's (client true) goes offline
// only to a device or user online within the offline ttl.
func (h *Hub) route(to Target, env *Envelope, client bool) (Result, error) {
	res := Result{ID: env.ID}
	switch to.Kind() {
	case ToSession:
		u, err := h.store.Append(to.SessionID, env)
		runWakeups([]Wakeup{u}) // the publisher answers the parked poll itself
		if err != nil {
			if err == ErrSessionClosed {
				err = ErrSessionNotFound
			}
			return Result{}, err
		}
		res.Delivered = 1
	case ToDevice:
		u, delivered, stored, err := h.store.DeliverDevice(to.DeviceID, env, h.cfg.MaxMailbox, client)
		runWakeups([]Wakeup{u}) // the publisher answers the parked poll itself
		if err != nil {
			return Result{}, err
		}
		if delivered {
			res.Delivered = 1
		}
		if stored {
			res.Stored = 1
		}
	case ToUser:
		wake, r, err := h.store.DeliverUser(to.UserID, env, h.cfg.MaxMailbox, client)
		runWakeups(wake)
		if err != nil {
			return Result{}, err
		}
		r.ID = res.ID
		res = r
	default:
		var sessions []*session.Session
		var err error
		if to.Kind() == ToTopic {
			sessions, err = h.store.ByTopic(to.Topic)
		} else {
			sessions, err = h.store.All()
		}
		if err != nil {
			return Result{}, err
		}
		if !h.fits(int64(env.Size()) + int64(len(sessions))*holderCost) {
			return Result{}, ErrStorageFull
		}
		wake, delivered, rejected, err := h.store.FanOut(sessions, env)
		runWakeups(wake)
		if err != nil {
			return Result{}, err
		}
		res.Delivered, res.Rejected = delivered, rejected
	}
	return res, nil
}

// inlineWakeups is how many answered polls a publisher writes itself;
// larger fan-outs are written by one goroutine per processor, so the
// publisher is not held up and the answers go out before the re-polls
// they cause are served.
const inlineWakeups = 8

// RunWakeups answers the parked polls of wake (each Wakeup's Run, then
// their thens) without holding up the caller for long: a few inline, more
// on one goroutine per processor. A journal runs what Release returns
// with it.
func RunWakeups(wake []Wakeup) { runWakeups(wake) }

func runWakeups(wake []Wakeup) {
	if len(wake) <= inlineWakeups {
		runAll(wake)
		return
	}
	chunk := (len(wake) + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for len(wake) > 0 {
		part := wake[:min(chunk, len(wake))]
		wake = wake[len(part):]
		go runAll(part)
	}
}

// runAll writes every answer, then runs their thens (hands the
// connections back).
func runAll(wake []Wakeup) {
	var thens []func()
	for _, u := range wake {
		if then := u.Run(); then != nil {
			thens = append(thens, then)
		}
	}
	for _, then := range thens {
		then()
	}
}

package poll

import (
	"errors"
	"slices"

	"github.com/longpoll/longpoll/session"
)

// A session's life in the hub: connect (and replacement), disconnect,
// expiry (Cleanup), and the lookups of who is online.

// Connect starts a session for req. A session of the same device ends
// (reason "replaced"): its parked poll is answered ErrSessionClosed and its
// unacknowledged messages move, in order, to the new mailbox, followed by
// the offline messages of the device and the user in send order (Store.Connect).
// The session is durable before Connect returns (Store.Flush).
func (h *Hub) Connect(req session.Request) (*session.Session, error) {
	if h.stopped() {
		return nil, ErrClosed
	}
	if err := h.store.Err(); err != nil { // a failed store changes nothing more
		return nil, err
	}
	now := h.now()
	s := req.NewSession(now)
	old, err := h.store.Connect(s, h.cfg.MaxSessions, now)
	if err != nil {
		return nil, err
	}
	if err := h.store.Flush(); err != nil {
		return nil, err
	}
	if old != nil {
		h.obs.SessionEnded("replaced")
		h.presence(old, "offline", "replaced")
	}
	h.obs.SessionStarted()
	h.presence(s, "online", "connect")
	h.log.Info("session connected", "session", session.ShortID(s.ID), "device", s.DeviceID, "user", s.UserID, "replaced", old != nil)
	return s, nil
}

// mergeByOrder merges two lists each sorted by acceptance order.
func mergeByOrder(a, b []*Envelope) []*Envelope {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]*Envelope, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].order <= b[0].order {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// EndSessions ends every session that to names: a sessionId, a deviceId or
// a userId (reason "disconnect", as Disconnect). It returns how many ended;
// other target kinds end nothing. An error is the store's: it could not
// look them up.
func (h *Hub) EndSessions(to Target) (int, error) {
	var list []*session.Session
	switch to.Kind() {
	case ToSession:
		s, err := h.store.Session(to.SessionID)
		if err != nil && !errors.Is(err, ErrSessionNotFound) {
			return 0, err
		}
		if s != nil {
			list = append(list, s)
		}
	case ToDevice:
		s, err := h.OnlineDevice(to.DeviceID)
		if err != nil {
			return 0, err
		}
		if s != nil {
			list = append(list, s)
		}
	case ToUser:
		var err error
		if list, err = h.store.ByUser(to.UserID); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, s := range list {
		if h.Disconnect(s.ID, 0, false) == nil {
			n++
		}
	}
	return n, nil
}

// Disconnect ends the session with id (reason "disconnect"), first
// acknowledging messages up to ack when hasAck. Its parked poll is answered
// ErrSessionClosed; its still unacknowledged messages wait in the offline
// store of its device. The end is durable before Disconnect returns. Unknown sessions: ErrSessionNotFound. A bad cursor
// (ErrInvalidCursor) leaves the session as it was.
func (h *Hub) Disconnect(id string, ack uint64, hasAck bool) error {
	if err := h.store.Err(); err != nil {
		return err
	}
	s, err := h.store.End(id, ack, hasAck, ErrSessionClosed, h.now())
	if err != nil {
		return err
	}
	if err := h.store.Flush(); err != nil {
		return err
	}
	h.obs.SessionEnded("disconnect")
	h.presence(s, "offline", "disconnect")
	h.log.Info("session disconnected", "session", session.ShortID(id), "device", s.DeviceID)
	return nil
}

// Subscribe adds the topics add to the session with id and then drops
// remove (Store.Subscribe, at most session.MaxTopics), durably before it
// returns, and returns the session as it now is. Patterns
// (session.IsPattern) receive every topic push they match. The caller
// has validated the names (session.CheckPattern).
func (h *Hub) Subscribe(id string, add, remove []string) (*session.Session, error) {
	if h.stopped() {
		return nil, ErrClosed
	}
	if err := h.store.Err(); err != nil {
		return nil, err
	}
	s, err := h.store.Subscribe(id, add, remove, session.MaxTopics)
	if err != nil {
		return nil, err
	}
	if err := h.store.Flush(); err != nil {
		return nil, err
	}
	return s, nil
}

// Ack acknowledges the messages up to ack of the session with id, as a
// poll with that cursor would, without waiting for more: the edge of a
// protocol that acknowledges on delivery (Bayeux without its ack
// extension) calls it once an answer holds them. ErrSessionNotFound,
// ErrInvalidCursor.
func (h *Hub) Ack(id string, ack uint64) error { return h.store.Ack(id, ack) }

// Session returns the online session with id (ErrSessionNotFound).
func (h *Hub) Session(id string) (*session.Session, error) { return h.store.Session(id) }

// OnlineUser returns the online sessions of user, oldest first.
func (h *Hub) OnlineUser(user string) ([]*session.Session, error) {
	list, err := h.store.ByUser(user)
	slices.SortFunc(list, func(a, b *session.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return list, err
}

// OnlineDevice returns the online session of device, or nil.
func (h *Hub) OnlineDevice(device string) (*session.Session, error) { return h.store.ByDevice(device) }

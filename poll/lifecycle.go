package poll

import (
	"slices"
	"strings"
	"time"

	"github.com/longpoll/longpoll/session"
)

// A session's life in the hub: connect (and replacement), disconnect,
// expiry, and the lookups of who is online.

// Connect starts a session for req. A session of the same device ends
// (reason "replaced"): its parked poll is answered ErrSessionClosed and its
// unacknowledged messages move, in order, to the new mailbox, followed by
// the offline messages of the device and the user in send order.
func (h *Hub) Connect(req session.Request) (*session.Session, error) {
	s := req.NewSession(h.now())
	h.mu.Lock()
	if h.stopped() {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	box := h.newMailbox()
	fill := func(carried []*Envelope) *Mailbox {
		for _, e := range carried {
			_ = box.Append(e, true)
		}
		for _, e := range h.takeOffline(s) {
			_ = box.Append(e, true)
		}
		return box
	}
	old := h.dir.ByDevice(s.DeviceID)
	if old == nil && h.cfg.MaxSessions > 0 {
		if n, _, _ := h.dir.Counts(); n >= h.cfg.MaxSessions {
			h.mu.Unlock()
			return nil, ErrTooManySessions
		}
	}
	var oldBox *Mailbox
	if old != nil {
		oldBox = h.mailbox(old.ID)
	}
	if oldBox != nil {
		oldBox.retire(ErrSessionClosed, fill)
	} else {
		fill(nil)
	}
	h.boxes.Store(s.ID, box)
	h.dir.Add(s)
	if old != nil {
		h.boxes.Delete(old.ID)
	}
	h.mu.Unlock()

	if old != nil {
		h.obs.SessionEnded("replaced")
		h.presence(old, "offline", "replaced")
	}
	h.obs.SessionStarted()
	h.presence(s, "online", "connect")
	h.log.Info("session connected", "session", session.ShortID(s.ID), "device", s.DeviceID, "user", s.UserID, "replaced", old != nil)
	return s, nil
}

// takeOffline removes the offline messages of s's device and user and
// returns those not expired, in send order. Callers hold mu.
func (h *Hub) takeOffline(s *session.Session) []*Envelope {
	now := h.now()
	msgs := h.take(deviceKey(s.DeviceID), now)
	if s.UserID != "" {
		msgs = mergeByOrder(msgs, h.take(userKey(s.UserID), now))
	}
	return msgs
}

// take removes the offline messages under key and returns those not
// expired at now.
func (h *Hub) take(key string, now time.Time) []*Envelope {
	list := h.store.Take(key)
	live := list[:0]
	for _, e := range list {
		h.gauges.stored.drop(e)
		if e.Expires.After(now) {
			live = append(live, e)
		}
	}
	return live
}

// put stores e under key in the offline store (see OfflineStore.Put).
func (h *Hub) put(key string, e *Envelope, limit int) error {
	if err := h.store.Put(key, e, limit); err != nil {
		return err
	}
	h.gauges.stored.hold(e)
	return nil
}

// markOnline records that a device and user (the session s) were online
// until now, as s ends: a client's send to them is stored while they are
// offline for up to the offline ttl after (recentlyOnline). (While they are
// online, sends reach their sessions: nothing is recorded for them, which
// would cost every online session memory.) Callers hold mu.
func (h *Hub) markOnline(s *session.Session, now time.Time) {
	h.seenDevs[deviceKey(s.DeviceID)] = now
	if s.UserID != "" {
		h.seenDevs[userKey(s.UserID)] = now
	}
}

// recentlyOnline reports whether the device or user of key is online or
// was within the offline ttl. Callers hold mu (read).
func (h *Hub) recentlyOnline(key string) bool {
	t, ok := h.seenDevs[key]
	return ok && h.now().Sub(t) < h.cfg.OfflineTTL
}

// forgetDevices drops the record of devices and users offline for longer
// than the offline ttl.
func (h *Hub) forgetDevices(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, t := range h.seenDevs {
		if now.Sub(t) >= h.cfg.OfflineTTL {
			delete(h.seenDevs, k)
		}
	}
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
// other target kinds end nothing.
func (h *Hub) EndSessions(to Target) int {
	var list []*session.Session
	switch to.Kind() {
	case ToSession:
		if s, ok := h.dir.Get(to.SessionID); ok {
			list = append(list, s)
		}
	case ToDevice:
		if s := h.dir.ByDevice(to.DeviceID); s != nil {
			list = append(list, s)
		}
	case ToUser:
		list = h.dir.ByUser(to.UserID)
	}
	n := 0
	for _, s := range list {
		if h.Disconnect(s.ID, 0, false) == nil {
			n++
		}
	}
	return n
}

// Disconnect ends the session with id (reason "disconnect"), first
// acknowledging messages up to ack when hasAck. Its parked poll is answered
// ErrSessionClosed; its still unacknowledged messages wait in the offline
// store of its device. Unknown sessions: ErrSessionNotFound. A bad cursor
// (ErrInvalidCursor) leaves the session as it was.
func (h *Hub) Disconnect(id string, ack uint64, hasAck bool) error {
	h.mu.Lock()
	s, ok := h.dir.Get(id)
	box := h.mailbox(id)
	if !ok || box == nil {
		h.mu.Unlock()
		return ErrSessionNotFound
	}
	if hasAck {
		if err := box.Ack(ack); err != nil {
			h.mu.Unlock()
			return err
		}
	}
	if !h.dir.Remove(s) {
		h.mu.Unlock()
		return ErrSessionNotFound
	}
	h.endLocked(s, box, ErrSessionClosed)
	h.mu.Unlock()
	h.obs.SessionEnded("disconnect")
	h.presence(s, "offline", "disconnect")
	h.log.Info("session disconnected", "session", session.ShortID(id), "device", s.DeviceID)
	return nil
}

// expired is the directory's callback for a session that idled past its
// TTL; the directory has already taken it offline.
func (h *Hub) expired(s *session.Session) {
	h.mu.Lock()
	if box := h.mailbox(s.ID); box != nil {
		h.endLocked(s, box, ErrSessionNotFound)
	}
	h.mu.Unlock()
	h.obs.SessionEnded("expired")
	h.presence(s, "offline", "expired")
	h.log.Info("session expired", "session", session.ShortID(s.ID), "device", s.DeviceID)
}

// isParked reports whether s has a parked poll (which keeps it alive).
func (h *Hub) isParked(s *session.Session) bool {
	box := h.mailbox(s.ID)
	return box != nil && box.Parked()
}

// endLocked retires the mailbox of a session that is no longer in the
// directory. Its unacknowledged messages (but system ones) go to the
// device's current session if one connected meanwhile, else to the device's
// offline store until they expire. Callers hold mu.
func (h *Hub) endLocked(s *session.Session, box *Mailbox, closeErr error) {
	h.markOnline(s, h.now())
	box.retire(closeErr, func(pending []*Envelope) *Mailbox {
		now := h.now()
		var next *Mailbox
		if cur := h.dir.ByDevice(s.DeviceID); cur != nil {
			next = h.mailbox(cur.ID)
		}
		for _, e := range pending {
			if strings.HasPrefix(e.Topic, "$") || !e.Expires.After(now) {
				continue
			}
			if next != nil {
				_ = next.Append(e, true)
			} else {
				_ = h.put(deviceKey(s.DeviceID), e, 0)
			}
		}
		return nil
	})
	h.boxes.Delete(s.ID)
}

// Session returns the online session with id.
func (h *Hub) Session(id string) (*session.Session, error) {
	s, ok := h.dir.Get(id)
	if !ok {
		return nil, ErrSessionNotFound
	}
	return s, nil
}

// OnlineUser returns the online sessions of user, oldest first.
func (h *Hub) OnlineUser(user string) []*session.Session {
	list := h.dir.ByUser(user)
	slices.SortFunc(list, func(a, b *session.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return list
}

// OnlineDevice returns the online session of device, or nil.
func (h *Hub) OnlineDevice(device string) *session.Session { return h.dir.ByDevice(device) }

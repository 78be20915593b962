package poll

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/session"
)

// StoreConfig configures a store.
type StoreConfig struct {
	// MaxMailbox is the most unacknowledged messages a mailbox may hold
	// (appends that are not forced beyond it fail with ErrMailboxFull).
	MaxMailbox int
	// SessionTTL is how long a session may go without a refresh; OfflineTTL
	// how long a device or user offline is remembered as recently online,
	// and the default lifetime of an idempotency id.
	SessionTTL, OfflineTTL time.Duration
	// Now is the clock.
	Now func() time.Time
	// MaxStoredBytes is the storage budget (Config.MaxStoredBytes): past it
	// the store records no more recently online names (client sends to
	// them are then not kept, the safe side). Zero means
	// DefaultMaxStoredBytes, negative no bound.
	MaxStoredBytes int64
	// Render is the hub's renderer (Config.Render): a durable store
	// renders the messages it reads back with it.
	Render func(*Envelope) ([]byte, error)
}

// MemoryStore is the Store that keeps everything in the process: the
// sessions in a session.Registry (go-cache and indexes), the mailboxes in
// a map, the offline lists, and the idempotency ids in a map under idMu.
//
// Concurrency: mu orders structural changes (connect, end) against
// deliveries to devices and users, so that a message is never stranded in
// the offline list of a device that has just connected, nor in the mailbox
// of a session that has just ended. Topic and broadcast fan-outs append to
// the mailboxes of a snapshot of the sessions without mu; a mailbox retired
// meanwhile forwards to its successor. The mailboxes, the registry, the
// offline lists lock themselves, the ids are under idMu; lock order: mu, then a
// mailbox's (a retiring one's before its successor's), then the
// registry's, then the offline lists'.
type MemoryStore struct {
	cfg     StoreConfig
	dir     *session.Registry
	boxes   sync.Map // session ID -> *Mailbox
	offline *offlineLists
	seen    map[string]idEntry // idempotency key -> its outcome and expiry, under idMu
	ids     atomic.Int64       // len(seen), for StoredBytes without idMu
	gauges  gauges

	mu       sync.RWMutex
	seenDevs map[string]time.Time // deviceKey/userKey -> when its last session ended (under mu)
	seenSize atomic.Int64         // what seenDevs is counted as in StoredBytes

	// idMu makes an idempotency id's check and record one step, and
	// orders the ids' changes with their journal records.
	idMu sync.Mutex
	// j, once Attach has set it, hears every durable change.
	j Journal
}

// idEntry is what an idempotency key stands for, until when (by the
// store's clock: the cache's own expiry is not used).
type idEntry struct {
	r       Result
	expires time.Time
}

// nameCost is what one recently online name (seenDevs) is counted as: the
// key and the map's entry.
func nameCost(key string) int64 { return int64(len(key)) + 64 }

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg StoreConfig) *MemoryStore {
	if cfg.MaxStoredBytes == 0 {
		cfg.MaxStoredBytes = DefaultMaxStoredBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &MemoryStore{
		cfg:      cfg,
		offline:  newOfflineLists(),
		seen:     make(map[string]idEntry), // swept by Cleanup, by the store's clock
		seenDevs: make(map[string]time.Time),
	}
	s.dir = session.NewRegistry(cfg.SessionTTL, cfg.Now, s.isParked)
	return s
}

// newMailbox returns an empty mailbox for the session with id, counting in
// the store's gauges and recording to its journal.
func (s *MemoryStore) newMailbox(id string) *Mailbox {
	m := newMailbox(s.cfg.MaxMailbox)
	m.gauges = &s.gauges
	m.id, m.j = id, s.j
	return m
}

// record tells the journal, if any, of op.
func (s *MemoryStore) record(op Op) {
	if s.j != nil {
		s.j.Record(op)
	}
}

// begin and end bracket the records of one operation that a journal must
// keep whole or not at all (Journal.Begin).
func (s *MemoryStore) begin() {
	if s.j != nil {
		s.j.Begin()
	}
}

func (s *MemoryStore) end() {
	if s.j != nil {
		s.j.End()
	}
}

// box returns the mailbox of the online session with id, or nil.
func (s *MemoryStore) box(id string) *Mailbox {
	v, ok := s.boxes.Load(id)
	if !ok {
		return nil
	}
	return v.(*Mailbox)
}

// Append implements Store.
func (s *MemoryStore) Append(id string, e *Envelope) (Wakeup, error) {
	box := s.box(id)
	if box == nil {
		return Wakeup{}, ErrSessionNotFound
	}
	return box.AppendWake(e, false)
}

// FanOut implements Store.
func (s *MemoryStore) FanOut(sessions []*session.Session, e *Envelope) (wake []Wakeup, delivered, rejected int, err error) {
	var res Result
	wake = s.fanOut(sessions, e, &res)
	return wake, res.Delivered, res.Rejected, nil
}

// Wait implements Store.
func (s *MemoryStore) Wait(ctx context.Context, id string, stop <-chan struct{}, ack uint64, hasAck bool) ([]Message, error) {
	box := s.box(id)
	if box == nil {
		return nil, ErrSessionNotFound
	}
	return box.Wait(ctx, stop, ack, hasAck)
}

// Park implements Store. The mailbox found is kept in t for the next Park
// of the same session on the same connection.
func (s *MemoryStore) Park(t *Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]Message, error) func()) ([]Message, error, bool) {
	var box *Mailbox
	if t != nil && t.box != nil && t.box.id == id {
		box = t.box
	} else if box = s.box(id); box == nil {
		return nil, ErrSessionNotFound, false
	} else if t != nil {
		t.box = box
	}
	return box.Park(ack, hasAck, hold, t, done)
}

// Cancel implements Store.
func (s *MemoryStore) Cancel(id string, t *Ticket) bool {
	box := s.box(id)
	return box != nil && box.Cancel(t)
}

// Ack implements Store.
func (s *MemoryStore) Ack(id string, ack uint64) error {
	box := s.box(id)
	if box == nil {
		return ErrSessionNotFound
	}
	return box.Ack(ack)
}

// Connect implements Store.
func (s *MemoryStore) Connect(sess *session.Session, maxSessions int, now time.Time) (*session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.dir.ByDevice(sess.DeviceID)
	if old == nil && maxSessions > 0 {
		if n, _, _ := s.dir.Counts(); n >= maxSessions {
			return nil, ErrTooManySessions
		}
	}
	s.begin()
	defer s.end()
	s.record(Op{Kind: OpSession, ID: sess.ID, Session: sess}) // before anything is appended to its mailbox
	box := s.newMailbox(sess.ID)
	fill := func(carried []*Envelope) *Mailbox {
		for _, e := range carried {
			_ = box.Append(e, true)
		}
		for _, e := range s.takeOffline(sess, now) {
			_ = box.Append(e, true)
		}
		return box
	}
	var oldBox *Mailbox
	if old != nil {
		oldBox = s.box(old.ID)
	}
	if oldBox != nil {
		oldBox.retire(ErrSessionClosed, fill)
	} else {
		fill(nil)
	}
	s.boxes.Store(sess.ID, box)
	s.dir.Add(sess)
	if old != nil {
		s.boxes.Delete(old.ID)
		s.record(Op{Kind: OpSessionEnd, ID: old.ID})
	}
	return old, nil
}

// End implements Store.
func (s *MemoryStore) End(id string, ack uint64, hasAck bool, closeErr error, now time.Time) (*session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.dir.Get(id)
	box := s.box(id)
	if !ok || box == nil {
		return nil, ErrSessionNotFound
	}
	if hasAck {
		if err := box.Ack(ack); err != nil {
			return nil, err
		}
	}
	if !s.dir.Remove(sess) {
		return nil, ErrSessionNotFound
	}
	s.begin()
	defer s.end()
	s.endLocked(sess, box, closeErr, now)
	return sess, nil
}

// Subscribe implements Store.
func (s *MemoryStore) Subscribe(id string, add, remove []string, max int) (*session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.dir.Get(id)
	if !ok || s.box(id) == nil {
		return nil, ErrSessionNotFound
	}
	next, err := Resubscribed(cur, add, remove, max)
	if err != nil || next == cur {
		return next, err
	}
	if !s.dir.Resubscribe(cur, next) {
		return nil, ErrSessionNotFound // expired meanwhile (DeleteExpired runs outside mu)
	}
	s.record(Op{Kind: OpSession, ID: id, Session: next}) // under mu: before the end Expire records
	return next, nil
}

// Resubscribed is cur with the topics add (those it lacks, in order)
// and without remove, as Store.Subscribe changes a session: cur itself
// when nothing changes, session.ErrInvalidPayload beyond max topics.
func Resubscribed(cur *session.Session, add, remove []string, max int) (*session.Session, error) {
	topics := slices.Clone(cur.Topics)
	for _, t := range add {
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	topics = slices.DeleteFunc(topics, func(t string) bool { return slices.Contains(remove, t) })
	if slices.Equal(topics, cur.Topics) {
		return cur, nil
	}
	if len(topics) > max {
		return nil, fmt.Errorf("%w: at most %d subscriptions", session.ErrInvalidPayload, max)
	}
	return cur.WithTopics(topics), nil
}

// Expire implements Store.
func (s *MemoryStore) Expire(now time.Time) []*session.Session {
	expired := s.dir.DeleteExpired() // already offline, unless a parked poll kept them
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range expired {
		if box := s.box(sess.ID); box != nil {
			s.begin()
			s.endLocked(sess, box, ErrSessionNotFound, now)
			s.end()
		}
	}
	return expired
}

// isParked reports whether sess has a parked poll (which keeps it alive).
func (s *MemoryStore) isParked(sess *session.Session) bool {
	box := s.box(sess.ID)
	return box != nil && box.Parked()
}

// endLocked retires the mailbox of a session that is no longer in the
// directory. Its unacknowledged messages (but system and expired ones) go
// to the device's current session if one connected meanwhile, else to the
// device's offline list. Callers hold mu.
func (s *MemoryStore) endLocked(sess *session.Session, box *Mailbox, closeErr error, now time.Time) {
	s.markOnline(sess, now)
	box.retire(closeErr, func(pending []*Envelope) *Mailbox {
		var next *Mailbox
		if cur := s.dir.ByDevice(sess.DeviceID); cur != nil {
			next = s.box(cur.ID)
		}
		for _, e := range pending {
			if strings.HasPrefix(e.Topic, "$") || !e.Expires.After(now) {
				continue
			}
			if next != nil {
				_ = next.Append(e, true)
			} else {
				_ = s.put(deviceKey(sess.DeviceID), e, 0)
			}
		}
		return nil
	})
	s.boxes.Delete(sess.ID)
	s.record(Op{Kind: OpSessionEnd, ID: sess.ID})
}

// takeOffline removes the offline messages of sess's device and user and
// returns those not expired at now, in send order. Callers hold mu.
func (s *MemoryStore) takeOffline(sess *session.Session, now time.Time) []*Envelope {
	msgs := s.take(deviceKey(sess.DeviceID), now)
	if sess.UserID != "" {
		msgs = mergeByOrder(msgs, s.take(userKey(sess.UserID), now))
	}
	return msgs
}

// take removes the offline messages under key and returns those not
// expired at now.
func (s *MemoryStore) take(key string, now time.Time) []*Envelope {
	list := s.offline.Take(key)
	live := list[:0]
	for _, e := range list {
		s.gauges.stored.drop(e)
		if e.Expires.After(now) {
			live = append(live, e)
		}
	}
	return live
}

// put stores e under key in the offline lists (see offlineLists.Put).
// The hold comes first, so that a journal hears of the message before of
// the list that holds it.
func (s *MemoryStore) put(key string, e *Envelope, limit int) error {
	s.gauges.stored.hold(e)
	if err := s.offline.Put(key, e, limit); err != nil {
		s.gauges.stored.drop(e)
		return err
	}
	return nil
}

// markOnline records that a device and user (the session sess) were
// online until now, as sess ends: a client's send to them is stored while
// they are offline for up to the offline ttl after (recentlyOnline).
// (While they are online, sends reach their sessions: nothing is recorded
// for them, which would cost every online session memory.) Callers hold
// mu.
//
// The names are counted in StoredBytes; past the budget no new name is
// recorded (an anonymous client connecting and disconnecting invented
// devices must not grow the process without bound).
func (s *MemoryStore) markOnline(sess *session.Session, now time.Time) {
	s.recordName(deviceKey(sess.DeviceID), now)
	if sess.UserID != "" {
		s.recordName(userKey(sess.UserID), now)
	}
}

// recordName records key as online until now. Callers hold mu.
func (s *MemoryStore) recordName(key string, now time.Time) {
	if _, ok := s.seenDevs[key]; !ok {
		cost := nameCost(key)
		if s.cfg.MaxStoredBytes >= 0 && s.StoredBytes()+cost > s.cfg.MaxStoredBytes {
			return
		}
		s.seenSize.Add(cost)
	}
	s.seenDevs[key] = now
	s.record(Op{Kind: OpName, ID: key, Time: now})
}

// recentlyOnline reports whether the device or user of key was online
// within the offline ttl. Callers hold mu (read).
func (s *MemoryStore) recentlyOnline(key string) bool {
	t, ok := s.seenDevs[key]
	return ok && s.cfg.Now().Sub(t) < s.cfg.OfflineTTL
}

// DeliverDevice implements Store.
func (s *MemoryStore) DeliverDevice(device string, e *Envelope, limit int, client bool) (u Wakeup, delivered, stored bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sess := s.dir.ByDevice(device); sess != nil {
		if box := s.box(sess.ID); box != nil {
			u, err = box.AppendWake(e, false)
			return u, err == nil, false, err
		}
	}
	if key := deviceKey(device); !client || s.recentlyOnline(key) {
		if err := s.put(key, e, limit); err != nil {
			return Wakeup{}, false, false, err
		}
		return Wakeup{}, false, true, nil
	}
	return Wakeup{}, false, false, nil
}

// DeliverUser implements Store.
func (s *MemoryStore) DeliverUser(user string, e *Envelope, limit int, client bool) (wake []Wakeup, res Result, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sessions := s.dir.ByUser(user)
	if len(sessions) > 0 {
		return s.fanOut(sessions, e, &res), res, nil
	}
	if key := userKey(user); !client || s.recentlyOnline(key) {
		if err := s.put(key, e, limit); err != nil {
			return nil, res, err
		}
		res.Stored = 1
	}
	return nil, res, nil
}

// fanOut appends e to each session's mailbox, counting deliveries and full
// mailboxes in res, and returns the parked polls to answer (runWakeups,
// after releasing any lock). Sessions that ended since the snapshot are
// skipped.
func (s *MemoryStore) fanOut(sessions []*session.Session, e *Envelope, res *Result) []Wakeup {
	var wake []Wakeup
	for _, sess := range sessions {
		box := s.box(sess.ID)
		if box == nil {
			continue
		}
		u, err := box.AppendWake(e, false)
		switch err {
		case nil:
			res.Delivered++
		case ErrMailboxFull:
			res.Rejected++
		}
		if u.w != nil {
			wake = append(wake, u)
		}
	}
	return wake
}

// Session implements Store.
func (s *MemoryStore) Session(id string) (*session.Session, error) {
	if sess, ok := s.dir.Get(id); ok {
		return sess, nil
	}
	return nil, ErrSessionNotFound
}

// Touch implements Store.
func (s *MemoryStore) Touch(id string) (*session.Session, error) {
	if sess, ok := s.dir.Touch(id); ok {
		return sess, nil
	}
	return nil, ErrSessionNotFound
}

// Refresh implements Store.
func (s *MemoryStore) Refresh(sess *session.Session) bool { return s.dir.Refresh(sess) }

// ByDevice implements Store.
func (s *MemoryStore) ByDevice(device string) (*session.Session, error) {
	return s.dir.ByDevice(device), nil
}

// ByUser implements Store.
func (s *MemoryStore) ByUser(user string) ([]*session.Session, error) {
	return s.dir.ByUser(user), nil
}

// ByTopic implements Store.
func (s *MemoryStore) ByTopic(topic string) ([]*session.Session, error) {
	return s.dir.ByTopic(topic), nil
}

// All implements Store.
func (s *MemoryStore) All() ([]*session.Session, error) { return s.dir.All(), nil }

// Counts implements Store.
func (s *MemoryStore) Counts() (sessions, users int) {
	sessions, users, _ = s.dir.Counts()
	return sessions, users
}

// Remember implements Store.
func (s *MemoryStore) Remember(key string, r Result, ttl time.Duration) (Result, bool) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	now := s.cfg.Now()
	if e, ok := s.seen[key]; ok && e.expires.After(now) {
		return e.r, true
	}
	// Held in memory only until Settle: the journal hears of a key with
	// the push's outcome, after its delivery, never before it. (A crash
	// between a delivery and its key's write can let a retry of the
	// unanswered request deliver again; a key written first could let the
	// retry be answered "duplicate" for a message the crash lost.)
	s.setID(key, idEntry{r, now.Add(ttl)})
	return Result{}, false
}

// setID keeps key in memory. Callers hold idMu.
func (s *MemoryStore) setID(key string, e idEntry) {
	if _, ok := s.seen[key]; !ok {
		s.ids.Add(1)
	}
	s.seen[key] = e
}

// dropID forgets key, and tells the journal. Callers hold idMu.
func (s *MemoryStore) dropID(key string) {
	if _, ok := s.seen[key]; ok {
		delete(s.seen, key)
		s.ids.Add(-1)
		s.record(Op{Kind: OpIDGone, ID: key})
	}
}

// Settle implements Store.
func (s *MemoryStore) Settle(key string, r Result, ttl time.Duration) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	expires := s.cfg.Now().Add(ttl)
	s.setID(key, idEntry{r, expires})
	s.record(Op{Kind: OpID, ID: key, Result: r, Time: expires})
}

// Forget implements Store.
func (s *MemoryStore) Forget(key string) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	s.dropID(key)
}

// Cleanup implements Store.
func (s *MemoryStore) Cleanup(now time.Time) int {
	s.idMu.Lock()
	for k, e := range s.seen {
		if !e.expires.After(now) {
			s.dropID(k) // deleting while ranging is safe
		}
	}
	s.idMu.Unlock()
	dropped := s.offline.DropExpired(now)
	for _, e := range dropped {
		s.gauges.stored.drop(e)
	}
	s.mu.Lock()
	for k, t := range s.seenDevs {
		if now.Sub(t) >= s.cfg.OfflineTTL {
			delete(s.seenDevs, k)
			s.seenSize.Add(-nameCost(k))
			s.record(Op{Kind: OpNameGone, ID: k})
		}
	}
	s.mu.Unlock()
	return len(dropped)
}

// Stats implements Store.
func (s *MemoryStore) Stats() StoreStats {
	ids := int(s.ids.Load())
	return StoreStats{
		Parked:          int(s.gauges.parked.Load()),
		Backlog:         int(s.gauges.backlog.Load()),
		OfflineMessages: s.offline.Len(),
		StoredBytes:     s.storedBytes(ids),
		IdempotencyIDs:  ids,
		Store:           "memory",
	}
}

// StoredBytes implements Store.
func (s *MemoryStore) StoredBytes() int64 { return s.storedBytes(int(s.ids.Load())) }

// storedBytes is what the store holds with ids idempotency ids.
func (s *MemoryStore) storedBytes(ids int) int64 {
	return s.gauges.stored.bytes.Load() + int64(ids)*idCost + s.seenSize.Load()
}

// Flush implements Store: a memory store has nothing to wait for.
func (s *MemoryStore) Flush() error { return nil }

// Err implements Store: a memory store does not fail.
func (s *MemoryStore) Err() error { return nil }

// WakeAll implements Store.
func (s *MemoryStore) WakeAll() {
	s.boxes.Range(func(_, v any) bool {
		v.(*Mailbox).WakeAsync()
		return true
	})
}

// Attach makes j hear every durable change from now on (see Journal):
// call it once, after the Restore calls and before the store is used.
// The restored mailboxes show their messages at once (they are durable).
func (s *MemoryStore) Attach(j Journal) {
	s.j = j
	s.offline.j = j
	s.boxes.Range(func(_, v any) bool {
		m := v.(*Mailbox)
		m.mu.Lock()
		m.j, m.durable = j, m.lastSeq
		m.mu.Unlock()
		return true
	})
}

// RestoreSession puts back a session a journal kept, with its mailbox:
// msgs are its unacknowledged messages, seq order, and lastSeq the newest
// seq it ever gave (the next append gets lastSeq+1). The session's idle
// timer starts now. Call it before Attach, as the other Restore methods.
func (s *MemoryStore) RestoreSession(sess *session.Session, lastSeq uint64, msgs []Message) {
	box := s.newMailbox(sess.ID)
	box.lastSeq = lastSeq
	for _, m := range msgs {
		m.Redelivery = true // an earlier process may have sent it
		box.buf = append(box.buf, m)
		s.gauges.backlog.Add(1)
		s.gauges.stored.hold(m.Envelope)
	}
	s.boxes.Store(sess.ID, box)
	s.dir.Add(sess)
}

// RestoreOffline appends e to the offline list key (call in order).
func (s *MemoryStore) RestoreOffline(key string, e *Envelope) {
	_ = s.put(key, e, 0)
}

// RestoreID puts back an idempotency key recorded until expires.
func (s *MemoryStore) RestoreID(key string, r Result, expires time.Time) {
	if expires.After(s.cfg.Now()) {
		s.idMu.Lock()
		s.setID(key, idEntry{r, expires})
		s.idMu.Unlock()
	}
}

// RestoreName puts back a device or user key last online at t.
func (s *MemoryStore) RestoreName(key string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seenDevs[key]; !ok {
		s.seenSize.Add(nameCost(key))
	}
	s.seenDevs[key] = t
}

package poll

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/patrickmn/go-cache"

	"github.com/longpoll/longpoll/session"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxMailbox = 1000
	DefaultOfflineTTL = 48 * time.Hour
	DefaultSessionTTL = 5 * time.Minute
)

// Config configures a Hub. Zero fields take the defaults above.
type Config struct {
	// MaxMailbox is the most unacknowledged messages a session's mailbox,
	// and the most offline messages a device or user, may hold.
	MaxMailbox int
	// OfflineTTL is how long an offline message waits when its push names
	// no ttl.
	OfflineTTL time.Duration
	// SessionTTL is how long a session may go without polling.
	SessionTTL time.Duration
	// Store keeps offline messages; nil means a new MemoryStore.
	Store OfflineStore
	// Logger receives the hub's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxSessions caps online sessions; a connect beyond it fails with
	// ErrTooManySessions (a replacement of the same device always
	// succeeds). 0 means no cap.
	MaxSessions int
	// Observer hears about pushes and session ends (metrics); nil: nobody.
	Observer Observer
	// Render, when set, renders each message once when the hub accepts it
	// (Envelope.Rendered), so that every answer carrying it shares the
	// bytes (wire.Render). An error refuses the push (ErrInvalidPayload).
	Render func(*Envelope) ([]byte, error)
}

// Observer is told what the hub does, for metrics. Its methods are called
// synchronously on hot paths: they must be fast and safe for concurrent use.
type Observer interface {
	// Pushed reports one push to a target of kind: its result, or the error
	// that refused it.
	Pushed(kind TargetKind, res Result, err error)
	// SessionStarted reports a connect.
	SessionStarted()
	// SessionEnded reports a session end: "disconnect", "replaced" or
	// "expired".
	SessionEnded(reason string)
	// OfflineExpired reports offline messages dropped past their ttl.
	OfflineExpired(n int)
}

type nopObserver struct{}

func (nopObserver) Pushed(TargetKind, Result, error) {}
func (nopObserver) SessionStarted()                  {}
func (nopObserver) SessionEnded(string)              {}
func (nopObserver) OfflineExpired(int)               {}

// Directory is the hub's view of who is online: session.Registry in one
// process; a shared implementation would back a cluster.
type Directory interface {
	Add(s *session.Session) (replaced *session.Session)
	Remove(s *session.Session) bool
	Get(id string) (*session.Session, bool)
	Touch(id string) (*session.Session, bool)
	// Refresh is Touch for a session already looked up: false once it is
	// offline.
	Refresh(s *session.Session) bool
	DeleteExpired()
	ByDevice(device string) *session.Session
	ByUser(user string) []*session.Session
	ByTopic(topic string) []*session.Session
	All() []*session.Session
	Counts() (sessions, users, topics int)
}

// Result is the outcome of one push.
type Result struct {
	// ID of the message (for a repeated idempotency key: of the first push).
	ID string
	// Delivered counts sessions whose mailbox got the message.
	Delivered int
	// Stored counts offline copies kept for a device or user.
	Stored int
	// Rejected counts fan-out sessions whose mailbox was full.
	Rejected int
	// Duplicate is true when the idempotency key was seen before within its
	// ttl and nothing was delivered this time.
	Duplicate bool
}

// Hub routes messages into session mailboxes and answers polls.
//
// Concurrency: mu orders structural changes (connect, end of a session)
// against routing to devices and users, so a message is never stranded in
// the offline store of a device that has just connected, nor in the mailbox
// of a session that has just ended. Topic and broadcast fan-outs take a
// snapshot of the directory and append without mu; a mailbox retired
// meanwhile forwards to its successor. Mailboxes have their own locks, so
// pushes to different sessions do not contend. stop is closed once, by
// Close, and every parked poll selects on it.
type Hub struct {
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	dir    Directory
	store  OfflineStore
	obs    Observer
	boxes  sync.Map     // session ID -> *Mailbox
	seen   *cache.Cache // idempotency key -> Result
	gauges gauges

	mu       sync.RWMutex
	stop     chan struct{}
	stopOnce sync.Once
}

// NewHub returns a hub with an in-memory session registry.
func NewHub(cfg Config) *Hub {
	if cfg.MaxMailbox <= 0 {
		cfg.MaxMailbox = DefaultMaxMailbox
	}
	if cfg.OfflineTTL <= 0 {
		cfg.OfflineTTL = DefaultOfflineTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	h := &Hub{
		cfg:   cfg,
		now:   cfg.Now,
		log:   cfg.Logger,
		obs:   cfg.Observer,
		store: cfg.Store,
		seen:  cache.New(cfg.OfflineTTL, 0), // swept by Cleanup
		stop:  make(chan struct{}),
	}
	h.dir = session.NewRegistry(cfg.SessionTTL, h.expired, h.isParked)
	return h
}

// Config returns the hub's effective configuration.
func (h *Hub) Config() Config { return h.cfg }

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
// returns them in send order.
func (h *Hub) takeOffline(s *session.Session) []*Envelope {
	now := h.now()
	msgs := h.store.Take(deviceKey(s.DeviceID), now)
	if s.UserID != "" {
		msgs = mergeByOrder(msgs, h.store.Take(userKey(s.UserID), now))
	}
	return msgs
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
				_ = h.store.Put(deviceKey(s.DeviceID), e, 0)
			}
		}
		return nil
	})
	h.boxes.Delete(s.ID)
}

// Poll acknowledges messages up to ack (when hasAck) on the session with id
// and waits for messages as Mailbox.Wait does: until one is pending, ctx
// ends, or the hub closes (both of which answer (nil, nil)). Every poll
// refreshes the session's idle timer, at its start and at its end.
func (h *Hub) Poll(ctx context.Context, id string, ack uint64, hasAck bool) ([]Message, error) {
	if h.stopped() {
		return nil, ErrClosed
	}
	t, ok := h.online(id)
	if !ok {
		return nil, ErrSessionNotFound
	}
	msgs, err := t.box.Wait(ctx, h.stop, ack, hasAck)
	h.dir.Refresh(t.s)
	return msgs, err
}

// online looks up the session with id, refreshing its idle timer, and its
// mailbox; false when either is gone.
func (h *Hub) online(id string) (Ticket, bool) {
	s, ok := h.dir.Touch(id)
	if !ok {
		return Ticket{}, false
	}
	box := h.mailbox(id)
	if box == nil {
		return Ticket{}, false
	}
	return Ticket{s, box}, true
}

// Park is Poll without a waiting goroutine, for an HTTP edge that lets go
// of the connection while the poll is parked. Pending messages or an error
// come back at once (parked false). Otherwise done is called exactly once,
// later, from another goroutine: as Mailbox.Park says, and with (nil, nil)
// when the hub closes. Both ends refresh the session's idle timer.
//
// t (may be nil) carries the session and mailbox from one poll to the
// next on the same connection: Park fills it in, and a later Park for the
// same session with the same t skips looking them up while the session is
// online and was refreshed within the registry's slack (Directory.Refresh).
func (h *Hub) Park(t *Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]Message, error) func()) (msgs []Message, err error, parked bool) {
	if h.stopped() {
		return nil, ErrClosed, false
	}
	if t == nil {
		t = new(Ticket)
	}
	if t.s == nil || t.s.ID != id || !h.dir.Refresh(t.s) {
		var ok bool
		if *t, ok = h.online(id); !ok {
			return nil, ErrSessionNotFound, false
		}
	}
	s := t.s
	msgs, err, parked = t.box.Park(ack, hasAck, hold, func(msgs []Message, err error) func() {
		h.dir.Refresh(s)
		return done(msgs, err)
	})
	if parked && h.stopped() {
		t.box.WakeAsync() // Close ran while we parked: do not wait out the hold
	}
	return msgs, err, parked
}

// Ticket remembers the session and mailbox of a connection's last poll
// (Hub.Park). The zero Ticket remembers nothing.
type Ticket struct {
	s   *session.Session
	box *Mailbox
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

// Publish delivers a publisher's push. See deliver.
func (h *Hub) Publish(p Push) (Result, error) {
	return h.deliver(p, "", "push:")
}

// Send delivers a push from the client session with id, stamped with the
// session's "userId/deviceId". The send refreshes the sender's idle timer.
func (h *Hub) Send(id string, p Push) (Result, error) {
	s, ok := h.dir.Touch(id)
	if !ok {
		return Result{}, ErrSessionNotFound
	}
	return h.deliver(p, s.From(), "send:"+s.From()+":")
}

// deliver routes p. A single target (session, device) whose mailbox or
// offline store is full fails with ErrMailboxFull; fan-out targets (user,
// topic, broadcast) count full mailboxes in Rejected. A push to an unknown
// session fails with ErrSessionNotFound. A failed push changes nothing and
// does not consume its idempotency key.
func (h *Hub) deliver(p Push, from, keyScope string) (Result, error) {
	if h.stopped() {
		return Result{}, ErrClosed
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = h.cfg.OfflineTTL
	}
	env, err := h.envelope(p.Topic, from, p.Data, h.now(), ttl)
	if err != nil {
		return Result{}, err
	}
	key := ""
	if p.Key != "" {
		key = keyScope + p.Key
		if err := h.seen.Add(key, Result{ID: env.ID}, ttl); err != nil {
			if prev, ok := h.seen.Get(key); ok {
				r := prev.(Result)
				r.Duplicate = true
				return r, nil
			}
			// The key expired between Add and Get: deliver as new.
			h.seen.Set(key, Result{ID: env.ID}, ttl)
		}
	}
	res, err := h.route(p.To, env)
	h.obs.Pushed(p.To.Kind(), res, err)
	if key != "" {
		if err != nil {
			h.seen.Delete(key)
		} else {
			h.seen.Set(key, res, ttl)
		}
	}
	return res, err
}

func (h *Hub) route(to Target, env *Envelope) (Result, error) {
	res := Result{ID: env.ID}
	switch to.Kind() {
	case ToSession:
		box := h.mailbox(to.SessionID)
		if box == nil {
			return Result{}, ErrSessionNotFound
		}
		u, err := box.AppendWake(env, false)
		runWakeups([]Wakeup{u}) // the publisher answers the parked poll itself
		if err != nil {
			if err == ErrSessionClosed {
				err = ErrSessionNotFound
			}
			return Result{}, err
		}
		res.Delivered = 1
	case ToDevice:
		h.mu.RLock()
		var box *Mailbox
		if s := h.dir.ByDevice(to.DeviceID); s != nil {
			box = h.mailbox(s.ID)
		}
		var u Wakeup
		var err error
		if box != nil {
			u, err = box.AppendWake(env, false)
			res.Delivered = 1
		} else {
			err = h.store.Put(deviceKey(to.DeviceID), env, h.cfg.MaxMailbox)
			res.Stored = 1
		}
		h.mu.RUnlock()
		runWakeups([]Wakeup{u}) // the publisher answers the parked poll itself
		if err != nil {
			return Result{}, err
		}
	case ToUser:
		h.mu.RLock()
		sessions := h.dir.ByUser(to.UserID)
		if len(sessions) == 0 {
			err := h.store.Put(userKey(to.UserID), env, h.cfg.MaxMailbox)
			h.mu.RUnlock()
			if err != nil {
				return Result{}, err
			}
			res.Stored = 1
			return res, nil
		}
		wake := h.fanOut(sessions, env, &res)
		h.mu.RUnlock()
		runWakeups(wake)
	case ToTopic:
		runWakeups(h.fanOut(h.dir.ByTopic(to.Topic), env, &res))
	default:
		runWakeups(h.fanOut(h.dir.All(), env, &res))
	}
	return res, nil
}

// fanOut appends env to each session's mailbox, counting deliveries and
// full mailboxes, and returns the parked polls to answer (runWakeups, after
// releasing any lock). Sessions that ended since the snapshot are skipped.
func (h *Hub) fanOut(sessions []*session.Session, env *Envelope, res *Result) []Wakeup {
	var wake []Wakeup
	for _, s := range sessions {
		box := h.mailbox(s.ID)
		if box == nil {
			continue
		}
		u, err := box.AppendWake(env, false)
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

// inlineWakeups is how many answered polls a publisher writes itself;
// larger fan-outs are written by one goroutine per processor, so the
// publisher is not held up and the answers go out before the re-polls
// they cause are served.
const inlineWakeups = 8

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

// Heartbeat sends a $heartbeat message {"time": now} to every online
// session and returns how many mailboxes got it.
func (h *Hub) Heartbeat(now time.Time) int {
	data, _ := json.Marshal(struct {
		Time string `json:"time"`
	}{now.UTC().Format(TimeFormat)})
	env, err := h.envelope(session.TopicHeartbeat, "", data, now, h.cfg.OfflineTTL)
	if err != nil {
		return 0
	}
	res := Result{}
	runWakeups(h.fanOut(h.dir.All(), env, &res))
	return res.Delivered
}

// presence tells the subscribers of $presence that s came or went.
func (h *Hub) presence(s *session.Session, event, reason string) {
	data, _ := json.Marshal(struct {
		Event    string `json:"event"`
		UserID   string `json:"userId"`
		DeviceID string `json:"deviceId"`
		Reason   string `json:"reason"`
	}{event, s.UserID, s.DeviceID, reason})
	env, err := h.envelope(session.TopicPresence, "", data, h.now(), h.cfg.OfflineTTL)
	if err != nil {
		return
	}
	res := Result{}
	runWakeups(h.fanOut(h.dir.ByTopic(session.TopicPresence), env, &res))
}

// CleanupResult says what one Cleanup removed.
type CleanupResult struct {
	// OfflineExpired counts offline messages dropped past their ttl.
	OfflineExpired int
}

// Cleanup ends every session idle past the session TTL (each gets an
// "offline"/"expired" presence event) and drops offline messages and
// idempotency keys past their ttl.
func (h *Hub) Cleanup(now time.Time) CleanupResult {
	h.dir.DeleteExpired()
	h.seen.DeleteExpired()
	n := h.store.DropExpired(now)
	h.obs.OfflineExpired(n)
	return CleanupResult{OfflineExpired: n}
}

// Stats is a snapshot of the hub's state.
type Stats struct {
	Sessions        int
	Parked          int
	Devices         int
	Users           int
	OfflineMessages int
	// Backlog counts unacknowledged messages in session mailboxes.
	Backlog int
}

// Stats returns the current counts.
func (h *Hub) Stats() Stats {
	sessions, users, _ := h.dir.Counts()
	return Stats{
		Sessions:        sessions,
		Parked:          int(h.gauges.parked.Load()),
		Devices:         sessions,
		Users:           users,
		OfflineMessages: h.store.Len(),
		Backlog:         int(h.gauges.backlog.Load()),
	}
}

// Close stops the hub: every parked poll (blocking or parked with Park)
// returns at once with its pending messages, usually none,
// and later operations fail with ErrClosed. Sessions and messages stay in
// memory. Close is idempotent and safe to call concurrently.
func (h *Hub) Close() {
	h.stopOnce.Do(func() {
		close(h.stop)
		h.boxes.Range(func(_, v any) bool {
			v.(*Mailbox).WakeAsync()
			return true
		})
	})
}

// Closing reports whether Close was called.
func (h *Hub) Closing() bool { return h.stopped() }

func (h *Hub) stopped() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// envelope returns a new message, rendered when the hub has a renderer.
func (h *Hub) envelope(topic, from string, data json.RawMessage, now time.Time, ttl time.Duration) (*Envelope, error) {
	e := NewEnvelope(topic, from, data, now, ttl)
	if h.cfg.Render != nil {
		b, err := h.cfg.Render(e)
		if err != nil {
			return nil, fmt.Errorf("%w: data: %v", session.ErrInvalidPayload, err)
		}
		e.Rendered = b
	}
	return e, nil
}

func (h *Hub) newMailbox() *Mailbox {
	m := newMailbox(h.cfg.MaxMailbox)
	m.gauges = &h.gauges
	return m
}

func (h *Hub) mailbox(id string) *Mailbox {
	v, ok := h.boxes.Load(id)
	if !ok {
		return nil
	}
	return v.(*Mailbox)
}

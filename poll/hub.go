package poll

import (
	"encoding/json"
	"fmt"
	"log/slog"
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
	// MaxStoredBytes bounds what the hub stores: the messages in mailboxes
	// and the offline store (each once, Envelope.Size) and the idempotency
	// ids together; beyond it a push fails with ErrStorageFull. 0 means
	// DefaultMaxStoredBytes, negative no bound.
	MaxStoredBytes int64
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

// Hub routes messages into session mailboxes and answers polls. Its work
// is spread over a few files: a session's life (lifecycle.go: connect,
// replacement, disconnect, expiry), routing a push (route.go), waiting for
// messages (wait.go: Poll, Park), and $presence and $heartbeat
// (presence.go).
//
// Concurrency: mu orders structural changes (connect, end of a session)
// against routing to devices and users, so a message is never stranded in
// the offline store of a device that has just connected, nor in the mailbox
// of a session that has just ended. Topic and broadcast fan-outs take a
// snapshot of the directory and append without mu; a mailbox retired
// meanwhile forwards to its successor. Mailboxes have their own locks, so
// pushes to different sessions do not contend. stop is closed once, by
// Close, and every parked poll selects on it.
//
// Lock order, the one place it is written down: the hub's mu, then a
// mailbox's mu (a retiring mailbox's before its successor's: Mailbox.retire
// fills the successor under the old one's lock), then the directory's lock
// (session.Registry's mu), then the offline store's (MemoryStore's mu). The
// idempotency cache and the gauges lock (or are atomic) on their own and
// call nothing. Nothing is called back under a lock: parked polls are
// answered (Wakeup.Run, a Park's done) with no lock held, and the
// directory calls expired and isParked with none of its locks held, so
// they may take mu.
//
// One clock, Config.Now, times messages, offline expiry and the
// directory's session expiry.
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
	seenDevs map[string]time.Time // "device:"/"user:" keys -> when last online (under mu)
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
	if cfg.MaxStoredBytes == 0 {
		cfg.MaxStoredBytes = DefaultMaxStoredBytes
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
		cfg:      cfg,
		now:      cfg.Now,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		store:    cfg.Store,
		seen:     cache.New(cfg.OfflineTTL, 0), // swept by Cleanup
		stop:     make(chan struct{}),
		seenDevs: make(map[string]time.Time),
	}
	h.dir = session.NewRegistry(cfg.SessionTTL, cfg.Now, h.expired, h.isParked)
	return h
}

// Config returns the hub's effective configuration.
func (h *Hub) Config() Config { return h.cfg }

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
	dropped := h.store.DropExpired(now)
	for _, e := range dropped {
		h.gauges.stored.drop(e)
	}
	h.forgetDevices(now)
	h.obs.OfflineExpired(len(dropped))
	return CleanupResult{OfflineExpired: len(dropped)}
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
	// StoredBytes is what the hub stores, as Config.MaxStoredBytes counts
	// it; IdempotencyIDs counts the idempotency ids among it.
	StoredBytes    int64
	IdempotencyIDs int
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
		StoredBytes:     h.StoredBytes(),
		IdempotencyIDs:  h.seen.ItemCount(),
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

package poll

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
	// Store keeps the sessions, mailboxes, offline lists and idempotency
	// ids; nil means a new MemoryStore made of this configuration.
	Store Store
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

// Hub routes messages into session mailboxes and answers polls, over a
// Store that keeps the state (sessions, mailboxes, offline lists,
// idempotency ids). Its work is spread over a few files: a session's life
// (lifecycle.go: connect, replacement, disconnect, expiry), routing a push
// (route.go), waiting for messages (wait.go: Poll, Park), and $presence and
// $heartbeat (presence.go).
//
// Concurrency: the hub holds no lock of its own; the store orders
// structural changes against deliveries (MemoryStore's doc has its lock
// order), and each mailbox locks itself. stop is closed once, by Close,
// and every parked poll selects on it. Nothing is called back under a
// lock: parked polls are answered (Wakeup.Run, a Park's done) with no lock
// held.
//
// One clock, Config.Now, times messages, offline expiry and the store's
// session expiry.
type Hub struct {
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	store Store
	obs   Observer

	stop     chan struct{}
	stopOnce sync.Once
}

// NewHub returns a hub over cfg.Store (a new MemoryStore when nil).
func NewHub(cfg Config) *Hub {
	cfg = cfg.WithDefaults()
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore(cfg.StoreConfig())
	}
	return &Hub{cfg: cfg, now: cfg.Now, log: cfg.Logger, obs: cfg.Observer, store: cfg.Store, stop: make(chan struct{})}
}

// WithDefaults returns c with its zero fields set to the defaults (but
// Store, which NewHub makes).
func (c Config) WithDefaults() Config {
	cfg := c
	if cfg.MaxMailbox <= 0 {
		cfg.MaxMailbox = DefaultMaxMailbox
	}
	if cfg.OfflineTTL <= 0 {
		cfg.OfflineTTL = DefaultOfflineTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
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
	return cfg
}

// StoreConfig is what a store needs of the hub's configuration, with the
// defaults filled in.
func (c Config) StoreConfig() StoreConfig {
	c = c.WithDefaults()
	return StoreConfig{MaxMailbox: c.MaxMailbox, SessionTTL: c.SessionTTL, OfflineTTL: c.OfflineTTL, Now: c.Now, MaxStoredBytes: c.MaxStoredBytes, Render: c.Render}
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
	for _, s := range h.store.Expire(now) {
		h.obs.SessionEnded("expired")
		h.presence(s, "offline", "expired")
		h.log.Info("session expired", "session", session.ShortID(s.ID), "device", s.DeviceID)
	}
	n := h.store.Cleanup(now)
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
	// StoredBytes is what the hub stores, as Config.MaxStoredBytes counts
	// it; IdempotencyIDs counts the idempotency ids among it.
	StoredBytes    int64
	IdempotencyIDs int
	// Store names the store: "memory", "disk", "redis".
	Store string
}

// Stats returns the current counts.
func (h *Hub) Stats() Stats {
	sessions, users := h.store.Counts()
	st := h.store.Stats()
	return Stats{
		Sessions:        sessions,
		Parked:          st.Parked,
		Devices:         sessions,
		Users:           users,
		OfflineMessages: st.OfflineMessages,
		Backlog:         st.Backlog,
		StoredBytes:     st.StoredBytes,
		IdempotencyIDs:  st.IdempotencyIDs,
		Store:           st.Store,
	}
}

// StoreErr is why the store stopped taking writes, or nil (Store.Err).
func (h *Hub) StoreErr() error { return h.store.Err() }

// Close stops the hub: every parked poll (blocking or parked with Park)
// returns at once with its pending messages, usually none,
// and later operations fail with ErrClosed. Sessions and messages stay in
// memory. Close is idempotent and safe to call concurrently.
func (h *Hub) Close() {
	h.stopOnce.Do(func() {
		close(h.stop)
		h.store.WakeAll()
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

package wire

import (
	"encoding/json"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// Session is a session as the API shows it.
type Session struct {
	SessionID string          `json:"sessionId"`
	DeviceID  string          `json:"deviceId"`
	UserID    string          `json:"userId,omitempty"`
	Topics    []string        `json:"topics"`
	Meta      json.RawMessage `json:"meta,omitempty"`
}

// NewSession returns s as the API shows it.
func NewSession(s *session.Session) Session {
	return Session{s.ID, s.DeviceID, s.UserID, s.Topics, s.Meta}
}

// Connected is the 201 body of POST /connect.
type Connected struct {
	Session
	Cursor      uint64 `json:"cursor"`
	PollTimeout int64  `json:"pollTimeout"` // seconds
	SessionTTL  int64  `json:"sessionTTL"`  // seconds
}

// NewConnected returns the 201 body for s with the server's default poll
// hold and session ttl (whole seconds).
func NewConnected(s *session.Session, pollTimeout, sessionTTL time.Duration) Connected {
	return Connected{Session: NewSession(s), PollTimeout: int64(pollTimeout / time.Second), SessionTTL: int64(sessionTTL / time.Second)}
}

// PresenceSession is one online session in GET /presence.
type PresenceSession struct {
	Session
	ConnectedAt string `json:"connectedAt"`
}

// Presence is the body of GET /presence: {"sessions":[…]}.
type Presence struct {
	Sessions []PresenceSession `json:"sessions"`
}

// NewPresence lists sessions as GET /presence shows them (never null).
func NewPresence(list []*session.Session) Presence {
	out := make([]PresenceSession, 0, len(list))
	for _, s := range list {
		out = append(out, PresenceSession{NewSession(s), s.CreatedAt.UTC().Format(poll.TimeFormat)})
	}
	return Presence{out}
}

// Stats is the body of GET /stats.
type Stats struct {
	Sessions        int `json:"sessions"`
	Parked          int `json:"parked"`
	Devices         int `json:"devices"`
	Users           int `json:"users"`
	OfflineMessages int `json:"offlineMessages"`
	// Backlog counts unacknowledged messages in session mailboxes (an
	// extension).
	Backlog int `json:"backlog"`
	// StoredBytes is what the server stores, as --max-stored-bytes counts
	// it: messages and idempotency ids (an extension).
	StoredBytes int64 `json:"storedBytes"`
	// IdempotencyIDs counts the idempotency ids remembered (an extension).
	IdempotencyIDs int   `json:"idempotencyIds"`
	UptimeSeconds  int64 `json:"uptimeSeconds"`
	// Store names where the server keeps its state: "memory" or "disk"
	// (an extension).
	Store string `json:"store"`
}

// NewStats returns the /stats body for the hub's counts and the server's
// uptime.
func NewStats(s poll.Stats, uptime time.Duration) Stats {
	return Stats{s.Sessions, s.Parked, s.Devices, s.Users, s.OfflineMessages, s.Backlog, s.StoredBytes, s.IdempotencyIDs, int64(uptime / time.Second), s.Store}
}

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// Disconnected is the 200 body of POST /disconnect.
type Disconnected struct {
	Disconnected int `json:"disconnected"`
}

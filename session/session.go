// Package session knows who is connected: the Session value, the parsing and
// validation of the device payload sent to POST /connect, unguessable session
// IDs, and the Registry that holds live sessions in a go-cache with indexes by
// device, user and topic.
//
// A session is online from the moment the Registry adds it until it is
// removed (disconnect, replacement) or expires (the cache's DeleteExpired,
// called by the cleanup job, finds it idle for longer than the TTL).
package session

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync/atomic"
	"time"
)

// Session is one connected client. Its exported fields are immutable once
// created: the Registry and the delivery hub share the pointer without
// locking. refreshed is the Registry's, and atomic.
type Session struct {
	// ID is the unguessable credential the client polls with.
	ID string
	// DeviceID identifies the device; at most one session per device is online.
	DeviceID string
	// UserID is optional; a user may have sessions on several devices.
	UserID string
	// Topics the session is subscribed to, deduplicated, in request order.
	Topics []string
	// Meta is the client's opaque metadata object, or nil.
	Meta json.RawMessage
	// Permit is what the session may send to (POST /send); nil: any topic.
	Permit *Permit
	// CreatedAt is when the session connected.
	CreatedAt time.Time

	// refreshed is when the Registry last set the session's expiry (Unix
	// nanoseconds); 0 once it is offline. Registry.Refresh reads it.
	refreshed atomic.Int64
}

// WithTopics returns a copy of s subscribed to topics instead: the same
// ID, device, user, meta, permit and creation time. The copy is not online
// until a Registry swaps it in (Registry.Resubscribe).
func (s *Session) WithTopics(topics []string) *Session {
	return &Session{ID: s.ID, DeviceID: s.DeviceID, UserID: s.UserID, Topics: topics, Meta: s.Meta, Permit: s.Permit, CreatedAt: s.CreatedAt}
}

// From is the sender label the server stamps on messages the session sends:
// "userId/deviceId", or just the deviceId when the session has no user.
func (s *Session) From() string {
	if s.UserID == "" {
		return s.DeviceID
	}
	return s.UserID + "/" + s.DeviceID
}

// idBytes is the entropy of a session ID: 144 bits, above the 128 the API
// requires, and a multiple of 3 so the base64 form has no padding.
const idBytes = 18

// NewID returns a fresh URL-safe random identifier with 144 bits from
// crypto/rand. crypto/rand.Read never fails on supported platforms (it
// crashes the program instead), so NewID has no error to return.
func NewID() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ShortID returns the first 8 characters of a session ID, safe to log: it
// identifies a session in a log without handing out its credential.
func ShortID(id string) string {
	if len(id) <= 8 {
		return id
	}
	return id[:8] + "…"
}

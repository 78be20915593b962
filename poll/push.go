package poll

import (
	"encoding/json"
	"errors"
	"time"
)

// Limits of a push (API.md, POST /push); the edge's parser enforces them.
const (
	MaxDataBytes = 64 << 10            // one message's data
	MaxBatchSize = 1000                // items in one batch
	MaxTTL       = 30 * 24 * time.Hour // longest offline ttl a push may ask for
	MaxKeyLen    = 128                 // idempotency id
)

// ErrPayloadTooLarge: a message's data is over MaxDataBytes.
var ErrPayloadTooLarge = errors.New("payload too large")

// TargetKind says how a push is routed.
type TargetKind int

// Target kinds. Broadcast (no target) reaches every online session.
const (
	Broadcast TargetKind = iota
	ToSession
	ToDevice
	ToUser
	ToTopic
)

// String returns the kind's name as used in metrics and logs.
func (k TargetKind) String() string {
	return [...]string{"broadcast", "session", "device", "user", "topic"}[k]
}

// Target is where a push goes: at most one field is set; none is a
// broadcast.
type Target struct {
	SessionID string
	DeviceID  string
	UserID    string
	Topic     string
}

// Kind returns the target's kind. It assumes a validated Target.
func (t Target) Kind() TargetKind {
	switch {
	case t.SessionID != "":
		return ToSession
	case t.DeviceID != "":
		return ToDevice
	case t.UserID != "":
		return ToUser
	case t.Topic != "":
		return ToTopic
	}
	return Broadcast
}

// Push is one validated message to publish.
type Push struct {
	To    Target
	Topic string // label; defaults to To.Topic
	// Data is any JSON value ("null" when absent). It must be valid JSON:
	// the hub does not check it again (wire.ParsePushes has).
	Data json.RawMessage
	TTL  time.Duration // offline lifetime; 0 = the hub's default
	// Key is the optional idempotency id: a second push with the same key
	// within TTL is not delivered again.
	Key string
}

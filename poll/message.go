// Package poll delivers messages: per-session mailboxes with sequence
// numbers and acknowledgment, parked long polls, routing of a push to a
// session, device, user, topic or everyone, offline storage for devices and
// users that are not connected, and idempotent pushes.
//
// The Hub is the entry point; it knows neither HTTP nor the JSON of the
// API (package wire parses pushes into Push values and renders messages).
// Its errors are the sentinels below (and session.ErrInvalidPayload for bad
// input), which wire maps to API.md's error codes in one table.
package poll

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Sentinel errors of the delivery domain. They are returned wrapped with %w;
// test with errors.Is.
var (
	// ErrSessionNotFound: no online session has that ID (expired, ended or
	// never existed).
	ErrSessionNotFound = errors.New("session not found")
	// ErrSuperseded: a newer poll on the same session took over the parked one.
	ErrSuperseded = errors.New("superseded by a newer poll")
	// ErrSessionClosed: the session ended (disconnect or replacement) while
	// the poll was parked or before it arrived.
	ErrSessionClosed = errors.New("session closed")
	// ErrMailboxFull: the target mailbox (or offline store) is at its limit.
	ErrMailboxFull = errors.New("mailbox full")
	// ErrInvalidCursor: the cursor is beyond the newest seq of the mailbox.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrTooManySessions: the hub is at its MaxSessions.
	ErrTooManySessions = errors.New("too many sessions")
	// ErrClosed: the hub is shutting down and accepts no new work.
	ErrClosed = errors.New("server is shutting down")
	// ErrCanceled: the edge ended a parked poll early (Hub.Cancel): its
	// client has gone. Its messages stay unacknowledged.
	ErrCanceled = errors.New("poll canceled: the client has gone")
)

// Envelope is one message as published: everything but the per-session seq.
// It is immutable after NewEnvelope and shared by every mailbox it reaches
// (a broadcast is encoded once).
type Envelope struct {
	// ID is the server-assigned message ID ("m_…").
	ID string
	// Topic labels the message; may be empty.
	Topic string
	// From is "userId/deviceId" (or "deviceId") for client sends, empty for
	// publisher pushes.
	From string
	// Data is the message's JSON value.
	Data json.RawMessage
	// SentAt is when the server accepted the message.
	SentAt time.Time
	// Expires is when an offline copy of the message is dropped.
	Expires time.Time

	// Rendered is the message as the edge writes it, without its seq
	// (wire.Message), made once when the hub accepts the message
	// (Config.Render) and shared by every answer that carries it; nil when
	// the hub has no renderer, and the edge then encodes it each time.
	Rendered []byte

	// order is a process-wide acceptance counter: it keeps offline copies
	// from several stores (device, user, an ended session) in send order.
	order uint64
	// holders counts the mailboxes and offline lists that hold the
	// message, for the storage budget (stored).
	holders atomic.Int32
}

var orderCounter atomic.Uint64

// TimeFormat is the wire format of timestamps: RFC 3339, UTC, milliseconds.
// The hub writes its own messages' times ($heartbeat) in it.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// NewEnvelope returns a message accepted at now with the given offline
// ttl and a fresh ID. data must be valid JSON (nil means null); it is not
// checked here: the edge's parser (wire.ParsePushes) has checked it. The
// envelope has no Rendered form; a hub's envelopes get theirs from
// Config.Render.
func NewEnvelope(topic, from string, data json.RawMessage, now time.Time, ttl time.Duration) *Envelope {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	return &Envelope{
		ID:      newMessageID(),
		Topic:   topic,
		From:    from,
		Data:    data,
		SentAt:  now,
		Expires: now.Add(ttl),
		order:   orderCounter.Add(1),
	}
}

// newMessageID returns "m_" and 24 characters of base64url: 144 random
// bits, the shape of a session ID. Message IDs label messages and are not
// credentials, so they come from math/rand/v2's ChaCha8 generator, which
// is unpredictable enough and cheaper than crypto/rand.
func newMessageID() string {
	var b [18]byte
	binary.LittleEndian.PutUint64(b[0:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	binary.LittleEndian.PutUint16(b[16:], uint16(rand.Uint32()))
	return "m_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// envelopeOverhead is what Size adds to a message's variable parts for
// the rest of it: its fixed fields, and the JSON around them.
const envelopeOverhead = 128

// Size is about how many bytes the message takes in memory: its data,
// ID, topic, sender and rendered form, plus a fixed overhead.
func (e *Envelope) Size() int {
	return len(e.Data) + len(e.ID) + len(e.Topic) + len(e.From) + len(e.Rendered) + envelopeOverhead
}

// AnswerSize is about how many bytes the message takes in a poll's
// answer: its rendered form, or what it would be.
func (e *Envelope) AnswerSize() int {
	if e.Rendered != nil {
		return len(e.Rendered) + 16
	}
	return len(e.Data) + len(e.ID) + len(e.Topic) + len(e.From) + envelopeOverhead
}

// Message is an envelope as it sits in one session's mailbox.
type Message struct {
	// Seq is the per-session sequence number, 1, 2, 3 … in mailbox order.
	Seq uint64
	// Redelivery is true when an earlier poll response already carried the
	// message (it was not acknowledged).
	Redelivery bool
	*Envelope
}

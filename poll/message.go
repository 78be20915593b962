// Package poll delivers messages: per-session mailboxes with sequence
// numbers and acknowledgment, parked long polls, routing of a push to a
// session, device, user, topic or everyone, offline storage for devices and
// users that are not connected, and idempotent pushes.
//
// The Hub is the entry point; it does not know about HTTP. Its errors are
// the sentinels below (and session.ErrInvalidPayload for bad input), which
// the HTTP edge maps to API.md's error codes in one place.
package poll

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
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

	// order is a process-wide acceptance counter: it keeps offline copies
	// from several stores (device, user, an ended session) in send order.
	order uint64
	// body is the JSON encoding of the message without its seq: the bytes
	// after `{"seq":N,` in a poll response.
	body []byte
}

var orderCounter atomic.Uint64

// wireEnvelope is the JSON form of a message minus its seq.
type wireEnvelope struct {
	ID     string          `json:"id"`
	Topic  string          `json:"topic"`
	From   string          `json:"from,omitempty"`
	Data   json.RawMessage `json:"data"`
	SentAt string          `json:"sentAt"`
}

// TimeFormat is the wire format of timestamps: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// NewEnvelope builds and encodes a message accepted at now with the given
// offline ttl. data must be valid JSON (nil means null).
func NewEnvelope(topic, from string, data json.RawMessage, now time.Time, ttl time.Duration) (*Envelope, error) {
	return newEnvelope(topic, from, data, now, ttl, false)
}

// newEnvelope is NewEnvelope; valid says data is known to be valid JSON.
func newEnvelope(topic, from string, data json.RawMessage, now time.Time, ttl time.Duration, valid bool) (*Envelope, error) {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	e := &Envelope{
		ID:      newMessageID(),
		Topic:   topic,
		From:    from,
		Data:    data,
		SentAt:  now,
		Expires: now.Add(ttl),
		order:   orderCounter.Add(1),
	}
	if plainString(e.ID) && plainString(topic) && plainString(from) && plainJSON(data) && (valid || json.Valid(data)) {
		e.body = appendEnvelope(make([]byte, 0, 80+len(e.ID)+len(topic)+len(from)+len(data)), e)
		return e, nil
	}
	b, err := json.Marshal(wireEnvelope{ID: e.ID, Topic: topic, From: from, Data: data, SentAt: now.UTC().Format(TimeFormat)})
	if err != nil {
		return nil, err
	}
	e.body = b[1:] // drop the '{': the seq goes in front
	return e, nil
}

// appendEnvelope appends e's body, byte for byte what json.Marshal makes of
// its wireEnvelope minus the leading '{', for the common case that
// NewEnvelope checks first: strings that need no escaping and data that is
// valid, compact and free of what json.Marshal escapes.
func appendEnvelope(dst []byte, e *Envelope) []byte {
	dst = append(dst, `"id":"`...)
	dst = append(dst, e.ID...)
	dst = append(dst, `","topic":"`...)
	dst = append(dst, e.Topic...)
	if e.From != "" {
		dst = append(dst, `","from":"`...)
		dst = append(dst, e.From...)
	}
	dst = append(dst, `","data":`...)
	dst = append(dst, e.Data...)
	dst = append(dst, `,"sentAt":"`...)
	dst = appendSentAt(dst, e.SentAt)
	return append(dst, `"}`...)
}

// newMessageID returns "m_" and 24 characters of base64url: 144 random
// bits, the shape of a session ID. Message IDs label messages and are not
// credentials, so they come from math/rand/v2's ChaCha8 generator, which
// is unpredictable enough and cheaper than crypto/rand (2% of the CPU of a
// batch push).
func newMessageID() string {
	var b [18]byte
	binary.LittleEndian.PutUint64(b[0:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	binary.LittleEndian.PutUint16(b[16:], uint16(rand.Uint32()))
	return "m_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// sentAt caches the text of the last millisecond formatted: the messages
// of one batch, and pushes within the same millisecond, share it.
var sentAt atomic.Pointer[sentAtText]

type sentAtText struct {
	ms   int64
	text []byte
}

// appendSentAt appends t in TimeFormat.
func appendSentAt(dst []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	if c := sentAt.Load(); c != nil && c.ms == ms {
		return append(dst, c.text...)
	}
	c := &sentAtText{ms: ms, text: t.UTC().AppendFormat(nil, TimeFormat)}
	sentAt.Store(c)
	return append(dst, c.text...)
}

// plainString reports whether json.Marshal writes s as is between quotes:
// printable ASCII other than the quote, the backslash and <, >, & (which
// it escapes for HTML).
func plainString(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainJSON reports whether json.Marshal writes data, a valid RawMessage,
// as is: with no whitespace between tokens and nothing it escapes
// (<, >, &, and U+2028/U+2029, whose UTF-8 encodings start with 0xE2, are
// refused even where json.Marshal would keep them).
func plainJSON(data []byte) bool {
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '<' || c == '>' || c == '&' || c == 0xE2:
			return false
		case inString && c == '\\':
			i++ // the escaped byte cannot end the string
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
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

// AppendJSON appends the JSON object of m, seq first, to dst.
func (m Message) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, ',')
	return append(dst, m.body...)
}

// AppendBatchJSON appends a poll response body, {"cursor":N,"messages":[…]},
// for msgs (non-empty, in seq order) to dst.
func AppendBatchJSON(dst []byte, msgs []Message) []byte {
	dst = append(dst, `{"cursor":`...)
	dst = strconv.AppendUint(dst, msgs[len(msgs)-1].Seq, 10)
	dst = append(dst, `,"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = m.AppendJSON(dst)
	}
	return append(dst, "]}"...)
}

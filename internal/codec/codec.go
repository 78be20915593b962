// Package codec writes the records a store keeps outside the process (a
// session, a message, an idempotency id's outcome) as bytes, and reads
// them back as they were: the disk store and the Redis store share it, so
// a message renders the same from either.
package codec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// ErrCorrupt wraps what a record that cannot be read says.
var ErrCorrupt = errors.New("corrupt record")

// storedSession is a session's record: the fields a session is made of.
type storedSession struct {
	ID        string          `json:"id"`
	DeviceID  string          `json:"deviceId"`
	UserID    string          `json:"userId,omitempty"`
	Topics    []string        `json:"topics,omitempty"`
	Meta      json.RawMessage `json:"meta,omitempty"`
	Permit    *[]string       `json:"permit,omitempty"` // nil: any topic
	CreatedAt time.Time       `json:"createdAt"`
}

// Session writes a session's record (JSON).
func Session(s *session.Session) []byte {
	r := storedSession{ID: s.ID, DeviceID: s.DeviceID, UserID: s.UserID, Topics: s.Topics, Meta: s.Meta, CreatedAt: s.CreatedAt}
	if s.Permit != nil {
		p := s.Permit.Patterns() // not nil for a permit: "no topic" stays [] on disk
		r.Permit = &p
	}
	b, _ := json.Marshal(r) // strings, raw JSON already valid, a time: cannot fail
	return b
}

// ParseSession reads what Session wrote.
func ParseSession(v []byte) (*session.Session, error) {
	var r storedSession
	if err := json.Unmarshal(v, &r); err != nil || r.ID == "" || r.DeviceID == "" {
		return nil, fmt.Errorf("%w: session: %v", ErrCorrupt, err)
	}
	s := &session.Session{ID: r.ID, DeviceID: r.DeviceID, UserID: r.UserID, Topics: r.Topics, Meta: r.Meta, CreatedAt: r.CreatedAt}
	if r.Permit != nil {
		s.Permit = session.NewPermit(*r.Permit)
	}
	return s, nil
}

// Envelope writes a message as fields: its order and times as
// varints, then its id, topic, sender and data, each with its length.
func Envelope(e *poll.Envelope) []byte { return AppendEnvelope(nil, e) }

func AppendEnvelope(b []byte, e *poll.Envelope) []byte {
	b = binary.AppendUvarint(b, e.Order())
	b = binary.AppendVarint(b, e.SentAt.UnixNano())
	b = binary.AppendVarint(b, e.Expires.UnixNano())
	for _, s := range []string{e.ID, e.Topic, e.From, string(e.Data)} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// ParseEnvelope reads what Envelope wrote.
func ParseEnvelope(v []byte) (*poll.Envelope, error) {
	r := reader{b: v}
	order := r.uvarint()
	sent, expires := r.varint(), r.varint()
	id, topic, from, data := r.str(), r.str(), r.str(), r.str()
	if r.err != nil || len(r.b) != 0 || id == "" {
		return nil, fmt.Errorf("%w: message", ErrCorrupt)
	}
	return poll.RestoreEnvelope(id, topic, from, json.RawMessage(data), time.Unix(0, sent).UTC(), time.Unix(0, expires).UTC(), order), nil
}

// ID writes an idempotency key's expiry and result.
func ID(expires time.Time, r poll.Result) []byte {
	b := binary.AppendVarint(nil, expires.UnixNano())
	b = binary.AppendUvarint(b, uint64(r.Delivered))
	b = binary.AppendUvarint(b, uint64(r.Stored))
	b = binary.AppendUvarint(b, uint64(r.Rejected))
	b = binary.AppendUvarint(b, uint64(len(r.ID)))
	return append(b, r.ID...)
}

// ParseID reads what ID wrote.
func ParseID(v []byte) (time.Time, poll.Result, error) {
	r := reader{b: v}
	expires := r.varint()
	res := poll.Result{Delivered: int(r.uvarint()), Stored: int(r.uvarint()), Rejected: int(r.uvarint())}
	res.ID = r.str()
	if r.err != nil || len(r.b) != 0 {
		return time.Time{}, poll.Result{}, fmt.Errorf("%w: idempotency id", ErrCorrupt)
	}
	return time.Unix(0, expires), res, nil
}

// reader reads what the encoders wrote; the first failure sticks in err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err, r.b = ErrCorrupt, nil
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reader) varint() int64 {
	n, k := binary.Varint(r.b)
	if k <= 0 {
		r.err, r.b = ErrCorrupt, nil
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err, r.b = ErrCorrupt, nil
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

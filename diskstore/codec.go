package diskstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// The layout of the data directory's keys. Every key starts with one byte
// naming its kind; ids and names follow as they are, and seqs and orders as
// 8 bytes big-endian at the end, so that a kind's keys sort by session (or
// list) and then by seq (or order).
//
//	v                       format version (formatVersion)
//	s <sid>                 session record (encodeSession)
//	m <sid> <seq>           a message in the session's mailbox (encodeEnvelope)
//	q <sid>                 the seq up to which the mailbox was acknowledged when it
//	                        last became empty (8 bytes): the newest seq it gave is
//	                        its newest message's, or this when it holds none
//	o <listKey> <order>     a message in an offline list ("device:…", "user:…")
//	i <idempotency key>     expiry and result of an idempotency key (encodeID)
//	n <nameKey>             when a device or user was last online (8 bytes, Unix ns)
//
// A message is written whole under each key that holds it (a fan-out's
// once per mailbox): one write to append, one delete to acknowledge, and
// no count of holders to keep. Reading back, the copies of one message id
// become one envelope again.
const (
	kindVersion = 'v'
	kindSession = 's'
	kindLastSeq = 'q'
	kindMessage = 'm'
	kindOffline = 'o'
	kindID      = 'i'
	kindName    = 'n'
)

// formatVersion is the value of the v key: what this code writes and reads.
const formatVersion = "longpoll-data/1"

// errCorrupt wraps what a record that cannot be read says.
var errCorrupt = errors.New("corrupt record")

func key(kind byte, id string) []byte { return appendKey(nil, kind, id) }

func appendKey(dst []byte, kind byte, id string) []byte {
	return append(append(dst, kind), id...)
}

// keyN is a key with a trailing 8-byte number (a seq, an order).
func keyN(kind byte, id string, n uint64) []byte { return appendKeyN(nil, kind, id, n) }

func appendKeyN(dst []byte, kind byte, id string, n uint64) []byte {
	return binary.BigEndian.AppendUint64(appendKey(dst, kind, id), n)
}

// splitN splits a keyN key into its id and number.
func splitN(k []byte) (string, uint64, error) {
	if len(k) < 1+8 {
		return "", 0, fmt.Errorf("%w: key %q too short", errCorrupt, k)
	}
	return string(k[1 : len(k)-8]), binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func readU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %d bytes for a number", errCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

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

func encodeSession(s *session.Session) []byte {
	r := storedSession{ID: s.ID, DeviceID: s.DeviceID, UserID: s.UserID, Topics: s.Topics, Meta: s.Meta, CreatedAt: s.CreatedAt}
	if s.Permit != nil {
		p := s.Permit.Patterns() // not nil for a permit: "no topic" stays [] on disk
		r.Permit = &p
	}
	b, _ := json.Marshal(r) // strings, raw JSON already valid, a time: cannot fail
	return b
}

func decodeSession(v []byte) (*session.Session, error) {
	var r storedSession
	if err := json.Unmarshal(v, &r); err != nil || r.ID == "" || r.DeviceID == "" {
		return nil, fmt.Errorf("%w: session: %v", errCorrupt, err)
	}
	s := &session.Session{ID: r.ID, DeviceID: r.DeviceID, UserID: r.UserID, Topics: r.Topics, Meta: r.Meta, CreatedAt: r.CreatedAt}
	if r.Permit != nil {
		s.Permit = session.NewPermit(*r.Permit)
	}
	return s, nil
}

// encodeEnvelope writes a message as fields: its order and times as
// varints, then its id, topic, sender and data, each with its length.
func encodeEnvelope(e *poll.Envelope) []byte { return appendEnvelope(nil, e) }

func appendEnvelope(b []byte, e *poll.Envelope) []byte {
	b = binary.AppendUvarint(b, e.Order())
	b = binary.AppendVarint(b, e.SentAt.UnixNano())
	b = binary.AppendVarint(b, e.Expires.UnixNano())
	for _, s := range []string{e.ID, e.Topic, e.From, string(e.Data)} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeEnvelope(v []byte) (*poll.Envelope, error) {
	r := reader{b: v}
	order := r.uvarint()
	sent, expires := r.varint(), r.varint()
	id, topic, from, data := r.str(), r.str(), r.str(), r.str()
	if r.err != nil || len(r.b) != 0 || id == "" {
		return nil, fmt.Errorf("%w: message", errCorrupt)
	}
	return poll.RestoreEnvelope(id, topic, from, json.RawMessage(data), time.Unix(0, sent).UTC(), time.Unix(0, expires).UTC(), order), nil
}

// encodeID writes an idempotency key's expiry and result.
func encodeID(expires time.Time, r poll.Result) []byte {
	b := binary.AppendVarint(nil, expires.UnixNano())
	b = binary.AppendUvarint(b, uint64(r.Delivered))
	b = binary.AppendUvarint(b, uint64(r.Stored))
	b = binary.AppendUvarint(b, uint64(r.Rejected))
	b = binary.AppendUvarint(b, uint64(len(r.ID)))
	return append(b, r.ID...)
}

func decodeID(v []byte) (time.Time, poll.Result, error) {
	r := reader{b: v}
	expires := r.varint()
	res := poll.Result{Delivered: int(r.uvarint()), Stored: int(r.uvarint()), Rejected: int(r.uvarint())}
	res.ID = r.str()
	if r.err != nil || len(r.b) != 0 {
		return time.Time{}, poll.Result{}, fmt.Errorf("%w: idempotency id", errCorrupt)
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
		r.err, r.b = errCorrupt, nil
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reader) varint() int64 {
	n, k := binary.Varint(r.b)
	if k <= 0 {
		r.err, r.b = errCorrupt, nil
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err, r.b = errCorrupt, nil
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

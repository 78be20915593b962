package wire

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/poll"
)

// wireMessage is the JSON form of a message minus its seq.
type wireMessage struct {
	ID     string          `json:"id"`
	Topic  string          `json:"topic"`
	From   string          `json:"from,omitempty"`
	Data   json.RawMessage `json:"data"`
	SentAt string          `json:"sentAt"`
}

// Render returns the JSON of e as a poll answer carries it, without the
// leading `{"seq":N,`: the bytes from `"id":` to the closing brace. The hub
// calls it once per accepted message (poll.Config.Render) and every answer
// shares the result. e.Data must be valid JSON (wire.ParsePushes checks
// pushes; the hub's own messages are marshalled); in the usual form
// (strings and data that json.Marshal copies as they are) the bytes are
// written by hand, otherwise by json.Marshal, which fails on invalid data.
func Render(e *poll.Envelope) ([]byte, error) {
	if plainString(e.ID) && plainString(e.Topic) && plainString(e.From) && plainJSON(e.Data) {
		return appendMessageBody(make([]byte, 0, 80+len(e.ID)+len(e.Topic)+len(e.From)+len(e.Data)), e), nil
	}
	b, err := json.Marshal(wireMessage{ID: e.ID, Topic: e.Topic, From: e.From, Data: e.Data, SentAt: e.SentAt.UTC().Format(poll.TimeFormat)})
	if err != nil {
		return nil, err
	}
	return b[1:], nil // drop the '{': the seq goes in front
}

// appendMessageBody appends Render's bytes for the case it checks first:
// byte for byte what json.Marshal makes of the wireMessage minus its
// leading '{'.
func appendMessageBody(dst []byte, e *poll.Envelope) []byte {
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

// AppendMessage appends the JSON object of m, seq first, to dst: from
// m.Rendered when the hub rendered it, else rendered now (invalid data
// is written as null).
func AppendMessage(dst []byte, m poll.Message) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, ',')
	if m.Rendered != nil {
		return append(dst, m.Rendered...)
	}
	b, err := Render(m.Envelope)
	if err != nil {
		e := m.Envelope
		b, _ = Render(&poll.Envelope{ID: e.ID, Topic: e.Topic, From: e.From, Data: json.RawMessage("null"), SentAt: e.SentAt})
	}
	return append(dst, b...)
}

// AppendAnswer appends a poll's 200 body, {"cursor":N,"messages":[…]},
// for msgs (non-empty, in seq order) to dst.
func AppendAnswer(dst []byte, msgs []poll.Message) []byte {
	dst = append(dst, `{"cursor":`...)
	dst = strconv.AppendUint(dst, msgs[len(msgs)-1].Seq, 10)
	dst = append(dst, `,"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendMessage(dst, m)
	}
	return append(dst, "]}"...)
}

// sentAt caches the text of the last millisecond formatted: the messages
// of one batch, and pushes within the same millisecond, share it.
var sentAt atomic.Pointer[sentAtText]

type sentAtText struct {
	ms   int64
	text []byte
}

// appendSentAt appends t in poll.TimeFormat.
func appendSentAt(dst []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	if c := sentAt.Load(); c != nil && c.ms == ms {
		return append(dst, c.text...)
	}
	c := &sentAtText{ms: ms, text: t.UTC().AppendFormat(nil, poll.TimeFormat)}
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

// AnswerPieces returns AppendAnswer's bytes for msgs as pieces whose
// concatenation is those bytes. The messages' rendered forms are shared,
// not copied; only the few bytes between them are new. A writer that
// cannot hand a large answer to the socket at once keeps these instead of
// a copy of the answer.
func AnswerPieces(msgs []poll.Message) [][]byte {
	pieces := make([][]byte, 0, 2*len(msgs)+1)
	sep := append(append([]byte(`{"cursor":`), strconv.AppendUint(nil, msgs[len(msgs)-1].Seq, 10)...), `,"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			sep = append(sep, ',')
		}
		if m.Rendered == nil {
			sep = AppendMessage(sep, m) // rendered now, into the piece
			continue
		}
		sep = append(sep, `{"seq":`...)
		sep = strconv.AppendUint(sep, m.Seq, 10)
		sep = append(sep, ',')
		pieces = append(pieces, sep, m.Rendered)
		sep = nil
	}
	return append(pieces, append(sep, "]}"...))
}

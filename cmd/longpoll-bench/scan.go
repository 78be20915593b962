package main

import (
	"encoding/json"
	"strings"

	"github.com/longpoll/longpoll/internal/jsonscan"
)

// The load tool decodes every payload and poll response it receives, on
// the cores the server under test runs on, and encoding/json's reflection
// was a fifth of its CPU. These decoders read the shapes the tool expects
// with jsonscan, which checks the values it skips as json.Valid does (one
// pass reads and validates), and leave everything else to encoding/json: an
// invalid text, string escapes, floats, negative numbers for unsigned
// fields, and keys that repeat a field or differ from one only in case. A
// malformed answer is still caught and counted as a violation; what they
// accept, they read as json.Unmarshal.

// fields reads an object: read(i) reads the value of the member named
// names[i], and other members are skipped. It fails, leaving the text to
// encoding/json, on a key that repeats a name or differs from one only in
// case.
func fields(s *jsonscan.Scanner, names []string, read func(i int) bool) bool {
	var seen uint
	return s.Object(func(key []byte) bool {
		for i, n := range names {
			switch {
			case string(key) == n:
				if seen&(1<<i) != 0 {
					return false
				}
				seen |= 1 << i
				return read(i)
			case strings.EqualFold(string(key), n):
				return false
			}
		}
		_, ok := s.Value()
		return ok
	})
}

// str reads a plain string into dst.
func str(s *jsonscan.Scanner, dst *string) bool {
	v, ok := s.Str()
	*dst = string(v)
	return ok
}

// unsigned reads a non-negative integer.
func unsigned(s *jsonscan.Scanner) (uint64, bool) {
	if s.Peek() == '-' {
		return 0, false
	}
	v, ok := s.Int()
	return uint64(v), ok
}

// decode runs scan over b; when scan reads all of it, b was valid JSON.
// Otherwise it resets *v and leaves b to json.Unmarshal.
func decode[T any](b []byte, v *T, scan func(s *jsonscan.Scanner) bool) error {
	if s := jsonscan.New(b); scan(s) && s.End() {
		return nil
	}
	var zero T
	*v = zero
	return json.Unmarshal(b, v)
}

// The members each decoder reads.
var (
	payloadFields  = []string{"r", "k", "p", "s", "t"}
	lpPollFields   = []string{"cursor", "messages"}
	lpMsgFields    = []string{"seq", "data"}
	lpResultFields = []string{"delivered", "stored", "error"}
	lpErrorFields  = []string{"code"}
	glpPollFields  = []string{"timeout", "error", "events"}
	glpEventFields = []string{"timestamp", "id", "data"}
)

// decodePayload decodes a message the tool sent. An "r" equal to run is
// returned as run itself, without a copy.
func decodePayload(d []byte, run string) (m payload, err error) {
	err = decode(d, &m, func(s *jsonscan.Scanner) bool {
		return fields(s, payloadFields, func(i int) (ok bool) {
			var v int64
			switch i {
			case 0:
				var r []byte
				if r, ok = s.Str(); string(r) == run {
					m.R = run
				} else {
					m.R = string(r)
				}
			case 1:
				v, ok = s.Int()
				m.K = int(v)
			case 2:
				v, ok = s.Int()
				m.P = int(v)
			case 3:
				var u uint64
				u, ok = unsigned(s)
				m.S, ok = uint32(u), ok && u <= 1<<32-1
			default:
				m.T, ok = s.Int()
			}
			return ok
		})
	})
	return m, err
}

// decodeLPPoll decodes a longpoll poll response body.
func decodeLPPoll(b []byte) (r lpPollResp, err error) {
	err = decode(b, &r, func(s *jsonscan.Scanner) bool {
		return fields(s, lpPollFields, func(i int) (ok bool) {
			if i == 0 {
				r.Cursor, ok = unsigned(s)
				return ok
			}
			return s.Array(func() bool {
				var m lpMessage
				ok := fields(s, lpMsgFields, func(i int) (ok bool) {
					if i == 0 {
						m.Seq, ok = unsigned(s)
					} else {
						m.Data, ok = s.Value()
					}
					return ok
				})
				r.Messages = append(r.Messages, m)
				return ok
			})
		})
	})
	return r, err
}

// lpPushResultFrom reads one result of a longpoll push into r.
func lpPushResultFrom(s *jsonscan.Scanner, r *lpPushResult) bool {
	return fields(s, lpResultFields, func(i int) (ok bool) {
		var v int64
		switch {
		case i == 0:
			v, ok = s.Int()
			r.Delivered = int(v)
		case i == 1:
			v, ok = s.Int()
			r.Stored = int(v)
		case s.Peek() == 'n':
			_, ok = s.Value() // "error": null
		default:
			r.Error = &struct {
				Code string `json:"code"`
			}{}
			ok = fields(s, lpErrorFields, func(int) bool { return str(s, &r.Error.Code) })
		}
		return ok
	})
}

// decodeLPPushResult decodes the answer to a single longpoll push.
func decodeLPPushResult(b []byte) (r lpPushResult, err error) {
	err = decode(b, &r, func(s *jsonscan.Scanner) bool { return lpPushResultFrom(s, &r) })
	return r, err
}

// decodeLPPushResults decodes the answer to a longpoll batch push.
func decodeLPPushResults(b []byte) (rs []lpPushResult, err error) {
	err = decode(b, &rs, func(s *jsonscan.Scanner) bool {
		return s.Array(func() bool {
			rs = append(rs, lpPushResult{})
			return lpPushResultFrom(s, &rs[len(rs)-1])
		})
	})
	return rs, err
}

// decodeGLPPoll decodes a golongpoll poll response body.
func decodeGLPPoll(b []byte) (r glpPollResp, err error) {
	err = decode(b, &r, func(s *jsonscan.Scanner) bool {
		return fields(s, glpPollFields, func(i int) bool {
			switch i {
			case 0:
				return str(s, &r.Timeout)
			case 1:
				return str(s, &r.Error)
			}
			return s.Array(func() bool {
				var e glpEvent
				ok := fields(s, glpEventFields, func(i int) (ok bool) {
					switch i {
					case 0:
						e.Timestamp, ok = s.Int()
					case 1:
						ok = str(s, &e.ID)
					default:
						e.Data, ok = s.Value()
					}
					return ok
				})
				r.Events = append(r.Events, e)
				return ok
			})
		})
	})
	return r, err
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendPush appends {"<key>":<keyed>,"data":<data>} to dst: a push to
// one longpoll session ({"sessionId":…} as keyed) or one golongpoll
// category. data is a compact JSON text of the tool's own.
func appendPush(dst []byte, key string, keyed func([]byte) []byte, data []byte) []byte {
	dst = append(dst, `{"`...)
	dst = append(dst, key...)
	dst = append(dst, `":`...)
	dst = keyed(dst)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// lpPushBody appends a longpoll push of data to session id.
func lpPushBody(dst []byte, id string, data []byte) []byte {
	return appendPush(dst, "to", func(b []byte) []byte {
		b = append(b, `{"sessionId":`...)
		return append(appendJSONString(b, id), '}')
	}, data)
}

// glpPushBody appends a golongpoll publish of data to category.
func glpPushBody(dst []byte, category string, data []byte) []byte {
	return appendPush(dst, "category", func(b []byte) []byte { return appendJSONString(b, category) }, data)
}

// batchBody appends a JSON array of the items each makes.
func batchBody(n int, item func(dst []byte, i int) []byte) []byte {
	b := make([]byte, 0, 128*n)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = item(b, i)
	}
	return append(b, ']')
}

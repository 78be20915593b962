package main

import (
	"encoding/json"

	"github.com/longpoll/longpoll/internal/jsonscan"
)

// The load tool decodes every payload and poll response it receives, on
// the cores the server under test runs on, and encoding/json's reflection
// was a fifth of its CPU. These decoders read the shapes the tool expects
// with jsonscan and fall back to encoding/json for anything else (string
// escapes, floats, unexpected structure), so a malformed answer is still
// caught; values skipped on the way (ids, times) are not validated.

// decodePayload decodes a message the tool sent, as json.Unmarshal would.
func decodePayload(d []byte) (payload, error) {
	var m payload
	s := jsonscan.New(d)
	ok := s.Object(func(k []byte) bool {
		var ok bool
		var v int64
		switch string(k) {
		case "r":
			var r []byte
			r, ok = s.Str()
			m.R = string(r)
		case "k":
			v, ok = s.Int()
			m.K = int(v)
		case "p":
			v, ok = s.Int()
			m.P = int(v)
		case "s":
			v, ok = s.Int()
			m.S, ok = uint32(v), ok && v >= 0 && v <= 1<<32-1
		case "t":
			m.T, ok = s.Int()
		default:
			_, ok = s.Value()
		}
		return ok
	}) && s.End()
	if ok {
		return m, nil
	}
	m = payload{}
	err := json.Unmarshal(d, &m)
	return m, err
}

// decodeLPPoll decodes a longpoll poll response body.
func decodeLPPoll(b []byte) (lpPollResp, error) {
	var r lpPollResp
	s := jsonscan.New(b)
	ok := s.Object(func(k []byte) bool {
		switch string(k) {
		case "cursor":
			v, ok := s.Int()
			r.Cursor = uint64(v)
			return ok && v >= 0
		case "messages":
			return s.Array(func() bool {
				var m lpMessage
				ok := s.Object(func(k []byte) bool {
					switch string(k) {
					case "seq":
						v, ok := s.Int()
						m.Seq = uint64(v)
						return ok && v >= 0
					case "data":
						d, ok := s.Value()
						m.Data = d
						return ok
					}
					_, ok := s.Value()
					return ok
				})
				r.Messages = append(r.Messages, m)
				return ok
			})
		}
		_, ok := s.Value()
		return ok
	}) && s.End()
	if ok {
		return r, nil
	}
	r = lpPollResp{}
	err := json.Unmarshal(b, &r)
	return r, err
}

// lpPushResult reads one result of a longpoll push into r.
func lpPushResultFrom(s *jsonscan.Scanner, r *lpPushResult) bool {
	return s.Object(func(k []byte) bool {
		var v int64
		var ok bool
		switch string(k) {
		case "delivered":
			v, ok = s.Int()
			r.Delivered = int(v)
		case "stored":
			v, ok = s.Int()
			r.Stored = int(v)
		case "error":
			if s.Peek() == 'n' {
				_, ok = s.Value() // null
				break
			}
			r.Error = &struct {
				Code string `json:"code"`
			}{}
			ok = s.Object(func(k []byte) bool {
				if string(k) == "code" {
					c, ok := s.Str()
					r.Error.Code = string(c)
					return ok
				}
				_, ok := s.Value()
				return ok
			})
		default:
			_, ok = s.Value()
		}
		return ok
	})
}

// decodeLPPushResult decodes the answer to a single longpoll push.
func decodeLPPushResult(b []byte) (lpPushResult, error) {
	var r lpPushResult
	s := jsonscan.New(b)
	if lpPushResultFrom(s, &r) && s.End() {
		return r, nil
	}
	r = lpPushResult{}
	err := json.Unmarshal(b, &r)
	return r, err
}

// decodeLPPushResults decodes the answer to a longpoll batch push.
func decodeLPPushResults(b []byte) ([]lpPushResult, error) {
	var rs []lpPushResult
	s := jsonscan.New(b)
	ok := s.Array(func() bool {
		var r lpPushResult
		rs = append(rs, r)
		return lpPushResultFrom(s, &rs[len(rs)-1])
	})
	if ok && s.End() {
		return rs, nil
	}
	rs = nil
	err := json.Unmarshal(b, &rs)
	return rs, err
}

// decodeGLPPoll decodes a golongpoll poll response body.
func decodeGLPPoll(b []byte) (glpPollResp, error) {
	var r glpPollResp
	s := jsonscan.New(b)
	str := func(dst *string) bool {
		v, ok := s.Str()
		*dst = string(v)
		return ok
	}
	ok := s.Object(func(k []byte) bool {
		switch string(k) {
		case "timeout":
			return str(&r.Timeout)
		case "error":
			return str(&r.Error)
		case "events":
			return s.Array(func() bool {
				var e glpEvent
				ok := s.Object(func(k []byte) bool {
					switch string(k) {
					case "timestamp":
						v, ok := s.Int()
						e.Timestamp = v
						return ok
					case "id":
						return str(&e.ID)
					case "data":
						d, ok := s.Value()
						e.Data = d
						return ok
					}
					_, ok := s.Value()
					return ok
				})
				r.Events = append(r.Events, e)
				return ok
			})
		}
		_, ok := s.Value()
		return ok
	}) && s.End()
	if ok {
		return r, nil
	}
	r = glpPollResp{}
	err := json.Unmarshal(b, &r)
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

package main

import (
	"encoding/json"
	"strconv"
)

// The load tool decodes every payload and poll response it receives, on
// the cores the server under test runs on, and encoding/json's reflection
// was a fifth of its CPU. These scanners read the shapes the tool expects
// without it. Each reports ok false for anything it is not sure of (string
// escapes, floats, unexpected structure); the caller then falls back to
// encoding/json, which decides, so a malformed answer is still caught.

// scanner walks a JSON text. It does not validate what it skips.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c, after whitespace.
func (s *scanner) byte(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes and returns its bytes.
func (s *scanner) str() ([]byte, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// int reads an integer: an optional minus and 1-18 digits.
func (s *scanner) int() (int64, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if n := s.i - digits; n == 0 || n > 18 || n > 1 && s.b[digits] == '0' {
		return 0, false
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	return v, err == nil
}

// value skips one value (a string, object, array, number or literal) and
// returns its bytes.
func (s *scanner) value() ([]byte, bool) {
	s.ws()
	start := s.i
	if s.i >= len(s.b) {
		return nil, false
	}
	switch s.b[s.i] {
	case '"':
		if !s.skipString() {
			return nil, false
		}
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return nil, false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				return s.b[start:s.i], true
			}
		}
		return nil, false
	default: // a number or literal
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.b[start:s.i], s.i > start
			}
			s.i++
		}
	}
	return s.b[start:s.i], s.i > start
}

// skipString moves past the string that starts at s.i.
func (s *scanner) skipString() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			s.i = j + 1
			return true
		}
	}
	return false
}

// object calls field for each member of an object; field reads the value.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.byte('{') {
		return false
	}
	if s.byte('}') {
		return true
	}
	for {
		k, ok := s.str()
		if !ok || !s.byte(':') || !field(k) {
			return false
		}
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// decodePayload decodes a message the tool sent, as json.Unmarshal would.
func decodePayload(d []byte) (payload, error) {
	var m payload
	s := scanner{b: d}
	ok := s.object(func(k []byte) bool {
		var ok bool
		var v int64
		switch string(k) {
		case "r":
			var r []byte
			r, ok = s.str()
			m.R = string(r)
		case "k":
			v, ok = s.int()
			m.K = int(v)
		case "p":
			v, ok = s.int()
			m.P = int(v)
		case "s":
			v, ok = s.int()
			m.S, ok = uint32(v), ok && v >= 0 && v <= 1<<32-1
		case "t":
			m.T, ok = s.int()
		default:
			_, ok = s.value()
		}
		return ok
	}) && s.end()
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
	s := scanner{b: b}
	ok := s.object(func(k []byte) bool {
		switch string(k) {
		case "cursor":
			v, ok := s.int()
			r.Cursor = uint64(v)
			return ok && v >= 0
		case "messages":
			if !s.byte('[') {
				return false
			}
			if s.byte(']') {
				return true
			}
			for {
				var m lpMessage
				if !s.object(func(k []byte) bool {
					switch string(k) {
					case "seq":
						v, ok := s.int()
						m.Seq = uint64(v)
						return ok && v >= 0
					case "data":
						d, ok := s.value()
						m.Data = d
						return ok
					}
					_, ok := s.value()
					return ok
				}) {
					return false
				}
				r.Messages = append(r.Messages, m)
				if s.byte(']') {
					return true
				}
				if !s.byte(',') {
					return false
				}
			}
		}
		_, ok := s.value()
		return ok
	}) && s.end()
	if ok {
		return r, nil
	}
	r = lpPollResp{}
	err := json.Unmarshal(b, &r)
	return r, err
}

// lpPushResult reads one result of a longpoll push into r.
func (s *scanner) lpPushResult(r *lpPushResult) bool {
	return s.object(func(k []byte) bool {
		var v int64
		var ok bool
		switch string(k) {
		case "delivered":
			v, ok = s.int()
			r.Delivered = int(v)
		case "stored":
			v, ok = s.int()
			r.Stored = int(v)
		case "error":
			if s.ws(); s.i < len(s.b) && s.b[s.i] == 'n' {
				_, ok = s.value() // null
				break
			}
			r.Error = &struct {
				Code string `json:"code"`
			}{}
			ok = s.object(func(k []byte) bool {
				if string(k) == "code" {
					c, ok := s.str()
					r.Error.Code = string(c)
					return ok
				}
				_, ok := s.value()
				return ok
			})
		default:
			_, ok = s.value()
		}
		return ok
	})
}

// decodeLPPushResult decodes the answer to a single longpoll push.
func decodeLPPushResult(b []byte) (lpPushResult, error) {
	var r lpPushResult
	s := scanner{b: b}
	if s.lpPushResult(&r) && s.end() {
		return r, nil
	}
	r = lpPushResult{}
	err := json.Unmarshal(b, &r)
	return r, err
}

// decodeLPPushResults decodes the answer to a longpoll batch push.
func decodeLPPushResults(b []byte) ([]lpPushResult, error) {
	var rs []lpPushResult
	s := scanner{b: b}
	ok := s.byte('[')
	if ok && !s.byte(']') {
		for {
			var r lpPushResult
			if ok = s.lpPushResult(&r); !ok {
				break
			}
			rs = append(rs, r)
			if s.byte(']') {
				break
			}
			if ok = s.byte(','); !ok {
				break
			}
		}
	}
	if ok && s.end() {
		return rs, nil
	}
	rs = nil
	err := json.Unmarshal(b, &rs)
	return rs, err
}

// decodeGLPPoll decodes a golongpoll poll response body.
func decodeGLPPoll(b []byte) (glpPollResp, error) {
	var r glpPollResp
	s := scanner{b: b}
	str := func(dst *string) bool {
		v, ok := s.str()
		*dst = string(v)
		return ok
	}
	ok := s.object(func(k []byte) bool {
		switch string(k) {
		case "timeout":
			return str(&r.Timeout)
		case "error":
			return str(&r.Error)
		case "events":
			if !s.byte('[') {
				return false
			}
			if s.byte(']') {
				return true
			}
			for {
				var e glpEvent
				if !s.object(func(k []byte) bool {
					switch string(k) {
					case "timestamp":
						v, ok := s.int()
						e.Timestamp = v
						return ok
					case "id":
						return str(&e.ID)
					case "data":
						d, ok := s.value()
						e.Data = d
						return ok
					}
					_, ok := s.value()
					return ok
				}) {
					return false
				}
				r.Events = append(r.Events, e)
				if s.byte(']') {
					return true
				}
				if !s.byte(',') {
					return false
				}
			}
		}
		_, ok := s.value()
		return ok
	}) && s.end()
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

// Package jsonscan reads JSON texts of an expected shape without
// reflection: a push, a payload, a poll answer. Its Scanner accepts only
// the plain forms (strings of printable ASCII without escapes, integers
// without fraction or exponent) and reports false for anything else, so
// that its callers fall back to encoding/json, which decides. It does not
// validate the values it skips (Value); callers that need them valid check
// them.
package jsonscan

import "strconv"

// Scanner walks a JSON text from I.
type Scanner struct {
	B []byte
	I int
}

// New returns a Scanner at the start of b.
func New(b []byte) *Scanner { return &Scanner{B: b} }

func (s *Scanner) ws() {
	for s.I < len(s.B) {
		switch s.B[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// Peek returns the next byte after whitespace, or 0 at the end.
func (s *Scanner) Peek() byte {
	s.ws()
	if s.I < len(s.B) {
		return s.B[s.I]
	}
	return 0
}

// Byte consumes c after whitespace.
func (s *Scanner) Byte(c byte) bool {
	if s.Peek() == c {
		s.I++
		return true
	}
	return false
}

// Str reads a string of printable ASCII without escapes and returns its
// bytes (which are then the decoded string).
func (s *Scanner) Str() ([]byte, bool) {
	if s.Peek() != '"' {
		return nil, false
	}
	start := s.I + 1
	for j := start; j < len(s.B); j++ {
		switch c := s.B[j]; {
		case c == '"':
			s.I = j + 1
			return s.B[start:j], true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, false
		}
	}
	return nil, false
}

// Int reads an integer: an optional minus and 1-18 digits, no leading
// zero, no fraction or exponent.
func (s *Scanner) Int() (int64, bool) {
	s.ws()
	start := s.I
	if s.I < len(s.B) && s.B[s.I] == '-' {
		s.I++
	}
	digits := s.I
	for s.I < len(s.B) && s.B[s.I] >= '0' && s.B[s.I] <= '9' {
		s.I++
	}
	if n := s.I - digits; n == 0 || n > 18 || n > 1 && s.B[digits] == '0' {
		return 0, false
	}
	if s.I < len(s.B) {
		if c := s.B[s.I]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(s.B[start:s.I]), 10, 64)
	return v, err == nil
}

// Value moves past one value (a string, object, array, number or literal)
// and returns its bytes, unvalidated.
func (s *Scanner) Value() ([]byte, bool) {
	s.ws()
	start := s.I
	if s.I >= len(s.B) {
		return nil, false
	}
	switch s.B[s.I] {
	case '"':
		if !s.skipString() {
			return nil, false
		}
	case '{', '[':
		depth := 0
		for s.I < len(s.B) {
			switch s.B[s.I] {
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
			s.I++
			if depth == 0 {
				return s.B[start:s.I], true
			}
		}
		return nil, false
	default: // a number or literal
		for s.I < len(s.B) {
			switch s.B[s.I] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.B[start:s.I], s.I > start
			}
			s.I++
		}
	}
	return s.B[start:s.I], s.I > start
}

// skipString moves past the string that starts at I.
func (s *Scanner) skipString() bool {
	for j := s.I + 1; j < len(s.B); j++ {
		switch s.B[j] {
		case '\\':
			j++
		case '"':
			s.I = j + 1
			return true
		}
	}
	return false
}

// Object reads an object, calling field for each member with its key
// (a plain string); field reads the value.
func (s *Scanner) Object(field func(key []byte) bool) bool {
	if !s.Byte('{') {
		return false
	}
	if s.Byte('}') {
		return true
	}
	for {
		k, ok := s.Str()
		if !ok || !s.Byte(':') || !field(k) {
			return false
		}
		if s.Byte('}') {
			return true
		}
		if !s.Byte(',') {
			return false
		}
	}
}

// Array reads an array, calling item for each element; item reads it.
func (s *Scanner) Array(item func() bool) bool {
	if !s.Byte('[') {
		return false
	}
	if s.Byte(']') {
		return true
	}
	for {
		if !item() {
			return false
		}
		if s.Byte(']') {
			return true
		}
		if !s.Byte(',') {
			return false
		}
	}
}

// End reports whether only whitespace is left.
func (s *Scanner) End() bool {
	return s.Peek() == 0 && s.I == len(s.B)
}

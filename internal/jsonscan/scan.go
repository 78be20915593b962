// Package jsonscan reads JSON texts of an expected shape without
// reflection: a push, a payload, a poll answer. The values its caller
// reads field by field (Str, Int) must be of the plain forms (strings of
// printable ASCII without escapes, integers without fraction or exponent);
// for anything else it reports false, so that its callers fall back to
// encoding/json, which decides. The values it moves past whole (Value) are
// checked as json.Valid checks them, so a text the Scanner reads to its end
// is valid JSON.
package jsonscan

// Scanner walks a JSON text from I.
type Scanner struct {
	B []byte
	I int
}

// New returns a Scanner at the start of b.
func New(b []byte) *Scanner { return &Scanner{B: b} }

func (s *Scanner) ws() {
	// Called before every token: one comparison for the usual compact text.
	for s.I < len(s.B) && s.B[s.I] <= ' ' {
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
	var v int64 // 18 digits cannot overflow
	for s.I < len(s.B) && s.B[s.I] >= '0' && s.B[s.I] <= '9' {
		v = v*10 + int64(s.B[s.I]-'0')
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
	if digits > start {
		v = -v
	}
	return v, true
}

// maxDepth is encoding/json's nesting limit: json.Valid refuses a text
// nested deeper.
const maxDepth = 10000

// Value moves past one value (a string, object, array, number or literal)
// and returns its bytes. It accepts exactly what json.Valid accepts of the
// value on its own (escapes, any bytes of 0x20 and above in strings, the
// full number grammar, nesting up to encoding/json's limit), so a text the
// Scanner reads whole is valid JSON. Whatever follows the value is the
// caller's to read.
func (s *Scanner) Value() ([]byte, bool) {
	s.ws()
	start := s.I
	var inline [16]byte
	open := inline[:0] // the containers entered, '{' or '['
	for {
		// A value starts at I (after whitespace).
		s.ws()
		if s.I >= len(s.B) {
			return nil, false
		}
		var ok bool
		switch c := s.B[s.I]; c {
		case '{', '[':
			if len(open) == maxDepth {
				return nil, false
			}
			s.I++
			if ok = s.Byte(c + 2); ok { // '}' or ']': empty
				break
			}
			open = append(open, c)
			if c == '{' && !s.key() {
				return nil, false
			}
			continue // to the first member's value
		case '"':
			ok = s.skipString()
		case 't':
			ok = s.literal("true")
		case 'f':
			ok = s.literal("false")
		case 'n':
			ok = s.literal("null")
		default:
			ok = s.number()
		}
		if !ok {
			return nil, false
		}
		// A value ended: close containers until one has a next member.
		for {
			if len(open) == 0 {
				return s.B[start:s.I], true
			}
			c := s.Peek()
			top := open[len(open)-1]
			if c == ',' {
				s.I++
				if top == '{' && !s.key() {
					return nil, false
				}
				break
			}
			if top == '{' && c == '}' || top == '[' && c == ']' {
				s.I++
				open = open[:len(open)-1]
				continue
			}
			return nil, false
		}
	}
}

// key reads an object member's key and its colon.
func (s *Scanner) key() bool {
	return s.Peek() == '"' && s.skipString() && s.Byte(':')
}

// literal consumes lit at I.
func (s *Scanner) literal(lit string) bool {
	if len(s.B)-s.I < len(lit) || string(s.B[s.I:s.I+len(lit)]) != lit {
		return false
	}
	s.I += len(lit)
	return true
}

// number consumes a JSON number at I:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *Scanner) number() bool {
	if s.I < len(s.B) && s.B[s.I] == '-' {
		s.I++
	}
	switch {
	case s.I >= len(s.B):
		return false
	case s.B[s.I] == '0':
		s.I++
	case s.B[s.I] >= '1' && s.B[s.I] <= '9':
		s.digits()
	default:
		return false
	}
	if s.I < len(s.B) && s.B[s.I] == '.' {
		s.I++
		if s.digits() == 0 {
			return false
		}
	}
	if s.I < len(s.B) && (s.B[s.I] == 'e' || s.B[s.I] == 'E') {
		s.I++
		if s.I < len(s.B) && (s.B[s.I] == '+' || s.B[s.I] == '-') {
			s.I++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

// digits consumes decimal digits and returns how many.
func (s *Scanner) digits() int {
	start := s.I
	for s.I < len(s.B) && s.B[s.I] >= '0' && s.B[s.I] <= '9' {
		s.I++
	}
	return s.I - start
}

// skipString moves past the string that starts at I, checking it as
// encoding/json does: no control characters, only JSON's escapes.
func (s *Scanner) skipString() bool {
	for j := s.I + 1; j < len(s.B); j++ {
		switch c := s.B[j]; {
		case c == '"':
			s.I = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(s.B) {
				return false
			}
			switch s.B[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(s.B)-j <= 4 || !hex4(s.B[j+1:j+5]) {
					return false
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func hex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
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

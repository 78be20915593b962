package h1

import (
	"bytes"
	"strings"
)

// maxFields is the most header fields a head may have to be parsed here;
// a head with more goes to net/http.
const maxFields = 32

// Head is a parsed request head. Its byte slices point into the
// connection's read buffer: valid until the Handler returns.
type Head struct {
	// Method is the request method (upper-case letters).
	Method []byte
	// Target is the origin-form request target: the path and, after '?',
	// the raw query. It starts with '/'.
	Target []byte
	// Host is the Host header's value.
	Host []byte
	// ContentLength is the Content-Length header's value, or -1 without one.
	ContentLength int

	fields [maxFields]Field
	n      int
}

// Field is one header field of a Head other than Host, its value trimmed
// of surrounding white space.
type Field struct {
	Name, Value []byte
}

// Fields returns the head's header fields but Host, in order.
func (h *Head) Fields() []Field { return h.fields[:h.n] }

// Get returns the first value of the header name (compared without
// regard to case) and how many fields have that name.
func (h *Head) Get(name string) (value []byte, n int) {
	for _, f := range h.fields[:h.n] {
		if equalFold(f.Name, name) {
			if n == 0 {
				value = f.Value
			}
			n++
		}
	}
	return value, n
}

// Path returns the target without its query.
func (h *Head) Path() []byte {
	if i := bytes.IndexByte(h.Target, '?'); i >= 0 {
		return h.Target[:i]
	}
	return h.Target
}

// Query returns the raw query of the target ("" without '?'), and whether
// the target has a '?'.
func (h *Head) Query() (query []byte, ok bool) {
	if i := bytes.IndexByte(h.Target, '?'); i >= 0 {
		return h.Target[i+1:], true
	}
	return nil, false
}

// parseHead parses head, a complete request head ending in an empty line
// (CRLF line ends), into h. It reports false for anything but one plain
// HTTP/1.1 request that net/http reads the same way (FuzzParseHead): a
// request line "METHOD /target HTTP/1.1"; header names that are tokens and
// values of visible ASCII, space and tab; exactly one valid Host; at most
// one Content-Length of 1-9 digits; no Transfer-Encoding, Expect or
// Upgrade; Connection, if any, keep-alive; at most maxFields fields.
func parseHead(head []byte, h *Head) bool {
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return false
	}
	method, target, ok := bytes.Cut(line, []byte(" "))
	if !ok || !validMethod(method) {
		return false
	}
	target, ok = bytes.CutSuffix(target, []byte(" HTTP/1.1"))
	if !ok || !validTarget(target) {
		return false
	}
	h.Method, h.Target, h.Host, h.ContentLength, h.n = method, target, nil, -1, 0
	hosts := 0
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return false
		}
		if len(line) == 0 {
			break // the empty line that ends the head
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validName(name) || !validValue(value) {
			return false
		}
		value = bytes.Trim(value, " \t")
		switch {
		case equalFold(name, "Host"):
			if hosts++; hosts > 1 || !validHost(value) {
				return false
			}
			h.Host = value
			continue
		case equalFold(name, "Connection"):
			if !equalFold(value, "keep-alive") {
				return false
			}
		case equalFold(name, "Content-Length"):
			n, ok := contentLength(value)
			if !ok || h.ContentLength >= 0 {
				return false
			}
			h.ContentLength = n
		case equalFold(name, "Transfer-Encoding"), equalFold(name, "Expect"), equalFold(name, "Upgrade"):
			return false
		}
		if h.n == maxFields {
			return false
		}
		h.fields[h.n] = Field{name, value}
		h.n++
	}
	return len(rest) == 0 && hosts == 1
}

// ParseHead is parseHead for callers outside the package (tests, fuzzing
// the API's use of heads).
func ParseHead(head []byte, h *Head) bool { return parseHead(head, h) }

// contentLength parses a Content-Length of 1-9 decimal digits (larger
// ones are net/http's to refuse).
func contentLength(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// equalFold reports whether b and s are equal without regard to ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// EqualFold is equalFold for the Handler.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// validMethod admits upper-case letters.
func validMethod(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// validTarget admits an origin-form target: '/' then visible ASCII
// without a fragment, and no percent-escape in the path (net/http refuses
// a malformed one; a well-formed one is net/http's to decode).
func validTarget(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	inPath := true
	for _, c := range b {
		switch {
		case c <= ' ' || c >= 0x7f || c == '#':
			return false
		case c == '?':
			inPath = false
		case c == '%' && inPath:
			return false
		}
	}
	return true
}

// validName admits an RFC 9110 token.
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validValue admits visible ASCII, space and tab.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

// validHost admits a non-empty host[:port] of letters, digits and
// "-._:[]".
func validHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

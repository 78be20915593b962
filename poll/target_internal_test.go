package poll

import (
	"encoding/json"
	"testing"
)

// simpleTarget must read exactly what decodeTarget reads, or step aside.
func TestSimpleTarget(t *testing.T) {
	for _, c := range []struct {
		raw         string
		name, value string
		ok          bool
	}{
		{`{"sessionId":"abc"}`, "sessionId", "abc", true},
		{` { "userId" : "u-1" } `, "userId", "u-1", true},
		{"{\n\t\"topic\":\"a/b\"\r\n}", "topic", "a/b", true},
		{`{"deviceId":""}`, "deviceId", "", true},
		{`{"SessionId":"abc"}`, "", "", false},            // case-folded: the decoder's
		{`{"sessionId":"a\"b"}`, "", "", false},           // escapes
		{`{"sessionId":"a\u0062"}`, "", "", false},        // escapes
		{`{"sessionId":"é"}`, "", "", false},              // non-ASCII
		{`{"sessionId":1}`, "", "", false},                // not a string
		{`{"sessionId":"a","userId":"u"}`, "", "", false}, // two fields
		{`{"other":"a"}`, "", "", false},
		{`{}`, "", "", false},
		{`{"sessionId":"a"}x`, "", "", false},
		{`{"sessionId":"a"`, "", "", false},
	} {
		name, value, ok := simpleTarget([]byte(c.raw))
		if name != c.name || value != c.value || ok != c.ok {
			t.Errorf("simpleTarget(%q) = %q, %q, %v; want %q, %q, %v", c.raw, name, value, ok, c.name, c.value, c.ok)
		}
	}
}

// FuzzSimpleTarget checks that whatever simpleTarget accepts is valid JSON
// that decodeTarget reads the same way.
func FuzzSimpleTarget(f *testing.F) {
	for _, s := range []string{`{"sessionId":"abc"}`, ` { "topic" : "t" } `, `{"userId":"u","x":1}`, `{"deviceId":"\u0041"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		name, value, ok := simpleTarget(raw)
		if !ok {
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("simpleTarget accepted invalid JSON %q", raw)
		}
		var p Push
		dname, err := p.decodeTarget(raw)
		if err != nil || dname != name || *p.To.field(name) != value {
			t.Fatalf("%q: simpleTarget %q=%q, decodeTarget %q=%q (%v)", raw, name, value, dname, *p.To.field(name), err)
		}
	})
}

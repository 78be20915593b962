package jsonscan

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestScanner(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`"a\"b}" ,`, `"a\"b}"`, true},
		{`{"a":["}",{"b":"\\"}]} x`, `{"a":["}",{"b":"\\"}]}`, true},
		{`-12.5e3,`, `-12.5e3`, true},
		{`true}`, `true`, true},
		{`"open`, ``, false},
		{`[1,2`, ``, false},
		{``, ``, false},
	} {
		v, ok := New([]byte(c.in)).Value()
		if string(v) != c.want || ok != c.ok {
			t.Errorf("Value(%q) = %q, %v; want %q, %v", c.in, v, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		in string
		v  int64
		ok bool
	}{{"0", 0, true}, {"-0", 0, true}, {"123", 123, true}, {"01", 0, false}, {"1.5", 0, false}, {"1e2", 0, false}, {"-", 0, false}, {"1234567890123456789", 0, false}} {
		if v, ok := New([]byte(c.in)).Int(); v != c.v || ok != c.ok {
			t.Errorf("Int(%q) = %d, %v; want %d, %v", c.in, v, ok, c.v, c.ok)
		}
	}
	for _, c := range []struct {
		in string
		ok bool
	}{{`"plain text"`, true}, {`"esc\n"`, false}, {`"é"`, false}, {"\"tab\t\"", false}} {
		if _, ok := New([]byte(c.in)).Str(); ok != c.ok {
			t.Errorf("Str(%q) ok = %v, want %v", c.in, ok, c.ok)
		}
	}
	var keys []string
	s := New([]byte(` { "a" : 1 , "b" : [ ] } `))
	if !s.Object(func(k []byte) bool { keys = append(keys, string(k)); _, ok := s.Value(); return ok }) || !s.End() || len(keys) != 2 {
		t.Errorf("Object: keys %v", keys)
	}
	n := 0
	s = New([]byte(`[1, 2 ,3]`))
	if !s.Array(func() bool { n++; _, ok := s.Int(); return ok }) || n != 3 || !s.End() {
		t.Errorf("Array: %d items", n)
	}
	s = New([]byte(`[1,]`))
	if s.Array(func() bool { _, ok := s.Int(); return ok }) {
		t.Error("Array accepted a trailing comma")
	}
}

// valueValid reports whether Value reads all of b (but whitespace).
func valueValid(b []byte) bool {
	s := New(b)
	_, ok := s.Value()
	return ok && s.End()
}

func TestValueValidates(t *testing.T) {
	deep := func(n int, inner string) string {
		return strings.Repeat("[", n) + inner + strings.Repeat("]", n)
	}
	for _, in := range []string{
		`"\u00e9\/\b\f\n\r\t\"\\"`, "\"\xff\xfe raw bytes\"", `"é"`,
		`{"a":{"b":[1,-0.5e+3,true,false,null,{}]},"":[]}`, ` [ 1 , { "x" : "y" } ] `,
		`0`, `-0`, `1E9`, `1.0e-9`, `[]`, `{}`, `[[]]`,
		deep(10000, ""), deep(9999, `{"a":1}`),
		// invalid
		`"\x"`, `"\u12g4"`, `"\u123"`, "\"tab\t\"", `"open`,
		`01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `0x1`, `NaN`, `tru`, `nul`, `truex`,
		`{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{1:2}`, `[1,]`, `[,1]`, `[1 2]`, `[1}`, `{"a":1]`,
		`[`, `{`, `{"a":1`, ``, ` `, `]`, `}`,
		deep(10001, ""),
	} {
		if got, want := valueValid([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("Value(%.40q) read whole = %v, json.Valid = %v", in, got, want)
		}
	}
}

// FuzzValue checks Value against json.Valid: it reads a text whole exactly
// when json.Valid accepts it, and what it returns is valid.
func FuzzValue(f *testing.F) {
	for _, seed := range []string{`{"a":[1,"x\n",{"b":null}]}`, `-1.5e3`, `"\ud83d"`, `[[[]]]`, `{"a":1,}`, `"\x"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		v, ok := s.Value()
		if ok && !json.Valid(v) {
			t.Fatalf("Value(%q) returned %q, which is not valid", b, v)
		}
		if got, want := ok && s.End(), json.Valid(b); got != want {
			t.Fatalf("Value(%q) read whole = %v, json.Valid = %v", b, got, want)
		}
	})
}

// BenchmarkValue moves past a load-tool payload and a nested value, against
// json.Valid on the same bytes.
func BenchmarkValue(b *testing.B) {
	in := []byte(`{"r":"a1b2c3","k":512,"p":7,"s":123456,"t":1764115200123456789,"x":[{"id":"m_abc","v":-1.5e3,"ok":true,"s":"text \"quoted\""}]}`)
	b.Run("Value", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if !valueValid(in) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if !json.Valid(in) {
				b.Fatal("invalid")
			}
		}
	})
}

// FuzzInt checks Int against strconv.ParseInt of the text it consumed, and
// that it consumed a JSON integer.
func FuzzInt(f *testing.F) {
	for _, seed := range []string{"0", "-0", "123", "-987654321012345678", "01", "1.5", "1e3", "-", " 42,"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		s.ws()
		start := s.I
		v, ok := s.Int()
		if !ok {
			return
		}
		text := b[start:s.I]
		want, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil || v != want || !json.Valid(text) {
			t.Fatalf("Int(%q) = %d, consumed %q: ParseInt %d, %v", b, v, text, want, err)
		}
	})
}

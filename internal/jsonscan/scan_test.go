package jsonscan

import "testing"

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

package session_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/session"
)

func TestNewID(t *testing.T) {
	const n = 10000
	seen := make(map[string]bool, n)
	for range n {
		id := session.NewID()
		if len(id) != 24 {
			t.Fatalf("NewID() = %q: length %d, want 24", id, len(id))
		}
		if strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("NewID() = %q: not URL-safe base64", id)
		}
		raw, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil {
			t.Fatalf("NewID() = %q: %v", id, err)
		}
		if bits := 8 * len(raw); bits < 128 {
			t.Fatalf("NewID() carries %d bits, want >= 128", bits)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

// TestNewIDBitsVary checks that every bit position of the ID takes both
// values over a sample: no constant (wasted) bits.
func TestNewIDBitsVary(t *testing.T) {
	var or, and [18]byte
	for i := range and {
		and[i] = 0xff
	}
	for range 256 {
		raw, _ := base64.RawURLEncoding.DecodeString(session.NewID())
		for i, b := range raw {
			or[i] |= b
			and[i] &= b
		}
	}
	for i := range or {
		if or[i] != 0xff || and[i] != 0 {
			t.Fatalf("byte %d has constant bits: or=%08b and=%08b", i, or[i], and[i])
		}
	}
}

func TestShortID(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"abc":                      "abc",
		"abcdefgh":                 "abcdefgh",
		"abcdefghi":                "abcdefgh…",
		"AAAAAAAAAAAAAAAAAAAAAAAA": "AAAAAAAA…",
	} {
		if got := session.ShortID(in); got != want {
			t.Errorf("ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFrom(t *testing.T) {
	tests := []struct {
		s    *session.Session
		want string
	}{
		{&session.Session{DeviceID: "phone-1", UserID: "alice"}, "alice/phone-1"},
		{&session.Session{DeviceID: "lamp-42"}, "lamp-42"},
	}
	for _, tc := range tests {
		if got := tc.s.From(); got != tc.want {
			t.Errorf("%q/%q: From() = %q, want %q", tc.s.UserID, tc.s.DeviceID, got, tc.want)
		}
	}
}

func TestRequestNewSession(t *testing.T) {
	now := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	req := session.Request{DeviceID: "d", UserID: "u", Topics: []string{"a"}, Meta: json.RawMessage(`{}`)}
	s1, s2 := req.NewSession(now), req.NewSession(now)
	if s1.ID == "" || s1.ID == s2.ID {
		t.Fatalf("session IDs %q, %q: want fresh and distinct", s1.ID, s2.ID)
	}
	if s1.DeviceID != "d" || s1.UserID != "u" || len(s1.Topics) != 1 || s1.Topics[0] != "a" ||
		string(s1.Meta) != `{}` || !s1.CreatedAt.Equal(now) {
		t.Errorf("NewSession = %+v", s1)
	}
}

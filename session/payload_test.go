package session_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/session"
)

func TestCheckSubscribable(t *testing.T) {
	for topic, ok := range map[string]bool{
		"a": true, "home/kitchen": true, "$presence": true, "$heartbeat": true,
		"": false, "$": false, "$other": false, "$Presence": false, "a b": false,
		strings.Repeat("x", session.MaxTopicLen):       true,
		strings.Repeat("x", session.MaxTopicLen+1):     false,
		"$" + strings.Repeat("x", session.MaxTopicLen): false,
	} {
		if err := session.CheckSubscribable(topic); (err == nil) != ok {
			t.Errorf("CheckSubscribable(%.20q) = %v, want ok=%v", topic, err, ok)
		}
	}
}

func TestPermitCheckSend(t *testing.T) {
	g := session.NewPermit([]string{"chat/*"})
	if err := g.CheckSend("chat/room", ""); err != nil {
		t.Error(err)
	}
	if err := g.CheckSend("", ""); err != nil {
		t.Errorf("no topic (a user or device target): %v", err)
	}
	if err := g.CheckSend("", "chat/label"); err != nil {
		t.Error(err)
	}
	for _, tc := range [][2]string{{"news", ""}, {"", "news"}, {"chat/x", "alerts"}} {
		if err := g.CheckSend(tc[0], tc[1]); !errors.Is(err, session.ErrForbidden) {
			t.Errorf("CheckSend(%q, %q) = %v, want ErrForbidden", tc[0], tc[1], err)
		}
	}
}

func TestNilPermitAllowsAll(t *testing.T) {
	var p *session.Permit
	if !p.Allows("$presence") || p.CheckSend("a", "b") != nil || p.Patterns() != nil {
		t.Error("the nil Permit refuses something")
	}
	if none := session.NewPermit(nil); none.Allows("a") || none.CheckSend("", "") != nil {
		t.Error("an empty Permit allows a topic, or refuses a message without one")
	}
}

func TestPatterns(t *testing.T) {
	for topic, want := range map[string]bool{"*": true, "**": true, "a/*": true, "a/b/**": true, "a": false, "a*": false, "a/b*": false, "*/a": false, "a/***": false} {
		if got := session.IsPattern(topic); got != want {
			t.Errorf("IsPattern(%q) = %v", topic, got)
		}
	}
	for topic, ok := range map[string]bool{"*": true, "**": true, "a/*": true, "a/b/**": true, "a": true, "$presence": true,
		"a*": false, "a b/*": false, "$x/*": false, "*/a": false, "a/***": false} {
		if err := session.CheckPattern(topic); (err == nil) != ok {
			t.Errorf("CheckPattern(%q) = %v", topic, err)
		}
	}
	var got []string
	session.MatchingPatterns("a/b/c", func(p string) { got = append(got, p) })
	if want := []string{"a/b/*", "a/b/**", "a/**", "**"}; !slices.Equal(got, want) {
		t.Errorf("MatchingPatterns(a/b/c) = %v, want %v", got, want)
	}
	got = nil
	session.MatchingPatterns("a", func(p string) { got = append(got, p) })
	if want := []string{"*", "**"}; !slices.Equal(got, want) {
		t.Errorf("MatchingPatterns(a) = %v, want %v", got, want)
	}
	got = nil
	session.MatchingPatterns("$presence", func(p string) { got = append(got, p) })
	if len(got) != 0 {
		t.Errorf("MatchingPatterns($presence) = %v, want none", got)
	}
	if !session.Matches([]string{"x", "a/**"}, "a/b/c") || session.Matches([]string{"a/*"}, "a/b/c") || !session.Matches([]string{"t"}, "t") {
		t.Error("Matches")
	}
}

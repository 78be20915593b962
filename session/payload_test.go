package session_test

import (
	"errors"
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

package session_test

import (
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

package wire_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// checkAccepted asserts the invariants of every accepted connect payload.
func checkAccepted(t *testing.T, r session.Request) {
	t.Helper()
	if !session.ValidID(r.DeviceID) {
		t.Fatalf("accepted deviceId %q", r.DeviceID)
	}
	if r.UserID != "" && !session.ValidID(r.UserID) {
		t.Fatalf("accepted userId %q", r.UserID)
	}
	if r.Topics == nil || len(r.Topics) > session.MaxTopics {
		t.Fatalf("accepted topics %v", r.Topics)
	}
	for i, topic := range r.Topics {
		if err := session.CheckSubscribable(topic); err != nil {
			t.Fatalf("accepted topic %q: %v", topic, err)
		}
		if slices.Contains(r.Topics[:i], topic) {
			t.Fatalf("topic %q not deduplicated", topic)
		}
	}
	if r.Meta != nil {
		var obj map[string]any
		if len(r.Meta) > session.MaxMetaBytes || json.Unmarshal(r.Meta, &obj) != nil || obj == nil {
			t.Fatalf("accepted meta %s", r.Meta)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, r.Meta); err != nil || buf.String() != string(r.Meta) {
			t.Fatalf("meta %s not compact", r.Meta)
		}
	}
}

func FuzzParseConnectJSON(f *testing.F) {
	for _, s := range []string{
		`{"deviceId":"lamp-42","userId":"alice","topics":["home/kitchen","$presence"],"meta":{"fw":"1.2"}}`,
		`{"deviceId":"d","topics":["a","a"]}`, `{"deviceId":"d","meta":null}`, `{"deviceId":"d"}}`,
		`{"deviceId":"d","topics":["$x"]}`, ``, `null`, `[]`, `{"deviceId":"\u00e4"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := wire.ParseConnectJSON(body); err == nil {
			checkAccepted(t, r)
		}
	})
}

func FuzzParseConnectForm(f *testing.F) {
	for _, s := range []string{
		"deviceId=d&userId=u&topics=a,b&topics=c&meta=%7B%7D", "deviceId=d&topics=%24presence",
		"deviceId=%zz", "deviceId=d;x", "topics=,,,&deviceId=d", "deviceId=d&meta=null",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := wire.ParseConnectForm(body); err == nil {
			checkAccepted(t, r)
		}
	})
}

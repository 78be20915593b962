package bayeux_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/bayeux"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// bayeuxError is a Bayeux error string: a code, arguments, a message.
var bayeuxError = regexp.MustCompile(`^\d{3}:[^:]*:.+`)

// FuzzHandle drives the Bayeux server with hostile requests ("CID" in a
// body stands for a real client's id, whose session holds messages) and
// checks the contract: an answer within a bound, 200 or 400, a JSON array
// of replies each with a channel, every failure a Bayeux error string
// whose code is not a 5xx but 503, and never a panic.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"ext":{"ack":true,"deviceId":"x"}}]`,
		`[{"channel":"/meta/connect","clientId":"CID","connectionType":"long-polling","ext":{"ack":1}}]`,
		`[{"channel":"/meta/subscribe","clientId":"CID","subscription":["/a/*","/b/**","/$presence"]},{"channel":"/a/b","clientId":"CID","data":{"x":[1,2]}}]`,
		`[{"channel":"/meta/unsubscribe","clientId":"CID","subscription":"/t"},{"channel":"/meta/disconnect","clientId":"CID"}]`,
		`{"channel":"/service/x","clientId":"CID","data":null,"id":5}`,
		`[{"channel":"/meta/connect","clientId":"CID","advice":{"timeout":-5},"ext":{"ack":1e300}},{"channel":"/meta/connect"}]`,
		`[1,"x",null,{},{"channel":7},{"channel":"/a","id":{}}]`,
	} {
		f.Add(seed)
	}
	hub := poll.NewHub(poll.Config{MaxMailbox: 20})
	f.Cleanup(hub.Close)
	srv := bayeux.New(hub, bayeux.Config{Timeout: time.Millisecond, MaxTimeout: time.Millisecond})
	f.Fuzz(func(t *testing.T, body string) {
		s, err := hub.Connect(session.Request{DeviceID: "fuzz", Topics: []string{"t"}})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, _ = hub.Publish(poll.Push{To: poll.Target{Topic: "t"}, Topic: "t", Data: json.RawMessage(`{"n":1}`)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		status, out := srv.Handle(ctx, []byte(strings.ReplaceAll(body, "CID", s.ID)), &edge{})
		if ctx.Err() != nil {
			t.Fatalf("no answer within %v", bound)
		}
		if status != 200 && status != 400 {
			t.Fatalf("status %d", status)
		}
		var replies []map[string]any
		if err := json.Unmarshal(out, &replies); err != nil || len(replies) == 0 {
			t.Fatalf("answer %q is not a non-empty JSON array", out)
		}
		for _, r := range replies {
			if ch, ok := r["channel"].(string); !ok || ch == "" {
				t.Fatalf("a reply without a channel: %s", out)
			}
			if r["successful"] == false {
				e, _ := r["error"].(string)
				if !bayeuxError.MatchString(e) || (e[0] == '5' && !strings.HasPrefix(e, "503:")) {
					t.Fatalf("error %q in %s", e, out)
				}
			}
		}
	})
}

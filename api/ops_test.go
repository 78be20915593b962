package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
)

func TestStats(t *testing.T) {
	keys := api.Config{PublishKeys: []string{"secret"}}
	wantBody := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		wantJSONType(t, rec)
		var got map[string]int
		var named struct{ Store string }
		if err := json.Unmarshal(rec.Body.Bytes(), &named); err != nil || named.Store != "memory" {
			t.Fatalf("stats body %s: store %q, %v", rec.Body, named.Store, err)
		}
		var all map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil {
			t.Fatalf("stats body %s: %v", rec.Body, err)
		}
		delete(all, "store")
		b, _ := json.Marshal(all)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("stats body %s: %v", rec.Body, err)
		}
		for k, v := range map[string]int{"sessions": 2, "parked": 0, "devices": 2, "users": 1, "offlineMessages": 1, "uptimeSeconds": -1} {
			if n, ok := got[k]; !ok || (v >= 0 && n != v) {
				t.Errorf("stats %q = %d (present %v), want %d; body %s", k, n, ok, v, rec.Body)
			}
		}
	}
	setup := func(t *testing.T, s *server) {
		s.connect(t, "a", "alice")
		s.connect(t, "b", "alice")
		s.push(t, `{"to":{"deviceId":"c"},"data":1}`)
	}
	cases := []httpCase{
		{name: "loopback", setup: setup, method: "GET", target: "/stats", status: 200, check: wantBody},
		{name: "remote without key", setup: setup, method: "GET", target: "/stats", opts: []reqOpt{remote("203.0.113.5:1234")}, status: 403, code: "forbidden"},
		{name: "key missing", api: keys, method: "GET", target: "/stats", status: 401, code: "unauthorized"},
		{name: "key wrong", api: keys, method: "GET", target: "/stats", opts: []reqOpt{bearer("nope")}, status: 401, code: "unauthorized"},
		{name: "key right", api: keys, setup: func(t *testing.T, s *server) {
			s.connect(t, "a", "alice")
			s.connect(t, "b", "alice")
			s.push(t, `{"to":{"deviceId":"c"},"data":1}`, bearer("secret"))
		}, method: "GET", target: "/stats", opts: []reqOpt{remote("203.0.113.5:1234"), bearer("secret")}, status: 200, check: wantBody},
	}
	runCases(t, cases)
}

func TestPresenceList(t *testing.T) {
	type entry struct {
		SessionID   string          `json:"sessionId"`
		DeviceID    string          `json:"deviceId"`
		UserID      string          `json:"userId"`
		Topics      []string        `json:"topics"`
		Meta        json.RawMessage `json:"meta"`
		ConnectedAt string          `json:"connectedAt"`
	}
	list := func(wantDevices ...string) func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		return func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
			t.Helper()
			wantJSONType(t, rec)
			var body struct{ Sessions []entry }
			decodeStrict(t, rec.Body.Bytes(), &body)
			if body.Sessions == nil {
				t.Fatalf("sessions missing or null: %s", rec.Body)
			}
			got := []string{}
			for _, e := range body.Sessions {
				got = append(got, e.DeviceID)
				if _, err := s.hub.Session(e.SessionID); err != nil || !sentAtRE.MatchString(e.ConnectedAt) || e.Topics == nil {
					t.Errorf("entry %+v", e)
				}
			}
			if !slices.Equal(got, wantDevices) {
				t.Errorf("devices %v, want %v", got, wantDevices)
			}
		}
	}
	setup := func(t *testing.T, s *server) {
		s.connect(t, "a", "alice", "x")
		s.connect(t, "b", "alice")
		s.connect(t, "c", "")
	}
	cases := []httpCase{
		{name: "by user", setup: setup, method: "GET", target: "/presence?userId=alice", status: 200, check: list("a", "b")},
		{name: "by device", setup: setup, method: "GET", target: "/presence?deviceId=c", status: 200, check: list("c")},
		{name: "unknown user", setup: setup, method: "GET", target: "/presence?userId=bob", status: 200, check: list()},
		{name: "unknown device", setup: setup, method: "GET", target: "/presence?deviceId=z", status: 200, check: list()},
		{name: "neither", setup: setup, method: "GET", target: "/presence", status: 400, code: "invalid_payload"},
		{name: "both", setup: setup, method: "GET", target: "/presence?userId=alice&deviceId=a", status: 400, code: "invalid_payload"},
		{name: "remote without key", setup: setup, method: "GET", target: "/presence?userId=alice", opts: []reqOpt{remote("203.0.113.5:1234")}, status: 403, code: "forbidden"},
		{name: "key missing", api: api.Config{PublishKeys: []string{"k"}}, method: "GET", target: "/presence?userId=alice", status: 401, code: "unauthorized"},
	}
	runCases(t, cases)
}

func TestMaxSessions(t *testing.T) {
	s := newServer(t, poll.Config{MaxSessions: 2}, api.Config{})
	s.connect(t, "a", "")
	s.connect(t, "b", "")
	rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"c"}`)
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
	s.connect(t, "a", "") // a replacement is not a new session
	wantStats(t, s, poll.Stats{Sessions: 2, Devices: 2})
}

// presenceEvents returns the $presence events in the mailbox of sid as
// "event/deviceId/reason" and acknowledges them.
func presenceEvents(t *testing.T, s *server, sid string, cursor *string) []string {
	t.Helper()
	out := []string{}
	pr := s.messages(t, sid, *cursor)
	for _, m := range pr.Messages {
		if m.Topic != "$presence" {
			continue
		}
		var ev struct{ Event, UserID, DeviceID, Reason string }
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("presence data %s: %v", m.Data, err)
		}
		out = append(out, ev.Event+"/"+ev.UserID+"/"+ev.DeviceID+"/"+ev.Reason)
	}
	if len(pr.Messages) > 0 {
		*cursor = mustJSON(pr.Cursor)
	}
	return out
}

func TestPresenceEvents(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	watcher := s.connect(t, "watcher", "", "$presence")
	cursor := ""
	if got, want := presenceEvents(t, s, watcher, &cursor), []string{"online//watcher/connect"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	d := s.connect(t, "d", "alice")
	s.connect(t, "d", "alice")
	s.connect(t, "other", "", "news") // not subscribed: still announced
	if rec := s.do(t, "DELETE", "/session?sessionId="+d, "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("DELETE of the replaced session: %d", rec.Code)
	}
	rec := s.do(t, "DELETE", "/session?sessionId="+s.connect(t, "e", "bob"), "", "")
	if rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	want := []string{
		"online/alice/d/connect",
		"offline/alice/d/replaced", "online/alice/d/connect",
		"online//other/connect",
		"online/bob/e/connect", "offline/bob/e/disconnect",
	}
	if got := presenceEvents(t, s, watcher, &cursor); !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// TestExpiry runs the HTTP edge in a synctest bubble: an idle session
// expires at Cleanup (404 afterwards, "expired" presence event), a session
// with a parked poll does not.
func TestExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Second
		s := newServer(t, poll.Config{SessionTTL: ttl}, api.Config{})
		watcher := s.connect(t, "watcher", "", "$presence")
		idle := s.connect(t, "idle", "alice")
		busy := s.connect(t, "busy", "")
		s.pushTo(t, idle, `"kept offline"`)
		done := make(chan *httptest.ResponseRecorder, 1)
		r := newRequest(http.MethodGet, "/data?timeout=60&sessionId="+busy, "", "")
		go func() { done <- s.serve(r) }()
		synctest.Wait()
		if got := s.hub.Stats().Parked; got != 1 {
			t.Fatalf("parked %d, want 1", got)
		}

		time.Sleep(ttl - time.Second)
		cursor := ""
		presenceEvents(t, s, watcher, &cursor) // drain; polling keeps the watcher alive
		s.hub.Cleanup(time.Now())
		if _, err := s.hub.Session(idle); err != nil {
			t.Fatal("expired before its TTL")
		}
		time.Sleep(2 * time.Second)
		presenceEvents(t, s, watcher, &cursor)
		s.hub.Cleanup(time.Now())

		wantError(t, s.pollNow(t, idle, ""), http.StatusNotFound, "session_not_found")
		wantError(t, s.do(t, "POST", "/send?sessionId="+idle, ctJSON, `{"to":{"userId":"alice"}}`), http.StatusNotFound, "session_not_found")
		wantError(t, s.do(t, "DELETE", "/session?sessionId="+idle, "", ""), http.StatusNotFound, "session_not_found")
		if got, want := presenceEvents(t, s, watcher, &cursor), []string{"offline/alice/idle/expired"}; !slices.Equal(got, want) {
			t.Errorf("presence %v, want %v", got, want)
		}
		// The parked session survived and still gets messages.
		s.pushTo(t, busy, `"still here"`)
		wantDatas(t, "busy", decodePoll(t, <-done), `"still here"`)
		// The idle session's unacknowledged message waits for the device.
		wantStats(t, s, poll.Stats{Sessions: 2, Devices: 2, OfflineMessages: 1, Backlog: 2})
		wantDatas(t, "next session of idle", s.messages(t, s.connect(t, "idle", ""), ""), `"kept offline"`)
	})
}

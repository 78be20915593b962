package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// noSessions checks that a rejected connect created nothing.
func noSessions(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
	t.Helper()
	wantStats(t, s, poll.Stats{})
}

// padJSON returns a valid connect body of exactly n bytes (trailing
// whitespace).
func padJSON(n int) string {
	b := `{"deviceId":"d"}`
	return b + strings.Repeat(" ", n-len(b))
}

func TestConnect(t *testing.T) {
	wantConnect := func(want connectResponse) func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		return func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
			t.Helper()
			wantJSONType(t, rec)
			var got connectResponse
			decodeStrict(t, rec.Body.Bytes(), &got)
			if len(got.SessionID) < 22 {
				t.Errorf("sessionId %q is too short for 128 bits", got.SessionID)
			}
			if got.Cursor == nil || *got.Cursor != 0 {
				t.Errorf("cursor %v, want 0", got.Cursor)
			}
			if got.PollTimeout == nil || *got.PollTimeout != *want.PollTimeout {
				t.Errorf("pollTimeout %v, want %d", got.PollTimeout, *want.PollTimeout)
			}
			if got.SessionTTL == nil || *got.SessionTTL != *want.SessionTTL {
				t.Errorf("sessionTTL %v, want %d", got.SessionTTL, *want.SessionTTL)
			}
			if got.DeviceID != want.DeviceID || got.UserID != want.UserID ||
				!slices.Equal(got.Topics, want.Topics) || got.Topics == nil || string(got.Meta) != string(want.Meta) {
				t.Errorf("got %+v (meta %s), want %+v (meta %s)", got, got.Meta, want, want.Meta)
			}
			if _, err := s.hub.Session(got.SessionID); err != nil {
				t.Errorf("the new session is not online: %v", err)
			}
		}
	}
	i64 := func(n int64) *int64 { return &n }
	cases := []httpCase{
		{name: "json", method: "POST", target: "/connect", ctype: ctJSON,
			body:   `{"deviceId":"lamp-42","userId":"alice","topics":["home/kitchen","home/kitchen","$presence"],"meta":{"fw": "1.2"}}`,
			status: 201, check: wantConnect(connectResponse{DeviceID: "lamp-42", UserID: "alice", Topics: []string{"home/kitchen", "$presence"},
				Meta: json.RawMessage(`{"fw":"1.2"}`), PollTimeout: i64(30), SessionTTL: i64(300)})},
		{name: "json with charset, configured timeouts", poll: poll.Config{SessionTTL: 90 * time.Second}, api: api.Config{PollTimeout: 25 * time.Second},
			method: "POST", target: "/connect", ctype: "Application/JSON; charset=utf-8", body: `{"deviceId":"d"}`,
			status: 201, check: wantConnect(connectResponse{DeviceID: "d", Topics: []string{}, PollTimeout: i64(25), SessionTTL: i64(90)})},
		{name: "form", method: "POST", target: "/connect", ctype: ctForm,
			body:   "deviceId=lamp-42&userId=alice&topics=a,b&topics=c&topics=a&meta=%7B%22fw%22%3A1%7D",
			status: 201, check: wantConnect(connectResponse{DeviceID: "lamp-42", UserID: "alice", Topics: []string{"a", "b", "c"},
				Meta: json.RawMessage(`{"fw":1}`), PollTimeout: i64(30), SessionTTL: i64(300)})},
		{name: "form with charset", method: "POST", target: "/connect", ctype: ctForm + "; charset=UTF-8", body: "deviceId=d",
			status: 201, check: wantConnect(connectResponse{DeviceID: "d", Topics: []string{}, PollTimeout: i64(30), SessionTTL: i64(300)})},
		{name: "body of exactly 64 KiB", method: "POST", target: "/connect", ctype: ctJSON, body: padJSON(session.MaxBodyBytes),
			status: 201, check: wantConnect(connectResponse{DeviceID: "d", Topics: []string{}, PollTimeout: i64(30), SessionTTL: i64(300)})},
		{name: "same device replaces", setup: withSession, method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d"}`,
			status: 201, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				var got connectResponse
				decodeStrict(t, rec.Body.Bytes(), &got)
				if got.SessionID == s.sid {
					t.Error("reconnect returned the same sessionId")
				}
				if _, err := s.hub.Session(s.sid); err == nil {
					t.Error("the replaced session is still online")
				}
				wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1})
			}},

		// 400 invalid_payload
		{name: "empty body", method: "POST", target: "/connect", ctype: ctJSON, status: 400, code: "invalid_payload", check: noSessions},
		{name: "empty object", method: "POST", target: "/connect", ctype: ctJSON, body: `{}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "malformed JSON", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "bad deviceId", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"a b"}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "deviceId too long", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"` + strings.Repeat("x", 129) + `"}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "bad userId", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d","userId":"a/b"}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "unknown system topic", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d","topics":["$admin"]}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "65 topics", method: "POST", target: "/connect", ctype: ctJSON, body: mustJSON(map[string]any{"deviceId": "d", "topics": topicNames(65)}), status: 400, code: "invalid_payload", check: noSessions},
		{name: "meta not an object", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d","meta":[1]}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "meta over 4 KiB", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d","meta":{"k":"` + strings.Repeat("x", 4096) + `"}}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "unknown field", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d","from":"x"}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "wrong type", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d","topics":"a"}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "trailing data", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d"} {}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "trailing brace", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d"}}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "form body as JSON", method: "POST", target: "/connect", ctype: ctJSON, body: `deviceId=d`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "JSON body as form", method: "POST", target: "/connect", ctype: ctForm, body: `{"deviceId":"d"}`, status: 400, code: "invalid_payload", check: noSessions},
		{name: "form unknown field", method: "POST", target: "/connect", ctype: ctForm, body: "deviceId=d&color=red", status: 400, code: "invalid_payload", check: noSessions},
		{name: "form bad topic", method: "POST", target: "/connect", ctype: ctForm, body: "deviceId=d&topics=a,$x", status: 400, code: "invalid_payload", check: noSessions},
		{name: "form malformed", method: "POST", target: "/connect", ctype: ctForm, body: "deviceId=%zz", status: 400, code: "invalid_payload", check: noSessions},

		// 415
		{name: "no content type", method: "POST", target: "/connect", body: `{"deviceId":"d"}`, status: 415, code: "unsupported_media_type", check: noSessions},
		{name: "text/plain", method: "POST", target: "/connect", ctype: "text/plain", body: `{"deviceId":"d"}`, status: 415, code: "unsupported_media_type", check: noSessions},
		{name: "multipart", method: "POST", target: "/connect", ctype: "multipart/form-data; boundary=x", body: "--x--", status: 415, code: "unsupported_media_type", check: noSessions},
		{name: "malformed content type", method: "POST", target: "/connect", ctype: "application/", body: `{"deviceId":"d"}`, status: 415, code: "unsupported_media_type", check: noSessions},

		// 413
		{name: "body over 64 KiB", method: "POST", target: "/connect", ctype: ctJSON, body: padJSON(session.MaxBodyBytes + 1), status: 413, code: "payload_too_large", check: noSessions},
		{name: "chunked body over 64 KiB", method: "POST", target: "/connect", ctype: ctJSON, body: padJSON(session.MaxBodyBytes + 1), opts: []reqOpt{chunked()},
			status: 413, code: "payload_too_large", check: noSessions},
		{name: "form body over 64 KiB", method: "POST", target: "/connect", ctype: ctForm, body: "deviceId=d&meta=" + strings.Repeat("x", session.MaxBodyBytes), status: 413, code: "payload_too_large", check: noSessions},

		// 503
		{name: "after close", setup: func(t *testing.T, s *server) { s.hub.Close() }, method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"d"}`,
			status: 503, code: "unavailable", check: noSessions},
	}
	runCases(t, cases)
}

func topicNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("t%d", i)
	}
	return out
}

func TestData(t *testing.T) {
	noStore := func(t *testing.T, _ *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", got)
		}
	}
	wantMsgs := func(wantSeqs []uint64, wantData ...string) func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		return func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
			t.Helper()
			noStore(t, s, rec)
			pr := decodePoll(t, rec)
			wantDatas(t, "poll", pr, wantData...)
			if got := seqs(pr.Messages); !slices.Equal(got, wantSeqs) {
				t.Errorf("seqs %v, want %v", got, wantSeqs)
			}
		}
	}
	empty := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		noStore(t, s, rec)
		decodePoll(t, rec)
	}
	stillThere := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		noStore(t, s, rec)
		wantDatas(t, "after the rejected poll", s.messages(t, s.sid, ""), "1", "2")
	}
	disconnected := func(t *testing.T, s *server) {
		withSession(t, s)
		if rec := s.do(t, "DELETE", "/session?sessionId="+s.sid, "", ""); rec.Code != 204 {
			t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
		}
	}
	replaced := func(t *testing.T, s *server) {
		withSession(t, s)
		s.connect(t, "d", "u")
	}
	closed := func(t *testing.T, s *server) {
		withSession(t, s)
		s.hub.Close()
	}
	cases := []httpCase{
		{name: "204 empty mailbox", setup: withSession, method: "GET", target: "/data?timeout=0&sessionId={sid}", status: 204, check: empty},
		{name: "200 pending", setup: withMessages(2), method: "GET", target: "/data?timeout=0&sessionId={sid}", status: 200, check: wantMsgs([]uint64{1, 2}, "1", "2")},
		{name: "200 pending, no timeout parameter", setup: withMessages(1), method: "GET", target: "/data?sessionId={sid}", status: 200, check: wantMsgs([]uint64{1}, "1")},
		{name: "cursor 0 acknowledges nothing", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=0&sessionId={sid}", status: 200, check: wantMsgs([]uint64{1, 2}, "1", "2")},
		{name: "cursor acknowledges", setup: withMessages(3), method: "GET", target: "/data?timeout=0&cursor=2&sessionId={sid}", status: 200, check: wantMsgs([]uint64{3}, "3")},
		{name: "cursor acknowledges all", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=2&sessionId={sid}", status: 204, check: empty},
		{name: "at most 100 a response", setup: withMessages(101), method: "GET", target: "/data?timeout=0&sessionId={sid}", status: 200,
			check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				if pr := decodePoll(t, rec); len(pr.Messages) != 100 || pr.Cursor != 100 {
					t.Errorf("%d messages, cursor %d; want 100, 100", len(pr.Messages), pr.Cursor)
				}
				wantDatas(t, "next poll", s.messages(t, s.sid, "100"), "101")
			}},
		{name: "default hold", setup: withSession, api: api.Config{PollTimeout: time.Millisecond}, method: "GET", target: "/data?sessionId={sid}", status: 204, check: empty},
		{name: "hold capped at the maximum", setup: withSession, api: api.Config{MaxPollTimeout: time.Millisecond}, method: "GET", target: "/data?timeout=86400&sessionId={sid}", status: 204, check: empty},
		{name: "fractional timeout", setup: withSession, method: "GET", target: "/data?timeout=0.001&sessionId={sid}", status: 204, check: empty},

		{name: "missing sessionId", method: "GET", target: "/data?timeout=0", status: 400, code: "missing_session_id", check: noStore},
		{name: "empty sessionId", method: "GET", target: "/data?timeout=0&sessionId=", status: 400, code: "missing_session_id", check: noStore},
		{name: "cursor not an integer", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=abc&sessionId={sid}", status: 400, code: "invalid_cursor", check: stillThere},
		{name: "cursor negative", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=-1&sessionId={sid}", status: 400, code: "invalid_cursor", check: stillThere},
		{name: "cursor fractional", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=1.5&sessionId={sid}", status: 400, code: "invalid_cursor", check: stillThere},
		{name: "cursor overflows", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=18446744073709551616&sessionId={sid}", status: 400, code: "invalid_cursor", check: stillThere},
		{name: "cursor beyond newest", setup: withMessages(2), method: "GET", target: "/data?timeout=0&cursor=3&sessionId={sid}", status: 400, code: "invalid_cursor", check: stillThere},
		{name: "cursor on empty mailbox", setup: withSession, method: "GET", target: "/data?timeout=0&cursor=1&sessionId={sid}", status: 400, code: "invalid_cursor", check: noStore},
		{name: "timeout negative", setup: withMessages(2), method: "GET", target: "/data?timeout=-1&sessionId={sid}", status: 400, code: "invalid_payload", check: stillThere},
		{name: "timeout not a number", setup: withMessages(2), method: "GET", target: "/data?timeout=soon&sessionId={sid}", status: 400, code: "invalid_payload", check: stillThere},
		{name: "timeout NaN", setup: withMessages(2), method: "GET", target: "/data?timeout=NaN&sessionId={sid}", status: 400, code: "invalid_payload", check: stillThere},
		{name: "unknown session", method: "GET", target: "/data?timeout=0&sessionId=nope", status: 404, code: "session_not_found", check: noStore},
		{name: "disconnected session", setup: disconnected, method: "GET", target: "/data?timeout=0&sessionId={sid}", status: 404, code: "session_not_found"},
		{name: "replaced session", setup: replaced, method: "GET", target: "/data?timeout=0&sessionId={sid}", status: 404, code: "session_not_found"},
		{name: "after close", setup: closed, method: "GET", target: "/data?timeout=0&sessionId={sid}", status: 503, code: "unavailable"},
	}
	runCases(t, cases)
}

func TestPush(t *testing.T) {
	wantResult := func(want result) func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		return func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
			t.Helper()
			wantJSONType(t, rec)
			var got result
			decodeStrict(t, rec.Body.Bytes(), &got)
			if !strings.HasPrefix(got.ID, "m_") {
				t.Errorf("id %q does not start with m_", got.ID)
			}
			got.ID = ""
			if got != want {
				t.Errorf("result %+v, want %+v", got, want)
			}
		}
	}
	nothingDelivered := func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
		t.Helper()
		wantDatas(t, "mailbox", s.messages(t, s.sid, ""))
		wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1, Users: 1})
	}
	threeSessions := func(t *testing.T, s *server) {
		s.sid = s.connect(t, "phone", "alice", "news")
		s.connect(t, "laptop", "alice")
		s.connect(t, "lamp", "", "news")
	}
	// fullSession: a session whose mailbox (limit 2) is full.
	fullSession := func(t *testing.T, s *server) {
		withMessages(2)(t, s)
	}
	// userHalfFull: alice has two sessions, one of them full (limit 2).
	userHalfFull := func(t *testing.T, s *server) {
		s.sid = s.connect(t, "phone", "alice", "news")
		s.connect(t, "laptop", "alice", "news")
		s.pushTo(t, s.sid, "1")
		s.pushTo(t, s.sid, "2")
	}
	full := poll.Config{MaxMailbox: 2}
	bigData := `"` + strings.Repeat("x", poll.MaxDataBytes-2) + `"` // exactly 64 KiB of JSON
	cases := []httpCase{
		{name: "to session", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"},"data":{"a":1}}`,
			status: 202, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				wantResult(result{Delivered: 1})(t, s, rec)
				var res result
				decodeStrict(t, rec.Body.Bytes(), &res)
				pr := s.messages(t, s.sid, "")
				wantDatas(t, "mailbox", pr, `{"a":1}`)
				if m := pr.Messages[0]; m.ID != res.ID || m.Topic != "" || m.From != "" {
					t.Errorf("message %+v: want id %s, no topic, no from", m, res.ID)
				}
			}},
		{name: "to online device", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"deviceId":"d"},"topic":"alerts","data":1}`,
			status: 202, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				wantResult(result{Delivered: 1})(t, s, rec)
				if pr := s.messages(t, s.sid, ""); pr.Messages[0].Topic != "alerts" {
					t.Errorf("topic %q, want alerts", pr.Messages[0].Topic)
				}
			}},
		{name: "to offline device is stored", method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"deviceId":"d"},"data":1,"ttl":60}`,
			status: 202, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				wantResult(result{Stored: 1})(t, s, rec)
				wantStats(t, s, poll.Stats{OfflineMessages: 1})
				sid := s.connect(t, "d", "")
				wantDatas(t, "after connect", s.messages(t, sid, ""), "1")
			}},
		{name: "to offline user is stored", method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"userId":"alice"},"data":1}`,
			status: 202, check: wantResult(result{Stored: 1})},
		{name: "to user", setup: threeSessions, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"userId":"alice"},"data":1}`,
			status: 202, check: wantResult(result{Delivered: 2})},
		{name: "to topic", setup: threeSessions, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"topic":"news"},"data":1}`,
			status: 202, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				wantResult(result{Delivered: 2})(t, s, rec)
				if pr := s.messages(t, s.sid, ""); pr.Messages[0].Topic != "news" {
					t.Errorf("topic %q, want the target topic news", pr.Messages[0].Topic)
				}
			}},
		{name: "to topic nobody follows", setup: threeSessions, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"topic":"other"}}`,
			status: 202, check: wantResult(result{})},
		{name: "broadcast without to", setup: threeSessions, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":1}`, status: 202, check: wantResult(result{Delivered: 3})},
		{name: "broadcast with empty to", setup: threeSessions, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{},"data":1}`, status: 202, check: wantResult(result{Delivered: 3})},
		{name: "null to is refused, not a broadcast", setup: threeSessions, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":null,"data":1}`, status: 400, code: "invalid_payload"},
		{name: "data absent is null", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"}}`,
			status: 202, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				wantDatas(t, "mailbox", s.messages(t, s.sid, ""), "null")
			}},
		{name: "data of exactly 64 KiB", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"},"data":` + bigData + `}`,
			status: 202, check: wantResult(result{Delivered: 1})},
		{name: "publisher may use system topics", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"},"topic":"$presence"}`,
			status: 202, check: wantResult(result{Delivered: 1})},

		// fan-out rejected
		{name: "user fan-out counts rejected", poll: full, setup: userHalfFull, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"userId":"alice"},"data":3}`,
			status: 202, check: wantResult(result{Delivered: 1, Rejected: 1})},
		{name: "topic fan-out counts rejected", poll: full, setup: userHalfFull, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"topic":"news"},"data":3}`,
			status: 202, check: wantResult(result{Delivered: 1, Rejected: 1})},
		{name: "broadcast counts rejected", poll: full, setup: userHalfFull, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":3}`,
			status: 202, check: wantResult(result{Delivered: 1, Rejected: 1})},

		// 400
		{name: "empty body", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "malformed", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "not an object", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `"hello"`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "trailing data", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":1} {"data":2}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "trailing brace", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":1}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "unknown field", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":1,"from":"x"}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "two targets", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"deviceId":"d","userId":"u"}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "unknown target field", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"group":"g"}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "to a string", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":"d"}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "bad deviceId", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"deviceId":"a b"}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "empty userId", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"userId":""}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "null userId", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"userId":null},"data":1}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "empty sessionId", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":""}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "bad target topic", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"topic":"a b"}}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "bad topic label", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"topic":"a b"}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "ttl zero", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"ttl":0}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "ttl negative", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"ttl":-5}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "ttl too long", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"ttl":2592001}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "ttl a string", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"ttl":"60"}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "ttl fractional", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"ttl":1.5}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "bad id", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"id":"a b"}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "id too long", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"id":"` + strings.Repeat("k", 129) + `"}`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "batch over 1000", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: "[" + strings.Repeat(`{},`, 1000) + `{}]`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "batch malformed", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `[{"data":1},`, status: 400, code: "invalid_payload", check: nothingDelivered},
		{name: "batch item not an object", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `[{"data":1},2]`, status: 400, code: "invalid_payload", check: nothingDelivered},

		// 413
		{name: "data over 64 KiB", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"},"data":"` + strings.Repeat("x", poll.MaxDataBytes-1) + `"}`,
			status: 413, code: "payload_too_large", check: nothingDelivered},
		{name: "body over the limit", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":"` + strings.Repeat("x", api.MaxPushBody) + `"}`,
			status: 413, code: "payload_too_large", check: nothingDelivered},

		// 415
		{name: "no content type", setup: withSession, method: "POST", target: "/push", body: `{"data":1}`, status: 415, code: "unsupported_media_type", check: nothingDelivered},
		{name: "form content type", setup: withSession, method: "POST", target: "/push", ctype: ctForm, body: `data=1`, status: 415, code: "unsupported_media_type", check: nothingDelivered},
		{name: "text/plain", setup: withSession, method: "POST", target: "/push", ctype: "text/plain", body: `{"data":1}`, status: 415, code: "unsupported_media_type", check: nothingDelivered},

		// 404, 429, 503
		{name: "unknown session", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"nope"},"data":1}`, status: 404, code: "session_not_found", check: nothingDelivered},
		{name: "full session", poll: full, setup: fullSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"},"data":3}`,
			status: 429, code: "mailbox_full", check: func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
				wantDatas(t, "mailbox", s.messages(t, s.sid, ""), "1", "2")
			}},
		{name: "full online device", poll: full, setup: fullSession, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"deviceId":"d"},"data":3}`,
			status: 429, code: "mailbox_full", check: func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
				wantDatas(t, "mailbox", s.messages(t, s.sid, ""), "1", "2")
			}},
		{name: "full offline device", poll: full, setup: func(t *testing.T, s *server) {
			s.push(t, `{"to":{"deviceId":"off"},"data":1}`)
			s.push(t, `{"to":{"deviceId":"off"},"data":2}`)
		}, method: "POST", target: "/push", ctype: ctJSON, body: `{"to":{"deviceId":"off"},"data":3}`,
			status: 429, code: "mailbox_full", check: func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
				wantStats(t, s, poll.Stats{OfflineMessages: 2})
			}},
		{name: "after close", setup: func(t *testing.T, s *server) { withSession(t, s); s.hub.Close() }, method: "POST", target: "/push", ctype: ctJSON, body: `{"data":1}`,
			status: 503, code: "unavailable"},
	}
	runCases(t, cases)
}

func TestPushAuth(t *testing.T) {
	keys := api.Config{PublishKeys: []string{"k1-secret", "k2-secret"}}
	delivered := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		wantDatas(t, "mailbox", s.messages(t, s.sid, ""), "1")
	}
	nothing := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		wantDatas(t, "mailbox", s.messages(t, s.sid, ""))
	}
	challenge := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("WWW-Authenticate %q, want a Bearer challenge", got)
		}
		nothing(t, s, rec)
	}
	body := `{"to":{"sessionId":"{sid}"},"data":1}`
	cases := []httpCase{
		{name: "no key, loopback v4", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, status: 202, check: delivered},
		{name: "no key, loopback v6", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("[::1]:40000")}, status: 202, check: delivered},
		{name: "no key, loopback 127.0.0.2", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("127.0.0.2:1")}, status: 202, check: delivered},
		{name: "no key, remote", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("203.0.113.5:1234")}, status: 403, code: "forbidden", check: nothing},
		{name: "no key, remote v6", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("[2001:db8::1]:1234")}, status: 403, code: "forbidden", check: nothing},
		{name: "no key, remote claiming loopback in X-Forwarded-For", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body,
			opts: []reqOpt{remote("203.0.113.5:1234"), header("X-Forwarded-For", "127.0.0.1"), header("X-Real-Ip", "127.0.0.1")}, status: 403, code: "forbidden", check: nothing},
		{name: "no key, remote with some bearer", setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body,
			opts: []reqOpt{remote("203.0.113.5:1234"), bearer("anything")}, status: 403, code: "forbidden", check: nothing},
		{name: "no key, remote, bad content type still 403", setup: withSession, method: "POST", target: "/push", ctype: "text/plain", body: body,
			opts: []reqOpt{remote("203.0.113.5:1234")}, status: 403, code: "forbidden", check: nothing},
		{name: "key, missing", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("203.0.113.5:1234")}, status: 401, code: "unauthorized", check: challenge},
		{name: "key, missing from loopback", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, status: 401, code: "unauthorized", check: challenge},
		{name: "key, wrong", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("203.0.113.5:1234"), bearer("k1-secreT")}, status: 401, code: "unauthorized", check: challenge},
		{name: "key, prefix of a key", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{bearer("k1")}, status: 401, code: "unauthorized", check: challenge},
		{name: "key, empty bearer", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{bearer("")}, status: 401, code: "unauthorized", check: challenge},
		{name: "key, not bearer", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{header("Authorization", "Basic k1-secret")}, status: 401, code: "unauthorized", check: challenge},
		{name: "key, bare key", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{header("Authorization", "k1-secret")}, status: 401, code: "unauthorized", check: challenge},
		{name: "key, right", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("203.0.113.5:1234"), bearer("k1-secret")}, status: 202, check: delivered},
		{name: "key, second key", api: keys, setup: withSession, method: "POST", target: "/push", ctype: ctJSON, body: body, opts: []reqOpt{remote("203.0.113.5:1234"), bearer("k2-secret")}, status: 202, check: delivered},
		{name: "key, right, checked before the body", api: keys, setup: withSession, method: "POST", target: "/push", ctype: "text/plain", body: body, opts: []reqOpt{bearer("nope")}, status: 401, code: "unauthorized", check: challenge},
		{name: "send needs no publish key", api: keys, setup: withSession, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"deviceId":"d"},"data":1}`,
			opts: []reqOpt{remote("203.0.113.5:1234")}, status: 202, check: delivered},
	}
	runCases(t, cases)
}

func TestSend(t *testing.T) {
	// alice/phone sends; bob/tv and lamp (no user) receive.
	setup := func(t *testing.T, s *server) {
		s.sid = s.connect(t, "phone", "alice", "chat")
		s.connect(t, "tv", "bob", "chat")
		s.connect(t, "lamp", "", "chat")
	}
	nothing := func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
		t.Helper()
		wantDatas(t, "sender's mailbox", s.messages(t, s.sid, ""))
	}
	cases := []httpCase{
		{name: "missing sessionId", setup: setup, method: "POST", target: "/send", ctype: ctJSON, body: `{"to":{"userId":"bob"}}`, status: 400, code: "missing_session_id"},
		{name: "empty sessionId", setup: setup, method: "POST", target: "/send?sessionId=", ctype: ctJSON, body: `{"to":{"userId":"bob"}}`, status: 400, code: "missing_session_id"},
		{name: "unknown sender", setup: setup, method: "POST", target: "/send?sessionId=nope", ctype: ctJSON, body: `{"to":{"userId":"bob"}}`, status: 404, code: "session_not_found"},
		{name: "no content type", setup: setup, method: "POST", target: "/send?sessionId={sid}", body: `{"to":{"userId":"bob"}}`, status: 415, code: "unsupported_media_type"},
		{name: "form", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctForm, body: `to=bob`, status: 415, code: "unsupported_media_type"},
		{name: "broadcast refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "empty to refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{},"data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "null to refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":null,"data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "null target refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"userId":null},"data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "sessionId target refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"sessionId":"{sid}"},"data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "system topic target refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"topic":"$presence"},"data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "system topic label refused", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"userId":"bob"},"topic":"$heartbeat","data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "from cannot be chosen", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"userId":"alice"},"from":"bob/tv","data":1}`, status: 400, code: "invalid_payload", check: nothing},
		{name: "data too large", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"userId":"alice"},"data":"` + strings.Repeat("x", poll.MaxDataBytes) + `"}`, status: 413, code: "payload_too_large", check: nothing},
		{name: "to full device", poll: poll.Config{MaxMailbox: 1}, setup: func(t *testing.T, s *server) {
			setup(t, s)
			s.push(t, `{"to":{"deviceId":"tv"},"data":0}`)
		}, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"deviceId":"tv"},"data":1}`, status: 429, code: "mailbox_full"},
		{name: "after close", setup: func(t *testing.T, s *server) { setup(t, s); s.hub.Close() }, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON,
			body: `{"to":{"userId":"bob"},"data":1}`, status: 503, code: "unavailable"},
		{name: "to own user", setup: setup, method: "POST", target: "/send?sessionId={sid}", ctype: ctJSON, body: `{"to":{"userId":"alice"},"data":1}`,
			status: 202, check: func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
				pr := s.messages(t, s.sid, "")
				wantDatas(t, "own mailbox", pr, "1")
				if pr.Messages[0].From != "alice/phone" {
					t.Errorf("from %q, want alice/phone", pr.Messages[0].From)
				}
			}},
	}
	runCases(t, cases)
}

// TestSendStampsFrom checks what recipients see of a client send.
func TestSendStampsFrom(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	alice := s.connect(t, "phone", "alice", "chat")
	bob := s.connect(t, "tv", "bob", "chat")
	lamp := s.connect(t, "lamp", "", "chat")

	send := func(sid, body string) result {
		t.Helper()
		rec := s.do(t, "POST", "/send?sessionId="+sid, ctJSON, body)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("send %s: %d %s", body, rec.Code, rec.Body)
		}
		var res result
		decodeStrict(t, rec.Body.Bytes(), &res)
		return res
	}
	if res := send(alice, `{"to":{"userId":"bob"},"data":"hi bob"}`); res.Delivered != 1 {
		t.Errorf("to bob: %+v", res)
	}
	if res := send(lamp, `{"to":{"topic":"chat"},"data":"from lamp"}`); res.Delivered != 3 {
		t.Errorf("to topic: %+v", res)
	}
	if res := send(bob, `{"to":{"deviceId":"lamp"},"topic":"cmd","data":"on"}`); res.Delivered != 1 {
		t.Errorf("to device: %+v", res)
	}
	type seen struct{ topic, from, data string }
	got := func(sid string) []seen {
		var out []seen
		for _, m := range s.messages(t, sid, "").Messages {
			out = append(out, seen{m.Topic, m.From, string(m.Data)})
		}
		return out
	}
	if g, w := got(bob), []seen{{"", "alice/phone", `"hi bob"`}, {"chat", "lamp", `"from lamp"`}}; !slices.Equal(g, w) {
		t.Errorf("bob got %v, want %v", g, w)
	}
	if g, w := got(lamp), []seen{{"chat", "lamp", `"from lamp"`}, {"cmd", "bob/tv", `"on"`}}; !slices.Equal(g, w) {
		t.Errorf("lamp got %v, want %v", g, w)
	}
	// A publisher push has no from.
	s.push(t, `{"to":{"sessionId":"`+alice+`"},"data":1}`)
	for _, m := range s.messages(t, alice, "").Messages {
		if string(m.Data) == "1" && m.From != "" {
			t.Errorf("publisher push carries from %q", m.From)
		}
	}
}

func TestDeleteSession(t *testing.T) {
	gone := func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
		t.Helper()
		wantError(t, s.pollNow(t, s.sid, ""), 404, "session_not_found")
		wantError(t, s.do(t, "DELETE", "/session?sessionId="+s.sid, "", ""), 404, "session_not_found")
		wantStats(t, s, poll.Stats{OfflineMessages: s.hub.Stats().OfflineMessages})
	}
	alive := func(t *testing.T, s *server, _ *httptest.ResponseRecorder) {
		t.Helper()
		wantDatas(t, "mailbox", s.messages(t, s.sid, ""), "1", "2")
		wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1, Users: 1, Backlog: 2})
	}
	cases := []httpCase{
		{name: "204", setup: withSession, method: "DELETE", target: "/session?sessionId={sid}", status: 204, check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
			if rec.Body.Len() != 0 {
				t.Errorf("204 with body %s", rec.Body)
			}
			gone(t, s, rec)
		}},
		{name: "with cursor keeps the rest offline", setup: withMessages(3), method: "DELETE", target: "/session?sessionId={sid}&cursor=1", status: 204,
			check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				gone(t, s, rec)
				wantStats(t, s, poll.Stats{OfflineMessages: 2})
				wantDatas(t, "next session", s.messages(t, s.connect(t, "d", ""), ""), "2", "3")
			}},
		{name: "missing sessionId", method: "DELETE", target: "/session", status: 400, code: "missing_session_id"},
		{name: "unknown session", method: "DELETE", target: "/session?sessionId=nope", status: 404, code: "session_not_found"},
		{name: "cursor not an integer", setup: withMessages(2), method: "DELETE", target: "/session?sessionId={sid}&cursor=x", status: 400, code: "invalid_cursor", check: alive},
		{name: "cursor beyond newest", setup: withMessages(2), method: "DELETE", target: "/session?sessionId={sid}&cursor=3", status: 400, code: "invalid_cursor", check: alive},
	}
	runCases(t, cases)
}

func TestHealthz(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	rec := s.do(t, "GET", "/healthz", "", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", rec.Code, rec.Body)
	}
	wantJSONType(t, rec)
	s.hub.Close()
	wantError(t, s.do(t, "GET", "/healthz", "", ""), 503, "unavailable")
}

func TestRouting(t *testing.T) {
	cases := []httpCase{
		{name: "unknown route", method: "GET", target: "/nope", status: 404, code: "not_found"},
		{name: "unknown route POST", method: "POST", target: "/v2/push", ctype: ctJSON, body: `{}`, status: 404, code: "not_found"},
		{name: "GET /connect", method: "GET", target: "/connect", status: 405, code: "method_not_allowed"},
		{name: "POST /data", method: "POST", target: "/data?sessionId=x", ctype: ctJSON, body: `{}`, status: 405, code: "method_not_allowed"},
		{name: "GET /push", method: "GET", target: "/push", status: 405, code: "method_not_allowed"},
		{name: "PUT /session", method: "PUT", target: "/session?sessionId=x", status: 405, code: "method_not_allowed"},
		{name: "POST /healthz", method: "POST", target: "/healthz", status: 405, code: "method_not_allowed"},
	}
	runCases(t, cases)
}

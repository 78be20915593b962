package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
)

const (
	secSecret  = "test-secret-0123456789abcdef-0123456789"
	secSecret2 = "rotated-secret-0123456789abcdef-01234567"
)

// secVerifier verifies tokens signed with secSecret or secSecret2.
func secVerifier(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secrets: []string{secSecret, secSecret2}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// secToken returns an HS256 token signed with secret: sub alice, exp in an
// hour, plus claims (a nil value deletes a claim).
func secToken(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantSession checks a 201 connect answer: user, device and topics.
func wantSession(user, device string, topics ...string) func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
	return func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		var got connectResponse
		decodeStrict(t, rec.Body.Bytes(), &got)
		if got.UserID != user || got.DeviceID != device || !slices.Equal(got.Topics, append([]string{}, topics...)) {
			t.Errorf("session %s/%s %v, want %s/%s %v", got.UserID, got.DeviceID, got.Topics, user, device, topics)
		}
		sess, err := s.hub.Session(got.SessionID)
		if err != nil || sess.UserID != user {
			t.Errorf("hub session %+v, %v", sess, err)
		}
	}
}

func TestConnectAuth(t *testing.T) {
	withAuth := api.Config{Auth: secVerifier(t)}
	tok := func(claims jwt.MapClaims) reqOpt { return bearer(secToken(t, secSecret, claims)) }
	challenge := func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		t.Helper()
		if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("WWW-Authenticate %q, want a Bearer challenge", got)
		}
		noSessions(t, s, rec)
	}
	body := `{"deviceId":"lamp","topics":["home/kitchen"]}`
	cases := []httpCase{
		// valid tokens
		{name: "valid, userId from sub", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{tok(nil)},
			status: 201, check: wantSession("alice", "lamp", "home/kitchen")},
		{name: "valid, matching userId", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"lamp","userId":"alice"}`, opts: []reqOpt{tok(nil)},
			status: 201, check: wantSession("alice", "lamp")},
		{name: "valid, form body", api: withAuth, method: "POST", target: "/connect", ctype: ctForm, body: "deviceId=lamp&topics=home/a", opts: []reqOpt{tok(nil)},
			status: 201, check: wantSession("alice", "lamp", "home/a")},
		{name: "valid, lower-case scheme", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{header("Authorization", "bearer "+secToken(t, secSecret, nil))}, status: 201, check: wantSession("alice", "lamp", "home/kitchen")},
		{name: "key rotation: second secret", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{bearer(secToken(t, secSecret2, nil))}, status: 201, check: wantSession("alice", "lamp", "home/kitchen")},
		{name: "dev claim matches", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{tok(jwt.MapClaims{"dev": "lamp"})},
			status: 201, check: wantSession("alice", "lamp", "home/kitchen")},
		{name: "topics claim: exact and prefix", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON,
			body: `{"deviceId":"lamp","topics":["home/kitchen","news","$presence"]}`, opts: []reqOpt{tok(jwt.MapClaims{"topics": []string{"home/*", "news", "$presence"}})},
			status: 201, check: wantSession("alice", "lamp", "home/kitchen", "news", "$presence")},
		{name: "topics claim *", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON,
			body: `{"deviceId":"lamp","topics":["a","$presence"]}`, opts: []reqOpt{tok(jwt.MapClaims{"topics": []string{"*"}})},
			status: 201, check: wantSession("alice", "lamp", "a", "$presence")},
		{name: "empty topics claim, no topics", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON,
			body: `{"deviceId":"lamp"}`, opts: []reqOpt{tok(jwt.MapClaims{"topics": []string{}})}, status: 201, check: wantSession("alice", "lamp")},

		// 401: missing, bad, expired, wrong key; checked before the body
		{name: "missing token", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, status: 401, code: "unauthorized", check: challenge},
		{name: "empty bearer", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{bearer("")}, status: 401, code: "unauthorized", check: challenge},
		{name: "basic scheme", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{header("Authorization", "Basic "+secToken(t, secSecret, nil))}, status: 401, code: "unauthorized", check: challenge},
		{name: "malformed token", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{bearer("a.b.c")}, status: 401, code: "unauthorized", check: challenge},
		{name: "expired token", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{tok(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})}, status: 401, code: "unauthorized", check: challenge},
		{name: "token without exp", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{tok(jwt.MapClaims{"exp": nil})},
			status: 401, code: "unauthorized", check: challenge},
		{name: "wrong key", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{bearer(secToken(t, "wrong-secret-0123456789abcdef-0123456789", nil))}, status: 401, code: "unauthorized", check: challenge},
		{name: "publish key is not a token", api: api.Config{Auth: secVerifier(t), PublishKeys: []string{"pk-0123456789abcdef"}}, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{bearer("pk-0123456789abcdef")}, status: 401, code: "unauthorized", check: challenge},
		{name: "token without sub", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{tok(jwt.MapClaims{"sub": nil})},
			status: 401, code: "unauthorized", check: challenge},
		{name: "token with a bad topics claim", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{tok(jwt.MapClaims{"topics": "home"})},
			status: 401, code: "unauthorized", check: challenge},
		{name: "missing token, bad body: 401 first", api: withAuth, method: "POST", target: "/connect", ctype: "text/plain", body: "x", status: 401, code: "unauthorized", check: challenge},

		// 403: the token does not allow the payload
		{name: "other userId", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"lamp","userId":"bob"}`, opts: []reqOpt{tok(nil)},
			status: 403, code: "forbidden", check: noSessions},
		{name: "dev claim disagrees", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body, opts: []reqOpt{tok(jwt.MapClaims{"dev": "tv"})},
			status: 403, code: "forbidden", check: noSessions},
		{name: "topic outside the claim", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON,
			body: `{"deviceId":"lamp","topics":["home/kitchen","office/desk"]}`, opts: []reqOpt{tok(jwt.MapClaims{"topics": []string{"home/*"}})},
			status: 403, code: "forbidden", check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				noSessions(t, s, rec)
				if msg := errorMessage(t, rec); !strings.Contains(msg, "office/desk") {
					t.Errorf("message %q does not name the topic", msg)
				}
			}},
		{name: "$presence outside the claim", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON,
			body: `{"deviceId":"lamp","topics":["$presence"]}`, opts: []reqOpt{tok(jwt.MapClaims{"topics": []string{"home/*"}})}, status: 403, code: "forbidden", check: noSessions},
		{name: "empty topics claim allows none", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: body,
			opts: []reqOpt{tok(jwt.MapClaims{"topics": []string{}})}, status: 403, code: "forbidden", check: noSessions},
		{name: "invalid payload with a valid token", api: withAuth, method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"a b"}`, opts: []reqOpt{tok(nil)},
			status: 400, code: "invalid_payload", check: noSessions},

		// without --connect-secret nothing changes: tokens are ignored
		{name: "no auth configured, garbage bearer", method: "POST", target: "/connect", ctype: ctJSON, body: `{"deviceId":"lamp","userId":"bob"}`, opts: []reqOpt{bearer("garbage")},
			status: 201, check: wantSession("bob", "lamp")},
	}
	runCases(t, cases)
}

// TestConnectAuthRefusalChangesNoState: refused connects of a device that
// is online leave its session, its messages and a parked poll alone.
func TestConnectAuthRefusalChangesNoState(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{Auth: secVerifier(t)})
	connect := func(dev string) string {
		rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"`+dev+`"}`, bearer(secToken(t, secSecret, jwt.MapClaims{"dev": dev})))
		var cr connectResponse
		decodeStrict(t, rec.Body.Bytes(), &cr)
		return cr.SessionID
	}
	lamp, tv := connect("lamp"), connect("tv")
	s.pushTo(t, lamp, `"m1"`)
	parked := s.park(t, tv)
	before := s.hub.Stats()
	for _, opt := range []reqOpt{
		bearer(secToken(t, secSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})),
		bearer(secToken(t, secSecret, jwt.MapClaims{"dev": "other"})),
		bearer(secToken(t, secSecret, jwt.MapClaims{"topics": []string{}, "dev": "lamp"})),
		bearer(secToken(t, secSecret, jwt.MapClaims{"sub": "mallory"})),
	} {
		for _, dev := range []string{"lamp", "tv"} {
			rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"`+dev+`","userId":"alice","topics":["x"]}`, opt)
			if rec.Code != 401 && rec.Code != 403 {
				t.Fatalf("refused connect: %d %s", rec.Code, rec.Body)
			}
			if got := s.hub.Stats(); got != before {
				t.Errorf("Stats() = %+v, want %+v", got, before)
			}
		}
	}
	wantDatas(t, "lamp", s.messages(t, lamp, ""), `"m1"`)
	s.pushTo(t, tv, `"m2"`)
	wantDatas(t, "tv's parked poll", decodePoll(t, await(t, parked, "parked poll")), `"m2"`)
}

func TestConnectAuthDeviceOfAnotherUser(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{Auth: secVerifier(t)})
	as := func(user string) reqOpt { return bearer(secToken(t, secSecret, jwt.MapClaims{"sub": user})) }
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"bob-phone"}`, as("bob")); rec.Code != 201 {
		t.Fatalf("bob: %d %s", rec.Code, rec.Body)
	}
	before := s.hub.Stats()
	wantError(t, s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"bob-phone"}`, as("mallory")), 403, "forbidden")
	wantStats(t, s, before)
	if sess, err := s.hub.OnlineDevice("bob-phone"); err != nil || sess == nil || sess.UserID != "bob" {
		t.Errorf("bob's device was taken over: %+v", sess)
	}
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"bob-phone"}`, as("bob")); rec.Code != 201 {
		t.Errorf("bob reconnects: %d %s", rec.Code, rec.Body)
	}
}

func TestSendTopicClaims(t *testing.T) {
	cfg := api.Config{Auth: secVerifier(t)}
	setup := func(claims jwt.MapClaims) func(t *testing.T, s *server) {
		return func(t *testing.T, s *server) {
			// receivers: bob on chat/room and news (no auth needed to build
			// them: connect with tokens of their own)
			for _, dev := range []string{"bob-tv"} {
				rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"`+dev+`","topics":["chat/room","news"]}`,
					bearer(secToken(t, secSecret, jwt.MapClaims{"sub": "bob"})))
				if rec.Code != 201 {
					t.Fatalf("connect %s: %d %s", dev, rec.Code, rec.Body)
				}
			}
			rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"phone"}`, bearer(secToken(t, secSecret, claims)))
			if rec.Code != 201 {
				t.Fatalf("connect sender: %d %s", rec.Code, rec.Body)
			}
			var cr connectResponse
			decodeStrict(t, rec.Body.Bytes(), &cr)
			s.sid = cr.SessionID
		}
	}
	chat := jwt.MapClaims{"topics": []string{"chat/*"}}
	delivered := func(n int) func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
		return func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
			t.Helper()
			if got := s.hub.Stats().Backlog; got != n {
				t.Errorf("backlog %d, want %d", got, n)
			}
		}
	}
	send := "/send?sessionId={sid}"
	cases := []httpCase{
		{name: "topic in claim", api: cfg, setup: setup(chat), method: "POST", target: send, ctype: ctJSON, body: `{"to":{"topic":"chat/room"},"data":1}`, status: 202, check: delivered(1)},
		{name: "topic outside claim", api: cfg, setup: setup(chat), method: "POST", target: send, ctype: ctJSON, body: `{"to":{"topic":"news"},"data":1}`,
			status: 403, code: "forbidden", check: delivered(0)},
		{name: "label outside claim", api: cfg, setup: setup(chat), method: "POST", target: send, ctype: ctJSON, body: `{"to":{"userId":"bob"},"topic":"news","data":1}`,
			status: 403, code: "forbidden", check: delivered(0)},
		{name: "user target, no topic", api: cfg, setup: setup(chat), method: "POST", target: send, ctype: ctJSON, body: `{"to":{"userId":"bob"},"data":1}`, status: 202, check: delivered(1)},
		{name: "batch with one topic outside: nothing delivered", api: cfg, setup: setup(chat), method: "POST", target: send, ctype: ctJSON,
			body: `[{"to":{"topic":"chat/room"},"data":1},{"to":{"topic":"news"},"data":2}]`, status: 403, code: "forbidden",
			check: func(t *testing.T, s *server, rec *httptest.ResponseRecorder) {
				delivered(0)(t, s, rec)
				if msg := errorMessage(t, rec); !strings.Contains(msg, "item 1") {
					t.Errorf("message %q does not name the item", msg)
				}
			}},
		{name: "batch in claim", api: cfg, setup: setup(chat), method: "POST", target: send, ctype: ctJSON,
			body: `[{"to":{"topic":"chat/room"},"data":1},{"to":{"deviceId":"bob-tv"},"topic":"chat/x","data":2}]`, status: 202, check: delivered(2)},
		{name: "no topics claim: any topic", api: cfg, setup: setup(nil), method: "POST", target: send, ctype: ctJSON, body: `{"to":{"topic":"news"},"data":1}`, status: 202, check: delivered(1)},
		{name: "unknown session still 404", api: cfg, setup: setup(chat), method: "POST", target: "/send?sessionId=nope", ctype: ctJSON, body: `{"to":{"topic":"news"},"data":1}`,
			status: 404, code: "session_not_found", check: delivered(0)},
	}
	runCases(t, cases)
}

func TestPermitOfAReplacingSession(t *testing.T) {
	// Connects of one device: each replaces the previous session. The sends
	// of the last one are checked against its own token's topics.
	s := newServer(t, poll.Config{}, api.Config{Auth: secVerifier(t)})
	tok := bearer(secToken(t, secSecret, jwt.MapClaims{"topics": []string{"chat/*"}}))
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"phone"}`, bearer(secToken(t, secSecret, nil))); rec.Code != 201 {
		t.Fatalf("connect without a topics claim: %d %s", rec.Code, rec.Body)
	}
	var sid string
	for range 3 {
		rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"phone"}`, tok)
		var cr connectResponse
		decodeStrict(t, rec.Body.Bytes(), &cr)
		sid = cr.SessionID
	}
	wantError(t, s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"topic":"news"},"data":1}`), 403, "forbidden")
	if rec := s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"topic":"chat/a"},"data":1}`); rec.Code != 202 {
		t.Errorf("send in claim: %d %s", rec.Code, rec.Body)
	}
}

func TestPublisherKeysGuardStatsPresenceDisconnect(t *testing.T) {
	keys := api.Config{PublishKeys: []string{"old-key-0123456789", "new-key-0123456789"}}
	from := remote("203.0.113.9:5000")
	for _, target := range []struct{ method, path, ctype, body string }{
		{"GET", "/stats", "", ""},
		{"GET", "/presence?userId=u", "", ""},
		{"POST", "/disconnect", ctJSON, `{"userId":"u"}`},
	} {
		t.Run(target.path, func(t *testing.T) {
			s := newServer(t, poll.Config{}, keys)
			withSession(t, s)
			before := s.hub.Stats()
			for _, opts := range [][]reqOpt{{from}, {from, bearer("wrong")}, {from, bearer("old-key-012345678")}, {bearer("")}} {
				wantError(t, s.do(t, target.method, target.path, target.ctype, target.body, opts...), 401, "unauthorized")
			}
			if got := s.hub.Stats(); got != before {
				t.Errorf("refused requests changed state: %+v, want %+v", got, before)
			}
			for _, key := range []string{"new-key-0123456789", "old-key-0123456789"} {
				if rec := s.do(t, target.method, target.path, target.ctype, target.body, from, bearer(key)); rec.Code != 200 {
					t.Errorf("key %s: %d %s", key, rec.Code, rec.Body)
				}
			}
			// without keys: loopback only
			s = newServer(t, poll.Config{}, api.Config{})
			wantError(t, s.do(t, target.method, target.path, target.ctype, target.body, from), 403, "forbidden")
			if rec := s.do(t, target.method, target.path, target.ctype, target.body); rec.Code != 200 {
				t.Errorf("loopback without key: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestAdminDisconnect(t *testing.T) {
	type presence struct {
		Event, UserID, DeviceID, Reason string
	}
	var acked string // the watcher's cursor after the "online" events
	setup := func(t *testing.T) (s *server, watcher string, ids map[string]string) {
		s = newServer(t, poll.Config{}, api.Config{})
		watcher = s.connect(t, "watcher", "admin", "$presence")
		ids = map[string]string{
			"phone": s.connect(t, "phone", "alice"),
			"tv":    s.connect(t, "tv", "alice"),
			"lamp":  s.connect(t, "lamp", "bob"),
		}
		acked = strconv.FormatUint(s.messages(t, watcher, "").Cursor, 10) // the "online" events
		return s, watcher, ids
	}
	offline := func(t *testing.T, s *server, watcher string, devices ...string) {
		t.Helper()
		pr := s.messages(t, watcher, acked)
		var got []string
		for _, m := range pr.Messages {
			var p presence
			if err := json.Unmarshal(m.Data, &p); err != nil || p.Event != "offline" || p.Reason != "disconnect" {
				t.Errorf("presence %s, want offline/disconnect", m.Data)
			}
			got = append(got, p.DeviceID)
		}
		slices.Sort(got)
		if !slices.Equal(got, devices) {
			t.Errorf("offline devices %v, want %v", got, devices)
		}
	}
	disconnect := func(t *testing.T, s *server, body string) int {
		t.Helper()
		rec := s.do(t, "POST", "/disconnect", ctJSON, body)
		if rec.Code != 200 {
			t.Fatalf("disconnect %s: %d %s", body, rec.Code, rec.Body)
		}
		var out struct{ Disconnected *int }
		decodeStrict(t, rec.Body.Bytes(), &out)
		return *out.Disconnected
	}

	t.Run("userId", func(t *testing.T) {
		s, watcher, ids := setup(t)
		parked := s.park(t, ids["phone"])
		if n := disconnect(t, s, `{"userId":"alice"}`); n != 2 {
			t.Errorf("disconnected %d, want 2", n)
		}
		wantError(t, await(t, parked, "parked poll"), 410, "session_closed")
		for _, d := range []string{"phone", "tv"} {
			wantError(t, s.pollNow(t, ids[d], ""), 404, "session_not_found")
		}
		if rec := s.pollNow(t, ids["lamp"], ""); rec.Code != 204 {
			t.Errorf("bob's session: %d", rec.Code)
		}
		offline(t, s, watcher, "phone", "tv")
	})
	t.Run("deviceId", func(t *testing.T) {
		s, watcher, ids := setup(t)
		if n := disconnect(t, s, `{"deviceId":"lamp"}`); n != 1 {
			t.Errorf("disconnected %d, want 1", n)
		}
		wantError(t, s.pollNow(t, ids["lamp"], ""), 404, "session_not_found")
		offline(t, s, watcher, "lamp")
	})
	t.Run("sessionId", func(t *testing.T) {
		s, watcher, ids := setup(t)
		if n := disconnect(t, s, `{"sessionId":"`+ids["tv"]+`"}`); n != 1 {
			t.Errorf("disconnected %d, want 1", n)
		}
		offline(t, s, watcher, "tv")
		if n := disconnect(t, s, `{"sessionId":"`+ids["tv"]+`"}`); n != 0 {
			t.Errorf("again: %d, want 0", n)
		}
	})
	t.Run("nobody", func(t *testing.T) {
		s, _, _ := setup(t)
		before := s.hub.Stats()
		for _, body := range []string{`{"userId":"carol"}`, `{"deviceId":"nope"}`, `{"sessionId":"nope"}`} {
			if n := disconnect(t, s, body); n != 0 {
				t.Errorf("%s: %d, want 0", body, n)
			}
		}
		wantStats(t, s, before)
	})
	t.Run("invalid", func(t *testing.T) {
		s, _, _ := setup(t)
		before := s.hub.Stats()
		for _, body := range []string{``, `{}`, `[]`, `{"userId":"alice","deviceId":"tv"}`, `{"userId":""}`, `{"userId":"a b"}`,
			`{"deviceId":7}`, `{"sessionId":""}`, `{"topic":"x"}`, `{"userId":"alice"} {}`, `{"userId":null}`} {
			wantError(t, s.do(t, "POST", "/disconnect", ctJSON, body), 400, "invalid_payload")
		}
		wantError(t, s.do(t, "POST", "/disconnect", "text/plain", `{"userId":"alice"}`), 415, "unsupported_media_type")
		wantError(t, s.do(t, "POST", "/disconnect", ctJSON, `{"userId":"`+strings.Repeat("a", 5000)+`"}`), 413, "payload_too_large")
		wantError(t, s.do(t, "GET", "/disconnect", "", ""), 405, "method_not_allowed")
		wantStats(t, s, before)
	})
}

// browser request options
func origin(o string) reqOpt    { return header("Origin", o) }
func fetchSite(v string) reqOpt { return header("Sec-Fetch-Site", v) }
func preflightFor(method string) reqOpt {
	return header("Access-Control-Request-Method", method)
}

func TestCORSDefaultNone(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	// A preflight is not answered with CORS headers: the browser refuses.
	rec := s.do(t, "OPTIONS", "/connect", "", "", origin("https://evil.example"), preflightFor("POST"))
	if rec.Code >= 300 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight without CORS: %d, ACAO %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
	}
	// A cross-site form POST (no preflight needed) is refused.
	wantError(t, s.do(t, "POST", "/connect", ctForm, "deviceId=d", origin("https://evil.example"), fetchSite("cross-site")), 403, "forbidden")
	wantError(t, s.do(t, "POST", "/connect", ctForm, "deviceId=d", origin("https://evil.example")), 403, "forbidden") // old browser: Origin only
	wantError(t, s.do(t, "DELETE", "/session?sessionId=x", "", "", fetchSite("same-site"), origin("https://other.example.com")), 403, "forbidden")
	wantStats(t, s, poll.Stats{})
	// Same-origin pages (the demo console), and clients that are not
	// browsers, are served.
	for name, opts := range map[string][]reqOpt{
		"same-origin":         {origin("http://localhost:8080"), fetchSite("same-origin")},
		"origin is host":      {origin("http://localhost:8080")},
		"not a browser":       nil,
		"user typed (none)":   {fetchSite("none")},
		"cross-site GET data": {origin("https://evil.example"), fetchSite("cross-site")},
	} {
		target, method, ctype, body := "/connect", "POST", ctJSON, `{"deviceId":"d"}`
		if strings.Contains(name, "GET") {
			target, method, ctype, body = "/data?timeout=0&sessionId=nope", "GET", "", ""
		}
		rec := s.do(t, method, target, ctype, body, opts...)
		if rec.Code == 403 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: %d %s, ACAO %q", name, rec.Code, rec.Body, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	}
}

func TestCORSOrigins(t *testing.T) {
	const app = "https://app.example.com"
	s := newServer(t, poll.Config{}, api.Config{CORSOrigins: []string{app, "http://localhost:3000"}})
	sid := s.connect(t, "d", "u", "news")

	for _, ep := range []struct{ path, method string }{{"/connect", "POST"}, {"/data", "GET"}, {"/send", "POST"}, {"/session", "DELETE"}} {
		rec := s.do(t, "OPTIONS", ep.path, "", "", origin(app), preflightFor(ep.method), header("Access-Control-Request-Headers", "authorization, content-type"))
		h := rec.Header()
		if rec.Code != 204 || h.Get("Access-Control-Allow-Origin") != app || h.Get("Access-Control-Allow-Methods") != ep.method ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") ||
			h.Get("Access-Control-Max-Age") == "" || !slices.Contains(h.Values("Vary"), "Origin") {
			t.Errorf("preflight %s %s: %d %v", ep.method, ep.path, rec.Code, h)
		}
		// rejected: other origin, other method
		rec = s.do(t, "OPTIONS", ep.path, "", "", origin("https://evil.example"), preflightFor(ep.method))
		wantError(t, rec, 403, "forbidden")
		if rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("refused preflight carries ACAO")
		}
		wantError(t, s.do(t, "OPTIONS", ep.path, "", "", origin(app), preflightFor("PUT")), 403, "forbidden")
	}
	// An OPTIONS that is not a preflight: 204 with Allow.
	if rec := s.do(t, "OPTIONS", "/connect", "", ""); rec.Code != 204 || !strings.Contains(rec.Header().Get("Allow"), "POST") {
		t.Errorf("plain OPTIONS: %d %v", rec.Code, rec.Header())
	}
	// Publisher endpoints take no part in CORS.
	if rec := s.do(t, "OPTIONS", "/push", "", "", origin(app), preflightFor("POST")); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of /push allowed: %v", rec.Header())
	}

	// Actual requests from the allowed origin carry ACAO and expose
	// Retry-After; errors too.
	rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"web"}`, origin(app), fetchSite("cross-site"))
	if rec.Code != 201 || rec.Header().Get("Access-Control-Allow-Origin") != app || !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Errorf("allowed POST: %d %v", rec.Code, rec.Header())
	}
	rec = s.do(t, "GET", "/data?timeout=0&sessionId=nope", "", "", origin("http://localhost:3000"), fetchSite("cross-site"))
	wantError(t, rec, 404, "session_not_found")
	if rec.Header().Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("error without ACAO: %v", rec.Header())
	}
	// From another origin: writes refused, reads get no ACAO.
	before := s.hub.Stats()
	wantError(t, s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"evil"}`, origin("https://evil.example"), fetchSite("cross-site")), 403, "forbidden")
	wantError(t, s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"topic":"news"},"data":1}`, origin("https://evil.example"), fetchSite("cross-site")), 403, "forbidden")
	wantError(t, s.do(t, "DELETE", "/session?sessionId="+sid, "", "", origin("https://app.example.com.evil.example"), fetchSite("cross-site")), 403, "forbidden")
	wantStats(t, s, before)
	rec = s.do(t, "GET", "/data?timeout=0&sessionId="+sid, "", "", origin("https://evil.example"), fetchSite("cross-site"))
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("read from another origin got ACAO %q", rec.Header().Get("Access-Control-Allow-Origin"))
	}
}

func TestCORSAnyOrigin(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{CORSOrigins: []string{"*"}})
	rec := s.do(t, "OPTIONS", "/send", "", "", origin("https://anything.example"), preflightFor("POST"))
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
	rec = s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"d"}`, origin("https://anything.example"), fetchSite("cross-site"))
	if rec.Code != 201 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("POST: %d %v", rec.Code, rec.Header())
	}
}

func TestValidOrigin(t *testing.T) {
	for _, o := range []string{"*", "https://app.example.com", "http://localhost:3000", "http://[::1]:8080"} {
		if err := api.ValidOrigin(o); err != nil {
			t.Errorf("%q: %v", o, err)
		}
	}
	for _, o := range []string{"", "app.example.com", "https://app.example.com/path", "https://", "*.example.com", "https://a.example?x=1"} {
		if err := api.ValidOrigin(o); err == nil {
			t.Errorf("%q accepted", o)
		}
	}
}

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func TestNetworkFilters(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{AllowNets: prefixes("10.0.0.0/8", "2001:db8::/32"), DenyNets: prefixes("10.66.0.0/16")})
	for addr, want := range map[string]int{
		"10.1.2.3:1":              201,
		"[2001:db8::5]:1":         201,
		"[::ffff:10.1.2.3]:1":     201, // IPv4-mapped
		"[2001:db8::5%2]:1":       201, // with a zone
		"127.0.0.1:1":             403, // loopback is not special
		"[fe80::1%eth0]:1":        403,
		"10.66.1.1:1":             403, // denied within allowed
		"[::ffff:10.66.0.1]:1234": 403,
		"192.0.2.1:1":             403,
		"[2001:db9::1]:1":         403,
		"not-an-address":          403,
	} {
		rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"x"}`, remote(addr))
		if want == 403 {
			wantError(t, rec, 403, "forbidden")
		} else if rec.Code != want {
			t.Errorf("%s: %d %s", addr, rec.Code, rec.Body)
		}
	}
}

func TestNetworkFiltersAllEndpoints(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{DenyNets: prefixes("203.0.113.0/24")})
	sid := s.connect(t, "d", "u", "news")
	s.pushTo(t, sid, `"m"`)
	before := s.hub.Stats()
	bad := remote("203.0.113.7:999")
	for _, r := range []struct{ method, target, ctype, body string }{
		{"POST", "/connect", ctJSON, `{"deviceId":"d"}`},
		{"GET", "/data?timeout=0&cursor=1&sessionId=" + sid, "", ""},
		{"POST", "/send?sessionId=" + sid, ctJSON, `{"to":{"topic":"news"},"data":1}`},
		{"DELETE", "/session?sessionId=" + sid, "", ""},
	} {
		wantError(t, s.do(t, r.method, r.target, r.ctype, r.body, bad), 403, "forbidden")
	}
	wantStats(t, s, before)
	// Publisher and public endpoints are not filtered (they have their own guard).
	if rec := s.do(t, "GET", "/healthz", "", "", bad); rec.Code != 200 {
		t.Errorf("healthz: %d", rec.Code)
	}
	wantError(t, s.do(t, "POST", "/push", ctJSON, `{"data":1}`, bad), 403, "forbidden") // loopback-only, not the filter
	if rec := s.do(t, "GET", "/data?timeout=0&sessionId="+sid, "", "", remote("198.51.100.1:1")); rec.Code != 200 {
		t.Errorf("allowed address: %d %s", rec.Code, rec.Body)
	}
}

// clock is a settable time source for the rate limiters.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func wantRetryAfter(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	wantError(t, rec, 429, "rate_limited")
	got, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || got != want {
		t.Errorf("Retry-After %q, want %d", rec.Header().Get("Retry-After"), want)
	}
}

func TestConnectRateLimit(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	s := newServer(t, poll.Config{}, api.Config{ConnectLimit: api.RateLimit{Rate: 0.5, Burst: 2}, Now: clk.Now})
	a, b := remote("198.51.100.1:1"), remote("198.51.100.2:1")
	connect := func(opt reqOpt, dev string) *httptest.ResponseRecorder {
		return s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"`+dev+`"}`, opt)
	}
	for i, dev := range []string{"a1", "a2"} {
		if rec := connect(a, dev); rec.Code != 201 {
			t.Fatalf("connect %d within the burst: %d", i, rec.Code)
		}
	}
	wantRetryAfter(t, connect(a, "a3"), 2) // one token every 2 s
	wantRetryAfter(t, connect(a, "a3"), 2) // a refusal takes no token
	wantStats(t, s, poll.Stats{Sessions: 2, Devices: 2})
	if rec := connect(b, "b1"); rec.Code != 201 {
		t.Errorf("another address: %d", rec.Code)
	}
	clk.advance(1500 * time.Millisecond)
	wantRetryAfter(t, connect(a, "a3"), 1) // 0.5 s to go: rounded up
	clk.advance(500 * time.Millisecond)
	if rec := connect(a, "a3"); rec.Code != 201 {
		t.Errorf("after the refill: %d %s", rec.Code, rec.Body)
	}
	// Bad requests count too (they cost the server work).
	wantRetryAfter(t, s.do(t, "POST", "/connect", "text/plain", "x", a), 2)
}

func TestRateLimitIPv6PerSlash64(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	s := newServer(t, poll.Config{}, api.Config{ConnectLimit: api.RateLimit{Rate: 0.01, Burst: 1}, Now: clk.Now})
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"x1"}`, remote("[2001:db8:1:2::1]:1")); rec.Code != 201 {
		t.Fatal(rec.Code)
	}
	wantRetryAfter(t, s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"x2"}`, remote("[2001:db8:1:2:ffff::9]:1")), 100)
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"x3"}`, remote("[2001:db8:1:3::1]:1")); rec.Code != 201 {
		t.Errorf("another /64: %d", rec.Code)
	}
}

func TestSendRateLimit(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	s := newServer(t, poll.Config{}, api.Config{SendLimit: api.RateLimit{Rate: 1, Burst: 3}, Now: clk.Now})
	sid := s.connect(t, "d", "u", "news")
	send := func() *httptest.ResponseRecorder {
		return s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"topic":"news"},"data":1}`)
	}
	for range 3 {
		if rec := send(); rec.Code != 202 {
			t.Fatalf("send: %d %s", rec.Code, rec.Body)
		}
	}
	before := s.hub.Stats()
	wantRetryAfter(t, send(), 1)
	wantStats(t, s, before)
	// connects are not limited by the send limit
	for i := range 5 {
		s.connect(t, "c"+strconv.Itoa(i), "")
	}
	clk.advance(time.Second)
	if rec := send(); rec.Code != 202 {
		t.Errorf("after a second: %d", rec.Code)
	}
}

func TestRateLimitsOffByDefault(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "u", "news")
	for i := range 200 {
		if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"x`+strconv.Itoa(i)+`"}`); rec.Code != 201 {
			t.Fatalf("connect %d: %d", i, rec.Code)
		}
		if rec := s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"deviceId":"d"},"data":1}`); rec.Code != 202 && rec.Code != 429 {
			t.Fatalf("send %d: %d", i, rec.Code)
		} else if rec.Code == 429 && !strings.Contains(rec.Body.String(), "mailbox_full") {
			t.Fatalf("send %d: %s", i, rec.Body)
		}
	}
}

func TestMaxParkedPerIP(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{MaxParkedPerIP: 2})
	ids := []string{s.connect(t, "d1", ""), s.connect(t, "d2", ""), s.connect(t, "d3", "")}
	p1, p2 := s.park(t, ids[0]), s.park(t, ids[1]) // from 127.0.0.1
	before := s.hub.Stats()
	wantRetryAfter(t, s.do(t, "GET", "/data?timeout=60&sessionId="+ids[2], "", ""), 1)
	wantStats(t, s, before)
	// another address may poll
	if rec := s.do(t, "GET", "/data?timeout=0&sessionId="+ids[2], "", "", remote("198.51.100.1:1")); rec.Code != 204 {
		t.Errorf("other address: %d", rec.Code)
	}
	// when one poll ends, the address may poll again
	s.pushTo(t, ids[0], `"wake"`)
	decodePoll(t, await(t, p1, "first parked poll"))
	if rec := s.do(t, "GET", "/data?timeout=0&sessionId="+ids[2], "", ""); rec.Code != 204 {
		t.Errorf("after a poll ended: %d %s", rec.Code, rec.Body)
	}
	s.hub.Close()
	await(t, p2, "second parked poll")
}

func TestMaxSessions503(t *testing.T) {
	s := newServer(t, poll.Config{MaxSessions: 2}, api.Config{})
	s.connect(t, "d1", "")
	s.connect(t, "d2", "")
	rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"d3"}`)
	wantError(t, rec, 503, "unavailable")
	wantStats(t, s, poll.Stats{Sessions: 2, Devices: 2})
	s.connect(t, "d2", "") // a replacement is always allowed
}

func TestNoSniff(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	for _, rec := range []*httptest.ResponseRecorder{
		s.do(t, "GET", "/healthz", "", ""),
		s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"<script>"}`),
		s.do(t, "GET", "/nope", "", ""),
		s.do(t, "GET", "/healthz", "", "", header("X-Pad", strings.Repeat("a", 20000))),
	} {
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%d response: X-Content-Type-Options %q", rec.Code, got)
		}
	}
}

func TestHeaderSizeCap(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{MaxHeaderBytes: 4096})
	if rec := s.do(t, "GET", "/healthz", "", "", header("X-Pad", strings.Repeat("a", 3000))); rec.Code != 200 {
		t.Errorf("under the cap: %d", rec.Code)
	}
	for name, opts := range map[string][]reqOpt{
		"one big header":   {header("X-Pad", strings.Repeat("a", 5000))},
		"many headers":     manyHeaders(300),
		"a big token":      {bearer(strings.Repeat("t", 5000))},
		"big cookie":       {header("Cookie", strings.Repeat("c=1; ", 1000))},
		"every route, too": {header("X-Pad", strings.Repeat("a", 5000))},
	} {
		target := "/connect"
		if strings.HasPrefix(name, "every") {
			target = "/no-such-route"
		}
		wantError(t, s.do(t, "POST", target, ctJSON, `{"deviceId":"d"}`, opts...), 431, "header_too_large")
	}
	wantError(t, s.do(t, "GET", "/data?sessionId="+strings.Repeat("x", 5000), "", ""), 431, "header_too_large")
	wantStats(t, s, poll.Stats{})
	// the default cap is 16 KiB
	d := newServer(t, poll.Config{}, api.Config{})
	if rec := d.do(t, "GET", "/healthz", "", "", header("X-Pad", strings.Repeat("a", 15000))); rec.Code != 200 {
		t.Errorf("15 KB under the default cap: %d", rec.Code)
	}
	wantError(t, d.do(t, "GET", "/healthz", "", "", header("X-Pad", strings.Repeat("a", api.DefaultMaxHeaderBytes))), 431, "header_too_large")
}

func manyHeaders(n int) []reqOpt {
	var out []reqOpt
	for i := range n {
		out = append(out, header("X-H"+strconv.Itoa(i), "some value"))
	}
	return out
}

func TestTrustedProxies(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	s := newServer(t, poll.Config{}, api.Config{
		TrustedProxies: prefixes("10.0.0.1/32"),
		DenyNets:       prefixes("203.0.113.0/24"),
		ConnectLimit:   api.RateLimit{Rate: 0.01, Burst: 1},
		Now:            clk.Now,
	})
	proxy := remote("10.0.0.1:5555")
	xff := func(v string) reqOpt { return header("X-Forwarded-For", v) }
	// through the proxy: the forwarded client is filtered and limited
	wantError(t, s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"a"}`, proxy, xff("203.0.113.9")), 403, "forbidden")
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"b"}`, proxy, xff("198.51.100.1")); rec.Code != 201 {
		t.Fatalf("client 1 via proxy: %d", rec.Code)
	}
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"c"}`, proxy, xff("203.0.113.9, 198.51.100.2")); rec.Code != 201 {
		t.Fatalf("client 2 via proxy (a spoofed left-most entry is ignored): %d", rec.Code)
	}
	wantRetryAfter(t, s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"d"}`, proxy, xff("198.51.100.1")), 100)
	// not through the proxy: X-Forwarded-For is ignored
	if rec := s.do(t, "POST", "/connect", ctJSON, `{"deviceId":"e"}`, remote("198.51.100.77:1"), xff("203.0.113.9")); rec.Code != 201 {
		t.Errorf("direct client claiming a denied address: %d", rec.Code)
	}
	// and the loopback-only publisher check cannot be fooled through it
	wantError(t, s.do(t, "POST", "/push", ctJSON, `{"data":1}`, proxy, xff("127.0.0.1, 198.51.100.1")), 403, "forbidden")
}

// Without a publish key only local publishers are admitted: a loopback
// address is not enough, the Host must name this host by a loopback name
// (a page that rebinds its own name to 127.0.0.1 sends its own name) and
// no cross-site page may be the origin. The refusal tells the operator
// what to do.
func TestLoopbackPublisherNeedsALocalHost(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	host := func(h string) reqOpt { return func(r *http.Request) { r.Host = h } }
	for name, opts := range map[string][]reqOpt{
		"rebound name":          {host("evil.example:8080")},
		"rebound name, no port": {host("evil.example")},
		"a LAN address as Host": {host("192.168.1.5:8080")},
		"cross-site Origin":     {origin("http://evil.example")},
		"Origin not a URL":      {origin("null")},
		"cross-site fetch":      {fetchSite("cross-site")},
	} {
		for _, target := range []string{"/push", "/stats", "/presence?userId=a"} {
			method, body := "GET", ""
			if target == "/push" {
				method, body = "POST", `{"data":1}`
			}
			rec := s.do(t, method, target, ctJSON, body, opts...)
			wantError(t, rec, 403, "forbidden")
			if !strings.Contains(errorMessage(t, rec), "--publish-key") {
				t.Errorf("%s %s: the refusal does not name --publish-key: %s", name, target, rec.Body)
			}
		}
	}
	for name, opts := range map[string][]reqOpt{
		"localhost":          {host("localhost")},
		"LOCALHOST:80":       {host("LOCALHOST:80")},
		"127.0.0.1:8080":     {host("127.0.0.1:8080")},
		"127.5.6.7":          {host("127.5.6.7")},
		"[::1]:8080":         {host("[::1]:8080")},
		"[::1]":              {host("[::1]")},
		"local page":         {origin("http://localhost:3000"), fetchSite("same-site")},
		"local page by IPv6": {origin("http://[::1]:3000")},
	} {
		if rec := s.do(t, "POST", "/push", ctJSON, `{"data":1}`, opts...); rec.Code != 202 {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
}

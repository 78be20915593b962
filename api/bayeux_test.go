package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
)

// POST /bayeux through the echo routes: what the HTTP edge adds to the
// Bayeux server (package bayeux has the protocol's own cases): the paths,
// the body's forms, and the defences of the native client endpoints.

const handshakeBody = `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]%s}]`

// bayeuxReplies decodes a Bayeux answer, which is always a JSON array.
func bayeuxReplies(t *testing.T, body string) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out) == 0 {
		t.Fatalf("not a Bayeux answer: %q", body)
	}
	return out
}

func bayeuxHandshake(t *testing.T, s *server, ext string, opts ...reqOpt) map[string]any {
	t.Helper()
	rec := s.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(handshakeBody, ext), opts...)
	if rec.Code != http.StatusOK {
		t.Fatalf("handshake: %d %s", rec.Code, rec.Body)
	}
	return bayeuxReplies(t, rec.Body.String())[0]
}

func TestBayeuxPathsAndBodies(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	body := fmt.Sprintf(handshakeBody, "")
	for _, c := range []struct{ name, path, ctype, body string }{
		{"json", "/bayeux", ctJSON, body},
		{"json with charset", "/bayeux", "application/json;charset=UTF-8", body},
		{"message type in the URL", "/bayeux/handshake", ctJSON, body},
		{"a batch with appendMessageTypeToURL", "/bayeux/", ctJSON, body},
		{"text/plain", "/bayeux", "text/plain", body},
		{"no content type", "/bayeux", "", body},
		{"single object", "/bayeux", ctJSON, strings.Trim(body, "[]")},
		{"form", "/bayeux", ctForm, "message=" + url.QueryEscape(body)},
		{"form as text/plain (Faye's cross-origin transport)", "/bayeux", "text/plain;charset=UTF-8", "message=" + url.QueryEscape(body)},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := s.do(t, http.MethodPost, c.path, c.ctype, c.body)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ctJSON || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
			}
			if r := bayeuxReplies(t, rec.Body.String())[0]; r["successful"] != true {
				t.Fatalf("%v", r)
			}
		})
	}
	for _, c := range []struct {
		name, ctype, body string
		status            int
	}{
		{"not JSON", ctJSON, "hello", 400},
		{"a form without message", ctForm, "x=1", 400},
		{"too large", ctJSON, "[" + strings.Repeat(" ", api.MaxPushBody) + "]", 413},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := s.do(t, http.MethodPost, "/bayeux", c.ctype, c.body)
			r := bayeuxReplies(t, rec.Body.String())[0]
			if rec.Code != c.status || r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), fmt.Sprint(c.status)+"::") {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	if n := s.hub.Stats().Sessions; n != 9 {
		t.Errorf("%d sessions, want the 9 good handshakes'", n)
	}
}

func TestBayeuxConnectToken(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{Auth: secVerifier(t)})
	r := bayeuxHandshake(t, s, "")
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "401:/meta/handshake:") ||
		fmt.Sprint(r["advice"]) != "map[interval:0 reconnect:none]" {
		t.Fatalf("without a token: %v", r)
	}
	token := secToken(t, secSecret, jwt.MapClaims{"topics": []string{"team/*"}})
	r = bayeuxHandshake(t, s, fmt.Sprintf(`,"ext":{"token":%q,"deviceId":"d1"}`, token))
	if r["successful"] != true {
		t.Fatalf("ext.token: %v", r)
	}
	sess, err := s.hub.Session(r["clientId"].(string))
	if err != nil || sess.UserID != "alice" || sess.DeviceID != "d1" {
		t.Fatalf("session %+v %v", sess, err)
	}
	r = bayeuxHandshake(t, s, `,"ext":{"deviceId":"d2"}`, bearer(token))
	if r["successful"] != true {
		t.Fatalf("Authorization header: %v", r)
	}
	r = bayeuxHandshake(t, s, `,"ext":{"deviceId":"d3","userId":"mallory"}`, bearer(token))
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "403:") {
		t.Fatalf("a user that is not the token's: %v", r)
	}
	// The topics claim limits subscribe and publish.
	cid := fmt.Sprint(bayeuxHandshake(t, s, fmt.Sprintf(`,"ext":{"token":%q}`, token))["clientId"])
	for ch, want := range map[string]string{"/team/a": "true", "/team/**": "true", "/other": "false"} {
		rec := s.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":%q}]`, cid, ch))
		if r := bayeuxReplies(t, rec.Body.String())[0]; fmt.Sprint(r["successful"]) != want {
			t.Errorf("subscribe %s: %v", ch, r)
		}
	}
	rec := s.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(`[{"channel":"/other","clientId":%q,"data":1}]`, cid))
	if r := bayeuxReplies(t, rec.Body.String())[0]; r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "403:/other:") {
		t.Errorf("publish outside the claim: %v", r)
	}
}

func TestBayeuxLimitsAndFilters(t *testing.T) {
	s := newServer(t, poll.Config{MaxSessions: 2}, api.Config{
		ConnectLimit: api.RateLimit{Rate: 0.001, Burst: 1},
		SendLimit:    api.RateLimit{Rate: 0.001, Burst: 1},
		DenyNets:     prefixes("10.0.0.0/8"),
	})
	cid := fmt.Sprint(bayeuxHandshake(t, s, "")["clientId"])
	r := bayeuxHandshake(t, s, "", remote("192.0.2.1:1"))
	if r["successful"] != true {
		t.Fatalf("a second address's handshake: %v", r)
	}
	r = bayeuxHandshake(t, s, "", remote("192.0.2.2:1"))
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "503:/meta/handshake:") {
		t.Fatalf("past --max-sessions: %v", r)
	}
	r = bayeuxHandshake(t, s, "")
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "429:/meta/handshake:") ||
		r["advice"].(map[string]any)["reconnect"] != "handshake" || r["advice"].(map[string]any)["interval"].(float64) < 1000 {
		t.Fatalf("past the connect rate: %v", r)
	}
	publish := fmt.Sprintf(`[{"channel":"/room","clientId":%q,"data":1}]`, cid)
	if r := bayeuxReplies(t, s.do(t, http.MethodPost, "/bayeux", ctJSON, publish).Body.String())[0]; r["successful"] != true {
		t.Fatalf("first publish: %v", r)
	}
	if r := bayeuxReplies(t, s.do(t, http.MethodPost, "/bayeux", ctJSON, publish).Body.String())[0]; !strings.HasPrefix(fmt.Sprint(r["error"]), "429:/room:") {
		t.Fatalf("past the send rate: %v", r)
	}
	rec := s.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(handshakeBody, ""), remote("10.1.2.3:4"))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a denied network: %d %s", rec.Code, rec.Body)
	}
	if n := s.hub.Stats().Sessions; n != 2 {
		t.Fatalf("%d sessions", n)
	}
}

// CometD's and Faye's browser transports send credentialed requests: a
// listed origin is granted credentials (and Faye's Pragma header) on the
// Bayeux paths, and only there; "*" grants none.
func TestBayeuxCORS(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{CORSOrigins: []string{"https://app.example"}})
	for _, path := range []string{"/bayeux", "/bayeux/", "/bayeux/connect"} {
		rec := s.do(t, http.MethodOptions, path, "", "", origin("https://app.example"), preflightFor(http.MethodPost))
		h := rec.Header()
		if rec.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type, Pragma" {
			t.Fatalf("preflight %s: %d %v", path, rec.Code, h)
		}
	}
	rec := s.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(handshakeBody, ""), origin("https://app.example"))
	if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example" || rec.Header().Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("allowed origin: %d %v", rec.Code, rec.Header())
	}
	rec = s.do(t, http.MethodOptions, "/bayeux", "", "", origin("https://evil.example"), preflightFor(http.MethodPost))
	if rec.Code != http.StatusForbidden || rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight of another origin: %d %v", rec.Code, rec.Header())
	}
	// The native endpoints grant no credentials.
	rec = s.do(t, http.MethodOptions, "/connect", "", "", origin("https://app.example"), preflightFor(http.MethodPost))
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight of /connect: %d %v", rec.Code, rec.Header())
	}
	any := newServer(t, poll.Config{}, api.Config{CORSOrigins: []string{"*"}})
	rec = any.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(handshakeBody, ""), origin("https://app.example"))
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" || rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("--cors-origins *: %v", rec.Header())
	}
	rec = s.do(t, http.MethodPost, "/bayeux", ctJSON, fmt.Sprintf(handshakeBody, ""), origin("https://evil.example"))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("another origin: %d %s", rec.Code, rec.Body)
	}
}

// A held /meta/connect is a poll in the metrics, with its outcome.
func TestBayeuxConnectsAreCountedAsPolls(t *testing.T) {
	obs := &outcomes{}
	s := newServer(t, poll.Config{}, api.Config{Polls: obs})
	cid := fmt.Sprint(bayeuxHandshake(t, s, "")["clientId"])
	connect := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","advice":{"timeout":0}}]`, cid)
	s.do(t, http.MethodPost, "/bayeux", ctJSON, connect)
	if _, err := s.hub.Publish(poll.Push{To: poll.Target{SessionID: cid}, Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	s.do(t, http.MethodPost, "/bayeux", ctJSON, connect)
	s.do(t, http.MethodPost, "/bayeux", ctJSON, strings.Replace(connect, cid, "nope", 1))
	if obs.count("timeout") != 1 || obs.count("messages") != 1 || obs.count("not_found") != 1 {
		t.Fatalf("outcomes %v", obs.n)
	}
}

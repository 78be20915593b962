package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// The fuzz targets drive the HTTP edge with hostile input and check the
// contract: never a 5xx, every 4xx with API.md's JSON error body, and a
// rejected request changes no state. Seed corpora are under
// testdata/fuzz/<name>/; scripts/fuzz.sh runs each target briefly.

// fuzzSecret signs the seed tokens of FuzzConnectRequest.
const fuzzSecret = "fuzz-secret-0123456789abcdef-0123456789ab"

// fuzzServer is a server with one session ("d", user "u", topics "t" and
// "$presence") holding two messages, so that queries can name a real
// session (the placeholder SID) with real cursors. Holds are capped at a
// millisecond.
func fuzzServer(t *testing.T, cfg api.Config) (*server, string) {
	cfg.MaxPollTimeout = time.Millisecond
	cfg.PollTimeout = time.Millisecond
	s := newServer(t, poll.Config{MaxMailbox: 50}, cfg)
	sess, err := s.hub.Connect(session.Request{DeviceID: "d", UserID: "u", Topics: []string{"t", session.TopicPresence}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{`"m1"`, `"m2"`} {
		if _, err := s.hub.Publish(poll.Push{To: poll.Target{SessionID: sess.ID}, Data: json.RawMessage(d)}); err != nil {
			t.Fatal(err)
		}
	}
	return s, sess.ID
}

// checkContract asserts what every answer must satisfy.
func checkContract(t *testing.T, s *server, rec *httptest.ResponseRecorder, before poll.Stats, what string) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s: %d %s", what, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var body struct {
			Error *struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
			t.Fatalf("%s: %d without the JSON error body: %q", what, rec.Code, rec.Body)
		}
		if got := s.hub.Stats(); got != before {
			t.Fatalf("%s: refused %d %s, yet Stats went from %+v to %+v", what, rec.Code, body.Error.Code, before, got)
		}
	}
}

// fuzzEndpoints are the requests whose query FuzzQueryParams fuzzes.
var fuzzEndpoints = []struct{ method, path, ctype, body string }{
	{"GET", "/data", "", ""},
	{"DELETE", "/session", "", ""},
	{"POST", "/send", ctJSON, `{"to":{"topic":"t"},"data":1}`},
	{"GET", "/presence", "", ""},
	{"GET", "/stats", "", ""},
	{"POST", "/push", ctJSON, `{"to":{"userId":"u"},"data":1}`},
	{"POST", "/connect", ctJSON, `{"deviceId":"e"}`},
	{"GET", "/healthz", "", ""},
}

func FuzzQueryParams(f *testing.F) {
	for _, q := range []string{
		"sessionId=SID", "sessionId=SID&cursor=1", "sessionId=SID&cursor=2&timeout=0", "sessionId=SID&cursor=3", "sessionId=SID&cursor=-1",
		"sessionId=SID&cursor=18446744073709551616", "sessionId=SID&timeout=NaN", "sessionId=SID&timeout=1e308", "sessionId=SID&timeout=-0",
		"sessionId=SID&timeout=0.0001&cursor=0", "sessionId=&cursor=1", "sessionId=SID&sessionId=x", "sessionId=%zz", "cursor=1",
		"sessionId=SID;cursor=1", "userId=u", "deviceId=d", "userId=u&deviceId=d", "userId=", "", "&&&", "sessionId=SID&cursor=%2B1",
	} {
		for i := range fuzzEndpoints {
			f.Add(uint8(i), q)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, query string) {
		ep := fuzzEndpoints[int(which)%len(fuzzEndpoints)]
		s, sid := fuzzServer(t, api.Config{})
		query = strings.ReplaceAll(query, "SID", sid)
		r := newRequest(ep.method, ep.path, ep.ctype, ep.body)
		r.URL.RawQuery = query
		r.RequestURI = ep.path + "?" + query
		before := s.hub.Stats()
		checkContract(t, s, s.serve(r), before, ep.method+" "+ep.path+"?"+query)
	})
}

// seedToken is a connect token signed with fuzzSecret that expires in
// 2100: sub alice, dev d1, topics a/* and b.
func seedToken() string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "dev": "d1", "topics": []string{"a/*", "b"}, "exp": 4102444800,
	}).SignedString([]byte(fuzzSecret))
	if err != nil {
		panic(err)
	}
	return "Bearer " + tok
}

func FuzzConnectRequest(f *testing.F) {
	tok := seedToken()
	for _, c := range []struct{ ctype, authz, body string }{
		{ctJSON, tok, `{"deviceId":"d1","topics":["a/x","b"]}`},
		{ctJSON, tok, `{"deviceId":"d1","userId":"alice","meta":{"k":[1,{"x":null}]}}`},
		{ctJSON, tok, `{"deviceId":"d2"}`},
		{ctJSON, tok, `{"deviceId":"d1","userId":"bob"}`},
		{ctJSON, tok, `{"deviceId":"d1","topics":["c"]}`},
		{ctForm, tok, "deviceId=d1&topics=a/1,a/2&topics=b"},
		{ctForm + "; charset=utf-8", tok, "deviceId=d1&meta=%7B%7D"},
		{ctJSON, "", `{"deviceId":"d1"}`},
		{ctJSON, "Bearer x.y.z", `{"deviceId":"d1"}`},
		{ctJSON, "Basic " + tok[7:], `{"deviceId":"d1"}`},
		{"text/plain", tok, `{"deviceId":"d1"}`},
		{ctJSON, tok, `{"deviceId":"d1"}}`},
		{ctJSON, tok, ``},
		{ctJSON, tok[:len(tok)-2], `{"deviceId":"d1"}`},
	} {
		f.Add(c.ctype, c.authz, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, ctype, authz string, body []byte) {
		v, err := auth.NewVerifier(auth.Config{Secrets: []string{fuzzSecret}})
		if err != nil {
			t.Fatal(err)
		}
		s := newServer(t, poll.Config{}, api.Config{Auth: v})
		r := newRequest("POST", "/connect", "", "")
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		r.Header["Content-Type"] = []string{ctype}
		r.Header["Authorization"] = []string{authz}
		before := s.hub.Stats()
		rec := s.serve(r)
		checkContract(t, s, rec, before, "connect")
		if rec.Code != http.StatusCreated {
			return
		}
		var cr connectResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &cr); err != nil {
			t.Fatal(err)
		}
		// Only a token signed with the secret gets here: the session is
		// what its claims say.
		var claims struct {
			Sub    string    `json:"sub"`
			Dev    string    `json:"dev"`
			Topics *[]string `json:"topics"`
			jwt.RegisteredClaims
		}
		if _, err := jwt.NewParser().ParseWithClaims(auth.BearerToken(authz), &claims, func(*jwt.Token) (any, error) { return []byte(fuzzSecret), nil }); err != nil {
			t.Fatalf("201 for token %q: %v", authz, err)
		}
		if cr.UserID != claims.Sub || claims.Dev != "" && cr.DeviceID != claims.Dev {
			t.Fatalf("session %s/%s from a token for %s/%s", cr.UserID, cr.DeviceID, claims.Sub, claims.Dev)
		}
		if claims.Topics == nil {
			return
		}
		for _, topic := range cr.Topics {
			allowed := false
			for _, p := range *claims.Topics {
				allowed = allowed || p == topic || strings.HasSuffix(p, "*") && strings.HasPrefix(topic, p[:len(p)-1])
			}
			if !allowed {
				t.Fatalf("topic %q outside the claim %v", topic, *claims.Topics)
			}
		}
	})
}

func FuzzPushRequest(f *testing.F) {
	for _, b := range []string{
		`{"to":{"sessionId":"SID"},"data":{"a":1},"id":"k"}`, `{"to":{"userId":"u"},"topic":"t","data":[1,"x",null]}`,
		`{"to":{"deviceId":"d"},"ttl":60,"data":"x"}`, `{"to":{"topic":"t"},"data":true}`, `{"data":"all"}`,
		`[{"to":{"sessionId":"SID"},"data":1},{"to":{"sessionId":"nope"},"data":2},{"to":{"deviceId":"off"},"data":3},{"data":4,"id":"k"},{"data":5,"id":"k"}]`,
		`[]`, `[{}]`, `[{"to":{"topic":"$presence"},"data":1}]`, `{"to":{"sessionId":"nope"},"data":1}`, `{"to":{"topic":"t"},"data":"\u2028<&>"}`,
		`{"to":{"userId":"u"},"data":1}}`, `{"to":null}`, `{"to":{"userId":null}}`, `[` + strings.Repeat(`{"data":0},`, 60) + `{"data":0}]`,
	} {
		f.Add(false, []byte(b))
		f.Add(true, []byte(b))
	}
	f.Fuzz(func(t *testing.T, send bool, body []byte) {
		s, sid := fuzzServer(t, api.Config{})
		body = bytes.ReplaceAll(body, []byte("SID"), []byte(sid))
		target := "/push"
		if send {
			target = "/send?sessionId=" + sid
		}
		before := s.hub.Stats()
		rec := s.serve(newRequest("POST", target, ctJSON, string(body)))
		checkContract(t, s, rec, before, "POST "+target)
		if rec.Code != http.StatusAccepted {
			return
		}
		// 202: one result for a single push, an array for a batch, and
		// each item is a result or an error object.
		var items []map[string]json.RawMessage
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			if err := json.Unmarshal(rec.Body.Bytes(), &items); err != nil {
				t.Fatalf("batch answer %s: %v", rec.Body, err)
			}
		} else {
			var one map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &one); err != nil {
				t.Fatalf("answer %s: %v", rec.Body, err)
			}
			items = append(items, one)
		}
		for _, it := range items {
			_, isErr := it["error"]
			_, isRes := it["id"]
			if isErr == isRes {
				t.Fatalf("item %v is neither a result nor an error", it)
			}
		}
	})
}

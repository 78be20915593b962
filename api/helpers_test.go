package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/internal/testwait"
	"github.com/longpoll/longpoll/poll"
)

// bound is how long any single step of a test may take before it fails
// (instead of hanging the suite).
const bound = 10 * time.Second

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
)

// knownBug skips a test that demonstrates a reported bug, so the suite stays
// green until it is fixed. LONGPOLL_SHOW_BUGS=1 runs it (and shows it fail).
func knownBug(t *testing.T, desc string) {
	t.Helper()
	if os.Getenv("LONGPOLL_SHOW_BUGS") == "" {
		t.Skip("BUG: " + desc)
	}
}

// server is one hub behind the HTTP edge, driven through e.ServeHTTP.
type server struct {
	hub *poll.Hub
	e   http.Handler
	sid string // a session a test case's setup created, substituted for {sid}
}

// newServer returns a server whose holds are not jittered (Jitter 1) unless
// acfg says otherwise. The hub is closed when the test ends, which answers
// every poll still parked.
func newServer(t *testing.T, pcfg poll.Config, acfg api.Config) *server {
	t.Helper()
	if acfg.Jitter == nil {
		acfg.Jitter = func() float64 { return 1 }
	}
	hub := poll.NewHub(pcfg)
	t.Cleanup(hub.Close)
	return &server{hub: hub, e: api.New(hub, acfg)}
}

// reqOpt adjusts a request before it is served.
type reqOpt func(*http.Request)

func remote(addr string) reqOpt { return func(r *http.Request) { r.RemoteAddr = addr } }

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func bearer(key string) reqOpt { return header("Authorization", "Bearer "+key) }

// chunked hides the body's length, as a chunked upload does.
func chunked() reqOpt { return func(r *http.Request) { r.ContentLength = -1 } }

// newRequest builds a request from loopback to localhost (so /push is
// allowed when no publish key is configured) unless an option says
// otherwise.
func newRequest(method, target, ctype, body string, opts ...reqOpt) *http.Request {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	r.Host = "localhost:8080" // a local publisher: loopback address and Host
	for _, o := range opts {
		o(r)
	}
	return r
}

// serve runs one request; safe to call from any goroutine.
func (s *server) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, r)
	return rec
}

// do runs one request and fails the test if it does not finish within bound.
func (s *server) do(t *testing.T, method, target, ctype, body string, opts ...reqOpt) *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	r := newRequest(method, target, ctype, body, opts...)
	go func() { done <- s.serve(r) }()
	return await(t, done, method+" "+target)
}

// await returns the response of a request running in another goroutine.
func await(t *testing.T, done <-chan *httptest.ResponseRecorder, what string) *httptest.ResponseRecorder {
	t.Helper()
	return testwait.Recv(t, done, what, bound)
}

// waitFor waits (bounded) until cond holds, failing the test after bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, bound, cond)
}

// park starts a long poll (60 s) on sid and returns once the hub counts it
// as parked; the channel yields its response.
func (s *server) park(t *testing.T, sid string) <-chan *httptest.ResponseRecorder {
	t.Helper()
	before := s.hub.Stats().Parked
	done := make(chan *httptest.ResponseRecorder, 1)
	r := newRequest(http.MethodGet, "/data?timeout=60&sessionId="+sid, "", "")
	go func() { done <- s.serve(r) }()
	waitFor(t, "the poll to park", func() bool { return s.hub.Stats().Parked == before+1 })
	return done
}

// connectResponse is the 201 body of POST /connect.
type connectResponse struct {
	SessionID   string          `json:"sessionId"`
	DeviceID    string          `json:"deviceId"`
	UserID      string          `json:"userId"`
	Topics      []string        `json:"topics"`
	Meta        json.RawMessage `json:"meta"`
	Cursor      *uint64         `json:"cursor"`
	PollTimeout *int64          `json:"pollTimeout"`
	SessionTTL  *int64          `json:"sessionTTL"`
}

// connect connects device (with user and topics) and returns its session ID.
func (s *server) connect(t *testing.T, device, user string, topics ...string) string {
	t.Helper()
	body := map[string]any{"deviceId": device}
	if user != "" {
		body["userId"] = user
	}
	if topics != nil {
		body["topics"] = topics
	}
	rec := s.do(t, http.MethodPost, "/connect", ctJSON, mustJSON(body))
	if rec.Code != http.StatusCreated {
		t.Fatalf("connect %s: %d %s", device, rec.Code, rec.Body)
	}
	var cr connectResponse
	decodeStrict(t, rec.Body.Bytes(), &cr)
	return cr.SessionID
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// result is a push result or a batch item.
type result struct {
	ID        string    `json:"id"`
	Delivered int       `json:"delivered"`
	Stored    int       `json:"stored"`
	Rejected  int       `json:"rejected"`
	Duplicate bool      `json:"duplicate"`
	Error     *apiError `json:"error"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// push publishes body (from loopback, no key) and returns the 202 result.
func (s *server) push(t *testing.T, body string, opts ...reqOpt) result {
	t.Helper()
	rec := s.do(t, http.MethodPost, "/push", ctJSON, body, opts...)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("push %s: %d %s", body, rec.Code, rec.Body)
	}
	var res result
	decodeStrict(t, rec.Body.Bytes(), &res)
	return res
}

// pushTo pushes data (a JSON value) to one session.
func (s *server) pushTo(t *testing.T, sid, data string) result {
	t.Helper()
	return s.push(t, `{"to":{"sessionId":"`+sid+`"},"data":`+data+`}`)
}

// message is one message of a poll response.
type message struct {
	Seq    uint64          `json:"seq"`
	ID     string          `json:"id"`
	Topic  string          `json:"topic"`
	From   string          `json:"from"`
	Data   json.RawMessage `json:"data"`
	SentAt string          `json:"sentAt"`
}

type pollResponse struct {
	Cursor   uint64    `json:"cursor"`
	Messages []message `json:"messages"`
}

// pollNow polls sid with timeout=0 and the given cursor ("" for none).
func (s *server) pollNow(t *testing.T, sid, cursor string) *httptest.ResponseRecorder {
	t.Helper()
	target := "/data?timeout=0&sessionId=" + sid
	if cursor != "" {
		target += "&cursor=" + cursor
	}
	return s.do(t, http.MethodGet, target, "", "")
}

// messages polls sid at once and returns the data of the pending messages
// (none for a 204), checking that seqs are consecutive and the cursor is the
// last one.
func (s *server) messages(t *testing.T, sid, cursor string) pollResponse {
	t.Helper()
	rec := s.pollNow(t, sid, cursor)
	return decodePoll(t, rec)
}

var sentAtRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func decodePoll(t *testing.T, rec *httptest.ResponseRecorder) pollResponse {
	t.Helper()
	switch rec.Code {
	case http.StatusNoContent:
		if rec.Body.Len() != 0 {
			t.Fatalf("204 with a body: %s", rec.Body)
		}
		return pollResponse{}
	case http.StatusOK:
	default:
		t.Fatalf("poll: %d %s", rec.Code, rec.Body)
	}
	wantJSONType(t, rec)
	var pr pollResponse
	decodeStrict(t, rec.Body.Bytes(), &pr)
	if len(pr.Messages) == 0 || len(pr.Messages) > poll.MaxBatch {
		t.Fatalf("200 with %d messages", len(pr.Messages))
	}
	for i, m := range pr.Messages {
		if i > 0 && m.Seq != pr.Messages[i-1].Seq+1 {
			t.Errorf("seqs not consecutive: %d after %d", m.Seq, pr.Messages[i-1].Seq)
		}
		if !strings.HasPrefix(m.ID, "m_") {
			t.Errorf("message id %q does not start with m_", m.ID)
		}
		if !sentAtRE.MatchString(m.SentAt) {
			t.Errorf("sentAt %q is not RFC 3339 UTC with milliseconds", m.SentAt)
		}
	}
	if last := pr.Messages[len(pr.Messages)-1].Seq; pr.Cursor != last {
		t.Errorf("cursor %d, want the last seq %d", pr.Cursor, last)
	}
	return pr
}

// datas returns the data of msgs as strings.
func datas(msgs []message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, string(m.Data))
	}
	return out
}

func seqs(msgs []message) []uint64 {
	out := []uint64{}
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func wantDatas(t *testing.T, what string, got pollResponse, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if g := datas(got.Messages); !slices.Equal(g, want) {
		t.Errorf("%s: data %v, want %v", what, g, want)
	}
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	if dec.More() {
		t.Fatalf("trailing data in %s", body)
	}
}

func wantJSONType(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	ct := rec.Header().Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ctJSON {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
}

// wantError checks rec is status with API.md's error body carrying code:
// exactly {"error":{"code":…,"message":…}}, JSON content type, non-empty
// message.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d (%s); body %s", rec.Code, status, code, rec.Body)
	}
	wantJSONType(t, rec)
	var body map[string]map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %s: %v", rec.Body, err)
	}
	inner, ok := body["error"]
	if len(body) != 1 || !ok || len(inner) != 2 {
		t.Fatalf("error body %s, want exactly {\"error\":{\"code\",\"message\"}}", rec.Body)
	}
	if got, _ := inner["code"].(string); got != code {
		t.Errorf("error code %q, want %q (body %s)", got, code, rec.Body)
	}
	if msg, _ := inner["message"].(string); msg == "" {
		t.Errorf("error without a message: %s", rec.Body)
	}
}

// errorMessage returns the message of an error body.
func errorMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct{ Error apiError }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %s: %v", rec.Body, err)
	}
	return body.Error.Message
}

// httpCase is one request against a fresh server.
type httpCase struct {
	name   string
	poll   poll.Config
	api    api.Config
	setup  func(t *testing.T, s *server) // may set s.sid
	method string
	target string // {sid} is replaced by s.sid
	ctype  string
	body   string // {sid} is replaced by s.sid
	opts   []reqOpt
	status int
	code   string // the error code when status >= 400
	check  func(t *testing.T, s *server, rec *httptest.ResponseRecorder)
	bug    string // known bug: skip unless LONGPOLL_SHOW_BUGS
}

func runCases(t *testing.T, cases []httpCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bug != "" {
				knownBug(t, tc.bug)
			}
			s := newServer(t, tc.poll, tc.api)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			target := strings.ReplaceAll(tc.target, "{sid}", s.sid)
			body := strings.ReplaceAll(tc.body, "{sid}", s.sid)
			rec := s.do(t, tc.method, target, tc.ctype, body, tc.opts...)
			if tc.status >= 400 {
				wantError(t, rec, tc.status, tc.code)
			} else if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.check != nil {
				tc.check(t, s, rec)
			}
		})
	}
}

// withSession is a setup that connects device "d" (user "u", topic "news").
func withSession(t *testing.T, s *server) { s.sid = s.connect(t, "d", "u", "news") }

// withMessages returns a setup that connects "d" and pushes n messages
// (data 1..n) to it.
func withMessages(n int) func(t *testing.T, s *server) {
	return func(t *testing.T, s *server) {
		withSession(t, s)
		for i := 1; i <= n; i++ {
			s.pushTo(t, s.sid, fmt.Sprint(i))
		}
	}
}

// wantStats compares the hub's counters.
// wantStats checks the hub's counts; StoredBytes only when want sets it.
func wantStats(t *testing.T, s *server, want poll.Stats) {
	t.Helper()
	got := s.hub.Stats()
	if want.StoredBytes == 0 {
		got.StoredBytes = 0
	}
	if want.Store == "" {
		want.Store = "memory"
	}
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

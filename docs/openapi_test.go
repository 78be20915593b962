package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/longpoll/longpoll/docs"
	"github.com/longpoll/longpoll/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// stringDecoder reads a body of a text type as one string.
func stringDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(body)
	return string(b), err
}

func init() {
	openapi3filter.RegisterBodyDecoder("text/html", stringDecoder)
	openapi3filter.RegisterBodyDecoder("text/javascript", stringDecoder)
}

// checker sends requests to real servers, validates each request and
// response against docs/openapi.yaml, and records which operation answered
// which status.
type checker struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	http   *http.Client

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path STATUS"
}

func newChecker(t *testing.T) *checker {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(docs.OpenAPI)
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.IsOpenAPI32OrLater() {
		t.Fatalf("openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	doc.Servers = nil // match paths on every test server's address
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &checker{t: t, doc: doc, router: router, http: &http.Client{Timeout: time.Minute}, seen: map[string]bool{}}
}

// exchange is one request of a test case.
type exchange struct {
	method, target string // target: path and query
	header         map[string]string
	body           string
	// status and code are the answer expected.
	status int
	code   string
	// invalid says the request breaks the document (a missing parameter,
	// a body outside its schema, a media type it does not list): request
	// validation must fail. Otherwise it must pass.
	invalid bool
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %s: %v", a.body, err)
	}
}

var validation = &openapi3filter.Options{
	AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	IncludeResponseStatus: true,
	MultiError:            true,
}

// do sends x to the server at base and checks it. It reports with
// t.Errorf, so it may run on another goroutine.
func (c *checker) do(base string, x exchange) answer {
	t := c.t
	t.Helper()
	name := x.method + " " + x.target
	newReq := func() *http.Request {
		var body io.Reader
		if x.body != "" {
			body = strings.NewReader(x.body)
		}
		req, err := http.NewRequest(x.method, base+x.target, body)
		if err != nil {
			panic(err)
		}
		for k, v := range x.header {
			if k == "Host" {
				req.Host = v
			}
			req.Header.Set(k, v)
		}
		return req
	}

	vreq := newReq()
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		t.Errorf("%s: no operation in openapi.yaml: %v", name, err)
		return answer{}
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: validation}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case x.invalid && reqErr == nil:
		t.Errorf("%s: the document accepts this request, but the server refuses it as %d %s", name, x.status, x.code)
	case !x.invalid && reqErr != nil:
		t.Errorf("%s: the document refuses this request: %v", name, reqErr)
	}

	res, err := c.http.Do(newReq())
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return answer{}
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	a := answer{res.StatusCode, res.Header, body}
	if a.status != x.status {
		t.Errorf("%s: status %d %s, want %d", name, a.status, trim(body), x.status)
		return a
	}
	if x.code != "" {
		var e struct{ Error struct{ Code string } }
		if json.Unmarshal(body, &e) != nil || e.Error.Code != x.code {
			t.Errorf("%s: body %s, want code %s", name, trim(body), x.code)
		}
	}
	if route.Operation.Responses.Value(strconv.Itoa(a.status)) == nil {
		t.Errorf("%s: status %d is not listed for %s %s", name, a.status, route.Method, route.Path)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: a.status, Header: a.header, Options: validation}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: the %d answer does not match the document: %v\nbody: %s", name, a.status, err, trim(body))
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, a.status)] = true
	c.mu.Unlock()
	return a
}

// unrouted checks an answer to a path or method the document has no
// operation for (404 not_found, 405 method_not_allowed) against the
// component response that describes it.
func (c *checker) unrouted(base, method, target, component string, status int) {
	t := c.t
	t.Helper()
	req, _ := http.NewRequest(method, base+target, nil)
	if _, _, err := c.router.FindRoute(req); err == nil {
		t.Errorf("%s %s has an operation; it is not an unrouted case", method, target)
	}
	res, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	ref := c.doc.Components.Responses[component]
	if ref == nil || res.StatusCode != status {
		t.Fatalf("%s %s: %d %s (component %s)", method, target, res.StatusCode, body, component)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s %s: %s", method, target, body)
	}
	if err := ref.Value.Content.Get("application/json").Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s %s: %s does not match components/responses/%s: %v", method, target, body, component, err)
	}
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

const (
	ctJSON = "application/json"
	key    = "pk-0123456789abcdef"
	secret = "openapi-test-secret-of-32-bytes-or-more"
)

func jsonHeader() map[string]string { return map[string]string{"Content-Type": ctJSON} }

func withHeader(h map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range h {
		out[a] = b
	}
	out[k] = v
	return out
}

func (c *checker) connect(base, device string) string {
	c.t.Helper()
	a := c.do(base, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"` + device + `"}`, status: 201})
	var s struct{ SessionID string }
	a.json(c.t, &s)
	return s.SessionID
}

// parked waits until the server at base has n parked polls.
func parked(t *testing.T, base string, n int, auth string) {
	testserver.WaitFor(t, fmt.Sprintf("%d parked polls", n), 30*time.Second, func() bool {
		req, _ := http.NewRequest("GET", base+"/stats", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var st struct{ Parked int }
		json.NewDecoder(res.Body).Decode(&st)
		return st.Parked == n
	})
}

// TestOpenAPIMatchesTheServer sends every endpoint its successful requests
// and the requests that provoke each error status, on servers started with
// the flags each needs, and validates every request and answer against
// docs/openapi.yaml. Then it checks that every status the document lists
// was seen (but for the few named with the reason they cannot be
// provoked here).
func TestOpenAPIMatchesTheServer(t *testing.T) {
	c := newChecker(t)
	hb := []string{"--heartbeat-interval", "0"}

	// A: defaults.
	a := testserver.Start(t, hb...).URL
	sid := c.connect(a, "lamp-1")
	c.do(a, exchange{method: "POST", target: "/connect", header: jsonHeader(), status: 201,
		body: `{"deviceId":"lamp-2","userId":"alice","topics":["home/kitchen","$presence"],"meta":{"fw":"1.2"}}`})
	c.do(a, exchange{method: "POST", target: "/connect", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 201,
		body: "deviceId=lamp-3&userId=alice&topics=home%2Fkitchen"})
	c.do(a, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"userId":"alice"}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"bad id"}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"d","topics":["$secret"]}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"d","colour":"red"}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/connect", header: map[string]string{"Content-Type": "text/plain"}, body: `deviceId=d`, status: 415, code: "unsupported_media_type", invalid: true})
	// sizes are not schema constraints: the request is valid by the document
	c.do(a, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"d","meta":{"x":"` + strings.Repeat("x", 70<<10) + `"}}`, status: 413, code: "payload_too_large"})
	c.do(a, exchange{method: "POST", target: "/connect", header: map[string]string{"Content-Type": ctJSON, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		body: `{"deviceId":"d"}`, status: 403, code: "forbidden"})

	// push, single and batch, and what they deliver
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202,
		body: `{"to":{"sessionId":"` + sid + `"},"topic":"alerts","data":{"text":"door open"},"ttl":60,"id":"once"}`})
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202, body: `{"to":{"sessionId":"` + sid + `"},"data":1,"id":"once"}`}) // duplicate
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202,
		body: `[{"to":{"deviceId":"lamp-1"},"data":[1,2]},{"to":{"userId":"bob"},"data":null},{"to":{"topic":"home/kitchen"},"topic":"$x","data":"s"},{"data":true}]`})
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202, body: `[]`})
	// a batch item refused while applying: an error in its place, 202
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202,
		body: `[{"to":{"sessionId":"gone"},"data":1},{"to":{"topic":"no/subscribers"},"data":2}]`})
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"to":{"userId":"a","deviceId":"b"},"data":1}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"to":null,"data":1}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"data":1,"ttl":0}`, status: 400, code: "invalid_payload", invalid: true})

	// Bayeux: a handshake, a subscribe and publish batched, a connect that
	// delivers, the typed path, a form, and bodies that are not Bayeux.
	hs := c.do(a, exchange{method: "POST", target: "/bayeux", header: jsonHeader(), status: 200,
		body: `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1","ext":{"ack":true,"deviceId":"cometd-1"}}]`})
	var hsReply []struct{ ClientID string }
	if err := json.Unmarshal(hs.body, &hsReply); err != nil || len(hsReply) != 1 || hsReply[0].ClientID == "" {
		t.Fatalf("bayeux handshake: %s", hs.body)
	}
	cid := hsReply[0].ClientID
	c.do(a, exchange{method: "POST", target: "/bayeux", header: jsonHeader(), status: 200,
		body: `[{"channel":"/meta/subscribe","clientId":"` + cid + `","subscription":["/home/*"],"id":2},{"channel":"/home/kitchen","clientId":"` + cid + `","data":{"light":"on"}},{"channel":"/a b","data":1}]`})
	c.do(a, exchange{method: "POST", target: "/bayeux/connect", header: jsonHeader(), status: 200,
		body: `[{"channel":"/meta/connect","clientId":"` + cid + `","connectionType":"long-polling","advice":{"timeout":0},"ext":{"ack":0}}]`})
	c.do(a, exchange{method: "POST", target: "/bayeux", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 200,
		body: "message=" + url.QueryEscape(`{"channel":"/meta/disconnect","clientId":"`+cid+`"}`)})
	c.do(a, exchange{method: "POST", target: "/bayeux", header: jsonHeader(), body: `[]`, status: 400, invalid: true})
	c.do(a, exchange{method: "POST", target: "/bayeux/connect", header: jsonHeader(), body: `{"channel":`, status: 400, invalid: true})
	c.do(a, exchange{method: "POST", target: "/bayeux/", header: jsonHeader(), body: `{"channel":`, status: 400, invalid: true})
	c.do(a, exchange{method: "POST", target: "/bayeux/", header: jsonHeader(), body: `[{"channel":"/meta/handshake","version":"1.0"},{"channel":"/x","data":1}]`, status: 200})
	c.do(a, exchange{method: "POST", target: "/bayeux", header: map[string]string{"Content-Type": "text/plain"}, body: `hello`, status: 400})
	for _, path := range []string{"/bayeux", "/bayeux/", "/bayeux/publish"} {
		c.do(a, exchange{method: "POST", target: path, header: jsonHeader(), body: `[` + strings.Repeat(" ", 8<<20) + `]`, status: 413, invalid: true})
	}
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"to":{"sessionId":"gone"},"data":1}`, status: 404, code: "session_not_found"})
	c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"data":"` + strings.Repeat("x", 70<<10) + `"}`, status: 413, code: "payload_too_large"})
	c.do(a, exchange{method: "POST", target: "/push", body: `{"data":1}`, status: 415, code: "unsupported_media_type", invalid: true})

	// polls: 200 at once, 204, the errors
	c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=0", status: 200})
	c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=3&timeout=0", status: 204})
	c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=3&timeout=0.2", status: 204})
	c.do(a, exchange{method: "GET", target: "/data?cursor=0", status: 400, code: "missing_session_id", invalid: true})
	c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=abc", status: 400, code: "invalid_cursor", invalid: true})
	c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=99&timeout=0", status: 400, code: "invalid_cursor"})
	c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&timeout=-1", status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "GET", target: "/data?sessionId=nope&timeout=0", status: 404, code: "session_not_found"})

	// a parked poll answered by a push (200), superseded (409), closed (410)
	for _, end := range []struct {
		status int
		code   string
		do     func()
	}{
		{200, "", func() {
			c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202, body: `{"to":{"deviceId":"lamp-1"},"data":"wake"}`})
		}},
		{409, "superseded", func() {
			c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=3&timeout=0", status: 204})
		}},
		{410, "session_closed", func() {
			c.do(a, exchange{method: "DELETE", target: "/session?sessionId=" + sid + "&cursor=3", status: 204})
		}},
	} {
		got := make(chan struct{})
		go func() {
			defer close(got)
			c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=3&timeout=30", status: end.status, code: end.code})
		}()
		parked(t, a, 1, "")
		end.do()
		<-got
		if end.status == 200 { // acknowledge it
			c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=4&timeout=0", status: 204})
			sid = c.connect(a, "lamp-1") // cursor back to 0 in a new session
			c.do(a, exchange{method: "POST", target: "/push", header: jsonHeader(), status: 202, body: `[{"to":{"sessionId":"` + sid + `"},"data":1},{"to":{"sessionId":"` + sid + `"},"data":2},{"to":{"sessionId":"` + sid + `"},"data":3}]`})
			c.do(a, exchange{method: "GET", target: "/data?sessionId=" + sid + "&cursor=3&timeout=0", status: 204})
		}
	}

	// send
	bob := c.connect(a, "phone-1")
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: jsonHeader(), status: 202, body: `{"to":{"userId":"alice"},"topic":"chat","data":{"text":"hi"}}`})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: jsonHeader(), status: 202, body: `[{"to":{"deviceId":"lamp-2"},"data":1,"ttl":60,"id":"s1"}]`})
	c.do(a, exchange{method: "POST", target: "/send", header: jsonHeader(), body: `{"to":{"userId":"alice"},"data":1}`, status: 400, code: "missing_session_id", invalid: true})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: jsonHeader(), body: `{"data":1}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: jsonHeader(), body: `{"to":{"sessionId":"x"},"data":1}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: jsonHeader(), body: `{"to":{"topic":"$presence"},"data":1}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=gone", header: jsonHeader(), body: `{"to":{"userId":"alice"},"data":1}`, status: 404, code: "session_not_found"})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: jsonHeader(), body: `{"to":{"userId":"alice"},"data":"` + strings.Repeat("x", 70<<10) + `"}`, status: 413, code: "payload_too_large"})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: map[string]string{"Content-Type": "text/plain"}, body: `hi`, status: 415, code: "unsupported_media_type", invalid: true})
	c.do(a, exchange{method: "POST", target: "/send?sessionId=" + bob, header: map[string]string{"Content-Type": ctJSON, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		body: `{"to":{"userId":"alice"},"data":1}`, status: 403, code: "forbidden"})

	// presence, stats, disconnect, delete
	c.do(a, exchange{method: "GET", target: "/presence?userId=alice", status: 200})
	c.do(a, exchange{method: "GET", target: "/presence?deviceId=nobody", status: 200})
	c.do(a, exchange{method: "GET", target: "/presence", status: 400, code: "invalid_payload"})
	c.do(a, exchange{method: "GET", target: "/stats", status: 200})
	c.do(a, exchange{method: "POST", target: "/disconnect", header: jsonHeader(), body: `{"userId":"alice"}`, status: 200})
	c.do(a, exchange{method: "POST", target: "/disconnect", header: jsonHeader(), body: `{"userId":"a","deviceId":"b"}`, status: 400, code: "invalid_payload", invalid: true})
	c.do(a, exchange{method: "POST", target: "/disconnect", header: jsonHeader(), body: `{"userId":"` + strings.Repeat("a", 5000) + `"}`, status: 413, code: "payload_too_large", invalid: true})
	c.do(a, exchange{method: "POST", target: "/disconnect", header: map[string]string{"Content-Type": "text/plain"}, body: `alice`, status: 415, code: "unsupported_media_type", invalid: true})
	c.do(a, exchange{method: "DELETE", target: "/session?sessionId=" + bob + "&cursor=99", status: 400, code: "invalid_cursor"})
	c.do(a, exchange{method: "DELETE", target: "/session", status: 400, code: "missing_session_id", invalid: true})
	c.do(a, exchange{method: "DELETE", target: "/session?sessionId=" + bob, status: 204})
	c.do(a, exchange{method: "DELETE", target: "/session?sessionId=" + bob, status: 404, code: "session_not_found"})
	c.do(a, exchange{method: "DELETE", target: "/session?sessionId=x", header: map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, status: 403, code: "forbidden"})

	// operations
	c.do(a, exchange{method: "GET", target: "/healthz", status: 200})
	c.do(a, exchange{method: "GET", target: "/metrics", status: 200})
	c.do(a, exchange{method: "GET", target: "/", status: 200})
	c.do(a, exchange{method: "GET", target: "/longpoll.js", status: 200})
	c.do(a, exchange{method: "HEAD", target: "/", status: 200})
	c.do(a, exchange{method: "GET", target: "/favicon.ico", status: 204})
	openapiServed := false
	if res, err := http.Get(a + "/openapi.yaml"); err == nil {
		res.Body.Close()
		openapiServed = res.StatusCode != http.StatusNotFound
	}
	if openapiServed {
		got := c.do(a, exchange{method: "GET", target: "/openapi.yaml", status: 200})
		if !bytes.Equal(got.body, docs.OpenAPI) {
			t.Error("GET /openapi.yaml does not serve docs.OpenAPI")
		}
	}
	c.unrouted(a, "GET", "/no-such-path", "NotFound", 404)
	c.unrouted(a, "PUT", "/push", "MethodNotAllowed", 405)
	c.unrouted(a, "DELETE", "/data", "MethodNotAllowed", 405)

	// B: a publish key: 401 for the publisher endpoints without it.
	b := testserver.Start(t, append(hb, "--publish-key", key)...).URL
	for _, x := range []exchange{
		{method: "POST", target: "/push", header: jsonHeader(), body: `{"data":1}`},
		{method: "GET", target: "/presence?userId=alice"},
		{method: "GET", target: "/stats"},
		{method: "POST", target: "/disconnect", header: jsonHeader(), body: `{"userId":"alice"}`},
	} {
		x.status, x.code = 401, "unauthorized"
		c.do(b, x)
		x.header = withHeader(x.header, "Authorization", "Bearer wrong")
		c.do(b, x)
	}
	c.do(b, exchange{method: "GET", target: "/stats", header: map[string]string{"Authorization": "Bearer " + key}, status: 200})

	// C: behind a trusted proxy: the client address is X-Forwarded-For's,
	// so a publisher without key from elsewhere is refused, and so is a
	// denied network on the client endpoints; CORS preflights.
	cs := testserver.Start(t, append(hb, "--trust-proxy", "127.0.0.1", "--deny-cidr", "203.0.113.0/24", "--cors-origins", "https://app.example")...).URL
	away := map[string]string{"X-Forwarded-For": "198.51.100.7"}
	denied := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	csid := c.connect(cs, "proxied")
	for _, x := range []exchange{
		{method: "POST", target: "/push", header: withHeader(away, "Content-Type", ctJSON), body: `{"data":1}`},
		{method: "GET", target: "/presence?userId=alice", header: away},
		{method: "GET", target: "/stats", header: away},
		{method: "POST", target: "/disconnect", header: withHeader(away, "Content-Type", ctJSON), body: `{"userId":"alice"}`},
		{method: "POST", target: "/connect", header: withHeader(denied, "Content-Type", ctJSON), body: `{"deviceId":"d"}`},
		{method: "GET", target: "/data?timeout=0&sessionId=" + csid, header: denied},
		{method: "POST", target: "/send?sessionId=" + csid, header: withHeader(denied, "Content-Type", ctJSON), body: `{"to":{"userId":"u"},"data":1}`},
		{method: "DELETE", target: "/session?sessionId=" + csid, header: denied},
		{method: "POST", target: "/bayeux", header: withHeader(denied, "Content-Type", ctJSON), body: `[{"channel":"/meta/handshake","version":"1.0"}]`},
		{method: "POST", target: "/bayeux/handshake", header: withHeader(denied, "Content-Type", ctJSON), body: `[{"channel":"/meta/handshake","version":"1.0"}]`},
		{method: "POST", target: "/bayeux/", header: withHeader(denied, "Content-Type", ctJSON), body: `[{"channel":"/meta/handshake","version":"1.0"}]`},
	} {
		x.status, x.code = 403, "forbidden"
		c.do(cs, x)
	}
	for _, path := range []string{"/connect", "/data", "/send", "/session", "/bayeux", "/bayeux/", "/bayeux/connect"} {
		method := map[string]string{"/connect": "POST", "/data": "GET", "/send": "POST", "/session": "DELETE", "/bayeux": "POST", "/bayeux/": "POST", "/bayeux/connect": "POST"}[path]
		c.do(cs, exchange{method: "OPTIONS", target: path, header: map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": method}, status: 204})
		c.do(cs, exchange{method: "OPTIONS", target: path, header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": method}, status: 403, code: "forbidden"})
		c.do(cs, exchange{method: "OPTIONS", target: path, status: 204})
	}

	// D: connect tokens.
	d := testserver.StartEnv(t, []string{"LONGPOLL_CONNECT_SECRET=" + secret}, hb...).URL
	c.do(d, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"tv"}`, status: 401, code: "unauthorized"})
	tok := testserver.SignHS256(secret, map[string]any{"sub": "frank", "exp": time.Now().Add(time.Hour).Unix(), "topics": []string{"home/*"}})
	bearer := withHeader(jsonHeader(), "Authorization", "Bearer "+tok)
	c.do(d, exchange{method: "POST", target: "/connect", header: bearer, body: `{"deviceId":"tv","topics":["office"]}`, status: 403, code: "forbidden"})
	got := c.do(d, exchange{method: "POST", target: "/connect", header: bearer, body: `{"deviceId":"tv","topics":["home/den"]}`, status: 201})
	var dsess struct{ SessionID string }
	got.json(t, &dsess)
	c.do(d, exchange{method: "POST", target: "/send?sessionId=" + dsess.SessionID, header: jsonHeader(), body: `{"to":{"topic":"office"},"data":1}`, status: 403, code: "forbidden"})

	// E: limits: a session cap, rate limits, a poll cap, a small mailbox.
	e1 := testserver.Start(t, append(hb, "--max-sessions", "1")...).URL
	c.connect(e1, "only")
	c.do(e1, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"second"}`, status: 503, code: "unavailable"})
	e2 := testserver.Start(t, append(hb, "--connect-rate", "0.01", "--connect-burst", "2", "--send-rate", "0.01", "--send-burst", "1", "--max-parked-per-ip", "1", "--max-mailbox", "1")...).URL
	s1, s2 := c.connect(e2, "e1"), c.connect(e2, "e2")
	limited := c.do(e2, exchange{method: "POST", target: "/connect", header: jsonHeader(), body: `{"deviceId":"e3"}`, status: 429, code: "rate_limited"})
	if limited.header.Get("Retry-After") == "" {
		t.Error("429 rate_limited without Retry-After")
	}
	c.do(e2, exchange{method: "POST", target: "/send?sessionId=" + s1, header: jsonHeader(), body: `{"to":{"deviceId":"e2"},"data":1}`, status: 202})
	c.do(e2, exchange{method: "POST", target: "/send?sessionId=" + s1, header: jsonHeader(), body: `{"to":{"deviceId":"e2"},"data":1}`, status: 429, code: "rate_limited"})
	c.do(e2, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"to":{"deviceId":"e2"},"data":2}`, status: 429, code: "mailbox_full"})
	c.do(e2, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `[{"to":{"deviceId":"e2"},"data":2}]`, status: 202}) // the item's error in a 202
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.do(e2, exchange{method: "GET", target: "/data?timeout=30&sessionId=" + s1, status: 200})
	}()
	parked(t, e2, 1, "")
	c.do(e2, exchange{method: "GET", target: "/data?timeout=0&sessionId=" + s2, status: 429, code: "rate_limited"})
	c.do(e2, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"to":{"deviceId":"e1"},"data":3}`, status: 202})
	<-done

	// G: the stored-message budget (--max-stored-bytes, issue #13), when
	// the binary has it: a push that would store past it is refused 503.
	help, _ := exec.Command(testserver.Binary(t), "--help").CombinedOutput()
	storeBudget := strings.Contains(string(help), "max-stored-bytes")
	if storeBudget {
		g := testserver.Start(t, append(hb, "--max-stored-bytes", "4096")...).URL
		gsid := c.connect(g, "sender")
		big := `"` + strings.Repeat("x", 8<<10) + `"`
		c.do(g, exchange{method: "POST", target: "/push", header: jsonHeader(), body: `{"to":{"deviceId":"offline"},"data":` + big + `}`, status: 503, code: "unavailable"})
		c.do(g, exchange{method: "POST", target: "/send?sessionId=" + gsid, header: jsonHeader(), body: `{"to":{"deviceId":"offline"},"data":` + big + `}`, status: 503, code: "unavailable"})
	}

	// F: oversized headers, on every operation.
	bayeuxBody := `[{"channel":"/meta/handshake","version":"1.0"}]`
	validBody := map[string]string{"/connect": `{"deviceId":"d"}`, "/push": `{"data":1}`, "/send": `{"to":{"userId":"u"},"data":1}`, "/disconnect": `{"userId":"u"}`,
		"/bayeux": bayeuxBody, "/bayeux/{type}": bayeuxBody}
	f := testserver.Start(t, append(hb, "--max-header-bytes", "4096")...).URL
	pad := map[string]string{"X-Pad": strings.Repeat("p", 6000)}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Responses.Value("431") == nil {
				continue
			}
			target := strings.Replace(path, "{type}", "handshake", 1)
			if slices.ContainsFunc(op.Parameters, func(p *openapi3.ParameterRef) bool { return p.Value.Name == "sessionId" }) {
				target += "?sessionId=x"
			}
			x := exchange{method: method, target: target, header: pad, status: 431, code: "header_too_large"}
			if op.RequestBody != nil {
				x.header, x.body = withHeader(pad, "Content-Type", ctJSON), validBody[path]
			}
			if path == "/openapi.yaml" && !openapiServed {
				continue
			}
			c.do(f, x)
		}
	}

	// Every status the document lists was seen, but these:
	cannot := map[string]string{
		"GET /healthz 503": "answered only while the server drains, a window of milliseconds after SIGTERM",
	}
	if !storeBudget {
		cannot["POST /push 503"] = "needs --max-stored-bytes (issue #13), which this binary does not have"
		cannot["POST /send 503"] = cannot["POST /push 503"]
	}
	if !openapiServed {
		cannot["GET /openapi.yaml 200"] = "the server does not serve GET /openapi.yaml yet"
		cannot["GET /openapi.yaml 431"] = cannot["GET /openapi.yaml 200"]
	}
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				k := fmt.Sprintf("%s %s %s", method, path, status)
				if c.seen[k] {
					continue
				}
				if why, ok := cannot[k]; ok {
					t.Logf("not provoked: %s (%s)", k, why)
					continue
				}
				missing = append(missing, k)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("statuses listed in openapi.yaml that no request here produced:\n%s", strings.Join(missing, "\n"))
	}
}

// TestOpenAPIIsServed: GET /openapi.yaml serves this document. It skips,
// saying so, while the server has no such route.
func TestOpenAPIIsServed(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0")
	res, err := http.Get(s.URL + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		t.Skip("GET /openapi.yaml answers 404: the route serving docs.OpenAPI is not wired yet")
	}
	if res.StatusCode != 200 || !bytes.Equal(body, docs.OpenAPI) || !strings.Contains(res.Header.Get("Content-Type"), "yaml") {
		t.Fatalf("GET /openapi.yaml: %d %q, %d bytes (want docs.OpenAPI, %d bytes)", res.StatusCode, res.Header.Get("Content-Type"), len(body), len(docs.OpenAPI))
	}
}

// routeCall matches a route registration in the api package:
// e.GET("/path", …) and the like, and client(http.MethodPost, "/path", …).
var routeCall = regexp.MustCompile(`\.(GET|POST|PUT|DELETE|PATCH)\("(/[^"*]*)"|client\(http\.Method(\w+), "(/[^"]*)"`)

// pathParam is a path parameter in an echo route.
var pathParam = regexp.MustCompile(`:(\w+)`)

// TestOpenAPIListsEveryRoute reads the routes the api package registers
// and checks that the document has an operation for each, so that a new
// endpoint cannot be left out of it.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	c := newChecker(t)
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/longpoll/longpoll/api").Output()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range routeCall.FindAllStringSubmatch(string(src), -1) {
			method, path := m[1], m[2]
			if method == "" {
				method, path = strings.ToUpper(m[3]), m[4]
			}
			path = pathParam.ReplaceAllString(path, "{$1}") // echo's :name is OpenAPI's {name}
			if len(path) > 1 {
				path = strings.TrimSuffix(path, "/") // "/bayeux/" is "/bayeux" to the document's router
			}
			n++
			if item := c.doc.Paths.Value(path); item == nil || item.GetOperation(method) == nil {
				t.Errorf("%s: the server routes %s %s; openapi.yaml has no such operation", filepath.Base(f), method, path)
			}
		}
	}
	if n < 9 {
		t.Fatalf("found %d route registrations in the api package, want at least 9: update routeCall to how routes are registered now", n)
	}
}

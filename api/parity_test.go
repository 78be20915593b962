package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// parityKey is the publish key of the parity configurations that have one.
const parityKey = "parity-publish-key-0123456789"

// parityCase is one request of TestRawPathParity, sent once through each
// transport after setup has made the same state for it.
type parityCase struct {
	name   string
	setup  func(t *testing.T, p *parkServer) map[string]string // vars for the templates; may be nil
	method string
	target string // {name} is replaced by a var
	header string // extra header lines, each ending in CRLF
	body   string
	// park, when set, is called once the request is parked, to end the
	// hold (a push, a newer poll, a disconnect); the answer is compared.
	park func(t *testing.T, p *parkServer, vars map[string]string)
	// echoOnly marks a request the raw path hands to net/http (a refusal
	// before the body): answered by echo on both connections.
	echoOnly bool
}

// TestRawPathParity sends one table of requests (polls and pushes, good
// and bad, with and without publish keys, network filters, poll caps and
// CORS) through both transports: as the first request of a fresh
// connection, which net/http reads and echo serves, and as a later
// request on a connection the API has taken over, which the raw path
// serves. Status, every header but Date, and body (message IDs and
// times aside) must be equal: a header set on one path only fails it.
func TestRawPathParity(t *testing.T) {
	withSession := func(msgs int) func(t *testing.T, p *parkServer) map[string]string {
		return func(t *testing.T, p *parkServer) map[string]string {
			sid := p.connect(t, "lamp-"+strconv.Itoa(int(p.net.Load()))+"-"+randSuffix())
			for i := range msgs {
				if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Topic: "t", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}); err != nil {
					t.Fatal(err)
				}
			}
			return map[string]string{"sid": sid}
		}
	}
	publish := func(t *testing.T, p *parkServer, vars map[string]string) {
		if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: vars["sid"]}, Data: []byte(`"late"`)}); err != nil {
			t.Fatal(err)
		}
	}
	disconnect := func(t *testing.T, p *parkServer, vars map[string]string) {
		if err := p.hub.Disconnect(vars["sid"], 0, false); err != nil {
			t.Fatal(err)
		}
	}
	supersede := func(t *testing.T, p *parkServer, vars map[string]string) {
		msgs, err := p.hub.Poll(canceled(), vars["sid"], 0, false)
		if err != nil || len(msgs) != 0 {
			t.Fatalf("superseding poll: %v %v", msgs, err)
		}
	}
	key := "Authorization: Bearer " + parityKey + "\r\n"
	polls := []parityCase{
		{name: "poll: messages waiting", setup: withSession(2), method: "GET", target: "/data?sessionId={sid}&timeout=0"},
		{name: "poll: nothing waiting (204)", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&timeout=0&cursor=0"},
		{name: "poll: acknowledged, the rest", setup: withSession(2), method: "GET", target: "/data?sessionId={sid}&cursor=1&timeout=0", header: "User-Agent: gw/1\r\nAccept: */*\r\n"},
		{name: "poll: no sessionId", method: "GET", target: "/data?timeout=0"},
		{name: "poll: cursor not a number", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&cursor=x"},
		{name: "poll: cursor beyond the newest", setup: withSession(1), method: "GET", target: "/data?sessionId={sid}&cursor=9"},
		{name: "poll: bad timeout", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&timeout=-1"},
		{name: "poll: unknown session", method: "GET", target: "/data?sessionId=nobody-0123456789abcdef&timeout=0"},
		{name: "poll: parked, then a message", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&timeout=20", park: publish},
		{name: "poll: parked, then superseded", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&timeout=20", park: supersede},
		{name: "poll: parked, then disconnected", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&timeout=20", park: disconnect},
	}
	pushes := func(auth string) []parityCase {
		return []parityCase{
			{name: "push: one", setup: withSession(0), method: "POST", target: "/push", header: auth, body: `{"to":{"sessionId":"{sid}"},"topic":"a","data":{"x":1}}`},
			{name: "push: a batch", setup: withSession(0), method: "POST", target: "/push", header: auth,
				body: `[{"to":{"sessionId":"{sid}"},"data":1},{"to":{"sessionId":"nobody-0123456789"},"data":2},{"data":3,"id":"k1"}]`},
			{name: "push: broadcast, idempotent", setup: withSession(0), method: "POST", target: "/push", header: auth, body: `{"data":"all","id":"once"}`},
			{name: "push: malformed", method: "POST", target: "/push", header: auth, body: `{"to":`},
			{name: "push: bad batch item", method: "POST", target: "/push", header: auth, body: `[{"data":1},{"ttl":0}]`},
			{name: "push: unknown session", method: "POST", target: "/push", header: auth, body: `{"to":{"sessionId":"nobody-0123456789"},"data":1}`},
			{name: "push: data over 64 KiB", method: "POST", target: "/push", header: auth, body: `{"data":"` + strings.Repeat("x", poll.MaxDataBytes) + `"}`},
			{name: "push: mailbox full", setup: withSession(2), method: "POST", target: "/push", header: auth, body: `{"to":{"sessionId":"{sid}"},"data":1}`},
		}
	}
	configs := []struct {
		name  string
		cfg   api.Config
		cases []parityCase
	}{
		{"no publish key", api.Config{}, append(append([]parityCase{}, polls...), pushes("")...)},
		{"publish keys", api.Config{PublishKeys: []string{parityKey}}, append(pushes(key),
			parityCase{name: "push: wrong key", method: "POST", target: "/push", header: "Authorization: Bearer wrong-0123456789\r\n", body: `{"data":1}`, echoOnly: true},
			parityCase{name: "push: no key", method: "POST", target: "/push", body: `{"data":1}`, echoOnly: true},
			parityCase{name: "poll: no key needed", setup: withSession(1), method: "GET", target: "/data?sessionId={sid}&timeout=0"},
		)},
		{"network filter and CORS", api.Config{DenyNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, CORSOrigins: []string{"https://app.example"}}, []parityCase{
			{name: "poll: denied network", setup: withSession(1), method: "GET", target: "/data?sessionId={sid}&timeout=0"},
			{name: "push: publishers are not filtered", setup: withSession(0), method: "POST", target: "/push", body: `{"to":{"sessionId":"{sid}"},"data":1}`},
		}},
		{"poll cap and CORS", api.Config{MaxParkedPerIP: 2, CORSOrigins: []string{"*"}}, []parityCase{
			{name: "poll: under the cap", setup: withSession(1), method: "GET", target: "/data?sessionId={sid}&timeout=0"},
			{name: "poll: parked under the cap", setup: withSession(0), method: "GET", target: "/data?sessionId={sid}&timeout=20", park: publish},
			{name: "poll: over the cap", setup: func(t *testing.T, p *parkServer) map[string]string {
				vars := withSession(0)(t, p)
				for range 2 { // two polls parked from this address fill the cap
					c := dialRaw(t, p.addr)
					c.send("GET", "/data?timeout=30&sessionId="+withSession(0)(t, p)["sid"], "")
				}
				waitUntil(t, "two polls parked", func() bool { return p.hub.Stats().Parked == 2 })
				return vars
			}, method: "GET", target: "/data?sessionId={sid}&timeout=0"},
		}},
	}
	for _, cf := range configs {
		t.Run(cf.name, func(t *testing.T) {
			for _, tc := range cf.cases {
				t.Run(tc.name, func(t *testing.T) {
					echoRes, echoBody := parityRound(t, cf.cfg, tc, false)
					rawRes, rawBody := parityRound(t, cf.cfg, tc, true)
					if echoRes.StatusCode != rawRes.StatusCode {
						t.Errorf("status: echo %d, raw %d", echoRes.StatusCode, rawRes.StatusCode)
					}
					eh, rh := echoRes.Header.Clone(), rawRes.Header.Clone()
					eh.Del("Date")
					rh.Del("Date")
					if !reflect.DeepEqual(eh, rh) {
						t.Errorf("headers:\necho %v\nraw  %v", eh, rh)
					}
					if e, r := normalizeBody(echoBody), normalizeBody(rawBody); e != r {
						t.Errorf("body:\necho %q\nraw  %q", e, r)
					}
				})
			}
		})
	}
}

// parityRound runs tc on a server of its own with cfg: on a fresh
// connection (echo), or (raw) on a connection taken over after a first
// push, checking that net/http did not serve the request unless it is
// echoOnly.
func parityRound(t *testing.T, cfg api.Config, tc parityCase, raw bool) (*http.Response, string) {
	t.Helper()
	p := newParityServer(t, cfg)
	// Both rounds have the warm-up session with its one message (a
	// broadcast reaches it too); the raw round pushed it on the
	// connection, which the API then took over.
	warm := p.connect(t, "warm-up")
	warmBody := `{"to":{"sessionId":"` + warm + `"},"data":0}`
	c := dialRaw(t, p.addr)
	if !raw {
		if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: warm}, Data: []byte("0")}); err != nil {
			t.Fatal(err)
		}
	} else {
		body := warmBody
		auth := ""
		if len(cfg.PublishKeys) > 0 {
			auth = "Authorization: Bearer " + parityKey + "\r\n"
		}
		fmt.Fprintf(c.conn, "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s", len(body), auth, body)
		if res, b := c.read(); res.StatusCode != 202 {
			t.Fatalf("warm-up push: %d %q", res.StatusCode, b)
		}
	}
	vars := map[string]string{}
	if tc.setup != nil {
		vars = tc.setup(t, p)
	}
	fill := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, "{"+k+"}", v)
		}
		return s
	}
	before := p.net.Load()
	body := fill(tc.body)
	head := tc.method + " " + fill(tc.target) + " HTTP/1.1\r\nHost: localhost\r\n" + tc.header
	if body != "" {
		head += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	if _, err := c.conn.Write([]byte(head + "\r\n" + body)); err != nil {
		t.Fatal(err)
	}
	if tc.park != nil {
		waitUntil(t, "the poll parked", func() bool { return p.hub.Stats().Parked >= 1 && parkedOn(p, vars["sid"]) })
		tc.park(t, p, vars)
	}
	res, b := c.read()
	served := p.net.Load() - before
	switch {
	case raw && !tc.echoOnly && served != 0:
		t.Fatalf("net/http served the request on the taken-over connection")
	case raw && tc.echoOnly && served != 1, !raw && served != 1:
		t.Fatalf("net/http served %d requests, want 1", served)
	}
	return res, b
}

// newParityServer is a parkServer whose mailboxes hold 2 messages (so
// that a third is refused) and whose polls are not jittered.
func newParityServer(t *testing.T, cfg api.Config) *parkServer {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := poll.NewHub(poll.Config{MaxMailbox: 2, Render: wire.Render})
	cfg.Jitter = func() float64 { return 1 }
	srv := api.NewServer(hub, inner, cfg, nil)
	served := api.CountNetHTTP(srv)
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &parkServer{hub: hub, addr: inner.Addr().String(), srv: srv, ln: api.H1(srv), net: served}
}

// parkedOn reports whether the session with id has a parked poll.
func parkedOn(p *parkServer, id string) bool {
	s, err := p.hub.Session(id)
	return err == nil && s != nil && p.hub.Stats().Parked > 0
}

var (
	messageID = regexp.MustCompile(`m_[A-Za-z0-9_-]{24}`)
	sentAt    = regexp.MustCompile(`"sentAt":"[^"]*"`)
)

// normalizeBody replaces what differs between two runs of the same
// request: message IDs and times.
func normalizeBody(b string) string {
	return sentAt.ReplaceAllString(messageID.ReplaceAllString(b, "m_ID"), `"sentAt":"T"`)
}

// canceled returns a context that is already done (a poll answered at
// once).
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// randSuffix returns a short unique suffix for device IDs.
func randSuffix() string { return session.NewID()[:8] }

package bayeux_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/bayeux"
	"github.com/longpoll/longpoll/internal/testwait"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// bound is how long one step of a test may take before it fails.
const bound = 10 * time.Second

// edge is the HTTP edge's part in a test: it admits everything unless
// told otherwise, and gives handshakes a permit when set.
type edge struct {
	permit       *session.Permit
	handshakeErr error
	publishErr   error
	parkErr      error
	parked       atomic.Int32 // places taken and not given back
}

func (e *edge) Handshake(req session.Request, token string) (session.Request, error) {
	if e.handshakeErr != nil {
		return req, e.handshakeErr
	}
	req.Permit = e.permit
	return req, nil
}
func (e *edge) Publish() error { return e.publishErr }
func (e *edge) Park() (func(), error) {
	if e.parkErr != nil {
		return nil, e.parkErr
	}
	e.parked.Add(1)
	return func() { e.parked.Add(-1) }, nil
}

type fixture struct {
	hub  *poll.Hub
	srv  *bayeux.Server
	edge *edge
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	hub := poll.NewHub(poll.Config{})
	t.Cleanup(hub.Close)
	return &fixture{hub: hub, edge: &edge{},
		srv: bayeux.New(hub, bayeux.Config{Timeout: 20 * time.Second, MaxTimeout: 30 * time.Second, Jitter: func() float64 { return 1 }})}
}

type msg = map[string]any

// handle answers body, failing the test if that takes longer than bound.
func (f *fixture) handle(t *testing.T, body string) (int, []msg) {
	t.Helper()
	type answer struct {
		status int
		out    []byte
	}
	done := make(chan answer, 1)
	go func() {
		status, out := f.srv.Handle(context.Background(), []byte(body), f.edge)
		done <- answer{status, out}
	}()
	select {
	case a := <-done:
		var replies []msg
		if err := json.Unmarshal(a.out, &replies); err != nil {
			t.Fatalf("answer is not a JSON array: %s", a.out)
		}
		return a.status, replies
	case <-time.After(bound):
		t.Fatalf("no answer within %v to %s", bound, body)
		return 0, nil
	}
}

// one answers body, which must get 200 and exactly one reply.
func (f *fixture) one(t *testing.T, body string) msg {
	t.Helper()
	status, replies := f.handle(t, body)
	if status != 200 || len(replies) != 1 {
		t.Fatalf("%s: %d %v, want 200 and one reply", body, status, replies)
	}
	return replies[0]
}

func (f *fixture) handshake(t *testing.T, ext string) string {
	t.Helper()
	if ext == "" {
		ext = "{}"
	}
	r := f.one(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"h","ext":`+ext+`}]`)
	if r["successful"] != true {
		t.Fatalf("handshake: %v", r)
	}
	return r["clientId"].(string)
}

func (f *fixture) subscribe(t *testing.T, cid string, channels ...string) {
	t.Helper()
	sub, _ := json.Marshal(channels)
	r := f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":%s}`, cid, sub))
	if r["successful"] != true {
		t.Fatalf("subscribe %v: %v", channels, r)
	}
}

// connect sends a /meta/connect with timeout 0 (answered at once) and
// ext (may be empty) and returns the delivered messages and the reply.
func (f *fixture) connect(t *testing.T, cid, ext string) ([]msg, msg) {
	t.Helper()
	if ext == "" {
		ext = "null"
	}
	status, replies := f.handle(t, fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","advice":{"timeout":0},"ext":%s}]`, cid, ext))
	if status != 200 || len(replies) == 0 {
		t.Fatalf("connect: %d %v", status, replies)
	}
	return replies[:len(replies)-1], replies[len(replies)-1]
}

func (f *fixture) push(t *testing.T, to poll.Target, topic, data string) poll.Result {
	t.Helper()
	if topic == "" {
		topic = to.Topic // as the wire parser does
	}
	res, err := f.hub.Publish(poll.Push{To: to, Topic: topic, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func datas(events []msg) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		b, _ := json.Marshal(e["data"])
		out = append(out, e["channel"].(string)+" "+string(b))
	}
	return out
}

func wantError(t *testing.T, r msg, prefix string) {
	t.Helper()
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), prefix) {
		t.Fatalf("reply %v, want an error starting %q", r, prefix)
	}
}

func TestHandshakeReplyAndAdvice(t *testing.T) {
	f := newFixture(t)
	r := f.one(t, `[{"channel":"/meta/handshake","version":"1.0","minimumVersion":"1.0","supportedConnectionTypes":["websocket","long-polling"],"id":7,"ext":{"ack":true,"deviceId":"dev-1","userId":"u1"}}]`)
	if r["successful"] != true || r["version"] != "1.0" || r["minimumVersion"] != "1.0" || r["id"] != 7.0 {
		t.Fatalf("handshake reply %v", r)
	}
	if types := fmt.Sprint(r["supportedConnectionTypes"]); types != "[long-polling cross-origin-long-polling]" {
		t.Errorf("supportedConnectionTypes %s", types)
	}
	if fmt.Sprint(r["advice"]) != "map[interval:0 reconnect:retry timeout:20000]" {
		t.Errorf("advice %v", r["advice"])
	}
	if fmt.Sprint(r["ext"]) != "map[ack:true]" {
		t.Errorf("ext %v, want the ack extension on", r["ext"])
	}
	s, err := f.hub.Session(r["clientId"].(string))
	if err != nil || s.DeviceID != "dev-1" || s.UserID != "u1" {
		t.Fatalf("session %+v %v", s, err)
	}
	// Without ext: a generated device, no ack extension.
	r = f.one(t, `{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}`)
	if r["ext"] != nil {
		t.Errorf("ext %v without the ack extension", r["ext"])
	}
	if s, _ := f.hub.Session(r["clientId"].(string)); s == nil || !strings.HasPrefix(s.DeviceID, "bayeux-") {
		t.Fatalf("generated device: %+v", s)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ name, body, err, reconnect string }{
		{"version 2", `{"channel":"/meta/handshake","version":"2.0","supportedConnectionTypes":["long-polling"]}`, "400:2.0:", "none"},
		{"no common connection type", `{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"]}`, "400:websocket:", "none"},
		{"bad device", `{"channel":"/meta/handshake","version":"1.0","ext":{"deviceId":"a b"}}`, "400:/meta/handshake:", "none"},
		{"ext not an object", `{"channel":"/meta/handshake","version":"1.0","ext":[1]}`, "400:/meta/handshake:ext", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.one(t, c.body)
			wantError(t, r, c.err)
			if r["clientId"] != nil {
				t.Errorf("a refused handshake has a clientId: %v", r)
			}
			if c.reconnect != "" && fmt.Sprint(r["advice"].(msg)["reconnect"]) != c.reconnect {
				t.Errorf("advice %v, want reconnect %s", r["advice"], c.reconnect)
			}
		})
	}
	if n := f.hub.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions after refused handshakes", n)
	}
	// The edge's refusals: a rate limit is retried after its time.
	limited := wire.NewError(429, "rate_limited", "too many handshakes")
	limited.RetryAfter = 3 * time.Second
	f.edge.handshakeErr = limited
	r := f.one(t, `{"channel":"/meta/handshake","version":"1.0"}`)
	wantError(t, r, "429:/meta/handshake:too many handshakes")
	if fmt.Sprint(r["advice"]) != "map[interval:3000 reconnect:handshake]" {
		t.Errorf("advice %v", r["advice"])
	}
	f.edge.handshakeErr = fmt.Errorf("%w: bad token", session.ErrForbidden)
	wantError(t, f.one(t, `{"channel":"/meta/handshake","version":"1.0"}`), "403:")
}

func TestUnknownClient(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{
		`{"channel":"/meta/connect","clientId":"nope","connectionType":"long-polling"}`,
		`{"channel":"/meta/connect","connectionType":"long-polling"}`,
		`{"channel":"/meta/subscribe","clientId":"nope","subscription":"/a"}`,
		`{"channel":"/meta/unsubscribe","clientId":"nope","subscription":"/a"}`,
		`{"channel":"/meta/disconnect","clientId":"nope"}`,
		`{"channel":"/meta/disconnect"}`,
		`{"channel":"/a","clientId":"nope","data":1}`,
		`{"channel":"/a","data":1}`,
	} {
		r := f.one(t, body)
		wantError(t, r, "402::Unknown client")
		if fmt.Sprint(r["advice"]) != "map[interval:0 reconnect:handshake]" {
			t.Errorf("%s: advice %v", body, r["advice"])
		}
	}
}

func TestChannelNames(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	sub := func(ch string) msg {
		return f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":%q,"id":"s"}`, cid, ch))
	}
	for ch, want := range map[string]string{
		"a":                            "405:a:",
		"/":                            "405:/:",
		"/a b":                         "405:/a b:",
		"/a//b":                        "405:/a//b:",
		"/a/**/b":                      "405:/a/**/b:",
		"/a*":                          "405:/a*:",
		"/$nope":                       "405:/$nope:",
		"/meta/x":                      "403:/meta/x:",
		"/service/x":                   "403:/service/x:",
		"/longpoll/x":                  "403:/longpoll/x:",
		"/" + strings.Repeat("x", 201): "405:",
	} {
		r := sub(ch)
		wantError(t, r, want)
		if r["subscription"] != ch || r["id"] != "s" {
			t.Errorf("%s: the reply does not echo subscription and id: %v", ch, r)
		}
	}
	for _, ch := range []string{"/a", "/a/b", "/a/*", "/a/**", "/*", "/**", "/$presence", "/longpoll/direct", "/x.y:z@w-_"} {
		if r := sub(ch); r["successful"] != true {
			t.Errorf("subscribe %s: %v", ch, r)
		}
	}
	s, _ := f.hub.Session(cid)
	if got := strings.Join(s.Topics, " "); got != "a a/b a/* a/** * ** $presence x.y:z@w-_" {
		t.Errorf("topics %q (the direct channel is no topic)", got)
	}
	pub := func(ch string) msg {
		return f.one(t, fmt.Sprintf(`{"channel":%q,"clientId":%q,"data":{}}`, ch, cid))
	}
	for ch, want := range map[string]string{
		"/a/*":             "405:/a/*:",
		"/**":              "405:/**:",
		"/$presence":       "405:/$presence:",
		"/meta/foo":        "400:/meta/foo:",
		"/service/echo":    "404:/service/echo:",
		"/longpoll/direct": "403:/longpoll/direct:",
		"nope":             "405:nope:",
	} {
		wantError(t, pub(ch), want)
	}
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/a","clientId":%q}`, cid)), "400:/a:a publish needs data")
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/x:y","clientId":%q}`, cid)), "400:/x%3Ay:a publish needs data") // an argument holds no ':'
	r := f.one(t, `{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["a:b","c,d"]}`)
	wantError(t, r, "400:a%3Ab,c%2Cd:no connection type in common")
	big := fmt.Sprintf(`{"channel":"/a","clientId":%q,"data":"%s"}`, cid, strings.Repeat("x", poll.MaxDataBytes))
	wantError(t, f.one(t, big), "413:/a:")
}

func TestSubscriptionsAreAllOrNothingAndCapped(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":["/ok","/bad name"]}`, cid)), "405:/bad name:")
	if s, _ := f.hub.Session(cid); len(s.Topics) != 0 {
		t.Fatalf("a refused subscribe changed the topics: %v", s.Topics)
	}
	for i := range session.MaxTopics {
		f.subscribe(t, cid, fmt.Sprintf("/t%d", i))
	}
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":"/one-more"}`, cid)), "400:/one-more:")
	f.one(t, fmt.Sprintf(`{"channel":"/meta/unsubscribe","clientId":%q,"subscription":"/t0"}`, cid))
	f.subscribe(t, cid, "/one-more")
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":[]}`, cid)), "400:/meta/subscribe:")
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":7}`, cid)), "400:")
}

func TestMixedBatch(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	f.push(t, poll.Target{DeviceID: mustSession(t, f, cid).DeviceID}, "", `"queued"`)
	body := fmt.Sprintf(`[
		{"channel":"/meta/subscribe","clientId":%[1]q,"subscription":"/room","id":"1"},
		7,
		{"channel":"/meta/connect","clientId":%[1]q,"connectionType":"long-polling","id":"2"},
		{"channel":"/meta/nope","clientId":%[1]q,"id":"3"},
		{"channel":"/room","clientId":%[1]q,"data":{"hello":1},"id":"4"},
		{"channel":"/meta/connect","clientId":%[1]q,"id":"5"},
		{"id":"6"}
	]`, cid)
	start := time.Now()
	status, replies := f.handle(t, body)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("a connect batched with other messages was held")
	}
	var got []string
	for _, r := range replies {
		got = append(got, fmt.Sprintf("%v %v %v", r["channel"], r["id"], r["successful"]))
	}
	want := []string{
		"/meta/subscribe 1 true",
		"/meta/unknown <nil> false",
		"/meta/nope 3 false",
		"/room 4 true",
		"/meta/connect 5 false",
		"/meta/unknown 6 false",
		// the connect's delivery, then its reply, come last
		"/longpoll/direct m false", "/room m false",
		"/meta/connect 2 true",
	}
	if status != 200 || len(got) != len(want) {
		t.Fatalf("%d %v\nwant %v", status, strings.Join(got, "\n"), want)
	}
	for i := range want {
		if strings.HasSuffix(want[i], " m false") {
			// a delivered message: its id is the message id, no successful field
			if !strings.HasPrefix(got[i], strings.TrimSuffix(want[i], " m false")+" m_") || !strings.HasSuffix(got[i], "<nil>") {
				t.Errorf("reply %d: %s, want %s", i, got[i], want[i])
			}
			continue
		}
		if got[i] != want[i] {
			t.Errorf("reply %d: %s, want %s", i, got[i], want[i])
		}
	}
}

func mustSession(t *testing.T, f *fixture, cid string) *session.Session {
	t.Helper()
	s, err := f.hub.Session(cid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadBodies(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{"", "   ", "garbage", "[]", "{", `"str"`, "[1,2", "null", strings.Repeat("[", 10)} {
		status, replies := f.handle(t, body)
		if status != 400 || len(replies) != 1 || replies[0]["successful"] != false || !strings.HasPrefix(fmt.Sprint(replies[0]["error"]), "400::") {
			t.Errorf("%q: %d %v", body, status, replies)
		}
	}
	many := "[" + strings.TrimSuffix(strings.Repeat(`{"channel":"/meta/connect"},`, bayeux.MaxMessages+1), ",") + "]"
	if status, _ := f.handle(t, many); status != 400 {
		t.Errorf("%d messages: %d", bayeux.MaxMessages+1, status)
	}
}

func TestWildcardsDeliverOnceOnTheTopicsChannel(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	f.subscribe(t, cid, "/a/b", "/a/*", "/a/**", "/**")
	if res := f.push(t, poll.Target{Topic: "a/b"}, "", `1`); res.Delivered != 1 {
		t.Fatalf("delivered %d, want once for four matching subscriptions", res.Delivered)
	}
	f.push(t, poll.Target{Topic: "a/b/c"}, "", `2`) // /a/** and /**
	f.push(t, poll.Target{Topic: "z"}, "", `3`)     // /**
	other := f.handshake(t, "")
	f.subscribe(t, other, "/a/*")
	if res := f.push(t, poll.Target{Topic: "a/b/c"}, "", `4`); res.Delivered != 1 {
		t.Fatalf("/a/* took a/b/c: delivered %d", res.Delivered) // only cid's /a/**
	}
	if res := f.push(t, poll.Target{Topic: "a"}, "", `5`); res.Delivered != 1 {
		t.Fatalf("topic a: delivered %d, want 1 (cid's /**; /a/* and /a/** are below a)", res.Delivered)
	}
	events, _ := f.connect(t, cid, "")
	if got := strings.Join(datas(events), ", "); got != "/a/b 1, /a/b/c 2, /z 3, /a/b/c 4, /a 5" {
		t.Fatalf("events %s", got)
	}
}

func TestTargetedAndSystemMessages(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, `{"deviceId":"dev","userId":"ann"}`)
	f.subscribe(t, cid, "/news")
	watcher := f.handshake(t, "")
	f.subscribe(t, watcher, "/$presence")
	f.push(t, poll.Target{DeviceID: "dev"}, "", `"to device"`)
	f.push(t, poll.Target{UserID: "ann"}, "news", `"to user, labelled news"`)
	f.push(t, poll.Target{SessionID: cid}, "other", `"to session, labelled other"`)
	f.push(t, poll.Target{}, "", `"broadcast"`)
	f.hub.Heartbeat(time.Now())
	f.push(t, poll.Target{Topic: "news"}, "", `"news"`)
	events, reply := f.connect(t, cid, "")
	want := `/longpoll/direct "to device", /news "to user, labelled news", /longpoll/direct "to session, labelled other", /longpoll/direct "broadcast", /news "news"`
	if got := strings.Join(datas(events), ", "); got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	if reply["successful"] != true || reply["ext"] != nil {
		t.Fatalf("reply %v", reply)
	}
	// The heartbeat was not passed on, and, without the ack extension,
	// everything in the answer is acknowledged: nothing comes again.
	if again, _ := f.connect(t, cid, ""); len(again) != 0 {
		t.Fatalf("delivered again: %v", datas(again))
	}
	ext := events[2]["ext"].(msg)["longpoll"].(msg)
	if ext["topic"] != "other" || ext["seq"] != 3.0 || ext["sentAt"] == nil {
		t.Errorf("ext.longpoll %v", ext)
	}
	// Presence: the watcher hears dev come online (and the watcher itself).
	f.one(t, fmt.Sprintf(`{"channel":"/meta/disconnect","clientId":%q}`, cid))
	events, _ = f.connect(t, watcher, "")
	var seen []string
	for _, e := range events {
		if e["channel"] != "/$presence" {
			continue // the broadcast
		}
		d := e["data"].(msg)
		seen = append(seen, fmt.Sprintf("%s %s %s", e["channel"], d["deviceId"], d["event"]))
	}
	if got := strings.Join(seen, ", "); !strings.HasSuffix(got, "/$presence dev offline") {
		t.Fatalf("presence events %s", got)
	}
}

func TestAckExtensionIsTheCursor(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, `{"ack":true}`)
	f.subscribe(t, cid, "/n")
	for i := 1; i <= 3; i++ {
		f.push(t, poll.Target{Topic: "n"}, "", fmt.Sprint(i))
	}
	events, reply := f.connect(t, cid, `{"ack":0}`)
	if len(events) != 3 || fmt.Sprint(reply["ext"]) != "map[ack:3]" {
		t.Fatalf("events %v reply %v", datas(events), reply)
	}
	// The answer was lost: the client acknowledges 0 again, and gets all three again.
	events, reply = f.connect(t, cid, `{"ack":0}`)
	if len(events) != 3 || fmt.Sprint(reply["ext"]) != "map[ack:3]" {
		t.Fatalf("after a lost answer: events %v reply %v", datas(events), reply)
	}
	events, reply = f.connect(t, cid, `{"ack":3}`)
	if len(events) != 0 || fmt.Sprint(reply["ext"]) != "map[ack:3]" {
		t.Fatalf("after ack 3: events %v reply %v", datas(events), reply)
	}
	for _, bad := range []string{`{"ack":-1}`, `{"ack":1.5}`, `{"ack":"3"}`} {
		_, r := f.connect(t, cid, bad)
		wantError(t, r, "400:")
	}
	_, r := f.connect(t, cid, `{"ack":99}`)
	wantError(t, r, "400::ext.ack is beyond")
	if fmt.Sprint(r["advice"]) != "map[interval:0 reconnect:handshake]" {
		t.Errorf("advice %v", r["advice"])
	}
}

// heldConnect starts a /meta/connect of cid held up to the server's
// timeout, through e; the channel yields its replies.
func (f *fixture) heldConnect(cid string, e *edge) <-chan []msg {
	done := make(chan []msg, 1)
	go func() {
		_, out := f.srv.Handle(context.Background(), []byte(fmt.Sprintf(`{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}`, cid)), e)
		var r []msg
		_ = json.Unmarshal(out, &r)
		done <- r
	}()
	return done
}

func receive(t *testing.T, done <-chan []msg, what string) []msg {
	t.Helper()
	return testwait.Recv(t, done, what, bound)
}

func TestHeldConnect(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	f.subscribe(t, cid, "/n")
	first := f.heldConnect(cid, f.edge)
	waitFor(t, "the connect to park", func() bool { return f.hub.Stats().Parked == 1 })
	if n := f.edge.parked.Load(); n != 1 {
		t.Fatalf("the held connect took %d places from the edge", n)
	}
	// A newer connect supersedes it: the older one is answered 409 and
	// told to retry later.
	newer := f.heldConnect(cid, f.edge)
	r := receive(t, first, "the superseded connect")
	if len(r) != 1 {
		t.Fatalf("superseded: %v", r)
	}
	wantError(t, r[0], "409::")
	if fmt.Sprint(r[0]["advice"]) != "map[interval:1000 reconnect:retry]" {
		t.Errorf("advice %v", r[0]["advice"])
	}
	waitFor(t, "the newer connect to park", func() bool { return f.hub.Stats().Parked == 1 })
	f.push(t, poll.Target{Topic: "n"}, "", `"wake"`)
	r = receive(t, newer, "the newer connect")
	if got := strings.Join(datas(r[:len(r)-1]), ", "); got != `/n "wake"` || r[len(r)-1]["successful"] != true {
		t.Fatalf("the newer connect: %v", r)
	}
	waitFor(t, "the edge's places to be given back", func() bool { return f.edge.parked.Load() == 0 })
	// A disconnect answers a held connect successfully, with advice to
	// stop (as CometD's server does); the next connect is 402.
	held := f.heldConnect(cid, f.edge)
	waitFor(t, "the connect to park", func() bool { return f.hub.Stats().Parked == 1 })
	if err := f.hub.Disconnect(cid, 0, false); err != nil {
		t.Fatal(err)
	}
	r = receive(t, held, "a held connect after a disconnect")
	if len(r) != 1 || r[0]["successful"] != true || fmt.Sprint(r[0]["advice"]) != "map[interval:0 reconnect:none]" {
		t.Fatalf("a held connect after a disconnect: %v", r)
	}
	_, reply := f.connect(t, cid, "")
	wantError(t, reply, "402::Unknown client")
	// So does a replacement by a newer handshake of the device.
	lamp := f.handshake(t, `{"deviceId":"lamp"}`)
	held = f.heldConnect(lamp, f.edge)
	waitFor(t, "the connect to park", func() bool { return f.hub.Stats().Parked == 1 })
	f.handshake(t, `{"deviceId":"lamp"}`)
	r = receive(t, held, "a held connect after a replacement")
	if len(r) != 1 || r[0]["successful"] != true || fmt.Sprint(r[0]["advice"]) != "map[interval:0 reconnect:none]" {
		t.Fatalf("a held connect after a replacement: %v", r)
	}
	// The edge's cap on open polls: 429 with the retry advice.
	f.edge.parkErr = wire.NewError(429, "rate_limited", "too many open polls")
	cid = f.handshake(t, "")
	_, reply = f.connect(t, cid, "")
	wantError(t, reply, "429:/meta/connect:too many open polls")
	if reply["advice"].(msg)["reconnect"] != "retry" {
		t.Errorf("advice %v", reply["advice"])
	}
}

func TestPublishReachesNativeSessions(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, `{"deviceId":"pub","userId":"ann"}`)
	native, err := f.hub.Connect(session.Request{DeviceID: "native", Topics: []string{"room"}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.one(t, fmt.Sprintf(`{"channel":"/room","clientId":%q,"data":{"x":1},"id":"p1"}`, cid))
	if r["successful"] != true || r["id"] != "p1" || r["channel"] != "/room" {
		t.Fatalf("publish reply %v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := f.hub.Poll(ctx, native.ID, 0, false)
	if err != nil || len(msgs) != 1 || msgs[0].From != "ann/pub" || msgs[0].Topic != "room" || string(msgs[0].Data) != `{"x":1}` {
		t.Fatalf("native poll: %v %v", msgs, err)
	}
	f.edge.publishErr = wire.NewError(429, "rate_limited", "slow down")
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/room","clientId":%q,"data":1}`, cid)), "429:/room:slow down")
}

func TestTopicsClaimLimitsSubscribeAndPublish(t *testing.T) {
	f := newFixture(t)
	f.edge.permit = session.NewPermit([]string{"team/*", "lobby"})
	cid := f.handshake(t, "")
	f.subscribe(t, cid, "/lobby", "/team/*", "/team/a")
	for _, ch := range []string{"/other", "/**", "/team"} {
		wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":%q}`, cid, ch)), "403:"+ch+":")
	}
	if r := f.one(t, fmt.Sprintf(`{"channel":"/team/a","clientId":%q,"data":1}`, cid)); r["successful"] != true {
		t.Fatalf("publish within the claim: %v", r)
	}
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/other","clientId":%q,"data":1}`, cid)), "403:/other:")
}

func TestDisconnectKeepsUndeliveredMessagesForTheDevice(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, `{"deviceId":"lamp"}`)
	f.push(t, poll.Target{DeviceID: "lamp"}, "", `"kept"`)
	if r := f.one(t, fmt.Sprintf(`{"channel":"/meta/disconnect","clientId":%q,"id":"d"}`, cid)); r["successful"] != true || r["id"] != "d" {
		t.Fatalf("disconnect %v", r)
	}
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/disconnect","clientId":%q}`, cid)), "402::")
	again := f.handshake(t, `{"deviceId":"lamp"}`)
	events, _ := f.connect(t, again, "")
	if got := strings.Join(datas(events), ", "); got != `/longpoll/direct "kept"` {
		t.Fatalf("after a new handshake: %s", got)
	}
}

// waitFor waits (bounded) until cond holds, failing the test after bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, bound, cond)
}

// A native topic that names a meta, service or reserved channel, or no
// channel at all, reaches a /** subscriber on the direct channel, never
// posing as a meta reply or the server's own channel.
func TestTopicsThatAreNotPlainChannelsArriveDirect(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	f.subscribe(t, cid, "/**")
	for _, topic := range []string{"meta/disconnect", "meta/handshake", "service/x", "longpoll/direct", "a/", "ok/topic"} {
		if res := f.push(t, poll.Target{Topic: topic}, "", fmt.Sprintf("%q", topic)); res.Delivered != 1 {
			t.Fatalf("%s: delivered %d", topic, res.Delivered)
		}
	}
	events, _ := f.connect(t, cid, "")
	want := `/longpoll/direct "meta/disconnect", /longpoll/direct "meta/handshake", /longpoll/direct "service/x", /longpoll/direct "longpoll/direct", /longpoll/direct "a/", /ok/topic "ok/topic"`
	if got := strings.Join(datas(events), ", "); got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	for _, e := range events {
		if e["successful"] != nil {
			t.Fatalf("a delivered message with successful: %v", e)
		}
	}
}

// The ack extension with more waiting than one answer carries: ext.ack is
// the seq of the last message the answer holds, and the rest comes next.
func TestAckExtensionAcrossFullAnswers(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, `{"ack":true}`)
	f.subscribe(t, cid, "/n")
	const n = poll.MaxBatch + 30
	for i := 1; i <= n; i++ {
		f.push(t, poll.Target{Topic: "n"}, "", fmt.Sprint(i))
	}
	events, reply := f.connect(t, cid, `{"ack":0}`)
	if len(events) != poll.MaxBatch || fmt.Sprint(reply["ext"]) != fmt.Sprintf("map[ack:%d]", poll.MaxBatch) {
		t.Fatalf("first answer: %d events, reply %v", len(events), reply)
	}
	events, reply = f.connect(t, cid, fmt.Sprintf(`{"ack":%d}`, poll.MaxBatch))
	if len(events) != 30 || fmt.Sprint(events[0]["data"]) != fmt.Sprint(poll.MaxBatch+1) || fmt.Sprint(reply["ext"]) != fmt.Sprintf("map[ack:%d]", n) {
		t.Fatalf("second answer: %d events (first %v), reply %v", len(events), events[0]["data"], reply)
	}
}

// A disconnect with ext.ack acknowledges first: what the client had is
// not handed to the device's next session again.
func TestDisconnectHonoursExtAck(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, `{"ack":true,"deviceId":"lamp"}`)
	for _, d := range []string{`"seen"`, `"unseen"`} {
		f.push(t, poll.Target{DeviceID: "lamp"}, "", d)
	}
	events, _ := f.connect(t, cid, `{"ack":0}`)
	if len(events) != 2 {
		t.Fatalf("events %v", datas(events))
	}
	wantError(t, f.one(t, fmt.Sprintf(`{"channel":"/meta/disconnect","clientId":%q,"ext":{"ack":9}}`, cid)), "400:/meta/disconnect:")
	if r := f.one(t, fmt.Sprintf(`{"channel":"/meta/disconnect","clientId":%q,"ext":{"ack":1}}`, cid)); r["successful"] != true {
		t.Fatalf("disconnect: %v", r)
	}
	again := f.handshake(t, `{"deviceId":"lamp"}`)
	events, _ = f.connect(t, again, "")
	if got := strings.Join(datas(events), ", "); got != `/longpoll/direct "unseen"` {
		t.Fatalf("the next session got %s", got)
	}
}

// Subscribe and unsubscribe count against the send rate limit, and every
// failed one names its subscription (CometD drops its pending
// subscription by it).
func TestSubscribeRefusalsNameTheSubscription(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	for _, body := range []string{
		fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":7}`, cid),
		`{"channel":"/meta/subscribe","clientId":"nope","subscription":"/a"}`,
	} {
		if r := f.one(t, body); r["successful"] != false || r["subscription"] == nil {
			t.Errorf("%s: %v", body, r)
		}
	}
	limited := wire.NewError(429, "rate_limited", "slow down")
	limited.RetryAfter = 2 * time.Second
	f.edge.publishErr = limited
	r := f.one(t, fmt.Sprintf(`{"channel":"/meta/subscribe","clientId":%q,"subscription":"/a"}`, cid))
	wantError(t, r, "429:/meta/subscribe:slow down")
	if r["subscription"] != "/a" || fmt.Sprint(r["advice"]) != "map[interval:2000 reconnect:retry]" {
		t.Fatalf("rate limited: %v", r)
	}
	if s, _ := f.hub.Session(cid); len(s.Topics) != 0 {
		t.Fatalf("a refused subscribe changed the topics: %v", s.Topics)
	}
}

// Faye's cross-origin transport names its connection type
// cross-origin-long-polling: the same wire, accepted on connect; other
// types are refused.
func TestConnectionTypes(t *testing.T) {
	f := newFixture(t)
	cid := f.handshake(t, "")
	for typ, want := range map[string]any{"long-polling": true, "cross-origin-long-polling": true, "websocket": false, "callback-polling": false} {
		r := f.one(t, fmt.Sprintf(`{"channel":"/meta/connect","clientId":%q,"connectionType":%q,"advice":{"timeout":0}}`, cid, typ))
		if r["successful"] != want {
			t.Errorf("%s: %v", typ, r)
		}
	}
}

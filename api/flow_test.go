package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
)

// decodeBatch decodes a 202 batch answer.
func decodeBatch(t *testing.T, body []byte) []result {
	t.Helper()
	var out []result
	decodeStrict(t, body, &out)
	return out
}

func TestBatchPush(t *testing.T) {
	s := newServer(t, poll.Config{MaxMailbox: 3}, api.Config{})
	a := s.connect(t, "a", "alice", "news")
	b := s.connect(t, "b", "", "news")

	rec := s.do(t, "POST", "/push", ctJSON, `[
		{"to":{"sessionId":"`+a+`"},"data":1},
		{"to":{"sessionId":"nope"},"data":2},
		{"to":{"topic":"news"},"data":3},
		{"to":{"deviceId":"offline"},"data":4},
		{"to":{"sessionId":"`+a+`"},"data":5},
		{"to":{"sessionId":"`+a+`"},"data":6},
		{"to":{"userId":"alice"},"data":7},
		{"data":8}
	]`)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	wantJSONType(t, rec)
	got := decodeBatch(t, rec.Body.Bytes())
	type brief struct {
		delivered, stored, rejected int
		code                        string
	}
	want := []brief{
		{delivered: 1},
		{code: "session_not_found"},
		{delivered: 2},
		{stored: 1},
		{delivered: 1},
		{code: "mailbox_full"}, // a holds 1, 3, 5
		{rejected: 1},          // alice's only session is full
		{delivered: 1, rejected: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(got), len(want), rec.Body)
	}
	for i, r := range got {
		var b brief
		if r.Error != nil {
			b.code = r.Error.Code
			if r.Error.Message == "" || r.ID != "" {
				t.Errorf("item %d: error item %+v", i, r)
			}
		} else {
			b = brief{delivered: r.Delivered, stored: r.Stored, rejected: r.Rejected}
			if !strings.HasPrefix(r.ID, "m_") {
				t.Errorf("item %d: id %q", i, r.ID)
			}
		}
		if b != want[i] {
			t.Errorf("item %d: %+v, want %+v", i, b, want[i])
		}
	}
	// The mailbox of a has the items addressed to it, in batch order; b has
	// the topic and broadcast items.
	pa := s.messages(t, a, "")
	wantDatas(t, "a", pa, "1", "3", "5")
	if ids := []string{pa.Messages[0].ID, pa.Messages[2].ID}; ids[0] != got[0].ID || ids[1] != got[4].ID {
		t.Errorf("message ids %v, want the batch result ids %s, %s", ids, got[0].ID, got[4].ID)
	}
	wantDatas(t, "b", s.messages(t, b, ""), "3", "8")
	wantStats(t, s, poll.Stats{Sessions: 2, Devices: 2, Users: 1, OfflineMessages: 1, Backlog: 5})
}

// TestBatchOrderToOneSession: many messages of one batch to one session keep
// their order.
func TestBatchOrderToOneSession(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "u", "t")
	var items, want []string
	for i := range 250 {
		d := mustJSON(i)
		want = append(want, d)
		switch i % 3 {
		case 0:
			items = append(items, `{"to":{"sessionId":"`+sid+`"},"data":`+d+`}`)
		case 1:
			items = append(items, `{"to":{"deviceId":"d"},"data":`+d+`}`)
		default:
			items = append(items, `{"to":{"userId":"u"},"data":`+d+`}`)
		}
	}
	rec := s.do(t, "POST", "/push", ctJSON, "["+strings.Join(items, ",")+"]")
	if rec.Code != http.StatusAccepted {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	var got []string
	cursor := ""
	for {
		pr := s.messages(t, sid, cursor)
		if len(pr.Messages) == 0 {
			break
		}
		got = append(got, datas(pr.Messages)...)
		cursor = mustJSON(pr.Cursor)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %d messages out of order: %v", len(got), got)
	}
}

func TestBatchInvalidDeliversNothing(t *testing.T) {
	cases := []struct {
		name   string
		items  []string
		status int
		code   string
		index  string
	}{
		{"bad target", []string{`{"to":{"sessionId":"{sid}"},"data":1}`, `{"data":2}`, `{"to":{"deviceId":"a b"}}`, `{"ttl":0}`}, 400, "invalid_payload", "item 2"},
		{"unknown field", []string{`{"data":1}`, `{"data":2,"x":1}`}, 400, "invalid_payload", "item 1"},
		{"not an object", []string{`{"data":1}`, `[]`}, 400, "invalid_payload", "item 1"},
		{"first item", []string{`{"to":"x"}`, `{"data":1}`}, 400, "invalid_payload", "item 0"},
		{"data too large", []string{`{"data":1}`, `{"data":"` + strings.Repeat("x", poll.MaxDataBytes) + `"}`}, 400, "invalid_payload", "item 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, poll.Config{}, api.Config{})
			sid := s.connect(t, "d", "")
			body := strings.ReplaceAll("["+strings.Join(tc.items, ",")+"]", "{sid}", sid)
			rec := s.do(t, "POST", "/push", ctJSON, body)
			wantError(t, rec, tc.status, tc.code)
			if msg := errorMessage(t, rec); !strings.Contains(msg, tc.index) {
				t.Errorf("message %q does not name %q", msg, tc.index)
			}
			wantDatas(t, "mailbox", s.messages(t, sid, ""))
			wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1})
		})
	}
}

func TestBatchEmpty(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	rec := s.do(t, "POST", "/push", ctJSON, `[]`)
	if rec.Code != http.StatusAccepted || strings.TrimSpace(rec.Body.String()) != `[]` {
		t.Errorf("empty batch: %d %s", rec.Code, rec.Body)
	}
}

func TestIdempotentID(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "u")
	body := `{"to":{"userId":"u"},"data":"once","id":"order-1"}`
	first := s.push(t, body)
	if first.Delivered != 1 || first.Duplicate {
		t.Fatalf("first push: %+v", first)
	}
	second := s.push(t, body)
	if !second.Duplicate || second.ID != first.ID {
		t.Errorf("second push: %+v, want duplicate of %s", second, first.ID)
	}
	// In a batch too, and a different id is a different message.
	rec := s.do(t, "POST", "/push", ctJSON, `[`+body+`,{"to":{"userId":"u"},"data":"twice","id":"order-2"},{"to":{"userId":"u"},"data":"twice","id":"order-2"}]`)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	res := decodeBatch(t, rec.Body.Bytes())
	if !res[0].Duplicate || res[0].ID != first.ID || res[1].Duplicate || res[1].Delivered != 1 || !res[2].Duplicate || res[2].ID != res[1].ID {
		t.Errorf("batch results %+v", res)
	}
	pr := s.messages(t, sid, "")
	wantDatas(t, "mailbox", pr, `"once"`, `"twice"`)
	if pr.Messages[0].ID != first.ID {
		t.Errorf("message id %s, want %s", pr.Messages[0].ID, first.ID)
	}
	// Client sends use their own id space: the same id from a client is new.
	rec = s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"userId":"u"},"data":"sent","id":"order-1"}`)
	var sent result
	decodeStrict(t, rec.Body.Bytes(), &sent)
	if rec.Code != http.StatusAccepted || sent.Duplicate || sent.Delivered != 1 {
		t.Errorf("send with a publisher's id: %d %s", rec.Code, rec.Body)
	}
	rec = s.do(t, "POST", "/send?sessionId="+sid, ctJSON, `{"to":{"userId":"u"},"data":"sent","id":"order-1"}`)
	decodeStrict(t, rec.Body.Bytes(), &sent)
	if rec.Code != http.StatusAccepted || !sent.Duplicate {
		t.Errorf("repeated send: %d %s", rec.Code, rec.Body)
	}
	wantDatas(t, "mailbox", s.messages(t, sid, mustJSON(pr.Cursor)), `"sent"`)
}

func TestParkedPollGetsPush(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "")
	done := s.park(t, sid)
	s.pushTo(t, sid, `"wake"`)
	rec := await(t, done, "parked poll")
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	wantDatas(t, "parked poll", decodePoll(t, rec), `"wake"`)
	wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1, Backlog: 1})
}

func TestSuperseded(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "")
	first := s.park(t, sid)
	second := make(chan *httptest.ResponseRecorder, 1)
	r := newRequest(http.MethodGet, "/data?timeout=60&sessionId="+sid, "", "")
	go func() { second <- s.serve(r) }()
	wantError(t, await(t, first, "first poll"), http.StatusConflict, "superseded")
	// The first poll has returned, so one parked poll is the second one.
	waitFor(t, "the second poll to park", func() bool { return s.hub.Stats().Parked == 1 })
	s.pushTo(t, sid, "1")
	wantDatas(t, "second poll", decodePoll(t, await(t, second, "second poll")), "1")
}

// TestSupersededByImmediatePoll: a timeout=0 poll also answers the parked one
// 409, and itself 204.
func TestSupersededByImmediatePoll(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "")
	parked := s.park(t, sid)
	if rec := s.pollNow(t, sid, ""); rec.Code != http.StatusNoContent {
		t.Errorf("newer poll: %d %s", rec.Code, rec.Body)
	}
	wantError(t, await(t, parked, "parked poll"), http.StatusConflict, "superseded")
	waitFor(t, "no parked polls", func() bool { return s.hub.Stats().Parked == 0 })
}

func TestSessionClosedByDelete(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "u")
	parked := s.park(t, sid)
	if rec := s.do(t, "DELETE", "/session?sessionId="+sid, "", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	wantError(t, await(t, parked, "parked poll"), http.StatusGone, "session_closed")
	waitFor(t, "no parked polls", func() bool { return s.hub.Stats().Parked == 0 })
	wantStats(t, s, poll.Stats{})
}

func TestSessionClosedByReconnect(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	old := s.connect(t, "d", "u")
	parked := s.park(t, old)
	fresh := s.connect(t, "d", "u")
	wantError(t, await(t, parked, "parked poll"), http.StatusGone, "session_closed")
	wantError(t, s.pollNow(t, old, ""), http.StatusNotFound, "session_not_found")
	if rec := s.pollNow(t, fresh, ""); rec.Code != http.StatusNoContent {
		t.Errorf("new session: %d %s", rec.Code, rec.Body)
	}
	waitFor(t, "no parked polls", func() bool { return s.hub.Stats().Parked == 0 })
	wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1, Users: 1})
}

// TestReconnectCarriesMessages: unacknowledged messages move, in order, to
// the new session of the device.
func TestReconnectCarriesMessages(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	old := s.connect(t, "d", "u")
	for _, d := range []string{"1", "2", "3"} {
		s.pushTo(t, old, d)
	}
	s.messages(t, old, "1") // acknowledges 1
	fresh := s.connect(t, "d", "u")
	pr := s.messages(t, fresh, "")
	wantDatas(t, "new session", pr, "2", "3")
	if got := seqs(pr.Messages); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("seqs %v, want the new session's 1, 2", got)
	}
}

func TestCloseAnswersParkedPolls204(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	a := s.park(t, s.connect(t, "a", ""))
	b := s.park(t, s.connect(t, "b", ""))
	s.hub.Close()
	for _, done := range []<-chan *httptest.ResponseRecorder{a, b} {
		if rec := await(t, done, "parked poll"); rec.Code != http.StatusNoContent {
			t.Errorf("parked poll on close: %d %s", rec.Code, rec.Body)
		}
	}
}

// TestRejectedRequestsChangeNoState sends a set of bad requests and checks
// that the hub's counters, the mailboxes, the parked poll, the seqs and the
// idempotency ids are exactly as before.
func TestRejectedRequestsChangeNoState(t *testing.T) {
	s := newServer(t, poll.Config{MaxMailbox: 2}, api.Config{})
	full := s.connect(t, "full", "alice", "news") // will hold 2 messages: full
	idle := s.connect(t, "idle", "bob", "news")   // will have a parked poll
	s.pushTo(t, full, `"m1"`)
	s.pushTo(t, full, `"m2"`)
	s.push(t, `{"to":{"deviceId":"gone"},"data":"o1"}`)
	s.push(t, `{"to":{"deviceId":"gone"},"data":"o2"}`) // offline store of "gone" full
	parked := s.park(t, idle)
	before := s.hub.Stats()
	if want := (poll.Stats{Sessions: 2, Parked: 1, Devices: 2, Users: 2, OfflineMessages: 2, Backlog: 2, StoredBytes: before.StoredBytes, Store: "memory"}); before != want || before.StoredBytes <= 0 {
		t.Fatalf("before: %+v, want %+v", before, want)
	}

	bad := []struct {
		name               string
		method, target, ct string
		body               string
		opts               []reqOpt
		status             int
		code               string
	}{
		{"connect invalid", "POST", "/connect", ctJSON, `{"deviceId":"full","topics":["$admin"]}`, nil, 400, "invalid_payload"},
		{"connect idle invalid", "POST", "/connect", ctForm, `deviceId=idle&bogus=1`, nil, 400, "invalid_payload"},
		{"connect wrong type", "POST", "/connect", "text/plain", `{"deviceId":"full"}`, nil, 415, "unsupported_media_type"},
		{"connect too large", "POST", "/connect", ctJSON, padJSON(70000), nil, 413, "payload_too_large"},
		{"cursor beyond, pending", "GET", "/data?timeout=0&cursor=3&sessionId=" + full, "", "", nil, 400, "invalid_cursor"},
		{"cursor garbage, pending", "GET", "/data?timeout=0&cursor=x&sessionId=" + full, "", "", nil, 400, "invalid_cursor"},
		{"cursor beyond, parked", "GET", "/data?timeout=0&cursor=1&sessionId=" + idle, "", "", nil, 400, "invalid_cursor"},
		{"cursor negative, parked", "GET", "/data?timeout=0&cursor=-1&sessionId=" + idle, "", "", nil, 400, "invalid_cursor"},
		{"timeout bad, parked", "GET", "/data?timeout=-1&sessionId=" + idle, "", "", nil, 400, "invalid_payload"},
		{"invalid batch", "POST", "/push", ctJSON, `[{"to":{"sessionId":"` + idle + `"},"data":"x1"},{"to":{"topic":"news"},"data":"x2"},{"data":"x3"},{"to":{"sessionId":""}}]`, nil, 400, "invalid_payload"},
		{"batch item too large", "POST", "/push", ctJSON, `[{"to":{"sessionId":"` + idle + `"},"data":"x1"},{"data":"` + strings.Repeat("x", poll.MaxDataBytes) + `"}]`, nil, 400, "invalid_payload"},
		{"push to full mailbox", "POST", "/push", ctJSON, `{"to":{"sessionId":"` + full + `"},"data":"x","id":"retry-me"}`, nil, 429, "mailbox_full"},
		{"push to full device", "POST", "/push", ctJSON, `{"to":{"deviceId":"full"},"data":"x"}`, nil, 429, "mailbox_full"},
		{"push to full offline store", "POST", "/push", ctJSON, `{"to":{"deviceId":"gone"},"data":"x"}`, nil, 429, "mailbox_full"},
		{"push to unknown session", "POST", "/push", ctJSON, `{"to":{"sessionId":"nope"},"data":"x"}`, nil, 404, "session_not_found"},
		{"push forbidden", "POST", "/push", ctJSON, `{"to":{"sessionId":"` + idle + `"},"data":"x"}`, []reqOpt{remote("203.0.113.5:1234")}, 403, "forbidden"},
		{"push wrong type", "POST", "/push", ctForm, `data=x`, nil, 415, "unsupported_media_type"},
		{"send broadcast", "POST", "/send?sessionId=" + idle, ctJSON, `{"data":"x"}`, nil, 400, "invalid_payload"},
		{"send to full device", "POST", "/send?sessionId=" + idle, ctJSON, `{"to":{"deviceId":"full"},"data":"x","id":"send-1"}`, nil, 429, "mailbox_full"},
		{"send from unknown", "POST", "/send?sessionId=nope", ctJSON, `{"to":{"deviceId":"idle"},"data":"x"}`, nil, 404, "session_not_found"},
		{"delete cursor beyond", "DELETE", "/session?cursor=9&sessionId=" + full, "", "", nil, 400, "invalid_cursor"},
		{"delete cursor beyond, parked", "DELETE", "/session?cursor=1&sessionId=" + idle, "", "", nil, 400, "invalid_cursor"},
		{"delete unknown", "DELETE", "/session?sessionId=nope", "", "", nil, 404, "session_not_found"},
	}
	for _, b := range bad {
		rec := s.do(t, b.method, b.target, b.ct, b.body, b.opts...)
		t.Run(b.name, func(t *testing.T) { wantError(t, rec, b.status, b.code) })
		if got := s.hub.Stats(); got != before {
			t.Errorf("after %q: Stats() = %+v, want %+v", b.name, got, before)
		}
	}

	// The parked poll was neither superseded nor closed: the next message
	// reaches it, with seq 1 (nothing of the invalid batch took a seq).
	s.pushTo(t, idle, `"real"`)
	pr := decodePoll(t, await(t, parked, "parked poll"))
	wantDatas(t, "parked poll", pr, `"real"`)
	if pr.Cursor != 1 {
		t.Errorf("parked poll cursor %d, want 1", pr.Cursor)
	}
	// The pending messages are still there, in order, with their seqs.
	pf := s.messages(t, full, "")
	wantDatas(t, "full mailbox", pf, `"m1"`, `"m2"`)
	if got := seqs(pf.Messages); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("seqs %v, want 1, 2", got)
	}
	// The refused push did not consume a seq nor its idempotency id.
	s.messages(t, full, "2")
	res := s.push(t, `{"to":{"sessionId":"`+full+`"},"data":"x","id":"retry-me"}`)
	if res.Duplicate || res.Delivered != 1 {
		t.Errorf("retried push: %+v, want delivered (the refused push must not consume its id)", res)
	}
	pf = s.messages(t, full, "2")
	wantDatas(t, "full mailbox after the retry", pf, `"x"`)
	if pf.Cursor != 3 {
		t.Errorf("seq %d, want 3", pf.Cursor)
	}
	// Nor did the refused send.
	rec := s.do(t, "POST", "/send?sessionId="+idle, ctJSON, `{"to":{"deviceId":"full"},"data":"y","id":"send-1"}`)
	if rec.Code != http.StatusAccepted || strings.Contains(rec.Body.String(), "duplicate") {
		t.Errorf("retried send: %d %s", rec.Code, rec.Body)
	}
	// The offline store still holds exactly o1, o2.
	wantDatas(t, "offline device", s.messages(t, s.connect(t, "gone", ""), ""), `"o1"`, `"o2"`)
	// Both sessions are still online with their indexes.
	s.messages(t, full, "4") // acknowledges x and y
	if res := s.push(t, `{"to":{"topic":"news"},"data":"z"}`); res.Delivered != 2 {
		t.Errorf("topic push after the rejected requests: %+v", res)
	}
	// full: z; idle: real, z; gone: o1, o2 (none acknowledged).
	wantStats(t, s, poll.Stats{Sessions: 3, Devices: 3, Users: 2, Backlog: 5, IdempotencyIDs: 2}) // retry-me, send-1
}

// TestClientGoneWhileParked: a client that goes away while parked loses
// nothing; the poll is neither answered nor counted as parked afterwards.
func TestClientGoneWhileParked(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{})
	sid := s.connect(t, "d", "")
	ctx, cancel := context.WithCancel(context.Background())
	r := newRequest(http.MethodGet, "/data?timeout=60&sessionId="+sid, "", "").WithContext(ctx)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- s.serve(r) }()
	waitFor(t, "the poll to park", func() bool { return s.hub.Stats().Parked == 1 })
	cancel()
	rec := await(t, done, "cancelled poll")
	if rec.Body.Len() != 0 {
		t.Errorf("a departed client was written %d %s", rec.Code, rec.Body)
	}
	wantStats(t, s, poll.Stats{Sessions: 1, Devices: 1})
	s.pushTo(t, sid, "1")
	wantDatas(t, "next poll", s.messages(t, sid, ""), "1")
}

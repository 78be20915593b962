package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// errUnsupported is returned by a target for an operation its protocol lacks
// (Nchan has no batch publish); the scenario is then reported as skipped.
var errUnsupported = errors.New("not supported by this target")

// outcome is what a publisher learned about one pushed message.
type outcome uint8

const (
	accepted outcome = iota // the server took it (2xx)
	refused                 // the server visibly refused it (429)
	failed                  // transport error or unexpected status: fate unknown
)

// sub is one subscriber: a longpoll session, an Nchan channel or a
// golongpoll category, with that protocol's cursor. A sub is polled by exactly
// one goroutine at a time.
type sub struct {
	idx int    // subscriber index inside the scenario
	id  string // sessionId, channel id or category

	node     int // index into --url of the node it connects, polls and is closed on
	pushNode int // index into --url of the node pushes to it go to

	cursor  uint64 // longpoll: last acknowledged seq
	lastMod string // nchan: Last-Modified of the last response
	etag    string // nchan: Etag of the last response
	sinceMS int64  // golongpoll: timestamp of the last event (ms)
	lastID  string // golongpoll: id of the last event
}

// target speaks one server's protocol. Payloads are opaque JSON objects made
// by the scenario; a target only carries them.
type target interface {
	name() string
	// newSub prepares subscriber idx. shared subscribers listen to the
	// broadcast (fanout); the others to their own mailbox or channel.
	newSub(ctx context.Context, c *rawClient, idx int, shared bool) (*sub, error)
	// poll long-polls once with s's cursor, advances it, and returns the
	// payloads received (none on a timeout).
	poll(ctx context.Context, c *rawClient, s *sub) ([][]byte, error)
	// push sends one payload to s.
	push(ctx context.Context, c *rawClient, s *sub, data []byte) (outcome, error)
	// canBatch tells whether pushBatch is supported.
	canBatch() bool
	// pushBatch sends one payload to each of subs in one request.
	pushBatch(ctx context.Context, c *rawClient, subs []*sub, data [][]byte) ([]outcome, error)
	// broadcast sends one payload to every shared subscriber and returns how
	// many the server says it reached (-1 when the protocol does not say).
	broadcast(ctx context.Context, c *rawClient, data []byte) (int, error)
	// connect creates per-client state for client idx (connect storm).
	connect(ctx context.Context, c *rawClient, idx int) (*sub, error)
	// closeSub releases s on the server (best effort cleanup).
	closeSub(ctx context.Context, c *rawClient, s *sub) error
	// parked reports how many polls the server holds, when it can tell.
	parked(ctx context.Context, c *rawClient) (int, bool)
	// setRun sets the prefix of the ids this run creates.
	setRun(run string)
	// violations counts protocol anomalies seen (wrong seq order and so on).
	violations() int64
}

// newTarget returns the target of kind. key (longpoll only; "" for none)
// is sent as Authorization: Bearer on publisher requests.
func newTarget(kind, run string, holdSec int, startMS int64, key string) (target, error) {
	switch kind {
	case "longpoll":
		t := &longpollTarget{run: run, hold: holdSec}
		if key != "" {
			t.pub = map[string]string{"Authorization": "Bearer " + key}
		}
		return t, nil
	case "nchan":
		return &nchanTarget{run: run}, nil
	case "golongpoll":
		return &golongpollTarget{run: run, hold: holdSec, startMS: startMS}, nil
	}
	return nil, fmt.Errorf("unknown target %q (longpoll, nchan, golongpoll)", kind)
}

// httpError is a response with an unexpected status.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string {
	b := e.body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, strings.TrimSpace(b))
}

func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

// ---------------------------------------------------------------- longpoll

// longpollTarget speaks API.md: POST /connect, GET /data, POST /push.
type longpollTarget struct {
	run  string
	hold int
	pub  map[string]string // headers of publisher requests (the publish key); read only
	viol atomic.Int64
}

func (t *longpollTarget) name() string      { return "longpoll" }
func (t *longpollTarget) setRun(run string) { t.run = run }
func (t *longpollTarget) canBatch() bool    { return true }
func (t *longpollTarget) violations() int64 { return t.viol.Load() }

type lpConnectResp struct {
	SessionID string `json:"sessionId"`
	Cursor    uint64 `json:"cursor"`
}

func (t *longpollTarget) connectDevice(ctx context.Context, c *rawClient, device string, idx int) (*sub, error) {
	body, _ := json.Marshal(map[string]string{"deviceId": device})
	st, b, _, err := c.do(ctx, http.MethodPost, "/connect", body, nil)
	if err != nil {
		return nil, err
	}
	if st != http.StatusCreated {
		return nil, &httpError{st, string(b)}
	}
	var r lpConnectResp
	if err := json.Unmarshal(b, &r); err != nil || r.SessionID == "" {
		t.viol.Add(1)
		return nil, fmt.Errorf("connect: bad body %q", b)
	}
	return &sub{idx: idx, id: r.SessionID, cursor: r.Cursor}, nil
}

func (t *longpollTarget) newSub(ctx context.Context, c *rawClient, idx int, shared bool) (*sub, error) {
	return t.connectDevice(ctx, c, fmt.Sprintf("bench-%s-%d", t.run, idx), idx)
}

type lpPollResp struct {
	Cursor   uint64      `json:"cursor"`
	Messages []lpMessage `json:"messages"`
}

type lpMessage struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

func (t *longpollTarget) poll(ctx context.Context, c *rawClient, s *sub) ([][]byte, error) {
	u := "/data?sessionId=" + url.QueryEscape(s.id) +
		"&cursor=" + strconv.FormatUint(s.cursor, 10) + "&timeout=" + strconv.Itoa(t.hold)
	st, b, _, err := c.do(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		return nil, err
	}
	switch st {
	case http.StatusNoContent:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, &httpError{st, string(b)}
	}
	r, err := decodeLPPoll(b)
	if err != nil {
		t.viol.Add(1)
		return nil, fmt.Errorf("poll: bad body: %v", err)
	}
	out := make([][]byte, 0, len(r.Messages))
	prev := s.cursor
	for _, m := range r.Messages {
		// API.md: seq is 1, 2, 3 … per session and a response holds the
		// messages after the cursor, oldest first.
		if m.Seq != prev+1 {
			t.viol.Add(1)
		}
		prev = m.Seq
		out = append(out, m.Data)
	}
	if len(r.Messages) > 0 && r.Cursor != prev {
		t.viol.Add(1)
	}
	if r.Cursor > s.cursor {
		s.cursor = r.Cursor
	}
	return out, nil
}

type lpPushItem struct {
	To   map[string]string `json:"to,omitempty"`
	Data json.RawMessage   `json:"data"`
}

type lpPushResult struct {
	Delivered int `json:"delivered"`
	Stored    int `json:"stored"`
	Error     *struct {
		Code string `json:"code"`
	} `json:"error"`
}

func (t *longpollTarget) push(ctx context.Context, c *rawClient, s *sub, data []byte) (outcome, error) {
	body := lpPushBody(make([]byte, 0, 64+len(data)), s.id, data)
	st, b, _, err := c.do(ctx, http.MethodPost, "/push", body, t.pub)
	if err != nil {
		return failed, err
	}
	switch st {
	case http.StatusAccepted:
		if r, err := decodeLPPushResult(b); err != nil || r.Delivered != 1 {
			t.viol.Add(1)
		}
		return accepted, nil
	case http.StatusTooManyRequests:
		return refused, nil
	}
	return failed, &httpError{st, string(b)}
}

func (t *longpollTarget) pushBatch(ctx context.Context, c *rawClient, subs []*sub, data [][]byte) ([]outcome, error) {
	body := batchBody(len(subs), func(b []byte, i int) []byte { return lpPushBody(b, subs[i].id, data[i]) })
	out := make([]outcome, len(subs))
	st, b, _, err := c.do(ctx, http.MethodPost, "/push", body, t.pub)
	if err == nil && st != http.StatusAccepted {
		err = &httpError{st, string(b)}
	}
	if err != nil {
		for i := range out {
			out[i] = failed
		}
		return out, err
	}
	rs, err := decodeLPPushResults(b)
	if err != nil || len(rs) != len(subs) {
		t.viol.Add(1)
		for i := range out {
			out[i] = failed
		}
		return out, fmt.Errorf("batch: bad body (%d results for %d items)", len(rs), len(subs))
	}
	for i, r := range rs {
		switch {
		case r.Error == nil && r.Delivered == 1:
			out[i] = accepted
		case r.Error != nil && r.Error.Code == "mailbox_full":
			out[i] = refused
		default:
			t.viol.Add(1)
			out[i] = failed
		}
	}
	return out, nil
}

func (t *longpollTarget) broadcast(ctx context.Context, c *rawClient, data []byte) (int, error) {
	body, _ := json.Marshal(lpPushItem{Data: data})
	st, b, _, err := c.do(ctx, http.MethodPost, "/push", body, t.pub)
	if err != nil {
		return 0, err
	}
	if st != http.StatusAccepted {
		return 0, &httpError{st, string(b)}
	}
	var r lpPushResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.viol.Add(1)
		return -1, nil
	}
	return r.Delivered, nil
}

func (t *longpollTarget) connect(ctx context.Context, c *rawClient, idx int) (*sub, error) {
	return t.connectDevice(ctx, c, fmt.Sprintf("storm-%s-%d", t.run, idx), idx)
}

func (t *longpollTarget) closeSub(ctx context.Context, c *rawClient, s *sub) error {
	st, b, _, err := c.do(ctx, http.MethodDelete, "/session?sessionId="+url.QueryEscape(s.id), nil, nil)
	if err == nil && st != http.StatusNoContent && st != http.StatusNotFound {
		err = &httpError{st, string(b)}
	}
	return err
}

func (t *longpollTarget) parked(ctx context.Context, c *rawClient) (int, bool) {
	st, b, _, err := c.do(ctx, http.MethodGet, "/stats", nil, t.pub)
	if err != nil || st != http.StatusOK {
		return 0, false
	}
	var r struct {
		Parked *int `json:"parked"`
	}
	if json.Unmarshal(b, &r) != nil || r.Parked == nil {
		return 0, false
	}
	return *r.Parked, true
}

// ---------------------------------------------------------------- nchan

// nchanTarget speaks Nchan's long-poll subscriber (/sub/<channel>, cursor in
// Last-Modified/Etag, several messages per response newline-separated with
// nchan_longpoll_multipart_response raw) and its publisher (/pub/<channel>).
// Each subscriber has its own channel; the broadcast is one shared channel.
type nchanTarget struct {
	run  string
	viol atomic.Int64
}

func (t *nchanTarget) name() string      { return "nchan" }
func (t *nchanTarget) setRun(run string) { t.run = run }
func (t *nchanTarget) canBatch() bool    { return false }
func (t *nchanTarget) violations() int64 { return t.viol.Load() }

func (t *nchanTarget) newSub(ctx context.Context, c *rawClient, idx int, shared bool) (*sub, error) {
	if shared {
		return &sub{idx: idx, id: "b" + t.run}, nil
	}
	return &sub{idx: idx, id: "s" + t.run + "-" + strconv.Itoa(idx)}, nil
}

func (t *nchanTarget) poll(ctx context.Context, c *rawClient, s *sub) ([][]byte, error) {
	var hdr map[string]string
	if s.lastMod != "" {
		hdr = map[string]string{"If-Modified-Since": s.lastMod, "If-None-Match": s.etag}
	}
	st, b, h, err := c.do(ctx, http.MethodGet, "/sub/"+s.id, nil, hdr)
	if err != nil {
		return nil, err
	}
	switch st {
	case http.StatusOK:
	case http.StatusNotModified, http.StatusRequestTimeout:
		return nil, nil // subscriber timeout: poll again with the same cursor
	default:
		return nil, &httpError{st, string(b)}
	}
	lm, et := h.lastModified, h.etag
	if lm == "" {
		t.viol.Add(1)
	} else {
		s.lastMod, s.etag = lm, et
	}
	var out [][]byte
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out, nil
}

func (t *nchanTarget) pub(ctx context.Context, c *rawClient, channel string, data []byte) (outcome, error) {
	st, b, _, err := c.do(ctx, http.MethodPost, "/pub/"+channel, data, nil)
	if err != nil {
		return failed, err
	}
	if st == http.StatusCreated || st == http.StatusAccepted || st == http.StatusOK {
		return accepted, nil
	}
	if st == http.StatusTooManyRequests {
		return refused, nil
	}
	return failed, &httpError{st, string(b)}
}

func (t *nchanTarget) push(ctx context.Context, c *rawClient, s *sub, data []byte) (outcome, error) {
	return t.pub(ctx, c, s.id, data)
}

func (t *nchanTarget) pushBatch(context.Context, *rawClient, []*sub, [][]byte) ([]outcome, error) {
	return nil, errUnsupported
}

func (t *nchanTarget) broadcast(ctx context.Context, c *rawClient, data []byte) (int, error) {
	_, err := t.pub(ctx, c, "b"+t.run, data)
	return -1, err
}

func (t *nchanTarget) connect(ctx context.Context, c *rawClient, idx int) (*sub, error) {
	s := &sub{idx: idx, id: "c" + t.run + "-" + strconv.Itoa(idx)}
	_, err := t.pub(ctx, c, s.id, []byte(`{}`))
	return s, err
}

func (t *nchanTarget) closeSub(ctx context.Context, c *rawClient, s *sub) error {
	_, _, _, err := c.do(ctx, http.MethodDelete, "/pub/"+s.id, nil, nil)
	return err
}

func (t *nchanTarget) parked(context.Context, *rawClient) (int, bool) { return 0, false }

// ---------------------------------------------------------------- golongpoll

// golongpollTarget speaks jcuga/golongpoll's subscription handler (category,
// timeout, since_time, last_id) and the peer's /publish endpoints. Each
// subscriber has its own category; the broadcast is one shared category.
type golongpollTarget struct {
	run     string
	hold    int
	startMS int64
	viol    atomic.Int64
}

func (t *golongpollTarget) name() string      { return "golongpoll" }
func (t *golongpollTarget) setRun(run string) { t.run = run }
func (t *golongpollTarget) canBatch() bool    { return true }
func (t *golongpollTarget) violations() int64 { return t.viol.Load() }

func (t *golongpollTarget) newSub(ctx context.Context, c *rawClient, idx int, shared bool) (*sub, error) {
	s := &sub{idx: idx, sinceMS: t.startMS - 1}
	if shared {
		s.id = "b" + t.run
	} else {
		s.id = "s" + t.run + "-" + strconv.Itoa(idx)
	}
	return s, nil
}

type glpPollResp struct {
	Events  []glpEvent `json:"events"`
	Timeout string     `json:"timeout"`
	Error   string     `json:"error"`
}

type glpEvent struct {
	Timestamp int64           `json:"timestamp"`
	ID        string          `json:"id"`
	Data      json.RawMessage `json:"data"`
}

func (t *golongpollTarget) poll(ctx context.Context, c *rawClient, s *sub) ([][]byte, error) {
	u := "/events?category=" + url.QueryEscape(s.id) + "&timeout=" + strconv.Itoa(t.hold) +
		"&since_time=" + strconv.FormatInt(s.sinceMS, 10)
	if s.lastID != "" {
		u += "&last_id=" + s.lastID
	}
	st, b, _, err := c.do(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, &httpError{st, string(b)}
	}
	r, err := decodeGLPPoll(b)
	if err != nil {
		t.viol.Add(1)
		return nil, fmt.Errorf("poll: bad body: %v", err)
	}
	if r.Error != "" {
		return nil, &httpError{st, r.Error}
	}
	out := make([][]byte, 0, len(r.Events))
	for _, e := range r.Events {
		out = append(out, e.Data)
	}
	if n := len(r.Events); n > 0 {
		s.sinceMS, s.lastID = r.Events[n-1].Timestamp, r.Events[n-1].ID
	}
	return out, nil
}

type glpPublish struct {
	Category string          `json:"category"`
	Data     json.RawMessage `json:"data"`
}

func (t *golongpollTarget) pub(ctx context.Context, c *rawClient, path string, body []byte) error {
	st, b, _, err := c.do(ctx, http.MethodPost, path, body, nil)
	if err != nil {
		return err
	}
	if st != http.StatusOK {
		return &httpError{st, string(b)}
	}
	return nil
}

func (t *golongpollTarget) push(ctx context.Context, c *rawClient, s *sub, data []byte) (outcome, error) {
	body := glpPushBody(make([]byte, 0, 64+len(data)), s.id, data)
	if err := t.pub(ctx, c, "/publish", body); err != nil {
		return failed, err
	}
	return accepted, nil
}

func (t *golongpollTarget) pushBatch(ctx context.Context, c *rawClient, subs []*sub, data [][]byte) ([]outcome, error) {
	body := batchBody(len(subs), func(b []byte, i int) []byte { return glpPushBody(b, subs[i].id, data[i]) })
	out := make([]outcome, len(subs))
	err := t.pub(ctx, c, "/publish-batch", body)
	for i := range out {
		if err != nil {
			out[i] = failed
		} else {
			out[i] = accepted
		}
	}
	return out, err
}

func (t *golongpollTarget) broadcast(ctx context.Context, c *rawClient, data []byte) (int, error) {
	body, _ := json.Marshal(glpPublish{Category: "b" + t.run, Data: data})
	return -1, t.pub(ctx, c, "/publish", body)
}

func (t *golongpollTarget) connect(ctx context.Context, c *rawClient, idx int) (*sub, error) {
	s := &sub{idx: idx, id: "c" + t.run + "-" + strconv.Itoa(idx)}
	body, _ := json.Marshal(glpPublish{Category: s.id, Data: json.RawMessage(`{}`)})
	return s, t.pub(ctx, c, "/publish", body)
}

func (t *golongpollTarget) closeSub(context.Context, *rawClient, *sub) error { return nil }

func (t *golongpollTarget) parked(context.Context, *rawClient) (int, bool) { return 0, false }

package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ConnectRequest is the device payload of POST /connect, sent again on
// every reconnect.
type ConnectRequest struct {
	// DeviceID is required: 1-128 characters of [A-Za-z0-9._:@-]. A new
	// connect with the same DeviceID (from anywhere) ends the earlier
	// session, whose Run then stops with ErrSessionClosed.
	DeviceID string `json:"deviceId"`
	// UserID is optional, same characters.
	UserID string `json:"userId,omitempty"`
	// Topics to subscribe to: at most 64, each 1-200 characters of
	// [A-Za-z0-9._:/@-]; "$presence" hears other sessions come and go.
	Topics []string `json:"topics,omitempty"`
	// Meta is an optional JSON object of at most 4 KiB, shown in presence.
	Meta any `json:"meta,omitempty"`
}

// Session is a session as POST /connect returned it.
type Session struct {
	ID       string
	DeviceID string
	UserID   string
	Topics   []string
	Meta     json.RawMessage
	// Cursor is the session's starting cursor (0).
	Cursor uint64
	// PollTimeout is the server's default hold of a poll.
	PollTimeout time.Duration
	// SessionTTL is how long the session lives without a poll.
	SessionTTL time.Duration
}

// UnmarshalJSON reads the 201 body of POST /connect.
func (s *Session) UnmarshalJSON(b []byte) error {
	var w struct {
		SessionID   string          `json:"sessionId"`
		DeviceID    string          `json:"deviceId"`
		UserID      string          `json:"userId"`
		Topics      []string        `json:"topics"`
		Meta        json.RawMessage `json:"meta"`
		Cursor      uint64          `json:"cursor"`
		PollTimeout float64         `json:"pollTimeout"`
		SessionTTL  float64         `json:"sessionTTL"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.SessionID == "" {
		return errors.New("no sessionId")
	}
	*s = Session{ID: w.SessionID, DeviceID: w.DeviceID, UserID: w.UserID, Topics: w.Topics, Meta: w.Meta, Cursor: w.Cursor,
		PollTimeout: time.Duration(w.PollTimeout * float64(time.Second)), SessionTTL: time.Duration(w.SessionTTL * float64(time.Second))}
	return nil
}

// Message is a message as a device receives it.
type Message struct {
	// Seq is the message's place in its session's mailbox (1, 2, 3 …); it
	// starts again at 1 in a new session.
	Seq uint64 `json:"seq"`
	// ID is the message's id ("m_…"); it stays the same when the server
	// hands the message to a new session of the device.
	ID string `json:"id"`
	// Topic labels the message ("$presence" and "$heartbeat" are the
	// server's own).
	Topic string `json:"topic"`
	// From is "userId/deviceId" (or "deviceId") of a client that sent it
	// with /send; empty for a publisher's push.
	From string `json:"from,omitempty"`
	// Data is the message's JSON value.
	Data json.RawMessage `json:"data"`
	// SentAt is when the server accepted the message.
	SentAt time.Time `json:"sentAt"`
	// Raw is the message object as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// Handler handles one message. Returning nil acknowledges it (with the
// next poll); returning an error stops Run with that error and leaves the
// message unacknowledged, so a later Run hands it over again.
type Handler func(ctx context.Context, m Message) error

// Device is a connected device: a session on the server and the state of
// its receive loop (the cursor, the ids of recent messages). Run receives;
// Send and Disconnect may be called from any goroutine, also from the
// handler while Run is running.
type Device struct {
	c   *Client
	req ConnectRequest

	connecting chan struct{} // holds a token while a (re)connect is under way
	closed     chan struct{} // closed by Disconnect
	closeOnce  sync.Once
	running    atomic.Bool

	mu     sync.Mutex
	sess   Session
	cursor uint64 // highest seq handled in sess
	seen   ids    // recently handled message ids, across sessions
}

// Connect creates a session for req (POST /connect) and returns the
// device, ready to Run. Network errors, 5xx and 429 are retried with
// backoff until ctx ends; a Retry-After beyond ctx's deadline returns the
// *Error at once. A refusal (ErrInvalidPayload, ErrUnauthorized,
// ErrForbidden …) is returned as it is.
func (c *Client) Connect(ctx context.Context, req ConnectRequest) (*Device, error) {
	d := &Device{c: c, req: req, connecting: make(chan struct{}, 1), closed: make(chan struct{}), seen: newIDs(c.dedupeWindow)}
	if _, err := d.reconnect(ctx, ""); err != nil {
		return nil, err
	}
	return d, nil
}

// Session returns the device's current session (a new one after each
// reconnect).
func (d *Device) Session() Session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sess
}

// Cursor returns the highest seq handled in the current session: what the
// next poll acknowledges.
func (d *Device) Cursor() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cursor
}

func (d *Device) state() (Session, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sess, d.cursor
}

func (d *Device) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// Run polls for messages and hands each to h, in order and once, until ctx
// ends (it returns ctx's error), Disconnect is called (nil), h returns an
// error (that error), or the server ends the session: ErrSuperseded (409)
// or ErrSessionClosed (410) as an *Error. A refusal that retrying cannot
// cure (such as ErrUnauthorized on a reconnect) is returned too.
//
// Each poll acknowledges the messages h returned nil for. Network errors,
// 5xx and 429 are retried with the client's Backoff (at least the
// server's Retry-After); the first poll after a failure asks the server
// to answer at once. ErrSessionNotFound (the session expired, or the
// server restarted) and ErrInvalidCursor connect again with the same
// ConnectRequest and carry on; messages the server hands to the new
// session again are recognised by id and skipped.
//
// Only one Run may be active on a device at a time; a second returns an
// error at once. Run may be called again after it returned.
func (d *Device) Run(ctx context.Context, h Handler) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("longpoll: Run is already running on this device")
	}
	defer d.running.Store(false)
	if d.isClosed() {
		return ErrDeviceClosed
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.closed:
			cancel() // Disconnect: cut the poll short
		case <-ctx.Done():
		}
	}()
	// stopped is Run's answer once ctx has ended or the device closed.
	stopped := func() (error, bool) {
		if d.isClosed() {
			return nil, true
		}
		if err := parent.Err(); err != nil {
			return err, true
		}
		return nil, false
	}

	attempt, reconnects, probe := 0, 0, false
	for {
		if err, done := stopped(); done {
			return err
		}
		sess, cursor := d.state()
		msgs, err := d.poll(ctx, sess, cursor, probe)
		if err == nil {
			attempt, reconnects, probe = 0, 0, false
			if err := d.deliver(ctx, sess.ID, msgs, h); err != nil {
				return err
			}
			continue
		}
		if err, done := stopped(); done {
			return err
		}
		var ae *Error
		errors.As(err, &ae)
		switch {
		case ae != nil && (ae.Code == ErrSessionNotFound.Code || ae.Code == ErrInvalidCursor.Code):
			if d.Session().ID != sess.ID {
				continue // Send has connected again meanwhile
			}
			var wait time.Duration
			if reconnects > 0 { // again right after a reconnect: back off
				wait = d.c.backoff.Delay(reconnects - 1)
			}
			reconnects++
			d.notify(RetryInfo{Err: err, Wait: wait, Reconnect: true, Attempt: reconnects})
			if err := d.sleep(ctx, wait); err != nil {
				e, _ := stopped()
				return e
			}
			if _, err := d.reconnect(ctx, sess.ID); err != nil {
				if e, done := stopped(); done {
					return e
				}
				return err
			}
			probe = false
		case ae != nil && (ae.Code == ErrSuperseded.Code || ae.Code == ErrSessionClosed.Code):
			if d.Session().ID != sess.ID {
				continue // the answer of a session Send has replaced
			}
			return err
		case retryable(err):
			wait := d.c.backoff.Delay(attempt)
			if ae != nil && ae.RetryAfter > wait {
				wait = ae.RetryAfter
			}
			attempt++
			probe = true
			d.notify(RetryInfo{Err: err, Wait: wait, Attempt: attempt})
			if err := d.sleep(ctx, wait); err != nil {
				e, _ := stopped()
				return e
			}
		default:
			return err
		}
	}
}

func (d *Device) notify(info RetryInfo) {
	if d.c.onRetry != nil {
		d.c.onRetry(info)
	}
}

// sleep waits for dur, or until ctx ends or the device closes (an error).
func (d *Device) sleep(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.closed:
		return ErrDeviceClosed
	}
}

// pollBody is the 200 body of GET /data.
type pollBody struct {
	Cursor   uint64            `json:"cursor"`
	Messages []json.RawMessage `json:"messages"`
}

// poll sends one GET /data for sess with cursor and returns its messages
// (none for 204). probe asks the server to answer at once.
func (d *Device) poll(ctx context.Context, sess Session, cursor uint64, probe bool) ([]json.RawMessage, error) {
	q := url.Values{"sessionId": {sess.ID}, "cursor": {strconv.FormatUint(cursor, 10)}}
	hold := sess.PollTimeout
	switch {
	case probe:
		q.Set("timeout", "0")
		hold = 0
	case d.c.pollTimeout > 0:
		q.Set("timeout", strconv.FormatFloat(d.c.pollTimeout.Seconds(), 'f', -1, 64))
		hold = d.c.pollTimeout
	case hold <= 0:
		hold = 30 * time.Second
	}
	var body pollBody
	// The server answers within the hold (capped by its maximum, which the
	// hold of a session never exceeds); past it and a margin, the
	// connection is taken for dead.
	_, err := d.c.do(ctx, request{method: "GET", path: "/data", query: q, timeout: hold + d.c.requestTimeout}, &body)
	return body.Messages, err
}

// deliver hands the messages of a poll answer for session sid to h: each
// with a seq past the cursor and an id not handled before, in order. The
// cursor moves past each message h returned nil for (and each skipped
// one). An answer for a session that has been replaced meanwhile is
// dropped: the server hands its messages to the new session.
func (d *Device) deliver(ctx context.Context, sid string, raw []json.RawMessage, h Handler) error {
	for _, r := range raw {
		var m Message
		if err := json.Unmarshal(r, &m); err != nil {
			return &badResponse{what: "GET /data", err: err}
		}
		m.Raw = r
		d.mu.Lock()
		if d.sess.ID != sid {
			d.mu.Unlock()
			return nil
		}
		if m.Seq <= d.cursor {
			d.mu.Unlock()
			continue
		}
		dup := d.seen.has(m.ID)
		d.mu.Unlock()
		if !dup {
			if err := h(ctx, m); err != nil {
				return err
			}
		}
		d.mu.Lock()
		if d.sess.ID == sid && m.Seq > d.cursor {
			d.cursor = m.Seq
		}
		d.seen.add(m.ID)
		d.mu.Unlock()
	}
	return nil
}

// reconnect connects again unless the session is no longer stale (another
// goroutine has connected meanwhile), retrying as Connect says. The new
// session starts at its cursor; the ids already handled are kept.
func (d *Device) reconnect(ctx context.Context, stale string) (Session, error) {
	select {
	case d.connecting <- struct{}{}:
	case <-ctx.Done():
		return Session{}, ctx.Err()
	case <-d.closed:
		return Session{}, ErrDeviceClosed
	}
	defer func() { <-d.connecting }()
	if cur := d.Session(); cur.ID != stale {
		return cur, nil
	}
	for attempt := 0; ; attempt++ {
		s, err := d.connectOnce(ctx)
		if err == nil {
			if d.isClosed() {
				// Disconnected meanwhile: do not leave the new session behind.
				d.deleteSession(context.WithoutCancel(ctx), s.ID, 0)
				return Session{}, ErrDeviceClosed
			}
			d.mu.Lock()
			d.sess, d.cursor = s, s.Cursor
			d.mu.Unlock()
			return s, nil
		}
		if ctx.Err() != nil || d.isClosed() || !retryable(err) {
			return Session{}, err
		}
		wait := d.c.backoff.Delay(attempt)
		var ae *Error
		if errors.As(err, &ae) && ae.RetryAfter > wait {
			wait = ae.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return Session{}, err // the wait would outlast ctx
		}
		d.notify(RetryInfo{Err: err, Wait: wait, Reconnect: true, Attempt: attempt + 1})
		if err := d.sleep(ctx, wait); err != nil {
			return Session{}, err
		}
	}
}

// connectOnce sends one POST /connect.
func (d *Device) connectOnce(ctx context.Context) (Session, error) {
	var auth string
	if d.c.token != nil {
		tok, err := d.c.token(ctx)
		if err != nil {
			return Session{}, &tokenError{err}
		}
		auth = "Bearer " + tok
	}
	var s Session
	_, err := d.c.do(ctx, request{method: "POST", path: "/connect", body: d.req, auth: auth}, &s)
	return s, err
}

// tokenError is a failure of the TokenSource; it is not retried.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "longpoll: connect token: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// Send sends a message to other clients (POST /send): To must name a
// UserID, DeviceID or Topic; the server sets From to this device. If the
// session is gone (ErrSessionNotFound) it connects again and sends once
// more. After Disconnect it returns ErrDeviceClosed.
func (d *Device) Send(ctx context.Context, p Push) (Result, error) {
	var res Result
	err := d.send(ctx, p, &res)
	return res, err
}

// SendBatch sends up to 1000 messages in one POST /send, as PushBatch
// does for publishers.
func (d *Device) SendBatch(ctx context.Context, batch []Push) ([]BatchResult, error) {
	if batch == nil {
		batch = []Push{}
	}
	var res []BatchResult
	err := d.send(ctx, batch, &res)
	return res, err
}

func (d *Device) send(ctx context.Context, body, out any) error {
	if d.isClosed() {
		return ErrDeviceClosed
	}
	sid := d.Session().ID
	_, err := d.c.do(ctx, request{method: "POST", path: "/send", query: url.Values{"sessionId": {sid}}, body: body}, out)
	if !errors.Is(err, ErrSessionNotFound) {
		return err
	}
	s, err := d.reconnect(ctx, sid)
	if err != nil {
		return err
	}
	_, err = d.c.do(ctx, request{method: "POST", path: "/send", query: url.Values{"sessionId": {s.ID}}, body: body}, out)
	return err
}

// Disconnect ends the session (DELETE /session) and stops Run, which then
// returns nil. It sends the cursor, so the messages already handled are
// acknowledged and do not come again to the device's next session; the
// others wait for it in the server's offline store. Call it after Run has
// returned to acknowledge exactly what the handler finished. A session
// the server no longer knows is not an error; later calls do nothing.
func (d *Device) Disconnect(ctx context.Context) error {
	first := false
	d.closeOnce.Do(func() {
		close(d.closed)
		first = true
	})
	if !first {
		return nil
	}
	sess, cursor := d.state()
	if sess.ID == "" {
		return nil
	}
	return d.deleteSession(ctx, sess.ID, cursor)
}

func (d *Device) deleteSession(ctx context.Context, sid string, cursor uint64) error {
	q := url.Values{"sessionId": {sid}}
	if cursor > 0 {
		q.Set("cursor", strconv.FormatUint(cursor, 10))
	}
	_, err := d.c.do(ctx, request{method: "DELETE", path: "/session", query: q}, nil)
	if errors.Is(err, ErrSessionNotFound) {
		return nil
	}
	return err
}

// ids remembers the last n message ids, in a ring.
type ids struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newIDs(n int) ids { return ids{set: make(map[string]struct{}, n), ring: make([]string, n)} }

func (s *ids) has(id string) bool {
	_, ok := s.set[id]
	return ok && id != ""
}

func (s *ids) add(id string) {
	if id == "" || len(s.ring) == 0 || s.has(id) {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.set, old)
	}
	s.ring[s.next] = id
	s.set[id] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"
)

// Target says whom a message goes to: exactly one field set. The zero
// Target is a broadcast to every online session (Push only; Send needs a
// target). Presence takes UserID or DeviceID; Disconnect takes SessionID,
// DeviceID or UserID.
type Target struct {
	SessionID string `json:"sessionId,omitempty"`
	DeviceID  string `json:"deviceId,omitempty"`
	UserID    string `json:"userId,omitempty"`
	Topic     string `json:"topic,omitempty"`
}

// IsZero reports whether no field is set (a broadcast).
func (t Target) IsZero() bool { return t == Target{} }

// Push is one message to publish (Push, PushBatch) or to send from a
// device (Device.Send).
type Push struct {
	// To is the target; the zero Target is a broadcast.
	To Target
	// Topic labels the message; empty means the target topic (or none).
	Topic string
	// Data is the message: any value encoding/json can encode, at most
	// 64 KiB encoded. A json.RawMessage or []byte holding JSON is sent as
	// it is; nil is JSON null.
	Data any
	// TTL is how long a copy for an offline device or user waits: 0 is the
	// server's --offline-ttl; otherwise whole seconds (rounded up) from 1 s
	// to 30 days. The server caps a /send's ttl at its --offline-ttl.
	TTL time.Duration
	// ID is an optional idempotency key (at most 128 characters): the same
	// ID pushed again while the first push's ttl runs is not delivered
	// twice, and answers the first push's result with Duplicate set.
	ID string
}

// MarshalJSON encodes p as the API's push object: {"to", "topic", "data",
// "ttl", "id"}, leaving out what is empty.
func (p Push) MarshalJSON() ([]byte, error) {
	var w struct {
		To    *Target         `json:"to,omitempty"`
		Topic string          `json:"topic,omitempty"`
		Data  json.RawMessage `json:"data"`
		TTL   int64           `json:"ttl,omitempty"`
		ID    string          `json:"id,omitempty"`
	}
	if !p.To.IsZero() {
		to := p.To
		w.To = &to
	}
	w.Topic, w.ID = p.Topic, p.ID
	switch d := p.Data.(type) {
	case json.RawMessage:
		w.Data = d
	case []byte:
		w.Data = d
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		w.Data = b
	}
	if len(w.Data) == 0 {
		w.Data = json.RawMessage("null")
	}
	if !json.Valid(w.Data) {
		return nil, errors.New("data: not valid JSON")
	}
	if p.TTL > 0 {
		w.TTL = int64(math.Ceil(p.TTL.Seconds()))
	}
	return json.Marshal(w)
}

// Result is the server's answer to one accepted message.
type Result struct {
	// ID is the message's id ("m_…"); for a duplicate, the first push's.
	ID string `json:"id"`
	// Delivered counts the online sessions whose mailbox got it.
	Delivered int `json:"delivered"`
	// Stored counts the copies kept for offline devices or users.
	Stored int `json:"stored"`
	// Rejected counts fan-out sessions whose mailbox was full.
	Rejected int `json:"rejected"`
	// Duplicate is true when the ID was seen before: nothing was delivered
	// this time, and the counts are the first push's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// BatchResult is the answer to one item of a batch: its Result, or Err
// when the server refused the item while applying the batch (a full
// mailbox).
type BatchResult struct {
	Result
	// Err is the item's refusal (Status is 0: the batch as a whole was
	// accepted with 202); nil when the item was accepted.
	Err *Error
}

// MarshalJSON writes the item as the server did: the Result, or
// {"error": {"code", "message"}}.
func (b BatchResult) MarshalJSON() ([]byte, error) {
	if b.Err != nil {
		type wireError struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		return json.Marshal(struct {
			Error wireError `json:"error"`
		}{wireError{b.Err.Code, b.Err.Message}})
	}
	return json.Marshal(b.Result)
}

// UnmarshalJSON reads a result or an {"error": {...}} item.
func (b *BatchResult) UnmarshalJSON(data []byte) error {
	var w struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if w.Error != nil {
		*b = BatchResult{Err: &Error{Code: w.Error.Code, Message: w.Error.Message}}
		return nil
	}
	*b = BatchResult{}
	return json.Unmarshal(data, &b.Result)
}

// Push publishes one message (POST /push) with the publish key. Without a
// To it is a broadcast to every online session. A refusal is an *Error:
// ErrSessionNotFound for an unknown SessionID target, ErrMailboxFull when a
// single target's mailbox is full, ErrPayloadTooLarge, ErrUnauthorized,
// ErrForbidden, ErrInvalidPayload. It is not retried.
func (c *Client) Push(ctx context.Context, p Push) (Result, error) {
	var res Result
	_, err := c.do(ctx, request{method: "POST", path: "/push", body: p, auth: c.publisherAuth()}, &res)
	return res, err
}

// PushBatch publishes up to 1000 messages in one request, applied in
// order. The batch is validated whole: an invalid item fails it all with
// ErrInvalidPayload (naming the index) and nothing is delivered. Otherwise
// the answer has one BatchResult per item, in order; an item refused while
// applying (a full mailbox) has its Err set. An empty (or nil) batch is
// accepted and answers no results.
func (c *Client) PushBatch(ctx context.Context, batch []Push) ([]BatchResult, error) {
	if batch == nil {
		batch = []Push{}
	}
	var res []BatchResult
	_, err := c.do(ctx, request{method: "POST", path: "/push", body: batch, auth: c.publisherAuth()}, &res)
	return res, err
}

// PushBatchJSON is PushBatch for push objects that are already JSON
// ({"to", "topic", "data", "ttl", "id"}, as API.md describes them): each
// item is sent as it is, so the server judges it, and an item this
// package's Push cannot express reaches it unchanged (an explicit
// "to": null, which the server refuses with ErrInvalidPayload rather than
// read as a broadcast). An item that is not valid JSON fails the call
// before anything is sent. The answer is as for PushBatch.
func (c *Client) PushBatchJSON(ctx context.Context, items []json.RawMessage) ([]BatchResult, error) {
	if items == nil {
		items = []json.RawMessage{}
	}
	var res []BatchResult
	_, err := c.do(ctx, request{method: "POST", path: "/push", body: items, auth: c.publisherAuth()}, &res)
	return res, err
}

// PresenceSession is an online session as GET /presence lists it.
type PresenceSession struct {
	SessionID   string          `json:"sessionId"`
	DeviceID    string          `json:"deviceId"`
	UserID      string          `json:"userId,omitempty"`
	Topics      []string        `json:"topics"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	ConnectedAt time.Time       `json:"connectedAt"`
}

// Presence lists the online sessions of who.UserID (oldest first) or of
// who.DeviceID (at most one), with the publish key. Exactly one of the two
// must be set (the server refuses anything else with ErrInvalidPayload). Nobody online is an empty
// list, not an error.
func (c *Client) Presence(ctx context.Context, who Target) ([]PresenceSession, error) {
	q := url.Values{}
	if who.UserID != "" {
		q.Set("userId", who.UserID)
	}
	if who.DeviceID != "" {
		q.Set("deviceId", who.DeviceID)
	}
	var out struct {
		Sessions []PresenceSession `json:"sessions"`
	}
	_, err := c.do(ctx, request{method: "GET", path: "/presence", query: q, auth: c.publisherAuth()}, &out)
	return out.Sessions, err
}

// Stats is the body of GET /stats.
type Stats struct {
	Sessions        int   `json:"sessions"`
	Parked          int   `json:"parked"`
	Devices         int   `json:"devices"`
	Users           int   `json:"users"`
	OfflineMessages int   `json:"offlineMessages"`
	Backlog         int   `json:"backlog"`
	UptimeSeconds   int64 `json:"uptimeSeconds"`
	// Raw is the body as the server sent it, with any fields this version
	// of the client does not know.
	Raw json.RawMessage `json:"-"`
}

// Stats returns the server's counters (GET /stats), with the publish key.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var raw json.RawMessage
	if _, err := c.do(ctx, request{method: "GET", path: "/stats", auth: c.publisherAuth()}, &raw); err != nil {
		return Stats{}, err
	}
	var s Stats
	if err := json.Unmarshal(raw, &s); err != nil {
		return Stats{}, &badResponse{what: "GET /stats", err: err}
	}
	s.Raw = raw
	return s, nil
}

// Disconnect ends the sessions of who.SessionID, who.DeviceID or
// who.UserID (exactly one; POST /disconnect, a longpoll extension) with
// the publish key, and returns how many ended. Their parked polls are
// answered 410 session_closed, so their Device.Run loops stop with
// ErrSessionClosed. Nobody online is 0, not an error; another number of
// fields than one is refused by the server with ErrInvalidPayload.
func (c *Client) Disconnect(ctx context.Context, who Target) (int, error) {
	var out struct {
		Disconnected int `json:"disconnected"`
	}
	// The fields that are set, as they are: the server refuses anything
	// but exactly one of sessionId, deviceId and userId (ErrInvalidPayload).
	body := map[string]string{}
	for k, v := range map[string]string{"sessionId": who.SessionID, "deviceId": who.DeviceID, "userId": who.UserID, "topic": who.Topic} {
		if v != "" {
			body[k] = v
		}
	}
	_, err := c.do(ctx, request{method: "POST", path: "/disconnect", body: body, auth: c.publisherAuth()}, &out)
	return out.Disconnected, err
}

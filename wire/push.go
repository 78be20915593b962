package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/longpoll/longpoll/internal/jsonscan"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// wirePush is the JSON form of a push item. Pointer fields tell "absent"
// from "empty".
type wirePush struct {
	To    json.RawMessage `json:"to"`
	Topic *string         `json:"topic"`
	Data  json.RawMessage `json:"data"`
	TTL   *int64          `json:"ttl"`
	ID    *string         `json:"id"`
}

// wireTarget is the "to" object. Raw fields tell a present null (refused)
// from an absent field.
type wireTarget struct {
	SessionID json.RawMessage `json:"sessionId"`
	DeviceID  json.RawMessage `json:"deviceId"`
	UserID    json.RawMessage `json:"userId"`
	Topic     json.RawMessage `json:"topic"`
}

// Origin says who publishes, which decides what a push may do.
type Origin int

// Publisher pushes may broadcast, target a session and use system topics;
// Client sends (POST /send) must name a user, device or ordinary topic.
const (
	Publisher Origin = iota
	Client
)

// ParsePushes parses a push body: one JSON object, or an array of up to
// poll.MaxBatchSize objects (batch reports true). A batch is validated whole: the
// first bad item fails everything, and the error names its index. Errors
// wrap session.ErrInvalidPayload or poll.ErrPayloadTooLarge.
func ParsePushes(body []byte, origin Origin) (pushes []poll.Push, batch bool, err error) {
	return parsePushes(body, origin, true)
}

// parsePushes is ParsePushes; with scan false it never uses the scanner
// (the tests compare the two ways).
func parsePushes(body []byte, origin Origin, scan bool) (pushes []poll.Push, batch bool, err error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, false, fmt.Errorf("%w: empty body", session.ErrInvalidPayload)
	}
	if body[0] != '[' {
		var p poll.Push
		sc := jsonscan.New(body)
		if w, ok := scanPush(sc); scan && ok && sc.End() {
			p, err = fromWire(&w, origin)
		} else {
			p, err = parsePush(body, origin)
		}
		if err != nil {
			return nil, false, err
		}
		return []poll.Push{p}, false, nil
	}
	// Fast path: one pass over the whole batch, by scanBatch or else by
	// one decoder. Any error sends the batch through the item-by-item path
	// below, which names the index.
	var ws []*wirePush
	ok := false
	if scan {
		ws, ok = scanBatch(body)
	}
	if !ok {
		ws = nil // fresh: decoding into the scanner's items would reuse (and overwrite) them
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		ok = dec.Decode(&ws) == nil && atEOF(dec)
	}
	if ok && len(ws) <= poll.MaxBatchSize && !slices.Contains(ws, nil) {
		pushes = make([]poll.Push, len(ws))
		i := 0
		for ; i < len(ws); i++ {
			if pushes[i], err = fromWire(ws[i], origin); err != nil {
				break
			}
		}
		if i == len(ws) {
			return pushes, true, nil
		}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, true, fmt.Errorf("%w: malformed JSON array", session.ErrInvalidPayload)
	}
	if len(items) > poll.MaxBatchSize {
		return nil, true, fmt.Errorf("%w: a batch holds at most %d items, got %d", session.ErrInvalidPayload, poll.MaxBatchSize, len(items))
	}
	pushes = make([]poll.Push, len(items))
	for i, raw := range items {
		p, err := parsePush(raw, origin)
		if errors.Is(err, poll.ErrPayloadTooLarge) {
			// API.md: a bad batch is 400 invalid_payload naming the index.
			err = fmt.Errorf("%w: %s", session.ErrInvalidPayload, err.Error())
		}
		if err != nil {
			return nil, true, fmt.Errorf("item %d: %w", i, err)
		}
		pushes[i] = p
	}
	return pushes, true, nil
}

// scanPush reads a push object of the usual plain form without a decoder:
// each field at most once and spelled exactly, topic and id plain strings,
// ttl a plain integer, "to" of simpleTarget's form, data any valid JSON.
// ok is false for anything else, valid or not; the decoder then decides.
// What it accepts, the decoder accepts and reads the same way
// (FuzzScanPush).
func scanPush(s *jsonscan.Scanner) (w wirePush, ok bool) {
	var seen [5]bool
	once := func(i int) bool {
		if seen[i] {
			return false
		}
		seen[i] = true
		return true
	}
	str := func(dst **string, i int) bool {
		v, ok := s.Str()
		if !ok || !once(i) {
			return false
		}
		str := string(v)
		*dst = &str
		return true
	}
	ok = s.Object(func(k []byte) bool {
		switch string(k) {
		case "to":
			v, ok := s.Value()
			if _, _, simple := simpleTarget(v); !ok || !simple || !once(0) {
				return false
			}
			w.To = v[:len(v):len(v)] // capped: nothing appended to it can reach the body
		case "topic":
			return str(&w.Topic, 1)
		case "data":
			v, ok := s.Value() // checked as json.Valid checks
			if !ok || !once(2) {
				return false
			}
			w.Data = bytes.Clone(v)
		case "ttl":
			v, ok := s.Int()
			if !ok || !once(3) {
				return false
			}
			w.TTL = &v
		case "id":
			return str(&w.ID, 4)
		default:
			return false
		}
		return true
	})
	return w, ok
}

// scanBatch reads a batch of pushes of scanPush's form.
func scanBatch(body []byte) (ws []*wirePush, ok bool) {
	s := jsonscan.New(body)
	ws = []*wirePush{}
	ok = s.Array(func() bool {
		if len(ws) == poll.MaxBatchSize {
			return false // too many: the decoder path names the error
		}
		w, ok := scanPush(s)
		ws = append(ws, &w)
		return ok
	}) && s.End()
	return ws, ok
}

func parsePush(body []byte, origin Origin) (poll.Push, error) {
	if len(body) == 0 || body[0] != '{' {
		return poll.Push{}, fmt.Errorf("%w: a push must be a JSON object", session.ErrInvalidPayload)
	}
	var w wirePush
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return poll.Push{}, fmt.Errorf("%w: %s", session.ErrInvalidPayload, describeJSONError(err))
	}
	if !atEOF(dec) {
		return poll.Push{}, fmt.Errorf("%w: trailing data after the JSON object", session.ErrInvalidPayload)
	}
	return fromWire(&w, origin)
}

// fromWire validates a decoded push item.
func fromWire(w *wirePush, origin Origin) (poll.Push, error) {
	var p poll.Push
	if err := setTarget(&p, w.To, origin); err != nil {
		return poll.Push{}, err
	}
	p.Topic = p.To.Topic
	if w.Topic != nil && *w.Topic != "" {
		if !session.ValidTopic(*w.Topic) {
			return poll.Push{}, invalid("topic must be 1-%d characters of [A-Za-z0-9._:/@-], optionally after a leading '$'", session.MaxTopicLen)
		}
		p.Topic = *w.Topic
	}
	if origin == Client && strings.HasPrefix(p.Topic, "$") {
		return poll.Push{}, invalid("system topics ($…) are reserved for the server")
	}
	if len(w.Data) > poll.MaxDataBytes {
		return poll.Push{}, fmt.Errorf("%w: data is %d bytes, the limit is %d", poll.ErrPayloadTooLarge, len(w.Data), poll.MaxDataBytes)
	}
	p.Data = w.Data
	if w.TTL != nil {
		if *w.TTL <= 0 || *w.TTL > int64(poll.MaxTTL/time.Second) {
			return poll.Push{}, invalid("ttl must be a whole number of seconds from 1 to %d", int64(poll.MaxTTL/time.Second))
		}
		p.TTL = time.Duration(*w.TTL) * time.Second
	}
	if w.ID != nil {
		if !session.ValidID(*w.ID) {
			return poll.Push{}, invalid("id must be 1-%d characters of [A-Za-z0-9._:@-]", poll.MaxKeyLen)
		}
		p.Key = *w.ID
	}
	return p, nil
}

func setTarget(p *poll.Push, raw json.RawMessage, origin Origin) (err error) {
	if len(raw) == 0 {
		if origin == Client {
			return invalid("to is required: name a userId, deviceId or topic")
		}
		return nil // no "to": a broadcast
	}
	if raw[0] != '{' {
		return invalid("to must be an object holding one of sessionId, deviceId, userId, topic (omit it to broadcast)")
	}
	name, value, simple := simpleTarget(raw)
	if simple {
		*field(&p.To, name) = value
	} else if name, err = decodeTarget(&p.To, raw); err != nil {
		return err
	}
	switch name {
	case "":
		if origin == Client {
			return invalid("to must name a userId, deviceId or topic")
		}
	case "sessionId":
		if origin == Client {
			return invalid("to.sessionId is not allowed here: name a userId, deviceId or topic")
		}
		if p.To.SessionID == "" || len(p.To.SessionID) > 256 {
			return invalid("to.sessionId must be a session ID")
		}
	case "deviceId":
		if !session.ValidID(p.To.DeviceID) {
			return invalid("to.deviceId must be 1-%d characters of [A-Za-z0-9._:@-]", session.MaxIDLen)
		}
	case "userId":
		if !session.ValidID(p.To.UserID) {
			return invalid("to.userId must be 1-%d characters of [A-Za-z0-9._:@-]", session.MaxIDLen)
		}
	case "topic":
		if !session.ValidTopic(p.To.Topic) {
			return invalid("to.topic must be 1-%d characters of [A-Za-z0-9._:/@-], optionally after a leading '$'", session.MaxTopicLen)
		}
		if origin == Client && strings.HasPrefix(p.To.Topic, "$") {
			return invalid("system topics ($…) are reserved for the server")
		}
	}
	return nil
}

// decodeTarget decodes a "to" object of any shape into to and returns the
// name of its one field ("" for an empty object).
func decodeTarget(to *poll.Target, raw json.RawMessage) (name string, err error) {
	var w wireTarget
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return "", invalid("to: unknown field %s (use sessionId, deviceId, userId or topic)", f)
		}
		return "", invalid("to must be an object holding one of sessionId, deviceId, userId, topic (omit it to broadcast)")
	}
	fields := []struct {
		name string
		raw  json.RawMessage
	}{
		{"sessionId", w.SessionID},
		{"deviceId", w.DeviceID},
		{"userId", w.UserID},
		{"topic", w.Topic},
	}
	for _, f := range fields {
		if len(f.raw) == 0 {
			continue
		}
		if name != "" {
			return "", invalid("to must hold exactly one of sessionId, deviceId, userId, topic")
		}
		name = f.name
		if err := json.Unmarshal(f.raw, field(to, name)); err != nil || f.raw[0] != '"' {
			return "", invalid("to.%s must be a string", f.name)
		}
	}
	return name, nil
}

// simpleTarget reads a "to" object of the usual shape without a decoder:
// {"name":"value"} with one of the four field names spelled exactly, JSON
// whitespace around the tokens, and a value of printable ASCII without
// escapes (so its bytes are the decoded string). ok is false for any other
// shape, valid or not; decodeTarget then decides.
func simpleTarget(raw []byte) (name, value string, ok bool) {
	s := jsonscan.New(raw)
	n := 0
	ok = s.Object(func(k []byte) bool {
		v, ok := s.Str()
		name, value = string(k), string(v)
		n++
		return ok && n == 1
	}) && n == 1 && s.End()
	switch name {
	case "sessionId", "deviceId", "userId", "topic":
		if ok {
			return name, value, true
		}
	}
	return "", "", false
}

// field returns the field of t that the "to" key name sets.
func field(t *poll.Target, name string) *string {
	switch name {
	case "sessionId":
		return &t.SessionID
	case "deviceId":
		return &t.DeviceID
	case "userId":
		return &t.UserID
	}
	return &t.Topic
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{session.ErrInvalidPayload}, args...)...)
}

package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Limits of the connect payload (API.md, POST /connect).
const (
	MaxIDLen     = 128      // deviceId and userId length
	MaxTopics    = 64       // topics per session
	MaxTopicLen  = 200      // one topic name
	MaxMetaBytes = 4 << 10  // encoded meta object
	MaxBodyBytes = 64 << 10 // whole connect body; larger is payload_too_large
)

// System topics a client may subscribe to. Other names starting with '$' are
// reserved and refused.
const (
	TopicPresence  = "$presence"
	TopicHeartbeat = "$heartbeat"
)

// ErrInvalidPayload is wrapped by every validation failure of a connect
// payload; the wrapping message says which field is wrong and why.
var ErrInvalidPayload = errors.New("invalid payload")

// Request is a validated connect payload.
type Request struct {
	DeviceID string
	UserID   string
	Topics   []string
	Meta     json.RawMessage
}

// NewSession returns a session for r with a fresh ID, created at now.
func (r Request) NewSession(now time.Time) *Session {
	return &Session{
		ID:        NewID(),
		DeviceID:  r.DeviceID,
		UserID:    r.UserID,
		Topics:    r.Topics,
		Meta:      r.Meta,
		CreatedAt: now,
	}
}

// jsonRequest is the wire form of the JSON connect payload.
type jsonRequest struct {
	DeviceID string          `json:"deviceId"`
	UserID   string          `json:"userId"`
	Topics   []string        `json:"topics"`
	Meta     json.RawMessage `json:"meta"`
}

// ParseJSON parses and validates a JSON connect payload. Unknown fields,
// trailing data and wrong types are refused with ErrInvalidPayload.
func ParseJSON(body []byte) (Request, error) {
	var jr jsonRequest
	if err := decodeStrict(body, &jr); err != nil {
		return Request{}, err
	}
	return validate(jr)
}

// ParseForm parses and validates a form-encoded connect payload: deviceId,
// userId, topics (repeated and/or comma-separated) and meta (a JSON object
// as a string).
func ParseForm(body []byte) (Request, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return Request{}, fmt.Errorf("%w: malformed form body", ErrInvalidPayload)
	}
	jr := jsonRequest{DeviceID: vals.Get("deviceId"), UserID: vals.Get("userId")}
	for k := range vals {
		switch k {
		case "deviceId", "userId", "topics", "meta":
		default:
			return Request{}, fmt.Errorf("%w: unknown field %q", ErrInvalidPayload, k)
		}
	}
	for _, t := range vals["topics"] {
		for _, part := range strings.Split(t, ",") {
			if part = strings.TrimSpace(part); part != "" {
				jr.Topics = append(jr.Topics, part)
			}
		}
	}
	if m := vals.Get("meta"); m != "" {
		jr.Meta = json.RawMessage(m)
	}
	return validate(jr)
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidPayload, DescribeJSONError(err))
	}
	if !AtEOF(dec) {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidPayload)
	}
	return nil
}

// AtEOF reports whether dec has nothing but white space left. (dec.More is
// not enough: it is false before a stray '}' or ']'.)
func AtEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// DescribeJSONError turns an encoding/json decoding error into a message
// for the client (no "json:" prefix; a wrong type names the field).
func DescribeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if msg == "EOF" {
		return "empty body"
	}
	return msg
}

func validate(jr jsonRequest) (Request, error) {
	if jr.DeviceID == "" {
		return Request{}, fmt.Errorf("%w: deviceId is required", ErrInvalidPayload)
	}
	if !ValidID(jr.DeviceID) {
		return Request{}, fmt.Errorf("%w: deviceId must be 1-%d characters of [A-Za-z0-9._:@-]", ErrInvalidPayload, MaxIDLen)
	}
	if jr.UserID != "" && !ValidID(jr.UserID) {
		return Request{}, fmt.Errorf("%w: userId must be 1-%d characters of [A-Za-z0-9._:@-]", ErrInvalidPayload, MaxIDLen)
	}
	if len(jr.Topics) > MaxTopics {
		return Request{}, fmt.Errorf("%w: at most %d topics", ErrInvalidPayload, MaxTopics)
	}
	topics := make([]string, 0, len(jr.Topics))
	seen := make(map[string]bool, len(jr.Topics))
	for i, t := range jr.Topics {
		if err := CheckSubscribable(t); err != nil {
			return Request{}, fmt.Errorf("%w: topics[%d]: %s", ErrInvalidPayload, i, err.Error())
		}
		if !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	r := Request{DeviceID: jr.DeviceID, UserID: jr.UserID, Topics: topics}
	// null, however spaced (a form's meta is raw text), means no meta.
	if meta := bytes.TrimSpace(jr.Meta); len(meta) > 0 && string(meta) != "null" {
		if len(meta) > MaxMetaBytes {
			return Request{}, fmt.Errorf("%w: meta is larger than %d bytes", ErrInvalidPayload, MaxMetaBytes)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(meta, &obj); err != nil {
			return Request{}, fmt.Errorf("%w: meta must be a JSON object", ErrInvalidPayload)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, meta); err != nil {
			return Request{}, fmt.Errorf("%w: meta must be a JSON object", ErrInvalidPayload)
		}
		r.Meta = buf.Bytes()
	}
	return r, nil
}

// ValidID reports whether s is a valid deviceId or userId: 1-128 characters
// of [A-Za-z0-9._:@-].
func ValidID(s string) bool {
	return validChars(s, MaxIDLen, false)
}

// ValidTopic reports whether s is a valid topic name: 1-200 characters of
// [A-Za-z0-9._:/@-], optionally after a leading '$' (system topics).
func ValidTopic(s string) bool {
	return len(s) <= MaxTopicLen && validChars(strings.TrimPrefix(s, "$"), MaxTopicLen, true)
}

// CheckSubscribable returns a description of why a client may not subscribe
// to topic, or nil: the name must be valid, and the only '$' names allowed
// are the system topics $presence and $heartbeat.
func CheckSubscribable(topic string) error {
	if !ValidTopic(topic) {
		return fmt.Errorf("topic must be 1-%d characters of [A-Za-z0-9._:/@-], optionally after a leading '$'", MaxTopicLen)
	}
	if strings.HasPrefix(topic, "$") && topic != TopicPresence && topic != TopicHeartbeat {
		return fmt.Errorf("unknown system topic %q (known: %s, %s)", topic, TopicPresence, TopicHeartbeat)
	}
	return nil
}

func validChars(s string, maxLen int, slash bool) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		case c == '/' && slash:
		default:
			return false
		}
	}
	return true
}

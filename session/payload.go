package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	// Permit limits the topics the session may send to; nil: any. The
	// connect token's grant sets it (auth.Grant.Connect).
	Permit *Permit
}

// NewSession returns a session for r with a fresh ID, created at now.
func (r Request) NewSession(now time.Time) *Session {
	return &Session{
		ID:        NewID(),
		DeviceID:  r.DeviceID,
		UserID:    r.UserID,
		Topics:    r.Topics,
		Meta:      r.Meta,
		Permit:    r.Permit,
		CreatedAt: now,
	}
}

// NewRequest validates a connect payload's fields (the edge has decoded
// them: wire.ParseConnectJSON, wire.ParseConnectForm) and returns the
// request: topics deduplicated in order, meta compacted (absent, empty or
// null meta is none). Every failure wraps ErrInvalidPayload and names the
// field.
func NewRequest(deviceID, userID string, topics []string, meta json.RawMessage) (Request, error) {
	if deviceID == "" {
		return Request{}, fmt.Errorf("%w: deviceId is required", ErrInvalidPayload)
	}
	if !ValidID(deviceID) {
		return Request{}, fmt.Errorf("%w: deviceId must be 1-%d characters of [A-Za-z0-9._:@-]", ErrInvalidPayload, MaxIDLen)
	}
	if userID != "" && !ValidID(userID) {
		return Request{}, fmt.Errorf("%w: userId must be 1-%d characters of [A-Za-z0-9._:@-]", ErrInvalidPayload, MaxIDLen)
	}
	if len(topics) > MaxTopics {
		return Request{}, fmt.Errorf("%w: at most %d topics", ErrInvalidPayload, MaxTopics)
	}
	list := make([]string, 0, len(topics))
	seen := make(map[string]bool, len(topics))
	for i, t := range topics {
		if err := CheckSubscribable(t); err != nil {
			return Request{}, fmt.Errorf("%w: topics[%d]: %s", ErrInvalidPayload, i, err.Error())
		}
		if !seen[t] {
			seen[t] = true
			list = append(list, t)
		}
	}
	r := Request{DeviceID: deviceID, UserID: userID, Topics: list}
	// null, however spaced (a form's meta is raw text), means no meta.
	if meta := bytes.TrimSpace(meta); len(meta) > 0 && string(meta) != "null" {
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

// Wildcard subscriptions (Bayeux's channel wildcards). A pattern is a topic
// whose last segment is one of these: "a/*" matches every topic one
// segment below "a" ("a/b", not "a/b/c" nor "a"), "a/**" every topic
// below "a" at any depth; "*" and "**" alone match one-segment topics and
// every topic.
const (
	WildOne = "*"
	WildAll = "**"
)

// IsPattern reports whether topic is a wildcard pattern (its last segment
// is WildOne or WildAll).
func IsPattern(topic string) bool {
	return strings.HasSuffix(topic, WildOne) && (topic == WildOne || topic == WildAll ||
		strings.HasSuffix(topic, "/"+WildOne) || strings.HasSuffix(topic, "/"+WildAll))
}

// CheckPattern is CheckSubscribable for a subscription that may be a
// wildcard pattern: a subscribable topic, or "prefix/*", "prefix/**",
// "*" or "**" with a valid topic prefix.
func CheckPattern(topic string) error {
	if !IsPattern(topic) {
		return CheckSubscribable(topic)
	}
	prefix := strings.TrimSuffix(strings.TrimSuffix(topic, WildOne), WildOne)
	if prefix == "" {
		return nil
	}
	if err := CheckSubscribable(strings.TrimSuffix(prefix, "/")); err != nil {
		return err
	}
	return nil
}

// MatchingPatterns calls f with each wildcard pattern that matches topic,
// from the most to the least specific: for "a/b", "a/*", "a/**" and "**".
// System topics ($presence, $heartbeat) match no pattern: they are
// subscribed to by name.
func MatchingPatterns(topic string, f func(pattern string)) {
	if strings.HasPrefix(topic, "$") {
		return
	}
	i := strings.LastIndexByte(topic, '/')
	f(topic[:i+1] + WildOne) // the last segment, any name
	for ; i >= 0; i = strings.LastIndexByte(topic[:i], '/') {
		f(topic[:i+1] + WildAll)
	}
	f(WildAll)
}

// Matches reports whether a session subscribed to topics receives a
// message on topic: an exact name, or a pattern that matches it.
func Matches(topics []string, topic string) bool {
	for _, t := range topics {
		if t == topic {
			return true
		}
	}
	found := false
	MatchingPatterns(topic, func(p string) {
		if !found && slices.Contains(topics, p) {
			found = true
		}
	})
	return found
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

package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/longpoll/longpoll/session"
)

// connectJSON is the JSON connect payload.
type connectJSON struct {
	DeviceID string          `json:"deviceId"`
	UserID   string          `json:"userId"`
	Topics   []string        `json:"topics"`
	Meta     json.RawMessage `json:"meta"`
}

// ParseConnectJSON parses and validates a JSON connect payload (POST
// /connect). Unknown fields, trailing data and wrong types are refused with
// session.ErrInvalidPayload, as is everything session.NewRequest refuses.
func ParseConnectJSON(body []byte) (session.Request, error) {
	var c connectJSON
	if err := decodeStrict(body, &c); err != nil {
		return session.Request{}, err
	}
	return session.NewRequest(c.DeviceID, c.UserID, c.Topics, c.Meta)
}

// ParseConnectForm parses and validates a form-encoded connect payload:
// deviceId, userId, topics (repeated and/or comma-separated) and meta (a
// JSON object as a string). Unknown fields are refused.
func ParseConnectForm(body []byte) (session.Request, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return session.Request{}, fmt.Errorf("%w: malformed form body", session.ErrInvalidPayload)
	}
	for k := range vals {
		switch k {
		case "deviceId", "userId", "topics", "meta":
		default:
			return session.Request{}, fmt.Errorf("%w: unknown field %q", session.ErrInvalidPayload, k)
		}
	}
	var topics []string
	for _, t := range vals["topics"] {
		for _, part := range strings.Split(t, ",") {
			if part = strings.TrimSpace(part); part != "" {
				topics = append(topics, part)
			}
		}
	}
	var meta json.RawMessage
	if m := vals.Get("meta"); m != "" {
		meta = json.RawMessage(m)
	}
	return session.NewRequest(vals.Get("deviceId"), vals.Get("userId"), topics, meta)
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data with session.ErrInvalidPayload.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", session.ErrInvalidPayload, describeJSONError(err))
	}
	if !atEOF(dec) {
		return fmt.Errorf("%w: trailing data after the JSON object", session.ErrInvalidPayload)
	}
	return nil
}

// atEOF reports whether dec has nothing but white space left. (dec.More is
// not enough: it is false before a stray '}' or ']'.)
func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// describeJSONError turns an encoding/json decoding error into a message
// for the client (no "json:" prefix; a wrong type names the field).
func describeJSONError(err error) string {
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

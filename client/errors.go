package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is a refusal by the server: the HTTP status, the API's error code
// and message (docs/API.md, "Errors"), and the Retry-After the server
// asked for (0 when it sent none).
//
// Test for a code with errors.Is and the sentinels below
// (errors.Is(err, client.ErrSessionNotFound)), or get the details with
// errors.As. A response that is not the API's JSON error body (a proxy's
// HTML error page, say) has the code "http_" followed by the status, such
// as "http_502", and the start of the body as its message.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the API's error code, such as "session_not_found".
	Code string
	// Message is the server's human-readable explanation.
	Message string
	// RetryAfter is the server's Retry-After header; 0 when absent.
	RetryAfter time.Duration
}

// Error returns "longpoll: STATUS CODE: MESSAGE" (a sentinel, which has
// no status, just "longpoll: CODE").
func (e *Error) Error() string {
	if e.Status == 0 {
		return "longpoll: " + e.Code
	}
	if e.Message == "" {
		return fmt.Sprintf("longpoll: %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("longpoll: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is reports whether target is a sentinel (an *Error without status) with
// e's code, so that errors.Is(err, ErrMailboxFull) works on any error that
// wraps an *Error with the code "mailbox_full".
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == 0 && t.Code == e.Code
}

// Retryable reports whether the same request may succeed later without a
// change: 408, 429 and every 5xx. Device.Run retries these by itself.
func (e *Error) Retryable() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Sentinels of the API's error codes (docs/API.md). Compare with
// errors.Is; do not modify them.
var (
	// ErrInvalidPayload: 400, the request body or a parameter is not valid.
	ErrInvalidPayload = &Error{Code: "invalid_payload"}
	// ErrMissingSessionID: 400, the sessionId query parameter is missing.
	ErrMissingSessionID = &Error{Code: "missing_session_id"}
	// ErrInvalidCursor: 400, the cursor is not an integer or is beyond the
	// newest seq of the session. Device.Run connects again.
	ErrInvalidCursor = &Error{Code: "invalid_cursor"}
	// ErrUnauthorized: 401, a publish key or connect token is missing or
	// not valid.
	ErrUnauthorized = &Error{Code: "unauthorized"}
	// ErrForbidden: 403, the request is not allowed (a publisher without a
	// key from a non-loopback address, a token's claims, a network filter,
	// a cross-origin browser request).
	ErrForbidden = &Error{Code: "forbidden"}
	// ErrSessionNotFound: 404, the session expired, was never there, or
	// the server restarted. Device.Run connects again.
	ErrSessionNotFound = &Error{Code: "session_not_found"}
	// ErrNotFound: 404, no such endpoint (check the base URL).
	ErrNotFound = &Error{Code: "not_found"}
	// ErrMethodNotAllowed: 405, the endpoint does not take that method.
	ErrMethodNotAllowed = &Error{Code: "method_not_allowed"}
	// ErrSuperseded: 409, a newer poll on the same session took over
	// (another process polls with this session). Device.Run stops.
	ErrSuperseded = &Error{Code: "superseded"}
	// ErrSessionClosed: 410, the session was ended: disconnected, or
	// replaced by a newer connect of the same deviceId. Device.Run stops.
	ErrSessionClosed = &Error{Code: "session_closed"}
	// ErrPayloadTooLarge: 413, the body or a message's data is too large.
	ErrPayloadTooLarge = &Error{Code: "payload_too_large"}
	// ErrUnsupportedMediaType: 415, the Content-Type is not accepted.
	ErrUnsupportedMediaType = &Error{Code: "unsupported_media_type"}
	// ErrMailboxFull: 429, the target's mailbox (or offline store) is at
	// its limit.
	ErrMailboxFull = &Error{Code: "mailbox_full"}
	// ErrRateLimited: 429, a rate limit or the per-address poll cap; the
	// error's RetryAfter says when to try again.
	ErrRateLimited = &Error{Code: "rate_limited"}
	// ErrHeaderTooLarge: 431, the request line and headers are too large.
	ErrHeaderTooLarge = &Error{Code: "header_too_large"}
	// ErrInternal: 500, an unexpected server fault.
	ErrInternal = &Error{Code: "internal"}
	// ErrUnavailable: 503, the server is shutting down, at its session
	// limit, or (with --max-stored-bytes) out of storage; retry later.
	ErrUnavailable = &Error{Code: "unavailable"}
)

// ErrDeviceClosed is returned by a Device's methods after Disconnect.
var ErrDeviceClosed = errors.New("longpoll: the device was disconnected")

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// parseError builds the *Error of a non-2xx response from its status,
// headers and (start of the) body.
func parseError(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status, RetryAfter: parseRetryAfter(h.Get("Retry-After"), time.Now())}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
		return e
	}
	e.Code = "http_" + strconv.Itoa(status)
	e.Message = strings.TrimSpace(string(body))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP
// date. Anything else, and a date in the past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

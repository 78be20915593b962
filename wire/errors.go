package wire

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// Error is an API error: an HTTP status and a stable code, rendered as
// {"error":{"code":…,"message":…}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up: RetryAfterValue).
	RetryAfter time.Duration `json:"-"`
}

// NewError returns an Error.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// MarshalJSON writes API.md's error body, {"error":{"code","message"}}.
func (e *Error) MarshalJSON() ([]byte, error) {
	type plain Error // without this method
	return json.Marshal(struct {
		Error *plain `json:"error"`
	}{(*plain)(e)})
}

// AppendJSON appends e's error body to dst.
func (e *Error) AppendJSON(dst []byte) []byte {
	b, _ := e.MarshalJSON() // cannot fail: strings
	return append(dst, b...)
}

// RetryAfterValue is the Retry-After header value of e: whole seconds,
// rounded up; "" when e has none.
func (e *Error) RetryAfterValue() string {
	if e.RetryAfter <= 0 {
		return ""
	}
	secs := (e.RetryAfter + time.Second - 1) / time.Second
	return strconv.FormatInt(int64(secs), 10)
}

// errorRow is one line of the table from the domain's errors to the API's.
type errorRow struct {
	err     error
	status  int
	code    string
	message string // "" : the error's own text (detail: without the sentinel's)
	detail  bool
	retry   time.Duration // Retry-After, when positive
}

// errorTable is the one place where the domain's sentinels become statuses
// and codes. Its order matters only for errors that wrap several.
var errorTable = []errorRow{
	{auth.ErrUnauthorized, http.StatusUnauthorized, "unauthorized", "", true, 0},
	{auth.ErrForbidden, http.StatusForbidden, "forbidden", "", true, 0},
	{session.ErrInvalidPayload, http.StatusBadRequest, "invalid_payload", "", false, 0},
	{poll.ErrPayloadTooLarge, http.StatusRequestEntityTooLarge, "payload_too_large", "", false, 0},
	{poll.ErrInvalidCursor, http.StatusBadRequest, "invalid_cursor", "cursor is beyond the newest message of this session", false, 0},
	{poll.ErrSessionNotFound, http.StatusNotFound, "session_not_found", "no such session (expired or never existed): connect again", false, 0},
	{poll.ErrSuperseded, http.StatusConflict, "superseded", "a newer poll on this session took over", false, 0},
	{poll.ErrSessionClosed, http.StatusGone, "session_closed", "the session was closed (disconnected or replaced by a newer connect of the device)", false, 0},
	{poll.ErrMailboxFull, http.StatusTooManyRequests, "mailbox_full", "the target's mailbox is full; retry after it has polled", false, 0},
	{poll.ErrTooManySessions, http.StatusServiceUnavailable, "unavailable", "the server is at its session limit; retry later", false, 0},
	{poll.ErrClosed, http.StatusServiceUnavailable, "unavailable", "the server is shutting down; retry shortly", false, 0},
	{poll.ErrStorageFull, http.StatusServiceUnavailable, "unavailable", "the server's message store is full (--max-stored-bytes); retry once clients have caught up", false, storageRetry},
	{poll.ErrUnreachable, http.StatusServiceUnavailable, "unavailable", "the server cannot reach its shared store (Redis); retry shortly", false, unreachableRetry},
	{poll.ErrStorage, http.StatusServiceUnavailable, "unavailable", "the server could not write to its data directory; nothing was stored", false, 0},
}

// storageRetry is the Retry-After of ErrStorageFull: the store drains as
// clients poll, which they do within their poll timeout.
const storageRetry = 5 * time.Second

// unreachableRetry is the Retry-After of ErrUnreachable: a node checks
// its store four times a second.
const unreachableRetry = time.Second

// ErrInternal is the answer to an error the table does not know: a 500
// whose detail is not shown to the client.
var ErrInternal = NewError(http.StatusInternalServerError, "internal", "internal server error")

// ErrorOf maps any error to its API form: an *Error as it is (also
// wrapped), a domain sentinel by the table, anything else ErrInternal.
func ErrorOf(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	for _, row := range errorTable {
		if !errors.Is(err, row.err) {
			continue
		}
		msg := row.message
		switch {
		case msg != "":
		case row.detail:
			msg = detail(err, row.err)
		default:
			msg = err.Error()
		}
		e := NewError(row.status, row.code, msg)
		e.RetryAfter = row.retry
		return e
	}
	return ErrInternal
}

// detail is err's message without the sentinel's own text in front.
func detail(err, sentinel error) string {
	msg := err.Error()
	if m, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
		return m
	}
	return msg
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// Error is an API error: an HTTP status and a stable code, rendered as
// {"error":{"code":…,"message":…}}. Handlers return it (or a domain error,
// which toError maps) and the error handler writes it.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func apiError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Errors raised by the HTTP edge itself.
var (
	errMissingSession = apiError(http.StatusBadRequest, "missing_session_id", "the sessionId query parameter is required")
	errTooLarge       = apiError(http.StatusRequestEntityTooLarge, "payload_too_large", "the request body is too large")
	errUnauthorized   = apiError(http.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer <publish key> header is required")
	errLoopbackOnly   = apiError(http.StatusForbidden, "forbidden", "no publish key is configured, so only loopback clients may publish")
)

// toError maps any error to its API form. It is the one place where domain
// sentinels become statuses and codes; anything unknown is a 500 whose
// detail is not shown to the client.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return fromHTTPError(he)
	}
	switch {
	case errors.Is(err, auth.ErrUnauthorized):
		return apiError(http.StatusUnauthorized, "unauthorized", detail(err, auth.ErrUnauthorized))
	case errors.Is(err, auth.ErrForbidden):
		return apiError(http.StatusForbidden, "forbidden", detail(err, auth.ErrForbidden))
	case errors.Is(err, session.ErrInvalidPayload):
		return apiError(http.StatusBadRequest, "invalid_payload", err.Error())
	case errors.Is(err, poll.ErrPayloadTooLarge):
		return apiError(http.StatusRequestEntityTooLarge, "payload_too_large", err.Error())
	case errors.Is(err, poll.ErrInvalidCursor):
		return apiError(http.StatusBadRequest, "invalid_cursor", "cursor is beyond the newest message of this session")
	case errors.Is(err, poll.ErrSessionNotFound):
		return apiError(http.StatusNotFound, "session_not_found", "no such session (expired or never existed): connect again")
	case errors.Is(err, poll.ErrSuperseded):
		return apiError(http.StatusConflict, "superseded", "a newer poll on this session took over")
	case errors.Is(err, poll.ErrSessionClosed):
		return apiError(http.StatusGone, "session_closed", "the session was closed (disconnected or replaced by a newer connect of the device)")
	case errors.Is(err, poll.ErrMailboxFull):
		return apiError(http.StatusTooManyRequests, "mailbox_full", "the target's mailbox is full; retry after it has polled")
	case errors.Is(err, poll.ErrTooManySessions):
		return apiError(http.StatusServiceUnavailable, "unavailable", "the server is at its session limit; retry later")
	case errors.Is(err, poll.ErrClosed):
		return apiError(http.StatusServiceUnavailable, "unavailable", "the server is shutting down; retry shortly")
	}
	return apiError(http.StatusInternalServerError, "internal", "internal server error")
}

// detail is err's message without the sentinel's own text in front.
func detail(err, sentinel error) string {
	msg := err.Error()
	if m, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
		return m
	}
	return msg
}

// fromHTTPError maps echo's own errors (unknown route, wrong method, panics
// turned into 500s by the recover middleware).
func fromHTTPError(he *echo.HTTPError) *Error {
	msg := http.StatusText(he.Code)
	switch he.Code {
	case http.StatusNotFound:
		return apiError(he.Code, "not_found", "no such endpoint")
	case http.StatusMethodNotAllowed:
		return apiError(he.Code, "method_not_allowed", "method not allowed on this endpoint")
	case http.StatusRequestEntityTooLarge:
		return errTooLarge
	case http.StatusUnsupportedMediaType:
		return apiError(he.Code, "unsupported_media_type", msg)
	case http.StatusTooManyRequests:
		return apiError(he.Code, "rate_limited", msg)
	case http.StatusUnauthorized:
		return errUnauthorized
	case http.StatusForbidden:
		return apiError(he.Code, "forbidden", msg)
	case http.StatusServiceUnavailable:
		return apiError(he.Code, "unavailable", msg)
	}
	if he.Code >= 500 {
		return apiError(http.StatusInternalServerError, "internal", "internal server error")
	}
	return apiError(he.Code, "invalid_payload", msg)
}

// errorHandler writes err as API.md's JSON error body. A client that went
// away (context.Canceled) gets nothing and is not logged.
func (a *API) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if errors.Is(err, c.Request().Context().Err()) && c.Request().Context().Err() != nil {
		return
	}
	ae := toError(err)
	a.logRefusal(c.Request().Method, c.Request().URL.Path, ae, err, c.RealIP())
	if ae.Status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", wwwAuthenticate)
	}
	if ae.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", retryAfter(ae))
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status)
		return
	}
	_ = c.JSON(ae.Status, errorBody{ae})
}

// errorBody is API.md's error body: {"error":{...}}.
type errorBody struct {
	Error *Error `json:"error"`
}

const wwwAuthenticate = `Bearer realm="longpoll"`

// retryAfter is the Retry-After value of ae: whole seconds, rounded up.
func retryAfter(ae *Error) string {
	secs := (ae.RetryAfter + time.Second - 1) / time.Second
	return strconv.FormatInt(int64(secs), 10)
}

// logRefusal logs an answered error: 5xx at error, other refusals at warn,
// except those a flood produces by the thousand (rate limits, oversized
// headers), which are logged at debug so that a flood does not become a
// flood of log lines.
func (a *API) logRefusal(method, path string, ae *Error, err error, remote string) {
	if ae.Status >= 500 {
		a.log.Error("request failed", "method", method, "path", path, "status", ae.Status, "code", ae.Code, "err", err)
		return
	}
	level := slog.LevelWarn
	if ae.Code == "rate_limited" || ae.Code == "header_too_large" {
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, "request refused", "method", method, "path", path, "status", ae.Status, "code", ae.Code, "remote", remote)
}

// rawError is errorHandler's answer to err for a connection the API
// writes itself (writeAnswer): the status, the extra header lines and the
// body. It logs the refusal as errorHandler does.
func (a *API) rawError(err error, method, path, remote string) (status int, header, body []byte) {
	ae := toError(err)
	a.logRefusal(method, path, ae, err, remote)
	if ae.Status == http.StatusUnauthorized {
		header = append(header, "\r\nWWW-Authenticate: "+wwwAuthenticate...)
	}
	if ae.RetryAfter > 0 {
		header = append(append(header, "\r\nRetry-After: "...), retryAfter(ae)...)
	}
	body, _ = json.Marshal(errorBody{ae})
	return ae.Status, header, append(body, '\n')
}

package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// Error is an API error (wire.Error): handlers return it, or a domain
// error that toError maps, and the error handler writes it.
type Error = wire.Error

func apiError(status int, code, message string) *Error { return wire.NewError(status, code, message) }

// Errors raised by the HTTP edge itself.
var (
	errMissingSession = apiError(http.StatusBadRequest, "missing_session_id", "the sessionId query parameter is required")
	errTooLarge       = apiError(http.StatusRequestEntityTooLarge, "payload_too_large", "the request body is too large")
	errUnauthorized   = apiError(http.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer <publish key> header is required")
	errLoopbackOnly   = apiError(http.StatusForbidden, "forbidden", "no publish key is configured, so only local clients may publish (a loopback address and Host, no cross-site Origin): set --publish-key to publish from elsewhere")
)

// toError maps any error to its API form: echo's own errors here, every
// other by wire.ErrorOf, the one table of the domain's errors.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return fromHTTPError(he)
	}
	return wire.ErrorOf(err)
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
		return wire.ErrInternal
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
	for _, kv := range errorHeaders(ae) {
		c.Response().Header().Set(kv[0], kv[1])
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status)
		return
	}
	_ = a.writeJSON(c, ae.Status, jsonLine(ae))
}

const wwwAuthenticate = `Bearer realm="longpoll"`

// errorHeaders are the headers an error answer carries beyond the
// route's, on both paths: WWW-Authenticate on a 401, Retry-After when the
// error says when to retry.
func errorHeaders(ae *Error) [][2]string {
	var h [][2]string
	if ae.Status == http.StatusUnauthorized {
		h = append(h, [2]string{"WWW-Authenticate", wwwAuthenticate})
	}
	if v := ae.RetryAfterValue(); v != "" {
		h = append(h, [2]string{"Retry-After", v})
	}
	return h
}

// logRefusal logs an answered error: 5xx at error; refused credentials
// (401, 403) at warn, at most once a second per code with how many went
// unlogged meanwhile, since they may be an attack an operator should see;
// every other refusal, which a client causes by the thousand (a full
// mailbox, a superseded poll, a rate limit), at debug.
func (a *API) logRefusal(method, path string, ae *Error, err error, remote string) {
	path = logPath(path)
	if ae.Status >= 500 {
		a.log.Error("request failed", "method", method, "path", path, "status", ae.Status, "code", ae.Code, "err", err)
		return
	}
	level := slog.LevelDebug
	var suppressed int64
	if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
		var ok bool
		if suppressed, ok = a.refusals.allow(ae.Status, time.Now()); ok {
			level = slog.LevelWarn
		}
	}
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	args := []any{"method", method, "path", path, "status", ae.Status, "code", ae.Code, "remote", remote}
	if suppressed > 0 {
		args = append(args, "unloggedSinceLast", suppressed)
	}
	a.log.Log(context.Background(), level, "request refused", args...)
}

// refusalLog lets a warn line through per status at most once a second.
type refusalLog struct {
	mu   sync.Mutex
	last map[int]time.Time
	held map[int]int64 // refusals not logged at warn since the last line
}

// allow reports whether a refusal with status may be logged at warn now,
// and how many were not since the last that was.
func (r *refusalLog) allow(status int, now time.Time) (suppressed int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.held = map[int]time.Time{}, map[int]int64{}
	}
	if now.Sub(r.last[status]) < time.Second {
		r.held[status]++
		return 0, false
	}
	r.last[status] = now
	suppressed, r.held[status] = r.held[status], 0
	return suppressed, true
}

// logPath is a request path as the logs show it: every run of 16 or more
// characters that could be part of a session ID (base64url) shortened to
// its first 8 (session.ShortID), so that a client that puts its session ID
// in the path (by mistake, or a malformed target) does not have it logged.
// Session IDs go in the query, which is never logged.
func logPath(p string) string {
	const long = 16
	run, start := 0, 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && isIDByte(p[i]) {
			if run == 0 {
				start = i
			}
			run++
			continue
		}
		if run >= long {
			return logPath(p[:start] + session.ShortID(p[start:i]) + p[i:])
		}
		run = 0
	}
	return p
}

// isIDByte reports whether c is a character of a session ID (base64url) or
// of its percent-encoding.
func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '%'
}

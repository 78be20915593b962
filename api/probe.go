package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/internal/h1"
)

// The raw path writes the headers that echo's middleware chain sets, read
// off the chain itself: at start, one request for GET /data and one for
// POST /push go through echo (Pre, Use and route middleware alike) to the
// route's handler, which stops at once (probing), and the headers set by
// then are rendered once as the raw path's header lines. A middleware
// added to the chain is in the raw path's answers without more ado.

// probeKey marks a probe request's context; its value is *bool, set when
// the probe reached its handler.
type probeKey struct{}

// probing reports whether c is a probe request, and records that it got
// this far.
func probing(c echo.Context) bool {
	reached, ok := c.Request().Context().Value(probeKey{}).(*bool)
	if ok {
		*reached = true
	}
	return ok
}

// probeHeaders sets the raw path's header lines: the chain's headers for
// a push, and for a poll the chain's plus pollHeaders for a request
// without an Origin (the only kind the raw path serves). Should a probe not
// reach its handler (a middleware refusing it), the raw path is turned off
// and the reason logged: the answers would not be echo's.
func (a *API) probeHeaders() {
	push, okPush := a.probe(http.MethodPost, "/push")
	poll, okPoll := a.probe(http.MethodGet, "/data")
	if !okPush || !okPoll {
		a.log.Error("the raw HTTP/1.1 path is off: a probe request did not reach its route", "push", okPush, "poll", okPoll)
		a.own = false
		return
	}
	a.pollHeaders(poll, "")
	a.raw.push = h1.HeaderLines(push)
	a.raw.poll = h1.HeaderLines(poll)
}

// probe sends a request for method and path from loopback through echo
// and returns the headers set when it reached the route's handler.
func (a *API) probe(method, path string) (http.Header, bool) {
	reached := false
	ctx := context.WithValue(context.Background(), probeKey{}, &reached)
	r, err := http.NewRequestWithContext(ctx, method, path, nil)
	if err != nil {
		return nil, false
	}
	r.RemoteAddr = "127.0.0.1:1"
	r.RequestURI = path
	w := &probeWriter{h: http.Header{}}
	a.e.ServeHTTP(w, r)
	return w.h, reached && w.status == 0
}

// probeWriter is the ResponseWriter of a probe: it keeps the headers and
// notes whether anything was written (a probe's handler writes nothing).
type probeWriter struct {
	h      http.Header
	status int
}

func (w *probeWriter) Header() http.Header { return w.h }

func (w *probeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}

func (w *probeWriter) WriteHeader(status int) { w.status = status }

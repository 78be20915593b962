package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/wire"
)

// The raw path: requests that follow an answered poll or push on a
// taken-over connection (h1), served without net/http's per-request
// set-up. It serves the two endpoints clients repeat back to back, a plain
// GET /data (a re-poll) and a publisher's POST /push with a JSON body of
// known length, through the same cores as the echo routes (pollPlan,
// pushAdmit, publish) and with the same headers (probe.go) and error
// rendering; everything else, and every request it is unsure of, goes to
// net/http (h1.Pass), byte for byte. The connection's address is the
// client's: the raw path is off when X-Forwarded-For is trusted.

// rawRoute is what the raw path makes of a request head.
type rawRoute struct {
	push  bool
	query string // GET /data: the raw query
	auth  string // POST /push: the Authorization header, if any
	host  string // POST /push: the Host header
}

// route reports whether the raw path serves the request with head h, and
// how: a GET /data or POST /push that echo would serve, with no header
// echo's chain treats specially (Origin, Sec-Fetch-Site: CORS and the
// publisher check; X-Forwarded-For; Content-Encoding), within the header cap as limitHeaders counts it, and
// for a push exactly one "Content-Type: application/json", a non-empty
// body of known length and at most one Authorization. Any doubt answers
// false.
func (a *API) route(h *h1.Head) (rawRoute, bool) {
	var r rawRoute
	query, hasQuery := h.Query()
	switch path := h.Path(); {
	case string(h.Method) == http.MethodGet && string(path) == "/data":
		if h.ContentLength >= 0 {
			return r, false // a poll with a body: net/http's to judge
		}
		r.query = string(query)
		if strings.Contains(r.query, "pretty") || strings.IndexByte(r.query, '%') >= 0 {
			return r, false // echo indents ?pretty; escapes are echo's to read
		}
	case string(h.Method) == http.MethodPost && string(path) == "/push" && !hasQuery:
		r.push = true
		ct, n := h.Get("Content-Type")
		if n != 1 || string(ct) != echo.MIMEApplicationJSON || h.ContentLength <= 0 || h.ContentLength > MaxPushBody {
			return r, false
		}
		auth, n := h.Get("Authorization")
		if n > 1 {
			return r, false
		}
		r.auth = string(auth)
		r.host = string(h.Host)
	default:
		return r, false
	}
	size := len(h.Method) + len(h.Target) + len("HTTP/1.1") + 12 + len(h.Host) // as limitHeaders counts
	var pragma []byte                                                          // the first Pragma value
	cacheControl := false
	for _, f := range h.Fields() {
		switch {
		case h1.EqualFold(f.Name, "Origin"), h1.EqualFold(f.Name, "Sec-Fetch-Site"),
			h1.EqualFold(f.Name, "X-Forwarded-For"), h1.EqualFold(f.Name, "Content-Encoding"):
			return r, false
		case h1.EqualFold(f.Name, "Pragma"):
			if pragma == nil {
				pragma = f.Value
			}
		case h1.EqualFold(f.Name, "Cache-Control"):
			cacheControl = true
		}
		size += len(f.Name) + len(f.Value) + 4
	}
	if string(pragma) == "no-cache" && !cacheControl {
		size += len("Cache-Control") + len("no-cache") + 4 // net/http adds it (HTTP/1.0 caches)
	}
	return r, size <= a.cfg.MaxHeaderBytes
}

// ServeH1 implements h1.Handler: the raw path's GET /data and POST /push.
func (a *API) ServeH1(r *h1.Request) h1.Outcome {
	rt, ok := a.route(&r.Head)
	if !ok || a.hub.Closing() {
		return h1.Pass
	}
	if rt.push {
		return a.rawPush(r, rt)
	}
	return a.rawPoll(r, rt)
}

// rawPoll serves a re-poll: pollPlan's checks, then the hub (Hub.Park). A
// poll answered at once (or refused) is written here and the connection
// reads on; a parked one keeps it (h1.Parked) until done answers.
func (a *API) rawPoll(r *h1.Request, rt rawRoute) h1.Outcome {
	start := time.Now()
	conn := r.Conn()
	args, release, err := a.pollPlan(conn.IP(), rt.query)
	if err != nil {
		status, lines, body := a.rawError(err, http.MethodGet, "/data", conn.IP(), a.raw.poll)
		conn.Write(status, lines, body) // on failure conn is closed, and h1 serves nothing more on it
		a.logRequest(start, http.MethodGet, "/data", status, conn.IP())
		return h1.Served
	}
	after := once(release)
	st := conn.Value.(*connState)
	p := &parkedPoll{a: a, start: start, conn: conn, header: a.raw.poll, after: after, id: args.id, ticket: &st.ticket}
	h := a.holdPoll(after)
	defer h.giveBack() // a panic on the way (h1 recovers it) too
	r.Hold()           // done may answer on another goroutine as soon as the poll parks
	p.decide.Lock()    // and waits until the connection is parked (h1.Conn.Park)
	locked := true
	defer func() {
		if locked {
			p.decide.Unlock() // a panic on the way: done must not wait forever
		}
	}()
	msgs, err, parked := a.hub.Park(&st.ticket, args.id, args.ack, args.hasAck, args.hold, p.done)
	if parked {
		h.pass()
		conn.Park(p) // its peer watched from now on: Gone ends the poll if it goes
		locked = false
		p.decide.Unlock()
		a.logRequest(start, http.MethodGet, "/data", "parked", conn.IP())
		return h1.Parked
	}
	locked = false
	p.decide.Unlock()
	r.Unhold()
	h.slot()
	status, rest, closing := a.startPoll(conn, a.raw.poll, msgs, err)
	conn.Finish(rest, closing)
	a.observePoll(start, msgs, err, false)
	h.giveBack()
	a.logRequest(start, http.MethodGet, "/data", status, conn.IP())
	return h1.Served
}

// rawPush serves a publisher's push: pushAdmit, the body, publish, and
// the 202 or the error. A publisher pushAdmit refuses goes to the echo
// route (h1.Pass), which refuses it the same way and reads the body it
// does not serve.
func (a *API) rawPush(r *h1.Request, rt rawRoute) h1.Outcome {
	conn := r.Conn()
	if a.pushAdmit(publisher{ip: conn.IP(), authorization: rt.auth, host: rt.host}) != nil {
		return h1.Pass
	}
	// Held like a parked poll, so that a shutdown (WaitHeld) lets the
	// answer out.
	a.ln.Hold()
	defer a.ln.Release()
	start := time.Now()
	body, err := r.Body()
	if err != nil {
		return h1.Served // the client left or stalled mid-body: conn is closed
	}
	status, lines := http.StatusAccepted, a.raw.push
	v, err := a.publish(body, wire.Publisher, nil, a.hub.Publish, a.hub.PublishAll)
	if err != nil {
		status, lines, body = a.rawError(err, http.MethodPost, "/push", conn.IP(), a.raw.push)
	} else {
		body = jsonLine(v)
	}
	conn.Write(status, lines, body) // on failure conn is closed, and h1 serves nothing more on it
	a.logRequest(start, http.MethodPost, "/push", status, conn.IP())
	return h1.Served
}

// takeOver answers c's request itself, writing status and body on the
// connection with the headers echo has set, and keeps the connection for
// the client's next request (the raw path), when the request allows it:
// plain HTTP/1.1, not "Connection: close", with a body of known length
// already read. It reports false, having done nothing, otherwise.
func (a *API) takeOver(c echo.Context, status int, body []byte) bool {
	r := c.Request()
	if !a.own || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.TLS != nil || r.Close ||
		r.ContentLength <= 0 || len(r.TransferEncoding) != 0 {
		return false
	}
	nc, brw, err := c.Response().Hijack()
	if err != nil {
		return false
	}
	conn := a.ln.Take(nc, brw.Reader)
	conn.Value = &connState{}
	c.Set(parkedKey, status)
	if conn.Write(status, h1.HeaderLines(c.Response().Header()), body) {
		conn.Next(r.Method == http.MethodPost)
	}
	return true
}

// rawError renders err for the raw path as errorHandler does for echo:
// the status, header's lines with the error's own headers in front, and
// the body. It logs the refusal as errorHandler does.
func (a *API) rawError(err error, method, path, remote string, header []byte) (status int, lines, body []byte) {
	ae := toError(err)
	a.logRefusal(method, path, ae, err, remote)
	for _, kv := range errorHeaders(ae) {
		lines = h1.AppendHeader(lines, kv[0], kv[1])
	}
	return ae.Status, append(lines, header...), jsonLine(ae)
}

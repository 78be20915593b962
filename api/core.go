package api

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// The transport-neutral cores of the two endpoints that both transports
// serve, GET /data and POST /push: each runs its endpoint's checks in one
// order, calls the hub and decides the answer. The echo routes (routes.go)
// and the raw path (raw.go) only read requests and render what these
// return.

// pollArgs is a validated poll: its session, cursor and hold.
type pollArgs struct {
	id     string
	ack    uint64
	hasAck bool
	hold   time.Duration
}

// pollHeaders sets the headers of every answer to GET /data beyond
// those of the middleware chain: Cache-Control: no-store, and CORS for
// origin (the raw path, which serves no request with an Origin, renders
// them once for origin "").
func (a *API) pollHeaders(h http.Header, origin string) {
	a.corsHeaders(h, origin, false)
	h.Set("Cache-Control", "no-store")
}

// pollPlan runs GET /data's checks for the client at ip with the raw
// query, in this order: the network filter (403), the cap on open polls
// (429: the place taken is given back by release, nil when polls are not
// capped), then the query (400: missing_session_id, invalid_cursor, a bad
// timeout).
func (a *API) pollPlan(ip, query string) (p pollArgs, release func(), err error) {
	if !a.admitted(ip) {
		return pollArgs{}, nil, errNetwork
	}
	release, ok := a.takeSlot(ip)
	if !ok {
		return pollArgs{}, nil, rateLimited("too many open polls from your address", time.Second)
	}
	if p.id = queryValue(query, "sessionId"); p.id == "" {
		err = errMissingSession
	} else if p.ack, p.hasAck, err = parseCursor(queryValue(query, "cursor")); err == nil {
		p.hold, err = a.hold(queryValue(query, "timeout"))
	}
	if err != nil {
		if release != nil {
			release()
		}
		return pollArgs{}, nil, err
	}
	return p, release, nil
}

// pushAdmit is POST /push's first check, before its body is read: the
// publisher (publisherCheck: 401 without a valid key; without keys, 403
// unless local).
func (a *API) pushAdmit(p publisher) error {
	return a.publisherCheck(p)
}

// publish parses body as one push or a batch from origin, checks it whole
// with check (nil: no check) and applies it: a single push with deliver, a
// batch with deliverAll (in order, made durable once for the whole batch).
// It returns the 202 body: the wire.Result of a single push, or for a
// batch the wire.BatchResults, one result or error per item. Only a single
// push's failure, or a batch refused whole (or that the store failed to
// keep), is an error.
func (a *API) publish(body []byte, origin wire.Origin, check func([]poll.Push) error, deliver func(poll.Push) (poll.Result, error),
	deliverAll func([]poll.Push) ([]poll.Result, []error, error)) (any, error) {
	pushes, batch, err := wire.ParsePushes(body, origin)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(pushes); err != nil {
			return nil, err
		}
	}
	if err := a.hub.Room(pushes); err != nil {
		return nil, err // refused whole: 503 with Retry-After
	}
	if !batch {
		res, err := deliver(pushes[0])
		if err != nil {
			return nil, err
		}
		return wire.Result(res), nil
	}
	results, errs, err := deliverAll(pushes) // one flush for the batch
	if err != nil {
		return nil, err // the store failed: nothing of the batch is known to be stored
	}
	out := make(wire.BatchResults, len(pushes))
	for i := range pushes {
		if errs[i] != nil {
			out[i].Err = toError(errs[i])
			continue
		}
		out[i].Result = wire.Result(results[i])
	}
	return out, nil
}

// jsonLine is v, a body of this package's, as echo's c.JSON wrote it:
// JSON and a newline, push results without reflection.
func jsonLine(v any) []byte {
	switch v := v.(type) {
	case wire.Result:
		return append(v.AppendJSON(make([]byte, 0, 96)), '\n')
	case wire.BatchResults:
		return append(v.AppendJSON(make([]byte, 0, 2+96*len(v))), '\n')
	case *Error:
		return append(v.AppendJSON(nil), '\n')
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // v is one of this package's response types
	}
	return append(b, '\n')
}

// pollOutcome names how a poll ended, for metrics; an error by its API
// code (wire's table).
func pollOutcome(msgs []poll.Message, err error, gone, closing bool) string {
	if err != nil {
		switch wire.ErrorOf(err).Code {
		case "superseded":
			return "superseded"
		case "session_closed":
			return "closed"
		case "session_not_found":
			return "not_found"
		case "invalid_cursor":
			return "invalid"
		case "unavailable":
			return "unavailable"
		}
		return "error"
	}
	switch {
	case gone:
		return "gone"
	case len(msgs) > 0:
		return "messages"
	case closing:
		return "shutdown"
	}
	return "timeout"
}

// observePoll reports an answered poll to the metrics.
func (a *API) observePoll(start time.Time, msgs []poll.Message, err error, gone bool) {
	if a.cfg.Polls != nil {
		now := time.Now()
		a.cfg.Polls.PollAnswered(now.Sub(start), pollOutcome(msgs, err, gone, a.hub.Closing()), msgs, now)
	}
}

// queryValue returns the first value of key in the raw query string, as
// url.Values.Get would, without building the map (polls are the hot path).
// Keys and values are unescaped; a malformed escape reads as empty.
func queryValue(raw, key string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			v, _ = url.QueryUnescape(v)
		}
		return v
	}
	return ""
}

// parseCursor parses the cursor query parameter; empty means "acknowledge
// nothing".
func parseCursor(s string) (ack uint64, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, apiError(http.StatusBadRequest, "invalid_cursor", "cursor must be a non-negative integer (the last seq received)")
	}
	return n, true, nil
}

// hold turns the timeout query parameter (seconds, fractions allowed) into
// the time to park: the default when empty, capped at the maximum, then
// jittered to 80-100% so clients spread out.
func (a *API) hold(s string) (time.Duration, error) {
	d := a.cfg.PollTimeout
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		// Whole seconds, what clients send: ParseFloat's large frame
		// would grow every fresh connection goroutine's stack.
		d = min(time.Duration(n)*time.Second, a.cfg.MaxPollTimeout)
	} else if s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs < 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, apiError(http.StatusBadRequest, "invalid_payload", "timeout must be a non-negative number of seconds")
		}
		if secs*float64(time.Second) >= float64(a.cfg.MaxPollTimeout) {
			d = a.cfg.MaxPollTimeout
		} else {
			d = time.Duration(secs * float64(time.Second))
		}
	}
	d = min(d, a.cfg.MaxPollTimeout)
	return time.Duration(float64(d) * a.cfg.Jitter()), nil
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

func (a *API) connect(c echo.Context) error {
	grant, err := a.authenticate(c)
	if err != nil {
		return err
	}
	mt, err := mediaType(c)
	if err != nil {
		return err
	}
	body, err := readBody(c, session.MaxBodyBytes)
	if err != nil {
		return err
	}
	var req session.Request
	switch mt {
	case echo.MIMEApplicationJSON:
		req, err = wire.ParseConnectJSON(body)
	case echo.MIMEApplicationForm:
		req, err = wire.ParseConnectForm(body)
	default:
		return unsupported("application/json or application/x-www-form-urlencoded")
	}
	if err != nil {
		return err
	}
	if req, err = a.grantConnect(grant, req); err != nil {
		return err
	}
	s, err := a.hub.Connect(req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, wire.NewConnected(s, a.cfg.PollTimeout, a.hub.Config().SessionTTL))
}

func (a *API) data(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	id, ack, hasAck, hold, err := a.pollArgs(c.Request().URL.RawQuery)
	if err != nil {
		return err
	}
	if a.parkable(c.Request()) {
		return a.dataParked(c, id, ack, hasAck, hold, takePollSlot(c))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), hold)
	defer cancel()
	start := time.Now()
	msgs, err := a.hub.Poll(ctx, id, ack, hasAck)
	gone := c.Request().Context().Err() != nil
	a.observePoll(start, msgs, err, gone)
	if gone && err == nil {
		return nil // the client left; its messages stay until acknowledged
	}
	return a.writePoll(c, msgs, err)
}

// pollArgs parses the query string of GET /data: the session, the cursor
// and the hold.
func (a *API) pollArgs(q string) (id string, ack uint64, hasAck bool, hold time.Duration, err error) {
	if id = queryValue(q, "sessionId"); id == "" {
		return "", 0, false, 0, errMissingSession
	}
	if ack, hasAck, err = parseCursor(queryValue(q, "cursor")); err != nil {
		return "", 0, false, 0, err
	}
	if hold, err = a.hold(queryValue(q, "timeout")); err != nil {
		return "", 0, false, 0, err
	}
	return id, ack, hasAck, hold, nil
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

func (a *API) push(c echo.Context) error {
	return a.publish(c, wire.Publisher, nil, a.hub.Publish)
}

func (a *API) send(c echo.Context) error {
	id := c.QueryParam("sessionId")
	if id == "" {
		return errMissingSession
	}
	s, err := a.hub.Session(id)
	if err != nil {
		return err
	}
	return a.publish(c, wire.Client, sendCheck(s), func(p poll.Push) (poll.Result, error) { return a.hub.Send(id, p) })
}

// publish parses a single push or a batch, checks it whole with check (when
// not nil) and applies it with deliver. A single push answers its result
// or error; a batch answers 202 with one result or error per item, in order.
func (a *API) publish(c echo.Context, origin wire.Origin, check func([]poll.Push) error, deliver func(poll.Push) (poll.Result, error)) error {
	mt, err := mediaType(c)
	if err != nil {
		return err
	}
	if mt != echo.MIMEApplicationJSON {
		return unsupported("application/json")
	}
	body, err := readBody(c, MaxPushBody)
	if err != nil {
		return err
	}
	pushes, batch, err := wire.ParsePushes(body, origin)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(pushes); err != nil {
			return err
		}
	}
	v, err := a.deliverAll(pushes, batch, deliver)
	if err != nil {
		return err
	}
	if origin == wire.Publisher && a.takeOver(c, http.StatusAccepted, jsonLine(v)) {
		return nil
	}
	return c.JSON(http.StatusAccepted, v)
}

// deliverAll delivers parsed pushes and returns the 202 body: one Result,
// or for a batch one Result or error object per item, in order. Only a
// single push's failure is an error.
func (a *API) deliverAll(pushes []poll.Push, batch bool, deliver func(poll.Push) (poll.Result, error)) (any, error) {
	if !batch {
		res, err := deliver(pushes[0])
		if err != nil {
			return nil, err
		}
		return wire.Result(res), nil
	}
	out := make(wire.BatchResults, len(pushes))
	for i, p := range pushes {
		res, err := deliver(p)
		if err != nil {
			out[i].Err = toError(err)
			continue
		}
		out[i].Result = wire.Result(res)
	}
	return out, nil
}

// jsonLine is v, a 202 body of deliverAll, as echo's c.JSON writes it:
// JSON and a newline.
func jsonLine(v any) []byte {
	switch v := v.(type) {
	case wire.Result:
		return append(v.AppendJSON(make([]byte, 0, 96)), '\n')
	case wire.BatchResults:
		return append(v.AppendJSON(make([]byte, 0, 2+96*len(v))), '\n')
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // v is one of this package's response types
	}
	return append(b, '\n')
}

func (a *API) deleteSession(c echo.Context) error {
	q := c.Request().URL.Query()
	id := q.Get("sessionId")
	if id == "" {
		return errMissingSession
	}
	ack, hasAck, err := parseCursor(q.Get("cursor"))
	if err != nil {
		return err
	}
	if err := a.hub.Disconnect(id, ack, hasAck); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// mediaType returns the request's media type, lower-cased without
// parameters.
func mediaType(c echo.Context) (string, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	switch ct {
	case "":
		return "", unsupported("a Content-Type header")
	case echo.MIMEApplicationJSON:
		return ct, nil // the common case, without parsing
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", unsupported("a well-formed Content-Type header")
	}
	return mt, nil
}

func unsupported(want string) *Error {
	return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "this endpoint expects "+want)
}

// readBody reads the whole body, failing with payload_too_large past limit.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	if r.ContentLength > 0 {
		// The length is known (and net/http stops the body there): one
		// buffer of that size instead of io.ReadAll's growing ones.
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, apiError(http.StatusBadRequest, "invalid_payload", "could not read the request body")
		}
		return body, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, apiError(http.StatusBadRequest, "invalid_payload", "could not read the request body")
	}
	return body, nil
}

// presence lists the online sessions of ?userId= or ?deviceId= (exactly
// one of them): {"sessions":[…]}.
func (a *API) presence(c echo.Context) error {
	user, device := c.QueryParam("userId"), c.QueryParam("deviceId")
	if (user == "") == (device == "") {
		return apiError(http.StatusBadRequest, "invalid_payload", "give exactly one of the userId and deviceId query parameters")
	}
	var list []*session.Session
	if user != "" {
		list = a.hub.OnlineUser(user)
	} else if s := a.hub.OnlineDevice(device); s != nil {
		list = append(list, s)
	}
	return c.JSON(http.StatusOK, wire.NewPresence(list))
}

// disconnectRequest is the body of POST /disconnect: exactly one field.
type disconnectRequest struct {
	SessionID *string `json:"sessionId"`
	DeviceID  *string `json:"deviceId"`
	UserID    *string `json:"userId"`
}

// maxDisconnectBody caps a POST /disconnect body.
const maxDisconnectBody = 4 << 10

// disconnect ends the sessions of a userId, a deviceId or a sessionId (an
// API extension for publishers): their parked polls are answered 410 and
// $presence subscribers hear offline/disconnect. 200 {"disconnected": n}.
func (a *API) disconnect(c echo.Context) error {
	mt, err := mediaType(c)
	if err != nil {
		return err
	}
	if mt != echo.MIMEApplicationJSON {
		return unsupported("application/json")
	}
	body, err := readBody(c, maxDisconnectBody)
	if err != nil {
		return err
	}
	to, err := parseDisconnect(body)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.Disconnected{Disconnected: a.hub.EndSessions(to)})
}

func parseDisconnect(body []byte) (poll.Target, error) {
	bad := func(msg string) (poll.Target, error) {
		return poll.Target{}, apiError(http.StatusBadRequest, "invalid_payload", msg)
	}
	var r disconnectRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() {
		return bad(`the body must be one JSON object: {"userId"}, {"deviceId"} or {"sessionId"}`)
	}
	n := 0
	for _, f := range []*string{r.SessionID, r.DeviceID, r.UserID} {
		if f != nil {
			n++
		}
	}
	if n != 1 {
		return bad("give exactly one of userId, deviceId and sessionId")
	}
	switch {
	case r.SessionID != nil:
		if *r.SessionID == "" || len(*r.SessionID) > 256 {
			return bad("sessionId must be a session ID")
		}
		return poll.Target{SessionID: *r.SessionID}, nil
	case r.DeviceID != nil:
		if !session.ValidID(*r.DeviceID) {
			return bad("deviceId must be 1-128 characters of [A-Za-z0-9._:@-]")
		}
		return poll.Target{DeviceID: *r.DeviceID}, nil
	}
	if !session.ValidID(*r.UserID) {
		return bad("userId must be 1-128 characters of [A-Za-z0-9._:@-]")
	}
	return poll.Target{UserID: *r.UserID}, nil
}

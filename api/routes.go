package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// The echo routes: each reads its request, calls the hub (GET /data and
// POST /push through their cores, core.go) and renders the answer with
// writeJSON, whose bytes are the raw path's too.

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
	return a.json(c, http.StatusCreated, wire.NewConnected(s, a.cfg.PollTimeout, a.hub.Config().SessionTTL))
}

// data is GET /data: pollPlan, then the hub; parked without a goroutine
// where the connection allows (park.go), else held here.
func (a *API) data(c echo.Context) error {
	if probing(c) {
		return nil
	}
	a.pollHeaders(c.Response().Header(), c.Request().Header.Get(echo.HeaderOrigin))
	args, release, err := a.pollPlan(c.RealIP(), c.Request().URL.RawQuery)
	if err != nil {
		return err
	}
	if a.parkable(c.Request()) {
		return a.dataParked(c, args, release)
	}
	after := once(release)
	if after != nil {
		defer after() // a panic too
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), args.hold)
	defer cancel()
	start := time.Now()
	msgs, err := a.hub.Poll(ctx, args.id, args.ack, args.hasAck)
	gone := c.Request().Context().Err() != nil
	a.observePoll(start, msgs, err, gone)
	if after != nil {
		after() // before the answer: the client may poll again at once
	}
	if gone && err == nil {
		return nil // the client left; its messages stay until acknowledged
	}
	return a.writePoll(c, msgs, err)
}

// push is POST /push: pushAdmit, the body, publish; the connection of a
// plain HTTP/1.1 publisher stays with the API for its next push (raw.go).
func (a *API) push(c echo.Context) error {
	if probing(c) {
		return nil
	}
	if err := a.pushAdmit(publisherOf(c)); err != nil {
		return err
	}
	body, err := jsonBody(c, MaxPushBody)
	if err != nil {
		return err
	}
	v, err := a.publish(body, wire.Publisher, nil, a.hub.Publish, a.hub.PublishAll)
	if err != nil {
		return err
	}
	if !prettyJSON(c) && a.takeOver(c, http.StatusAccepted, jsonLine(v)) {
		return nil
	}
	return a.json(c, http.StatusAccepted, v)
}

// send is POST /send: a client's push, from its session, checked against
// its permit.
func (a *API) send(c echo.Context) error {
	id := c.QueryParam("sessionId")
	if id == "" {
		return errMissingSession
	}
	s, err := a.hub.Session(id)
	if err != nil {
		return err
	}
	body, err := jsonBody(c, MaxPushBody)
	if err != nil {
		return err
	}
	v, err := a.publish(body, wire.Client, a.sendCheck(s), func(p poll.Push) (poll.Result, error) { return a.hub.Send(id, p) },
		func(ps []poll.Push) ([]poll.Result, []error, error) { return a.hub.SendAll(id, ps) })
	if err != nil {
		return err
	}
	return a.json(c, http.StatusAccepted, v)
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

// presence lists the online sessions of ?userId= or ?deviceId= (exactly
// one of them): {"sessions":[…]}.
func (a *API) presence(c echo.Context) error {
	user, device := c.QueryParam("userId"), c.QueryParam("deviceId")
	if (user == "") == (device == "") {
		return apiError(http.StatusBadRequest, "invalid_payload", "give exactly one of the userId and deviceId query parameters")
	}
	var list []*session.Session
	var err error
	if user != "" {
		list, err = a.hub.OnlineUser(user)
	} else {
		var s *session.Session
		if s, err = a.hub.OnlineDevice(device); s != nil {
			list = append(list, s)
		}
	}
	if err != nil {
		return err
	}
	return a.json(c, http.StatusOK, wire.NewPresence(list))
}

func (a *API) healthz(c echo.Context) error {
	if a.hub.Closing() {
		return apiError(http.StatusServiceUnavailable, "unavailable", "draining: the server is shutting down")
	}
	if err := a.hub.StoreErr(); err != nil {
		return apiError(http.StatusServiceUnavailable, "unavailable", err.Error()) // the store says what to do (restart, or free space)
	}
	return a.json(c, http.StatusOK, wire.Health{Status: "ok"})
}

func (a *API) stats(c echo.Context) error {
	return a.json(c, http.StatusOK, wire.NewStats(a.hub.Stats(), time.Since(a.started)))
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
	body, err := jsonBody(c, maxDisconnectBody)
	if err != nil {
		return err
	}
	to, err := parseDisconnect(body)
	if err != nil {
		return err
	}
	n, err := a.hub.EndSessions(to)
	if err != nil {
		return err
	}
	return a.json(c, http.StatusOK, wire.Disconnected{Disconnected: n})
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

// json writes v as the JSON body of a status: jsonLine's bytes, as the raw
// path writes them (writeJSON).
func (a *API) json(c echo.Context, status int, v any) error {
	return a.writeJSON(c, status, jsonLine(v))
}

// writeJSON writes body with its Content-Type and Content-Length (so that
// a long answer is not chunked: the raw path's framing), indented when the
// query asks for ?pretty, as echo's c.JSON does.
func (a *API) writeJSON(c echo.Context, status int, body []byte) error {
	if prettyJSON(c) {
		var buf bytes.Buffer
		if json.Indent(&buf, bytes.TrimSuffix(body, []byte("\n")), "", "  ") == nil {
			body = append(buf.Bytes(), '\n')
		}
	}
	return a.writePieces(c, status, [][]byte{body})
}

// writePieces writes a JSON body given as pieces, with its Content-Type
// and Content-Length, under the write timeout: a client that does not read
// its answer is dropped after it, as on the raw path, and while it is
// written the server holds the pieces (shared messages, for a poll) and
// net/http's buffer, not a copy of the answer.
func (a *API) writePieces(c echo.Context, status int, pieces [][]byte) error {
	n := 0
	for _, p := range pieces {
		n += len(p)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(n))
	// Not supported by a recorder in tests: the server's WriteTimeout stays.
	_ = http.NewResponseController(c.Response().Writer).SetWriteDeadline(time.Now().Add(a.writeTimeout))
	c.Response().WriteHeader(status)
	for _, p := range pieces {
		if _, err := c.Response().Write(p); err != nil {
			return nil // the client is gone or too slow: nothing more to say to it
		}
	}
	return nil
}

// prettyJSON reports whether the request asks for indented JSON.
func prettyJSON(c echo.Context) bool { return c.QueryParams().Has("pretty") }

// jsonBody checks that the request's body is JSON (415) and reads it
// (413 beyond limit).
func jsonBody(c echo.Context, limit int64) ([]byte, error) {
	mt, err := mediaType(c)
	if err != nil {
		return nil, err
	}
	if mt != echo.MIMEApplicationJSON {
		return nil, unsupported("application/json")
	}
	return readBody(c, limit)
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

// readBody reads the whole body, failing with payload_too_large past
// limit. Its memory grows with the bytes that arrive, whatever the
// Content-Length says.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	if r.ContentLength > 0 {
		// The length is known (and net/http stops the body there): read
		// it into memory that grows as it arrives, not as announced.
		body, err := h1.ReadFull(r.Body, int(r.ContentLength))
		if err != nil {
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

func (a *API) logPanic(c echo.Context, err error, stack []byte) error {
	a.log.Error("panic serving request", "method", c.Request().Method, "path", logPath(c.Request().URL.Path), "err", err, "stack", string(stack))
	return err
}

// logRequests logs one line per request at debug level (logRequest).
func (a *API) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if a.log.Enabled(c.Request().Context(), slog.LevelDebug) && !probing(c) {
			var status any = c.Response().Status
			switch {
			case err != nil:
				status = toError(err).Status
			case c.Get(parkedKey) != nil:
				status = c.Get(parkedKey) // answered on the taken-over connection
			}
			a.logRequest(start, c.Request().Method, c.Request().URL.Path, status, c.RealIP())
		}
		return err
	}
}

// logRequest writes a request's line at debug level, for both paths. The
// query string is left out: it carries session IDs, which are credentials.
func (a *API) logRequest(start time.Time, method, path string, status any, remote string) {
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("request", "method", method, "path", logPath(path), "status", status,
			"duration", time.Since(start), "remote", remote)
	}
}

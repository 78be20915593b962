package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/bayeux"
	"github.com/longpoll/longpoll/session"
)

// bayeuxHandler is POST /bayeux, and /bayeux/ and /bayeux/<type> where
// CometD's appendMessageTypeToURL posts (a batch to "/bayeux/", one meta
// message to "/bayeux/handshake", …): the body's messages, read
// as JSON (or a form's message field), answered by the Bayeux server with
// this request's defences (bayeuxEdge). Whatever goes wrong, the answer is
// a Bayeux array: a body that cannot be read gets one failed reply.
func (a *API) bayeuxHandler(c echo.Context) error {
	body, err := bayeuxBody(c)
	if err != nil {
		ae := toError(err)
		msg, _ := json.Marshal([]map[string]any{{"channel": "/meta/unknown", "successful": false,
			"error": strconv.Itoa(ae.Status) + "::" + ae.Message}})
		return a.writeBayeux(c, ae.Status, msg)
	}
	status, out := a.bx.Handle(c.Request().Context(), body, bayeuxEdge{a, c})
	if c.Request().Context().Err() != nil {
		return nil // the client left while its connect was held
	}
	return a.writeBayeux(c, status, out)
}

func (a *API) writeBayeux(c echo.Context, status int, body []byte) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return a.writeJSON(c, status, body)
}

// bayeuxBody reads a Bayeux request's messages: the body as JSON
// (application/json, text/plain or no type, as clients send it), or the
// message field of a form (application/x-www-form-urlencoded, or any body
// that starts with "message=").
func bayeuxBody(c echo.Context) ([]byte, error) {
	body, err := readBody(c, MaxPushBody)
	if err != nil {
		return nil, err
	}
	// A form (Faye's cross-origin transport posts one as text/plain).
	if mt, err := mediaType(c); err == nil && mt == echo.MIMEApplicationForm || bytes.HasPrefix(body, []byte("message=")) {
		form, err := url.ParseQuery(string(body))
		if err != nil || !form.Has("message") {
			return nil, apiError(http.StatusBadRequest, "invalid_payload", "a form must carry the messages in its message field")
		}
		return []byte(form.Get("message")), nil
	}
	return body, nil
}

// bayeuxEdge is the Bayeux server's view of the request's defences: the
// same limits, token and claims as the native client endpoints (the
// network filter and the origin check have run as middleware).
type bayeuxEdge struct {
	a *API
	c echo.Context
}

// Handshake implements bayeux.Edge: /connect's rate limit, then its token
// (ext.token, or the Authorization header) and claims.
func (e bayeuxEdge) Handshake(req session.Request, token string) (session.Request, error) {
	if l := e.a.sec.connects; l != nil {
		if retry, ok := l.take(clientKey(e.c)); !ok {
			return req, rateLimited("too many handshakes from your address; retry later", retry)
		}
	}
	if e.a.cfg.Auth == nil {
		return req, nil
	}
	if token == "" {
		token = auth.BearerToken(e.c.Request().Header.Get(echo.HeaderAuthorization))
	}
	grant, err := e.a.cfg.Auth.Verify(token)
	if err != nil {
		return req, err
	}
	return e.a.grantConnect(grant, req)
}

// Publish implements bayeux.Edge: /send's rate limit.
func (e bayeuxEdge) Publish() error {
	if l := e.a.sec.sends; l != nil {
		if retry, ok := l.take(clientKey(e.c)); !ok {
			return rateLimited("too many publishes from your address; retry later", retry)
		}
	}
	return nil
}

// Park implements bayeux.Edge: a place under --max-parked-per-ip.
func (e bayeuxEdge) Park() (func(), error) {
	release, ok := e.a.takeSlot(e.c.RealIP())
	if !ok {
		return nil, rateLimited("too many open polls from your address", time.Second)
	}
	return release, nil
}

var _ bayeux.Edge = bayeuxEdge{}

package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// authenticate verifies the connect token when client authentication is
// on; it returns nil (and no error) when it is off.
func (a *API) authenticate(c echo.Context) (*auth.Grant, error) {
	if a.cfg.Auth == nil {
		return nil, nil
	}
	return a.cfg.Auth.Verify(auth.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization)))
}

// grantConnect applies the grant (if any) to a connect payload. Besides
// the token's claims, a device that is online for another user may not be
// taken over (403): without a dev claim, device IDs are otherwise first
// come, first served.
func (a *API) grantConnect(g *auth.Grant, req session.Request) (session.Request, error) {
	if g == nil {
		return req, nil
	}
	req, err := g.Connect(req)
	if err != nil {
		return req, err
	}
	cur, err := a.hub.OnlineDevice(req.DeviceID)
	if err != nil {
		return req, err // the owner check cannot be made: refuse, do not wave through
	}
	if cur != nil && cur.UserID != req.UserID {
		return req, apiError(http.StatusForbidden, "forbidden", "deviceId "+strconv.Quote(req.DeviceID)+" is online for another user")
	}
	return req, nil
}

// sendCheck returns the check of /send pushes from s: what the hub
// allows a client (Hub.CheckSend: no ttl beyond the offline ttl), and the
// topics against its permit (session.Permit: the topics claim of its
// connect token). A batch is checked whole before anything is delivered,
// and the error names the first item refused.
func (a *API) sendCheck(s *session.Session) func([]poll.Push) error {
	return func(pushes []poll.Push) error {
		if err := a.hub.CheckSend(pushes); err != nil {
			return err
		}
		if s.Permit == nil {
			return nil
		}
		for i, p := range pushes {
			if err := s.Permit.CheckSend(p.To.Topic, p.Topic); err != nil {
				if len(pushes) > 1 {
					return fmt.Errorf("item %d: %w", i, err)
				}
				return err
			}
		}
		return nil
	}
}

package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// ValidOrigin checks a --cors-origins entry: "*", or scheme://host[:port]
// with no path, query or fragment.
func ValidOrigin(o string) error {
	if o == "*" {
		return nil
	}
	if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
		return fmt.Errorf("%q is not an origin (want scheme://host[:port], or *)", o)
	}
	return nil
}

func normalizeOrigin(o string) string { return strings.ToLower(strings.TrimSuffix(o, "/")) }

var errCrossOrigin = apiError(http.StatusForbidden, "forbidden", "cross-origin request from an origin that is not allowed (see --cors-origins)")

// originAllowed reports whether the CORS configuration admits origin.
func (s *security) originAllowed(origin string) bool {
	return origin != "" && (s.anyOrigin || s.origins[normalizeOrigin(origin)])
}

// checkOrigin implements CORS for the client endpoints' actual requests:
// an allowed origin gets Access-Control-Allow-Origin; a browser's
// state-changing request (POST, DELETE) from any other origin is refused
// 403 (cross-site request forgery), while same-origin and non-browser
// requests (no Origin, no Sec-Fetch-Site) pass.
func (a *API) checkOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		origin := c.Request().Header.Get(echo.HeaderOrigin)
		if a.corsHeaders(c.Response().Header(), origin) {
			return next(c)
		}
		if a.sec.cop.Check(c.Request()) != nil {
			return errCrossOrigin
		}
		return next(c)
	}
}

// corsHeaders sets the CORS headers of an answer to a request from
// origin ("" for none): Vary: Origin whenever origins are configured, and
// for an allowed origin Access-Control-Allow-Origin and -Expose-Headers.
// It reports whether origin is allowed.
func (a *API) corsHeaders(h http.Header, origin string) bool {
	if a.sec.anyOrigin || len(a.sec.origins) > 0 {
		h.Add(echo.HeaderVary, echo.HeaderOrigin)
	}
	if !a.sec.originAllowed(origin) {
		return false
	}
	h.Set(echo.HeaderAccessControlAllowOrigin, a.allowOriginValue(origin))
	h.Set(echo.HeaderAccessControlExposeHeaders, "Retry-After")
	return true
}

func (a *API) allowOriginValue(origin string) string {
	if a.sec.anyOrigin {
		return "*"
	}
	return origin
}

// preflightMaxAge is how long a browser may cache a preflight answer.
const preflightMaxAge = 10 * time.Minute

// preflight answers a CORS preflight (OPTIONS with Origin and
// Access-Control-Request-Method) for a client endpoint whose one method is
// method: 204 with the CORS headers for an allowed origin asking for that
// method, 403 otherwise. An OPTIONS that is not a preflight gets 204 with
// Allow, as for any route.
func (a *API) preflight(method string) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		h := c.Response().Header()
		origin, want := r.Header.Get(echo.HeaderOrigin), r.Header.Get(echo.HeaderAccessControlRequestMethod)
		if origin == "" || want == "" {
			h.Set(echo.HeaderAllow, http.MethodOptions+", "+method)
			return c.NoContent(http.StatusNoContent)
		}
		// (Vary: Origin is set by checkOrigin, which runs first.)
		h.Add(echo.HeaderVary, echo.HeaderAccessControlRequestMethod)
		h.Add(echo.HeaderVary, echo.HeaderAccessControlRequestHeaders)
		if !a.sec.originAllowed(origin) {
			return apiError(http.StatusForbidden, "forbidden", "origin "+strconv.Quote(origin)+" may not call this endpoint (see --cors-origins)")
		}
		if want != method {
			return apiError(http.StatusForbidden, "forbidden", "this endpoint accepts "+method+" only, not "+strconv.Quote(want))
		}
		h.Set(echo.HeaderAccessControlAllowOrigin, a.allowOriginValue(origin))
		h.Set(echo.HeaderAccessControlAllowMethods, method)
		h.Set(echo.HeaderAccessControlAllowHeaders, "Authorization, Content-Type")
		h.Set(echo.HeaderAccessControlMaxAge, strconv.Itoa(int(preflightMaxAge/time.Second)))
		return c.NoContent(http.StatusNoContent)
	}
}

// credentialed extends CORS on the Bayeux endpoint for an origin listed in
// --cors-origins (not for "*"): CometD's and Faye's browser transports
// send credentialed requests (withCredentials), which a browser lets
// through only when the answer names the origin itself and allows
// credentials; Faye's also sends a Pragma header. Just before the answer's
// header is written, wherever CORS granted the origin (checkOrigin, a
// preflight), it adds Access-Control-Allow-Credentials and Pragma to the
// allowed headers. longpoll itself reads no cookie.
func (a *API) credentialed(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		origin := c.Request().Header.Get(echo.HeaderOrigin)
		if origin == "" || !a.sec.origins[normalizeOrigin(origin)] {
			return next(c)
		}
		res := c.Response()
		res.Before(func() {
			h := res.Header()
			if h.Get(echo.HeaderAccessControlAllowOrigin) == "" {
				return // not granted (a refused preflight, an error before CORS)
			}
			h.Set(echo.HeaderAccessControlAllowOrigin, origin)
			h.Set(echo.HeaderAccessControlAllowCredentials, "true")
			if h.Get(echo.HeaderAccessControlAllowHeaders) != "" {
				h.Set(echo.HeaderAccessControlAllowHeaders, "Authorization, Content-Type, Pragma")
			}
		})
		return next(c)
	}
}

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
	return a.originCheck(false)(next)
}

// originCheck is checkOrigin with the endpoint's credentials policy
// (corsHeaders).
func (a *API) originCheck(credentials bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			origin := c.Request().Header.Get(echo.HeaderOrigin)
			if a.corsHeaders(c.Response().Header(), origin, credentials) {
				return next(c)
			}
			if a.sec.cop.Check(c.Request()) != nil {
				return errCrossOrigin
			}
			return next(c)
		}
	}
}

// corsHeaders sets the CORS headers of an answer to a request from
// origin ("" for none): Vary: Origin whenever origins are configured, and
// for an allowed origin Access-Control-Allow-Origin and -Expose-Headers.
// It reports whether origin is allowed.
//
// With credentials (the Bayeux endpoint: CometD's and Faye's browser
// transports send withCredentials), an origin listed in --cors-origins
// (not "*") is also granted credentials: Allow-Origin names it and
// Access-Control-Allow-Credentials is true. longpoll reads no cookie.
func (a *API) corsHeaders(h http.Header, origin string, credentials bool) bool {
	if a.sec.anyOrigin || len(a.sec.origins) > 0 {
		h.Add(echo.HeaderVary, echo.HeaderOrigin)
	}
	if !a.sec.originAllowed(origin) {
		return false
	}
	a.allowOrigin(h, origin, credentials)
	h.Set(echo.HeaderAccessControlExposeHeaders, "Retry-After")
	return true
}

// allowOrigin sets Access-Control-Allow-Origin for an allowed origin and,
// with credentials, grants them to an origin listed in --cors-origins (not
// "*"); it reports whether it granted them.
func (a *API) allowOrigin(h http.Header, origin string, credentials bool) bool {
	if credentials && a.sec.origins[normalizeOrigin(origin)] {
		h.Set(echo.HeaderAccessControlAllowOrigin, origin)
		h.Set(echo.HeaderAccessControlAllowCredentials, "true")
		return true
	}
	h.Set(echo.HeaderAccessControlAllowOrigin, a.allowOriginValue(origin))
	return false
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
// method, 403 otherwise (with credentials as corsHeaders says, and Faye's
// Pragma header allowed then). An OPTIONS that is not a preflight gets 204
// with Allow, as for any route.
func (a *API) preflight(method string, credentials bool) echo.HandlerFunc {
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
		allowHeaders := "Authorization, Content-Type"
		if a.allowOrigin(h, origin, credentials) {
			allowHeaders += ", Pragma" // Faye's
		}
		h.Set(echo.HeaderAccessControlAllowMethods, method)
		h.Set(echo.HeaderAccessControlAllowHeaders, allowHeaders)
		h.Set(echo.HeaderAccessControlMaxAge, strconv.Itoa(int(preflightMaxAge/time.Second)))
		return c.NoContent(http.StatusNoContent)
	}
}

package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// requirePublisher admits a request with a configured publish key as its
// bearer token, or, when no key is configured, from a loopback address.
func (a *API) requirePublisher(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := a.publisherCheck(c.RealIP(), c.Request().Header.Get(echo.HeaderAuthorization)); err != nil {
			return err
		}
		return next(c)
	}
}

// publisherCheck admits a publisher by its client address ip and its
// Authorization header: without publish keys only loopback clients (403),
// with keys a bearer of one of them (401).
func (a *API) publisherCheck(ip, authorization string) error {
	if len(a.sec.keyHashes) == 0 {
		addr, err := netip.ParseAddr(ip)
		if err != nil || !addr.Unmap().IsLoopback() {
			return errLoopbackOnly
		}
		return nil
	}
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || !a.validKey(strings.TrimSpace(token)) {
		return errUnauthorized
	}
	return nil
}

// validKey compares token with every key in constant time: all keys are
// compared, and through their SHA-256 so that not even the length of a key
// shows in the timing.
func (a *API) validKey(token string) bool {
	h := sha256.Sum256([]byte(token))
	match := 0
	for _, k := range a.sec.keyHashes {
		match |= subtle.ConstantTimeCompare(h[:], k[:])
	}
	return token != "" && match == 1
}

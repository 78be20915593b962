package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// publisher is what the publisher check reads of a request: the client's
// address, its Authorization header, and, for local publishers without a
// key, where the request says it goes and comes from.
type publisher struct {
	ip, authorization string
	host              string // the Host header
	origin            string // the Origin header, if any
	fetchSite         string // the Sec-Fetch-Site header, if any
}

// publisherOf reads the publisher check's fields off an echo request. A
// local publisher must be local twice over: the connection's peer, so that
// a host among trusted proxies cannot pass for one by naming 127.0.0.1 in
// X-Forwarded-For, and the client address (RealIP), so that a proxy on
// this host does not make every client behind it local. ip is the peer
// when that is not loopback, else the client address.
func publisherOf(c echo.Context) publisher {
	r := c.Request()
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	if loopbackIP(ip) {
		ip = c.RealIP()
	}
	return publisher{ip: ip, authorization: r.Header.Get(echo.HeaderAuthorization),
		host: r.Host, origin: r.Header.Get(echo.HeaderOrigin), fetchSite: r.Header.Get("Sec-Fetch-Site")}
}

// requirePublisher admits a publisher (publisherCheck).
func (a *API) requirePublisher(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := a.publisherCheck(publisherOf(c)); err != nil {
			return err
		}
		return next(c)
	}
}

// publisherCheck admits a publisher. With publish keys: a bearer of one
// of them (401 otherwise). Without: a local client only (403 otherwise,
// telling the operator to set --publish-key): a loopback address, a
// loopback Host (localhost, 127.0.0.0/8, [::1], any port), so that a page
// that rebinds its own name to 127.0.0.1 cannot publish, and no cross-site
// Origin or Sec-Fetch-Site, so that a page in a browser on this host
// cannot either.
func (a *API) publisherCheck(p publisher) error {
	if len(a.sec.keyHashes) > 0 {
		token, ok := strings.CutPrefix(p.authorization, "Bearer ")
		if !ok || !a.validKey(strings.TrimSpace(token)) {
			return errUnauthorized
		}
		return nil
	}
	if !loopbackIP(p.ip) || !loopbackHost(p.host) || p.fetchSite == "cross-site" {
		return errLoopbackOnly
	}
	if p.origin != "" {
		u, err := url.Parse(p.origin)
		if err != nil || u.Host == "" || !loopbackHost(u.Host) {
			return errLoopbackOnly
		}
	}
	return nil
}

// loopbackIP reports whether ip is a loopback address.
func loopbackIP(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	return err == nil && addr.Unmap().IsLoopback()
}

// loopbackHost reports whether a Host header (host, or host:port) names
// this host by a loopback name: localhost, 127.0.0.0/8 or [::1].
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	return loopbackIP(host)
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

package api

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/labstack/echo/v4"
)

var errNetwork = apiError(http.StatusForbidden, "forbidden", "requests from your network are not allowed")

// clientKey identifies a client for rate limits and poll caps: its IPv4
// address, or its IPv6 /64 (one subscriber's allocation).
func clientKey(c echo.Context) string { return addrKey(c.RealIP()) }

// addrKey is clientKey of the client address ip.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap().WithZone(""); a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// client guards the client endpoints (/connect, /data, /send, DELETE
// /session): the network filter first, then the origin check.
func (a *API) client(next echo.HandlerFunc) echo.HandlerFunc {
	return a.filterNetworks(a.checkOrigin(next))
}

// bayeuxClient is client for the Bayeux endpoint, whose CORS grants a
// listed origin credentials (corsHeaders).
func (a *API) bayeuxClient(next echo.HandlerFunc) echo.HandlerFunc {
	return a.filterNetworks(a.originCheck(true)(next))
}

// filterNetworks refuses clients in a denied network or, when allowed
// networks are configured, outside all of them. An address that cannot be
// parsed is refused whenever a filter is configured.
func (a *API) filterNetworks(next echo.HandlerFunc) echo.HandlerFunc {
	if len(a.sec.allow) == 0 && len(a.sec.deny) == 0 {
		return next
	}
	return func(c echo.Context) error {
		if !a.admitted(c.RealIP()) {
			return errNetwork
		}
		return next(c)
	}
}

// admitted reports whether the network filters let the client address ip
// use the client endpoints; true when none is configured.
func (a *API) admitted(ip string) bool {
	if len(a.sec.allow) == 0 && len(a.sec.deny) == 0 {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	return !inAny(a.sec.deny, addr) && (len(a.sec.allow) == 0 || inAny(a.sec.allow, addr))
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipExtractor returns echo's IP extractor: the peer address, or, when the
// peer is one of the trusted proxies, the right-most X-Forwarded-For
// address that is not a trusted proxy.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		if _, n, err := net.ParseCIDR(p.Masked().String()); err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

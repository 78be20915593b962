package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// This file holds the edge's defences: client authentication (connect
// tokens), publisher keys, CORS and cross-origin write protection, network
// filters, per-client rate limits, the cap on concurrent polls per client,
// and the cap on request header size. Each rejection is an *Error of
// API.md and changes no state.

// DefaultMaxHeaderBytes is the default cap on a request's line and headers.
const DefaultMaxHeaderBytes = 16 << 10

// RateLimit is a per-client token bucket: Rate requests per second on
// average, bursts of up to Burst. A zero Rate turns the limit off.
type RateLimit struct {
	Rate  float64
	Burst int
}

// maxLimitedClients bounds the clients a rate limiter tracks at once. An
// idle client (full bucket) is forgotten, so this is reached only when that
// many clients are each throttled; new clients are then refused (429)
// until some bucket refills.
const maxLimitedClients = 1 << 17

// security is the state behind the defences. Its parts lock themselves.
type security struct {
	keyHashes [][sha256.Size]byte // publisher keys, hashed to a fixed length
	origins   map[string]bool     // allowed CORS origins, lower case
	anyOrigin bool                // "*": every origin
	cop       *http.CrossOriginProtection
	allow     []netip.Prefix
	deny      []netip.Prefix
	connects  *limiter // nil: no limit
	sends     *limiter
	polls     *pollCounter // nil: no cap
	grants    *grants      // nil: no client authentication
}

func newSecurity(cfg Config) *security {
	s := &security{
		origins:  map[string]bool{},
		cop:      http.NewCrossOriginProtection(),
		allow:    cfg.AllowNets,
		deny:     cfg.DenyNets,
		connects: newLimiter(cfg.ConnectLimit, cfg.Now),
		sends:    newLimiter(cfg.SendLimit, cfg.Now),
	}
	for _, k := range cfg.PublishKeys {
		s.keyHashes = append(s.keyHashes, sha256.Sum256([]byte(k)))
	}
	for _, o := range cfg.CORSOrigins {
		if o == "*" {
			s.anyOrigin = true
			continue
		}
		s.origins[normalizeOrigin(o)] = true
	}
	if cfg.MaxParkedPerIP > 0 {
		s.polls = &pollCounter{max: cfg.MaxParkedPerIP, n: map[string]int{}}
	}
	if cfg.Auth != nil {
		s.grants = &grants{m: map[string]*auth.Grant{}, sweepAt: grantSweepFloor}
	}
	return s
}

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

// Errors of the defences.
var (
	errHeaderTooLarge = apiError(http.StatusRequestHeaderFieldsTooLarge, "header_too_large", "the request line and headers are too large")
	errNetwork        = apiError(http.StatusForbidden, "forbidden", "requests from your network are not allowed")
	errCrossOrigin    = apiError(http.StatusForbidden, "forbidden", "cross-origin request from an origin that is not allowed (see --cors-origins)")
	errNoGrant        = apiError(http.StatusForbidden, "forbidden", "the session has no grant for topics")
)

func rateLimited(what string, retry time.Duration) *Error {
	e := apiError(http.StatusTooManyRequests, "rate_limited", what)
	e.RetryAfter = retry
	return e
}

// limitHeaders answers 431 when the request line and headers together are
// larger than the configured cap. (The http.Server's own, larger cap cuts
// off anything beyond before it is read into memory.)
func (a *API) limitHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 12
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > a.cfg.MaxHeaderBytes {
			return errHeaderTooLarge
		}
		return next(c)
	}
}

// noSniff tells browsers never to read a response as another type than
// the one it declares (an error message quoting input stays JSON).
func noSniff(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

// wholeFiles drops the request headers with which http.ServeContent would
// answer a static file with a plain-text 412 or 416 (If-Match,
// If-Unmodified-Since, Range, If-Range): the files are small and every
// error of the API has the JSON body. Conditional GETs (304) still work.
func wholeFiles(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		for _, k := range []string{"Range", "If-Range", "If-Match", "If-Unmodified-Since"} {
			h.Del(k)
		}
		return next(c)
	}
}

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

// remoteIP is the address part of a peer address, as echo's direct IP
// extractor takes it from the request's RemoteAddr.
func remoteIP(addr net.Addr) string {
	s := addr.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// client guards the client endpoints (/connect, /data, /send, DELETE
// /session): the network filter first, then the origin check.
func (a *API) client(next echo.HandlerFunc) echo.HandlerFunc {
	return a.filterNetworks(a.checkOrigin(next))
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
		h := c.Response().Header()
		if a.sec.anyOrigin || len(a.sec.origins) > 0 {
			h.Add(echo.HeaderVary, echo.HeaderOrigin)
		}
		if a.sec.originAllowed(origin) {
			h.Set(echo.HeaderAccessControlAllowOrigin, a.allowOriginValue(origin))
			h.Set(echo.HeaderAccessControlExposeHeaders, "Retry-After")
			return next(c)
		}
		if a.sec.cop.Check(c.Request()) != nil {
			return errCrossOrigin
		}
		return next(c)
	}
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

// limit applies l (nil: no limit) per client key.
func (a *API) limit(l *limiter, what string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if l == nil {
			return next
		}
		return func(c echo.Context) error {
			if retry, ok := l.take(clientKey(c)); !ok {
				return rateLimited("too many "+what+" requests from your address; retry later", retry)
			}
			return next(c)
		}
	}
}

// capPolls caps the polls a client key has in flight at once (parked or
// being answered). The request holds a slot until the handler returns,
// unless the handler takes the slot (takePollSlot) to release it itself
// once a poll that outlives it is answered.
func (a *API) capPolls(next echo.HandlerFunc) echo.HandlerFunc {
	if a.sec.polls == nil {
		return next
	}
	return func(c echo.Context) error {
		release, ok := a.takeSlot(c.RealIP())
		if !ok {
			return rateLimited("too many open polls from your address", time.Second)
		}
		slot := &pollSlot{release: release}
		c.Set(pollSlotKey, slot)
		err := next(c)
		if !slot.taken.Load() {
			slot.once.Do(slot.release)
		}
		return err
	}
}

// pollSlotKey is the echo context key of the request's *pollSlot.
const pollSlotKey = "longpoll.pollSlot"

// pollSlot is a request's place under --max-parked-per-ip.
type pollSlot struct {
	release func()
	once    sync.Once
	taken   atomic.Bool
}

// takePollSlot hands the request's poll slot to the caller, who must call
// the returned function (once, from any goroutine) when the poll has been
// answered; capPolls then leaves it alone. It returns nil when polls are
// not capped.
func takePollSlot(c echo.Context) func() {
	slot, _ := c.Get(pollSlotKey).(*pollSlot)
	if slot == nil {
		return nil
	}
	slot.taken.Store(true)
	return func() { slot.once.Do(slot.release) }
}

// limiter holds a token bucket per client key. Idle clients (full bucket)
// are forgotten by sweeps, which run when the map has doubled since the
// last one, and at most once a second while it is at maxLimitedClients.
type limiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	clients   map[string]*rate.Limiter
	sweepAt   int
	lastSweep time.Time
}

const limiterSweepFloor = 1024

func newLimiter(rl RateLimit, now func() time.Time) *limiter {
	if rl.Rate <= 0 || math.IsNaN(rl.Rate) {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &limiter{rate: rate.Limit(rl.Rate), burst: max(rl.Burst, 1), now: now,
		clients: map[string]*rate.Limiter{}, sweepAt: limiterSweepFloor}
}

// take takes a token for key. When none is left it takes nothing and
// returns how long until one is.
func (l *limiter) take(key string) (retry time.Duration, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.clients[key]
	if lim == nil {
		if len(l.clients) >= l.sweepAt || len(l.clients) >= maxLimitedClients && now.Sub(l.lastSweep) >= time.Second {
			l.sweep(now)
		}
		if len(l.clients) >= maxLimitedClients {
			return time.Second, false
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.clients[key] = lim
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

func (l *limiter) sweep(now time.Time) {
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
	l.lastSweep = now
	l.sweepAt = min(max(2*len(l.clients), limiterSweepFloor), maxLimitedClients)
}

// pollCounter counts polls in flight per client key.
type pollCounter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (p *pollCounter) acquire(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[key] >= p.max {
		return false
	}
	p.n[key]++
	return true
}

func (p *pollCounter) release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[key] <= 1 {
		delete(p.n, key)
	} else {
		p.n[key]--
	}
}

// grants remembers the grant each authenticated session connected with,
// so that its sends can be checked against the token's topics claim. The
// entries of ended sessions are swept when the map has doubled since the
// last sweep, which keeps it under twice the online sessions (plus a
// floor) at an amortised constant cost per connect.
type grants struct {
	mu      sync.Mutex
	m       map[string]*auth.Grant
	sweepAt int
}

const grantSweepFloor = 1024

func (g *grants) put(id string, gr *auth.Grant, alive func(id string) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.m) >= g.sweepAt {
		for k := range g.m {
			if !alive(k) {
				delete(g.m, k)
			}
		}
		g.sweepAt = max(2*len(g.m), grantSweepFloor)
	}
	g.m[id] = gr
}

func (g *grants) get(id string) *auth.Grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[id]
}

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
	if cur := a.hub.OnlineDevice(req.DeviceID); cur != nil && cur.UserID != req.UserID {
		return req, apiError(http.StatusForbidden, "forbidden", "deviceId "+strconv.Quote(req.DeviceID)+" is online for another user")
	}
	return req, nil
}

// remember records the grant of a new session.
func (a *API) remember(id string, g *auth.Grant) {
	if g == nil || a.sec.grants == nil {
		return
	}
	a.sec.grants.put(id, g, func(id string) bool {
		_, err := a.hub.Session(id)
		return err == nil
	})
}

// sendCheck returns the check of the topics of /send pushes from session
// id against its grant; nil when client authentication is off. A batch is
// checked whole before anything is delivered.
func (a *API) sendCheck(id string) func([]poll.Push) error {
	if a.sec.grants == nil {
		return nil
	}
	return func(pushes []poll.Push) error {
		g := a.sec.grants.get(id)
		if g == nil {
			return errNoGrant
		}
		for i, p := range pushes {
			if err := g.Send(p.To.Topic, p.Topic); err != nil {
				if len(pushes) > 1 {
					return fmt.Errorf("item %d: %w", i, err)
				}
				return err
			}
		}
		return nil
	}
}

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

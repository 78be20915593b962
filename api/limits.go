package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

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

var errHeaderTooLarge = apiError(http.StatusRequestHeaderFieldsTooLarge, "header_too_large", "the request line and headers are too large")

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

// takeSlot takes a place under --max-parked-per-ip for the client at ip;
// release, nil when polls are not capped, gives it back (once). The client
// key (addrKey) is worked out only when polls are capped.
func (a *API) takeSlot(ip string) (release func(), ok bool) {
	if a.sec.polls == nil {
		return nil, true
	}
	k := addrKey(ip)
	if !a.sec.polls.acquire(k) {
		return nil, false
	}
	return func() { a.sec.polls.release(k) }, true
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

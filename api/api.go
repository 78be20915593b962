// Package api is longpoll's HTTP edge: it parses requests, calls the poll
// hub, and renders the JSON of API.md. It holds no state of its own beyond
// configuration; every error goes through one mapping (toError).
package api

import (
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// Defaults of Config's zero fields.
const (
	DefaultPollTimeout    = 30 * time.Second
	DefaultMaxPollTimeout = 120 * time.Second
	// MaxPushBody caps a /push or /send body (a batch of up to 1000 items).
	MaxPushBody = 8 << 20
)

// Config configures the HTTP edge.
type Config struct {
	// PollTimeout is the hold of a poll that names no timeout.
	PollTimeout time.Duration
	// MaxPollTimeout caps any requested hold.
	MaxPollTimeout time.Duration
	// PublishKeys authorise /push, /stats, /presence and /disconnect;
	// empty means loopback clients only.
	PublishKeys []string
	// Auth, when set, requires a connect token (auth.Verifier) on POST
	// /connect; nil leaves /connect open.
	Auth *auth.Verifier
	// CORSOrigins may call the client endpoints (/connect, /data, /send,
	// DELETE /session) from a browser: origins such as
	// "https://app.example.com", or "*" for any. Empty: none; browsers'
	// cross-origin POST and DELETE requests are then refused 403.
	CORSOrigins []string
	// AllowNets, when not empty, admits client endpoint requests only from
	// these networks; DenyNets refuses these networks (and wins). 403.
	AllowNets, DenyNets []netip.Prefix
	// TrustedProxies are reverse proxies whose X-Forwarded-For is believed
	// for the client address; empty: the peer address is the client.
	TrustedProxies []netip.Prefix
	// ConnectLimit and SendLimit rate-limit /connect and /send per client
	// address (IPv6: per /64); a zero Rate is no limit. 429 with Retry-After.
	ConnectLimit, SendLimit RateLimit
	// MaxParkedPerIP caps the polls one client address has open at once;
	// 0 is no cap. 429 with Retry-After.
	MaxParkedPerIP int
	// MaxHeaderBytes caps a request's line and headers (431 beyond); 0
	// means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// Now is the clock of the rate limiters; nil means time.Now.
	Now func() time.Time
	// Static holds index.html and the browser client, served at /.
	Static fs.FS
	// Logger receives request and error lines; nil discards them.
	Logger *slog.Logger
	// Polls, when set, is told about every answered poll (metrics).
	Polls PollObserver
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// Listener, when set, is the server's (plain TCP) listener: HTTP/1.1
	// polls then park without holding a goroutine or net/http's buffers
	// (park.go), and their connections come back to the server through it.
	Listener *Listener
	// Jitter returns the fraction of a requested hold to use; nil means a
	// uniform value in [0.8, 1.0), so clients do not re-poll in lockstep.
	Jitter func() float64
}

// PollObserver records answered polls; *metrics.Metrics implements it.
type PollObserver interface {
	// PollAnswered gets the hold, the outcome (messages, timeout, gone,
	// shutdown, superseded, closed, not_found, invalid, unavailable) and the
	// messages of the answer.
	PollAnswered(held time.Duration, outcome string, msgs []poll.Message, now time.Time)
}

// API serves the longpoll HTTP contract over a hub.
type API struct {
	hub     *poll.Hub
	cfg     Config
	log     *slog.Logger
	started time.Time
	sec     *security

	// ownRepolls: answered polls' connections stay with the API for the
	// next request (owned.go); ownedHeader is what the echo route's
	// middleware sets on a /data answer without an Origin.
	ownRepolls  bool
	ownedHeader []byte
	pushHeader  []byte // ditto for a /push answer
}

// New returns an echo server with every route of API.md registered.
func New(hub *poll.Hub, cfg Config) *echo.Echo {
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.MaxPollTimeout <= 0 {
		cfg.MaxPollTimeout = DefaultMaxPollTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func() float64 { return 0.8 + 0.2*rand.Float64() }
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	a := &API{hub: hub, cfg: cfg, log: cfg.Logger, started: time.Now(), sec: newSecurity(cfg)}
	a.ownRepolls = cfg.Listener != nil && len(cfg.TrustedProxies) == 0
	owned := http.Header{"Cache-Control": {"no-store"}, "X-Content-Type-Options": {"nosniff"}}
	if len(cfg.CORSOrigins) > 0 {
		owned.Set("Vary", "Origin")
	}
	a.ownedHeader = headerLines(owned)
	a.pushHeader = headerLines(http.Header{"X-Content-Type-Options": {"nosniff"}})

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	// X-Forwarded-For is never trusted, unless from a configured proxy.
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.HTTPErrorHandler = a.errorHandler
	e.Pre(noSniff, a.limitHeaders)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: a.logPanic}))
	e.Use(a.logRequests)

	// Client endpoints: network filter and origin check, then the limits.
	client := func(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		e.Add(method, path, h, append([]echo.MiddlewareFunc{a.client}, m...)...)
		if len(cfg.CORSOrigins) > 0 {
			e.OPTIONS(path, a.preflight(method), a.client)
		}
	}
	client(http.MethodPost, "/connect", a.connect, a.limit(a.sec.connects, "connect"))
	client(http.MethodGet, "/data", a.data, a.capPolls)
	client(http.MethodPost, "/send", a.send, a.limit(a.sec.sends, "send"))
	client(http.MethodDelete, "/session", a.deleteSession)

	e.POST("/push", a.push, a.requirePublisher)
	e.POST("/disconnect", a.disconnect, a.requirePublisher)
	e.GET("/healthz", a.healthz)
	e.GET("/stats", a.stats, a.requirePublisher)
	e.GET("/presence", a.presence, a.requirePublisher)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}
	if cfg.Static != nil {
		e.GET("/*", echo.StaticDirectoryHandler(cfg.Static, !e.EnablePathUnescapingStaticFiles), wholeFiles)
	}
	return e
}

func (a *API) logPanic(c echo.Context, err error, stack []byte) error {
	a.log.Error("panic serving request", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err, "stack", string(stack))
	return err
}

// logRequests logs one line per request at debug level. The query string
// is left out: it carries session IDs, which are credentials.
func (a *API) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if a.log.Enabled(c.Request().Context(), slog.LevelDebug) {
			var status any = c.Response().Status
			switch {
			case err != nil:
				status = toError(err).Status
			case c.Get(parkedKey) != nil:
				status = c.Get(parkedKey) // answered on the taken-over connection
			}
			a.log.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path,
				"status", status, "duration", time.Since(start), "remote", c.RealIP())
		}
		return err
	}
}

func (a *API) healthz(c echo.Context) error {
	if a.hub.Closing() {
		return apiError(http.StatusServiceUnavailable, "unavailable", "draining: the server is shutting down")
	}
	return c.JSON(http.StatusOK, wire.Health{Status: "ok"})
}

func (a *API) stats(c echo.Context) error {
	return c.JSON(http.StatusOK, wire.NewStats(a.hub.Stats(), time.Since(a.started)))
}

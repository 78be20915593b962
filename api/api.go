// Package api is longpoll's HTTP edge. Each endpoint has one core that
// runs its checks in order, calls the hub and decides the answer (core.go:
// pollPlan and pushAdmit, with the JSON of package wire); two transports
// render what the cores decide:
//
//   - echo routes (routes.go), for every request net/http reads: the
//     middleware chain (headers, logging, recovery, the client endpoints'
//     filters) and the error handler (errors.go) around the cores;
//   - the raw HTTP/1.1 path (raw.go), for the requests that follow an
//     answered poll or push on a plain HTTP/1.1 connection, which package
//     h1 reads without net/http: GET /data and POST /push only, with the
//     headers that echo's middleware chain sets, captured once at start
//     (probe.go), and the same error rendering.
//
// A poll parks in the hub without a goroutine (Hub.Park) and is answered on
// its connection by the raw writer, whichever transport read it (park.go).
// The Server (server.go) owns the listener, the HTTP server and the order
// of a shutdown. The edge holds no state of its own beyond configuration
// and its defences' counters (security.go).
package api

import (
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/bayeux"
	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
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
	// for the client address; empty: the peer address is the client. With
	// any, every request goes through net/http (the client address could
	// change from one request of a connection to the next).
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
	// Timeouts of a Server: ReadHeader bounds a request's head, Read a
	// whole request (a push's body), Idle the wait for a keep-alive
	// connection's next request, on both transports; Write bounds writing
	// an answer its client does not read on a taken-over connection. Zero
	// fields take h1's defaults.
	Timeouts h1.Timeouts
	// Now is the clock of the rate limiters; nil means time.Now.
	Now func() time.Time
	// Static holds index.html and the browser client, served at /.
	Static fs.FS
	// OpenAPI, when set, is served at GET /openapi.yaml (docs.OpenAPI).
	OpenAPI []byte
	// Logger receives request and error lines; nil discards them.
	Logger *slog.Logger
	// Polls, when set, is told about every answered poll (metrics).
	Polls PollObserver
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
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

// API serves the longpoll HTTP contract over a hub. It is an http.Handler
// (the echo routes); a Server adds the raw path.
type API struct {
	hub     *poll.Hub
	cfg     Config
	log     *slog.Logger
	started time.Time
	sec     *security
	e       *echo.Echo

	// ln, when set, is the server's h1 listener: HTTP/1.1 polls then park
	// without a goroutine and their connections stay with the API (own)
	// for the next request, unless X-Forwarded-For is trusted.
	ln  *h1.Listener
	own bool
	// raw holds the header lines of raw answers: those echo's chain sets
	// on a GET /data and a POST /push (probe.go), and /data's own.
	raw struct{ poll, push []byte }
	// refusals rate-limits the warn lines of refused credentials.
	refusals refusalLog
	// bx answers Bayeux requests (bayeux.go).
	bx *bayeux.Server
	// writeTimeout bounds writing an answer on net/http, as
	// cfg.Timeouts.Write does on a taken-over connection.
	writeTimeout time.Duration
}

// New returns the API with every route of API.md registered, served by
// echo alone (a Server adds the raw path).
func New(hub *poll.Hub, cfg Config) *API { return newAPI(hub, cfg, nil) }

// newAPI is New, with the raw path on ln when ln is not nil.
func newAPI(hub *poll.Hub, cfg Config, ln *h1.Listener) *API {
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
	a := &API{hub: hub, cfg: cfg, log: cfg.Logger, started: time.Now(), sec: newSecurity(cfg), ln: ln,
		writeTimeout: cfg.Timeouts.WithDefaults().Write}
	a.own = ln != nil && len(cfg.TrustedProxies) == 0

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
	// GET /data runs its checks in its core (pollPlan), for both paths.
	client := func(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		e.Add(method, path, h, m...)
		if len(cfg.CORSOrigins) > 0 {
			bayeux := strings.HasPrefix(path, "/bayeux") // its clients send credentials
			guard := a.client
			if bayeux {
				guard = a.bayeuxClient
			}
			e.OPTIONS(path, a.preflight(method, bayeux), guard)
		}
	}
	client(http.MethodPost, "/connect", a.connect, a.client, a.limit(a.sec.connects, "connect"))
	client(http.MethodGet, "/data", a.data)
	client(http.MethodPost, "/send", a.send, a.client, a.limit(a.sec.sends, "send"))
	client(http.MethodDelete, "/session", a.deleteSession, a.client)
	a.bx = bayeux.New(hub, bayeux.Config{Timeout: cfg.PollTimeout, MaxTimeout: cfg.MaxPollTimeout, Jitter: cfg.Jitter, Logger: cfg.Logger,
		Polled: a.observePoll}) // a /meta/connect is a poll in the metrics
	client(http.MethodPost, "/bayeux", a.bayeuxHandler, a.bayeuxClient)
	client(http.MethodPost, "/bayeux/", a.bayeuxHandler, a.bayeuxClient)      // CometD's appendMessageTypeToURL, for a batch
	client(http.MethodPost, "/bayeux/:type", a.bayeuxHandler, a.bayeuxClient) // and for one meta message

	e.POST("/push", a.push) // the publisher check is pushAdmit's, for both paths
	e.POST("/disconnect", a.disconnect, a.requirePublisher)
	e.GET("/healthz", a.healthz)
	e.GET("/stats", a.stats, a.requirePublisher)
	e.GET("/presence", a.presence, a.requirePublisher)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}
	if cfg.OpenAPI != nil {
		e.GET("/openapi.yaml", func(c echo.Context) error { return c.Blob(http.StatusOK, "application/yaml", cfg.OpenAPI) })
	}
	if cfg.Static != nil {
		static := echo.StaticDirectoryHandler(cfg.Static, !e.EnablePathUnescapingStaticFiles)
		e.GET("/*", static, wholeFiles)
		e.HEAD("/*", static, wholeFiles) // what a GET would answer, without the body
		e.GET("/favicon.ico", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	}
	a.e = e
	a.probeHeaders()
	return a
}

// ServeHTTP serves r through the echo routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.e.ServeHTTP(w, r) }

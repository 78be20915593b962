// Package api is longpoll's HTTP edge: it parses requests, calls the poll
// hub, and renders the JSON of API.md. It holds no state of its own beyond
// configuration; every error goes through one mapping (toError).
package api

import (
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

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
	// PublishKeys authorise /push; empty means loopback clients only.
	PublishKeys []string
	// Static holds index.html and the browser client, served at /.
	Static fs.FS
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

// API serves the longpoll HTTP contract over a hub.
type API struct {
	hub     *poll.Hub
	cfg     Config
	log     *slog.Logger
	started time.Time
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
	a := &API{hub: hub, cfg: cfg, log: cfg.Logger, started: time.Now()}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.IPExtractor = echo.ExtractIPDirect() // never trust X-Forwarded-For for the loopback check
	e.HTTPErrorHandler = a.errorHandler
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: a.logPanic}))
	e.Use(a.logRequests)

	e.POST("/connect", a.connect)
	e.GET("/data", a.data)
	e.POST("/push", a.push, a.requirePublisher)
	e.POST("/send", a.send)
	e.DELETE("/session", a.deleteSession)
	e.GET("/healthz", a.healthz)
	e.GET("/stats", a.stats, a.requirePublisher)
	e.GET("/presence", a.presence, a.requirePublisher)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}
	if cfg.Static != nil {
		e.StaticFS("/", cfg.Static)
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
			status := c.Response().Status
			if err != nil {
				status = toError(err).Status
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
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// statsResponse is the body of GET /stats.
type statsResponse struct {
	poll.Stats
	UptimeSeconds int64 `json:"uptimeSeconds"`
}

func (a *API) stats(c echo.Context) error {
	return c.JSON(http.StatusOK, statsResponse{a.hub.Stats(), int64(time.Since(a.started) / time.Second)})
}

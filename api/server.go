package api

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
)

// serverHeaderBytes is the http.Server's own cap on request headers, as a
// multiple of MaxHeaderBytes: between the two, the API answers 431 with
// its JSON error body; beyond, net/http answers a plain 431 before reading
// more.
const serverHeaderBytes = 2

// Server serves the API on one listener: net/http with the echo routes,
// and on plain TCP the raw HTTP/1.1 path (h1) for the connections the API
// takes over. It is one value with a start (Serve) and an orderly end
// (Shutdown).
type Server struct {
	hub  *poll.Hub
	api  *API
	http *http.Server
	ln   net.Listener
	h1   *h1.Listener // nil with TLS
	tls  bool
}

// NewServer returns a server of hub's API on ln with cfg. With tlsConfig
// (nil: plain HTTP) it serves HTTPS with HTTP/2, and every request goes
// through net/http; without, polls park without a goroutine and the
// requests that follow them are served on the raw path.
func NewServer(hub *poll.Hub, ln net.Listener, cfg Config, tlsConfig *tls.Config) *Server {
	t := cfg.Timeouts
	s := &Server{hub: hub, ln: ln, tls: tlsConfig != nil}
	if tlsConfig == nil {
		s.h1 = h1.NewListener(ln, t, 0)
		s.h1.Draining = hub.Closing
		t = s.h1.Timeouts()
		s.ln = s.h1
	} else {
		t = t.WithDefaults()
	}
	s.api = newAPI(hub, cfg, s.h1)
	log := s.api.log
	if s.h1 != nil {
		s.h1.Handler = s.api
		s.h1.Logger = log
	}
	s.http = &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		// net/http's write deadline covers a whole request, a poll held in
		// its handler (HTTP/2, TLS) too; each answer then sets its own
		// (writePieces).
		WriteTimeout:   s.api.cfg.MaxPollTimeout + t.Read + t.Write,
		IdleTimeout:    t.Idle,
		MaxHeaderBytes: serverHeaderBytes * s.api.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		TLSConfig:      tlsConfig,
	}
	return s
}

// API returns the server's API.
func (s *Server) API() *API { return s.api }

// Conns returns the counts of the connections the server has taken over
// (none with TLS).
func (s *Server) Conns() h1.Stats {
	if s.h1 == nil {
		return h1.Stats{}
	}
	return s.h1.Stats()
}

// Addr returns the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown (it then returns nil) or a failure to
// accept.
func (s *Server) Serve() error {
	var err error
	if s.tls {
		err = s.http.ServeTLS(s.ln, "", "")
	} else {
		err = s.http.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown ends serving in order: the hub closes (every parked poll is
// answered 204 at once, later requests get 503, /healthz says draining),
// the answers owed on taken-over connections go out (or ctx ends), and the
// HTTP server shuts down, closing idle connections and waiting for
// requests in flight until ctx ends, then closing the rest. It returns
// ctx's error if it had to cut anything short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.hub.Close()
	var err error
	if s.h1 != nil {
		if werr := s.h1.WaitHeld(ctx); werr != nil {
			s.api.log.Warn("answers on taken-over connections not all written before the deadline", "err", werr)
			err = werr
		}
	}
	if serr := s.http.Shutdown(ctx); serr != nil {
		s.api.log.Warn("shutdown deadline passed; closing connections", "err", serr)
		s.http.Close()
		err = serr
	}
	return err
}

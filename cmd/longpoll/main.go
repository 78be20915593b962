// Command longpoll runs the longpoll HTTP long-polling push server.
//
// It reads its configuration from flags and LONGPOLL_* variables (see
// --help), serves API.md on --addr, runs the cleanup and heartbeat jobs,
// and on SIGTERM or SIGINT stops accepting, answers every parked poll 204
// at once, and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/jobs"
	"github.com/longpoll/longpoll/metrics"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/public"
)

// shutdownGrace bounds how long shutdown waits for requests in flight.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run starts the server and blocks until ctx ends (a signal) or serving
// fails. It returns the process exit code: 0 after a clean shutdown, 2 for
// bad configuration, 1 for a failure to serve.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "longpoll: configuration: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stdout)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("server failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve wires the hub, the HTTP edge and the jobs, and runs them until ctx
// ends. Shutdown order: stop the jobs, close the hub (parked polls answer
// 204 at once), then shut the HTTP server down with a deadline.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	var hub *poll.Hub
	m := metrics.New(metrics.Sources{Stats: func() poll.Stats { return hub.Stats() }})
	hub = poll.NewHub(poll.Config{
		MaxMailbox: cfg.MaxMailbox,
		OfflineTTL: cfg.OfflineTTL,
		SessionTTL: cfg.SessionTTL,
		Logger:     log,
		Observer:   m,
	})
	e := api.New(hub, api.Config{
		PollTimeout:    cfg.PollTimeout,
		MaxPollTimeout: cfg.MaxPollTimeout,
		PublishKeys:    cfg.PublishKeys,
		Static:         public.FS,
		Polls:          m,
		Metrics:        m.Handler(),
		Logger:         log,
	})
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.MaxPollTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(hub.Close)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	sched, err := jobs.Start(hub, jobs.Config{
		CleanupInterval:   cfg.CleanupInterval,
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            log,
	})
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("longpoll listening", "addr", ln.Addr().String(), "pollTimeout", cfg.PollTimeout,
		"sessionTTL", cfg.SessionTTL, "heartbeat", cfg.HeartbeatInterval, "publishKeys", len(cfg.PublishKeys))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-served:
	}
	if err := sched.Stop(); err != nil {
		log.Warn("stopping jobs", "err", err)
	}
	hub.Close()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown deadline passed; closing connections", "err", err)
		srv.Close()
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	log.Info("stopped")
	return nil
}

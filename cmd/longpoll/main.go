// Command longpoll runs the longpoll HTTP long-polling push server.
//
// It reads its configuration from flags and LONGPOLL_* variables (see
// --help), serves API.md on --addr, runs the cleanup and heartbeat jobs,
// and on SIGTERM or SIGINT stops accepting, answers every parked poll 204
// at once, and exits 0.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/diskstore"
	"github.com/longpoll/longpoll/docs"
	"github.com/longpoll/longpoll/internal/cli"
	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/jobs"
	"github.com/longpoll/longpoll/metrics"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/public"
	"github.com/longpoll/longpoll/redisstore"
	"github.com/longpoll/longpoll/wire"
)

// shutdownGrace bounds how long shutdown waits for requests in flight.
const shutdownGrace = 5 * time.Second

// defaultGCPercent replaces Go's default GOGC of 100: a parked poll holds
// no goroutine and no buffers (api/park.go), so the heap is small and
// letting it grow further between collections buys CPU for requests
// (BENCHMARKS.md). GOGC in the environment wins.
const defaultGCPercent = 400

// minDiskProcs is the fewest Go processors (GOMAXPROCS) the server runs
// with a data directory whose log is synced with the blocking system call
// (no io_uring: diskstore.Store.LogSync): each sync then blocks an OS
// thread in fdatasync, and with a single processor the scheduler takes up
// to milliseconds to notice and run everything else meanwhile
// (BENCHMARKS.md: a third of the throughput on one CPU). Through io_uring
// no thread waits, and one processor per CPU is fastest. GOMAXPROCS in
// the environment wins.
const minDiskProcs = 2

func main() {
	if len(os.Args) > 1 && cli.Handles(os.Args[1]) { // sub, push, presence, stats, help, --version
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
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
	var certs *certReloader
	if cfg.TLSCert != "" {
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			fmt.Fprintf(stderr, "longpoll: configuration: %v\n", err)
			return 2
		}
	}
	var verifier *auth.Verifier
	if len(cfg.ConnectSecrets) > 0 {
		if verifier, err = auth.NewVerifier(auth.Config{Secrets: cfg.ConnectSecrets}); err != nil {
			fmt.Fprintf(stderr, "longpoll: configuration: --connect-secret: %v\n", err)
			return 2
		}
	}
	if err := serve(ctx, cfg, log, certs, verifier); err != nil {
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
// ends; certs (nil: plain HTTP) serves HTTPS with HTTP/2, verifier (nil:
// open) authenticates connects. On the way out the jobs stop first, then
// the server shuts down in its own order (api.Server.Shutdown) within
// shutdownGrace.
func serve(ctx context.Context, cfg config, log *slog.Logger, certs *certReloader, verifier *auth.Verifier) error {
	var hub *poll.Hub
	var srv *api.Server
	var disk *diskstore.Store
	src := metrics.Sources{
		Stats: func() poll.Stats { return hub.Stats() },
		Edge: func() metrics.EdgeStats {
			st := srv.Conns()
			return metrics.EdgeStats{Unsent: st.Unsent, Dropped: st.Dropped}
		},
	}
	if cfg.DataDir != "" {
		src.DiskBytes = func() uint64 { return disk.DiskBytes() }
		src.WriteErrors = func() int { return disk.WriteErrors() }
	}
	m := metrics.New(src)
	hcfg := poll.Config{
		MaxMailbox:     cfg.MaxMailbox,
		OfflineTTL:     cfg.OfflineTTL,
		SessionTTL:     cfg.SessionTTL,
		MaxSessions:    cfg.MaxSessions,
		MaxStoredBytes: maxStored(cfg.MaxStoredBytes),
		Logger:         log,
		Observer:       m,
		Render:         wire.Render,
	}
	if cfg.DataDir != "" {
		var err error
		disk, err = diskstore.Open(cfg.DataDir, hcfg.StoreConfig(), diskstore.Options{
			SyncInterval: cfg.FsyncInterval, Logger: log, OnCommit: m.StorageCommitted})
		if err != nil {
			return err
		}
		if disk.LogSync() != "io_uring" && os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minDiskProcs {
			runtime.GOMAXPROCS(minDiskProcs)
		}
		defer func() {
			if err := disk.Close(); err != nil {
				log.Error("closing the data directory", "err", err)
			}
		}()
		l := disk.Loaded()
		log.Info("data directory opened", "dir", disk.Dir(), "fsync", fsyncFlag{&cfg.FsyncInterval}.String(), "logSync", disk.LogSync(), "sessions", l.Sessions,
			"messages", l.Messages, "offlineMessages", l.OfflineMessages, "idempotencyIds", l.IDs, "took", l.Took.Round(time.Millisecond))
		hcfg.Store = disk
	}
	var red *redisstore.Store
	if cfg.RedisURL != "" || len(cfg.RedisCluster) > 0 {
		var err error
		red, err = redisstore.Open(redisstore.Options{URL: cfg.RedisURL, Cluster: cfg.RedisCluster, Prefix: cfg.RedisPrefix, Logger: log}, hcfg.StoreConfig())
		if err != nil {
			return err
		}
		defer red.Close()
		log.Info("state in redis", "url", redactURL(cfg.RedisURL), "cluster", cfg.RedisCluster, "prefix", cfg.RedisPrefix, "node", red.Node())
		hcfg.Store = red
	}
	hub = poll.NewHub(hcfg)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if certs != nil {
		tlsConfig = certs.tlsConfig()
	}
	srv = api.NewServer(hub, ln, api.Config{
		PollTimeout:    cfg.PollTimeout,
		MaxPollTimeout: cfg.MaxPollTimeout,
		PublishKeys:    cfg.PublishKeys,
		Auth:           verifier,
		CORSOrigins:    cfg.CORSOrigins,
		AllowNets:      cfg.AllowCIDRs,
		DenyNets:       cfg.DenyCIDRs,
		TrustedProxies: cfg.TrustProxies,
		ConnectLimit:   api.RateLimit{Rate: cfg.ConnectRate, Burst: cfg.ConnectBurst},
		SendLimit:      api.RateLimit{Rate: cfg.SendRate, Burst: cfg.SendBurst},
		MaxParkedPerIP: cfg.MaxParkedPerIP,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		Timeouts:       h1.Timeouts{ReadHeader: cfg.ReadHeaderTimeout, Write: cfg.WriteTimeout},
		Static:         public.FS,
		OpenAPI:        docs.OpenAPI,
		Polls:          m,
		Metrics:        m.Handler(),
		Logger:         log,
	}, tlsConfig)
	jcfg := jobs.Config{
		CleanupInterval:   cfg.CleanupInterval,
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            log,
	}
	if red != nil { // once per cluster: the node holding the lease runs them
		jcfg.Leader = red.Elector(2 * max(cfg.CleanupInterval, cfg.HeartbeatInterval))
	}
	sched, err := jobs.Start(hub, jcfg)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("longpoll listening", "addr", srv.Addr().String(), "tls", certs != nil, "pollTimeout", cfg.PollTimeout,
		"sessionTTL", cfg.SessionTTL, "heartbeat", cfg.HeartbeatInterval, "publishKeys", len(cfg.PublishKeys),
		"clientAuth", verifier != nil, "maxSessions", cfg.MaxSessions)
	warnInsecure(cfg, log)

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-served:
	}
	if err := sched.Stop(); err != nil {
		log.Warn("stopping jobs", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = srv.Shutdown(sctx) // logs what it cut short
	if serveErr != nil {
		return serveErr
	}
	log.Info("stopped")
	return nil
}

// maxStored is --max-stored-bytes as poll.Config takes it: 0 (no bound)
// is negative there.
func maxStored(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// minPublishKeyBytes is the publish key length below which the server
// warns at start (128 bits as 16 random bytes).
const minPublishKeyBytes = 16

// warnInsecure logs the configuration choices that are unsafe on a public
// address (README "Security").
func warnInsecure(cfg config, log *slog.Logger) {
	for _, k := range cfg.PublishKeys {
		if len(k) < minPublishKeyBytes {
			log.Warn("a --publish-key is shorter than 16 bytes; use a long random key", "length", len(k))
		}
	}
	switch {
	case len(cfg.PublishKeys) == 0:
		log.Info("no --publish-key: /push, /stats, /presence and /disconnect accept local clients only (loopback address and Host; behind a proxy on this host, set a key)")
	}
}

// redactURL is a Redis URL without its password, for the log.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

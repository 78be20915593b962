// Package jobs runs longpoll's periodic work on a gocron v2 scheduler: the
// cleanup job (expire idle sessions, drop expired offline messages) and the
// heartbeat job (a $heartbeat push to every online session). It only
// schedules: the work itself is the Cleanup and Heartbeat methods of the
// Hub interface, which tests call directly. It is the only package that
// imports gocron.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/longpoll/longpoll/poll"
)

// Hub is the work the jobs run; *poll.Hub implements it.
type Hub interface {
	// Cleanup ends sessions idle past their TTL and drops expired offline
	// messages.
	Cleanup(now time.Time) poll.CleanupResult
	// Heartbeat pushes a $heartbeat message to every online session and
	// returns how many got it.
	Heartbeat(now time.Time) int
}

// Config sets the intervals. CleanupInterval must be positive; a zero
// HeartbeatInterval turns the heartbeat off.
type Config struct {
	CleanupInterval   time.Duration
	HeartbeatInterval time.Duration
	// Logger receives a line per run at debug level; nil discards them.
	Logger *slog.Logger
	// Leader, when set, runs the jobs once for several schedulers (the
	// nodes of a cluster): before each run a scheduler asks it, and runs
	// only if it is the leader (nil: this one is).
	Leader Leader
}

// Leader says whether this scheduler is the one that runs the jobs
// (gocron's distributed elector).
type Leader interface {
	// IsLeader returns nil when this scheduler is the leader.
	IsLeader(ctx context.Context) error
}

// Scheduler runs the jobs until Stop.
type Scheduler struct {
	s gocron.Scheduler
}

// Start schedules the jobs of cfg over h and starts running them; the first
// run of each comes one interval after Start.
func Start(h Hub, cfg Config) (*Scheduler, error) {
	if cfg.CleanupInterval <= 0 {
		return nil, errors.New("jobs: cleanup interval must be positive")
	}
	if cfg.HeartbeatInterval < 0 {
		return nil, errors.New("jobs: heartbeat interval must not be negative")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var opts []gocron.SchedulerOption
	if cfg.Leader != nil {
		opts = append(opts, gocron.WithDistributedElector(cfg.Leader))
	}
	s, err := gocron.NewScheduler(opts...)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	add := func(name string, every time.Duration, run func()) error {
		_, err := s.NewJob(gocron.DurationJob(every), gocron.NewTask(run),
			gocron.WithName(name), gocron.WithSingletonMode(gocron.LimitModeReschedule))
		return err
	}
	err = add("cleanup", cfg.CleanupInterval, func() {
		res := h.Cleanup(time.Now())
		log.Debug("cleanup ran", "offlineExpired", res.OfflineExpired)
	})
	if err == nil && cfg.HeartbeatInterval > 0 {
		err = add("heartbeat", cfg.HeartbeatInterval, func() {
			n := h.Heartbeat(time.Now())
			log.Debug("heartbeat sent", "sessions", n)
		})
	}
	if err != nil {
		_ = s.Shutdown()
		return nil, fmt.Errorf("jobs: %w", err)
	}
	s.Start()
	return &Scheduler{s: s}, nil
}

// Stop stops the scheduler and waits for running jobs to finish; no
// goroutine of the scheduler is left behind.
func (s *Scheduler) Stop() error {
	return s.s.Shutdown()
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
)

// Defaults of the command-line configuration.
const (
	defaultAddr              = ":8080"
	defaultCleanupInterval   = 5 * time.Minute
	defaultHeartbeatInterval = 30 * time.Second
)

// config is the server's configuration, from flags and LONGPOLL_* variables
// (a flag given on the command line wins over its variable).
type config struct {
	Addr              string
	PollTimeout       time.Duration
	MaxPollTimeout    time.Duration
	SessionTTL        time.Duration
	CleanupInterval   time.Duration
	HeartbeatInterval time.Duration // 0: no heartbeat
	OfflineTTL        time.Duration
	MaxMailbox        int
	PublishKeys       []string
	LogLevel          slog.Level
	LogFormat         string // text or json
}

// listFlag is a flag that may be repeated; its variable form is
// comma-separated.
type listFlag struct{ vals *[]string }

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l listFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.vals = append(*l.vals, part)
		}
	}
	return nil
}

// envName is the environment variable of a flag: poll-timeout ->
// LONGPOLL_POLL_TIMEOUT.
func envName(flagName string) string {
	return "LONGPOLL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads args and the environment (through getenv). It returns
// flag.ErrHelp after printing usage for -h/--help.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("longpoll", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", defaultAddr, "listen address (host:port)")
	fs.DurationVar(&c.PollTimeout, "poll-timeout", api.DefaultPollTimeout, "hold of a poll that names no timeout")
	fs.DurationVar(&c.MaxPollTimeout, "max-poll-timeout", api.DefaultMaxPollTimeout, "longest hold a client may ask for")
	fs.DurationVar(&c.SessionTTL, "session-ttl", poll.DefaultSessionTTL, "a session that does not poll for this long expires")
	fs.DurationVar(&c.CleanupInterval, "cleanup-interval", defaultCleanupInterval, "how often expired sessions and offline messages are removed")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", defaultHeartbeatInterval, "how often a $heartbeat goes to every session (0 = off)")
	fs.DurationVar(&c.OfflineTTL, "offline-ttl", poll.DefaultOfflineTTL, "how long a message for an offline device or user waits, unless the push sets ttl")
	fs.IntVar(&c.MaxMailbox, "max-mailbox", poll.DefaultMaxMailbox, "most unacknowledged messages per session (and offline messages per device or user)")
	fs.Var(listFlag{&c.PublishKeys}, "publish-key", "bearer key for /push (repeat or comma-separate for rotation); unset: loopback clients only")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: longpoll [flags]\n\nAn HTTP long-polling push server. Every flag can also be set with its\nLONGPOLL_* environment variable (e.g. --poll-timeout as LONGPOLL_POLL_TIMEOUT);\na flag on the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	var fromEnv []string
	if len(c.PublishKeys) > 0 {
		fromEnv, c.PublishKeys = c.PublishKeys, nil
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if len(c.PublishKeys) == 0 {
		c.PublishKeys = fromEnv
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return c, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", *logLevel)
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %s", name, d))
		}
	}
	positive("poll-timeout", c.PollTimeout)
	positive("max-poll-timeout", c.MaxPollTimeout)
	positive("session-ttl", c.SessionTTL)
	positive("cleanup-interval", c.CleanupInterval)
	positive("offline-ttl", c.OfflineTTL)
	if c.HeartbeatInterval < 0 {
		errs = append(errs, fmt.Errorf("--heartbeat-interval must be 0 (off) or positive, got %s", c.HeartbeatInterval))
	}
	if c.PollTimeout > c.MaxPollTimeout {
		errs = append(errs, fmt.Errorf("--poll-timeout (%s) must not exceed --max-poll-timeout (%s)", c.PollTimeout, c.MaxPollTimeout))
	}
	if c.MaxMailbox < 1 {
		errs = append(errs, fmt.Errorf("--max-mailbox must be at least 1, got %d", c.MaxMailbox))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat))
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("--addr must not be empty"))
	}
	return errors.Join(errs...)
}

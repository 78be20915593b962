package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/poll"
)

// Defaults of the command-line configuration.
const (
	defaultAddr              = ":8080"
	defaultCleanupInterval   = 5 * time.Minute
	defaultHeartbeatInterval = 30 * time.Second
	defaultMaxSessions       = 100000
	defaultConnectBurst      = 10
	defaultSendBurst         = 20
	defaultReadHeaderTimeout = 10 * time.Second
	defaultWriteTimeout      = 10 * time.Second
	minHeaderBytes           = 1 << 10
	minHeartbeatInterval     = time.Second // a heartbeat is a message to every session
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

	// Security (README "Security").
	ConnectSecrets    []string       // HS256 secrets of connect tokens; none: /connect is open
	TLSCert, TLSKey   string         // PEM files; both or neither
	CORSOrigins       []string       // origins (or "*") allowed to call the client endpoints
	AllowCIDRs        []netip.Prefix // client endpoints only from these (empty: anywhere)
	DenyCIDRs         []netip.Prefix // client endpoints never from these
	TrustProxies      []netip.Prefix // proxies whose X-Forwarded-For is believed
	ConnectRate       float64        // per client address per second; 0: off
	ConnectBurst      int
	SendRate          float64 // per client address per second; 0: off
	SendBurst         int
	MaxSessions       int // 0: no cap
	MaxParkedPerIP    int // 0: no cap
	MaxHeaderBytes    int
	ReadHeaderTimeout time.Duration
	WriteTimeout      time.Duration // a client that does not read its answer is dropped after it
	MaxStoredBytes    int64         // messages and idempotency ids together; 0: no bound

	// Persistence (README "Persistence").
	DataDir       string        // "": everything in memory
	FsyncInterval time.Duration // 0: --fsync always

	// A cluster on Redis (README "Running a cluster").
	RedisURL     string   // redis:// or rediss://; "": not on Redis
	RedisCluster []string // a Redis Cluster's node addresses
	RedisPrefix  string   // the hash tag of the deployment's keys
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

// cidrFlag is a repeatable, comma-separated list of networks ("10.0.0.0/8")
// or single addresses ("192.0.2.7", "2001:db8::1").
type cidrFlag struct{ vals *[]netip.Prefix }

func (l cidrFlag) String() string {
	if l.vals == nil {
		return ""
	}
	parts := make([]string, len(*l.vals))
	for i, p := range *l.vals {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (l cidrFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := parseCIDR(part)
		if err != nil {
			return err
		}
		*l.vals = append(*l.vals, p)
	}
	return nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a network (CIDR such as 10.0.0.0/8)", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a network", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validAddr checks a listen address: [host]:port, the port a number from
// 0 to 65535 or a service name.
func validAddr(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. :8080 or 127.0.0.1:8080)", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("%q has no valid port", addr)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has no valid host", addr)
	}
	return nil
}

// byteSize is a flag of a number of bytes: a whole number, optionally
// followed by a unit (B, KB, MB, GB, KiB, MiB, GiB; case-insensitive).
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil {
		return ""
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteSize) Set(v string) error {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	mult, ok := map[string]int64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}[strings.ToLower(unit)]
	if err != nil || !ok || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size (a number of bytes, e.g. 1073741824, 512MiB or 1GiB)", v)
	}
	*b.n = n * mult
	return nil
}

// fsyncFlag is --fsync: "always" (0) or an interval such as 100ms.
type fsyncFlag struct{ d *time.Duration }

func (f fsyncFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "always"
	}
	return f.d.String()
}

func (f fsyncFlag) Set(v string) error {
	if v = strings.TrimSpace(v); v == "always" {
		*f.d = 0
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is neither always nor a positive interval such as 100ms", v)
	}
	*f.d = d
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
	fs.Var(listFlag{&c.PublishKeys}, "publish-key", "bearer key for /push, /stats, /presence and /disconnect (repeat or comma-separate for rotation); unset: loopback clients only")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.Var(listFlag{&c.ConnectSecrets}, "connect-secret", fmt.Sprintf("HS256 secret (at least %d bytes) of the JWT that POST /connect then requires (repeat for rotation); unset: /connect is open", auth.MinSecretBytes))
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS with HTTP/2 (needs --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.Var(listFlag{&c.CORSOrigins}, "cors-origins", "origins (scheme://host[:port]) that may call the client endpoints from a browser, or *; unset: none")
	fs.Var(cidrFlag{&c.AllowCIDRs}, "allow-cidr", "networks that may use the client endpoints (repeatable); unset: any")
	fs.Var(cidrFlag{&c.DenyCIDRs}, "deny-cidr", "networks that may not use the client endpoints (repeatable; wins over --allow-cidr)")
	fs.Var(cidrFlag{&c.TrustProxies}, "trust-proxy", "reverse proxies whose X-Forwarded-For names the client address (repeatable); unset: never trust X-Forwarded-For")
	fs.Float64Var(&c.ConnectRate, "connect-rate", 0, "POST /connect requests per second per client address (IPv6: per /64); 0 = no limit")
	fs.IntVar(&c.ConnectBurst, "connect-burst", defaultConnectBurst, "burst of --connect-rate")
	fs.Float64Var(&c.SendRate, "send-rate", 0, "POST /send requests per second per client address (IPv6: per /64); 0 = no limit")
	fs.IntVar(&c.SendBurst, "send-burst", defaultSendBurst, "burst of --send-rate")
	fs.IntVar(&c.MaxSessions, "max-sessions", defaultMaxSessions, "most online sessions; a connect beyond gets 503 (0 = no cap)")
	fs.IntVar(&c.MaxParkedPerIP, "max-parked-per-ip", 0, "most polls one client address (IPv6: /64) may have open at once (0 = no cap)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", api.DefaultMaxHeaderBytes, "largest request line plus headers; beyond: 431")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "time a client has to send its request headers")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", defaultWriteTimeout, "time a client has to take an answer; one that does not read is dropped (its messages wait)")
	c.MaxStoredBytes = poll.DefaultMaxStoredBytes
	fs.Var(byteSize{&c.MaxStoredBytes}, "max-stored-bytes", "most bytes of messages (mailboxes, offline store) and idempotency ids kept, e.g. 512MiB; beyond: pushes get 503 (0 = no bound)")
	fs.StringVar(&c.DataDir, "data-dir", "", "keep sessions and messages in this directory, so that they survive a restart or a crash (created if missing); unset: in memory only")
	fs.Var(fsyncFlag{&c.FsyncInterval}, "fsync", "with --data-dir: always (a 202 means synced to disk) or an interval such as 100ms (a 202 means written; a power loss can lose the last interval)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "keep all state in this Redis (redis://[user:pass@]host:port/db, rediss:// for TLS), shared by every node that names it: any node serves any client")
	fs.Var(listFlag{&c.RedisCluster}, "redis-cluster", "keep all state in the Redis Cluster of these nodes (host:port, comma-separated or repeated)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "longpoll", "with --redis-url or --redis-cluster: the deployment's name; its keys are {name}:…, one cluster slot")
	fs.Usage = func() {
		fmt.Fprint(out, `Usage: longpoll [flags]
       longpoll COMMAND [flags]

An HTTP long-polling push server. Every flag can also be set with its
LONGPOLL_* environment variable (e.g. --poll-timeout as LONGPOLL_POLL_TIMEOUT);
a flag on the command line wins.

Commands (clients of a running server; longpoll COMMAND --help for their flags):
  sub        connect as a device and print its messages, one JSON line each
  push       publish a message, or a batch with --batch
  presence   list the online sessions of a user or a device
  stats      print the server's counters
  backup     copy a --data-dir (while its server runs) to a tar file
  help       list the commands
  --version  print the version and exit

Flags:
`)
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
	// A list given on the command line replaces its variable's list.
	stringLists := []*[]string{&c.PublishKeys, &c.ConnectSecrets, &c.CORSOrigins, &c.RedisCluster}
	cidrLists := []*[]netip.Prefix{&c.AllowCIDRs, &c.DenyCIDRs, &c.TrustProxies}
	envStrings := make([][]string, len(stringLists))
	for i, l := range stringLists {
		envStrings[i], *l = *l, nil
	}
	envCIDRs := make([][]netip.Prefix, len(cidrLists))
	for i, l := range cidrLists {
		envCIDRs[i], *l = *l, nil
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for i, l := range stringLists {
		if len(*l) == 0 {
			*l = envStrings[i]
		}
	}
	for i, l := range cidrLists {
		if len(*l) == 0 {
			*l = envCIDRs[i]
		}
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
	if c.HeartbeatInterval != 0 && c.HeartbeatInterval < minHeartbeatInterval {
		errs = append(errs, fmt.Errorf("--heartbeat-interval must be 0 (off) or at least %s, got %s", minHeartbeatInterval, c.HeartbeatInterval))
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
	stores := 0
	for _, on := range []bool{c.DataDir != "", c.RedisURL != "", len(c.RedisCluster) > 0} {
		if on {
			stores++
		}
	}
	if stores > 1 {
		errs = append(errs, errors.New("--data-dir, --redis-url and --redis-cluster each choose where state lives: give at most one"))
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, "{}: \t\n") {
		errs = append(errs, fmt.Errorf("--redis-prefix must be a non-empty name without braces, colons or spaces, got %q", c.RedisPrefix))
	}
	if err := validAddr(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr: %v", err))
	}
	errs = append(errs, c.validateSecurity()...)
	return errors.Join(errs...)
}

func (c config) validateSecurity() []error {
	var errs []error
	for _, s := range c.ConnectSecrets {
		if len(s) < auth.MinSecretBytes {
			errs = append(errs, fmt.Errorf("--connect-secret must be at least %d bytes (256 bits, RFC 7518) for HS256, got %d", auth.MinSecretBytes, len(s)))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both or neither"))
	}
	for _, o := range c.CORSOrigins {
		if err := api.ValidOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("--cors-origins: %v", err))
		}
	}
	rate := func(name string, r float64, burstName string, burst int) {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			errs = append(errs, fmt.Errorf("--%s must be 0 (off) or a positive number of requests per second, got %v", name, r))
		}
		if burst < 1 {
			errs = append(errs, fmt.Errorf("--%s must be at least 1, got %d", burstName, burst))
		}
	}
	rate("connect-rate", c.ConnectRate, "connect-burst", c.ConnectBurst)
	rate("send-rate", c.SendRate, "send-burst", c.SendBurst)
	if c.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("--max-sessions must be 0 (no cap) or positive, got %d", c.MaxSessions))
	}
	if c.MaxParkedPerIP < 0 {
		errs = append(errs, fmt.Errorf("--max-parked-per-ip must be 0 (no cap) or positive, got %d", c.MaxParkedPerIP))
	}
	if c.MaxHeaderBytes < minHeaderBytes {
		errs = append(errs, fmt.Errorf("--max-header-bytes must be at least %d, got %d", minHeaderBytes, c.MaxHeaderBytes))
	}
	if c.ReadHeaderTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--read-header-timeout must be positive, got %s", c.ReadHeaderTimeout))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--write-timeout must be positive, got %s", c.WriteTimeout))
	}
	return errs
}

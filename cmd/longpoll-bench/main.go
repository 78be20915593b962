// Command longpoll-bench drives a running long-polling server over loopback
// and prints one summary line per scenario (JSON lines with --json).
//
// It speaks three protocols (--target): longpoll (API.md), Nchan (long-poll
// subscriber /sub/<id>, publisher /pub/<id>) and jcuga/golongpoll (the peer
// server in bench/peers/golongpoll), so bench/compare.sh can run the same
// scenarios against all three in one invocation. Every scenario is bounded in
// count and time and only talks to 127.0.0.0/8 or ::1.
//
//	longpoll-bench --target longpoll --url http://127.0.0.1:8080 --scenario all
//	longpoll-bench --url http://127.0.0.1:8081,http://127.0.0.1:8082 --scenario latency,throughput   # two nodes of a cluster
//	longpoll-bench table results.jsonl   # side-by-side markdown table
//	longpoll-bench ab before.jsonl after.jsonl   # one system, two builds
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// config holds the flags.
type config struct {
	target, url, scenarios, label string
	urls                          []string // --url split: the nodes (one but for a longpoll cluster)
	key                           string
	serverPIDs, sourceIPs         string

	parkN, fanoutN, rounds      int
	sessions, publishers, batch int
	singlePublishers            int
	connects, connectConc       int
	fillSessions, fillMessages  int
	concurrency                 int
	rate                        float64
	slowDelay                   time.Duration
	connectReuse                bool
	duration, latencyDuration   time.Duration
	hold, parkHold              int
	setupTimeout, settle, drain time.Duration
	maxTime                     time.Duration
	json, cleanup, quiet        bool
	jsonOut                     string
	cpuProfile                  string
}

var allScenarios = []string{"park", "fanout", "throughput", "batch", "single-session", "slow-consumer", "latency", "connect"}

// extraScenarios run only when named: they leave state behind (fill, for
// a restart measurement of a server with --data-dir).
var extraScenarios = []string{"fill"}

// toolGCPercent replaces Go's default GOGC of 100 in the load tool: it
// shares the cores with the server it measures, and its garbage (a body and
// a few slices per answer) is short-lived, so collecting less often leaves
// more CPU to every server alike (batch: 2-5 % more deliveries/s for
// longpoll). GOGC in the environment wins.
const toolGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(toolGCPercent)
	}
	if len(os.Args) > 1 && os.Args[1] == "table" {
		os.Exit(tableMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "ab" {
		os.Exit(abMain(os.Args[2:]))
	}
	os.Exit(benchMain(os.Args[1:]))
}

func benchMain(args []string) int {
	var cfg config
	fs := flag.NewFlagSet("longpoll-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.target, "target", "longpoll", "protocol of the server: longpoll, nchan or golongpoll")
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080", "server base URL (loopback only). --target longpoll also takes a comma-separated list:\n"+
		"the base URLs of several nodes of one cluster (which share their state in Redis). With n URLs, session i connects\n"+
		"and polls on URL i%n and pushes to it go to URL (i+1)%n, always another node; a broadcast (fanout) goes to URL 1%n;\n"+
		"parked polls (/stats) are summed over the nodes. Results name the URLs in params.urls")
	fs.StringVar(&cfg.key, "key", os.Getenv("LONGPOLL_PUBLISH_KEY"), "longpoll: publish key, sent as Authorization: Bearer on pushes and /stats (LONGPOLL_PUBLISH_KEY; none: the server must take loopback publishers)")
	fs.StringVar(&cfg.scenarios, "scenario", "all", "comma-separated: "+strings.Join(allScenarios, ", ")+" or all; or fill (leaves its sessions and messages)")
	fs.StringVar(&cfg.label, "label", "", "free text copied into each result (e.g. the run number)")
	fs.StringVar(&cfg.serverPIDs, "server-pid", "", "server process ids (comma-separated; nginx: master and worker) for RSS from /proc/PID/status")
	fs.StringVar(&cfg.sourceIPs, "source-ips", "", "spread client source addresses, e.g. 127.0.0.2-127.0.0.20")
	fs.IntVar(&cfg.parkN, "n", 10000, "park: parked polls")
	fs.IntVar(&cfg.fanoutN, "fanout-n", 10000, "fanout: parked subscribers")
	fs.IntVar(&cfg.rounds, "rounds", 5, "fanout: broadcast rounds (subscribers re-poll between rounds)")
	fs.IntVar(&cfg.sessions, "sessions", 1000, "throughput, batch, latency: sessions re-polling with their cursor")
	fs.IntVar(&cfg.publishers, "publishers", 32, "throughput, batch, latency: concurrent publishers")
	fs.IntVar(&cfg.singlePublishers, "single-publishers", 32, "single-session, slow-consumer: publishers pushing to one session")
	fs.IntVar(&cfg.batch, "batch-size", 100, "batch: messages per push request")
	fs.DurationVar(&cfg.slowDelay, "slow-delay", 20*time.Millisecond, "slow-consumer: pause of the one session between polls")
	fs.Float64Var(&cfg.rate, "rate", 1000, "latency: pushes per second (open loop)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "throughput, batch, single-session: publishing time")
	fs.DurationVar(&cfg.latencyDuration, "latency-duration", 0, "latency: publishing time (default --duration)")
	fs.IntVar(&cfg.connects, "connects", 10000, "connect: connects in the storm, each on a fresh TCP connection")
	fs.IntVar(&cfg.fillSessions, "fill-sessions", 10000, "fill: sessions connected (and left online)")
	fs.IntVar(&cfg.fillMessages, "fill-messages", 100000, "fill: messages pushed to them round robin in batches of --batch-size, left unacknowledged")
	fs.IntVar(&cfg.connectConc, "connect-concurrency", 64, "connect: concurrent clients")
	fs.BoolVar(&cfg.connectReuse, "connect-keepalive", false, "connect: re-use connections instead of a fresh TCP connection per connect")
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "concurrent requests while setting up sessions")
	fs.IntVar(&cfg.hold, "hold", 30, "poll timeout in seconds asked of the server (longpoll, golongpoll)")
	fs.IntVar(&cfg.parkHold, "park-hold", 110, "park: poll timeout in seconds (must outlast the measurement)")
	fs.DurationVar(&cfg.setupTimeout, "setup-timeout", 90*time.Second, "bound on setting up or parking subscribers")
	fs.DurationVar(&cfg.settle, "settle", 3*time.Second, "park: wait after all polls are parked before reading RSS")
	fs.DurationVar(&cfg.drain, "drain", 15*time.Second, "bound on waiting for outstanding deliveries")
	fs.DurationVar(&cfg.maxTime, "max-time", 15*time.Minute, "hard bound on the whole invocation")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object per scenario instead of text")
	fs.StringVar(&cfg.jsonOut, "json-out", "", "also append each result as a JSON line to this file")
	fs.BoolVar(&cfg.cleanup, "cleanup", true, "release sessions/channels after each scenario")
	fs.BoolVar(&cfg.quiet, "q", false, "no progress on stderr")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write the load tool's own CPU profile here")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: longpoll-bench [flags]\n       longpoll-bench table FILE.jsonl...\n       longpoll-bench ab BEFORE.jsonl AFTER.jsonl\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	if cfg.latencyDuration == 0 {
		cfg.latencyDuration = cfg.duration
	}
	var err error
	if cfg.urls, err = parseURLs(cfg.url, cfg.target); err != nil {
		fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
		return 2
	}
	ips, err := parseIPRange(cfg.sourceIPs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
		return 2
	}
	pids, err := parsePIDs(cfg.serverPIDs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
		return 2
	}
	scen, err := parseScenarios(cfg.scenarios)
	if err != nil {
		fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
		return 2
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	run := hex.EncodeToString(rb[:])
	t, err := newTarget(cfg.target, run, cfg.hold, time.Now().UnixMilli(), cfg.key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.maxTime)
	defer cancel()

	// A request is bounded by the longest hold it may ask for plus a margin.
	dialer := &sourceDialer{ips: ips}
	cfs := make([]*clientFactory, len(cfg.urls))
	for i, u := range cfg.urls {
		if cfs[i], err = newClientFactory(u, dialer, time.Duration(max(cfg.hold, cfg.parkHold)+30)*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
			return 2
		}
	}
	e := &env{t: t, cfg: cfg, cfs: cfs, pids: pids, run: run,
		log: func(format string, a ...any) {
			if !cfg.quiet {
				fmt.Fprintf(os.Stderr, "[%s %s] %s\n", time.Now().Format("15:04:05"), cfg.target, fmt.Sprintf(format, a...))
			}
		}}
	if len(cfg.urls) > 1 {
		e.log("%d nodes: sessions poll on %s by index modulo %d; pushes go to the next node", len(cfg.urls), strings.Join(cfg.urls, ", "), len(cfg.urls))
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	var jsonOut *os.File
	if cfg.jsonOut != "" {
		jsonOut, err = os.OpenFile(cfg.jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
			return 2
		}
		defer jsonOut.Close()
	}
	code := 0
	for i, s := range scen {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "longpoll-bench: stopped:", context.Cause(ctx))
			return 1
		}
		e.log("scenario %s", s)
		// A fresh namespace per scenario: channels, categories and devices
		// of an earlier scenario (which a server may still buffer) never
		// mix into this one.
		e.run = fmt.Sprintf("%s%d", run, i)
		e.t.setRun(e.run)
		r := runScenario(ctx, e, s)
		b, _ := json.Marshal(r)
		if jsonOut != nil {
			if _, err := fmt.Fprintln(jsonOut, string(b)); err != nil {
				fmt.Fprintln(os.Stderr, "longpoll-bench:", err)
				code = 1
			}
		}
		if cfg.json {
			fmt.Println(string(b))
		} else {
			fmt.Println(r.text())
		}
		if failedRun(r) {
			code = 1
		}
	}
	return code
}

// failedRun reports whether a scenario's result should fail the
// invocation (exit 1): it recorded errors, or a push failed (push_errors:
// a transport error or a status other than 202 or 429, which a batch item
// can have without an error of the request).
func failedRun(r *result) bool {
	return len(r.Errors) > 0 || r.Metrics["push_errors"] > 0
}

func runScenario(ctx context.Context, e *env, s string) *result {
	c := e.cfg
	switch s {
	case "park":
		return runPark(ctx, e)
	case "fanout":
		return runFanout(ctx, e)
	case "throughput":
		return runLoad(ctx, e, loadSpec{scenario: s, sessions: c.sessions, publishers: c.publishers, duration: c.duration})
	case "batch":
		return runLoad(ctx, e, loadSpec{scenario: s, sessions: c.sessions, publishers: c.publishers, duration: c.duration, batch: c.batch})
	case "single-session":
		return runLoad(ctx, e, loadSpec{scenario: s, sessions: 1, publishers: c.singlePublishers, duration: c.duration})
	case "slow-consumer":
		return runLoad(ctx, e, loadSpec{scenario: s, sessions: 1, publishers: c.singlePublishers, duration: c.duration, pollDelay: c.slowDelay})
	case "latency":
		return runLoad(ctx, e, loadSpec{scenario: s, sessions: c.sessions, publishers: c.publishers, duration: c.latencyDuration, rate: c.rate})
	case "connect":
		return runConnect(ctx, e)
	case "fill":
		return runFill(ctx, e)
	}
	panic("unreachable: scenario " + s)
}

func parseScenarios(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "all" {
			out = append(out, allScenarios...)
			continue
		}
		known := false
		for _, a := range append(allScenarios, extraScenarios...) {
			known = known || a == f
		}
		if !known {
			return nil, fmt.Errorf("unknown scenario %q (%s, all; or %s)", f, strings.Join(allScenarios, ", "), strings.Join(extraScenarios, ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// checkLoopback refuses any server outside this machine's loopback.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http") {
		return fmt.Errorf("--url %q: want http://127.x.y.z:PORT", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--url %q: only loopback addresses (127.0.0.0/8, ::1) may be targeted", raw)
	}
	return nil
}

// text renders a result as one line (plus indented error lines).
func (r *result) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-14s", r.Target, r.Scenario)
	if r.Skipped != "" {
		fmt.Fprintf(&b, " skipped: %s", r.Skipped)
	}
	for _, k := range r.order {
		fmt.Fprintf(&b, " %s=%v", k, r.Metrics[k])
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "\n    ! %s", e)
	}
	return b.String()
}

// parseExit is the exit code of a flag parse error: 0 when the usage was
// asked for (-h, --help), 2 otherwise.
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

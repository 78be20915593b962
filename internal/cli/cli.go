// Package cli is the command line of the longpoll binary besides serving:
// `longpoll sub`, `push`, `presence`, `stats`, `help` and `--version`, built
// on the client package, and `longpoll backup`, built on diskstore.
//
// Every command prints JSON on standard output (one message a line for
// sub) and its complaints on standard error, and exits with a code a
// script can rely on:
//
//	0  done (sub: interrupted by SIGINT or SIGTERM after a clean disconnect)
//	1  the server refused (the line on standard error names the HTTP status,
//	   the API's error code and its message), could not be reached (sub
//	   does not give up: it retries with backoff until interrupted), or
//	   ended the session (sub: 409 superseded, 410 session_closed); push
//	   --batch also exits 1 when any item was refused, after printing the
//	   results
//	2  bad usage: an unknown flag, a missing or extra argument, DATA that
//	   is not JSON; the usage is printed and nothing is sent
package cli

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/diskstore"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// DefaultURL is the server a command talks to without --url or LONGPOLL_URL.
const DefaultURL = "http://127.0.0.1:8080"

// Handles reports whether arg, the binary's first argument, is one of
// this package's commands (else the binary serves).
func Handles(arg string) bool {
	switch arg {
	case "sub", "push", "presence", "stats", "backup", "help", "--version", "-version":
		return true
	}
	return false
}

// Main runs the command in args (args[0] is the command: "sub", "push",
// "presence", "stats", "help" or "--version") and returns the exit code. SIGINT and
// SIGTERM end `sub` cleanly. getenv reads LONGPOLL_URL,
// LONGPOLL_PUBLISH_KEY and LONGPOLL_TOKEN.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, stdin, stdout, stderr, getenv)
}

// Run is Main with ctx in place of the signals: its end interrupts `sub`.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, cmd: args[0]}
	switch args[0] {
	case "--version", "-version":
		fmt.Fprintln(stdout, Version())
		return ExitOK
	case "help":
		// help: the usage on standard output; help CMD: CMD's flags.
		if len(args) > 1 && slices.Contains([]string{"sub", "push", "presence", "stats", "backup"}, args[1]) {
			return Run(ctx, []string{args[1], "--help"}, stdin, stdout, stderr, getenv)
		}
		fmt.Fprint(stdout, usage)
		return ExitOK
	case "sub":
		return e.sub(ctx, args[1:])
	case "push":
		return e.push(ctx, args[1:])
	case "presence":
		return e.presence(ctx, args[1:])
	case "stats":
		return e.stats(ctx, args[1:])
	case "backup":
		return e.backup(ctx, args[1:])
	}
	fmt.Fprintf(stderr, "longpoll: unknown command %q\n%s", args[0], usage)
	return ExitUsage
}

const usage = `Usage:
  longpoll [flags]                      serve (longpoll --help lists the flags)
  longpoll sub --device D [--user U] [--topic T]...
                                        receive: one JSON message a line until interrupted
  longpoll push [--session S | --device D | --user U | --topic T]
                [--label TOPIC] [--id ID] [--ttl 1h] DATA|-
  longpoll push --batch [target] [--label TOPIC] [--ttl 1h] ITEMS|-
                                        the flags fill in keys an item leaves out
  longpoll presence --user U | --device D
  longpoll stats
  longpoll backup --data-dir DIR --out FILE
                                        a consistent copy of a data directory (its
                                        server may run), as a tar: restore with
                                        tar -xf FILE -C EMPTY_DIR
  longpoll help [COMMAND]
  longpoll --version

Common flags: --url (LONGPOLL_URL, default ` + DefaultURL + `);
--key (LONGPOLL_PUBLISH_KEY) for push, presence and stats, the publish key.
Exit codes: 0 ok, 1 refused by the server or unreachable (sub keeps
retrying an unreachable server), 2 bad usage.
`

// env is one command's invocation.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	cmd            string
	url, key       string
}

// flags returns the command's flag set with --url.
func (e *env) flags(synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("longpoll "+e.cmd, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.url, "url", cmp.Or(e.getenv("LONGPOLL_URL"), DefaultURL), "server base URL (LONGPOLL_URL)")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: longpoll %s %s\n\nFlags:\n", e.cmd, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// publisherFlags returns the command's flag set with --url and --key, for
// the commands that need publisher access.
func (e *env) publisherFlags(synopsis string) *flag.FlagSet {
	fs := e.flags(synopsis)
	fs.StringVar(&e.key, "key", e.getenv("LONGPOLL_PUBLISH_KEY"), "publish key (LONGPOLL_PUBLISH_KEY)")
	return fs
}

// parse parses args; it returns the exit code when parsing ended the
// command (help: 0, an error: 2).
func (e *env) parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	return 0, true
}

// usageError prints msg and the command's usage: exit 2.
func (e *env) usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "longpoll %s: %s\n", e.cmd, fmt.Sprintf(format, a...))
	fs.Usage()
	return ExitUsage
}

// fail prints err: for a refusal, "longpoll CMD: STATUS CODE: MESSAGE".
func (e *env) fail(err error) int {
	var ae *client.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(e.stderr, "longpoll %s: %d %s: %s\n", e.cmd, ae.Status, ae.Code, ae.Message)
	} else {
		fmt.Fprintf(e.stderr, "longpoll %s: %s\n", e.cmd, strings.TrimPrefix(err.Error(), "longpoll: "))
	}
	return ExitError
}

// call makes the one request of a command with a client of --url and
// --key, bounded by requestTimeout; a refusal or failure exits 1.
func (e *env) call(ctx context.Context, fs *flag.FlagSet, f func(context.Context, *client.Client) error) int {
	c, err := e.client()
	if err != nil {
		return e.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := f(ctx, c); err != nil {
		return e.fail(err)
	}
	return ExitOK
}

func (e *env) client(opts ...client.Option) (*client.Client, error) {
	if e.key != "" {
		opts = append(opts, client.WithPublishKey(e.key))
	}
	return client.New(e.url, opts...)
}

// printJSON writes v as one line of JSON.
func (e *env) printJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(e.stderr, "longpoll %s: %v\n", e.cmd, err)
		return
	}
	fmt.Fprintf(e.stdout, "%s\n", b)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// requestTimeout bounds the one-shot commands.
const requestTimeout = 30 * time.Second

func (e *env) sub(ctx context.Context, args []string) int {
	fs := e.flags("--device D [--user U] [--topic T]... [--token JWT] [--heartbeats]")
	device := fs.String("device", "", "device id (required)")
	user := fs.String("user", "", "user id")
	var topics listFlag
	fs.Var(&topics, "topic", "topic to subscribe to (repeatable)")
	token := fs.String("token", e.getenv("LONGPOLL_TOKEN"), "connect token (JWT) for a server with --connect-secret (LONGPOLL_TOKEN)")
	heartbeats := fs.Bool("heartbeats", false, "print $heartbeat messages too")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if *device == "" {
		return e.usageError(fs, "--device is required")
	}
	if fs.NArg() > 0 {
		return e.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	opts := []client.Option{client.WithRetryHook(func(i client.RetryInfo) {
		if i.Reconnect {
			fmt.Fprintf(e.stderr, "longpoll sub: %s; connecting again in %v\n", strings.TrimPrefix(i.Err.Error(), "longpoll: "), i.Wait.Round(time.Millisecond))
			return
		}
		fmt.Fprintf(e.stderr, "longpoll sub: %s; retrying in %v\n", strings.TrimPrefix(i.Err.Error(), "longpoll: "), i.Wait.Round(time.Millisecond))
	})}
	if *token != "" {
		tok := *token
		opts = append(opts, client.WithToken(func(context.Context) (string, error) { return tok, nil }))
	}
	c, err := e.client(opts...)
	if err != nil {
		return e.usageError(fs, "%v", err)
	}
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: *device, UserID: *user, Topics: topics})
	if err != nil {
		if ctx.Err() != nil {
			return ExitOK
		}
		return e.fail(err)
	}
	s := dev.Session()
	fmt.Fprintf(e.stderr, "longpoll sub: connected as device %s (session %.8s…)\n", s.DeviceID, s.ID)
	out := bufio.NewWriter(e.stdout)
	err = dev.Run(ctx, func(_ context.Context, m client.Message) error {
		if m.Topic == "$heartbeat" && !*heartbeats {
			return nil
		}
		out.Write(m.Raw)
		out.WriteByte('\n')
		return out.Flush() // a line as soon as it arrives (and stop if stdout is gone)
	})
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	derr := dev.Disconnect(dctx) // acknowledges what was printed
	if err != nil && !errors.Is(err, context.Canceled) {
		return e.fail(err)
	}
	if derr != nil {
		return e.fail(derr)
	}
	return ExitOK
}

func (e *env) push(ctx context.Context, args []string) int {
	fs := e.publisherFlags("[--session S | --device D | --user U | --topic T] [--label TOPIC] [--id ID] [--ttl 1h] [--batch] DATA|-")
	var to client.Target
	fs.StringVar(&to.SessionID, "session", "", "target: a session id")
	fs.StringVar(&to.DeviceID, "device", "", "target: every session of a device (stored while it is offline)")
	fs.StringVar(&to.UserID, "user", "", "target: every session of a user (stored while offline)")
	fs.StringVar(&to.Topic, "topic", "", "target: every session subscribed to a topic")
	label := fs.String("label", "", "the message's topic label (default: the target topic)")
	id := fs.String("id", "", "idempotency id: the same id again is not delivered twice")
	ttl := fs.Duration("ttl", 0, "how long a copy for an offline device or user waits (default: the server's --offline-ttl)")
	batch := fs.Bool("batch", false, "DATA is a JSON array, or JSON lines, of push objects ({\"to\",\"topic\",\"data\",\"ttl\",\"id\"}); the target, --label and --ttl fill in the keys an item leaves out; its own values, null included, are sent as they are")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	targets := 0
	for _, v := range []string{to.SessionID, to.DeviceID, to.UserID, to.Topic} {
		if v != "" {
			targets++
		}
	}
	switch {
	case targets > 1:
		return e.usageError(fs, "give at most one of --session, --device, --user and --topic (none: a broadcast)")
	case fs.NArg() != 1:
		return e.usageError(fs, "want exactly one DATA argument (JSON, or - for standard input), got %d", fs.NArg())
	case *ttl < 0:
		return e.usageError(fs, "--ttl must be positive")
	case *batch && *id != "":
		return e.usageError(fs, "--id cannot be used with --batch: give each item its own \"id\"")
	}
	data := []byte(fs.Arg(0))
	if fs.Arg(0) == "-" {
		var err error
		if data, err = io.ReadAll(e.stdin); err != nil {
			return e.fail(fmt.Errorf("reading standard input: %w", err))
		}
	}
	if !*batch {
		data = bytes.TrimSpace(data)
		if !json.Valid(data) {
			return e.usageError(fs, "DATA is not JSON (a string needs quotes: '\"text\"')")
		}
		return e.call(ctx, fs, func(ctx context.Context, c *client.Client) error {
			res, err := c.Push(ctx, client.Push{To: to, Topic: *label, Data: json.RawMessage(data), TTL: *ttl, ID: *id})
			if err == nil {
				e.printJSON(res)
			}
			return err
		})
	}
	items, err := parseBatch(data, client.Push{To: to, Topic: *label, TTL: *ttl})
	if err != nil {
		return e.usageError(fs, "%v", err)
	}
	return e.call(ctx, fs, func(ctx context.Context, c *client.Client) error {
		res, err := c.PushBatchJSON(ctx, items)
		if err != nil {
			return err
		}
		e.printJSON(res)
		for i, r := range res {
			if r.Err != nil {
				return fmt.Errorf("item %d: %s: %s", i, r.Err.Code, r.Err.Message)
			}
		}
		return nil
	})
}

// batchKeys are the keys of a push object ({"to","topic","data","ttl","id"}).
var batchKeys = []string{"to", "topic", "data", "ttl", "id"}

// parseBatch reads a JSON array of push objects, or push objects one after
// another (JSON lines). It fills in def's target (as "to"), label (as
// "topic") and ttl only where an item has no such key; an item's own
// value, null included, is sent as it is, for the server to judge (it
// refuses "to": null with 400 rather than read it as a broadcast). Only
// what is not a push object at all (not a JSON object, or an unknown key)
// is refused here.
func parseBatch(data []byte, def client.Push) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	var raws []json.RawMessage
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("the batch is not a JSON array: %v", err)
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var r json.RawMessage
			if err := dec.Decode(&r); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("line %d of the batch: %v", len(raws)+1, err)
			}
			raws = append(raws, r)
		}
	}
	// The defaults, in the order they are written into an item.
	type kv struct {
		key   string
		value json.RawMessage
	}
	var defaults []kv
	if !def.To.IsZero() {
		to, err := json.Marshal(def.To)
		if err != nil {
			return nil, err
		}
		defaults = append(defaults, kv{"to", to})
	}
	if def.Topic != "" {
		topic, err := json.Marshal(def.Topic)
		if err != nil {
			return nil, err
		}
		defaults = append(defaults, kv{"topic", topic})
	}
	if def.TTL > 0 {
		defaults = append(defaults, kv{"ttl", json.RawMessage(strconv.FormatInt(int64(math.Ceil(def.TTL.Seconds())), 10))})
	}
	out := make([]json.RawMessage, 0, len(raws))
	for i, r := range raws {
		r = bytes.TrimSpace(r)
		var keys map[string]json.RawMessage
		if len(r) == 0 || r[0] != '{' || json.Unmarshal(r, &keys) != nil {
			return nil, fmt.Errorf("item %d is not a push object {\"to\",\"topic\",\"data\",\"ttl\",\"id\"}", i)
		}
		for k := range keys {
			if !slices.Contains(batchKeys, k) {
				return nil, fmt.Errorf("item %d has the key %q: a push object has only \"to\",\"topic\",\"data\",\"ttl\",\"id\"", i, k)
			}
		}
		var add bytes.Buffer
		for _, d := range defaults {
			if _, ok := keys[d.key]; ok {
				continue // the item's own value, even null
			}
			if add.Len() > 0 {
				add.WriteByte(',')
			}
			fmt.Fprintf(&add, "%q:%s", d.key, d.value)
		}
		if add.Len() == 0 {
			out = append(out, r)
			continue
		}
		// {ADDED,REST} (or {ADDED} for an empty item): the item's own bytes
		// stay as they were.
		rest := bytes.TrimSpace(r[1:])
		item := make([]byte, 0, 1+add.Len()+1+len(rest))
		item = append(item, '{')
		item = append(item, add.Bytes()...)
		if rest[0] != '}' {
			item = append(item, ',')
		}
		out = append(out, append(item, rest...))
	}
	return out, nil
}

func (e *env) presence(ctx context.Context, args []string) int {
	fs := e.publisherFlags("--user U | --device D")
	var who client.Target
	fs.StringVar(&who.UserID, "user", "", "list the online sessions of a user")
	fs.StringVar(&who.DeviceID, "device", "", "list the online session of a device")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if (who.UserID == "") == (who.DeviceID == "") {
		return e.usageError(fs, "give exactly one of --user and --device")
	}
	if fs.NArg() > 0 {
		return e.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return e.call(ctx, fs, func(ctx context.Context, c *client.Client) error {
		list, err := c.Presence(ctx, who)
		if err != nil {
			return err
		}
		if list == nil {
			list = []client.PresenceSession{}
		}
		e.printJSON(map[string]any{"sessions": list})
		return nil
	})
}

func (e *env) stats(ctx context.Context, args []string) int {
	fs := e.publisherFlags("")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return e.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return e.call(ctx, fs, func(ctx context.Context, c *client.Client) error {
		st, err := c.Stats(ctx)
		if err == nil {
			fmt.Fprintf(e.stdout, "%s\n", bytes.TrimSpace(st.Raw))
		}
		return err
	})
}

// backup copies a data directory to a tar file: from its running server
// (the backup socket), or from the directory when no server holds it. It
// prints {"out": FILE, "bytes": N}.
func (e *env) backup(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("longpoll backup", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("data-dir", e.getenv("LONGPOLL_DATA_DIR"), "the server's data directory (LONGPOLL_DATA_DIR)")
	out := fs.String("out", "", "the tar file to write (replaced whole once the copy is complete)")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: longpoll backup --data-dir DIR --out FILE\n\nA consistent copy of DIR as a tar, taken while its server runs (or not).\nRestore: mkdir NEW_DIR && tar -xf FILE -C NEW_DIR, then longpoll --data-dir NEW_DIR.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return e.usageError(fs, "unexpected argument %q", fs.Arg(0))
	case *dir == "":
		return e.usageError(fs, "--data-dir is required")
	case *out == "":
		return e.usageError(fs, "--out is required")
	}
	n, err := diskstore.Backup(ctx, *dir, *out)
	if err != nil {
		return e.fail(err)
	}
	b, _ := json.Marshal(struct {
		Out   string `json:"out"`
		Bytes int64  `json:"bytes"`
	}{*out, n})
	fmt.Fprintf(e.stdout, "%s\n", b)
	return ExitOK
}

// commit is the VCS revision when the build did not record one (a
// Docker build without .git): set with
// -ldflags "-X github.com/longpoll/longpoll/internal/cli.commit=$REV".
var commit string

// Version returns "longpoll VERSION (commit REV[, modified], TIME, GO)"
// from the build information: VERSION is the module version ("(devel)"
// for a build from a checkout), REV the VCS revision that go build
// recorded (or the one set at link time, or "unknown").
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "longpoll (no build information)"
	}
	rev, when, modified := commit, "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	parts := []string{"commit " + rev}
	if modified {
		parts = append(parts, "modified")
	}
	if when != "" {
		parts = append(parts, when)
	}
	parts = append(parts, bi.GoVersion)
	return fmt.Sprintf("longpoll %s (%s)", bi.Main.Version, strings.Join(parts, ", "))
}

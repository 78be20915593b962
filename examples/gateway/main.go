// Command gateway is an example smart-home gateway built on the longpoll
// Go client: it connects with its device id, executes the commands pushed
// to it, and reports its state back with /send.
//
// Run a server and the gateway, then push it a command:
//
//	go run ./cmd/longpoll &
//	go run ./examples/gateway --device gw-1 --user alice &
//	go run ./cmd/longpoll push --device gw-1 '{"command":"set","thing":"light","value":"on"}'
//
// Commands are JSON objects: {"command":"set","thing":T,"value":V} sets
// the state of a thing, {"command":"get"} only reports. After each command
// the gateway sends {"gateway","state","reply","error"} on topic "state" to
// the user it reports to (--user), or, without one, to the topic
// home/<device>/state; a phone of the user receives it (`longpoll sub
// --device phone --user alice`). The gateway itself connects without a
// user, so it gets only what is pushed to its device id. On SIGINT or SIGTERM it disconnects,
// acknowledging what it executed, and exits 0.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/longpoll/longpoll/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// gateway holds the state of the things it controls.
type gateway struct {
	dev    *client.Device
	report client.Target
	log    *slog.Logger

	mu    sync.Mutex
	state map[string]json.RawMessage
}

// command is a message the gateway executes.
type command struct {
	Command string          `json:"command"`
	Thing   string          `json:"thing"`
	Value   json.RawMessage `json:"value"`
}

// stateReport is what the gateway sends after each command.
type stateReport struct {
	Gateway string                     `json:"gateway"`
	State   map[string]json.RawMessage `json:"state"`
	Reply   string                     `json:"reply,omitempty"` // the id of the command
	Error   string                     `json:"error,omitempty"`
}

// run runs the gateway until ctx ends; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", cmp.Or(getenv("LONGPOLL_URL"), "http://127.0.0.1:8080"), "longpoll server (LONGPOLL_URL)")
	device := fs.String("device", "gw-1", "this gateway's device id")
	user := fs.String("user", "", "the user it reports its state to (default: the topic home/<device>/state)")
	token := fs.String("token", getenv("LONGPOLL_TOKEN"), "connect token for a server with --connect-secret (LONGPOLL_TOKEN)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h, --help: the usage was asked for
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := []client.Option{client.WithRetryHook(func(i client.RetryInfo) {
		log.Warn("connection trouble", "err", i.Err, "retryIn", i.Wait, "reconnect", i.Reconnect)
	})}
	if *token != "" {
		tok := *token
		opts = append(opts, client.WithToken(func(context.Context) (string, error) { return tok, nil }))
	}
	c, err := client.New(*url, opts...)
	if err != nil {
		log.Error("bad --url", "err", err)
		return 2
	}
	// The gateway connects as a device without user: it takes commands
	// pushed to its device id, not what its user's phones get (its own
	// state reports among them).
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: *device, Meta: map[string]string{"kind": "gateway"}})
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		log.Error("connect", "err", err)
		return 1
	}
	g := &gateway{dev: dev, log: log, state: map[string]json.RawMessage{}, report: client.Target{UserID: *user}}
	if *user == "" {
		g.report = client.Target{Topic: "home/" + *device + "/state"}
	}
	log.Info("gateway online", "device", *device, "session", dev.Session().ID[:8]+"…")
	err = dev.Run(ctx, g.handle)
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if derr := dev.Disconnect(dctx); derr != nil {
		log.Warn("disconnect", "err", derr)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// handle executes one message and reports the state. System messages
// ($heartbeat) are skipped. A failed report is logged, not retried: the
// next command reports the whole state again.
func (g *gateway) handle(ctx context.Context, m client.Message) error {
	if strings.HasPrefix(m.Topic, "$") {
		return nil
	}
	rep := stateReport{Gateway: g.dev.Session().DeviceID, Reply: m.ID}
	if err := g.execute(m.Data); err != nil {
		rep.Error = err.Error()
	}
	g.mu.Lock()
	rep.State = make(map[string]json.RawMessage, len(g.state))
	for k, v := range g.state {
		rep.State[k] = v
	}
	g.mu.Unlock()
	if rep.Error != "" {
		g.log.Info("command", "id", m.ID, "data", string(m.Data), "error", rep.Error)
	} else {
		g.log.Info("command", "id", m.ID, "data", string(m.Data))
	}
	if _, err := g.dev.Send(ctx, client.Push{To: g.report, Topic: "state", Data: rep}); err != nil {
		g.log.Warn("state report not sent", "err", err)
	}
	return nil
}

// execute applies a command to the state.
func (g *gateway) execute(data json.RawMessage) error {
	var cmd command
	if err := json.Unmarshal(data, &cmd); err != nil {
		return fmt.Errorf("not a command object: %v", err)
	}
	switch cmd.Command {
	case "get":
		return nil
	case "set":
		if cmd.Thing == "" || len(cmd.Value) == 0 {
			return errors.New(`set needs "thing" and "value"`)
		}
		g.mu.Lock()
		g.state[cmd.Thing] = cmd.Value
		g.mu.Unlock()
		return nil
	}
	return fmt.Errorf("unknown command %q (want set or get)", cmd.Command)
}

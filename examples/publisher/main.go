// Command publisher is an example backend that pushes a message on a
// schedule with the longpoll Go client: a reading, a reminder, a price.
//
//	go run ./cmd/longpoll &
//	go run ./examples/publisher --user alice --every 5s
//	go run ./cmd/longpoll sub --device phone --user alice   # elsewhere: see them arrive
//
// Each message is {"n": N, "time": "…"} on topic --topic-label (default
// "tick"), pushed to --user, --device or --topic (none: every online
// session). Each carries the idempotency id "<--id-prefix>-N", so a push
// retried after a network error is not delivered twice. It stops after
// --count pushes (0: never), or on SIGINT or SIGTERM, and exits 0; a
// refused push is logged, and with --stop-on-error ends it with exit 1.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/longpoll/longpoll/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// tick is the message the publisher pushes.
type tick struct {
	N    int    `json:"n"`
	Time string `json:"time"`
}

// run pushes on the schedule until done; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", cmp.Or(getenv("LONGPOLL_URL"), "http://127.0.0.1:8080"), "longpoll server (LONGPOLL_URL)")
	key := fs.String("key", getenv("LONGPOLL_PUBLISH_KEY"), "publish key (LONGPOLL_PUBLISH_KEY); none: the server must be on loopback")
	var to client.Target
	fs.StringVar(&to.UserID, "user", "", "push to this user")
	fs.StringVar(&to.DeviceID, "device", "", "push to this device")
	fs.StringVar(&to.Topic, "topic", "", "push to this topic")
	label := fs.String("topic-label", "tick", "the messages' topic label")
	every := fs.Duration("every", 5*time.Second, "time between pushes")
	count := fs.Int("count", 0, "pushes before exiting (0: until interrupted)")
	ttl := fs.Duration("ttl", time.Hour, "how long a message waits for an offline user or device")
	prefix := fs.String("id-prefix", fmt.Sprintf("tick-%d", time.Now().Unix()), "idempotency ids are PREFIX-N")
	stopOnError := fs.Bool("stop-on-error", false, "exit 1 at the first refused push")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h, --help: the usage was asked for
		}
		return 2
	}
	if *every <= 0 {
		fmt.Fprintln(stderr, "publisher: --every must be positive")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var opts []client.Option
	if *key != "" {
		opts = append(opts, client.WithPublishKey(*key))
	}
	c, err := client.New(*url, opts...)
	if err != nil {
		log.Error("bad --url", "err", err)
		return 2
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	for n := 1; *count == 0 || n <= *count; n++ {
		p := client.Push{To: to, Topic: *label, TTL: *ttl, ID: fmt.Sprintf("%s-%d", *prefix, n),
			Data: tick{N: n, Time: time.Now().UTC().Format(time.RFC3339)}}
		res, err := c.Push(ctx, p)
		switch {
		case ctx.Err() != nil:
			return 0
		case err != nil:
			log.Warn("push refused", "n", n, "err", err)
			if *stopOnError {
				return 1
			}
		default:
			log.Info("pushed", "n", n, "id", res.ID, "delivered", res.Delivered, "stored", res.Stored)
		}
		if *count != 0 && n == *count {
			break
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
	return 0
}

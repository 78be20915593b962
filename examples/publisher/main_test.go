package main

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

func TestPublisherPushesOnItsSchedule(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0", "--publish-key", "pk-0123456789abcdef")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := func(k string) string {
		return map[string]string{"LONGPOLL_URL": s.URL, "LONGPOLL_PUBLISH_KEY": "pk-0123456789abcdef"}[k]
	}
	// the user is offline: the ticks wait for her
	if code := run(ctx, []string{"--user", "alice", "--every", "10ms", "--count", "3", "--id-prefix", "t1", "--stop-on-error"}, env, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// the same ids again: not delivered twice
	if code := run(ctx, []string{"--user", "alice", "--every", "10ms", "--count", "3", "--id-prefix", "t1", "--stop-on-error"}, env, io.Discard); code != 0 {
		t.Fatalf("second run: exit %d", code)
	}
	pub, _ := client.New(s.URL, client.WithPublishKey("pk-0123456789abcdef"))
	if st, err := pub.Stats(ctx); err != nil || st.OfflineMessages != 3 {
		t.Fatalf("stored for alice: %+v %v, want 3 messages (the repeated ids not again)", st, err)
	}
	c, _ := client.New(s.URL)
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "phone", UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	runCtx, stop := context.WithCancel(ctx)
	dev.Run(runCtx, func(_ context.Context, m client.Message) error {
		var tk tick
		if m.Topic != "tick" || json.Unmarshal(m.Data, &tk) != nil || tk.Time == "" {
			t.Errorf("message %s %s", m.Topic, m.Data)
		}
		if got = append(got, tk.N); len(got) == 3 {
			stop()
		}
		return nil
	})
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("got ticks %v, want 1 2 3", got)
	}
	if st, err := c.Stats(context.Background()); err == nil {
		t.Fatalf("stats without the key: %+v", st)
	}
	// a refused push (no key) ends it with exit 1 under --stop-on-error
	noKey := func(k string) string { return map[string]string{"LONGPOLL_URL": s.URL}[k] }
	if code := run(ctx, []string{"--every", "10ms", "--count", "1", "--stop-on-error"}, noKey, io.Discard); code != 1 {
		t.Fatalf("without a key: exit %d, want 1", code)
	}
	if code := run(ctx, []string{"--every", "0s"}, env, io.Discard); code != 2 {
		t.Fatalf("--every 0s: exit %d, want 2", code)
	}
}

// TestHelpExits0: -h and --help print the flags and exit 0; an unknown
// flag is bad usage (2).
func TestHelpExits0(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var out strings.Builder
		if code := run(context.Background(), []string{arg}, func(string) string { return "" }, &out); code != 0 || !strings.Contains(out.String(), "-every") {
			t.Errorf("%s: exit %d, %q; want 0 and the flags", arg, code, out.String())
		}
	}
	if code := run(context.Background(), []string{"--no-such-flag"}, func(string) string { return "" }, io.Discard); code != 2 {
		t.Errorf("an unknown flag: exit %d, want 2", code)
	}
}

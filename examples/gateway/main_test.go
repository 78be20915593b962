package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// TestGatewayExecutesCommandsAndReportsState: a phone of the user hears
// the gateway's state after each pushed command, errors included.
func TestGatewayExecutesCommandsAndReportsState(t *testing.T) {
	s := testserver.Start(t, "--heartbeat-interval", "0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, _ := client.New(s.URL)
	phone, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "phone", UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan stateReport, 10)
	go phone.Run(ctx, func(_ context.Context, m client.Message) error {
		var r stateReport
		if m.Topic == "state" && json.Unmarshal(m.Data, &r) == nil {
			reports <- r
		}
		return nil
	})

	gwCtx, stopGateway := context.WithCancel(ctx)
	logs := &testserver.Buffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- run(gwCtx, []string{"--url", s.URL, "--device", "gw-1", "--user", "alice"}, func(string) string { return "" }, logs)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})

	next := func() stateReport {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("no state report")
			return stateReport{}
		}
	}
	// pushed to the device: stored until the gateway is up, then executed
	for _, cmd := range []string{`{"command":"set","thing":"light","value":"on"}`, `{"command":"set","thing":"heat","value":21}`, `{"command":"fly"}`} {
		if _, err := c.Push(ctx, client.Push{To: client.Target{DeviceID: "gw-1"}, Data: json.RawMessage(cmd)}); err != nil {
			t.Fatal(err)
		}
	}
	r := next()
	if r.Gateway != "gw-1" || string(r.State["light"]) != `"on"` || r.Error != "" || r.Reply == "" {
		t.Fatalf("first report %+v", r)
	}
	if r = next(); string(r.State["heat"]) != `21` || string(r.State["light"]) != `"on"` {
		t.Fatalf("second report %+v", r)
	}
	if r = next(); r.Error == "" || len(r.State) != 2 {
		t.Fatalf("an unknown command: %+v", r)
	}
	stopGateway()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not stop")
	}
	// a command's log line names an error only when there is one
	if l := logs.String(); strings.Contains(l, `error=""`) || !strings.Contains(l, `error="unknown command`) {
		t.Errorf("gateway log: want error= on the failed command only:\n%s", l)
	}
	// it disconnected, acknowledging the commands: nothing waits for it
	st, err := c.Stats(ctx)
	if err != nil || st.OfflineMessages != 0 || st.Sessions != 1 {
		t.Fatalf("after the gateway stopped: %+v %v", st, err)
	}
}

// TestHelpExits0: -h and --help print the flags and exit 0; an unknown
// flag is bad usage (2).
func TestHelpExits0(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var out strings.Builder
		if code := run(context.Background(), []string{arg}, func(string) string { return "" }, &out); code != 0 || !strings.Contains(out.String(), "-device") {
			t.Errorf("%s: exit %d, %q; want 0 and the flags", arg, code, out.String())
		}
	}
	if code := run(context.Background(), []string{"--no-such-flag"}, func(string) string { return "" }, io.Discard); code != 2 {
		t.Errorf("an unknown flag: exit %d, want 2", code)
	}
}

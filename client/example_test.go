package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/longpoll/longpoll/client"
)

// A device connects, a publisher pushes two messages to its user, and the
// device's receive loop prints them. (serverURL is a longpoll server the
// tests start; yours is "http://127.0.0.1:8080" after go run ./cmd/longpoll.)
func ExampleDevice_Run() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(serverURL)
	if err != nil {
		panic(err)
	}
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "example-lamp", UserID: "example-alice", Topics: []string{"home/kitchen"}})
	if err != nil {
		panic(err)
	}
	for _, state := range []string{"on", "off"} {
		if _, err := c.Push(ctx, client.Push{To: client.Target{UserID: "example-alice"}, Topic: "light", Data: map[string]string{"state": state}}); err != nil {
			panic(err)
		}
	}

	run, stop := context.WithCancel(ctx)
	n := 0
	err = dev.Run(run, func(ctx context.Context, m client.Message) error {
		fmt.Println(m.Seq, m.Topic, string(m.Data))
		if n++; n == 2 {
			stop() // enough: Run returns once this handler has returned
		}
		return nil
	})
	fmt.Println("run:", err)
	// Disconnect acknowledges both messages: they do not come again.
	fmt.Println("disconnect:", dev.Disconnect(ctx))
	// Output:
	// 1 light {"state":"on"}
	// 2 light {"state":"off"}
	// run: context canceled
	// disconnect: <nil>
}

// A message for a device that is not connected waits for it (48 h by
// default, or the push's TTL).
func ExampleClient_Push() {
	ctx := context.Background()
	pub, _ := client.New(serverURL) // from loopback; else client.WithPublishKey(key)
	res, err := pub.Push(ctx, client.Push{
		To:   client.Target{DeviceID: "example-gateway-7"},
		Data: map[string]any{"command": "reboot"},
		TTL:  time.Hour,
		ID:   "reboot-2026-11-22", // pushed again (a retry), it is not delivered twice
	})
	fmt.Println(res.Delivered, res.Stored, res.Duplicate, err)
	again, err := pub.Push(ctx, client.Push{To: client.Target{DeviceID: "example-gateway-7"}, Data: map[string]any{"command": "reboot"}, TTL: time.Hour, ID: "reboot-2026-11-22"})
	fmt.Println(again.Delivered, again.Stored, again.Duplicate, again.ID == res.ID, err)
	// Output:
	// 0 1 false <nil>
	// 0 1 true true <nil>
}

// A batch is applied in order; each item has its own result.
func ExampleClient_PushBatch() {
	pub, _ := client.New(serverURL)
	results, err := pub.PushBatch(context.Background(), []client.Push{
		{To: client.Target{UserID: "example-batch-user"}, Data: 1},
		{To: client.Target{UserID: "example-batch-user"}, Data: 2},
	})
	for _, r := range results {
		fmt.Println(r.Stored, r.Err)
	}
	fmt.Println(err)
	// Output:
	// 1 <nil>
	// 1 <nil>
	// <nil>
}

// Refusals are *client.Error values; errors.Is matches them against the
// sentinels of the API's error codes.
func ExampleError() {
	pub, _ := client.New(serverURL)
	_, err := pub.Push(context.Background(), client.Push{To: client.Target{SessionID: "no-such-session"}, Data: 1})
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Code)
	}
	fmt.Println(errors.Is(err, client.ErrSessionNotFound))
	// Output:
	// 404 session_not_found
	// true
}

// Devices send to each other with Send; the server fills in From.
func ExampleDevice_Send() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _ := client.New(serverURL)
	// The heater was online a moment ago (a client's send is kept for a
	// device or user only if it was online within the offline ttl).
	heater, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "example-heater"})
	if err != nil {
		panic(err)
	}
	heater.Disconnect(ctx)
	phone, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "example-phone", UserID: "example-bob"})
	if err != nil {
		panic(err)
	}
	defer phone.Disconnect(ctx)
	res, err := phone.Send(ctx, client.Push{To: client.Target{DeviceID: "example-heater"}, Topic: "command", Data: map[string]int{"target": 21}})
	fmt.Println(res.Stored, err) // the heater is offline: stored for it

	heater, err = c.Connect(ctx, client.ConnectRequest{DeviceID: "example-heater"})
	if err != nil {
		panic(err)
	}
	run, stop := context.WithCancel(ctx)
	heater.Run(run, func(ctx context.Context, m client.Message) error {
		fmt.Println(m.From, m.Topic, string(m.Data))
		stop()
		return nil
	})
	heater.Disconnect(ctx)
	// Output:
	// 1 <nil>
	// example-bob/example-phone command {"target":21}
}

// Against a server started with --connect-secret, the token source hands
// out the JWT for each connect; here it signs one itself, as your backend
// would (sub: the user, dev: the device, exp: required).
func ExampleWithToken() {
	ctx := context.Background()
	tokens := client.WithToken(func(ctx context.Context) (string, error) {
		return signHS256(exampleSecret, map[string]any{"sub": "example-frank", "dev": "example-tv", "exp": time.Now().Add(5 * time.Minute).Unix()}), nil
	})
	c, _ := client.New(secretURL, tokens)
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "example-tv"})
	if err != nil {
		panic(err)
	}
	fmt.Println(dev.Session().UserID) // from the token's sub
	fmt.Println(dev.Disconnect(ctx))
	// Output:
	// example-frank
	// <nil>
}

// Presence lists who is online; Stats gives the server's counters.
func ExampleClient_Presence() {
	ctx := context.Background()
	c, _ := client.New(serverURL)
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "example-speaker", UserID: "example-grace"})
	if err != nil {
		panic(err)
	}
	sessions, err := c.Presence(ctx, client.Target{UserID: "example-grace"})
	for _, s := range sessions {
		fmt.Println(s.DeviceID, s.SessionID == dev.Session().ID)
	}
	fmt.Println(err)
	stats, err := c.Stats(ctx)
	fmt.Println(stats.Sessions > 0, err)
	dev.Disconnect(ctx)
	// Output:
	// example-speaker true
	// <nil>
	// true <nil>
}

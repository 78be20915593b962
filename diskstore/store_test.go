package diskstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/longpoll/longpoll/diskstore"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/poll/storetest"
	"github.com/longpoll/longpoll/session"
)

// open opens a store on dir, closed when the test ends.
func open(t *testing.T, dir string, cfg poll.StoreConfig, opt diskstore.Options) *diskstore.Store {
	t.Helper()
	st, err := diskstore.Open(dir, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestDiskStoreConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  diskstore.Options
	}{{"fsync always", diskstore.Options{}}, {"fsync 50ms", diskstore.Options{SyncInterval: 50e6}}} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, storetest.Impl{
				New: func(t *testing.T, cfg poll.StoreConfig) poll.Store {
					return open(t, t.TempDir(), cfg, c.opt)
				},
				Reopen: func(t *testing.T, st poll.Store, cfg poll.StoreConfig) poll.Store {
					ds := st.(*diskstore.Store)
					if err := ds.Close(); err != nil {
						t.Fatal(err)
					}
					return open(t, ds.Dir(), cfg, c.opt)
				},
				Settle: func(t *testing.T, st poll.Store) {
					if err := st.(*diskstore.Store).Sync(); err != nil {
						t.Fatal(err)
					}
				},
			})
		})
	}
}

// With --fsync INTERVAL a 202 comes once the batch is written; the parked
// poll gets the message once it is synced, within the interval (bounded
// here by the poll's hold, far above it).
func TestIntervalSyncDeliversWithinTheInterval(t *testing.T) {
	st := open(t, t.TempDir(), poll.Config{}.StoreConfig(), diskstore.Options{SyncInterval: 20 * time.Millisecond})
	hub := poll.NewHub(poll.Config{Store: st})
	defer hub.Close()
	s, err := hub.Connect(session.Request{DeviceID: "lamp"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []poll.Message, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msgs, _ := hub.Poll(ctx, s.ID, 0, false)
		got <- msgs
	}()
	if _, err := hub.Publish(poll.Push{To: poll.Target{SessionID: s.ID}, Data: json.RawMessage(`"hi"`)}); err != nil {
		t.Fatal(err)
	}
	if msgs := <-got; len(msgs) != 1 || string(msgs[0].Data) != `"hi"` {
		t.Fatalf("the parked poll got %v", msgs)
	}
}

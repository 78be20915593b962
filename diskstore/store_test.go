package diskstore_test

import (
	"testing"

	"github.com/longpoll/longpoll/diskstore"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/poll/storetest"
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
			})
		})
	}
}

package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll/internal/redistest"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/poll/storetest"
	"github.com/longpoll/longpoll/redisstore"
)

var prefixes atomic.Int64

// impl runs the conformance suite against opts, each test under a prefix
// of its own.
func impl(opts redisstore.Options) storetest.Impl {
	return storetest.Impl{New: func(t *testing.T, cfg poll.StoreConfig) poll.Store {
		o := opts
		o.Prefix = fmt.Sprintf("test%d", prefixes.Add(1))
		st, err := redisstore.Open(o, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}}
}

func TestConformanceOneServer(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, impl(redisstore.Options{URL: srv.URL()}))
}

func TestConformanceCluster(t *testing.T) {
	nodes := redistest.Cluster(t)
	storetest.Run(t, impl(redisstore.Options{Cluster: redistest.Addrs(nodes)}))
}

package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/redistest"
	"github.com/longpoll/longpoll/internal/testwait"
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

// One node of a deployment holds the jobs' lease at a time; it keeps it
// while it renews it, and another takes it over once it lapses.
func TestElectorOneLeaderAndTakeover(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *redisstore.Store {
		st, err := redisstore.Open(redisstore.Options{URL: srv.URL(), Prefix: "elect"}, poll.StoreConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open().Elector(time.Second), open().Elector(time.Second)
	ctx := context.Background()
	if err := a.IsLeader(ctx); err != nil {
		t.Fatalf("the first node: %v", err)
	}
	for range 3 {
		if err := b.IsLeader(ctx); err == nil {
			t.Fatal("two leaders")
		}
		if err := a.IsLeader(ctx); err != nil { // renews
			t.Fatalf("the leader lost its lease: %v", err)
		}
	}
	testwait.For(t, "the second node to take the lapsed lease", 10*time.Second, func() bool { return b.IsLeader(ctx) == nil })
	if err := a.IsLeader(ctx); err == nil {
		t.Fatal("the first node leads again while the second holds the lease")
	}
}

package session_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll/session"
)

const ttl = 10 * time.Second

// expiries records the sessions DeleteExpired returned.
type expiries struct {
	mu  sync.Mutex
	got []*session.Session
}

// sweep runs r.DeleteExpired and records what it returned.
func (e *expiries) sweep(r *session.Registry) {
	got := r.DeleteExpired()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, got...)
}

func (e *expiries) ids() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.got))
	for _, s := range e.got {
		out = append(out, s.ID)
	}
	return out
}

func newRegistry(t *testing.T, keepAlive func(*session.Session) bool) (*session.Registry, *expiries) {
	t.Helper()
	exp := &expiries{}
	return session.NewRegistry(ttl, nil, keepAlive), exp
}

func newSession(device, user string, topics ...string) *session.Session {
	return session.Request{DeviceID: device, UserID: user, Topics: topics}.NewSession(time.Now())
}

func ids(ss []*session.Session) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(in ...string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func wantIDs(t *testing.T, what string, got []*session.Session, want ...*session.Session) {
	t.Helper()
	w := make([]string, 0, len(want))
	for _, s := range want {
		w = append(w, s.ID)
	}
	if g, w := ids(got), sorted(w...); !slices.Equal(g, w) {
		t.Errorf("%s = %v, want %v", what, g, w)
	}
}

func wantCounts(t *testing.T, r *session.Registry, sessions, users, topics int) {
	t.Helper()
	s, u, tp := r.Counts()
	if s != sessions || u != users || tp != topics {
		t.Errorf("Counts() = %d sessions, %d users, %d topics; want %d, %d, %d", s, u, tp, sessions, users, topics)
	}
}

func TestRegistryIndexes(t *testing.T) {
	r, _ := newRegistry(t, nil)
	if r.TTL() != ttl {
		t.Errorf("TTL() = %v, want %v", r.TTL(), ttl)
	}
	wantCounts(t, r, 0, 0, 0)
	a1 := newSession("phone", "alice", "news", "home/kitchen")
	a2 := newSession("laptop", "alice", "news")
	b := newSession("lamp", "", "home/kitchen", "$presence")
	for _, s := range []*session.Session{a1, a2, b} {
		if old := r.Add(s); old != nil {
			t.Fatalf("Add(%s) replaced %v", s.DeviceID, old)
		}
	}
	wantCounts(t, r, 3, 1, 3)
	wantIDs(t, "All()", r.All(), a1, a2, b)
	wantIDs(t, "ByUser(alice)", r.ByUser("alice"), a1, a2)
	wantIDs(t, "ByUser(bob)", r.ByUser("bob"))
	wantIDs(t, "ByUser(\"\")", r.ByUser(""))
	wantIDs(t, "ByTopic(news)", r.ByTopic("news"), a1, a2)
	wantIDs(t, "ByTopic(home/kitchen)", r.ByTopic("home/kitchen"), a1, b)
	wantIDs(t, "ByTopic($presence)", r.ByTopic("$presence"), b)
	wantIDs(t, "ByTopic(other)", r.ByTopic("other"))
	if got := r.ByDevice("lamp"); got != b {
		t.Errorf("ByDevice(lamp) = %v, want %v", got, b)
	}
	if got := r.ByDevice("nope"); got != nil {
		t.Errorf("ByDevice(nope) = %v, want nil", got)
	}
	for _, s := range []*session.Session{a1, a2, b} {
		if got, ok := r.Get(s.ID); !ok || got != s {
			t.Errorf("Get(%s) = %v, %v", s.DeviceID, got, ok)
		}
	}
	if _, ok := r.Get("unknown"); ok {
		t.Error("Get(unknown) found a session")
	}
}

func TestRegistryReplace(t *testing.T) {
	r, _ := newRegistry(t, nil)
	old := newSession("phone", "alice", "news", "old-only")
	other := newSession("laptop", "alice", "news")
	r.Add(old)
	r.Add(other)
	repl := newSession("phone", "bob", "news")
	if got := r.Add(repl); got != old {
		t.Fatalf("Add(replacement) returned %v, want the old session", got)
	}
	if _, ok := r.Get(old.ID); ok {
		t.Error("replaced session is still found by Get")
	}
	if _, ok := r.Touch(old.ID); ok {
		t.Error("replaced session can still be touched")
	}
	if got := r.ByDevice("phone"); got != repl {
		t.Errorf("ByDevice(phone) = %v, want the replacement", got)
	}
	wantIDs(t, "ByUser(alice)", r.ByUser("alice"), other)
	wantIDs(t, "ByUser(bob)", r.ByUser("bob"), repl)
	wantIDs(t, "ByTopic(news)", r.ByTopic("news"), other, repl)
	wantIDs(t, "ByTopic(old-only)", r.ByTopic("old-only"))
	wantIDs(t, "All()", r.All(), other, repl)
	wantCounts(t, r, 2, 2, 1)
	if r.Remove(old) {
		t.Error("Remove(replaced) = true, want false")
	}
	if got := r.ByDevice("phone"); got != repl {
		t.Error("Remove(replaced) took the replacement offline")
	}
}

func TestRegistryRemove(t *testing.T) {
	r, _ := newRegistry(t, nil)
	s := newSession("phone", "alice", "news")
	keep := newSession("lamp", "", "news")
	r.Add(s)
	r.Add(keep)
	if !r.Remove(s) {
		t.Fatal("Remove(online) = false")
	}
	if r.Remove(s) {
		t.Error("second Remove = true, want false")
	}
	if _, ok := r.Get(s.ID); ok {
		t.Error("removed session is still found by Get")
	}
	if _, ok := r.Touch(s.ID); ok {
		t.Error("removed session can be touched")
	}
	if r.ByDevice("phone") != nil {
		t.Error("removed session still indexed by device")
	}
	wantIDs(t, "ByUser(alice)", r.ByUser("alice"))
	wantIDs(t, "ByTopic(news)", r.ByTopic("news"), keep)
	wantIDs(t, "All()", r.All(), keep)
	wantCounts(t, r, 1, 0, 1)
	// A session never added cannot be removed.
	if r.Remove(newSession("ghost", "")) {
		t.Error("Remove(never added) = true")
	}
}

func TestRegistryExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, exp := newRegistry(t, nil)
		s := newSession("phone", "alice", "news")
		removed := newSession("lamp", "", "news")
		replaced := newSession("tv", "bob")
		r.Add(s)
		r.Add(removed)
		r.Add(replaced)
		r.Remove(removed)
		repl := newSession("tv", "bob")
		r.Add(repl)

		time.Sleep(ttl - time.Second)
		exp.sweep(r)
		if got := exp.ids(); len(got) != 0 {
			t.Fatalf("expired before the TTL: %v", got)
		}
		if _, ok := r.Touch(repl.ID); !ok {
			t.Fatal("Touch(repl) failed before the TTL")
		}

		time.Sleep(2 * time.Second) // s idle for ttl+1s; repl touched 2s ago
		if _, ok := r.Get(s.ID); ok {
			t.Error("Get returns a session past its TTL")
		}
		if _, ok := r.Touch(s.ID); ok {
			t.Error("Touch revived a session past its TTL")
		}
		// Not yet evicted: still indexed until DeleteExpired runs.
		if r.ByDevice("phone") != s {
			t.Error("session unindexed before DeleteExpired")
		}
		exp.sweep(r)
		if got, want := exp.ids(), []string{s.ID}; !slices.Equal(got, want) {
			t.Fatalf("onExpire got %v, want exactly %v", got, want)
		}
		if r.ByDevice("phone") != nil {
			t.Error("expired session still indexed by device")
		}
		wantIDs(t, "ByUser(alice)", r.ByUser("alice"))
		wantIDs(t, "ByTopic(news)", r.ByTopic("news"))
		wantIDs(t, "All()", r.All(), repl)
		wantCounts(t, r, 1, 1, 0)
		if r.Remove(s) {
			t.Error("Remove(expired) = true")
		}

		exp.sweep(r) // nothing more to do
		time.Sleep(ttl)
		exp.sweep(r) // repl expires now
		if got, want := exp.ids(), []string{s.ID, repl.ID}; !slices.Equal(got, want) {
			t.Fatalf("onExpire got %v, want exactly %v (never the removed or replaced sessions)", got, want)
		}
		wantCounts(t, r, 0, 0, 0)
		exp.sweep(r)
		if got := exp.ids(); len(got) != 2 {
			t.Errorf("onExpire called again: %v", got)
		}
	})
}

func TestRegistryTouchRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, exp := newRegistry(t, nil)
		s := newSession("phone", "")
		r.Add(s)
		for range 5 { // 5 × 8s = 40s, well past the 10s TTL
			time.Sleep(ttl - 2*time.Second)
			got, ok := r.Touch(s.ID)
			if !ok || got != s {
				t.Fatalf("Touch = %v, %v", got, ok)
			}
			exp.sweep(r)
		}
		if got := exp.ids(); len(got) != 0 {
			t.Fatalf("a touched session expired: %v", got)
		}
		time.Sleep(ttl + time.Second)
		exp.sweep(r)
		if got := exp.ids(); !slices.Equal(got, []string{s.ID}) {
			t.Fatalf("onExpire got %v, want %v", got, []string{s.ID})
		}
		if _, ok := r.Touch("never-added"); ok {
			t.Error("Touch(unknown) = true")
		}
	})
}

// Refresh keeps a session the caller holds alive as Touch does (looking
// it up only when its last refresh is older than the slack) and reports
// false once the session is offline: removed or replaced at once, even
// within the slack, and past its TTL.
func TestRegistryRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, exp := newRegistry(t, nil)
		s := newSession("phone", "")
		removed := newSession("lamp", "")
		old := newSession("tv", "")
		r.Add(s)
		r.Add(removed)
		r.Add(old)
		if !r.Refresh(s) || !r.Refresh(removed) || !r.Refresh(old) {
			t.Fatal("Refresh of a session just added = false")
		}
		r.Remove(removed)
		r.Add(newSession("tv", ""))
		if r.Refresh(removed) || r.Refresh(old) {
			t.Fatal("Refresh reports a removed or replaced session online")
		}
		for range 5 { // 5 × 8s = 40s, well past the 10s TTL
			time.Sleep(ttl - 2*time.Second)
			if !r.Refresh(s) || !r.Refresh(s) {
				t.Fatal("Refresh of a live session = false")
			}
			exp.sweep(r)
		}
		if slices.Contains(exp.ids(), s.ID) {
			t.Fatal("a refreshed session expired")
		}
		time.Sleep(ttl + time.Second)
		if r.Refresh(s) {
			t.Error("Refresh revived a session past its TTL")
		}
		exp.sweep(r)
		if !slices.Contains(exp.ids(), s.ID) {
			t.Errorf("onExpire got %v, want %s among them", exp.ids(), s.ID)
		}
	})
}

func TestRegistryKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		busy := map[string]bool{}
		var asked []string
		keepAlive := func(s *session.Session) bool {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, s.DeviceID)
			return busy[s.ID]
		}
		r, exp := newRegistry(t, keepAlive)
		parked := newSession("parked", "alice", "news")
		idle := newSession("idle", "")
		r.Add(parked)
		r.Add(idle)
		mu.Lock()
		busy[parked.ID] = true
		mu.Unlock()

		time.Sleep(ttl + time.Second)
		exp.sweep(r)
		if got := exp.ids(); !slices.Equal(got, []string{idle.ID}) {
			t.Fatalf("onExpire got %v, want only the idle session", got)
		}
		mu.Lock()
		if slices.Sort(asked); !slices.Equal(asked, []string{"idle", "parked"}) {
			t.Errorf("keepAlive asked about %v", asked)
		}
		mu.Unlock()
		if got, ok := r.Get(parked.ID); !ok || got != parked {
			t.Fatal("vetoed session is gone from the cache")
		}
		if r.ByDevice("parked") != parked {
			t.Fatal("vetoed session was unindexed")
		}
		wantIDs(t, "ByUser(alice)", r.ByUser("alice"), parked)
		wantIDs(t, "ByTopic(news)", r.ByTopic("news"), parked)

		// The veto put it back with a fresh TTL.
		time.Sleep(ttl - time.Second)
		exp.sweep(r)
		if got := exp.ids(); len(got) != 1 {
			t.Fatalf("vetoed session expired before its fresh TTL: %v", got)
		}

		// Once no longer busy, it expires.
		mu.Lock()
		busy[parked.ID] = false
		mu.Unlock()
		time.Sleep(2 * time.Second)
		exp.sweep(r)
		if got := exp.ids(); !slices.Equal(got, []string{idle.ID, parked.ID}) {
			t.Fatalf("onExpire got %v", got)
		}
		wantCounts(t, r, 0, 0, 0)
	})
}

// TestRegistryKeepAliveAfterRemove: a veto cannot bring back a session that
// was removed or replaced explicitly.
func TestRegistryKeepAliveAfterRemove(t *testing.T) {
	r, _ := newRegistry(t, func(*session.Session) bool { return true })
	s := newSession("d", "")
	r.Add(s)
	if !r.Remove(s) {
		t.Fatal("Remove = false")
	}
	if _, ok := r.Get(s.ID); ok {
		t.Error("keepAlive revived a removed session")
	}
	repl := newSession("e", "")
	r.Add(repl)
	r.Add(newSession("e", ""))
	if _, ok := r.Get(repl.ID); ok {
		t.Error("keepAlive revived a replaced session")
	}
}

// TestRegistryConcurrent exercises every method at once under -race.
func TestRegistryConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := newRegistry(t, func(*session.Session) bool { return false })
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					s := newSession(fmt.Sprintf("d%d", i%10), fmt.Sprintf("u%d", g%3), "t", fmt.Sprintf("t%d", i%4))
					r.Add(s)
					r.Touch(s.ID)
					r.ByUser(s.UserID)
					r.ByTopic("t")
					r.All()
					r.Counts()
					if i%3 == 0 {
						r.Remove(s)
					}
					if i%50 == 0 {
						time.Sleep(ttl)
						r.DeleteExpired()
					}
				}
			})
		}
		wg.Wait()
		// Every index agrees with the device index.
		all := r.All()
		n, _, _ := r.Counts()
		if n != len(all) {
			t.Errorf("Counts sessions %d, All %d", n, len(all))
		}
		for _, s := range all {
			if r.ByDevice(s.DeviceID) != s {
				t.Errorf("All has %s not indexed by device", s.DeviceID)
			}
			if !slices.Contains(ids(r.ByUser(s.UserID)), s.ID) || !slices.Contains(ids(r.ByTopic("t")), s.ID) {
				t.Errorf("session %s missing from user/topic index", s.DeviceID)
			}
		}
		if got := len(r.ByTopic("t")); got != len(all) {
			t.Errorf("ByTopic(t) has %d sessions, want %d", got, len(all))
		}
	})
}

// The registry keeps time by the clock it is given, not the wall clock:
// the hub's Config.Now is the one clock of sessions and messages.
func TestRegistryUsesItsClock(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	exp := &expiries{}
	r := session.NewRegistry(ttl, clock, nil)
	s := newSession("phone", "")
	r.Add(s)
	advance(ttl - time.Second)
	if _, ok := r.Touch(s.ID); !ok {
		t.Fatal("Touch failed before the TTL")
	}
	advance(ttl - time.Second)
	exp.sweep(r)
	if got := exp.ids(); len(got) != 0 {
		t.Fatalf("expired %v although touched within the TTL", got)
	}
	advance(2 * time.Second)
	if _, ok := r.Get(s.ID); ok {
		t.Error("Get returns a session idle for the TTL by the registry's clock")
	}
	exp.sweep(r)
	if got := exp.ids(); !slices.Equal(got, []string{s.ID}) {
		t.Fatalf("onExpire got %v, want %v", got, []string{s.ID})
	}
}

func TestRegistryWildcardSubscriptions(t *testing.T) {
	r, _ := newRegistry(t, nil)
	exact := newSession("exact", "", "a/b")
	one := newSession("one", "", "a/*")
	deep := newSession("deep", "", "a/**", "a/b") // matched twice by a/b: listed once
	all := newSession("all", "", "**")
	top := newSession("top", "", "*", "$presence")
	for _, s := range []*session.Session{exact, one, deep, all, top} {
		r.Add(s)
	}
	wantIDs(t, "ByTopic(a/b)", r.ByTopic("a/b"), exact, one, deep, all)
	wantIDs(t, "ByTopic(a/b/c)", r.ByTopic("a/b/c"), deep, all)
	wantIDs(t, "ByTopic(a)", r.ByTopic("a"), all, top)
	wantIDs(t, "ByTopic(x/y)", r.ByTopic("x/y"), all)
	wantIDs(t, "ByTopic($presence)", r.ByTopic("$presence"), top) // system topics by name only
	r.Remove(all)
	r.Remove(top)
	wantIDs(t, "ByTopic(x/y) after removing **", r.ByTopic("x/y"))
}

func TestRegistryResubscribe(t *testing.T) {
	r, _ := newRegistry(t, nil)
	cur := newSession("d", "u", "a", "b/*")
	r.Add(cur)
	next := cur.WithTopics([]string{"b/*", "c"})
	if next.ID != cur.ID || next.DeviceID != "d" || next.UserID != "u" || next.CreatedAt != cur.CreatedAt {
		t.Fatalf("WithTopics changed more than the topics: %+v", next)
	}
	if !r.Resubscribe(cur, next) {
		t.Fatal("Resubscribe of an online session failed")
	}
	wantIDs(t, "ByTopic(a)", r.ByTopic("a"))
	wantIDs(t, "ByTopic(b/x)", r.ByTopic("b/x"), next)
	wantIDs(t, "ByTopic(c)", r.ByTopic("c"), next)
	if got, ok := r.Get(cur.ID); !ok || got != next {
		t.Fatalf("Get = %v %v, want the new value", got, ok)
	}
	if r.ByDevice("d") != next || len(r.ByUser("u")) != 1 || r.ByUser("u")[0] != next {
		t.Fatal("device and user indexes still hold the old value")
	}
	if r.Refresh(cur) {
		t.Error("the old value is still online to Refresh")
	}
	if !r.Refresh(next) {
		t.Error("the new value is not online to Refresh")
	}
	if r.Resubscribe(cur, cur.WithTopics(nil)) {
		t.Error("Resubscribe of a value no longer online succeeded")
	}
	wantCounts(t, r, 1, 1, 2)
}

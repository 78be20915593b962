package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/longpoll/longpoll/internal/testwait"
	"github.com/longpoll/longpoll/jobs"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// countingHub counts job runs.
type countingHub struct{ cleanups, heartbeats atomic.Int64 }

func (h *countingHub) Cleanup(time.Time) poll.CleanupResult {
	h.cleanups.Add(1)
	return poll.CleanupResult{}
}
func (h *countingHub) Heartbeat(time.Time) int { h.heartbeats.Add(1); return 0 }

// waitFor waits (bounded: 10 s) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, 10*time.Second, cond)
}

func TestSchedulerRunsBothJobsAndStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := &countingHub{}
	s, err := jobs.Start(h, jobs.Config{CleanupInterval: 10 * time.Millisecond, HeartbeatInterval: 15 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two runs of each job", func() bool { return h.cleanups.Load() >= 2 && h.heartbeats.Load() >= 2 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// goleak (deferred) proves no scheduler goroutine is left, so no job
	// can run after Stop.
}

func TestHeartbeatZeroIsOff(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := &countingHub{}
	s, err := jobs.Start(h, jobs.Config{CleanupInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cleanups", func() bool { return h.cleanups.Load() >= 3 })
	_ = s.Stop()
	if h.heartbeats.Load() != 0 {
		t.Fatalf("heartbeat ran %d times with interval 0", h.heartbeats.Load())
	}
}

func TestStartRejectsBadIntervals(t *testing.T) {
	if _, err := jobs.Start(&countingHub{}, jobs.Config{}); err == nil {
		t.Fatal("zero cleanup interval accepted")
	}
	if _, err := jobs.Start(&countingHub{}, jobs.Config{CleanupInterval: time.Second, HeartbeatInterval: -time.Second}); err == nil {
		t.Fatal("negative heartbeat accepted")
	}
}

// TestScheduledJobsOnARealHub runs the real jobs on short intervals: an idle
// session expires (poll → not found, presence offline/expired), a polling
// session does not, and the heartbeat reaches a parked poll.
func TestScheduledJobsOnARealHub(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const ttl = 300 * time.Millisecond
	hub := poll.NewHub(poll.Config{SessionTTL: ttl})
	defer hub.Close()
	connect := func(dev string, topics ...string) *session.Session {
		s, err := hub.Connect(session.Request{DeviceID: dev, Topics: topics})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	idle := connect("idle")
	busy := connect("busy")
	watcher := connect("watcher", session.TopicPresence)

	s, err := jobs.Start(hub, jobs.Config{CleanupInterval: 20 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	// busy keeps polling (parked polls with short holds, acknowledging
	// heartbeats), and the watcher reads its $presence messages, until the
	// idle session's offline/expired event and a heartbeat have arrived.
	// (The event follows the session's removal from the registry, so the
	// test waits for the event itself, not for the removal.)
	var cursor, watched uint64
	var sawHeartbeat, sawExpired bool
	deadline := time.Now().Add(10 * time.Second)
	for !sawExpired || !sawHeartbeat {
		if time.Now().After(deadline) {
			t.Fatalf("idle expired: %v, heartbeat seen: %v", sawExpired, sawHeartbeat)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		msgs, err := hub.Poll(ctx, busy.ID, cursor, cursor > 0)
		cancel()
		if err != nil {
			t.Fatalf("the polling session failed: %v", err)
		}
		for _, m := range msgs {
			sawHeartbeat = sawHeartbeat || m.Topic == session.TopicHeartbeat
			cursor = m.Seq
		}
		msgs, err = hub.Poll(canceled(), watcher.ID, watched, watched > 0)
		if err != nil {
			t.Fatalf("watcher: %v", err)
		}
		for _, m := range msgs {
			watched = m.Seq
			var p struct{ Event, DeviceID, Reason string }
			_ = json.Unmarshal(m.Data, &p)
			sawExpired = sawExpired || (p.Event == "offline" && p.DeviceID == "idle" && p.Reason == "expired")
			if p.Event == "offline" && p.DeviceID != "idle" {
				t.Fatalf("session %s went offline (%s)", p.DeviceID, p.Reason)
			}
		}
	}
	if _, err := hub.Poll(context.Background(), idle.ID, 0, false); !errors.Is(err, poll.ErrSessionNotFound) {
		t.Fatalf("poll on expired session: %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

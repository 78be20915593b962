package poll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll/session"
)

func connect(t testing.TB, h *Hub, device, user string, topics ...string) *session.Session {
	t.Helper()
	s, err := h.Connect(session.Request{DeviceID: device, UserID: user, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pollNow polls without waiting: pending messages or nil.
func pollNow(t testing.TB, h *Hub, id string, cursor uint64) []Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := h.Poll(ctx, id, cursor, cursor > 0)
	if err != nil {
		t.Fatalf("poll %s: %v", session.ShortID(id), err)
	}
	return msgs
}

func datas(msgs []Message) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if m.Topic == session.TopicPresence || m.Topic == session.TopicHeartbeat {
			continue
		}
		out = append(out, string(m.Data))
	}
	return out
}

func publish(t testing.TB, h *Hub, to Target, data string) Result {
	t.Helper()
	res, err := h.Publish(Push{To: to, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatalf("publish %v %s: %v", to, data, err)
	}
	return res
}

func TestHubRoutesToEveryTargetKind(t *testing.T) {
	h := NewHub(Config{})
	a1 := connect(t, h, "a-phone", "alice", "news")
	a2 := connect(t, h, "a-laptop", "alice")
	b := connect(t, h, "b-phone", "bob", "news")

	cases := []struct {
		to        Target
		data      string
		delivered int
	}{
		{Target{SessionID: a1.ID}, `"s"`, 1},
		{Target{DeviceID: "a-laptop"}, `"d"`, 1},
		{Target{UserID: "alice"}, `"u"`, 2},
		{Target{Topic: "news"}, `"t"`, 2},
		{Target{}, `"all"`, 3},
	}
	for _, c := range cases {
		if res := publish(t, h, c.to, c.data); res.Delivered != c.delivered || res.Stored != 0 {
			t.Errorf("%v: %+v, want delivered %d", c.to, res, c.delivered)
		}
	}
	want := map[string]string{
		a1.ID: `["s" "u" "t" "all"]`,
		a2.ID: `["d" "u" "all"]`,
		b.ID:  `["t" "all"]`,
	}
	for id, w := range want {
		if got := fmt.Sprint(datas(pollNow(t, h, id, 0))); got != w {
			t.Errorf("%s got %s, want %s", session.ShortID(id), got, w)
		}
	}
	if _, err := h.Publish(Push{To: Target{SessionID: "nope"}}); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("unknown session: %v", err)
	}
}

func TestHubOfflineMessagesLandInOrderOnNextConnect(t *testing.T) {
	h := NewHub(Config{})
	publish(t, h, Target{DeviceID: "lamp"}, `1`)
	publish(t, h, Target{UserID: "alice"}, `2`)
	publish(t, h, Target{DeviceID: "lamp"}, `3`)
	if res := publish(t, h, Target{UserID: "alice"}, `4`); res.Stored != 1 || res.Delivered != 0 {
		t.Fatalf("offline push result %+v", res)
	}
	if h.Stats().OfflineMessages != 4 {
		t.Fatalf("stats %+v", h.Stats())
	}
	s := connect(t, h, "lamp", "alice")
	if got := fmt.Sprint(datas(pollNow(t, h, s.ID, 0))); got != "[1 2 3 4]" {
		t.Fatalf("got %s, want [1 2 3 4]", got)
	}
	if h.Stats().OfflineMessages != 0 {
		t.Fatalf("offline store not drained: %+v", h.Stats())
	}
}

func TestHubOfflineMessagesExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		if _, err := h.Publish(Push{To: Target{DeviceID: "lamp"}, Data: json.RawMessage(`"short"`), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		publish(t, h, Target{DeviceID: "lamp"}, `"long"`)
		time.Sleep(2 * time.Minute)
		if res := h.Cleanup(time.Now()); res.OfflineExpired != 1 {
			t.Fatalf("cleanup dropped %d, want 1", res.OfflineExpired)
		}
		s := connect(t, h, "lamp", "")
		if got := fmt.Sprint(datas(pollNow(t, h, s.ID, 0))); got != `["long"]` {
			t.Fatalf("got %s", got)
		}
	})
}

func TestHubReplaceMovesUnackedInOrder(t *testing.T) {
	h := NewHub(Config{})
	old := connect(t, h, "lamp", "alice")
	for i := 1; i <= 4; i++ {
		publish(t, h, Target{DeviceID: "lamp"}, fmt.Sprint(i))
	}
	if got := fmt.Sprint(datas(pollNow(t, h, old.ID, 0))); got != "[1 2 3 4]" {
		t.Fatalf("old session got %s", got)
	}
	msgs := pollNow(t, h, old.ID, 2) // acknowledges 1 and 2 (the seqs)
	if got := fmt.Sprint(datas(msgs)); got != "[3 4]" {
		t.Fatalf("after ack: %s", got)
	}
	publish(t, h, Target{UserID: "alice"}, `5`) // to the user: also in the old mailbox

	repl := connect(t, h, "lamp", "alice")
	if _, err := h.Poll(context.Background(), old.ID, 0, false); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("poll on replaced session: %v", err)
	}
	msgs = pollNow(t, h, repl.ID, 0)
	if got := fmt.Sprint(datas(msgs)); got != "[3 4 5]" {
		t.Fatalf("new session got %s, want [3 4 5]", got)
	}
	if msgs[0].Seq != 1 {
		t.Fatalf("new mailbox starts at seq %d", msgs[0].Seq)
	}
	// A push to the old session ID now fails; to the device reaches the new one.
	if _, err := h.Publish(Push{To: Target{SessionID: old.ID}}); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("push to replaced session: %v", err)
	}
	if st := h.Stats(); st.Sessions != 1 || st.Devices != 1 || st.Users != 1 {
		t.Fatalf("stats after replace: %+v", st)
	}
}

func TestHubReplaceAnswersParkedPollSessionClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		old := connect(t, h, "lamp", "")
		parked := make(chan error)
		go func() {
			_, err := h.Poll(context.Background(), old.ID, 0, false)
			parked <- err
		}()
		synctest.Wait()
		if h.Stats().Parked != 1 {
			t.Fatalf("stats %+v", h.Stats())
		}
		connect(t, h, "lamp", "")
		if err := <-parked; !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("parked poll: %v, want ErrSessionClosed", err)
		}
		if h.Stats().Parked != 0 {
			t.Fatalf("stats %+v", h.Stats())
		}
	})
}

func TestHubDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "alice")
		watcher := connect(t, h, "console", "", session.TopicPresence)
		publish(t, h, Target{DeviceID: "lamp"}, `"kept"`)
		publish(t, h, Target{DeviceID: "lamp"}, `"acked"`)
		msgs := pollNow(t, h, s.ID, 0)
		if err := h.Disconnect(s.ID, 99, true); !errors.Is(err, ErrInvalidCursor) {
			t.Fatalf("disconnect with bad cursor: %v", err)
		}
		parked := make(chan error)
		go func() {
			_, err := h.Poll(context.Background(), s.ID, msgs[1].Seq, true) // acks both, parks
			parked <- err
		}()
		synctest.Wait()
		publish(t, h, Target{DeviceID: "lamp"}, `"unacked"`)
		<-parked
		if err := h.Disconnect(s.ID, msgs[1].Seq, true); err != nil {
			t.Fatal(err)
		}
		if err := h.Disconnect(s.ID, 0, false); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("second disconnect: %v", err)
		}
		if _, err := h.Poll(context.Background(), s.ID, 0, false); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("poll after disconnect: %v", err)
		}
		// The unacknowledged message waits for the device's next session.
		if st := h.Stats(); st.OfflineMessages != 1 || st.Sessions != 1 {
			t.Fatalf("stats %+v", st)
		}
		next := connect(t, h, "lamp", "alice")
		if got := fmt.Sprint(datas(pollNow(t, h, next.ID, 0))); got != `["unacked"]` {
			t.Fatalf("next session got %s", got)
		}
		var events []string
		for _, m := range pollNow(t, h, watcher.ID, 0) {
			var p struct{ Event, DeviceID, Reason string }
			_ = json.Unmarshal(m.Data, &p)
			events = append(events, p.Event+"/"+p.DeviceID+"/"+p.Reason)
		}
		want := "[online/console/connect offline/lamp/disconnect online/lamp/connect]"
		if fmt.Sprint(events) != want {
			t.Fatalf("presence %v, want %s", events, want)
		}
	})
}

func TestHubDisconnectAnswersParkedPollSessionClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "")
		parked := make(chan error)
		go func() {
			_, err := h.Poll(context.Background(), s.ID, 0, false)
			parked <- err
		}()
		synctest.Wait()
		if err := h.Disconnect(s.ID, 0, false); err != nil {
			t.Fatal(err)
		}
		if err := <-parked; !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("parked poll: %v", err)
		}
	})
}

func TestHubExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{SessionTTL: time.Minute})
		idle := connect(t, h, "idle", "")
		busy := connect(t, h, "busy", "")
		parkedDev := connect(t, h, "parked", "")
		watcher := connect(t, h, "watcher", "", session.TopicPresence)
		publish(t, h, Target{DeviceID: "idle"}, `"waiting"`)
		parked := make(chan error)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			_, err := h.Poll(ctx, parkedDev.ID, 0, false)
			parked <- err
		}()
		for range 4 { // 4 × 30 s: busy and watcher poll, idle does not
			time.Sleep(30 * time.Second)
			pollNow(t, h, busy.ID, 0)
			pollNow(t, h, watcher.ID, 0)
			h.Cleanup(time.Now())
		}
		if _, err := h.Poll(context.Background(), idle.ID, 0, false); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("idle session still polls: %v", err)
		}
		if st := h.Stats(); st.Sessions != 3 || st.Parked != 1 {
			t.Fatalf("stats %+v", st)
		}
		var events []string
		for _, m := range pollNow(t, h, watcher.ID, 0) {
			var p struct{ Event, DeviceID, Reason string }
			_ = json.Unmarshal(m.Data, &p)
			events = append(events, p.Event+"/"+p.DeviceID+"/"+p.Reason)
		}
		if fmt.Sprint(events[len(events)-1:]) != "[offline/idle/expired]" {
			t.Fatalf("presence %v", events)
		}
		// The expired session's unacknowledged message waits for the device.
		next := connect(t, h, "idle", "")
		if got := fmt.Sprint(datas(pollNow(t, h, next.ID, 0))); got != `["waiting"]` {
			t.Fatalf("reconnected device got %s", got)
		}
		h.Close()
		if err := <-parked; err != nil {
			t.Fatalf("parked poll at close: %v", err)
		}
	})
}

func TestHubIdempotentPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "")
		p := Push{To: Target{DeviceID: "lamp"}, Data: json.RawMessage(`1`), Key: "k", TTL: time.Minute}
		r1, err := h.Publish(p)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := h.Publish(p)
		if err != nil || !r2.Duplicate || r2.ID != r1.ID || r2.Delivered != 1 {
			t.Fatalf("repeat: %+v %v (first %+v)", r2, err, r1)
		}
		// A client's send with the same id is a different key space.
		if r3, _ := h.Send(s.ID, p); r3.Duplicate {
			t.Fatal("send shares the publisher's idempotency keys")
		}
		if got := len(datas(pollNow(t, h, s.ID, 0))); got != 2 {
			t.Fatalf("delivered %d copies, want 2 (push + send)", got)
		}
		time.Sleep(2 * time.Minute)
		h.Cleanup(time.Now())
		if r4, _ := h.Publish(p); r4.Duplicate {
			t.Fatal("key remembered past its ttl")
		}
	})
}

func TestHubFailedPushDoesNotConsumeKey(t *testing.T) {
	h := NewHub(Config{MaxMailbox: 1})
	s := connect(t, h, "lamp", "")
	publish(t, h, Target{SessionID: s.ID}, `0`)
	p := Push{To: Target{SessionID: s.ID}, Data: json.RawMessage(`1`), Key: "k"}
	if _, err := h.Publish(p); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("full mailbox: %v", err)
	}
	pollNow(t, h, s.ID, 1)
	if r, err := h.Publish(p); err != nil || r.Duplicate || r.Delivered != 1 {
		t.Fatalf("retry after room: %+v %v", r, err)
	}
}

func TestHubFanOutCountsRejected(t *testing.T) {
	h := NewHub(Config{MaxMailbox: 1})
	a := connect(t, h, "a", "u", "t")
	connect(t, h, "b", "u", "t")
	publish(t, h, Target{SessionID: a.ID}, `0`)
	for _, to := range []Target{{UserID: "u"}, {Topic: "t"}, {}} {
		res := publish(t, h, to, `1`)
		if res.Delivered+res.Rejected != 2 || res.Rejected < 1 {
			t.Fatalf("%v: %+v", to, res)
		}
	}
	if _, err := h.Publish(Push{To: Target{DeviceID: "a"}}); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("single device target: %v", err)
	}
	publish(t, h, Target{DeviceID: "offline"}, `1`)
	if _, err := h.Publish(Push{To: Target{DeviceID: "offline"}}); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("full offline store: %v", err)
	}
}

func TestHubSendStampsFrom(t *testing.T) {
	h := NewHub(Config{})
	a := connect(t, h, "a-phone", "alice")
	b := connect(t, h, "b-gw", "")
	if _, err := h.Send(a.ID, Push{To: Target{DeviceID: "b-gw"}, Data: json.RawMessage(`"hi"`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Send(b.ID, Push{To: Target{UserID: "alice"}, Data: json.RawMessage(`"yo"`)}); err != nil {
		t.Fatal(err)
	}
	if m := pollNow(t, h, b.ID, 0); len(m) != 1 || m[0].From != "alice/a-phone" {
		t.Fatalf("b got %+v", m)
	}
	if m := pollNow(t, h, a.ID, 0); len(m) != 1 || m[0].From != "b-gw" {
		t.Fatalf("a got %+v", m)
	}
	if _, err := h.Send("nope", Push{To: Target{UserID: "alice"}}); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("unknown sender: %v", err)
	}
}

func TestHubHeartbeatReachesParkedPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		s := connect(t, h, "lamp", "")
		got := make(chan []Message)
		go func() {
			msgs, _ := h.Poll(context.Background(), s.ID, 0, false)
			got <- msgs
		}()
		synctest.Wait()
		if n := h.Heartbeat(time.Now()); n != 1 {
			t.Fatalf("heartbeat reached %d", n)
		}
		msgs := <-got
		if len(msgs) != 1 || msgs[0].Topic != session.TopicHeartbeat {
			t.Fatalf("got %+v", msgs)
		}
		var d struct{ Time string }
		if json.Unmarshal(msgs[0].Data, &d) != nil || d.Time == "" {
			t.Fatalf("heartbeat data %s", msgs[0].Data)
		}
	})
}

func TestHubCloseWakesEveryParkedPollAndRefusesWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{})
		var wg sync.WaitGroup
		for i := range 50 {
			s := connect(t, h, fmt.Sprint("d", i), "")
			wg.Go(func() {
				msgs, err := h.Poll(context.Background(), s.ID, 0, false)
				if msgs != nil || err != nil {
					t.Errorf("woken poll: %v %v", msgs, err)
				}
			})
		}
		synctest.Wait()
		if h.Stats().Parked != 50 {
			t.Fatalf("parked %d", h.Stats().Parked)
		}
		h.Close()
		wg.Wait()
		if _, err := h.Connect(session.Request{DeviceID: "late"}); !errors.Is(err, ErrClosed) {
			t.Fatalf("connect after close: %v", err)
		}
		if _, err := h.Publish(Push{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("publish after close: %v", err)
		}
		h.Close() // idempotent
	})
}

// TestHubConcurrentDeliveryExactlyOnceInOrder: 200 sessions each get 50
// targeted pushes from concurrent publishers while re-polling with their
// cursor, with broadcasts interleaved. Every message arrives exactly once;
// per publisher per session, and for broadcasts, order is kept.
func TestHubConcurrentDeliveryExactlyOnceInOrder(t *testing.T) {
	const sessions, perSession, publishers, broadcasts = 200, 50, 8, 20
	h := NewHub(Config{MaxMailbox: perSession + broadcasts + 10})
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = connect(t, h, fmt.Sprint("dev-", i), "").ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	type item struct{ Pub, N, Session int }
	var pubs sync.WaitGroup
	// Publisher p sends to each session the numbers n ≡ p (mod publishers).
	for p := range publishers {
		pubs.Go(func() {
			order := rand.Perm(sessions)
			for n := p; n < perSession; n += publishers {
				for _, s := range order {
					data, _ := json.Marshal(item{p, n, s})
					if _, err := h.Publish(Push{To: Target{SessionID: ids[s]}, Data: data}); err != nil {
						t.Errorf("push: %v", err)
						return
					}
				}
			}
		})
	}
	pubs.Go(func() {
		for n := range broadcasts {
			data, _ := json.Marshal(item{-1, n, -1})
			if _, err := h.Publish(Push{Data: data}); err != nil {
				t.Errorf("broadcast: %v", err)
			}
		}
	})

	var readers sync.WaitGroup
	for s := range sessions {
		readers.Go(func() {
			next := make(map[int]int) // publisher -> next expected n
			var cursor, lastSeq uint64
			want := perSession + broadcasts
			for got := 0; got < want; {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				msgs, err := h.Poll(pctx, ids[s], cursor, cursor > 0)
				pcancel()
				if err != nil || ctx.Err() != nil {
					t.Errorf("session %d after %d: %v %v", s, got, err, ctx.Err())
					return
				}
				for _, m := range msgs {
					if m.Seq != lastSeq+1 {
						t.Errorf("session %d: seq %d after %d", s, m.Seq, lastSeq)
						return
					}
					lastSeq = m.Seq
					var it item
					_ = json.Unmarshal(m.Data, &it)
					if it.Pub >= 0 && it.Session != s {
						t.Errorf("session %d got a message for %d", s, it.Session)
						return
					}
					exp := next[it.Pub]
					if it.Pub >= 0 && exp == 0 {
						exp = it.Pub
					}
					if it.N != exp {
						t.Errorf("session %d publisher %d: got n=%d, want %d (lost, duplicated or reordered)", s, it.Pub, it.N, exp)
						return
					}
					if it.Pub >= 0 {
						next[it.Pub] = exp + publishers
					} else {
						next[it.Pub] = exp + 1
					}
					got++
				}
				if len(msgs) > 0 {
					cursor = lastSeq
				}
			}
			// Nothing extra arrives after the expected set.
			if extra := pollNow(t, h, ids[s], cursor); len(extra) != 0 {
				t.Errorf("session %d: %d unexpected extra messages", s, len(extra))
			}
		})
	}
	pubs.Wait()
	readers.Wait()
}

func TestHubMaxSessionsAndEndSessions(t *testing.T) {
	h := NewHub(Config{MaxSessions: 2})
	connect(t, h, "a", "u")
	b := connect(t, h, "b", "u")
	if _, err := h.Connect(session.Request{DeviceID: "c"}); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("connect beyond max: %v", err)
	}
	connect(t, h, "b", "u") // a replacement is always allowed
	if n, err := h.EndSessions(Target{SessionID: b.ID}); err != nil || n != 0 {
		t.Fatalf("replaced session ended again: %d", n)
	}
	if n, err := h.EndSessions(Target{UserID: "u"}); err != nil || n != 2 {
		t.Fatalf("ended %d sessions of user u, want 2", n)
	}
	if st := h.Stats(); st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
	connect(t, h, "c", "")
	if n, err := h.EndSessions(Target{DeviceID: "c"}); err != nil || n != 1 {
		t.Fatalf("ended %d sessions of device c", n)
	}
}

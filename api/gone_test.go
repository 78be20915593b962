package api_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
)

// outcomes counts answered polls by outcome.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) PollAnswered(_ time.Duration, outcome string, _ []poll.Message, _ time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[outcome]++
}

func (o *outcomes) count(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[outcome]
}

// reset closes c with a reset (RST), as a client that dies does.
func reset(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// A parked poll whose client resets or closes its connection is noticed
// within the liveness interval, on a fresh connection (parked by echo) and
// on a taken-over one (parked by the raw path): the server closes its end,
// the poll's place under --max-parked-per-ip is free again, the poll counts
// as gone, and its messages stay for the next poll.
func TestGoneClientsAreNoticed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owned bool
		close func(*testing.T, net.Conn)
	}{
		{"fresh connection, reset", false, reset},
		{"taken-over connection, reset", true, reset},
		{"taken-over connection, closed", true, func(_ *testing.T, c net.Conn) { c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &outcomes{}
			p := newParkServer(t, api.Config{MaxParkedPerIP: 1, Polls: obs, Timeouts: h1.Timeouts{Liveness: 50 * time.Millisecond}})
			sid := p.connect(t, "lamp")
			var c *rawClient
			cursor := "0"
			if tc.owned {
				c = answeredPoll(t, p, sid)
				cursor = "1"
			} else {
				c = dialRaw(t, p.addr)
			}
			c.send("GET", "/data?timeout=60&cursor="+cursor+"&sessionId="+sid, "")
			waitUntil(t, "the poll parked", func() bool { return p.hub.Stats().Parked == 1 })
			tc.close(t, c.conn)
			waitUntil(t, "the poll noticed gone", func() bool {
				return p.hub.Stats().Parked == 0 && p.ln.Stats().Parked == 0 && p.ln.Stats().Held == 0 && obs.count("gone") == 1
			})
			// The place under the cap is free: a new poll is not refused.
			if _, err := p.hub.Publish(poll.Push{To: poll.Target{SessionID: sid}, Data: []byte(`"kept"`)}); err != nil {
				t.Fatal(err)
			}
			c2 := dialRaw(t, p.addr)
			c2.send("GET", "/data?timeout=0&cursor="+cursor+"&sessionId="+sid, "")
			if res, body := c2.read(); res.StatusCode != 200 || !strings.Contains(body, `"kept"`) {
				t.Fatalf("the next poll: %d %q", res.StatusCode, body)
			}
		})
	}
}

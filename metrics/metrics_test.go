package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/metrics"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

type rig struct {
	t   *testing.T
	hub *poll.Hub
	h   http.Handler
}

func newRig(t *testing.T) *rig {
	var hub *poll.Hub
	m := metrics.New(metrics.Sources{Stats: func() poll.Stats { return hub.Stats() }})
	hub = poll.NewHub(poll.Config{MaxMailbox: 2, Observer: m})
	t.Cleanup(hub.Close)
	e := api.New(hub, api.Config{Polls: m, Metrics: m.Handler(), Jitter: func() float64 { return 1 }})
	return &rig{t, hub, e}
}

func (r *rig) do(method, target, body string) int {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr = "127.0.0.1:5000"
	req.Host = "localhost" // a local publisher
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec.Code
}

func (r *rig) scrape() map[string]*dto.MetricFamily {
	req := httptest.NewRequest("GET", "/metrics", nil)
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		r.t.Fatalf("/metrics: %d", rec.Code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		r.t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the value of family name with the given label pairs
// (counter, gauge, or a histogram's sample count).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func TestMetricsMatchKnownTraffic(t *testing.T) {
	r := newRig(t)
	sessions := map[string]*session.Session{}
	for _, d := range []string{"a", "b", "c"} {
		s, err := r.hub.Connect(session.Request{DeviceID: d, UserID: "u-" + d, Topics: []string{"news"}})
		if err != nil {
			t.Fatal(err)
		}
		sessions[d] = s
	}
	// replace c, disconnect b
	if _, err := r.hub.Connect(session.Request{DeviceID: "c", Topics: []string{"news"}}); err != nil {
		t.Fatal(err)
	}
	if code := r.do("DELETE", "/session?sessionId="+sessions["b"].ID, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	// pushes: 2 to device a (delivered), 1 to an offline device (stored),
	// 1 topic fan-out (a gets it, a's mailbox is then full; c2 gets it),
	// 1 more to device a (refused: mailbox_full), 1 to an unknown session.
	for _, body := range []string{
		`{"to":{"deviceId":"a"},"data":1}`,
		`{"to":{"deviceId":"zz"},"data":2}`,
		`{"to":{"topic":"news"},"data":3}`,
	} {
		if code := r.do("POST", "/push", body); code != 202 {
			t.Fatalf("push %s: %d", body, code)
		}
	}
	if code := r.do("POST", "/push", `{"to":{"deviceId":"a"},"data":4}`); code != 429 {
		t.Fatalf("full: %d", code)
	}
	if code := r.do("POST", "/push", `{"to":{"topic":"news"},"data":5}`); code != 202 {
		t.Fatalf("fan-out with a full mailbox: %d", code)
	}
	if code := r.do("POST", "/push", `{"to":{"sessionId":"nope"},"data":6}`); code != 404 {
		t.Fatalf("unknown session: %d", code)
	}
	// polls: a gets its 2 messages (latency observed twice), then again
	// without ack (redelivery), then acks and times out.
	a := sessions["a"].ID
	if code := r.do("GET", "/data?timeout=0&sessionId="+a, ""); code != 200 {
		t.Fatalf("poll: %d", code)
	}
	r.do("GET", "/data?timeout=0&sessionId="+a, "")
	if code := r.do("GET", "/data?timeout=0&cursor=2&sessionId="+a, ""); code != 204 {
		t.Fatalf("poll after ack: %d", code)
	}
	r.do("GET", "/data?timeout=0&sessionId=unknown", "")

	f := r.scrape()
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"longpoll_connects_total", nil, 4},
		{"longpoll_session_ends_total", []string{"reason", "replaced"}, 1},
		{"longpoll_session_ends_total", []string{"reason", "disconnect"}, 1},
		{"longpoll_sessions", nil, 2},
		{"longpoll_offline_messages", nil, 1},
		{"longpoll_pushes_total", []string{"target", "device"}, 2},
		{"longpoll_pushes_total", []string{"target", "topic"}, 2},
		{"longpoll_messages_delivered_total", []string{"target", "device"}, 1},
		{"longpoll_messages_stored_offline_total", []string{"target", "device"}, 1},
		{"longpoll_messages_delivered_total", []string{"target", "topic"}, 3},
		{"longpoll_messages_rejected_total", []string{"target", "topic"}, 1},
		{"longpoll_messages_rejected_total", []string{"target", "device"}, 1},
		{"longpoll_pushes_refused_total", []string{"target", "device", "code", "mailbox_full"}, 1},
		{"longpoll_pushes_refused_total", []string{"target", "session", "code", "session_not_found"}, 1},
		{"longpoll_polls_total", []string{"outcome", "messages"}, 2},
		{"longpoll_polls_total", []string{"outcome", "timeout"}, 1},
		{"longpoll_polls_total", []string{"outcome", "not_found"}, 1},
		{"longpoll_poll_hold_seconds", nil, 4},
		{"longpoll_push_delivery_latency_seconds", nil, 2},
		{"longpoll_messages_redelivered_total", nil, 2},
		{"longpoll_mailbox_backlog", nil, 2}, // c's two topic messages
		{"longpoll_parked_polls", nil, 0},
	}
	for _, c := range checks {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// A parked poll shows in the gauge; an expiry counts as a session end.
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = r.hub.Poll(ctx, a, 2, true)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for value(t, r.scrape(), "longpoll_parked_polls") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("parked poll never counted")
		}
		time.Sleep(2 * time.Millisecond) // interval of a bounded wait
	}
	r.hub.Close()
	<-done
}

// Package metrics exposes longpoll's Prometheus metrics: gauges read from
// the hub at scrape time, counters fed by the hub (as its poll.Observer) and
// histograms fed by the HTTP edge (poll holds, push-to-delivery latency).
// Everything is registered on a private registry served by Handler.
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// Metrics holds the collectors. It implements poll.Observer; its methods
// are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	pushes         *prometheus.CounterVec // by target kind
	delivered      *prometheus.CounterVec // mailbox appends, by target kind
	storedOffline  *prometheus.CounterVec
	rejected       *prometheus.CounterVec // full mailboxes, by target kind
	refused        *prometheus.CounterVec // pushes refused whole, by target and code
	offlineExpired prometheus.Counter
	connects       prometheus.Counter
	sessionEnds    *prometheus.CounterVec // by reason
	polls          *prometheus.CounterVec // by outcome
	pollsBy        map[string]prometheus.Counter
	byKind         [poll.ToTopic + 1]kindCounters // pushes is the hot path
	holdSeconds    prometheus.Histogram
	latencySeconds prometheus.Histogram
	redelivered    prometheus.Counter
	commitSeconds  prometheus.Histogram // nil without a durable store
}

// Sources of the gauges, read at scrape time.
type Sources struct {
	Stats func() poll.Stats
	// Edge, when set, reports the HTTP edge's taken-over connections.
	Edge func() EdgeStats
	// DiskBytes and WriteErrors, set with a durable store, report the
	// data directory's size as the engine counts it, and failed writes
	// (the store stops writing at the first). Each gauge asks its own, so
	// a scrape reads the engine's metrics once.
	DiskBytes   func() uint64
	WriteErrors func() int
}

// EdgeStats are the HTTP edge's counts of its taken-over connections.
type EdgeStats struct {
	// Unsent is what the unsent rests of answers allocate now.
	Unsent int64
	// Dropped counts clients dropped for not taking their answer: within
	// the write timeout, or at once when it did not fit the bound on
	// Unsent.
	Dropped int64
}

// New registers every metric; gauges read src.Stats at each scrape.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	f := promauto{reg}
	m := &Metrics{
		reg:            reg,
		pushes:         f.counterVec("longpoll_pushes_total", "Pushes and sends accepted, by target kind (session, device, user, topic, broadcast).", "target"),
		delivered:      f.counterVec("longpoll_messages_delivered_total", "Messages put into session mailboxes, by target kind of their push.", "target"),
		storedOffline:  f.counterVec("longpoll_messages_stored_offline_total", "Messages stored for an offline device or user, by target kind.", "target"),
		rejected:       f.counterVec("longpoll_messages_rejected_total", "Messages refused because a mailbox or offline store was full, by target kind.", "target"),
		refused:        f.counterVec("longpoll_pushes_refused_total", "Pushes refused whole (unknown session, full single target, shutting down), by target kind and error code.", "target", "code"),
		offlineExpired: f.counter("longpoll_offline_messages_expired_total", "Offline messages dropped past their ttl."),
		connects:       f.counter("longpoll_connects_total", "Sessions started by POST /connect."),
		sessionEnds:    f.counterVec("longpoll_session_ends_total", "Sessions ended, by reason (disconnect, replaced, expired).", "reason"),
		polls:          f.counterVec("longpoll_polls_total", "Polls answered, by outcome (messages, timeout, superseded, closed, not_found, invalid, shutdown, gone).", "outcome"),
		holdSeconds: f.histogram("longpoll_poll_hold_seconds", "How long a poll was held before its answer.",
			[]float64{.001, .01, .1, .5, 1, 5, 10, 20, 30, 60, 120}),
		latencySeconds: f.histogram("longpoll_push_delivery_latency_seconds", "From a push being accepted to the first poll response that carries it.",
			[]float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30}),
		redelivered: f.counter("longpoll_messages_redelivered_total", "Messages sent again because the client had not acknowledged them."),
	}
	// Resolve the known outcomes once: polls are the hot path.
	m.pollsBy = make(map[string]prometheus.Counter)
	for _, o := range []string{"messages", "timeout", "superseded", "closed", "not_found", "invalid", "gone", "shutdown", "unavailable", "error"} {
		m.pollsBy[o] = m.polls.WithLabelValues(o)
	}
	for k := range m.byKind {
		l := poll.TargetKind(k).String()
		m.byKind[k] = kindCounters{m.pushes.WithLabelValues(l), m.delivered.WithLabelValues(l),
			m.storedOffline.WithLabelValues(l), m.rejected.WithLabelValues(l)}
	}
	gauge := func(name, help string, v func(poll.Stats) int) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(v(src.Stats())) }))
	}
	gauge("longpoll_sessions", "Online sessions.", func(s poll.Stats) int { return s.Sessions })
	gauge("longpoll_parked_polls", "Polls parked now.", func(s poll.Stats) int { return s.Parked })
	gauge("longpoll_users", "Distinct users online.", func(s poll.Stats) int { return s.Users })
	gauge("longpoll_offline_messages", "Messages waiting for an offline device or user.", func(s poll.Stats) int { return s.OfflineMessages })
	gauge("longpoll_mailbox_backlog", "Unacknowledged messages in session mailboxes.", func(s poll.Stats) int { return s.Backlog })
	gauge("longpoll_stored_bytes", "Bytes the server stores, as --max-stored-bytes counts them: messages in mailboxes and the offline store, and idempotency ids.", func(s poll.Stats) int { return int(s.StoredBytes) })
	gauge("longpoll_idempotency_ids", "Idempotency ids remembered.", func(s poll.Stats) int { return s.IdempotencyIDs })
	if src.Edge != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "longpoll_unsent_answer_bytes",
			Help: "Bytes that the unsent rests of answers to slow clients allocate."},
			func() float64 { return float64(src.Edge().Unsent) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longpoll_slow_clients_dropped_total",
			Help: "Clients dropped while their answer was written: not taken within --write-timeout, the connection failed (a client that reset it), or at once when its unsent rest did not fit the bound (their messages wait for the next poll)."},
			func() float64 { return float64(src.Edge().Dropped) }))
	}
	if src.DiskBytes != nil {
		m.commitSeconds = f.histogram("longpoll_storage_commit_seconds", "How long the changes of one sync of the data directory waited from being written to being synced (group commit: every request they hold waits that long).",
			[]float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, 1})
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "longpoll_storage_disk_bytes",
			Help: "Bytes the data directory takes, as the storage engine counts them."},
			func() float64 { return float64(src.DiskBytes()) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longpoll_storage_write_errors_total",
			Help: "Writes to the data directory that failed (the store then takes no more writes: /healthz fails, writes get 503, until a restart)."},
			func() float64 { return float64(src.WriteErrors()) }))
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type promauto struct{ reg *prometheus.Registry }

func (p promauto) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	p.reg.MustRegister(c)
	return c
}

func (p promauto) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	p.reg.MustRegister(c)
	return c
}

func (p promauto) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	p.reg.MustRegister(h)
	return h
}

// StorageCommitted observes one sync of the data directory
// (diskstore.Options.OnCommit). Without Sources.DiskBytes it does nothing.
func (m *Metrics) StorageCommitted(took time.Duration) {
	if m.commitSeconds != nil {
		m.commitSeconds.Observe(took.Seconds())
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Pushed implements poll.Observer.
func (m *Metrics) Pushed(kind poll.TargetKind, res poll.Result, err error) {
	k := kind.String()
	if err != nil {
		m.refused.WithLabelValues(k, refusalCode(err)).Inc()
		if errors.Is(err, poll.ErrMailboxFull) {
			m.rejected.WithLabelValues(k).Inc()
		}
		return
	}
	if res.Duplicate {
		return
	}
	c := m.byKind[kind]
	c.pushes.Inc()
	c.delivered.Add(float64(res.Delivered))
	c.storedOffline.Add(float64(res.Stored))
	c.rejected.Add(float64(res.Rejected))
}

// kindCounters are the counters of accepted pushes of one target kind.
type kindCounters struct {
	pushes, delivered, storedOffline, rejected prometheus.Counter
}

// refusalCode is the API error code of a refused push (wire's table).
func refusalCode(err error) string { return wire.ErrorOf(err).Code }

// SessionStarted implements poll.Observer.
func (m *Metrics) SessionStarted() { m.connects.Inc() }

// SessionEnded implements poll.Observer.
func (m *Metrics) SessionEnded(reason string) { m.sessionEnds.WithLabelValues(reason).Inc() }

// OfflineExpired implements poll.Observer.
func (m *Metrics) OfflineExpired(n int) { m.offlineExpired.Add(float64(n)) }

// PollAnswered records one poll: how long it was held, its outcome, and for
// each message answered for the first time the latency from its push.
func (m *Metrics) PollAnswered(held time.Duration, outcome string, msgs []poll.Message, now time.Time) {
	m.holdSeconds.Observe(held.Seconds())
	if c, ok := m.pollsBy[outcome]; ok {
		c.Inc()
	} else {
		m.polls.WithLabelValues(outcome).Inc()
	}
	for _, msg := range msgs {
		if msg.Redelivery {
			m.redelivered.Inc()
			continue
		}
		m.latencySeconds.Observe(now.Sub(msg.SentAt).Seconds())
	}
}

package main

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// payload is the data every pushed message carries: the run it belongs to,
// the subscriber it is addressed to (-1: broadcast), the publisher, a
// sequence number per (publisher, subscriber) starting at 1 (the round, for a
// broadcast), and the send time in nanoseconds since t0.
type payload struct {
	R string `json:"r"`
	K int    `json:"k"`
	P int    `json:"p"`
	S uint32 `json:"s"`
	T int64  `json:"t"`
}

// subState is what one subscriber received. Only that subscriber's poller
// goroutine writes it; it is read after the pollers have stopped.
type subState struct {
	recv     []bitset // per publisher: sequence numbers received
	last     []uint32 // per publisher: highest sequence number received
	lat      []int64  // push-to-delivery latencies, ns, first receipt only
	roundLat []int64  // fanout: latency per round (index = round)

	dup, reord, misrouted, stale, bad int64
}

// tracker checks a run for loss, duplication and reordering and collects
// latencies. Publisher p owns seqs[p], acc[p] and unk[p]; subscriber k's
// poller owns subs[k].
type tracker struct {
	run  string
	np   int
	subs []subState
	seqs [][]uint32 // [p][k] last sequence number used
	acc  [][]bitset // [p][k] accepted by the server
	unk  [][]bitset // [p][k] fate unknown (transport error)

	delivered atomic.Int64 // distinct messages received
	accepted  atomic.Int64
	refused   atomic.Int64
	failed    atomic.Int64
	lastRecv  atomic.Int64 // nowNS of the latest delivery
}

func newTracker(run string, publishers, subscribers, rounds int) *tracker {
	tr := &tracker{run: run, np: publishers, subs: make([]subState, subscribers)}
	for k := range tr.subs {
		tr.subs[k].recv = make([]bitset, publishers)
		tr.subs[k].last = make([]uint32, publishers)
		if rounds > 0 {
			tr.subs[k].roundLat = make([]int64, rounds+1)
		}
	}
	tr.seqs = make([][]uint32, publishers)
	tr.acc = make([][]bitset, publishers)
	tr.unk = make([][]bitset, publishers)
	for p := range publishers {
		tr.seqs[p] = make([]uint32, subscribers)
		tr.acc[p] = make([]bitset, subscribers)
		tr.unk[p] = make([]bitset, subscribers)
	}
	return tr
}

// next returns publisher p's next sequence number for subscriber k.
func (tr *tracker) next(p, k int) uint32 {
	tr.seqs[p][k]++
	return tr.seqs[p][k]
}

// record notes what the server answered to publisher p's message s for k.
func (tr *tracker) record(p, k int, s uint32, o outcome) {
	switch o {
	case accepted:
		tr.acc[p][k].set(s)
		tr.accepted.Add(1)
	case refused:
		tr.refused.Add(1)
	default:
		tr.unk[p][k].set(s)
		tr.failed.Add(1)
	}
}

// onMsgs records the payloads subscriber k received at recvNS.
func (tr *tracker) onMsgs(k int, recvNS int64, datas [][]byte) {
	st := &tr.subs[k]
	var n int64
	for _, d := range datas {
		m, err := decodePayload(d, tr.run)
		if err != nil {
			st.bad++
			continue
		}
		if m.R != tr.run {
			st.stale++
			continue
		}
		if m.K != k && m.K != -1 {
			st.misrouted++
			continue
		}
		if m.P < 0 || m.P >= tr.np {
			st.bad++
			continue
		}
		if st.recv[m.P].has(m.S) {
			st.dup++
			continue
		}
		st.recv[m.P].set(m.S)
		if m.S < st.last[m.P] {
			st.reord++
		} else {
			st.last[m.P] = m.S
		}
		l := recvNS - m.T
		st.lat = append(st.lat, l)
		if int(m.S) < len(st.roundLat) {
			st.roundLat[m.S] = l
		}
		n++
	}
	if n == 0 {
		return
	}
	tr.delivered.Add(n)
	for {
		old := tr.lastRecv.Load()
		if recvNS <= old || tr.lastRecv.CompareAndSwap(old, recvNS) {
			break
		}
	}
}

// tally is the outcome of a run, computed once the pollers have stopped.
type tally struct {
	delivered, lost, dup, reord, misrouted, stale, bad, refusedDelivered int64
	lat                                                                  []int64 // sorted
}

func (tr *tracker) tally() tally {
	var t tally
	var all []int64
	for k := range tr.subs {
		st := &tr.subs[k]
		for p := range tr.np {
			t.lost += andNotCount(tr.acc[p][k], st.recv[p], nil)
			t.refusedDelivered += andNotCount(st.recv[p], tr.acc[p][k], tr.unk[p][k])
		}
		t.dup += st.dup
		t.reord += st.reord
		t.misrouted += st.misrouted
		t.stale += st.stale
		t.bad += st.bad
		all = append(all, st.lat...)
	}
	t.delivered = int64(len(all))
	t.lat = sortedCopy(all)
	return t
}

// pollGroup runs one long-poll loop per subscriber, each on its own
// connection to the subscriber's node.
type pollGroup struct {
	t      target
	cfs    []*clientFactory // the nodes
	ctl    []*rawClient     // the controller's clients for parked(), one per node
	subs   []*sub
	onMsgs func(k int, recvNS int64, datas [][]byte)
	once   bool          // park: one poll each, an answer before cancel is a failure
	delay  time.Duration // pause between polls (slow consumer)
	launch chan struct{} // bounds first polls in flight before their request is written

	inflight atomic.Int64 // polls written and not yet answered
	answered atomic.Int64 // park: polls answered before cancel
	polls    atomic.Int64
	errs     atomic.Int64
	errMu    sync.Mutex
	errSeen  map[string]int
	wg       sync.WaitGroup
}

func newPollGroup(ctx context.Context, e *env, subs []*sub, onMsgs func(int, int64, [][]byte)) *pollGroup {
	ctl := make([]*rawClient, len(e.cfs))
	for i, cf := range e.cfs {
		ctl[i] = cf.client(ctx, false)
	}
	return &pollGroup{t: e.t, cfs: e.cfs, ctl: ctl, subs: subs, onMsgs: onMsgs,
		launch: make(chan struct{}, 256), errSeen: map[string]int{}}
}

// serverParked is how many polls the server holds, summed over the nodes
// (each counts the polls it holds itself), when every node can tell.
func (g *pollGroup) serverParked(ctx context.Context) (int, bool) {
	sum := 0
	for _, c := range g.ctl {
		n, ok := g.t.parked(ctx, c)
		if !ok {
			return 0, false
		}
		sum += n
	}
	return sum, true
}

func (g *pollGroup) start(ctx context.Context) {
	for _, s := range g.subs {
		g.wg.Add(1)
		go g.loop(ctx, s)
	}
}

// stop waits for the pollers (whose context the caller has cancelled).
func (g *pollGroup) stop() {
	g.wg.Wait()
	for _, c := range g.ctl {
		c.Close()
	}
}

func (g *pollGroup) noteErr(err error) {
	g.errs.Add(1)
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	g.errMu.Lock()
	if len(g.errSeen) < 20 {
		g.errSeen[msg]++
	}
	g.errMu.Unlock()
}

func (g *pollGroup) errors() []string {
	g.errMu.Lock()
	defer g.errMu.Unlock()
	var out []string
	for m, n := range g.errSeen {
		out = append(out, "poll: "+m+" (x"+itoa(n)+")")
	}
	return out
}

func (g *pollGroup) loop(ctx context.Context, s *sub) {
	defer g.wg.Done()
	c := g.cfs[s.node].client(ctx, false)
	defer c.Close()
	// The first poll of each subscriber waits for a launch slot until its
	// request is written, so that thousands of dials do not overflow the
	// server's accept backlog at once.
	select {
	case g.launch <- struct{}{}:
	case <-ctx.Done():
		return
	}
	holding := true
	release := func() {
		if holding {
			holding = false
			<-g.launch
		}
	}
	defer release()
	wrote := false
	c.onWrote = func() { // runs on this goroutine, inside c.do
		wrote = true
		g.inflight.Add(1)
		release()
	}
	for ctx.Err() == nil {
		wrote = false
		datas, err := g.t.poll(ctx, c, s)
		if wrote {
			g.inflight.Add(-1)
		}
		release()
		now := nowNS()
		if ctx.Err() != nil {
			return
		}
		g.polls.Add(1)
		if g.once {
			g.answered.Add(1)
		}
		if err != nil {
			g.noteErr(err)
			if st := statusOf(err); st == http.StatusNotFound || st == http.StatusGone {
				return // session gone: nothing more to poll
			}
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		if len(datas) > 0 && g.onMsgs != nil {
			g.onMsgs(s.idx, now, datas)
		}
		if g.once {
			return
		}
		if g.delay > 0 {
			sleepCtx(ctx, g.delay)
		}
	}
}

// waitParked waits until n polls are written (and, where the server tells,
// held by it).
func (g *pollGroup) waitParked(ctx context.Context, n int, d time.Duration) bool {
	ok := waitFor(ctx, d, 20*time.Millisecond, func() bool { return g.inflight.Load() >= int64(n) })
	if _, can := g.serverParked(ctx); can {
		ok = waitFor(ctx, d, 50*time.Millisecond, func() bool {
			p, _ := g.serverParked(ctx)
			return p >= n
		}) && ok
	}
	return ok
}

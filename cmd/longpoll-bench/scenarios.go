package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// env is everything a scenario needs.
type env struct {
	t    target
	cfg  config
	cfs  []*clientFactory // one per --url: the nodes
	pids []int
	run  string
	log  func(format string, args ...any)
}

// result is one scenario's summary: one line of text or of JSON.
type result struct {
	Target   string             `json:"target"`
	Scenario string             `json:"scenario"`
	Label    string             `json:"label,omitempty"`
	Time     string             `json:"time"`
	Params   map[string]any     `json:"params"`
	Metrics  map[string]float64 `json:"metrics"`
	Skipped  string             `json:"skipped,omitempty"`
	Errors   []string           `json:"errors,omitempty"`
	order    []string
}

func newResult(e *env, scenario string, params map[string]any) *result {
	if len(e.cfg.urls) > 1 {
		if params == nil {
			params = map[string]any{}
		}
		params["urls"] = e.cfg.urls
	}
	return &result{Target: e.t.name(), Scenario: scenario, Label: e.cfg.label,
		Time: time.Now().UTC().Format(time.RFC3339), Params: params, Metrics: map[string]float64{}}
}

func (r *result) set(name string, v float64) {
	if _, ok := r.Metrics[name]; !ok {
		r.order = append(r.order, name)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = -1 // JSON has no NaN; -1 = not measured
	}
	r.Metrics[name] = round2(v)
}

func (r *result) errorf(format string, args ...any) {
	if len(r.Errors) < 20 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

// setupSubs creates n subscribers with bounded concurrency. Subscriber i
// is created on, and will be polled on, node pollNode(i).
func setupSubs(ctx context.Context, e *env, n int, shared bool) ([]*sub, int, []string) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.setupTimeout)
	defer cancel()
	subs := make([]*sub, n)
	var mu sync.Mutex
	var errs []string
	nodes := len(e.cfs)
	forEach(ctx, e, e.cfg.concurrency, n, func(nc *nodeClients, i int) {
		node := pollNode(i, nodes)
		s, err := e.t.newSub(ctx, nc.get(node), i, shared)
		if err != nil {
			mu.Lock()
			if len(errs) < 5 {
				errs = append(errs, "setup: "+err.Error())
			}
			mu.Unlock()
			return
		}
		s.node, s.pushNode = node, pushNode(i, nodes)
		subs[i] = s
	})
	// Keep indexes dense: subscriber k is subs[k] and payloads name k. A
	// subscriber keeps the nodes it was set up with.
	out := subs[:0]
	for _, s := range subs {
		if s != nil {
			s.idx = len(out)
			out = append(out, s)
		}
	}
	return out, n - len(out), errs
}

// cleanup releases subscribers on the server, bounded in time.
func cleanup(e *env, subs []*sub) {
	if !e.cfg.cleanup || len(subs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	forEach(ctx, e, 32, len(subs), func(nc *nodeClients, i int) { _ = e.t.closeSub(ctx, nc.get(subs[i].node), subs[i]) })
}

// forEach runs do(nc, i) for i in [0, n) on workers goroutines, each with
// its own connection to each node it talks to, until done or ctx ends.
func forEach(ctx context.Context, e *env, workers, n int, do func(nc *nodeClients, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			nc := newNodeClients(ctx, e.cfs, false)
			defer nc.Close()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				do(nc, i)
			}
		})
	}
	wg.Wait()
}

func (e *env) rss() (int64, bool) {
	if len(e.pids) == 0 {
		return 0, false
	}
	v, err := rssKiB(e.pids)
	if err != nil {
		e.log("rss: %v", err)
		return 0, false
	}
	return v, true
}

// payloadJSON encodes m as json.Marshal would, without reflection (the
// publishers encode one per message).
func payloadJSON(m payload) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"r":`...)
	b = appendJSONString(b, m.R)
	b = append(b, `,"k":`...)
	b = strconv.AppendInt(b, int64(m.K), 10)
	b = append(b, `,"p":`...)
	b = strconv.AppendInt(b, int64(m.P), 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendUint(b, uint64(m.S), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, m.T, 10)
	return append(b, '}')
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // payloads are plain structs; cannot fail
	}
	return b
}

// ---------------------------------------------------------------- park

func runPark(ctx context.Context, e *env) *result {
	n := e.cfg.parkN
	r := newResult(e, "park", map[string]any{"n": n, "hold_s": e.cfg.parkHold})
	idle, haveRSS := e.rss()
	subs, connFails, errs := setupSubs(ctx, e, n, false)
	r.Errors = append(r.Errors, errs...)
	e.log("park: %d subscribers ready (%d failed); parking", len(subs), connFails)

	hold := e.t
	if lt, ok := hold.(*longpollTarget); ok {
		lt.hold = e.cfg.parkHold
		defer func() { lt.hold = e.cfg.hold }()
	}
	if gt, ok := hold.(*golongpollTarget); ok {
		gt.hold = e.cfg.parkHold
		defer func() { gt.hold = e.cfg.hold }()
	}

	pctx, cancel := context.WithCancel(ctx)
	g := newPollGroup(ctx, e, subs, nil)
	g.once = true
	start := time.Now()
	g.start(pctx)
	allParked := g.waitParked(ctx, len(subs), e.cfg.setupTimeout)
	parkTime := time.Since(start)
	e.log("park: %d written after %v (all=%v); settling", g.inflight.Load(), parkTime.Round(time.Millisecond), allParked)
	sleepCtx(ctx, e.cfg.settle)

	var samples []float64
	for i := range 3 {
		if v, ok := e.rss(); ok {
			samples = append(samples, float64(v))
		}
		if i < 2 {
			sleepCtx(ctx, time.Second)
		}
	}
	parked := int(g.inflight.Load())
	if sp, ok := g.serverParked(ctx); ok {
		r.set("server_parked", float64(sp))
		parked = min(parked, sp)
	}
	early := g.answered.Load()
	cancel()
	g.stop()

	r.set("n", float64(n))
	r.set("parked", float64(parked))
	r.set("failures", float64(connFails+max(len(subs)-parked, int(early))))
	r.set("answered_early", float64(early))
	r.set("park_s", parkTime.Seconds())
	if haveRSS && len(samples) > 0 && parked > 0 {
		rss := median(samples)
		r.set("idle_rss_mib", float64(idle)/1024)
		r.set("rss_mib", rss/1024)
		r.set("kib_per_poll", (rss-float64(idle))/float64(parked))
	}
	r.Errors = append(r.Errors, g.errors()...)
	cleanup(e, subs)
	return r
}

// ---------------------------------------------------------------- fanout

func runFanout(ctx context.Context, e *env) *result {
	n, rounds := e.cfg.fanoutN, e.cfg.rounds
	r := newResult(e, "fanout", map[string]any{"n": n, "rounds": rounds})
	subs, connFails, errs := setupSubs(ctx, e, n, true)
	r.Errors = append(r.Errors, errs...)
	tr := newTracker(e.run, 1, len(subs), rounds)
	pctx, cancel := context.WithCancel(ctx)
	g := newPollGroup(ctx, e, subs, tr.onMsgs)
	g.start(pctx)

	pub := e.cfs[broadcastNode(len(e.cfs))].client(ctx, false)
	defer pub.Close()
	minReached := math.Inf(1)
	meter := startCPU(e.pids)
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		if !g.waitParked(ctx, len(subs), e.cfg.setupTimeout) {
			r.errorf("round %d: only %d of %d polls parked", round, g.inflight.Load(), len(subs))
		}
		sleepCtx(ctx, 200*time.Millisecond)
		before := tr.delivered.Load()
		data := mustJSON(payload{R: e.run, K: -1, P: 0, S: uint32(round), T: nowNS()})
		reached, err := e.t.broadcast(ctx, pub, data)
		if err != nil {
			r.errorf("round %d: broadcast: %v", round, err)
			continue
		}
		tr.record(0, 0, uint32(round), accepted)
		if reached >= 0 {
			minReached = min(minReached, float64(reached))
		}
		waitFor(ctx, e.cfg.drain, 5*time.Millisecond, func() bool { return tr.delivered.Load()-before >= int64(len(subs)) })
		e.log("fanout: round %d: %d/%d delivered", round, tr.delivered.Load()-before, len(subs))
	}
	srvCPU, haveCPU, toolCPU, wall := meter.stop()
	cancel()
	g.stop()

	t := tr.tally()
	var untilAll []float64
	var lost int64
	for round := 1; round <= rounds; round++ {
		var worst int64
		for k := range tr.subs {
			l := tr.subs[k].roundLat[round]
			if l == 0 {
				lost++
				continue
			}
			worst = max(worst, l)
		}
		untilAll = append(untilAll, float64(worst)/1e6)
	}
	r.set("n", float64(n))
	r.set("subscribers", float64(len(subs)))
	r.set("until_all_ms", median(untilAll))
	r.set("until_all_max_ms", slices.Max(untilAll))
	r.set("p50_ms", pct(t.lat, 0.50))
	r.set("p99_ms", pct(t.lat, 0.99))
	r.set("max_ms", pct(t.lat, 1))
	r.set("lost", float64(lost))
	r.set("dup", float64(t.dup))
	r.set("failures", float64(connFails))
	r.set("poll_errors", float64(g.errs.Load()))
	if !math.IsInf(minReached, 1) {
		r.set("server_reached_min", minReached)
	}
	r.set("violations", float64(e.t.violations()))
	setCPU(r, srvCPU, haveCPU, toolCPU, wall, t.delivered)
	r.Errors = append(r.Errors, g.errors()...)
	cleanup(e, subs)
	return r
}

// setCPU reports how busy the server and this tool were: on a 2-core box
// the tool competes with the server, and CPU per delivery is steadier than
// a rate when the box is noisy.
func setCPU(r *result, server float64, haveServer bool, tool, wall float64, delivered int64) {
	r.set("tool_cpu_cores", tool/wall)
	if !haveServer {
		return
	}
	r.set("server_cpu_cores", server/wall)
	if delivered > 0 {
		r.set("server_us_per_delivery", server*1e6/float64(delivered))
	}
}

// ---------------------------------------------------------------- push load

// loadSpec describes throughput, batch, single-session and latency runs:
// sessions re-polling with their cursors while publishers push for a while.
type loadSpec struct {
	scenario   string
	sessions   int
	publishers int
	duration   time.Duration
	batch      int           // >0: items per batch request
	rate       float64       // >0: open loop at this many pushes/s in total
	pollDelay  time.Duration // >0: subscribers pause this long between polls (slow consumer)
}

func runLoad(ctx context.Context, e *env, spec loadSpec) *result {
	params := map[string]any{"sessions": spec.sessions, "publishers": spec.publishers, "duration_s": spec.duration.Seconds()}
	if spec.batch > 0 {
		params["batch"] = spec.batch
	}
	if spec.rate > 0 {
		params["rate"] = spec.rate
	}
	if spec.pollDelay > 0 {
		params["poll_delay_ms"] = spec.pollDelay.Milliseconds()
	}
	r := newResult(e, spec.scenario, params)
	if spec.batch > 0 {
		if !e.t.canBatch() {
			r.Skipped = e.t.name() + " has no batch publish"
			return r
		}
	}
	subs, connFails, errs := setupSubs(ctx, e, spec.sessions, false)
	r.Errors = append(r.Errors, errs...)
	if len(subs) == 0 {
		r.Skipped = "no subscriber could be set up"
		return r
	}
	tr := newTracker(e.run, spec.publishers, len(subs), 0)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := newPollGroup(ctx, e, subs, tr.onMsgs)
	g.delay = spec.pollDelay
	g.start(pctx)
	if !g.waitParked(ctx, len(subs), e.cfg.setupTimeout) {
		r.errorf("only %d of %d polls parked before publishing", g.inflight.Load(), len(subs))
	}
	sleepCtx(ctx, 200*time.Millisecond)

	var pushErrMu sync.Mutex
	pushErrs := map[string]int{}
	noteErr := func(err error) {
		pushErrMu.Lock()
		if len(pushErrs) < 10 {
			msg := err.Error()
			if len(msg) > 120 {
				msg = msg[:120]
			}
			pushErrs[msg]++
		}
		pushErrMu.Unlock()
	}
	// A batch goes to one node: byPush[node] lists the subscribers whose
	// pushes go to it (with one node, all of them in order).
	var byPush [][]int
	if spec.batch > 0 {
		byPush = make([][]int, len(e.cfs))
		for k, s := range subs {
			byPush[s.pushNode] = append(byPush[s.pushNode], k)
		}
	}
	var reqLat [][]int64 = make([][]int64, spec.publishers)
	pubCtx, pubCancel := context.WithTimeout(ctx, spec.duration)
	defer pubCancel()
	meter := startCPU(e.pids)
	start := nowNS()
	var wg sync.WaitGroup

	// Each publisher has its own connection to each node it pushes to.
	pcs := make([]*nodeClients, spec.publishers)
	for p := range pcs {
		pcs[p] = newNodeClients(ctx, e.cfs, false)
		defer pcs[p].Close()
	}
	// pushOne sends publisher p's next message to k, stamped with sendNS.
	pushOne := func(p, k int, sendNS int64) {
		sk := subs[k]
		pc := pcs[p].get(sk.pushNode)
		s := tr.next(p, k)
		data := payloadJSON(payload{R: e.run, K: k, P: p, S: s, T: sendNS})
		t0 := nowNS()
		o, err := e.t.push(ctx, pc, sk, data)
		reqLat[p] = append(reqLat[p], nowNS()-t0)
		tr.record(p, k, s, o)
		if err != nil {
			noteErr(err)
			sleepCtx(pubCtx, 10*time.Millisecond)
		}
	}

	if spec.rate > 0 {
		// Open loop: a dispatcher hands out send slots on schedule and the
		// latency counts from the scheduled time, so a slow server cannot
		// hide its queueing (coordinated omission).
		slots := make(chan int64, 10000)
		for p := range spec.publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(p)+1, 7))
				for at := range slots {
					pushOne(p, rng.IntN(len(subs)), at)
				}
			}()
		}
		interval := float64(time.Second) / spec.rate
	dispatch:
		for i := 0; ; i++ {
			at := start + int64(float64(i)*interval)
			if d := time.Duration(at - nowNS()); d > 0 {
				select {
				case <-pubCtx.Done():
					break dispatch
				case <-time.After(d):
				}
			}
			if pubCtx.Err() != nil {
				break
			}
			select {
			case slots <- at:
			default:
				r.errorf("publishers fell behind the schedule")
				break dispatch
			}
		}
		close(slots)
	} else {
		for p := range spec.publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(p)+1, 11))
				for pubCtx.Err() == nil {
					if spec.batch == 0 {
						pushOne(p, rng.IntN(len(subs)), nowNS())
						continue
					}
					items := make([]*sub, spec.batch)
					datas := make([][]byte, spec.batch)
					seqs := make([]uint32, spec.batch)
					now := nowNS()
					// The first item picks the batch's node; the others
					// are drawn among the subscribers pushed to there.
					k := rng.IntN(len(subs))
					node := subs[k].pushNode
					same := byPush[node]
					for i := range items {
						if i > 0 {
							k = same[rng.IntN(len(same))]
						}
						seqs[i] = tr.next(p, k)
						items[i] = subs[k]
						datas[i] = payloadJSON(payload{R: e.run, K: k, P: p, S: seqs[i], T: now})
					}
					t0 := nowNS()
					outs, err := e.t.pushBatch(ctx, pcs[p].get(node), items, datas)
					reqLat[p] = append(reqLat[p], nowNS()-t0)
					for i, o := range outs {
						tr.record(p, items[i].idx, seqs[i], o)
					}
					if err != nil {
						noteErr(err)
						sleepCtx(pubCtx, 10*time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
	pubEnd := nowNS()
	e.log("%s: publishing done: %d accepted, %d refused, %d failed; draining", spec.scenario,
		tr.accepted.Load(), tr.refused.Load(), tr.failed.Load())

	// Drain: wait for every accepted message, giving up after a stall.
	deadline := time.Now().Add(e.cfg.drain)
	lastN, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		d := tr.delivered.Load()
		if d >= tr.accepted.Load() {
			break
		}
		if d != lastN {
			lastN, lastChange = d, time.Now()
		} else if time.Since(lastChange) > 3*time.Second {
			break
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
	srvCPU, haveCPU, toolCPU, wall := meter.stop()
	cancel()
	g.stop()

	t := tr.tally()
	pubSecs := float64(pubEnd-start) / 1e9
	window := float64(max(pubEnd, tr.lastRecv.Load())-start) / 1e9
	var rl []int64
	for _, v := range reqLat {
		rl = append(rl, v...)
	}
	rl = sortedCopy(rl)
	r.set("sessions", float64(len(subs)))
	r.set("pushes_per_s", float64(tr.accepted.Load())/pubSecs)
	r.set("deliveries_per_s", float64(t.delivered)/window)
	r.set("p50_ms", pct(t.lat, 0.50))
	r.set("p99_ms", pct(t.lat, 0.99))
	r.set("max_ms", pct(t.lat, 1))
	r.set("accepted", float64(tr.accepted.Load()))
	r.set("delivered", float64(t.delivered))
	r.set("lost", float64(t.lost))
	r.set("dup", float64(t.dup))
	r.set("reordered", float64(t.reord))
	r.set("refused", float64(tr.refused.Load()))
	r.set("push_errors", float64(tr.failed.Load()))
	r.set("push_p99_ms", pct(rl, 0.99))
	r.set("poll_errors", float64(g.errs.Load()))
	r.set("misrouted", float64(t.misrouted))
	r.set("refused_delivered", float64(t.refusedDelivered))
	r.set("violations", float64(e.t.violations()))
	r.set("failures", float64(connFails))
	setCPU(r, srvCPU, haveCPU, toolCPU, wall, t.delivered)
	for m, n := range pushErrs {
		r.errorf("push: %s (x%d)", m, n)
	}
	r.Errors = append(r.Errors, g.errors()...)
	cleanup(e, subs)
	return r
}

// ---------------------------------------------------------------- connect

func runConnect(ctx context.Context, e *env) *result {
	total, conc := e.cfg.connects, e.cfg.connectConc
	r := newResult(e, "connect", map[string]any{"connects": total, "concurrency": conc, "fresh_connections": !e.cfg.connectReuse})
	ctx, cancel := context.WithTimeout(ctx, e.cfg.setupTimeout)
	defer cancel()
	lats := make([][]int64, conc)
	created := make([][]*sub, conc)
	var next, fails atomic.Int64
	var errMu sync.Mutex
	errSeen := map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc := newNodeClients(ctx, e.cfs, !e.cfg.connectReuse)
			defer nc.Close()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				node := pollNode(i, len(e.cfs))
				t0 := nowNS()
				s, err := e.t.connect(ctx, nc.get(node), i)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					fails.Add(1)
					errMu.Lock()
					if len(errSeen) < 10 {
						errSeen[err.Error()]++
					}
					errMu.Unlock()
					continue
				}
				lats[w] = append(lats[w], nowNS()-t0)
				s.node, s.pushNode = node, pushNode(i, len(e.cfs))
				created[w] = append(created[w], s)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var all []int64
	var subs []*sub
	for w := range conc {
		all = append(all, lats[w]...)
		subs = append(subs, created[w]...)
	}
	all = sortedCopy(all)
	r.set("ok", float64(len(all)))
	r.set("failures", float64(fails.Load())+float64(max(0, total-int(next.Load()))))
	r.set("connects_per_s", float64(len(all))/elapsed)
	r.set("p50_ms", pct(all, 0.50))
	r.set("p99_ms", pct(all, 0.99))
	r.set("max_ms", pct(all, 1))
	for m, n := range errSeen {
		r.errorf("connect: %s (x%d)", m, n)
	}
	cleanup(e, subs)
	return r
}

// runFill connects --fill-sessions sessions and pushes --fill-messages
// messages to them, round robin, in batches of --batch-size from
// --publishers publishers, and leaves everything there (no polls, no
// cleanup): the state a restart of a server with --data-dir then reads
// back (bench/durable.sh times it).
func runFill(ctx context.Context, e *env) *result {
	c := e.cfg
	r := newResult(e, "fill", map[string]any{"sessions": c.fillSessions, "messages": c.fillMessages, "batch_size": c.batch})
	if !e.t.canBatch() {
		r.Skipped = e.t.name() + " has no batch publish"
		return r
	}
	start := time.Now()
	subs, failed, errs := setupSubs(ctx, e, c.fillSessions, false)
	if failed > 0 || len(subs) == 0 {
		r.errorf("fill: %d connects failed %v", failed, errs)
		return r
	}
	connected := time.Since(start)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.setupTimeout)
	defer cancel()
	batch := max(1, c.batch)
	var pushed, refused, fails atomic.Int64
	nodes := len(e.cfs)
	forEach(ctx, e, c.publishers, (c.fillMessages+batch-1)/batch, func(nc *nodeClients, k int) {
		from := k * batch
		n := min(batch, c.fillMessages-from)
		// With several nodes the batch is split by the node its items
		// are pushed to (one request per node, in order).
		items := make([][]*sub, nodes)
		datas := make([][][]byte, nodes)
		for i := range n {
			s := subs[(from+i)%len(subs)]
			items[s.pushNode] = append(items[s.pushNode], s)
			datas[s.pushNode] = append(datas[s.pushNode], payloadJSON(payload{R: e.run, K: s.idx, S: uint32(from + i), T: nowNS()}))
		}
		for node := range nodes {
			if len(items[node]) == 0 {
				continue
			}
			outs, err := e.t.pushBatch(ctx, nc.get(node), items[node], datas[node])
			if err != nil {
				fails.Add(1)
				continue
			}
			for _, o := range outs {
				if o == accepted {
					pushed.Add(1)
				} else {
					refused.Add(1)
				}
			}
		}
	})
	r.set("connect_s", connected.Seconds())
	r.set("fill_s", time.Since(start).Seconds())
	r.set("accepted", float64(pushed.Load()))
	r.set("refused", float64(refused.Load()))
	if fails.Load() > 0 || refused.Load() > 0 || ctx.Err() != nil {
		r.errorf("fill: %d pushes failed, %d messages refused (--max-mailbox on the server must hold %d per session) %v", fails.Load(), refused.Load(), (c.fillMessages+len(subs)-1)/len(subs), ctx.Err())
	}
	return r
}

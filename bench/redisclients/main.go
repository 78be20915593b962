// redisbench compares github.com/redis/go-redis/v9 and github.com/redis/rueidis
// on a workload modelled on the longpoll push server (per-session mailbox in a
// sorted set + seq counter, hash-tagged keys, Lua scripts, PUBLISH).
//
// Usage: taskset -c 1 ./redisbench -addr 127.0.0.1:16379 -rounds 3 -dur 5s
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

const appendLua = `
local s = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], s, s .. ':' .. ARGV[1])
return s`

const ackLua = `
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])`

var (
	addr      = flag.String("addr", "127.0.0.1:16379", "redis address (must be loopback)")
	rounds    = flag.Int("rounds", 3, "rounds (client order alternates each round)")
	dur       = flag.Duration("dur", 5*time.Second, "duration of each timed run")
	conc      = flag.Int("c", 32, "concurrent goroutines")
	nSessions = flag.Int("sessions", 1000, "number of sessions")
	batchN    = flag.Int("batch", 100, "appends per batch request")
	extras    = flag.String("extras", "go-redis/pool32,rueidis/rawmulti", "comma-separated extra variants: go-redis/pool32, rueidis/rawmulti, go-redis/autopipe")
	maxLat    = 4 << 20 // max latency samples kept per goroutine
)

var payload = strings.Repeat("x", 150)

func seqKey(sid int) string  { return "lp:{" + strconv.Itoa(sid) + "}:seq" }
func mboxKey(sid int) string { return "lp:{" + strconv.Itoa(sid) + "}:mbox" }
func chanKey(sid int) string { return "lp:{" + strconv.Itoa(sid) + "}:notify" }

// ackCursor holds a per-session cursor; each ack advances it by 2 so acks
// keep removing messages written by the preceding append phase.
type cursors struct{ v []atomic.Int64 }

func (c *cursors) next(sid int) int64 { return c.v[sid].Add(2) }

// driver is the per-client implementation of the workload.
type driver interface {
	name() string
	append(ctx context.Context, sid int) error
	ack(ctx context.Context, sid int, cur int64) error
	publish(ctx context.Context, sid int) error
	batch(ctx context.Context, sids []int) error // batch of appends
	flushall(ctx context.Context) error
	close()
}

// ---------------- go-redis ----------------

// goRedisCmd is what the single-op paths need; satisfied by *redis.Client and
// by *redis.AutoPipeliner (go-redis >= 9.2x, EXPERIMENTAL).
type goRedisCmd interface {
	redis.Scripter
	Publish(ctx context.Context, channel string, message interface{}) *redis.IntCmd
}

type goRedis struct {
	label string
	c     *redis.Client
	cmd   goRedisCmd
	app   *redis.Script
	ack_  *redis.Script
}

func newGoRedis(label string, poolSize int, autoPipe bool) (*goRedis, error) {
	opt := &redis.Options{Addr: *addr}
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	c := redis.NewClient(opt)
	g := &goRedis{label: label, c: c, cmd: c, app: redis.NewScript(appendLua), ack_: redis.NewScript(ackLua)}
	if autoPipe {
		ap, err := c.AutoPipeline()
		if err != nil {
			return nil, err
		}
		g.cmd = ap
	}
	ctx := context.Background()
	// load once; calls then use EVALSHA (Run falls back to EVAL on NOSCRIPT)
	if err := g.app.Load(ctx, c).Err(); err != nil {
		return nil, err
	}
	if err := g.ack_.Load(ctx, c).Err(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *goRedis) name() string { return g.label }
func (g *goRedis) append(ctx context.Context, sid int) error {
	_, err := g.app.Run(ctx, g.cmd, []string{seqKey(sid), mboxKey(sid)}, payload).Int64()
	return err
}
func (g *goRedis) ack(ctx context.Context, sid int, cur int64) error {
	_, err := g.ack_.Run(ctx, g.cmd, []string{mboxKey(sid)}, cur).Int64()
	return err
}
func (g *goRedis) publish(ctx context.Context, sid int) error {
	return g.cmd.Publish(ctx, chanKey(sid), "n").Err()
}
func (g *goRedis) batch(ctx context.Context, sids []int) error {
	cmds, err := g.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sid := range sids {
			g.app.EvalSha(ctx, p, []string{seqKey(sid), mboxKey(sid)}, payload)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(cmds) != len(sids) {
		return fmt.Errorf("pipeline returned %d cmds, want %d", len(cmds), len(sids))
	}
	return nil
}
func (g *goRedis) flushall(ctx context.Context) error { return g.c.FlushAll(ctx).Err() }
func (g *goRedis) close()                             { g.c.Close() }

// ---------------- rueidis ----------------

type rueidisDrv struct {
	label string
	raw   bool // batch with hand-built EVALSHA + DoMulti instead of Lua.ExecMulti
	c     rueidis.Client
	app   *rueidis.Lua
	ack_  *rueidis.Lua
	sha   string
}

func newRueidis(label string, raw bool) (*rueidisDrv, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{*addr},
		DisableCache: true,
	})
	if err != nil {
		return nil, err
	}
	r := &rueidisDrv{label: label, raw: raw, c: c,
		app: rueidis.NewLuaScript(appendLua), ack_: rueidis.NewLuaScript(ackLua)}
	ctx := context.Background()
	// warm-up: first Exec gets NOSCRIPT and loads via EVAL; later calls are EVALSHA
	if err := r.app.Exec(ctx, c, []string{seqKey(0), mboxKey(0)}, []string{payload}).Error(); err != nil {
		return nil, err
	}
	if err := r.ack_.Exec(ctx, c, []string{mboxKey(0)}, []string{"0"}).Error(); err != nil {
		return nil, err
	}
	sha, err := c.Do(ctx, c.B().ScriptLoad().Script(appendLua).Build()).ToString()
	if err != nil {
		return nil, err
	}
	r.sha = sha
	return r, nil
}

func (r *rueidisDrv) name() string { return r.label }
func (r *rueidisDrv) append(ctx context.Context, sid int) error {
	_, err := r.app.Exec(ctx, r.c, []string{seqKey(sid), mboxKey(sid)}, []string{payload}).AsInt64()
	return err
}
func (r *rueidisDrv) ack(ctx context.Context, sid int, cur int64) error {
	_, err := r.ack_.Exec(ctx, r.c, []string{mboxKey(sid)}, []string{strconv.FormatInt(cur, 10)}).AsInt64()
	return err
}
func (r *rueidisDrv) publish(ctx context.Context, sid int) error {
	return r.c.Do(ctx, r.c.B().Publish().Channel(chanKey(sid)).Message("n").Build()).Error()
}
func (r *rueidisDrv) batch(ctx context.Context, sids []int) error {
	var res []rueidis.RedisResult
	if r.raw {
		cmds := make(rueidis.Commands, 0, len(sids))
		for _, sid := range sids {
			cmds = append(cmds, r.c.B().Evalsha().Sha1(r.sha).Numkeys(2).Key(seqKey(sid), mboxKey(sid)).Arg(payload).Build())
		}
		res = r.c.DoMulti(ctx, cmds...)
	} else {
		ex := make([]rueidis.LuaExec, len(sids))
		for i, sid := range sids {
			ex[i] = rueidis.LuaExec{Keys: []string{seqKey(sid), mboxKey(sid)}, Args: []string{payload}}
		}
		res = r.app.ExecMulti(ctx, r.c, ex...)
	}
	for _, x := range res {
		if err := x.Error(); err != nil {
			return err
		}
	}
	return nil
}
func (r *rueidisDrv) flushall(ctx context.Context) error {
	return r.c.Do(ctx, r.c.B().Flushall().Build()).Error()
}
func (r *rueidisDrv) close() { r.c.Close() }

// ---------------- runner ----------------

type result struct {
	ops      int64 // operations (for batch: appends)
	reqs     int64 // requests (for batch: batches)
	errs     int64
	firstErr error
	elapsed  time.Duration
	p50, p99 time.Duration // per request
}

func (r result) opsPerSec() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func run(d driver, op string, curs *cursors) result {
	ctx := context.Background()
	var wg sync.WaitGroup
	lats := make([][]time.Duration, *conc)
	var ops, reqs, errs atomic.Int64
	var errOnce sync.Once
	var firstErr error
	start := time.Now()
	deadline := start.Add(*dur)
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			l := make([]time.Duration, 0, 1<<16)
			sids := make([]int, *batchN)
			var nOps, nReq int64
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				var err error
				n := int64(1)
				switch op {
				case "append":
					err = d.append(ctx, rng.IntN(*nSessions))
				case "ack":
					sid := rng.IntN(*nSessions)
					err = d.ack(ctx, sid, curs.next(sid))
				case "publish":
					err = d.publish(ctx, rng.IntN(*nSessions))
				case "batch":
					for i := range sids {
						sids[i] = rng.IntN(*nSessions)
					}
					err = d.batch(ctx, sids)
					n = int64(len(sids))
				}
				if len(l) < maxLat {
					l = append(l, time.Since(t0))
				}
				if err != nil {
					errs.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				nOps += n
				nReq++
			}
			ops.Add(nOps)
			reqs.Add(nReq)
			lats[g] = l
		}(g)
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{ops: ops.Load(), reqs: reqs.Load(), errs: errs.Load(), firstErr: firstErr, elapsed: el}
	if len(all) > 0 {
		r.p50 = all[len(all)*50/100]
		r.p99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return r
}

type key struct{ client, op string }

func main() {
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		fmt.Fprintln(os.Stderr, "refusing non-loopback address")
		os.Exit(2)
	}
	fmt.Printf("GOMAXPROCS=%d NumCPU=%d conc=%d dur=%s sessions=%d batch=%d payload=%dB\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), *conc, *dur, *nSessions, *batchN, len(payload))

	// Probe: does rueidis work against this server WITHOUT DisableCache (RESP3 + CLIENT TRACKING)?
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{*addr}}); err != nil {
		fmt.Printf("probe: rueidis without DisableCache: ERROR %v\n", err)
	} else {
		ctx := context.Background()
		e := c.DoCache(ctx, c.B().Get().Key("probe").Cache(), time.Minute).Error()
		if rueidis.IsRedisNil(e) {
			e = nil
		}
		fmt.Printf("probe: rueidis without DisableCache: NewClient ok, DoCache err=%v\n", e)
		c.Close()
	}

	type mk func() (driver, error)
	makers := map[string]mk{
		"go-redis":          func() (driver, error) { return newGoRedis("go-redis", 0, false) },
		"go-redis/autopipe": func() (driver, error) { return newGoRedis("go-redis/autopipe", 0, true) },
		"rueidis":           func() (driver, error) { return newRueidis("rueidis", false) },
		"go-redis/pool32":   func() (driver, error) { return newGoRedis("go-redis/pool32", 32, false) },
		"rueidis/rawmulti":  func() (driver, error) { return newRueidis("rueidis/rawmulti", true) },
	}
	base := []string{"go-redis", "rueidis"}
	ops := []string{"append", "ack", "publish", "batch"}
	results := map[key][]result{}

	for round := 0; round < *rounds; round++ {
		order := append([]string(nil), base...)
		if round%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		if *extras != "" {
			order = append(order, strings.Split(*extras, ",")...)
		}
		fmt.Printf("\n=== round %d order %v ===\n", round+1, order)
		for _, cn := range order {
			d, err := makers[cn]()
			if err != nil {
				fmt.Printf("%s: client init error: %v\n", cn, err)
				continue
			}
			curs := &cursors{v: make([]atomic.Int64, *nSessions)}
			runOps := ops
			if cn == "rueidis/rawmulti" || cn == "go-redis/autopipe" {
				// rawmulti differs only in batch; autopipe only in single ops
				runOps = []string{"batch"}
			}
			if cn == "go-redis/autopipe" {
				runOps = []string{"append", "ack", "publish"}
			}
			if false {
				runOps = []string{"batch"}
			}
			for _, op := range runOps {
				// fresh DB for append and batch (they grow the mailboxes);
				// ack runs on what append left behind.
				if op == "append" || op == "batch" {
					if err := d.flushall(context.Background()); err != nil {
						fmt.Printf("%s: flushall: %v\n", cn, err)
					}
				}
				runtime.GC()
				r := run(d, op, curs)
				results[key{cn, op}] = append(results[key{cn, op}], r)
				es := ""
				if r.errs > 0 {
					es = fmt.Sprintf(" ERRORS=%d first=%v", r.errs, r.firstErr)
				}
				fmt.Printf("%-17s %-8s %10.0f ops/s  reqs=%-8d p50=%-10s p99=%-10s%s\n",
					cn, op, r.opsPerSec(), r.reqs, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), es)
			}
			d.close()
		}
	}

	fmt.Printf("\n=== medians over %d rounds (latency is per request; for batch, per 100-append request) ===\n", *rounds)
	fmt.Printf("%-17s %-8s %12s %10s %10s   %s\n", "client", "op", "ops/s", "p50", "p99", "per-round ops/s")
	all := append(append([]string(nil), base...), "go-redis/pool32", "go-redis/autopipe", "rueidis/rawmulti")
	for _, op := range ops {
		for _, cn := range all {
			rs := results[key{cn, op}]
			if len(rs) == 0 {
				continue
			}
			var o []float64
			var p5, p9 []time.Duration
			var per []string
			for _, r := range rs {
				o = append(o, r.opsPerSec())
				p5 = append(p5, r.p50)
				p9 = append(p9, r.p99)
				per = append(per, fmt.Sprintf("%.0f", r.opsPerSec()))
			}
			fmt.Printf("%-17s %-8s %12.0f %10s %10s   [%s]\n", cn, op, medF(o),
				medD(p5).Round(time.Microsecond), medD(p9).Round(time.Microsecond), strings.Join(per, " "))
		}
	}
}

func medF(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func medD(x []time.Duration) time.Duration {
	s := append([]time.Duration(nil), x...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

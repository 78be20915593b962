package diskstore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/longpoll/longpoll/internal/codec"
	"github.com/longpoll/longpoll/poll"
)

// journal is the poll.Journal of a Store: it queues the memory store's
// changes as they happen, and two goroutines make them durable in a
// pipeline. The writer takes everything queued (whole operations: never
// part of a Begin/End bracket) and writes it to pebble as one batch,
// unsynced, then takes the next. The syncer syncs the engine's log, which
// makes every batch written before it durable at once: right away when
// every write is to be synced (group commit: concurrent requests share
// one sync while the writer goes on), or every interval. After a sync the
// messages the synced batches appended are shown to polls
// (poll.Mailbox.Release), and the Flush callers whose changes were synced
// (with an interval: written) are woken.
//
// Concurrency: mu guards the fields below it; Record, Begin and End are
// called under the memory store's locks and only append to ops. work
// wakes the writer (ops pending, no operation open, or closing); done
// wakes Flush callers; syncNeeded (cap 1) the syncer. Once a write or a
// sync has failed (err), nothing more is written or recorded: the store
// is failed until a restart.
type journal struct {
	db       *pebble.DB
	interval time.Duration // 0: every batch synced at once; else every interval
	onCommit func(took time.Duration)

	mu       sync.Mutex
	work     sync.Cond
	done     sync.Cond
	ops      []poll.Op
	spare    []poll.Op
	open     int                   // operations between Begin and End
	recorded uint64                // ops recorded so far
	waiting  int                   // Flush callers waiting
	written  uint64                // ops written (unsynced)
	synced   uint64                // ops synced
	err      error                 // the write that failed, wrapping poll.ErrStorage
	failed   atomic.Pointer[error] // &err once set: Err without the lock
	closing  bool
	stopped  chan struct{} // closed when the writer has returned

	stopSync    chan struct{} // closed by close: the syncer returns
	syncStopped chan struct{} // closed when it has
	syncing     sync.Mutex    // one sync at a time (the syncer's, Sync's, close's)

	kbuf, vbuf []byte       // the writer's scratch buffers
	stage      stage        // the writer's changes, sorted before they are written
	records    recordWriter // the writer's record of appends, and acknowledgements

	// What written batches appended, to show polls once synced, and how
	// far the writes went. syncMu guards them.
	syncMu       sync.Mutex
	unsynced     map[*poll.Mailbox]uint64
	released     map[*poll.Mailbox]uint64 // the map the last sync released, empty, to swap in (under syncing)
	unsyncedUpTo uint64                   // ops written when unsynced was last added to
	dirty        bool                     // a batch was written since the last sync
	syncStart    time.Time                // when the oldest unsynced batch began to be written
	syncNeeded   chan struct{}
}

func newJournal(db *pebble.DB, interval time.Duration, onCommit func(time.Duration), x *recIndex) *journal {
	j := &journal{db: db, interval: interval, onCommit: onCommit, stopped: make(chan struct{}),
		records:  recordWriter{x: x, acked: make(map[string]uint64)},
		stopSync: make(chan struct{}), syncStopped: make(chan struct{}),
		unsynced: make(map[*poll.Mailbox]uint64), released: make(map[*poll.Mailbox]uint64), syncNeeded: make(chan struct{}, 1)}
	j.work.L = &j.mu
	j.done.L = &j.mu
	return j
}

// start starts the writer and the syncer.
func (j *journal) start() {
	go j.run()
	go j.syncer()
}

// Record implements poll.Journal.
func (j *journal) Record(op poll.Op) {
	j.mu.Lock()
	if j.err == nil {
		j.ops = append(j.ops, op)
		j.recorded++
		if j.open == 0 && len(j.ops) == 1 {
			j.work.Signal()
		}
	}
	j.mu.Unlock()
}

// Begin implements poll.Journal.
func (j *journal) Begin() {
	j.mu.Lock()
	j.open++
	j.mu.Unlock()
}

// End implements poll.Journal.
func (j *journal) End() {
	j.mu.Lock()
	j.open--
	if j.open == 0 && len(j.ops) > 0 {
		j.work.Signal()
	}
	j.mu.Unlock()
}

// Flush waits until every change recorded before it was called is synced
// (with an interval: written), or a write has failed.
func (j *journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.recorded
	for j.err == nil && (j.interval == 0 && j.synced < target || j.interval > 0 && j.written < target) {
		j.waiting++
		if j.interval == 0 && j.written >= target {
			select { // written already, in a batch that did not ask for a sync
			case j.syncNeeded <- struct{}{}:
			default:
			}
		}
		j.done.Wait()
		j.waiting--
	}
	return j.err
}

// Err is the failed write's error, or nil. It is cheap: every write asks.
func (j *journal) Err() error {
	if e := j.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// fail records err as the store's failure. Callers hold mu.
func (j *journal) fail(err error) {
	if j.err == nil {
		j.err = fmt.Errorf("%w: %v; restart longpoll once the data directory's disk is fixed (what was written before is kept)", poll.ErrStorage, err)
		j.failed.Store(&j.err)
	}
	j.ops = nil
	j.done.Broadcast()
}

// run is the writer: it writes batches until close, then the last.
func (j *journal) run() {
	defer close(j.stopped)
	for {
		j.mu.Lock()
		for (len(j.ops) == 0 || j.open > 0) && !(j.closing && j.open == 0) {
			j.work.Wait()
		}
		if len(j.ops) == 0 || j.err != nil { // closing with nothing left, or failed
			j.mu.Unlock()
			return
		}
		batch, upTo := j.ops, j.recorded
		j.ops, j.spare = j.spare[:0], nil
		j.mu.Unlock()

		start := time.Now()
		err := j.write(batch)
		if err == nil {
			j.mu.Lock()
			waiting := j.waiting > 0
			j.mu.Unlock()
			j.wrote(batch, upTo, start, waiting) // before Flush returns: a Sync after it takes this batch
		}
		j.mu.Lock()
		if err != nil {
			j.fail(err)
			j.mu.Unlock()
			return
		}
		j.written = upTo
		j.done.Broadcast() // with an interval, a 202 waits for the write only
		j.mu.Unlock()
		clear(batch) // let the envelopes and mailboxes go
		j.mu.Lock()
		j.spare = batch[:0]
		j.mu.Unlock()
	}
}

// close writes what is left, syncs it and stops the writer.
func (j *journal) close() {
	j.mu.Lock()
	j.closing = true
	j.work.Signal()
	j.mu.Unlock()
	<-j.stopped
	close(j.stopSync)
	<-j.syncStopped
	if j.Err() == nil {
		_ = j.syncAndRelease()
	}
}

// write writes one batch of changes. A failure inside pebble's commit
// (which pebble reports through its logger's Fatalf: see pebbleLogger)
// comes back as the error.
func (j *journal) write(ops []poll.Op) (err error) {
	defer recoverFatal(&err)
	// Keys and values are built in scratch buffers (the stage copies
	// them); a fan-out's message, appended to many mailboxes in a row, is
	// encoded once.
	st := &j.stage
	st.reset()
	rw := &j.records
	rw.reset()
	k, v := j.kbuf[:0], j.vbuf[:0]
	var encoded *poll.Envelope
	enc := func(e *poll.Envelope) []byte {
		if e != encoded {
			v, encoded = codec.AppendEnvelope(v[:0], e), e
		}
		return v
	}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case poll.OpSession:
			k = appendKey(k[:0], kindSession, op.ID)
			st.Set(k, codec.Session(op.Session))
		case poll.OpSessionEnd:
			rw.end(op.ID)
			k = appendKey(k[:0], kindSession, op.ID)
			st.Delete(k)
			k = appendKey(k[:0], kindLastSeq, op.ID)
			st.Delete(k)
			k = appendKey(k[:0], kindAcked, op.ID)
			st.Delete(k)
		case poll.OpAppend:
			rw.appendMsg(op.ID, op.Seq, op.Env, enc)
		case poll.OpRemove:
			if rw.removeMsg(op.ID, op.Seq) {
				// A message an earlier version kept under a key of its
				// own: written once and deleted once, a single delete.
				k = appendKeyN(k[:0], kindMessage, op.ID, op.Seq)
				st.SingleDelete(k)
			}
		case poll.OpOfflinePut:
			k = appendKeyN(k[:0], kindOffline, op.ID, op.Env.Order())
			st.Set(k, enc(op.Env))
		case poll.OpOfflineRemove:
			k = appendKeyN(k[:0], kindOffline, op.ID, op.Env.Order())
			st.Delete(k)
		case poll.OpID:
			k = appendKey(k[:0], kindID, op.ID)
			st.Set(k, codec.ID(op.Time, op.Result))
		case poll.OpIDGone:
			k = appendKey(k[:0], kindID, op.ID)
			st.Delete(k)
		case poll.OpName:
			k = appendKey(k[:0], kindName, op.ID)
			st.Set(k, u64(uint64(op.Time.UnixNano())))
		case poll.OpNameGone:
			k = appendKey(k[:0], kindName, op.ID)
			st.Delete(k)
		}
	}
	if rw.x.writes++; rw.x.writes >= sweepEvery {
		rw.x.writes = 0
		for _, rec := range rw.x.sparse() {
			if k, err = j.relocate(rec, st, k); err != nil {
				return err
			}
		}
	}
	k = rw.finish(st, k)
	j.kbuf, j.vbuf = k, v
	b := j.db.NewBatch()
	defer b.Close()
	if err := st.apply(b); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync) // the syncer syncs
}

// relocate has the records writer write rec's messages that are still in
// a mailbox again, and delete rec, with this write.
func (j *journal) relocate(rec uint64, st *stage, k []byte) ([]byte, error) {
	k = appendKeyN(k[:0], kindRecord, "", rec)
	v, closer, err := j.db.Get(k)
	if err != nil {
		return k, fmt.Errorf("reading record %d to rewrite what is left of it: %w", rec, err)
	}
	defer closer.Close()
	return j.records.relocate(rec, v, st, k)
}

// wrote takes note of a written batch: what it appended is shown to polls
// once synced, so that a client never sees a message a crash could take
// back. Without an interval it asks the syncer for a sync at once when
// the batch appended messages or someone waits in Flush; a batch of
// acknowledgments alone waits for the next sync (lost in a crash, they
// are made again by the client's cursor).
func (j *journal) wrote(ops []poll.Op, upTo uint64, start time.Time, waiting bool) {
	urgent := waiting
	j.syncMu.Lock()
	for i := range ops {
		switch op := &ops[i]; op.Kind {
		case poll.OpAppend:
			j.unsynced[op.Box] = max(j.unsynced[op.Box], op.Seq)
			urgent = true
		case poll.OpRemove, poll.OpOfflineRemove, poll.OpIDGone, poll.OpNameGone:
		default:
			urgent = true
		}
	}
	if !j.dirty {
		j.syncStart = start
	}
	j.dirty, j.unsyncedUpTo = true, upTo
	j.syncMu.Unlock()
	if j.interval == 0 && urgent {
		select {
		case j.syncNeeded <- struct{}{}:
		default: // a sync is asked for already: it takes this batch too
		}
	}
}

// release shows polls the messages up to each mailbox's seq, and empties
// the map.
func release(upTo map[*poll.Mailbox]uint64) {
	var wake []poll.Wakeup
	for box, seq := range upTo {
		if u := box.Release(seq); u != (poll.Wakeup{}) {
			wake = append(wake, u)
		}
	}
	clear(upTo)
	if len(wake) > 0 {
		go poll.RunWakeups(wake) // the committer goes on with the next batch
	}
}

// syncer syncs until close: whenever asked (no interval), or every
// interval.
func (j *journal) syncer() {
	defer close(j.syncStopped)
	var tick <-chan time.Time
	if j.interval > 0 {
		t := time.NewTicker(j.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-j.stopSync:
			return
		case <-j.syncNeeded:
		case <-tick:
		}
		if err := j.syncAndRelease(); err != nil {
			return
		}
	}
}

// syncAndRelease syncs what was written so far, then shows polls what it
// appended and wakes the Flush callers it made durable.
func (j *journal) syncAndRelease() error {
	j.syncing.Lock()
	defer j.syncing.Unlock()
	j.syncMu.Lock()
	if !j.dirty {
		j.syncMu.Unlock()
		return j.Err()
	}
	upTo, mark, start := j.unsynced, j.unsyncedUpTo, j.syncStart
	j.unsynced, j.released, j.dirty = j.released, nil, false
	if j.unsynced == nil { // the sync before failed
		j.unsynced = make(map[*poll.Mailbox]uint64)
	}
	j.syncMu.Unlock()
	if err := j.syncNow(); err != nil {
		j.mu.Lock()
		j.fail(err)
		j.mu.Unlock()
		return err
	}
	if j.onCommit != nil {
		j.onCommit(time.Since(start))
	}
	release(upTo)     // before Flush returns: a poll right after a 202 sees the message
	j.released = upTo // emptied: the next sync's map
	j.mu.Lock()
	j.synced = max(j.synced, mark)
	j.done.Broadcast()
	j.mu.Unlock()
	return nil
}

func (j *journal) syncNow() (err error) {
	defer recoverFatal(&err)
	return j.db.LogData(nil, pebble.Sync)
}

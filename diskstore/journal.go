package diskstore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/longpoll/longpoll/poll"
)

// journal is the poll.Journal of a Store: it queues the memory store's
// changes as they happen and one committer goroutine writes them to pebble
// in batches (group commit): whatever was recorded while a batch was being
// written and synced goes into the next, so concurrent requests share one
// sync. After each batch it releases the appended messages to polls
// (poll.Mailbox.Release) and wakes the Flush callers whose changes it
// held.
//
// Concurrency: mu guards every field below it; Record, Begin and End are
// called under the memory store's locks and only append to ops. work
// wakes the committer (ops pending, no operation open, or closing); done
// wakes Flush callers. Once a write has failed (err), nothing more is
// written or recorded: the store is failed until a restart.
type journal struct {
	db       *pebble.DB
	interval time.Duration // 0: every batch synced; else synced every interval (syncer)
	onCommit func(took time.Duration, ops int)

	mu        sync.Mutex
	work      sync.Cond
	done      sync.Cond
	ops       []poll.Op
	spare     []poll.Op
	open      int                   // operations between Begin and End
	recorded  uint64                // ops recorded so far
	committed uint64                // ops written (and synced, without an interval)
	err       error                 // the write that failed, wrapping poll.ErrStorage
	failed    atomic.Pointer[error] // &err once set: Err without the lock
	closing   bool
	stopped   chan struct{} // closed when the committer has returned

	appended map[*poll.Mailbox]uint64 // the committer's, reused
	lastSeq  map[string]uint64        // the committer's, reused

	// With an interval: what written batches appended, shown to polls
	// once synced (syncer). syncMu guards unsynced and dirty.
	syncMu   sync.Mutex
	unsynced map[*poll.Mailbox]uint64
	dirty    bool // a batch was written since the last sync
}

func newJournal(db *pebble.DB, interval time.Duration, onCommit func(time.Duration, int)) *journal {
	j := &journal{db: db, interval: interval, onCommit: onCommit, stopped: make(chan struct{}),
		appended: make(map[*poll.Mailbox]uint64), lastSeq: make(map[string]uint64), unsynced: make(map[*poll.Mailbox]uint64)}
	j.work.L = &j.mu
	j.done.L = &j.mu
	return j
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

// Flush waits until every change recorded before it was called is written
// (and synced, without an interval), or a write has failed.
func (j *journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.recorded
	for j.committed < target && j.err == nil {
		j.done.Wait()
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

// run is the committer: it writes batches until close, then the last.
func (j *journal) run() {
	defer close(j.stopped)
	for {
		j.mu.Lock()
		for (len(j.ops) == 0 || j.open > 0) && !(j.closing && j.open == 0) {
			j.work.Wait()
		}
		if len(j.ops) == 0 { // closing, nothing left
			j.mu.Unlock()
			return
		}
		batch, upTo := j.ops, j.recorded
		j.ops, j.spare = j.spare[:0], nil
		j.mu.Unlock()

		start := time.Now()
		err := j.write(batch)
		if j.onCommit != nil && err == nil {
			j.onCommit(time.Since(start), len(batch))
		}
		if err == nil {
			j.released(batch) // before Flush returns: a poll right after a 202 sees the message
		}
		j.mu.Lock()
		if err != nil {
			j.fail(err)
		} else {
			j.committed = upTo
			j.done.Broadcast()
		}
		j.mu.Unlock()
		clear(batch) // let the envelopes and mailboxes go
		j.mu.Lock()
		j.spare = batch[:0]
		j.mu.Unlock()
	}
}

// close writes what is left and stops the committer.
func (j *journal) close() {
	j.mu.Lock()
	j.closing = true
	j.work.Signal()
	j.mu.Unlock()
	<-j.stopped
}

// write writes one batch of changes. A failure inside pebble's commit
// (which pebble reports through its logger's Fatalf: see pebbleLogger)
// comes back as the error.
func (j *journal) write(ops []poll.Op) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	b := j.db.NewBatch()
	defer b.Close()
	clear(j.lastSeq)
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case poll.OpSession:
			err = b.Set(key(kindSession, op.ID), encodeSession(op.Session), nil)
		case poll.OpSessionEnd:
			delete(j.lastSeq, op.ID)
			err = b.Delete(key(kindSession, op.ID), nil)
			if err == nil {
				err = b.Delete(key(kindLastSeq, op.ID), nil)
			}
		case poll.OpAppend:
			j.lastSeq[op.ID] = max(j.lastSeq[op.ID], op.Seq)
			err = b.Set(keyN(kindMessage, op.ID, op.Seq), []byte(op.Env.ID), nil)
		case poll.OpRemove:
			err = b.Delete(keyN(kindMessage, op.ID, op.Seq), nil)
		case poll.OpEnvelope:
			err = b.Set(key(kindEnvelope, op.Env.ID), encodeEnvelope(op.Env), nil)
		case poll.OpEnvelopeGone:
			err = b.Delete(key(kindEnvelope, op.Env.ID), nil)
		case poll.OpOfflinePut:
			err = b.Set(keyN(kindOffline, op.ID, op.Env.Order()), []byte(op.Env.ID), nil)
		case poll.OpOfflineRemove:
			err = b.Delete(keyN(kindOffline, op.ID, op.Env.Order()), nil)
		case poll.OpID:
			err = b.Set(key(kindID, op.ID), encodeID(op.Time, op.Result), nil)
		case poll.OpIDGone:
			err = b.Delete(key(kindID, op.ID), nil)
		case poll.OpName:
			err = b.Set(key(kindName, op.ID), u64(uint64(op.Time.UnixNano())), nil)
		case poll.OpNameGone:
			err = b.Delete(key(kindName, op.ID), nil)
		}
		if err != nil {
			return err
		}
	}
	for sid, seq := range j.lastSeq {
		if err := b.Set(key(kindLastSeq, sid), u64(seq), nil); err != nil {
			return err
		}
	}
	opts := pebble.Sync
	if j.interval > 0 {
		opts = pebble.NoSync
	}
	return b.Commit(opts)
}

// released takes note of the messages a written batch appended: they are
// shown to polls at once when every batch is synced, else once the next
// sync is done (syncer), so that a client never sees a message a crash
// could take back.
func (j *journal) released(ops []poll.Op) {
	appended := j.appended
	if j.interval > 0 {
		j.syncMu.Lock()
		defer j.syncMu.Unlock()
		j.dirty = true
		appended = j.unsynced
	}
	for i := range ops {
		if op := &ops[i]; op.Kind == poll.OpAppend {
			appended[op.Box] = max(appended[op.Box], op.Seq)
		}
	}
	if j.interval == 0 {
		release(appended)
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

// syncer syncs the WAL every interval (an interval journal's batches are
// written unsynced) until stop closes, and then shows polls what the
// batches written before the sync appended.
func (j *journal) syncer(stop <-chan struct{}) {
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := j.syncAndRelease(); err != nil {
				j.mu.Lock()
				j.fail(err)
				j.mu.Unlock()
				return
			}
		}
	}
}

// syncAndRelease syncs what was written so far and releases what it held.
func (j *journal) syncAndRelease() error {
	j.syncMu.Lock()
	if !j.dirty {
		j.syncMu.Unlock()
		return nil
	}
	j.dirty = false
	upTo := j.unsynced
	j.unsynced = make(map[*poll.Mailbox]uint64, len(upTo))
	j.syncMu.Unlock()
	if err := j.syncNow(); err != nil {
		return err
	}
	release(upTo)
	return nil
}

func (j *journal) syncNow() (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	return j.db.LogData(nil, pebble.Sync)
}

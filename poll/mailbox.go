package poll

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// MaxBatch is the most messages one poll answer carries.
const MaxBatch = 100

// MaxAnswerBytes is about the most message bytes (Envelope.AnswerSize) one
// poll answer carries: messages are taken, oldest first, while they fit; the
// first one always goes, however large, and the rest waits for the next
// poll.
const MaxAnswerBytes = 1 << 20

// Mailbox is one session's ordered queue of unacknowledged messages and its
// (at most one) parked poll.
//
// Concurrency: every field is guarded by mu. A parked poll waits on its own
// waiter's cap-1 channel, which appenders signal with a non-blocking send;
// no goroutine or timer is started per poll. Once retired (session ended or
// replaced), a mailbox refuses polls with its close error and forwards
// appends to its successor, if it has one.
type Mailbox struct {
	mu      sync.Mutex
	buf     []Message // buf[head:] are the unacknowledged messages
	head    int
	lastSeq uint64 // seq of the newest message ever appended
	limit   int    // most unacknowledged messages; appends beyond fail
	waiter  *waiter
	gauges  *gauges // hub-wide counts this mailbox contributes to

	retired   bool
	closeErr  error    // returned to polls once retired
	successor *Mailbox // receives appends once retired; nil: they fail

	// A journaled mailbox (j set, by its store) records its appends and
	// removals under id, and shows polls only the messages up to durable,
	// which the journal raises (Release) once it has them on disk.
	id      string
	j       Journal
	durable uint64
}

// gauges are hub-wide counts kept by the mailboxes.
type gauges struct {
	parked  atomic.Int64 // polls parked now
	backlog atomic.Int64 // unacknowledged messages in live mailboxes
	stored  stored       // bytes of the messages held, mailboxes and offline store
}

// waiter is one parked poll: a blocking one (a goroutine in Wait selects
// on ch) or an asynchronous one (Park: no goroutine waits; the first wake
// schedules finish, which calls done). Its fields are guarded by the
// mailbox's mu.
type waiter struct {
	ch  chan struct{} // blocking: cap 1, "look again"
	err error         // set before waking: ErrSuperseded or a close error

	async     *asyncWaiter // nil for a blocking poll
	scheduled bool         // async: finish has been scheduled
}

// asyncWaiter is the part of a parked poll that lives without a goroutine.
type asyncWaiter struct {
	box   *Mailbox
	timer *time.Timer                                   // ends the hold
	done  func(msgs []Message, err error) (then func()) // called once, never under a lock
	owner *Ticket                                       // who may Cancel it; nil: nobody
}

// wake tells w to look again, recording err (the first one wins). Callers
// hold the mailbox's mu; wake never blocks. An asynchronous waiter is
// finished on a new goroutine.
func (w *waiter) wake(err error) {
	if w.claim(err) {
		go w.async.finishNow(w)
	}
}

// claim is wake without starting anything: for an asynchronous waiter that
// still needs finishing it reports true, and the caller must call
// w.async.finish(w) once, after releasing the mailbox's mu. Callers hold mu.
func (w *waiter) claim(err error) bool {
	if err != nil && w.err == nil {
		w.err = err
	}
	if w.async != nil {
		if w.scheduled {
			return false
		}
		w.scheduled = true
		return true
	}
	select {
	case w.ch <- struct{}{}:
	default:
	}
	return false
}

// Wakeup is an answered asynchronous poll still to be written: Run does it.
// The zero Wakeup is valid and does nothing.
type Wakeup struct{ w *waiter }

// Run finishes the poll (calls its done) and returns done's then, to be
// called once the batch of answers Run belongs to is written (nil: nothing
// to do). Call Run once, holding no lock.
func (u Wakeup) Run() (then func()) {
	if u.w == nil {
		return nil
	}
	return u.w.async.finish(u.w)
}

// finish completes an asynchronous poll: it takes w off the mailbox,
// collects the pending messages (unless w ended with an error) and calls
// done, returning done's then. It runs once per waiter (claim guards it).
func (a *asyncWaiter) finish(w *waiter) (then func()) {
	m := a.box
	m.mu.Lock()
	if m.waiter == w {
		m.waiter = nil
	}
	err := w.err
	var msgs []Message
	if err == nil {
		if m.retired {
			err = m.closeErr
		} else {
			msgs = m.peekLocked()
		}
	}
	m.mu.Unlock()
	a.timer.Stop()
	m.gauges.parked.Add(-1)
	return a.done(msgs, err)
}

// finishNow finishes w and runs its then at once.
func (a *asyncWaiter) finishNow(w *waiter) {
	if then := a.finish(w); then != nil {
		then()
	}
}

// newMailbox returns an empty mailbox holding at most limit unacknowledged
// messages.
func newMailbox(limit int) *Mailbox {
	return &Mailbox{limit: limit, gauges: new(gauges)}
}

// Append adds e with the next seq and wakes the parked poll. force ignores
// the limit (messages carried over from a replaced session or the offline
// store must not be lost). A retired mailbox passes e to its successor, or
// fails with ErrSessionClosed.
func (m *Mailbox) Append(e *Envelope, force bool) error {
	u, err := m.AppendWake(e, force)
	if u.w != nil {
		go u.w.async.finishNow(u.w)
	}
	return err
}

// AppendWake is Append that leaves the answering of a poll parked with Park
// to the caller: it returns the Wakeup to Run (outside any lock), so a
// publisher can write a poll's answer itself, or batch a fan-out's, instead
// of starting a goroutine per poll.
func (m *Mailbox) AppendWake(e *Envelope, force bool) (Wakeup, error) {
	m.mu.Lock()
	if m.retired {
		next := m.successor
		m.mu.Unlock()
		if next == nil {
			return Wakeup{}, ErrSessionClosed
		}
		return next.AppendWake(e, force)
	}
	if !force && m.lenLocked() >= m.limit {
		m.mu.Unlock()
		return Wakeup{}, ErrMailboxFull
	}
	m.lastSeq++
	m.buf = append(m.buf, Message{Seq: m.lastSeq, Envelope: e})
	m.gauges.backlog.Add(1)
	m.gauges.stored.hold(e)
	var u Wakeup
	if m.j != nil {
		m.j.Record(Op{Kind: OpAppend, ID: m.id, Seq: m.lastSeq, Env: e, Box: m}) // the poll is woken by Release
	} else if w := m.waiter; w != nil && w.claim(nil) {
		u.w = w
	}
	m.mu.Unlock()
	return u, nil
}

// Release shows polls the messages up to seq, once a journal has them
// durable, and returns the parked poll to answer (Run it outside any
// lock). A mailbox without a journal shows every message at once.
func (m *Mailbox) Release(seq uint64) Wakeup {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.retired || seq <= m.durable {
		return Wakeup{}
	}
	m.durable = min(seq, m.lastSeq)
	var u Wakeup
	if w := m.waiter; w != nil && m.lenLocked() > 0 && w.claim(nil) {
		u.w = w
	}
	return u
}

// visibleLocked is the newest seq a poll may see (and acknowledge).
// Callers hold mu.
func (m *Mailbox) visibleLocked() uint64 {
	if m.j == nil {
		return m.lastSeq
	}
	return m.durable
}

// Wait acknowledges every message with seq <= ack (when hasAck) and returns
// up to MaxBatch pending messages, oldest first. With nothing pending it
// parks until a message arrives, ctx ends or stop closes; those last two
// return (nil, nil). A poll already parked on m is answered ErrSuperseded.
// A cursor beyond the newest seq is ErrInvalidCursor and changes nothing.
func (m *Mailbox) Wait(ctx context.Context, stop <-chan struct{}, ack uint64, hasAck bool) ([]Message, error) {
	m.mu.Lock()
	if msgs, err := m.beginLocked(ack, hasAck); msgs != nil || err != nil {
		m.mu.Unlock()
		return msgs, err
	}
	w := &waiter{ch: make(chan struct{}, 1)}
	m.waiter = w
	m.mu.Unlock()
	m.gauges.parked.Add(1)
	defer m.gauges.parked.Add(-1)

	select {
	case <-w.ch:
	case <-ctx.Done():
	case <-stop:
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.waiter == w {
		m.waiter = nil
	}
	if w.err != nil {
		return nil, w.err
	}
	return m.peekLocked(), nil
}

// beginLocked starts a poll: the close error of a retired mailbox, the
// cursor check and acknowledgment, and the pending messages. With nothing
// pending (nil, nil) it supersedes the parked poll, if any, so the caller
// can park. Callers hold mu.
func (m *Mailbox) beginLocked(ack uint64, hasAck bool) ([]Message, error) {
	if m.retired {
		return nil, m.closeErr
	}
	if hasAck {
		if ack > m.visibleLocked() {
			return nil, ErrInvalidCursor
		}
		m.ackLocked(ack)
	}
	if msgs := m.peekLocked(); msgs != nil {
		return msgs, nil
	}
	if m.waiter != nil {
		m.waiter.wake(ErrSuperseded)
		m.waiter = nil
	}
	return nil, nil
}

// Park is Wait without a waiting goroutine. With messages pending, or an
// error, it returns them at once and parked is false. Otherwise it parks
// the poll and returns parked true; done is then called exactly once, from
// another goroutine and without locks held: with the messages when some
// arrive, (nil, nil) when hold passes or the mailbox is woken for shutdown
// (WakeAsync), or ErrSuperseded / the close error. The func done returns
// (may be nil) runs after the answers of the same fan-out are all written:
// an HTTP edge hands connections back there, so that writing a broadcast is
// not slowed by serving the re-polls it causes.
//
// owner (may be nil) is who may end the poll early with Cancel: the
// connection's Ticket.
func (m *Mailbox) Park(ack uint64, hasAck bool, hold time.Duration, owner *Ticket, done func([]Message, error) func()) (msgs []Message, err error, parked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if msgs, err := m.beginLocked(ack, hasAck); msgs != nil || err != nil {
		return msgs, err, false
	}
	a := &asyncWaiter{box: m, done: done, owner: owner}
	w := &waiter{async: a}
	m.waiter = w
	m.gauges.parked.Add(1)
	a.timer = time.AfterFunc(hold, func() {
		m.mu.Lock()
		first := !w.scheduled
		w.scheduled = true
		m.mu.Unlock()
		if first {
			a.finishNow(w)
		}
	})
	return nil, nil, true
}

// Cancel ends the poll parked by owner (Park), if it is still the one
// parked: its done gets ErrCanceled and no messages, which stay
// unacknowledged. It reports whether there was such a poll.
func (m *Mailbox) Cancel(owner *Ticket) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.waiter
	if owner == nil || w == nil || w.async == nil || w.async.owner != owner {
		return false
	}
	w.wake(ErrCanceled)
	m.waiter = nil
	return true
}

// WakeAsync ends a parked asynchronous poll as if its hold had passed (it
// gets the pending messages, or none). Blocking polls are not affected:
// they select on the hub's stop channel instead.
func (m *Mailbox) WakeAsync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.waiter != nil && m.waiter.async != nil {
		m.waiter.wake(nil)
	}
}

// Ack drops every message with seq <= ack. A cursor beyond the newest seq
// is ErrInvalidCursor and changes nothing; a retired mailbox answers its
// close error.
func (m *Mailbox) Ack(ack uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.retired {
		return m.closeErr
	}
	if ack > m.visibleLocked() {
		return ErrInvalidCursor
	}
	m.ackLocked(ack)
	return nil
}

// Parked reports whether a poll is parked on m.
func (m *Mailbox) Parked() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiter != nil
}

// Len returns the number of unacknowledged messages (released or not).
func (m *Mailbox) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lenLocked()
}

// retire ends m: its parked poll is answered closeErr, later polls get
// closeErr, and later appends go to the mailbox that carry returns (nil:
// they fail). carry is called under m's lock with the unacknowledged
// envelopes, so no append can slip between the hand-over and the switch.
func (m *Mailbox) retire(closeErr error, carry func(pending []*Envelope) *Mailbox) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.retired {
		return
	}
	pending := make([]*Envelope, 0, m.lenLocked())
	for _, msg := range m.buf[m.head:] {
		pending = append(pending, msg.Envelope)
		if m.j != nil {
			m.j.Record(Op{Kind: OpRemove, ID: m.id, Seq: msg.Seq})
		}
	}
	m.gauges.backlog.Add(-int64(len(pending)))
	m.successor = carry(pending) // its new holders hold them first, so that none is counted out and in again
	for _, e := range pending {
		m.gauges.stored.drop(e)
	}
	m.retired = true
	m.closeErr = closeErr
	m.buf, m.head = nil, 0
	if m.waiter != nil {
		m.waiter.wake(closeErr)
		m.waiter = nil
	}
}

func (m *Mailbox) lenLocked() int { return len(m.buf) - m.head }

// ackLocked drops messages with seq <= ack.
func (m *Mailbox) ackLocked(ack uint64) {
	from := m.head
	for m.head < len(m.buf) && m.buf[m.head].Seq <= ack {
		if m.j != nil {
			seq := m.buf[m.head].Seq
			m.j.Record(Op{Kind: OpRemove, ID: m.id, Seq: seq, Last: seq == m.lastSeq})
		}
		m.gauges.stored.drop(m.buf[m.head].Envelope)
		m.buf[m.head] = Message{} // let the envelope be collected
		m.head++
	}
	m.gauges.backlog.Add(-int64(m.head - from))
	switch {
	case m.head == len(m.buf):
		m.buf, m.head = m.buf[:0], 0
	case m.head > 64 && m.head > len(m.buf)/2:
		n := copy(m.buf, m.buf[m.head:])
		clear(m.buf[n:])
		m.buf, m.head = m.buf[:n], 0
	}
}

// peekLocked copies the pending messages of the next answer, or returns
// nil: up to MaxBatch, and while they fit in MaxAnswerBytes (at least
// one). Each copy's Redelivery tells whether an earlier poll already got
// it.
func (m *Mailbox) peekLocked() []Message {
	n := m.lenLocked()
	if n == 0 {
		return nil
	}
	// Only what a poll may see (a journal's released messages); seqs in
	// buf are consecutive.
	first, visible := m.buf[m.head].Seq, m.visibleLocked()
	if visible < first {
		return nil
	}
	n = min(n, int(visible-first+1), MaxBatch)
	size := 0
	for i := range n {
		if size += m.buf[m.head+i].AnswerSize(); size > MaxAnswerBytes && i > 0 {
			n = i
			break
		}
	}
	out := make([]Message, n)
	copy(out, m.buf[m.head:m.head+n])
	for i := m.head; i < m.head+n; i++ {
		m.buf[i].Redelivery = true
	}
	return out
}

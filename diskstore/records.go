package diskstore

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/longpoll/longpoll/poll"
)

// A write's appends to mailboxes are kept as one record (key kindRecord
// and the record's number): for each message, the session, its seq and
// the message, or a mark that it is the same message as the entry before
// (a fan-out's, written once a record). An acknowledgement is one key
// per session and write (kindAcked: the seq up to which its mailbox's
// messages have left it), not one delete per message, and a record is
// deleted once none of its messages is in a mailbox any more. On the
// engine's memtable that is a few inserts a write instead of two per
// message (the messages' own keys, and their deletes), the biggest cost
// the disk mode adds on a message's way (BENCHMARKS.md, "Durable mode").
//
// Reading back, a record's message is in its session's mailbox when the
// session is there and its seq is above the session's acked seq.
//
// A message that stays in a mailbox (a client that polls but does not
// acknowledge) keeps its whole record on disk, with the messages of
// others that have left. So that this costs at most a few times what is
// still in mailboxes, the writer looks at the records older than
// sweepAge writes every sweepEvery writes: one whose messages still in a
// mailbox are a quarter of its bytes or less (and that has at least
// minRelocateBytes) has them written again into the current write's
// record, and is deleted in the same write.

// recEntry is where one message of a mailbox is kept: its seq, the
// number of the record that holds it (0: a key of its own, kindMessage,
// written by an earlier version of this code) and the bytes of its entry
// there.
type recEntry struct {
	seq, rec uint64
	size     int
}

// recInfo is what the writer knows of one record: how many of its
// messages are still in a mailbox, and their bytes and all its bytes.
type recInfo struct {
	live                int
	liveBytes, allBytes int
}

// The record sweep (see above).
var (
	sweepEvery = 1024 // writes
	sweepAge   = 1024 // writes
)

const (
	minRelocateBytes = 4 << 10
	maxRelocate      = 64 // records relocated by one write, at most
)

// recIndex is what the writer knows of the records: each record's
// recInfo, and each mailbox's messages' records in seq order (messages
// leave a mailbox oldest first). The writer goroutine alone uses it once
// the store is open.
type recIndex struct {
	next   uint64                // the number of the next record written
	recs   map[uint64]*recInfo   // the records with a message still in a mailbox
	boxes  map[string][]recEntry // session -> its messages, oldest first
	writes int                   // writes since the last sweep
}

func newRecIndex() *recIndex {
	return &recIndex{next: 1, recs: make(map[uint64]*recInfo), boxes: make(map[string][]recEntry)}
}

// add notes that the message at seq of session sid is kept in rec, in
// an entry of size bytes.
func (x *recIndex) add(sid string, seq, rec uint64, size int) {
	x.boxes[sid] = append(x.boxes[sid], recEntry{seq, rec, size})
	if rec != 0 {
		x.info(rec).add(size)
	}
}

func (x *recIndex) info(rec uint64) *recInfo {
	r := x.recs[rec]
	if r == nil {
		r = &recInfo{}
		x.recs[rec] = r
	}
	return r
}

func (r *recInfo) add(size int) {
	r.live++
	r.liveBytes += size
}

// remove notes that the message at seq left the mailbox of sid and
// returns where it was kept; ok is false when the index does not know
// it (nothing is to be deleted then).
func (x *recIndex) remove(sid string, seq uint64) (e recEntry, ok bool) {
	q := x.boxes[sid]
	for len(q) > 0 && q[0].seq < seq { // not expected: messages leave in seq order
		q = q[1:]
	}
	if len(q) == 0 || q[0].seq != seq {
		x.setBox(sid, q)
		return recEntry{}, false
	}
	e, q = q[0], q[1:]
	x.setBox(sid, q)
	return e, true
}

// setBox keeps q as sid's entries, copying them down when most of the
// slice's front is spent, and forgetting an empty one.
func (x *recIndex) setBox(sid string, q []recEntry) {
	switch {
	case len(q) == 0:
		delete(x.boxes, sid)
	case cap(q) > 64 && len(q) < cap(q)/4:
		x.boxes[sid] = append([]recEntry(nil), q...)
	default:
		x.boxes[sid] = q
	}
}

// release drops the message of entry e from its record and reports
// whether it was the record's last (the record is to be deleted).
func (x *recIndex) release(e recEntry) (last bool) {
	r := x.recs[e.rec]
	if r == nil {
		return false
	}
	r.live--
	r.liveBytes -= e.size
	if r.live > 0 {
		return false
	}
	delete(x.recs, e.rec)
	return true
}

// find returns the index of sid's message at seq in its entries, or -1.
func (x *recIndex) find(sid string, seq uint64) int {
	q := x.boxes[sid]
	i, ok := slices.BinarySearchFunc(q, seq, func(e recEntry, seq uint64) int { return cmp.Compare(e.seq, seq) })
	if !ok {
		return -1
	}
	return i
}

// sparse returns up to maxRelocate records older than sweepAge writes
// whose messages still in a mailbox are a quarter of their bytes or less.
func (x *recIndex) sparse() []uint64 {
	var out []uint64
	for rec, r := range x.recs {
		if rec+uint64(sweepAge) < x.next && r.allBytes >= minRelocateBytes && r.liveBytes*4 <= r.allBytes {
			out = append(out, rec)
			if len(out) == maxRelocate {
				break
			}
		}
	}
	return out
}

// appendRecordEntry appends one message of a record: the session, the
// seq, then 0 and the message, or 1 when it is the message of the entry
// before.
func appendRecordEntry(b []byte, sid string, seq uint64, env []byte, same bool) []byte {
	b = binary.AppendUvarint(b, uint64(len(sid)))
	b = append(b, sid...)
	b = binary.AppendUvarint(b, seq)
	if same {
		return append(b, 1)
	}
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(len(env)))
	return append(b, env...)
}

// parseRecord calls fn with each message of a record in order; env is
// the message's bytes (the previous entry's for a repeated one), size
// the bytes of its entry in the record.
func parseRecord(v []byte, fn func(sid string, seq uint64, env []byte, size int) error) error {
	var env []byte
	for len(v) > 0 {
		start := len(v)
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return fmt.Errorf("%w: record entry", errCorrupt)
		}
		sid := string(v[k : k+int(n)])
		v = v[k+int(n):]
		seq, k := binary.Uvarint(v)
		if k <= 0 || len(v) == k {
			return fmt.Errorf("%w: record entry", errCorrupt)
		}
		mark := v[k]
		v = v[k+1:]
		switch mark {
		case 1:
			if env == nil {
				return fmt.Errorf("%w: a record's first entry repeats a message", errCorrupt)
			}
		case 0:
			n, k := binary.Uvarint(v)
			if k <= 0 || uint64(len(v)-k) < n {
				return fmt.Errorf("%w: record entry", errCorrupt)
			}
			env = v[k : k+int(n)]
			v = v[k+int(n):]
		default:
			return fmt.Errorf("%w: record entry", errCorrupt)
		}
		if sid == "" || seq == 0 {
			return fmt.Errorf("%w: record entry", errCorrupt)
		}
		if err := fn(sid, seq, env, start-len(v)); err != nil {
			return err
		}
	}
	return nil
}

// recordWriter builds one write's record and acknowledgements. The
// writer goroutine alone uses it; its buffers are kept between writes.
type recordWriter struct {
	x       *recIndex
	rec     uint64 // this write's record number
	live    recInfo
	buf     []byte // its value
	lastEnv *poll.Envelope
	acked   map[string]uint64 // session -> the newest seq this write removed
	deleted []uint64          // records whose last message left
	num     [8]byte           // an acknowledgement's value, staged (copied)
}

func (w *recordWriter) reset() {
	w.rec, w.live, w.buf, w.lastEnv = w.x.next, recInfo{}, w.buf[:0], nil
	if len(w.acked) > 1024 { // a burst's map is not kept
		w.acked = make(map[string]uint64)
	}
	clear(w.acked)
	w.deleted = w.deleted[:0]
	if cap(w.buf) > maxKeptArena {
		w.buf = nil
	}
}

// appendMsg adds an appended message to this write's record.
func (w *recordWriter) appendMsg(sid string, seq uint64, env *poll.Envelope, enc func(*poll.Envelope) []byte) {
	same := env == w.lastEnv
	var b []byte
	if !same {
		b = enc(env)
	}
	n := len(w.buf)
	w.buf = appendRecordEntry(w.buf, sid, seq, b, same)
	w.lastEnv = env
	size := len(w.buf) - n
	w.x.boxes[sid] = append(w.x.boxes[sid], recEntry{seq, w.rec, size})
	w.live.add(size)
}

// removeMsg notes that the message at seq left sid's mailbox. It returns
// true when the message has a key of its own (kindMessage), which the
// caller deletes.
func (w *recordWriter) removeMsg(sid string, seq uint64) (ownKey bool) {
	w.acked[sid] = max(w.acked[sid], seq)
	e, ok := w.x.remove(sid, seq)
	if ok {
		w.drop(e)
	}
	return ok && e.rec == 0
}

// drop takes the message of e out of its record's count.
func (w *recordWriter) drop(e recEntry) {
	switch {
	case e.rec == 0:
	case e.rec == w.rec:
		w.live.live--
		w.live.liveBytes -= e.size
	case w.x.release(e):
		w.deleted = append(w.deleted, e.rec)
	}
}

// end forgets sid, which went offline: nothing more is acknowledged for
// it in this write.
func (w *recordWriter) end(sid string) {
	delete(w.acked, sid)
	for _, e := range w.x.boxes[sid] { // none, normally: its messages left before
		w.drop(e)
	}
	delete(w.x.boxes, sid)
}

// relocate writes the messages of rec that are still in a mailbox again,
// into this write's record, and deletes rec with this write. value is
// rec's value as read from the engine.
func (w *recordWriter) relocate(rec uint64, value []byte, st *stage, k []byte) ([]byte, error) {
	err := parseRecord(value, func(sid string, seq uint64, env []byte, _ int) error {
		i := w.x.find(sid, seq)
		if i < 0 || w.x.boxes[sid][i].rec != rec {
			return nil // left its mailbox
		}
		n := len(w.buf)
		w.buf = appendRecordEntry(w.buf, sid, seq, env, false)
		size := len(w.buf) - n
		w.x.boxes[sid][i] = recEntry{seq, w.rec, size}
		w.live.add(size)
		return nil
	})
	if err != nil {
		return k, fmt.Errorf("record %d: %w", rec, err)
	}
	w.lastEnv = nil // the next append writes its message whole
	delete(w.x.recs, rec)
	k = appendKeyN(k[:0], kindRecord, "", rec)
	st.SingleDelete(k)
	return k, nil
}

// finish stages this write's record (when one of its messages is still
// in a mailbox), its acknowledgements and its records' deletes.
func (w *recordWriter) finish(st *stage, k []byte) []byte {
	if len(w.buf) > 0 {
		if w.live.live > 0 {
			info := w.live
			info.allBytes = len(w.buf)
			w.x.recs[w.rec] = &info
			k = appendKeyN(k[:0], kindRecord, "", w.rec)
			st.Set(k, w.buf)
		}
		w.x.next++
	}
	for sid, seq := range w.acked {
		k = appendKey(k[:0], kindAcked, sid)
		binary.BigEndian.PutUint64(w.num[:], seq)
		st.Set(k, w.num[:]) // the stage copies it
	}
	for _, rec := range w.deleted {
		// A record's key is written once and deleted once: a single
		// delete, which the engine drops with the write it deletes.
		k = appendKeyN(k[:0], kindRecord, "", rec)
		st.SingleDelete(k)
	}
	return k
}

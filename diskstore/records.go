package diskstore

import (
	"encoding/binary"
	"fmt"

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

// recEntry is where one message of a mailbox is kept: its seq and the
// number of the record that holds it (0: a key of its own, kindMessage,
// written by an earlier version of this code).
type recEntry struct {
	seq, rec uint64
}

// recIndex is what the writer knows of the records: how many of each
// record's messages are still in a mailbox, and each mailbox's messages'
// records in seq order (messages leave a mailbox oldest first). The
// writer goroutine alone uses it once the store is open.
type recIndex struct {
	next  uint64                // the number of the next record written
	live  map[uint64]int        // record -> its messages still in a mailbox
	boxes map[string][]recEntry // session -> its messages, oldest first
}

func newRecIndex() *recIndex {
	return &recIndex{next: 1, live: make(map[uint64]int), boxes: make(map[string][]recEntry)}
}

// add notes that the message at seq of session sid is kept in rec.
func (x *recIndex) add(sid string, seq, rec uint64) {
	x.boxes[sid] = append(x.boxes[sid], recEntry{seq, rec})
	if rec != 0 {
		x.live[rec]++
	}
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

// release drops one of rec's messages and reports whether it was its
// last (the record is to be deleted).
func (x *recIndex) release(rec uint64) (last bool) {
	n := x.live[rec] - 1
	if n > 0 {
		x.live[rec] = n
		return false
	}
	delete(x.live, rec)
	return true
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
// the message's bytes (the previous entry's for a repeated one).
func parseRecord(v []byte, fn func(sid string, seq uint64, env []byte) error) error {
	var env []byte
	for len(v) > 0 {
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
		if err := fn(sid, seq, env); err != nil {
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
	count   int    // its messages still in a mailbox
	buf     []byte // its value
	lastEnv *poll.Envelope
	acked   map[string]uint64 // session -> the newest seq this write removed
	deleted []uint64          // records whose last message left
}

func (w *recordWriter) reset() {
	w.rec, w.count, w.buf, w.lastEnv = w.x.next, 0, w.buf[:0], nil
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
	w.buf = appendRecordEntry(w.buf, sid, seq, b, same)
	w.lastEnv = env
	w.x.boxes[sid] = append(w.x.boxes[sid], recEntry{seq, w.rec})
	w.count++
}

// removeMsg notes that the message at seq left sid's mailbox. It returns
// false when the message has a key of its own (kindMessage), which the
// caller deletes.
func (w *recordWriter) removeMsg(sid string, seq uint64) (ownKey bool) {
	w.acked[sid] = max(w.acked[sid], seq)
	e, ok := w.x.remove(sid, seq)
	switch {
	case !ok:
		return false
	case e.rec == 0:
		return true
	case e.rec == w.rec:
		w.count--
	case w.x.release(e.rec):
		w.deleted = append(w.deleted, e.rec)
	}
	return false
}

// end forgets sid, which went offline: nothing more is acknowledged for
// it in this write.
func (w *recordWriter) end(sid string) {
	delete(w.acked, sid)
	for _, e := range w.x.boxes[sid] { // none, normally: its messages left before
		if e.rec == w.rec {
			w.count--
		} else if e.rec != 0 && w.x.release(e.rec) {
			w.deleted = append(w.deleted, e.rec)
		}
	}
	delete(w.x.boxes, sid)
}

// finish stages this write's record (when one of its messages is still
// in a mailbox), its acknowledgements and its records' deletes.
func (w *recordWriter) finish(st *stage, k []byte) []byte {
	if len(w.buf) > 0 {
		if w.count > 0 {
			w.x.live[w.rec] = w.count
			k = binary.BigEndian.AppendUint64(append(k[:0], kindRecord), w.rec)
			st.Set(k, w.buf)
		}
		w.x.next++
	}
	for sid, seq := range w.acked {
		k = appendKey(k[:0], kindAcked, sid)
		st.Set(k, u64(seq))
	}
	for _, rec := range w.deleted {
		// A record's key is written once and deleted once: a single
		// delete, which the engine drops with the write it deletes.
		k = binary.BigEndian.AppendUint64(append(k[:0], kindRecord), rec)
		st.SingleDelete(k)
	}
	return k
}

package diskstore

import (
	"bytes"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// stage collects one write's changes and hands them to a pebble batch
// sorted by key. Pebble inserts a batch into its memtable (a skiplist) in
// the batch's order, and each insert starts its search from where the one
// before it ended when that still brackets the key, so a sorted batch
// searches less: with --data-dir, the load tool's batch scenario (a
// hundred appends to random mailboxes a request) delivered 4% more a
// second (medians of 4 alternating runs, when each message had a key of
// its own; records.go). The sort is stable, so the changes to one key
// keep their order (a message written and deleted in the same batch is
// still written first); changes to different keys commute within one
// atomic batch.
//
// The writer goroutine alone uses a stage; its buffers are kept between
// writes.
type stage struct {
	arena   []byte // every key and value, one after the other
	entries []stageEntry
}

type stageEntry struct {
	kind   stageKind
	k0, k1 int // the key: arena[k0:k1]
	v1     int // the value: arena[k1:v1]
}

type stageKind uint8

const (
	stageSet stageKind = iota
	stageDelete
	stageSingleDelete
)

// maxKeptArena is the most a stage keeps of its arena between writes: a
// write group of large messages (a burst of 8 MiB batches) does not hold
// its size for the life of the process.
const maxKeptArena = 1 << 20

func (st *stage) reset() {
	if cap(st.arena) > maxKeptArena {
		st.arena, st.entries = nil, nil
	}
	st.arena, st.entries = st.arena[:0], st.entries[:0]
}

func (st *stage) add(kind stageKind, k, v []byte) {
	k0 := len(st.arena)
	st.arena = append(append(st.arena, k...), v...)
	st.entries = append(st.entries, stageEntry{kind: kind, k0: k0, k1: k0 + len(k), v1: len(st.arena)})
}

// Set, Delete and SingleDelete copy key and value; they mirror
// pebble.Batch's methods of the same names.
func (st *stage) Set(k, v []byte) { st.add(stageSet, k, v) }
func (st *stage) Delete(k []byte) { st.add(stageDelete, k, nil) }
func (st *stage) SingleDelete(k []byte) {
	st.add(stageSingleDelete, k, nil)
}

// apply sorts the staged changes by key and adds them to b.
func (st *stage) apply(b *pebble.Batch) error {
	a := st.arena
	slices.SortStableFunc(st.entries, func(x, y stageEntry) int {
		return bytes.Compare(a[x.k0:x.k1], a[y.k0:y.k1])
	})
	for _, e := range st.entries {
		k := a[e.k0:e.k1]
		var err error
		switch e.kind {
		case stageSet:
			err = b.Set(k, a[e.k1:e.v1], nil)
		case stageDelete:
			err = b.Delete(k, nil)
		default:
			err = b.SingleDelete(k, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

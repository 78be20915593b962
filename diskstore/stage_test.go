package diskstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A stage writes its batch sorted by key, and the changes to one key in
// the order they were made: a sort that is not stable turns "deleted,
// then written again" into "written, then deleted".
func TestStageSortsByKeyKeepingEachKeysOrder(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Set([]byte("d"), []byte("old"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	var st stage
	for round := range 2 { // the second round reuses the buffers
		st.reset()
		for i := 39; i >= 0; i-- { // enough entries that an unstable sort would move equal keys
			st.Set(fmt.Appendf(nil, "f%02d", i), nil)
			if i%8 == 0 {
				st.Delete([]byte("d"))
				st.Set([]byte("d"), fmt.Appendf(nil, "v%d", i))
			}
		}
		st.Set([]byte("m2"), []byte("two"))
		st.Set([]byte("m1"), []byte("one"))
		st.Delete([]byte("d"))
		st.SingleDelete([]byte("m1")) // written and acknowledged in one batch
		st.Set([]byte("d"), []byte("new"))
		st.Delete([]byte("z"))
		st.Set([]byte("a"), nil)
		b := db.NewBatch()
		if err := st.apply(b); err != nil {
			t.Fatal(err)
		}
		var keys [][]byte
		want := []byte("a")
		for range 12 { // 5 deletes and writes among the fillers, and one of each after
			want = append(want, ",d"...)
		}
		for i := range 40 {
			want = fmt.Appendf(want, ",f%02d", i)
		}
		want = append(want, ",m1,m1,m2,z"...)
		r := b.Reader()
		for {
			_, k, _, ok, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			keys = append(keys, append([]byte(nil), k...))
		}
		if got := bytes.Join(keys, []byte(",")); !bytes.Equal(got, want) {
			t.Fatalf("round %d: batch keys %s, want %s", round, got, want)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		b.Close()
		for k, want := range map[string]string{"a": "", "d": "new", "m2": "two", "m1": "-", "z": "-"} {
			v, closer, err := db.Get([]byte(k))
			got := "-"
			if err == nil {
				got = string(v)
				closer.Close()
			} else if !errors.Is(err, pebble.ErrNotFound) {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("round %d: %s = %q, want %q", round, k, got, want)
			}
		}
		if err := db.Delete([]byte("m2"), pebble.Sync); err != nil { // m2 is written once per round
			t.Fatal(err)
		}
	}
}

// A write group of large messages does not keep its arena's size.
func TestStageDropsALargeArena(t *testing.T) {
	var st stage
	st.reset()
	st.Set([]byte("k"), make([]byte, 2*maxKeptArena))
	st.reset()
	if c := cap(st.arena); c > maxKeptArena {
		t.Fatalf("after a reset the arena keeps %d bytes", c)
	}
	st.Set([]byte("k"), make([]byte, 100))
	st.reset()
	if cap(st.arena) == 0 {
		t.Fatal("a small arena is not kept between writes")
	}
}

package diskstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/diskstore"
	"github.com/longpoll/longpoll/internal/codec"
	"github.com/longpoll/longpoll/session"
)

// A fan-out's appends are one record; once every mailbox has acknowledged
// its message, the record is deleted, and each session's acknowledgement
// is one key. Across a restart a mailbox holds exactly what it had not
// acknowledged, and its seqs go on.
func TestRecordsAreDeletedOnceEveryMessageLeft(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, cfg(), diskstore.Options{})
	sessions := connected(t, st, 5)
	e := env(`"all"`)
	if _, _, _, err := st.FanOut(sessions, e); err != nil {
		t.Fatal(err)
	}
	flush(t, st)
	// One record, or a few when the writer took the fan-out's appends
	// in more than one write.
	if n := diskstore.KeysForTest(st, 'r'); n < 1 || n > len(sessions) {
		t.Fatalf("%d records after one fan-out", n)
	}
	if _, err := st.Append(sessions[0].ID, env(`"second"`)); err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions[:4] { // the last does not acknowledge
		if err := st.Ack(s.ID, 1); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, st)
	if n := diskstore.KeysForTest(st, 'r'); n < 2 {
		t.Fatalf("%d records with one mailbox still holding the fan-out's message and another the second, want 2 or more", n)
	}
	if err := st.Ack(sessions[4].ID, 1); err != nil {
		t.Fatal(err)
	}
	flush(t, st)
	if n := diskstore.KeysForTest(st, 'r'); n != 1 {
		t.Fatalf("%d records once every mailbox acknowledged the fan-out, want 1 (the second message's)", n)
	}
	if n := diskstore.KeysForTest(st, 'a'); n != 5 {
		t.Fatalf("%d acknowledgement keys, want one per session (5)", n)
	}
	st.Close()

	st = open(t, dir, cfg(), diskstore.Options{})
	if got := pending(t, st, sessions[0].ID); !reflect.DeepEqual(got, []string{`"second"`}) {
		t.Fatalf("session 0 after the restart: %v", got)
	}
	for _, s := range sessions[1:] {
		if got := pending(t, st, s.ID); len(got) != 0 {
			t.Fatalf("session %s after the restart: %v, want nothing", s.ID, got)
		}
	}
	if _, err := st.Append(sessions[1].ID, env(`"next"`)); err != nil {
		t.Fatal(err)
	}
	flush(t, st) // a poll sees a message once it is synced
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := st.Wait(ctx, sessions[1].ID, nil, 0, false)
	if err != nil || len(msgs) != 1 || msgs[0].Seq != 2 {
		t.Fatalf("session 1's next message: %+v, %v; want seq 2", msgs, err)
	}
	// A session that ends leaves no acknowledgement key behind.
	if _, err := st.End(sessions[2].ID, 0, false, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	flush(t, st)
	if n := diskstore.KeysForTest(st, 'a'); n != 4 {
		t.Fatalf("%d acknowledgement keys after a session ended, want 4", n)
	}
}

// A directory written by an earlier version (format longpoll-data/1)
// keeps each mailbox message under a key of its own ('m'): it is read
// back, deleted when the message is acknowledged, and the directory is
// marked longpoll-data/2, which an earlier version refuses.
func TestMessagesUnderKeysOfTheirOwnAreReadAndDeleted(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, cfg(), diskstore.Options{})
	s := connected(t, st, 1)[0]
	if err := diskstore.SetForTest(st, []byte{'v'}, []byte("longpoll-data/1")); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		k := binary.BigEndian.AppendUint64(append([]byte{'m'}, s.ID...), seq)
		if err := diskstore.SetForTest(st, k, codec.Envelope(env(fmt.Sprintf(`"old %d"`, seq)))); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	st = open(t, dir, cfg(), diskstore.Options{})
	if got := pending(t, st, s.ID); !reflect.DeepEqual(got, []string{`"old 1"`, `"old 2"`}) {
		t.Fatalf("after the restart: %v", got)
	}
	if v := diskstore.GetForTest(st, []byte{'v'}); v != "longpoll-data/2" {
		t.Fatalf("format version after opening an earlier version's directory: %q, want longpoll-data/2 (an earlier longpoll must refuse it)", v)
	}
	if _, err := st.Append(s.ID, env(`"new"`)); err != nil {
		t.Fatal(err)
	}
	if err := st.Ack(s.ID, 2); err != nil {
		t.Fatal(err)
	}
	flush(t, st)
	if n := diskstore.KeysForTest(st, 'm'); n != 0 {
		t.Fatalf("%d old message keys left after they were acknowledged", n)
	}
	st.Close()
	st = open(t, dir, cfg(), diskstore.Options{})
	if got := pending(t, st, s.ID); !reflect.DeepEqual(got, []string{`"new"`}) {
		t.Fatalf("after the second restart: %v", got)
	}
}

// A session that polls but never acknowledges keeps its messages, and
// the records that hold them hold the other sessions' too: the sweep
// writes what is left of a record mostly left again, so the records stay
// within a few times what mailboxes still hold, and a restart gives the
// lazy session every message in order and the others none.
func TestSweepBoundsWhatAnUnacknowledgedMessageKeeps(t *testing.T) {
	const sessionsN, rounds = 50, 200
	diskstore.SweepForTest(t, 8, 8)
	dir := t.TempDir()
	st := open(t, dir, cfg(), diskstore.Options{})
	sessions := connected(t, st, sessionsN)
	lazy := sessions[0]
	payload := fmt.Sprintf("%q", strings.Repeat("x", 1000))
	for r := 1; r <= rounds; r++ {
		for _, s := range sessions {
			if _, err := st.Append(s.ID, env(payload)); err != nil {
				t.Fatal(err)
			}
		}
		flush(t, st)
		for _, s := range sessions[1:] {
			if err := st.Ack(s.ID, uint64(r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Writes of small messages, each acknowledged, until every record of
	// the rounds is older than the sweep's age and has been looked at.
	for r := 1; r <= 40; r++ {
		if _, err := st.Append(sessions[1].ID, env(`"small"`)); err != nil {
			t.Fatal(err)
		}
		flush(t, st)
		if err := st.Ack(sessions[1].ID, uint64(rounds+r)); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, st)
	live := rounds * (len(payload) + 100) // the lazy session's messages, with their entries' overhead
	got := diskstore.RecordBytesForTest(st)
	t.Logf("records: %d, %d bytes, for %d messages still in a mailbox (about %d bytes)", diskstore.KeysForTest(st, 'r'), got, rounds, live)
	if bound := 4*live + 64<<10; got > bound { // a quarter or more of each swept record is live; the young ones are small
		t.Fatalf("the records hold %d bytes for about %d still in mailboxes: more than %d", got, live, bound)
	}
	st.Close()

	st = open(t, dir, cfg(), diskstore.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var seqs []uint64
	for {
		msgs, err := st.Wait(ctx, lazy.ID, nil, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && len(msgs) > 0 && msgs[0].Seq <= seqs[len(seqs)-1] {
			break // the same answer again: no cursor given, nothing acknowledged
		}
		for _, m := range msgs {
			seqs = append(seqs, m.Seq)
		}
		if len(msgs) == 0 || len(seqs) >= rounds {
			break
		}
		if err := st.Ack(lazy.ID, seqs[len(seqs)-1]); err != nil {
			t.Fatal(err)
		}
	}
	if len(seqs) != rounds || seqs[0] != 1 || seqs[rounds-1] != rounds {
		t.Fatalf("the lazy session after the restart: %d messages, %v…", len(seqs), seqs[:min(5, len(seqs))])
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seqs out of order after the restart: %d then %d", seqs[i-1], seqs[i])
		}
	}
	for _, s := range sessions[1:] {
		if got := pending(t, st, s.ID); len(got) != 0 {
			t.Fatalf("session %s after the restart: %d messages, want none", s.ID, len(got))
		}
	}
}

// connected connects n sessions (devices dev-0 …) and waits until they
// are on disk.
func connected(t *testing.T, st *diskstore.Store, n int) []*session.Session {
	t.Helper()
	var sessions []*session.Session
	for i := range n {
		s := newSession(fmt.Sprint("dev-", i))
		if _, err := st.Connect(s, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	flush(t, st)
	return sessions
}

// flush waits until what st was told is on disk.
func flush(t *testing.T, st *diskstore.Store) {
	t.Helper()
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
}

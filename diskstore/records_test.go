package diskstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
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
	var sessions []*session.Session
	for i := range 5 {
		s := newSession(fmt.Sprint("dev-", i))
		if _, err := st.Connect(s, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	e := env(`"all"`)
	if _, _, _, err := st.FanOut(sessions, e); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
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
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := diskstore.KeysForTest(st, 'r'); n < 2 {
		t.Fatalf("%d records with one mailbox still holding the fan-out's message and another the second, want 2 or more", n)
	}
	if err := st.Ack(sessions[4].ID, 1); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
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
	if err := st.Flush(); err != nil { // a poll sees a message once it is synced
		t.Fatal(err)
	}
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
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
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
	s := newSession("old")
	if _, err := st.Connect(s, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
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
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := diskstore.KeysForTest(st, 'm'); n != 0 {
		t.Fatalf("%d old message keys left after they were acknowledged", n)
	}
	st.Close()
	st = open(t, dir, cfg(), diskstore.Options{})
	if got := pending(t, st, s.ID); !reflect.DeepEqual(got, []string{`"new"`}) {
		t.Fatalf("after the second restart: %v", got)
	}
}

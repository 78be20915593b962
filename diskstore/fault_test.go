package diskstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/longpoll/longpoll/diskstore"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

func cfg() poll.StoreConfig { return poll.Config{}.StoreConfig() }

func newSession(device string) *session.Session {
	return session.Request{DeviceID: device}.NewSession(time.Now())
}

func env(data string) *poll.Envelope {
	return poll.NewEnvelope("t", "", json.RawMessage(data), time.Now(), time.Hour)
}

// pending returns the data of the messages a session's mailbox shows.
func pending(t *testing.T, st poll.Store, sid string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := st.Wait(ctx, sid, nil, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Data))
	}
	return out
}

// A directory another server holds is refused, naming it and the way out.
func TestOpenLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, cfg(), diskstore.Options{})
	_, err := diskstore.Open(dir, cfg(), diskstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "in use by another longpoll") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: %v", err)
	}
}

// A directory with someone else's files is not taken over.
func TestOpenForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := diskstore.Open(dir, cfg(), diskstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "holds no longpoll data") {
		t.Fatalf("open of a foreign directory: %v", err)
	}
}

// Damaged engine files fail the open with the path and what to do; the
// directory is left as it was.
func TestOpenCorruptDirectory(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, cfg(), diskstore.Options{})
	s := newSession("lamp")
	if _, err := st.Connect(s, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST")
	}
	b, err := os.ReadFile(manifests[len(manifests)-1])
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(manifests[len(manifests)-1], b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = diskstore.Open(dir, cfg(), diskstore.Options{})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("open of a corrupt directory: %v", err)
	}
}

// A record longpoll cannot read is corruption too, named with its key.
func TestOpenCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, cfg(), diskstore.Options{})
	s := newSession("lamp")
	st.Connect(s, 0, time.Now())
	st.Append(s.ID, env(`"x"`))
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := diskstore.CorruptForTest(st, 'r'); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, err := diskstore.Open(dir, cfg(), diskstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("open with a corrupt record: %v", err)
	}
}

// A write that fails (here: every write to the engine's log, as a full
// disk would) is an error wrapping poll.ErrStorage from Flush and Err,
// and the store takes no more writes; what it had written before is what
// the directory holds afterwards, nothing of the failed batch.
func TestWriteErrorFailsTheStore(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	})
	st, err := diskstore.Open(dir, cfg(), diskstore.Options{FS: errorfs.Wrap(vfs.Default, inj)})
	if err != nil {
		t.Fatal(err)
	}
	s := newSession("lamp")
	if _, err := st.Connect(s, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Append(s.ID, env(`"kept"`))
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	st.Append(s.ID, env(`"lost"`))
	if err := st.Flush(); !errors.Is(err, poll.ErrStorage) {
		t.Fatalf("flush of a failed write: %v", err)
	}
	if err := st.Err(); !errors.Is(err, poll.ErrStorage) || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("Err: %v", err)
	}
	if got := pending(t, st, s.ID); len(got) != 1 || got[0] != `"kept"` {
		t.Fatalf("a poll of the failed store sees %v: only what was written", got)
	}
	if st.WriteErrors() != 1 {
		t.Fatalf("write errors %d", st.WriteErrors())
	}
	st.Close()

	again := open(t, dir, cfg(), diskstore.Options{})
	if got := pending(t, again, s.ID); len(got) != 1 || got[0] != `"kept"` {
		t.Fatalf("after a restart: %v, want only the message written before the failure", got)
	}
}

// Below the free-space reserve the store refuses writes (Err), before the
// engine would stall on a full disk, and takes them again once space is
// freed, without a restart.
func TestLowDiskSpaceRefusesWritesUntilFreed(t *testing.T) {
	var free atomic.Uint64
	free.Store(10 << 30)
	st := open(t, t.TempDir(), cfg(), diskstore.Options{MinFreeBytes: 100 << 20, FreeBytes: func() (uint64, error) { return free.Load(), nil }})
	hub := poll.NewHub(poll.Config{Store: st})
	defer hub.Close()
	s, err := hub.Connect(session.Request{DeviceID: "lamp"})
	if err != nil {
		t.Fatal(err)
	}
	free.Store(50 << 20)
	diskstore.CheckSpaceNow(st)
	if _, err := hub.Publish(poll.Push{To: poll.Target{SessionID: s.ID}, Data: json.RawMessage(`1`)}); !errors.Is(err, poll.ErrStorage) || !strings.Contains(err.Error(), "50 MiB free") {
		t.Fatalf("a push with 50 MiB free: %v", err)
	}
	if _, err := hub.Connect(session.Request{DeviceID: "radio"}); !errors.Is(err, poll.ErrStorage) {
		t.Fatalf("a connect with 50 MiB free: %v", err)
	}
	if got := pending(t, st, s.ID); len(got) != 0 {
		t.Fatalf("a refused push left %v", got)
	}
	free.Store(1 << 30)
	diskstore.CheckSpaceNow(st)
	if _, err := hub.Publish(poll.Push{To: poll.Target{SessionID: s.ID}, Data: json.RawMessage(`2`)}); err != nil {
		t.Fatalf("a push once space is freed: %v", err)
	}
	if got := pending(t, st, s.ID); len(got) != 1 || got[0] != "2" {
		t.Fatalf("after space was freed: %v", got)
	}
}

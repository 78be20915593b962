package diskstore

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// newTestRing is a ring for a test, or a skip where the kernel has none
// (a failure when LONGPOLL_REQUIRE_URING is set).
func newTestRing(t *testing.T) *ring {
	t.Helper()
	r, err := newRing(slog.Default())
	if err != nil {
		if os.Getenv("LONGPOLL_REQUIRE_URING") != "" {
			t.Fatal(err)
		}
		t.Skipf("no io_uring here: %v", err)
	}
	t.Cleanup(r.close)
	return r
}

// tempLog is a new file in the test's directory, closed when it ends.
func tempLog(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "x.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestRingSyncsFiles(t *testing.T) {
	r := newTestRing(t)
	f := tempLog(t)
	if _, err := f.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	if err := r.sync(f.Fd(), false); err != nil {
		t.Fatalf("fdatasync through the ring: %v", err)
	}
	if err := r.sync(f.Fd(), true); err != nil {
		t.Fatalf("fsync through the ring: %v", err)
	}
}

// The kernel's error comes back: a pipe cannot be synced (EINVAL), a
// closed descriptor neither (EBADF).
func TestRingReportsTheKernelsError(t *testing.T) {
	r := newTestRing(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if err := r.sync(pw.Fd(), false); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("syncing a pipe: %v, want EINVAL", err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "closed.log"))
	if err != nil {
		t.Fatal(err)
	}
	fd := f.Fd()
	f.Close()
	if err := r.sync(fd, false); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("syncing a closed descriptor: %v, want EBADF", err)
	}
}

// With as many syncs under way as the ring has entries, one more is the
// system call: it returns, and the syncs under way are left alone.
func TestRingFullSyncsWithTheSystemCall(t *testing.T) {
	r := newTestRing(t)
	f := tempLog(t)
	r.mu.Lock()
	for id := range uint64(r.sqMask) + 1 { // stand-ins for syncs under way
		r.waiters[1<<40+id] = make(chan int32, 1)
	}
	r.mu.Unlock()
	tail := atomic.LoadUint32(r.sqTail)
	if err := r.sync(f.Fd(), false); err != nil {
		t.Fatal(err)
	}
	if got := atomic.LoadUint32(r.sqTail); got != tail {
		t.Fatalf("the sync went into the full ring (tail %d → %d)", tail, got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.waiters) != int(r.sqMask)+1 {
		t.Fatalf("%d syncs under way after the fallback, want %d", len(r.waiters), r.sqMask+1)
	}
	clear(r.waiters)
}

// More syncs at once than the ring has entries: each is answered, and
// none is left waiting.
func TestRingManyConcurrentSyncs(t *testing.T) {
	r := newTestRing(t)
	dir := t.TempDir()
	const n = 4 * ringEntries
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))+".log"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			if _, err := f.WriteString("x"); err != nil {
				errs <- err
				return
			}
			errs <- r.sync(f.Fd(), false)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.waiters) != 0 {
		t.Fatalf("%d syncs still waiting after every one returned", len(r.waiters))
	}
}

// A store opened on the operating system's file system syncs its log
// through the ring where the kernel has one, and what it accepted is
// there after a restart.
func TestStoreSyncsItsLogThroughTheRing(t *testing.T) {
	newTestRing(t) // skips where there is none
	dir := t.TempDir()
	cfg := poll.Config{}.StoreConfig()
	s, err := Open(dir, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.LogSync(); got != "io_uring" {
		t.Fatalf("LogSync = %q, want io_uring", got)
	}
	hub := poll.NewHub(poll.Config{Store: s})
	sess, err := hub.Connect(session.Request{DeviceID: "ring"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Publish(poll.Push{To: poll.Target{SessionID: sess.ID}, Data: json.RawMessage(`"hi"`)}); err != nil {
		t.Fatal(err)
	}
	hub.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l := s.Loaded(); l.Sessions != 1 || l.Messages != 1 {
		t.Fatalf("after the restart: %+v, want 1 session and 1 message", l)
	}
}

// Where io_uring_setup works but io_uring_register is refused (a seccomp
// profile can do that), newRing fails at once, without waiting for a
// reaper it never started, and a store falls back to fdatasync. The
// filter is installed in a child process (it cannot be removed).
func TestRingRefusedRegisterFallsBack(t *testing.T) {
	if os.Getenv("LONGPOLL_RING_CHILD") == "1" {
		refuseRegister(t)
		done := make(chan error, 1)
		go func() {
			r, err := newRing(slog.Default())
			if r != nil {
				r.close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, syscall.EPERM) {
				t.Fatalf("newRing with register refused: %v, want EPERM", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("newRing still blocked after 10 s")
		}
		s, err := Open(t.TempDir(), poll.Config{}.StoreConfig(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.LogSync(); got != "fdatasync" {
			t.Fatalf("LogSync = %q, want fdatasync", got)
		}
		return
	}
	newTestRing(t) // skips where there is no ring at all
	cmd := exec.Command(os.Args[0], "-test.run=^TestRingRefusedRegisterFallsBack$", "-test.v")
	cmd.Env = append(os.Environ(), "LONGPOLL_RING_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// refuseRegister makes io_uring_register fail with EPERM in every thread
// of this process, from now on.
func refuseRegister(t *testing.T) {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // the system call's number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: sysIOUringRegister},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	const setModeFilter, filterFlagTsync = 1, 1
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, setModeFilter, filterFlagTsync, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		t.Fatal(e)
	}
}

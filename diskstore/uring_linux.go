package diskstore

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// ring syncs files through an io_uring: the kernel runs the fdatasync in
// a worker of its own and signals its completion on an eventfd that the
// Go network poller watches, so no Go thread blocks in the system call.
// A blocking fdatasync holds its thread for the length of the disk's
// flush (about a millisecond here); the scheduler hands that thread's
// processor to another thread and takes it back afterwards, and on a
// paravirtualised machine those thread switches cost more than the
// work around them (BENCHMARKS.md, "Durable mode").
//
// Concurrency: mu guards submission (the submission ring's tail and the
// waiters map); the reaper goroutine alone advances the completion
// ring's head. A ring lives as long as the process (one per Store).
type ring struct {
	fd      int
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray unsafe.Pointer
	sqes    unsafe.Pointer
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    unsafe.Pointer
	event   *os.File // the eventfd, read through the network poller

	mu      sync.Mutex
	next    uint64
	waiters map[uint64]chan int32
	free    []chan int32
	broken  bool  // io_uring_enter failed once: every later sync is the system call
	err     error // the reaper's failure: every later sync fails with it
	mmaps   [][]byte
	reaped  chan struct{} // closed when the reaper has returned
	reaping bool          // the reaper was started (newRing's last step)
	log     *slog.Logger
}

const (
	sysIOUringSetup    = 425
	sysIOUringEnter    = 426
	sysIOUringRegister = 427

	ioringOpFsync         = 3
	ioringFsyncDatasync   = 1
	ioringRegisterEventfd = 4
	ioringFeatSingleMmap  = 1
	ioringOffSQRing       = 0
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	sqeSize               = 64
	cqeSize               = 16
	ringEntries           = 64
)

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type uringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  sqringOffsets
	CqOff                                                                  cqringOffsets
}

// newRing sets up a ring, or returns an error when the kernel has none
// (before Linux 5.1, or io_uring disabled): the caller then syncs with
// the system call.
func newRing(log *slog.Logger) (*ring, error) {
	var p uringParams
	fd, _, errno := syscall.Syscall(sysIOUringSetup, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd), waiters: make(map[uint64]chan int32), reaped: make(chan struct{}), log: log}
	fail := func(err error) (*ring, error) {
		r.close()
		return nil, err
	}
	sqSize := int(p.SqOff.Array + p.SqEntries*4)
	cqSize := int(p.CqOff.Cqes + p.CqEntries*cqeSize)
	if p.Features&ioringFeatSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	sq, err := unix.Mmap(r.fd, ioringOffSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("io_uring: mapping the submission ring: %w", err))
	}
	r.mmaps = append(r.mmaps, sq)
	cq := sq
	if p.Features&ioringFeatSingleMmap == 0 {
		if cq, err = unix.Mmap(r.fd, ioringOffCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return fail(fmt.Errorf("io_uring: mapping the completion ring: %w", err))
		}
		r.mmaps = append(r.mmaps, cq)
	}
	sqes, err := unix.Mmap(r.fd, ioringOffSQEs, int(p.SqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("io_uring: mapping the submission entries: %w", err))
	}
	r.mmaps = append(r.mmaps, sqes)
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(sq, p.SqOff.Head), u32(sq, p.SqOff.Tail), *u32(sq, p.SqOff.RingMask)
	r.sqArray = unsafe.Pointer(&sq[p.SqOff.Array])
	r.sqes = unsafe.Pointer(&sqes[0])
	r.cqHead, r.cqTail, r.cqMask = u32(cq, p.CqOff.Head), u32(cq, p.CqOff.Tail), *u32(cq, p.CqOff.RingMask)
	r.cqes = unsafe.Pointer(&cq[p.CqOff.Cqes])

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fail(fmt.Errorf("io_uring: eventfd: %w", err))
	}
	r.event = os.NewFile(uintptr(efd), "io_uring-eventfd") // non-blocking: read through the poller
	e32 := int32(efd)
	for {
		_, _, errno := syscall.Syscall6(sysIOUringRegister, uintptr(r.fd), ioringRegisterEventfd, uintptr(unsafe.Pointer(&e32)), 1, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return fail(fmt.Errorf("io_uring: registering the eventfd: %w", errno))
		}
		break
	}
	r.reaping = true
	go r.reap()
	return r, nil
}

// close releases the ring once no sync is under way (the engine using
// it is closed): the reaper returns, then the mappings go.
func (r *ring) close() {
	if r.event != nil {
		r.event.Close()
		if r.reaping {
			<-r.reaped
		}
	}
	for _, m := range r.mmaps {
		_ = unix.Munmap(m)
	}
	syscall.Close(r.fd)
}

// sync makes what was written to fd durable: its data (fdatasync) or,
// with full, its metadata too (fsync). It waits for the kernel's answer
// without holding a thread.
func (r *ring) sync(fd uintptr, full bool) error {
	r.mu.Lock()
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		return err
	}
	tail := atomic.LoadUint32(r.sqTail)
	if r.broken || len(r.waiters) > int(r.sqMask) || tail-atomic.LoadUint32(r.sqHead) > r.sqMask { // as many syncs under way as the ring has entries
		r.mu.Unlock()
		return syscallSync(fd, full)
	}
	idx := tail & r.sqMask
	sqe := (*[sqeSize]byte)(unsafe.Add(r.sqes, uintptr(idx)*sqeSize))
	clear(sqe[:])
	sqe[0] = ioringOpFsync
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	if !full {
		*(*uint32)(unsafe.Pointer(&sqe[28])) = ioringFsyncDatasync
	}
	r.next++
	id := r.next
	*(*uint64)(unsafe.Pointer(&sqe[32])) = id
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	var done chan int32
	if n := len(r.free); n > 0 {
		done, r.free = r.free[n-1], r.free[:n-1]
	} else {
		done = make(chan int32, 1)
	}
	r.waiters[id] = done
	atomic.StoreUint32(r.sqTail, tail+1)
	for tries := 1; ; tries++ {
		n, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == syscall.EINTR || (errno == syscall.EAGAIN || errno == syscall.EBUSY) && tries < enterTries {
			continue // interrupted, or short of kernel memory for a moment
		}
		if errno != 0 || n != 1 { // the entry may never run: sync with the system call from now on
			delete(r.waiters, id)
			r.broken = true
			r.mu.Unlock()
			r.log.Error("storage: io_uring_enter failed: the log is synced with fdatasync, which blocks a thread, from now on; restart to use io_uring again (with GOMAXPROCS=2 if it fails again)", "err", errno, "submitted", n)
			return syscallSync(fd, full)
		}
		break
	}
	r.mu.Unlock()
	res := <-done
	r.mu.Lock()
	r.free = append(r.free, done)
	r.mu.Unlock()
	if res == -1<<31 { // the reaper failed
		return r.failure()
	}
	if res < 0 {
		return &os.PathError{Op: "fdatasync", Path: fmt.Sprint("fd ", fd), Err: syscall.Errno(-res)}
	}
	return nil
}

// enterTries bounds the attempts at submitting one sync while the kernel
// answers EAGAIN or EBUSY.
const enterTries = 10

// syscallSync is sync as a blocking system call.
func syscallSync(fd uintptr, full bool) error {
	var err error
	if full {
		err = unix.Fsync(int(fd))
	} else {
		err = unix.Fdatasync(int(fd))
	}
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: fmt.Sprint("fd ", fd), Err: err}
	}
	return nil
}

func (r *ring) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// reap waits on the eventfd and hands each completion to its waiter.
func (r *ring) reap() {
	defer close(r.reaped)
	var buf [8]byte
	for {
		if _, err := r.event.Read(buf[:]); err != nil {
			r.mu.Lock()
			r.err = fmt.Errorf("io_uring: reading its eventfd: %w", err)
			for id, w := range r.waiters {
				w <- -1 << 31
				delete(r.waiters, id)
			}
			r.mu.Unlock()
			return
		}
		head := atomic.LoadUint32(r.cqHead)
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			continue
		}
		r.mu.Lock()
		for ; head != tail; head++ {
			cqe := unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize)
			id := *(*uint64)(cqe)
			res := *(*int32)(unsafe.Add(cqe, 8))
			if w, ok := r.waiters[id]; ok {
				delete(r.waiters, id)
				w <- res
			}
		}
		atomic.StoreUint32(r.cqHead, tail)
		r.mu.Unlock()
	}
}

// ringFS is fs with the engine's log files synced through r: the one
// sync each group commit waits for.
type ringFS struct {
	vfs.FS
	r *ring
}

// ringFile is a log file of a ringFS.
type ringFile struct {
	vfs.File
	r *ring
}

func (f ringFile) Sync() error     { return f.r.sync(f.Fd(), true) }
func (f ringFile) SyncData() error { return f.r.sync(f.Fd(), false) }

func (fs ringFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") || f.Fd() == vfs.InvalidFd {
		return f, err
	}
	return ringFile{f, fs.r}, nil
}

func (fs ringFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs ringFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

// logSyncFS is the operating system's file system with the engine's log
// synced through an io_uring, and what releases the ring once the engine
// is closed; an error when the kernel has no io_uring (before Linux 5.1,
// or disabled by /proc/sys/kernel/io_uring_disabled or a seccomp filter).
func logSyncFS(log *slog.Logger) (vfs.FS, func(), error) {
	r, err := newRing(log)
	if err != nil {
		return nil, nil, err
	}
	return ringFS{vfs.Default, r}, r.close, nil
}

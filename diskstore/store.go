// Package diskstore is the durable poll.Store: everything the memory store
// holds (sessions, mailboxes with their seqs, offline lists, idempotency
// ids, recently online names) is also written to a data directory, with
// pebble (github.com/cockroachdb/pebble) as the storage engine, and read
// back when the server starts again, after a graceful stop or a kill -9.
//
// The working set stays in memory (a poll.MemoryStore): reads and waits
// cost what they cost without a disk. Every change reaches a journal (the
// poll.Journal the memory store records to), which one goroutine writes to
// pebble in batches (group commit). A 202 waits for its batch (Flush); a
// message is shown to polls only once its batch is written, so a client
// never sees a message a crash could take back, and seqs never repeat.
package diskstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/longpoll/longpoll/poll"
)

// Options configure a Store beyond the memory store's configuration.
type Options struct {
	// SyncInterval 0 (--fsync always) syncs every batch before its
	// requests are answered. A positive interval writes each batch at once
	// without syncing it, and syncs every interval: a kill -9 loses
	// nothing (the writes are in the operating system), a power loss or
	// kernel crash up to the last interval.
	SyncInterval time.Duration
	// Logger receives the store's and pebble's log lines; nil discards.
	Logger *slog.Logger
	// OnCommit, if set, hears each sync: how long the oldest batch it made
	// durable waited from the start of its write (metrics).
	OnCommit func(took time.Duration)
	// FS is the file system pebble uses; nil the operating system's (tests
	// inject write errors through it).
	FS vfs.FS
	// MinFreeBytes is the free space the data directory's file system must
	// keep: below it the store refuses writes (Err) until space is freed,
	// so that the engine never runs into a full disk, where it would stall
	// rather than fail. 0 means DefaultMinFreeBytes; negative, no check.
	MinFreeBytes int64
	// FreeBytes reports the free space; nil asks the file system (statfs).
	FreeBytes func() (uint64, error)
}

// DefaultMinFreeBytes is Options.MinFreeBytes's default: room for the
// engine's log, memtable flushes and compactions of a store at the default
// --max-stored-bytes.
const DefaultMinFreeBytes = 256 << 20

// spaceCheckInterval is how often the free space is looked at.
const spaceCheckInterval = time.Second

// Store is a poll.Store kept in a data directory. The poll.Store methods
// are the memory store's (see poll.MemoryStore), but Flush, Err and Stats.
type Store struct {
	*poll.MemoryStore
	dir  string
	db   *pebble.DB
	j    *journal
	lock *os.File
	log  *slog.Logger

	loaded    LoadStats
	backupSrv *http.Server // nil: no backup socket
	logSync   string       // LogSync
	closeRing func()       // releases the io_uring once the engine is closed

	closeOnce sync.Once
	closeErr  error

	lowSpace  atomic.Pointer[error] // set while the disk is below MinFreeBytes
	stopSpace chan struct{}
	space     Options // MinFreeBytes and FreeBytes, when checked
}

// LogSync names how the engine's log is made durable: "io_uring" (Linux
// 5.1 and later: the kernel runs each fdatasync in a worker of its own,
// and no Go thread waits in the system call) or "fdatasync" (the system
// call, which holds a thread for as long as the disk takes).
func (s *Store) LogSync() string { return s.logSync }

// LoadStats say what Open read back.
type LoadStats struct {
	Sessions, Messages, OfflineMessages, IDs int
	Took                                     time.Duration
}

// lockName is the file in the data directory that a running server holds
// locked (flock), besides pebble's own LOCK.
const lockName = "longpoll.lock"

// Open opens (or creates) the data directory dir and reads back what it
// holds. It fails, naming the directory and what to do, when dir is in use
// by another process, cannot be read or written, holds something that is
// not longpoll data, or holds data it cannot read: never a fresh start
// over old data.
func Open(dir string, cfg poll.StoreConfig, opt Options) (*Store, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	dir = abs
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s cannot be created: %w (create it, writable by this user, or pick another --data-dir)", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if err := checkContents(dir); err != nil {
		lock.Close()
		return nil, err
	}
	removeCheckpoints(dir)
	popts := &pebble.Options{Logger: pebbleLogger{opt.Logger, &errorLimiter{}}, FormatMajorVersion: pebble.FormatNewest, FS: opt.FS}
	closeRing := func() {}
	logSync := "fdatasync"
	if opt.FS == nil {
		if fs, closeFS, err := logSyncFS(opt.Logger); err == nil {
			popts.FS, closeRing, logSync = fs, closeFS, "io_uring"
		} else {
			opt.Logger.Info("storage: the engine's log is synced with fdatasync, which blocks a thread for each sync", "reason", err)
		}
	}
	db, err := openPebble(dir, popts)
	if err != nil {
		closeRing()
		lock.Close()
		return nil, err
	}
	s := &Store{MemoryStore: poll.NewMemoryStore(cfg), dir: dir, db: db, lock: lock, log: opt.Logger, logSync: logSync, closeRing: closeRing}
	loaded, recs, err := s.load(cfg)
	if err != nil {
		db.Close()
		closeRing()
		lock.Close()
		return nil, fmt.Errorf("data directory %s cannot be read: %w; restore it from a backup (longpoll backup), or move it away to start empty", dir, err)
	}
	loaded.Took = time.Since(start)
	s.loaded = loaded
	s.j = newJournal(db, opt.SyncInterval, opt.OnCommit, recs)
	s.MemoryStore.Attach(s.j)
	s.j.start()
	s.serveBackups()
	if opt.MinFreeBytes == 0 {
		opt.MinFreeBytes = DefaultMinFreeBytes
	}
	if opt.MinFreeBytes > 0 {
		if opt.FreeBytes == nil {
			opt.FreeBytes = func() (uint64, error) { return freeBytes(dir) }
		}
		s.stopSpace, s.space = make(chan struct{}), opt
		s.checkSpace(opt)
		go s.watchSpace(opt)
	}
	return s, nil
}

// watchSpace checks the free space every spaceCheckInterval until Close.
func (s *Store) watchSpace(opt Options) {
	t := time.NewTicker(spaceCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopSpace:
			return
		case <-t.C:
			s.checkSpace(opt)
		}
	}
}

// checkSpace sets or clears lowSpace, logging each change.
func (s *Store) checkSpace(opt Options) {
	free, err := opt.FreeBytes()
	if err != nil {
		return // cannot tell: the writes will tell
	}
	low := free < uint64(opt.MinFreeBytes)
	was := s.lowSpace.Load() != nil
	switch {
	case low && !was:
		e := fmt.Errorf("%w: the data directory %s has %d MiB free, below the %d MiB it keeps in reserve: writes are refused until space is freed",
			poll.ErrStorage, s.dir, free>>20, opt.MinFreeBytes>>20)
		s.lowSpace.Store(&e)
		s.log.Error("storage: disk almost full; connects, pushes and sends get 503 until space is freed", "dir", s.dir, "freeMiB", free>>20, "reserveMiB", opt.MinFreeBytes>>20)
	case !low && was:
		s.lowSpace.Store(nil)
		s.log.Info("storage: disk space freed; writes taken again", "dir", s.dir, "freeMiB", free>>20)
	}
}

// freeBytes is the space available to this user on dir's file system.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// openPebble opens the engine, in words an operator can act on when it
// fails. (The directory lock was taken before, so a held LOCK here is
// another program's.)
func openPebble(dir string, opts *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			db, err = nil, fmt.Errorf("data directory %s cannot be opened: %v; restore it from a backup, or move it away to start empty", dir, f)
		}
	}()
	db, err = pebble.Open(dir, opts)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("data directory %s is not readable and writable by this user: %w", dir, err)
	default:
		return nil, fmt.Errorf("data directory %s cannot be opened: %w; if it is damaged, restore it from a backup (longpoll backup) or move it away to start empty", dir, err)
	}
}

// lockDir takes the directory's lock file, or says who holds it.
func lockDir(dir string) (*os.File, error) {
	name := filepath.Join(dir, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("data directory %s is not writable by this user: %w (fix its owner or mode, or pick another --data-dir)", dir, err)
		}
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another longpoll (it holds %s); stop that server, or pick another --data-dir", dir, name)
		}
		return nil, fmt.Errorf("data directory %s cannot be locked: %w", dir, err)
	}
	return f, nil
}

// checkContents refuses a directory that holds files but no pebble store:
// someone else's data, or longpoll data damaged beyond pebble's own files.
func checkContents(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data directory %s is not readable: %w", dir, err)
	}
	var others []string
	engine := false
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == lockName || name == socketName:
		case strings.HasPrefix(name, "MANIFEST-"):
			engine = true
		default:
			others = append(others, name)
		}
	}
	if !engine && len(others) > 0 {
		return fmt.Errorf("data directory %s is not empty and holds no longpoll data (%s …); pick an empty or new --data-dir, or restore a backup into it", dir, others[0])
	}
	return nil
}

// Flush implements poll.Store: it returns once every change made before
// it was called is on disk (written and synced; with a sync interval,
// written), or the store has failed (an error wrapping poll.ErrStorage).
func (s *Store) Flush() error { return s.j.Flush() }

// Sync syncs what was written so far and shows polls the messages it
// held, now rather than at the next interval; with every batch synced
// (no SyncInterval) there is nothing to do.
func (s *Store) Sync() error { return s.j.syncAndRelease() }

// Err implements poll.Store: the failed write's error (until a restart),
// or, while the disk is below Options.MinFreeBytes, an error saying so
// (until space is freed); both wrap poll.ErrStorage.
func (s *Store) Err() error {
	if err := s.j.Err(); err != nil {
		return err
	}
	if e := s.lowSpace.Load(); e != nil {
		return *e
	}
	return nil
}

// Stats implements poll.Store.
func (s *Store) Stats() poll.StoreStats {
	st := s.MemoryStore.Stats()
	st.Store = "disk"
	return st
}

// Dir is the data directory (absolute).
func (s *Store) Dir() string { return s.dir }

// Loaded says what Open read back and how long it took.
func (s *Store) Loaded() LoadStats { return s.loaded }

// WriteErrors counts the writes that failed: 0, or 1 once the store has
// failed (it writes nothing after).
func (s *Store) WriteErrors() int {
	if s.j.Err() != nil {
		return 1
	}
	return 0
}

// DiskBytes is the data directory's size as the engine counts it.
func (s *Store) DiskBytes() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// Close writes what is left, stops writing and closes the directory. Call
// it after the hub has stopped; later calls do nothing. A failed store is
// closed without another write (what it holds on disk is what a restart
// reads).
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopSpace != nil {
			close(s.stopSpace)
		}
		if s.backupSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = s.backupSrv.Shutdown(ctx) // a backup under way finishes first
			cancel()
		}
		s.j.close() // writes and syncs what is left
		s.closeErr = closePebble(s.db)
		if s.j.Err() != nil {
			s.closeErr = nil // the failure was reported when it happened
		}
		s.closeRing()
		s.lock.Close()
	})
	return s.closeErr
}

// closePebble closes the engine; after a failed write it may complain
// (Fatalf), which is returned.
func closePebble(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				err = fmt.Errorf("closing: %v", r)
				return
			}
			err = f
		}
	}()
	return db.Close()
}

// fatal is what pebbleLogger.Fatalf panics with: pebble calls Fatalf
// where it cannot go on (a commit whose write or sync failed). The journal
// recovers it into the failed write's error; elsewhere it ends the
// process, as pebble's default logger would, after logging it.
type fatal struct{ msg string }

func (f fatal) Error() string { return f.msg }

// recoverFatal, deferred, turns a fatal panic of pebble's into *err; any
// other panic goes on.
func recoverFatal(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(fatal)
		if !ok {
			panic(r)
		}
		*err = f
	}
}

// pebbleLogger routes pebble's log lines to slog: info at debug level
// (pebble is chatty), errors as errors, at most one a second (a failing
// flush is retried hundreds of times a second), with the count of those
// left out.
type pebbleLogger struct {
	log     *slog.Logger
	limiter *errorLimiter
}

type errorLimiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.limiter.mu.Lock()
	now := time.Now()
	if now.Sub(l.limiter.last) < time.Second {
		l.limiter.dropped++
		l.limiter.mu.Unlock()
		return
	}
	dropped := l.limiter.dropped
	l.limiter.last, l.limiter.dropped = now, 0
	l.limiter.mu.Unlock()
	l.log.Error("pebble: "+fmt.Sprintf(format, args...), "errorsLeftOut", dropped)
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("storage failed: "+msg, "action", "fix the data directory's disk, then restart longpoll")
	panic(fatal{msg})
}

package diskstore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Backups. A running server answers on a Unix socket in its data
// directory (socketName, mode 0600: whoever may read the directory may
// take a copy): GET /backup streams a tar of a pebble checkpoint, a
// consistent copy of the store as of one batch, taken without stopping
// anything (the checkpoint hard-links the engine's immutable files).
// Backup, the client, falls back to copying the directory itself when no
// server holds it. A backup is restored by extracting it into an empty
// directory (tar -xf FILE -C DIR) and starting longpoll on that directory.

// socketName is the backup socket's file in the data directory.
const socketName = "longpoll.sock"

// checkpointPrefix names the temporary checkpoint directories inside the
// data directory (the same file system, so that hard links work); Open
// removes any a crash left behind.
const checkpointPrefix = ".backup-"

// serveBackups listens on the data directory's socket until stop closes.
// A directory whose path is too long for a Unix socket has no socket (a
// warning says so); backups then need the server stopped.
func (s *Store) serveBackups() {
	name := filepath.Join(s.dir, socketName)
	_ = os.Remove(name) // a socket a killed server left; the lock says it is ours now
	ln, err := net.Listen("unix", name)
	if err != nil {
		s.log.Warn("storage: no backup socket; longpoll backup will need the server stopped", "path", name, "err", err)
		return
	}
	if err := os.Chmod(name, 0o600); err != nil {
		ln.Close()
		s.log.Warn("storage: no backup socket", "path", name, "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("Content-Type", "application/x-tar")
		n, err := s.Backup(w)
		if err != nil {
			s.log.Error("storage: backup failed", "err", err)
			if n == 0 {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			panic(http.ErrAbortHandler) // cut the stream: the client must not take a partial tar for a backup
		}
		s.log.Info("storage: backup taken", "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	})
	s.backupSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() { _ = s.backupSrv.Serve(ln) }()
}

// Backup writes a tar of a consistent copy of the store to w and returns
// how many bytes it wrote.
func (s *Store) Backup(w io.Writer) (int64, error) {
	tmp, err := os.MkdirTemp(s.dir, checkpointPrefix)
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, "checkpoint") // Checkpoint makes the directory itself
	if err := s.db.Checkpoint(cp, pebble.WithFlushedWAL()); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	return writeTar(w, cp, nil)
}

// removeCheckpoints removes the temporary checkpoints a crash left.
func removeCheckpoints(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), checkpointPrefix) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// writeTar writes the regular files under dir (but those skip names) to w
// as a tar, paths relative to dir.
func writeTar(w io.Writer, dir string, skip func(name string) bool) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return cw.n, err
	}
	return cw.n, tw.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Backup writes a consistent copy of the data directory dir to out, as a
// tar: from the server running on dir (its backup socket), or, when none
// holds dir, from the directory itself (locked meanwhile). out is written
// whole or not at all (a temporary file renamed at the end).
func Backup(ctx context.Context, dir, out string) (int64, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	dir = abs
	if _, err := os.Stat(filepath.Join(dir, lockName)); err != nil {
		return 0, fmt.Errorf("%s is not a longpoll data directory (no %s): %w", dir, lockName, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".partial-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := backupTo(ctx, dir, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return n, os.Rename(tmp.Name(), out)
}

func backupTo(ctx context.Context, dir string, w io.Writer) (int64, error) {
	n, err := backupFromServer(ctx, dir, w)
	if !errors.Is(err, errNoServer) {
		return n, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return 0, fmt.Errorf("%w (and its backup socket %s does not answer)", err, filepath.Join(dir, socketName))
	}
	defer lock.Close()
	return writeTar(w, dir, func(name string) bool {
		return name == lockName || name == socketName || strings.HasPrefix(name, checkpointPrefix)
	})
}

var errNoServer = errors.New("no server on the backup socket")

func backupFromServer(ctx context.Context, dir string, w io.Writer) (int64, error) {
	name := filepath.Join(dir, socketName)
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", name)
		},
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://longpoll/backup", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNoServer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("the server on %s failed the backup: %s", dir, strings.TrimSpace(string(msg)))
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup from the server on %s: %w", dir, err)
	}
	return n, nil
}

//go:build !linux

package diskstore

import (
	"errors"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// logSyncFS: io_uring is Linux's; elsewhere the engine syncs its log with
// the system call.
func logSyncFS(*slog.Logger) (vfs.FS, func(), error) {
	return nil, nil, errors.New("io_uring is Linux only")
}

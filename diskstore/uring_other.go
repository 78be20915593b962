//go:build !linux

package diskstore

import (
	"errors"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// logSyncFS: io_uring is Linux's; elsewhere the engine syncs its log with
// the system call.
func logSyncFS() (vfs.FS, func(), error) {
	return nil, nil, errors.New("io_uring is Linux only")
}

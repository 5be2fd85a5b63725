//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// errLocked means another process holds the database.
var errLocked = errors.New("the database is in use by another herald process")

// lockFile takes an exclusive advisory lock on path, held until closeLock.
// The kernel drops it when the process dies, so a crash leaves no stale lock.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", errLocked, path)
		}
		return nil, fmt.Errorf("lock file: %w", err)
	}
	return f, nil
}

func closeLock(f *os.File) {
	if f != nil {
		f.Close()
	}
}

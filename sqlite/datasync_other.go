//go:build !linux

package sqlite

import "os"

// datasync flushes f (fsync).
func datasync(f *os.File) error { return f.Sync() }

//go:build !unix

package sqlite

import "os"

// lockFile is a no-op where flock is not available; Exclusive then only
// resets leases, and running two processes on one file is the operator's
// mistake to avoid.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

func closeLock(f *os.File) {
	if f != nil {
		f.Close()
	}
}

package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// walSync makes the writer's commits durable apart from the writer itself.
//
// The writer connection runs synchronous=NORMAL: a commit hands its WAL
// frames to the operating system and returns, without an fsync. A commit
// that must be durable (a publish, an API change) then waits in walSync for
// an fdatasync of the WAL file that began after it committed. The writer is
// free meanwhile, so the next transaction runs while the disk flushes this
// one, and every commit that waits at the same moment shares one flush.
//
// This is what synchronous=FULL gives, one step later: in WAL mode FULL
// only adds an fsync of the WAL at commit, and a commit's frames are in
// the WAL file (or, after a checkpoint, which syncs the WAL first and the
// database after, in the database) when the commit returns. The flush is of
// the WAL file's inode, whichever descriptor asks for it.
type walSync struct {
	path string // the WAL file
	// flush makes path's written data durable; walFile.flush (fdatasync)
	// by default.
	flush func(path string) error
	file  walFile
	// failed, if set, hears of the first failed flush.
	failed func(error)

	mu      sync.Mutex
	cond    sync.Cond
	commits uint64 // transactions committed on the writer so far
	synced  uint64 // commits made durable by a finished flush
	running bool   // a flush is under way
	err     error  // a failed flush: every later wait fails too
}

func newWALSync(dbPath string) *walSync {
	w := &walSync{path: dbPath + "-wal"}
	w.flush = w.file.flush
	w.cond.L = &w.mu
	return w
}

// close waits for a flush under way and closes the WAL's descriptor.
func (w *walSync) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.running {
		w.cond.Wait()
	}
	return w.file.close()
}

// committed notes a commit on the writer and returns its number, to wait
// for. Call it after the commit has returned.
func (w *walSync) committed() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.commits++
	return w.commits
}

// count returns how many commits were noted so far.
func (w *walSync) count() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.commits
}

// wait returns once commit n is durable. The first waiter to find no
// flush under way runs one for everything committed by then; the others
// wait for it. After a failed flush the kernel may have dropped the data it
// could not write, and a later flush could succeed without it (PostgreSQL's
// "fsyncgate"), so a failure is final: this and every later wait return it,
// and the store answers unavailable until it is restarted.
func (w *walSync) wait(n uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.synced < n && w.err == nil {
		if w.running {
			w.cond.Wait()
			continue
		}
		w.running = true
		target := w.commits
		w.mu.Unlock()
		err := w.flush(w.path)
		w.mu.Lock()
		w.running = false
		if err != nil {
			w.err = fmt.Errorf("flush the write-ahead log: %w", err)
			if w.failed != nil {
				w.failed(w.err)
			}
		} else {
			w.synced = max(w.synced, target)
		}
		w.cond.Broadcast()
	}
	return w.err
}

// walFile flushes the WAL through one descriptor, opened by the first
// flush and kept: SQLite deletes the WAL only once its last connection has
// closed (the writer stays open until Close), and a checkpoint that starts
// it over or truncates it keeps the file. Only one flush runs at a time
// (walSync.running), so it needs no lock of its own.
type walFile struct {
	f *os.File
}

// flush fdatasyncs the file at path. A missing file has nothing to flush:
// nothing was committed yet.
func (w *walFile) flush(path string) error {
	if w.f == nil {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		w.f = f
	}
	return datasync(w.f)
}

func (w *walFile) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

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
	// flush makes path's written data durable; fdatasync by default.
	flush func(path string) error
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
	w := &walSync{path: dbPath + "-wal", flush: flushFile}
	w.cond.L = &w.mu
	return w
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

// flushFile fdatasyncs the file at path. A missing file has nothing left to
// flush: SQLite deletes the WAL only once its last connection has closed,
// after a checkpoint that synced its frames into the database.
func flushFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = datasync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

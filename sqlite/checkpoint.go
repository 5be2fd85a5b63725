package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// DefaultCheckpointEvery is the default of Config.CheckpointEvery.
const DefaultCheckpointEvery = 250 * time.Millisecond

// checkpointer copies the write-ahead log into the database on a
// connection of its own, beside the writer (a PASSIVE checkpoint never
// blocks it), every Config.CheckpointEvery in which something was
// committed. Left to the writer, a checkpoint runs inside whichever commit
// crosses wal_autocheckpoint and holds every publish behind it while it
// copies thousands of pages; here the writer's own checkpoint is only the
// bound on the WAL's size (WALCheckpointPages), and it finds little left to
// copy. Once a checkpoint has copied every frame, the next write starts the
// WAL over from its beginning.
type checkpointer struct {
	db      *sql.DB // one connection
	every   time.Duration
	commits func() uint64 // writes committed so far
	stop    context.CancelFunc
	done    chan struct{}
}

func startCheckpointer(db *sql.DB, every time.Duration, commits func() uint64) *checkpointer {
	ctx, stop := context.WithCancel(context.Background())
	c := &checkpointer{db: db, every: every, commits: commits, stop: stop, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := c.commits(); n != seen {
			seen = n
			// A failure (the database closing, an I/O error) leaves the
			// work to the writer's own checkpoint; the next tick tries again.
			_, _ = c.checkpoint(ctx)
		}
	}
}

// checkpoint runs one PASSIVE checkpoint and returns how many frames the
// WAL holds.
func (c *checkpointer) checkpoint(ctx context.Context) (frames int, err error) {
	var busy, copied int
	err = c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
	return frames, err
}

// close stops the loop and closes its connection.
func (c *checkpointer) close() error {
	c.stop()
	<-c.done
	return c.db.Close()
}

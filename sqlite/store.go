package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald"
)

// Defaults for Config.
const (
	// DefaultBusyTimeout is how long a connection waits for another
	// process's write lock before giving up.
	DefaultBusyTimeout = 10 * time.Second
	// DefaultReaders is the least number of read connections.
	DefaultReaders = 4
	// WALCheckpointPages is how many pages the write-ahead log holds before
	// a commit copies them into the database (wal_autocheckpoint; SQLite's
	// default is 1,000). A checkpoint writes the latest version of each
	// page once, so the hot pages that every commit rewrites (the right
	// edges of the indexes, the lanes, the header) are copied an eighth as
	// often; the WAL file stays near 8,000 × 4 KiB, 32 MiB.
	WALCheckpointPages = 8000
)

// Config configures Open.
type Config struct {
	// Path is the database file, normally <data-dir>/herald.db. Required.
	Path string
	// Sealer seals signing secrets and encryption keys at rest. Required.
	Sealer *herald.Sealer
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for times the Store interface does not pass in
	// (DeliveryRelease's UpdatedAt); nil means time.Now.
	Now func() time.Time
	// BusyTimeout is how long to wait on another process's lock; 0 means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
	// Readers is the size of the read pool; 0 means max(DefaultReaders, NumCPU).
	Readers int
	// CheckpointEvery is how often a connection beside the writer copies
	// what was committed from the write-ahead log into the database (a
	// PASSIVE checkpoint; see checkpointer); 0 means
	// DefaultCheckpointEvery.
	CheckpointEvery time.Duration
	// Exclusive locks the database for this Store alone (an advisory lock
	// on Path+".lock"), so a second process on the same file fails at Open.
	// Knowing that no other process can hold a lease, Migrate then hands
	// back at once every lease a crashed predecessor left, instead of
	// waiting for them to expire.
	Exclusive bool
}

// Store is the SQLite implementation of herald.Store.
type Store struct {
	w      *sql.DB // the one writer connection
	r      *sql.DB // read-only pool
	sealer *herald.Sealer
	log    *slog.Logger
	now    func() time.Time
	closed atomic.Bool
	lock   *os.File // held while Exclusive
	cache  stmtCache
	sync   *walSync // makes the writer's commits durable, and counts them
	ckpt   *checkpointer
}

var _ herald.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path. It does not
// migrate; call Migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("open sqlite: Config.Path is required")
	}
	if strings.ContainsAny(cfg.Path, "?#") {
		// The driver reads what follows '?' as its own parameters.
		return nil, errors.New("open sqlite: Config.Path must not contain '?' or '#'")
	}
	if cfg.Sealer == nil {
		return nil, errors.New("open sqlite: Config.Sealer is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	if cfg.Readers <= 0 {
		cfg.Readers = max(DefaultReaders, runtime.NumCPU())
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}

	var lock *os.File
	if cfg.Exclusive {
		var err error
		if lock, err = lockFile(cfg.Path + ".lock"); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
	}
	busy := "busy_timeout = " + strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)
	checkpoint := "wal_autocheckpoint = " + strconv.Itoa(WALCheckpointPages)
	w := sql.OpenDB(newConnector(cfg.Path, true, busy, "journal_mode = WAL", "synchronous = NORMAL", checkpoint,
		"foreign_keys = 1", "cache_size = -32768", "temp_store = MEMORY"))
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The writer connects first: it turns WAL on, which needs a write.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		closeLock(lock)
		return nil, fmt.Errorf("open sqlite: %w", classify(err))
	}

	r := sql.OpenDB(newConnector(cfg.Path, false, busy, "query_only = 1", "cache_size = -8192", "temp_store = MEMORY"))
	r.SetMaxOpenConns(cfg.Readers)
	r.SetMaxIdleConns(cfg.Readers)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		closeLock(lock)
		return nil, fmt.Errorf("open sqlite: %w", classify(err))
	}
	c := sql.OpenDB(newConnector(cfg.Path, false, busy))
	c.SetMaxOpenConns(1)
	c.SetMaxIdleConns(1)
	ws := newWALSync(cfg.Path)
	ws.failed = func(err error) {
		cfg.Logger.Error("the database's write-ahead log could not be flushed: no write is durable until herald restarts",
			"err", err)
	}
	s := &Store{w: w, r: r, sealer: cfg.Sealer, log: cfg.Logger, now: cfg.Now, lock: lock, sync: ws}
	s.ckpt = startCheckpointer(c, cfg.CheckpointEvery, ws.count)
	return s, nil
}

// Close stops the checkpointer and closes every connection.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.closeStmts()
	err := errors.Join(s.ckpt.close(), s.r.Close(), s.w.Close(), s.sync.close())
	closeLock(s.lock)
	return err
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("ping: %w", herald.ErrUnavailable)
	}
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping: %w", s.classify(err))
	}
	return nil
}

// write runs fn in one BEGIN IMMEDIATE transaction on the writer, commits
// it and returns once the commit is durable (see walSync). Any error rolls
// everything back.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	n, err := s.writeAsync(ctx, fn)
	if err != nil {
		return err
	}
	return s.durable(n)
}

// writeAsync is write returning as soon as the transaction has committed,
// before it is durable, with the commit's number: the writer is then free
// for the next transaction while the disk catches up. Nothing the
// transaction did may be made known outside the store (a 202, a request to
// an endpoint) before durable(n) has returned nil.
func (s *Store) writeAsync(ctx context.Context, fn func(tx *sql.Tx) error) (n uint64, err error) {
	if s.closed.Load() {
		return 0, herald.ErrUnavailable
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.classify(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return 0, s.classify(err)
	}
	if err := tx.Commit(); err != nil {
		return 0, s.classify(err)
	}
	n = s.sync.committed()
	s.prepareWanted(ctx)
	return n, nil
}

// durable waits until commit n of the writer is on disk.
func (s *Store) durable(n uint64) error {
	if err := s.sync.wait(n); err != nil {
		return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
	}
	return nil
}

// writeSoft runs fn in a write transaction and commits it without waiting
// for the disk (the writer runs synchronous=NORMAL). It is for state whose
// loss in a crash costs at most a repeated attempt: leases, outcomes,
// releases, purges. In WAL mode frames are written in commit order, so the
// next durable commit (any publish) makes this one durable too, and a crash
// can only lose the latest soft commits whole, never tear them or reorder
// them after a durable one. A publish is never soft: its 202 waits for the
// flush (write, writeAsync).
func (s *Store) writeSoft(ctx context.Context, fn func(tx *sql.Tx) error) error {
	_, err := s.writeAsync(ctx, fn)
	return err
}

// reader returns the read pool, or ErrUnavailable once closed.
func (s *Store) reader() (*sql.DB, error) {
	if s.closed.Load() {
		return nil, herald.ErrUnavailable
	}
	return s.r, nil
}

// classify translates driver errors into the domain's: unique violations
// become ErrConflict, a missing row ErrNotFound, and failures of the
// database itself (closed, I/O, locked past the busy timeout) ErrUnavailable.
func (s *Store) classify(err error) error {
	if err != nil && s.closed.Load() && !isDomain(err) {
		return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
	}
	return classify(err)
}

func classify(err error) error {
	if err == nil || isDomain(err) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return herald.ErrNotFound
	}
	if errors.Is(err, sql.ErrConnDone) || err.Error() == "sql: database is closed" {
		return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
	}
	if code, ok := resultCode(err); ok {
		switch code {
		case codeConstraintPrimaryKey, codeConstraintUnique:
			return fmt.Errorf("%w: %w", herald.ErrConflict, err)
		}
		switch code & 0xff {
		case codeBusy, codeLocked, codeIOErr, codeCantOpen, codeFull, codeReadOnly, codeNotADB, codeCorrupt:
			return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
		}
	}
	return err
}

func isDomain(err error) bool {
	return errors.Is(err, herald.ErrNotFound) || errors.Is(err, herald.ErrConflict) ||
		errors.Is(err, herald.ErrInvalid) || errors.Is(err, herald.ErrUnavailable) ||
		errors.Is(err, herald.ErrSealBroken)
}

// Times are stored as unix microseconds; the zero time as NULL.

func micro(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicro(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Cursors of seq-ordered lists are the decimal seq of the last row.

func seqCursor(seq int64) string { return strconv.FormatInt(seq, 10) }

func parseSeqCursor(c string) (int64, bool, error) {
	if c == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(c, 10, 64)
	if err != nil || n < 0 {
		return 0, false, herald.Invalid("cursor", "not a cursor of this list")
	}
	return n, true, nil
}

package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
)

// Defaults for Config.
const (
	// DefaultMaxConns is the most connections a Store opens at once.
	DefaultMaxConns = 16
	// DefaultConnectTimeout bounds each connection attempt when the URL
	// sets no connect_timeout, so Open and a call during an outage fail
	// instead of hanging.
	DefaultConnectTimeout = 5 * time.Second
	// WakeChannel is the LISTEN/NOTIFY channel that tells other processes
	// of new or newly due work, for a store in the schema public; a store
	// in another schema uses its own channel (wakeChannel), since
	// notifications are shared by the whole database.
	WakeChannel = "herald_wake"
)

// Config configures Open.
type Config struct {
	// URL is the database, postgres://user@host:port/db?sslmode=...; required.
	URL string
	// Sealer seals signing secrets and encryption keys at rest. Required.
	Sealer *herald.Sealer
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Schema, when set, is the schema every connection works in (its
	// search_path); Open creates it if missing. "" means the URL's or the
	// server's default search_path (normally public).
	Schema string
	// MaxConns is the most pooled connections open at once; 0 means
	// DefaultMaxConns. Wake holds one more of its own while it runs.
	MaxConns int32
	// Now is the clock for times the Store interface does not pass in
	// (DeliveryRelease's UpdatedAt); nil means time.Now.
	Now func() time.Time
}

// Store is the PostgreSQL implementation of herald.Store. Several processes
// may share one database.
type Store struct {
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for Wake's dedicated connection
	sealer  *herald.Sealer
	log     *slog.Logger
	now     func() time.Time
	wake    string // the LISTEN/NOTIFY channel of the store's schema
	closed  atomic.Bool
	done    chan struct{} // closed by Close: ends Wake and a running ANALYZE
	analyze analyzer
}

var (
	_ herald.Store   = (*Store)(nil)
	_ herald.Waker   = (*Store)(nil)
	_ herald.Claimer = (*Store)(nil)
)

// Open connects to cfg.URL, creating cfg.Schema if it is set and missing.
// It does not migrate; call Migrate. When the server cannot be reached the
// error matches herald.ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("open postgres: Config.URL is required")
	}
	if cfg.Sealer == nil {
		return nil, errors.New("open postgres: Config.Sealer is required")
	}
	if cfg.MaxConns < 0 {
		return nil, errors.New("open postgres: Config.MaxConns must not be negative")
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// The message may quote the URL; say only what is wrong.
		return nil, errors.New("open postgres: Config.URL is not a valid PostgreSQL URL")
	}
	cc := pc.ConnConfig
	pc.MaxConns = cfg.MaxConns
	// A pooled connection idle for a while is checked before use, so a
	// database restart costs one failed ping, not a failed statement.
	pc.MaxConnIdleTime = 5 * time.Minute
	pc.HealthCheckPeriod = 30 * time.Second
	if cc.ConnectTimeout <= 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "herald"
	}
	if _, ok := cc.RuntimeParams["jit"]; !ok {
		// Herald's statements are short; with JIT on, the planner's
		// estimate for a lateral LIMIT over a large deliveries table
		// crosses jit_above_cost and compiling takes longer (hundreds of
		// milliseconds) than running them.
		cc.RuntimeParams["jit"] = "off"
	}
	if _, ok := cc.RuntimeParams["synchronous_commit"]; !ok {
		// A publish is answered 202 only once its commit is flushed,
		// whatever the server's default.
		cc.RuntimeParams["synchronous_commit"] = "on"
	}
	if _, ok := cc.RuntimeParams["plan_cache_mode"]; !ok {
		// pgx prepares every statement, and after five runs PostgreSQL
		// may keep a generic plan, made for arrays of ten rows against
		// the statistics of that moment (on a fresh database, an empty
		// table), until the table is next analyzed. Planning each run
		// costs a fraction of a millisecond and sees the arrays and the
		// table as they are.
		cc.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	if _, ok := cc.RuntimeParams["random_page_cost"]; !ok {
		// The queue's pages are read again within seconds, so they are
		// in memory: at the default 4 the planner reads a whole table
		// of 20,000 deliveries to join 500 outcomes to it by id.
		cc.RuntimeParams["random_page_cost"] = "1.1"
	}
	if cfg.Schema != "" {
		cc.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", classify(err))
	}
	s := &Store{
		pool:    pool,
		connCfg: cc,
		wake:    wakeChannel(cfg.Schema),
		sealer:  cfg.Sealer,
		log:     cfg.Logger,
		now:     cfg.Now,
		done:    make(chan struct{}),
	}
	err = s.withConn(ctx, func(c *pgx.Conn) error {
		if cfg.Schema == "" {
			// The schema the URL's search_path (or the server's) picks.
			var schema *string
			if err := c.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
				return err
			}
			if schema != nil {
				s.wake = wakeChannel(*schema)
			}
			return nil
		}
		// Looked up first: CREATE SCHEMA IF NOT EXISTS needs the CREATE
		// privilege on the database even when the schema exists, which a
		// role given only its schema lacks.
		var exists bool
		if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`,
			cfg.Schema).Scan(&exists); err != nil || exists {
			return err
		}
		_, err := c.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{cfg.Schema}.Sanitize())
		if isCode(err, "23505", "42P06") {
			return nil // created at the same moment by another process
		}
		return err
	})
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return s, nil
}

// wakeChannel is the LISTEN/NOTIFY channel of a store in schema: processes
// sharing a database but not a schema do not wake each other. A name past
// PostgreSQL's 63 bytes is replaced by a digest of it.
func wakeChannel(schema string) string {
	if schema == "" || schema == "public" {
		return WakeChannel
	}
	ch := WakeChannel + "_" + schema
	if len(ch) > 63 {
		sum := sha256.Sum256([]byte(schema))
		ch = WakeChannel + "_" + hex.EncodeToString(sum[:16])
	}
	return ch
}

// Close closes the store's connections. It may be called more than once.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.done)
	s.analyze.stop()
	s.pool.Close()
	return nil
}

// untilClosed returns a context of parent that also ends when the store is
// closed.
func (s *Store) untilClosed(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	err := s.withConn(ctx, func(c *pgx.Conn) error { return c.Ping(ctx) })
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// withConn runs fn on a connection of its own, outside any transaction
// (each statement commits by itself).
func (s *Store) withConn(ctx context.Context, fn func(c *pgx.Conn) error) error {
	if s.closed.Load() {
		return herald.ErrUnavailable
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return classify(err)
	}
	defer pc.Release()
	return classify(fn(pc.Conn()))
}

// maxTxTries is how often a transaction that lost a deadlock or a
// serialization conflict is run again before the error is returned.
const maxTxTries = 3

// tx runs fn in one READ COMMITTED transaction and commits it. Any error
// rolls everything back. A transaction PostgreSQL aborted to break a
// deadlock is run again, so fn must derive all it returns from the database
// each time.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.txRetry(ctx, pgx.TxOptions{}, fn)
}

// softBegin starts a transaction whose commit does not wait for its WAL to
// reach disk, in the same round trip as BEGIN.
const softBegin = "BEGIN; SET LOCAL synchronous_commit = off"

// txSoft is tx for state whose loss in a crash of the database server costs
// at most a repeated attempt: leases, outcomes, releases, purges. Its commit
// returns without waiting for the WAL flush (synchronous_commit off for this
// transaction only). WAL is flushed in order, so the next synchronous commit
// (any publish) makes it durable too, and a server crash can only lose the
// latest soft commits whole, never a publish answered 202.
func (s *Store) txSoft(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.txRetry(ctx, pgx.TxOptions{BeginQuery: softBegin}, fn)
}

func (s *Store) txRetry(ctx context.Context, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	var err error
	for range maxTxTries {
		if err = s.txOnce(ctx, opts, fn); !isCode(err, "40P01", "40001") || ctx.Err() != nil {
			break
		}
	}
	return err
}

func (s *Store) txOnce(ctx context.Context, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	if s.closed.Load() {
		return herald.ErrUnavailable
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return classify(err)
	}
	defer pc.Release()
	tx, err := pc.BeginTx(ctx, opts)
	if err != nil {
		return classify(err)
	}
	if err := fn(tx); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeWait)
		defer cancel()
		_ = tx.Rollback(rctx)
		return classify(err)
	}
	return classify(tx.Commit(ctx))
}

// notify tells every listening process (Wake) that work may be due. Inside
// a transaction it is sent at commit.
func (s *Store) notify(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, notifySQL, s.wake)
	return err
}

// isCode reports whether err is a PostgreSQL error with one of codes.
func isCode(err error, codes ...string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if pe.Code == c {
			return true
		}
	}
	return false
}

// classify translates driver errors into the domain's: a missing row is
// ErrNotFound, a unique violation ErrConflict, and failures to reach the
// server (dial errors, broken or closed connections, a server shutting
// down) ErrUnavailable, keeping the cause.
func classify(err error) error {
	if err == nil || isDomain(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return herald.ErrNotFound
	}
	// Failing to connect at all is an outage whatever the server said (a
	// database not accepting connections answers SQLSTATE 55000).
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %w", herald.ErrConflict, err)
		case pe.Code == "23503": // foreign_key_violation: the parent is missing
			return fmt.Errorf("%w: %w", herald.ErrNotFound, err)
		case strings.HasPrefix(pe.Code, "08"), // connection_exception
			pe.Code == "53300",                                         // too_many_connections
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutting down, crashed, starting
			pe.Code == "25006": // read_only_sql_transaction: a standby after failover
			return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, puddle.ErrClosedPool) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", herald.ErrUnavailable, err)
	}
	return err
}

func isDomain(err error) bool {
	return errors.Is(err, herald.ErrNotFound) || errors.Is(err, herald.ErrConflict) ||
		errors.Is(err, herald.ErrInvalid) || errors.Is(err, herald.ErrUnavailable) ||
		errors.Is(err, herald.ErrSealBroken)
}

// Times go in and out as timestamptz, truncated to the microsecond; the
// zero time is NULL.

func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.Truncate(time.Microsecond), Valid: true}
}

// tsAlways is ts for NOT NULL columns: the zero time is stored as itself.
func tsAlways(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t.Truncate(time.Microsecond), Valid: true}
}

func fromTS(v pgtype.Timestamptz) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return v.Time.UTC()
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

type scanner interface{ Scan(dest ...any) error }

// closeWait bounds a rollback after the caller's context has ended.
const closeWait = 5 * time.Second

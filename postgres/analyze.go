package postgres

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// analyzeFloor is how many rows a store publishes before it first analyzes
// the queue's tables.
const analyzeFloor = 1000

// analyzeSQL refreshes the planner's statistics of the tables a publish
// grows; rowsSQL then reads how many rows they hold together.
const (
	analyzeSQL = `ANALYZE deliveries, events`
	rowsSQL    = `SELECT sum(greatest(reltuples, 0))::float8 FROM pg_class
		WHERE oid IN ('deliveries'::regclass, 'events'::regclass)`
)

// analyzer keeps the statistics of a growing queue current: whenever a
// store has published as many rows (events and deliveries) as the two
// tables held at its last analyze, and at least analyzeFloor, it runs
// ANALYZE in the background.
//
// Autovacuum analyzes too, but wakes once per autovacuum_naptime (a minute
// by default): a fresh database taking thousands of events a second would
// be planned for that minute with the statistics of an empty table, and
// the planner then walks an index of the whole tenant to find one event by
// id. Doubling keeps the cost small: tables of n rows are analyzed about
// log2(n) times by this, and ANALYZE reads a sample of at most 30,000 rows
// of each (about 170 ms of the server's time at 60,000 rows).
type analyzer struct {
	mu      sync.Mutex
	added   int  // rows published since the last analyze
	next    int  // analyze once added reaches this
	running bool // an ANALYZE is under way
	stopped bool // the store is closing: no ANALYZE starts
	wg      sync.WaitGroup
}

// stop keeps any ANALYZE from starting and waits for one under way.
func (a *analyzer) stop() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.wg.Wait()
}

// grew notes n rows published, and starts an ANALYZE when they are enough.
func (s *Store) grew(n int) {
	a := &s.analyze
	a.mu.Lock()
	defer a.mu.Unlock()
	a.added += n
	if a.running || a.stopped || a.added < max(a.next, analyzeFloor) {
		return
	}
	a.running = true
	a.wg.Go(s.runAnalyze)
}

func (s *Store) runAnalyze() {
	ctx, cancel := s.untilClosed(context.Background())
	defer cancel()
	var rows float64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, analyzeSQL); err != nil {
			return err
		}
		return c.QueryRow(ctx, rowsSQL).Scan(&rows)
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("analyze the queue's tables", "err", err)
	}
	a := &s.analyze
	a.mu.Lock()
	defer a.mu.Unlock()
	a.added, a.running = 0, false
	if err == nil {
		a.next = int(rows)
	}
}

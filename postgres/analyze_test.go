package postgres

import (
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// TestAnalyzeOnGrowth: a store that publishes analyzeFloor rows into empty
// tables analyzes them itself, without waiting for autovacuum (off here).
func TestAnalyzeOnGrowth(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub(herald.DefaultTenant, "grow"))
	reltuples := func() float64 {
		var n float64
		if err := st.withConn(t.Context(), func(c *pgx.Conn) error {
			return c.QueryRow(t.Context(), `SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass`).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := st.withConn(t.Context(), func(c *pgx.Conn) error {
		_, err := c.Exec(t.Context(), `ALTER TABLE deliveries SET (autovacuum_enabled = false);
			ALTER TABLE events SET (autovacuum_enabled = false)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := reltuples(); n >= 0 {
		t.Fatalf("deliveries analyzed before the test: reltuples %v", n)
	}
	// An event and its delivery are two rows: analyzeFloor rows in all.
	for range 5 {
		publishN(t, st, t0, herald.DefaultTenant, "grow", analyzeFloor/10)
	}
	deadline := time.Now().Add(30 * time.Second)
	for reltuples() < analyzeFloor/2 {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not analyzed after %d publishes: reltuples %v", analyzeFloor/2, reltuples())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package postgres

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// TestQueryPlans keeps leasing and the due-time query on indexes while a
// dead subscription holds many pending deliveries scheduled later: a scan of
// deliveries would make every lease slow.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("HERALD_PLAN_ROWS")); err == nil {
		n = v
	}
	ok, dead := deadBacklog(t, st, n)
	// Idle subscriptions, with nothing open: a lease must not visit them.
	idle := make([]herald.Subscription, 2000)
	for i := range idle {
		idle[i] = sub(herald.DefaultTenant, "idle")
	}
	mustCreate(t, st, idle...)
	publishN(t, st, t0, herald.DefaultTenant, "ok", 3)
	// One of the dead subscription's deliveries is due, in a batch: its
	// members are found without walking the subscription's backlog.
	err := st.withConn(t.Context(), func(c *pgx.Conn) error {
		_, err := c.Exec(t.Context(), `UPDATE deliveries SET next_attempt_at = $1, batch_id = 'bat_plan'
			WHERE id = 'dlv_dead1'`, t0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	now := tsAlways(t0.Add(time.Second))
	queries := []struct {
		name string
		q    string
		args []any
	}{
		{"reclaim", reclaimSQL, []any{now}},
		{"claim", claimSQL, []any{now, "w", []string{}, 100, int64(time.Second)}},
		{"pick", pickSQL, []any{[]string{ok.ID}, []bool{false}, []int32{16}, now, 100}},
		{"pick ordered", pickSQL, []any{[]string{ok.ID}, []bool{true}, []int32{16}, now, 100}},
		{"pick batch", pickSQL, []any{[]string{dead.ID}, []bool{false}, []int32{16}, now, 100}},
		{"pick ordered batch", pickSQL, []any{[]string{dead.ID}, []bool{true}, []int32{16}, now, 100}},
		{"mark", markSQL, []any{[]string{"dlv_dead1", "dlv_dead2"}, []time.Time{t0, t0}, "w", now}},
		{"next due", nextDueSQL, nil},
	}
	removed := regexp.MustCompile(`Rows Removed by (?:Filter|Join Filter): (\d+)`)
	err = st.tx(t.Context(), func(tx pgx.Tx) error {
		for _, q := range queries {
			rows, err := tx.Query(t.Context(), `EXPLAIN (ANALYZE, COSTS OFF) `+q.q, q.args...)
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			text := strings.Join(plan, "\n")
			if os.Getenv("HERALD_SHOW_PLANS") != "" {
				t.Logf("%s:\n%s", q.name, text)
			}
			if strings.Contains(text, "Seq Scan on subscriptions") || strings.Contains(text, "Index Scan using subscriptions_status") {
				t.Errorf("%s visits every subscription:\n%s", q.name, text)
			}
			if strings.Contains(text, "Seq Scan on deliveries") {
				t.Errorf("%s scans deliveries:\n%s", q.name, text)
			}
			for _, m := range removed.FindAllStringSubmatch(text, -1) {
				if k, _ := strconv.Atoi(m[1]); k > 100 {
					t.Errorf("%s reads %d rows it does not need:\n%s", q.name, k, text)
				}
			}
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatal(err)
	}
}

// errRollback makes tx roll back what a test did.
var errRollback = errors.New("roll back")

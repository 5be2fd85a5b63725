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
	queries := []planQuery{
		{"reclaim", reclaimSQL, []any{now}},
		{"claim", claimSQL, []any{now, "w", []string{}, 100, int64(time.Second)}},
		{"pick", pickSQL, []any{[]string{ok.ID}, []bool{false}, []int32{16}, now, 100}},
		{"pick ordered", pickSQL, []any{[]string{ok.ID}, []bool{true}, []int32{16}, now, 100}},
		{"pick batch", pickSQL, []any{[]string{dead.ID}, []bool{false}, []int32{16}, now, 100}},
		{"pick ordered batch", pickSQL, []any{[]string{dead.ID}, []bool{true}, []int32{16}, now, 100}},
		{"mark", markSQL, []any{[]string{"dlv_dead1", "dlv_dead2"}, []time.Time{t0, t0}, "w", now}},
		{"next due", nextDueSQL, nil},
	}
	checkPlans(t, st, queries)
}

// TestQueryPlansColdStatistics keeps recording and marking on the primary
// key when the deliveries' statistics are those of an empty table (as on a
// fresh database, until the analyzer or autovacuum runs) and the plans are
// made for every execution: without force_custom_plan a connection keeps
// the generic plan it made while the table was small, and the planner,
// believing the partial lease and due indexes tiny, walked one of them for
// every outcome.
func TestQueryPlansColdStatistics(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ok := sub(herald.DefaultTenant, "ok")
	mustCreate(t, st, ok)
	ev := mustPublish(t, st, t0, event(herald.DefaultTenant, "nobody"))[0]
	err := st.withConn(t.Context(), func(c *pgx.Conn) error {
		var mode string
		if err := c.QueryRow(t.Context(), `SHOW plan_cache_mode`).Scan(&mode); err != nil {
			return err
		}
		if mode != "force_custom_plan" {
			t.Errorf("plan_cache_mode = %q, want force_custom_plan", mode)
		}
		// Events as the store's analyzer leaves them (analyzed), then
		// unanalyzed deliveries, as a busy minute leaves them before
		// the analyzer runs: finished rows, a lease's worth delivering
		// and a backlog pending.
		if _, err := c.Exec(t.Context(), `INSERT INTO events (tenant_id, id, event_type, version, test, deliveries, received_at)
			SELECT 'default', 'msg_cold' || i, 'cold', '', false, 1, $1 FROM generate_series(1, 20000) AS i`, t0); err != nil {
			return err
		}
		if _, err := c.Exec(t.Context(), analyzeAllSQL); err != nil {
			return err
		}
		_, err := c.Exec(t.Context(), `INSERT INTO deliveries (id, tenant_id, subscription_id, event_id,
				status, next_attempt_at, trace_id, created_at, updated_at, completed_at, lease_owner, lease_expires)
			SELECT 'dlv_cold' || i, 'default', $1, $2,
				CASE WHEN i <= 10000 THEN 'succeeded' WHEN i <= 12000 THEN 'delivering' ELSE 'pending' END,
				$3, 'trace', $3, $3, CASE WHEN i <= 10000 THEN $3::timestamptz END,
				CASE WHEN i > 10000 AND i <= 12000 THEN 'w' ELSE '' END,
				CASE WHEN i > 10000 AND i <= 12000 THEN $3::timestamptz + interval '1 minute' END
			FROM generate_series(1, $4::int) AS i`, ok.ID, ev.EventID, t0, 20_000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var outs []herald.Outcome
	var marks []string
	for i := range 500 {
		outs = append(outs, herald.Outcome{DeliveryID: "dlv_cold" + strconv.Itoa(10_001+i), Owner: "w",
			Status: herald.DeliverySucceeded, Now: t0, Attempt: herald.Attempt{StatusCode: 200}})
		marks = append(marks, "dlv_cold"+strconv.Itoa(12_001+i))
	}
	exp := make([]time.Time, len(marks))
	for i := range exp {
		exp[i] = t0.Add(time.Minute)
	}
	qs := []planQuery{
		{"record", recordSQL, recordArgs(outs)},
		{"mark", markSQL, []any{marks, exp, "w", tsAlways(t0)}},
	}
	checkPlans(t, st, qs)
	// And once analyzed (by the store itself as the table grows, see
	// TestAnalyzeOnGrowth), with the lookups that need the statistics.
	if err := st.withConn(t.Context(), func(c *pgx.Conn) error {
		_, err := c.Exec(t.Context(), analyzeAllSQL)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	checkPlans(t, st, append(qs,
		planQuery{"event hashes", eventHashesSQL, []any{herald.DefaultTenant, []string{"msg_cold7", "msg_cold9001", "msg_none"}}}))
}

// analyzeAllSQL analyzes the test schema's tables (a bare ANALYZE would
// visit every schema of the database, those of tests running beside it too).
const analyzeAllSQL = `ANALYZE deliveries, events, subscriptions, subscription_patterns, lanes, attempts`

// planQuery is a statement whose plan checkPlans reads.
type planQuery struct {
	name string
	q    string
	args []any
}

// checkPlans runs each query under EXPLAIN ANALYZE in a transaction it
// rolls back, and fails t if one scans deliveries or every subscription,
// reads more than 100 rows of a table it then drops, or more than 1,000
// deliveries.
func checkPlans(t *testing.T, st *Store, queries []planQuery) {
	t.Helper()
	removed := regexp.MustCompile(`Rows Removed by (?:Filter|Join Filter): (\d+)`)
	read := regexp.MustCompile(`on deliveries \w* *\(actual time=\S+ rows=(\d+) loops=(\d+)\)`)
	err := st.tx(t.Context(), func(tx pgx.Tx) error {
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
			node := ""
			for _, line := range plan {
				if strings.Contains(line, "(actual") {
					node = line
				}
				m := removed.FindStringSubmatch(line)
				if m == nil || strings.Contains(node, "CTE Scan") {
					continue // a CTE's rows are in memory
				}
				if k, _ := strconv.Atoi(m[1]); k > 100 {
					t.Errorf("%s reads %d rows it does not need:\n%s", q.name, k, text)
				}
			}
			for _, m := range read.FindAllStringSubmatch(text, -1) {
				rows, _ := strconv.Atoi(m[1])
				loops, _ := strconv.Atoi(m[2])
				if rows*loops > 1000 {
					t.Errorf("%s reads %d deliveries:\n%s", q.name, rows*loops, text)
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

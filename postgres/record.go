package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// recordSQL writes a call's outcomes in one statement: every delivery still
// leased by its outcome's owner takes its new state and releases its lease,
// and keeps its attempt: a success's on the row itself (ok_*, migration
// 0005), any other as an attempt row, in the order of the outcomes. It
// returns the outcomes applied (their 1-based position) with their
// subscriptions. The state and owner are checked as one IS TRUE test, which
// no index can answer, so the planner finds each delivery by its id; given
// the plain conditions and cold statistics it walked the partial lease index
// for every outcome instead.
const recordSQL = `WITH o AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[],
		$7::int[], $8::text[], $9::timestamptz[], $10::int[], $11::timestamptz[], $12::bigint[], $13::text[])
		WITH ORDINALITY
		AS o(id, owner, status, next_at, sleep_ns, batch_id, code, error, now, n, started, duration_ns, body, ord)
),
u AS (
	UPDATE deliveries d SET status = o.status, attempts = d.attempts + 1,
		next_attempt_at = coalesce(o.next_at, d.next_attempt_at), last_sleep_ns = o.sleep_ns,
		first_attempt_at = coalesce(d.first_attempt_at, o.started), batch_id = o.batch_id,
		last_status_code = o.code, last_error = o.error, updated_at = o.now,
		completed_at = CASE WHEN o.status = 'pending' THEN NULL ELSE o.now END,
		ok_started_at = CASE WHEN o.status = 'succeeded' THEN o.started END,
		ok_duration_ns = CASE WHEN o.status = 'succeeded' THEN o.duration_ns ELSE 0 END,
		ok_response = CASE WHEN o.status = 'succeeded' THEN o.body ELSE '' END,
		lease_owner = '', lease_expires = NULL
	FROM o WHERE d.id = o.id AND (d.status = 'delivering' AND d.lease_owner = o.owner) IS TRUE
	RETURNING d.tenant_id, d.subscription_id, d.id, d.attempts, o.ord, o.status, o.n, o.started, o.duration_ns,
		o.code, o.error, o.body
),
a AS (
	INSERT INTO attempts (tenant_id, delivery_id, n, started_at, duration_ns, status_code, error, response_body)
	SELECT tenant_id, id, CASE WHEN n > 0 THEN n ELSE attempts END, started, duration_ns, code, error, body
	FROM u WHERE status <> 'succeeded' ORDER BY ord
)
SELECT subscription_id, ord FROM u ORDER BY ord`

// failingSQL sets failing_since of subscriptions $1: to $3 where $2 (a
// success came, then maybe a failure at $3), else to $3 unless set. Rows
// that keep their value are not written.
const failingSQL = `UPDATE subscriptions s SET failing_since = v.t
	FROM (SELECT f.id, CASE WHEN f.reset THEN f.t ELSE coalesce(x.failing_since, f.t) END AS t
		FROM unnest($1::text[], $2::boolean[], $3::timestamptz[]) AS f(id, reset, t)
		JOIN subscriptions x ON x.id = f.id) AS v
	WHERE s.id = v.id AND s.failing_since IS DISTINCT FROM v.t`

// drainedWhere picks, of the lanes l and the outcomes' (sub, owner, until)
// v, each lane its owner has drained (nothing of it is delivering under
// that owner) and that does not already end by until.
const drainedWhere = `l.subscription_id = v.sub AND l.owner = v.owner AND l.expires_at > v.until
	AND NOT EXISTS (SELECT 1 FROM deliveries d
		WHERE d.subscription_id = v.sub AND d.status = 'delivering' AND d.lease_owner = v.owner)`

// lockLanesSQL locks, in id order, the lanes drainedSQL would pass on, ahead
// of it: a publish that claims deliveries for one of them holds its row
// until it commits, and drainedSQL, a statement of its own, then sees those
// deliveries (its snapshot is taken after the lock). A lane with deliveries
// out is not locked, so a busy lane's outcomes do not wait for publishes.
const lockLanesSQL = `SELECT FROM lanes l, unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(sub, owner, until)
	WHERE ` + drainedWhere + ` ORDER BY l.subscription_id FOR UPDATE OF l`

// drainedSQL lets a lane its owner has drained pass to another process,
// LaneHandoff after the outcome ($3), so no sliding second sees both
// owners' sends.
const drainedSQL = `UPDATE lanes l SET expires_at = v.until
	FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(sub, owner, until)
	WHERE ` + drainedWhere

// DeliveryRecord writes outcomes in one transaction, skipping those whose
// delivery is no longer leased by their owner.
func (s *Store) DeliveryRecord(ctx context.Context, outcomes []herald.Outcome) error {
	for _, o := range outcomes {
		switch o.Status {
		case herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryPending:
		default:
			return fmt.Errorf("record outcomes: %w", herald.Invalid("status", "%q is not an outcome", o.Status))
		}
	}
	// A delivery's first outcome releases its lease, so a second one in the
	// same call would be skipped: drop it here.
	seen := make(map[string]bool, len(outcomes))
	outs := make([]herald.Outcome, 0, len(outcomes))
	for _, o := range outcomes {
		if !seen[o.DeliveryID] {
			seen[o.DeliveryID] = true
			outs = append(outs, o)
		}
	}
	if len(outs) == 0 {
		return nil
	}
	args := recordArgs(outs)
	err := s.txSoft(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, recordSQL, args...)
		if err != nil {
			return err
		}
		var sub string
		var ord int64
		runs := map[string]*failRun{}
		var subs []string
		if _, err := pgx.ForEachRow(rows, []any{&sub, &ord}, func() error {
			r := runs[sub]
			if r == nil {
				r = &failRun{}
				runs[sub] = r
				subs = append(subs, sub)
			}
			r.add(outs[ord-1])
			return nil
		}); err != nil {
			return err
		}
		if len(subs) == 0 {
			return nil
		}
		slices.Sort(subs)
		resets := make([]bool, len(subs))
		times := make([]pgtype.Timestamptz, len(subs))
		owners := make([]string, len(subs))
		handoffs := make([]pgtype.Timestamptz, len(subs))
		for i, id := range subs {
			r := runs[id]
			resets[i], times[i] = r.reset, ts(r.since)
			owners[i], handoffs[i] = r.owner, tsAlways(r.now.Add(herald.LaneHandoff))
		}
		// Lanes before subscriptions: the lock order of the package
		// comment. One round trip.
		batch := &pgx.Batch{}
		batch.Queue(lockLanesSQL, subs, owners, handoffs)
		batch.Queue(drainedSQL, subs, owners, handoffs)
		batch.Queue(failingSQL, subs, resets, times)
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("record outcomes: %w", err)
	}
	return nil
}

// failRun folds one subscription's applied outcomes, in order, into what
// becomes of its FailingSince: cleared by a success, set to a failed
// attempt's start when unset.
type failRun struct {
	reset bool      // a success came: the stored value does not count
	since time.Time // the first failure after the last success (or at all)
	owner string    // the lease owner of the latest outcome
	now   time.Time // and its time
}

func (r *failRun) add(o herald.Outcome) {
	r.owner, r.now = o.Owner, o.Now
	if o.Status == herald.DeliverySucceeded {
		r.reset, r.since = true, time.Time{}
		return
	}
	if r.since.IsZero() {
		r.since = attemptStart(o)
	}
}

func attemptStart(o herald.Outcome) time.Time {
	if o.Attempt.StartedAt.IsZero() {
		return o.Now
	}
	return o.Attempt.StartedAt
}

// recordArgs returns recordSQL's parallel arrays for outs.
func recordArgs(outs []herald.Outcome) []any {
	n := len(outs)
	var (
		ids, owners, statuses, batches, errs, bodies = make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n)
		next, nows, starts = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		sleeps, durs       = make([]int64, n), make([]int64, n)
		codes, ns          = make([]int32, n), make([]int32, n)
	)
	for i, o := range outs {
		a := o.Attempt
		ids[i], owners[i], statuses[i], batches[i] = o.DeliveryID, o.Owner, o.Status, o.BatchID
		if o.Status == herald.DeliveryPending {
			at := o.NextAttemptAt
			if at.IsZero() {
				at = o.Now
			}
			next[i] = tsAlways(at)
		}
		sleeps[i] = int64(o.LastSleep)
		codes[i] = int32(a.StatusCode)
		errs[i] = cleanText(a.Error, 0)
		nows[i] = tsAlways(o.Now)
		ns[i] = int32(max(a.N, 0))
		starts[i] = tsAlways(attemptStart(o))
		durs[i] = int64(a.Duration)
		bodies[i] = cleanText(a.ResponseBody, herald.MaxStoredResponse)
	}
	return []any{ids, owners, statuses, next, sleeps, batches, codes, errs, nows, ns, starts, durs, bodies}
}

// cleanText makes s storable as PostgreSQL text, which refuses NUL and
// invalid UTF-8 (an endpoint's response may hold either), and cuts it to at
// most limit bytes (0: no limit) without splitting a character.
func cleanText(s string, limit int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if limit > 0 && len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut-- // do not split a character
		}
		s = s[:cut]
	}
	return s
}

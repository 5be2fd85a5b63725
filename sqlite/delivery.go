package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
)

const deliveryColumns = `d.seq, d.id, d.tenant_id, d.subscription_id, d.event_id, d.status, d.attempts,
	d.next_attempt_at, d.first_attempt_at, d.last_sleep_ns, d.trace_id, d.batch_id, d.last_status_code,
	d.last_error, d.created_at, d.updated_at, d.completed_at`

// deliveryDest returns the scan destinations of deliveryColumns into d, and
// a function to call after Scan to convert the times.
func deliveryDest(d *herald.Delivery) ([]any, func()) {
	var next int64
	var sleep int64
	var first, created, updated, completed sql.NullInt64
	dest := []any{&d.Seq, &d.ID, &d.TenantID, &d.SubscriptionID, &d.EventID, &d.Status, &d.Attempts,
		&next, &first, &sleep, &d.TraceID, &d.BatchID, &d.LastStatusCode,
		&d.LastError, &created, &updated, &completed}
	return dest, func() {
		d.NextAttemptAt = time.UnixMicro(next).UTC()
		d.FirstAttemptAt = fromMicro(first)
		d.LastSleep = time.Duration(sleep)
		d.CreatedAt, d.UpdatedAt, d.CompletedAt = fromMicro(created), fromMicro(updated), fromMicro(completed)
	}
}

func scanDelivery(sc scanner) (herald.Delivery, error) {
	var d herald.Delivery
	dest, done := deliveryDest(&d)
	if err := sc.Scan(dest...); err != nil {
		return herald.Delivery{}, err
	}
	done()
	return d, nil
}

// DeliveryGet returns a tenant's delivery and its attempts in order.
func (s *Store) DeliveryGet(ctx context.Context, tenantID, id string) (herald.Delivery, []herald.Attempt, error) {
	r, err := s.reader()
	if err != nil {
		return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", err)
	}
	// One read transaction, so the attempts belong to the delivery read.
	tx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", s.classify(err))
	}
	defer tx.Rollback()
	var d herald.Delivery
	var ok herald.Attempt // the success the row holds, if okStarted is set
	var okStarted sql.NullInt64
	var okDuration int64
	dest, done := deliveryDest(&d)
	err = tx.QueryRowContext(ctx, `SELECT `+deliveryColumns+`, d.ok_started_at, d.ok_duration_ns, d.ok_response
		FROM deliveries d WHERE d.tenant_id = ? AND d.id = ?`, tenantID, id).
		Scan(append(dest, &okStarted, &okDuration, &ok.ResponseBody)...)
	if err != nil {
		return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", s.classify(err))
	}
	done()
	rows, err := tx.QueryContext(ctx, `SELECT n, started_at, duration_ns, status_code, error, response_body
		FROM attempts WHERE delivery_id = ? AND tenant_id = ? ORDER BY seq`, id, tenantID)
	if err != nil {
		return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", s.classify(err))
	}
	defer rows.Close()
	var attempts []herald.Attempt
	for rows.Next() {
		var a herald.Attempt
		var started sql.NullInt64
		var dur int64
		if err := rows.Scan(&a.N, &started, &dur, &a.StatusCode, &a.Error, &a.ResponseBody); err != nil {
			return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", s.classify(err))
		}
		a.StartedAt, a.Duration = fromMicro(started), time.Duration(dur)
		attempts = append(attempts, a)
	}
	if err := rows.Err(); err != nil {
		return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", s.classify(err))
	}
	if okStarted.Valid {
		ok.N, ok.StartedAt, ok.Duration = d.Attempts, fromMicro(okStarted), time.Duration(okDuration)
		ok.StatusCode, ok.Error = d.LastStatusCode, d.LastError
		attempts = append(attempts, ok)
	}
	return d, attempts, nil
}

// eventDeliveriesSQL narrows a list of a tenant's deliveries (d) to those
// of one event: the seq range its publish gave them (events.first_delivery,
// migration 0005), a range of the table itself. Its arguments are
// eventDeliveriesArgs.
const eventDeliveriesSQL = ` AND d.event_id = ? AND d.seq >= (SELECT first_delivery FROM events
		WHERE tenant_id = ? AND id = ?) AND d.seq < (SELECT first_delivery + deliveries FROM events
		WHERE tenant_id = ? AND id = ?)`

func eventDeliveriesArgs(tenantID, eventID string) []any {
	return []any{eventID, tenantID, eventID, tenantID, eventID}
}

// DeliveryList pages through a tenant's deliveries, newest first.
func (s *Store) DeliveryList(ctx context.Context, tenantID string, f herald.DeliveryFilter) ([]herald.Delivery, string, error) {
	r, err := s.reader()
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", err)
	}
	limit := f.Size()
	before, ok, err := parseSeqCursor(f.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", err)
	}
	q := `SELECT ` + deliveryColumns + ` FROM deliveries d WHERE d.tenant_id = ?`
	args := []any{tenantID}
	if ok {
		q += ` AND d.seq < ?`
		args = append(args, before)
	}
	if f.SubscriptionID != "" {
		q += ` AND d.subscription_id = ?`
		args = append(args, f.SubscriptionID)
	}
	if f.EventID != "" {
		q += eventDeliveriesSQL
		args = append(args, eventDeliveriesArgs(tenantID, f.EventID)...)
	}
	switch f.Status {
	case "":
	case herald.DeliveryPending, herald.DeliveryDelivering:
		q += ` AND d.status = ?`
		args = append(args, f.Status)
	case herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryCancelled:
		// Finished deliveries have completed_at: saying so lets SQLite use
		// the partial index deliveries_final.
		q += ` AND d.status = ? AND d.completed_at IS NOT NULL`
		args = append(args, f.Status)
	default:
		return nil, "", nil // no delivery has another status
	}
	q += ` ORDER BY d.seq DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", s.classify(err))
	}
	defer rows.Close()
	var out []herald.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list deliveries: %w", s.classify(err))
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", s.classify(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = seqCursor(out[limit-1].Seq)
	}
	return out, next, nil
}

// requeueSet is the SET clause of DeliveryRetry and DeliveryReplay: due at
// ?1 (now) with the whole retry budget again.
const requeueSet = `SET status = 'pending', next_attempt_at = ?1, completed_at = NULL, attempts = 0,
	first_attempt_at = NULL, last_sleep_ns = 0, batch_id = '', updated_at = ?1, lease_owner = '',
	lease_expires = NULL, ok_started_at = NULL, ok_duration_ns = 0, ok_response = ''`

// keepSuccessSQL moves the successes that the rows about to be queued again
// hold into attempts (the rows' WHERE follows), so the history survives the
// requeue.
const keepSuccessSQL = `INSERT INTO attempts (tenant_id, delivery_id, n, started_at, duration_ns, status_code, error,
	response_body) SELECT tenant_id, id, attempts, ok_started_at, ok_duration_ns, last_status_code, last_error,
	ok_response FROM deliveries WHERE ok_started_at IS NOT NULL AND `

// DeliveryRetry queues a delivery that is not delivering again, due at now.
func (s *Store) DeliveryRetry(ctx context.Context, tenantID, id string, now time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		const where = `tenant_id = ? AND id = ? AND status <> 'delivering'`
		if _, err := tx.ExecContext(ctx, keepSuccessSQL+where, tenantID, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries `+requeueSet+` WHERE `+where, now.UnixMicro(), tenantID, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var status string
		err = tx.QueryRowContext(ctx, `SELECT status FROM deliveries WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return herald.ErrNotFound
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("delivery is %s: %w", status, herald.ErrConflict)
	})
	if err != nil {
		return fmt.Errorf("retry delivery: %w", err)
	}
	return nil
}

// DeliveryReplay queues again a subscription's final deliveries that match
// f, and returns how many.
func (s *Store) DeliveryReplay(ctx context.Context, tenantID, subscriptionID string, f herald.ReplayFilter, now time.Time) (int, error) {
	statuses := []any{herald.DeliveryFailed, herald.DeliveryCancelled}
	switch f.Status {
	case "":
	case herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryCancelled:
		statuses = []any{f.Status, f.Status}
	default:
		return 0, fmt.Errorf("replay deliveries: %w", herald.Invalid("status", "must be succeeded, failed or cancelled"))
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM subscriptions WHERE tenant_id = ? AND id = ?`, tenantID, subscriptionID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return herald.ErrNotFound
		}
		if err != nil {
			return err
		}
		// requeueSet numbers its parameter ?1; each plain ? after it takes the
		// next number.
		where := `tenant_id = ? AND subscription_id = ? AND status IN (?, ?)`
		args := []any{now.UnixMicro(), tenantID, subscriptionID, statuses[0], statuses[1]}
		if !f.Since.IsZero() {
			where += ` AND created_at >= ?`
			args = append(args, f.Since.UnixMicro())
		}
		if !f.Until.IsZero() {
			where += ` AND created_at < ?`
			args = append(args, f.Until.UnixMicro())
		}
		if _, err := tx.ExecContext(ctx, keepSuccessSQL+where, args[1:]...); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries `+requeueSet+` WHERE `+where, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay deliveries: %w", err)
	}
	return int(n), nil
}

// DeliveryRelease gives owner's leased deliveries back, due at at.
func (s *Store) DeliveryRelease(ctx context.Context, owner string, ids []string, at time.Time) error {
	now := s.now().UnixMicro()
	err := s.writeSoft(ctx, func(tx *sql.Tx) error {
		const set = `UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, lease_owner = '',
			lease_expires = NULL, updated_at = ?2 WHERE status = 'delivering' AND lease_owner = ?3`
		if len(ids) == 0 {
			if _, err := tx.ExecContext(ctx, set, at.UnixMicro(), now, owner); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM lanes WHERE owner = ?`, owner)
			return err
		}
		stmt, err := s.prepare(ctx, tx, set+` AND id = ?4`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, at.UnixMicro(), now, owner, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release deliveries: %w", err)
	}
	return nil
}

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
	err := s.writeSoft(ctx, func(tx *sql.Tx) error { return s.record(ctx, tx, outcomes) })
	if err != nil {
		return fmt.Errorf("record outcomes: %w", err)
	}
	return nil
}

// laneDrainedSQL ends a lane's ownership LaneHandoff from now (?1) once its
// owner (?3) has nothing of the subscription (?2) delivering; a lane that
// ends sooner already is not written.
const laneDrainedSQL = `UPDATE lanes SET expires_at = ?1
	WHERE subscription_id = ?2 AND owner = ?3 AND expires_at > ?1 AND NOT EXISTS (SELECT 1 FROM deliveries
		WHERE subscription_id = ?2 AND status = 'delivering' AND status IN ('pending', 'delivering')
		AND lease_owner = ?3)`

// maxChunk is the most rows one multi-row statement of record carries.
const maxChunk = 64

// outcomeUpdate applies k outcomes in one statement. A row is updated only
// while it is still delivering under the outcome's owner; the rows returned
// are those that were, so an outcome that lost its lease is dropped. A
// success's attempt is kept on the row (ok_*, migration 0004); other
// attempts are rows of attempts.
func outcomeUpdate(k int) string {
	return `WITH v (id, owner, status, next, sleep, started, batch, code, err, now, completed, ok_started,
	ok_duration, ok_response) AS (VALUES ` + values(14, k) + `)
UPDATE deliveries SET status = v.status, attempts = deliveries.attempts + 1,
	next_attempt_at = coalesce(v.next, deliveries.next_attempt_at), last_sleep_ns = v.sleep,
	first_attempt_at = coalesce(deliveries.first_attempt_at, v.started), batch_id = v.batch,
	last_status_code = v.code, last_error = v.err, updated_at = v.now, completed_at = v.completed,
	ok_started_at = v.ok_started, ok_duration_ns = v.ok_duration, ok_response = v.ok_response,
	lease_owner = '', lease_expires = NULL
FROM v WHERE deliveries.id = v.id AND deliveries.status = 'delivering' AND deliveries.lease_owner = v.owner
RETURNING deliveries.id, deliveries.tenant_id, deliveries.subscription_id, deliveries.attempts`
}

// attemptInsert inserts k attempt rows in one statement.
func attemptInsert(k int) string {
	return `INSERT INTO attempts (tenant_id, delivery_id, n, started_at, duration_ns, status_code, error,
		response_body) VALUES ` + values(8, k)
}

// values returns k rows of cols placeholders: "(?,?),(?,?)".
func values(cols, k int) string {
	row := "(" + strings.Repeat("?,", cols-1) + "?)"
	return row + strings.Repeat(","+row, k-1)
}

// applied is what an outcome's update returned: the delivery was still the
// outcome owner's.
type applied struct {
	tenant, sub string
	attempts    int
}

func (s *Store) record(ctx context.Context, tx *sql.Tx, outcomes []herald.Outcome) error {
	prep := func(q string) (*sql.Stmt, error) { return s.prepare(ctx, tx, q) }
	got := make(map[string]applied, len(outcomes))
	args := make([]any, 0, 14*maxChunk)
	for rest := outcomes; len(rest) > 0; {
		k := chunkOf(len(rest))
		args = args[:0]
		for _, o := range rest[:k] {
			started := startedAt(o)
			var next, completed any
			if o.Status == herald.DeliveryPending {
				at := o.NextAttemptAt
				if at.IsZero() {
					at = o.Now
				}
				next = at.UnixMicro()
			} else {
				completed = o.Now.UnixMicro()
			}
			a := o.Attempt
			var okStarted any
			var okDuration int64
			var okResponse string
			if o.Status == herald.DeliverySucceeded {
				okStarted, okDuration, okResponse = started.UnixMicro(), int64(a.Duration), cutResponse(a.ResponseBody)
			}
			args = append(args, o.DeliveryID, o.Owner, o.Status, next, int64(o.LastSleep), started.UnixMicro(),
				o.BatchID, a.StatusCode, a.Error, o.Now.UnixMicro(), completed, okStarted, okDuration, okResponse)
		}
		rest = rest[k:]
		upd, err := prep(outcomeUpdate(k))
		if err != nil {
			return err
		}
		rows, err := upd.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var ap applied
			if err := rows.Scan(&id, &ap.tenant, &ap.sub, &ap.attempts); err != nil {
				rows.Close()
				return err
			}
			got[id] = ap
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}

	// The attempts of the outcomes applied but not succeeded (their row
	// holds those), in the order given.
	health := map[string]*subHealth{}
	var order []string
	var kept []herald.Outcome
	var tenants []string // of kept
	for _, o := range outcomes {
		ap, ok := got[o.DeliveryID]
		if !ok {
			continue // no longer ours: expired and taken over, released, or cancelled
		}
		delete(got, o.DeliveryID) // a repeated id is applied once
		if o.Attempt.N <= 0 {
			o.Attempt.N = ap.attempts
		}
		if o.Status != herald.DeliverySucceeded {
			kept, tenants = append(kept, o), append(tenants, ap.tenant)
		}
		h := health[ap.sub]
		if h == nil {
			h = &subHealth{}
			health[ap.sub] = h
			order = append(order, ap.sub)
		}
		h.apply(o.Status == herald.DeliverySucceeded, startedAt(o).UnixMicro())
		h.owner, h.handoff = o.Owner, o.Now.Add(herald.LaneHandoff).UnixMicro()
	}
	for done := 0; done < len(kept); {
		k := chunkOf(len(kept) - done)
		args = args[:0]
		for i, o := range kept[done : done+k] {
			a := o.Attempt
			args = append(args, tenants[done+i], o.DeliveryID, a.N, startedAt(o).UnixMicro(),
				int64(a.Duration), a.StatusCode, a.Error, cutResponse(a.ResponseBody))
		}
		done += k
		ins, err := prep(attemptInsert(k))
		if err != nil {
			return err
		}
		if _, err := ins.ExecContext(ctx, args...); err != nil {
			return err
		}
	}
	if len(order) == 0 {
		return nil
	}
	// A lane its owner has drained may pass to another process, but only
	// LaneHandoff later, so no sliding second sees both processes' sends.
	drained, err := prep(laneDrainedSQL)
	if err != nil {
		return err
	}
	defer drained.Close()
	for _, sub := range order {
		h := health[sub]
		if _, err := drained.ExecContext(ctx, h.handoff, sub, h.owner); err != nil {
			return err
		}
	}
	// A row that keeps its value is not written: most batches end in a
	// success, and failing_since is already NULL.
	set, err := prep(`UPDATE subscriptions SET failing_since = ?1 WHERE id = ?2 AND failing_since IS NOT ?1`)
	if err != nil {
		return err
	}
	defer set.Close()
	setIfNull, err := prep(`UPDATE subscriptions SET failing_since = ? WHERE id = ? AND failing_since IS NULL`)
	if err != nil {
		return err
	}
	defer setIfNull.Close()
	for _, sub := range order {
		h := health[sub]
		var err error
		switch {
		case h.known:
			_, err = set.ExecContext(ctx, h.since, sub)
		case h.ifNull != nil:
			_, err = setIfNull.ExecContext(ctx, *h.ifNull, sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// chunkOf is how many of n rows the next multi-row statement carries: the
// largest power of two up to 64 that n holds, so n rows take one statement
// per bit of n (13 rows: 8, 4, 1) and at most seven statement texts per
// kind are ever prepared.
func chunkOf(n int) int {
	if n >= maxChunk {
		return maxChunk
	}
	k := 1
	for k*2 <= n {
		k *= 2
	}
	return k
}

// startedAt is when an outcome's attempt started (its decision time if unset).
func startedAt(o herald.Outcome) time.Time {
	if o.Attempt.StartedAt.IsZero() {
		return o.Now
	}
	return o.Attempt.StartedAt
}

// cutResponse cuts a response body to what is stored, never inside a
// character.
func cutResponse(body string) string {
	if len(body) <= herald.MaxStoredResponse {
		return body
	}
	cut := herald.MaxStoredResponse
	for cut > 0 && !utf8.RuneStart(body[cut]) {
		cut--
	}
	return body[:cut]
}

// subHealth folds a batch's outcomes for one subscription into the one
// write of its failing_since: a success clears it; a failure sets it to the
// attempt's start unless a run of failures is already under way.
type subHealth struct {
	known  bool   // a success in this batch decided the value: since
	since  any    // nil (healthy) or the start of the failures after it
	ifNull *int64 // no success yet: set to this only if the stored value is null

	owner   string // the lease owner of the latest outcome
	handoff int64  // when its lane may pass to another owner if drained
}

func (h *subHealth) apply(success bool, started int64) {
	switch {
	case success:
		h.known, h.since, h.ifNull = true, nil, nil
	case h.known:
		if h.since == nil {
			h.since = started
		}
	case h.ifNull == nil:
		h.ifNull = &started
	}
}

// DeliveryPendingCount counts deliveries pending or delivering.
func (s *Store) DeliveryPendingCount(ctx context.Context) (int64, error) {
	r, err := s.reader()
	if err != nil {
		return 0, fmt.Errorf("count pending deliveries: %w", err)
	}
	var n int64
	// Matches the WHERE of the partial index deliveries_open, which answers it.
	if err := r.QueryRowContext(ctx, `SELECT count(*) FROM deliveries
		WHERE status IN ('pending', 'delivering')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending deliveries: %w", s.classify(err))
	}
	return n, nil
}

// nextDueSQL is the earliest due time of DeliveryNextDue: of the pending
// deliveries, one probe per subscription with open deliveries; of the
// leases, the earliest expiry of an active subscription's, walking
// deliveries_leased in order (CROSS JOIN keeps deliveries the outer loop, so
// idle subscriptions are never visited).
const nextDueSQL = `WITH RECURSIVE ` + openSubsCTE + `
SELECT min(t) FROM (
	SELECT (SELECT d.next_attempt_at FROM deliveries d
		WHERE d.subscription_id = s.id AND d.status = 'pending' AND d.status IN ('pending', 'delivering')
		ORDER BY d.next_attempt_at LIMIT 1) AS t
	FROM open JOIN subscriptions s ON s.id = open.id WHERE s.status = 'active'
	UNION ALL
	SELECT * FROM (SELECT d.lease_expires FROM deliveries d INDEXED BY deliveries_leased
		CROSS JOIN subscriptions s ON s.id = d.subscription_id
		WHERE d.status = 'delivering' AND s.status = 'active' ORDER BY d.lease_expires LIMIT 1))`

// DeliveryNextDue returns when the next delivery of an active subscription
// falls due: the earliest NextAttemptAt of a pending one, or the earliest
// lease expiry of a delivering one (its owner may have died).
func (s *Store) DeliveryNextDue(ctx context.Context) (time.Time, bool, error) {
	// One indexed probe per active subscription, never a scan of the
	// pending rows: a dead subscription may hold millions.
	var t sql.NullInt64
	q, err := s.readStmt(ctx, nextDueSQL)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due delivery: %w", s.classify(err))
	}
	err = q.QueryRowContext(ctx).Scan(&t)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due delivery: %w", s.classify(err))
	}
	if !t.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMicro(t.Int64).UTC(), true, nil
}

// purgeEventSQL deletes event ?2 of tenant ?1, received before ?3, when
// none of its deliveries is left: none in the seq range its publish gave
// them (events.first_delivery, migration 0005).
const purgeEventSQL = `DELETE FROM events WHERE tenant_id = ?1 AND id = ?2 AND received_at < ?3
		AND NOT EXISTS (SELECT 1 FROM deliveries d
			WHERE d.seq >= events.first_delivery AND d.seq < events.first_delivery + events.deliveries)`

// Purge deletes at most limit finished deliveries completed before before,
// their attempts, and the events left without deliveries.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int
	err := s.writeSoft(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = s.purge(ctx, tx, before.UnixMicro(), limit)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return n, nil
}

func (s *Store) purge(ctx context.Context, tx *sql.Tx, before int64, limit int) (int, error) {
	type victim struct {
		seq               int64
		tenant, id, event string
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, tenant_id, id, event_id FROM deliveries
		WHERE completed_at IS NOT NULL AND completed_at < ? AND status IN ('succeeded', 'failed', 'cancelled')
		ORDER BY completed_at LIMIT ?`, before, limit)
	if err != nil {
		return 0, err
	}
	var victims []victim
	for rows.Next() {
		var v victim
		if err := rows.Scan(&v.seq, &v.tenant, &v.id, &v.event); err != nil {
			rows.Close()
			return 0, err
		}
		victims = append(victims, v)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	delAttempts, err := s.prepare(ctx, tx, `DELETE FROM attempts WHERE delivery_id = ?`)
	if err != nil {
		return 0, err
	}
	defer delAttempts.Close()
	delDelivery, err := s.prepare(ctx, tx, `DELETE FROM deliveries WHERE seq = ?`)
	if err != nil {
		return 0, err
	}
	defer delDelivery.Close()
	delEvent, err := s.prepare(ctx, tx, purgeEventSQL)
	if err != nil {
		return 0, err
	}
	defer delEvent.Close()
	for _, v := range victims {
		if _, err := delAttempts.ExecContext(ctx, v.id); err != nil {
			return 0, err
		}
		if _, err := delDelivery.ExecContext(ctx, v.seq); err != nil {
			return 0, err
		}
	}
	seen := map[herald.EventKey]bool{}
	for _, v := range victims {
		k := herald.EventKey{TenantID: v.tenant, ID: v.event}
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, err := delEvent.ExecContext(ctx, v.tenant, v.event, before); err != nil {
			return 0, err
		}
	}
	// Events that fanned out to nobody never had a delivery to purge.
	if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq IN (
		SELECT seq FROM events WHERE deliveries = 0 AND received_at < ? LIMIT ?)`, before, limit); err != nil {
		return 0, err
	}
	return len(victims), nil
}

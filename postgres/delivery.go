package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

const deliveryColumns = `d.seq, d.id, d.tenant_id, d.subscription_id, d.event_id, d.status, d.attempts,
	d.next_attempt_at, d.first_attempt_at, d.last_sleep_ns, d.trace_id, d.batch_id, d.last_status_code,
	d.last_error, d.created_at, d.updated_at, d.completed_at`

// deliveryDest returns the scan destinations of deliveryColumns into d, and
// a function to call after Scan to convert them.
func deliveryDest(d *herald.Delivery) ([]any, func()) {
	var (
		attempts, code                           int32
		sleep                                    int64
		next, first, created, updated, completed pgtype.Timestamptz
	)
	dest := []any{&d.Seq, &d.ID, &d.TenantID, &d.SubscriptionID, &d.EventID, &d.Status, &attempts,
		&next, &first, &sleep, &d.TraceID, &d.BatchID, &code,
		&d.LastError, &created, &updated, &completed}
	return dest, func() {
		d.Attempts, d.LastStatusCode = int(attempts), int(code)
		d.NextAttemptAt, d.FirstAttemptAt = fromTS(next), fromTS(first)
		d.LastSleep = time.Duration(sleep)
		d.CreatedAt, d.UpdatedAt, d.CompletedAt = fromTS(created), fromTS(updated), fromTS(completed)
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

// DeliveryGet returns a tenant's delivery and its attempts in order, read
// in one statement so the attempts belong to the delivery read.
func (s *Store) DeliveryGet(ctx context.Context, tenantID, id string) (herald.Delivery, []herald.Attempt, error) {
	var d herald.Delivery
	var attempts []herald.Attempt
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT `+deliveryColumns+`, d.ok_started_at, d.ok_duration_ns, d.ok_response,
				a.n, a.started_at, a.duration_ns, a.status_code, a.error, a.response_body
			FROM deliveries d LEFT JOIN attempts a ON a.delivery_id = d.id AND a.tenant_id = d.tenant_id
			WHERE d.tenant_id = $1 AND d.id = $2 ORDER BY a.seq`, tenantID, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		found := false
		// The success the row holds (migration 0005), if okStarted is set:
		// the latest attempt, after those in attempts.
		var ok herald.Attempt
		var okStarted pgtype.Timestamptz
		var okDuration int64
		for rows.Next() {
			found = true
			dest, done := deliveryDest(&d)
			var (
				n, code       pgtype.Int4
				started       pgtype.Timestamptz
				dur           pgtype.Int8
				errText, body pgtype.Text
			)
			if err := rows.Scan(append(dest, &okStarted, &okDuration, &ok.ResponseBody,
				&n, &started, &dur, &code, &errText, &body)...); err != nil {
				return err
			}
			done()
			if n.Valid {
				attempts = append(attempts, herald.Attempt{
					N: int(n.Int32), StartedAt: fromTS(started), Duration: time.Duration(dur.Int64),
					StatusCode: int(code.Int32), Error: errText.String, ResponseBody: body.String,
				})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return herald.ErrNotFound
		}
		if okStarted.Valid {
			ok.N, ok.StartedAt, ok.Duration = d.Attempts, fromTS(okStarted), time.Duration(okDuration)
			ok.StatusCode, ok.Error = d.LastStatusCode, d.LastError
			attempts = append(attempts, ok)
		}
		return nil
	})
	if err != nil {
		return herald.Delivery{}, nil, fmt.Errorf("get delivery: %w", err)
	}
	return d, attempts, nil
}

// DeliveryList pages through a tenant's deliveries, newest first (by seq).
func (s *Store) DeliveryList(ctx context.Context, tenantID string, f herald.DeliveryFilter) ([]herald.Delivery, string, error) {
	limit := f.Size()
	before, ok, err := parseSeqCursor(f.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", err)
	}
	q := `SELECT ` + deliveryColumns + ` FROM deliveries d WHERE d.tenant_id = $1`
	args := []any{tenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if ok {
		q += ` AND d.seq < ` + arg(before)
	}
	if f.SubscriptionID != "" {
		q += ` AND d.subscription_id = ` + arg(f.SubscriptionID)
	}
	if f.EventID != "" {
		q += ` AND d.event_id = ` + arg(f.EventID)
	}
	switch f.Status {
	case "":
	case herald.DeliveryPending, herald.DeliveryDelivering:
		q += ` AND d.status = ` + arg(f.Status)
	case herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryCancelled:
		// Finished deliveries have completed_at: saying so lets the
		// planner use the partial index deliveries_final.
		q += ` AND d.status = ` + arg(f.Status) + ` AND d.completed_at IS NOT NULL`
	default:
		return nil, "", nil // no delivery has another status
	}
	q += ` ORDER BY d.seq DESC LIMIT ` + strconv.Itoa(limit+1)
	var out []herald.Delivery
	err = s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (herald.Delivery, error) { return scanDelivery(r) })
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = seqCursor(out[limit-1].Seq)
	}
	return out, next, nil
}

// requeueSet is the SET clause of DeliveryRetry and DeliveryReplay: due at
// $1 (now) with the whole retry budget again.
const requeueSet = `SET status = 'pending', next_attempt_at = $1, completed_at = NULL, attempts = 0,
	first_attempt_at = NULL, last_sleep_ns = 0, batch_id = '', updated_at = $1, lease_owner = '',
	lease_expires = NULL, ok_started_at = NULL, ok_duration_ns = 0, ok_response = ''`

// requeueSQL queues again the deliveries that match where (its parameters
// numbered from $2; $1 is now), moving the success each row holds into
// attempts first, in the same statement: the INSERT reads the rows as they
// were before the UPDATE, so the history survives the requeue. Its rows
// affected are the UPDATE's.
func requeueSQL(where string) string {
	return `WITH kept AS (INSERT INTO attempts (tenant_id, delivery_id, n, started_at, duration_ns, status_code,
		error, response_body) SELECT tenant_id, id, attempts, ok_started_at, ok_duration_ns, last_status_code,
		last_error, ok_response FROM deliveries WHERE ok_started_at IS NOT NULL AND ` + where + `)
	UPDATE deliveries ` + requeueSet + ` WHERE ` + where
}

// DeliveryRetry queues a delivery that is not delivering again, due at now,
// and wakes the dispatchers.
func (s *Store) DeliveryRetry(ctx context.Context, tenantID, id string, now time.Time) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, requeueSQL(`tenant_id = $2 AND id = $3 AND status <> 'delivering'`),
			tsAlways(now), tenantID, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			return s.notify(ctx, tx)
		}
		var status string
		err = tx.QueryRow(ctx, `SELECT status FROM deliveries WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
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
// f, returns how many, and wakes the dispatchers.
func (s *Store) DeliveryReplay(ctx context.Context, tenantID, subscriptionID string, f herald.ReplayFilter, now time.Time) (int, error) {
	statuses := []string{herald.DeliveryFailed, herald.DeliveryCancelled}
	switch f.Status {
	case "":
	case herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryCancelled:
		statuses = []string{f.Status}
	default:
		return 0, fmt.Errorf("replay deliveries: %w", herald.Invalid("status", "must be succeeded, failed or cancelled"))
	}
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var one int32
		err := tx.QueryRow(ctx, `SELECT 1 FROM subscriptions WHERE tenant_id = $1 AND id = $2`, tenantID, subscriptionID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return herald.ErrNotFound
		}
		if err != nil {
			return err
		}
		where := `tenant_id = $2 AND subscription_id = $3 AND status = ANY($4::text[])`
		args := []any{tsAlways(now), tenantID, subscriptionID, statuses}
		if !f.Since.IsZero() {
			args = append(args, tsAlways(f.Since))
			where += ` AND created_at >= $` + strconv.Itoa(len(args))
		}
		if !f.Until.IsZero() {
			args = append(args, tsAlways(f.Until))
			where += ` AND created_at < $` + strconv.Itoa(len(args))
		}
		tag, err := tx.Exec(ctx, requeueSQL(where), args...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 {
			return s.notify(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replay deliveries: %w", err)
	}
	return int(n), nil
}

// DeliveryRelease gives owner's leased deliveries back, due at at, and
// wakes the dispatchers (another process may take them at once).
func (s *Store) DeliveryRelease(ctx context.Context, owner string, ids []string, at time.Time) error {
	now := tsAlways(s.now())
	err := s.txSoft(ctx, func(tx pgx.Tx) error {
		const set = `UPDATE deliveries SET status = 'pending', next_attempt_at = $1, lease_owner = '',
			lease_expires = NULL, updated_at = $2 WHERE status = 'delivering' AND lease_owner = $3`
		if len(ids) == 0 {
			// Deliveries, then lanes in id order (the package comment says why).
			if _, err := tx.Exec(ctx, set, tsAlways(at), now, owner); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM lanes WHERE subscription_id IN (
				SELECT subscription_id FROM lanes WHERE owner = $1 ORDER BY subscription_id FOR UPDATE)`, owner); err != nil {
				return err
			}
		} else if _, err := tx.Exec(ctx, set+` AND id = ANY($4::text[])`, tsAlways(at), now, owner, ids); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("release deliveries: %w", err)
	}
	return nil
}

// DeliveryPendingCount counts deliveries pending or delivering.
func (s *Store) DeliveryPendingCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, pendingCountSQL).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count pending deliveries: %w", err)
	}
	return n, nil
}

// nextDueSQL is the earliest NextAttemptAt of a pending delivery of an
// active subscription, or lease expiry of a delivering one. One indexed
// probe per active subscription, never a scan of the pending rows: a dead
// subscription may hold millions. The earliest lease expiry is read in
// order (ORDER BY … LIMIT 1), a plain index scan that stops at the first
// live row, not min() over a bitmap scan of every entry, dead ones included.
const nextDueSQL = `WITH RECURSIVE ` + openSubsCTE + ` SELECT least(
	(SELECT min(due.t) FROM open CROSS JOIN LATERAL ` + openSubSQL + ` AS s CROSS JOIN LATERAL (
		SELECT d.next_attempt_at AS t FROM deliveries d
		WHERE d.subscription_id = s.id AND d.status = 'pending'
		ORDER BY d.next_attempt_at LIMIT 1) AS due
	WHERE s.status = 'active'),
	(SELECT d.lease_expires FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
	WHERE d.status = 'delivering' AND s.status = 'active' ORDER BY d.lease_expires LIMIT 1))`

// pendingCountSQL matches the WHERE of the partial index deliveries_open.
const pendingCountSQL = `SELECT count(*) FROM deliveries WHERE status IN ('pending', 'delivering')`

// DeliveryNextDue returns when the next delivery of an active subscription
// falls due: the earliest NextAttemptAt of a pending one, or the earliest
// lease expiry of a delivering one (its owner may have died).
func (s *Store) DeliveryNextDue(ctx context.Context) (time.Time, bool, error) {
	var t pgtype.Timestamptz
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, nextDueSQL).Scan(&t)
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due delivery: %w", err)
	}
	if !t.Valid {
		return time.Time{}, false, nil
	}
	return fromTS(t), true, nil
}

// purgeSQL deletes at most $2 finished deliveries completed before $1 and
// their attempts, and returns the events they belonged to. SKIP LOCKED:
// two processes purging at once split the work instead of queueing.
const purgeSQL = `WITH v AS (
	SELECT id FROM deliveries
	WHERE completed_at IS NOT NULL AND completed_at < $1 AND status IN ('succeeded', 'failed', 'cancelled')
	ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED
),
a AS (DELETE FROM attempts USING v WHERE attempts.delivery_id = v.id),
d AS (DELETE FROM deliveries USING v WHERE deliveries.id = v.id RETURNING deliveries.tenant_id, deliveries.event_id)
SELECT tenant_id, event_id FROM d`

// Purge deletes at most limit finished deliveries completed before before,
// their attempts, and the events left without deliveries.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int
	err := s.txSoft(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, purgeSQL, tsAlways(before), limit)
		if err != nil {
			return err
		}
		var tenants, events []string
		var t, e string
		if _, err := pgx.ForEachRow(rows, []any{&t, &e}, func() error {
			tenants, events = append(tenants, t), append(events, e)
			return nil
		}); err != nil {
			return err
		}
		n = len(tenants)
		// Statements of their own: they see the deliveries deleted above.
		batch := &pgx.Batch{}
		if n > 0 {
			batch.Queue(`DELETE FROM events e USING (SELECT DISTINCT * FROM unnest($1::text[], $2::text[])) AS v(tenant_id, id)
				WHERE e.tenant_id = v.tenant_id AND e.id = v.id AND e.received_at < $3
				AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id)`,
				tenants, events, tsAlways(before))
		}
		// Events that fanned out to nobody never had a delivery to purge.
		batch.Queue(`DELETE FROM events WHERE seq IN (
			SELECT seq FROM events WHERE deliveries = 0 AND received_at < $1 LIMIT $2)`, tsAlways(before), limit)
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return n, nil
}

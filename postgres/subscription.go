package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// subColumns are the columns scanSubscription reads, in order.
const subColumns = `s.seq, s.id, s.tenant_id, s.url, s.name, s.events, s.secrets, s.signature_scheme,
	s.encryption_key, s.include_payload, s.payload_format, s.mode, s.ordered, s.headers, s.max_rps,
	s.max_in_flight, s.timeout_ns, s.batch_max_events, s.retry_max_attempts, s.retry_window_ns,
	s.retry_base_ns, s.retry_cap_ns, s.status, s.disabled_reason, s.failing_since, s.created_at, s.updated_at, s.revision`

// subRow is a subscription as stored: everything but its sealed parts,
// which open opens.
type subRow struct {
	seq     int64
	sub     herald.Subscription
	secrets []byte
	encKey  []byte
}

func scanSubscription(sc scanner) (subRow, error) {
	var (
		r                                          subRow
		headers                                    string
		timeout, window, base, capNS               int64
		failing, created, updated                  pgtype.Timestamptz
		maxRPS, maxInFlight, batchMax, maxAttempts int32
	)
	s := &r.sub
	err := sc.Scan(&r.seq, &s.ID, &s.TenantID, &s.URL, &s.Name, &s.Events, &r.secrets, &s.SignatureScheme,
		&r.encKey, &s.IncludePayload, &s.PayloadFormat, &s.Mode, &s.Ordered, &headers, &maxRPS,
		&maxInFlight, &timeout, &batchMax, &maxAttempts, &window,
		&base, &capNS, &s.Status, &s.DisabledReason, &failing, &created, &updated, &s.Revision)
	if err != nil {
		return subRow{}, err
	}
	if err := json.Unmarshal([]byte(headers), &s.Headers); err != nil {
		return subRow{}, fmt.Errorf("subscription %s headers: %w", s.ID, err)
	}
	s.Delivery = herald.DeliveryConfig{
		MaxRPS:         int(maxRPS),
		MaxInFlight:    int(maxInFlight),
		Timeout:        time.Duration(timeout),
		BatchMaxEvents: int(batchMax),
		Retry: herald.RetryPolicy{
			MaxAttempts: int(maxAttempts),
			Window:      time.Duration(window),
			Base:        time.Duration(base),
			Cap:         time.Duration(capNS),
		},
	}
	s.FailingSince, s.CreatedAt, s.UpdatedAt = fromTS(failing), fromTS(created), fromTS(updated)
	return r, nil
}

// open returns the subscription with its secrets and encryption key opened.
func (s *Store) open(r subRow) (herald.Subscription, error) {
	sub := r.sub
	if err := s.sealer.OpenSubscription(&sub, r.secrets, r.encKey); err != nil {
		return herald.Subscription{}, err
	}
	return sub, nil
}

// seal returns the sealed secrets and encryption key of sub.
func (s *Store) seal(sub herald.Subscription) (secrets, encKey []byte, err error) {
	return s.sealer.SealSubscription(&sub)
}

// subArgs returns the values of the columns create and update write, in
// the order of subWriteColumns.
func (s *Store) subArgs(sub herald.Subscription) ([]any, error) {
	headers, err := json.Marshal(sub.Headers)
	if err != nil {
		return nil, err
	}
	secrets, encKey, err := s.seal(sub)
	if err != nil {
		return nil, err
	}
	events := sub.Events
	if events == nil {
		events = []string{}
	}
	d := sub.Delivery
	return []any{sub.URL, sub.Name, events, secrets, sub.SignatureScheme, encKey,
		sub.IncludePayload, sub.PayloadFormat, sub.Mode, sub.Ordered, string(headers),
		int32(d.MaxRPS), int32(d.MaxInFlight), int64(d.Timeout), int32(d.BatchMaxEvents), int32(d.Retry.MaxAttempts),
		int64(d.Retry.Window), int64(d.Retry.Base), int64(d.Retry.Cap), sub.Status, sub.DisabledReason,
		ts(sub.UpdatedAt)}, nil
}

// subWriteColumns are the columns of subArgs.
const subWriteColumns = `url, name, events, secrets, signature_scheme, encryption_key, include_payload,
	payload_format, mode, ordered, headers, max_rps, max_in_flight, timeout_ns, batch_max_events,
	retry_max_attempts, retry_window_ns, retry_base_ns, retry_cap_ns, status, disabled_reason, updated_at`

// writePatterns replaces the pattern rows of sub, which fan-out matches.
func writePatterns(ctx context.Context, tx pgx.Tx, sub herald.Subscription) error {
	if _, err := tx.Exec(ctx, `DELETE FROM subscription_patterns WHERE subscription_id = $1`, sub.ID); err != nil {
		return err
	}
	kinds := make([]string, 0, len(sub.Events))
	values := make([]string, 0, len(sub.Events))
	for _, p := range sub.Events {
		k := herald.KeyOf(p)
		kinds, values = append(kinds, k.Kind), append(values, k.Value)
	}
	_, err := tx.Exec(ctx, `INSERT INTO subscription_patterns (tenant_id, subscription_id, kind, value)
		SELECT $1, $2, k, v FROM unnest($3::text[], $4::text[]) AS p(k, v)
		ON CONFLICT DO NOTHING`, sub.TenantID, sub.ID, kinds, values)
	return err
}

// SubscriptionCreate stores sub with its secrets sealed.
func (s *Store) SubscriptionCreate(ctx context.Context, sub herald.Subscription) error {
	args, err := s.subArgs(sub)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		all := append([]any{sub.ID, sub.TenantID, ts(sub.FailingSince), tsAlways(sub.CreatedAt)}, args...)
		if _, err := tx.Exec(ctx, `INSERT INTO subscriptions (id, tenant_id, failing_since, created_at, `+subWriteColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
				$21, $22, $23, $24, $25, $26)`, all...); err != nil {
			return err
		}
		return writePatterns(ctx, tx, sub)
	})
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	return nil
}

// SubscriptionUpdate replaces every field of a stored subscription but
// CreatedAt and FailingSince, which it clears when the status becomes
// active. It wakes the dispatchers: a subscription active again has work.
func (s *Store) SubscriptionUpdate(ctx context.Context, sub herald.Subscription) error {
	args, err := s.subArgs(sub)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		// In SET, status is the stored (old) value.
		tag, err := tx.Exec(ctx, `UPDATE subscriptions SET url = $1, name = $2, events = $3, secrets = $4,
			signature_scheme = $5, encryption_key = $6, include_payload = $7, payload_format = $8, mode = $9,
			ordered = $10, headers = $11, max_rps = $12, max_in_flight = $13, timeout_ns = $14,
			batch_max_events = $15, retry_max_attempts = $16, retry_window_ns = $17, retry_base_ns = $18,
			retry_cap_ns = $19, status = $20, disabled_reason = $21, updated_at = $22,
			failing_since = CASE WHEN status <> 'active' AND $20 = 'active' THEN NULL ELSE failing_since END,
			revision = revision + 1
			WHERE tenant_id = $23 AND id = $24 AND revision = $25`, append(args, sub.TenantID, sub.ID, sub.Revision)...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM subscriptions WHERE tenant_id = $1 AND id = $2`, sub.TenantID, sub.ID).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return herald.ErrNotFound
			} else if err != nil {
				return err
			}
			return fmt.Errorf("%w: subscription %s changed since it was read", herald.ErrConflict, sub.ID)
		}
		if err := writePatterns(ctx, tx, sub); err != nil {
			return err
		}
		return s.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	return nil
}

// SubscriptionGet returns a tenant's subscription, secrets opened.
func (s *Store) SubscriptionGet(ctx context.Context, tenantID, id string) (herald.Subscription, error) {
	var row subRow
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		row, err = scanSubscription(c.QueryRow(ctx, `SELECT `+subColumns+` FROM subscriptions s
			WHERE s.tenant_id = $1 AND s.id = $2`, tenantID, id))
		return err
	})
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("get subscription: %w", err)
	}
	sub, err := s.open(row)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("get subscription: %w", err)
	}
	return sub, nil
}

// SubscriptionList pages through a tenant's subscriptions, oldest first:
// by CreatedAt, then by insertion. The cursor is "<created_at>.<seq>" of the
// last one, created_at in unix microseconds.
func (s *Store) SubscriptionList(ctx context.Context, tenantID string, p herald.Page) ([]herald.Subscription, string, error) {
	limit := p.Size()
	q := `SELECT ` + subColumns + ` FROM subscriptions s WHERE s.tenant_id = $1`
	args := []any{tenantID}
	if p.Cursor != "" {
		created, seq, ok := parseSubCursor(p.Cursor)
		if !ok {
			return nil, "", fmt.Errorf("list subscriptions: %w", herald.Invalid("cursor", "not a cursor of this list"))
		}
		q += ` AND (s.created_at, s.seq) > ($2, $3)`
		args = append(args, tsAlways(time.UnixMicro(created)), seq)
	}
	q += ` ORDER BY s.created_at, s.seq LIMIT ` + strconv.Itoa(limit+1)
	var rows []subRow
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		rows, err = querySubs(ctx, c, q, args...)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	out, err := s.openAll(rows)
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := rows[limit-1]
		next = strconv.FormatInt(last.sub.CreatedAt.UnixMicro(), 10) + "." + strconv.FormatInt(last.seq, 10)
	}
	return out, next, nil
}

func parseSubCursor(c string) (created, seq int64, ok bool) {
	a, b, found := strings.Cut(c, ".")
	if !found {
		return 0, 0, false
	}
	created, err1 := strconv.ParseInt(a, 10, 64)
	seq, err2 := strconv.ParseInt(b, 10, 64)
	return created, seq, err1 == nil && err2 == nil
}

// querySubs runs a query of subColumns and scans every row.
func querySubs(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) ([]subRow, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (subRow, error) { return scanSubscription(r) })
}

// openAll opens every row.
func (s *Store) openAll(rows []subRow) ([]herald.Subscription, error) {
	out := make([]herald.Subscription, 0, len(rows))
	for _, r := range rows {
		sub, err := s.open(r)
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, nil
}

// SubscriptionDelete deletes a subscription, its patterns and lane, and
// cancels its unfinished deliveries, locking in the order the package comment gives.
func (s *Store) SubscriptionDelete(ctx context.Context, tenantID, id string, now time.Time) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		t := tsAlways(now)
		if _, err := tx.Exec(ctx, `UPDATE deliveries SET status = 'cancelled', completed_at = $1, updated_at = $1,
			lease_owner = '', lease_expires = NULL
			WHERE subscription_id = $2 AND tenant_id = $3 AND status IN ('pending', 'delivering')`, t, id, tenantID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM lanes WHERE subscription_id = $1 AND tenant_id = $2`, id, tenantID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM subscription_patterns WHERE subscription_id = $1 AND tenant_id = $2`, id, tenantID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM subscriptions WHERE tenant_id = $1 AND id = $2`, tenantID, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return herald.ErrNotFound // rolls the above back
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete subscription: %w", err)
	}
	return nil
}

// SubscriptionFailing returns subscriptions, not disabled, failing since
// before or earlier, longest failing first.
func (s *Store) SubscriptionFailing(ctx context.Context, before time.Time, limit int) ([]herald.Subscription, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("failing subscriptions: %w", herald.ErrUnavailable)
	}
	if limit <= 0 {
		return nil, nil
	}
	var rows []subRow
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		rows, err = querySubs(ctx, c, `SELECT `+subColumns+` FROM subscriptions s
			WHERE s.failing_since IS NOT NULL AND s.failing_since <= $1 AND s.status <> 'disabled'
			ORDER BY s.failing_since, s.seq LIMIT $2`, tsAlways(before), limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failing subscriptions: %w", err)
	}
	out, err := s.openAll(rows)
	if err != nil {
		return nil, fmt.Errorf("failing subscriptions: %w", err)
	}
	return out, nil
}

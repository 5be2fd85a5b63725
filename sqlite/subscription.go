package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

// subColumns are the columns scanSubscription reads, in order.
const subColumns = `s.seq, s.id, s.tenant_id, s.url, s.name, s.events, s.secrets, s.signature_scheme,
	s.encryption_key, s.include_payload, s.payload_format, s.mode, s.ordered, s.headers, s.max_rps,
	s.max_in_flight, s.timeout_ns, s.batch_max_events, s.retry_max_attempts, s.retry_window_ns,
	s.retry_base_ns, s.retry_cap_ns, s.status, s.disabled_reason, s.failing_since, s.created_at, s.updated_at, s.revision`

// subRow is a subscription as stored: everything but its sealed parts
// opened by open.
type subRow struct {
	seq     int64
	sub     herald.Subscription
	secrets []byte
	encKey  []byte
}

type scanner interface{ Scan(dest ...any) error }

func scanSubscription(sc scanner) (subRow, error) {
	var (
		r                                          subRow
		events, headers                            string
		include, ordered                           int
		timeout, window, base, capNS               int64
		failing, created, updated                  sql.NullInt64
		maxRPS, maxInFlight, batchMax, maxAttempts int
	)
	s := &r.sub
	err := sc.Scan(&r.seq, &s.ID, &s.TenantID, &s.URL, &s.Name, &events, &r.secrets, &s.SignatureScheme,
		&r.encKey, &include, &s.PayloadFormat, &s.Mode, &ordered, &headers, &maxRPS,
		&maxInFlight, &timeout, &batchMax, &maxAttempts, &window,
		&base, &capNS, &s.Status, &s.DisabledReason, &failing, &created, &updated, &s.Revision)
	if err != nil {
		return subRow{}, err
	}
	if err := json.Unmarshal([]byte(events), &s.Events); err != nil {
		return subRow{}, fmt.Errorf("subscription %s events: %w", s.ID, err)
	}
	if err := json.Unmarshal([]byte(headers), &s.Headers); err != nil {
		return subRow{}, fmt.Errorf("subscription %s headers: %w", s.ID, err)
	}
	s.IncludePayload, s.Ordered = include != 0, ordered != 0
	s.Delivery = herald.DeliveryConfig{
		MaxRPS:         maxRPS,
		MaxInFlight:    maxInFlight,
		Timeout:        time.Duration(timeout),
		BatchMaxEvents: batchMax,
		Retry: herald.RetryPolicy{
			MaxAttempts: maxAttempts,
			Window:      time.Duration(window),
			Base:        time.Duration(base),
			Cap:         time.Duration(capNS),
		},
	}
	s.FailingSince, s.CreatedAt, s.UpdatedAt = fromMicro(failing), fromMicro(created), fromMicro(updated)
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

// subArgs returns the values of every column written by create and update,
// after id and tenant_id.
func (s *Store) subArgs(sub herald.Subscription) ([]any, error) {
	events, err := json.Marshal(sub.Events)
	if err != nil {
		return nil, err
	}
	headers, err := json.Marshal(sub.Headers)
	if err != nil {
		return nil, err
	}
	secrets, encKey, err := s.seal(sub)
	if err != nil {
		return nil, err
	}
	d := sub.Delivery
	return []any{sub.URL, sub.Name, string(events), secrets, sub.SignatureScheme, encKey,
		boolInt(sub.IncludePayload), sub.PayloadFormat, sub.Mode, boolInt(sub.Ordered), string(headers),
		d.MaxRPS, d.MaxInFlight, int64(d.Timeout), d.BatchMaxEvents, d.Retry.MaxAttempts,
		int64(d.Retry.Window), int64(d.Retry.Base), int64(d.Retry.Cap), sub.Status, sub.DisabledReason,
		micro(sub.UpdatedAt)}, nil
}

// writePatterns replaces the pattern rows of sub, which fan-out matches.
func writePatterns(ctx context.Context, tx *sql.Tx, sub herald.Subscription) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM subscription_patterns WHERE subscription_id = ?`, sub.ID); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO subscription_patterns (tenant_id, subscription_id, kind, value) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, p := range sub.Events {
		k := herald.KeyOf(p)
		if _, err := stmt.ExecContext(ctx, sub.TenantID, sub.ID, k.Kind, k.Value); err != nil {
			return err
		}
	}
	return nil
}

// SubscriptionCreate stores sub with its secrets sealed.
func (s *Store) SubscriptionCreate(ctx context.Context, sub herald.Subscription) error {
	args, err := s.subArgs(sub)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		all := append([]any{sub.ID, sub.TenantID, micro(sub.FailingSince), sub.CreatedAt.UnixMicro()}, args...)
		if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (id, tenant_id, failing_since, created_at,
			url, name, events, secrets, signature_scheme, encryption_key, include_payload, payload_format, mode,
			ordered, headers, max_rps, max_in_flight, timeout_ns, batch_max_events, retry_max_attempts,
			retry_window_ns, retry_base_ns, retry_cap_ns, status, disabled_reason, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, all...); err != nil {
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
// CreatedAt and FailingSince.
func (s *Store) SubscriptionUpdate(ctx context.Context, sub herald.Subscription) error {
	args, err := s.subArgs(sub)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE subscriptions SET url = ?, name = ?, events = ?, secrets = ?,
			signature_scheme = ?, encryption_key = ?, include_payload = ?, payload_format = ?, mode = ?,
			ordered = ?, headers = ?, max_rps = ?, max_in_flight = ?, timeout_ns = ?, batch_max_events = ?,
			retry_max_attempts = ?, retry_window_ns = ?, retry_base_ns = ?, retry_cap_ns = ?, status = ?,
			disabled_reason = ?, updated_at = ?,
			failing_since = CASE WHEN status <> 'active' AND ? = 'active' THEN NULL ELSE failing_since END,
			revision = revision + 1
			WHERE tenant_id = ? AND id = ? AND revision = ?`, append(args, sub.Status, sub.TenantID, sub.ID, sub.Revision)...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM subscriptions WHERE tenant_id = ? AND id = ?`, sub.TenantID, sub.ID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return herald.ErrNotFound
			} else if err != nil {
				return err
			}
			return fmt.Errorf("%w: subscription %s changed since it was read", herald.ErrConflict, sub.ID)
		}
		return writePatterns(ctx, tx, sub)
	})
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	return nil
}

// SubscriptionGet returns a tenant's subscription, secrets opened.
func (s *Store) SubscriptionGet(ctx context.Context, tenantID, id string) (herald.Subscription, error) {
	r, err := s.reader()
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("get subscription: %w", err)
	}
	row, err := scanSubscription(r.QueryRowContext(ctx, `SELECT `+subColumns+` FROM subscriptions s
		WHERE s.tenant_id = ? AND s.id = ?`, tenantID, id))
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("get subscription: %w", s.classify(err))
	}
	sub, err := s.open(row)
	if err != nil {
		return herald.Subscription{}, fmt.Errorf("get subscription: %w", err)
	}
	return sub, nil
}

// SubscriptionList pages through a tenant's subscriptions, oldest first:
// by CreatedAt, then by insertion. The cursor is "<created_at>.<seq>" of the
// last one.
func (s *Store) SubscriptionList(ctx context.Context, tenantID string, p herald.Page) ([]herald.Subscription, string, error) {
	r, err := s.reader()
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	limit := p.Size()
	q := `SELECT ` + subColumns + ` FROM subscriptions s WHERE s.tenant_id = ?`
	args := []any{tenantID}
	if p.Cursor != "" {
		created, seq, ok := parseSubCursor(p.Cursor)
		if !ok {
			return nil, "", fmt.Errorf("list subscriptions: %w", herald.Invalid("cursor", "not a cursor of this list"))
		}
		q += ` AND (s.created_at, s.seq) > (?, ?)`
		args = append(args, created, seq)
	}
	q += ` ORDER BY s.created_at, s.seq LIMIT ?`
	args = append(args, limit+1)
	rows, err := r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", s.classify(err))
	}
	out, seqs, err := s.collectSubs(rows)
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = strconv.FormatInt(last.CreatedAt.UnixMicro(), 10) + "." + strconv.FormatInt(seqs[limit-1], 10)
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

// collectSubs reads and opens every row of rows, and closes it.
func (s *Store) collectSubs(rows *sql.Rows) ([]herald.Subscription, []int64, error) {
	defer rows.Close()
	var out []herald.Subscription
	var seqs []int64
	for rows.Next() {
		row, err := scanSubscription(rows)
		if err != nil {
			return nil, nil, s.classify(err)
		}
		sub, err := s.open(row)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, sub)
		seqs = append(seqs, row.seq)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.classify(err)
	}
	return out, seqs, nil
}

// SubscriptionDelete deletes a subscription, its patterns and lane, and
// cancels its unfinished deliveries.
func (s *Store) SubscriptionDelete(ctx context.Context, tenantID, id string, now time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE tenant_id = ? AND id = ?`, tenantID, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return herald.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM subscription_patterns WHERE subscription_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM lanes WHERE subscription_id = ?`, id); err != nil {
			return err
		}
		t := now.UnixMicro()
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = 'cancelled', completed_at = ?, updated_at = ?,
			lease_owner = '', lease_expires = NULL
			WHERE subscription_id = ? AND status IN ('pending', 'delivering')`, t, t, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete subscription: %w", err)
	}
	return nil
}

// SubscriptionFailing returns subscriptions, not disabled, failing since
// before or earlier, longest failing first.
func (s *Store) SubscriptionFailing(ctx context.Context, before time.Time, limit int) ([]herald.Subscription, error) {
	r, err := s.reader()
	if err != nil {
		return nil, fmt.Errorf("failing subscriptions: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := r.QueryContext(ctx, `SELECT `+subColumns+` FROM subscriptions s
		WHERE s.failing_since IS NOT NULL AND s.failing_since <= ? AND s.status <> 'disabled'
		ORDER BY s.failing_since, s.seq LIMIT ?`, before.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("failing subscriptions: %w", s.classify(err))
	}
	out, _, err := s.collectSubs(rows)
	if err != nil {
		return nil, fmt.Errorf("failing subscriptions: %w", err)
	}
	return out, nil
}

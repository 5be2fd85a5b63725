package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
)

// openSubsCTE lists the subscriptions with open (pending or delivering)
// deliveries by skipping along deliveries_open: one index seek per such
// subscription, so thousands of idle subscriptions cost nothing.
const openSubsCTE = `open (id) AS (
	SELECT (SELECT min(subscription_id) FROM deliveries WHERE status IN ('pending', 'delivering'))
	UNION ALL
	SELECT (SELECT min(d.subscription_id) FROM deliveries d
		WHERE d.status IN ('pending', 'delivering') AND d.subscription_id > open.id)
	FROM open WHERE open.id IS NOT NULL
)`

// candidatesSQL lists the active subscriptions with a due pending delivery
// whose lane is free, expired or already ?2's, oldest due first. Only
// subscriptions with open deliveries are looked at (openSubsCTE), and the due
// time is one probe of deliveries_due per subscription, so a subscription
// with a million deliveries scheduled later costs one index seek, not a scan.
const candidatesSQL = `WITH RECURSIVE ` + openSubsCTE + `, c AS MATERIALIZED (
	SELECT s.id, s.tenant_id, s.seq, s.ordered, s.max_rps, s.max_in_flight, s.batch_max_events, s.timeout_ns,
		(SELECT d.next_attempt_at FROM deliveries d
			WHERE d.subscription_id = s.id AND d.status = 'pending' AND d.status IN ('pending', 'delivering')
			ORDER BY d.next_attempt_at LIMIT 1) AS due
	FROM open JOIN subscriptions s ON s.id = open.id WHERE s.status = 'active'
)
SELECT c.id, c.tenant_id, c.ordered, c.max_rps, c.max_in_flight, c.batch_max_events, c.timeout_ns
FROM c LEFT JOIN lanes l ON l.subscription_id = c.id
WHERE c.due <= ?1 AND (l.owner IS NULL OR l.owner = ?2 OR l.expires_at < ?1)
ORDER BY c.due, c.seq`

// Queries of the due queue repeat the WHERE term of the partial index
// deliveries_due literally, as SQLite requires to use it.
const (
	// dueSQL lists a subscription's due pending deliveries, oldest due
	// first; the caller reads as many as it wants. It has no LIMIT ?: SQLite
	// plans with a bound LIMIT's value, so a statement whose LIMIT changes
	// from one run to the next is compiled again each time.
	dueSQL = `SELECT ` + leaseColumns + leaseFrom + `
		WHERE d.subscription_id = ? AND d.status = 'pending' AND d.status IN ('pending', 'delivering')
		AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.seq`
	// headSQL is an ordered subscription's oldest unfinished delivery. The
	// index is named: deliveries_sub also has (subscription_id, seq), but
	// walking it would pass every finished delivery first.
	headSQL = `SELECT ` + leaseColumns + ` FROM deliveries d INDEXED BY deliveries_open
		JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
		WHERE d.subscription_id = ? AND d.status IN ('pending', 'delivering') ORDER BY d.seq LIMIT 1`
	// deliveringSQL counts a subscription's deliveries under lease.
	deliveringSQL = `SELECT count(*) FROM deliveries
		WHERE subscription_id = ? AND status = 'delivering' AND status IN ('pending', 'delivering')`
)

// Statements shared by DeliveryLease and EventPublishClaim.
const (
	// markSQL leases the deliveries whose seq is in the JSON array ?4.
	markSQL = `UPDATE deliveries SET status = 'delivering', lease_owner = ?, lease_expires = ?, updated_at = ?
		WHERE seq IN (SELECT value FROM json_each(?))`
	// laneUpSQL claims or extends a subscription's lane for an owner.
	laneUpSQL = `INSERT INTO lanes (subscription_id, tenant_id, owner, expires_at)
		VALUES (?1, ?2, ?3, ?4)
		ON CONFLICT (subscription_id) DO UPDATE SET tenant_id = excluded.tenant_id, owner = excluded.owner,
			expires_at = CASE WHEN lanes.owner = excluded.owner THEN max(lanes.expires_at, excluded.expires_at)
				ELSE excluded.expires_at END`
	subByIDSQL = `SELECT ` + subColumns + ` FROM subscriptions s WHERE s.id = ?`
)

// leaseColumns are what a lease reads of a delivery and its event: not what
// the lease sets itself (updated_at; completed_at is NULL while open) nor
// what the delivery repeats (the event's tenant and id). The driver fetches
// every column of every row, so each one left out counts.
const leaseColumns = `d.seq, d.id, d.tenant_id, d.subscription_id, d.event_id, d.status, d.attempts,
	d.next_attempt_at, d.first_attempt_at, d.last_sleep_ns, d.trace_id, d.batch_id, d.last_status_code,
	d.last_error, d.created_at, e.event_type, e.version, e.data, e.create_time, e.test, e.hash,
	e.deliveries, e.received_at`

const leaseFrom = ` FROM deliveries d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id`

// candidate is a subscription that may get deliveries from this lease.
type candidate struct {
	id, tenant string
	ordered    bool
	timeout    time.Duration
	allowance  int // more deliveries it may have delivering
	leased     int
}

// laneCap is how many deliveries of a subscription may be delivering at once.
func laneCap(maxRPS, maxInFlight, batchMax int) int {
	return herald.LaneCap(herald.DeliveryConfig{MaxRPS: maxRPS, MaxInFlight: maxInFlight, BatchMaxEvents: batchMax})
}

// leaser holds one DeliveryLease transaction's statements and results.
type leaser struct {
	ctx   context.Context
	tx    *sql.Tx
	p     herald.LeaseParams
	now   int64
	due   *sql.Stmt // a subscription's due pending deliveries
	head  *sql.Stmt // an ordered subscription's oldest unfinished delivery
	batch *sql.Stmt // a batch's pending members
	mark  *sql.Stmt
	taken map[int64]bool
	marks []byte // ",seq,seq…" chosen by take and not yet marked
	out   []herald.LeasedDelivery
	left  int // deliveries still wanted
}

// DeliveryLease hands out due deliveries to p.Owner, fairly across
// subscriptions, in one transaction. The lease itself need not be durable,
// but what it hands out must be: a delivery may belong to a publish that
// has committed and is still waiting for the disk (writeAsync), and it is
// not sent before that publish is durable. So a lease that hands out
// anything waits for a flush of the WAL that began after it committed,
// which holds every commit before it.
func (s *Store) DeliveryLease(ctx context.Context, p herald.LeaseParams) (herald.Lease, error) {
	var lease herald.Lease
	n, err := s.writeAsync(ctx, func(tx *sql.Tx) error {
		var err error
		lease, err = s.lease(ctx, tx, p)
		return err
	})
	if err == nil && len(lease.Deliveries) > 0 {
		err = s.durable(n)
	}
	if err != nil {
		return herald.Lease{}, fmt.Errorf("lease deliveries: %w", err)
	}
	return lease, nil
}

func (s *Store) lease(ctx context.Context, tx *sql.Tx, p herald.LeaseParams) (herald.Lease, error) {
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	now := p.Now.UnixMicro()
	// A dead owner's deliveries become due again (their NextAttemptAt has
	// passed: it was due when leased).
	reset, err := s.prepare(ctx, tx, `UPDATE deliveries SET status = 'pending', lease_owner = '', lease_expires = NULL
		WHERE status = 'delivering' AND lease_expires < ?`)
	if err != nil {
		return lease, err
	}
	if _, err := reset.ExecContext(ctx, now); err != nil {
		return lease, err
	}
	if p.Limit <= 0 {
		return lease, nil
	}
	cands, err := s.candidates(ctx, tx, p, now)
	if err != nil || len(cands) == 0 {
		return lease, err
	}

	l := &leaser{ctx: ctx, tx: tx, p: p, now: now, taken: map[int64]bool{}, left: p.Limit}
	stmts := []struct {
		dst **sql.Stmt
		q   string
	}{
		{&l.due, dueSQL},
		{&l.head, headSQL},
		{&l.batch, `SELECT ` + leaseColumns + leaseFrom + `
			WHERE d.batch_id = ? AND d.subscription_id = ? AND d.status = 'pending' ORDER BY d.seq`},
		{&l.mark, markSQL},
	}
	for _, st := range stmts {
		if *st.dst, err = s.prepare(ctx, tx, st.q); err != nil {
			return lease, err
		}
		defer (*st.dst).Close()
	}

	// Rounds: each hungry subscription gets an equal share of what is left;
	// those that filled their share may get more in the next round.
	hungry := cands
	for l.left > 0 && len(hungry) > 0 {
		share := (l.left + len(hungry) - 1) / len(hungry)
		var next []*candidate
		for _, c := range hungry {
			if l.left <= 0 {
				break
			}
			more, err := l.take(c, min(share, c.allowance, l.left))
			if err != nil {
				return lease, err
			}
			if more && c.allowance > 0 {
				next = append(next, c)
			}
		}
		hungry = next
	}

	laneUp, err := s.prepare(ctx, tx, laneUpSQL)
	if err != nil {
		return lease, err
	}
	defer laneUp.Close()
	getSub, err := s.prepare(ctx, tx, subByIDSQL)
	if err != nil {
		return lease, err
	}
	defer getSub.Close()
	for _, c := range cands {
		if c.leased == 0 {
			continue
		}
		if _, err := laneUp.ExecContext(ctx, c.id, c.tenant, p.Owner, l.expiry(c)); err != nil {
			return lease, err
		}
		row, err := scanSubscription(getSub.QueryRowContext(ctx, c.id))
		if err != nil {
			return lease, err
		}
		sub, err := s.open(row)
		if err != nil {
			return lease, err
		}
		lease.Subscriptions[c.id] = sub
	}
	slices.SortStableFunc(l.out, func(a, b herald.LeasedDelivery) int {
		if c := a.Delivery.NextAttemptAt.Compare(b.Delivery.NextAttemptAt); c != 0 {
			return c
		}
		return int(a.Delivery.Seq - b.Delivery.Seq)
	})
	lease.Deliveries = l.out
	return lease, nil
}

// candidates returns the subscriptions that may get deliveries, with what
// each may still take: the room its owner's lane reports (p.Room), else its
// cap less what it has delivering.
func (s *Store) candidates(ctx context.Context, tx *sql.Tx, p herald.LeaseParams, now int64) ([]*candidate, error) {
	excluded := make(map[string]bool, len(p.Exclude))
	for _, id := range p.Exclude {
		excluded[id] = true
	}
	q, err := s.prepare(ctx, tx, candidatesSQL)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, now, p.Owner)
	if err != nil {
		return nil, err
	}
	var cands []*candidate
	var caps []int
	for rows.Next() {
		var c candidate
		var ordered, maxRPS, maxInFlight, batchMax int
		var timeout int64
		if err := rows.Scan(&c.id, &c.tenant, &ordered, &maxRPS, &maxInFlight, &batchMax, &timeout); err != nil {
			rows.Close()
			return nil, err
		}
		if excluded[c.id] {
			continue
		}
		c.ordered, c.timeout = ordered != 0, time.Duration(timeout)
		cands = append(cands, &c)
		caps = append(caps, laneCap(maxRPS, maxInFlight, batchMax))
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	count, err := s.prepare(ctx, tx, deliveringSQL)
	if err != nil {
		return nil, err
	}
	defer count.Close()
	out := cands[:0]
	for i, c := range cands {
		if p.Room != nil {
			// The owner's lane knows what it holds and what waits to be
			// recorded: no count of the delivering rows, which a lane
			// that keeps up holds thousands of.
			if n, ok := p.Room(c.id); ok {
				if c.allowance = n; c.allowance > 0 {
					out = append(out, c)
				}
				continue
			}
		}
		var delivering int
		if err := count.QueryRowContext(ctx, c.id).Scan(&delivering); err != nil {
			return nil, err
		}
		if c.allowance = caps[i] - delivering; c.allowance > 0 {
			out = append(out, c)
		}
	}
	return out, nil
}

// expiry is when the lease of c's deliveries and lane ends.
func (l *leaser) expiry(c *candidate) int64 {
	return l.p.Now.Add(l.p.Margin + c.timeout).UnixMicro()
}

// take leases up to n of c's due deliveries (more when a batch must come
// whole) and reports whether c may have more.
func (l *leaser) take(c *candidate, n int) (more bool, err error) {
	defer func() {
		if ferr := l.flush(c); err == nil {
			err = ferr
		}
	}()
	if c.ordered {
		// Only the oldest unfinished delivery, and only once it is due.
		rows, err := l.head.QueryContext(l.ctx, c.id)
		if err != nil {
			return false, err
		}
		got, err := scanLeased(rows)
		if err != nil || len(got) == 0 {
			return false, err
		}
		h := got[0]
		if h.Delivery.Status != herald.DeliveryPending || h.Delivery.NextAttemptAt.UnixMicro() > l.now {
			return false, nil
		}
		_, err = l.group(c, h)
		return false, err
	}
	rows, err := l.due.QueryContext(l.ctx, c.id, l.now)
	if err != nil {
		return false, err
	}
	got, err := scanLeasedN(rows, n)
	if err != nil {
		return false, err
	}
	took := 0
	for _, ld := range got {
		if took >= n || c.allowance <= 0 || l.left <= 0 {
			break
		}
		if l.taken[ld.Delivery.Seq] {
			continue // came earlier with its batch
		}
		k, err := l.group(c, ld)
		if err != nil {
			return false, err
		}
		if k == 0 {
			return false, nil // its batch does not fit
		}
		took += k
	}
	return len(got) >= n && took > 0, nil
}

// flush marks what take chose for c as leased, in one statement, before the
// next query can see those rows again.
func (l *leaser) flush(c *candidate) error {
	if len(l.marks) == 0 {
		return nil
	}
	l.marks[0] = '['
	l.marks = append(l.marks, ']')
	_, err := l.mark.ExecContext(l.ctx, l.p.Owner, l.expiry(c), l.now, string(l.marks))
	l.marks = l.marks[:0]
	return err
}

// group leases ld with every pending member of its batch, and returns how
// many it leased: 0 when the batch is larger than what is left of the limit
// and something is leased already (it waits for the next lease).
func (l *leaser) group(c *candidate, ld herald.LeasedDelivery) (int, error) {
	members := []herald.LeasedDelivery{ld}
	if ld.Delivery.BatchID != "" {
		rows, err := l.batch.QueryContext(l.ctx, ld.Delivery.BatchID, c.id)
		if err != nil {
			return 0, err
		}
		if members, err = scanLeased(rows); err != nil {
			return 0, err
		}
		if len(members) == 0 {
			members = []herald.LeasedDelivery{ld}
		}
	}
	if len(members) > l.left && len(l.out) > 0 {
		return 0, nil
	}
	for _, m := range members {
		l.marks = strconv.AppendInt(append(l.marks, ','), m.Delivery.Seq, 10)
		m.Delivery.Status = herald.DeliveryDelivering
		m.Delivery.UpdatedAt = time.UnixMicro(l.now).UTC()
		l.taken[m.Delivery.Seq] = true
		l.out = append(l.out, m)
	}
	c.leased += len(members)
	c.allowance -= len(members)
	l.left -= len(members)
	return len(members), nil
}

func scanLeased(rows *sql.Rows) ([]herald.LeasedDelivery, error) { return scanLeasedN(rows, -1) }

// scanLeasedN reads at most n rows of leaseColumns (all when n < 0) and
// closes rows.
func scanLeasedN(rows *sql.Rows, n int) ([]herald.LeasedDelivery, error) {
	defer rows.Close()
	var out []herald.LeasedDelivery
	for len(out) != n && rows.Next() {
		var ld herald.LeasedDelivery
		d, e := &ld.Delivery, &ld.Event
		var (
			next, sleep          int64
			first, created       sql.NullInt64
			data                 []byte
			createTime, received sql.NullInt64
			test                 int
		)
		if err := rows.Scan(&d.Seq, &d.ID, &d.TenantID, &d.SubscriptionID, &d.EventID, &d.Status, &d.Attempts,
			&next, &first, &sleep, &d.TraceID, &d.BatchID, &d.LastStatusCode, &d.LastError, &created,
			&e.EventType, &e.Version, &data, &createTime, &test, &e.Hash, &e.Deliveries, &received); err != nil {
			return nil, err
		}
		d.NextAttemptAt = time.UnixMicro(next).UTC()
		d.FirstAttemptAt, d.CreatedAt = fromMicro(first), fromMicro(created)
		d.LastSleep = time.Duration(sleep)
		d.UpdatedAt = d.CreatedAt // the lease sets it
		e.TenantID, e.ID = d.TenantID, d.EventID
		if data != nil {
			e.Data = data
		}
		e.Test = test != 0
		e.CreateTime, e.ReceivedAt = fromMicro(createTime), fromMicro(received)
		out = append(out, ld)
	}
	return out, rows.Err()
}

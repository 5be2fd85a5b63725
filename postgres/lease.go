package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// laneCapSQL is how many deliveries of subscription s may be delivering at
// once: herald.LaneCap (min(MaxInFlight × LeasePrefetch, MaxRPS × 10) × BatchMaxEvents), MaxInFlight 0 counting
// as the default and MaxRPS 0 as no limit (as the SQLite store's laneCap).
var laneCapSQL = `(CASE WHEN s.max_rps > 0
		THEN least(CASE WHEN s.max_in_flight > 0 THEN s.max_in_flight ELSE ` + strconv.Itoa(herald.DefaultMaxInFlight) + ` END * ` + strconv.Itoa(herald.LeasePrefetch) + `, s.max_rps::bigint * 10)
		ELSE CASE WHEN s.max_in_flight > 0 THEN s.max_in_flight ELSE ` + strconv.Itoa(herald.DefaultMaxInFlight) + ` END * ` + strconv.Itoa(herald.LeasePrefetch) + `
	END) * greatest(1, s.batch_max_events)`

// deliveringSQL is how many deliveries subscription s has delivering,
// counted up to its cap (laneCapSQL): besides bounding it, the LIMIT makes
// it a plain index scan, which marks the dead entries the queue's churn
// leaves as it passes them; a bitmap scan would visit them all again on
// every lease until a vacuum.
var deliveringSQL = `(SELECT count(*) FROM (SELECT FROM deliveries x
	WHERE x.subscription_id = s.id AND x.status = 'delivering' LIMIT ` + laneCapSQL + `) AS d)`

// reclaimSQL hands a dead owner's deliveries back: their lease expired, so
// they are pending again (and due: they were due when leased).
const reclaimSQL = `UPDATE deliveries SET status = 'pending', lease_owner = '', lease_expires = NULL
	WHERE status = 'delivering' AND lease_expires < $1`

// openSubsCTE lists the subscriptions with open (pending or delivering)
// deliveries by skipping along deliveries_open, one index probe per such
// subscription (a loose index scan), so idle subscriptions, however many,
// cost nothing.
const openSubsCTE = `open (id) AS (
	(SELECT x.subscription_id FROM deliveries x WHERE x.status IN ('pending', 'delivering')
		ORDER BY x.subscription_id LIMIT 1)
	UNION ALL
	SELECT (SELECT x.subscription_id FROM deliveries x
		WHERE x.status IN ('pending', 'delivering') AND x.subscription_id > open.id
		ORDER BY x.subscription_id LIMIT 1)
	FROM open WHERE open.id IS NOT NULL
)`

// openSubSQL looks up one open subscription by id, for a LATERAL join with
// openSubsCTE. OFFSET 0 keeps the planner from turning it into a hash join
// over every subscription: it cannot know how few rows the recursion yields.
const openSubSQL = `(SELECT * FROM subscriptions s WHERE s.id = open.id OFFSET 0)`

// claimSQL finds the subscriptions that may get deliveries and claims their
// lanes for $2, in one statement. A candidate is active, not in $3, has a
// due pending delivery (one probe of deliveries_due per subscription, so a
// million deliveries scheduled later cost one index seek), room under its
// cap, and, when ordered, a due pending head; its lane is free, expired or
// $2's already. At most $4 candidates, oldest due first: each one leased
// takes at least one of the $4 deliveries.
//
// The upsert is what makes a lane one owner's: a concurrent leaser of the
// same lane waits on the row (or on the primary key) for this transaction,
// then finds it taken and gets nothing back for it. Lanes are locked in id
// order, so two leasers never wait for each other in a circle. A lane
// already $2's keeps its expiry here; DeliveryLease extends it only if it
// leases from it.
//
// The delivering count stops at the cap (deliveringSQL).
var claimSQL = `WITH RECURSIVE ` + openSubsCTE + `, c AS MATERIALIZED (
	SELECT s.id, s.tenant_id, s.seq, s.ordered, s.timeout_ns, due.t AS due,
		coalesce(l.owner = $2 AND l.expires_at >= $1, false) AS mine,
		` + laneCapSQL + ` - ` + deliveringSQL + ` AS allowance
	FROM open CROSS JOIN LATERAL ` + openSubSQL + ` AS s
	CROSS JOIN LATERAL (SELECT x.next_attempt_at AS t FROM deliveries x
		WHERE x.subscription_id = s.id AND x.status = 'pending' ORDER BY x.next_attempt_at LIMIT 1) AS due
	LEFT JOIN lanes l ON l.subscription_id = s.id
	WHERE s.status = 'active' AND due.t <= $1 AND s.id <> ALL($3::text[])
		AND (l.owner IS NULL OR l.owner = $2 OR l.expires_at < $1)
),
k AS MATERIALIZED (
	SELECT c.* FROM c
	WHERE c.allowance > 0 AND (NOT c.ordered OR EXISTS (
		SELECT 1 FROM (SELECT x.status, x.next_attempt_at FROM deliveries x
			WHERE x.subscription_id = c.id AND x.status IN ('pending', 'delivering') ORDER BY x.seq LIMIT 1) AS h
		WHERE h.status = 'pending' AND h.next_attempt_at <= $1))
	ORDER BY c.due, c.seq LIMIT $4
),
claimed AS (
	INSERT INTO lanes AS l (subscription_id, tenant_id, owner, expires_at)
	SELECT k.id, k.tenant_id, $2, $1 + (($5::bigint + k.timeout_ns) / 1000) * interval '1 microsecond'
	FROM k ORDER BY k.id
	ON CONFLICT (subscription_id) DO UPDATE SET tenant_id = excluded.tenant_id, owner = excluded.owner,
		expires_at = CASE WHEN l.owner = excluded.owner AND l.expires_at >= $1 THEN l.expires_at
			ELSE excluded.expires_at END
	WHERE l.owner = excluded.owner OR l.expires_at < $1
	RETURNING l.subscription_id
)
SELECT k.id, k.ordered, k.allowance, k.mine, k.timeout_ns FROM k JOIN claimed ON claimed.subscription_id = k.id`

// pickSQL lists what the claimed subscriptions ($1, ordered $2, each taking
// at most $3) have due at $4: an unordered one its oldest due deliveries, an
// ordered one its head (lowest Seq unfinished) if pending and due. Rows are
// ranked within their subscription and come round-robin (every
// subscription's first, then every second, ...), oldest due first within a
// round, at most $5: fair across subscriptions. A delivery of a batch comes
// with the pending members of its batch (saying the batch id is not empty
// lets the planner use the partial index deliveries_batch). Nothing is
// locked here: the lanes keep other leasers out, and markSQL locks what is
// chosen.
const pickSQL = `WITH k AS (SELECT * FROM unnest($1::text[], $2::boolean[], $3::int[]) AS k(id, ordered, n)),
p AS (
	SELECT k.id AS sub, x.id, x.seq, x.next_attempt_at, x.batch_id,
		row_number() OVER (PARTITION BY k.id ORDER BY x.next_attempt_at, x.seq) AS rank
	FROM k CROSS JOIN LATERAL (
		(SELECT d.id, d.seq, d.next_attempt_at, d.batch_id FROM deliveries d
			WHERE NOT k.ordered AND d.subscription_id = k.id AND d.status = 'pending' AND d.next_attempt_at <= $4
			ORDER BY d.next_attempt_at, d.seq LIMIT k.n)
		UNION ALL
		(SELECT h.id, h.seq, h.next_attempt_at, h.batch_id FROM (
			SELECT d.id, d.seq, d.status, d.next_attempt_at, d.batch_id FROM deliveries d
			WHERE k.ordered AND d.subscription_id = k.id AND d.status IN ('pending', 'delivering')
			ORDER BY d.seq LIMIT 1) AS h
		WHERE h.status = 'pending' AND h.next_attempt_at <= $4)
	) AS x
)
SELECT p.sub, p.id, p.batch_id, CASE WHEN p.batch_id <> '' THEN ARRAY(
		SELECT b.id FROM deliveries b
		WHERE b.batch_id = p.batch_id AND b.batch_id <> '' AND b.subscription_id = p.sub AND b.status = 'pending'
		ORDER BY b.seq)
	END
FROM p ORDER BY p.rank, p.next_attempt_at, p.seq LIMIT $5`

// markSQL leases the chosen deliveries ($1, each until its $2) to $3 at $4
// and returns them with their events. FOR UPDATE SKIP LOCKED passes over a
// row another transaction is changing (a retry, a cancel) instead of
// waiting for it; the status check drops one that stopped being pending
// (written as IS TRUE, which no index answers, so that the planner looks
// the deliveries up by id rather than reading every pending one; see
// recordSQL).
const markSQL = `WITH u AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS u(id, exp)),
x AS (
	SELECT d.id, u.exp FROM deliveries d JOIN u ON d.id = u.id
	WHERE (d.status = 'pending') IS TRUE FOR UPDATE OF d SKIP LOCKED
),
m AS (
	UPDATE deliveries d SET status = 'delivering', lease_owner = $3, lease_expires = x.exp, updated_at = $4
	FROM x WHERE d.id = x.id
	RETURNING d.*
)
SELECT ` + deliveryColumns + `, ` + eventColumns + `
FROM m AS d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id`

// candidate is a subscription whose lane this lease claimed.
type candidate struct {
	id        string
	ordered   bool
	allowance int  // more deliveries it may have delivering
	mine      bool // the lane was this owner's (unexpired) before
	expiry    time.Time
	stopped   bool // a batch did not fit: no more of it this time
	leased    int
}

// pick is a row of pickSQL.
type pick struct {
	sub     string
	id      string
	batchID string
	members []string
}

// DeliveryLease hands out due deliveries to p.Owner, fairly across
// subscriptions, in one transaction: reclaim expired leases, claim lanes,
// pick, mark, then settle the lanes and read the subscriptions. Its round
// trips do not grow with the number of deliveries.
func (s *Store) DeliveryLease(ctx context.Context, p herald.LeaseParams) (herald.Lease, error) {
	var lease herald.Lease
	err := s.txSoft(ctx, func(tx pgx.Tx) error {
		var err error
		lease, err = s.lease(ctx, tx, p)
		return err
	})
	if err != nil {
		return herald.Lease{}, fmt.Errorf("lease deliveries: %w", err)
	}
	return lease, nil
}

func (s *Store) lease(ctx context.Context, tx pgx.Tx, p herald.LeaseParams) (herald.Lease, error) {
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	now := p.Now.Truncate(time.Microsecond)
	if _, err := tx.Exec(ctx, reclaimSQL, tsAlways(now)); err != nil {
		return lease, err
	}
	if p.Limit <= 0 {
		return lease, nil
	}
	exclude := p.Exclude
	if exclude == nil {
		exclude = []string{}
	}
	rows, err := tx.Query(ctx, claimSQL, tsAlways(now), p.Owner, exclude, p.Limit, int64(p.Margin))
	if err != nil {
		return lease, err
	}
	cands := map[string]*candidate{}
	var ids []string
	var ordered []bool
	var takes []int32
	{
		var c candidate
		var allowance, timeout int64
		_, err = pgx.ForEachRow(rows, []any{&c.id, &c.ordered, &allowance, &c.mine, &timeout}, func() error {
			cc := c
			cc.allowance = int(allowance)
			cc.expiry = now.Add(p.Margin + time.Duration(timeout)).Truncate(time.Microsecond)
			cands[cc.id] = &cc
			ids, ordered = append(ids, cc.id), append(ordered, cc.ordered)
			takes = append(takes, int32(min(cc.allowance, p.Limit)))
			return nil
		})
	}
	if err != nil || len(cands) == 0 {
		return lease, err
	}

	rows, err = tx.Query(ctx, pickSQL, ids, ordered, takes, tsAlways(now), p.Limit)
	if err != nil {
		return lease, err
	}
	var picks []pick
	{
		var pk pick
		_, err = pgx.ForEachRow(rows, []any{&pk.sub, &pk.id, &pk.batchID, &pk.members}, func() error {
			picks = append(picks, pk)
			pk.members = nil
			return nil
		})
	}
	if err != nil {
		return lease, err
	}
	ids, exps := choose(picks, cands, p.Limit)
	if len(ids) > 0 {
		rows, err = tx.Query(ctx, markSQL, ids, exps, p.Owner, tsAlways(now))
		if err != nil {
			return lease, err
		}
		if lease.Deliveries, err = scanLeased(rows); err != nil {
			return lease, err
		}
	}
	for _, ld := range lease.Deliveries {
		cands[ld.Delivery.SubscriptionID].leased++
	}
	subs, err := settleLanes(ctx, tx, p.Owner, cands)
	if err != nil {
		return lease, err
	}
	for _, row := range subs {
		sub, err := s.open(row)
		if err != nil {
			return lease, err
		}
		lease.Subscriptions[sub.ID] = sub
	}
	slices.SortStableFunc(lease.Deliveries, func(a, b herald.LeasedDelivery) int {
		if c := a.Delivery.NextAttemptAt.Compare(b.Delivery.NextAttemptAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Delivery.Seq, b.Delivery.Seq)
	})
	return lease, nil
}

// choose walks the picks in their fair order and returns the deliveries to
// lease with their lease expiries: at most limit in all, except that a batch
// comes whole (a batch larger than what is left waits for a later lease
// unless nothing is chosen yet, and then no more of that subscription is
// taken now), and no subscription beyond its allowance but for the rest of a
// batch.
func choose(picks []pick, cands map[string]*candidate, limit int) ([]string, []time.Time) {
	left := limit
	taken := map[string]bool{}
	var ids []string
	var exps []time.Time
	for _, pk := range picks {
		if left <= 0 {
			break
		}
		c := cands[pk.sub]
		if c == nil || c.stopped || c.allowance <= 0 || taken[pk.id] {
			continue
		}
		members := []string{pk.id}
		if pk.batchID != "" && slices.Contains(pk.members, pk.id) {
			members = pk.members
		}
		if len(members) > left && len(ids) > 0 {
			c.stopped = true
			continue
		}
		for _, m := range members {
			if !taken[m] {
				taken[m] = true
				ids, exps = append(ids, m), append(exps, c.expiry)
			}
		}
		c.allowance -= len(members)
		left -= len(members)
	}
	return ids, exps
}

// settleLanes extends the lanes this lease took deliveries from to their
// lease expiry, frees those it claimed but took nothing from, and returns
// the rows of the subscriptions leased from. One round trip.
func settleLanes(ctx context.Context, tx pgx.Tx, owner string, cands map[string]*candidate) ([]subRow, error) {
	var extend, unused []string
	var until []time.Time
	var used []string
	for _, c := range cands {
		switch {
		case c.leased > 0:
			used = append(used, c.id)
			if c.mine {
				extend, until = append(extend, c.id), append(until, c.expiry)
			}
		case !c.mine:
			unused = append(unused, c.id)
		}
	}
	slices.Sort(unused) // lock order
	batch := &pgx.Batch{}
	if len(extend) > 0 {
		batch.Queue(`UPDATE lanes SET expires_at = greatest(lanes.expires_at, u.exp)
			FROM unnest($1::text[], $2::timestamptz[]) AS u(id, exp)
			WHERE lanes.subscription_id = u.id AND lanes.owner = $3`, extend, until, owner)
	}
	if len(unused) > 0 {
		batch.Queue(`DELETE FROM lanes WHERE owner = $1 AND subscription_id = ANY($2::text[])`, owner, unused)
	}
	var subs []subRow
	if len(used) > 0 {
		queueSubscriptions(batch, used, &subs)
	}
	if batch.Len() == 0 {
		return nil, nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	return subs, nil
}

// queueSubscriptions adds to batch a read of the subscriptions ids into
// *dst.
func queueSubscriptions(batch *pgx.Batch, ids []string, dst *[]subRow) {
	batch.Queue(`SELECT `+subColumns+` FROM subscriptions s WHERE s.id = ANY($1::text[])`, ids).
		Query(func(rows pgx.Rows) error {
			var err error
			*dst, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (subRow, error) { return scanSubscription(r) })
			return err
		})
}

// scanLeased reads rows of deliveryColumns then eventColumns.
func scanLeased(rows pgx.Rows) ([]herald.LeasedDelivery, error) {
	defer rows.Close()
	var out []herald.LeasedDelivery
	for rows.Next() {
		var ld herald.LeasedDelivery
		dest, done := deliveryDest(&ld.Delivery)
		var eseq int64
		edest, edone := eventDest(&ld.Event, &eseq)
		if err := rows.Scan(append(dest, edest...)...); err != nil {
			return nil, err
		}
		done()
		edone()
		out = append(out, ld)
	}
	return out, rows.Err()
}

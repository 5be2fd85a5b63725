package postgres

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// A publish that claims (herald.Claimer) leases the fresh deliveries of
// active, unordered subscriptions whose lane is free, expired or the
// claimer's, up to each lane's room, by inserting them delivering: no lease
// reads them back and no second row version is written. It takes two round
// trips where EventPublish takes one: the pairs are matched first, with what
// the claim needs to know of their subscriptions and lanes (matchSQL), and
// then the lanes are claimed and everything inserted at once
// (claimFanOutSQL), the claimed subscriptions read in the same round trip.
//
// A lane is claimed by upserting its row, as DeliveryLease does: the row
// stays locked until the publish commits, and a lane another process holds
// unexpired is left alone (its deliveries are inserted pending and leased
// by their lane's owner). The owner's own outcomes may meanwhile find the
// lane drained and set it to pass on (drainedSQL); DeliveryRecord locks the
// lanes before it looks, in a statement of its own, so it sees the
// deliveries of a claim that committed while it waited.

// matchSQL lists the (event, subscription) pairs of the new events (i,
// tenant, id and Only of jCTE at $1–$4, keys at $5–$10), in the order
// fanOutSQL inserts them, each with its subscription's tenant, status,
// order, timeout, lane cap, lane (owner and expiry) and how many deliveries
// it has delivering (counted up to the cap). x is MATERIALIZED: inlined,
// the planner counted a subscription's deliveries once for every pair.
var matchSQL = `WITH j AS (
	SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) AS j(i, tenant_id, id, only_id)
),
` + matchCTE(5) + `,
x AS MATERIALIZED (
	SELECT s.id, s.tenant_id, s.status, s.ordered, s.timeout_ns, ` + laneCapSQL + ` AS cap,
		coalesce(l.owner, '') AS owner, l.expires_at, ` + deliveringSQL + ` AS delivering
	FROM (SELECT DISTINCT id FROM m) AS u JOIN subscriptions s ON s.id = u.id
		LEFT JOIN lanes l ON l.subscription_id = s.id
)
SELECT m.i, x.id, x.tenant_id, x.status, x.ordered, x.timeout_ns, x.cap, x.owner, x.expires_at, x.delivering
FROM m JOIN x ON x.id = m.id ORDER BY m.i, m.seq`

// claimFanOutSQL is fanOutSQL for pairs matched beforehand ($19: index of
// the event in j, $20: subscription, in insertion order) that also claims
// the lanes of $14 (tenants $15, lease expiries $16, at most $17 deliveries
// each) for $18: a claimed subscription's first deliveries are inserted
// delivering under a lease until its expiry. A lane already $18's keeps the
// later of its expiry and the new one; another owner's, unexpired at $11,
// is not claimed (the upsert's WHERE), and its deliveries go in pending.
var claimFanOutSQL = `WITH ` + jCTE + `,
c AS (SELECT * FROM unnest($14::text[], $15::text[], $16::timestamptz[], $17::int[]) AS c(sub, tenant_id, until, n)),
lk AS (
	INSERT INTO lanes AS l (subscription_id, tenant_id, owner, expires_at)
	SELECT c.sub, c.tenant_id, $18, c.until FROM c ORDER BY c.sub
	ON CONFLICT (subscription_id) DO UPDATE SET tenant_id = excluded.tenant_id, owner = excluded.owner,
		expires_at = CASE WHEN l.owner = excluded.owner THEN greatest(l.expires_at, excluded.expires_at)
			ELSE excluded.expires_at END
	WHERE l.owner = excluded.owner OR l.expires_at < $11
	RETURNING l.subscription_id
),
m AS (
	SELECT m.ord, m.sub, j.tenant_id, j.id AS event_id,
		row_number() OVER (PARTITION BY m.sub ORDER BY m.ord) AS rank
	FROM unnest($19::int[], $20::text[]) WITH ORDINALITY AS m(i, sub, ord) JOIN j ON j.i = m.i
),
k AS (
	SELECT m.ord, m.sub, m.tenant_id, m.event_id, c.until
	FROM m LEFT JOIN (c JOIN lk ON lk.subscription_id = c.sub) ON c.sub = m.sub AND m.rank <= c.n
),
d AS (
	INSERT INTO deliveries (id, tenant_id, subscription_id, event_id, status, next_attempt_at, trace_id,
		created_at, updated_at, lease_owner, lease_expires)
	SELECT $12 || substr(gen_random_uuid()::text, 16), k.tenant_id, k.sub, k.event_id,
		CASE WHEN k.until IS NULL THEN 'pending' ELSE 'delivering' END, $11,
		$13 || substr(gen_random_uuid()::text, 16), $11, $11,
		CASE WHEN k.until IS NULL THEN '' ELSE $18 END, k.until
	FROM k ORDER BY k.ord
	RETURNING seq, tenant_id, event_id, id, subscription_id, status, trace_id
),
` + eventsCTE + `
SELECT tenant_id, event_id, id, seq, subscription_id, status = 'delivering', trace_id FROM d ORDER BY seq`

// fanOutClaim stores the new events of b and their deliveries as fanOut
// does, claiming what c may take of them, and returns the claimed
// subscriptions' rows.
func (s *Store) fanOutClaim(ctx context.Context, tx pgx.Tx, now time.Time, b *fanBatch, head string, c herald.Claim) ([]fresh, map[string]subRow, error) {
	// A matched subscription, as matchSQL describes it.
	type subInfo struct {
		tenant, status    string
		ordered           bool
		timeout           int64
		capacity, deliver int64
		owner             string
		expires           pgtype.Timestamptz
		matched           int
	}
	var (
		mi    []int32
		ms    []string
		order []string // the subscriptions, first matched first
		infos = map[string]*subInfo{}
	)
	rows, err := tx.Query(ctx, matchSQL, b.index, b.tenant, b.id, b.only,
		b.keyEvent, b.keyTenant, b.keyKind, b.keyValue, b.keyID, b.keyTest)
	if err != nil {
		return nil, nil, err
	}
	var i int32
	var sub string
	var in subInfo
	if _, err := pgx.ForEachRow(rows, []any{&i, &sub, &in.tenant, &in.status, &in.ordered, &in.timeout,
		&in.capacity, &in.owner, &in.expires, &in.deliver}, func() error {
		p := infos[sub]
		if p == nil {
			p = new(subInfo)
			*p = in
			infos[sub] = p
			order = append(order, sub)
		}
		p.matched++
		mi, ms = append(mi, i), append(ms, sub)
		return nil
	}); err != nil {
		return nil, nil, err
	}

	// Decide what each subscription may take.
	toClaim := 0
	var (
		cSubs, cTenants []string
		cUntil          []pgtype.Timestamptz
		cN              []int32
	)
	for _, id := range order {
		in := infos[id]
		n, known := 0, false
		if c.Room != nil {
			n, known = c.Room(id)
		}
		switch {
		case known && n <= 0, in.status != herald.StatusActive, in.ordered:
			continue
		case in.owner != "" && in.owner != c.Owner && !fromTS(in.expires).Before(now):
			continue // another process's lane
		}
		if !known {
			n = int(in.capacity - in.deliver)
		}
		if n = min(n, in.matched); n <= 0 {
			continue
		}
		cSubs, cTenants = append(cSubs, id), append(cTenants, in.tenant)
		cUntil = append(cUntil, tsAlways(now.Add(c.Margin+time.Duration(in.timeout)).Truncate(time.Microsecond)))
		cN = append(cN, int32(n))
		toClaim += n
	}

	var created []fresh
	var subs []subRow
	batch := &pgx.Batch{}
	batch.Queue(claimFanOutSQL, b.index, b.tenant, b.id, b.typ, b.version, b.data, b.createTime, b.test, b.hash,
		b.only, tsAlways(now), herald.PrefixDelivery+head, head, cSubs, cTenants, cUntil, cN, c.Owner, mi, ms).Query(func(rows pgx.Rows) error {
		var f fresh
		_, err := pgx.ForEachRow(rows, []any{&f.key.TenantID, &f.key.ID, &f.id, &f.seq, &f.sub, &f.delivered, &f.trace}, func() error {
			created = append(created, f)
			return nil
		})
		return err
	})
	if len(cSubs) > 0 {
		queueSubscriptions(batch, cSubs, &subs)
	}
	// The dispatchers are woken (at commit) only for what is left pending:
	// what the claim takes goes to this process's lanes directly.
	notified := toClaim < len(mi)
	if notified {
		batch.Queue(notifySQL, s.wake)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, nil, err
	}
	// Only the subscriptions whose lane the upsert took have deliveries
	// claimed.
	claimed := map[string]subRow{}
	pending := false
	for _, f := range created {
		if f.delivered {
			claimed[f.sub] = subRow{}
		} else {
			pending = true
		}
	}
	if pending && !notified {
		// A lane was taken by another process after matchSQL read it.
		if _, err := tx.Exec(ctx, notifySQL, s.wake); err != nil {
			return nil, nil, err
		}
	}
	for _, row := range subs {
		if _, ok := claimed[row.sub.ID]; ok {
			claimed[row.sub.ID] = row
		}
	}
	return created, claimed, nil
}

// claimedLease returns the deliveries a publish created delivering as the
// Lease of its claim, in Seq order, with their events as published and
// their subscriptions opened.
func (s *Store) claimedLease(now time.Time, reqs []herald.PublishRequest, results []herald.PublishResult,
	first map[herald.EventKey]int, created []fresh, subs map[string]subRow) (herald.Lease, error) {
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	if len(subs) == 0 {
		return lease, nil
	}
	for id, row := range subs {
		sub, err := s.open(row)
		if err != nil {
			return lease, err
		}
		lease.Subscriptions[id] = sub
	}
	for _, f := range created {
		if !f.delivered {
			continue
		}
		i := first[f.key]
		ev := reqs[i].Event
		ev.Deliveries, ev.ReceivedAt = results[i].Deliveries, now
		lease.Deliveries = append(lease.Deliveries, herald.LeasedDelivery{
			Delivery: herald.Delivery{ID: f.id, TenantID: f.key.TenantID, SubscriptionID: f.sub, EventID: f.key.ID,
				Status: herald.DeliveryDelivering, NextAttemptAt: now, TraceID: f.trace, Seq: f.seq,
				CreatedAt: now, UpdatedAt: now},
			Event: ev,
		})
	}
	slices.SortFunc(lease.Deliveries, func(a, b herald.LeasedDelivery) int { return cmp.Compare(a.Delivery.Seq, b.Delivery.Seq) })
	return lease, nil
}

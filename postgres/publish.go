package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// publishLockKey is the first key of the per-tenant advisory locks
// EventPublish holds until it commits; the second is a hash of the schema
// and tenant id.
const publishLockKey = 0x7075_626c // "publ"

// lockTenantsSQL takes the publish lock of every tenant of $1, in one order
// (sorted hashes) so that two publishers never wait for each other in a
// circle. Held to commit, it serializes a tenant's publishes across
// processes: an idempotency key is looked up after the previous publish of
// it committed, and a tenant's deliveries commit in Seq order, so an ordered
// subscription never sees a later Seq before an earlier one.
const lockTenantsSQL = `SELECT pg_advisory_xact_lock($2, h) FROM (
	SELECT DISTINCT hashtext(current_schema() || '/' || t) AS h FROM unnest($1::text[]) AS t ORDER BY 1) AS l`

// existingSQL returns the stored events among the (tenant, id) pairs.
const existingSQL = `SELECT e.tenant_id, e.id, e.hash, e.deliveries FROM events e
	JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, id) ON e.tenant_id = k.tenant_id AND e.id = k.id`

// jCTE is j, the new events of one call as parallel arrays ($1–$10).
const jCTE = `j AS (
	SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[],
		$7::timestamptz[], $8::boolean[], $9::bytea[], $10::text[])
		AS j(i, tenant_id, id, event_type, version, data, create_time, test, hash, only_id)
)`

// matchCTE returns m, the (event, subscription) pairs where the subscription
// takes an event of j: by Only, or through the subscriptions' pattern rows,
// looked up by key ($k–$k+5: for each event "all", its type exactly and each
// of its prefixes, with what the delivery needs of the event), so a tenant's
// other subscriptions cost nothing. Each key is one LATERAL lookup (OFFSET 0
// keeps the planner, which cannot estimate the arrays, from joining all
// subscriptions first); UNION: a subscription whose patterns match twice
// gets one delivery.
func matchCTE(k int) string {
	return fmt.Sprintf(`m AS (
	SELECT j.i, s.seq, s.id, s.tenant_id, j.id AS event_id
	FROM j JOIN subscriptions s ON s.tenant_id = j.tenant_id AND s.id = j.only_id
	WHERE j.only_id <> ''
	UNION
	SELECT k.i, s.seq, s.id, s.tenant_id, k.event_id
	FROM unnest($%d::int[], $%d::text[], $%d::text[], $%d::text[], $%d::text[], $%d::boolean[])
			AS k(i, tenant_id, kind, value, event_id, test)
		CROSS JOIN LATERAL (
			SELECT s.seq, s.id, s.tenant_id FROM subscription_patterns p JOIN subscriptions s ON s.id = p.subscription_id
			WHERE p.tenant_id = k.tenant_id AND p.kind = k.kind AND p.value = k.value
				AND s.status IN ('active', 'paused') AND s.mode = CASE WHEN k.test THEN 'test' ELSE 'live' END
			OFFSET 0) AS s
)`, k, k+1, k+2, k+3, k+4, k+5)
}

// eventsCTE inserts the events of j received at $11, each with the number of
// deliveries d created for it. An event whose Only names no subscription of
// its tenant is not stored.
const eventsCTE = `n AS (SELECT tenant_id, event_id, count(*) AS n FROM d GROUP BY tenant_id, event_id),
e AS (
	INSERT INTO events (tenant_id, id, event_type, version, data, create_time, test, hash, deliveries, received_at)
	SELECT j.tenant_id, j.id, j.event_type, j.version, j.data, j.create_time, j.test, j.hash, coalesce(n.n, 0), $11
	FROM j LEFT JOIN n ON n.tenant_id = j.tenant_id AND n.event_id = j.id
	WHERE j.only_id = '' OR n.n IS NOT NULL
	ORDER BY j.i
)`

// fanOutSQL stores the new events of one call (jCTE) and one pending
// delivery for every pair of matchCTE (keys at $14–$19), in one statement.
// The deliveries are inserted in (request, subscription) order, so their
// Seq follows publish order.
//
// Delivery and trace ids are UUIDv7: $12 and $13 are the id prefix and the
// text of the 48-bit millisecond time and version 7 ("dlv_018f…-…-7", see
// uuid7Head); the rest of the text, variant and random bits, comes from a
// random (version 4) UUID after its version digit.
var fanOutSQL = `WITH ` + jCTE + `,
` + matchCTE(14) + `,
d AS (
	INSERT INTO deliveries (id, tenant_id, subscription_id, event_id, status, next_attempt_at, trace_id,
		created_at, updated_at)
	SELECT $12 || substr(gen_random_uuid()::text, 16), m.tenant_id, m.id, m.event_id, 'pending', $11,
		$13 || substr(gen_random_uuid()::text, 16), $11, $11
	FROM m ORDER BY m.i, m.seq
	RETURNING seq, tenant_id, event_id, id
),
` + eventsCTE + `
SELECT tenant_id, event_id, id FROM d ORDER BY seq`

// EventPublish stores events and their deliveries in one transaction: the
// tenants' publish locks, the idempotency lookup, then one statement for
// every new event and delivery, and a wake-up for the dispatchers sent at
// commit. The caller groups concurrent publishes so they share one commit.
func (s *Store) EventPublish(ctx context.Context, now time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	res, _, err := s.eventPublish(ctx, now, reqs, nil)
	return res, err
}

// EventPublishClaim is EventPublish that also leases fresh deliveries to
// claim.Owner in the same transaction (herald.Claimer; claim.go).
func (s *Store) EventPublishClaim(ctx context.Context, now time.Time, reqs []herald.PublishRequest, claim herald.Claim) ([]herald.PublishResult, herald.Lease, error) {
	return s.eventPublish(ctx, now, reqs, &claim)
}

func (s *Store) eventPublish(ctx context.Context, now time.Time, reqs []herald.PublishRequest, c *herald.Claim) ([]herald.PublishResult, herald.Lease, error) {
	now = now.Truncate(time.Microsecond)
	var results []herald.PublishResult
	var lease herald.Lease
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		results, lease, err = s.publish(ctx, tx, now, reqs, c)
		return err
	})
	if err != nil {
		return nil, herald.Lease{}, fmt.Errorf("publish events: %w", err)
	}
	n := 0
	for _, r := range results {
		n += 1 + len(r.DeliveryIDs) // an event and its deliveries (or a repeat)
	}
	s.grew(n)
	return results, lease, nil
}

// fresh is a delivery a publish created, as its statement returned it.
type fresh struct {
	key       herald.EventKey
	id        string
	seq       int64
	sub       string
	delivered bool // inserted delivering, leased to the claim's owner
	trace     string
}

// publish stores the new events of reqs and their deliveries, and with c
// leases what c may take of them (claim.go).
func (s *Store) publish(ctx context.Context, tx pgx.Tx, now time.Time, reqs []herald.PublishRequest, c *herald.Claim) ([]herald.PublishResult, herald.Lease, error) {
	results := make([]herald.PublishResult, len(reqs))
	if len(reqs) == 0 {
		return results, herald.Lease{}, nil
	}
	known, err := lockAndLookUp(ctx, tx, reqs)
	if err != nil {
		return nil, herald.Lease{}, err
	}
	plan := herald.PlanPublish(reqs, known)
	results = plan.Results
	var b fanBatch
	for _, i := range plan.New {
		b.add(i, reqs[i])
	}
	if len(b.index) == 0 {
		return results, herald.Lease{}, nil
	}

	head := uuid7Head(time.Now())
	var created []fresh
	var subs map[string]subRow // claimed subscriptions
	if c == nil {
		created, err = s.fanOut(ctx, tx, now, &b, head)
	} else {
		created, subs, err = s.fanOutClaim(ctx, tx, now, &b, head, *c)
	}
	if err != nil {
		return nil, herald.Lease{}, err
	}
	for _, f := range created {
		r := &results[plan.First[f.key]]
		r.DeliveryIDs = append(r.DeliveryIDs, f.id)
	}
	for _, i := range b.index {
		r, req := &results[i], &reqs[i]
		r.Deliveries = len(r.DeliveryIDs)
		if req.Only != "" && r.Deliveries == 0 {
			r.Err = herald.ErrNotFound // not stored
		}
	}
	results = plan.Finish()
	lease, err := s.claimedLease(now, reqs, results, plan.First, created, subs)
	if err != nil {
		return nil, herald.Lease{}, err
	}
	return results, lease, nil
}

// fanOut runs fanOutSQL and the dispatchers' wake-up (sent at commit) in one
// round trip.
func (s *Store) fanOut(ctx context.Context, tx pgx.Tx, now time.Time, b *fanBatch, head string) ([]fresh, error) {
	var created []fresh
	batch := &pgx.Batch{}
	batch.Queue(fanOutSQL, b.index, b.tenant, b.id, b.typ, b.version, b.data, b.createTime, b.test, b.hash,
		b.only, tsAlways(now), herald.PrefixDelivery+head, head, b.keyEvent, b.keyTenant, b.keyKind, b.keyValue, b.keyID, b.keyTest).Query(func(rows pgx.Rows) error {
		var f fresh
		_, err := pgx.ForEachRow(rows, []any{&f.key.TenantID, &f.key.ID, &f.id}, func() error {
			created = append(created, f)
			return nil
		})
		return err
	})
	batch.Queue(notifySQL, s.wake)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	return created, nil
}

// notifySQL wakes the dispatchers of every process when the transaction
// commits; its argument is the store's channel.
const notifySQL = `SELECT pg_notify($1, '')`

// lockAndLookUp takes the publish locks of the requests' tenants and then,
// in a statement of its own (a snapshot taken after the locks are held),
// looks up which requested events are stored already. Both go in one round
// trip.
func lockAndLookUp(ctx context.Context, tx pgx.Tx, reqs []herald.PublishRequest) (map[herald.EventKey]herald.StoredEvent, error) {
	tenants := make([]string, 0, len(reqs))
	ids := make([]string, 0, len(reqs))
	for _, r := range reqs {
		tenants = append(tenants, r.Event.TenantID)
		ids = append(ids, r.Event.ID)
	}
	distinct := slices.Clone(tenants)
	slices.Sort(distinct)
	distinct = slices.Compact(distinct)

	known := make(map[herald.EventKey]herald.StoredEvent, len(reqs))
	batch := &pgx.Batch{}
	batch.Queue(lockTenantsSQL, distinct, int32(publishLockKey))
	batch.Queue(existingSQL, tenants, ids).Query(func(rows pgx.Rows) error {
		var key herald.EventKey
		var se herald.StoredEvent
		var n int32
		_, err := pgx.ForEachRow(rows, []any{&key.TenantID, &key.ID, &se.Hash, &n}, func() error {
			se.Deliveries = int(n)
			known[key] = se
			se = herald.StoredEvent{}
			return nil
		})
		return err
	})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	return known, nil
}

// uuid7Head returns the first 15 characters of the text of a UUIDv7 made at
// t: its 48-bit Unix millisecond time and the version digit 7.
func uuid7Head(t time.Time) string {
	ms := uint64(t.UnixMilli()) & (1<<48 - 1)
	return fmt.Sprintf("%08x-%04x-7", ms>>16, ms&0xffff)
}

// fanBatch holds the new events of one call as the parallel arrays
// fanOutSQL takes.
type fanBatch struct {
	index      []int32
	tenant     []string
	id         []string
	typ        []string
	version    []string
	data       [][]byte
	createTime []pgtype.Timestamptz
	test       []bool
	hash       [][]byte
	only       []string
	// The subscription_patterns keys each event's type matches, by index.
	keyEvent  []int32
	keyTenant []string
	keyKind   []string
	keyValue  []string
	keyID     []string
	keyTest   []bool
}

func (b *fanBatch) add(i int, req herald.PublishRequest) {
	e := &req.Event
	var data []byte
	if e.Data != nil {
		data = e.Data
	}
	b.index = append(b.index, int32(i))
	b.tenant = append(b.tenant, e.TenantID)
	b.id = append(b.id, e.ID)
	b.typ = append(b.typ, e.EventType)
	b.version = append(b.version, e.Version)
	b.data = append(b.data, data)
	b.createTime = append(b.createTime, ts(e.CreateTime))
	b.test = append(b.test, e.Test)
	b.hash = append(b.hash, e.Hash)
	b.only = append(b.only, req.Only)
	if req.Only != "" {
		return
	}
	for _, k := range herald.TypeKeys(e.EventType) {
		b.keyEvent, b.keyTenant = append(b.keyEvent, int32(i)), append(b.keyTenant, e.TenantID)
		b.keyKind, b.keyValue = append(b.keyKind, k.Kind), append(b.keyValue, k.Value)
		b.keyID, b.keyTest = append(b.keyID, e.ID), append(b.keyTest, e.Test)
	}
}

const eventColumns = `e.seq, e.tenant_id, e.id, e.event_type, e.version, e.data, e.create_time, e.test, e.hash,
	e.deliveries, e.received_at`

// eventDest returns the scan destinations of eventColumns into e and its
// seq, and a function to call after Scan.
func eventDest(e *herald.Event, seq *int64) ([]any, func()) {
	var (
		data              []byte
		created, received pgtype.Timestamptz
		n                 int32
	)
	dest := []any{seq, &e.TenantID, &e.ID, &e.EventType, &e.Version, &data, &created, &e.Test, &e.Hash,
		&n, &received}
	return dest, func() {
		if data != nil {
			e.Data = json.RawMessage(data)
		}
		e.Deliveries = int(n)
		e.CreateTime, e.ReceivedAt = fromTS(created), fromTS(received)
	}
}

func scanEvent(sc scanner) (herald.Event, int64, error) {
	var e herald.Event
	var seq int64
	dest, done := eventDest(&e, &seq)
	if err := sc.Scan(dest...); err != nil {
		return herald.Event{}, 0, err
	}
	done()
	return e, seq, nil
}

// EventGet returns a tenant's event.
func (s *Store) EventGet(ctx context.Context, tenantID, id string) (herald.Event, error) {
	var e herald.Event
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		e, _, err = scanEvent(c.QueryRow(ctx, `SELECT `+eventColumns+` FROM events e
			WHERE e.tenant_id = $1 AND e.id = $2`, tenantID, id))
		return err
	})
	if err != nil {
		return herald.Event{}, fmt.Errorf("get event: %w", err)
	}
	return e, nil
}

// eventHashesSQL is the tenant's stored events among ids, with their hashes.
const eventHashesSQL = `SELECT id, hash FROM events WHERE tenant_id = $1 AND id = ANY($2)`

// EventHashes returns the hashes of the tenant's stored events among ids.
func (s *Store) EventHashes(ctx context.Context, tenantID string, ids []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, eventHashesSQL, tenantID, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var hash []byte
			if err := rows.Scan(&id, &hash); err != nil {
				return err
			}
			out[id] = hash
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("event hashes: %w", err)
	}
	return out, nil
}

// EventList pages through a tenant's events, newest first (by seq).
func (s *Store) EventList(ctx context.Context, tenantID string, f herald.EventFilter) ([]herald.Event, string, error) {
	limit := f.Size()
	before, ok, err := parseSeqCursor(f.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	q := `SELECT ` + eventColumns + ` FROM events e WHERE e.tenant_id = $1`
	args := []any{tenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if ok {
		q += ` AND e.seq < ` + arg(before)
	}
	if f.EventType != "" {
		q += ` AND e.event_type = ` + arg(f.EventType)
	}
	if !f.Since.IsZero() {
		q += ` AND e.received_at >= ` + arg(tsAlways(f.Since))
	}
	if !f.Until.IsZero() {
		q += ` AND e.received_at < ` + arg(tsAlways(f.Until))
	}
	q += ` ORDER BY e.seq DESC LIMIT ` + strconv.Itoa(limit+1)
	var out []herald.Event
	var seqs []int64
	err = s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, seq, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out, seqs = append(out, e), append(seqs, seq)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = seqCursor(seqs[limit-1])
	}
	return out, next, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
)

// fanOutSQL inserts one pending delivery for every (event, subscription)
// pair of the batch ?1 (fanKeys) where the subscription takes
// the event, and returns them. The patterns an event matches are looked up
// by key in subscription_patterns_match (its type exactly, each of its
// prefixes, and "all"), so a tenant's other subscriptions cost nothing;
// UNION keeps a subscription whose patterns match twice to one delivery. One
// statement for the whole batch: SQLite runs it in-process, so this saves a
// statement run per event, not a round trip.
const fanOutSQL = `WITH k AS (
	SELECT value ->> 0 AS i, value ->> 1 AS t, value ->> 2 AS kind, value ->> 3 AS v, value ->> 4 AS e,
		value ->> 5 AS m
	FROM json_each(?1)
),
x (i, t, e, m, sid, only) AS (
	SELECT k.i, k.t, k.e, k.m, p.subscription_id, 0 FROM k
	JOIN subscription_patterns p INDEXED BY subscription_patterns_match
		ON p.tenant_id = k.t AND p.kind = k.kind AND p.value = k.v
	UNION
	SELECT i, t, e, m, v, 1 FROM k WHERE kind = 'only'
)
INSERT INTO deliveries (id, tenant_id, subscription_id, event_id, status, next_attempt_at, trace_id,
	created_at, updated_at)
SELECT herald_new_id('` + herald.PrefixDelivery + `'), s.tenant_id, s.id, x.e, 'pending', ?2, herald_new_uuid(), ?2, ?2
FROM x JOIN subscriptions s ON s.id = x.sid AND s.tenant_id = x.t
WHERE x.only OR (s.status IN ('active', 'paused') AND s.mode = x.m)
ORDER BY x.i, s.seq
RETURNING tenant_id, event_id, id, subscription_id, seq, trace_id`

// fanKeys returns fanOutSQL's ?1, the lookups of a batch: for each new
// event (in reqs, by index), the subscription_patterns keys its type matches
// ("all", its type exactly, and each of its prefixes, herald.TypePrefixes),
// or, for a test send to one subscription, that subscription. Each is an
// array [event, tenant, kind, value, event id, mode].
func fanKeys(reqs []herald.PublishRequest, events []int) ([]byte, error) {
	var keys [][6]any
	for n, i := range events {
		req := &reqs[i]
		e := &req.Event
		mode := herald.ModeLive
		if e.Test {
			mode = herald.ModeTest
		}
		key := func(kind, value string) { keys = append(keys, [6]any{n, e.TenantID, kind, value, e.ID, mode}) }
		if req.Only != "" {
			key("only", req.Only)
			continue
		}
		key("all", "")
		key("exact", e.EventType)
		for _, p := range herald.TypePrefixes(e.EventType) {
			key("prefix", p)
		}
	}
	return json.Marshal(keys)
}

// eventInsert inserts k events in one statement.
func eventInsert(k int) string {
	return `INSERT INTO events (tenant_id, id, event_type, version, data, create_time, test, hash,
	deliveries, received_at) VALUES ` + values(10, k)
}

// EventPublish stores events and their deliveries in one transaction: the
// caller groups concurrent publishes so they share one fsync.
func (s *Store) EventPublish(ctx context.Context, now time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	results, _, err := s.eventPublish(ctx, now, reqs, nil)
	return results, err
}

// EventPublishClaim is EventPublish that also leases fresh deliveries to
// claim.Owner in the same transaction (herald.Claimer).
func (s *Store) EventPublishClaim(ctx context.Context, now time.Time, reqs []herald.PublishRequest, claim herald.Claim) ([]herald.PublishResult, herald.Lease, error) {
	return s.eventPublish(ctx, now, reqs, &claim)
}

func (s *Store) eventPublish(ctx context.Context, now time.Time, reqs []herald.PublishRequest, claim *herald.Claim) ([]herald.PublishResult, herald.Lease, error) {
	now = now.Truncate(time.Microsecond)
	var results []herald.PublishResult
	var lease herald.Lease
	err := s.write(ctx, func(tx *sql.Tx) error {
		var fresh []freshDelivery
		var err error
		if results, fresh, err = s.publish(ctx, tx, now, reqs); err != nil || claim == nil {
			return err
		}
		lease, err = s.claim(ctx, tx, now, claim, fresh, reqs, results)
		return err
	})
	if err != nil {
		return nil, herald.Lease{}, fmt.Errorf("publish events: %w", err)
	}
	return results, lease, nil
}

// freshDelivery is a delivery created by a publish.
type freshDelivery struct {
	id, sub, trace string
	seq            int64
	req            int // index of its request
}

func (s *Store) publish(ctx context.Context, tx *sql.Tx, now time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, []freshDelivery, error) {
	known, err := s.existingEvents(ctx, tx, reqs)
	if err != nil {
		return nil, nil, err
	}
	plan := herald.PlanPublish(reqs, known)
	results := plan.Results
	if len(plan.New) == 0 {
		return results, nil, nil
	}
	at := now.UnixMicro()
	keys, err := fanKeys(reqs, plan.New)
	if err != nil {
		return nil, nil, err
	}
	fan, err := s.prepare(ctx, tx, fanOutSQL)
	if err != nil {
		return nil, nil, err
	}
	rows, err := fan.QueryContext(ctx, string(keys), at)
	if err != nil {
		return nil, nil, err
	}
	var fresh []freshDelivery
	for rows.Next() {
		var key herald.EventKey
		var f freshDelivery
		if err := rows.Scan(&key.TenantID, &key.ID, &f.id, &f.sub, &f.seq, &f.trace); err != nil {
			rows.Close()
			return nil, nil, err
		}
		f.req = plan.First[key]
		r := &results[f.req]
		r.DeliveryIDs = append(r.DeliveryIDs, f.id)
		fresh = append(fresh, f)
	}
	if err := rows.Close(); err != nil {
		return nil, nil, err
	}

	var store []*herald.Event // the events to store, and their delivery counts
	var counts []int
	for _, i := range plan.New {
		req, r := &reqs[i], &results[i]
		r.Deliveries = len(r.DeliveryIDs)
		if req.Only != "" && r.Deliveries == 0 {
			r.Err = herald.ErrNotFound // not stored
			continue
		}
		store, counts = append(store, &req.Event), append(counts, r.Deliveries)
	}
	args := make([]any, 0, 10*maxChunk)
	for done := 0; done < len(store); {
		k := chunkOf(len(store) - done)
		args = args[:0]
		for i, e := range store[done : done+k] {
			var data []byte
			if e.Data != nil {
				data = e.Data
			}
			args = append(args, e.TenantID, e.ID, e.EventType, e.Version, data, micro(e.CreateTime),
				boolInt(e.Test), e.Hash, counts[done+i], at)
		}
		done += k
		insert, err := s.prepare(ctx, tx, eventInsert(k))
		if err != nil {
			return nil, nil, err
		}
		if _, err := insert.ExecContext(ctx, args...); err != nil {
			return nil, nil, err
		}
	}
	return plan.Finish(), fresh, nil
}

// existingEvents looks up, in one query per tenant, which requested events
// are stored already (idempotent repeats or conflicts).
func (s *Store) existingEvents(ctx context.Context, tx *sql.Tx, reqs []herald.PublishRequest) (map[herald.EventKey]herald.StoredEvent, error) {
	byTenant := map[string][]string{}
	for _, r := range reqs {
		byTenant[r.Event.TenantID] = append(byTenant[r.Event.TenantID], r.Event.ID)
	}
	known := make(map[herald.EventKey]herald.StoredEvent, len(reqs))
	for tenant, ids := range byTenant {
		list, err := json.Marshal(ids)
		if err != nil {
			return nil, err
		}
		q, err := s.prepare(ctx, tx, `SELECT id, hash, deliveries FROM events
			WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`)
		if err != nil {
			return nil, err
		}
		rows, err := q.QueryContext(ctx, tenant, string(list))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var se herald.StoredEvent
			if err := rows.Scan(&id, &se.Hash, &se.Deliveries); err != nil {
				rows.Close()
				return nil, err
			}
			known[herald.EventKey{TenantID: tenant, ID: id}] = se
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return known, nil
}

func collectIDs(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

const eventColumns = `e.seq, e.tenant_id, e.id, e.event_type, e.version, e.data, e.create_time, e.test, e.hash,
	e.deliveries, e.received_at`

func scanEvent(sc scanner) (herald.Event, int64, error) {
	var (
		e                 herald.Event
		seq               int64
		data              []byte
		created, received sql.NullInt64
		test              int
	)
	if err := sc.Scan(&seq, &e.TenantID, &e.ID, &e.EventType, &e.Version, &data, &created, &test, &e.Hash,
		&e.Deliveries, &received); err != nil {
		return herald.Event{}, 0, err
	}
	if data != nil {
		e.Data = json.RawMessage(data)
	}
	e.Test = test != 0
	e.CreateTime, e.ReceivedAt = fromMicro(created), fromMicro(received)
	return e, seq, nil
}

// EventGet returns a tenant's event.
func (s *Store) EventGet(ctx context.Context, tenantID, id string) (herald.Event, error) {
	r, err := s.reader()
	if err != nil {
		return herald.Event{}, fmt.Errorf("get event: %w", err)
	}
	e, _, err := scanEvent(r.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events e
		WHERE e.tenant_id = ? AND e.id = ?`, tenantID, id))
	if err != nil {
		return herald.Event{}, fmt.Errorf("get event: %w", s.classify(err))
	}
	return e, nil
}

// EventHashes returns the hashes of the tenant's stored events among ids.
func (s *Store) EventHashes(ctx context.Context, tenantID string, ids []string) (map[string][]byte, error) {
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("event hashes: %w", err)
	}
	q, err := s.readStmt(ctx, `SELECT id, hash FROM events WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`)
	if err != nil {
		return nil, fmt.Errorf("event hashes: %w", err)
	}
	rows, err := q.QueryContext(ctx, tenantID, string(list))
	if err != nil {
		return nil, fmt.Errorf("event hashes: %w", s.classify(err))
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var hash []byte
		if err := rows.Scan(&id, &hash); err != nil {
			return nil, fmt.Errorf("event hashes: %w", err)
		}
		out[id] = hash
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("event hashes: %w", s.classify(err))
	}
	return out, nil
}

// EventList pages through a tenant's events, newest first.
func (s *Store) EventList(ctx context.Context, tenantID string, f herald.EventFilter) ([]herald.Event, string, error) {
	r, err := s.reader()
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	limit := f.Size()
	before, ok, err := parseSeqCursor(f.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	q := `SELECT ` + eventColumns + ` FROM events e WHERE e.tenant_id = ?`
	args := []any{tenantID}
	if ok {
		q += ` AND e.seq < ?`
		args = append(args, before)
	}
	if f.EventType != "" {
		q += ` AND e.event_type = ?`
		args = append(args, f.EventType)
	}
	if !f.Since.IsZero() {
		q += ` AND e.received_at >= ?`
		args = append(args, f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		q += ` AND e.received_at < ?`
		args = append(args, f.Until.UnixMicro())
	}
	q += ` ORDER BY e.seq DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", s.classify(err))
	}
	defer rows.Close()
	var out []herald.Event
	var last int64
	for rows.Next() {
		e, seq, err := scanEvent(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list events: %w", s.classify(err))
		}
		if len(out) < limit {
			last = seq
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list events: %w", s.classify(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = seqCursor(last)
	}
	return out, next, nil
}

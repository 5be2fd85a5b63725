package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

// Fan-out: the subscriptions that take an event are looked up by key in
// subscription_patterns_match (its type exactly, each of its prefixes, and
// "all"), once per distinct key of a publish, so a tenant's other
// subscriptions cost nothing and a batch of events of one type costs three
// lookups. The deliveries are then inserted by multi-row statements.
const (
	// matchSQL lists the subscriptions with a pattern of key (?1, ?2, ?3),
	// and whether each takes events now (active or paused) and in which mode.
	matchSQL = `SELECT s.id, s.seq, s.status IN ('active', 'paused'), s.mode
		FROM subscription_patterns p INDEXED BY subscription_patterns_match
		JOIN subscriptions s ON s.id = p.subscription_id AND s.tenant_id = p.tenant_id
		WHERE p.tenant_id = ?1 AND p.kind = ?2 AND p.value = ?3`
	// onlySQL is the one subscription of a test send, in any state.
	onlySQL = `SELECT id, seq FROM subscriptions WHERE id = ? AND tenant_id = ?`
)

// deliveryInsert inserts k deliveries in one statement: pending, or
// delivering under a lease when a claim took them.
func deliveryInsert(k int) string {
	return `INSERT INTO deliveries (id, tenant_id, subscription_id, event_id, status, next_attempt_at, trace_id,
	created_at, updated_at, lease_owner, lease_expires) VALUES ` + values(11, k)
}

// patternKey is a lookup of subscription_patterns_match.
type patternKey struct {
	tenant string
	herald.PatternKey
}

// matched is a subscription found by a patternKey.
type matched struct {
	id    string
	seq   int64
	takes bool // active or paused
	mode  string
}

// matcher finds the subscriptions that take an event, looking each
// distinct key up once per publish.
type matcher struct {
	s     *Store
	ctx   context.Context
	tx    *sql.Tx
	match *sql.Stmt
	only  *sql.Stmt // prepared for the first test send
	cache map[patternKey][]matched
	subs  []matched
}

// subscribers returns the subscriptions that get a delivery of req, in
// subscription order; the slice is reused by the next call.
func (m *matcher) subscribers(req *herald.PublishRequest) ([]matched, error) {
	e := &req.Event
	m.subs = m.subs[:0]
	if req.Only != "" {
		if m.only == nil {
			var err error
			if m.only, err = m.s.prepare(m.ctx, m.tx, onlySQL); err != nil {
				return nil, err
			}
		}
		s := matched{id: req.Only}
		switch err := m.only.QueryRowContext(m.ctx, req.Only, e.TenantID).Scan(&s.id, &s.seq); {
		case errors.Is(err, sql.ErrNoRows):
			return m.subs, nil
		case err != nil:
			return nil, err
		}
		return append(m.subs, s), nil
	}
	mode := herald.ModeLive
	if e.Test {
		mode = herald.ModeTest
	}
	for _, k := range herald.TypeKeys(e.EventType) {
		found, err := m.lookup(patternKey{e.TenantID, k})
		if err != nil {
			return nil, err
		}
		for _, s := range found {
			if s.takes && s.mode == mode && !slices.ContainsFunc(m.subs, func(o matched) bool { return o.id == s.id }) {
				m.subs = append(m.subs, s)
			}
		}
	}
	slices.SortFunc(m.subs, func(a, b matched) int { return cmp.Compare(a.seq, b.seq) })
	return m.subs, nil
}

func (m *matcher) lookup(k patternKey) ([]matched, error) {
	if found, ok := m.cache[k]; ok {
		return found, nil
	}
	rows, err := m.match.QueryContext(m.ctx, k.tenant, k.Kind, k.Value)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var found []matched
	for rows.Next() {
		var s matched
		if err := rows.Scan(&s.id, &s.seq, &s.takes, &s.mode); err != nil {
			return nil, err
		}
		found = append(found, s)
	}
	m.cache[k] = found
	return found, rows.Err()
}

// fanOut creates the deliveries of the new events of a publish (reqs, by
// index in events): for each event in turn, one delivery due at at per
// subscription that takes it, in subscription order; pending, or delivering
// under cl's lease for those cl (if any) claims. It returns them with their
// seqs.
func (s *Store) fanOut(ctx context.Context, tx *sql.Tx, reqs []herald.PublishRequest, events []int, at int64,
	cl *claimer) ([]freshDelivery, error) {
	m := &matcher{s: s, ctx: ctx, tx: tx, cache: map[patternKey][]matched{}}
	var err error
	if m.match, err = s.prepare(ctx, tx, matchSQL); err != nil {
		return nil, err
	}
	var fresh []freshDelivery
	for _, i := range events {
		subs, err := m.subscribers(&reqs[i])
		if err != nil {
			return nil, err
		}
		for _, sub := range subs {
			fresh = append(fresh, freshDelivery{id: herald.NewID(herald.PrefixDelivery), sub: sub.id,
				trace: herald.NewUUID(), req: i})
		}
	}
	if cl != nil {
		if err := cl.plan(fresh); err != nil {
			return nil, err
		}
	}
	args := make([]any, 0, 11*maxChunk)
	for done := 0; done < len(fresh); {
		k := chunkOf(len(fresh) - done)
		args = args[:0]
		for j := done; j < done+k; j++ {
			f := &fresh[j]
			status, owner, expires := herald.DeliveryPending, "", any(nil)
			if f.claim != nil {
				status, owner, expires = herald.DeliveryDelivering, cl.c.Owner, f.claim.expiry
			}
			args = append(args, f.id, reqs[f.req].Event.TenantID, f.sub, reqs[f.req].Event.ID, status,
				at, f.trace, at, at, owner, expires)
		}
		insert, err := s.prepare(ctx, tx, deliveryInsert(k))
		if err != nil {
			return nil, err
		}
		res, err := insert.ExecContext(ctx, args...)
		if err != nil {
			return nil, err
		}
		// One statement's rows take consecutive seqs in VALUES order: seq is
		// AUTOINCREMENT, each row's is one past the largest ever, and this
		// connection is the only writer.
		last, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		for j := range k {
			fresh[done+j].seq = last - int64(k-1-j)
		}
		done += k
	}
	return fresh, nil
}

// eventInsert inserts k events in one statement.
func eventInsert(k int) string {
	return `INSERT INTO events (tenant_id, id, event_type, version, data, create_time, test, hash,
	deliveries, first_delivery, received_at) VALUES ` + values(11, k)
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
		var cl *claimer
		if claim != nil {
			cl = &claimer{s: s, ctx: ctx, tx: tx, now: now, c: claim}
		}
		var fresh []freshDelivery
		var err error
		if results, fresh, err = s.publish(ctx, tx, now, reqs, cl); err != nil || cl == nil {
			return err
		}
		lease, err = cl.finish(fresh, reqs, results)
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
	req            int       // index of its request
	claim          *subClaim // the claim that leases it, if any
}

func (s *Store) publish(ctx context.Context, tx *sql.Tx, now time.Time, reqs []herald.PublishRequest, cl *claimer) ([]herald.PublishResult, []freshDelivery, error) {
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
	fresh, err := s.fanOut(ctx, tx, reqs, plan.New, at, cl)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range fresh {
		r := &results[f.req]
		r.DeliveryIDs = append(r.DeliveryIDs, f.id)
	}

	// fanOut gave each event's deliveries consecutive seqs (the
	// first_delivery range, migration 0005).
	first := make(map[int]int64, len(plan.New))
	for _, f := range fresh {
		if _, ok := first[f.req]; !ok {
			first[f.req] = f.seq
		}
	}
	type stored struct {
		e     *herald.Event
		count int
		first any // seq of its first delivery; nil for none
	}
	var store []stored
	for _, i := range plan.New {
		req, r := &reqs[i], &results[i]
		r.Deliveries = len(r.DeliveryIDs)
		if req.Only != "" && r.Deliveries == 0 {
			r.Err = herald.ErrNotFound // not stored
			continue
		}
		ev := stored{e: &req.Event, count: r.Deliveries}
		if seq, ok := first[i]; ok {
			ev.first = seq
		}
		store = append(store, ev)
	}
	args := make([]any, 0, 11*maxChunk)
	for done := 0; done < len(store); {
		k := chunkOf(len(store) - done)
		args = args[:0]
		for _, ev := range store[done : done+k] {
			e := ev.e
			var data []byte
			if e.Data != nil {
				data = e.Data
			}
			args = append(args, e.TenantID, e.ID, e.EventType, e.Version, data, micro(e.CreateTime),
				boolInt(e.Test), e.Hash, ev.count, ev.first, at)
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

// existingEvents looks up which requested events are stored already
// (idempotent repeats or conflicts), up to 64 ids a query.
func (s *Store) existingEvents(ctx context.Context, tx *sql.Tx, reqs []herald.PublishRequest) (map[herald.EventKey]herald.StoredEvent, error) {
	byTenant := map[string][]string{}
	for _, r := range reqs {
		byTenant[r.Event.TenantID] = append(byTenant[r.Event.TenantID], r.Event.ID)
	}
	known := make(map[herald.EventKey]herald.StoredEvent, len(reqs))
	for tenant, ids := range byTenant {
		err := eachIDChunk(tenant, ids, func(args []any) error {
			q, err := s.prepare(ctx, tx, eventsByIDSQL(`id, hash, deliveries`, len(args)-1))
			if err != nil {
				return err
			}
			rows, err := q.QueryContext(ctx, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				var se herald.StoredEvent
				if err := rows.Scan(&id, &se.Hash, &se.Deliveries); err != nil {
					rows.Close()
					return err
				}
				known[herald.EventKey{TenantID: tenant, ID: id}] = se
			}
			return rows.Close()
		})
		if err != nil {
			return nil, err
		}
	}
	return known, nil
}

// eventsByIDSQL selects cols of a tenant's events among k ids: the
// arguments are the tenant and the ids (eachIDChunk).
func eventsByIDSQL(cols string, k int) string {
	return `SELECT ` + cols + ` FROM events WHERE tenant_id = ? AND id IN (?` + strings.Repeat(",?", k-1) + `)`
}

// eachIDChunk calls fn with the arguments of eventsByIDSQL (tenant, then
// ids) for each run of ids, chunkOf sizes at a time, so that at most seven
// statement texts are prepared. args is reused between calls.
func eachIDChunk(tenant string, ids []string, fn func(args []any) error) error {
	args := make([]any, 0, 1+min(len(ids), maxChunk))
	for len(ids) > 0 {
		k := chunkOf(len(ids))
		args = append(args[:0], tenant)
		for _, id := range ids[:k] {
			args = append(args, id)
		}
		ids = ids[k:]
		if err := fn(args); err != nil {
			return err
		}
	}
	return nil
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
	out := map[string][]byte{}
	err := eachIDChunk(tenantID, ids, func(args []any) error {
		q, err := s.readStmt(ctx, eventsByIDSQL(`id, hash`, len(args)-1))
		if err != nil {
			return err
		}
		rows, err := q.QueryContext(ctx, args...)
		if err != nil {
			return s.classify(err)
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
		return s.classify(rows.Err())
	})
	if err != nil {
		return nil, fmt.Errorf("event hashes: %w", err)
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

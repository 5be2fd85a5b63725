package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/storetest"
	"github.com/jackc/pgx/v5"
)

// BenchmarkEventPublish publishes batches of 1000 events, one transaction
// (and one commit) each, to one matching subscription, alone and beside
// 10,000 subscriptions of the same tenant that do not match. It reports
// events/s.
func BenchmarkEventPublish(b *testing.B) {
	for _, idle := range []int{0, 10000} {
		b.Run(fmt.Sprintf("idle-subscriptions=%d", idle), func(b *testing.B) {
			st := newStore(b)
			subs := []herald.Subscription{sub(herald.DefaultTenant, "job.*")}
			for range idle {
				subs = append(subs, sub(herald.DefaultTenant, "other.*", "other.exact"))
			}
			mustCreate(b, st, subs...)
			const batch = 1000
			reqs := make([]herald.PublishRequest, batch)
			for b.Loop() {
				b.StopTimer()
				for i := range reqs {
					reqs[i] = event(herald.DefaultTenant, "job.status")
				}
				b.StartTimer()
				res := mustPublish(b, st, t0, reqs...)
				if res[batch-1].Deliveries != 1 {
					b.Fatalf("deliveries = %d", res[batch-1].Deliveries)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// deadBacklog adds n pending deliveries (ids dlv_dead1...) of a new
// subscription "dead", due an hour after t0 and later, straight in SQL
// (publishing them would take minutes), analyzes the tables, and returns a
// healthy subscription "ok" and the dead one.
func deadBacklog(tb testing.TB, st *Store, n int) (ok, dead herald.Subscription) {
	tb.Helper()
	dead, ok = sub(herald.DefaultTenant, "dead"), sub(herald.DefaultTenant, "ok")
	mustCreate(tb, st, dead, ok)
	ev := mustPublish(tb, st, t0, event(herald.DefaultTenant, "nobody"))[0]
	err := st.withConn(context.Background(), func(c *pgx.Conn) error {
		if _, err := c.Exec(context.Background(), `INSERT INTO deliveries (id, tenant_id, subscription_id, event_id,
				status, next_attempt_at, trace_id, created_at, updated_at)
			SELECT 'dlv_dead' || i, 'default', $1, $2, 'pending', $3::timestamptz + i * interval '1 millisecond',
				'trace', $4, $4
			FROM generate_series(1, $5::int) AS i`,
			dead.ID, ev.EventID, t0.Add(time.Hour), t0, n); err != nil {
			return err
		}
		_, err := c.Exec(context.Background(), analyzeAllSQL)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return ok, dead
}

// BenchmarkDeliveryLeaseDeadBacklog leases (and records) the work of a
// healthy subscription while a dead one holds a million pending deliveries
// scheduled later: leasing must not scan them.
func BenchmarkDeliveryLeaseDeadBacklog(b *testing.B) {
	st := newStore(b)
	deadBacklog(b, st, 1_000_000)
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		storetest.PublishLeaseRecord(b, st, herald.DefaultTenant, now)
	}
}

// BenchmarkDeliveryLeaseBacklog leases and records the work of one
// subscription that has a million pending deliveries due at once (a burst
// its endpoint cannot keep up with): each lease takes its lane's allowance
// from the head of the due queue without reading the rest.
func BenchmarkDeliveryLeaseBacklog(b *testing.B) {
	st := newStore(b)
	_, busy := deadBacklog(b, st, 1_000_000)
	ctx := context.Background()
	// Make the backlog due at t0 + 1h + i ms, i.e. all due at the lease time.
	now := t0.Add(2 * time.Hour)
	for b.Loop() {
		now = now.Add(time.Millisecond)
		l, err := st.DeliveryLease(ctx, herald.LeaseParams{Owner: "w", Now: now, Margin: time.Second, Limit: 100})
		if err != nil {
			b.Fatal(err)
		}
		if len(l.Deliveries) != busy.Delivery.MaxInFlight {
			b.Fatalf("leased %d, want %d", len(l.Deliveries), busy.Delivery.MaxInFlight)
		}
		outs := make([]herald.Outcome, len(l.Deliveries))
		for i, ld := range l.Deliveries {
			outs[i] = outcome(ld, "w", herald.DeliverySucceeded, now)
		}
		mustRecord(b, st, outs...)
	}
}

// BenchmarkDeliveryLeaseManySubscriptions leases (and records) the work of
// one subscription among 10,000 active ones with nothing due: a lease must
// not cost a probe per idle subscription.
func BenchmarkDeliveryLeaseManySubscriptions(b *testing.B) {
	st := newStore(b)
	idle := make([]herald.Subscription, 10000)
	for i := range idle {
		idle[i] = sub(herald.DefaultTenant, "idle")
	}
	mustCreate(b, st, append(idle, sub(herald.DefaultTenant, "ok"))...)
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		storetest.PublishLeaseRecord(b, st, herald.DefaultTenant, now)
	}
}

package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/storetest"
)

// BenchmarkEventPublish publishes groups of 1, 16 and 1000 events, one
// transaction (and one fsync) each, to one matching subscription. It reports
// events/s; the group of one shows the cost of a commit itself.
func BenchmarkEventPublish(b *testing.B) {
	for _, batch := range []int{1, 16, 1000} {
		b.Run(fmt.Sprintf("group=%d", batch), func(b *testing.B) {
			st := newStore(b)
			mustCreate(b, st, sub("t1", "job.*"))
			benchPublish(b, st, batch)
		})
	}
	// Fan-out looks up the patterns an event matches; the tenant's other
	// subscriptions must cost nothing.
	b.Run("idle-subscriptions=10000,group=1000", func(b *testing.B) {
		st := newStore(b)
		idle := make([]herald.Subscription, 10000)
		for i := range idle {
			idle[i] = sub("t1", "other.*", "other.exact")
		}
		mustCreate(b, st, append(idle, sub("t1", "job.*"))...)
		benchPublish(b, st, 1000)
	})
}

// benchPublish publishes groups of batch events of type job.status, each to
// one subscription.
func benchPublish(b *testing.B, st *Store, batch int) {
	b.Helper()
	benchGroups(b, batch, func(reqs []herald.PublishRequest) {
		if res := mustPublish(b, st, t0, reqs...); res[batch-1].Deliveries != 1 {
			b.Fatalf("deliveries = %d", res[batch-1].Deliveries)
		}
	})
}

// benchGroups times publish on groups of batch new events of type
// job.status of tenant t1, and reports events/s.
func benchGroups(b *testing.B, batch int, publish func([]herald.PublishRequest)) {
	b.Helper()
	reqs := make([]herald.PublishRequest, batch)
	for b.Loop() {
		b.StopTimer()
		for i := range reqs {
			reqs[i] = event("t1", "job.status")
		}
		b.StartTimer()
		publish(reqs)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDeliveryLeaseDeadBacklog leases (and records) the work of a
// healthy subscription while a dead one holds a million pending deliveries
// scheduled later: leasing must not scan them.
func BenchmarkDeliveryLeaseDeadBacklog(b *testing.B) {
	st := newStore(b)
	dead, healthy := sub("t1", "dead"), sub("t1", "ok")
	mustCreate(b, st, dead, healthy)
	ev := mustPublish(b, st, t0, event("t1", "nobody"))[0]
	// A million rows straight in SQL: publishing them would take minutes.
	if _, err := st.w.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
		INSERT INTO deliveries (id, tenant_id, subscription_id, event_id, status, next_attempt_at, trace_id,
			created_at, updated_at)
		SELECT 'dlv_dead' || i, 't1', ?, ?, 'pending', ? + i, 'trace', ?, ?
		FROM n`, dead.ID, ev.EventID, t0.Add(time.Hour).UnixMicro(), t0.UnixMicro(), t0.UnixMicro()); err != nil {
		b.Fatal(err)
	}
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		storetest.PublishLeaseRecord(b, st, "t1", now)
	}
}

// BenchmarkLeaseRecord runs the dispatcher's store cycle for 1,000 due
// deliveries of one subscription (in-flight cap 128): lease until nothing is
// left, and record each leased page as succeeded. It reports deliveries/s of
// store work alone, the upper bound the store puts on delivery throughput.
func BenchmarkLeaseRecord(b *testing.B) {
	st := newStore(b)
	s := sub("t1", "job.*")
	s.Delivery.MaxInFlight = 128
	s.Delivery.MaxRPS = 100000
	mustCreate(b, st, s)
	const n = 1000
	reqs := make([]herald.PublishRequest, n)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for i := range reqs {
			reqs[i] = event("t1", "job.status")
		}
		mustPublish(b, st, t0, reqs...)
		b.StartTimer()
		for left := n; left > 0; {
			l := mustLease(b, st, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Minute, Limit: 1000})
			if len(l.Deliveries) == 0 {
				b.Fatalf("nothing leased with %d left", left)
			}
			outs := make([]herald.Outcome, len(l.Deliveries))
			for i, ld := range l.Deliveries {
				outs[i] = outcome(ld, "w", herald.DeliverySucceeded, t0)
			}
			mustRecord(b, st, outs...)
			left -= len(l.Deliveries)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkDeliveryLeaseManySubscriptions leases (and records) the work of
// one subscription among 10,000 active ones with nothing due: a lease must
// not cost a probe per idle subscription.
func BenchmarkDeliveryLeaseManySubscriptions(b *testing.B) {
	st := newStore(b)
	healthy := sub("t1", "ok")
	mustCreate(b, st, healthy)
	idle := make([]herald.Subscription, 10000)
	for i := range idle {
		idle[i] = sub("t1", "idle")
	}
	mustCreate(b, st, idle...)
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		storetest.PublishLeaseRecord(b, st, "t1", now)
	}
}

// BenchmarkEventPublishClaim publishes groups whose deliveries the
// publishing process claims (its lane has room for them all): the store's
// side of a steady stream on SQLite. 13 is a group the 32-client run forms
// that is no chunk size.
func BenchmarkEventPublishClaim(b *testing.B) {
	for _, batch := range []int{13, 16, 500} {
		b.Run(fmt.Sprintf("group=%d", batch), func(b *testing.B) {
			st := newStore(b)
			mustCreate(b, st, sub("t1", "job.*"))
			claim := herald.Claim{Owner: "w", Margin: time.Minute,
				Room: func(string) (int, bool) { return 1 << 20, true }}
			benchGroups(b, batch, func(reqs []herald.PublishRequest) {
				_, l, err := st.EventPublishClaim(context.Background(), t0, reqs, claim)
				if err != nil || len(l.Deliveries) != batch {
					b.Fatalf("claimed %d of %d: %v", len(l.Deliveries), batch, err)
				}
			})
		})
	}
}

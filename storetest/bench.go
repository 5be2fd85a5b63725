package storetest

import (
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// PublishLeaseRecord is one turn of the dispatcher's store cycle, for the
// stores' benchmarks: it publishes 10 events of type "ok" for tenant (not
// timed), then leases them, asks for the next due time and records them as
// succeeded. Exactly those 10 must be leased.
func PublishLeaseRecord(b *testing.B, s herald.Store, tenant string, now time.Time) {
	b.Helper()
	b.StopTimer()
	publishN(b, s, now, tenant, "ok", 10)
	b.StartTimer()
	// DeliveryLease itself, not lease: its checks would be timed too.
	l, err := s.DeliveryLease(b.Context(), herald.LeaseParams{Owner: "w", Now: now, Margin: time.Second, Limit: 100})
	must(b, err, "lease")
	if len(l.Deliveries) != 10 {
		b.Fatalf("leased %d, want 10", len(l.Deliveries))
	}
	if _, _, err := s.DeliveryNextDue(b.Context()); err != nil {
		b.Fatal(err)
	}
	outs := make([]herald.Outcome, len(l.Deliveries))
	for i, ld := range l.Deliveries {
		outs[i] = succeed(ld.Delivery.ID, "w", ld.Delivery.Attempts+1, now)
	}
	record(b, s, outs...)
}

package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func maintenanceCases() []testCase {
	return []testCase{
		{"PendingCountAndNextDue", func(t *testing.T, s herald.Store) {
			// While deliveries are delivering, a store may also report
			// their lease expiry as due (DeliveryLease counts an expired
			// lease as due); the one here ends at +10s + 5s + 10s.
			leaseEnd := at(25 * time.Second)
			check := func(step string, wantCount int64, wantDue time.Time, delivering bool) {
				t.Helper()
				n, err := s.DeliveryPendingCount(t.Context())
				must(t, err, "pending count")
				if n != wantCount {
					t.Errorf("%s: pending count %d, want %d", step, n, wantCount)
				}
				due, ok, err := s.DeliveryNextDue(t.Context())
				must(t, err, "next due")
				if delivering && ok && due.Equal(leaseEnd) && (wantDue.IsZero() || leaseEnd.Before(wantDue)) {
					return
				}
				if ok != !wantDue.IsZero() || (ok && !due.Equal(wantDue)) {
					t.Errorf("%s: next due %v (%v), want %v (%v)", step, due, ok, wantDue, !wantDue.IsZero())
				}
			}
			check("empty store", 0, time.Time{}, false)
			newSub(t, s, herald.DefaultTenant, "a")
			later := publishOne(t, s, at(5*time.Second), herald.DefaultTenant, "a")
			first := publishOne(t, s, at(0), herald.DefaultTenant, "a")
			check("two pending", 2, at(0), false)
			newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Status = herald.StatusPaused }, "p")
			publishOne(t, s, at(-time.Hour), herald.DefaultTenant, "p")
			d := newSub(t, s, herald.DefaultTenant, "d")
			publishOne(t, s, at(-2*time.Hour), herald.DefaultTenant, "d")
			setStatus(t, s, d, herald.StatusDisabled)
			check("with paused and disabled", 4, at(0), false)
			diff(t, "leased", sorted([]string{first, later}), leasedIDs(lease(t, s, params("w", at(10*time.Second)))))
			check("both delivering", 4, time.Time{}, true)
			record(t, s, succeed(first, "w", 1, at(11*time.Second)))
			check("one succeeded", 3, time.Time{}, true)
			record(t, s, retryAt(later, "w", 1, at(11*time.Second), at(time.Hour)))
			check("one to retry", 3, at(time.Hour), false)
		}},
		{"Purge", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "s.*")
			newSub(t, s, herald.DefaultTenant, "s.both")
			gone := newSub(t, s, herald.DefaultTenant, "c.x")
			ev := func(typ string) herald.Event { return newEvent(herald.DefaultTenant, typ) }
			e1, e2, e3, e4, e6, e7, e8 := ev("s.x"), ev("s.x"), ev("s.x"), ev("none"), ev("s.x"), ev("s.both"), ev("c.x")
			res := publish(t, s, at(0), e1, e2, e3, e4, e6, e7, e8)
			e5 := ev("none")
			publish(t, s, at(2*time.Hour), e5)
			d1, d2, d3, d6, d8 := res[0].DeliveryIDs[0], res[1].DeliveryIDs[0], res[2].DeliveryIDs[0], res[4].DeliveryIDs[0], res[6].DeliveryIDs[0]
			if len(res[5].DeliveryIDs) != 2 {
				t.Fatalf("e7: %d deliveries, want 2", len(res[5].DeliveryIDs))
			}
			d7a, d7b := res[5].DeliveryIDs[0], res[5].DeliveryIDs[1]
			lease(t, s, params("w", at(0)))
			record(t, s,
				succeed(d1, "w", 1, at(time.Second)),                     // old: purged
				retryAt(d2, "w", 1, at(time.Second), at(10*time.Hour)),   // pending: kept
				retryAt(d3, "w", 1, at(time.Second), at(2*time.Hour)),    // fails later: kept
				failForGood(d6, "w", 1, at(2*time.Second)),               // old: purged
				succeed(d7a, "w", 1, at(time.Second)),                    // old: purged
				retryAt(d7b, "w", 1, at(time.Second), at(100*time.Hour)), // pending: keeps e7
			)
			must(t, s.SubscriptionDelete(t.Context(), herald.DefaultTenant, gone.ID, at(3*time.Second)), "delete") // d8 cancelled: purged
			diff(t, "leased at +2h", []string{d3}, leasedIDs(lease(t, s, params("w", at(2*time.Hour)))))
			record(t, s, failForGood(d3, "w", 2, at(2*time.Hour+time.Second)))

			n, err := s.Purge(t.Context(), at(time.Hour), 100)
			must(t, err, "purge")
			if n != 4 {
				t.Errorf("purge deleted %d deliveries, want 4", n)
			}
			for _, id := range []string{d1, d6, d7a, d8} {
				_, _, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, id)
				wantErr(t, err, herald.ErrNotFound, "get purged delivery")
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, d2, d7b)
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryFailed, d3)
			for _, e := range []herald.Event{e1, e4, e6, e8} {
				_, err := s.EventGet(t.Context(), herald.DefaultTenant, e.ID)
				wantErr(t, err, herald.ErrNotFound, "get purged event "+e.EventType)
			}
			for _, e := range []herald.Event{e2, e3, e5, e7} {
				_, err := s.EventGet(t.Context(), herald.DefaultTenant, e.ID)
				must(t, err, "get kept event "+e.EventType)
			}
			n, err = s.Purge(t.Context(), at(time.Hour), 100)
			must(t, err, "purge again")
			if n != 0 {
				t.Errorf("second purge deleted %d, want 0", n)
			}
			// Everything final is old at +1000h; pending ones stay.
			n, err = s.Purge(t.Context(), at(1000*time.Hour), 100)
			must(t, err, "purge later")
			if n != 1 {
				t.Errorf("late purge deleted %d, want 1 (d3)", n)
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, d2, d7b)
		}},
		{"PurgeLimit", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 5)
			leaseAndRecord(t, s, "w", at(0), func(id string) herald.Outcome { return succeed(id, "w", 1, at(time.Second)) })
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, ids...)
			for i, want := range []int{2, 2, 1, 0} {
				n, err := s.Purge(t.Context(), at(time.Hour), 2)
				must(t, err, "purge")
				if n != want {
					t.Errorf("purge call %d deleted %d, want %d", i, n, want)
				}
			}
			evs, _, err := s.EventList(t.Context(), herald.DefaultTenant, herald.EventFilter{})
			must(t, err, "list events")
			if len(evs) != 0 {
				t.Errorf("%d events left after purging all their deliveries", len(evs))
			}
			ds, _, err := s.DeliveryList(t.Context(), herald.DefaultTenant, herald.DeliveryFilter{})
			must(t, err, "list deliveries")
			if len(ds) != 0 {
				t.Errorf("%d deliveries left: %v", len(ds), fmt.Sprint(deliveryIDs(ds)))
			}
		}},
	}
}

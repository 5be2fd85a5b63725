package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// leaseAll leases for owner at now until a lease comes back empty, and
// returns every delivery id leased, sorted.
func leaseAll(tb testing.TB, s herald.Store, p herald.LeaseParams) []string {
	tb.Helper()
	var all []string
	for range maxPages {
		l := lease(tb, s, p)
		if len(l.Deliveries) == 0 {
			return sorted(all)
		}
		all = append(all, leasedIDs(l)...)
	}
	tb.Fatalf("leasing does not run dry")
	return nil
}

func leaseCases() []testCase {
	return []testCase{
		{"DrainedLaneHandsOff", func(t *testing.T, s herald.Store) {
			// w1 drains its lane at +1s; another owner may take the lane
			// LaneHandoff later, not before, and not while w1 still has work.
			newSub(t, s, herald.DefaultTenant, "*")
			first := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 2)
			if got := leasedIDs(lease(t, s, params("w1", at(0)))); len(got) != 2 {
				t.Fatalf("w1 leased %v, want both", got)
			}
			record(t, s, succeed(first[0], "w1", 1, at(time.Second)))
			publishN(t, s, at(time.Second), herald.DefaultTenant, "job.status", 1)
			if got := leasedIDs(lease(t, s, params("w2", at(3*time.Second)))); len(got) != 0 {
				t.Fatalf("w2 leased %v while w1 still had work in the lane", got)
			}
			record(t, s, succeed(first[1], "w1", 1, at(4*time.Second)))
			if got := leasedIDs(lease(t, s, params("w2", at(4*time.Second+herald.LaneHandoff/2)))); len(got) != 0 {
				t.Fatalf("w2 leased %v within LaneHandoff of the drain", got)
			}
			if got := leasedIDs(lease(t, s, params("w2", at(4*time.Second+herald.LaneHandoff+time.Millisecond)))); len(got) != 1 {
				t.Fatalf("w2 leased %v after LaneHandoff, want the new delivery", got)
			}
		}},
		{"OnlyDue", func(t *testing.T, s herald.Store) {
			sub := createSub(t, s, fullSubActive(herald.DefaultTenant))
			ev := newEvent(herald.DefaultTenant, "job.status")
			now := publish(t, s, at(0), ev)[0].DeliveryIDs
			// Its lease lasts until +0 + margin 5s + timeout 2.5s.
			later := publishN(t, s, at(5*time.Second), herald.DefaultTenant, "job.status", 1)

			l := lease(t, s, params("w", at(0)))
			diff(t, "leased at +0", now, leasedIDs(l))
			if len(l.Deliveries) == 1 {
				want := ev
				want.Deliveries, want.ReceivedAt = 1, at(0)
				diff(t, "leased event", want, l.Deliveries[0].Event)
				d := l.Deliveries[0].Delivery
				if d.SubscriptionID != sub.ID || d.EventID != ev.ID || d.TenantID != herald.DefaultTenant {
					t.Errorf("leased delivery %+v", d)
				}
			}
			diff(t, "leased subscriptions (secrets opened)", map[string]herald.Subscription{sub.ID: sub}, l.Subscriptions)
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryDelivering, now...)
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, later...)

			if l := lease(t, s, params("w", at(5*time.Second-time.Microsecond))); len(l.Deliveries) != 0 {
				t.Errorf("leased %v before it is due", leasedIDs(l))
			}
			diff(t, "leased at +5s", later, leasedIDs(lease(t, s, params("w", at(5*time.Second)))))
		}},
		{"LaneOwned", func(t *testing.T, s herald.Store) {
			a := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Delivery.MaxInFlight = 1 }, "a")
			capA := herald.LaneCap(a.Delivery)
			da := publishN(t, s, at(0), herald.DefaultTenant, "a", capA+1)
			first := lease(t, s, params("w1", at(0)))
			if n := perSub(first)[a.ID]; n != capA {
				t.Fatalf("w1 leased %d of a's, want its cap %d", n, capA)
			}
			// w2 gets nothing of a's lane while w1 holds it, but other
			// lanes are free.
			b := newSub(t, s, herald.DefaultTenant, "b")
			db := publishN(t, s, at(0), herald.DefaultTenant, "b", 1)
			l := lease(t, s, params("w2", at(time.Second)))
			diff(t, "w2's lease", map[string]int{b.ID: 1}, perSub(l))
			diff(t, "w2's delivery", db, leasedIDs(l))
			if n := len(lease(t, s, params("w1", at(time.Second))).Deliveries); n != 0 {
				t.Errorf("w1 leased %d more over its cap", n)
			}
			record(t, s, succeed(first.Deliveries[0].Delivery.ID, "w1", 1, at(2*time.Second)))
			if n := len(lease(t, s, params("w2", at(2*time.Second))).Deliveries); n != 0 {
				t.Errorf("w2 leased %d from w1's lane", n)
			}
			more := lease(t, s, params("w1", at(2*time.Second)))
			if n := perSub(more)[a.ID]; n != 1 {
				t.Errorf("after one success w1 leased %d more, want 1", n)
			}
			taken := slices.Concat(leasedIDs(first), leasedIDs(more))
			for _, id := range da {
				if !slices.Contains(taken, id) {
					wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, id)
				}
			}
		}},
		{"LeaseExpiry", func(t *testing.T, s herald.Store) {
			newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Delivery.Timeout = 10 * time.Second }, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 2)
			diff(t, "w1's lease", sorted(ids), leasedIDs(lease(t, s, params("w1", at(0)))))
			// Held until +0 + margin 5s + timeout 10s.
			if l := lease(t, s, params("w2", at(14*time.Second))); len(l.Deliveries) != 0 {
				t.Errorf("w2 leased %v before w1's lease expired", leasedIDs(l))
			}
			more := publishN(t, s, at(time.Second), herald.DefaultTenant, "job.status", 1)
			if l := lease(t, s, params("w2", at(14*time.Second))); len(l.Deliveries) != 0 {
				t.Errorf("w2 leased %v from w1's lane before it expired", leasedIDs(l))
			}
			got := leasedIDs(lease(t, s, params("w2", at(16*time.Second))))
			diff(t, "w2's lease after expiry", sorted(slices.Concat(ids, more)), got)
			// w1's late outcome is dropped; w2's counts.
			record(t, s, succeed(ids[0], "w1", 1, at(17*time.Second)))
			d, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, ids[0])
			must(t, err, "get")
			if d.Status != herald.DeliveryDelivering || len(attempts) != 0 || d.Attempts != 0 {
				t.Errorf("after the old owner's outcome: status %q, %d attempts; want it ignored", d.Status, len(attempts))
			}
			record(t, s, succeed(ids[0], "w2", 1, at(18*time.Second)))
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, ids[0])
		}},
		{"PerSubscriptionCap", func(t *testing.T, s herald.Store) {
			for _, tc := range []struct {
				inFlight, rps, batch, want int
			}{
				{3, 300, 1, 3 * herald.LeasePrefetch},  // MaxInFlight × LeasePrefetch
				{16, 1, 1, 10},                         // MaxRPS*10
				{2, 300, 3, 6 * herald.LeasePrefetch},  // times BatchMaxEvents
				{50, 2, 2, 40},                         // MaxRPS*10 times BatchMaxEvents
				{1, 1000, 1, 1 * herald.LeasePrefetch}, // one in flight, a few queued
			} {
				typ := fmt.Sprintf("cap.%d.%d.%d", tc.inFlight, tc.rps, tc.batch)
				t.Run(typ, func(t *testing.T) {
					sub := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) {
						s.Delivery.MaxInFlight, s.Delivery.MaxRPS, s.Delivery.BatchMaxEvents = tc.inFlight, tc.rps, tc.batch
					}, typ)
					publishN(t, s, at(0), herald.DefaultTenant, typ, tc.want+5)
					p := params("w", at(0))
					p.Limit = 200
					if n := perSub(lease(t, s, p))[sub.ID]; n != tc.want {
						t.Errorf("leased %d, want %d", n, tc.want)
					}
					if n := perSub(lease(t, s, p))[sub.ID]; n != 0 {
						t.Errorf("leased %d more while %d are delivering", n, tc.want)
					}
				})
			}
		}},
		{"Ordered", func(t *testing.T, s herald.Store) {
			ord := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Ordered = true }, "o")
			free := newSub(t, s, herald.DefaultTenant, "f")
			// The second call has an earlier now: the head is the lowest
			// Seq, not the earliest due.
			d := []string{publishOne(t, s, at(time.Second), herald.DefaultTenant, "o")}
			d = append(d, publishOne(t, s, at(0), herald.DefaultTenant, "o"))
			d = append(d, publishOne(t, s, at(0), herald.DefaultTenant, "o"))
			fs := publishN(t, s, at(time.Second), herald.DefaultTenant, "f", 3)
			step := func(now time.Time, want ...string) {
				t.Helper()
				l := lease(t, s, params("w", now))
				var got []string
				for _, ld := range l.Deliveries {
					if ld.Delivery.SubscriptionID == ord.ID {
						got = append(got, ld.Delivery.ID)
					}
				}
				diff(t, fmt.Sprint("ordered lease at ", now.Sub(at(0))), sorted(want), sorted(got))
			}
			step(at(0)) // the head is not due yet
			l := lease(t, s, params("w", at(time.Second)))
			diff(t, "unordered subscription's lease", map[string]int{ord.ID: 1, free.ID: 3}, perSub(l))
			if len(fs) != 3 {
				t.Fatalf("published %d to the unordered subscription", len(fs))
			}
			if got := leasedIDs(l); !slices.Contains(got, d[0]) {
				t.Fatalf("ordered head %s not leased; got %v", d[0], got)
			}
			step(at(time.Second)) // the head is delivering
			record(t, s, retryAt(d[0], "w", 1, at(2*time.Second), at(time.Minute)))
			step(at(30 * time.Second)) // the head waits for its retry
			step(at(time.Minute), d[0])
			record(t, s, failForGood(d[0], "w", 2, at(time.Minute+time.Second)))
			step(at(time.Minute+time.Second), d[1])
			step(at(time.Minute + time.Second))
			record(t, s, succeed(d[1], "w", 1, at(time.Minute+2*time.Second)))
			step(at(time.Minute+2*time.Second), d[2])
		}},
		{"PausedAndDisabledNotLeased", func(t *testing.T, s herald.Store) {
			p := newSub(t, s, herald.DefaultTenant, "p")
			d := newSub(t, s, herald.DefaultTenant, "d")
			dp := publishN(t, s, at(0), herald.DefaultTenant, "p", 2)
			dd := publishN(t, s, at(0), herald.DefaultTenant, "d", 2)
			p = setStatus(t, s, p, herald.StatusPaused)
			d = setStatus(t, s, d, herald.StatusDisabled)
			if l := lease(t, s, params("w", at(time.Minute))); len(l.Deliveries) != 0 {
				t.Fatalf("leased %v of paused and disabled subscriptions", perSub(l))
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, slices.Concat(dp, dd)...)
			setStatus(t, s, p, herald.StatusActive)
			diff(t, "leased after resuming", sorted(dp), leasedIDs(lease(t, s, params("w", at(time.Minute)))))
			setStatus(t, s, d, herald.StatusActive)
			diff(t, "leased after enabling", sorted(dd), leasedIDs(lease(t, s, params("w", at(time.Minute)))))
		}},
		{"Exclude", func(t *testing.T, s herald.Store) {
			x := newSub(t, s, herald.DefaultTenant, "x")
			y := newSub(t, s, herald.DefaultTenant, "y")
			dx := publishN(t, s, at(0), herald.DefaultTenant, "x", 2)
			dy := publishN(t, s, at(0), herald.DefaultTenant, "y", 2)
			p := params("w", at(0))
			p.Exclude = []string{x.ID, herald.NewID(herald.PrefixSubscription)}
			diff(t, "lease excluding x", sorted(dy), leasedIDs(lease(t, s, p)))
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, dx...)
			p.Exclude = []string{y.ID}
			diff(t, "lease excluding y", sorted(dx), leasedIDs(lease(t, s, p)))
		}},
		{"Limit", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 10)
			p := params("w", at(0))
			p.Limit = 4
			n := len(lease(t, s, p).Deliveries)
			if n == 0 || n > 4 {
				t.Errorf("lease with limit 4: %d deliveries", n)
			}
			// The rest come in later leases of at most 4 each.
			if rest := leaseAll(t, s, p); n+len(rest) != len(ids) {
				t.Errorf("leased %d then %d, want %d in all", n, len(rest), len(ids))
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryDelivering, ids...)
		}},
		{"Fairness", func(t *testing.T, s herald.Store) {
			for _, tc := range []struct {
				name     string
				inFlight int
			}{{"capped lanes", 16}, {"wide lanes", 1000}} {
				t.Run(tc.name, func(t *testing.T) {
					typ := fmt.Sprint("fair.", tc.inFlight)
					mod := func(s *herald.Subscription) { s.Delivery.MaxInFlight = tc.inFlight }
					a := newSubWith(t, s, herald.DefaultTenant, mod, typ+".a")
					b := newSubWith(t, s, herald.DefaultTenant, mod, typ+".b")
					// a's 500 are older than b's 5.
					publishN(t, s, at(0), herald.DefaultTenant, typ+".a", 500)
					publishN(t, s, at(time.Second), herald.DefaultTenant, typ+".b", 5)
					p := params("w-"+typ, at(time.Minute))
					p.Limit = 100
					n := perSub(lease(t, s, p))
					if n[a.ID] == 0 || n[b.ID] == 0 {
						t.Errorf("lease split %d to a (500 due) and %d to b (5 due); want both to get work", n[a.ID], n[b.ID])
					}
					if c := herald.LaneCap(a.Delivery); n[a.ID] > c {
						t.Errorf("a got %d, over its cap %d", n[a.ID], c)
					}
				})
			}
		}},
		{"BatchLeasedTogether", func(t *testing.T, s herald.Store) {
			sub := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) {
				s.Delivery.BatchMaxEvents, s.Delivery.MaxInFlight = 3, 1
			}, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 3)
			diff(t, "first lease", sorted(ids), leasedIDs(lease(t, s, params("w1", at(0)))))
			var outs []herald.Outcome
			for _, id := range ids {
				o := retryAt(id, "w1", 1, at(time.Second), at(time.Minute))
				o.BatchID = "bat_storetest"
				outs = append(outs, o)
			}
			record(t, s, outs...)
			for _, id := range ids {
				if d := getDelivery(t, s, herald.DefaultTenant, id); d.BatchID != "bat_storetest" || d.Status != herald.DeliveryPending {
					t.Errorf("batch member %s: BatchID %q status %q", id, d.BatchID, d.Status)
				}
			}
			// Limit 1 cannot split the batch: all three or none.
			p := params("w2", at(time.Minute))
			p.Limit = 1
			l := lease(t, s, p)
			if len(l.Deliveries) == 0 {
				p.Limit = leaseLimit
				l = lease(t, s, p)
			}
			diff(t, "batch leased", sorted(ids), leasedIDs(l))
			for _, ld := range l.Deliveries {
				if ld.Delivery.BatchID != "bat_storetest" {
					t.Errorf("leased batch member %s with BatchID %q", ld.Delivery.ID, ld.Delivery.BatchID)
				}
			}
			_ = sub
		}},
		{"ConcurrentLeases", func(t *testing.T, s herald.Store) {
			const subs, each, owners = 8, 5, 4
			for i := range subs {
				newSub(t, s, herald.DefaultTenant, fmt.Sprint("c", i))
				publishN(t, s, at(0), herald.DefaultTenant, fmt.Sprint("c", i), each)
			}
			leases := make([]herald.Lease, owners)
			errs := make([]error, owners)
			var wg sync.WaitGroup
			for w := range owners {
				wg.Go(func() {
					leases[w], errs[w] = s.DeliveryLease(t.Context(), params(fmt.Sprint("owner", w), at(0)))
				})
			}
			wg.Wait()
			byDelivery := map[string]int{}
			bySub := map[string]int{}
			for w, l := range leases {
				must(t, errs[w], "concurrent lease")
				for _, ld := range l.Deliveries {
					if other, ok := byDelivery[ld.Delivery.ID]; ok {
						t.Errorf("delivery %s leased by owner%d and owner%d", ld.Delivery.ID, other, w)
					}
					byDelivery[ld.Delivery.ID] = w
					if other, ok := bySub[ld.Delivery.SubscriptionID]; ok && other != w {
						t.Errorf("lane %s held by owner%d and owner%d", ld.Delivery.SubscriptionID, other, w)
					}
					bySub[ld.Delivery.SubscriptionID] = w
				}
			}
			if len(byDelivery) == 0 {
				t.Errorf("no owner leased anything")
			}
		}},
	}
}

// fullSubActive is fullSub made deliverable: active and live.
func fullSubActive(tenant string) herald.Subscription {
	s := fullSub(tenant)
	s.Status, s.DisabledReason, s.Mode, s.Ordered = herald.StatusActive, "", herald.ModeLive, false
	return s
}

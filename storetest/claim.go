package storetest

import (
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// claimPublish publishes evs through EventPublishClaim, or skips tb when the
// store is no herald.Claimer.
func claimPublish(tb testing.TB, s herald.Store, now time.Time, c herald.Claim, evs ...herald.Event) ([]herald.PublishResult, herald.Lease) {
	tb.Helper()
	cl, ok := s.(herald.Claimer)
	if !ok {
		tb.Skip("the store does not claim deliveries while publishing")
	}
	reqs := make([]herald.PublishRequest, len(evs))
	for i, ev := range evs {
		reqs[i] = herald.PublishRequest{Event: ev}
	}
	res, l, err := cl.EventPublishClaim(tb.Context(), now, reqs, c)
	must(tb, err, "publish with claim")
	for i, r := range res {
		if r.Err != nil {
			tb.Fatalf("publish %s: result error %v", evs[i].ID, r.Err)
		}
	}
	return res, l
}

func claim(owner string, room map[string]int) herald.Claim {
	c := herald.Claim{Owner: owner, Margin: margin}
	if room != nil {
		c.Room = func(id string) (int, bool) { n, ok := room[id]; return n, ok }
	}
	return c
}

func claimCases() []testCase {
	return []testCase{
		{"LeasesWhatALeaseWould", func(t *testing.T, s herald.Store) {
			sub := createSub(t, s, fullSubActive(herald.DefaultTenant))
			ev := newEvent(herald.DefaultTenant, "job.status")
			res, l := claimPublish(t, s, at(0), claim("w", nil), ev)
			diff(t, "claimed", res[0].DeliveryIDs, leasedIDs(l))
			diff(t, "claimed subscriptions (secrets opened)", map[string]herald.Subscription{sub.ID: sub}, l.Subscriptions)
			if len(l.Deliveries) != 1 {
				t.Fatalf("claimed %d deliveries, want 1", len(l.Deliveries))
			}
			want := ev
			want.Deliveries, want.ReceivedAt = 1, at(0)
			diff(t, "claimed event", want, l.Deliveries[0].Event)
			got := l.Deliveries[0].Delivery
			stored := getDelivery(t, s, herald.DefaultTenant, got.ID)
			diff(t, "claimed delivery against the stored one", stored, got)
			if stored.Status != herald.DeliveryDelivering {
				t.Errorf("stored status %q, want delivering", stored.Status)
			}
			// Leased: no lease hands it out again, and its outcome is the
			// claimer's to record.
			if got := leasedIDs(lease(t, s, params("w", at(0)))); len(got) != 0 {
				t.Errorf("a lease after the claim handed out %v", got)
			}
			record(t, s, succeed(got.ID, "w", 1, at(time.Second)))
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, got.ID)
		}},
		{"Room", func(t *testing.T, s herald.Store) {
			a := newSub(t, s, herald.DefaultTenant, "a.*")
			b := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Delivery.MaxInFlight = 2 }, "b.*")
			full := newSub(t, s, herald.DefaultTenant, "c.*")
			evs := []herald.Event{
				newEvent(herald.DefaultTenant, "a.x"), newEvent(herald.DefaultTenant, "a.x"), newEvent(herald.DefaultTenant, "a.x"),
				newEvent(herald.DefaultTenant, "c.x"),
			}
			for range herald.LeasePrefetch*2 + 1 {
				evs = append(evs, newEvent(herald.DefaultTenant, "b.x"))
			}
			// a's lane has room for 2; b has no lane here (its cap is 2 ×
			// LeasePrefetch); full's lane has none.
			res, l := claimPublish(t, s, at(0), claim("w", map[string]int{a.ID: 2, full.ID: 0}), evs...)
			want := map[string]int{a.ID: 2, b.ID: 2 * herald.LeasePrefetch}
			diff(t, "claimed per subscription", want, perSub(l))
			// Oldest first: a's first two events.
			diff(t, "a's claimed", sorted([]string{res[0].DeliveryIDs[0], res[1].DeliveryIDs[0]}), sorted(leasedIDsOf(l, a.ID)))
			// The rest is pending and leased as usual.
			rest := perSub(lease(t, s, params("w", at(0))))
			diff(t, "leased after the claim", map[string]int{a.ID: 1, full.ID: 1}, rest)
		}},
		{"NotPausedOrderedOrOthersLanes", func(t *testing.T, s herald.Store) {
			setStatus(t, s, newSub(t, s, herald.DefaultTenant, "p.*"), herald.StatusPaused)
			ordered := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Ordered = true }, "o.*")
			taken := newSub(t, s, herald.DefaultTenant, "t.*")
			// Another owner holds taken's lane.
			publishOne(t, s, at(0), herald.DefaultTenant, "t.x")
			if got := leasedIDs(lease(t, s, params("other", at(0)))); len(got) != 1 {
				t.Fatalf("other leased %v, want taken's delivery", got)
			}
			_, l := claimPublish(t, s, at(time.Second), claim("w", nil),
				newEvent(herald.DefaultTenant, "p.x"), newEvent(herald.DefaultTenant, "o.x"), newEvent(herald.DefaultTenant, "t.x"))
			if len(l.Deliveries) != 0 {
				t.Errorf("claimed %v of paused, ordered and another owner's subscriptions", perSub(l))
			}
			// The ordered one is leased the usual way; taken's stays with
			// its lane's owner.
			diff(t, "leased after", map[string]int{ordered.ID: 1}, perSub(lease(t, s, params("w", at(time.Second)))))
			diff(t, "leased by the lane's owner", map[string]int{taken.ID: 1}, perSub(lease(t, s, params("other", at(time.Second)))))
		}},
		{"LaneCapCountsDelivering", func(t *testing.T, s herald.Store) {
			sub := newSubWith(t, s, herald.DefaultTenant, func(s *herald.Subscription) { s.Delivery.MaxInFlight = 1 }, "*")
			publishN(t, s, at(0), herald.DefaultTenant, "x", herald.LeasePrefetch-1)
			if got := leasedIDs(lease(t, s, params("w", at(0)))); len(got) != herald.LeasePrefetch-1 {
				t.Fatalf("leased %d, want %d", len(got), herald.LeasePrefetch-1)
			}
			// No lane in the claimer's Room (say it restarted): the cap
			// counts what the subscription has delivering.
			_, l := claimPublish(t, s, at(0), claim("w", nil), newEvent(herald.DefaultTenant, "x"), newEvent(herald.DefaultTenant, "x"))
			diff(t, "claimed", map[string]int{sub.ID: 1}, perSub(l))
		}},
	}
}

// leasedIDsOf returns the ids of l's deliveries of one subscription.
func leasedIDsOf(l herald.Lease, sub string) []string {
	var out []string
	for _, ld := range l.Deliveries {
		if ld.Delivery.SubscriptionID == sub {
			out = append(out, ld.Delivery.ID)
		}
	}
	return out
}

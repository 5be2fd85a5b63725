package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// eventIDs returns the ids of events.
func eventIDs(evs []herald.Event) []string {
	out := []string{}
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// deliveryIDs returns the ids of deliveries.
func deliveryIDs(ds []herald.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func eventCases() []testCase {
	return []testCase{
		{"HashesOfStoredEvents", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			newSub(t, s, "acme", "*")
			a, b := newEvent("acme", "job.status"), newEvent("acme", "job.status")
			other := newEvent("evil", "job.status")
			publish(t, s, at(0), a, b, other)
			got, err := s.EventHashes(t.Context(), "acme", []string{a.ID, "evt_absent", other.ID, b.ID})
			must(t, err, "event hashes")
			diff(t, "hashes", map[string][]byte{a.ID: a.Hash, b.ID: b.Hash}, got)
			got, err = s.EventHashes(t.Context(), "acme", nil)
			must(t, err, "event hashes of no ids")
			diff(t, "hashes of no ids", map[string][]byte{}, got)
		}},
		{"GetRoundTrip", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			newSub(t, s, "acme", "*")
			newSub(t, s, "acme", "job.*")
			full := newEvent("acme", "job.status")
			full.Data = []byte(`{"job":{"id":"j_1","status":"done","tags":["a","b"],"amount":12.5,"nested":{"null":null}}}`)
			full.CreateTime = at(-time.Hour + 3*time.Microsecond)
			bare := newEvent("acme", "user-payroll-submitted")
			bare.Data = nil
			bare.Version = ""
			test := newEvent("acme", "job.status")
			test.Test = true
			now := at(time.Minute)
			publish(t, s, now, full, bare, test)
			for _, tc := range []struct {
				ev         herald.Event
				deliveries int
			}{{full, 2}, {bare, 1}, {test, 0}} {
				want := tc.ev
				want.Deliveries = tc.deliveries
				want.ReceivedAt = now
				got, err := s.EventGet(t.Context(), "acme", tc.ev.ID)
				must(t, err, "get event")
				diff(t, "event "+tc.ev.EventType, want, got)
				if tc.ev.Data == nil && len(got.Data) != 0 {
					t.Errorf("event without data: Data %q, want nil", got.Data)
				}
			}
			_, err := s.EventGet(t.Context(), "evil", full.ID)
			wantErr(t, err, herald.ErrNotFound, "get another tenant's event")
			_, err = s.EventGet(t.Context(), "acme", "msg_unknown")
			wantErr(t, err, herald.ErrNotFound, "get unknown event")
		}},
		{"ListFilters", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "other")
			// e0..e4, one a minute, each in its own call.
			types := []string{"a.x", "b.x", "a.x", "a.x", "b.x"}
			ids := make([]string, len(types))
			for i, typ := range types {
				ev := newEvent("acme", typ)
				ids[i] = ev.ID
				publish(t, s, at(time.Duration(i)*time.Minute), ev)
			}
			publish(t, s, at(2*time.Minute), newEvent("other", "a.x"))
			e := func(is ...int) []string {
				out := []string{}
				for _, i := range is {
					out = append(out, ids[i])
				}
				return out
			}
			for _, tc := range []struct {
				name string
				f    herald.EventFilter
				want []string
			}{
				{"all", herald.EventFilter{}, e(4, 3, 2, 1, 0)},
				{"type", herald.EventFilter{EventType: "a.x"}, e(3, 2, 0)},
				{"unknown type", herald.EventFilter{EventType: "c.x"}, e()},
				{"since inclusive", herald.EventFilter{Since: at(time.Minute)}, e(4, 3, 2, 1)},
				{"until exclusive", herald.EventFilter{Until: at(3 * time.Minute)}, e(2, 1, 0)},
				{"since until", herald.EventFilter{Since: at(time.Minute), Until: at(3 * time.Minute)}, e(2, 1)},
				{"type since until", herald.EventFilter{EventType: "a.x", Since: at(time.Minute), Until: at(4 * time.Minute)}, e(3, 2)},
				{"empty range", herald.EventFilter{Since: at(time.Hour)}, e()},
			} {
				t.Run(tc.name, func(t *testing.T) {
					got, next, err := s.EventList(t.Context(), "acme", tc.f)
					must(t, err, "list")
					diff(t, "events", tc.want, eventIDs(got))
					if next != "" {
						t.Errorf("one page: next cursor %q", next)
					}
					for _, limit := range []int{1, 2} {
						pages := walk(t, limit, func(p herald.Page) ([]herald.Event, string, error) {
							f := tc.f
							f.Page = p
							return s.EventList(t.Context(), "acme", f)
						})
						diff(t, fmt.Sprint("paged events, limit ", limit), tc.want, eventIDs(flat(pages)))
					}
				})
			}
		}},
		{"ListTiesPageOnce", func(t *testing.T, s herald.Store) {
			// Same ReceivedAt: paging must still return each exactly once.
			var want []string
			for range 3 {
				for _, r := range publish(t, s, at(0), newEvent(herald.DefaultTenant, "a"), newEvent(herald.DefaultTenant, "b")) {
					want = append(want, r.EventID)
				}
			}
			pages := walk(t, 4, func(p herald.Page) ([]herald.Event, string, error) {
				return s.EventList(t.Context(), herald.DefaultTenant, herald.EventFilter{Page: p})
			})
			diff(t, "paged events", sorted(want), sorted(eventIDs(flat(pages))))
			pages = walk(t, 1, func(p herald.Page) ([]herald.Event, string, error) {
				return s.EventList(t.Context(), herald.DefaultTenant, herald.EventFilter{Page: p})
			})
			diff(t, "paged events, limit 1", sorted(want), sorted(eventIDs(flat(pages))))
		}},
	}
}

func deliveryCases() []testCase {
	return []testCase{
		{"ListFilters", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "other")
			a := newSub(t, s, "acme", "*")
			b := newSub(t, s, "acme", "*")
			theirs := newSub(t, s, "other", "*")
			// Events e0..e2 a minute apart, each delivered to a and b.
			var evs []string
			bySub := map[string][]string{} // sub id -> delivery per event
			for i := range 3 {
				ev := newEvent("acme", "job.status")
				evs = append(evs, ev.ID)
				r := publish(t, s, at(time.Duration(i)*time.Minute), ev)[0]
				for _, id := range r.DeliveryIDs {
					d := getDelivery(t, s, "acme", id)
					bySub[d.SubscriptionID] = append(bySub[d.SubscriptionID], id)
				}
			}
			theirID := publishOne(t, s, at(0), "other", "job.status")
			// e0's deliveries: a's succeeds, b's fails for good; the
			// others stay pending (not yet due at +0).
			l := lease(t, s, params("w", at(0)))
			outs := []herald.Outcome{}
			for _, ld := range l.Deliveries {
				switch ld.Delivery.ID {
				case bySub[a.ID][0]:
					outs = append(outs, succeed(ld.Delivery.ID, "w", 1, at(time.Second)))
				case bySub[b.ID][0]:
					outs = append(outs, failForGood(ld.Delivery.ID, "w", 1, at(time.Second)))
				case theirID:
					outs = append(outs, succeed(ld.Delivery.ID, "w", 1, at(time.Second)))
				default:
					t.Fatalf("leased %s, which is not due", ld.Delivery.ID)
				}
			}
			if len(outs) != 3 {
				t.Fatalf("leased %d deliveries, want 3", len(outs))
			}
			record(t, s, outs...)

			da, db := bySub[a.ID], bySub[b.ID]
			for _, tc := range []struct {
				name    string
				f       herald.DeliveryFilter
				want    []string
				ordered bool // else ties in CreatedAt leave the order open
			}{
				{"subscription", herald.DeliveryFilter{SubscriptionID: a.ID}, []string{da[2], da[1], da[0]}, true},
				{"event", herald.DeliveryFilter{EventID: evs[1]}, []string{da[1], db[1]}, false},
				{"succeeded", herald.DeliveryFilter{Status: herald.DeliverySucceeded}, []string{da[0]}, true},
				{"failed", herald.DeliveryFilter{Status: herald.DeliveryFailed}, []string{db[0]}, true},
				{"pending", herald.DeliveryFilter{Status: herald.DeliveryPending}, []string{da[2], db[2], da[1], db[1]}, false},
				{"subscription and status", herald.DeliveryFilter{SubscriptionID: b.ID, Status: herald.DeliveryPending}, []string{db[2], db[1]}, true},
				{"subscription and event", herald.DeliveryFilter{SubscriptionID: b.ID, EventID: evs[2]}, []string{db[2]}, true},
				{"all", herald.DeliveryFilter{}, []string{da[2], db[2], da[1], db[1], da[0], db[0]}, false},
				{"another tenant's subscription", herald.DeliveryFilter{SubscriptionID: theirs.ID}, []string{}, true},
				{"another tenant's event", herald.DeliveryFilter{EventID: evs[0] + "x"}, []string{}, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					got, next, err := s.DeliveryList(t.Context(), "acme", tc.f)
					must(t, err, "list")
					if next != "" {
						t.Errorf("one page: next cursor %q", next)
					}
					checkNewestFirst(t, got)
					if tc.ordered {
						diff(t, "deliveries", tc.want, deliveryIDs(got))
					} else {
						diff(t, "deliveries", sorted(tc.want), sorted(deliveryIDs(got)))
					}
					for _, limit := range []int{1, 2, 4} {
						pages := walk(t, limit, func(p herald.Page) ([]herald.Delivery, string, error) {
							f := tc.f
							f.Page = p
							return s.DeliveryList(t.Context(), "acme", f)
						})
						all := flat(pages)
						checkNewestFirst(t, all)
						if tc.ordered {
							diff(t, fmt.Sprint("paged deliveries, limit ", limit), tc.want, deliveryIDs(all))
						} else {
							diff(t, fmt.Sprint("paged deliveries, limit ", limit), sorted(tc.want), sorted(deliveryIDs(all)))
						}
					}
				})
			}
			got, _, err := s.DeliveryList(t.Context(), "other", herald.DeliveryFilter{})
			must(t, err, "list other tenant")
			diff(t, "other tenant's deliveries", []string{theirID}, deliveryIDs(got))
		}},
		{"GetOtherTenant", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			newSub(t, s, "acme", "*")
			id := publishOne(t, s, at(0), "acme", "job.status")
			_, _, err := s.DeliveryGet(t.Context(), "evil", id)
			wantErr(t, err, herald.ErrNotFound, "get another tenant's delivery")
			_, _, err = s.DeliveryGet(t.Context(), "acme", herald.NewID(herald.PrefixDelivery))
			wantErr(t, err, herald.ErrNotFound, "get unknown delivery")
		}},
	}
}

// checkNewestFirst fails tb unless ds are ordered by CreatedAt, newest first.
func checkNewestFirst(tb testing.TB, ds []herald.Delivery) {
	tb.Helper()
	for i := 1; i < len(ds); i++ {
		if ds[i].CreatedAt.After(ds[i-1].CreatedAt) {
			tb.Errorf("deliveries not newest first: %s (%v) before %s (%v)", ds[i-1].ID, ds[i-1].CreatedAt, ds[i].ID, ds[i].CreatedAt)
		}
	}
}

package storetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/heraldhq/herald"
)

// deliverySubs returns the subscription ids of deliveries, sorted.
func deliverySubs(tb testing.TB, s herald.Store, tenant string, ids []string) []string {
	tb.Helper()
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, getDelivery(tb, s, tenant, id).SubscriptionID)
	}
	return sorted(out)
}

// eventDeliveries lists every delivery of an event.
func eventDeliveries(tb testing.TB, s herald.Store, tenant, eventID string) []herald.Delivery {
	tb.Helper()
	ds, _, err := s.DeliveryList(tb.Context(), tenant, herald.DeliveryFilter{Page: herald.Page{Limit: herald.MaxPageLimit}, EventID: eventID})
	must(tb, err, "list deliveries of event "+eventID)
	return ds
}

func publishCases() []testCase {
	return []testCase{
		{"FanOut", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			exact := newSub(t, s, "acme", "job.status")
			all := newSub(t, s, "acme", "*")
			jobs := newSub(t, s, "acme", "job.*")
			users := newSub(t, s, "acme", "user-*")
			both := newSub(t, s, "acme", "job.*", "job.status")
			paused := newSubWith(t, s, "acme", func(s *herald.Subscription) { s.Status = herald.StatusPaused }, "*")
			newSubWith(t, s, "acme", func(s *herald.Subscription) {
				s.Status, s.DisabledReason = herald.StatusDisabled, "by hand"
			}, "*")
			testMode := newSubWith(t, s, "acme", func(s *herald.Subscription) { s.Mode = herald.ModeTest }, "*", "job.status")
			newSub(t, s, "evil", "*")
			newSubWith(t, s, "evil", func(s *herald.Subscription) { s.Mode = herald.ModeTest }, "*")

			ids := func(subs ...herald.Subscription) []string {
				var out []string
				for _, sub := range subs {
					out = append(out, sub.ID)
				}
				return sorted(out)
			}
			testEvent := newEvent("acme", "job.status")
			testEvent.Test = true
			cases := []struct {
				ev   herald.Event
				want []string
			}{
				{newEvent("acme", "job.status"), ids(exact, all, jobs, both, paused)},
				{newEvent("acme", "job.created"), ids(all, jobs, both, paused)},
				{newEvent("acme", "user-payroll-submitted"), ids(all, users, paused)},
				{newEvent("acme", "jobs"), ids(all, paused)},
				{newEvent("acme", "user"), ids(all, paused)},
				{newEvent("acme", "invoice.paid"), ids(all, paused)},
				{newEvent("acme", "job-status"), ids(all, paused)},
				{testEvent, ids(testMode)},
			}
			evs := make([]herald.Event, len(cases))
			for i, c := range cases {
				evs[i] = c.ev
			}
			res := publish(t, s, at(0), evs...)
			for i, c := range cases {
				name := c.ev.EventType
				if c.ev.Test {
					name += " (test)"
				}
				if res[i].Deliveries != len(c.want) {
					t.Errorf("%s: %d deliveries, want %d", name, res[i].Deliveries, len(c.want))
				}
				diff(t, name+": subscriptions delivered to", c.want, deliverySubs(t, s, "acme", res[i].DeliveryIDs))
				listed := eventDeliveries(t, s, "acme", c.ev.ID)
				if len(listed) != len(c.want) {
					t.Errorf("%s: %d deliveries listed, want %d", name, len(listed), len(c.want))
				}
				ev, err := s.EventGet(t.Context(), "acme", c.ev.ID)
				must(t, err, "get event")
				if ev.Deliveries != len(c.want) {
					t.Errorf("%s: stored event has Deliveries %d, want %d", name, ev.Deliveries, len(c.want))
				}
			}
		}},
		{"NoSubscriptions", func(t *testing.T, s herald.Store) {
			ev := newEvent(herald.DefaultTenant, "job.status")
			res := publish(t, s, at(0), ev)
			if res[0].Deliveries != 0 || len(res[0].DeliveryIDs) != 0 {
				t.Errorf("no subscriptions: %d deliveries %v", res[0].Deliveries, res[0].DeliveryIDs)
			}
			_, err := s.EventGet(t.Context(), herald.DefaultTenant, ev.ID)
			must(t, err, "event without deliveries is stored")
		}},
		{"OtherTenantsNeverDelivered", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			evil := newSub(t, s, "evil", "*")
			ev := newEvent("acme", "job.status")
			res := publish(t, s, at(0), ev)
			if res[0].Deliveries != 0 {
				t.Errorf("acme's event: %d deliveries to another tenant", res[0].Deliveries)
			}
			ds, _, err := s.DeliveryList(t.Context(), "evil", herald.DeliveryFilter{SubscriptionID: evil.ID})
			must(t, err, "list")
			if len(ds) != 0 {
				t.Errorf("evil's subscription has %d deliveries", len(ds))
			}
		}},
		{"DeliveryFields", func(t *testing.T, s herald.Store) {
			a := newSub(t, s, herald.DefaultTenant, "*")
			b := newSub(t, s, herald.DefaultTenant, "*")
			ev := newEvent(herald.DefaultTenant, "job.status")
			res := publish(t, s, at(time.Minute), ev)
			if res[0].Deliveries != 2 {
				t.Fatalf("%d deliveries, want 2", res[0].Deliveries)
			}
			traces := map[string]bool{}
			var subs []string
			for _, id := range res[0].DeliveryIDs {
				if !strings.HasPrefix(id, herald.PrefixDelivery) {
					t.Errorf("delivery id %q lacks prefix %q", id, herald.PrefixDelivery)
				}
				d, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, id)
				must(t, err, "get delivery")
				if len(attempts) != 0 {
					t.Errorf("new delivery has %d attempts", len(attempts))
				}
				want := herald.Delivery{
					ID: id, TenantID: herald.DefaultTenant, SubscriptionID: d.SubscriptionID, EventID: ev.ID,
					Status: herald.DeliveryPending, NextAttemptAt: at(time.Minute), CreatedAt: at(time.Minute),
				}
				diff(t, "new delivery", want, d, cmpopts.IgnoreFields(herald.Delivery{}, "TraceID", "Seq", "UpdatedAt"))
				if !uuidRE.MatchString(d.TraceID) {
					t.Errorf("TraceID %q is not a UUID", d.TraceID)
				}
				if traces[d.TraceID] {
					t.Errorf("TraceID %q given twice", d.TraceID)
				}
				traces[d.TraceID] = true
				subs = append(subs, d.SubscriptionID)
			}
			diff(t, "subscriptions", sorted([]string{a.ID, b.ID}), sorted(subs))
		}},
		{"Only", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			target := newSub(t, s, "acme", "invoice.paid") // does not match
			newSub(t, s, "acme", "*")
			evilSub := newSub(t, s, "evil", "*")
			ok := newEvent("acme", herald.EventTypeTest)
			foreign := newEvent("acme", herald.EventTypeTest)
			unknown := newEvent("acme", herald.EventTypeTest)
			plain := newEvent("acme", "job.status")
			res := publishReqs(t, s, at(0),
				herald.PublishRequest{Event: ok, Only: target.ID},
				herald.PublishRequest{Event: foreign, Only: evilSub.ID},
				herald.PublishRequest{Event: unknown, Only: herald.NewID(herald.PrefixSubscription)},
				herald.PublishRequest{Event: plain},
			)
			must(t, res[0].Err, "publish with Only")
			if res[0].Deliveries != 1 {
				t.Fatalf("Only: %d deliveries, want 1", res[0].Deliveries)
			}
			diff(t, "Only's subscription", []string{target.ID}, deliverySubs(t, s, "acme", res[0].DeliveryIDs))
			wantErr(t, res[1].Err, herald.ErrNotFound, "Only naming another tenant's subscription")
			wantErr(t, res[2].Err, herald.ErrNotFound, "Only naming an unknown subscription")
			for _, ev := range []herald.Event{foreign, unknown} {
				_, err := s.EventGet(t.Context(), "acme", ev.ID)
				wantErr(t, err, herald.ErrNotFound, "event of a refused request")
			}
			must(t, res[3].Err, "plain request beside refused ones")
			if res[3].Deliveries != 1 {
				t.Errorf("plain event: %d deliveries, want 1", res[3].Deliveries)
			}
			if ds, _, _ := s.DeliveryList(t.Context(), "evil", herald.DeliveryFilter{}); len(ds) != 0 {
				t.Errorf("another tenant's subscription got %d deliveries", len(ds))
			}
		}},
		{"Idempotent", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "other")
			newSub(t, s, "acme", "*")
			newSub(t, s, "acme", "job.*")
			ev := newEvent("acme", "job.status")
			first := publish(t, s, at(0), ev)[0]
			if first.Deliveries != 2 {
				t.Fatalf("first publish: %d deliveries, want 2", first.Deliveries)
			}
			// A subscription created since must not change the repeat.
			newSub(t, s, "acme", "*")
			again := publish(t, s, at(time.Minute), ev)[0]
			diff(t, "repeat", herald.PublishResult{EventID: ev.ID, Deliveries: 2}, again)
			if n := len(eventDeliveries(t, s, "acme", ev.ID)); n != 2 {
				t.Errorf("after repeat: %d deliveries, want 2", n)
			}
			stored, err := s.EventGet(t.Context(), "acme", ev.ID)
			must(t, err, "get")
			if !stored.ReceivedAt.Equal(at(0)) {
				t.Errorf("repeat changed ReceivedAt to %v", stored.ReceivedAt)
			}

			changed := ev
			changed.Data = []byte(`{"other":true}`)
			changed.Hash = hashOf("another body")
			fresh := newEvent("acme", "job.created")
			res := publishReqs(t, s, at(2*time.Minute), herald.PublishRequest{Event: changed}, herald.PublishRequest{Event: fresh})
			wantErr(t, res[0].Err, herald.ErrConflict, "same id, another hash")
			must(t, res[1].Err, "other request in the same call")
			if res[1].Deliveries != 3 || len(res[1].DeliveryIDs) != 3 {
				t.Errorf("other request: %d deliveries %v, want 3", res[1].Deliveries, res[1].DeliveryIDs)
			}
			stored, err = s.EventGet(t.Context(), "acme", ev.ID)
			must(t, err, "get")
			diff(t, "event after conflict", hashOf(ev.ID, ev.EventType), stored.Hash)
			diff(t, "data after conflict", ev.Data, stored.Data)

			// The id is unique per tenant only.
			theirs := ev
			theirs.TenantID = "other"
			newSub(t, s, "other", "*")
			if r := publish(t, s, at(0), theirs)[0]; r.Deliveries != 1 {
				t.Errorf("same id in another tenant: %d deliveries, want 1", r.Deliveries)
			}
		}},
		{"IdempotentWithinOneCall", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			ev := newEvent(herald.DefaultTenant, "job.status")
			changed := ev
			changed.Hash = hashOf("another body")
			res := publishReqs(t, s, at(0), herald.PublishRequest{Event: ev}, herald.PublishRequest{Event: ev}, herald.PublishRequest{Event: changed})
			must(t, res[0].Err, "first")
			must(t, res[1].Err, "repeat")
			wantErr(t, res[2].Err, herald.ErrConflict, "another hash")
			if res[0].Deliveries != 1 || len(res[0].DeliveryIDs) != 1 {
				t.Errorf("first: %+v", res[0])
			}
			diff(t, "repeat in the same call", herald.PublishResult{EventID: ev.ID, Deliveries: 1}, res[1])
			if n := len(eventDeliveries(t, s, herald.DefaultTenant, ev.ID)); n != 1 {
				t.Errorf("%d deliveries, want 1", n)
			}
		}},
		{"ManyInOneCall", func(t *testing.T, s herald.Store) {
			sub := newSub(t, s, herald.DefaultTenant, "*")
			const n = 300
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", n)
			if len(ids) != n {
				t.Fatalf("%d deliveries, want %d", len(ids), n)
			}
			ds, _, err := s.DeliveryList(t.Context(), herald.DefaultTenant, herald.DeliveryFilter{Page: herald.Page{Limit: herald.MaxPageLimit}, SubscriptionID: sub.ID})
			must(t, err, "list")
			if len(ds) != n {
				t.Errorf("listed %d deliveries, want %d", len(ds), n)
			}
			evs, _, err := s.EventList(t.Context(), herald.DefaultTenant, herald.EventFilter{Page: herald.Page{Limit: herald.MaxPageLimit}})
			must(t, err, "list events")
			if len(evs) != n {
				t.Errorf("listed %d events, want %d", len(evs), n)
			}
		}},
		{"SeqInPublishOrder", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			newSub(t, s, herald.DefaultTenant, "*")
			// Later calls may carry an earlier now: Seq follows publish
			// order, not time.
			var groups [][]string
			for i, size := range []int{3, 1, 2} {
				res := publish(t, s, at(time.Duration(-i)*time.Hour), func() []herald.Event {
					evs := make([]herald.Event, size)
					for j := range evs {
						evs[j] = newEvent(herald.DefaultTenant, "job.status")
					}
					return evs
				}()...)
				for _, r := range res {
					groups = append(groups, r.DeliveryIDs)
				}
			}
			var prevMax int64
			for i, g := range groups {
				var lo, hi int64
				for j, id := range g {
					seq := getDelivery(t, s, herald.DefaultTenant, id).Seq
					if j == 0 || seq < lo {
						lo = seq
					}
					if j == 0 || seq > hi {
						hi = seq
					}
				}
				if i > 0 && lo <= prevMax {
					t.Errorf("request %d: lowest Seq %d not above the earlier requests' highest %d", i, lo, prevMax)
				}
				if lo == hi {
					t.Errorf("request %d: both deliveries have Seq %d", i, lo)
				}
				prevMax = hi
			}
		}},
		{"ConcurrentPublishes", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			const workers, each = 4, 10
			got := make([][]string, workers)
			errs := make([]error, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for range each {
						res, err := s.EventPublish(t.Context(), at(0), []herald.PublishRequest{{Event: newEvent(herald.DefaultTenant, "job.status")}})
						if err == nil {
							err = res[0].Err
						}
						if err != nil {
							errs[w] = err
							return
						}
						got[w] = append(got[w], res[0].DeliveryIDs...)
					}
				})
			}
			wg.Wait()
			seqs := map[int64]string{}
			for w := range workers {
				must(t, errs[w], fmt.Sprint("publisher ", w))
				if len(got[w]) != each {
					t.Fatalf("publisher %d: %d deliveries, want %d", w, len(got[w]), each)
				}
				var prev int64
				for i, id := range got[w] {
					seq := getDelivery(t, s, herald.DefaultTenant, id).Seq
					if other, dup := seqs[seq]; dup {
						t.Errorf("Seq %d given to %s and %s", seq, other, id)
					}
					seqs[seq] = id
					if i > 0 && seq <= prev {
						t.Errorf("publisher %d: Seq %d after %d", w, seq, prev)
					}
					prev = seq
				}
			}
		}},
	}
}

package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// fullSub returns a subscription of tenant with every field set away from
// its default.
func fullSub(tenant string) herald.Subscription {
	return herald.Subscription{
		ID:       herald.NewID(herald.PrefixSubscription),
		TenantID: tenant,
		URL:      "https://customer.example/webhook-endpoint?x=1",
		Name:     "payroll sync ✓",
		Events:   []string{"user-payroll-submitted", "job.*", "*"},
		Secrets: []herald.Secret{
			{Value: "new-secret-0123456789abcdef"},
			{Value: "old-secret-fedcba9876543210", ExpiresAt: at(24*time.Hour + 7*time.Microsecond)},
		},
		SignatureScheme: "sha512-hex",
		EncryptionKey:   randomBytes(32),
		IncludePayload:  false,
		PayloadFormat:   herald.FormatFlat,
		Mode:            herald.ModeTest,
		Ordered:         true,
		Headers:         map[string]string{"X-Customer-Tag": "abc", "X-Other": "a, b"},
		Delivery: herald.DeliveryConfig{
			MaxRPS:         7,
			MaxInFlight:    3,
			Timeout:        2500 * time.Millisecond,
			BatchMaxEvents: 25,
			Retry: herald.RetryPolicy{
				MaxAttempts: 0,
				Window:      90 * time.Minute,
				Base:        250 * time.Millisecond,
				Cap:         10 * time.Minute,
			},
		},
		Status:         herald.StatusDisabled,
		DisabledReason: "endpoint answered 410 Gone",
		CreatedAt:      at(time.Second),
		UpdatedAt:      at(2*time.Second + 1*time.Microsecond),
	}
}

func subscriptionCases() []testCase {
	return []testCase{
		{"CreateGetRoundTrip", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			minimal := subFor("acme", "job.status")
			minimal.Secrets = []herald.Secret{{Value: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
			minimal.Headers = nil
			minimal.EncryptionKey = nil
			for _, tc := range []struct {
				name string
				sub  herald.Subscription
			}{
				{"minimal", minimal},
				{"every field", fullSub("acme")},
				{"paused", func() herald.Subscription {
					s := fullSub("acme")
					s.Status, s.DisabledReason, s.Mode, s.Ordered = herald.StatusPaused, "", herald.ModeLive, false
					s.IncludePayload = true
					return s
				}()},
			} {
				t.Run(tc.name, func(t *testing.T) {
					createSub(t, s, tc.sub)
					got, err := s.SubscriptionGet(t.Context(), "acme", tc.sub.ID)
					must(t, err, "get")
					diff(t, "subscription", tc.sub, got)
				})
			}
		}},
		{"GetMissingAndOtherTenant", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			sub := newSub(t, s, "acme", "*")
			_, err := s.SubscriptionGet(t.Context(), "evil", sub.ID)
			wantErr(t, err, herald.ErrNotFound, "get another tenant's subscription")
			_, err = s.SubscriptionGet(t.Context(), "acme", herald.NewID(herald.PrefixSubscription))
			wantErr(t, err, herald.ErrNotFound, "get unknown subscription")
		}},
		{"DuplicateConflict", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			want := newSub(t, s, "acme", "*")
			dup := fullSub("acme")
			dup.ID = want.ID
			wantErr(t, s.SubscriptionCreate(t.Context(), dup), herald.ErrConflict, "create duplicate id")
			got, err := s.SubscriptionGet(t.Context(), "acme", want.ID)
			must(t, err, "get")
			diff(t, "subscription after refused duplicate", want, got)
		}},
		{"ListOldestFirst", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "other")
			// Created out of time order, so the order must come from CreatedAt.
			want := make([]string, 5)
			for _, i := range []int{3, 0, 4, 1, 2} {
				sub := newSubWith(t, s, "acme", func(sub *herald.Subscription) {
					sub.CreatedAt = at(time.Duration(i) * time.Minute)
					sub.UpdatedAt = sub.CreatedAt
				}, "*")
				want[i] = sub.ID
			}
			newSub(t, s, "other", "*")
			subs, next, err := s.SubscriptionList(t.Context(), "acme", herald.Page{Limit: 500})
			must(t, err, "list")
			if next != "" {
				t.Errorf("one page: next cursor %q", next)
			}
			diff(t, "listed ids", want, pageIDs([][]herald.Subscription{subs}, func(s herald.Subscription) string { return s.ID })[0])
			for _, limit := range []int{1, 2, 5} {
				t.Run(fmt.Sprint("limit", limit), func(t *testing.T) {
					pages := walk(t, limit, func(p herald.Page) ([]herald.Subscription, string, error) {
						return s.SubscriptionList(t.Context(), "acme", p)
					})
					if len(pages) != (5+limit-1)/limit {
						t.Errorf("%d pages, want %d", len(pages), (5+limit-1)/limit)
					}
					got := pageIDs([][]herald.Subscription{flat(pages)}, func(s herald.Subscription) string { return s.ID })[0]
					diff(t, "paged ids", want, got)
				})
			}
		}},
		{"ListTiesPageOnce", func(t *testing.T, s herald.Store) {
			// Same CreatedAt: paging must still return each exactly once.
			var want []string
			for range 5 {
				want = append(want, newSub(t, s, herald.DefaultTenant, "*").ID)
			}
			pages := walk(t, 2, func(p herald.Page) ([]herald.Subscription, string, error) {
				return s.SubscriptionList(t.Context(), herald.DefaultTenant, p)
			})
			got := pageIDs([][]herald.Subscription{flat(pages)}, func(s herald.Subscription) string { return s.ID })[0]
			diff(t, "paged ids", sorted(want), sorted(got))
		}},
		{"UpdateReplaces", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			orig := newSub(t, s, "acme", "job.*")
			upd := fullSub("acme")
			upd.ID = orig.ID
			upd.CreatedAt = at(time.Hour)    // ignored
			upd.FailingSince = at(time.Hour) // ignored
			upd.UpdatedAt = at(3 * time.Hour)
			must(t, s.SubscriptionUpdate(t.Context(), upd), "update")
			want := upd
			want.CreatedAt = orig.CreatedAt
			want.FailingSince = time.Time{}
			want.Revision = 1
			got, err := s.SubscriptionGet(t.Context(), "acme", orig.ID)
			must(t, err, "get")
			diff(t, "updated subscription", want, got)

			// And back: fields set to their zero values are replaced too.
			back := orig
			back.Headers, back.EncryptionKey = nil, nil
			back.UpdatedAt = at(4 * time.Hour)
			back.Revision = got.Revision
			must(t, s.SubscriptionUpdate(t.Context(), back), "update back")
			got, err = s.SubscriptionGet(t.Context(), "acme", orig.ID)
			must(t, err, "get")
			back.Revision = 2
			diff(t, "subscription updated back", back, got)
		}},
		{"UpdateStaleConflicts", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			orig := newSub(t, s, "acme", "*")
			first := orig
			first.Name = "first"
			must(t, s.SubscriptionUpdate(t.Context(), first), "first update")
			// A second writer that read the same revision as the first.
			second := orig
			second.URL = "https://other.example/hook"
			wantErr(t, s.SubscriptionUpdate(t.Context(), second), herald.ErrConflict, "update from a stale read")
			got, err := s.SubscriptionGet(t.Context(), "acme", orig.ID)
			must(t, err, "get")
			first.Revision = 1
			diff(t, "subscription after a refused stale update", first, got)
			// Read again, and the update applies.
			got.URL = second.URL
			must(t, s.SubscriptionUpdate(t.Context(), got), "update after reading again")
		}},
		{"UpdateOtherTenantOrMissing", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			orig := newSub(t, s, "acme", "*")
			upd := orig
			upd.TenantID = "evil"
			upd.URL = "https://evil.example/"
			wantErr(t, s.SubscriptionUpdate(t.Context(), upd), herald.ErrNotFound, "update another tenant's subscription")
			got, err := s.SubscriptionGet(t.Context(), "acme", orig.ID)
			must(t, err, "get")
			diff(t, "subscription after refused update", orig, got)
			missing := subFor("acme", "*")
			wantErr(t, s.SubscriptionUpdate(t.Context(), missing), herald.ErrNotFound, "update unknown subscription")
			_, err = s.SubscriptionGet(t.Context(), "acme", missing.ID)
			wantErr(t, err, herald.ErrNotFound, "get after refused update")
		}},
		{"DeleteCancelsDeliveries", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			sub := newSub(t, s, "acme", "job.*")
			keep := newSub(t, s, "acme", "job.*")
			done := publishN(t, s, at(0), "acme", "job.done", 1) // one each
			// Finish both deliveries of the first event.
			leaseAndRecord(t, s, "w1", at(time.Second), func(id string) herald.Outcome { return succeed(id, "w1", 1, at(2*time.Second)) })
			delivering := publishN(t, s, at(time.Minute), "acme", "job.busy", 1)
			lease(t, s, params("w1", at(time.Minute)))
			pending := publishN(t, s, at(2*time.Minute), "acme", "job.wait", 3)

			must(t, s.SubscriptionDelete(t.Context(), "acme", sub.ID, at(time.Hour)), "delete")
			_, err := s.SubscriptionGet(t.Context(), "acme", sub.ID)
			wantErr(t, err, herald.ErrNotFound, "get deleted subscription")
			wantErr(t, s.SubscriptionDelete(t.Context(), "acme", sub.ID, at(time.Hour)), herald.ErrNotFound, "delete twice")

			for _, id := range slices.Concat(done, delivering, pending) {
				d := getDelivery(t, s, "acme", id)
				switch {
				case d.SubscriptionID == keep.ID && slices.Contains(done, id):
					if d.Status != herald.DeliverySucceeded {
						t.Errorf("kept subscription's delivery %s: status %q", id, d.Status)
					}
				case d.SubscriptionID == keep.ID && slices.Contains(delivering, id):
					if d.Status != herald.DeliveryDelivering {
						t.Errorf("kept subscription's delivery %s: status %q", id, d.Status)
					}
				case d.SubscriptionID == keep.ID:
					if d.Status != herald.DeliveryPending || !d.CompletedAt.IsZero() {
						t.Errorf("kept subscription's delivery %s: status %q, completed %v", id, d.Status, d.CompletedAt)
					}
				case slices.Contains(done, id):
					if d.Status != herald.DeliverySucceeded || !d.CompletedAt.Equal(at(2*time.Second)) {
						t.Errorf("finished delivery %s of deleted subscription: status %q completed %v; want it unchanged", id, d.Status, d.CompletedAt)
					}
				default:
					if d.Status != herald.DeliveryCancelled || !d.CompletedAt.Equal(at(time.Hour)) {
						t.Errorf("delivery %s of deleted subscription: status %q completed %v; want cancelled at %v", id, d.Status, d.CompletedAt, at(time.Hour))
					}
				}
			}
			// Nothing of the deleted subscription is leased any more.
			l := lease(t, s, params("w2", at(24*time.Hour)))
			if n := perSub(l)[sub.ID]; n != 0 {
				t.Errorf("leased %d deliveries of a deleted subscription", n)
			}
		}},
		{"DeleteOtherTenant", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			sub := newSub(t, s, "acme", "*")
			ids := publishN(t, s, at(0), "acme", "job.x", 1)
			wantErr(t, s.SubscriptionDelete(t.Context(), "evil", sub.ID, at(time.Hour)), herald.ErrNotFound, "delete another tenant's subscription")
			_, err := s.SubscriptionGet(t.Context(), "acme", sub.ID)
			must(t, err, "get after refused delete")
			wantStatus(t, s, "acme", herald.DeliveryPending, ids...)
		}},
		{"FailingSince", func(t *testing.T, s herald.Store) {
			// FailingSince is kept by DeliveryRecord; SubscriptionFailing
			// returns those set and not after before, except disabled ones.
			a := newSub(t, s, herald.DefaultTenant, "a")
			b := newSub(t, s, herald.DefaultTenant, "b")
			c := newSub(t, s, herald.DefaultTenant, "c")
			ok := newSub(t, s, herald.DefaultTenant, "ok")
			da := publishOne(t, s, at(0), herald.DefaultTenant, "a")
			db := publishOne(t, s, at(0), herald.DefaultTenant, "b")
			dc := publishOne(t, s, at(0), herald.DefaultTenant, "c")
			dok := publishOne(t, s, at(0), herald.DefaultTenant, "ok")
			lease(t, s, params("w", at(0)))
			// a's attempt starts at +9s, b's at +19s, c's at +29s.
			record(t, s,
				retryAt(da, "w", 1, at(10*time.Second), at(time.Hour)),
				failForGood(db, "w", 1, at(20*time.Second)),
				retryAt(dc, "w", 1, at(30*time.Second), at(time.Hour)),
				succeed(dok, "w", 1, at(10*time.Second)),
			)
			for _, tc := range []struct {
				sub  herald.Subscription
				want time.Time
			}{{a, at(9 * time.Second)}, {b, at(19 * time.Second)}, {c, at(29 * time.Second)}, {ok, time.Time{}}} {
				got, err := s.SubscriptionGet(t.Context(), herald.DefaultTenant, tc.sub.ID)
				must(t, err, "get")
				if !got.FailingSince.Equal(tc.want) {
					t.Errorf("subscription %v: FailingSince %v, want %v", tc.sub.Events, got.FailingSince, tc.want)
				}
			}
			c = setStatus(t, s, c, herald.StatusDisabled)
			b = setStatus(t, s, b, herald.StatusPaused)
			failing := func(before time.Time, limit int) []string {
				t.Helper()
				subs, err := s.SubscriptionFailing(t.Context(), before, limit)
				must(t, err, "failing")
				var ids []string
				for _, sub := range subs {
					ids = append(ids, sub.ID)
				}
				return sorted(ids)
			}
			diff(t, "failing before +1h", sorted([]string{a.ID, b.ID}), failing(at(time.Hour), 10))
			diff(t, "failing at a's start", []string{a.ID}, failing(at(9*time.Second), 10))
			diff(t, "failing just before a's start", []string(nil), failing(at(9*time.Second-time.Microsecond), 10))
			if got := failing(at(time.Hour), 1); len(got) != 1 {
				t.Errorf("failing with limit 1: %d subscriptions", len(got))
			}
			_ = c
		}},
	}
}

package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/heraldhq/herald"
)

// ignoreSeqTrace ignores the delivery fields a case cannot predict.
var ignoreSeqTrace = cmpopts.IgnoreFields(herald.Delivery{}, "TraceID", "Seq")

// leaseOne publishes one event to a new subscription of the default tenant
// and leases its delivery for owner at +0. It returns the delivery as leased.
func leaseOne(tb testing.TB, s herald.Store, owner string) (herald.Subscription, herald.Delivery) {
	tb.Helper()
	typ := "one." + herald.NewUUID()
	sub := newSub(tb, s, herald.DefaultTenant, typ)
	id := publishOne(tb, s, at(0), herald.DefaultTenant, typ)
	l := lease(tb, s, params(owner, at(0)))
	for _, ld := range l.Deliveries {
		if ld.Delivery.ID == id {
			return sub, ld.Delivery
		}
	}
	tb.Fatalf("delivery %s not leased", id)
	return sub, herald.Delivery{}
}

func recordCases() []testCase {
	return []testCase{
		{"RetryThenFail", func(t *testing.T, s herald.Store) {
			_, d := leaseOne(t, s, "w")
			first := retryAt(d.ID, "w", 1, at(2*time.Second), at(time.Minute))
			record(t, s, first)
			want := d
			want.Status = herald.DeliveryPending
			want.Attempts = 1
			want.NextAttemptAt = at(time.Minute)
			want.LastSleep = at(time.Minute).Sub(at(2 * time.Second))
			want.FirstAttemptAt = first.Attempt.StartedAt
			want.LastStatusCode = 500
			want.UpdatedAt = at(2 * time.Second)
			got, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, d.ID)
			must(t, err, "get")
			diff(t, "delivery after a retry outcome", want, got, ignoreSeqTrace)
			diff(t, "attempts", []herald.Attempt{first.Attempt}, attempts)
			if got.TraceID != d.TraceID || got.Seq != d.Seq {
				t.Errorf("TraceID/Seq changed from %q/%d to %q/%d", d.TraceID, d.Seq, got.TraceID, got.Seq)
			}

			if l := lease(t, s, params("w", at(time.Minute))); len(l.Deliveries) != 1 {
				t.Fatalf("leased %d at the retry time, want 1", len(l.Deliveries))
			}
			second := failForGood(d.ID, "w", 2, at(time.Minute+3*time.Second))
			second.Attempt.ResponseBody = ""
			record(t, s, second)
			want.Status = herald.DeliveryFailed
			want.Attempts = 2
			want.LastStatusCode = 0
			want.LastError = second.Attempt.Error
			want.UpdatedAt = second.Now
			want.CompletedAt = second.Now
			got, attempts, err = s.DeliveryGet(t.Context(), herald.DefaultTenant, d.ID)
			must(t, err, "get")
			diff(t, "delivery after failing for good", want, got, ignoreSeqTrace, cmpopts.IgnoreFields(herald.Delivery{}, "NextAttemptAt", "LastSleep"))
			diff(t, "attempts in order", []herald.Attempt{first.Attempt, second.Attempt}, attempts)
			if l := lease(t, s, params("w", at(time.Hour))); len(l.Deliveries) != 0 {
				t.Errorf("leased a failed delivery")
			}
		}},
		{"Succeed", func(t *testing.T, s herald.Store) {
			_, d := leaseOne(t, s, "w")
			o := succeed(d.ID, "w", 1, at(3*time.Second))
			o.Attempt.ResponseBody = strings.Repeat("é", herald.MaxStoredResponse/2) // 4 KiB of UTF-8
			o.Attempt.Duration = 1234 * time.Millisecond
			record(t, s, o)
			got, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, d.ID)
			must(t, err, "get")
			want := d
			want.Status = herald.DeliverySucceeded
			want.Attempts = 1
			want.FirstAttemptAt = o.Attempt.StartedAt
			want.LastStatusCode = 200
			want.UpdatedAt = o.Now
			want.CompletedAt = o.Now
			diff(t, "succeeded delivery", want, got, ignoreSeqTrace, cmpopts.IgnoreFields(herald.Delivery{}, "NextAttemptAt", "LastSleep"))
			diff(t, "attempts", []herald.Attempt{o.Attempt}, attempts)
			if l := lease(t, s, params("w2", at(time.Hour))); len(l.Deliveries) != 0 {
				t.Errorf("leased a succeeded delivery")
			}
		}},
		{"ManyOutcomesOneCall", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 3)
			lease(t, s, params("w", at(0)))
			record(t, s,
				succeed(ids[0], "w", 1, at(time.Second)),
				failForGood(ids[1], "w", 1, at(time.Second)),
				retryAt(ids[2], "w", 1, at(time.Second), at(time.Minute)),
			)
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, ids[0])
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryFailed, ids[1])
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, ids[2])
		}},
		{"NonOwnerSkipped", func(t *testing.T, s herald.Store) {
			sub, d := leaseOne(t, s, "w1")
			never := newSub(t, s, herald.DefaultTenant, "never")
			pendingID := publishOne(t, s, at(time.Hour), herald.DefaultTenant, "never") // not due, not leased
			record(t, s,
				failForGood(d.ID, "w2", 1, at(time.Second)),
				failForGood(pendingID, "w1", 1, at(time.Second)),
			)
			got, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, d.ID)
			must(t, err, "get")
			if got.Status != herald.DeliveryDelivering || got.Attempts != 0 || len(attempts) != 0 {
				t.Errorf("another owner's outcome was written: status %q, %d attempts", got.Status, len(attempts))
			}
			got, attempts, err = s.DeliveryGet(t.Context(), herald.DefaultTenant, pendingID)
			must(t, err, "get")
			if got.Status != herald.DeliveryPending || len(attempts) != 0 {
				t.Errorf("outcome for an unleased delivery was written: status %q, %d attempts", got.Status, len(attempts))
			}
			for _, sb := range []herald.Subscription{sub, never} {
				stored, err := s.SubscriptionGet(t.Context(), herald.DefaultTenant, sb.ID)
				must(t, err, "get subscription")
				if !stored.FailingSince.IsZero() {
					t.Errorf("skipped outcome set FailingSince %v", stored.FailingSince)
				}
			}
			// The owner's outcome still counts.
			record(t, s, succeed(d.ID, "w1", 1, at(2*time.Second)))
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, d.ID)
		}},
		{"FailingSinceRuns", func(t *testing.T, s herald.Store) {
			sub := newSub(t, s, herald.DefaultTenant, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 4)
			lease(t, s, params("w", at(0)))
			failingSince := func() time.Time {
				t.Helper()
				got, err := s.SubscriptionGet(t.Context(), herald.DefaultTenant, sub.ID)
				must(t, err, "get subscription")
				return got.FailingSince
			}
			record(t, s, retryAt(ids[0], "w", 1, at(10*time.Second), at(time.Hour)))
			if got := failingSince(); !got.Equal(at(9 * time.Second)) {
				t.Errorf("after a failure: FailingSince %v, want the attempt's start %v", got, at(9*time.Second))
			}
			record(t, s, failForGood(ids[1], "w", 1, at(20*time.Second)))
			if got := failingSince(); !got.Equal(at(9 * time.Second)) {
				t.Errorf("after a second failure: FailingSince %v, want it kept at %v", got, at(9*time.Second))
			}
			record(t, s, succeed(ids[2], "w", 1, at(30*time.Second)))
			if got := failingSince(); !got.IsZero() {
				t.Errorf("after a success: FailingSince %v, want cleared", got)
			}
			record(t, s, retryAt(ids[3], "w", 1, at(40*time.Second), at(time.Hour)))
			if got := failingSince(); !got.Equal(at(39 * time.Second)) {
				t.Errorf("after a new failure: FailingSince %v, want %v", got, at(39*time.Second))
			}
			// An update that keeps the status keeps the run, and so does
			// disabling; enabling again starts afresh.
			cur, err := s.SubscriptionGet(t.Context(), herald.DefaultTenant, sub.ID)
			must(t, err, "get subscription")
			cur.Name = "renamed"
			must(t, s.SubscriptionUpdate(t.Context(), cur), "rename")
			cur.Revision++
			if got := failingSince(); !got.Equal(at(39 * time.Second)) {
				t.Errorf("after a rename: FailingSince %v, want it kept at %v", got, at(39*time.Second))
			}
			cur.Status = herald.StatusDisabled
			must(t, s.SubscriptionUpdate(t.Context(), cur), "disable")
			cur.Revision++
			if got := failingSince(); !got.Equal(at(39 * time.Second)) {
				t.Errorf("after disabling: FailingSince %v, want it kept at %v", got, at(39*time.Second))
			}
			cur.Status = herald.StatusActive
			must(t, s.SubscriptionUpdate(t.Context(), cur), "enable")
			if got := failingSince(); !got.IsZero() {
				t.Errorf("after enabling again: FailingSince %v, want cleared", got)
			}
		}},
	}
}

func releaseCases() []testCase {
	return []testCase{
		{"ReleaseIDs", func(t *testing.T, s herald.Store) {
			newSub(t, s, herald.DefaultTenant, "*")
			ids := publishN(t, s, at(0), herald.DefaultTenant, "job.status", 3)
			lease(t, s, params("w1", at(0)))
			// w1's lease lasts until +15s; the released ones are due at +10s.
			must(t, s.DeliveryRelease(t.Context(), "w1", ids[:2], at(10*time.Second)), "release")
			must(t, s.DeliveryRelease(t.Context(), "w2", ids[2:], at(0)), "release by another owner")
			for _, id := range ids[:2] {
				d, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, id)
				must(t, err, "get")
				if d.Status != herald.DeliveryPending || !d.NextAttemptAt.Equal(at(10*time.Second)) || d.Attempts != 0 || len(attempts) != 0 {
					t.Errorf("released %s: status %q due %v attempts %d/%d; want pending at %v, no attempt", id, d.Status, d.NextAttemptAt, d.Attempts, len(attempts), at(10*time.Second))
				}
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryDelivering, ids[2])
			if l := lease(t, s, params("w1", at(5*time.Second))); len(l.Deliveries) != 0 {
				t.Errorf("leased %v before the release time", leasedIDs(l))
			}
			diff(t, "leased at the release time", sorted(ids[:2]), leasedIDs(lease(t, s, params("w1", at(10*time.Second)))))
			// w1's outcome for a released-then-re-leased delivery counts.
			record(t, s, succeed(ids[0], "w1", 1, at(11*time.Second)))
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, ids[0])
		}},
		{"ReleaseAll", func(t *testing.T, s herald.Store) {
			a := newSub(t, s, herald.DefaultTenant, "a")
			b := newSub(t, s, herald.DefaultTenant, "b")
			da := publishN(t, s, at(0), herald.DefaultTenant, "a", 2)
			db := publishN(t, s, at(0), herald.DefaultTenant, "b", 2)
			diff(t, "w1's lease", map[string]int{a.ID: 2, b.ID: 2}, perSub(lease(t, s, params("w1", at(0)))))
			c := newSub(t, s, herald.DefaultTenant, "c")
			dc := publishN(t, s, at(0), herald.DefaultTenant, "c", 1)
			diff(t, "w3's lease", map[string]int{c.ID: 1}, perSub(lease(t, s, params("w3", at(0)))))

			must(t, s.DeliveryRelease(t.Context(), "w1", nil, at(time.Second)), "release all")
			for _, id := range append(da, db...) {
				d := getDelivery(t, s, herald.DefaultTenant, id)
				if d.Status != herald.DeliveryPending || !d.NextAttemptAt.Equal(at(time.Second)) {
					t.Errorf("released %s: status %q due %v", id, d.Status, d.NextAttemptAt)
				}
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryDelivering, dc...)
			// The lanes are free: another owner takes them at once.
			got := lease(t, s, params("w2", at(time.Second)))
			diff(t, "w2's lease after w1 released all", map[string]int{a.ID: 2, b.ID: 2}, perSub(got))
		}},
	}
}

func retryCases() []testCase {
	return []testCase{
		{"RetryResetsBudget", func(t *testing.T, s herald.Store) {
			_, d := leaseOne(t, s, "w")
			o := retryAt(d.ID, "w", 1, at(time.Second), at(time.Minute))
			o.BatchID = "bat_one"
			record(t, s, o)
			lease(t, s, params("w", at(time.Minute)))
			o = failForGood(d.ID, "w", 2, at(time.Minute+time.Second))
			o.BatchID = "bat_one"
			record(t, s, o)
			must(t, s.DeliveryRetry(t.Context(), herald.DefaultTenant, d.ID, at(time.Hour)), "retry")
			got, attempts, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, d.ID)
			must(t, err, "get")
			if got.Status != herald.DeliveryPending || !got.NextAttemptAt.Equal(at(time.Hour)) || !got.CompletedAt.IsZero() ||
				got.Attempts != 0 || !got.FirstAttemptAt.IsZero() || got.LastSleep != 0 || got.BatchID != "" {
				t.Errorf("after retry: %+v; want pending at %v with its budget reset", got, at(time.Hour))
			}
			if got.TraceID != d.TraceID {
				t.Errorf("retry changed TraceID from %q to %q", d.TraceID, got.TraceID)
			}
			if len(attempts) != 2 {
				t.Errorf("retry dropped attempts: %d left", len(attempts))
			}
			diff(t, "leased after retry", []string{d.ID}, leasedIDs(lease(t, s, params("w2", at(time.Hour)))))
		}},
		{"RetrySucceededAndPending", func(t *testing.T, s herald.Store) {
			_, d := leaseOne(t, s, "w")
			record(t, s, succeed(d.ID, "w", 1, at(time.Second)))
			must(t, s.DeliveryRetry(t.Context(), herald.DefaultTenant, d.ID, at(time.Minute)), "retry succeeded")
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, d.ID)
			must(t, s.DeliveryRetry(t.Context(), herald.DefaultTenant, d.ID, at(2*time.Minute)), "retry pending")
			if got := getDelivery(t, s, herald.DefaultTenant, d.ID); got.Status != herald.DeliveryPending || !got.NextAttemptAt.Equal(at(2*time.Minute)) {
				t.Errorf("retry of pending: status %q due %v", got.Status, got.NextAttemptAt)
			}
		}},
		{"RetrySucceededKeepsAttempts", func(t *testing.T, s herald.Store) {
			// Every attempt stays in the history, in order, across requeues
			// of a succeeded delivery: by retry and by replay.
			sub, d := leaseOne(t, s, "w")
			first := retryAt(d.ID, "w", 1, at(time.Second), at(time.Minute))
			record(t, s, first)
			lease(t, s, params("w", at(time.Minute)))
			second := succeed(d.ID, "w", 2, at(time.Minute+time.Second))
			second.Attempt.Error = "note"
			record(t, s, second)
			attempts := func(want ...herald.Attempt) {
				t.Helper()
				_, got, err := s.DeliveryGet(t.Context(), herald.DefaultTenant, d.ID)
				must(t, err, "get")
				diff(t, "attempts", want, got)
			}
			attempts(first.Attempt, second.Attempt)
			must(t, s.DeliveryRetry(t.Context(), herald.DefaultTenant, d.ID, at(time.Hour)), "retry")
			attempts(first.Attempt, second.Attempt)
			lease(t, s, params("w", at(time.Hour)))
			third := succeed(d.ID, "w", 1, at(time.Hour+time.Second))
			record(t, s, third)
			attempts(first.Attempt, second.Attempt, third.Attempt)
			n, err := s.DeliveryReplay(t.Context(), herald.DefaultTenant, sub.ID, herald.ReplayFilter{Status: herald.DeliverySucceeded}, at(2*time.Hour))
			must(t, err, "replay")
			if n != 1 {
				t.Fatalf("replayed %d, want 1", n)
			}
			attempts(first.Attempt, second.Attempt, third.Attempt)
			lease(t, s, params("w", at(2*time.Hour)))
			fourth := failForGood(d.ID, "w", 1, at(2*time.Hour+time.Second))
			record(t, s, fourth)
			attempts(first.Attempt, second.Attempt, third.Attempt, fourth.Attempt)
		}},
		{"RetryDeliveringConflict", func(t *testing.T, s herald.Store) {
			_, d := leaseOne(t, s, "w")
			wantErr(t, s.DeliveryRetry(t.Context(), herald.DefaultTenant, d.ID, at(time.Minute)), herald.ErrConflict, "retry while delivering")
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryDelivering, d.ID)
			record(t, s, succeed(d.ID, "w", 1, at(time.Second)))
			wantStatus(t, s, herald.DefaultTenant, herald.DeliverySucceeded, d.ID)
		}},
		{"RetryOtherTenant", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "evil")
			_, d := leaseOne(t, s, "w")
			record(t, s, failForGood(d.ID, "w", 1, at(time.Second)))
			wantErr(t, s.DeliveryRetry(t.Context(), "evil", d.ID, at(time.Minute)), herald.ErrNotFound, "retry another tenant's delivery")
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryFailed, d.ID)
			wantErr(t, s.DeliveryRetry(t.Context(), herald.DefaultTenant, herald.NewID(herald.PrefixDelivery), at(time.Minute)), herald.ErrNotFound, "retry unknown delivery")
		}},
		{"Replay", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "evil")
			sub := newSub(t, s, herald.DefaultTenant, "r")
			other := newSub(t, s, herald.DefaultTenant, "o")
			// d0 failed (created +0), d1 succeeded (+1m), d2 pending (+2m,
			// due later), d3 failed (+3m); the other subscription's od failed.
			d := make([]string, 4)
			for i := range d {
				d[i] = publishOne(t, s, at(time.Duration(i)*time.Minute), herald.DefaultTenant, "r")
			}
			od := publishOne(t, s, at(0), herald.DefaultTenant, "o")
			must(t, s.DeliveryRelease(t.Context(), "nobody", nil, at(0)), "release nothing")
			l := lease(t, s, params("w", at(3*time.Minute)))
			diff(t, "lease", sorted(append(d[:], od)), leasedIDs(l))
			record(t, s,
				failForGood(d[0], "w", 1, at(4*time.Minute)),
				succeed(d[1], "w", 1, at(4*time.Minute)),
				retryAt(d[2], "w", 1, at(4*time.Minute), at(time.Hour)),
				failForGood(d[3], "w", 1, at(4*time.Minute)),
				failForGood(od, "w", 1, at(4*time.Minute)),
			)
			replay := func(f herald.ReplayFilter, now time.Time) int {
				t.Helper()
				n, err := s.DeliveryReplay(t.Context(), herald.DefaultTenant, sub.ID, f, now)
				must(t, err, "replay")
				return n
			}
			if n := replay(herald.ReplayFilter{Since: at(time.Minute), Until: at(3 * time.Minute)}, at(5*time.Minute)); n != 0 {
				t.Errorf("replay of [+1m, +3m) failed: %d, want 0", n)
			}
			if n := replay(herald.ReplayFilter{Until: at(3 * time.Minute)}, at(5*time.Minute)); n != 1 {
				t.Errorf("replay until +3m (exclusive): %d, want 1", n)
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryPending, d[0])
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryFailed, d[3])
			if n := replay(herald.ReplayFilter{Since: at(3 * time.Minute)}, at(5*time.Minute)); n != 1 {
				t.Errorf("replay since +3m (inclusive): %d, want 1", n)
			}
			if n := replay(herald.ReplayFilter{Status: herald.DeliverySucceeded}, at(6*time.Minute)); n != 1 {
				t.Errorf("replay of succeeded: %d, want 1", n)
			}
			if n := replay(herald.ReplayFilter{}, at(7*time.Minute)); n != 0 {
				t.Errorf("replay with none failed left: %d, want 0", n)
			}
			for i, want := range []time.Time{at(5 * time.Minute), at(6 * time.Minute), at(time.Hour), at(5 * time.Minute)} {
				got := getDelivery(t, s, herald.DefaultTenant, d[i])
				if got.Status != herald.DeliveryPending || !got.NextAttemptAt.Equal(want) {
					t.Errorf("d%d after replays: status %q due %v, want pending due %v", i, got.Status, got.NextAttemptAt, want)
				}
				if i != 2 && (got.Attempts != 0 || !got.CompletedAt.IsZero()) {
					t.Errorf("d%d replayed without a reset budget: %+v", i, got)
				}
			}
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryFailed, od)
			_, err := s.DeliveryReplay(t.Context(), "evil", other.ID, herald.ReplayFilter{}, at(8*time.Minute))
			wantErr(t, err, herald.ErrNotFound, "replay another tenant's subscription")
			wantStatus(t, s, herald.DefaultTenant, herald.DeliveryFailed, od)
		}},
	}
}

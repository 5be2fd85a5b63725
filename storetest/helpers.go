package storetest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/heraldhq/herald"
)

// Lease settings most cases use.
const (
	margin     = 5 * time.Second
	leaseLimit = 100
)

// at returns the suite's fixed base time plus d. The base has microseconds,
// as stores keep them.
func at(d time.Duration) time.Time {
	return time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC).Add(d)
}

// uuidRE matches a UUID in canonical text form.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// cmpOpts compares stored values with what was written: nil and empty
// slices and maps are equal, JSON compares by value (a store may reformat
// it), and times compare with time.Time.Equal (go-cmp's default).
func cmpOpts() cmp.Options {
	rawType := reflect.TypeFor[json.RawMessage]()
	return cmp.Options{
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() == rawType }, cmp.Comparer(jsonEqual)),
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() != rawType }, cmpopts.EquateEmpty()),
	}
}

// jsonEqual reports whether a and b hold the same JSON value (both absent
// counts as equal).
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// must fails tb at once when err is not nil.
func must(tb testing.TB, err error, what string) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// wantErr fails tb unless errors.Is(err, target).
func wantErr(tb testing.TB, err, target error, what string) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("%s: error = %v, want %v", what, err, target)
	}
}

// diff fails tb (not at once) when got differs from want.
func diff(tb testing.TB, what string, want, got any, opts ...cmp.Option) {
	tb.Helper()
	if d := cmp.Diff(want, got, append(cmp.Options{cmpOpts()}, opts...)); d != "" {
		tb.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// hashOf returns SHA-256 of the parts joined.
func hashOf(parts ...string) []byte {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return h[:]
}

// newTenant creates tenant id.
func newTenant(tb testing.TB, s herald.Store, id string) herald.Tenant {
	tb.Helper()
	tn := herald.Tenant{ID: id, Name: "Tenant " + id, CreatedAt: at(0)}
	must(tb, s.TenantCreate(tb.Context(), tn), "create tenant "+id)
	return tn
}

// subFor returns a valid subscription of tenant with the default settings
// and one signing secret, not yet stored.
func subFor(tenant string, patterns ...string) herald.Subscription {
	return herald.Subscription{
		ID:              herald.NewID(herald.PrefixSubscription),
		TenantID:        tenant,
		URL:             "https://customer.example/webhook",
		Name:            "storetest",
		Events:          patterns,
		Secrets:         []herald.Secret{{Value: "whsec_" + base64.StdEncoding.EncodeToString(randomBytes(32))}},
		SignatureScheme: herald.DefaultSignatureScheme,
		IncludePayload:  true,
		PayloadFormat:   herald.DefaultPayloadFormat,
		Mode:            herald.DefaultMode,
		Delivery: herald.DeliveryConfig{
			MaxRPS:         herald.DefaultMaxRPS,
			MaxInFlight:    herald.DefaultMaxInFlight,
			Timeout:        herald.DefaultTimeout,
			BatchMaxEvents: herald.DefaultBatchMaxEvents,
			Retry: herald.RetryPolicy{
				MaxAttempts: herald.DefaultMaxAttempts,
				Window:      herald.DefaultRetryWindow,
				Base:        herald.DefaultRetryBase,
				Cap:         herald.DefaultRetryCap,
			},
		},
		Status:    herald.StatusActive,
		CreatedAt: at(0),
		UpdatedAt: at(0),
	}
}

// createSub stores sub and returns it.
func createSub(tb testing.TB, s herald.Store, sub herald.Subscription) herald.Subscription {
	tb.Helper()
	must(tb, s.SubscriptionCreate(tb.Context(), sub), "create subscription")
	return sub
}

// newSub stores an active subscription of tenant to patterns.
func newSub(tb testing.TB, s herald.Store, tenant string, patterns ...string) herald.Subscription {
	tb.Helper()
	return createSub(tb, s, subFor(tenant, patterns...))
}

// newSubWith stores a subscription of tenant to patterns, changed by mod.
func newSubWith(tb testing.TB, s herald.Store, tenant string, mod func(*herald.Subscription), patterns ...string) herald.Subscription {
	tb.Helper()
	sub := subFor(tenant, patterns...)
	mod(&sub)
	return createSub(tb, s, sub)
}

// setStatus updates a stored subscription's status.
func setStatus(tb testing.TB, s herald.Store, sub herald.Subscription, status string) herald.Subscription {
	tb.Helper()
	sub.Status = status
	must(tb, s.SubscriptionUpdate(tb.Context(), sub), "set subscription status "+status)
	sub.Revision++
	return sub
}

// newEvent returns a live event of tenant and type typ with a new id.
func newEvent(tenant, typ string) herald.Event {
	id := herald.NewID(herald.PrefixEvent)
	return herald.Event{
		TenantID:   tenant,
		ID:         id,
		EventType:  typ,
		Version:    "1.0",
		Data:       json.RawMessage(`{"id":"` + id + `","job":{"n":1}}`),
		CreateTime: at(-time.Minute),
		Hash:       hashOf(id, typ),
	}
}

// publishReqs calls EventPublish and checks that it answers every request.
func publishReqs(tb testing.TB, s herald.Store, now time.Time, reqs ...herald.PublishRequest) []herald.PublishResult {
	tb.Helper()
	res, err := s.EventPublish(tb.Context(), now, reqs)
	must(tb, err, "publish")
	if len(res) != len(reqs) {
		tb.Fatalf("publish: %d results for %d requests", len(res), len(reqs))
	}
	return res
}

// publish publishes events and fails unless each is stored.
func publish(tb testing.TB, s herald.Store, now time.Time, evs ...herald.Event) []herald.PublishResult {
	tb.Helper()
	reqs := make([]herald.PublishRequest, len(evs))
	for i, ev := range evs {
		reqs[i] = herald.PublishRequest{Event: ev}
	}
	res := publishReqs(tb, s, now, reqs...)
	for i, r := range res {
		if r.Err != nil {
			tb.Fatalf("publish %s: result error %v", evs[i].ID, r.Err)
		}
		if r.EventID != evs[i].ID {
			tb.Fatalf("publish: result %d is for event %q, want %q", i, r.EventID, evs[i].ID)
		}
		if len(r.DeliveryIDs) != 0 && len(r.DeliveryIDs) != r.Deliveries {
			tb.Fatalf("publish %s: %d delivery ids for %d deliveries", evs[i].ID, len(r.DeliveryIDs), r.Deliveries)
		}
	}
	return res
}

// publishN publishes n events of type typ for tenant in one call at now and
// returns the delivery ids created, in publish order.
func publishN(tb testing.TB, s herald.Store, now time.Time, tenant, typ string, n int) []string {
	tb.Helper()
	evs := make([]herald.Event, n)
	for i := range evs {
		evs[i] = newEvent(tenant, typ)
	}
	var ids []string
	for _, r := range publish(tb, s, now, evs...) {
		ids = append(ids, r.DeliveryIDs...)
	}
	return ids
}

// publishOne publishes one event of type typ for tenant at now and returns
// the id of its only delivery.
func publishOne(tb testing.TB, s herald.Store, now time.Time, tenant, typ string) string {
	tb.Helper()
	ids := publishN(tb, s, now, tenant, typ, 1)
	if len(ids) != 1 {
		tb.Fatalf("publish %s: %d deliveries, want 1", typ, len(ids))
	}
	return ids[0]
}

// params returns LeaseParams for owner at now with the suite's margin and limit.
func params(owner string, now time.Time) herald.LeaseParams {
	return herald.LeaseParams{Owner: owner, Now: now, Margin: margin, Limit: leaseLimit}
}

// lease calls DeliveryLease and checks the answer's shape: no delivery
// twice, at most p.Limit (unless a batch brought more), each delivering and
// with its subscription in Subscriptions.
func lease(tb testing.TB, s herald.Store, p herald.LeaseParams) herald.Lease {
	tb.Helper()
	l, err := s.DeliveryLease(tb.Context(), p)
	must(tb, err, "lease")
	seen := map[string]bool{}
	batched := 0
	for _, ld := range l.Deliveries {
		d := ld.Delivery
		if seen[d.ID] {
			tb.Fatalf("lease: delivery %s handed out twice", d.ID)
		}
		seen[d.ID] = true
		if d.BatchID != "" {
			batched++
		}
		if d.Status != herald.DeliveryDelivering {
			tb.Errorf("lease: delivery %s has status %q, want delivering", d.ID, d.Status)
		}
		if ld.Event.ID != d.EventID || ld.Event.TenantID != d.TenantID {
			tb.Errorf("lease: delivery %s of event %s/%s comes with event %s/%s", d.ID, d.TenantID, d.EventID, ld.Event.TenantID, ld.Event.ID)
		}
		if sub, ok := l.Subscriptions[d.SubscriptionID]; !ok || sub.ID != d.SubscriptionID {
			tb.Errorf("lease: subscription %s of delivery %s missing from Subscriptions", d.SubscriptionID, d.ID)
		}
	}
	if p.Limit > 0 && len(l.Deliveries)-batched > p.Limit {
		tb.Errorf("lease: %d deliveries, limit %d", len(l.Deliveries), p.Limit)
	}
	return l
}

// leasedIDs returns the ids of a lease's deliveries, sorted.
func leasedIDs(l herald.Lease) []string {
	ids := make([]string, 0, len(l.Deliveries))
	for _, ld := range l.Deliveries {
		ids = append(ids, ld.Delivery.ID)
	}
	slices.Sort(ids)
	return ids
}

// perSub counts a lease's deliveries by subscription.
func perSub(l herald.Lease) map[string]int {
	n := map[string]int{}
	for _, ld := range l.Deliveries {
		n[ld.Delivery.SubscriptionID]++
	}
	return n
}

// sorted returns a sorted copy of ids.
func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// getDelivery returns a stored delivery.
func getDelivery(tb testing.TB, s herald.Store, tenant, id string) herald.Delivery {
	tb.Helper()
	d, _, err := s.DeliveryGet(tb.Context(), tenant, id)
	must(tb, err, "get delivery "+id)
	return d
}

// wantStatus fails tb unless every delivery in ids has status.
func wantStatus(tb testing.TB, s herald.Store, tenant, status string, ids ...string) {
	tb.Helper()
	for _, id := range ids {
		if d := getDelivery(tb, s, tenant, id); d.Status != status {
			tb.Errorf("delivery %s: status %q, want %q", id, d.Status, status)
		}
	}
}

// attempt returns attempt n started at start that got code (0: no response).
func attempt(n int, start time.Time, code int) herald.Attempt {
	a := herald.Attempt{N: n, StartedAt: start, Duration: 125 * time.Millisecond, StatusCode: code}
	if code == 0 {
		a.Error = "dial tcp 192.0.2.1:443: connect: connection refused"
	} else {
		a.ResponseBody = `{"received":` + strings.Repeat("1", n) + `}`
	}
	return a
}

// succeed is the outcome of a successful attempt n at now.
func succeed(id, owner string, n int, now time.Time) herald.Outcome {
	return herald.Outcome{DeliveryID: id, Owner: owner, Attempt: attempt(n, now.Add(-time.Second), 200), Status: herald.DeliverySucceeded, Now: now}
}

// retryAt is the outcome of a failed attempt n at now, to be retried at next.
func retryAt(id, owner string, n int, now, next time.Time) herald.Outcome {
	return herald.Outcome{
		DeliveryID: id, Owner: owner, Attempt: attempt(n, now.Add(-time.Second), 500),
		Status: herald.DeliveryPending, NextAttemptAt: next, LastSleep: next.Sub(now), Now: now,
	}
}

// failForGood is the outcome of a failed last attempt n at now.
func failForGood(id, owner string, n int, now time.Time) herald.Outcome {
	return herald.Outcome{DeliveryID: id, Owner: owner, Attempt: attempt(n, now.Add(-time.Second), 0), Status: herald.DeliveryFailed, Now: now}
}

// record calls DeliveryRecord.
func record(tb testing.TB, s herald.Store, outs ...herald.Outcome) {
	tb.Helper()
	must(tb, s.DeliveryRecord(tb.Context(), outs), "record outcomes")
}

// leaseAndRecord leases everything due at now for owner and records for
// each leased delivery the outcome out returns.
func leaseAndRecord(tb testing.TB, s herald.Store, owner string, now time.Time, out func(id string) herald.Outcome) []string {
	tb.Helper()
	l := lease(tb, s, params(owner, now))
	outs := make([]herald.Outcome, 0, len(l.Deliveries))
	for _, ld := range l.Deliveries {
		outs = append(outs, out(ld.Delivery.ID))
	}
	record(tb, s, outs...)
	return leasedIDs(l)
}

// maxPages bounds page walks, so a cursor that never ends fails the test.
const maxPages = 1000

// walk pages through a list with page size limit and returns the pages. It
// checks that every page but the last is full, that the last one has no
// next cursor, and that only an empty list has an empty page.
func walk[T any](tb testing.TB, limit int, list func(herald.Page) ([]T, string, error)) [][]T {
	tb.Helper()
	var pages [][]T
	cursor := ""
	for range maxPages {
		items, next, err := list(herald.Page{Limit: limit, Cursor: cursor})
		must(tb, err, "list page")
		if len(items) > limit {
			tb.Fatalf("page %d: %d items, limit %d", len(pages), len(items), limit)
		}
		if len(items) == 0 && len(pages) > 0 {
			tb.Fatalf("page %d: empty page after a next cursor", len(pages))
		}
		pages = append(pages, items)
		if next == "" {
			return pages
		}
		if len(items) < limit {
			tb.Fatalf("page %d: %d items with limit %d yet a next cursor", len(pages)-1, len(items), limit)
		}
		cursor = next
	}
	tb.Fatalf("list does not end after %d pages", maxPages)
	return nil
}

// pageIDs maps each page's items to their ids.
func pageIDs[T any](pages [][]T, id func(T) string) [][]string {
	out := make([][]string, len(pages))
	for i, p := range pages {
		out[i] = []string{}
		for _, it := range p {
			out[i] = append(out[i], id(it))
		}
	}
	return out
}

// flat joins pages.
func flat[T any](pages [][]T) []T {
	var out []T
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

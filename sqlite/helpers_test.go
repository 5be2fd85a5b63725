package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// t0 is the tests' clock origin.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

func testSealer(tb testing.TB) *herald.Sealer {
	tb.Helper()
	key := make([]byte, herald.MasterKeySize)
	_, _ = rand.Read(key)
	s, err := herald.NewSealer(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// openAt opens a store on path without migrating.
func openAt(tb testing.TB, path string, sealer *herald.Sealer) *Store {
	tb.Helper()
	st, err := Open(context.Background(), Config{Path: path, Sealer: sealer, Now: func() time.Time { return t0 }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// newStore returns a migrated store in a fresh directory.
func newStore(tb testing.TB) *Store {
	tb.Helper()
	st := openAt(tb, filepath.Join(tb.TempDir(), "herald.db"), testSealer(tb))
	if err := st.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return st
}

// sub returns a valid subscription of tenant with the given patterns.
func sub(tenant string, patterns ...string) herald.Subscription {
	return herald.Subscription{
		ID:              herald.NewID(herald.PrefixSubscription),
		TenantID:        tenant,
		URL:             "https://example.com/hook",
		Events:          patterns,
		Secrets:         []herald.Secret{{Value: "whsec_" + herald.NewUUID()}},
		SignatureScheme: herald.DefaultSignatureScheme,
		IncludePayload:  true,
		PayloadFormat:   herald.DefaultPayloadFormat,
		Mode:            herald.ModeLive,
		Delivery: herald.DeliveryConfig{
			MaxRPS:         herald.DefaultMaxRPS,
			MaxInFlight:    herald.DefaultMaxInFlight,
			Timeout:        herald.DefaultTimeout,
			BatchMaxEvents: 1,
			Retry: herald.RetryPolicy{MaxAttempts: 3, Window: time.Hour, Base: 5 * time.Second,
				Cap: 30 * time.Minute},
		},
		Status:    herald.StatusActive,
		CreatedAt: t0,
		UpdatedAt: t0,
	}
}

func mustCreate(tb testing.TB, st *Store, subs ...herald.Subscription) {
	tb.Helper()
	for _, s := range subs {
		if err := st.SubscriptionCreate(context.Background(), s); err != nil {
			tb.Fatal(err)
		}
	}
}

// event returns a publish request of a new event.
func event(tenant, typ string) herald.PublishRequest {
	return herald.PublishRequest{Event: herald.Event{
		TenantID:   tenant,
		ID:         herald.NewID(herald.PrefixEvent),
		EventType:  typ,
		Version:    "1.0",
		Data:       json.RawMessage(`{"n":1}`),
		CreateTime: t0,
		Hash:       []byte("h"),
	}}
}

// mustPublish publishes reqs at now and fails on any error.
func mustPublish(tb testing.TB, st *Store, now time.Time, reqs ...herald.PublishRequest) []herald.PublishResult {
	tb.Helper()
	res, err := st.EventPublish(context.Background(), now, reqs)
	if err != nil {
		tb.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			tb.Fatalf("publish %d: %v", i, r.Err)
		}
	}
	return res
}

// publishN publishes n events of typ for tenant at now.
func publishN(tb testing.TB, st *Store, now time.Time, tenant, typ string, n int) []herald.PublishResult {
	tb.Helper()
	reqs := make([]herald.PublishRequest, n)
	for i := range reqs {
		reqs[i] = event(tenant, typ)
	}
	return mustPublish(tb, st, now, reqs...)
}

func mustLease(tb testing.TB, st *Store, p herald.LeaseParams) herald.Lease {
	tb.Helper()
	if p.Owner == "" {
		p.Owner = "owner-1"
	}
	if p.Margin == 0 {
		p.Margin = 5 * time.Second
	}
	l, err := st.DeliveryLease(context.Background(), p)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// countBySub counts leased deliveries per subscription.
func countBySub(l herald.Lease) map[string]int {
	m := map[string]int{}
	for _, d := range l.Deliveries {
		m[d.Delivery.SubscriptionID]++
	}
	return m
}

func outcome(ld herald.LeasedDelivery, owner, status string, now time.Time) herald.Outcome {
	o := herald.Outcome{
		DeliveryID: ld.Delivery.ID,
		Owner:      owner,
		Attempt:    herald.Attempt{N: ld.Delivery.Attempts + 1, StartedAt: now, Duration: time.Millisecond},
		Status:     status,
		Now:        now,
	}
	switch status {
	case herald.DeliverySucceeded:
		o.Attempt.StatusCode = 200
	default:
		o.Attempt.StatusCode = 500
		o.Attempt.ResponseBody = "boom"
	}
	if status == herald.DeliveryPending {
		o.NextAttemptAt = now.Add(time.Minute)
		o.LastSleep = time.Minute
	}
	return o
}

func mustRecord(tb testing.TB, st *Store, outcomes ...herald.Outcome) {
	tb.Helper()
	if err := st.DeliveryRecord(context.Background(), outcomes); err != nil {
		tb.Fatal(err)
	}
}

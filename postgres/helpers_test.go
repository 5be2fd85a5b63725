package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// t0 is the tests' clock origin.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)

// testURL returns TEST_DATABASE_URL, or skips tb when it is unset.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		tb.Skip("TEST_DATABASE_URL is not set")
	}
	return u
}

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

// freshSchema returns the name of a schema that does not exist yet and is
// dropped, with everything in it, when tb ends.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	url := testURL(tb)
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "herald_test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openSchema opens a store on schema without migrating; it is closed when
// tb ends (before the schema is dropped).
func openSchema(tb testing.TB, schema string, sealer *herald.Sealer) *Store {
	tb.Helper()
	st, err := Open(context.Background(), Config{
		URL: testURL(tb), Sealer: sealer, Schema: schema, MaxConns: 4,
		Now: func() time.Time { return t0 },
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// newStore returns a migrated store in a fresh schema.
func newStore(tb testing.TB) *Store {
	tb.Helper()
	st := openSchema(tb, freshSchema(tb), testSealer(tb))
	if err := st.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return st
}

// sub returns a valid active subscription of tenant with the given patterns.
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

// event returns a publish request for a new event of tenant and type typ.
func event(tenant, typ string) herald.PublishRequest {
	id := herald.NewID(herald.PrefixEvent)
	return herald.PublishRequest{Event: herald.Event{
		TenantID: tenant, ID: id, EventType: typ, Version: "1.0",
		Data: json.RawMessage(`{"n":1}`), CreateTime: t0, Hash: []byte(id),
	}}
}

func mustPublish(tb testing.TB, st *Store, now time.Time, reqs ...herald.PublishRequest) []herald.PublishResult {
	tb.Helper()
	res, err := st.EventPublish(context.Background(), now, reqs)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			tb.Fatalf("publish %s: %v", r.EventID, r.Err)
		}
	}
	return res
}

// publishN publishes n events of type typ and returns their delivery ids.
func publishN(tb testing.TB, st *Store, now time.Time, tenant, typ string, n int) []string {
	tb.Helper()
	reqs := make([]herald.PublishRequest, n)
	for i := range reqs {
		reqs[i] = event(tenant, typ)
	}
	var ids []string
	for _, r := range mustPublish(tb, st, now, reqs...) {
		ids = append(ids, r.DeliveryIDs...)
	}
	return ids
}

func mustLease(tb testing.TB, st *Store, p herald.LeaseParams) herald.Lease {
	tb.Helper()
	l, err := st.DeliveryLease(context.Background(), p)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func mustRecord(tb testing.TB, st *Store, outs ...herald.Outcome) {
	tb.Helper()
	if err := st.DeliveryRecord(context.Background(), outs); err != nil {
		tb.Fatal(err)
	}
}

// outcome is an outcome of ld for owner with status at now.
func outcome(ld herald.LeasedDelivery, owner, status string, now time.Time) herald.Outcome {
	o := herald.Outcome{
		DeliveryID: ld.Delivery.ID, Owner: owner, Status: status, Now: now,
		Attempt: herald.Attempt{N: ld.Delivery.Attempts + 1, StartedAt: now, Duration: time.Millisecond, StatusCode: 200},
	}
	if status != herald.DeliverySucceeded {
		o.Attempt.StatusCode = 500
	}
	if status == herald.DeliveryPending {
		o.NextAttemptAt = now.Add(time.Minute)
	}
	return o
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// uuid7RE matches the text of a UUIDv7 (version 7, RFC 9562 variant).
var uuid7RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestIDsAreUUIDv7(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub(herald.DefaultTenant, "*"), sub(herald.DefaultTenant, "*"))
	before := time.Now().Add(-time.Second)
	ids := publishN(t, st, t0, herald.DefaultTenant, "job.status", 3)
	after := time.Now().Add(time.Second)
	if len(ids) != 6 {
		t.Fatalf("%d deliveries, want 6", len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		d, _, err := st.DeliveryGet(t.Context(), herald.DefaultTenant, id)
		if err != nil {
			t.Fatal(err)
		}
		u, ok := strings.CutPrefix(id, herald.PrefixDelivery)
		for _, v := range []string{u, d.TraceID} {
			if !ok || !uuid7RE.MatchString(v) {
				t.Fatalf("delivery %s: %q is not a UUIDv7", id, v)
			}
			var ms int64
			if _, err := fmt.Sscanf(strings.ReplaceAll(v[:13], "-", ""), "%x", &ms); err != nil {
				t.Fatal(err)
			}
			if at := time.UnixMilli(ms); at.Before(before) || at.After(after) {
				t.Errorf("UUIDv7 %s carries time %v, not the publish's", v, at)
			}
			if seen[v] {
				t.Errorf("%s given twice", v)
			}
			seen[v] = true
		}
	}
}

// TestRecordOneCallInOrder checks that several outcomes of one subscription
// in one call set FailingSince as if recorded one by one.
func TestRecordOneCallInOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status []string
		want   int // index of the outcome whose start FailingSince is; -1: zero
	}{
		{"failure then success", []string{herald.DeliveryFailed, herald.DeliverySucceeded}, -1},
		{"success then failure", []string{herald.DeliverySucceeded, herald.DeliveryPending}, 1},
		{"two failures", []string{herald.DeliveryPending, herald.DeliveryFailed}, 0},
		{"failure success failure", []string{herald.DeliveryFailed, herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryFailed}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			s := sub(herald.DefaultTenant, "*")
			mustCreate(t, st, s)
			publishN(t, st, t0, herald.DefaultTenant, "a", len(tc.status))
			l := mustLease(t, st, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Second, Limit: 10})
			if len(l.Deliveries) != len(tc.status) {
				t.Fatalf("leased %d", len(l.Deliveries))
			}
			outs := make([]herald.Outcome, len(tc.status))
			for i, status := range tc.status {
				outs[i] = outcome(l.Deliveries[i], "w", status, t0.Add(time.Duration(i+1)*time.Second))
			}
			mustRecord(t, st, outs...)
			got, err := st.SubscriptionGet(t.Context(), herald.DefaultTenant, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := time.Time{}
			if tc.want >= 0 {
				want = outs[tc.want].Attempt.StartedAt
			}
			if !got.FailingSince.Equal(want) {
				t.Errorf("FailingSince %v, want %v", got.FailingSince, want)
			}
		})
	}
}

// TestSuccessWritesNoAttemptRow: a success's attempt is kept on its
// delivery's row (migration 0005), a failure's in attempts, and both read
// back as the delivery's history.
func TestSuccessWritesNoAttemptRow(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub(herald.DefaultTenant, "*"))
	publishN(t, st, t0, herald.DefaultTenant, "a", 2)
	l := mustLease(t, st, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Second, Limit: 10})
	mustRecord(t, st, outcome(l.Deliveries[0], "w", herald.DeliverySucceeded, t0),
		outcome(l.Deliveries[1], "w", herald.DeliveryFailed, t0))
	var rows int
	var only string
	if err := st.withConn(t.Context(), func(c *pgx.Conn) error {
		return c.QueryRow(t.Context(), `SELECT count(*), max(a.delivery_id) FROM attempts a
			JOIN deliveries d ON d.id = a.delivery_id WHERE d.id = ANY($1)`,
			[]string{l.Deliveries[0].Delivery.ID, l.Deliveries[1].Delivery.ID}).Scan(&rows, &only)
	}); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || only != l.Deliveries[1].Delivery.ID {
		t.Errorf("attempt rows: %d (of %s), want the failure's alone", rows, only)
	}
	for _, ld := range l.Deliveries {
		if _, attempts, err := st.DeliveryGet(t.Context(), herald.DefaultTenant, ld.Delivery.ID); err != nil || len(attempts) != 1 || attempts[0].N != 1 {
			t.Errorf("%s: attempts %+v, %v", ld.Delivery.ID, attempts, err)
		}
	}
}

// TestRecordStoresAnyResponse stores what an endpoint may answer that
// PostgreSQL text refuses: NUL and invalid UTF-8, cut to 4 KiB, in an
// attempt row and on the row of a success.
func TestRecordStoresAnyResponse(t *testing.T) {
	t.Parallel()
	for _, status := range []string{herald.DeliveryPending, herald.DeliverySucceeded} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			recordAnyResponse(t, status)
		})
	}
}

func recordAnyResponse(t *testing.T, status string) {
	st := newStore(t)
	mustCreate(t, st, sub(herald.DefaultTenant, "*"))
	publishN(t, st, t0, herald.DefaultTenant, "a", 1)
	l := mustLease(t, st, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Second, Limit: 10})
	o := outcome(l.Deliveries[0], "w", status, t0)
	o.Attempt.ResponseBody = "a\x00b\xff" + strings.Repeat("é", herald.MaxStoredResponse)
	o.Attempt.Error = "read: \x00\xfe"
	mustRecord(t, st, o)
	d, attempts, err := st.DeliveryGet(t.Context(), herald.DefaultTenant, o.DeliveryID)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 1 {
		t.Fatalf("%d attempts", len(attempts))
	}
	body := attempts[0].ResponseBody
	if !strings.HasPrefix(body, "ab\uFFFDé") || len(body) > herald.MaxStoredResponse || !utf8.ValidString(body) {
		t.Errorf("stored body %q… (%d bytes)", body[:min(len(body), 12)], len(body))
	}
	if attempts[0].Error != "read: \uFFFD" || d.LastError != "read: \uFFFD" {
		t.Errorf("stored error %q, last error %q", attempts[0].Error, d.LastError)
	}
}

func TestCleanText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"plain", 0, "plain"},
		{"a\x00b", 0, "ab"},
		{"a\xffb", 0, "a\uFFFDb"},
		{"abcdef", 4, "abcd"},
		{"abé", 3, "ab"}, // é is two bytes: not split
		{"", 4, ""},
	} {
		if got := cleanText(tc.in, tc.limit); got != tc.want {
			t.Errorf("cleanText(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

// TestEventAbsentFields stores an event without data, create time or hash
// as NULLs and reads them back as absent.
func TestEventAbsentFields(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	req := event(herald.DefaultTenant, "a")
	req.Event.Data, req.Event.CreateTime, req.Event.Hash = nil, time.Time{}, nil
	mustPublish(t, st, t0, req)
	got, err := st.EventGet(t.Context(), herald.DefaultTenant, req.Event.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Data != nil || !got.CreateTime.IsZero() || got.Hash != nil {
		t.Errorf("event %+v, want no data, create time or hash", got)
	}
	var nulls int
	err = st.withConn(t.Context(), func(c *pgx.Conn) error {
		return c.QueryRow(t.Context(), `SELECT num_nulls(data, create_time, hash) FROM events WHERE id = $1`, req.Event.ID).Scan(&nulls)
	})
	if err != nil || nulls != 3 {
		t.Errorf("%d of data, create_time, hash stored as NULL (%v), want 3", nulls, err)
	}
	// Repeating it answers the same: a NULL hash equals an absent one.
	res := mustPublish(t, st, t0, req)
	if res[0].Err != nil || res[0].Deliveries != 0 {
		t.Errorf("repeat: %+v", res[0])
	}
}

// TestUnusedLaneFreed checks that a lane claimed by a lease that then took
// nothing from it (its batch did not fit the limit) is free for another
// owner at once, not held until its expiry.
func TestUnusedLaneFreed(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	a, b := sub(herald.DefaultTenant, "a"), sub(herald.DefaultTenant, "b")
	b.Delivery.BatchMaxEvents = 3
	mustCreate(t, st, a, b)
	publishN(t, st, t0, herald.DefaultTenant, "a", 1)
	bIDs := publishN(t, st, t0.Add(time.Second), herald.DefaultTenant, "b", 3)
	// Put b's three in one batch, due after a's one.
	l := mustLease(t, st, herald.LeaseParams{Owner: "w0", Now: t0.Add(time.Second), Margin: time.Second, Exclude: []string{a.ID}, Limit: 10})
	var outs []herald.Outcome
	for _, ld := range l.Deliveries {
		o := outcome(ld, "w0", herald.DeliveryPending, t0.Add(time.Second))
		o.NextAttemptAt, o.BatchID = t0.Add(time.Minute), "bat_b"
		outs = append(outs, o)
	}
	if len(outs) != 3 {
		t.Fatalf("leased %d of b's, want 3", len(outs))
	}
	mustRecord(t, st, outs...)
	if err := st.DeliveryRelease(t.Context(), "w0", nil, t0); err != nil {
		t.Fatal(err)
	}

	// w1 with limit 2 takes a's one (due first); b's batch of 3 does not fit.
	now := t0.Add(time.Minute)
	l = mustLease(t, st, herald.LeaseParams{Owner: "w1", Now: now, Margin: time.Second, Limit: 2})
	if got := perSubscription(l); len(got) != 1 || got[a.ID] != 1 {
		t.Fatalf("w1 leased %v, want a's one", got)
	}
	// b's lane is free: w2 gets the batch.
	l = mustLease(t, st, herald.LeaseParams{Owner: "w2", Now: now, Margin: time.Second, Limit: 10})
	if got := perSubscription(l); len(got) != 1 || got[b.ID] != len(bIDs) {
		t.Fatalf("w2 leased %v, want b's batch of %d", got, len(bIDs))
	}
}

func perSubscription(l herald.Lease) map[string]int {
	n := map[string]int{}
	for _, ld := range l.Deliveries {
		n[ld.Delivery.SubscriptionID]++
	}
	return n
}

// TestTwoStoresShareWork runs two stores (two processes) leasing and
// recording the same subscriptions at once: every delivery is attempted
// exactly once, and a lane never serves both at the same time.
func TestTwoStoresShareWork(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	sealer := testSealer(t)
	stores := []*Store{openSchema(t, schema, sealer), openSchema(t, schema, sealer)}
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	const subs, each = 12, 20
	var ids []string
	for i := range subs {
		s := sub(herald.DefaultTenant, fmt.Sprint("s", i))
		s.Delivery.MaxInFlight = 4
		s.Ordered = i%3 == 0
		mustCreate(t, stores[0], s)
	}
	for i := range subs {
		ids = append(ids, publishN(t, stores[i%2], t0, herald.DefaultTenant, fmt.Sprint("s", i), each)...)
	}

	// Now stands still and leases last a minute: a lane, once claimed,
	// stays its owner's to the end.
	var mu sync.Mutex
	holder := map[string]string{} // subscription -> owner
	var wg sync.WaitGroup
	errs := make([]error, 4)
	// A worker that fails stops the others, which may be waiting for work
	// it held.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for w := range errs {
		wg.Go(func() {
			defer func() {
				if errs[w] != nil {
					cancel()
				}
			}()
			st, owner := stores[w%2], fmt.Sprint("owner", w)
			// Each lease that takes something takes at least one delivery.
			for taken := 0; ; {
				l, err := st.DeliveryLease(ctx, herald.LeaseParams{Owner: owner, Now: t0, Margin: time.Minute, Limit: 7})
				if err != nil {
					errs[w] = err
					return
				}
				if len(l.Deliveries) == 0 {
					n, err := st.DeliveryPendingCount(ctx)
					if err != nil || n == 0 {
						errs[w] = err
						return
					}
					// The work left is in lanes other owners hold:
					// wait for them to finish it.
					time.Sleep(time.Millisecond)
					continue
				}
				if taken++; taken > subs*each {
					errs[w] = fmt.Errorf("%s: %d leases took something, more than there are deliveries", owner, taken)
					return
				}
				mu.Lock()
				for _, ld := range l.Deliveries {
					s := ld.Delivery.SubscriptionID
					if h, ok := holder[s]; ok && h != owner {
						t.Errorf("subscription %s served by %s and %s", s, h, owner)
					}
					holder[s] = owner
				}
				mu.Unlock()
				outs := make([]herald.Outcome, len(l.Deliveries))
				for i, ld := range l.Deliveries {
					outs[i] = outcome(ld, owner, herald.DeliverySucceeded, t0)
				}
				if err := st.DeliveryRecord(ctx, outs); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err) // the cause, among the others' "context canceled"
	}
	for _, id := range ids {
		d, attempts, err := stores[0].DeliveryGet(t.Context(), herald.DefaultTenant, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != herald.DeliverySucceeded || len(attempts) != 1 {
			t.Errorf("delivery %s: %s with %d attempts, want succeeded with 1", id, d.Status, len(attempts))
		}
	}
}

// TestPublishSameIDAtOnce publishes one event id through two stores at
// once, many times: the tenant's publish lock makes the second a repeat
// (same deliveries, nothing new), never an error.
func TestPublishSameIDAtOnce(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	sealer := testSealer(t)
	stores := []*Store{openSchema(t, schema, sealer), openSchema(t, schema, sealer)}
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, stores[0], sub(herald.DefaultTenant, "*"))
	for range 10 {
		req := event(herald.DefaultTenant, "a")
		results := make([][]herald.PublishResult, len(stores))
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		for i, st := range stores {
			wg.Go(func() { results[i], errs[i] = st.EventPublish(t.Context(), t0, []herald.PublishRequest{req}) })
		}
		wg.Wait()
		created := 0
		for i := range stores {
			if errs[i] != nil || results[i][0].Err != nil || results[i][0].Deliveries != 1 {
				t.Fatalf("store %d: %+v, %v", i, results[i], errs[i])
			}
			created += len(results[i][0].DeliveryIDs)
		}
		if created != 1 {
			t.Fatalf("%d deliveries created for one event, want 1", created)
		}
	}
}

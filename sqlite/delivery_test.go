package sqlite

import (
	"context"
	"errors"
	"math/bits"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
)

func TestRetryAndReplay(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	s := sub("t1", "*")
	mustCreate(t, st, s)
	publishN(t, st, t0, "t1", "a", 3)
	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 10})
	if len(l.Deliveries) != 3 {
		t.Fatalf("leased %d", len(l.Deliveries))
	}
	a, b, c := l.Deliveries[0], l.Deliveries[1], l.Deliveries[2]
	if err := st.DeliveryRetry(ctx, "t1", a.Delivery.ID, t0); !errors.Is(err, herald.ErrConflict) {
		t.Fatalf("retry while delivering: %v", err)
	}
	mustRecord(t, st,
		outcome(a, "owner-1", herald.DeliveryFailed, t0),
		outcome(b, "owner-1", herald.DeliverySucceeded, t0),
		outcome(c, "owner-1", herald.DeliveryFailed, t0))
	if err := st.DeliveryRetry(ctx, "t2", a.Delivery.ID, t0); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("retry another tenant's: %v", err)
	}
	t1 := t0.Add(time.Hour)
	if err := st.DeliveryRetry(ctx, "t1", a.Delivery.ID, t1); err != nil {
		t.Fatal(err)
	}
	d, _, err := st.DeliveryGet(ctx, "t1", a.Delivery.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != herald.DeliveryPending || d.Attempts != 0 || !d.FirstAttemptAt.IsZero() || !d.CompletedAt.IsZero() ||
		!d.NextAttemptAt.Equal(t1) || d.LastSleep != 0 || d.BatchID != "" {
		t.Fatalf("retried = %+v", d)
	}
	n, err := st.DeliveryReplay(ctx, "t1", s.ID, herald.ReplayFilter{}, t1)
	if err != nil || n != 1 {
		t.Fatalf("replay failed and cancelled = %d, %v; want 1 (c)", n, err)
	}
	n, err = st.DeliveryReplay(ctx, "t1", s.ID, herald.ReplayFilter{Status: herald.DeliverySucceeded, Since: t0, Until: t1}, t1)
	if err != nil || n != 1 {
		t.Fatalf("replay succeeded = %d, %v; want 1 (b)", n, err)
	}
	n, err = st.DeliveryReplay(ctx, "t1", s.ID, herald.ReplayFilter{Status: herald.DeliverySucceeded, Until: t0}, t1)
	if err != nil || n != 0 {
		t.Fatalf("replay before any = %d, %v", n, err)
	}
	if _, err := st.DeliveryReplay(ctx, "t2", s.ID, herald.ReplayFilter{}, t1); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("replay another tenant's subscription: %v", err)
	}
	if cnt, err := st.DeliveryPendingCount(ctx); err != nil || cnt != 3 {
		t.Fatalf("pending = %d, %v", cnt, err)
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	mustCreate(t, st, sub("t1", "*"))
	publishN(t, st, t0, "t1", "a", 3)
	l := mustLease(t, st, herald.LeaseParams{Owner: "one", Now: t0, Limit: 10})
	later := t0.Add(time.Minute)
	if err := st.DeliveryRelease(ctx, "two", nil, t0); err != nil {
		t.Fatal(err)
	}
	if err := st.DeliveryRelease(ctx, "one", []string{l.Deliveries[0].Delivery.ID}, later); err != nil {
		t.Fatal(err)
	}
	d, _, _ := st.DeliveryGet(ctx, "t1", l.Deliveries[0].Delivery.ID)
	if d.Status != herald.DeliveryPending || !d.NextAttemptAt.Equal(later) {
		t.Fatalf("released = %+v", d)
	}
	d, _, _ = st.DeliveryGet(ctx, "t1", l.Deliveries[1].Delivery.ID)
	if d.Status != herald.DeliveryDelivering {
		t.Fatalf("other owner released it: %+v", d)
	}
	// Releasing all frees the lane too: another owner takes over at once.
	if err := st.DeliveryRelease(ctx, "one", nil, t0); err != nil {
		t.Fatal(err)
	}
	if n := len(mustLease(t, st, herald.LeaseParams{Owner: "two", Now: t0, Limit: 10}).Deliveries); n != 2 {
		t.Fatalf("after release two leased %d, want 2", n)
	}
}

func TestSubscriptionDeleteCancels(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	s, keep := sub("t1", "*"), sub("t1", "*")
	mustCreate(t, st, s, keep)
	publishN(t, st, t0, "t1", "a", 2)
	mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 1, Exclude: []string{keep.ID}})
	if err := st.SubscriptionDelete(ctx, "t2", s.ID, t0); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("delete another tenant's: %v", err)
	}
	t1 := t0.Add(time.Second)
	if err := st.SubscriptionDelete(ctx, "t1", s.ID, t1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SubscriptionGet(ctx, "t1", s.ID); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	ds, _, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{SubscriptionID: s.ID})
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries = %d, %v", len(ds), err)
	}
	for _, d := range ds {
		if d.Status != herald.DeliveryCancelled || !d.CompletedAt.Equal(t1) {
			t.Errorf("after delete: %+v", d)
		}
	}
	if n, err := st.DeliveryPendingCount(ctx); err != nil || n != 2 {
		t.Fatalf("pending = %d, %v (keep's two)", n, err)
	}
	// The deleted subscription's events fan out to it no more.
	if r := publishN(t, st, t1, "t1", "a", 1)[0]; r.Deliveries != 1 {
		t.Fatalf("deliveries after delete = %d", r.Deliveries)
	}
}

func TestNextDue(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	if _, ok, err := st.DeliveryNextDue(ctx); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	paused, active := sub("t1", "p"), sub("t1", "a")
	paused.Status = herald.StatusPaused
	mustCreate(t, st, paused, active)
	publishN(t, st, t0, "t1", "p", 1)
	if _, ok, err := st.DeliveryNextDue(ctx); ok || err != nil {
		t.Fatalf("paused only: ok %v err %v", ok, err)
	}
	t1 := t0.Add(time.Minute)
	publishN(t, st, t1, "t1", "a", 1)
	publishN(t, st, t1.Add(time.Minute), "t1", "a", 1)
	if at, ok, err := st.DeliveryNextDue(ctx); !ok || err != nil || !at.Equal(t1) {
		t.Fatalf("next due = %v %v %v, want %v", at, ok, err, t1)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	mustCreate(t, st, sub("t1", "a"))
	done := publishN(t, st, t0, "t1", "a", 3)
	open := publishN(t, st, t0, "t1", "a", 1)[0]
	orphan := publishN(t, st, t0, "t1", "nobody", 1)[0]
	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 3})
	var outs []herald.Outcome
	for _, ld := range l.Deliveries {
		outs = append(outs, outcome(ld, "owner-1", herald.DeliverySucceeded, t0))
	}
	mustRecord(t, st, outs...)
	before := t0.Add(time.Hour)
	n, err := st.Purge(ctx, before, 2)
	if err != nil || n != 2 {
		t.Fatalf("purge = %d, %v; want 2 (the limit)", n, err)
	}
	n, err = st.Purge(ctx, before, 10)
	if err != nil || n != 1 {
		t.Fatalf("purge = %d, %v; want 1", n, err)
	}
	for _, r := range done {
		if _, _, err := st.DeliveryGet(ctx, "t1", r.DeliveryIDs[0]); !errors.Is(err, herald.ErrNotFound) {
			t.Errorf("purged delivery: %v", err)
		}
		if _, err := st.EventGet(ctx, "t1", r.EventID); !errors.Is(err, herald.ErrNotFound) {
			t.Errorf("purged event: %v", err)
		}
	}
	var attempts int
	if err := st.r.QueryRow(`SELECT count(*) FROM attempts`).Scan(&attempts); err != nil || attempts != 0 {
		t.Errorf("attempts left = %d, %v", attempts, err)
	}
	if _, err := st.EventGet(ctx, "t1", open.EventID); err != nil {
		t.Errorf("event with a pending delivery purged: %v", err)
	}
	if _, err := st.EventGet(ctx, "t1", orphan.EventID); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("event without deliveries kept: %v", err)
	}
}

func TestLists(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	var subs []herald.Subscription
	for range 5 {
		subs = append(subs, sub("t1", "a"))
	}
	mustCreate(t, st, subs...)
	mustCreate(t, st, sub("t2", "a"))
	var events []herald.PublishResult
	for i := range 5 {
		events = append(events, publishN(t, st, t0.Add(time.Duration(i)*time.Second), "t1", "a", 1)...)
	}
	publishN(t, st, t0, "t2", "a", 1)

	// Subscriptions, oldest first, two at a time.
	var got []string
	cursor := ""
	for {
		page, next, err := st.SubscriptionList(ctx, "t1", herald.Page{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			got = append(got, s.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != 5 {
		t.Fatalf("listed %d subscriptions", len(got))
	}
	for i := range got {
		if got[i] != subs[i].ID {
			t.Fatalf("subscription %d = %s, want %s", i, got[i], subs[i].ID)
		}
	}

	// Events, newest first, with a time window.
	es, next, err := st.EventList(ctx, "t1", herald.EventFilter{Page: herald.Page{Limit: 2}})
	if err != nil || len(es) != 2 || next == "" || es[0].ID != events[4].EventID || es[1].ID != events[3].EventID {
		t.Fatalf("events page 1 = %v %q %v", es, next, err)
	}
	es, _, err = st.EventList(ctx, "t1", herald.EventFilter{Page: herald.Page{Cursor: next}, Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)})
	if err != nil || len(es) != 2 || es[0].ID != events[2].EventID || es[1].ID != events[1].EventID {
		t.Fatalf("events window = %v %v", es, err)
	}
	if _, _, err := st.EventList(ctx, "t1", herald.EventFilter{Page: herald.Page{Cursor: "x!"}}); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}

	// Deliveries, newest first, 25 in all, by filters.
	all, next, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{Page: herald.Page{Limit: 20}})
	if err != nil || len(all) != 20 || next == "" {
		t.Fatalf("deliveries page 1 = %d %q %v", len(all), next, err)
	}
	rest, next, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{Page: herald.Page{Limit: 20, Cursor: next}})
	if err != nil || len(rest) != 5 || next != "" || rest[0].Seq >= all[19].Seq {
		t.Fatalf("deliveries page 2 = %d %q %v", len(rest), next, err)
	}
	bySub, _, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{SubscriptionID: subs[0].ID})
	if err != nil || len(bySub) != 5 {
		t.Fatalf("by subscription = %d %v", len(bySub), err)
	}
	byEvent, _, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{EventID: events[0].EventID, Status: herald.DeliveryPending})
	if err != nil || len(byEvent) != 5 {
		t.Fatalf("by event = %d %v", len(byEvent), err)
	}
	none, _, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{Status: herald.DeliveryFailed})
	if err != nil || len(none) != 0 {
		t.Fatalf("failed = %d %v", len(none), err)
	}
	other, _, err := st.DeliveryList(ctx, "t2", herald.DeliveryFilter{SubscriptionID: subs[0].ID})
	if err != nil || len(other) != 0 {
		t.Fatalf("another tenant's = %d %v", len(other), err)
	}
}

func TestTenantsKeysSettings(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	for _, id := range []string{"b", "a", "c"} {
		if err := st.TenantCreate(ctx, herald.Tenant{ID: id, Name: id, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.TenantCreate(ctx, herald.Tenant{ID: "a"}); !errors.Is(err, herald.ErrConflict) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	page, next, err := st.TenantList(ctx, herald.Page{Limit: 3})
	if err != nil || len(page) != 3 || page[0].ID != "a" || page[2].ID != "c" || next == "" {
		t.Fatalf("tenants = %v %q %v", page, next, err)
	}
	page, next, err = st.TenantList(ctx, herald.Page{Limit: 3, Cursor: next})
	if err != nil || len(page) != 1 || page[0].ID != herald.DefaultTenant || next != "" {
		t.Fatalf("tenants page 2 = %v %q %v", page, next, err)
	}

	k := herald.APIKey{ID: "key_1", TenantID: "a", Prefix: "hk_ab", Hash: []byte("hash-1"), CreatedAt: t0}
	if err := st.APIKeyCreate(ctx, k); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []herald.APIKey{
		{ID: "key_1", TenantID: "a", Hash: []byte("hash-2")},
		{ID: "key_2", TenantID: "a", Hash: []byte("hash-1")},
	} {
		if err := st.APIKeyCreate(ctx, bad); !errors.Is(err, herald.ErrConflict) {
			t.Errorf("duplicate key %+v: %v", bad, err)
		}
	}
	if err := st.APIKeyCreate(ctx, herald.APIKey{ID: "key_3", TenantID: "nope", Hash: []byte("h3")}); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("key of a missing tenant: %v", err)
	}
	got, err := st.APIKeyByHash(ctx, []byte("hash-1"))
	if err != nil || got.ID != "key_1" || got.TenantID != "a" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("by hash = %+v %v", got, err)
	}
	if err := st.APIKeyRevoke(ctx, "b", "key_1", t0); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("revoke another tenant's: %v", err)
	}
	if err := st.APIKeyRevoke(ctx, "a", "key_1", t0); err != nil {
		t.Fatal(err)
	}
	if err := st.APIKeyRevoke(ctx, "a", "key_1", t0); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := st.APIKeyByHash(ctx, []byte("hash-1")); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("revoked key found: %v", err)
	}

	if _, err := st.SettingGet(ctx, "k"); !errors.Is(err, herald.ErrNotFound) {
		t.Fatalf("missing setting: %v", err)
	}
	v, err := st.SettingPutIfAbsent(ctx, "k", []byte("one"))
	if err != nil || string(v) != "one" {
		t.Fatalf("put = %q %v", v, err)
	}
	v, err = st.SettingPutIfAbsent(ctx, "k", []byte("two"))
	if err != nil || string(v) != "one" {
		t.Fatalf("second put = %q %v", v, err)
	}
	if v, err := st.SettingGet(ctx, "k"); err != nil || string(v) != "one" {
		t.Fatalf("get = %q %v", v, err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	if err := st.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ctx := context.Background()
	if err := st.Ping(ctx); !errors.Is(err, herald.ErrUnavailable) {
		t.Errorf("ping: %v", err)
	}
	if _, err := st.EventPublish(ctx, t0, []herald.PublishRequest{event("t1", "a")}); !errors.Is(err, herald.ErrUnavailable) {
		t.Errorf("publish: %v", err)
	}
	if _, err := st.TenantGet(ctx, "default"); !errors.Is(err, herald.ErrUnavailable) {
		t.Errorf("get: %v", err)
	}
}

func TestRecordCutsResponseBody(t *testing.T) {
	t.Parallel()
	for _, status := range []string{herald.DeliveryFailed, herald.DeliverySucceeded} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			mustCreate(t, st, sub("t1", "*"))
			id := publishN(t, st, t0, "t1", "a", 1)[0].DeliveryIDs[0]
			l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 1})
			o := outcome(l.Deliveries[0], "owner-1", status, t0)
			o.Attempt.ResponseBody = "x" + strings.Repeat("é", herald.MaxStoredResponse) // odd: a cut at 4 KiB splits an é
			mustRecord(t, st, o)
			_, attempts, err := st.DeliveryGet(context.Background(), "t1", id)
			if err != nil || len(attempts) != 1 {
				t.Fatalf("attempts = %v, %v", attempts, err)
			}
			body := attempts[0].ResponseBody
			if len(body) != herald.MaxStoredResponse-1 || !utf8.ValidString(body) {
				t.Fatalf("stored body of %d bytes, valid UTF-8 %v", len(body), utf8.ValidString(body))
			}
		})
	}
}

// TestSuccessWritesNoAttemptRow: a success's attempt is kept on the
// delivery's row (migration 0004), a failure's in attempts.
func TestSuccessWritesNoAttemptRow(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub("t1", "*"))
	publishN(t, st, t0, "t1", "a", 2)
	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 2})
	mustRecord(t, st, outcome(l.Deliveries[0], "owner-1", herald.DeliverySucceeded, t0),
		outcome(l.Deliveries[1], "owner-1", herald.DeliveryFailed, t0))
	var rows int
	var only string
	if err := st.w.QueryRow(`SELECT count(*), max(delivery_id) FROM attempts`).Scan(&rows, &only); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || only != l.Deliveries[1].Delivery.ID {
		t.Errorf("attempt rows: %d (of %s), want the failure's alone", rows, only)
	}
	for _, ld := range l.Deliveries {
		if _, attempts, err := st.DeliveryGet(context.Background(), "t1", ld.Delivery.ID); err != nil || len(attempts) != 1 || attempts[0].N != 1 {
			t.Errorf("%s: attempts %+v, %v", ld.Delivery.ID, attempts, err)
		}
	}
}

// TestChunkOf: chunks add up to the rows, one statement per bit of the
// count below 64, never more than maxChunk rows.
func TestChunkOf(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 200; n++ {
		var sizes []int
		for rest := n; rest > 0; rest -= sizes[len(sizes)-1] {
			sizes = append(sizes, chunkOf(rest))
		}
		want := bits.OnesCount(uint(n%maxChunk)) + n/maxChunk
		if len(sizes) != want || slices.Max(sizes) > maxChunk {
			t.Errorf("%d rows in chunks %v; want %d statements of at most %d", n, sizes, want, maxChunk)
		}
	}
}

package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func TestLaneCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                       string
		maxRPS, maxInFlight, batch int
		want                       int
	}{
		{"in flight", 300, 16, 1, 16 * herald.LeasePrefetch},
		{"rps", 1, 16, 1, 10},
		{"batches", 300, 2, 3, 6 * herald.LeasePrefetch},
		{"zero batch", 300, 2, 0, 2 * herald.LeasePrefetch},
		{"zero in flight", 0, 0, 1, herald.DefaultMaxInFlight * herald.LeasePrefetch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := laneCap(tt.maxRPS, tt.maxInFlight, tt.batch); got != tt.want {
				t.Errorf("laneCap = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestLeaseCap(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	s := sub("t1", "*")
	s.Delivery.MaxInFlight = 2
	mustCreate(t, st, s)
	capS := herald.LaneCap(s.Delivery)
	publishN(t, st, t0, "t1", "a", capS+3)

	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 100})
	if len(l.Deliveries) != capS {
		t.Fatalf("leased %d, want %d", len(l.Deliveries), capS)
	}
	got, ok := l.Subscriptions[s.ID]
	if !ok || len(got.Secrets) != 1 || got.Secrets[0].Value != s.Secrets[0].Value {
		t.Fatalf("lease subscriptions = %+v", l.Subscriptions)
	}
	for _, ld := range l.Deliveries {
		if ld.Delivery.Status != herald.DeliveryDelivering || ld.Event.ID != ld.Delivery.EventID || string(ld.Event.Data) != `{"n":1}` {
			t.Errorf("leased = %+v", ld)
		}
	}
	if n := len(mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 10}).Deliveries); n != 0 {
		t.Fatalf("over the cap: leased %d more", n)
	}
	mustRecord(t, st, outcome(l.Deliveries[0], "owner-1", herald.DeliverySucceeded, t0))
	if n := len(mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 10}).Deliveries); n != 1 {
		t.Fatalf("after one success: leased %d, want 1", n)
	}
}

// TestLeaseOwnersRoom: a lane that reports its room (LeaseParams.Room) is
// leased that many, beyond LaneCap, without the store counting what it has
// delivering (the lane counts that itself); a subscription the owner has
// no lane for keeps to LaneCap less what it has delivering.
func TestLeaseOwnersRoom(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	fast, other := sub("t1", "a"), sub("t1", "a")
	fast.Delivery.MaxInFlight, other.Delivery.MaxInFlight = 1, 1
	mustCreate(t, st, fast, other)
	capS := herald.LaneCap(fast.Delivery)
	publishN(t, st, t0, "t1", "a", 4*capS)

	fastRoom := 2*capS + 1
	rooms := func(id string) (int, bool) { return fastRoom, id == fast.ID }
	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 100, Room: rooms})
	want := map[string]int{fast.ID: fastRoom, other.ID: capS}
	if got := countBySub(l); got[fast.ID] != want[fast.ID] || got[other.ID] != want[other.ID] || len(got) != 2 {
		t.Fatalf("leased %v, want %v", got, want)
	}
	// The room reported is taken as it is: none, none leased; two, two.
	fastRoom = 0
	if n := len(mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 100, Room: rooms}).Deliveries); n != 0 {
		t.Fatalf("no room: leased %d, want 0", n)
	}
	fastRoom = 2
	if got := countBySub(mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 100, Room: rooms})); got[fast.ID] != 2 || len(got) != 1 {
		t.Fatalf("room for 2: leased %v", got)
	}
	// Without a lane, what fast has delivering counts against LaneCap.
	if n := len(mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 100}).Deliveries); n != 0 {
		t.Fatalf("without Room: leased %d, want 0", n)
	}
}

func TestLeaseOrdered(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	s := sub("t1", "*")
	s.Ordered = true
	mustCreate(t, st, s)
	res := publishN(t, st, t0, "t1", "a", 3)

	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 10})
	if len(l.Deliveries) != 1 || l.Deliveries[0].Delivery.ID != res[0].DeliveryIDs[0] {
		t.Fatalf("leased %+v, want the first delivery alone", l.Deliveries)
	}
	if n := len(mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 10}).Deliveries); n != 0 {
		t.Fatalf("head delivering: leased %d", n)
	}
	// The head retries in a minute: the others are due but must wait.
	mustRecord(t, st, outcome(l.Deliveries[0], "owner-1", herald.DeliveryPending, t0))
	if n := len(mustLease(t, st, herald.LeaseParams{Now: t0.Add(time.Second), Limit: 10}).Deliveries); n != 0 {
		t.Fatalf("head not due: leased %d", n)
	}
	l = mustLease(t, st, herald.LeaseParams{Now: t0.Add(2 * time.Minute), Limit: 10})
	if len(l.Deliveries) != 1 || l.Deliveries[0].Delivery.ID != res[0].DeliveryIDs[0] {
		t.Fatalf("head due again: leased %+v", l.Deliveries)
	}
	mustRecord(t, st, outcome(l.Deliveries[0], "owner-1", herald.DeliveryFailed, t0.Add(2*time.Minute)))
	l = mustLease(t, st, herald.LeaseParams{Now: t0.Add(2 * time.Minute), Limit: 10})
	if len(l.Deliveries) != 1 || l.Deliveries[0].Delivery.ID != res[1].DeliveryIDs[0] {
		t.Fatalf("after the head failed for good: leased %+v, want the second", l.Deliveries)
	}
}

func TestLeaseFair(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		bigN, smallN, limit int
		wantBig, wantSmall  int
	}{
		{"equal shares", 100, 50, 10, 5, 5},
		{"small takes all it has", 100, 3, 20, 17, 3},
		{"odd limit", 100, 100, 7, 4, 3},
		{"enough for both", 10, 5, 100, 10, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			big, small := sub("t1", "big"), sub("t1", "small")
			big.Delivery.MaxInFlight, small.Delivery.MaxInFlight = 1000, 1000
			mustCreate(t, st, big, small)
			// The big backlog is older: it must not crowd the small one out.
			publishN(t, st, t0, "t1", "big", tt.bigN)
			publishN(t, st, t0.Add(time.Second), "t1", "small", tt.smallN)
			l := mustLease(t, st, herald.LeaseParams{Now: t0.Add(time.Minute), Limit: tt.limit})
			got := countBySub(l)
			if got[big.ID] != tt.wantBig || got[small.ID] != tt.wantSmall {
				t.Errorf("leased big %d small %d, want %d and %d", got[big.ID], got[small.ID], tt.wantBig, tt.wantSmall)
			}
			for i := 1; i < len(l.Deliveries); i++ {
				a, b := l.Deliveries[i-1].Delivery, l.Deliveries[i].Delivery
				if a.NextAttemptAt.After(b.NextAttemptAt) {
					t.Fatalf("not oldest due first: %v before %v", a.NextAttemptAt, b.NextAttemptAt)
				}
			}
		})
	}
}

func TestLeaseSkips(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	active, paused, excluded, later := sub("t1", "*"), sub("t1", "*"), sub("t1", "*"), sub("t1", "*")
	paused.Status = herald.StatusPaused
	mustCreate(t, st, active, paused, excluded, later)
	publishN(t, st, t0, "t1", "a", 2)
	// later's deliveries are not due until a retry a minute away.
	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 100, Exclude: []string{excluded.ID}})
	var outs []herald.Outcome
	for _, ld := range l.Deliveries {
		if ld.Delivery.SubscriptionID == later.ID {
			outs = append(outs, outcome(ld, "owner-1", herald.DeliveryPending, t0))
		}
	}
	mustRecord(t, st, outs...)
	got := countBySub(l)
	if got[active.ID] != 2 || got[later.ID] != 2 || got[paused.ID] != 0 || got[excluded.ID] != 0 {
		t.Fatalf("leased %v", got)
	}
	got = countBySub(mustLease(t, st, herald.LeaseParams{Now: t0.Add(10 * time.Second), Limit: 100}))
	if len(got) != 1 || got[excluded.ID] != 2 {
		t.Fatalf("second lease %v, want the excluded subscription's 2 only", got)
	}
}

func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	s := sub("t1", "*")
	s.Delivery.Timeout = 10 * time.Second
	mustCreate(t, st, s)
	publishN(t, st, t0, "t1", "a", 2)
	p := herald.LeaseParams{Owner: "one", Now: t0, Limit: 1, Margin: 5 * time.Second}
	l1 := mustLease(t, st, p)
	if len(l1.Deliveries) != 1 {
		t.Fatalf("leased %d", len(l1.Deliveries))
	}
	// Another owner finds the lane taken, even for the due delivery left.
	p2 := herald.LeaseParams{Owner: "two", Now: t0.Add(14 * time.Second), Limit: 10, Margin: 5 * time.Second}
	if n := len(mustLease(t, st, p2).Deliveries); n != 0 {
		t.Fatalf("lane held by one: two leased %d", n)
	}
	// The lane's owner may take more.
	p.Now = t0.Add(time.Second)
	if n := len(mustLease(t, st, p).Deliveries); n != 1 {
		t.Fatalf("lane owner leased %d more, want 1", n)
	}
	if at, ok, err := st.DeliveryNextDue(context.Background()); err != nil || !ok || !at.Equal(t0.Add(15*time.Second)) {
		t.Fatalf("next due = %v %v %v, want the first lease's expiry", at, ok, err)
	}
	// Past both leases' and the lane's expiry the other owner takes over.
	p2.Now = t0.Add(17 * time.Second)
	l2 := mustLease(t, st, p2)
	if len(l2.Deliveries) != 2 {
		t.Fatalf("after expiry two leased %d, want 2", len(l2.Deliveries))
	}
	// The first owner's late outcome is dropped.
	mustRecord(t, st, outcome(l1.Deliveries[0], "one", herald.DeliverySucceeded, p2.Now))
	d, attempts, err := st.DeliveryGet(context.Background(), "t1", l1.Deliveries[0].Delivery.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != herald.DeliveryDelivering || len(attempts) != 0 {
		t.Fatalf("stale outcome written: %+v %+v", d, attempts)
	}
	mustRecord(t, st, outcome(l2.Deliveries[0], "two", herald.DeliverySucceeded, p2.Now))
	if d, _, _ := st.DeliveryGet(context.Background(), "t1", l2.Deliveries[0].Delivery.ID); d.Status != herald.DeliverySucceeded {
		t.Fatalf("owner's outcome not written: %+v", d)
	}
}

func TestLeaseBatch(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	s := sub("t1", "*")
	s.Delivery.BatchMaxEvents = 3
	mustCreate(t, st, s)
	publishN(t, st, t0, "t1", "a", 4)
	l := mustLease(t, st, herald.LeaseParams{Now: t0, Limit: 3})
	if len(l.Deliveries) != 3 {
		t.Fatalf("leased %d", len(l.Deliveries))
	}
	var outs []herald.Outcome
	for _, ld := range l.Deliveries {
		o := outcome(ld, "owner-1", herald.DeliveryPending, t0)
		o.BatchID = "bat_1"
		outs = append(outs, o)
	}
	mustRecord(t, st, outs...)
	// The fourth delivery is older due than the batch's retry: it comes
	// first, then the batch whole, though that passes the limit... unless
	// something is leased already; then the batch waits.
	l = mustLease(t, st, herald.LeaseParams{Now: t0.Add(2 * time.Minute), Limit: 2})
	if len(l.Deliveries) != 1 || l.Deliveries[0].Delivery.BatchID != "" {
		t.Fatalf("leased %d: %+v", len(l.Deliveries), l.Deliveries)
	}
	l = mustLease(t, st, herald.LeaseParams{Now: t0.Add(2 * time.Minute), Limit: 1})
	if len(l.Deliveries) != 3 {
		t.Fatalf("batch leased %d of 3", len(l.Deliveries))
	}
	for _, ld := range l.Deliveries {
		if ld.Delivery.BatchID != "bat_1" {
			t.Errorf("leased %+v", ld.Delivery)
		}
	}
}

func TestRecord(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	s := sub("t1", "*")
	mustCreate(t, st, s)
	id := publishN(t, st, t0, "t1", "a", 1)[0].DeliveryIDs[0]

	step := func(now time.Time, status string) herald.Delivery {
		t.Helper()
		l := mustLease(t, st, herald.LeaseParams{Now: now, Limit: 1})
		if len(l.Deliveries) != 1 {
			t.Fatalf("leased %d", len(l.Deliveries))
		}
		mustRecord(t, st, outcome(l.Deliveries[0], "owner-1", status, now))
		d, _, err := st.DeliveryGet(ctx, "t1", id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	failing := func() time.Time {
		got, err := st.SubscriptionGet(ctx, "t1", s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.FailingSince
	}

	d := step(t0, herald.DeliveryPending)
	if d.Status != herald.DeliveryPending || d.Attempts != 1 || !d.FirstAttemptAt.Equal(t0) ||
		!d.NextAttemptAt.Equal(t0.Add(time.Minute)) || d.LastSleep != time.Minute || d.LastStatusCode != 500 ||
		!d.CompletedAt.IsZero() || !d.UpdatedAt.Equal(t0) {
		t.Fatalf("after a retry: %+v", d)
	}
	if f := failing(); !f.Equal(t0) {
		t.Fatalf("failing since %v, want %v", f, t0)
	}
	t1 := t0.Add(2 * time.Minute)
	d = step(t1, herald.DeliveryPending)
	if d.Attempts != 2 || !d.FirstAttemptAt.Equal(t0) {
		t.Fatalf("after a second retry: %+v", d)
	}
	if f := failing(); !f.Equal(t0) {
		t.Fatalf("failing since moved to %v", f)
	}
	t2 := t1.Add(2 * time.Minute)
	d = step(t2, herald.DeliverySucceeded)
	if d.Status != herald.DeliverySucceeded || d.Attempts != 3 || !d.CompletedAt.Equal(t2) || d.LastStatusCode != 200 {
		t.Fatalf("after success: %+v", d)
	}
	if f := failing(); !f.IsZero() {
		t.Fatalf("failing since %v after a success", f)
	}
	_, attempts, err := st.DeliveryGet(ctx, "t1", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 3 || attempts[0].N != 1 || attempts[2].N != 3 || attempts[0].ResponseBody != "boom" ||
		!attempts[1].StartedAt.Equal(t1) || attempts[2].StatusCode != 200 || attempts[0].Duration != time.Millisecond {
		t.Fatalf("attempts = %+v", attempts)
	}
	// Failing subscriptions: one failed attempt marks it.
	id2 := publishN(t, st, t2, "t1", "a", 1)[0].DeliveryIDs[0]
	l := mustLease(t, st, herald.LeaseParams{Now: t2, Limit: 1})
	if len(l.Deliveries) != 1 || l.Deliveries[0].Delivery.ID != id2 {
		t.Fatalf("leased %+v", l.Deliveries)
	}
	mustRecord(t, st, outcome(l.Deliveries[0], "owner-1", herald.DeliveryFailed, t2))
	subs, err := st.SubscriptionFailing(ctx, t2, 10)
	if err != nil || len(subs) != 1 || subs[0].ID != s.ID {
		t.Fatalf("failing = %+v, %v", subs, err)
	}
	if subs, err := st.SubscriptionFailing(ctx, t2.Add(-time.Second), 10); err != nil || len(subs) != 0 {
		t.Fatalf("failing before it started = %+v, %v", subs, err)
	}
}

// TestQueryPlans keeps the leasing and due-time queries on indexes: with a
// million pending deliveries of a dead subscription, a scan of deliveries
// would make every lease slow.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	// Herald never runs ANALYZE, so the plans must be right without
	// statistics; and also with those of a large table.
	t.Run("no statistics", func(t *testing.T) { checkPlans(t, newStore(t)) })
	t.Run("large table", func(t *testing.T) {
		st := newStore(t)
		if _, err := st.w.Exec(`ANALYZE; INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
			('deliveries', 'deliveries_due', '1000000 500000 300000 2 1'),
			('deliveries', 'deliveries_open', '1000000 500000 1'); ANALYZE sqlite_schema;`); err != nil {
			t.Fatal(err)
		}
		checkPlans(t, st)
	})
}

func checkPlans(t *testing.T, st *Store) {
	t.Helper()
	queries := []struct {
		name string
		q    string
		args []any
	}{
		{"candidates", candidatesSQL, []any{1, "o"}},
		{"due", dueSQL, []any{"s", 1}},
		{"head", headSQL, []any{"s"}},
		{"delivering", deliveringSQL, []any{"s"}},
		{"expired", `UPDATE deliveries SET status = 'pending', lease_owner = '', lease_expires = NULL
			WHERE status = 'delivering' AND lease_expires < ?`, []any{1}},
		{"next-due", nextDueSQL, nil},
		{"lane-drained", laneDrainedSQL, []any{1, "s", "o"}},
		{"fan-out match", matchSQL, []any{"t1", "exact", "a"}},
		{"stored events", eventsByIDSQL(`id, hash, deliveries`, 4), []any{"t1", "a", "b", "c", "d"}},
		{"an event's deliveries", `SELECT d.seq FROM deliveries d WHERE d.tenant_id = ?` + eventDeliveriesSQL +
			` ORDER BY d.seq DESC LIMIT 10`, append([]any{"t1"}, eventDeliveriesArgs("t1", "e")...)},
		{"purge an event", purgeEventSQL, []any{"t1", "e", 1}},
	}
	for _, q := range queries {
		rows, err := st.w.Query(`EXPLAIN QUERY PLAN `+q.q, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, line := range plan {
			// deliveries_sub holds finished deliveries too: a search of it
			// walks a subscription's whole history.
			// A scan of deliveries_leased is fine: it holds only what is
			// delivering, which the lanes' caps bound.
			scan := (strings.HasPrefix(line, "SCAN d") || strings.HasPrefix(line, "SCAN deliveries")) &&
				!strings.Contains(line, "deliveries_leased") || strings.HasPrefix(line, "SCAN events")
			if scan ||
				strings.Contains(line, "deliveries_sub") ||
				strings.Contains(line, "TEMP B-TREE") && q.name != "candidates" {
				t.Errorf("%s: %q in plan:\n%s", q.name, line, strings.Join(plan, "\n"))
			}
		}
	}
}

package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// laneOf returns a subscription's lane: its owner and expiry.
func laneOf(tb testing.TB, st *Store, sub string) (string, time.Time) {
	tb.Helper()
	var owner string
	var until time.Time
	if err := st.withConn(context.Background(), func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(), `SELECT owner, expires_at FROM lanes WHERE subscription_id = $1`, sub).
			Scan(&owner, &until)
	}); err != nil {
		tb.Fatal(err)
	}
	return owner, until
}

func leaseParams(owner string, now time.Time) herald.LeaseParams {
	return herald.LeaseParams{Owner: owner, Now: now, Limit: 100, Margin: 30 * time.Second}
}

// leasedOne returns a store with a subscription (to type "x") whose one
// delivery w1 has leased at t0.
func leasedOne(t *testing.T) (*Store, herald.Subscription, herald.Lease) {
	t.Helper()
	st := newStore(t)
	s := sub(herald.DefaultTenant, "x")
	mustCreate(t, st, s)
	publishN(t, st, t0, herald.DefaultTenant, "x", 1)
	l := mustLease(t, st, leaseParams("w1", t0))
	if len(l.Deliveries) != 1 {
		t.Fatalf("leased %d, want 1", len(l.Deliveries))
	}
	return st, s, l
}

// TestClaimAfterDrainKeepsTheLane: a lane its owner drained is set to pass
// on LaneHandoff later; a claim by that owner before then takes it back for
// the claimed deliveries' lease, so another process cannot take the lane
// (and send beside it) while they are out.
func TestClaimAfterDrainKeepsTheLane(t *testing.T) {
	t.Parallel()
	st, s, l := leasedOne(t)
	drained := t0.Add(100 * time.Millisecond)
	mustRecord(t, st, outcome(l.Deliveries[0], "w1", herald.DeliverySucceeded, drained))
	if _, until := laneOf(t, st, s.ID); !until.Equal(drained.Add(herald.LaneHandoff)) {
		t.Fatalf("drained lane expires %v, want %v", until, drained.Add(herald.LaneHandoff))
	}
	_, claimed, err := st.EventPublishClaim(t.Context(), t0.Add(500*time.Millisecond),
		[]herald.PublishRequest{event(herald.DefaultTenant, "x")}, herald.Claim{Owner: "w1", Margin: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed.Deliveries) != 1 {
		t.Fatalf("claimed %d, want 1", len(claimed.Deliveries))
	}
	// Past the handoff, with work pending: the lane is still w1's.
	publishN(t, st, t0.Add(time.Second), herald.DefaultTenant, "x", 1)
	if got := mustLease(t, st, leaseParams("w2", t0.Add(2*time.Second))); len(got.Deliveries) != 0 {
		t.Errorf("w2 leased %d deliveries of w1's lane", len(got.Deliveries))
	}
	if owner, _ := laneOf(t, st, s.ID); owner != "w1" {
		t.Errorf("lane owner %q, want w1", owner)
	}
}

// TestRecordSeesAClaimItWaitedFor: an outcome that drains its lane while a
// claim for that lane is being committed waits for the claim's lock and
// then sees the claimed delivery, so it does not set the lane to pass on.
func TestRecordSeesAClaimItWaitedFor(t *testing.T) {
	t.Parallel()
	st, s, l := leasedOne(t)
	_, leased := laneOf(t, st, s.ID)
	second := publishN(t, st, t0, herald.DefaultTenant, "x", 1)[0]

	// A claim under way, as claimFanOutSQL leaves it before its commit:
	// the lane's row locked, a delivery delivering under w1's lease.
	ctx := t.Context()
	claim, err := st.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer claim.Rollback(context.Background())
	if _, err := claim.Exec(ctx, `UPDATE lanes SET expires_at = expires_at WHERE subscription_id = $1`, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := claim.Exec(ctx, `UPDATE deliveries SET status = 'delivering', lease_owner = 'w1',
		lease_expires = $2 WHERE id = $1`, second, leased); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- st.DeliveryRecord(ctx, []herald.Outcome{outcome(l.Deliveries[0], "w1", herald.DeliverySucceeded, t0.Add(time.Second))})
	}()
	// Commit once the outcome waits for the claim's transaction.
	deadline := time.Now().Add(10 * time.Second)
	for waiting := false; !waiting; {
		select {
		case err := <-done:
			t.Fatalf("the outcome did not wait for the claim's lock: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the outcome never waited for the claim")
		}
		if err := claim.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks w JOIN pg_locks h
			ON h.locktype = 'transactionid' AND h.transactionid = w.transactionid AND h.pid = pg_backend_pid() AND h.granted
			WHERE w.locktype = 'transactionid' AND NOT w.granted)`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := claim.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if owner, until := laneOf(t, st, s.ID); owner != "w1" || !until.Equal(leased) {
		t.Errorf("lane %q until %v after the outcome, want w1's until %v (not handed off)", owner, until, leased)
	}
}

// TestClaimWakesOnlyForWhatIsLeftPending: a publish whose deliveries are
// all claimed sends no wake-up (they went to the claimer's lanes); one that
// leaves deliveries pending does.
func TestClaimWakesOnlyForWhatIsLeftPending(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub(herald.DefaultTenant, "mine"))
	ordered := sub(herald.DefaultTenant, "ordered")
	ordered.Ordered = true
	mustCreate(t, st, ordered)
	ctx := t.Context()
	conn, err := st.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{st.wake}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	claim := herald.Claim{Owner: "w1", Margin: 30 * time.Second}
	for _, typ := range []string{"mine", "ordered"} {
		if _, _, err := st.EventPublishClaim(ctx, t0, []herald.PublishRequest{event(herald.DefaultTenant, typ)}, claim); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
		t.Fatal(err) // the ordered one's
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if n, err := conn.Conn().WaitForNotification(short); err == nil {
		t.Errorf("a second wake-up (%v): the publish that was claimed whole woke the dispatchers too", n)
	}
}

package sqlite

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald"
)

// gatedFlush is a walSync flush that records each call and holds it until
// released.
type gatedFlush struct {
	started chan string   // the path of each flush as it starts
	release chan struct{} // one receive lets one flush finish
	err     error         // returned by every flush
}

func newGatedFlush() *gatedFlush {
	return &gatedFlush{started: make(chan string, 100), release: make(chan struct{})}
}

func (g *gatedFlush) flush(path string) error {
	g.started <- path
	<-g.release
	return g.err
}

// TestWALSyncWaitsForAFlushBegunAfterTheCommit: a wait returns only after
// a flush that began once its commit was counted, a flush under way when a
// commit arrives does not count for it, and the commits that wait during
// one flush share the next.
func TestWALSyncWaitsForAFlushBegunAfterTheCommit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGatedFlush()
		w := newWALSync("db")
		w.flush = g.flush
		var done [6]atomic.Bool
		waitFor := func(i int, n uint64) {
			go func() {
				if err := w.wait(n); err != nil {
					t.Errorf("wait %d: %v", i, err)
				}
				done[i].Store(true)
			}()
		}
		returned := func() (out []int) {
			for i := range done {
				if done[i].Load() {
					out = append(out, i)
				}
			}
			return out
		}

		waitFor(1, w.committed())
		synctest.Wait()
		if p := <-g.started; p != "db-wal" {
			t.Fatalf("flushed %q, want the WAL file db-wal", p)
		}
		// Commit 2 arrives while commit 1's flush is under way.
		waitFor(2, w.committed())
		synctest.Wait()
		if got := returned(); len(got) != 0 {
			t.Fatalf("waits %v returned before any flush finished", got)
		}
		g.release <- struct{}{}
		synctest.Wait()
		if got := returned(); len(got) != 1 || got[0] != 1 {
			t.Fatalf("after the first flush, waits %v returned; want [1] (commit 2 came after the flush began)", got)
		}
		<-g.started // the second flush, for commit 2
		for i := 3; i <= 5; i++ {
			waitFor(i, w.committed())
		}
		synctest.Wait()
		g.release <- struct{}{}
		synctest.Wait()
		<-g.started // one flush for commits 3 to 5
		g.release <- struct{}{}
		synctest.Wait()
		if got := returned(); len(got) != 5 {
			t.Fatalf("waits %v returned, want all five", got)
		}
		select {
		case <-g.started:
			t.Error("a fourth flush ran: commits 3 to 5 waited together and should have shared one")
		default:
		}
		// Everything is durable: waiting again flushes nothing.
		if err := w.wait(5); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWALSyncFailureIsFinal: after a failed flush every wait fails, even
// when a later flush would succeed, and the failure is reported once.
func TestWALSyncFailureIsFinal(t *testing.T) {
	t.Parallel()
	w := newWALSync("db")
	broken := errors.New("EIO")
	calls := 0
	w.flush = func(string) error {
		calls++
		if calls == 1 {
			return broken
		}
		return nil
	}
	var reported []error
	w.failed = func(err error) { reported = append(reported, err) }
	if err := w.wait(w.committed()); !errors.Is(err, broken) {
		t.Fatalf("wait = %v, want the flush's error", err)
	}
	if err := w.wait(w.committed()); !errors.Is(err, broken) {
		t.Fatalf("wait after a failed flush = %v, want the same error", err)
	}
	if calls != 1 || len(reported) != 1 {
		t.Errorf("%d flushes, %d reports after a failure; want 1 and 1", calls, len(reported))
	}
}

// flushStore returns a migrated store with one subscription to every
// event, whose flush counts its calls, checks that it flushes the store's
// real WAL file, which holds what was committed, and then runs inner with
// the store's own flush.
func flushStore(t *testing.T, inner func(flush func(string) error, path string) error) (*Store, *atomic.Int64) {
	t.Helper()
	path := t.TempDir() + "/herald.db"
	st := openAt(t, path, testSealer(t))
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, st, sub(herald.DefaultTenant, "*"))
	var calls atomic.Int64
	real := st.sync.flush
	st.sync.flush = func(p string) error {
		calls.Add(1)
		if p != path+"-wal" {
			t.Errorf("flushed %q, want the WAL %q", p, path+"-wal")
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("the WAL at flush: %v, %v", fi, err)
		}
		return inner(real, p)
	}
	return st, &calls
}

// TestPublishWaitsForTheWALFlush: a publish returns only once a flush of the
// WAL has finished after its commit, and leases, outcomes and releases flush
// nothing themselves, except a lease that hands deliveries out: those may
// belong to a publish still waiting for the disk.
func TestPublishWaitsForTheWALFlush(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var gated atomic.Bool
	st, calls := flushStore(t, func(flush func(string) error, p string) error {
		if gated.Load() {
			<-gate
		}
		return flush(p)
	})

	gated.Store(true)
	var published sync.WaitGroup
	var returned atomic.Bool
	published.Go(func() {
		mustPublish(t, st, t0, event(herald.DefaultTenant, "a.b"), event(herald.DefaultTenant, "a.b"))
		returned.Store(true)
	})
	for deadline := time.Now().Add(5 * time.Second); calls.Load() == 0; time.Sleep(time.Millisecond) {
		if returned.Load() || time.Now().After(deadline) {
			t.Fatal("EventPublish returned, or did not start, without flushing the WAL")
		}
	}
	time.Sleep(20 * time.Millisecond)
	if returned.Load() {
		t.Fatal("EventPublish returned while its WAL flush was held")
	}
	// The commit is visible before it is durable; that is what lets the
	// writer go on while the disk flushes.
	if n := countRows(t, st, `SELECT count(*) FROM events`); n != 2 {
		t.Errorf("%d events visible while the flush is held, want 2", n)
	}
	gated.Store(false)
	close(gate)
	published.Wait()

	before := calls.Load()
	l := mustLease(t, st, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Minute, Limit: 10})
	if len(l.Deliveries) != 2 {
		t.Fatalf("leased %d, want 2", len(l.Deliveries))
	}
	if calls.Load() != before+1 {
		t.Errorf("a lease that handed out deliveries flushed %d times, want 1", calls.Load()-before)
	}
	before = calls.Load()
	mustLease(t, st, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Minute, Limit: 10}) // nothing due
	mustRecord(t, st, outcome(l.Deliveries[0], "w", herald.DeliverySucceeded, t0))
	if err := st.DeliveryRelease(context.Background(), "w", nil, t0); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load() - before; n != 0 {
		t.Errorf("an empty lease, an outcome and a release flushed %d times, want none", n)
	}
}

// TestFailedFlushFailsWrites: when the WAL cannot be flushed, the publish
// that waited fails as unavailable (its 202 is never given), and so does
// every later durable write.
func TestFailedFlushFailsWrites(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	st, _ := flushStore(t, func(flush func(string) error, p string) error {
		if fail.Load() {
			return errors.New("EIO")
		}
		return flush(p)
	})
	_, err := st.EventPublish(context.Background(), t0, []herald.PublishRequest{event(herald.DefaultTenant, "a.b")})
	if !errors.Is(err, herald.ErrUnavailable) {
		t.Fatalf("publish with a failing flush: err = %v, want ErrUnavailable", err)
	}
	fail.Store(false)
	if err := st.SubscriptionCreate(context.Background(), sub(herald.DefaultTenant, "*")); !errors.Is(err, herald.ErrUnavailable) {
		t.Errorf("a durable write after a failed flush: err = %v, want ErrUnavailable", err)
	}
}

func countRows(t *testing.T, st *Store, q string) int {
	t.Helper()
	var n int
	if err := st.r.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

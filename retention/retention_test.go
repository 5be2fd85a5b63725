package retention

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald"
)

// fakeStore answers Purge from a count of old deliveries.
type fakeStore struct {
	herald.Store
	left    int
	calls   int
	befores []time.Time
	err     error
	cost    time.Duration // how long each Purge takes
}

func (f *fakeStore) Purge(_ context.Context, before time.Time, limit int) (int, error) {
	f.calls++
	f.befores = append(f.befores, before)
	time.Sleep(f.cost)
	if f.err != nil {
		return 0, f.err
	}
	n := min(limit, f.left)
	f.left -= n
	return n, nil
}

func TestSweepDeletesInSmallBatches(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st := &fakeStore{left: 1234}
	p, err := New(Config{Store: st, Retention: 720 * time.Hour, Batch: 500, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Sweep(context.Background())
	if err != nil || n != 1234 {
		t.Fatalf("Sweep = %d, %v; want 1234", n, err)
	}
	if st.calls != 3 {
		t.Errorf("%d Purge calls, want 3 batches (500, 500, 234)", st.calls)
	}
	if want := now.Add(-720 * time.Hour); !st.befores[0].Equal(want) {
		t.Errorf("purged before %v, want %v", st.befores[0], want)
	}
	st.err = errors.New("disk on fire")
	if _, err := p.Sweep(context.Background()); err == nil {
		t.Error("a store error is not returned")
	}
}

func TestZeroRetentionKeepsEverything(t *testing.T) {
	t.Parallel()
	st := &fakeStore{left: 10}
	p, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	p.Run(context.Background()) // returns at once
	if st.calls != 0 {
		t.Errorf("retention 0 purged %d times", st.calls)
	}
	if _, err := New(Config{Store: st, Retention: -time.Hour}); err == nil {
		t.Error("negative retention accepted")
	}
}

func TestDefaultInterval(t *testing.T) {
	for _, c := range []struct{ retention, want time.Duration }{
		{720 * time.Hour, DefaultInterval},
		{5 * time.Minute, 30 * time.Second},
		{30 * time.Second, 3 * time.Second},
		{2 * time.Second, MinInterval},
	} {
		p, err := New(Config{Store: &fakeStore{}, Retention: c.retention})
		if err != nil {
			t.Fatal(err)
		}
		if p.cfg.Interval != c.want {
			t.Errorf("retention %s: interval %s, want %s", c.retention, p.cfg.Interval, c.want)
		}
	}
}

// A sweep holds the store at most half the time: after each full batch it
// pauses as long as the batch took.
func TestSweepPausesBetweenBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStore{left: 250, cost: 10 * time.Millisecond}
		p, err := New(Config{Store: st, Retention: time.Hour, Batch: 100})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		n, err := p.Sweep(t.Context())
		if err != nil || n != 250 || st.calls != 3 {
			t.Fatalf("swept %d in %d calls, %v", n, st.calls, err)
		}
		// Three batches of 10ms, and a 10ms pause after each full one.
		if got := time.Since(start); got != 50*time.Millisecond {
			t.Errorf("sweep took %s, want 50ms", got)
		}
	})
}

package publish_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/publish"
)

// fakeStore is a herald.Store whose EventPublish is a function field; every
// other method panics (the embedded interface is nil).
type fakeStore struct {
	herald.Store
	publish func(ctx context.Context, now time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error)
}

func (f *fakeStore) EventPublish(ctx context.Context, now time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	return f.publish(ctx, now, reqs)
}

// recorder is an EventPublish that records each call's event ids and answers
// every request with one delivery named after its event. While gate is set,
// the first call waits for it to close.
type recorder struct {
	mu    sync.Mutex
	calls [][]string
	gate  chan struct{}
	err   error
}

func (r *recorder) publish(_ context.Context, _ time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	ids := make([]string, len(reqs))
	for i, q := range reqs {
		ids[i] = q.Event.ID
	}
	r.mu.Lock()
	r.calls = append(r.calls, ids)
	first := len(r.calls) == 1
	r.mu.Unlock()
	if first && r.gate != nil {
		<-r.gate
	}
	if r.err != nil {
		return nil, r.err
	}
	res := make([]herald.PublishResult, len(reqs))
	for i, q := range reqs {
		res[i] = herald.PublishResult{EventID: q.Event.ID, Deliveries: 1, DeliveryIDs: []string{"dlv_" + q.Event.ID}}
	}
	return res, nil
}

func (r *recorder) snapshot() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.calls...)
}

func newPublisher(tb testing.TB, cfg publish.Config) *publish.Publisher {
	tb.Helper()
	p, err := publish.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

func reqs(caller, n int) []herald.PublishRequest {
	out := make([]herald.PublishRequest, n)
	for i := range out {
		out[i] = herald.PublishRequest{Event: herald.Event{ID: fmt.Sprintf("c%d-e%d", caller, i)}}
	}
	return out
}

func TestConcurrentCallersShareCommits(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{gate: make(chan struct{})}
		p := newPublisher(t, publish.Config{Store: &fakeStore{publish: rec.publish}})

		// The first caller's commit is held; the rest queue up behind it and
		// must then go into one commit together.
		const callers = 50
		results := make([][]herald.PublishResult, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() { results[i], errs[i] = p.Publish(context.Background(), reqs(i, 2)) })
		}
		synctest.Wait()
		close(rec.gate)
		wg.Wait()

		calls := rec.snapshot()
		if len(calls) != 2 {
			t.Errorf("EventPublish called %d times for %d callers, want 2 (the held commit and one for everyone queued)", len(calls), callers)
		}
		total := 0
		for _, c := range calls {
			total += len(c)
		}
		if total != 2*callers {
			t.Errorf("%d events committed, want %d", total, 2*callers)
		}
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
			var got []string
			for _, r := range results[i] {
				got = append(got, r.EventID+"/"+r.DeliveryIDs[0])
			}
			want := []string{fmt.Sprintf("c%d-e0/dlv_c%d-e0", i, i), fmt.Sprintf("c%d-e1/dlv_c%d-e1", i, i)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("caller %d results (-want +got):\n%s", i, diff)
			}
		}
	})
}

func TestMaxBatchNeverSplitsACaller(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{gate: make(chan struct{})}
		p := newPublisher(t, publish.Config{Store: &fakeStore{publish: rec.publish}, MaxBatch: 7})

		var wg sync.WaitGroup
		wg.Go(func() { p.Publish(context.Background(), reqs(0, 1)) })
		synctest.Wait() // caller 0's commit is in flight and held
		sizes := []int{3, 3, 3, 10, 2}
		for i, n := range sizes {
			wg.Go(func() { p.Publish(context.Background(), reqs(i+1, n)) })
			synctest.Wait() // queue them in this order
		}
		close(rec.gate)
		wg.Wait()

		// Groups in queue order, at most 7 events unless one caller alone
		// has more: [0] [1 2] [3] [4] [5].
		var got [][]int
		for _, c := range rec.snapshot() {
			var callers []int
			for _, id := range c {
				var ci, ei int
				fmt.Sscanf(id, "c%d-e%d", &ci, &ei)
				if ei == 0 {
					callers = append(callers, ci)
				}
			}
			got = append(got, callers)
		}
		want := [][]int{{0}, {1, 2}, {3}, {4}, {5}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("callers per commit (-want +got):\n%s", diff)
		}
	})
}

func TestStoreErrorFailsTheWholeGroup(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("disk on fire")
		rec := &recorder{gate: make(chan struct{}), err: boom}
		var commits atomic.Int32
		p := newPublisher(t, publish.Config{Store: &fakeStore{publish: rec.publish}, OnCommit: func() { commits.Add(1) }})

		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				res, err := p.Publish(context.Background(), reqs(i, 1))
				if res != nil {
					t.Errorf("caller %d got results with the error", i)
				}
				errs[i] = err
			})
		}
		synctest.Wait()
		close(rec.gate)
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, boom) {
				t.Errorf("caller %d: error %v, want it to wrap %v", i, err, boom)
			}
		}
		if n := commits.Load(); n != 0 {
			t.Errorf("OnCommit called %d times after failed commits", n)
		}
	})
}

func TestStopDrainsTheQueue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{gate: make(chan struct{})}
		p, err := publish.New(publish.Config{Store: &fakeStore{publish: rec.publish}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Publish(context.Background(), reqs(0, 1)); !errors.Is(err, herald.ErrUnavailable) {
			t.Errorf("publish before Start: %v, want ErrUnavailable", err)
		}
		p.Start(context.Background())

		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { _, errs[i] = p.Publish(context.Background(), reqs(i, 1)) })
		}
		synctest.Wait()
		stopped := make(chan struct{})
		go func() { p.Stop(); close(stopped) }()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("Stop returned while a commit was in flight")
		default:
		}
		if _, err := p.Publish(context.Background(), reqs(9, 1)); !errors.Is(err, publish.ErrStopped) {
			t.Errorf("publish while stopping: %v, want ErrStopped", err)
		}
		close(rec.gate)
		<-stopped
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d queued before Stop: %v", i, err)
			}
		}
		n := 0
		for _, c := range rec.snapshot() {
			n += len(c)
		}
		if n != 4 {
			t.Errorf("%d events committed, want the 4 queued before Stop", n)
		}
		p.Stop() // a second Stop returns at once
	})
}

func TestContextEndsBeforeCommit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{gate: make(chan struct{})}
		p := newPublisher(t, publish.Config{Store: &fakeStore{publish: rec.publish}})

		var wg sync.WaitGroup
		wg.Go(func() { p.Publish(context.Background(), reqs(0, 1)) })
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		var err error
		wg.Go(func() { _, err = p.Publish(ctx, reqs(1, 1)) })
		synctest.Wait()
		cancel()
		synctest.Wait()
		close(rec.gate)
		wg.Wait()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if calls := rec.snapshot(); len(calls) != 1 {
			t.Errorf("the withdrawn request was committed anyway: %v", calls)
		}
	})
}

func TestStartContextEndStopsAfterDraining(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{gate: make(chan struct{})}
		p, err := publish.New(publish.Config{Store: &fakeStore{publish: rec.publish}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		p.Start(ctx)
		var wg sync.WaitGroup
		var errs [2]error
		for i := range errs {
			wg.Go(func() { _, errs[i] = p.Publish(context.Background(), reqs(i, 1)) })
			synctest.Wait()
		}
		cancel()
		synctest.Wait()
		close(rec.gate)
		wg.Wait()
		p.Stop()
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if _, err := p.Publish(context.Background(), reqs(5, 1)); !errors.Is(err, publish.ErrStopped) {
			t.Errorf("publish after the context ended: %v, want ErrStopped", err)
		}
	})
}

func TestMetricsAndOnCommit(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var commits atomic.Int32
	st := &fakeStore{publish: func(_ context.Context, _ time.Time, rs []herald.PublishRequest) ([]herald.PublishResult, error) {
		out := make([]herald.PublishResult, len(rs))
		for i, r := range rs {
			switch r.Event.ID {
			case "new":
				out[i] = herald.PublishResult{EventID: r.Event.ID, Deliveries: 2, DeliveryIDs: []string{"dlv_1", "dlv_2"}}
			case "unmatched":
				out[i] = herald.PublishResult{EventID: r.Event.ID}
			case "repeat":
				out[i] = herald.PublishResult{EventID: r.Event.ID, Deliveries: 2}
			case "conflict":
				out[i] = herald.PublishResult{EventID: r.Event.ID, Err: herald.ErrConflict}
			}
		}
		return out, nil
	}}
	p := newPublisher(t, publish.Config{Store: st, Registerer: reg, OnCommit: func() { commits.Add(1) }})
	var rs []herald.PublishRequest
	for _, id := range []string{"new", "unmatched", "repeat", "conflict"} {
		rs = append(rs, herald.PublishRequest{Event: herald.Event{ID: id}})
	}
	res, err := p.Publish(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[3].Err, herald.ErrConflict) {
		t.Errorf("per-request error not passed through: %+v", res[3])
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("OnCommit called %d times, want 1", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			got[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			got[mf.GetName()+"_count"] = float64(m.GetHistogram().GetSampleCount())
			got[mf.GetName()+"_sum"] = m.GetHistogram().GetSampleSum()
		}
	}
	want := map[string]float64{
		"herald_events_published_total":       2, // new and unmatched
		"herald_publish_batch_size_count":     1,
		"herald_publish_batch_size_sum":       4,
		"herald_publish_commit_seconds_count": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestStorePanicFailsTheGroupOnly(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	st := &fakeStore{publish: func(_ context.Context, _ time.Time, rs []herald.PublishRequest) ([]herald.PublishResult, error) {
		if n.Add(1) == 1 {
			panic("driver bug")
		}
		return make([]herald.PublishResult, len(rs)), nil
	}}
	p := newPublisher(t, publish.Config{Store: st})
	if _, err := p.Publish(t.Context(), reqs(0, 1)); err == nil {
		t.Error("no error from a commit that panicked")
	}
	if _, err := p.Publish(t.Context(), reqs(1, 1)); err != nil {
		t.Errorf("the next commit failed too: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  publish.Config
	}{
		{"no store", publish.Config{}},
		{"negative batch", publish.Config{Store: &fakeStore{}, MaxBatch: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := publish.New(tt.cfg); err == nil {
				t.Error("New accepted an invalid Config")
			}
		})
	}
}

// claimStore is a herald.Claimer that leases the first `claims` deliveries
// it creates (one per request) and records the claims it was given.
type claimStore struct {
	fakeStore
	claims int
	mu     sync.Mutex
	seen   []herald.Claim
	plain  int // EventPublish calls
}

func (s *claimStore) EventPublish(_ context.Context, _ time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	s.mu.Lock()
	s.plain++
	s.mu.Unlock()
	res, _, err := s.EventPublishClaim(context.Background(), time.Time{}, reqs, herald.Claim{})
	return res, err
}

func (s *claimStore) EventPublishClaim(_ context.Context, now time.Time, reqs []herald.PublishRequest, c herald.Claim) ([]herald.PublishResult, herald.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, c)
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	res := make([]herald.PublishResult, len(reqs))
	for i, r := range reqs {
		id := "dlv_" + r.Event.ID
		res[i] = herald.PublishResult{EventID: r.Event.ID, Deliveries: 1, DeliveryIDs: []string{id}}
		if len(lease.Deliveries) < s.claims {
			lease.Deliveries = append(lease.Deliveries, herald.LeasedDelivery{Delivery: herald.Delivery{ID: id, NextAttemptAt: now}})
		}
	}
	return res, lease, nil
}

func TestClaims(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		claims, events int
		offer          bool // Claim reports true
		wantClaimed    int
		wantCommitCall int32
	}{
		{"all claimed: no wake-up", 3, 3, true, 3, 0},
		{"some left: wake-up", 2, 3, true, 2, 1},
		{"nothing offered: plain publish, wake-up", 3, 3, false, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &claimStore{claims: tc.claims}
			var commits atomic.Int32
			var claimed []herald.LeasedDelivery
			var at time.Time
			now := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("x", 3600))
			p := newPublisher(t, publish.Config{
				Store: st, Now: func() time.Time { return now },
				OnCommit: func() { commits.Add(1) },
				Claim: func() (herald.Claim, bool) {
					return herald.Claim{Owner: "me", Margin: time.Second, Room: func(string) (int, bool) { return 5, true }}, tc.offer
				},
				OnClaim: func(leasedAt time.Time, l herald.Lease) { at, claimed = leasedAt, l.Deliveries },
			})
			if _, err := p.Publish(t.Context(), reqs(0, tc.events)); err != nil {
				t.Fatal(err)
			}
			if len(claimed) != tc.wantClaimed {
				t.Errorf("OnClaim got %d deliveries, want %d", len(claimed), tc.wantClaimed)
			}
			if tc.wantClaimed > 0 && !at.Equal(now.Truncate(time.Microsecond)) || at.Location() != time.UTC && tc.wantClaimed > 0 {
				t.Errorf("leased at %v, want the commit's now %v in UTC to the microsecond", at, now)
			}
			if got := commits.Load(); got != tc.wantCommitCall {
				t.Errorf("OnCommit called %d times, want %d", got, tc.wantCommitCall)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if tc.offer && (len(st.seen) != 1 || st.seen[0].Owner != "me" || st.seen[0].Room == nil) {
				t.Errorf("the store was given claims %+v", st.seen)
			}
			if !tc.offer && st.plain != 1 {
				t.Errorf("EventPublish called %d times without a claim, want 1", st.plain)
			}
		})
	}
}

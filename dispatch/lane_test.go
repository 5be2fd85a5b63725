package dispatch

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald"
)

// fakeEndpoint is a fake transport that records when each request left and
// answers with answer (nil: 200).
type fakeEndpoint struct {
	mu     sync.Mutex
	times  []time.Time
	answer func(n int, r *http.Request) *http.Response
}

func (f *fakeEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	n := len(f.times)
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	if f.answer != nil {
		return f.answer(n, r), nil
	}
	return okResponse(r), nil
}

func (f *fakeEndpoint) sent() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.times)
}

// runBubble starts a dispatcher inside a synctest bubble, runs until done
// reports true (checked every 100ms of fake time), then stops it.
func runBubble(t *testing.T, st *fakeStore, rt http.RoundTripper, done func() bool, mods ...func(*Config)) {
	t.Helper()
	cfg := Config{Store: st, Transport: rt, Logger: testLogger(t), PollInterval: 100 * time.Millisecond}
	for _, m := range mods {
		m(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background()) }()
	deadline := time.Now().Add(time.Hour)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("not done after an hour of fake time")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.Stop()
	if err := <-started; err != nil {
		t.Errorf("Start = %v", err)
	}
}

// maxInWindow returns the largest number of times within any closed window
// [t, t+w].
func maxInWindow(times []time.Time, w time.Duration) int {
	slices.SortFunc(times, time.Time.Compare)
	best, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) > w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		sub := testSub("https://endpoint.example/hook")
		sub.Delivery.MaxRPS = 20
		sub.Delivery.MaxInFlight = 100
		st.addSub(sub)
		st.publish(t, sub.ID, time.Now(), repeat(`{}`, 100)...)
		ep := &fakeEndpoint{}
		runBubble(t, st, ep, func() bool { return st.countStatus(herald.DeliverySucceeded) == 100 })
		times := ep.sent()
		if len(times) != 100 {
			t.Fatalf("%d requests, want 100", len(times))
		}
		if n := maxInWindow(times, time.Second); n > 20 {
			t.Errorf("%d requests within one second, want at most 20", n)
		}
		// Paced, not starved: 100 requests at ~20/s take about 5 s.
		if span := times[len(times)-1].Sub(times[0]); span > 6*time.Second {
			t.Errorf("100 requests took %s at max_rps 20", span)
		}
	})
}

// TestLanePace: a lane's room is what is left of LaneCap, or of its pace
// (what it finished in the last second, measured over windows of 100 ms) as
// far as the lanes' spare memory goes; a lane that stops finishing loses its
// pace.
func TestLanePace(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	sub := testSub("https://endpoint.example/hook")
	sub.Delivery.MaxInFlight = 2
	base := herald.LaneCap(sub.Delivery)
	l := newLane(sub, t0)
	const plenty = 1 << 40
	check := func(at time.Time, spare int64, want int) {
		t.Helper()
		if got := l.room(at, time.Minute, spare); got != want {
			t.Errorf("room at %s (spare %d) = %d, want %d", at.Sub(t0), spare, got, want)
		}
	}
	check(t0, plenty, base)
	for i := range 50 {
		l.finished(ms(i), 1) // the first call starts the window at t0
	}
	check(ms(50), plenty, base) // no window measured yet
	check(ms(100), plenty, 500) // 50 in 100 ms: 500 a second
	check(ms(100), 0, base)     // no memory to spare
	check(ms(100), 100*itemOverhead, 100)
	check(ms(1000), plenty, 50) // nothing finished since: the pace falls
	check(ms(10_000), plenty, base)
	l.finished(ms(100), 1) // closes the window at 500/s
	check(ms(150), plenty, 500)
	l.queue = make([]item, 10)
	l.inflightN = 2
	check(ms(150), plenty, 488)
	l.sub.Ordered = true
	check(ms(150), plenty, 0)
}

// TestLaneMemory: a lane that keeps up is leased more than LaneCap while the
// lanes hold less than LaneMemory, never more once they hold that much; and
// every byte counted against it is given back.
func TestLaneMemory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		memory   int64
		wantMore bool
	}{{"spare", 0, true}, {"none spare", 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				st := newFakeStore()
				sub := testSub("https://fast.example/hook")
				sub.Delivery.MaxInFlight = 1
				st.addSub(sub)
				capS := herald.LaneCap(sub.Delivery)
				const n = 400
				st.publish(t, sub.ID, time.Now(), repeat(`{"n":1}`, n)...)
				ep := &fakeEndpoint{answer: func(_ int, r *http.Request) *http.Response {
					time.Sleep(time.Millisecond)
					return okResponse(r)
				}}
				d, err := New(Config{Store: st, Transport: ep, Logger: testLogger(t),
					PollInterval: 10 * time.Millisecond, LaneMemory: tc.memory})
				if err != nil {
					t.Fatal(err)
				}
				started := make(chan error, 1)
				go func() { started <- d.Start(context.Background()) }()
				most := 0 // the most the lane held
				for st.countStatus(herald.DeliverySucceeded) < n {
					time.Sleep(time.Millisecond)
					d.mu.Lock()
					if l := d.lanes[sub.ID]; l != nil {
						most = max(most, len(l.queue)+l.inflightN)
					}
					d.mu.Unlock()
				}
				d.Stop()
				if err := <-started; err != nil {
					t.Fatal(err)
				}
				if tc.wantMore && most <= capS || !tc.wantMore && most > capS {
					t.Errorf("the lane held at most %d (LaneCap %d, LaneMemory %d)", most, capS, tc.memory)
				}
				d.mu.Lock()
				defer d.mu.Unlock()
				if d.held != 0 {
					t.Errorf("%d bytes still counted as held", d.held)
				}
			})
		})
	}
}

func TestMaxInWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(0, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	if n := maxInWindow(at(0, 500, 1000, 1001), time.Second); n != 3 {
		t.Errorf("got %d, want 3", n)
	}
	if n := maxInWindow(at(0, 2000, 4000), time.Second); n != 1 {
		t.Errorf("got %d, want 1", n)
	}
}

// TestRetryAfterPausesLane: a 429 with Retry-After pauses the whole lane:
// what it had queued goes back to the store due at the end of the pause, and
// nothing is sent to the subscription before then. Another subscription is
// not affected.
func TestRetryAfterPausesLane(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		sub := testSub("https://throttled.example/hook")
		// The store lets a lane hold min(max_in_flight, 10 × max_rps)
		// deliveries: at 1 request per second, four wait in the lane.
		sub.Delivery.MaxInFlight = 5
		sub.Delivery.MaxRPS = 1
		sub.Delivery.Retry = herald.RetryPolicy{MaxAttempts: 5, Window: time.Hour, Base: time.Second, Cap: time.Minute}
		st.addSub(sub)
		other := testSub("https://other.example/hook")
		st.addSub(other)
		t0 := time.Now()
		st.publish(t, sub.ID, t0, repeat(`{}`, 5)...)

		var mu sync.Mutex
		byHost := map[string][]time.Time{}
		ep := &fakeEndpoint{answer: func(n int, r *http.Request) *http.Response {
			mu.Lock()
			byHost[r.URL.Host] = append(byHost[r.URL.Host], time.Now())
			mu.Unlock()
			if n == 0 {
				resp := okResponse(r)
				resp.StatusCode = http.StatusTooManyRequests
				resp.Header.Set("Retry-After", strconv.Itoa(30))
				return resp
			}
			return okResponse(r)
		}}
		published := false
		runBubble(t, st, ep, func() bool {
			if !published && time.Since(t0) >= 5*time.Second {
				st.publish(t, other.ID, time.Now(), repeat(`{}`, 3)...)
				published = true
			}
			return st.countStatus(herald.DeliverySucceeded) == 8
		})
		mu.Lock()
		defer mu.Unlock()
		throttled := byHost["throttled.example"]
		if len(throttled) != 6 {
			t.Fatalf("%d requests to the throttled endpoint, want 6", len(throttled))
		}
		for _, at := range throttled[1:] {
			if at.Sub(throttled[0]) < 30*time.Second {
				t.Errorf("request %s after the 429, inside the 30s pause", at.Sub(throttled[0]))
			}
		}
		for _, at := range byHost["other.example"] {
			if at.Sub(t0) > 10*time.Second {
				t.Errorf("the other subscription waited %s", at.Sub(t0))
			}
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		var released int
		for _, r := range st.releases {
			if len(r.ids) > 0 && r.at.Equal(throttled[0].Add(30*time.Second).UTC().Truncate(time.Microsecond)) {
				released += len(r.ids)
			}
		}
		if released != 4 {
			t.Errorf("%d queued deliveries released due at the pause end, want 4 (releases %+v)", released, st.releases)
		}
	})
}

// TestStaleLeaseGivenBack: a delivery that waited in its lane for half the
// lease margin is given back and leased again rather than sent under a lease
// that could expire before its outcome is written. Every delivery still goes
// out exactly once, at the subscription's rate.
func TestStaleLeaseGivenBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		sub := testSub("https://endpoint.example/hook")
		sub.Delivery.MaxRPS = 1
		sub.Delivery.MaxInFlight = 10
		st.addSub(sub)
		st.publish(t, sub.ID, time.Now(), repeat(`{}`, 10)...)
		ep := &fakeEndpoint{}
		runBubble(t, st, ep, func() bool { return st.countStatus(herald.DeliverySucceeded) == 10 },
			func(c *Config) { c.LeaseMargin = 2 * time.Second })
		if n := len(ep.sent()); n != 10 {
			t.Errorf("%d requests, want 10", n)
		}
		if n := maxInWindow(ep.sent(), time.Second); n > 1 {
			t.Errorf("%d requests within one second at max_rps 1", n)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		var given int
		for _, r := range st.releases {
			given += len(r.ids)
		}
		if given == 0 {
			t.Error("no stale delivery was given back")
		}
	})
}

// TestRecordFailure: when outcomes cannot be written, the deliveries are not
// lost: Stop gives them back to the store, pending, with no attempt counted.
func TestRecordFailure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.recordErr = herald.ErrInvalid // not retried
		sub := testSub("https://endpoint.example/hook")
		st.addSub(sub)
		id := st.publish(t, sub.ID, time.Now(), `{}`)[0]
		ep := &fakeEndpoint{}
		runBubble(t, st, ep, func() bool {
			st.mu.Lock()
			defer st.mu.Unlock()
			return st.records > 0
		})
		dl, attempts := st.delivery(id)
		if dl.Status != herald.DeliveryPending || len(attempts) != 0 {
			t.Errorf("delivery %s with %d attempts, want pending with none", dl.Status, len(attempts))
		}
	})
}

// TestLeaseRoomCountsUnrecordedOutcomes: a lane's room for a lease
// (LeaseParams.Room) leaves out the deliveries it sent whose outcomes wait
// for the recorder, as the store's count of delivering rows did: they are
// still delivering until written.
func TestLeaseRoomCountsUnrecordedOutcomes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.recordGate = make(chan struct{})
		sub := testSub("https://endpoint.example/hook")
		sub.Delivery.MaxInFlight = 2
		st.addSub(sub)
		st.publish(t, sub.ID, time.Now(), `{}`, `{}`, `{}`)
		ep := &fakeEndpoint{}
		d, err := New(Config{Store: st, Transport: ep, Logger: testLogger(t), PollInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan error, 1)
		go func() { started <- d.Start(context.Background()) }()
		check := func(what string, unrecorded int) {
			t.Helper()
			d.mu.Lock()
			l := d.lanes[sub.ID]
			if l == nil {
				d.mu.Unlock()
				t.Fatalf("%s: no lane", what)
			}
			got, room := l.unrecorded, l.room(d.cfg.Now(), d.cfg.LeaseMargin, d.spare())
			d.mu.Unlock()
			if got != unrecorded {
				t.Errorf("%s: %d outcomes counted unrecorded, want %d", what, got, unrecorded)
			}
			if n, ok := d.leaseRoom(sub.ID); !ok || n != max(room-unrecorded, 0) {
				t.Errorf("%s: leaseRoom = %d, %v, want %d (room %d less %d unrecorded)", what, n, ok,
					max(room-unrecorded, 0), room, unrecorded)
			}
		}
		for {
			ep.mu.Lock()
			n := len(ep.times)
			ep.mu.Unlock()
			if n == 3 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // the recorder waits at the gate
		synctest.Wait()
		check("outcomes waiting", 3)
		close(st.recordGate)
		time.Sleep(time.Second)
		synctest.Wait()
		check("outcomes written", 0)
		d.Stop()
		if err := <-started; err != nil {
			t.Errorf("Start = %v", err)
		}
	})
}

// TestLeaseRoomLeavesOutAClaimNotHandedOver: the room a lane reports to a
// publish (Claim.Room) is held for it until the publish's claim is handed
// over (Claimed) or the next publish asks (Claim): a lease in between must
// not take the same room again.
func TestLeaseRoomLeavesOutAClaimNotHandedOver(t *testing.T) {
	t.Parallel()
	d := newTestDispatcher(t, newFakeStore(), nil)
	sub := testSub("https://endpoint.example/hook")
	d.mu.Lock()
	d.lanes[sub.ID] = newLane(sub, d.cfg.Now())
	d.mu.Unlock()
	base, ok := d.leaseRoom(sub.ID)
	if !ok || base == 0 {
		t.Fatalf("leaseRoom = %d, %v; want the lane's room", base, ok)
	}
	if n, ok := d.room(sub.ID); !ok || n != base {
		t.Fatalf("Claim.Room = %d, %v, want %d", n, ok, base)
	}
	if n, _ := d.leaseRoom(sub.ID); n != 0 {
		t.Errorf("leaseRoom while the claim is not handed over = %d, want 0", n)
	}
	d.Claimed(d.cfg.Now(), herald.Lease{})
	if n, _ := d.leaseRoom(sub.ID); n != base {
		t.Errorf("leaseRoom after Claimed = %d, want %d", n, base)
	}
	d.room(sub.ID)
	d.Claim() // the next publish: the last one's commit failed
	if n, _ := d.leaseRoom(sub.ID); n != base {
		t.Errorf("leaseRoom after the next Claim = %d, want %d", n, base)
	}
}

package dispatch

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald"
)

// endpoint is a test receiver: answer decides each response by the order in
// which requests arrive (0 first); it records what arrived.
type endpoint struct {
	mu       sync.Mutex
	got      []arrival
	inFlight int
	maxIn    int
	answer   func(n int, a arrival, w http.ResponseWriter)
	srv      *httptest.Server
}

type arrival struct {
	header http.Header
	body   []byte
}

// envelopeID returns the event id of a single-event body.
func (a arrival) envelopeID() string {
	var env struct{ ID string }
	_ = json.Unmarshal(a.body, &env)
	return env.ID
}

func newEndpoint(tb testing.TB, answer func(n int, a arrival, w http.ResponseWriter)) *endpoint {
	tb.Helper()
	e := &endpoint{answer: answer}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a := arrival{header: r.Header.Clone(), body: b}
		e.mu.Lock()
		n := len(e.got)
		e.got = append(e.got, a)
		e.inFlight++
		e.maxIn = max(e.maxIn, e.inFlight)
		e.mu.Unlock()
		if e.answer != nil {
			e.answer(n, a, w)
		}
		e.mu.Lock()
		e.inFlight--
		e.mu.Unlock()
	}))
	tb.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) arrivals() []arrival {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, nil)
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	st.addSub(sub)
	reg := prometheus.NewRegistry()
	// The poll interval is long: the work below arrives through Notify.
	d := newTestDispatcher(t, st, func(c *Config) { c.PollInterval = time.Hour; c.Registerer = reg })
	time.Sleep(10 * time.Millisecond) // let the first (empty) lease round pass
	ids := st.publish(t, sub.ID, time.Now(), repeat(`{"n":1}`, 20)...)
	d.Notify()
	waitFor(t, "20 deliveries", func() bool { return st.countStatus(herald.DeliverySucceeded) == 20 })

	byEvent := map[string]arrival{}
	for _, a := range e.arrivals() {
		byEvent[a.envelopeID()] = a
	}
	for _, id := range ids {
		dl, attempts := st.delivery(id)
		if len(attempts) != 1 || attempts[0].StatusCode != 200 || attempts[0].N != 1 {
			t.Errorf("delivery %s: attempts %+v", id, attempts)
		}
		a, ok := byEvent[dl.EventID]
		if !ok {
			t.Errorf("event %s never arrived", dl.EventID)
			continue
		}
		if got := a.header.Get("X-Trace-Id"); got != dl.TraceID {
			t.Errorf("X-Trace-Id = %q, want %q", got, dl.TraceID)
		}
	}
	if n := len(e.arrivals()); n != 20 {
		t.Errorf("%d requests arrived, want 20", n)
	}
	if got := counterValue(t, reg, "herald_delivery_attempts_total", "success"); got != 20 {
		t.Errorf("herald_delivery_attempts_total{outcome=success} = %v, want 20", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
		if mf.GetName() == "herald_delivery_latency_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() != 20 {
			t.Errorf("latency histogram has %d samples, want 20", mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	for _, name := range []string{"herald_delivery_latency_seconds", "herald_deliveries_pending", "herald_lease_batch_size"} {
		if !have[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
}

func counterValue(tb testing.TB, g prometheus.Gatherer, name, outcome string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// wakerStore is a store that wakes the dispatcher itself.
type wakerStore struct {
	*fakeStore
	wake chan struct{}
}

func (s wakerStore) Wake(ctx context.Context, ch chan<- struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func TestWaker(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, nil)
	st := wakerStore{newFakeStore(), make(chan struct{})}
	sub := testSub(e.srv.URL)
	st.addSub(sub)
	newTestDispatcher(t, st, func(c *Config) { c.PollInterval = time.Hour })
	time.Sleep(10 * time.Millisecond)
	st.publish(t, sub.ID, time.Now(), `{}`)
	st.wake <- struct{}{}
	waitFor(t, "the delivery", func() bool { return st.countStatus(herald.DeliverySucceeded) == 1 })
}

func TestRetryThenSucceed(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(n int, _ arrival, w http.ResponseWriter) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "try later")
		}
	})
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	st.addSub(sub)
	id := st.publish(t, sub.ID, time.Now(), `{}`)[0]
	newTestDispatcher(t, st, nil)
	waitFor(t, "success", func() bool { return st.countStatus(herald.DeliverySucceeded) == 1 })
	dl, attempts := st.delivery(id)
	if len(attempts) != 3 || dl.Attempts != 3 {
		t.Fatalf("attempts = %+v, want 3", attempts)
	}
	for i, a := range attempts[:2] {
		if a.N != i+1 || a.StatusCode != 500 || a.ResponseBody != "try later" || a.Error != "" {
			t.Errorf("attempt %d = %+v", i+1, a)
		}
	}
	if dl.FirstAttemptAt.IsZero() || !dl.FirstAttemptAt.Equal(attempts[0].StartedAt) {
		t.Errorf("FirstAttemptAt = %s, want the first attempt's start %s", dl.FirstAttemptAt, attempts[0].StartedAt)
	}
}

func TestFailForGood(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(_ int, _ arrival, w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) })
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	st.addSub(sub)
	id := st.publish(t, sub.ID, time.Now(), `{}`)[0]
	newTestDispatcher(t, st, nil)
	waitFor(t, "failure", func() bool { return st.countStatus(herald.DeliveryFailed) == 1 })
	_, attempts := st.delivery(id)
	if len(attempts) != sub.Delivery.Retry.MaxAttempts {
		t.Errorf("%d attempts, want %d", len(attempts), sub.Delivery.Retry.MaxAttempts)
	}
	if s := st.sub(sub.ID); s.FailingSince.IsZero() {
		t.Error("FailingSince not set")
	}
}

func TestGoneDisables(t *testing.T) {
	t.Parallel()
	gone := newEndpoint(t, func(_ int, _ arrival, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) })
	watcher := newEndpoint(t, nil)
	st := newFakeStore()
	sub := testSub(gone.srv.URL)
	sub.EncryptionKey = []byte("0123456789abcdef0123456789abcdef")
	sub.Events = []string{"job.*"}
	st.addSub(sub)
	w := testSub(watcher.srv.URL)
	w.Events = []string{herald.EventTypeDisabled}
	st.addSub(w)
	st.publish(t, sub.ID, time.Now(), `{}`)
	newTestDispatcher(t, st, nil)

	waitFor(t, "the disabled event to arrive", func() bool { return len(watcher.arrivals()) == 1 })
	got := st.sub(sub.ID)
	if got.Status != herald.StatusDisabled || got.DisabledReason != ReasonGone {
		t.Errorf("subscription status %q reason %q", got.Status, got.DisabledReason)
	}
	body := watcher.arrivals()[0].body
	var env struct {
		EventType string          `json:"event_type"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.EventType != herald.EventTypeDisabled {
		t.Fatalf("disabled event body %s: %v", body, err)
	}
	var data map[string]any
	if err := json.Unmarshal(env.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["id"] != sub.ID || data["status"] != "disabled" || data["disabled_reason"] != ReasonGone ||
		data["url"] != sub.URL || data["encryption"] != true {
		t.Errorf("event data = %s", env.Data)
	}
	for _, secret := range []string{"whsec_", "signing_secret", "encryption_key", "0123456789abcdef"} {
		if strings.Contains(string(env.Data), secret) {
			t.Errorf("event data shows %q: %s", secret, env.Data)
		}
	}
}

// A PATCH that lands between the dispatcher's read and its write is kept:
// the store refuses the stale write, and disable reads again.
func TestDisableKeepsConcurrentChange(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	sub := testSub("https://old.example/hook")
	st.addSub(sub)
	patched := false
	st.beforeUpdate = func(stored *herald.Subscription) {
		if !patched {
			patched = true
			stored.URL = "https://new.example/hook"
			stored.Revision++
		}
	}
	d, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := d.disable(t.Context(), sub.TenantID, sub.ID, ReasonGone)
	if err != nil || !ok {
		t.Fatalf("disable = %v, %v", ok, err)
	}
	got := st.sub(sub.ID)
	if got.Status != herald.StatusDisabled || got.URL != "https://new.example/hook" || got.Revision != 2 {
		t.Errorf("after disable: status %q url %q revision %d; want disabled, the patched url, revision 2",
			got.Status, got.URL, got.Revision)
	}
}

func TestDisableFailing(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	st := newFakeStore()
	old := testSub("https://a.example")
	old.FailingSince, old.UpdatedAt = now.Add(-121*time.Hour), now.Add(-200*time.Hour)
	st.addSub(old)
	recent := testSub("https://b.example")
	recent.FailingSince, recent.UpdatedAt = now.Add(-time.Hour), now.Add(-200*time.Hour)
	st.addSub(recent)
	reenabled := testSub("https://c.example")
	reenabled.FailingSince, reenabled.UpdatedAt = now.Add(-300*time.Hour), now.Add(-time.Hour)
	st.addSub(reenabled)

	tests := []struct {
		name string
		cfg  func(*Config)
		want int
	}{
		{"never", func(c *Config) { c.DisableNever = true }, 0},
		{"negative is never", func(c *Config) { c.DisableAfter = -1 }, 0},
		{"default 120h", nil, 1},
	}
	for _, tt := range tests {
		// Not parallel: the cases share the store, and the last one changes it.
		d := testDispatcher(t, func(c *Config) {
			c.Store = st
			c.Now = func() time.Time { return now }
			if tt.cfg != nil {
				tt.cfg(c)
			}
		})
		n, err := d.disableFailing(context.Background())
		if err != nil || n != tt.want {
			t.Errorf("%s: disableFailing = %d, %v; want %d", tt.name, n, err, tt.want)
		}
	}
	if got := st.sub(old.ID); got.Status != herald.StatusDisabled || got.DisabledReason != "every attempt failed for 120h0m0s" {
		t.Errorf("old: status %q reason %q", got.Status, got.DisabledReason)
	}
	for _, s := range []herald.Subscription{recent, reenabled} {
		if got := st.sub(s.ID); got.Status != herald.StatusActive {
			t.Errorf("%s: status %q, want active", s.URL, got.Status)
		}
	}
	if len(st.published) != 1 || st.published[0].Event.EventType != herald.EventTypeDisabled ||
		st.published[0].Event.TenantID != old.TenantID {
		t.Errorf("published %+v", st.published)
	}
}

// TestDisableFailingPeriodic: the running dispatcher looks for failing
// subscriptions by itself, every DisableCheckEvery.
func TestDisableFailingPeriodic(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	sub := testSub("https://a.example")
	sub.FailingSince = time.Now().Add(-2 * time.Hour)
	st.addSub(sub)
	newTestDispatcher(t, st, func(c *Config) {
		c.DisableAfter = time.Hour
		c.DisableCheckEvery = 10 * time.Millisecond
	})
	waitFor(t, "the subscription to be disabled", func() bool { return st.sub(sub.ID).Status == herald.StatusDisabled })
	if got := st.sub(sub.ID).DisabledReason; got != "every attempt failed for 1h0m0s" {
		t.Errorf("reason %q", got)
	}
}

func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(int, arrival, http.ResponseWriter) { time.Sleep(5 * time.Millisecond) })
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	sub.Delivery.MaxInFlight = 3
	st.addSub(sub)
	st.publish(t, sub.ID, time.Now(), repeat(`{}`, 30)...)
	newTestDispatcher(t, st, nil)
	waitFor(t, "30 deliveries", func() bool { return st.countStatus(herald.DeliverySucceeded) == 30 })
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.maxIn > 3 {
		t.Errorf("%d requests in flight at once, want at most 3", e.maxIn)
	}
}

func TestOrdered(t *testing.T) {
	t.Parallel()
	var failed atomic.Bool
	var third string
	e := newEndpoint(t, func(n int, a arrival, w http.ResponseWriter) {
		if a.envelopeID() == third && failed.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	sub.Ordered = true
	st.addSub(sub)
	var events []string
	for _, id := range st.publish(t, sub.ID, time.Now(), repeat(`{}`, 8)...) {
		dl, _ := st.delivery(id)
		events = append(events, dl.EventID)
	}
	third = events[2]
	newTestDispatcher(t, st, nil)
	waitFor(t, "8 deliveries", func() bool { return st.countStatus(herald.DeliverySucceeded) == 8 })

	var got []string
	for _, a := range e.arrivals() {
		got = append(got, a.envelopeID())
	}
	want := slices.Concat(events[:3], events[2:])
	if !slices.Equal(got, want) {
		t.Errorf("arrival order:\n got %v\nwant %v", got, want)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.maxIn > 1 {
		t.Errorf("%d requests in flight at once, want 1", e.maxIn)
	}
}

// TestSlowLaneDoesNotBlock: one endpoint holds every request until the end of
// the test; another subscription's deliveries all go through meanwhile.
func TestSlowLaneDoesNotBlock(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newEndpoint(t, func(int, arrival, http.ResponseWriter) { <-release })
	fast := newEndpoint(t, nil)
	st := newFakeStore()
	s1 := testSub(slow.srv.URL)
	s1.Delivery.Timeout = time.Minute
	st.addSub(s1)
	s2 := testSub(fast.srv.URL)
	st.addSub(s2)
	st.publish(t, s1.ID, time.Now(), repeat(`{}`, 50)...)
	newTestDispatcher(t, st, func(c *Config) { c.MaxConcurrency = 64 })
	waitFor(t, "the slow lane to fill", func() bool { return len(slow.arrivals()) == s1.Delivery.MaxInFlight })
	st.publish(t, s2.ID, time.Now(), repeat(`{}`, 30)...)
	waitFor(t, "the fast lane", func() bool { return st.countStatus(herald.DeliverySucceeded) == 30 })
	if n := len(slow.arrivals()); n != s1.Delivery.MaxInFlight {
		t.Errorf("slow endpoint got %d requests, want %d", n, s1.Delivery.MaxInFlight)
	}
	close(release)
	waitFor(t, "the slow lane", func() bool { return st.countStatus(herald.DeliverySucceeded) == 80 })
}

// TestStopDrains: with one request held by the endpoint and more queued in
// the lane, Stop gives the queued ones back at once, lets the held one
// finish, records it, and starts nothing new.
func TestStopDrains(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEndpoint(t, func(int, arrival, http.ResponseWriter) { <-release })
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	sub.Delivery.MaxInFlight = 1
	st.addSub(sub)
	ids := st.publish(t, sub.ID, time.Now(), repeat(`{}`, 5)...)
	d, err := New(Config{Store: st, Logger: testLogger(t), AllowPrivateNetworks: true, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background()) }()
	waitFor(t, "the first request", func() bool { return len(e.arrivals()) == 1 })

	stopped := make(chan struct{})
	go func() { d.Stop(); close(stopped) }()
	waitFor(t, "queued deliveries released", func() bool { return st.countStatus(herald.DeliveryPending) == 4 })
	select {
	case <-stopped:
		t.Fatal("Stop returned before the attempt under way finished")
	default:
	}
	close(release)
	<-stopped
	if err := <-started; err != nil {
		t.Errorf("Start = %v", err)
	}
	if n := len(e.arrivals()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if st.countStatus(herald.DeliverySucceeded) != 1 || st.countStatus(herald.DeliveryPending) != 4 ||
		st.countStatus(herald.DeliveryDelivering) != 0 {
		t.Errorf("after Stop: succeeded %d pending %d delivering %d", st.countStatus(herald.DeliverySucceeded),
			st.countStatus(herald.DeliveryPending), st.countStatus(herald.DeliveryDelivering))
	}
	for _, id := range ids {
		if dl, _ := st.delivery(id); dl.Status == herald.DeliveryPending && dl.Attempts != 0 {
			t.Errorf("released delivery %s has %d attempts", id, dl.Attempts)
		}
	}
	st.mu.Lock()
	last := st.releases[len(st.releases)-1]
	st.mu.Unlock()
	if last.owner != d.Owner() || last.ids != nil {
		t.Errorf("last release %+v, want all of the owner's leases and lanes", last)
	}
	d.Stop() // a second Stop returns at once
}

func TestStopBeforeStart(t *testing.T) {
	t.Parallel()
	d := testDispatcher(t, nil)
	d.Stop()
	if err := d.Start(context.Background()); err != nil {
		t.Errorf("Start after Stop = %v", err)
	}
	if err := d.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	var failedOnce atomic.Bool
	e := newEndpoint(t, func(n int, a arrival, w http.ResponseWriter) {
		if failedOnce.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	sub.Delivery.BatchMaxEvents = 5
	sub.Delivery.MaxInFlight = 1
	st.addSub(sub)
	ids := st.publish(t, sub.ID, time.Now(), repeat(`{"k":"v"}`, 12)...)
	newTestDispatcher(t, st, nil)
	waitFor(t, "12 deliveries", func() bool { return st.countStatus(herald.DeliverySucceeded) == 12 })

	type batch struct {
		id      string
		members []string
	}
	var sent []batch
	for _, a := range e.arrivals() {
		var body struct {
			Timestamp string `json:"timestamp"`
			Data      []struct {
				ID   string          `json:"id"`
				Data json.RawMessage `json:"data"`
			} `json:"data"`
		}
		if err := json.Unmarshal(a.body, &body); err != nil || body.Timestamp == "" {
			t.Fatalf("batch body %s: %v", a.body, err)
		}
		b := batch{id: a.header.Get("Webhook-Id")}
		for _, m := range body.Data {
			b.members = append(b.members, m.ID)
		}
		if !strings.HasPrefix(b.id, herald.PrefixBatch) || len(b.members) < 1 || len(b.members) > 5 {
			t.Errorf("batch %s with %d members", b.id, len(b.members))
		}
		sent = append(sent, b)
	}
	// The first batch failed and went again: same id, same members.
	again := slices.IndexFunc(sent[1:], func(b batch) bool { return b.id == sent[0].id })
	if again < 0 || !slices.Equal(sent[0].members, sent[1+again].members) {
		t.Fatalf("first batch %+v not sent again whole: %+v", sent[0], sent[1:])
	}
	sent = slices.Delete(sent, 0, 1)
	seen := map[string]int{}
	for _, b := range sent {
		for _, m := range b.members {
			seen[m]++
		}
	}
	if len(seen) != 12 {
		t.Errorf("%d distinct events delivered, want 12", len(seen))
	}
	for ev, n := range seen {
		if n != 1 {
			t.Errorf("event %s delivered in %d batches", ev, n)
		}
	}
	for _, id := range ids {
		dl, _ := st.delivery(id)
		if !strings.HasPrefix(dl.BatchID, herald.PrefixBatch) {
			t.Errorf("delivery %s has batch id %q", id, dl.BatchID)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{}},
		{"negative margin", Config{Store: newFakeStore(), LeaseMargin: -time.Second}},
		{"negative poll", Config{Store: newFakeStore(), PollInterval: -time.Second}},
		{"negative limit", Config{Store: newFakeStore(), LeaseLimit: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tt.cfg); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	d, err := New(Config{Store: newFakeStore()})
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.DisableAfter != DefaultDisableAfter || d.cfg.DisableNever || d.cfg.LeaseMargin != DefaultLeaseMargin ||
		d.cfg.HeaderPrefix != DefaultHeaderPrefix || d.Owner() == "" {
		t.Errorf("defaults: %+v", d.cfg)
	}
}

func TestClaimed(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEndpoint(t, func(int, arrival, http.ResponseWriter) { <-release })
	st := newFakeStore()
	sub := testSub(e.srv.URL)
	sub.Delivery.MaxInFlight = 2
	st.addSub(sub)
	d, err := New(Config{Store: st, Logger: testLogger(t), AllowPrivateNetworks: true, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Claim(); ok {
		t.Error("Claim before Start reported true")
	}
	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background()) }()
	var c herald.Claim
	waitFor(t, "Claim once started", func() bool {
		var ok bool
		c, ok = d.Claim()
		return ok
	})
	if _, ok := c.Room(sub.ID); c.Owner != d.Owner() || ok {
		t.Errorf("Claim of a dispatcher without lanes: owner %q, a lane for %s: %v", c.Owner, sub.ID, ok)
	}
	st.mu.Lock()
	leases := st.leases
	st.mu.Unlock()

	// Three claimed deliveries: two go out at once (max_in_flight 2), one
	// waits in the lane, which then has room for its cap less three.
	laneCap := herald.LaneCap(sub.Delivery)
	ids := st.publish(t, sub.ID, time.Now(), repeat(`{}`, 3)...)
	now := time.Now().UTC().Truncate(time.Microsecond)
	d.Claimed(now, st.claim(c.Owner, now, c.Margin, ids...))
	waitFor(t, "two requests", func() bool { return len(e.arrivals()) == 2 })
	c, _ = d.Claim()
	if got, _ := c.Room(sub.ID); got != laneCap-3 {
		want := laneCap - 3
		t.Errorf("room of the lane = %d, want %d", got, want)
	}
	close(release)
	waitFor(t, "three deliveries", func() bool { return st.countStatus(herald.DeliverySucceeded) == 3 })
	c, _ = d.Claim()
	if got, _ := c.Room(sub.ID); got != laneCap {
		want := laneCap
		t.Errorf("room of the idle lane = %d, want %d", got, want)
	}
	st.mu.Lock()
	if st.leases != leases {
		t.Errorf("%d lease calls for claimed deliveries, want none", st.leases-leases)
	}
	st.mu.Unlock()

	d.Stop()
	if err := <-started; err != nil {
		t.Errorf("Start = %v", err)
	}
	if _, ok := d.Claim(); ok {
		t.Error("Claim after Stop reported true")
	}
	// Handed over after Stop, claimed deliveries go back to the store.
	late := st.publish(t, sub.ID, time.Now(), `{}`)
	d.Claimed(now, st.claim(c.Owner, now, c.Margin, late...))
	if dl, _ := st.delivery(late[0]); dl.Status != herald.DeliveryPending {
		t.Errorf("a delivery claimed after Stop is %s, want pending", dl.Status)
	}
}

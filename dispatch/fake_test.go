package dispatch

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// fakeStore is an in-memory herald.Store with only what the dispatcher uses;
// the embedded nil interface panics on anything else. It follows the
// documented contract of each method closely enough for the dispatcher's
// tests (lanes, caps, ordered heads, batches, lease owners).
type fakeStore struct {
	herald.Store

	mu        sync.Mutex
	seq       int64
	subs      map[string]*herald.Subscription
	events    map[string]herald.Event // tenant + "/" + id
	dels      []*fakeDelivery         // in Seq order
	attempts  map[string][]herald.Attempt
	published []herald.PublishRequest
	leases    int // DeliveryLease calls
	releases  []fakeRelease
	records   int // DeliveryRecord calls
	// recordErr, when set, is returned by DeliveryRecord.
	recordErr error
	// recordGate, when set, holds DeliveryRecord until it is closed.
	recordGate chan struct{}
	// beforeUpdate, when set, runs (with mu held) before SubscriptionUpdate
	// checks the revision: a concurrent writer getting in first.
	beforeUpdate func(stored *herald.Subscription)
}

type fakeDelivery struct {
	d       herald.Delivery
	owner   string
	expires time.Time
}

type fakeRelease struct {
	owner string
	ids   []string
	at    time.Time
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		subs:     map[string]*herald.Subscription{},
		events:   map[string]herald.Event{},
		attempts: map[string][]herald.Attempt{},
	}
}

// testSub returns an active subscription to url with small, fast settings.
func testSub(url string) herald.Subscription {
	return herald.Subscription{
		ID:              herald.NewID(herald.PrefixSubscription),
		TenantID:        "acme",
		URL:             url,
		Name:            "test",
		Events:          []string{"*"},
		Secrets:         []herald.Secret{{Value: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		SignatureScheme: "standard",
		IncludePayload:  true,
		PayloadFormat:   herald.FormatEnvelope,
		Mode:            herald.ModeLive,
		Headers:         map[string]string{},
		Delivery: herald.DeliveryConfig{
			MaxRPS:         1000,
			MaxInFlight:    16,
			Timeout:        5 * time.Second,
			BatchMaxEvents: 1,
			Retry:          herald.RetryPolicy{MaxAttempts: 3, Window: time.Hour, Base: time.Millisecond, Cap: 10 * time.Millisecond},
		},
		Status: herald.StatusActive,
	}
}

func (s *fakeStore) addSub(sub herald.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[sub.ID] = &sub
}

// publish stores one event per data value and a delivery of each to sub,
// due at now, and returns the delivery ids.
func (s *fakeStore) publish(tb testing.TB, subID string, now time.Time, data ...string) []string {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[subID]
	var ids []string
	for _, raw := range data {
		ev := herald.Event{
			TenantID:   sub.TenantID,
			ID:         herald.NewID(herald.PrefixEvent),
			EventType:  "job.status",
			Version:    "1.0",
			Data:       json.RawMessage(raw),
			CreateTime: now,
			ReceivedAt: now,
		}
		s.events[ev.TenantID+"/"+ev.ID] = ev
		ids = append(ids, s.addDelivery(sub, ev, now))
	}
	return ids
}

func (s *fakeStore) addDelivery(sub *herald.Subscription, ev herald.Event, now time.Time) string {
	s.seq++
	d := herald.Delivery{
		ID:             herald.NewID(herald.PrefixDelivery),
		TenantID:       sub.TenantID,
		SubscriptionID: sub.ID,
		EventID:        ev.ID,
		Status:         herald.DeliveryPending,
		NextAttemptAt:  now,
		TraceID:        herald.NewUUID(),
		Seq:            s.seq,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	s.dels = append(s.dels, &fakeDelivery{d: d})
	return d.ID
}

func (s *fakeStore) find(id string) *fakeDelivery {
	for _, fd := range s.dels {
		if fd.d.ID == id {
			return fd
		}
	}
	return nil
}

// delivery returns a delivery and its attempts.
func (s *fakeStore) delivery(id string) (herald.Delivery, []herald.Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fd := s.find(id)
	return fd.d, slices.Clone(s.attempts[id])
}

// countStatus counts deliveries in status.
func (s *fakeStore) countStatus(status string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, fd := range s.dels {
		if fd.d.Status == status {
			n++
		}
	}
	return n
}

func (s *fakeStore) sub(id string) herald.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.subs[id]
}

func laneCapOf(sub *herald.Subscription) int {
	return herald.LaneCap(sub.Delivery)
}

func (s *fakeStore) DeliveryLease(_ context.Context, p herald.LeaseParams) (herald.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases++
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	for _, fd := range s.dels {
		if fd.d.Status == herald.DeliveryDelivering && fd.expires.Before(p.Now) {
			fd.d.Status, fd.owner = herald.DeliveryPending, ""
		}
	}
	excluded := map[string]bool{}
	for _, id := range p.Exclude {
		excluded[id] = true
	}
	subIDs := make([]string, 0, len(s.subs))
	for id := range s.subs {
		subIDs = append(subIDs, id)
	}
	slices.Sort(subIDs)
	left := p.Limit
	for _, id := range subIDs {
		sub := s.subs[id]
		if sub.Status != herald.StatusActive || excluded[id] || left <= 0 {
			continue
		}
		allowance := laneCapOf(sub)
		room, known := 0, false
		if p.Room != nil {
			room, known = p.Room(id) // as SQLite: the owner's lane knows its room
		}
		var due []*fakeDelivery
		var head *fakeDelivery
		for _, fd := range s.dels {
			if fd.d.SubscriptionID != id {
				continue
			}
			switch fd.d.Status {
			case herald.DeliveryDelivering:
				allowance--
				if head == nil {
					head = fd
				}
			case herald.DeliveryPending:
				if head == nil {
					head = fd
				}
				if !fd.d.NextAttemptAt.After(p.Now) {
					due = append(due, fd)
				}
			}
		}
		if known {
			allowance = room
		}
		if sub.Ordered {
			due = nil
			if head != nil && head.d.Status == herald.DeliveryPending && !head.d.NextAttemptAt.After(p.Now) {
				due = []*fakeDelivery{head}
			}
		}
		slices.SortStableFunc(due, func(a, b *fakeDelivery) int {
			if c := a.d.NextAttemptAt.Compare(b.d.NextAttemptAt); c != 0 {
				return c
			}
			return cmp.Compare(a.d.Seq, b.d.Seq)
		})
		taken := 0
		for _, fd := range due {
			if allowance <= 0 || left <= 0 {
				break
			}
			if fd.d.Status != herald.DeliveryPending {
				continue // came with its batch
			}
			members := []*fakeDelivery{fd}
			if fd.d.BatchID != "" {
				members = nil
				for _, m := range s.dels {
					if m.d.BatchID == fd.d.BatchID && m.d.Status == herald.DeliveryPending {
						members = append(members, m)
					}
				}
			}
			for _, m := range members {
				m.d.Status = herald.DeliveryDelivering
				m.owner = p.Owner
				m.expires = p.Now.Add(p.Margin + sub.Delivery.Timeout)
				lease.Deliveries = append(lease.Deliveries, herald.LeasedDelivery{
					Delivery: m.d,
					Event:    s.events[m.d.TenantID+"/"+m.d.EventID],
				})
			}
			allowance -= len(members)
			left -= len(members)
			taken += len(members)
		}
		if taken > 0 {
			lease.Subscriptions[id] = *sub
		}
	}
	return lease, nil
}

func (s *fakeStore) DeliveryRecord(_ context.Context, outcomes []herald.Outcome) error {
	if s.recordGate != nil {
		<-s.recordGate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records++
	if s.recordErr != nil {
		return s.recordErr
	}
	for _, o := range outcomes {
		fd := s.find(o.DeliveryID)
		if fd == nil || fd.d.Status != herald.DeliveryDelivering || fd.owner != o.Owner {
			continue
		}
		d := &fd.d
		a := o.Attempt
		s.attempts[d.ID] = append(s.attempts[d.ID], a)
		d.Attempts++
		d.Status = o.Status
		if o.Status == herald.DeliveryPending {
			d.NextAttemptAt = o.NextAttemptAt
		} else {
			d.CompletedAt = o.Now
		}
		d.LastSleep = o.LastSleep
		if d.FirstAttemptAt.IsZero() {
			d.FirstAttemptAt = a.StartedAt
		}
		d.BatchID = o.BatchID
		d.LastStatusCode, d.LastError = a.StatusCode, a.Error
		d.UpdatedAt = o.Now
		fd.owner, fd.expires = "", time.Time{}
		sub := s.subs[d.SubscriptionID]
		if sub == nil {
			continue
		}
		if o.Status == herald.DeliverySucceeded {
			sub.FailingSince = time.Time{}
		} else if sub.FailingSince.IsZero() {
			sub.FailingSince = a.StartedAt
		}
	}
	return nil
}

func (s *fakeStore) DeliveryRelease(_ context.Context, owner string, ids []string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releases = append(s.releases, fakeRelease{owner, slices.Clone(ids), at})
	for _, fd := range s.dels {
		if fd.d.Status != herald.DeliveryDelivering || fd.owner != owner {
			continue
		}
		if len(ids) > 0 && !slices.Contains(ids, fd.d.ID) {
			continue
		}
		fd.d.Status, fd.d.NextAttemptAt, fd.owner, fd.expires = herald.DeliveryPending, at, "", time.Time{}
	}
	return nil
}

func (s *fakeStore) DeliveryPendingCount(context.Context) (int64, error) {
	return int64(s.countStatus(herald.DeliveryPending) + s.countStatus(herald.DeliveryDelivering)), nil
}

func (s *fakeStore) DeliveryNextDue(context.Context) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at time.Time
	for _, fd := range s.dels {
		if sub := s.subs[fd.d.SubscriptionID]; sub == nil || sub.Status != herald.StatusActive {
			continue
		}
		var t time.Time
		switch fd.d.Status {
		case herald.DeliveryPending:
			t = fd.d.NextAttemptAt
		case herald.DeliveryDelivering:
			t = fd.expires
		default:
			continue
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at, !at.IsZero(), nil
}

func (s *fakeStore) SubscriptionGet(_ context.Context, tenantID, id string) (herald.Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok || sub.TenantID != tenantID {
		return herald.Subscription{}, herald.ErrNotFound
	}
	return *sub, nil
}

func (s *fakeStore) SubscriptionUpdate(_ context.Context, sub herald.Subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.subs[sub.ID]
	if !ok || old.TenantID != sub.TenantID {
		return herald.ErrNotFound
	}
	if s.beforeUpdate != nil {
		s.beforeUpdate(old)
	}
	if old.Revision != sub.Revision {
		return herald.ErrConflict
	}
	sub.CreatedAt, sub.FailingSince = old.CreatedAt, old.FailingSince
	sub.Revision++
	*old = sub
	return nil
}

func (s *fakeStore) SubscriptionFailing(_ context.Context, before time.Time, limit int) ([]herald.Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []herald.Subscription
	for _, sub := range s.subs {
		if !sub.FailingSince.IsZero() && !sub.FailingSince.After(before) && sub.Status != herald.StatusDisabled {
			out = append(out, *sub)
		}
	}
	slices.SortFunc(out, func(a, b herald.Subscription) int { return a.FailingSince.Compare(b.FailingSince) })
	return out[:min(len(out), limit)], nil
}

func (s *fakeStore) EventPublish(_ context.Context, now time.Time, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []herald.PublishResult
	for _, r := range reqs {
		s.published = append(s.published, r)
		ev := r.Event
		ev.ReceivedAt = now
		s.events[ev.TenantID+"/"+ev.ID] = ev
		res := herald.PublishResult{EventID: ev.ID}
		for _, sub := range s.subs {
			if sub.TenantID != ev.TenantID || (sub.Status != herald.StatusActive && sub.Status != herald.StatusPaused) {
				continue
			}
			for _, p := range sub.Events {
				if herald.Matches(p, ev.EventType) {
					res.DeliveryIDs = append(res.DeliveryIDs, s.addDelivery(sub, ev, now))
					res.Deliveries++
					break
				}
			}
		}
		out = append(out, res)
	}
	return out, nil
}

// newTestDispatcher returns a dispatcher on st with fast polling, started in
// the background and stopped at the end of the test.
func newTestDispatcher(tb testing.TB, st herald.Store, mod func(*Config)) *Dispatcher {
	tb.Helper()
	cfg := Config{
		Store:                st,
		Logger:               testLogger(tb),
		PollInterval:         20 * time.Millisecond,
		AllowPrivateNetworks: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Start(context.Background()) }()
	tb.Cleanup(func() {
		d.Stop()
		if err := <-done; err != nil {
			tb.Errorf("Start: %v", err)
		}
	})
	return d
}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// claim marks deliveries ids leased to owner, as a claiming publish does,
// and returns them as that publish's Lease.
func (s *fakeStore) claim(owner string, now time.Time, margin time.Duration, ids ...string) herald.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	for _, id := range ids {
		fd := s.find(id)
		sub := s.subs[fd.d.SubscriptionID]
		fd.d.Status, fd.owner = herald.DeliveryDelivering, owner
		fd.expires = now.Add(margin + sub.Delivery.Timeout)
		lease.Subscriptions[sub.ID] = *sub
		lease.Deliveries = append(lease.Deliveries, herald.LeasedDelivery{Delivery: fd.d, Event: s.events[fd.d.TenantID+"/"+fd.d.EventID]})
	}
	return lease
}

package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/webhook"
)

// Defaults of Config.
const (
	DefaultLeaseMargin       = 30 * time.Second
	DefaultPollInterval      = time.Second
	DefaultLeaseLimit        = 1000
	DefaultMaxConcurrency    = 2048
	DefaultHeaderPrefix      = "X-Herald"
	DefaultDisableAfter      = 120 * time.Hour
	DefaultDisableCheckEvery = time.Minute
	DefaultLaneMemory        = 16 << 20
)

// Internal limits.
const (
	recordBatch      = 1024                 // outcomes written per DeliveryRecord call, at most
	recordLinger     = 5 * time.Millisecond // how long a batch of outcomes gathers before it is written
	recordTries      = 3                    // DeliveryRecord calls before a batch is given up
	storeCallTimeout = 30 * time.Second     // for writes that must finish (release, record, disable)
	laneIdleTTL      = time.Minute          // an idle lane is forgotten after this
	failingPage      = 100                  // subscriptions per SubscriptionFailing call
	// After a lease round that took at least leaseGapAfter deliveries, the
	// next round woken by a publish waits until leaseGap after its start.
	// Under a stream of small group commits, each waking the loop, rounds
	// would otherwise take the store's one writer as often as publishes do,
	// for a few deliveries each. A round that took little (a quiet stream,
	// where latency is what matters) is followed at once.
	leaseGap      = 5 * time.Millisecond
	leaseGapAfter = 8
)

// Config configures a Dispatcher. A zero Config with a Store works.
type Config struct {
	// Store is where deliveries are leased and outcomes recorded. Required.
	Store herald.Store
	// Logger receives the dispatcher's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the dispatcher's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Owner names this process in leases; default a new UUID. It must be
	// unique per process run.
	Owner string
	// LeaseMargin is added to a subscription's timeout to make the lease
	// expiry of its deliveries and lane (default DefaultLeaseMargin). A
	// leased delivery that has waited in its lane longer than half the
	// margin is given back rather than sent, so that a lease always outlives
	// the attempt it covers and the recording of its outcome.
	LeaseMargin time.Duration
	// LaneMemory bounds what lanes hold beyond herald.LaneCap: a lane that
	// keeps up takes more only while all lanes together hold less than this
	// many bytes, each delivery counting its event's data and 1 KiB besides
	// (default DefaultLaneMemory). What a lane holds up to LaneCap is not
	// bounded by it.
	LaneMemory int64
	// PollInterval is how often the store is asked for due work when no
	// wake-up came (default DefaultPollInterval).
	PollInterval time.Duration
	// LeaseLimit is the most deliveries one lease call takes (default
	// DefaultLeaseLimit).
	LeaseLimit int
	// MaxConcurrency is the most requests in flight in this process, all
	// subscriptions together (default DefaultMaxConcurrency).
	MaxConcurrency int
	// HeaderPrefix names Herald's own headers (default DefaultHeaderPrefix).
	HeaderPrefix string
	// AllowPrivateNetworks lets deliveries reach loopback, private, link-local
	// and other non-public addresses (--allow-private-networks).
	AllowPrivateNetworks bool
	// Proxy sends every delivery through this proxy; nil connects directly.
	// The HTTP_PROXY/HTTPS_PROXY environment variables are always ignored.
	Proxy *url.URL
	// DisableAfter disables a subscription whose every attempt has failed for
	// this long (--disable-after). Zero means DefaultDisableAfter; a negative
	// value, or DisableNever, means never. The flag's "0 = never" must be
	// passed as DisableNever (or a negative value).
	DisableAfter time.Duration
	// DisableNever turns off the auto-disable of failing subscriptions. A
	// 410 Gone still disables a subscription at once.
	DisableNever bool
	// DisableCheckEvery is how often failing subscriptions are looked for
	// (default DefaultDisableCheckEvery).
	DisableCheckEvery time.Duration
	// Rand returns uniform numbers in [0, 1) for retry jitter; nil means
	// math/rand/v2.Float64.
	Rand func() float64
	// Transport sends the requests; nil means Herald's guarded transport
	// (see AllowPrivateNetworks and Proxy). For tests.
	Transport http.RoundTripper
}

// Dispatcher leases due deliveries from the store, sends them through one
// lane per subscription (rate limit, in-flight cap, order, batching) and
// records their outcomes.
type Dispatcher struct {
	cfg      Config
	store    herald.Store
	log      *slog.Logger
	client   *http.Client
	h1       *h1Client // nil: every request goes through client
	resolver *net.Resolver
	metrics  *metrics
	ua       string
	reserved map[string]bool // header names a subscription may not set
	// hdrSource and hdrIV are the canonical names of the prefixed headers.
	hdrSource, hdrIV string
	bufs             sync.Pool // readResponse's buffers, one per request otherwise

	wake     chan struct{} // coalescing wake-up of the lease loop
	stopCh   chan struct{} // closed by Stop
	stopOnce sync.Once
	started  atomic.Bool
	done     chan struct{} // closed when Start has drained
	outbox   *outbox       // outcomes on their way to the recorder
	global   chan struct{} // semaphore of MaxConcurrency requests
	checking atomic.Bool   // a failing-subscriptions check is running
	backlog  atomic.Bool   // due work may be left in the store (see leaseRound)

	mu    sync.Mutex
	lanes map[string]*lane
	// claiming is the room each lane reported to the publish under way
	// (Claim.Room): what it claims is not in the lane until Claimed hands
	// it over, and a lease meanwhile must not take that room again.
	claiming map[string]int
	held     int64 // bytes the lanes hold (heldBytes of their queues and requests)
	stopping bool
	runCtx   context.Context // Start's contexts, for Claimed; nil before Start
	keepCtx  context.Context

	laneWG sync.WaitGroup // lane goroutines
	sendWG sync.WaitGroup // attempts under way
	bgWG   sync.WaitGroup // disabling and checks
}

// New returns a Dispatcher for cfg, with defaults filled in.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil {
		return nil, errors.New("dispatch: Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Owner == "" {
		cfg.Owner = herald.NewUUID()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.HeaderPrefix == "" {
		cfg.HeaderPrefix = DefaultHeaderPrefix
	}
	type positive struct {
		name string
		d    *time.Duration
		def  time.Duration
	}
	for _, p := range []positive{
		{"LeaseMargin", &cfg.LeaseMargin, DefaultLeaseMargin},
		{"PollInterval", &cfg.PollInterval, DefaultPollInterval},
		{"DisableCheckEvery", &cfg.DisableCheckEvery, DefaultDisableCheckEvery},
	} {
		switch {
		case *p.d == 0:
			*p.d = p.def
		case *p.d < 0:
			return nil, fmt.Errorf("dispatch: %s must be positive, got %s", p.name, *p.d)
		}
	}
	switch {
	case cfg.DisableAfter < 0:
		cfg.DisableNever = true
	case cfg.DisableAfter == 0:
		cfg.DisableAfter = DefaultDisableAfter
	}
	if cfg.LeaseLimit < 0 || cfg.MaxConcurrency < 0 || cfg.LaneMemory < 0 {
		return nil, errors.New("dispatch: LeaseLimit, MaxConcurrency and LaneMemory must not be negative")
	}
	if cfg.LaneMemory == 0 {
		cfg.LaneMemory = DefaultLaneMemory
	}
	if cfg.LeaseLimit == 0 {
		cfg.LeaseLimit = DefaultLeaseLimit
	}
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = DefaultMaxConcurrency
	}
	if cfg.Proxy != nil && (cfg.Proxy.Scheme == "" || cfg.Proxy.Host == "") {
		return nil, fmt.Errorf("dispatch: Proxy %q is not an absolute URL", cfg.Proxy.Redacted())
	}
	rt := cfg.Transport
	if rt == nil {
		rt = newTransport(cfg.Proxy, cfg.AllowPrivateNetworks)
	}
	d := &Dispatcher{
		cfg:       cfg,
		store:     cfg.Store,
		log:       cfg.Logger,
		client:    newClient(rt),
		resolver:  net.DefaultResolver,
		metrics:   newMetrics(cfg.Store),
		ua:        "Herald/" + herald.Version,
		reserved:  reservedHeaders(cfg.HeaderPrefix),
		hdrSource: textproto.CanonicalMIMEHeaderKey(webhook.SourceHeader(cfg.HeaderPrefix)),
		hdrIV:     textproto.CanonicalMIMEHeaderKey(webhook.EncryptionIVHeader(cfg.HeaderPrefix)),
		wake:      make(chan struct{}, 1),
		stopCh:    make(chan struct{}),
		done:      make(chan struct{}),
		outbox:    newOutbox(),
		global:    make(chan struct{}, cfg.MaxConcurrency),
		lanes:     map[string]*lane{},
		claiming:  map[string]int{},
	}
	d.bufs.New = func() any { return new([herald.MaxStoredResponse]byte) }
	if cfg.Transport == nil && cfg.Proxy == nil {
		d.h1 = newH1Client(cfg.AllowPrivateNetworks)
	}
	if cfg.Registerer != nil {
		if err := d.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("dispatch: register metrics: %w", err)
		}
	}
	return d, nil
}

// Owner returns the name this dispatcher leases under.
func (d *Dispatcher) Owner() string { return d.cfg.Owner }

// Claim tells a publish which fresh deliveries it may lease to this
// dispatcher (publish.Config.Claim): its lanes' room, asked lane by lane.
// It reports false before Start and once stopping.
func (d *Dispatcher) Claim() (herald.Claim, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The publisher commits one group at a time: what an earlier publish
	// claimed was handed over (Claimed) or its commit failed.
	clear(d.claiming)
	if d.runCtx == nil || d.stopping || d.runCtx.Err() != nil {
		return herald.Claim{}, false
	}
	return herald.Claim{Owner: d.cfg.Owner, Margin: d.cfg.LeaseMargin, Room: d.room}, true
}

// room is Claim.Room. The store calls it holding its write transaction; d.mu
// is never held while waiting for the store, so the order cannot deadlock.
func (d *Dispatcher) room(subscriptionID string) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[subscriptionID]
	if l == nil {
		return 0, false
	}
	n := l.room(d.cfg.Now(), d.cfg.LeaseMargin, d.spare())
	d.claiming[subscriptionID] = n
	return n, true
}

// leaseRoom is LeaseParams.Room: the lane's room less the outcomes of its
// deliveries that wait to be recorded (they are still delivering in the
// store, and count against the cap until written) and less what it reserved
// for a publish whose claim is not handed over yet. An ordered lane reports
// none: the store hands it its head.
func (d *Dispatcher) leaseRoom(subscriptionID string) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[subscriptionID]
	if l == nil || l.sub.Ordered {
		return 0, false
	}
	return max(l.room(d.cfg.Now(), d.cfg.LeaseMargin, d.spare())-l.unrecorded-d.claiming[subscriptionID], 0), true
}

// spare is how many more bytes lanes may hold beyond herald.LaneCap (see
// lane.room). d.mu must be held.
func (d *Dispatcher) spare() int64 { return d.cfg.LaneMemory - d.held }

// Claimed puts deliveries a publish leased to this dispatcher into their
// lanes, as a lease round would (publish.Config.OnClaim).
func (d *Dispatcher) Claimed(leasedAt time.Time, lease herald.Lease) {
	defer func() {
		// Handed over (or given back): the lanes count it now.
		d.mu.Lock()
		clear(d.claiming)
		d.mu.Unlock()
	}()
	d.mu.Lock()
	ctx, keep := d.runCtx, d.keepCtx
	d.mu.Unlock()
	if ctx == nil {
		// Never started: give them back at once.
		ids := make([]string, 0, len(lease.Deliveries))
		for _, ld := range lease.Deliveries {
			ids = append(ids, ld.Delivery.ID)
		}
		d.release(context.Background(), ids, leasedAt)
		return
	}
	d.metrics.claimed.Add(float64(len(lease.Deliveries)))
	d.accept(ctx, keep, leasedAt, lease)
}

// Notify wakes the lease loop: new work may be due. It never blocks; the
// publisher calls it after each commit.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Start runs the dispatcher until Stop is called or ctx ends, then drains
// (see Stop) and returns nil. It returns an error only if it cannot run:
// when called twice.
func (d *Dispatcher) Start(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("dispatch: Start called twice")
	}
	defer close(d.done)
	select {
	case <-d.stopCh:
		return nil // stopped before it started
	default:
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.stopCh:
			cancel()
		case <-runCtx.Done():
		}
	}()
	// Attempts under way and the writes that follow them finish even when
	// ctx ends: that is what draining means.
	keep := context.WithoutCancel(ctx)
	d.mu.Lock()
	d.runCtx, d.keepCtx = runCtx, keep
	d.mu.Unlock()

	recDone := make(chan struct{})
	go d.record(keep, recDone)
	wakeDone := make(chan struct{})
	if w, ok := d.store.(herald.Waker); ok {
		go func() {
			defer close(wakeDone)
			if err := w.Wake(runCtx, d.wake); err != nil && runCtx.Err() == nil {
				d.log.Warn("store wake-ups stopped; polling only", "error", err)
			}
		}()
	} else {
		close(wakeDone)
	}
	d.loop(runCtx, keep)
	cancel()
	d.drain(keep, recDone)
	<-wakeDone
	return nil
}

// Stop drains the dispatcher: no new attempt starts; deliveries leased but
// not started are given back to the store at once (so another process can
// take them without waiting for their lease to expire); attempts under way
// finish and their outcomes are recorded; then the remaining leases of this
// process are released and Stop returns. It may be called more than once, and
// before Start.
func (d *Dispatcher) Stop() {
	d.stopOnce.Do(func() { close(d.stopCh) })
	if d.started.Load() {
		<-d.done
	}
}

// loop leases work whenever it may be due: on a wake-up, on the poll tick, and
// at the next due time the store reports. It never waits on a lane.
func (d *Dispatcher) loop(ctx, keep context.Context) {
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nextCheck := d.cfg.Now().Add(d.cfg.DisableCheckEvery)
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		gap.Reset(leaseGap)
		busy := d.leaseRound(ctx, keep) >= leaseGapAfter
		if ctx.Err() != nil {
			return
		}
		if now := d.cfg.Now(); !now.Before(nextCheck) {
			nextCheck = now.Add(d.cfg.DisableCheckEvery)
			d.maintain(ctx, now)
		}
		if wait, ok := d.nextWait(ctx); ok {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			if busy {
				// Wake-ups during the gap coalesce into the next round.
				select {
				case <-ctx.Done():
					return
				case <-gap.C:
				}
			}
		case <-poll.C:
		case <-timer.C:
		}
	}
}

// leaseRound leases due deliveries, page after page while pages come full,
// and hands them to their lanes. It returns how many it leased.
func (d *Dispatcher) leaseRound(ctx, keep context.Context) (leased int) {
	// Work may be left in the store for lanes that were left out or filled
	// by this round, or that the store held back because their deliveries
	// under lease (outcomes not yet written included) reached its cap:
	// recorded outcomes, which free room, then call for another round (see
	// record). Only a round that leased nothing, left no lane out, and ran
	// while this process held no delivery at all knows that nothing due is
	// waiting. Until the round knows, assume something is.
	left := false
	d.backlog.Store(true)
	defer func() { d.backlog.Store(left || leased > 0 || d.holding()) }()
	for ctx.Err() == nil {
		now := d.now()
		exclude := d.excluded(now)
		left = left || len(exclude) > 0
		lease, err := d.store.DeliveryLease(ctx, herald.LeaseParams{
			Owner:   d.cfg.Owner,
			Now:     now,
			Margin:  d.cfg.LeaseMargin,
			Limit:   d.cfg.LeaseLimit,
			Exclude: exclude,
			Room:    d.leaseRoom,
		})
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("lease deliveries", "error", err)
			}
			return leased
		}
		d.metrics.leaseBatch.Observe(float64(len(lease.Deliveries)))
		d.accept(ctx, keep, now, lease)
		leased += len(lease.Deliveries)
		if len(lease.Deliveries) < d.cfg.LeaseLimit {
			return leased
		}
	}
	return leased
}

// holding reports whether this process holds leased deliveries: queued or
// in flight in a lane, or with an outcome not yet written.
func (d *Dispatcher) holding() bool {
	if d.outbox.len() > 0 {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.lanes {
		if len(l.queue) > 0 || l.inflight > 0 {
			return true
		}
	}
	return false
}

// nextWait returns how long until work may be due that no wake-up will
// announce: the store's next due delivery, or the end of a lane's pause.
// It reports false when the poll tick comes first or nothing is known.
func (d *Dispatcher) nextWait(ctx context.Context) (time.Duration, bool) {
	now := d.cfg.Now()
	var at time.Time
	if t, ok, err := d.store.DeliveryNextDue(ctx); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("next due delivery", "error", err)
		}
	} else if ok && t.After(now) {
		// A due time already past is work this round could not take (its
		// lane is full, paused or another process's): the poll tick, a
		// wake-up or a recorded outcome retries it, not a busy loop.
		at = t
	}
	d.mu.Lock()
	for _, l := range d.lanes {
		if l.pausedUntil.After(now) && (at.IsZero() || l.pausedUntil.Before(at)) {
			at = l.pausedUntil
		}
	}
	d.mu.Unlock()
	if at.IsZero() {
		return 0, false
	}
	wait := at.Sub(now)
	if wait >= d.cfg.PollInterval {
		return 0, false
	}
	return wait, true
}

// maintain runs the periodic chores: forgetting idle lanes, and (in the
// background, one at a time) disabling subscriptions failing for too long.
func (d *Dispatcher) maintain(ctx context.Context, now time.Time) {
	if d.h1 != nil {
		d.h1.closeIdle(false)
	}
	d.mu.Lock()
	for id, l := range d.lanes {
		if l.idle(now) && now.Sub(l.lastUsed) > laneIdleTTL {
			delete(d.lanes, id)
		}
	}
	d.mu.Unlock()
	if d.cfg.DisableNever || !d.checking.CompareAndSwap(false, true) {
		return
	}
	d.bgWG.Add(1)
	go func() {
		defer d.bgWG.Done()
		defer d.checking.Store(false)
		if _, err := d.disableFailing(ctx); err != nil {
			d.log.Warn("disable failing subscriptions", "error", err)
		}
	}()
}

// drain ends the dispatcher's work; see Stop.
func (d *Dispatcher) drain(keep context.Context, recDone <-chan struct{}) {
	// From here on accept queues nothing and starts no lane (a publish may
	// still hand over claimed deliveries: they go back). Lane goroutines see
	// the cancelled context and return, giving back the job each may hold.
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	d.laneWG.Wait()
	d.mu.Lock()
	var ids []string
	for _, l := range d.lanes {
		ids = append(ids, d.takeQueue(l)...)
	}
	d.mu.Unlock()
	d.release(keep, ids, d.now())
	d.sendWG.Wait()
	d.outbox.close()
	<-recDone
	d.bgWG.Wait()
	// Lanes, and anything whose outcome could not be written, go back now.
	ctx, cancel := context.WithTimeout(keep, storeCallTimeout)
	defer cancel()
	if err := d.store.DeliveryRelease(ctx, d.cfg.Owner, nil, d.now()); err != nil {
		d.log.Warn("release leases", "error", err)
	}
	if d.h1 != nil {
		d.h1.closeIdle(true)
	}
}

// release gives leased deliveries back to the store, due at at.
func (d *Dispatcher) release(keep context.Context, ids []string, at time.Time) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(keep, storeCallTimeout)
	defer cancel()
	if err := d.store.DeliveryRelease(ctx, d.cfg.Owner, ids, at); err != nil {
		// Their leases expire and they are taken again: delayed, not lost.
		d.log.Warn("release deliveries", "error", err, "count", len(ids))
	}
}

// now is the clock in UTC, to the microsecond the stores keep.
func (d *Dispatcher) now() time.Time {
	return d.cfg.Now().UTC().Truncate(time.Microsecond)
}

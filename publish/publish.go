package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald"
)

// DefaultMaxBatch is the default of Config.MaxBatch.
const DefaultMaxBatch = 2000

// ErrStopped is returned by Publish when the publisher is not running: not
// started yet, or stopped. It matches herald.ErrUnavailable, so an API answers
// 503 and the client retries (publishing is idempotent by event id).
var ErrStopped = fmt.Errorf("publisher not running: %w", herald.ErrUnavailable)

// Config configures a Publisher. Only Store is required.
type Config struct {
	Store herald.Store
	// Now is the clock handed to Store.EventPublish. Default time.Now.
	Now func() time.Time
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the publisher's metrics; nil registers none.
	Registerer prometheus.Registerer
	// OnCommit, if set, is called after each successful commit (and by
	// Notify), e.g. to wake the dispatcher.
	OnCommit func()
	// Claim, if set with OnClaim and when the store is a herald.Claimer,
	// is asked before each commit whom the commit may lease fresh
	// deliveries to (false: to no one now), and OnClaim receives what was
	// leased, after the commit and before the callers are answered. Only
	// when a commit leaves fresh deliveries unclaimed is OnCommit called.
	Claim   func() (herald.Claim, bool)
	OnClaim func(leasedAt time.Time, lease herald.Lease)
	// MaxBatch is the most events handed to one EventPublish call, default
	// DefaultMaxBatch. One caller's requests are never split, so a single
	// caller with more requests than MaxBatch commits alone.
	MaxBatch int
}

// Publisher group-commits published events. Create it with New, run it with
// Start, and end it with Stop, which commits what is queued first.
type Publisher struct {
	store    herald.Store
	now      func() time.Time
	log      *slog.Logger
	onCommit func()
	claim    func() (herald.Claim, bool)
	onClaim  func(time.Time, herald.Lease)
	maxBatch int

	published prometheus.Counter
	batchSize prometheus.Histogram
	commitDur prometheus.Histogram

	wake chan struct{} // capacity 1: "the queue may have work"
	done chan struct{} // closed when the committer has exited

	mu    sync.Mutex
	state state
	queue []*call
}

type state int

const (
	stateIdle state = iota
	stateRunning
	stateStopping // no new calls; the committer drains the queue
	stateStopped
)

// call is one Publish call waiting for its commit.
type call struct {
	reqs []herald.PublishRequest
	res  []herald.PublishResult
	err  error
	done chan struct{} // closed once res or err is set
}

// New returns a Publisher. It fails if Store is nil or the metrics cannot be
// registered.
func New(cfg Config) (*Publisher, error) {
	if cfg.Store == nil {
		return nil, errors.New("publish: Config.Store is required")
	}
	if cfg.MaxBatch < 0 {
		return nil, fmt.Errorf("publish: Config.MaxBatch: must not be negative, got %d", cfg.MaxBatch)
	}
	p := &Publisher{
		store:    cfg.Store,
		now:      cfg.Now,
		log:      cfg.Logger,
		onCommit: cfg.OnCommit,
		claim:    cfg.Claim,
		onClaim:  cfg.OnClaim,
		maxBatch: cfg.MaxBatch,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_published_total",
			Help: "Events newly stored by publishing (idempotent repeats are not counted).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_publish_batch_size",
			Help:    "Events stored per group commit.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
		commitDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_publish_commit_seconds",
			Help:    "Time of one group commit (Store.EventPublish).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.maxBatch == 0 {
		p.maxBatch = DefaultMaxBatch
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.published, p.batchSize, p.commitDur} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("publish: register metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Start starts the committer goroutine and returns at once. When ctx ends the
// publisher stops as by Stop: it takes no new calls and commits what is
// queued. Commits run under context.WithoutCancel(ctx), so one in flight is
// never abandoned half way. Start fails if called twice.
func (p *Publisher) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateIdle {
		return errors.New("publish: already started")
	}
	p.state = stateRunning
	go p.run(ctx)
	return nil
}

// Stop stops taking new calls, commits every call already queued, and
// returns when the committer has exited. It is safe to call more than once
// and before Start.
func (p *Publisher) Stop() {
	p.mu.Lock()
	switch p.state {
	case stateIdle:
		p.state = stateStopped
		close(p.done)
	case stateRunning:
		p.state = stateStopping
	}
	p.mu.Unlock()
	p.signal()
	<-p.done
}

// Notify calls Config.OnCommit, if set. The API calls it after queuing work
// outside a publish (a retry, a replay, a subscription set active) so the
// dispatcher looks for due work at once.
func (p *Publisher) Notify() {
	if p.onCommit != nil {
		p.onCommit()
	}
}

// Publish stores reqs in the next group commit and returns their results, in
// order, once that commit is durable. A store error fails every caller of the
// group and is returned wrapped. If ctx ends first Publish returns ctx.Err();
// the requests are then withdrawn if their commit has not begun, else they
// may still be stored (a retry with the same event ids is idempotent).
func (p *Publisher) Publish(ctx context.Context, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &call{reqs: reqs, done: make(chan struct{})}
	p.mu.Lock()
	if p.state != stateRunning {
		p.mu.Unlock()
		return nil, ErrStopped
	}
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	p.signal()

	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		p.withdraw(c)
		return nil, ctx.Err()
	}
}

// withdraw removes c from the queue if its commit has not begun.
func (p *Publisher) withdraw(c *call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, q := range p.queue {
		if q == c {
			p.queue = append(p.queue[:i:i], p.queue[i+1:]...)
			return
		}
	}
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	// A commit once begun must finish: abandoning it would fail callers whose
	// events may be stored anyway.
	storeCtx := context.WithoutCancel(ctx)
	for {
		group, ok := p.next(ctx)
		if !ok {
			return
		}
		p.commit(storeCtx, group)
	}
}

// next waits for queued calls and takes the next group: calls in queue order
// while their events fit MaxBatch (always at least one call). It returns false
// once stopping with an empty queue.
func (p *Publisher) next(ctx context.Context) ([]*call, bool) {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			n, i := 0, 0
			for ; i < len(p.queue); i++ {
				k := len(p.queue[i].reqs)
				if i > 0 && n+k > p.maxBatch {
					break
				}
				n += k
			}
			group := p.queue[:i:i]
			if i == len(p.queue) {
				p.queue = nil
			} else {
				p.queue = append([]*call(nil), p.queue[i:]...)
			}
			p.mu.Unlock()
			return group, true
		}
		if p.state != stateRunning {
			p.state = stateStopped
			p.mu.Unlock()
			return nil, false
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-ctx.Done():
			p.mu.Lock()
			if p.state == stateRunning {
				p.state = stateStopping
			}
			p.mu.Unlock()
		}
	}
}

// commit hands the group's requests to one EventPublish call and routes the
// results back to each caller.
func (p *Publisher) commit(ctx context.Context, group []*call) {
	total := 0
	for _, c := range group {
		total += len(c.reqs)
	}
	all := make([]herald.PublishRequest, 0, total)
	for _, c := range group {
		all = append(all, c.reqs...)
	}
	start := time.Now()
	res, lease, at, err := p.eventPublish(ctx, all)
	p.commitDur.Observe(time.Since(start).Seconds())
	if err == nil && len(res) != len(all) {
		err = fmt.Errorf("store returned %d results for %d requests", len(res), len(all))
	}
	if err != nil {
		err = fmt.Errorf("publish events: %w", err)
		for _, c := range group {
			c.err = err
			close(c.done)
		}
		return
	}
	p.batchSize.Observe(float64(total))
	if len(lease.Deliveries) > 0 {
		p.onClaim(at, lease)
	}
	fresh, deliveries := 0, 0
	for _, r := range res {
		deliveries += len(r.DeliveryIDs)
		// PublishResult does not say whether the event was new: a repeat
		// creates no delivery, and neither does a new event that matched no
		// subscription. Both of the latter count, which errs toward counting
		// a repeat of an event that had no deliveries.
		if r.Err == nil && (len(r.DeliveryIDs) > 0 || r.Deliveries == 0) {
			fresh++
		}
	}
	p.published.Add(float64(fresh))
	off := 0
	for _, c := range group {
		c.res = res[off : off+len(c.reqs) : off+len(c.reqs)]
		off += len(c.reqs)
		close(c.done)
	}
	if p.onCommit != nil && deliveries > len(lease.Deliveries) {
		p.onCommit()
	}
}

// eventPublish calls the store, claiming fresh deliveries when it can (see
// Config.Claim), and turns a panic into an error so that one bad commit
// cannot leave every later caller waiting forever. at is the commit's now.
func (p *Publisher) eventPublish(ctx context.Context, reqs []herald.PublishRequest) (res []herald.PublishResult, lease herald.Lease, at time.Time, err error) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("store panicked in EventPublish", "panic", fmt.Sprint(v))
			res, lease, err = nil, herald.Lease{}, fmt.Errorf("store panicked: %v", v)
		}
	}()
	at = p.now().UTC().Truncate(time.Microsecond)
	if cl, ok := p.store.(herald.Claimer); ok && p.claim != nil && p.onClaim != nil {
		if c, ok := p.claim(); ok {
			res, lease, err = cl.EventPublishClaim(ctx, at, reqs, c)
			return res, lease, at, err
		}
	}
	res, err = p.store.EventPublish(ctx, at, reqs)
	return res, lease, at, err
}

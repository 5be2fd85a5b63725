package dispatch

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald"
)

// rateSlack slows each lane's pace below max_rps. The limiter's tokens are
// exactly 1/max_rps apart, so max_rps+1 of them span exactly one second; a
// request that leaves or arrives late (scheduling on a busy machine, a slower
// connection) could then put max_rps+1 requests into one second as the
// receiver measures it. At max_rps/1.1, max_rps+1 requests span 1.1 s: up to
// 100 ms of jitter on the way still keeps every window within max_rps. (At
// 1.02, 20 ms, a loaded test machine measured 21 in a second at max_rps 20.)
const rateSlack = 1.1

// A lane that keeps up may hold as many deliveries as it finished in the
// last paceHorizon (see lane.room), its pace measured over windows of
// paceWindow. itemOverhead is what a held delivery costs in memory besides
// its event's data, counted against Config.LaneMemory.
const (
	paceHorizon  = time.Second
	paceWindow   = 100 * time.Millisecond
	itemOverhead = 1024
)

// item is one leased delivery waiting in its lane.
type item struct {
	herald.LeasedDelivery
	leasedAt time.Time // the Now of the lease that handed it out
}

// job is one request: a single delivery, or the members of a batch.
type job struct {
	items   []item
	batchID string // "" for a single delivery sent as an envelope
}

// lane is one subscription's flow control, owned by this process: its rate
// limiter, its in-flight count, its queue of leased deliveries, and whether
// it is paused by a Retry-After. Fields other than limiter and signal are
// guarded by Dispatcher.mu.
type lane struct {
	id      string
	sub     herald.Subscription // as of the latest lease
	limiter *rate.Limiter
	signal  chan struct{} // capacity freed (buffered 1)

	queue       []item
	running     bool // a goroutine runs runLane
	inflight    int  // requests under way
	inflightN   int  // deliveries in those requests
	unrecorded  int  // deliveries sent whose outcomes wait to be recorded
	pausedUntil time.Time
	disabling   bool // answered 410 Gone; the subscription is being disabled
	lastUsed    time.Time

	// The lane's pace (see paceAt): deliveries finished since winStart, and
	// the rate of the window before, per paceHorizon.
	winStart time.Time
	winDone  int
	pace     int
	cost     int64 // heldBytes of the latest delivery queued
}

func newLane(sub herald.Subscription, now time.Time) *lane {
	return &lane{
		id:       sub.ID,
		sub:      sub,
		limiter:  rate.NewLimiter(laneRate(sub.Delivery.MaxRPS), 1),
		signal:   make(chan struct{}, 1),
		lastUsed: now,
	}
}

// laneRate is the limiter's rate for max_rps; zero or less means no limit.
// Burst is always 1, so requests are spaced evenly: the sliding-window
// promise of CONTRACT.md §5.4 holds for any one-second window.
func laneRate(maxRPS int) rate.Limit {
	if maxRPS <= 0 {
		return rate.Inf
	}
	return rate.Limit(float64(maxRPS) / rateSlack)
}

// update takes the subscription's settings from a new lease.
func (l *lane) update(sub herald.Subscription) {
	if sub.Delivery.MaxRPS != l.sub.Delivery.MaxRPS {
		l.limiter.SetLimit(laneRate(sub.Delivery.MaxRPS))
	}
	l.sub = sub
}

func (l *lane) maxInFlight() int {
	if l.sub.Delivery.MaxInFlight <= 0 {
		return herald.DefaultMaxInFlight
	}
	return l.sub.Delivery.MaxInFlight
}

// capacity is how many deliveries the store hands a lane it knows nothing
// of (herald.LaneCap, see herald.Store.DeliveryLease): max_in_flight in
// flight and the rest queued, so the next requests are ready while the
// outcomes of earlier ones are being recorded.
func (l *lane) capacity() int {
	return herald.LaneCap(l.sub.Delivery)
}

// hasRoom reports whether another request may start now.
func (l *lane) hasRoom() bool {
	if l.sub.Ordered {
		return l.inflight == 0
	}
	return l.inflight < l.maxInFlight()
}

// full reports whether the lane should be left out of the next lease: it has
// no room (see room), or, ordered, holds its head already.
func (l *lane) full(now time.Time, margin time.Duration, spare int64) bool {
	if l.sub.Ordered && !l.pausedUntil.After(now) && !l.disabling {
		return len(l.queue) > 0 || l.inflight > 0
	}
	return l.room(now, margin, spare) == 0
}

// room is how many more deliveries the lane takes now: none while paused or
// disabling, nor for an ordered lane (it takes its head from a lease); else
// what is left of its capacity and of what its rate sends within half the
// lease margin (what waits longer is given back unsent; see
// Dispatcher.stale).
//
// A lane that finishes more than its capacity in paceHorizon may hold up to
// its pace instead, as far as spare bytes (what Config.LaneMemory leaves)
// go at the cost of its latest delivery, so that a fast endpoint's lane
// takes a publish's deliveries as they come (herald.Claim) rather than
// reading them back later with a second write. They are still sent well
// within their lease: a lane that slows down loses its pace within
// paceWindow, and what waits too long goes back unsent as before.
func (l *lane) room(now time.Time, margin time.Duration, spare int64) int {
	if l.pausedUntil.After(now) || l.disabling || l.sub.Ordered {
		return 0
	}
	held := len(l.queue) + l.inflightN
	n := l.capacity() - held
	if more := l.paceAt(now) - held; more > n && spare > 0 {
		n = max(n, min(more, int(spare/max(l.cost, itemOverhead))))
	}
	if r := l.sub.Delivery.MaxRPS; r > 0 {
		n = min(n, int(math.Ceil(float64(r)*(margin/2).Seconds()))-len(l.queue))
	}
	return max(n, 0)
}

// paceAt is how many deliveries the lane finishes in paceHorizon: from the
// current window once that is paceWindow old (a lane whose requests stall
// loses its pace then), else from the window before.
func (l *lane) paceAt(now time.Time) int {
	if el := now.Sub(l.winStart); el >= paceWindow {
		return int(int64(l.winDone) * int64(paceHorizon) / int64(el))
	}
	return l.pace
}

// finished counts n deliveries whose attempt ended at now into the pace.
func (l *lane) finished(now time.Time, n int) {
	if now.Sub(l.winStart) >= paceWindow {
		l.pace = l.paceAt(now)
		l.winStart, l.winDone = now, 0
	}
	l.winDone += n
}

// idle reports whether the lane holds nothing, so it may be forgotten.
func (l *lane) idle(now time.Time) bool {
	return !l.running && len(l.queue) == 0 && l.inflight == 0 && l.unrecorded == 0 && !l.disabling &&
		!l.pausedUntil.After(now)
}

func (l *lane) wakeUp() {
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// takeQueue empties a lane's queue and returns the ids of its deliveries.
// d.mu must be held.
func (d *Dispatcher) takeQueue(l *lane) []string {
	ids := make([]string, 0, len(l.queue))
	for _, it := range l.queue {
		ids = append(ids, it.Delivery.ID)
	}
	d.held -= heldBytes(l.queue)
	clear(l.queue)
	l.queue = l.queue[:0]
	return ids
}

// take removes the next job from the queue: a delivery that already belongs
// to a batch comes with the queued members of that batch (the same batch is
// sent again); otherwise, with batch_max_events > 1, up to that many queued
// deliveries form a new batch; else the delivery goes alone.
func (l *lane) take() job {
	head := l.queue[0]
	batchMax := l.sub.Delivery.BatchMaxEvents
	if head.Delivery.BatchID == "" && batchMax <= 1 {
		l.queue[0] = item{}
		l.queue = l.queue[1:]
		return job{items: []item{head}}
	}
	var j job
	if head.Delivery.BatchID != "" {
		j.batchID = head.Delivery.BatchID
	} else {
		j.batchID = herald.NewID(herald.PrefixBatch)
	}
	rest := l.queue[:0]
	for _, it := range l.queue {
		switch {
		case head.Delivery.BatchID != "" && it.Delivery.BatchID == head.Delivery.BatchID,
			head.Delivery.BatchID == "" && it.Delivery.BatchID == "" && len(j.items) < batchMax:
			j.items = append(j.items, it)
		default:
			rest = append(rest, it)
		}
	}
	clear(l.queue[len(rest):])
	l.queue = rest
	return j
}

// excluded lists the lanes that should get no more deliveries now.
func (d *Dispatcher) excluded(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, l := range d.lanes {
		if l.full(now, d.cfg.LeaseMargin, d.spare()) {
			out = append(out, id)
		}
	}
	return out
}

// accept puts leased deliveries in their lanes, creating lanes on first use
// and starting the goroutine of any lane that has none.
func (d *Dispatcher) accept(ctx, keep context.Context, leasedAt time.Time, lease herald.Lease) {
	back := map[time.Time][]string{} // deliveries to give back, by due time
	d.mu.Lock()
	touched := map[*lane]bool{}
	for _, ld := range lease.Deliveries {
		sub, ok := lease.Subscriptions[ld.Delivery.SubscriptionID]
		if !ok {
			// The store broke its promise; the lease expires and it is retried.
			d.log.Error("leased delivery without its subscription", "delivery_id", ld.Delivery.ID,
				"subscription_id", ld.Delivery.SubscriptionID)
			continue
		}
		l := d.lanes[sub.ID]
		if l == nil {
			l = newLane(sub, leasedAt)
			d.lanes[sub.ID] = l
		} else if !touched[l] {
			l.update(sub)
		}
		touched[l] = true
		switch {
		case d.stopping || ctx.Err() != nil || l.disabling:
			back[leasedAt] = append(back[leasedAt], ld.Delivery.ID)
		case l.pausedUntil.After(leasedAt):
			back[l.pausedUntil] = append(back[l.pausedUntil], ld.Delivery.ID)
		default:
			l.queue = append(l.queue, item{LeasedDelivery: ld, leasedAt: leasedAt})
			l.cost = heldBytes(l.queue[len(l.queue)-1:])
			d.held += l.cost
		}
	}
	for l := range touched {
		if l.sub.Ordered {
			slices.SortStableFunc(l.queue, func(a, b item) int {
				return cmp.Compare(a.Delivery.Seq, b.Delivery.Seq)
			})
		}
		if len(l.queue) > 0 && !l.running && ctx.Err() == nil {
			l.running = true
			d.laneWG.Add(1)
			go d.runLane(ctx, keep, l)
		}
	}
	d.mu.Unlock()
	for at, ids := range back {
		d.release(keep, ids, at)
	}
}

// runLane sends a lane's queued deliveries, each request in its own
// goroutine, within the lane's in-flight cap and rate, and returns when the
// queue is empty or ctx ends. Only this goroutine waits on the lane's limits,
// so a slow or throttled lane holds up no one else.
func (d *Dispatcher) runLane(ctx, keep context.Context, l *lane) {
	defer d.laneWG.Done()
	for {
		d.mu.Lock()
		if len(l.queue) == 0 || ctx.Err() != nil {
			l.running = false
			d.mu.Unlock()
			return
		}
		if !l.hasRoom() {
			d.mu.Unlock()
			select {
			case <-l.signal:
			case <-ctx.Done():
			}
			continue
		}
		j := l.take()
		l.inflight++
		l.inflightN += len(j.items)
		sub := l.sub
		d.mu.Unlock()

		select {
		case d.global <- struct{}{}:
		case <-ctx.Done():
			d.giveBack(keep, l, j, nil, d.now())
			continue
		}
		r := l.limiter.Reserve() // burst 1: always OK
		delay := r.Delay()
		if sendAt := d.now().Add(delay); d.stale(j, sendAt) {
			// Sent then, its lease could expire before its outcome is
			// written, and another process would send it again. It goes back
			// to the store, with what else in the queue is as old, due when
			// the lane can send again (so it is not leased again in vain
			// before then); its token goes back to the limiter.
			r.Cancel()
			<-d.global
			d.giveBack(keep, l, j, d.takeStale(l, sendAt), sendAt)
			continue
		}
		if !sleep(ctx, delay) {
			r.Cancel()
			<-d.global
			d.giveBack(keep, l, j, nil, d.now())
			continue
		}
		now := d.now()
		d.mu.Lock()
		paused := l.pausedUntil
		d.mu.Unlock()
		if paused.After(now) {
			<-d.global
			d.giveBack(keep, l, j, nil, paused)
			continue
		}
		d.sendWG.Add(1)
		go d.send(keep, l, sub, j)
	}
}

// sleep waits for d, or until ctx ends (then it reports false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stale reports whether a job's lease is too old to start an attempt under.
func (d *Dispatcher) stale(j job, now time.Time) bool {
	for _, it := range j.items {
		if !now.Before(it.leasedAt.Add(d.cfg.LeaseMargin / 2)) {
			return true
		}
	}
	return false
}

// takeStale removes from the lane's queue the deliveries too old to send at
// at, and returns their ids.
func (d *Dispatcher) takeStale(l *lane, at time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	rest := l.queue[:0]
	for _, it := range l.queue {
		if d.stale(job{items: []item{it}}, at) {
			ids = append(ids, it.Delivery.ID)
			d.held -= heldBytes([]item{it})
		} else {
			rest = append(rest, it)
		}
	}
	clear(l.queue[len(rest):])
	l.queue = rest
	return ids
}

// giveBack returns a job that was taken but not sent, and more deliveries
// taken from the queue, to the store, due at at.
func (d *Dispatcher) giveBack(keep context.Context, l *lane, j job, more []string, at time.Time) {
	d.mu.Lock()
	l.inflight--
	l.inflightN -= len(j.items)
	d.held -= heldBytes(j.items)
	l.wakeUp()
	d.mu.Unlock()
	ids := more
	for _, it := range j.items {
		ids = append(ids, it.Delivery.ID)
	}
	d.release(keep, ids, at)
	if !at.After(d.now()) {
		d.Notify()
	}
}

// heldBytes is what items cost in memory while a lane holds them, counted
// against Config.LaneMemory.
func heldBytes(items []item) int64 {
	var n int64
	for _, it := range items {
		n += int64(len(it.Event.Data)) + itemOverhead
	}
	return n
}

package dispatch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald"
)

// outbox holds outcomes waiting for the recorder. A sender never waits on
// it: its goroutine, with the stack its HTTP exchange grew, ends as soon as
// its outcomes are queued. What waits here is bounded all the same: a
// delivery stays leased, and counts against its lane's cap, until its outcome
// is written.
type outbox struct {
	mu     sync.Mutex
	queued []herald.Outcome
	subs   []string // the subscription of each queued outcome
	closed bool
	ready  chan struct{} // holds a token when there is something to take
}

func newOutbox() *outbox { return &outbox{ready: make(chan struct{}, 1)} }

// put queues outcomes of a subscription's deliveries for the recorder.
func (o *outbox) put(sub string, outs []herald.Outcome) {
	o.mu.Lock()
	o.queued = append(o.queued, outs...)
	for range outs {
		o.subs = append(o.subs, sub)
	}
	o.mu.Unlock()
	o.signal()
}

// close tells the recorder that nothing more comes.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// len is how many outcomes are queued.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queued)
}

// take moves up to n queued outcomes into dst and their subscriptions into
// subs, and reports whether the box is closed and now empty.
func (o *outbox) take(dst []herald.Outcome, subs []string, n int) ([]herald.Outcome, []string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := min(n, len(o.queued))
	dst = append(dst, o.queued[:k]...)
	subs = append(subs, o.subs[:k]...)
	rest := copy(o.queued, o.queued[k:])
	clear(o.queued[rest:])
	o.queued = o.queued[:rest]
	copy(o.subs, o.subs[k:])
	clear(o.subs[rest:])
	o.subs = o.subs[:rest]
	if rest > 0 {
		o.signal() // more for the next batch
	}
	return dst, subs, o.closed && rest == 0
}

// record writes outcomes to the store in batches until the outbox is closed
// and empty. A batch is written recordLinger after its first outcome, or as
// soon as recordBatch outcomes are waiting.
func (d *Dispatcher) record(keep context.Context, done chan<- struct{}) {
	defer close(done)
	batch := make([]herald.Outcome, 0, recordBatch)
	subs := make([]string, 0, recordBatch)
	linger := time.NewTimer(recordLinger)
	linger.Stop()
	for {
		<-d.outbox.ready
		// Gather for up to recordLinger: a write costs far more than a
		// row, and an outcome waiting a few milliseconds delays no webhook
		// (its request is already answered).
		if d.outbox.len() < recordBatch {
			linger.Reset(recordLinger)
		wait:
			for {
				select {
				case <-linger.C:
					break wait
				case <-d.outbox.ready:
					if d.outbox.len() >= recordBatch {
						linger.Stop()
						break wait
					}
				}
			}
		}
		var last bool
		batch, subs, last = d.outbox.take(batch, subs, recordBatch)
		if len(batch) > 0 {
			d.write(keep, batch)
			d.recorded(subs)
			// Written outcomes free room in lanes, and a retry may be due
			// before the loop's timer: lease again when a lane was left out
			// of the last round or an outcome is a retry. Otherwise the
			// round would find nothing (fresh deliveries come claimed by
			// their publish, or their publish wakes the loop).
			if d.backlog.Load() || slices.ContainsFunc(batch, func(o herald.Outcome) bool { return o.Status == herald.DeliveryPending }) {
				d.Notify()
			}
			clear(batch)
			batch = batch[:0]
			clear(subs)
			subs = subs[:0]
		}
		if last {
			return
		}
	}
}

// recorded takes outcomes written (or given up on) off their lanes'
// unrecorded counts.
func (d *Dispatcher) recorded(subs []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range subs {
		if l := d.lanes[id]; l != nil && l.unrecorded > 0 {
			l.unrecorded--
		}
	}
}

// write records one batch, trying again briefly when the store fails. A batch
// that cannot be written is dropped: its deliveries stay leased until their
// leases expire and are then attempted again (at least once, never lost).
func (d *Dispatcher) write(keep context.Context, batch []herald.Outcome) {
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(keep, storeCallTimeout)
		err := d.store.DeliveryRecord(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		if try >= recordTries || errors.Is(err, herald.ErrInvalid) {
			d.log.Error("record outcomes; their deliveries are retried when their leases expire",
				"error", err, "count", len(batch))
			return
		}
		d.log.Warn("record outcomes; trying again", "error", err, "count", len(batch))
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
	}
}

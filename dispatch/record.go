package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/heraldhq/herald"
)

// record writes outcomes to the store in batches until d.outcomes is closed
// and empty. A batch is written recordLinger after its first outcome, or as
// soon as recordBatch outcomes are waiting.
func (d *Dispatcher) record(keep context.Context, done chan<- struct{}) {
	defer close(done)
	batch := make([]herald.Outcome, 0, recordBatch)
	for {
		outs, ok := <-d.outcomes
		if !ok {
			return
		}
		batch = append(batch, outs...)
		closed := false
		// Gather for up to recordLinger after the first outcome: a write
		// costs far more than a row, and an outcome waiting a few
		// milliseconds delays no webhook (its request is already answered).
		linger := time.NewTimer(recordLinger)
	fill:
		for len(batch) < recordBatch {
			select {
			case outs, ok := <-d.outcomes:
				if !ok {
					closed = true
					break fill
				}
				batch = append(batch, outs...)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		d.write(keep, batch)
		clear(batch)
		batch = batch[:0]
		// Written outcomes free capacity in the store's lanes: lease again.
		d.Notify()
		if closed {
			return
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

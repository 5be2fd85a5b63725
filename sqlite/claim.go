package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/heraldhq/herald"
)

// laneOwnerSQL is a subscription's lane: who holds it, until when.
const laneOwnerSQL = `SELECT owner, expires_at FROM lanes WHERE subscription_id = ?`

// claimer leases the fresh deliveries of one publish to c.Owner, within the
// publish transaction, by the rules of DeliveryLease (herald.Claimer): only
// active, unordered subscriptions whose lane is free, expired or c.Owner's,
// and at most each lane's room, oldest first. plan decides before the
// deliveries are inserted, so the claimed ones are inserted delivering
// under the lease (no second write of the rows); finish claims their lanes
// and returns the Lease. The rest stay pending.
type claimer struct {
	s   *Store
	ctx context.Context
	tx  *sql.Tx
	now time.Time
	c   *herald.Claim
	by  map[string]*subClaim // subscriptions with deliveries claimed
}

// subClaim is what a publish claims of one subscription.
type subClaim struct {
	row    subRow
	expiry int64 // of the deliveries' leases and the lane
	n      int   // deliveries claimed
}

// plan marks the fresh deliveries (in order: oldest first within each
// subscription) that the claim takes.
func (cl *claimer) plan(fresh []freshDelivery) error {
	ctx, tx := cl.ctx, cl.tx
	var getSub, laneOwner, count *sql.Stmt
	for _, st := range []struct {
		dst **sql.Stmt
		q   string
	}{{&getSub, subByIDSQL}, {&laneOwner, laneOwnerSQL}, {&count, deliveringSQL}} {
		var err error
		if *st.dst, err = cl.s.prepare(ctx, tx, st.q); err != nil {
			return err
		}
		defer (*st.dst).Close()
	}
	at := cl.now.UnixMicro()
	room := map[string]int{} // what each subscription may still take; absent: not decided
	cl.by = map[string]*subClaim{}
	for i := range fresh {
		f := &fresh[i]
		left, decided := room[f.sub]
		if !decided {
			var err error
			if left, err = cl.room(getSub, laneOwner, count, f.sub, at); err != nil {
				return err
			}
		}
		if left > 0 {
			f.claim = cl.by[f.sub]
			f.claim.n++
			left--
		}
		room[f.sub] = left
	}
	return nil
}

// room decides how many of a subscription's fresh deliveries the claim may
// take, and prepares its subClaim when that is more than none.
func (cl *claimer) room(getSub, laneOwner, count *sql.Stmt, id string, at int64) (int, error) {
	n, known := 0, false
	if cl.c.Room != nil {
		if n, known = cl.c.Room(id); known && n <= 0 {
			return 0, nil
		}
	}
	row, err := scanSubscription(getSub.QueryRowContext(cl.ctx, id))
	if err != nil {
		return 0, err
	}
	if row.sub.Status != herald.StatusActive || row.sub.Ordered {
		return 0, nil
	}
	var owner string
	var expires int64
	switch err := laneOwner.QueryRowContext(cl.ctx, id).Scan(&owner, &expires); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, err
	case owner != cl.c.Owner && expires >= at:
		return 0, nil // another process's lane
	}
	if !known {
		var delivering int
		if err := count.QueryRowContext(cl.ctx, id).Scan(&delivering); err != nil {
			return 0, err
		}
		n = herald.LaneCap(row.sub.Delivery) - delivering
	}
	if n > 0 {
		cl.by[id] = &subClaim{row: row, expiry: cl.now.Add(cl.c.Margin + row.sub.Delivery.Timeout).UnixMicro()}
	}
	return n, nil
}

// finish claims the lanes of what plan took and returns it as a Lease, in
// Seq order, with the events as published.
func (cl *claimer) finish(fresh []freshDelivery, reqs []herald.PublishRequest, results []herald.PublishResult) (herald.Lease, error) {
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	var laneUp *sql.Stmt
	for id, sc := range cl.by {
		if sc.n == 0 {
			continue
		}
		if laneUp == nil {
			var err error
			if laneUp, err = cl.s.prepare(cl.ctx, cl.tx, laneUpSQL); err != nil {
				return lease, err
			}
			defer laneUp.Close()
		}
		sub, err := cl.s.open(sc.row)
		if err != nil {
			return lease, err
		}
		if _, err := laneUp.ExecContext(cl.ctx, id, sub.TenantID, cl.c.Owner, sc.expiry); err != nil {
			return lease, err
		}
		lease.Subscriptions[id] = sub
	}
	for _, f := range fresh {
		if f.claim == nil {
			continue
		}
		ev := reqs[f.req].Event
		ev.Deliveries, ev.ReceivedAt = results[f.req].Deliveries, cl.now
		lease.Deliveries = append(lease.Deliveries, herald.LeasedDelivery{
			Delivery: herald.Delivery{ID: f.id, TenantID: ev.TenantID, SubscriptionID: f.sub, EventID: ev.ID,
				Status: herald.DeliveryDelivering, NextAttemptAt: cl.now, TraceID: f.trace, Seq: f.seq,
				CreatedAt: cl.now, UpdatedAt: cl.now},
			Event: ev,
		})
	}
	slices.SortFunc(lease.Deliveries, func(a, b herald.LeasedDelivery) int { return cmp.Compare(a.Delivery.Seq, b.Delivery.Seq) })
	return lease, nil
}

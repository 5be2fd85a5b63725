package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
)

// laneOwnerSQL is a subscription's lane: who holds it, until when.
const laneOwnerSQL = `SELECT owner, expires_at FROM lanes WHERE subscription_id = ?`

// claim leases fresh deliveries of a publish to c.Owner, within the publish
// transaction, by the rules of DeliveryLease (herald.Claimer): only active,
// unordered subscriptions whose lane is free, expired or c.Owner's, and at
// most each lane's room, oldest first. The rest stay pending.
func (s *Store) claim(ctx context.Context, tx *sql.Tx, now time.Time, c *herald.Claim, fresh []freshDelivery,
	reqs []herald.PublishRequest, results []herald.PublishResult) (herald.Lease, error) {
	lease := herald.Lease{Subscriptions: map[string]herald.Subscription{}}
	if len(fresh) == 0 {
		return lease, nil
	}
	bySub := map[string][]freshDelivery{}
	var subs []string
	for _, f := range fresh {
		if _, ok := bySub[f.sub]; !ok {
			subs = append(subs, f.sub)
		}
		bySub[f.sub] = append(bySub[f.sub], f)
	}
	var getSub, laneOwner, count, mark, laneUp *sql.Stmt
	for _, st := range []struct {
		dst **sql.Stmt
		q   string
	}{{&getSub, subByIDSQL}, {&laneOwner, laneOwnerSQL}, {&count, deliveringSQL}, {&mark, markSQL}, {&laneUp, laneUpSQL}} {
		var err error
		if *st.dst, err = s.prepare(ctx, tx, st.q); err != nil {
			return lease, err
		}
		defer (*st.dst).Close()
	}
	at := now.UnixMicro()
	var marks []byte
	for _, id := range subs {
		var room int
		var known bool
		if c.Room != nil {
			room, known = c.Room(id)
		}
		if known && room <= 0 {
			continue
		}
		row, err := scanSubscription(getSub.QueryRowContext(ctx, id))
		if err != nil {
			return lease, err
		}
		if row.sub.Status != herald.StatusActive || row.sub.Ordered {
			continue
		}
		var owner string
		var expires int64
		switch err := laneOwner.QueryRowContext(ctx, id).Scan(&owner, &expires); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return lease, err
		case owner != c.Owner && expires >= at:
			continue // another process's lane
		}
		if !known {
			var delivering int
			if err := count.QueryRowContext(ctx, id).Scan(&delivering); err != nil {
				return lease, err
			}
			room = herald.LaneCap(row.sub.Delivery) - delivering
		}
		ds := bySub[id]
		slices.SortFunc(ds, func(a, b freshDelivery) int { return cmp.Compare(a.seq, b.seq) })
		if ds = ds[:min(max(room, 0), len(ds))]; len(ds) == 0 {
			continue
		}
		sub, err := s.open(row)
		if err != nil {
			return lease, err
		}
		expiry := now.Add(c.Margin + sub.Delivery.Timeout).UnixMicro()
		marks = append(marks[:0], '[')
		for i, f := range ds {
			if i > 0 {
				marks = append(marks, ',')
			}
			marks = strconv.AppendInt(marks, f.seq, 10)
		}
		marks = append(marks, ']')
		if _, err := mark.ExecContext(ctx, c.Owner, expiry, at, string(marks)); err != nil {
			return lease, err
		}
		if _, err := laneUp.ExecContext(ctx, id, sub.TenantID, c.Owner, expiry); err != nil {
			return lease, err
		}
		lease.Subscriptions[id] = sub
		for _, f := range ds {
			ev := reqs[f.req].Event
			ev.Deliveries, ev.ReceivedAt = results[f.req].Deliveries, now
			lease.Deliveries = append(lease.Deliveries, herald.LeasedDelivery{
				Delivery: herald.Delivery{ID: f.id, TenantID: ev.TenantID, SubscriptionID: id, EventID: ev.ID,
					Status: herald.DeliveryDelivering, NextAttemptAt: now, TraceID: f.trace, Seq: f.seq,
					CreatedAt: now, UpdatedAt: now},
				Event: ev,
			})
		}
	}
	slices.SortFunc(lease.Deliveries, func(a, b herald.LeasedDelivery) int { return cmp.Compare(a.Delivery.Seq, b.Delivery.Seq) })
	return lease, nil
}

package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
)

// ReasonGone is the disabled_reason of a subscription whose endpoint
// answered 410 Gone.
const ReasonGone = "endpoint answered 410 Gone"

// disabledEventVersion is the version of herald.webhook.disabled events.
const disabledEventVersion = "1.0"

// ReasonFailing is the disabled_reason of a subscription whose every attempt
// failed for d.
func ReasonFailing(d time.Duration) string {
	return "every attempt failed for " + d.String()
}

// disableFailing disables the subscriptions whose attempts have all failed
// for DisableAfter, and returns how many it disabled. The failing run is
// counted from the subscription's last change at the latest: a subscription
// re-enabled by hand gets DisableAfter again before it is disabled anew
// (the store keeps FailingSince across updates).
//
// It stops early, between subscriptions, when ctx ends; a subscription it has
// begun to disable is finished (status and event both).
func (d *Dispatcher) disableFailing(ctx context.Context) (int, error) {
	if d.cfg.DisableNever {
		return 0, nil
	}
	now := d.now()
	before := now.Add(-d.cfg.DisableAfter)
	n := 0
	seen := map[string]bool{}
	for page := 0; page < 100; page++ {
		qctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		subs, err := d.store.SubscriptionFailing(qctx, before, failingPage)
		cancel()
		if err != nil {
			return n, fmt.Errorf("failing subscriptions: %w", err)
		}
		fresh := 0
		for _, s := range subs {
			key := s.TenantID + "\x00" + s.ID
			if seen[key] {
				continue
			}
			seen[key] = true
			fresh++
			if s.Status != herald.StatusActive || s.UpdatedAt.After(before) {
				continue // paused by hand, or changed within DisableAfter: not yet
			}
			if ctx.Err() != nil {
				return n, nil
			}
			ok, err := d.disable(ctx, s.TenantID, s.ID, ReasonFailing(d.cfg.DisableAfter))
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
		if len(subs) < failingPage || fresh == 0 {
			break
		}
	}
	return n, nil
}

// disable sets a subscription's status to disabled with reason, publishes a
// herald.webhook.disabled event to its tenant, and wakes the lease loop to
// deliver it. It reports false when the subscription was disabled already.
// Once begun it is not cancelled with ctx: a disabled subscription always
// gets its event.
// disableTries is how often disable reads and writes a subscription that
// keeps changing under it before giving up (the next check tries again).
const disableTries = 5

func (d *Dispatcher) disable(ctx context.Context, tenantID, id, reason string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCallTimeout)
	defer cancel()
	var sub herald.Subscription
	var now time.Time
	// Only the status changes; a PATCH that got in between the read and
	// the write (the store's revision check) is read again, not undone.
	for try := 1; ; try++ {
		var err error
		if sub, err = d.store.SubscriptionGet(ctx, tenantID, id); err != nil {
			return false, fmt.Errorf("disable subscription %s: %w", id, err)
		}
		if sub.Status == herald.StatusDisabled {
			return false, nil
		}
		now = d.now()
		sub.Status = herald.StatusDisabled
		sub.DisabledReason = reason
		sub.UpdatedAt = now
		err = d.store.SubscriptionUpdate(ctx, sub)
		if err == nil {
			break
		}
		if !errors.Is(err, herald.ErrConflict) || try >= disableTries {
			return false, fmt.Errorf("disable subscription %s: %w", id, err)
		}
	}
	d.metrics.disabled.Inc()
	d.log.Warn("subscription disabled", "tenant_id", tenantID, "subscription_id", id, "reason", reason)

	data, err := json.Marshal(sub.View())
	if err != nil {
		return true, fmt.Errorf("disabled event: %w", err)
	}
	hash := sha256.Sum256(data)
	res, err := d.store.EventPublish(ctx, now, []herald.PublishRequest{{Event: herald.Event{
		TenantID:   tenantID,
		ID:         herald.NewID(herald.PrefixEvent),
		EventType:  herald.EventTypeDisabled,
		Version:    disabledEventVersion,
		Data:       data,
		CreateTime: now,
		Hash:       hash[:],
	}}})
	if err == nil && len(res) == 1 && res[0].Err != nil {
		err = res[0].Err
	}
	if err != nil {
		return true, fmt.Errorf("publish %s: %w", herald.EventTypeDisabled, err)
	}
	d.Notify()
	return true, nil
}

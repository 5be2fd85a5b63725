package herald

import (
	"context"
	"time"
)

// Page asks for one page of a list. Cursor is opaque: the NextCursor of the
// previous page, or "" for the first.
type Page struct {
	Limit  int // 1..500; stores treat <= 0 as 50
	Cursor string
}

// Page size limits (CONTRACT.md §2).
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 500
)

// Size is the number of rows p asks for: Limit, with <= 0 meaning
// DefaultPageLimit and anything above MaxPageLimit clamped to it.
func (p Page) Size() int {
	switch {
	case p.Limit <= 0:
		return DefaultPageLimit
	case p.Limit > MaxPageLimit:
		return MaxPageLimit
	}
	return p.Limit
}

// EventFilter selects events for EventList, newest first.
type EventFilter struct {
	Page
	EventType string
	Since     time.Time // inclusive; zero: no bound (compared with ReceivedAt)
	Until     time.Time // exclusive; zero: no bound
}

// DeliveryFilter selects deliveries for DeliveryList, newest first.
type DeliveryFilter struct {
	Page
	SubscriptionID string
	EventID        string
	Status         string
}

// ReplayFilter selects a subscription's deliveries to queue again.
type ReplayFilter struct {
	Since  time.Time // CreatedAt >= Since; zero: no bound
	Until  time.Time // CreatedAt < Until; zero: no bound
	Status string    // "" means failed and cancelled; else that status only (final statuses only)
}

// PublishRequest is one event to store, with its fan-out.
type PublishRequest struct {
	Event Event // TenantID, ID, EventType, Version, Data, CreateTime, Test, Hash set by the caller
	// Only, when set, is the one subscription that receives the event (the
	// test event of POST /webhooks/{id}/test); matching is then skipped, but
	// the subscription must belong to the event's tenant.
	Only string
}

// PublishResult answers one PublishRequest.
type PublishResult struct {
	EventID     string
	Deliveries  int
	DeliveryIDs []string // ids created by this call (empty on an idempotent repeat)
	// Err is nil, ErrConflict (same id, another Hash) or ErrNotFound (Only names
	// no subscription of the tenant). It fails this request alone.
	Err error
}

// LeaseParams asks DeliveryLease for due work.
type LeaseParams struct {
	Owner string    // the leasing process, unique per process run
	Now   time.Time // what counts as due
	// Margin sets the lease expiry: a leased delivery and its lane are held
	// until Now + Margin + the subscription's Delivery.Timeout, so a lease
	// always outlives the request it covers.
	Margin time.Duration
	Limit  int // most deliveries returned in all
	// Exclude lists subscriptions this owner will not take more of now (its
	// lane is full or throttled).
	Exclude []string
	// Room, when set, reports how many more deliveries this owner's lane
	// of a subscription takes now, counting what the lane holds and what
	// waits to be recorded; it may reach past LaneCap for a lane that keeps
	// up. False when the owner has no lane for it. A store may then hand
	// out that many without counting the subscription's delivering rows,
	// instead of LaneCap less that count (SQLite does: one process owns
	// the store; PostgreSQL counts and keeps to LaneCap, since another
	// process's leases may still be out). It is called inside the lease
	// transaction.
	Room func(subscriptionID string) (int, bool)
}

// LeasedDelivery is a delivery handed to a dispatcher, with its event.
type LeasedDelivery struct {
	Delivery Delivery
	Event    Event
}

// Lease is the answer of DeliveryLease.
type Lease struct {
	Deliveries []LeasedDelivery
	// Subscriptions holds every subscription that a leased delivery belongs
	// to, by id, with its secrets and encryption key opened.
	Subscriptions map[string]Subscription
}

// Outcome is the result of one attempt at one delivery, for DeliveryRecord.
type Outcome struct {
	DeliveryID string
	Owner      string // the lease owner; the outcome is dropped if the lease is no longer its own
	Attempt    Attempt
	// Status is DeliverySucceeded, DeliveryFailed (for good), or
	// DeliveryPending (retry at NextAttemptAt, after sleeping LastSleep).
	Status        string
	NextAttemptAt time.Time
	LastSleep     time.Duration
	BatchID       string // set when the delivery was sent in a batch
	// Now is when the outcome was decided. It sets CompletedAt of a final
	// status and UpdatedAt.
	Now time.Time
}

// Store is Herald's durable state. Every method is safe for concurrent use.
// Methods scoped to a tenant answer ErrNotFound for another tenant's objects.
// A method that fails changes nothing. Errors reaching the store itself (a
// lost connection, a closed database) match ErrUnavailable.
type Store interface {
	// Migrate applies pending schema migrations under a lock, so several
	// processes may call it at once.
	Migrate(ctx context.Context) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error

	// SettingGet returns a stored setting (the admin key's hash, a generated
	// master key), or ErrNotFound.
	SettingGet(ctx context.Context, name string) ([]byte, error)
	// SettingPutIfAbsent stores value under name unless a value is there
	// already, and returns the value stored under name afterwards. Two
	// processes racing get the same answer.
	SettingPutIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error)

	// TenantCreate stores a new tenant. ErrConflict if the id exists.
	TenantCreate(ctx context.Context, t Tenant) error
	// TenantGet returns a tenant or ErrNotFound.
	TenantGet(ctx context.Context, id string) (Tenant, error)
	// TenantList pages through tenants ordered by id.
	TenantList(ctx context.Context, p Page) (tenants []Tenant, next string, err error)

	// APIKeyCreate stores a key (its hash). ErrNotFound if the tenant does
	// not exist; ErrConflict if the id or hash exists.
	APIKeyCreate(ctx context.Context, k APIKey) error
	// APIKeyByHash returns the unrevoked key with this hash, or ErrNotFound.
	APIKeyByHash(ctx context.Context, hash []byte) (APIKey, error)
	// APIKeyRevoke revokes a tenant's key at now. ErrNotFound if there is no
	// such unrevoked key of that tenant.
	APIKeyRevoke(ctx context.Context, tenantID, keyID string, now time.Time) error

	// SubscriptionCreate stores s (ID, TenantID, CreatedAt and UpdatedAt set
	// by the caller), sealing its secrets and encryption key.
	// ErrConflict if the id exists.
	SubscriptionCreate(ctx context.Context, s Subscription) error
	// SubscriptionGet returns a tenant's subscription, secrets opened.
	SubscriptionGet(ctx context.Context, tenantID, id string) (Subscription, error)
	// SubscriptionList pages through a tenant's subscriptions, oldest first.
	SubscriptionList(ctx context.Context, tenantID string, p Page) ([]Subscription, string, error)
	// SubscriptionUpdate replaces every field of a stored subscription with
	// those of s (matched by TenantID and ID), except CreatedAt and
	// FailingSince. FailingSince is cleared when the status changes to
	// active, so a subscription enabled again gets its whole --disable-after
	// period. The update applies only if the stored revision is still
	// s.Revision, and increments it; otherwise it changes nothing and
	// returns ErrConflict (read again and reapply). ErrNotFound if absent.
	SubscriptionUpdate(ctx context.Context, s Subscription) error
	// SubscriptionDelete deletes a subscription and cancels its pending and
	// delivering deliveries (CompletedAt = now).
	SubscriptionDelete(ctx context.Context, tenantID, id string, now time.Time) error
	// SubscriptionFailing returns subscriptions whose FailingSince is set and
	// not after before (candidates for auto-disable), that are not disabled,
	// at most limit of them.
	SubscriptionFailing(ctx context.Context, before time.Time, limit int) ([]Subscription, error)

	// EventPublish stores events and their deliveries in one transaction,
	// durably committed before it returns. For each request: if the tenant
	// already has an event with that ID and the same Hash, the result repeats
	// the stored event's Deliveries and nothing is written; with another Hash
	// its Err is ErrConflict. Otherwise the event is stored (ReceivedAt = now)
	// with one pending delivery, due at now, for every subscription of the
	// tenant that matches: status active or paused, mode "test" exactly when
	// the event is a test event, and one of its patterns matching the event
	// type (or the subscription named by Only). Each delivery gets a new
	// "dlv_" id, a TraceID (a UUID) and a Seq greater than every earlier one.
	// A returned error (not a per-request Err) means nothing was stored.
	EventPublish(ctx context.Context, now time.Time, reqs []PublishRequest) ([]PublishResult, error)
	// EventGet returns a tenant's event.
	EventGet(ctx context.Context, tenantID, id string) (Event, error)
	// EventHashes returns the Hash of each of the tenant's stored events
	// among ids, in one query or a few multi-row ones, never one per id; an
	// id with no stored event is not in the map.
	EventHashes(ctx context.Context, tenantID string, ids []string) (map[string][]byte, error)
	// EventList pages through a tenant's events, newest first.
	EventList(ctx context.Context, tenantID string, f EventFilter) ([]Event, string, error)

	// DeliveryGet returns a tenant's delivery and its attempts in order.
	DeliveryGet(ctx context.Context, tenantID, id string) (Delivery, []Attempt, error)
	// DeliveryList pages through a tenant's deliveries, newest first.
	DeliveryList(ctx context.Context, tenantID string, f DeliveryFilter) ([]Delivery, string, error)
	// DeliveryRetry queues a delivery of any status other than delivering
	// again, due at now: pending, CompletedAt cleared, Attempts, FirstAttemptAt
	// and LastSleep reset so it has its whole retry budget again; BatchID is
	// cleared. ErrConflict while it is delivering.
	DeliveryRetry(ctx context.Context, tenantID, id string, now time.Time) error
	// DeliveryReplay does DeliveryRetry for every delivery of a subscription
	// that matches f and returns how many.
	DeliveryReplay(ctx context.Context, tenantID, subscriptionID string, f ReplayFilter, now time.Time) (int, error)

	// DeliveryLease hands out due deliveries to p.Owner, in one transaction.
	// A delivery is due when pending with NextAttemptAt <= p.Now, or
	// delivering with an expired lease (its owner died). Only deliveries of
	// active subscriptions are leased, and only from lanes (one per
	// subscription) that are free, expired or already p.Owner's; leasing
	// claims or extends the lane until its expiry (see LeaseParams.Margin). Per subscription at most
	// LaneCap(subscription.Delivery) deliveries are delivering
	// at once, counting those already leased, or p.Room more where the
	// store honours it; an ordered subscription hands
	// out only its oldest unfinished delivery (lowest Seq), and only when it
	// is due. A leased delivery with a BatchID comes with every other member
	// of that batch. Subscriptions in p.Exclude are skipped. Deliveries are
	// taken oldest due first, fairly across subscriptions, at most p.Limit,
	// and marked delivering with the lease.
	DeliveryLease(ctx context.Context, p LeaseParams) (Lease, error)
	// DeliveryRecord writes many outcomes in one transaction: the attempt
	// row, the delivery's new status, Attempts, NextAttemptAt, LastSleep,
	// FirstAttemptAt (set on the first attempt), BatchID, LastStatusCode,
	// LastError, and releases its lease. It maintains the subscription's
	// FailingSince: cleared by a success, set to the attempt's start by a
	// failed attempt when unset. Outcomes whose delivery is no longer leased
	// by their Owner are skipped. When an owner has nothing left delivering
	// for a subscription, its lane expires no later than the outcome's Now +
	// LaneHandoff, so an idle lane can pass to another process.
	DeliveryRecord(ctx context.Context, outcomes []Outcome) error
	// DeliveryRelease gives leased deliveries back without an attempt: they
	// become pending, due at at, and lose the lease. Only those leased by
	// owner are touched. With no ids it releases all of owner's deliveries
	// and lanes.
	DeliveryRelease(ctx context.Context, owner string, ids []string, at time.Time) error
	// DeliveryPendingCount counts deliveries pending or delivering.
	DeliveryPendingCount(ctx context.Context) (int64, error)
	// DeliveryNextDue returns the earliest time work may become due: the
	// NextAttemptAt of a pending delivery of an active subscription, or the
	// lease expiry of a delivering one (its owner may have died); false if
	// there is none.
	DeliveryNextDue(ctx context.Context) (time.Time, bool, error)

	// Purge deletes succeeded, failed and cancelled deliveries completed
	// before before, their attempts, and events received before before that
	// have no delivery left; at most limit deliveries per call. It returns how
	// many deliveries it deleted.
	Purge(ctx context.Context, before time.Time, limit int) (int, error)
}

// Claim asks Claimer.EventPublishClaim to lease the deliveries a publish
// creates to Owner in the publish transaction itself, so they go straight to
// their lanes instead of being read back by DeliveryLease.
type Claim struct {
	Owner  string
	Margin time.Duration // as LeaseParams.Margin
	// Room reports how many more deliveries a subscription's lane takes
	// now, which may be more than LaneCap for a lane that keeps up; false
	// when this process has no lane for it, which may then take
	// LaneCap(subscription.Delivery), less what it has delivering. Nil means
	// no lane anywhere. It is called inside the publish transaction, once
	// per subscription the publish creates deliveries for.
	Room func(subscriptionID string) (int, bool)
}

// Claimer is a Store that can lease fresh deliveries while publishing them.
// SQLite implements it (one process owns the store, so the lanes of the
// process that publishes are the only lanes), and PostgreSQL (a lane another
// process holds unexpired is left to it).
type Claimer interface {
	// EventPublishClaim is EventPublish, and in the same transaction it
	// leases to claim.Owner, as DeliveryLease would, fresh deliveries of
	// active, unordered subscriptions whose lane is free, expired or
	// claim.Owner's, up to each lane's room (see Claim.Room), oldest first.
	// It returns them, marked delivering, as a Lease. What it does not claim
	// stays pending for DeliveryLease.
	EventPublishClaim(ctx context.Context, now time.Time, reqs []PublishRequest, claim Claim) ([]PublishResult, Lease, error)
}

// LeasePrefetch is how many times its in-flight cap a lane may hold leased:
// the lane sends at most MaxInFlight at once and queues the rest in memory,
// so the next requests are ready while earlier outcomes are being recorded.
const LeasePrefetch = 4

// LaneCap is how many of a subscription's deliveries may be delivering
// (leased) at once: min(MaxInFlight × LeasePrefetch, MaxRPS × 10) ×
// BatchMaxEvents, zero settings taking their defaults.
func LaneCap(d DeliveryConfig) int {
	n := d.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	n *= LeasePrefetch
	if d.MaxRPS > 0 {
		n = min(n, d.MaxRPS*10)
	}
	return n * max(1, d.BatchMaxEvents)
}

// LaneHandoff is how long after its owner drained it a lane may pass to
// another owner. It is a second so that no sliding one-second window holds
// sends of two owners, keeping max_rps exact across processes.
const LaneHandoff = time.Second

// Waker is implemented by stores that can tell the dispatcher of new work
// published by another process (PostgreSQL LISTEN/NOTIFY). Wake blocks until
// ctx ends, sending on ch (without blocking) whenever work may be due.
type Waker interface {
	Wake(ctx context.Context, ch chan<- struct{}) error
}

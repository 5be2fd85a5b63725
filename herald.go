package herald

import (
	"encoding/json"
	"time"
)

// DefaultTenant is the tenant of the admin key.
const DefaultTenant = "default"

// Subscription defaults (CONTRACT.md §3).
const (
	DefaultSignatureScheme = "standard"
	DefaultPayloadFormat   = "envelope"
	DefaultMode            = "live"
	DefaultMaxRPS          = 300
	DefaultMaxInFlight     = 16
	DefaultTimeout         = 10 * time.Second
	DefaultBatchMaxEvents  = 1
	DefaultMaxAttempts     = 3
	DefaultRetryWindow     = time.Hour
	DefaultRetryBase       = 5 * time.Second
	DefaultRetryCap        = 30 * time.Minute
)

// Subscription statuses.
const (
	StatusActive   = "active"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// Payload formats and modes.
const (
	FormatEnvelope = "envelope"
	FormatFlat     = "flat"
	ModeLive       = "live"
	ModeTest       = "test"
)

// Event types Herald publishes itself.
const (
	EventTypeTest     = "webhook.test"
	EventTypeDisabled = "herald.webhook.disabled"
)

// Tenant owns subscriptions, events, deliveries and API keys.
type Tenant struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// APIKey is a tenant's key. Only a hash of the key is stored; Prefix is a
// short visible part for the operator to recognise it by.
type APIKey struct {
	ID        string
	TenantID  string
	Prefix    string
	Hash      []byte // SHA-256 of the whole key
	CreatedAt time.Time
	RevokedAt time.Time // zero while the key is valid
}

// Secret is one signing secret. Several are active during a rotation: the new
// one without expiry and the old ones until their grace ends.
type Secret struct {
	Value     string
	ExpiresAt time.Time // zero: never
}

// RetryPolicy is a subscription's retry budget (CONTRACT.md §5.4).
type RetryPolicy struct {
	MaxAttempts int           // 0: no limit
	Window      time.Duration // since the first attempt
	Base        time.Duration
	Cap         time.Duration
}

// DeliveryConfig is a subscription's flow control and retry settings.
type DeliveryConfig struct {
	MaxRPS         int
	MaxInFlight    int
	Timeout        time.Duration
	BatchMaxEvents int
	Retry          RetryPolicy
}

// Subscription is a customer endpoint and what it wants delivered.
type Subscription struct {
	ID              string
	TenantID        string
	URL             string
	Name            string
	Events          []string // patterns: exact type, "*", or a prefix ending ".*" or "-*"
	Secrets         []Secret // newest first; stored sealed
	SignatureScheme string
	EncryptionKey   []byte // 32 bytes or nil; stored sealed
	IncludePayload  bool
	PayloadFormat   string
	Mode            string
	Ordered         bool
	Headers         map[string]string
	Delivery        DeliveryConfig
	Status          string
	DisabledReason  string
	// FailingSince is when the first of an unbroken run of failed attempts
	// started; zero after any success. Stores maintain it in DeliveryRecord.
	FailingSince time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Revision counts the stored updates. SubscriptionUpdate applies only
	// to the revision it was read at, so that two read-modify-writes (a
	// PATCH and an auto-disable, say) cannot silently undo each other.
	Revision int64
}

// ActiveSecrets returns the secret values still valid at now, newest first.
func (s *Subscription) ActiveSecrets(now time.Time) []string {
	out := make([]string, 0, len(s.Secrets))
	for _, sec := range s.Secrets {
		if sec.ExpiresAt.IsZero() || now.Before(sec.ExpiresAt) {
			out = append(out, sec.Value)
		}
	}
	return out
}

// Event is one published event. Its ID is the publisher's idempotency key, or
// a generated "msg_" id; it is unique within its tenant.
type Event struct {
	TenantID   string
	ID         string
	EventType  string
	Version    string
	Data       json.RawMessage // nil when absent
	CreateTime time.Time
	Test       bool
	// Hash identifies the request body for idempotency: the same ID with
	// another Hash is a conflict.
	Hash       []byte
	Deliveries int // number of deliveries fanned out at publish
	ReceivedAt time.Time
}

// Delivery statuses.
const (
	DeliveryPending    = "pending"
	DeliveryDelivering = "delivering"
	DeliverySucceeded  = "succeeded"
	DeliveryFailed     = "failed"
	DeliveryCancelled  = "cancelled"
)

// Delivery is one event on its way to one subscription. Deliveries that
// travel together in a batch share a BatchID and are leased, attempted and
// recorded together.
type Delivery struct {
	ID             string
	TenantID       string
	SubscriptionID string
	EventID        string
	Status         string
	Attempts       int       // attempts made so far
	NextAttemptAt  time.Time // when it is due (pending)
	FirstAttemptAt time.Time // zero before the first attempt
	LastSleep      time.Duration
	TraceID        string // stable across attempts
	BatchID        string // "" until it is sent in a batch
	Seq            int64  // publish order, increasing within the store
	LastStatusCode int
	LastError      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	CompletedAt    time.Time // zero until succeeded, failed or cancelled
}

// Attempt is one HTTP request made for a delivery.
type Attempt struct {
	N            int
	StartedAt    time.Time
	Duration     time.Duration
	StatusCode   int    // 0 when no response
	Error        string // "" on a response
	ResponseBody string // at most 4 KiB
}

// MaxStoredResponse is the most of a response body kept with an attempt.
const MaxStoredResponse = 4 << 10

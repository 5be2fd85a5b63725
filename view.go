package herald

import "time"

// SubscriptionView is a subscription as Herald shows it (CONTRACT.md §3):
// at the API, and as the data of a herald.webhook.disabled event. It never
// carries the encryption key, and the signing secret only when a caller sets
// SigningSecret (the answers to create and rotate-secret).
type SubscriptionView struct {
	ID              string            `json:"id"`
	URL             string            `json:"url"`
	Name            string            `json:"name"`
	Events          []string          `json:"events"`
	SigningSecret   string            `json:"signing_secret,omitempty"`
	SignatureScheme string            `json:"signature_scheme"`
	Encryption      bool              `json:"encryption"`
	IncludePayload  bool              `json:"include_payload"`
	PayloadFormat   string            `json:"payload_format"`
	Mode            string            `json:"mode"`
	Ordered         bool              `json:"ordered"`
	Headers         map[string]string `json:"headers"`
	Delivery        DeliveryView      `json:"delivery"`
	Status          string            `json:"status"`
	DisabledReason  string            `json:"disabled_reason,omitempty"`
	CreatedAt       string            `json:"created_at"`
	UpdatedAt       string            `json:"updated_at"`
}

// DeliveryView is a subscription's delivery settings as shown, durations as
// Go duration strings.
type DeliveryView struct {
	MaxRPS         int       `json:"max_rps"`
	MaxInFlight    int       `json:"max_in_flight"`
	Timeout        string    `json:"timeout"`
	BatchMaxEvents int       `json:"batch_max_events"`
	Retry          RetryView `json:"retry"`
}

// RetryView is a retry policy as shown.
type RetryView struct {
	MaxAttempts int    `json:"max_attempts"`
	Window      string `json:"window"`
	Base        string `json:"base"`
	Cap         string `json:"cap"`
}

// View shows s without its secrets and keys.
func (s *Subscription) View() SubscriptionView {
	headers := s.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	events := s.Events
	if events == nil {
		events = []string{}
	}
	d := s.Delivery
	return SubscriptionView{
		ID:              s.ID,
		URL:             s.URL,
		Name:            s.Name,
		Events:          events,
		SignatureScheme: s.SignatureScheme,
		Encryption:      len(s.EncryptionKey) > 0,
		IncludePayload:  s.IncludePayload,
		PayloadFormat:   s.PayloadFormat,
		Mode:            s.Mode,
		Ordered:         s.Ordered,
		Headers:         headers,
		Delivery: DeliveryView{
			MaxRPS:         d.MaxRPS,
			MaxInFlight:    d.MaxInFlight,
			Timeout:        d.Timeout.String(),
			BatchMaxEvents: d.BatchMaxEvents,
			Retry: RetryView{
				MaxAttempts: d.Retry.MaxAttempts,
				Window:      d.Retry.Window.String(),
				Base:        d.Retry.Base.String(),
				Cap:         d.Retry.Cap.String(),
			},
		},
		Status:         s.Status,
		DisabledReason: s.DisabledReason,
		CreatedAt:      formatTimeOrEmpty(s.CreatedAt),
		UpdatedAt:      formatTimeOrEmpty(s.UpdatedAt),
	}
}

func formatTimeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t)
}

package api

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/netguard"
)

// Limits of a subscription's fields (CONTRACT.md §3 gives the defaults).
const (
	maxURLLen        = 2048
	maxNameLen       = 255
	maxPatterns      = 256
	maxHeaders       = 32
	maxHeaderNameLen = 256
	maxHeaderValLen  = 4096
	maxSecretLen     = 512
	maxSecrets       = 10 // kept during rotations
	minRPS, maxRPS   = 1, 100000
	minInFlight      = 1
	maxInFlight      = 1000
	minTimeout       = time.Second
	maxTimeout       = 60 * time.Second
	maxBatchEvents   = 1000
	maxMaxAttempts   = 1000
)

// subscriptionInput is the body of POST and PATCH /webhooks. Pointers tell
// an absent (or null) field from a given one.
type subscriptionInput struct {
	URL             *string           `json:"url"`
	Name            *string           `json:"name"`
	Events          []string          `json:"events"`
	SigningSecret   *string           `json:"signing_secret"`
	SignatureScheme *string           `json:"signature_scheme"`
	EncryptionKey   *string           `json:"encryption_key"`
	IncludePayload  *bool             `json:"include_payload"`
	PayloadFormat   *string           `json:"payload_format"`
	Mode            *string           `json:"mode"`
	Ordered         *bool             `json:"ordered"`
	Headers         map[string]string `json:"headers"`
	Delivery        *deliveryInput    `json:"delivery"`
	Status          *string           `json:"status"`
}

type deliveryInput struct {
	MaxRPS         *int        `json:"max_rps"`
	MaxInFlight    *int        `json:"max_in_flight"`
	Timeout        *string     `json:"timeout"`
	BatchMaxEvents *int        `json:"batch_max_events"`
	Retry          *retryInput `json:"retry"`
}

type retryInput struct {
	MaxAttempts *int    `json:"max_attempts"`
	Window      *string `json:"window"`
	Base        *string `json:"base"`
	Cap         *string `json:"cap"`
}

// newSubscription returns a subscription of tenant with every default of
// CONTRACT.md §3.
func newSubscription(tenant string, now time.Time) herald.Subscription {
	return herald.Subscription{
		ID:              herald.NewID(herald.PrefixSubscription),
		TenantID:        tenant,
		SignatureScheme: herald.DefaultSignatureScheme,
		IncludePayload:  true,
		PayloadFormat:   herald.DefaultPayloadFormat,
		Mode:            herald.DefaultMode,
		Headers:         map[string]string{},
		Delivery: herald.DeliveryConfig{
			MaxRPS:         herald.DefaultMaxRPS,
			MaxInFlight:    herald.DefaultMaxInFlight,
			Timeout:        herald.DefaultTimeout,
			BatchMaxEvents: herald.DefaultBatchMaxEvents,
			Retry: herald.RetryPolicy{
				MaxAttempts: herald.DefaultMaxAttempts,
				Window:      herald.DefaultRetryWindow,
				Base:        herald.DefaultRetryBase,
				Cap:         herald.DefaultRetryCap,
			},
		},
		Status:    herald.StatusActive,
		CreatedAt: now,
		UpdatedAt: now,
	}
}

// apply validates the fields in gives and writes them into sub. create
// makes url and events required and generates a signing secret when none is
// given. Errors name the first bad field.
func (s *Server) apply(in *subscriptionInput, sub *herald.Subscription, create bool, now time.Time) error {
	if in.URL != nil {
		if err := s.checkURL(*in.URL); err != nil {
			return err
		}
		sub.URL = *in.URL
	} else if create {
		return herald.Invalid("url", "required: an absolute http or https URL")
	}
	if in.Name != nil {
		if n := utf8.RuneCountInString(*in.Name); n > maxNameLen {
			return herald.Invalid("name", "at most %d characters, got %d", maxNameLen, n)
		}
		sub.Name = *in.Name
	}
	if in.Events != nil {
		if err := checkPatterns(in.Events); err != nil {
			return err
		}
		sub.Events = dedupe(in.Events)
	} else if create {
		return herald.Invalid("events", `required: a non-empty list of event types or patterns ("*", "job.*", "user-*")`)
	}
	schemeChanged := false
	if in.SignatureScheme != nil {
		if !s.validScheme(*in.SignatureScheme) {
			return herald.Invalid("signature_scheme", `unknown scheme %q: use "standard", "sha256-base64", "sha512-hex" or "github"`, *in.SignatureScheme)
		}
		schemeChanged = *in.SignatureScheme != sub.SignatureScheme
		sub.SignatureScheme = *in.SignatureScheme
	}
	switch {
	case in.SigningSecret != nil:
		if err := s.checkSecret(sub.SignatureScheme, *in.SigningSecret); err != nil {
			return err
		}
		sub.Secrets = []herald.Secret{{Value: *in.SigningSecret}}
	case create:
		secret, err := s.genSecret(sub.SignatureScheme)
		if err != nil {
			return fmt.Errorf("generate signing secret: %w", err)
		}
		sub.Secrets = []herald.Secret{{Value: secret}}
	case schemeChanged:
		for _, v := range sub.ActiveSecrets(now) {
			if s.validSecret(sub.SignatureScheme, v) != nil {
				return herald.Invalid("signing_secret", "the current secret does not suit signature_scheme %q: give a new signing_secret with it", sub.SignatureScheme)
			}
		}
	}
	if in.EncryptionKey != nil {
		key, err := parseEncryptionKey(*in.EncryptionKey)
		if err != nil {
			return err
		}
		sub.EncryptionKey = key
	}
	if in.IncludePayload != nil {
		sub.IncludePayload = *in.IncludePayload
	}
	if in.PayloadFormat != nil {
		if f := *in.PayloadFormat; f != herald.FormatEnvelope && f != herald.FormatFlat {
			return herald.Invalid("payload_format", `must be "envelope" or "flat", got %q`, f)
		}
		sub.PayloadFormat = *in.PayloadFormat
	}
	if in.Mode != nil {
		if m := *in.Mode; m != herald.ModeLive && m != herald.ModeTest {
			return herald.Invalid("mode", `must be "live" or "test", got %q`, m)
		}
		sub.Mode = *in.Mode
	}
	if in.Ordered != nil {
		sub.Ordered = *in.Ordered
	}
	if in.Headers != nil {
		if err := s.checkHeaders(in.Headers); err != nil {
			return err
		}
		sub.Headers = in.Headers
	}
	if in.Delivery != nil {
		if err := applyDelivery(in.Delivery, &sub.Delivery); err != nil {
			return err
		}
	}
	if in.Status != nil {
		switch st := *in.Status; st {
		case herald.StatusActive, herald.StatusPaused:
			sub.Status, sub.DisabledReason = st, ""
		case herald.StatusDisabled:
			if sub.Status != herald.StatusDisabled {
				sub.DisabledReason = "disabled through the API"
			}
			sub.Status = st
		default:
			return herald.Invalid("status", `must be "active", "paused" or "disabled", got %q`, st)
		}
	}
	return nil
}

func applyDelivery(in *deliveryInput, d *herald.DeliveryConfig) error {
	if in.MaxRPS != nil {
		if err := intRange("delivery.max_rps", *in.MaxRPS, minRPS, maxRPS); err != nil {
			return err
		}
		d.MaxRPS = *in.MaxRPS
	}
	if in.MaxInFlight != nil {
		if err := intRange("delivery.max_in_flight", *in.MaxInFlight, minInFlight, maxInFlight); err != nil {
			return err
		}
		d.MaxInFlight = *in.MaxInFlight
	}
	if in.Timeout != nil {
		t, err := duration("delivery.timeout", *in.Timeout, "10s")
		if err != nil {
			return err
		}
		if t < minTimeout || t > maxTimeout {
			return herald.Invalid("delivery.timeout", "must be between %s and %s, got %s", minTimeout, maxTimeout, t)
		}
		d.Timeout = t
	}
	if in.BatchMaxEvents != nil {
		if err := intRange("delivery.batch_max_events", *in.BatchMaxEvents, 1, maxBatchEvents); err != nil {
			return err
		}
		d.BatchMaxEvents = *in.BatchMaxEvents
	}
	if in.Retry == nil {
		return nil
	}
	r := in.Retry
	if r.MaxAttempts != nil {
		if err := intRange("delivery.retry.max_attempts", *r.MaxAttempts, 0, maxMaxAttempts); err != nil {
			return err
		}
		d.Retry.MaxAttempts = *r.MaxAttempts
	}
	for _, f := range []struct {
		name    string
		in      *string
		out     *time.Duration
		example string
	}{
		{"delivery.retry.window", r.Window, &d.Retry.Window, "1h"},
		{"delivery.retry.base", r.Base, &d.Retry.Base, "5s"},
		{"delivery.retry.cap", r.Cap, &d.Retry.Cap, "30m"},
	} {
		if f.in == nil {
			continue
		}
		v, err := duration(f.name, *f.in, f.example)
		if err != nil {
			return err
		}
		*f.out = v
	}
	if d.Retry.Base > d.Retry.Cap {
		if r.Cap != nil && r.Base == nil {
			return herald.Invalid("delivery.retry.cap", "must be at least delivery.retry.base (%s), got %s", d.Retry.Base, d.Retry.Cap)
		}
		return herald.Invalid("delivery.retry.base", "must not exceed delivery.retry.cap (%s), got %s", d.Retry.Cap, d.Retry.Base)
	}
	return nil
}

func intRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return herald.Invalid(field, "must be between %d and %d, got %d", lo, hi, v)
	}
	return nil
}

// duration parses a positive Go duration string.
func duration(field, v, example string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, herald.Invalid(field, "must be a positive Go duration like %q, got %q", example, v)
	}
	return d, nil
}

// checkURL accepts an absolute http or https URL with a host and no
// credentials. A host that is an address literal of a loopback, private or
// otherwise internal network is refused unless private networks are allowed
// (the dispatcher checks again the address it actually dials).
func (s *Server) checkURL(raw string) error {
	const field = "url"
	if raw == "" {
		return herald.Invalid(field, "required: an absolute http or https URL")
	}
	if len(raw) > maxURLLen {
		return herald.Invalid(field, "at most %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return herald.Invalid(field, "not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" {
		return herald.Invalid(field, "must be an absolute http or https URL, got %q", raw)
	}
	if u.Hostname() == "" {
		return herald.Invalid(field, "must have a host")
	}
	if u.User != nil {
		return herald.Invalid(field, "must not carry credentials (user:password@); set an Authorization header in headers instead")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return herald.Invalid(field, "port %q is not between 1 and 65535", p)
		}
	}
	if s.allowPrivate {
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if addr, err := netip.ParseAddr(host); err == nil && blockedAddr(addr) || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return herald.Invalid(field, "host %q is a loopback, private or otherwise internal address; Herald refuses to deliver there unless it runs with --allow-private-networks", u.Hostname())
	}
	return nil
}

func checkPatterns(events []string) error {
	if len(events) == 0 {
		return herald.Invalid("events", "must not be empty")
	}
	if len(events) > maxPatterns {
		return herald.Invalid("events", "at most %d patterns, got %d", maxPatterns, len(events))
	}
	for i, p := range events {
		if !herald.ValidPattern(p) {
			return herald.Invalid(fmt.Sprintf("events[%d]", i),
				`%q is not an event type or pattern: use an exact type, "*", or a prefix ending in ".*" or "-*"`, p)
		}
	}
	return nil
}

// dedupe returns list without repeats, in first-seen order.
func dedupe(list []string) []string {
	out := make([]string, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, v := range list {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func (s *Server) checkSecret(scheme, secret string) error {
	if len(secret) > maxSecretLen {
		return herald.Invalid("signing_secret", "at most %d characters", maxSecretLen)
	}
	if err := s.validSecret(scheme, secret); err != nil {
		return herald.Invalid("signing_secret", "not a valid secret for signature_scheme %q: %v", scheme, err)
	}
	return nil
}

// parseEncryptionKey decodes an AES-256 key given as standard base64; ""
// means no encryption.
func parseEncryptionKey(v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(key) != 32 {
		return nil, herald.Invalid("encryption_key", "must be standard base64 (with padding) of exactly 32 bytes")
	}
	return key, nil
}

// reservedHeaders are set by Herald on every delivery; a subscription may
// not override them. Names are lower case.
var reservedHeaders = map[string]bool{
	"content-type": true, "content-length": true, "content-encoding": true, "transfer-encoding": true,
	"connection": true, "keep-alive": true, "proxy-connection": true, "proxy-authorization": true,
	"te": true, "trailer": true, "upgrade": true, "expect": true, "host": true,
	"user-agent": true, "x-trace-id": true, "x-hub-signature": true, "x-hub-signature-256": true,
}

// checkHeaders accepts custom delivery headers with valid names and values
// that do not override what Herald sends itself.
func (s *Server) checkHeaders(h map[string]string) error {
	if len(h) > maxHeaders {
		return herald.Invalid("headers", "at most %d headers, got %d", maxHeaders, len(h))
	}
	prefix := strings.ToLower(s.headerPrefix) + "-"
	seen := make(map[string]string, len(h))
	for name, value := range h {
		field := "headers." + name
		if name == "" || len(name) > maxHeaderNameLen || !validHeaderName(name) {
			return herald.Invalid(field, "not a valid header name")
		}
		lower := strings.ToLower(name)
		if reservedHeaders[lower] || strings.HasPrefix(lower, "webhook-") || strings.HasPrefix(lower, prefix) {
			return herald.Invalid(field, "is set by Herald and cannot be overridden")
		}
		if other, ok := seen[lower]; ok {
			return herald.Invalid(field, "repeats header %q (names are case-insensitive)", other)
		}
		seen[lower] = name
		if len(value) > maxHeaderValLen || !validHeaderValue(value) {
			return herald.Invalid(field, "not a valid header value (control characters, or longer than %d bytes)", maxHeaderValLen)
		}
	}
	return nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return textproto.CanonicalMIMEHeaderKey(name) != ""
}

// validHeaderValue reports whether v has no control characters but
// horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// blockedAddr reports whether addr is loopback, private, link-local,
// unspecified, multicast, CGNAT, reserved or otherwise not a public unicast
// address, IPv4 inside IPv6 included. The dialer's guard is the real
// protection; this catches address literals early with a clear message.
func blockedAddr(addr netip.Addr) bool {
	return netguard.Blocked(addr)
}

// Signature schemes of CONTRACT.md §5.2, for the default helpers.
var knownSchemes = []string{"standard", "sha256-base64", "sha512-hex", "github"}

func defaultValidScheme(s string) bool {
	for _, k := range knownSchemes {
		if s == k {
			return true
		}
	}
	return false
}

func defaultGenerateSecret(scheme string) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	if scheme == "standard" {
		return "whsec_" + base64.StdEncoding.EncodeToString(b), nil
	}
	return hex.EncodeToString(b), nil
}

func defaultValidSecret(scheme, secret string) error {
	if scheme == "standard" {
		raw, ok := strings.CutPrefix(secret, "whsec_")
		if !ok {
			return errors.New(`a standard secret is "whsec_" followed by base64`)
		}
		key, err := base64.StdEncoding.DecodeString(raw)
		if err != nil || len(key) < 24 || len(key) > 64 {
			return errors.New(`a standard secret is "whsec_" followed by base64 of 24 to 64 bytes`)
		}
		return nil
	}
	if len(secret) < 16 {
		return errors.New("at least 16 characters")
	}
	for i := 0; i < len(secret); i++ {
		if secret[i] < 0x21 || secret[i] > 0x7e {
			return errors.New("printable ASCII without spaces only")
		}
	}
	return nil
}

package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultMaxBody is the largest body Handler reads when HandlerConfig.MaxBody
// is 0: Herald's largest event (1 MiB) with its envelope, base64-encoded when
// encrypted, fits with room to spare. Raise it for large batches.
const DefaultMaxBody = 2 << 20

// Envelope is the body of a single event (CONTRACT.md §5.1). Data is absent
// when the subscription sets include_payload to false.
type Envelope struct {
	ID         string          `json:"id"`
	CreateTime string          `json:"create_time"`
	EventType  string          `json:"event_type"`
	Version    string          `json:"version"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// Batch is the body of a batch: its send time and its events, each in the
// subscription's payload format.
type Batch struct {
	Timestamp string            `json:"timestamp"`
	Data      []json.RawMessage `json:"data"`
}

// Message is a verified, decrypted webhook as Handler hands it over.
type Message struct {
	// ID is the message id to dedupe by: webhook-id (standard scheme), else
	// the id of a single event; "" for a batch under another scheme, whose
	// events each carry their own id.
	ID    string
	Body  []byte // the plaintext body
	Batch bool   // the body was a batch
	// Events holds the single event, or each event of the batch, as JSON.
	Events []json.RawMessage
}

// Envelope decodes event i as an Envelope (payload_format "envelope"). A
// "flat" event decodes too, with its fields other than id and event_type
// left out.
func (m *Message) Envelope(i int) (Envelope, error) {
	var e Envelope
	if i < 0 || i >= len(m.Events) {
		return e, fmt.Errorf("webhook: no event %d in a message of %d", i, len(m.Events))
	}
	if err := json.Unmarshal(m.Events[i], &e); err != nil {
		return e, fmt.Errorf("webhook: event %d: %w", i, err)
	}
	return e, nil
}

// Envelopes decodes every event as an Envelope.
func (m *Message) Envelopes() ([]Envelope, error) {
	out := make([]Envelope, len(m.Events))
	for i := range m.Events {
		e, err := m.Envelope(i)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// HandlerConfig configures Handler. Scheme, HeaderPrefix, Secrets and
// EncryptionKey must match the subscription.
type HandlerConfig struct {
	Scheme        string        // "" means SchemeStandard
	HeaderPrefix  string        // "" means DefaultHeaderPrefix
	Secrets       []string      // at least one; list the old and the new one during a rotation
	EncryptionKey []byte        // 32 bytes (see DecodeKey), or nil when bodies are not encrypted
	Tolerance     time.Duration // standard only; 0 means DefaultTolerance
	MaxBody       int64         // largest body read; 0 means DefaultMaxBody
	Now           func() time.Time
}

// Handler returns middleware for a webhook endpoint. It answers 405 to
// anything but POST, 413 to a body over MaxBody, 401 when no signature
// verifies, and 400 when the body does not decrypt or is not a JSON object;
// otherwise it calls next with the message, and next writes the response: a
// 2xx tells Herald the delivery succeeded, anything else makes it retry.
// The signature is checked on the raw body as received (the ciphertext when
// encrypted), before anything else looks at it.
//
// Handler panics when cfg.Scheme is unknown, cfg.Secrets is empty or
// cfg.EncryptionKey is neither nil nor 32 bytes: a handler so configured
// would refuse every delivery.
func Handler(cfg HandlerConfig, next func(w http.ResponseWriter, r *http.Request, m *Message)) http.Handler {
	if cfg.Scheme == "" {
		cfg.Scheme = SchemeStandard
	}
	switch {
	case !ValidScheme(cfg.Scheme):
		panic(fmt.Sprintf("webhook.Handler: unknown scheme %q", cfg.Scheme))
	case len(cfg.Secrets) == 0:
		panic("webhook.Handler: no secret")
	case cfg.EncryptionKey != nil && len(cfg.EncryptionKey) != KeySize:
		panic(fmt.Sprintf("webhook.Handler: encryption key of %d bytes, want %d", len(cfg.EncryptionKey), KeySize))
	}
	if cfg.HeaderPrefix == "" {
		cfg.HeaderPrefix = DefaultHeaderPrefix
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cfg.MaxBody))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		err = Verify(VerifyParams{Scheme: cfg.Scheme, HeaderPrefix: cfg.HeaderPrefix, Secrets: cfg.Secrets,
			Header: r.Header, Body: raw, Now: cfg.Now(), Tolerance: cfg.Tolerance})
		if err != nil {
			// The reason helps whoever debugs the endpoint and tells an
			// attacker nothing a valid signature would not.
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		m, err := Parse(r.Header, raw, cfg.EncryptionKey, cfg.HeaderPrefix)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		next(w, r, m)
	})
}

// Parse decrypts body (when key is not nil, with the IV from h) and splits it
// into events: a batch when it is {"timestamp": ..., "data": [...]} without
// an id, a single event otherwise. It does not verify the signature: call
// Verify first, on the same raw body. Errors wrap ErrDecrypt when the body
// does not decrypt.
func Parse(h http.Header, body, key []byte, headerPrefix string) (*Message, error) {
	if headerPrefix == "" {
		headerPrefix = DefaultHeaderPrefix
	}
	plain := body
	if key != nil {
		var err error
		if plain, err = Decrypt(key, body, h.Get(EncryptionIVHeader(headerPrefix))); err != nil {
			return nil, err
		}
	}
	// Fields as raw JSON: a flat event may carry a "timestamp" or "data" of
	// any type, and must not fail to parse because of it.
	var probe map[string]json.RawMessage
	trimmed := bytes.TrimSpace(plain)
	if !bytes.HasPrefix(trimmed, []byte("{")) || json.Unmarshal(trimmed, &probe) != nil {
		return nil, errors.New("webhook: body is not a JSON object")
	}
	var id string
	if raw, ok := probe["id"]; ok {
		_ = json.Unmarshal(raw, &id) // a non-string id is no message id
	}
	m := &Message{ID: h.Get(HeaderWebhookID), Body: plain}
	_, hasTimestamp := probe["timestamp"]
	data := bytes.TrimSpace(probe["data"])
	if hasTimestamp && id == "" && bytes.HasPrefix(data, []byte("[")) {
		var b Batch
		if err := json.Unmarshal(trimmed, &b); err != nil {
			return nil, fmt.Errorf("webhook: batch body: %w", err)
		}
		m.Batch, m.Events = true, b.Data
		return m, nil
	}
	m.Events = []json.RawMessage{json.RawMessage(trimmed)}
	if m.ID == "" {
		m.ID = id
	}
	return m, nil
}

package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Signature schemes (CONTRACT.md §5.2).
const (
	SchemeStandard     = "standard"      // Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature
	SchemeSHA256Base64 = "sha256-base64" // <prefix>-Signature: v1=<base64 HMAC-SHA256(secret, body)>
	SchemeSHA512Hex    = "sha512-hex"    // <prefix>-Signature: <hex HMAC-SHA512(secret, body)>
	SchemeGitHub       = "github"        // X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>
)

// DefaultHeaderPrefix is the prefix of Herald's own headers.
const DefaultHeaderPrefix = "X-Herald"

// DefaultTolerance is how far a standard webhook's timestamp may be from now,
// either way, before Verify rejects it as a possible replay.
const DefaultTolerance = 5 * time.Minute

// Header names fixed by a scheme rather than by the header prefix.
const (
	HeaderWebhookID        = "webhook-id"          // standard: the message id
	HeaderWebhookTimestamp = "webhook-timestamp"   // standard: unix seconds
	HeaderWebhookSignature = "webhook-signature"   // standard: "v1,<base64>" values, space-separated
	HeaderGitHubSignature  = "X-Hub-Signature-256" // github: "sha256=<hex>" values, comma-separated
)

// The canonical forms (textproto.CanonicalMIMEHeaderKey) of the standard
// scheme's headers, which Sign sets in its http.Header directly.
const (
	canonicalWebhookID        = "Webhook-Id"
	canonicalWebhookTimestamp = "Webhook-Timestamp"
	canonicalWebhookSignature = "Webhook-Signature"
)

// strictBase64 decodes standard base64 strictly (no unused trailing bits).
// Strict returns a copy of the encoding on the heap, so it is made once
// here rather than at every signature; it is never changed.
var strictBase64 = base64.StdEncoding.Strict()

// Errors returned by Sign, Verify, GenerateSecret, ValidSecret and Decrypt;
// match them with errors.Is.
var (
	// ErrNoSignature: the request carries no signature (or, for the standard
	// scheme, lacks webhook-id or webhook-timestamp).
	ErrNoSignature = errors.New("webhook: signature headers missing")
	// ErrBadSignature: signatures are present but none matches any secret.
	ErrBadSignature = errors.New("webhook: no signature matches")
	// ErrTimestamp: the standard scheme's timestamp does not parse or is
	// further from now than the tolerance.
	ErrTimestamp = errors.New("webhook: timestamp invalid or outside the tolerance")
	// ErrDecrypt: the body or its IV is malformed, or the body does not
	// authenticate under the key.
	ErrDecrypt = errors.New("webhook: body does not decrypt")
	// ErrScheme: the scheme is not one of the Scheme constants.
	ErrScheme = errors.New("webhook: unknown signature scheme")
)

const standardSecretPrefix = "whsec_"

// Limits of a signing secret (see ValidSecret).
const (
	MinStandardKeyBytes = 24   // shortest decoded key of a standard secret
	MaxStandardKeyBytes = 64   // longest decoded key of a standard secret
	MaxSecretBytes      = 1024 // longest secret of the other schemes
)

// ValidScheme reports whether s names a signature scheme.
func ValidScheme(s string) bool {
	switch s {
	case SchemeStandard, SchemeSHA256Base64, SchemeSHA512Hex, SchemeGitHub:
		return true
	}
	return false
}

// GenerateSecret returns a new random secret in the form of scheme:
// "whsec_" + standard base64 of 32 random bytes for standard, 32 random
// bytes as 64 hex characters for the others.
func GenerateSecret(scheme string) (string, error) {
	if !ValidScheme(scheme) {
		return "", fmt.Errorf("generate secret: %w", ErrScheme)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	if scheme == SchemeStandard {
		return standardSecretPrefix + base64.StdEncoding.EncodeToString(b), nil
	}
	return hex.EncodeToString(b), nil
}

// ValidSecret reports why secret cannot sign for scheme, or nil. A standard
// secret is "whsec_" followed by standard base64 of 24 to 64 bytes; the
// others take 1 to 1024 bytes of text without control characters.
func ValidSecret(scheme, secret string) error {
	if !ValidScheme(scheme) {
		return ErrScheme
	}
	if scheme == SchemeStandard {
		_, err := standardKey(secret)
		return err
	}
	if len(secret) == 0 || len(secret) > MaxSecretBytes {
		return fmt.Errorf("must be 1 to %d bytes", MaxSecretBytes)
	}
	for _, r := range secret {
		if unicode.IsControl(r) {
			return errors.New("must not contain control characters")
		}
	}
	return nil
}

// standardKey decodes a standard secret into its HMAC key.
func standardKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, standardSecretPrefix)
	if !ok {
		return nil, errors.New(`must start with "whsec_"`)
	}
	// Only the canonical spelling of a key: the decoder would also accept
	// line breaks, and unused trailing bits unless strict, making other
	// strings the same key. (Strict, padded, without line breaks is exactly
	// what EncodeToString writes; checking that is cheaper than encoding
	// again, and every signature decodes its secret.)
	key, err := strictBase64.DecodeString(enc)
	if err != nil || strings.ContainsAny(enc, "\r\n") {
		return nil, errors.New(`must be "whsec_" followed by standard base64`)
	}
	if len(key) < MinStandardKeyBytes || len(key) > MaxStandardKeyBytes {
		return nil, fmt.Errorf("key must be %d to %d bytes, got %d", MinStandardKeyBytes, MaxStandardKeyBytes, len(key))
	}
	return key, nil
}

// SignatureHeader is the signature header of the sha256-base64 and sha512-hex
// schemes: prefix + "-Signature".
func SignatureHeader(prefix string) string { return prefix + "-Signature" }

// EncryptionIVHeader is the header carrying the base64 IV of an encrypted
// body: prefix + "-Encryption-IV".
func EncryptionIVHeader(prefix string) string { return prefix + "-Encryption-IV" }

// SourceHeader is the header carrying "webhook" on every delivery:
// prefix + "-Source".
func SourceHeader(prefix string) string { return prefix + "-Source" }

// SignParams is what Sign signs.
type SignParams struct {
	Scheme       string
	HeaderPrefix string    // "" means DefaultHeaderPrefix
	Secrets      []string  // every active secret; each gives one signature
	MsgID        string    // standard only, required there: the message id
	Timestamp    time.Time // standard only: the send time; zero means time.Now()
	Body         []byte    // exactly the bytes sent (the ciphertext when encrypted)
}

// Sign returns the signature headers of p.Scheme (CONTRACT.md §5.2), to add
// to the request. With several secrets it sends every signature, separated by
// a space (standard) or a comma (the others), so a receiver holding either
// the old or the new secret verifies during a rotation.
func Sign(p SignParams) (http.Header, error) {
	if !ValidScheme(p.Scheme) {
		return nil, fmt.Errorf("sign: %w", ErrScheme)
	}
	if len(p.Secrets) == 0 {
		return nil, errors.New("sign: no secret to sign with")
	}
	prefix := p.HeaderPrefix
	if prefix == "" {
		prefix = DefaultHeaderPrefix
	}
	h := make(http.Header, 3)
	sigs := make([]string, 0, len(p.Secrets))
	if p.Scheme == SchemeStandard {
		if p.MsgID == "" {
			return nil, errors.New("sign: the standard scheme needs a message id")
		}
		ts := p.Timestamp
		if ts.IsZero() {
			ts = time.Now()
		}
		unix := strconv.FormatInt(ts.Unix(), 10)
		for i, s := range p.Secrets {
			key, err := standardKey(s)
			if err != nil {
				// Never quote the secret itself.
				return nil, fmt.Errorf("sign: secret %d: %w", i, err)
			}
			sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(standardMAC(key, p.MsgID, unix, p.Body)))
		}
		h[canonicalWebhookID] = []string{p.MsgID}
		h[canonicalWebhookTimestamp] = []string{unix}
		h[canonicalWebhookSignature] = []string{strings.Join(sigs, " ")}
		return h, nil
	}
	for i, s := range p.Secrets {
		if s == "" {
			return nil, fmt.Errorf("sign: secret %d is empty", i)
		}
		sigs = append(sigs, expected(p.Scheme, s, p.Body))
	}
	h.Set(listHeader(p.Scheme, prefix), strings.Join(sigs, ","))
	return h, nil
}

// listHeader is the header of the comma-separated schemes.
func listHeader(scheme, prefix string) string {
	if scheme == SchemeGitHub {
		return HeaderGitHubSignature
	}
	return SignatureHeader(prefix)
}

// expected is the one header value that secret gives body under a
// comma-separated scheme.
func expected(scheme, secret string, body []byte) string {
	switch scheme {
	case SchemeSHA256Base64:
		return "v1=" + base64.StdEncoding.EncodeToString(mac(sha256.New, secret, body))
	case SchemeSHA512Hex:
		return hex.EncodeToString(mac(sha512.New, secret, body))
	default: // SchemeGitHub
		return "sha256=" + hex.EncodeToString(mac(sha256.New, secret, body))
	}
}

func mac(newHash func() hash.Hash, secret string, body []byte) []byte {
	m := hmac.New(newHash, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// standardMAC is HMAC-SHA256(key, id + "." + timestamp + "." + body).
func standardMAC(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	head := make([]byte, 0, len(id)+len(ts)+2)
	head = append(append(append(append(head, id...), '.'), ts...), '.')
	m.Write(head)
	m.Write(body)
	return m.Sum(nil)
}

// VerifyParams is what Verify checks.
type VerifyParams struct {
	Scheme       string
	HeaderPrefix string        // "" means DefaultHeaderPrefix
	Secrets      []string      // any may match: list the old and the new one during a rotation
	Header       http.Header   // the request's headers
	Body         []byte        // the raw body as received (the ciphertext when encrypted)
	Now          time.Time     // standard only; zero means time.Now()
	Tolerance    time.Duration // standard only; 0 means DefaultTolerance
}

// Verify checks the signature headers of a received webhook: it returns nil
// when any signature in the headers matches any secret, and otherwise
// ErrNoSignature, ErrBadSignature, ErrTimestamp (standard only: the
// timestamp is further than the tolerance from now) or ErrScheme. It
// compares in constant time. Call it on the raw body before decrypting or
// parsing it.
func Verify(p VerifyParams) error {
	prefix := p.HeaderPrefix
	if prefix == "" {
		prefix = DefaultHeaderPrefix
	}
	switch p.Scheme {
	case SchemeStandard:
		return verifyStandard(p)
	case SchemeSHA256Base64, SchemeSHA512Hex, SchemeGitHub:
		return verifyList(p, listHeader(p.Scheme, prefix))
	}
	return ErrScheme
}

// verifyList checks the comma-separated schemes. Several header lines count
// as one comma-separated list, as HTTP allows.
func verifyList(p VerifyParams, name string) error {
	header := strings.Join(p.Header.Values(name), ",")
	if p.Scheme != SchemeSHA256Base64 {
		// Hex is case-insensitive; base64 is not.
		header = strings.ToLower(header)
	}
	var got [][]byte
	for v := range strings.SplitSeq(header, ",") {
		if v = strings.TrimSpace(v); v != "" {
			got = append(got, []byte(v))
		}
	}
	if len(got) == 0 {
		return ErrNoSignature
	}
	for _, s := range p.Secrets {
		want := []byte(expected(p.Scheme, s, p.Body))
		for _, g := range got {
			if hmac.Equal(g, want) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

func verifyStandard(p VerifyParams) error {
	id := p.Header.Get(HeaderWebhookID)
	ts := p.Header.Get(HeaderWebhookTimestamp)
	sigs := strings.Fields(strings.Join(p.Header.Values(HeaderWebhookSignature), " "))
	if id == "" || ts == "" || len(sigs) == 0 {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	tol := p.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	// Compared as times, not as a difference, so that absurd timestamps
	// cannot overflow a Duration.
	sent := time.Unix(sec, 0)
	if sent.Before(now.Add(-tol)) || sent.After(now.Add(tol)) {
		return ErrTimestamp
	}
	for _, s := range p.Secrets {
		key, err := standardKey(s)
		if err != nil {
			continue
		}
		// The encoded text is compared, as the Standard Webhooks reference
		// libraries do: decoding first would also accept non-canonical
		// base64 whose unused trailing bits differ.
		want := []byte(base64.StdEncoding.EncodeToString(standardMAC(key, id, ts, p.Body)))
		for _, part := range sigs {
			version, sig, ok := strings.Cut(part, ",")
			if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

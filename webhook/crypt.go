package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of an encryption key in bytes: AES-256.
const KeySize = 32

// IVSize is the size of an IV in bytes: the standard GCM nonce.
const IVSize = 12

// DecodeKey decodes a subscription's encryption_key: standard base64 of
// exactly 32 bytes.
func DecodeKey(b64 string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, errors.New("encryption key is not standard base64")
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("encryption key must be %d bytes, got %d", KeySize, len(k))
	}
	return k, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("encryption key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}

// Encrypt seals plaintext with AES-256-GCM under key with a fresh random
// 12-byte IV and no additional data (CONTRACT.md §5.3). It returns the body
// to send, standard base64 (padded) of the ciphertext followed by the 16-byte
// tag, and the IV in standard base64 for the <prefix>-Encryption-IV header.
func Encrypt(key, plaintext []byte) (body []byte, ivB64 string, err error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, "", fmt.Errorf("encrypt: %w", err)
	}
	// A fresh random IV per message: GCM with a repeated (key, IV) pair
	// leaks the XOR of the plaintexts and the authentication key.
	iv := make([]byte, IVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, "", fmt.Errorf("encrypt: %w", err)
	}
	sealed := gcm.Seal(nil, iv, plaintext, nil)
	body = make([]byte, base64.StdEncoding.EncodedLen(len(sealed)))
	base64.StdEncoding.Encode(body, sealed)
	return body, base64.StdEncoding.EncodeToString(iv), nil
}

// Decrypt reverses Encrypt: body is the base64 text received, ivB64 the
// value of the <prefix>-Encryption-IV header. Every failure to decrypt
// wraps ErrDecrypt; a key of the wrong size is a plain error.
func Decrypt(key, body []byte, ivB64 string) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	ivB64 = strings.TrimSpace(ivB64)
	if ivB64 == "" {
		return nil, fmt.Errorf("%w: no IV header", ErrDecrypt)
	}
	iv, err := base64.StdEncoding.DecodeString(ivB64)
	if err != nil || len(iv) != IVSize {
		return nil, fmt.Errorf("%w: IV is not base64 of %d bytes", ErrDecrypt, IVSize)
	}
	text := []byte(strings.TrimSpace(string(body)))
	sealed := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(sealed, text)
	if err != nil {
		return nil, fmt.Errorf("%w: body is not standard base64", ErrDecrypt)
	}
	if n < gcm.Overhead() {
		return nil, fmt.Errorf("%w: body is shorter than the tag", ErrDecrypt)
	}
	out, err := gcm.Open(nil, iv, sealed[:n], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: wrong key, or the body or IV was changed", ErrDecrypt)
	}
	return out, nil
}

package herald

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MasterKeySize is the size in bytes of the master key.
const MasterKeySize = 32

// ErrSealBroken means a sealed value does not open under the master key and
// its additional data: a wrong key, or a value copied from another row.
var ErrSealBroken = errors.New("sealed value does not open")

// Sealer seals signing secrets and encryption keys at rest with AES-256-GCM
// under the master key. The additional data binds a sealed value to its row
// (tenant and subscription ids), so a value copied to another row does not open.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a 32-byte master key.
func NewSealer(masterKey []byte) (*Sealer, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("master key: want %d bytes, got %d", MasterKeySize, len(masterKey))
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns nonce || ciphertext || tag of plaintext, bound to ad.
func (s *Sealer) Seal(plaintext, ad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, ad)
}

// Open reverses Seal. It returns ErrSealBroken when the value does not open.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrSealBroken
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrSealBroken
	}
	return out, nil
}

// SealAD returns the additional data that binds a subscription's sealed
// secrets to it: tenant id and subscription id.
func SealAD(tenantID, subscriptionID string) []byte {
	return []byte(tenantID + "\x00" + subscriptionID)
}

// sealedSecret is how a Secret is written inside the sealed JSON.
type sealedSecret struct {
	Value     string `json:"value"`
	ExpiresAt int64  `json:"expires_at,omitempty"` // unix microseconds; 0: never
}

// SealSubscription seals sub's signing secrets (as JSON) and its encryption
// key (nil when it has none), each bound to sub's tenant and id. Stores keep
// only these; no secret is readable in the database.
func (s *Sealer) SealSubscription(sub *Subscription) (secrets, encKey []byte, err error) {
	var secs []sealedSecret
	if sub.Secrets != nil {
		secs = make([]sealedSecret, len(sub.Secrets))
		for i, sec := range sub.Secrets {
			secs[i].Value = sec.Value
			if !sec.ExpiresAt.IsZero() {
				secs[i].ExpiresAt = sec.ExpiresAt.UnixMicro()
			}
		}
	}
	plain, err := json.Marshal(secs)
	if err != nil {
		return nil, nil, fmt.Errorf("seal subscription %s: %w", sub.ID, err)
	}
	ad := SealAD(sub.TenantID, sub.ID)
	secrets = s.Seal(plain, ad)
	clear(plain)
	if len(sub.EncryptionKey) > 0 {
		encKey = s.Seal(sub.EncryptionKey, ad)
	}
	return secrets, encKey, nil
}

// OpenSubscription opens what SealSubscription sealed into sub.Secrets and
// sub.EncryptionKey; sub.TenantID and sub.ID must be set. A value sealed for
// another row fails with ErrSealBroken.
func (s *Sealer) OpenSubscription(sub *Subscription, secrets, encKey []byte) error {
	ad := SealAD(sub.TenantID, sub.ID)
	plain, err := s.Open(secrets, ad)
	if err != nil {
		return fmt.Errorf("subscription %s secrets: %w", sub.ID, err)
	}
	var secs []sealedSecret
	err = json.Unmarshal(plain, &secs)
	clear(plain)
	if err != nil {
		return fmt.Errorf("subscription %s secrets: %w", sub.ID, err)
	}
	sub.Secrets = nil
	if secs != nil {
		sub.Secrets = make([]Secret, len(secs))
		for i, sec := range secs {
			sub.Secrets[i].Value = sec.Value
			if sec.ExpiresAt != 0 {
				sub.Secrets[i].ExpiresAt = time.UnixMicro(sec.ExpiresAt).UTC()
			}
		}
	}
	sub.EncryptionKey = nil
	if encKey != nil {
		key, err := s.Open(encKey, ad)
		if err != nil {
			return fmt.Errorf("subscription %s encryption key: %w", sub.ID, err)
		}
		sub.EncryptionKey = key
	}
	return nil
}

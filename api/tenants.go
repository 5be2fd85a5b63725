package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
)

// API keys are keyPrefix and base64url of keyBytes random bytes; the first
// keyShown characters are kept visible to recognise a key by.
const (
	keyPrefix = "hk_"
	keyBytes  = 32
	keyShown  = 10
)

type tenantOut struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
}

func renderTenant(t herald.Tenant) tenantOut {
	return tenantOut{ID: t.ID, Name: t.Name, CreatedAt: fmtTime(t.CreatedAt)}
}

func (s *Server) tenantCreate(w http.ResponseWriter, r *http.Request, _ *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		ID   *string `json:"id"`
		Name *string `json:"name"`
	}
	if err := decodeJSON(body, &in, ""); err != nil {
		return err
	}
	if in.ID == nil {
		return herald.Invalid("id", "required")
	}
	if !herald.ValidTenantID(*in.ID) {
		return herald.Invalid("id", "must match ^[a-z0-9][a-z0-9_-]{0,62}$, got %q", *in.ID)
	}
	t := herald.Tenant{ID: *in.ID, Name: *in.ID, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	if in.Name != nil {
		if n := utf8.RuneCountInString(*in.Name); n > maxNameLen {
			return herald.Invalid("name", "at most %d characters, got %d", maxNameLen, n)
		}
		t.Name = *in.Name
	}
	if err := s.store.TenantCreate(r.Context(), t); err != nil {
		if errors.Is(err, herald.ErrConflict) {
			return conflict(fmt.Sprintf("id: tenant %q exists", t.ID))
		}
		return fmt.Errorf("create tenant: %w", err)
	}
	w.Header().Set("Location", "/tenants/"+t.ID)
	writeJSON(w, http.StatusCreated, renderTenant(t))
	return nil
}

func (s *Server) tenantList(w http.ResponseWriter, r *http.Request, _ *call) error {
	p, err := pageParam(r.URL.Query())
	if err != nil {
		return err
	}
	ts, next, err := s.store.TenantList(r.Context(), p)
	if err != nil {
		return fmt.Errorf("list tenants: %w", cursorError(err, p))
	}
	writeJSON(w, http.StatusOK, list(ts, next, renderTenant))
	return nil
}

type keyOut struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Prefix    string `json:"prefix"`
	TenantID  string `json:"tenant_id"`
	CreatedAt string `json:"created_at"`
}

func (s *Server) keyCreate(w http.ResponseWriter, r *http.Request, _ *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	if err := decodeOptional(body, &struct{}{}); err != nil {
		return err
	}
	tenant := r.PathValue("id")
	if _, err := s.store.TenantGet(r.Context(), tenant); err != nil {
		return notFound(err, "tenant", tenant)
	}
	b := make([]byte, keyBytes)
	_, _ = rand.Read(b)
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(key))
	k := herald.APIKey{
		ID:        herald.NewID(herald.PrefixKey),
		TenantID:  tenant,
		Prefix:    key[:keyShown],
		Hash:      sum[:],
		CreatedAt: s.now().UTC().Truncate(time.Microsecond),
	}
	if err := s.store.APIKeyCreate(r.Context(), k); err != nil {
		return notFound(err, "tenant", tenant)
	}
	writeSecret(w, http.StatusCreated, keyOut{ID: k.ID, Key: key, Prefix: k.Prefix, TenantID: tenant, CreatedAt: fmtTime(k.CreatedAt)})
	return nil
}

func (s *Server) keyRevoke(w http.ResponseWriter, r *http.Request, _ *call) error {
	tenant, id := r.PathValue("id"), r.PathValue("key_id")
	if err := s.store.APIKeyRevoke(r.Context(), tenant, id, s.now()); err != nil {
		return notFound(err, "API key", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

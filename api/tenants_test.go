package api_test

import (
	"context"
	"crypto/sha256"
	"sort"
	"strings"
	"testing"

	"github.com/heraldhq/herald"
)

func TestTenantsAndKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	got := e.must(201, adminKey, "POST", "/tenants", map[string]any{"id": "acme", "name": "Acme"}).obj(t)
	if got["id"] != "acme" || got["name"] != "Acme" || got["created_at"] != "2025-03-01T12:00:00.000000Z" {
		t.Errorf("create tenant: %v", got)
	}
	r := e.do(adminKey, "POST", "/tenants", map[string]any{"id": "acme"})
	if code, _ := r.apiErr(t); r.Code != 409 || code != "conflict" {
		t.Errorf("duplicate tenant: %d %s", r.Code, code)
	}
	for _, body := range []any{map[string]any{"id": "Acme"}, map[string]any{"id": "-x"}, map[string]any{}, map[string]any{"id": "ok", "name": strings.Repeat("n", 256)}, map[string]any{"id": "ok", "x": 1}} {
		if r := e.do(adminKey, "POST", "/tenants", body); r.Code != 400 {
			t.Errorf("tenant %v: %d, want 400", body, r.Code)
		}
	}
	var list struct{ Data []struct{ ID string } }
	e.must(200, adminKey, "GET", "/tenants", nil).decode(t, &list)
	var ids []string
	for _, d := range list.Data {
		ids = append(ids, d.ID)
	}
	if strings.Join(ids, ",") != "acme,default" {
		t.Errorf("tenants %v", ids)
	}

	k := e.must(201, adminKey, "POST", "/tenants/acme/keys", nil).obj(t)
	key, _ := k["key"].(string)
	if !strings.HasPrefix(key, "hk_") || len(key) != 3+43 || k["prefix"] != key[:10] || !strings.HasPrefix(k["id"].(string), "key_") {
		t.Errorf("new key %v", k)
	}
	stored, err := e.store.APIKeyByHash(context.Background(), func() []byte { s := sha256.Sum256([]byte(key)); return s[:] }())
	if err != nil || stored.TenantID != "acme" {
		t.Errorf("stored key %+v, %v", stored, err)
	}
	e.must(404, adminKey, "POST", "/tenants/nope/keys", nil)

	// The key works, for its own tenant only.
	sub := e.webhook(key, nil)
	e.must(200, key, "GET", "/webhooks/"+sub, nil)
	e.must(404, adminKey, "GET", "/webhooks/"+sub, nil)
	if _, err := e.store.SubscriptionGet(context.Background(), "acme", sub); err != nil {
		t.Errorf("subscription not stored under acme: %v", err)
	}

	// A tenant's key may not manage tenants or keys.
	for _, rq := range []struct{ method, path string }{
		{"POST", "/tenants"}, {"GET", "/tenants"}, {"POST", "/tenants/acme/keys"},
		{"DELETE", "/tenants/acme/keys/" + k["id"].(string)},
	} {
		r := e.do(key, rq.method, rq.path, map[string]any{"id": "evil"})
		if code, _ := r.apiErr(t); r.Code != 403 || code != "forbidden" {
			t.Errorf("tenant key %s %s: %d %s, want 403", rq.method, rq.path, r.Code, code)
		}
	}
	if _, err := e.store.TenantGet(context.Background(), "evil"); err == nil {
		t.Error("a tenant key created a tenant")
	}

	// Revoking works at once.
	e.must(204, adminKey, "DELETE", "/tenants/acme/keys/"+k["id"].(string), nil)
	if r := e.do(key, "GET", "/webhooks", nil); r.Code != 401 {
		t.Errorf("revoked key: %d, want 401", r.Code)
	}
	e.must(404, adminKey, "DELETE", "/tenants/acme/keys/"+k["id"].(string), nil)
	e.must(404, adminKey, "DELETE", "/tenants/default/keys/key_nope", nil)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic " + adminKey, "Bearer wrong", "Bearer " + adminKey + "x", "Bearer " + strings.Repeat("k", 2000)} {
		r := e.send(req{method: "GET", path: "/webhooks", header: map[string]string{"Authorization": h}})
		if code, msg := r.apiErr(t); r.Code != 401 || code != "unauthorized" || strings.Contains(msg, adminKey) {
			t.Errorf("Authorization %q: %d %s %q, want 401 unauthorized", h, r.Code, code, msg)
		}
	}
	e.must(200, adminKey, "GET", "/webhooks", nil)
	r := e.send(req{method: "GET", path: "/webhooks", header: map[string]string{"Authorization": "bearer " + adminKey}})
	if r.Code != 200 {
		t.Errorf("lower-case bearer: %d", r.Code)
	}
	// Authentication comes before anything else about the request.
	r = e.send(req{method: "POST", path: "/events", body: "x", header: map[string]string{"Content-Type": "text/plain"}})
	if r.Code != 401 {
		t.Errorf("unauthenticated bad request: %d, want 401", r.Code)
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
}

func TestPublicRoutesAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		r := e.do("", "GET", p, nil)
		if r.Code != 200 {
			t.Errorf("GET %s: %d", p, r.Code)
		}
	}
	if r := e.do("", "GET", "/metrics", nil); r.Code != 404 {
		t.Errorf("GET /metrics without a handler: %d, want 404", r.Code)
	}
	r := e.do(adminKey, "GET", "/nope", nil)
	if code, _ := r.apiErr(t); r.Code != 404 || code != "not_found" {
		t.Errorf("unknown path: %d %s", r.Code, code)
	}
	r = e.do(adminKey, "PUT", "/webhooks", nil)
	if code, _ := r.apiErr(t); r.Code != 405 || code != "method_not_allowed" || allow(r) != "GET,POST" {
		t.Errorf("PUT /webhooks: %d %s Allow %v", r.Code, code, r.Header.Values("Allow"))
	}
	r = e.do(adminKey, "PUT", "/webhooks/sub_x", nil)
	if r.Code != 405 || allow(r) != "DELETE,GET,PATCH" {
		t.Errorf("PUT /webhooks/{id}: %d Allow %v", r.Code, r.Header.Values("Allow"))
	}
}

func TestReadyzWhenStoreIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do("", "GET", "/readyz", nil)
	if code, _ := r.apiErr(t); r.Code != 503 || code != "unavailable" || r.Header.Get("Retry-After") == "" {
		t.Errorf("readyz with a closed store: %d %s Retry-After %q", r.Code, code, r.Header.Get("Retry-After"))
	}
	e.must(200, "", "GET", "/healthz", nil)
	// A store failure on an API route is a 5xx that says nothing of the cause.
	r = e.do(adminKey, "GET", "/webhooks", nil)
	if r.Code < 500 || strings.Contains(string(r.Body), "sql") || strings.Contains(string(r.Body), "closed") {
		t.Errorf("GET /webhooks with a closed store: %d %s", r.Code, r.Body)
	}
	if _, msg := r.apiErr(t); !strings.Contains(msg, r.Header.Get("X-Request-Id")) {
		t.Errorf("5xx message %q does not carry the request id", msg)
	}
	_ = herald.ErrUnavailable
}

// allow returns the sorted methods of a 405's Allow header.
func allow(r *response) string {
	m := r.Header.Values("Allow")
	sort.Strings(m)
	return strings.Join(m, ",")
}

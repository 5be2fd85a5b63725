package api_test

import (
	"context"
	"crypto/sha256"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/api"
)

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// TestTenantIsolationSweep walks the route table itself: every route that
// takes a key is called with another tenant's key (and with the admin key,
// which belongs to tenant "default") on tenant beta's ids. Tenant routes
// must answer 404 for beta's ids and never show them in a list; admin routes
// must answer 403 to a tenant's key; and nothing of beta may change. A route
// added to the table without scoping its store calls fails here.
func TestTenantIsolationSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alphaKey, betaKey := e.tenant("alpha"), e.tenant("beta")
	ctx := context.Background()

	// Both tenants have a subscription, an event, a failed delivery.
	e.webhook(alphaKey, nil)
	e.must(202, alphaKey, "POST", "/events", map[string]any{"id": "alpha-evt", "event_type": "a.b"})
	sB := e.webhook(betaKey, nil)
	e.must(202, betaKey, "POST", "/events", map[string]any{"id": "beta-evt", "event_type": "a.b"})
	dB := e.snapshot("beta").Deliveries[0].ID
	e.attempt(dB, 500, herald.DeliveryFailed)
	var k struct{ ID string }
	e.must(201, adminKey, "POST", "/tenants/beta/keys", nil).decode(t, &k)
	kB := k.ID

	// Path values naming beta's objects, by the route's first segment.
	values := map[string]map[string]string{
		"webhooks":   {"id": sB},
		"events":     {"id": "beta-evt"},
		"deliveries": {"id": dB},
		"tenants":    {"id": "beta", "key_id": kB},
	}
	// Bodies that would succeed, so a route that is not scoped acts.
	bodies := map[string]any{
		"POST /webhooks":     map[string]any{"url": "https://example.com/x", "events": []string{"*"}},
		"POST /events":       map[string]any{"event_type": "a.b"},
		"POST /events/batch": map[string]any{"events": []any{map[string]any{"event_type": "a.b"}}},
		"POST /tenants":      map[string]any{"id": "gamma"},
	}
	betaIDs := []string{sB, "beta-evt", dB, kB}
	before := e.snapshot("beta")
	betaHash := sha256.Sum256([]byte(betaKey))

	actors := []struct {
		name, key string
		admin     bool
	}{{"alpha's key", alphaKey, false}, {"admin key", adminKey, true}}
	checked := 0
	for _, rt := range e.srv.Routes() {
		if rt.Access == api.Public {
			continue
		}
		seg, _, _ := strings.Cut(strings.TrimPrefix(rt.Pattern, "/"), "/")
		path := pathParam.ReplaceAllStringFunc(rt.Pattern, func(m string) string {
			name := m[1 : len(m)-1]
			v, ok := values[seg][name]
			if !ok {
				t.Fatalf("%s %s: no beta value for {%s}; add one to this test", rt.Method, rt.Pattern, name)
			}
			return v
		})
		hasIDs := path != rt.Pattern
		body := bodies[rt.Method+" "+rt.Pattern]
		if body == nil && (rt.Method == "POST" || rt.Method == "PATCH") {
			body = map[string]any{}
		}

		// Beta itself reaches the object: the path names something real.
		if hasIDs && rt.Method == "GET" && rt.Access == api.Tenant {
			e.must(200, betaKey, rt.Method, path, nil)
		}
		for _, a := range actors {
			if a.admin && rt.Access == api.Admin {
				continue // the admin manages every tenant's keys by design
			}
			r := e.do(a.key, rt.Method, path, body)
			switch {
			case rt.Access == api.Admin:
				if r.Code != 403 {
					t.Errorf("%s %s with %s: %d, want 403: %s", rt.Method, path, a.name, r.Code, r.Body)
				}
			case hasIDs:
				if r.Code != 404 {
					t.Errorf("%s %s with %s on beta's ids: %d, want 404: %s", rt.Method, path, a.name, r.Code, r.Body)
				}
			default:
				if r.Code >= 500 {
					t.Errorf("%s %s with %s: %d: %s", rt.Method, path, a.name, r.Code, r.Body)
				}
				for _, id := range betaIDs {
					if strings.Contains(string(r.Body), id) {
						t.Errorf("%s %s with %s shows beta's %s: %s", rt.Method, path, a.name, id, r.Body)
					}
				}
			}
			if diff := cmp.Diff(before, e.snapshot("beta")); diff != "" {
				t.Fatalf("%s %s with %s changed beta's data (-before +after):\n%s", rt.Method, path, a.name, diff)
			}
			if _, err := e.store.APIKeyByHash(ctx, betaHash[:]); err != nil {
				t.Fatalf("%s %s with %s: beta's key no longer works: %v", rt.Method, path, a.name, err)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("only %d route calls checked; is the route table empty?", checked)
	}
}

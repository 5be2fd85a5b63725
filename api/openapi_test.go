package api

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/heraldhq/herald"
)

// nilStore is a herald.Store that is never called.
type nilStore struct{ herald.Store }

// TestOpenAPIMatchesRoutes checks the served document against the route
// table and the mux both ways: every route is documented with its method,
// path parameters and security, every documented operation is served by the
// mux under the same pattern, and every $ref resolves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Store: nilStore{}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/openapi.json", nil))
	if w.Code != 200 {
		t.Fatalf("GET /openapi.json: %d", w.Code)
	}
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}

	served := map[string]Route{}
	for _, rt := range s.Routes() {
		served[rt.Method+" "+rt.Pattern] = rt
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			key := strings.ToUpper(method) + " " + path
			documented[key] = true
			rt, ok := served[key]
			if !ok {
				t.Errorf("documented %s is not in the route table", key)
				continue
			}
			// The mux serves the documented path under that very pattern.
			probe := pathParamRE.ReplaceAllString(path, "x")
			if _, pattern := s.mux.Handler(httptest.NewRequest(strings.ToUpper(method), probe, nil)); pattern != key {
				t.Errorf("documented %s: the mux serves %s %s with pattern %q", key, strings.ToUpper(method), probe, pattern)
			}
			var op struct {
				Security   []any `json:"security"`
				Parameters []struct {
					Name, In string
				} `json:"parameters"`
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			var inPath []string
			for _, p := range op.Parameters {
				if p.In == "path" {
					inPath = append(inPath, p.Name)
				}
			}
			var want []string
			for _, m := range pathParamRE.FindAllStringSubmatch(path, -1) {
				want = append(want, m[1])
			}
			if !slices.Equal(inPath, want) {
				t.Errorf("%s: path parameters %v, want %v", key, inPath, want)
			}
			if public := op.Security != nil && len(op.Security) == 0; public != (rt.Access == Public) {
				t.Errorf("%s: documented as public=%v, route access %s", key, public, rt.Access)
			}
			if len(op.Responses) == 0 {
				t.Errorf("%s: no responses", key)
			}
		}
	}
	for key := range served {
		if !documented[key] {
			t.Errorf("route %s is not in the OpenAPI document", key)
		}
	}

	// Every reference resolves.
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" {
					refs = append(refs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var all any
	json.Unmarshal(w.Body.Bytes(), &all)
	walk(all)
	sort.Strings(refs)
	for _, ref := range slices.Compact(refs) {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if _, found := doc.Components.Schemas[name]; !ok || !found {
			t.Errorf("$ref %q does not resolve", ref)
		}
	}
}

// TestRouteTableIsSound checks what the document and the mux rely on: unique
// routes, a handler and success status for each, and query parameters that
// are documented.
func TestRouteTableIsSound(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	ids := map[string]bool{}
	for _, rt := range routeTable() {
		key := rt.Method + " " + rt.Pattern
		if seen[key] || ids[rt.op.id] {
			t.Errorf("%s: route or operationId %q repeated", key, rt.op.id)
		}
		seen[key], ids[rt.op.id] = true, true
		if rt.handle == nil || rt.op.status == 0 || rt.op.id == "" || rt.op.tag == "" || rt.Summary == "" {
			t.Errorf("%s: incomplete route %+v", key, rt)
		}
		for _, q := range rt.op.query {
			if _, ok := queryParams[q]; !ok {
				t.Errorf("%s: query parameter %q is not documented", key, q)
			}
		}
	}
}

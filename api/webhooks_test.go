package api_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/api"
)

var key32 = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func TestCreateWebhookDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := e.must(201, adminKey, "POST", "/webhooks", map[string]any{
		"url": "https://example.com/hook", "events": []string{"job.*"},
	}).obj(t)
	secret, _ := created["signing_secret"].(string)
	if raw, ok := strings.CutPrefix(secret, "whsec_"); !ok || len(raw) != 44 {
		t.Errorf("generated signing_secret %q, want whsec_ and base64 of 32 bytes", secret)
	}
	id := created["id"].(string)
	if !strings.HasPrefix(id, "sub_") {
		t.Errorf("id %q, want sub_…", id)
	}
	got := e.must(200, adminKey, "GET", "/webhooks/"+id, nil).obj(t)
	want := map[string]any{
		"id": id, "url": "https://example.com/hook", "name": "", "events": []any{"job.*"},
		"signature_scheme": "standard", "encryption": false, "include_payload": true,
		"payload_format": "envelope", "mode": "live", "ordered": false, "headers": map[string]any{},
		"delivery": map[string]any{"max_rps": 300.0, "max_in_flight": 16.0, "timeout": "10s", "batch_max_events": 1.0,
			"retry": map[string]any{"max_attempts": 3.0, "window": "1h0m0s", "base": "5s", "cap": "30m0s"}},
		"status": "active", "created_at": "2025-03-01T12:00:00.000000Z", "updated_at": "2025-03-01T12:00:00.000000Z",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /webhooks/{id} (-want +got):\n%s", diff)
	}
	delete(created, "signing_secret")
	if diff := cmp.Diff(got, created); diff != "" {
		t.Errorf("create answer differs from GET beyond the secret (-get +create):\n%s", diff)
	}
	sub, err := e.store.SubscriptionGet(context.Background(), herald.DefaultTenant, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Secrets) != 1 || sub.Secrets[0].Value != secret {
		t.Errorf("stored secrets %v, want the one shown", sub.Secrets)
	}
}

func TestCreateWebhookEveryField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := map[string]any{
		"url": "https://customer.example/webhook-endpoint", "name": "payroll sync",
		"events":         []string{"user-payroll-submitted", "job.*", "user-*", "job.*"},
		"signing_secret": "0123456789abcdef0123", "signature_scheme": "github",
		"encryption_key": key32, "include_payload": false, "payload_format": "flat", "mode": "test", "ordered": true,
		"headers": map[string]string{"X-Customer-Tag": "abc", "Authorization": "Basic eDp5"},
		"delivery": map[string]any{"max_rps": 5, "max_in_flight": 2, "timeout": "2500ms", "batch_max_events": 50,
			"retry": map[string]any{"max_attempts": 0, "window": "24h", "base": "1s", "cap": "10m"}},
		"status": "paused",
	}
	got := e.must(201, adminKey, "POST", "/webhooks", body).obj(t)
	for k, want := range map[string]any{
		"signing_secret": "0123456789abcdef0123", "signature_scheme": "github", "encryption": true,
		"include_payload": false, "payload_format": "flat", "mode": "test", "ordered": true, "status": "paused",
		"name": "payroll sync",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if diff := cmp.Diff([]any{"user-payroll-submitted", "job.*", "user-*"}, got["events"]); diff != "" {
		t.Errorf("events, repeats dropped (-want +got):\n%s", diff)
	}
	wantDelivery := map[string]any{"max_rps": 5.0, "max_in_flight": 2.0, "timeout": "2.5s", "batch_max_events": 50.0,
		"retry": map[string]any{"max_attempts": 0.0, "window": "24h0m0s", "base": "1s", "cap": "10m0s"}}
	if diff := cmp.Diff(wantDelivery, got["delivery"]); diff != "" {
		t.Errorf("delivery (-want +got):\n%s", diff)
	}
	if _, ok := got["encryption_key"]; ok {
		t.Error("the answer shows the encryption key")
	}
	sub, err := e.store.SubscriptionGet(context.Background(), herald.DefaultTenant, got["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if string(sub.EncryptionKey) != "0123456789abcdef0123456789abcdef" {
		t.Errorf("stored encryption key %q", sub.EncryptionKey)
	}
	if diff := cmp.Diff(map[string]string{"X-Customer-Tag": "abc", "Authorization": "Basic eDp5"}, sub.Headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

// invalidWebhookFields are bodies (merged over a valid one) that must be
// refused, with the field the message must name.
var invalidWebhookFields = []struct {
	name  string
	patch map[string]any
	field string
}{
	{"empty url", map[string]any{"url": ""}, "url"},
	{"relative url", map[string]any{"url": "/x"}, "url"},
	{"ftp url", map[string]any{"url": "ftp://example.com/x"}, "url"},
	{"no host", map[string]any{"url": "https:///x"}, "url"},
	{"credentials", map[string]any{"url": "https://u:p@example.com/x"}, "url"},
	{"bad port", map[string]any{"url": "https://example.com:99999/x"}, "url"},
	{"loopback", map[string]any{"url": "http://127.0.0.1:8080/x"}, "url"},
	{"loopback v6", map[string]any{"url": "http://[::1]/x"}, "url"},
	{"v4 in v6", map[string]any{"url": "http://[::ffff:10.0.0.1]/x"}, "url"},
	{"private", map[string]any{"url": "http://192.168.1.10/x"}, "url"},
	{"metadata", map[string]any{"url": "http://169.254.169.254/latest"}, "url"},
	{"cgnat", map[string]any{"url": "http://100.64.0.1/x"}, "url"},
	{"unspecified", map[string]any{"url": "http://0.0.0.0/x"}, "url"},
	{"localhost", map[string]any{"url": "http://localhost:9000/x"}, "url"},
	{"url not a string", map[string]any{"url": 42}, "url"},
	{"long name", map[string]any{"name": strings.Repeat("n", 256)}, "name"},
	{"empty events", map[string]any{"events": []string{}}, "events"},
	{"bad pattern", map[string]any{"events": []string{"job.*", "a*b"}}, "events[1]"},
	{"events not a list", map[string]any{"events": "job.*"}, "events"},
	{"bad secret", map[string]any{"signing_secret": "short"}, "signing_secret"},
	{"bad scheme", map[string]any{"signature_scheme": "md5"}, "signature_scheme"},
	{"short key", map[string]any{"encryption_key": "c2hvcnQ="}, "encryption_key"},
	{"key not base64", map[string]any{"encryption_key": "!!!"}, "encryption_key"},
	{"include_payload string", map[string]any{"include_payload": "yes"}, "include_payload"},
	{"bad format", map[string]any{"payload_format": "xml"}, "payload_format"},
	{"bad mode", map[string]any{"mode": "prod"}, "mode"},
	{"ordered number", map[string]any{"ordered": 1}, "ordered"},
	{"reserved header", map[string]any{"headers": map[string]string{"Content-Type": "text/plain"}}, "headers.Content-Type"},
	{"webhook header", map[string]any{"headers": map[string]string{"webhook-id": "x"}}, "headers.webhook-id"},
	{"herald header", map[string]any{"headers": map[string]string{"X-Herald-Signature": "x"}}, "headers.X-Herald-Signature"},
	{"trace header", map[string]any{"headers": map[string]string{"x-trace-id": "x"}}, "headers.x-trace-id"},
	{"header name", map[string]any{"headers": map[string]string{"Bad Name": "x"}}, "headers.Bad Name"},
	{"header value", map[string]any{"headers": map[string]string{"X-A": "a\r\nX-B: b"}}, "headers.X-A"},
	{"header value type", map[string]any{"headers": map[string]any{"X-A": 1}}, "headers"},
	{"rps 0", map[string]any{"delivery": map[string]any{"max_rps": 0}}, "delivery.max_rps"},
	{"rps big", map[string]any{"delivery": map[string]any{"max_rps": 100001}}, "delivery.max_rps"},
	{"rps fraction", map[string]any{"delivery": map[string]any{"max_rps": 1.5}}, "delivery.max_rps"},
	{"in flight 0", map[string]any{"delivery": map[string]any{"max_in_flight": 0}}, "delivery.max_in_flight"},
	{"in flight big", map[string]any{"delivery": map[string]any{"max_in_flight": 1001}}, "delivery.max_in_flight"},
	{"timeout word", map[string]any{"delivery": map[string]any{"timeout": "ten"}}, "delivery.timeout"},
	{"timeout number", map[string]any{"delivery": map[string]any{"timeout": 10}}, "delivery.timeout"},
	{"timeout short", map[string]any{"delivery": map[string]any{"timeout": "500ms"}}, "delivery.timeout"},
	{"timeout long", map[string]any{"delivery": map[string]any{"timeout": "61s"}}, "delivery.timeout"},
	{"batch 0", map[string]any{"delivery": map[string]any{"batch_max_events": 0}}, "delivery.batch_max_events"},
	{"batch big", map[string]any{"delivery": map[string]any{"batch_max_events": 1001}}, "delivery.batch_max_events"},
	{"attempts negative", map[string]any{"delivery": map[string]any{"retry": map[string]any{"max_attempts": -1}}}, "delivery.retry.max_attempts"},
	{"attempts big", map[string]any{"delivery": map[string]any{"retry": map[string]any{"max_attempts": 1001}}}, "delivery.retry.max_attempts"},
	{"window zero", map[string]any{"delivery": map[string]any{"retry": map[string]any{"window": "0s"}}}, "delivery.retry.window"},
	{"base negative", map[string]any{"delivery": map[string]any{"retry": map[string]any{"base": "-1s"}}}, "delivery.retry.base"},
	{"cap below base", map[string]any{"delivery": map[string]any{"retry": map[string]any{"cap": "1s"}}}, "delivery.retry.cap"},
	{"base above cap", map[string]any{"delivery": map[string]any{"retry": map[string]any{"base": "10m", "cap": "1m"}}}, "delivery.retry.base"},
	{"delivery not an object", map[string]any{"delivery": "fast"}, "delivery"},
	{"unknown delivery field", map[string]any{"delivery": map[string]any{"colour": "red"}}, "colour"},
	{"bad status", map[string]any{"status": "gone"}, "status"},
	{"unknown field", map[string]any{"colour": "red"}, "colour"},
}

func merged(base, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		out[k] = v
	}
	return out
}

func TestCreateWebhookRejectsEveryInvalidField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := map[string]any{"url": "https://example.com/hook", "events": []string{"*"}}
	cases := append(invalidWebhookFields[:len(invalidWebhookFields):len(invalidWebhookFields)],
		struct {
			name  string
			patch map[string]any
			field string
		}{"no url", map[string]any{"url": nil}, "url"},
		struct {
			name  string
			patch map[string]any
			field string
		}{"no events", map[string]any{"events": nil}, "events"},
	)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := merged(base, tt.patch)
			for k, v := range body {
				if v == nil {
					delete(body, k)
				}
			}
			r := e.do(adminKey, "POST", "/webhooks", body)
			if r.Code != 400 {
				t.Fatalf("status %d, want 400: %s", r.Code, r.Body)
			}
			code, msg := r.apiErr(t)
			if code != "invalid_request" || !strings.HasPrefix(msg, tt.field) {
				t.Errorf("error %s %q, want invalid_request naming %q first", code, msg, tt.field)
			}
		})
	}
	t.Cleanup(func() {
		if subs := e.snapshot(herald.DefaultTenant).Subs; len(subs) != 0 {
			t.Errorf("rejected creates stored %d subscriptions", len(subs))
		}
	})
}

func TestPatchWebhookRejectsEveryInvalidFieldAndKeepsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.webhook(adminKey, map[string]any{"name": "keep", "signing_secret": "whsec_" + key32})
	before := e.snapshot(herald.DefaultTenant)
	for _, tt := range invalidWebhookFields {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.do(adminKey, "PATCH", "/webhooks/"+id, tt.patch)
			if r.Code != 400 {
				t.Fatalf("status %d, want 400: %s", r.Code, r.Body)
			}
			if _, msg := r.apiErr(t); !strings.HasPrefix(msg, tt.field) {
				t.Errorf("message %q does not name %q first", msg, tt.field)
			}
		})
	}
	t.Cleanup(func() {
		if diff := cmp.Diff(before, e.snapshot(herald.DefaultTenant)); diff != "" {
			t.Errorf("rejected patches changed the store (-before +after):\n%s", diff)
		}
	})
}

func TestPatchWebhookMergesFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.webhook(adminKey, map[string]any{
		"name": "one", "encryption_key": key32, "headers": map[string]string{"X-A": "1"},
		"delivery": map[string]any{"max_rps": 7, "retry": map[string]any{"max_attempts": 9, "base": "2s"}},
	})
	e.clock.Advance(time.Minute)
	got := e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{
		"name":     "two",
		"url":      nil, // null counts as absent
		"delivery": map[string]any{"retry": map[string]any{"cap": "1m"}},
	}).obj(t)
	if got["name"] != "two" || got["url"] != "https://example.com/hook" || got["encryption"] != true {
		t.Errorf("patch answer: %v", got)
	}
	wantDelivery := map[string]any{"max_rps": 7.0, "max_in_flight": 16.0, "timeout": "10s", "batch_max_events": 1.0,
		"retry": map[string]any{"max_attempts": 9.0, "window": "1h0m0s", "base": "2s", "cap": "1m0s"}}
	if diff := cmp.Diff(wantDelivery, got["delivery"]); diff != "" {
		t.Errorf("delivery after patch (-want +got):\n%s", diff)
	}
	if got["updated_at"] != "2025-03-01T12:01:00.000000Z" || got["created_at"] != "2025-03-01T12:00:00.000000Z" {
		t.Errorf("times after patch: created %v updated %v", got["created_at"], got["updated_at"])
	}
	if _, ok := got["signing_secret"]; ok {
		t.Error("PATCH shows the signing secret")
	}

	// "" removes encryption; headers are replaced as a whole.
	got = e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{"encryption_key": "", "headers": map[string]string{}}).obj(t)
	if got["encryption"] != false || len(got["headers"].(map[string]any)) != 0 {
		t.Errorf("after removing key and headers: %v", got)
	}

	// Disabling by hand shows a reason; activating clears it.
	got = e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{"status": "disabled"}).obj(t)
	if got["status"] != "disabled" || got["disabled_reason"] == nil {
		t.Errorf("disabled: %v", got)
	}
	got = e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{"status": "active"}).obj(t)
	if _, ok := got["disabled_reason"]; ok || got["status"] != "active" {
		t.Errorf("re-activated: %v", got)
	}
}

func TestPatchSchemeNeedsASuitableSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.webhook(adminKey, nil) // a generated whsec_ secret
	// A whsec_ secret is a fine secret for github too.
	e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{"signature_scheme": "github"})
	id = e.webhook(adminKey, map[string]any{"signature_scheme": "github", "signing_secret": "0123456789abcdef0123"})
	r := e.do(adminKey, "PATCH", "/webhooks/"+id, map[string]any{"signature_scheme": "standard"})
	if _, msg := r.apiErr(t); r.Code != 400 || !strings.HasPrefix(msg, "signing_secret") {
		t.Fatalf("a hex secret kept for scheme standard: %d %s", r.Code, r.Body)
	}
	e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{"signature_scheme": "standard", "signing_secret": "whsec_" + key32})
}

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := "whsec_" + key32
	id := e.webhook(adminKey, map[string]any{"signing_secret": first})
	stored := func() []herald.Secret {
		sub, err := e.store.SubscriptionGet(context.Background(), herald.DefaultTenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return sub.Secrets
	}

	got := e.must(200, adminKey, "POST", "/webhooks/"+id+"/rotate-secret", nil).obj(t)
	second, _ := got["signing_secret"].(string)
	if !strings.HasPrefix(second, "whsec_") || second == first {
		t.Fatalf("rotated secret %q", second)
	}
	now := e.clock.Now()
	want := []herald.Secret{{Value: second}, {Value: first, ExpiresAt: now.Add(24 * time.Hour)}}
	if diff := cmp.Diff(want, stored()); diff != "" {
		t.Errorf("secrets after rotation (-want +got):\n%s", diff)
	}

	third := "whsec_" + base64.StdEncoding.EncodeToString([]byte("abcdefghijklmnopqrstuvwxyz012345"))
	e.clock.Advance(time.Hour)
	got = e.must(200, adminKey, "POST", "/webhooks/"+id+"/rotate-secret", map[string]any{"signing_secret": third, "grace": "1h"}).obj(t)
	if got["signing_secret"] != third {
		t.Errorf("rotate answered %v, want the given secret", got["signing_secret"])
	}
	now = e.clock.Now()
	want = []herald.Secret{{Value: third}, {Value: second, ExpiresAt: now.Add(time.Hour)}, {Value: first, ExpiresAt: now.Add(time.Hour)}}
	if diff := cmp.Diff(want, stored()); diff != "" {
		t.Errorf("secrets after second rotation (-want +got):\n%s", diff)
	}

	// Expired secrets are dropped; a grace of 0 drops the old ones at once.
	e.clock.Advance(2 * time.Hour)
	got = e.must(200, adminKey, "POST", "/webhooks/"+id+"/rotate-secret", map[string]any{"grace": "0s"}).obj(t)
	if diff := cmp.Diff([]herald.Secret{{Value: got["signing_secret"].(string)}}, stored()); diff != "" {
		t.Errorf("secrets after grace 0 (-want +got):\n%s", diff)
	}

	for _, body := range []map[string]any{{"grace": "forever"}, {"grace": "-1h"}, {"signing_secret": "nope"}, {"colour": 1}} {
		r := e.do(adminKey, "POST", "/webhooks/"+id+"/rotate-secret", body)
		if r.Code != 400 {
			t.Errorf("rotate %v: status %d, want 400", body, r.Code)
		}
	}
}

func TestTestEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	live := e.webhook(adminKey, map[string]any{"events": []string{"other.type"}})
	test := e.webhook(adminKey, map[string]any{"mode": "test"})
	for _, id := range []string{live, test} {
		r := e.must(200, adminKey, "POST", "/webhooks/"+id+"/test", nil).obj(t)
		dlv, _ := r["delivery_id"].(string)
		d := e.must(200, adminKey, "GET", "/deliveries/"+dlv, nil).obj(t)
		if d["webhook_id"] != id || d["status"] != "pending" {
			t.Errorf("test delivery %v", d)
		}
		ev := e.must(200, adminKey, "GET", "/events/"+d["event_id"].(string), nil).obj(t)
		if ev["event_type"] != "webhook.test" || ev["test"] != (id == test) || ev["delivery_count"] != 1.0 {
			t.Errorf("test event %v", ev)
		}
		if data, _ := ev["data"].(map[string]any); data["webhook_id"] != id {
			t.Errorf("test event data %v", ev["data"])
		}
	}
	// Only the one subscription gets it.
	if n := len(e.snapshot(herald.DefaultTenant).Deliveries); n != 2 {
		t.Errorf("%d deliveries, want 2", n)
	}
}

func TestReplayAndDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.webhook(adminKey, nil)
	ev := e.must(202, adminKey, "POST", "/events", map[string]any{"event_type": "a.b"}).obj(t)
	dls := e.snapshot(herald.DefaultTenant).Deliveries
	if len(dls) != 1 {
		t.Fatalf("deliveries: %v", dls)
	}
	e.attempt(dls[0].ID, 500, herald.DeliveryFailed)
	if got := e.must(200, adminKey, "POST", "/webhooks/"+id+"/replay", map[string]any{"status": "succeeded"}).obj(t); got["requeued"] != 0.0 {
		t.Errorf("replay of succeeded: %v", got)
	}
	if got := e.must(200, adminKey, "POST", "/webhooks/"+id+"/replay", nil).obj(t); got["requeued"] != 1.0 {
		t.Errorf("replay: %v", got)
	}
	d := e.must(200, adminKey, "GET", "/deliveries/"+dls[0].ID, nil).obj(t)
	if d["status"] != "pending" || d["attempt_count"] != 0.0 {
		t.Errorf("replayed delivery: %v", d)
	}
	for _, body := range []map[string]any{{"status": "pending"}, {"since": "yesterday"}, {"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}} {
		if r := e.do(adminKey, "POST", "/webhooks/"+id+"/replay", body); r.Code != 400 {
			t.Errorf("replay %v: status %d, want 400", body, r.Code)
		}
	}

	e.must(204, adminKey, "DELETE", "/webhooks/"+id, nil)
	e.must(404, adminKey, "GET", "/webhooks/"+id, nil)
	e.must(404, adminKey, "DELETE", "/webhooks/"+id, nil)
	d = e.must(200, adminKey, "GET", "/deliveries/"+dls[0].ID, nil).obj(t)
	if d["status"] != "cancelled" {
		t.Errorf("delivery of a deleted subscription: %v", d["status"])
	}
	if ev["deliveries"] != 1.0 {
		t.Errorf("publish: %v", ev)
	}
}

func TestWebhookListPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var want []string
	for range 7 {
		want = append(want, e.webhook(adminKey, nil))
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		var page struct {
			Data       []struct{ ID string }
			NextCursor *string `json:"next_cursor"`
		}
		e.must(200, adminKey, "GET", "/webhooks?limit=3&cursor="+cursor, nil).decode(t, &page)
		pages++
		for _, s := range page.Data {
			got = append(got, s.ID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged ids, oldest first (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages of 3 for 7, want 3", pages)
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=x"} {
		r := e.do(adminKey, "GET", "/webhooks?"+q, nil)
		if _, msg := r.apiErr(t); r.Code != 400 || !strings.HasPrefix(msg, "limit") {
			t.Errorf("?%s: %d %q", q, r.Code, msg)
		}
	}
	var big struct{ Data []any }
	e.must(200, adminKey, "GET", "/webhooks?limit=100000", nil).decode(t, &big)
	if len(big.Data) != 7 {
		t.Errorf("limit above 500 is clamped, got %d items", len(big.Data))
	}
}

func TestPrivateNetworksAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.AllowPrivateNetworks = true })
	for _, u := range []string{"http://127.0.0.1:9000/hook", "http://[::1]/x", "http://localhost/x", "http://10.1.2.3/x"} {
		e.must(201, adminKey, "POST", "/webhooks", map[string]any{"url": u, "events": []string{"*"}})
	}
}

// interloper is a store where another writer (the dispatcher disabling a
// subscription, another process) changes a subscription just before the
// first n updates of the API land.
type interloper struct {
	herald.Store
	n int
}

func (s *interloper) SubscriptionUpdate(ctx context.Context, sub herald.Subscription) error {
	if s.n > 0 {
		s.n--
		cur, err := s.Store.SubscriptionGet(ctx, sub.TenantID, sub.ID)
		if err != nil {
			return err
		}
		cur.Name = "renamed by another writer"
		if err := s.Store.SubscriptionUpdate(ctx, cur); err != nil {
			return err
		}
	}
	return s.Store.SubscriptionUpdate(ctx, sub)
}

// A PATCH whose read went stale is applied again to a fresh read: both
// writers' changes stay. One that keeps losing answers 409 and changes nothing.
func TestPatchRereadsAfterConcurrentChange(t *testing.T) {
	t.Parallel()
	st := &interloper{}
	e := newEnv(t, func(c *api.Config) { st.Store = c.Store; c.Store = st })
	id := e.webhook(adminKey, map[string]any{"url": "https://example.com/hook", "events": []string{"*"}})

	st.n = 1
	got := e.must(200, adminKey, "PATCH", "/webhooks/"+id, map[string]any{"url": "https://example.com/new"}).obj(t)
	if got["url"] != "https://example.com/new" || got["name"] != "renamed by another writer" {
		t.Errorf("after a PATCH that raced: url %v name %v; want both changes", got["url"], got["name"])
	}

	st.n = 100
	r := e.do(adminKey, "PATCH", "/webhooks/"+id, map[string]any{"url": "https://example.com/newer"})
	if code, _ := r.apiErr(t); r.Code != 409 || code != "conflict" {
		t.Fatalf("PATCH that always loses: %d %s", r.Code, r.Body)
	}
	st.n = 0
	got = e.must(200, adminKey, "GET", "/webhooks/"+id, nil).obj(t)
	if got["url"] != "https://example.com/new" {
		t.Errorf("url after a refused PATCH: %v", got["url"])
	}
}

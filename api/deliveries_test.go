package api_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldhq/herald"
)

func TestDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s1 := e.webhook(adminKey, nil)
	s2 := e.webhook(adminKey, nil)
	e.must(202, adminKey, "POST", "/events", map[string]any{"id": "e1", "event_type": "a"})
	e.must(202, adminKey, "POST", "/events", map[string]any{"id": "e2", "event_type": "a"})

	list := func(q string) []map[string]any {
		var page struct{ Data []map[string]any }
		e.must(200, adminKey, "GET", "/deliveries?"+q, nil).decode(t, &page)
		return page.Data
	}
	if n := len(list("")); n != 4 {
		t.Fatalf("%d deliveries, want 4", n)
	}
	byEvent := list("event_id=e1")
	if len(byEvent) != 2 {
		t.Fatalf("deliveries of e1: %v", byEvent)
	}
	bySub := list("webhook_id=" + s2)
	if len(bySub) != 2 || bySub[0]["webhook_id"] != s2 || bySub[0]["event_id"] != "e2" {
		t.Errorf("deliveries to %s, newest first: %v", s2, bySub)
	}
	if got := list("webhook_id=" + s1 + "&event_id=e2"); len(got) != 1 {
		t.Errorf("both filters: %v", got)
	}

	// An attempt that failed for good shows with its details.
	id := byEvent[0]["id"].(string)
	e.attempt(id, 503, herald.DeliveryFailed)
	if got := list("status=failed"); len(got) != 1 || got[0]["id"] != id {
		t.Errorf("status=failed: %v", got)
	}
	d := e.must(200, adminKey, "GET", "/deliveries/"+id, nil).obj(t)
	atts, _ := d["attempts"].([]any)
	if len(atts) != 1 {
		t.Fatalf("attempts: %v", d)
	}
	a := atts[0].(map[string]any)
	want := map[string]any{"n": 1.0, "started_at": a["started_at"], "duration_ms": 1.5, "status_code": 503.0, "error": "", "response_body": `{"status":503}`}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("attempt (-want +got):\n%s", diff)
	}
	if d["status"] != "failed" || d["attempt_count"] != 1.0 || d["last_status_code"] != 503.0 || d["completed_at"] == nil {
		t.Errorf("failed delivery: %v", d)
	}
	if _, ok := d["next_attempt_at"]; ok {
		t.Errorf("a failed delivery shows next_attempt_at")
	}

	// Retry queues it again with a fresh budget.
	got := e.must(200, adminKey, "POST", "/deliveries/"+id+"/retry", nil).obj(t)
	if got["status"] != "pending" || got["attempt_count"] != 0.0 || got["next_attempt_at"] != "2025-03-01T12:00:00.000000Z" {
		t.Errorf("after retry: %v", got)
	}
	e.must(404, adminKey, "POST", "/deliveries/dlv_nope/retry", nil)
	e.must(404, adminKey, "GET", "/deliveries/dlv_nope", nil)

	for _, q := range []string{"status=done", "limit=0"} {
		r := e.do(adminKey, "GET", "/deliveries?"+q, nil)
		name, _, _ := strings.Cut(q, "=")
		if _, msg := r.apiErr(t); r.Code != 400 || !strings.HasPrefix(msg, name) {
			t.Errorf("?%s: %d %q", q, r.Code, msg)
		}
	}
}

package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// signStandard computes a Standard Webhooks signature from CONTRACT.md §5.2,
// independently of Herald's own kit.
func signStandard(t *testing.T, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestDeliversSignedEnvelope(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newReceiver(t, nil)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	sub := h.createSub(map[string]any{
		"url": rc.URL(), "events": []string{"job.*"}, "signing_secret": secret,
		"headers": map[string]string{"X-Customer-Tag": "abc"},
	})
	if sub["signing_secret"] != secret {
		t.Fatalf("create: signing_secret %v, want the one given", sub["signing_secret"])
	}
	var got map[string]any
	h.mustDo(200, "GET", "/webhooks/"+sub["id"].(string), nil, &got)
	if _, ok := got["signing_secret"]; ok {
		t.Fatal("GET /webhooks/{id} shows the signing secret")
	}

	pub := h.publish(map[string]any{
		"id": "21e42d52-4145-465e-94bd-322c13bbe5fa", "event_type": "job.status", "version": "1.0",
		"data": map[string]any{"job": map[string]any{}}, "create_time": "2022-08-23T13:54:27.612477Z",
	})
	if pub["deliveries"] != float64(1) {
		t.Fatalf("publish: %v, want 1 delivery", pub)
	}
	// An event of another type is not delivered.
	h.publish(map[string]any{"event_type": "user.created", "data": map[string]any{}})

	reqs := rc.waitFor(t, 10*time.Second, "one delivery", func(r []received) bool { return len(r) >= 1 })
	r := reqs[0]
	want := `{"id":"21e42d52-4145-465e-94bd-322c13bbe5fa","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":{"job":{}}}`
	if string(r.Body) != want {
		t.Errorf("body:\n got %s\nwant %s", r.Body, want)
	}
	checks := map[string]string{
		"Content-Type":    "application/json",
		"User-Agent":      "Herald/0.1.0",
		"X-Herald-Source": "webhook",
		"X-Customer-Tag":  "abc",
		"Webhook-Id":      "21e42d52-4145-465e-94bd-322c13bbe5fa",
	}
	for k, v := range checks {
		if got := r.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if !uuidRE.MatchString(r.Header.Get("X-Trace-Id")) {
		t.Errorf("X-Trace-Id %q is not a UUID", r.Header.Get("X-Trace-Id"))
	}
	ts := r.Header.Get("Webhook-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q is not now", ts)
	}
	if sig, want := r.Header.Get("Webhook-Signature"), signStandard(t, secret, r.Header.Get("Webhook-Id"), ts, r.Body); sig != want {
		t.Errorf("webhook-signature %q, want %q", sig, want)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.Body, r.Header); err != nil {
		t.Errorf("Standard Webhooks library rejects the delivery: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}

	// The delivery is recorded as succeeded with its attempt.
	ids := h.deliveriesOf("21e42d52-4145-465e-94bd-322c13bbe5fa")
	if len(ids) != 1 {
		t.Fatalf("deliveries of event: %v", ids)
	}
	d := h.waitStatus(ids[0], "succeeded", 5*time.Second)
	atts, _ := d["attempts"].([]any)
	if len(atts) != 1 || atts[0].(map[string]any)["status_code"] != float64(200) {
		t.Errorf("attempts: %v", d["attempts"])
	}
	var ev map[string]any
	h.mustDo(200, "GET", "/events/21e42d52-4145-465e-94bd-322c13bbe5fa", nil, &ev)
	if ev["event_type"] != "job.status" {
		t.Errorf("GET /events/{id}: %v", ev)
	}
}

func TestRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n < 2 {
			return 500
		}
		return 200
	})
	base := 300 * time.Millisecond
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"retry": map[string]any{"max_attempts": 5, "base": base.String(), "cap": "1s"}}})
	ev := h.publish(map[string]any{"event_type": "a.b", "data": map[string]any{"n": 1}})
	reqs := rc.waitFor(t, 20*time.Second, "3 attempts", func(r []received) bool { return len(r) >= 3 })
	ids := h.deliveriesOf(ev["id"].(string))
	d := h.waitStatus(ids[0], "succeeded", 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := len(rc.requests()); n != 3 {
		t.Fatalf("receiver got %d requests, want exactly 3", n)
	}
	for i := 1; i < 3; i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < base {
			t.Errorf("attempt %d came %s after the previous one, want at least %s", i+1, gap, base)
		}
		if reqs[i].Header.Get("X-Trace-Id") != reqs[0].Header.Get("X-Trace-Id") {
			t.Errorf("X-Trace-Id changed between attempts")
		}
		if reqs[i].Header.Get("Webhook-Id") != reqs[0].Header.Get("Webhook-Id") {
			t.Errorf("webhook-id changed between attempts")
		}
	}
	atts := d["attempts"].([]any)
	if len(atts) != 3 {
		t.Fatalf("recorded %d attempts, want 3", len(atts))
	}
	for i, a := range atts {
		m := a.(map[string]any)
		wantCode := float64(500)
		if i == 2 {
			wantCode = 200
		}
		if m["n"] != float64(i+1) || m["status_code"] != wantCode {
			t.Errorf("attempt %d: %v", i+1, m)
		}
	}
}

func TestFailsAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newReceiver(t, func(int, *http.Request) int { return 503 })
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"retry": map[string]any{"max_attempts": 3, "base": "100ms", "cap": "200ms"}}})
	ev := h.publish(map[string]any{"event_type": "a.b"})
	ids := h.deliveriesOf(ev["id"].(string))
	d := h.waitStatus(ids[0], "failed", 20*time.Second)
	if n := len(d["attempts"].([]any)); n != 3 {
		t.Errorf("failed after %d attempts, want 3", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(rc.requests()); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

func TestWindowEndsUnlimitedRetries(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newReceiver(t, func(int, *http.Request) int { return 500 })
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"retry": map[string]any{"max_attempts": 0, "window": "1500ms", "base": "100ms", "cap": "300ms"}}})
	ev := h.publish(map[string]any{"event_type": "a.b"})
	ids := h.deliveriesOf(ev["id"].(string))
	d := h.waitStatus(ids[0], "failed", 20*time.Second)
	atts := d["attempts"].([]any)
	if len(atts) < 3 {
		t.Fatalf("failed after %d attempts; the window should allow several", len(atts))
	}
	first, _ := time.Parse(time.RFC3339Nano, atts[0].(map[string]any)["started_at"].(string))
	last, _ := time.Parse(time.RFC3339Nano, atts[len(atts)-1].(map[string]any)["started_at"].(string))
	if span := last.Sub(first); span > 1500*time.Millisecond {
		t.Errorf("attempts span %s, beyond the 1.5s window", span)
	}
}

func TestPausedHoldsThenSends(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newReceiver(t, nil)
	sub := h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"}})
	id := sub["id"].(string)
	h.mustDo(200, "PATCH", "/webhooks/"+id, map[string]any{"status": "paused"}, nil)
	ev := h.publish(map[string]any{"event_type": "a.b"})
	if ev["deliveries"] != float64(1) {
		t.Fatalf("a paused subscription still gets deliveries created: %v", ev)
	}
	time.Sleep(700 * time.Millisecond)
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("paused subscription received %d requests", n)
	}
	h.mustDo(200, "PATCH", "/webhooks/"+id, map[string]any{"status": "active"}, nil)
	rc.waitFor(t, 10*time.Second, "the held delivery", func(r []received) bool { return len(r) == 1 })

	// Deleting cancels what is pending.
	h.mustDo(200, "PATCH", "/webhooks/"+id, map[string]any{"status": "paused"}, nil)
	ev = h.publish(map[string]any{"event_type": "a.b"})
	h.mustDo(204, "DELETE", "/webhooks/"+id, nil, nil)
	ids := h.deliveriesOf(ev["id"].(string))
	h.waitStatus(ids[0], "cancelled", 5*time.Second)
}

func TestIdempotentPublish(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newReceiver(t, nil)
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"}})
	body := map[string]any{"id": "evt-1", "event_type": "a.b", "data": map[string]any{"x": 1}}
	first := h.publish(body)
	second := h.publish(body)
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("same body twice: %v then %v", first, second)
	}
	h.mustDo(409, "POST", "/events", map[string]any{"id": "evt-1", "event_type": "a.b", "data": map[string]any{"x": 2}}, nil)
	rc.waitFor(t, 10*time.Second, "one delivery", func(r []received) bool { return len(r) >= 1 })
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
}

func TestRejectsBadInputAndStoresNothing(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "", "--max-event-bytes", "1024")
	cases := []struct {
		name  string
		body  any
		field string
	}{
		{"no url", map[string]any{"events": []string{"*"}}, "url"},
		{"relative url", map[string]any{"url": "/x", "events": []string{"*"}}, "url"},
		{"no events", map[string]any{"url": "http://127.0.0.1:1/x"}, "events"},
		{"bad pattern", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"a*b"}}, "events"},
		{"bad scheme", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}, "signature_scheme": "md5"}, "signature_scheme"},
		{"bad key", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}, "encryption_key": "c2hvcnQ="}, "encryption_key"},
		{"bad timeout", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}, "delivery": map[string]any{"timeout": "ten"}}, "timeout"},
		{"bad rps", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}, "delivery": map[string]any{"max_rps": 0}}, "max_rps"},
		{"bad base", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}, "delivery": map[string]any{"retry": map[string]any{"base": "-1s"}}}, "base"},
		{"unknown field", map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}, "colour": "red"}, "colour"},
	}
	for _, c := range cases {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if got := h.do("POST", "/webhooks", c.body, &e); got != 400 {
			t.Errorf("%s: status %d, want 400", c.name, got)
			continue
		}
		if !strings.Contains(e.Error.Message, c.field) {
			t.Errorf("%s: message %q does not name %q", c.name, e.Error.Message, c.field)
		}
	}
	var list struct{ Data []any }
	h.mustDo(200, "GET", "/webhooks", nil, &list)
	if len(list.Data) != 0 {
		t.Errorf("rejected creates stored %d subscriptions", len(list.Data))
	}

	big := map[string]any{"event_type": "a.b", "data": strings.Repeat("x", 2048)}
	if got := h.do("POST", "/events", big, nil); got != 413 {
		t.Errorf("oversized event: status %d, want 413", got)
	}
	var evs struct{ Data []any }
	h.mustDo(200, "GET", "/events", nil, &evs)
	if len(evs.Data) != 0 {
		t.Errorf("rejected publish stored %d events", len(evs.Data))
	}
	if got := h.doKey("", "GET", "/webhooks", nil, nil); got != 401 {
		t.Errorf("no key: status %d, want 401", got)
	}
	if got := h.doKey("wrong", "GET", "/webhooks", nil, nil); got != 401 {
		t.Errorf("wrong key: status %d, want 401", got)
	}
}

func TestOperationsEndpoints(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		if got := h.doKey("", "GET", p, nil, nil); got != 200 {
			t.Errorf("GET %s without key: %d, want 200", p, got)
		}
	}
	resp, err := http.Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	for _, m := range []string{"herald_events_published_total", "herald_delivery_attempts_total", "herald_delivery_latency_seconds", "herald_deliveries_pending"} {
		if !strings.Contains(buf.String(), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	var doc map[string]any
	h.mustDo(200, "GET", "/openapi.json", nil, &doc)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Errorf("openapi version %q", v)
	}
	if code := h.term(20 * time.Second); code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0", code)
	}
}

func TestAdminKeyGeneratedOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := &herald{tb: t, DataDir: dir, args: []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}}
	h.start()
	t.Cleanup(h.kill)
	m := regexp.MustCompile(`admin API key[^:]*: (hk_\S+)`).FindStringSubmatch(h.out.String())
	if m == nil {
		t.Fatalf("no generated admin key printed:\n%s", h.out.String())
	}
	if got := h.doKey(m[1], "GET", "/webhooks", nil, nil); got != 200 {
		t.Fatalf("generated key: status %d", got)
	}
	if code := h.term(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	h.start()
	if strings.Count(h.out.String(), "admin API key") != 0 {
		t.Errorf("admin key printed again on the second start")
	}
	if got := h.doKey(m[1], "GET", "/webhooks", nil, nil); got != 200 {
		t.Fatalf("generated key after restart: status %d", got)
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// rcvServeFlags returns the flags of a section's `herald serve` line.
func rcvServeFlags(tb testing.TB, docs map[string]rcvSnippet, name string) []string {
	tb.Helper()
	_, flags, ok := strings.Cut(docs[name].Code, "herald serve")
	if !ok {
		tb.Fatalf("%s: no `herald serve` line", name)
	}
	return strings.Fields(flags)
}

var rcvCurlRE = regexp.MustCompile(`(?s)-d '(.*)'\s*$`)

// rcvCurlBody returns the JSON body of a section's curl example, with its url
// replaced.
func rcvCurlBody(tb testing.TB, docs map[string]rcvSnippet, name, url string) map[string]any {
	tb.Helper()
	m := rcvCurlRE.FindStringSubmatch(docs[name].Code)
	if m == nil {
		tb.Fatalf("%s: no -d '...' body", name)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(m[1]), &body); err != nil {
		tb.Fatalf("%s: the body is not JSON: %v", name, err)
	}
	if _, ok := body["url"].(string); !ok {
		tb.Fatalf("%s: no url", name)
	}
	body["url"] = url
	return body
}

// rcvQuick makes a subscription retry within a second: the pages' retry
// counts are kept, only the waits between attempts shrink.
func rcvQuick(h *herald, sub map[string]any) {
	h.tb.Helper()
	h.mustDo(200, "PATCH", "/webhooks/"+sub["id"].(string),
		map[string]any{"delivery": map[string]any{"retry": map[string]any{"base": "50ms", "cap": "200ms"}}}, nil)
}

// rcvAttemptCodes returns the status codes of a delivery's attempts.
func rcvAttemptCodes(d map[string]any) []int {
	var codes []int
	atts, _ := d["attempts"].([]any)
	for _, a := range atts {
		f, _ := a.(map[string]any)["status_code"].(float64)
		codes = append(codes, int(f))
	}
	return codes
}

// rcvVerifyAll runs the verify snippets of a scheme on requests: each
// genuine one verifies, each with a changed body does not.
func rcvVerifyAll(t *testing.T, docs map[string]rcvSnippet, goBin, scheme, prefix, secret string, rs []received) {
	var checks []rcvCheck
	for i, r := range rs {
		c := rcvCaseOf("verify", r)
		c.Secret, c.Secrets, c.Scheme, c.Prefix = secret, []string{secret}, scheme, prefix
		if prefix != "" {
			c.Args = []any{strings.ToLower(prefix)}
		}
		checks = append(checks,
			rcvCheck{name: fmt.Sprintf("request %d", i), c: c, want: true},
			rcvCheck{name: fmt.Sprintf("request %d changed", i), c: c.withBody(rcvTamper(r.Body)), want: false})
		if prefix != "" {
			other := c
			other.Prefix, other.Args = "", nil
			checks = append(checks, rcvCheck{name: fmt.Sprintf("request %d, default prefix", i), c: other, want: false})
		}
	}
	t.Run("verify/go", func(t *testing.T) { rcvRunGo(t, goBin, checks) })
	t.Run("verify/node", func(t *testing.T) { rcvRunScript(t, docs, "node-"+scheme, checks) })
	t.Run("verify/python", func(t *testing.T) { rcvRunScript(t, docs, "python-"+scheme, checks) })
}

// rcvTestSeed000: the envelope byte for byte, retries on 5xx and 4xx until
// a 2xx, the same message on every attempt.
func rcvTestSeed000(t *testing.T, docs map[string]rcvSnippet, goBin string) {
	h := startHerald(t, "", rcvServeFlags(t, docs, "serve-seed-000")...)
	answers := []int{500, 404, 200}
	rc := newReceiver(t, func(n int, _ *http.Request) int { return answers[min(n, len(answers)-1)] })
	sub := h.createSub(rcvCurlBody(t, docs, "curl-seed-000", rc.URL()))
	retry := sub["delivery"].(map[string]any)["retry"].(map[string]any)
	if retry["max_attempts"] != 0.0 || retry["window"] != "720h0m0s" || sub["signature_scheme"] != "standard" {
		t.Errorf("subscription %v", sub)
	}
	rcvQuick(h, sub)
	const id = "21e42d52-4145-465e-94bd-322c13bbe5fa"
	h.publish(map[string]any{"id": id, "create_time": "2022-08-23T13:54:27.612477Z", "event_type": "job.status",
		"version": "1.0", "data": map[string]any{"job": map[string]any{}}})
	got := rc.waitFor(t, 15*time.Second, "3 attempts", func(r []received) bool { return len(r) >= 3 })
	const want = `{"id":"21e42d52-4145-465e-94bd-322c13bbe5fa","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":{"job":{}}}`
	for i, r := range got {
		if string(r.Body) != want {
			t.Errorf("attempt %d body %s, want the page's example %s", i+1, r.Body, want)
		}
		if r.Header.Get("Webhook-Id") != id || r.Header.Get("X-Trace-Id") != got[0].Header.Get("X-Trace-Id") {
			t.Errorf("attempt %d: webhook-id %q, X-Trace-Id %q (first %q)", i+1, r.Header.Get("Webhook-Id"),
				r.Header.Get("X-Trace-Id"), got[0].Header.Get("X-Trace-Id"))
		}
	}
	d := h.waitStatus(h.deliveriesOf(id)[0], "succeeded", 15*time.Second)
	if codes := rcvAttemptCodes(d); !slices.Equal(codes, answers) {
		t.Errorf("attempts answered %v, want %v", codes, answers)
	}
	rcvVerifyAll(t, docs, goBin, "standard", "", sub["signing_secret"].(string), got)
}

// rcvTestSeed001: X-Teal headers, HMAC-SHA512 hex over the AES-GCM body,
// the IV header, the management routes.
func rcvTestSeed001(t *testing.T, docs map[string]rcvSnippet, goBin string) {
	h := startHerald(t, "", rcvServeFlags(t, docs, "serve-seed-001")...)
	rc := newReceiver(t, nil)
	body := rcvCurlBody(t, docs, "curl-seed-001", rc.URL())
	secret, key := body["signing_secret"].(string), body["encryption_key"].(string)

	// The page's own example sends include_payload as a string: refused, as the doc says.
	bad := maps.Clone(body)
	bad["include_payload"] = "true"
	if code := h.do("POST", "/webhooks", bad, nil); code != 400 {
		t.Errorf(`"include_payload": "true" answered %d, the doc says 400`, code)
	}
	sub := h.createSub(body)
	var list struct {
		Data []map[string]any `json:"data"`
	}
	h.mustDo(200, "GET", "/webhooks", nil, &list)
	if len(list.Data) != 1 || list.Data[0]["id"] != sub["id"] || list.Data[0]["name"] != "payroll sync" {
		t.Errorf("GET /webhooks: %v", list.Data)
	}
	for _, s := range list.Data {
		if _, ok := s["signing_secret"]; ok || strings.Contains(fmt.Sprint(s), key) {
			t.Errorf("GET /webhooks shows a secret or the key: %v", s)
		}
	}

	data := map[string]any{"user_id": "u-77", "account_id": nil, "document_external_id": "doc-9",
		"document_filename": "payslip-2024-05.pdf", "gross_pay": 5234.12}
	h.publish(map[string]any{"id": "evt-payroll-1", "event_type": "user-payroll-submitted", "data": data})
	r := rcvOne(t, rc)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if r.Header.Get("X-Teal-Source") != "webhook" || len(r.Header.Get("X-Teal-Signature")) != 128 || r.Header.Get("X-Teal-Encryption-IV") == "" {
		t.Errorf("headers %v", r.Header)
	}
	if bytes.Contains(r.Body, []byte("payslip")) {
		t.Errorf("the body is not encrypted: %s", r.Body)
	}
	rcvVerifyAll(t, docs, goBin, "sha512-hex", "X-Teal", secret, []received{r})

	dc := rcvCaseOf("decrypt", r)
	dc.KeyB64, dc.Prefix, dc.Args = key, "X-Teal", []any{"x-teal"}
	checks := []rcvCheck{
		{name: "genuine", c: dc, want: rcvEnvelope("evt-payroll-1", "user-payroll-submitted", data)},
		{name: "body changed", c: dc.withBody(rcvTamper(r.Body)), want: rcvFails},
	}
	t.Run("decrypt/go", func(t *testing.T) { rcvRunGo(t, goBin, checks) })
	t.Run("decrypt/node", func(t *testing.T) { rcvRunScript(t, docs, "node-decrypt", checks) })
	t.Run("decrypt/python", func(t *testing.T) { rcvPyCrypto(t); rcvRunScript(t, docs, "python-decrypt", checks) })

	h.mustDo(204, "DELETE", "/webhooks/"+sub["id"].(string), nil, nil)
	if code := h.do("GET", "/webhooks/"+sub["id"].(string), nil, nil); code != 404 {
		t.Errorf("GET a deleted subscription: %d", code)
	}
}

var rcvUUIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// rcvTestSeed002: X-Taxbit headers, batches of flat events signed
// v1=<base64>, test subscriptions, 1 attempt + 2 retries.
func rcvTestSeed002(t *testing.T, docs map[string]rcvSnippet, goBin string) {
	h := startHerald(t, "", rcvServeFlags(t, docs, "serve-seed-002")...)
	live, test := newReceiver(t, nil), newReceiver(t, nil)
	failing := newReceiver(t, func(int, *http.Request) int { return 500 })
	liveSub := h.createSub(rcvCurlBody(t, docs, "curl-seed-002", live.URL()))
	d := liveSub["delivery"].(map[string]any)
	retry := d["retry"].(map[string]any)
	if d["max_rps"] != 300.0 || d["batch_max_events"] != 100.0 || retry["max_attempts"] != 3.0 || retry["window"] != "1h0m0s" {
		t.Errorf("delivery %v", d)
	}
	tb := rcvCurlBody(t, docs, "curl-seed-002", test.URL())
	tb["mode"] = "test"
	h.createSub(tb)
	failSub := h.createSub(rcvCurlBody(t, docs, "curl-seed-002", failing.URL()))
	rcvQuick(h, failSub)

	events := map[string]map[string]any{ // the page's event types and fields
		"tx-1": {"event_type": "RTTM_TIN_VALIDATION", "validation_id": "val-1", "status": "VALID", "validation_date": "2024-07-09T02:56:07.000Z"},
		"tx-2": {"event_type": "TAX_DOCUMENTATION_TIN_VALIDATION", "tax_documentation_id": "td-1", "account_owner_id": "ao-1", "status": "VALID", "validation_date": "2024-07-09T02:56:07.000Z"},
		"tx-3": {"event_type": "ACCOUNT_OWNER_TIN_VALIDATION", "account_owner_id": "ao-1", "status": "INVALID", "validation_date": "2024-07-09T02:56:07.000Z"},
		"tx-4": {"event_type": "INVENTORY_UPDATE", "latest_transaction_datetime": "2020-11-25T12:53:14.000Z", "account_id": "acc-1", "latest_transaction_id": "t-9"},
		"tx-5": {"event_type": "FORM_STATUS_UPDATE", "organization_id": "org-1", "account_id": "acc-1", "form_type": "1099_B", "tax_year": "2024", "status": "Generated"},
	}
	var evs []map[string]any
	for _, id := range slices.Sorted(maps.Keys(events)) {
		e := events[id]
		data := maps.Clone(e)
		delete(data, "event_type")
		evs = append(evs, map[string]any{"id": id, "event_type": e["event_type"], "data": data})
	}
	h.mustDo(202, "POST", "/events/batch", map[string]any{"events": evs}, nil)
	h.publish(map[string]any{"id": "tx-test", "event_type": "FORM_STATUS_UPDATE", "test": true, "data": map[string]any{"status": "Filed"}})

	got := live.waitFor(t, 15*time.Second, "5 events", func(r []received) bool { return len(rcvBatchIDs(t, r)) >= 5 })
	if ids := rcvBatchIDs(t, got); !slices.Equal(ids, slices.Sorted(maps.Keys(events))) {
		t.Errorf("live subscription got %v", ids)
	}
	for _, r := range got {
		var b map[string]json.RawMessage
		if err := json.Unmarshal(r.Body, &b); err != nil || len(b) != 2 || b["timestamp"] == nil || b["data"] == nil {
			t.Errorf("body %s, want {timestamp, data}", r.Body)
			continue
		}
		var ts string
		if err := json.Unmarshal(b["timestamp"], &ts); err != nil {
			t.Errorf("timestamp %s", b["timestamp"])
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("timestamp %q: %v", ts, err)
		}
		var elems []json.RawMessage
		json.Unmarshal(b["data"], &elems)
		for _, raw := range elems {
			var e map[string]any
			json.Unmarshal(raw, &e)
			id, _ := e["id"].(string)
			want := maps.Clone(events[id])
			want["id"] = id
			if !reflect.DeepEqual(e, want) || !bytes.HasPrefix(raw, []byte(`{"id":"`+id+`","event_type":`)) {
				t.Errorf("flat event %s, want %v with id and event_type first", raw, want)
			}
		}
		if !strings.HasPrefix(r.Header.Get("X-Taxbit-Signature"), "v1=") || r.Header.Get("X-Taxbit-Source") != "webhook" ||
			!rcvUUIDRE.MatchString(r.Header.Get("X-Trace-Id")) || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", r.Header)
		}
	}
	rcvVerifyAll(t, docs, goBin, "sha256-base64", "X-Taxbit", liveSub["signing_secret"].(string), got)

	// Test subscriptions get test events only, and live ones never do.
	test.waitFor(t, 15*time.Second, "the test event", func(r []received) bool { return len(r) >= 1 })
	if ids := rcvBatchIDs(t, test.requests()); !slices.Equal(ids, []string{"tx-test"}) {
		t.Errorf("test subscription got %v, want only tx-test", ids)
	}
	if dl := h.deliveriesOf("tx-test"); len(dl) != 1 {
		t.Errorf("the test event has %d deliveries, want 1 (the test subscription's)", len(dl))
	}

	// Two retries: every delivery to a failing endpoint fails for good after 3 attempts.
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	h.mustDo(200, "GET", "/deliveries?webhook_id="+failSub["id"].(string), nil, &list)
	if len(list.Data) != 5 {
		t.Fatalf("failing subscription has %d deliveries, want 5", len(list.Data))
	}
	for _, dl := range list.Data {
		d := h.waitStatus(dl.ID, "failed", 20*time.Second)
		if codes := rcvAttemptCodes(d); !slices.Equal(codes, []int{500, 500, 500}) {
			t.Errorf("delivery %s attempts %v, want 3 answered 500", dl.ID, codes)
		}
	}
	seen := map[string]int{}
	for _, r := range failing.requests() {
		for _, id := range rcvBatchIDs(t, []received{r}) {
			seen[id]++
		}
	}
	for id := range events {
		if seen[id] != 3 {
			t.Errorf("event %s reached the failing endpoint %d times, want 3", id, seen[id])
		}
	}
}

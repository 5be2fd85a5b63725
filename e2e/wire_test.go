package e2e

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The signatures below are computed from CONTRACT.md §5.2 in the test itself,
// not by Herald's webhook kit.
func hmacB64(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "v1=" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func hmac512Hex(secret string, body []byte) string {
	m := hmac.New(sha512.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func hmacGitHub(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestSignatureSchemes(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "", "--header-prefix", "X-Teal")
	stdSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("abcdefghijklmnopqrstuvwxyz012345"))
	cases := []struct {
		scheme, secret, header string
		want                   func(r received) string
	}{
		{"sha256-base64", "mysecret", "X-Teal-Signature", func(r received) string { return hmacB64("mysecret", r.Body) }},
		{"sha512-hex", "mysecret", "X-Teal-Signature", func(r received) string { return hmac512Hex("mysecret", r.Body) }},
		{"github", "mysecret", "X-Hub-Signature-256", func(r received) string { return hmacGitHub("mysecret", r.Body) }},
		{"standard", stdSecret, "Webhook-Signature", func(r received) string {
			return signStandard(t, stdSecret, r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Timestamp"), r.Body)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.scheme, func(t *testing.T) {
			rc := newReceiver(t, nil)
			h.createSub(map[string]any{"url": rc.URL(), "events": []string{"scheme." + tc.scheme}, "signature_scheme": tc.scheme, "signing_secret": tc.secret})
			h.publish(map[string]any{"event_type": "scheme." + tc.scheme, "data": map[string]any{"k": "v"}})
			r := rc.waitFor(t, 10*time.Second, "a delivery", func(r []received) bool { return len(r) >= 1 })[0]
			if got, want := r.Header.Get(tc.header), tc.want(r); got != want {
				t.Errorf("%s = %q, want %q", tc.header, got, want)
			}
			if got := r.Header.Get("X-Teal-Source"); got != "webhook" {
				t.Errorf("X-Teal-Source = %q", got)
			}
			if tc.scheme == "standard" {
				wh, _ := standardwebhooks.NewWebhook(stdSecret)
				if err := wh.Verify(r.Body, r.Header); err != nil {
					t.Errorf("Standard Webhooks library: %v", err)
				}
			}
		})
	}
	// Generated secrets take each scheme's form.
	for _, scheme := range []string{"standard", "sha256-base64", "sha512-hex", "github"} {
		sub := h.createSub(map[string]any{"url": "http://127.0.0.1:9/x", "events": []string{"*"}, "signature_scheme": scheme})
		s, _ := sub["signing_secret"].(string)
		if scheme == "standard" {
			if k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_")); !strings.HasPrefix(s, "whsec_") || err != nil || len(k) != 32 {
				t.Errorf("generated standard secret %q", s)
			}
		} else if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
			t.Errorf("generated %s secret %q is not 64 hex characters", scheme, s)
		}
	}
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	cases := []struct {
		scheme, old, new, header, sep string
		sig                           func(secret string, r received) string
	}{
		{"sha256-base64", "old-secret", "new-secret", "X-Herald-Signature", ",", func(s string, r received) string { return hmacB64(s, r.Body) }},
		{"standard", "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-old-old-old-old-old-old-old!")),
			"whsec_" + base64.StdEncoding.EncodeToString([]byte("new-new-new-new-new-new-new-new!")), "Webhook-Signature", " ",
			func(s string, r received) string {
				return signStandard(t, s, r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Timestamp"), r.Body)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.scheme, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, nil)
			typ := "rotate." + tc.scheme
			sub := h.createSub(map[string]any{"url": rc.URL(), "events": []string{typ}, "signature_scheme": tc.scheme, "signing_secret": tc.old})
			var rot map[string]any
			h.mustDo(200, "POST", "/webhooks/"+sub["id"].(string)+"/rotate-secret", map[string]any{"signing_secret": tc.new, "grace": "2s"}, &rot)
			if rot["signing_secret"] != tc.new {
				t.Fatalf("rotate answered %v", rot)
			}
			h.publish(map[string]any{"event_type": typ})
			r := rc.waitFor(t, 10*time.Second, "a delivery in the grace", func(r []received) bool { return len(r) >= 1 })[0]
			want := tc.sig(tc.new, r) + tc.sep + tc.sig(tc.old, r)
			if got := r.Header.Get(tc.header); got != want {
				t.Errorf("during the grace: %s = %q, want both %q", tc.header, got, want)
			}
			time.Sleep(2500 * time.Millisecond)
			h.publish(map[string]any{"event_type": typ})
			r = rc.waitFor(t, 10*time.Second, "a delivery after the grace", func(r []received) bool { return len(r) >= 2 })[1]
			if got, want := r.Header.Get(tc.header), tc.sig(tc.new, r); got != want {
				t.Errorf("after the grace: %s = %q, want only the new %q", tc.header, got, want)
			}
		})
	}
}

func TestEncryptedDelivery(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "", "--header-prefix", "X-Teal")
	rc := newReceiver(t, nil)
	key := []byte("0123456789abcdef0123456789abcdef")
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"user-payroll-submitted"}, "name": "payroll sync",
		"signature_scheme": "sha512-hex", "signing_secret": "mysecret", "encryption_key": base64.StdEncoding.EncodeToString(key)})
	h.publish(map[string]any{"id": "evt-enc", "event_type": "user-payroll-submitted", "data": map[string]any{"salary": "secret-salary-123"}})
	r := rc.waitFor(t, 10*time.Second, "a delivery", func(r []received) bool { return len(r) >= 1 })[0]
	if strings.Contains(string(r.Body), "secret-salary-123") || strings.Contains(string(r.Body), "evt-enc") {
		t.Fatalf("the plaintext shows in the body: %s", r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if got, want := r.Header.Get("X-Teal-Signature"), hmac512Hex("mysecret", r.Body); got != want {
		t.Errorf("signature %q does not cover the ciphertext body (want %q)", got, want)
	}
	iv, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Teal-Encryption-IV"))
	if err != nil || len(iv) != 12 {
		t.Fatalf("X-Teal-Encryption-IV %q is not base64 of 12 bytes", r.Header.Get("X-Teal-Encryption-IV"))
	}
	sealed, err := base64.StdEncoding.DecodeString(string(r.Body))
	if err != nil {
		t.Fatalf("body is not standard base64: %v", err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, iv, sealed, nil)
	if err != nil {
		t.Fatalf("body does not decrypt with the key and the IV header: %v", err)
	}
	var env map[string]any
	if err := json.Unmarshal(plain, &env); err != nil || env["id"] != "evt-enc" || env["data"].(map[string]any)["salary"] != "secret-salary-123" {
		t.Errorf("decrypted envelope: %s", plain)
	}
}

func TestPayloadShapes(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	thin := newReceiver(t, nil)
	flat := newReceiver(t, nil)
	h.createSub(map[string]any{"url": thin.URL(), "events": []string{"*"}, "include_payload": false})
	h.createSub(map[string]any{"url": flat.URL(), "events": []string{"*"}, "payload_format": "flat"})
	h.publish(map[string]any{"id": "evt-obj", "event_type": "RTTM_TIN_VALIDATION", "data": map[string]any{"validation_id": "v1", "status": "ok"}})
	h.publish(map[string]any{"id": "evt-arr", "event_type": "list", "data": []int{1, 2}})

	got := thin.waitFor(t, 10*time.Second, "2 thin deliveries", func(r []received) bool { return len(r) >= 2 })
	for _, r := range got {
		var m map[string]json.RawMessage
		json.Unmarshal(r.Body, &m)
		if _, ok := m["data"]; ok {
			t.Errorf("include_payload false still sends data: %s", r.Body)
		}
		for _, k := range []string{"id", "create_time", "event_type", "version"} {
			if _, ok := m[k]; !ok {
				t.Errorf("thin envelope lacks %s: %s", k, r.Body)
			}
		}
	}
	got = flat.waitFor(t, 10*time.Second, "2 flat deliveries", func(r []received) bool { return len(r) >= 2 })
	bodies := map[string]string{}
	for _, r := range got {
		var m map[string]any
		json.Unmarshal(r.Body, &m)
		bodies[m["id"].(string)] = string(r.Body)
	}
	if want := `{"id":"evt-obj","event_type":"RTTM_TIN_VALIDATION","status":"ok","validation_id":"v1"}`; !jsonEqual(bodies["evt-obj"], want) || !strings.HasPrefix(bodies["evt-obj"], `{"id":"evt-obj","event_type":"RTTM_TIN_VALIDATION",`) {
		t.Errorf("flat object: %s, want %s with id and event_type first", bodies["evt-obj"], want)
	}
	var arr map[string]any
	json.Unmarshal([]byte(bodies["evt-arr"]), &arr)
	if _, ok := arr["data"].([]any); !ok {
		t.Errorf("flat with non-object data should keep data: %s", bodies["evt-arr"])
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestBatching(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "", "--header-prefix", "X-Taxbit")
	rc := newReceiver(t, nil)
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"}, "signature_scheme": "sha256-base64", "signing_secret": "tb",
		"delivery": map[string]any{"batch_max_events": 10}})
	evs := make([]map[string]any, 25)
	for i := range evs {
		evs[i] = map[string]any{"id": "b-" + string(rune('a'+i)), "event_type": "FORM_STATUS_UPDATE", "data": map[string]any{"n": i}}
	}
	h.mustDo(202, "POST", "/events/batch", map[string]any{"events": evs}, nil)
	seen := map[string]int{}
	count := func(r []received) int {
		clear(seen)
		for _, q := range r {
			var b struct {
				Timestamp string `json:"timestamp"`
				Data      []struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			json.Unmarshal(q.Body, &b)
			for _, e := range b.Data {
				seen[e.ID]++
			}
		}
		return len(seen)
	}
	got := rc.waitFor(t, 15*time.Second, "25 batched events", func(r []received) bool { return count(r) >= 25 })
	time.Sleep(300 * time.Millisecond)
	got = rc.requests()
	count(got)
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s arrived %d times", id, n)
		}
	}
	if len(seen) != 25 {
		t.Errorf("%d distinct events, want 25", len(seen))
	}
	for _, r := range got {
		var b struct {
			Timestamp string            `json:"timestamp"`
			Data      []json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || b.Timestamp == "" {
			t.Errorf("batch body: %s", r.Body)
		}
		if len(b.Data) < 1 || len(b.Data) > 10 {
			t.Errorf("batch of %d events, want 1 to 10", len(b.Data))
		}
		if got, want := r.Header.Get("X-Taxbit-Signature"), hmacB64("tb", r.Body); got != want {
			t.Errorf("batch signature %q, want %q", got, want)
		}
		if r.Header.Get("X-Trace-Id") == "" || r.Header.Get("X-Taxbit-Source") != "webhook" {
			t.Errorf("batch headers: %v", r.Header)
		}
	}
	t.Logf("25 events arrived in %d requests", len(got))
	if len(got) < 3 {
		t.Errorf("25 events in %d requests; at most 10 per batch means at least 3", len(got))
	}
}

func TestTestModeAndTestEvent(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	live := newReceiver(t, nil)
	test := newReceiver(t, nil)
	liveSub := h.createSub(map[string]any{"url": live.URL(), "events": []string{"*"}})
	h.createSub(map[string]any{"url": test.URL(), "events": []string{"*"}, "mode": "test"})
	h.publish(map[string]any{"id": "live-1", "event_type": "a.b"})
	h.publish(map[string]any{"id": "test-1", "event_type": "a.b", "test": true})
	var out map[string]any
	h.mustDo(200, "POST", "/webhooks/"+liveSub["id"].(string)+"/test", nil, &out)
	if d, _ := out["delivery_id"].(string); !strings.HasPrefix(d, "dlv_") {
		t.Errorf("test answered %v", out)
	}
	ids := func(r []received) []string {
		var s []string
		for _, q := range r {
			var env map[string]any
			json.Unmarshal(q.Body, &env)
			s = append(s, env["event_type"].(string)+":"+env["id"].(string))
		}
		return s
	}
	live.waitFor(t, 10*time.Second, "live event and test event", func(r []received) bool { return len(r) >= 2 })
	test.waitFor(t, 10*time.Second, "the test-mode event", func(r []received) bool { return len(r) >= 1 })
	time.Sleep(300 * time.Millisecond)
	gotLive, gotTest := live.requests(), test.requests()
	l := strings.Join(ids(gotLive), " ")
	if len(gotLive) != 2 || !strings.Contains(l, "a.b:live-1") || !strings.Contains(l, "webhook.test:") {
		t.Errorf("live subscription got %v, want the live event and one webhook.test", l)
	}
	if s := ids(gotTest); len(s) != 1 || s[0] != "a.b:test-1" {
		t.Errorf("test subscription got %v, want only the test event", s)
	}
}

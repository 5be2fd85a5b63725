package webhook_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/heraldhq/herald/webhook"
)

// Sign with the standard scheme (Standard Webhooks): a message id, a unix
// timestamp and HMAC-SHA256 of id.timestamp.body under the decoded secret.
func ExampleSign() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	h, err := webhook.Sign(webhook.SignParams{
		Scheme:    webhook.SchemeStandard,
		Secrets:   []string{secret},
		MsgID:     "msg_p5jXN8AQM9LWM0D4loKWxJek",
		Timestamp: time.Unix(1614265330, 0),
		Body:      []byte(`{"test": 2432232314}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("webhook-id:", h.Get("webhook-id"))
	fmt.Println("webhook-timestamp:", h.Get("webhook-timestamp"))
	fmt.Println("webhook-signature:", h.Get("webhook-signature"))
	// Output:
	// webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek
	// webhook-timestamp: 1614265330
	// webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

// Verify a standard webhook while a secret is being rotated: Herald signs
// with both secrets during the grace period, and either one verifies.
func ExampleVerify() {
	oldSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	newSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	sent := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt_1","create_time":"2023-11-14T22:13:20.000000Z","event_type":"job.status","version":"1.0","data":{"job":{}}}`)
	h, _ := webhook.Sign(webhook.SignParams{Scheme: webhook.SchemeStandard, Secrets: []string{newSecret, oldSecret},
		MsgID: "evt_1", Timestamp: sent, Body: body})
	fmt.Println("signatures:", len(strings.Fields(h.Get("webhook-signature"))))

	for _, secret := range []string{oldSecret, newSecret} {
		err := webhook.Verify(webhook.VerifyParams{Scheme: webhook.SchemeStandard, Secrets: []string{secret},
			Header: h, Body: body, Now: sent.Add(30 * time.Second)})
		fmt.Println("verified:", err)
	}
	// Ten minutes later the same request is refused: a replay.
	err := webhook.Verify(webhook.VerifyParams{Scheme: webhook.SchemeStandard, Secrets: []string{oldSecret},
		Header: h, Body: body, Now: sent.Add(10 * time.Minute)})
	fmt.Println("replayed:", err)
	// Output:
	// signatures: 2
	// verified: <nil>
	// verified: <nil>
	// replayed: webhook: timestamp invalid or outside the tolerance
}

// The sha256-base64 scheme, as a receiver that checks
// "x-taxbit-signature: v1=<base64 HMAC-SHA256>" expects it.
func ExampleVerify_sha256Base64() {
	body := []byte(`{"timestamp":"2024-03-01T12:00:00.000000Z","data":[{"id":"evt_1","event_type":"RTTM_TIN_VALIDATION"}]}`)
	h, _ := webhook.Sign(webhook.SignParams{Scheme: webhook.SchemeSHA256Base64, HeaderPrefix: "X-Taxbit",
		Secrets: []string{"my-secret"}, Body: body})
	fmt.Println("X-Taxbit-Signature:", h.Get("X-Taxbit-Signature"))

	err := webhook.Verify(webhook.VerifyParams{Scheme: webhook.SchemeSHA256Base64, HeaderPrefix: "X-Taxbit",
		Secrets: []string{"my-secret"}, Header: h, Body: body})
	fmt.Println("verified:", err)
	err = webhook.Verify(webhook.VerifyParams{Scheme: webhook.SchemeSHA256Base64, HeaderPrefix: "X-Taxbit",
		Secrets: []string{"my-secret"}, Header: h, Body: append(body, '\n')})
	fmt.Println("changed body:", err)
	// Output:
	// X-Taxbit-Signature: v1=uCJS2XYICq/pMIuAVZYUov5WdaOVvE/SqO1RupInNWM=
	// verified: <nil>
	// changed body: webhook: no signature matches
}

// The sha512-hex scheme with an encrypted body: Herald encrypts, then signs
// the ciphertext, so the receiver verifies the body as received and only
// then decrypts it.
func ExampleVerify_sha512Hex() {
	key, _ := webhook.DecodeKey("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	plain := []byte(`{"id":"evt_3","event_type":"user-payroll-submitted"}`)

	// Sending side (what Herald does).
	body, iv, _ := webhook.Encrypt(key, plain)
	h, _ := webhook.Sign(webhook.SignParams{Scheme: webhook.SchemeSHA512Hex, HeaderPrefix: "X-Teal",
		Secrets: []string{"mysecret"}, Body: body})
	h.Set(webhook.EncryptionIVHeader("X-Teal"), iv)
	fmt.Println("hex characters:", len(h.Get("X-Teal-Signature")))

	// Receiving side.
	err := webhook.Verify(webhook.VerifyParams{Scheme: webhook.SchemeSHA512Hex, HeaderPrefix: "X-Teal",
		Secrets: []string{"mysecret"}, Header: h, Body: body})
	fmt.Println("verified:", err)
	got, err := webhook.Decrypt(key, body, h.Get("X-Teal-Encryption-IV"))
	fmt.Println(string(got), err)
	// Output:
	// hex characters: 128
	// verified: <nil>
	// {"id":"evt_3","event_type":"user-payroll-submitted"} <nil>
}

// The github scheme: "X-Hub-Signature-256: sha256=<hex HMAC-SHA256>".
func ExampleVerify_github() {
	body := []byte(`{"id":"evt_4","event_type":"job.status"}`)
	h, _ := webhook.Sign(webhook.SignParams{Scheme: webhook.SchemeGitHub, Secrets: []string{"s3cret"}, Body: body})
	fmt.Println("X-Hub-Signature-256:", h.Get("X-Hub-Signature-256"))
	err := webhook.Verify(webhook.VerifyParams{Scheme: webhook.SchemeGitHub, Secrets: []string{"wrong"}, Header: h, Body: body})
	fmt.Println("wrong secret:", err)
	// Output:
	// X-Hub-Signature-256: sha256=876207662a797af1491d347fbc93df4d92bb3770981167e2aa49658738cf9dd6
	// wrong secret: webhook: no signature matches
}

// Encrypt a body as Herald sends it: base64 of AES-256-GCM ciphertext and
// tag, with a fresh IV for the <prefix>-Encryption-IV header.
func ExampleEncrypt() {
	key, _ := webhook.DecodeKey("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	plain := []byte(`{"event_type":"user-payroll-submitted"}`)
	body, iv, _ := webhook.Encrypt(key, plain)
	raw, _ := base64.StdEncoding.DecodeString(string(body))
	ivRaw, _ := base64.StdEncoding.DecodeString(iv)
	fmt.Println("ciphertext+tag bytes:", len(raw), "=", len(plain), "+ 16")
	fmt.Println("IV bytes:", len(ivRaw))
	// Output:
	// ciphertext+tag bytes: 55 = 39 + 16
	// IV bytes: 12
}

// Decrypt a body with the subscription's encryption_key and the IV from the
// <prefix>-Encryption-IV header.
func ExampleDecrypt() {
	key, _ := webhook.DecodeKey("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	body := []byte("OptnB7rWin6A9oivP5uRXqAjuxkwPAKVpiZ+wmTpMK1k1pSruYxRDbEbDmQIsEW9C50/FCpcTw==")
	iv := "dHdlbHZlIGJ5dGVz"
	plain, err := webhook.Decrypt(key, body, iv)
	fmt.Println(string(plain), err)
	_, err = webhook.Decrypt(key, body, "AAAAAAAAAAAAAAAA")
	fmt.Println(err)
	// Output:
	// {"event_type":"user-payroll-submitted"} <nil>
	// webhook: body does not decrypt: wrong key, or the body or IV was changed
}

// Handler verifies, decrypts and parses before your code sees the message;
// a request that fails any of these never reaches it.
func ExampleHandler() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	now := time.Unix(1700000000, 0)
	h := webhook.Handler(webhook.HandlerConfig{
		Scheme:  webhook.SchemeStandard,
		Secrets: []string{secret},
		Now:     func() time.Time { return now }, // tests only: the default is time.Now
	}, func(w http.ResponseWriter, r *http.Request, m *webhook.Message) {
		envs, err := m.Envelopes()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range envs {
			fmt.Println("message", m.ID, "batch", m.Batch, "event", e.ID, e.EventType)
		}
		w.WriteHeader(http.StatusNoContent)
	})

	send := func(msgID, body string, secret string) {
		sig, _ := webhook.Sign(webhook.SignParams{Scheme: webhook.SchemeStandard, Secrets: []string{secret},
			MsgID: msgID, Timestamp: now, Body: []byte(body)})
		req := httptest.NewRequest("POST", "/webhooks", strings.NewReader(body))
		for k, v := range sig {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println("status", rec.Code)
	}
	send("evt_7", `{"id":"evt_7","create_time":"2023-11-14T22:13:20.000000Z","event_type":"job.status","version":"1.0","data":{}}`, secret)
	send("bat_1", `{"timestamp":"2023-11-14T22:13:20.000000Z","data":[{"id":"evt_8","event_type":"a"},{"id":"evt_9","event_type":"b"}]}`, secret)
	send("evt_10", `{"id":"evt_10","event_type":"job.status"}`, "whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
	// Output:
	// message evt_7 batch false event evt_7 job.status
	// status 204
	// message bat_1 batch true event evt_8 a
	// message bat_1 batch true event evt_9 b
	// status 204
	// status 401
}

// A new signing secret in the form of its scheme.
func ExampleGenerateSecret() {
	std, _ := webhook.GenerateSecret(webhook.SchemeStandard)
	hex, _ := webhook.GenerateSecret(webhook.SchemeSHA512Hex)
	fmt.Println(strings.HasPrefix(std, "whsec_"), len(std), webhook.ValidSecret(webhook.SchemeStandard, std))
	fmt.Println(len(hex), webhook.ValidSecret(webhook.SchemeSHA512Hex, hex))
	// Output:
	// true 50 <nil>
	// 64 <nil>
}

package webhook

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
)

var schemes = []string{SchemeStandard, SchemeSHA256Base64, SchemeSHA512Hex, SchemeGitHub}

// genuine is the signature value that secret gives body under scheme, in the
// text form Sign writes (for standard, over the timestamp text ts).
func genuine(scheme, secret, id, ts string, body []byte) string {
	if scheme == SchemeStandard {
		key, _ := standardKey(secret)
		return "v1," + base64.StdEncoding.EncodeToString(standardMAC(key, id, ts, body))
	}
	return expected(scheme, secret, body)
}

// FuzzVerify feeds arbitrary headers, bodies and secrets to every scheme.
// Verify must not panic; it may accept a header only when the header holds
// the genuine signature; what Sign makes always verifies, and never for a
// changed body or another secret.
func FuzzVerify(f *testing.F) {
	f.Add(uint8(0), "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "v1,abc", "msg_1", "1700000000", []byte(`{"id":"x"}`))
	f.Add(uint8(1), "my-secret", "v1=Xr1D4RjXh0YOw6NH3r3nIwhdFwy39SNVEAHaHY8YRr8=", "", "", []byte(`{}`))
	f.Add(uint8(2), "mysecret", "deadbeef,cafe", "", "", []byte(""))
	f.Add(uint8(3), "s3cret", "sha256=00", "", "", []byte("x"))
	const fallback = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, which uint8, secret, sig, id, ts string, body []byte) {
		scheme := schemes[int(which)%len(schemes)]
		if ValidSecret(scheme, secret) != nil {
			secret = fallback // a valid secret for every scheme
		}
		h := http.Header{}
		h.Set(HeaderWebhookSignature, sig)
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, ts)
		h.Set(SignatureHeader(DefaultHeaderPrefix), sig)
		h.Set(HeaderGitHubSignature, sig)
		if Verify(VerifyParams{Scheme: scheme, Secrets: []string{secret}, Header: h, Body: body, Now: now}) == nil {
			if want := genuine(scheme, secret, id, ts, body); !strings.Contains(strings.ToLower(sig), strings.ToLower(want)) {
				t.Fatalf("%s: accepted %q, which lacks the genuine %q", scheme, sig, want)
			}
		}

		signed, err := Sign(SignParams{Scheme: scheme, Secrets: []string{secret}, MsgID: id, Timestamp: now, Body: body})
		if scheme == SchemeStandard && id == "" {
			if err == nil {
				t.Fatal("standard: signed without a message id")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(VerifyParams{Scheme: scheme, Secrets: []string{secret}, Header: signed, Body: body, Now: now}); err != nil {
			t.Fatalf("%s: own signature does not verify: %v", scheme, err)
		}
		changed := append([]byte{'x'}, body...)
		if Verify(VerifyParams{Scheme: scheme, Secrets: []string{secret}, Header: signed, Body: changed, Now: now}) == nil {
			t.Fatalf("%s: a changed body verifies", scheme)
		}
		other := fallback
		if secret == fallback {
			other = "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key of thirty-two bytes!"))
		}
		if ValidSecret(scheme, other) == nil && Verify(VerifyParams{Scheme: scheme, Secrets: []string{other}, Header: signed, Body: body, Now: now}) == nil {
			t.Fatalf("%s: another secret verifies", scheme)
		}
	})
}

// FuzzDecrypt feeds arbitrary bodies and IVs to Decrypt, which must not
// panic; what Encrypt makes always decrypts to the plaintext, and not once
// a byte of it is changed.
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte("aGVsbG8="), "AAAAAAAAAAAAAAAA", []byte("hello"))
	f.Add([]byte(""), "", []byte(""))
	f.Add([]byte("!!!"), "not base64", []byte(`{"a":1}`))
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, body []byte, iv string, plain []byte) {
		_, _ = Decrypt(key, body, iv)
		ct, iv2, err := Encrypt(key, plain)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decrypt(key, ct, iv2)
		if err != nil || string(got) != string(plain) {
			t.Fatalf("round trip: %q %v", got, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(string(ct))
		raw[len(plain)%len(raw)] ^= 0x80
		if _, err := Decrypt(key, []byte(base64.StdEncoding.EncodeToString(raw)), iv2); err == nil {
			t.Fatal("a changed ciphertext decrypts")
		}
	})
}

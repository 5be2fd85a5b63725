package webhook

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// benchBody returns a valid JSON event body of exactly size bytes.
func benchBody(b *testing.B, size int) []byte {
	b.Helper()
	const head, tail = `{"id":"evt_1","event_type":"job.status","version":"1.0","data":{"pad":"`, `"}}`
	if size < len(head)+len(tail) {
		b.Fatalf("a body of %d bytes cannot hold the envelope", size)
	}
	body := []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
	if !json.Valid(body) {
		b.Fatal("benchmark body is not valid JSON")
	}
	return body
}

// benchSecrets returns n fresh secrets for scheme.
func benchSecrets(b *testing.B, scheme string, n int) []string {
	b.Helper()
	secrets := make([]string, n)
	for i := range secrets {
		s, err := GenerateSecret(scheme)
		if err != nil {
			b.Fatal(err)
		}
		secrets[i] = s
	}
	return secrets
}

// benchKey returns a fresh random encryption key.
func benchKey() []byte {
	key := make([]byte, KeySize)
	rand.Read(key) // crypto/rand.Read never fails since Go 1.24
	return key
}

func BenchmarkSign(b *testing.B) {
	body := benchBody(b, 1<<10)
	run := func(name, scheme string, secrets []string) {
		p := SignParams{Scheme: scheme, HeaderPrefix: "X-Teal", Secrets: secrets, MsgID: "msg_1", Timestamp: t0, Body: body}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Sign(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, scheme := range schemes {
		run(scheme, scheme, benchSecrets(b, scheme, 1))
	}
	// During a rotation every request carries one signature per secret.
	run(SchemeStandard+"-rotation", SchemeStandard, benchSecrets(b, SchemeStandard, 2))
}

func BenchmarkVerify(b *testing.B) {
	body := benchBody(b, 1<<10)
	for _, scheme := range schemes {
		b.Run(scheme, func(b *testing.B) {
			secrets := benchSecrets(b, scheme, 1)
			h, err := Sign(SignParams{Scheme: scheme, HeaderPrefix: "X-Teal", Secrets: secrets, MsgID: "msg_1", Timestamp: t0, Body: body})
			if err != nil {
				b.Fatal(err)
			}
			// Now is the signing time, so the standard timestamp is in tolerance.
			p := VerifyParams{Scheme: scheme, HeaderPrefix: "X-Teal", Secrets: secrets, Header: h, Body: body, Now: t0}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := Verify(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncrypt(b *testing.B) {
	key := benchKey()
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			plain := benchBody(b, size)
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				if _, _, err := Encrypt(key, plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecrypt counts plaintext bytes, as BenchmarkEncrypt does, so that
// their MB/s compare directly.
func BenchmarkDecrypt(b *testing.B) {
	key := benchKey()
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			plain := benchBody(b, size)
			body, iv, err := Encrypt(key, plain)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				if _, err := Decrypt(key, body, iv); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

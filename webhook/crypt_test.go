package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var encKey = []byte("0123456789abcdef0123456789abcdef")

// sealByHand encrypts as CONTRACT.md §5.3 describes, with the standard
// library directly and a chosen IV.
func sealByHand(tb testing.TB, key, iv, plain []byte) (body []byte, ivB64 string) {
	tb.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(gcm.Seal(nil, iv, plain, nil))), base64.StdEncoding.EncodeToString(iv)
}

func TestEncrypt(t *testing.T) {
	t.Parallel()
	body, iv, err := Encrypt(encKey, testBody)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "event_type") {
		t.Fatal("ciphertext shows the plaintext")
	}
	raw, err := base64.StdEncoding.DecodeString(string(body))
	if err != nil || len(raw) != len(testBody)+16 {
		t.Fatalf("body is not padded standard base64 of ciphertext+tag: %d bytes, %v", len(raw), err)
	}
	ivb, err := base64.StdEncoding.DecodeString(iv)
	if err != nil || len(ivb) != 12 {
		t.Fatalf("IV %q is not standard base64 of 12 bytes", iv)
	}
	// Independently: the same IV and key give the same body.
	if want, _ := sealByHand(t, encKey, ivb, testBody); string(want) != string(body) {
		t.Errorf("body %q, want AES-256-GCM without additional data %q", body, want)
	}
	body2, iv2, _ := Encrypt(encKey, testBody)
	if iv2 == iv || string(body2) == string(body) {
		t.Error("two encryptions share an IV")
	}
	if _, _, err := Encrypt(encKey[:16], testBody); err == nil {
		t.Error("Encrypt accepts an AES-128 key")
	}
}

func TestDecrypt(t *testing.T) {
	t.Parallel()
	iv := []byte("twelve bytes")
	body, ivB64 := sealByHand(t, encKey, iv, testBody)
	raw, _ := base64.StdEncoding.DecodeString(string(body))
	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 1
		return b
	}
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	otherKey := []byte("fedcba9876543210fedcba9876543210")

	tests := []struct {
		name    string
		key     []byte
		body    string
		iv      string
		want    string
		wantErr error
		keyErr  bool // an error about the key, not wrapping ErrDecrypt
	}{
		{name: "by hand", key: encKey, body: string(body), iv: ivB64, want: string(testBody)},
		// Computed with Python's cryptography package (AESGCM(key).encrypt(iv, plain, None)).
		{name: "python vector", key: encKey, body: "OptnB7rWin6A9oivP5uRXqAjuxkwPAKVpiZ+wmTpMK1k1pSruYxRDbEbDmQIsEW9C50/FCpcTw==",
			iv: "dHdlbHZlIGJ5dGVz", want: `{"event_type":"user-payroll-submitted"}`},
		{name: "trailing newline", key: encKey, body: string(body) + "\r\n", iv: ivB64 + " ", want: string(testBody)},
		{name: "empty plaintext", key: encKey, body: func() string { b, _ := sealByHand(t, encKey, iv, nil); return string(b) }(), iv: ivB64, want: ""},
		{name: "ciphertext flipped", key: encKey, body: b64(flip(raw, 0)), iv: ivB64, wantErr: ErrDecrypt},
		{name: "tag flipped", key: encKey, body: b64(flip(raw, len(raw)-1)), iv: ivB64, wantErr: ErrDecrypt},
		{name: "IV flipped", key: encKey, body: string(body), iv: b64(flip(iv, 3)), wantErr: ErrDecrypt},
		{name: "wrong key", key: otherKey, body: string(body), iv: ivB64, wantErr: ErrDecrypt},
		{name: "truncated", key: encKey, body: b64(raw[:len(raw)-1]), iv: ivB64, wantErr: ErrDecrypt},
		{name: "shorter than the tag", key: encKey, body: b64(raw[:15]), iv: ivB64, wantErr: ErrDecrypt},
		{name: "empty body", key: encKey, body: "", iv: ivB64, wantErr: ErrDecrypt},
		{name: "plaintext body", key: encKey, body: string(testBody), iv: ivB64, wantErr: ErrDecrypt},
		{name: "url base64", key: encKey, body: base64.URLEncoding.EncodeToString(raw) + "-_", iv: ivB64, wantErr: ErrDecrypt},
		{name: "no IV", key: encKey, body: string(body), iv: "", wantErr: ErrDecrypt},
		{name: "IV not base64", key: encKey, body: string(body), iv: "not base64!", wantErr: ErrDecrypt},
		{name: "IV of 16 bytes", key: encKey, body: string(body), iv: b64(make([]byte, 16)), wantErr: ErrDecrypt},
		{name: "key of 16 bytes", key: encKey[:16], body: string(body), iv: ivB64, keyErr: true},
		{name: "no key", key: nil, body: string(body), iv: ivB64, keyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decrypt(tc.key, []byte(tc.body), tc.iv)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Decrypt = %q, %v; want %v", got, err, tc.wantErr)
				}
			case tc.keyErr:
				if err == nil || errors.Is(err, ErrDecrypt) {
					t.Errorf("Decrypt = %v, want a key error", err)
				}
			default:
				if err != nil || string(got) != tc.want {
					t.Errorf("Decrypt = %q, %v; want %q", got, err, tc.want)
				}
			}
		})
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	t.Parallel()
	for _, plain := range [][]byte{nil, []byte("x"), testBody, []byte(strings.Repeat("é", 70000))} {
		body, iv, err := Encrypt(encKey, plain)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decrypt(encKey, body, iv)
		if err != nil || string(got) != string(plain) {
			t.Errorf("round trip of %d bytes: %d bytes, %v", len(plain), len(got), err)
		}
	}
}

func TestDecodeKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"32 bytes", base64.StdEncoding.EncodeToString(encKey), true},
		{"with newline", base64.StdEncoding.EncodeToString(encKey) + "\n", true},
		{"16 bytes", base64.StdEncoding.EncodeToString(encKey[:16]), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(encKey, 0)), false},
		{"unpadded", base64.RawStdEncoding.EncodeToString(encKey[:31]), false},
		{"url alphabet", base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb", 32))), false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := DecodeKey(tc.in)
			if tc.ok && (err != nil || string(k) != string(encKey)) {
				t.Errorf("DecodeKey = %q, %v; want the key", k, err)
			}
			if !tc.ok && err == nil {
				t.Errorf("DecodeKey accepts %q", tc.in)
			}
		})
	}
}

package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Fixtures shared by the package's tests.
var (
	t0       = time.Unix(1700000000, 0)
	stdKey   = []byte("0123456789abcdef0123456789abcdef")
	stdSec   = "whsec_" + base64.StdEncoding.EncodeToString(stdKey)
	stdSec2  = "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	testBody = []byte(`{"id":"evt_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":{"job":{}}}`)
)

func TestSignKnownVectors(t *testing.T) {
	t.Parallel()
	m := hmac.New(sha256.New, []byte("mysecret"))
	m.Write(testBody)
	sum256 := m.Sum(nil)
	m = hmac.New(sha512.New, []byte("mysecret"))
	m.Write(testBody)
	sum512 := m.Sum(nil)
	m = hmac.New(sha256.New, stdKey)
	m.Write([]byte("msg_1.1700000000."))
	m.Write(testBody)
	sumStd := m.Sum(nil)

	tests := []struct {
		name, scheme, prefix, secret, msgID string
		ts                                  time.Time
		body                                []byte
		want                                map[string]string // header => value; every other header must be absent
	}{
		{
			name: "standard", scheme: SchemeStandard, secret: stdSec, msgID: "msg_1", ts: t0, body: testBody,
			want: map[string]string{
				"Webhook-Id":        "msg_1",
				"Webhook-Timestamp": "1700000000",
				"Webhook-Signature": "v1," + base64.StdEncoding.EncodeToString(sumStd),
			},
		},
		{
			// The vector published with the Standard Webhooks reference libraries.
			name: "standard spec vector", scheme: SchemeStandard, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			msgID: "msg_p5jXN8AQM9LWM0D4loKWxJek", ts: time.Unix(1614265330, 0), body: []byte(`{"test": 2432232314}`),
			want: map[string]string{
				"Webhook-Id":        "msg_p5jXN8AQM9LWM0D4loKWxJek",
				"Webhook-Timestamp": "1614265330",
				"Webhook-Signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
			},
		},
		{
			name: "sha256-base64", scheme: SchemeSHA256Base64, prefix: "X-Taxbit", secret: "mysecret", body: testBody,
			want: map[string]string{"X-Taxbit-Signature": "v1=" + base64.StdEncoding.EncodeToString(sum256)},
		},
		{
			name: "sha512-hex", scheme: SchemeSHA512Hex, prefix: "X-Teal", secret: "mysecret", body: testBody,
			want: map[string]string{"X-Teal-Signature": hex.EncodeToString(sum512)},
		},
		{
			name: "sha512-hex default prefix", scheme: SchemeSHA512Hex, secret: "mysecret", body: testBody,
			want: map[string]string{"X-Herald-Signature": hex.EncodeToString(sum512)},
		},
		{
			name: "github", scheme: SchemeGitHub, prefix: "X-Teal", secret: "mysecret", body: testBody,
			want: map[string]string{"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(sum256)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := Sign(SignParams{Scheme: tc.scheme, HeaderPrefix: tc.prefix, Secrets: []string{tc.secret},
				MsgID: tc.msgID, Timestamp: tc.ts, Body: tc.body})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k := range h {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("unexpected header %s: %q", k, h.Get(k))
				}
			}
			err = Verify(VerifyParams{Scheme: tc.scheme, HeaderPrefix: tc.prefix, Secrets: []string{tc.secret},
				Header: h, Body: tc.body, Now: tc.ts})
			if err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// The receivers in the seed documents check signatures their own way;
// Herald's headers must pass those checks as written there.
func TestSignPassesSeedReceivers(t *testing.T) {
	t.Parallel()
	// 002: signatures.split(',').includes(`v1=${digest}`), digest base64.
	h, err := Sign(SignParams{Scheme: SchemeSHA256Base64, HeaderPrefix: "X-Taxbit", Secrets: []string{"new", "old"}, Body: testBody})
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"new", "old"} {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(testBody)
		digest := base64.StdEncoding.EncodeToString(m.Sum(nil))
		if !slices.Contains(strings.Split(h.Get("x-taxbit-signature"), ","), "v1="+digest) {
			t.Errorf("taxbit check fails for %q: header %q", secret, h.Get("x-taxbit-signature"))
		}
	}
	// 001: the X-Teal-Signature header is the hex HMAC-SHA512 of the body.
	h, err = Sign(SignParams{Scheme: SchemeSHA512Hex, HeaderPrefix: "X-Teal", Secrets: []string{"mysecret"}, Body: testBody})
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha512.New, []byte("mysecret"))
	m.Write(testBody)
	if got, want := h.Get("X-Teal-Signature"), hex.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("teal check: %q, want %q", got, want)
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    SignParams
		want error // nil: any error
	}{
		{"unknown scheme", SignParams{Scheme: "md5", Secrets: []string{"s"}}, ErrScheme},
		{"empty scheme", SignParams{Secrets: []string{"s"}}, ErrScheme},
		{"no secret", SignParams{Scheme: SchemeGitHub}, nil},
		{"empty secret", SignParams{Scheme: SchemeSHA512Hex, Secrets: []string{"ok", ""}}, nil},
		{"standard secret without prefix", SignParams{Scheme: SchemeStandard, MsgID: "m", Secrets: []string{"plain-secret"}}, nil},
		{"standard secret too short", SignParams{Scheme: SchemeStandard, MsgID: "m", Secrets: []string{"whsec_c2hvcnQ="}}, nil},
		{"standard without message id", SignParams{Scheme: SchemeStandard, Secrets: []string{stdSec}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := Sign(tc.p)
			if err == nil {
				t.Fatalf("no error; headers %v", h)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			for _, s := range tc.p.Secrets {
				if len(s) > 2 && strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes the secret", err)
				}
			}
		})
	}
}

func TestSignZeroTimestampIsNow(t *testing.T) {
	t.Parallel()
	before := time.Now().Unix()
	h, err := Sign(SignParams{Scheme: SchemeStandard, Secrets: []string{stdSec}, MsgID: "m", Body: testBody})
	after := time.Now().Unix()
	if err != nil {
		t.Fatal(err)
	}
	got, err := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
	if err != nil || got < before || got > after {
		t.Errorf("webhook-timestamp %q, want between %d and %d", h.Get(HeaderWebhookTimestamp), before, after)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	sign := func(scheme string, secrets ...string) http.Header {
		h, err := Sign(SignParams{Scheme: scheme, HeaderPrefix: "X-Acme", Secrets: secrets, MsgID: "msg_1", Timestamp: t0, Body: testBody})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	with := func(h http.Header, k string, v ...string) http.Header {
		h = h.Clone()
		h.Del(k)
		for _, x := range v {
			h.Add(k, x)
		}
		return h
	}
	tampered := append([]byte(nil), testBody...)
	tampered[len(tampered)-3] ^= 1
	std := sign(SchemeStandard, stdSec)
	stdSig := std.Get(HeaderWebhookSignature)
	gh := sign(SchemeGitHub, "s")
	hex512 := sign(SchemeSHA512Hex, "s")
	b64 := sign(SchemeSHA256Base64, "s")

	tests := []struct {
		name    string
		scheme  string
		secrets []string
		header  http.Header
		body    []byte
		now     time.Time
		tol     time.Duration
		want    error
	}{
		{name: "standard ok", scheme: SchemeStandard, secrets: []string{stdSec}, header: std},
		{name: "standard tampered body", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, body: tampered, want: ErrBadSignature},
		{name: "standard wrong secret", scheme: SchemeStandard, secrets: []string{stdSec2}, header: std, want: ErrBadSignature},
		{name: "standard invalid secret skipped", scheme: SchemeStandard, secrets: []string{"nonsense", stdSec}, header: std},
		{name: "standard no secrets", scheme: SchemeStandard, header: std, want: ErrBadSignature},
		{name: "standard no headers", scheme: SchemeStandard, secrets: []string{stdSec}, header: http.Header{}, want: ErrNoSignature},
		{name: "standard no id", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookID), want: ErrNoSignature},
		{name: "standard other id", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookID, "msg_2"), want: ErrBadSignature},
		{name: "standard no timestamp", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookTimestamp), want: ErrNoSignature},
		{name: "standard bad timestamp", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookTimestamp, "yesterday"), want: ErrTimestamp},
		{name: "standard huge timestamp", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookTimestamp, "9223372036854775807"), want: ErrTimestamp},
		{name: "standard timestamp changed within tolerance", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookTimestamp, "1700000001"), want: ErrBadSignature},
		{name: "standard 5m late", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, now: t0.Add(5 * time.Minute)},
		{name: "standard 5m early", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, now: t0.Add(-5 * time.Minute)},
		{name: "standard 5m1s late", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, now: t0.Add(5*time.Minute + time.Second), want: ErrTimestamp},
		{name: "standard 5m1s early", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, now: t0.Add(-5*time.Minute - time.Second), want: ErrTimestamp},
		{name: "standard custom tolerance", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, now: t0.Add(time.Hour), tol: 2 * time.Hour},
		{name: "standard custom tolerance exceeded", scheme: SchemeStandard, secrets: []string{stdSec}, header: std, now: t0.Add(31 * time.Second), tol: 30 * time.Second, want: ErrTimestamp},
		{name: "standard only v2", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookSignature, "v2,"+strings.TrimPrefix(stdSig, "v1,")), want: ErrBadSignature},
		{name: "standard among others", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookSignature, "v1a,xyz v1,AAAA "+stdSig+" junk")},
		{name: "standard split header lines", scheme: SchemeStandard, secrets: []string{stdSec}, header: with(std, HeaderWebhookSignature, "v1,AAAA", stdSig)},
		{name: "github ok", scheme: SchemeGitHub, secrets: []string{"s"}, header: gh},
		{name: "github uppercase hex", scheme: SchemeGitHub, secrets: []string{"s"}, header: with(gh, HeaderGitHubSignature, "sha256="+strings.ToUpper(strings.TrimPrefix(gh.Get(HeaderGitHubSignature), "sha256=")))},
		{name: "github tampered", scheme: SchemeGitHub, secrets: []string{"s"}, header: gh, body: tampered, want: ErrBadSignature},
		{name: "github wrong secret", scheme: SchemeGitHub, secrets: []string{"t"}, header: gh, want: ErrBadSignature},
		{name: "github missing", scheme: SchemeGitHub, secrets: []string{"s"}, header: http.Header{}, want: ErrNoSignature},
		{name: "github only separators", scheme: SchemeGitHub, secrets: []string{"s"}, header: with(gh, HeaderGitHubSignature, " , ,"), want: ErrNoSignature},
		{name: "github no sha256= prefix", scheme: SchemeGitHub, secrets: []string{"s"}, header: with(gh, HeaderGitHubSignature, strings.TrimPrefix(gh.Get(HeaderGitHubSignature), "sha256=")), want: ErrBadSignature},
		{name: "sha512 ok", scheme: SchemeSHA512Hex, secrets: []string{"s"}, header: hex512},
		{name: "sha512 uppercase", scheme: SchemeSHA512Hex, secrets: []string{"s"}, header: with(hex512, "X-Acme-Signature", strings.ToUpper(hex512.Get("X-Acme-Signature")))},
		{name: "sha512 spaces around commas", scheme: SchemeSHA512Hex, secrets: []string{"s"}, header: with(hex512, "X-Acme-Signature", "abcd , "+hex512.Get("X-Acme-Signature")+" ")},
		{name: "sha512 under another prefix", scheme: SchemeSHA512Hex, secrets: []string{"s"}, header: http.Header{"X-Other-Signature": {hex512.Get("X-Acme-Signature")}}, want: ErrNoSignature},
		{name: "sha512 tampered", scheme: SchemeSHA512Hex, secrets: []string{"s"}, header: hex512, body: tampered, want: ErrBadSignature},
		{name: "sha256-base64 ok", scheme: SchemeSHA256Base64, secrets: []string{"s"}, header: b64},
		{name: "sha256-base64 split header lines", scheme: SchemeSHA256Base64, secrets: []string{"s"}, header: with(b64, "X-Acme-Signature", "v1=AAAA", b64.Get("X-Acme-Signature"))},
		{name: "sha256-base64 case matters", scheme: SchemeSHA256Base64, secrets: []string{"s"}, header: with(b64, "X-Acme-Signature", strings.ToLower(b64.Get("X-Acme-Signature"))), want: ErrBadSignature},
		{name: "sha256-base64 tampered", scheme: SchemeSHA256Base64, secrets: []string{"s"}, header: b64, body: tampered, want: ErrBadSignature},
		{name: "scheme mismatch", scheme: SchemeSHA256Base64, secrets: []string{"s"}, header: hex512, want: ErrBadSignature},
		{name: "unknown scheme", scheme: "md5", secrets: []string{"s"}, header: b64, want: ErrScheme},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, now := tc.body, tc.now
			if body == nil {
				body = testBody
			}
			if now.IsZero() {
				now = t0
			}
			err := Verify(VerifyParams{Scheme: tc.scheme, HeaderPrefix: "X-Acme", Secrets: tc.secrets, Header: tc.header,
				Body: body, Now: now, Tolerance: tc.tol})
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scheme, header, sep string
		secrets             []string
		unrelated           string
	}{
		{SchemeStandard, "Webhook-Signature", " ", []string{stdSec, stdSec2}, "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key of thirty-two bytes!"))},
		{SchemeSHA256Base64, "X-Herald-Signature", ",", []string{"new", "old"}, "other"},
		{SchemeSHA512Hex, "X-Herald-Signature", ",", []string{"new", "old"}, "other"},
		{SchemeGitHub, "X-Hub-Signature-256", ",", []string{"new", "old"}, "other"},
	}
	for _, tc := range tests {
		t.Run(tc.scheme, func(t *testing.T) {
			t.Parallel()
			h, err := Sign(SignParams{Scheme: tc.scheme, Secrets: tc.secrets, MsgID: "m", Timestamp: t0, Body: testBody})
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(h.Get(tc.header), tc.sep)
			if len(parts) != 2 || parts[0] == parts[1] {
				t.Fatalf("%s = %q: want 2 distinct signatures separated by %q", tc.header, h.Get(tc.header), tc.sep)
			}
			for i, s := range tc.secrets {
				one, _ := Sign(SignParams{Scheme: tc.scheme, Secrets: []string{s}, MsgID: "m", Timestamp: t0, Body: testBody})
				if one.Get(tc.header) != parts[i] {
					t.Errorf("signature %d = %q, want the one secret %d gives alone, %q", i, parts[i], i, one.Get(tc.header))
				}
				if err := Verify(VerifyParams{Scheme: tc.scheme, Secrets: []string{s}, Header: h, Body: testBody, Now: t0}); err != nil {
					t.Errorf("secret %d alone does not verify: %v", i, err)
				}
			}
			err = Verify(VerifyParams{Scheme: tc.scheme, Secrets: []string{tc.unrelated}, Header: h, Body: testBody, Now: t0})
			if !errors.Is(err, ErrBadSignature) {
				t.Errorf("an unrelated secret: %v, want ErrBadSignature", err)
			}
		})
	}
}

// The reference implementation of Standard Webhooks must accept what Sign
// sends, with each secret of a rotation, and Verify must accept what it signs.
func TestStandardAgainstReferenceLibrary(t *testing.T) {
	t.Parallel()
	now := time.Now() // the reference library checks the timestamp against the clock
	body := []byte(`{"id":"evt_2","event_type":"user-payroll-submitted"}`)
	h, err := Sign(SignParams{Scheme: SchemeStandard, Secrets: []string{stdSec, stdSec2}, MsgID: "msg_abc", Timestamp: now, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{stdSec, stdSec2} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("reference library rejects our signature for secret %d: %v", i, err)
		}
		if err := wh.Verify(append(body, ' '), h); err == nil {
			t.Errorf("reference library accepts a changed body for secret %d", i)
		}
		ref, err := wh.Sign("msg_abc", now, body)
		if err != nil {
			t.Fatal(err)
		}
		rh := http.Header{}
		rh.Set(HeaderWebhookID, "msg_abc")
		rh.Set(HeaderWebhookTimestamp, h.Get(HeaderWebhookTimestamp))
		rh.Set(HeaderWebhookSignature, ref)
		if err := Verify(VerifyParams{Scheme: SchemeStandard, Secrets: []string{s}, Header: rh, Body: body, Now: now}); err != nil {
			t.Errorf("Verify rejects the reference signature for secret %d: %v", i, err)
		}
	}
}

// TestVerifyComparesInConstantTime reads the package's source: every
// function that verifies must compare with hmac.Equal or
// subtle.ConstantTimeCompare, never with ==, bytes.Equal or the like, which
// stop at the first differing byte and so leak how much of a guess was right.
func TestVerifyComparesInConstantTime(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	consts := map[string]bool{"nil": true, "true": true, "false": true}
	var funcs []*ast.FuncDecl
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				if d.Tok == token.CONST {
					for _, s := range d.Specs {
						for _, n := range s.(*ast.ValueSpec).Names {
							consts[n.Name] = true
						}
					}
				}
			case *ast.FuncDecl:
				if strings.HasPrefix(strings.ToLower(d.Name.Name), "verify") {
					funcs = append(funcs, d)
				}
			}
		}
	}
	if len(funcs) < 3 {
		t.Fatalf("found %d verify functions, want Verify, verifyList and verifyStandard at least", len(funcs))
	}
	constant := func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.BasicLit:
			return true
		case *ast.Ident:
			return consts[e.Name]
		case *ast.CallExpr: // len(x) and the like yield numbers, not secrets
			id, ok := e.Fun.(*ast.Ident)
			return ok && (id.Name == "len" || id.Name == "cap")
		}
		return false
	}
	banned := map[string]bool{"bytes.Equal": true, "bytes.Compare": true, "bytes.HasPrefix": true, "bytes.Contains": true,
		"strings.Compare": true, "strings.EqualFold": true, "strings.Contains": true, "strings.HasPrefix": true,
		"slices.Equal": true, "slices.Contains": true, "slices.Index": true, "reflect.DeepEqual": true}
	for _, fn := range funcs {
		constantTime := false
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && !constant(n.X) && !constant(n.Y) {
					t.Errorf("%s: %s compares two variables with %s", fset.Position(n.Pos()), fn.Name.Name, n.Op)
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok {
						name := pkg.Name + "." + sel.Sel.Name
						if banned[name] {
							t.Errorf("%s: %s calls %s", fset.Position(n.Pos()), fn.Name.Name, name)
						}
						constantTime = constantTime || name == "hmac.Equal" || name == "subtle.ConstantTimeCompare"
					}
				}
			}
			return true
		})
		if fn.Name.Name != "Verify" && !constantTime {
			t.Errorf("%s never calls hmac.Equal or subtle.ConstantTimeCompare", fn.Name.Name)
		}
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{SchemeStandard, SchemeSHA256Base64, SchemeSHA512Hex, SchemeGitHub} {
		t.Run("generate "+scheme, func(t *testing.T) {
			t.Parallel()
			s, err := GenerateSecret(scheme)
			if err != nil {
				t.Fatal(err)
			}
			s2, _ := GenerateSecret(scheme)
			if s == s2 {
				t.Error("two generated secrets are equal")
			}
			if err := ValidSecret(scheme, s); err != nil {
				t.Errorf("generated secret is not valid: %v", err)
			}
			if scheme == SchemeStandard {
				key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
				if !strings.HasPrefix(s, "whsec_") || err != nil || len(key) != 32 {
					t.Errorf("standard secret %q is not whsec_ + base64 of 32 bytes", s)
				}
				return
			}
			if b, err := hex.DecodeString(s); err != nil || len(b) != 32 || strings.ToLower(s) != s {
				t.Errorf("secret %q is not 64 lower-case hex characters", s)
			}
		})
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		scheme, secret string
		ok             bool
	}{
		{SchemeStandard, "whsec_" + b64(24), true},
		{SchemeStandard, "whsec_" + b64(64), true},
		{SchemeStandard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{SchemeStandard, "whsec_" + b64(23), false},
		{SchemeStandard, "whsec_" + b64(65), false},
		{SchemeStandard, b64(32), false},
		{SchemeStandard, "whsec_" + strings.TrimRight(b64(32), "="), false},
		{SchemeStandard, "whsec_!!!!", false},
		{SchemeStandard, "", false},
		{SchemeGitHub, "x", true},
		{SchemeGitHub, "with spaces, commas = and ünïcode", true},
		{SchemeGitHub, strings.Repeat("x", 1024), true},
		{SchemeGitHub, strings.Repeat("x", 1025), false},
		{SchemeGitHub, "", false},
		{SchemeSHA512Hex, "a\nb", false},
		{SchemeSHA256Base64, "a\x00b", false},
		{SchemeSHA256Base64, "a\u0085b", false},
		{SchemeSHA256Base64, "a\x7fb", false},
		{"md5", "x", false},
	}
	for _, tc := range tests {
		if err := ValidSecret(tc.scheme, tc.secret); (err == nil) != tc.ok {
			t.Errorf("ValidSecret(%q, %.20q) = %v, want ok=%v", tc.scheme, tc.secret, err, tc.ok)
		}
	}
	if _, err := GenerateSecret("md5"); !errors.Is(err, ErrScheme) {
		t.Errorf("GenerateSecret(md5) = %v, want ErrScheme", err)
	}
	for _, s := range []string{"standard", "sha256-base64", "sha512-hex", "github"} {
		if !ValidScheme(s) {
			t.Errorf("ValidScheme(%q) = false", s)
		}
	}
	for _, s := range []string{"", "Standard", "sha256", "hmac"} {
		if ValidScheme(s) {
			t.Errorf("ValidScheme(%q) = true", s)
		}
	}
}

func TestHeaderNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{SignatureHeader("X-Teal"), "X-Teal-Signature"},
		{EncryptionIVHeader("X-Teal"), "X-Teal-Encryption-IV"},
		{SourceHeader("x-taxbit"), "x-taxbit-Source"},
		{SignatureHeader(DefaultHeaderPrefix), "X-Herald-Signature"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}

// TestCanonicalHeaderNames: the header names Sign sets directly are the
// canonical forms of the scheme's header constants.
func TestCanonicalHeaderNames(t *testing.T) {
	for name, canonical := range map[string]string{
		HeaderWebhookID: canonicalWebhookID, HeaderWebhookTimestamp: canonicalWebhookTimestamp,
		HeaderWebhookSignature: canonicalWebhookSignature,
	} {
		if got := textproto.CanonicalMIMEHeaderKey(name); got != canonical {
			t.Errorf("canonical %q = %q, Sign uses %q", name, got, canonical)
		}
	}
}

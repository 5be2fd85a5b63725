package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/webhook"
)

var (
	listenKey    = []byte("0123456789abcdef0123456789abcdef")
	listenKeyB64 = base64.StdEncoding.EncodeToString(listenKey)
	listenStdSec = "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
)

// startListen runs runListen in a goroutine and returns its URL and a channel
// of printed blocks (each ending with the "→ answered" line). Cleanup stops
// it and checks that it returned nil.
func startListen(tb testing.TB, args ...string) (url string, blocks <-chan string) {
	tb.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runListen(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.Close()
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("runListen: %v", err)
		}
	})
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		tb.Fatalf("runListen printed nothing: %v", <-done)
	}
	url, ok := strings.CutPrefix(lines.Text(), "listening on ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		tb.Fatalf("first line %q, want listening on http://127.0.0.1:<port>", lines.Text())
	}
	out := make(chan string, 16)
	go func() {
		defer close(out)
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
			if strings.HasPrefix(lines.Text(), "→ answered") {
				out <- b.String()
				b.Reset()
			}
		}
	}()
	return url, out
}

func wantLines(tb testing.TB, got string, want ...string) {
	tb.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			tb.Errorf("output lacks %q:\n%s", w, got)
		}
	}
}

// A signed, encrypted delivery made with the kit, as Herald sends it, is
// printed verified and decrypted, for every scheme.
func TestListenVerifiesAndDecrypts(t *testing.T) {
	t.Parallel()
	plain := []byte(`{"id":"evt_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"user-payroll-submitted","version":"1.0","data":{"n":1}}`)
	tests := []struct {
		scheme, secret, prefix string
	}{
		{webhook.SchemeStandard, listenStdSec, "X-Herald"},
		{webhook.SchemeSHA256Base64, "my-secret", "X-Taxbit"},
		{webhook.SchemeSHA512Hex, "s3cret", "X-Teal"},
		{webhook.SchemeGitHub, "s3cret", "X-Herald"},
	}
	for _, tc := range tests {
		t.Run(tc.scheme, func(t *testing.T) {
			t.Parallel()
			url, blocks := startListen(t, "--secret", tc.secret, "--scheme", tc.scheme,
				"--header-prefix", tc.prefix, "--encryption-key", listenKeyB64, "--status", "202")

			body, iv, err := webhook.Encrypt(listenKey, plain)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := webhook.Sign(webhook.SignParams{Scheme: tc.scheme, HeaderPrefix: tc.prefix, Secrets: []string{"other-0123456789", tc.secret},
				MsgID: "evt_1", Timestamp: time.Now(), Body: body})
			if tc.scheme == webhook.SchemeStandard {
				sig, err = webhook.Sign(webhook.SignParams{Scheme: tc.scheme, Secrets: []string{tc.secret}, MsgID: "evt_1", Timestamp: time.Now(), Body: body})
			}
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequest("POST", url+"/hook?x=1", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = sig
			req.Header.Set(webhook.EncryptionIVHeader(tc.prefix), iv)
			req.Header.Set("Content-Type", "text/plain")
			req.Header.Set("X-Trace-Id", "1a0f28b1-092d-4001-8ca1-17d91037610b")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 202 {
				t.Errorf("status %d, want 202", resp.StatusCode)
			}
			got, ok := <-blocks
			if !ok {
				t.Fatal("nothing printed")
			}
			wantLines(t, got,
				" POST /hook?x=1\n",
				"signature: OK ("+tc.scheme+")\n",
				"decryption: OK\n",
				"message: event, id evt_1, types user-payroll-submitted\n",
				"{\n  \"id\": \"evt_1\",\n",
				"  \"event_type\": \"user-payroll-submitted\",\n",
				"X-Trace-Id: 1a0f28b1-092d-4001-8ca1-17d91037610b\n",
				"Host: 127.0.0.1:",
				"→ answered 202\n",
			)
			if i, j := strings.Index(got, "Content-Type:"), strings.Index(got, "X-Trace-Id:"); i < 0 || j < i {
				t.Errorf("headers not sorted:\n%s", got)
			}
		})
	}
}

// The printed block for requests that do not verify or decrypt, through the
// handler alone (no network), with a fixed clock.
func TestListenHandler(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	plain := []byte(`{"timestamp":"2024-03-01T12:00:00.000000Z","data":[{"id":"a","event_type":"x.one"},{"id":"b","event_type":"x.two"}]}`)
	enc, iv, err := webhook.Encrypt(listenKey, plain)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(scheme, secret string, ts time.Time, body []byte) http.Header {
		h, err := webhook.Sign(webhook.SignParams{Scheme: scheme, Secrets: []string{secret}, MsgID: "bat_1", Timestamp: ts, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		cfg    listenConfig
		method string
		body   []byte
		header http.Header
		want   []string
		reject []string
	}{
		{name: "no secret", cfg: listenConfig{Scheme: webhook.SchemeStandard}, body: plain, header: sign(webhook.SchemeStandard, listenStdSec, now, plain),
			want: []string{"signature: not checked: no secret given", "message: batch of 2, id bat_1, types x.one, x.two", "Webhook-Signature: v1,"}, reject: []string{"signature: OK"}},
		{name: "standard ok", cfg: listenConfig{Scheme: webhook.SchemeStandard, Secrets: []string{listenStdSec}}, body: plain, header: sign(webhook.SchemeStandard, listenStdSec, now.Add(-time.Minute), plain),
			want: []string{"signature: OK (standard)", "── 2024-03-01T12:00:00.000000Z POST /hook\n"}},
		{name: "standard stale", cfg: listenConfig{Scheme: webhook.SchemeStandard, Secrets: []string{listenStdSec}}, body: plain, header: sign(webhook.SchemeStandard, listenStdSec, now.Add(-time.Hour), plain),
			want: []string{"signature: FAILED: timestamp invalid or outside the tolerance (scheme standard)"}},
		{name: "wrong secret", cfg: listenConfig{Scheme: webhook.SchemeGitHub, Secrets: []string{"right"}}, body: plain, header: sign(webhook.SchemeGitHub, "wrong", now, plain),
			want: []string{"signature: FAILED: no signature matches (scheme github)"}},
		{name: "another scheme's headers", cfg: listenConfig{Scheme: webhook.SchemeSHA512Hex, Secrets: []string{"s"}}, body: plain, header: sign(webhook.SchemeGitHub, "s", now, plain),
			want: []string{"signature: FAILED: signature headers missing (scheme sha512-hex)"}},
		{name: "decrypt without IV", cfg: listenConfig{Scheme: webhook.SchemeGitHub, Secrets: []string{"s"}, Key: listenKey}, body: enc, header: sign(webhook.SchemeGitHub, "s", now, enc),
			want: []string{"signature: OK (github)", "decryption: FAILED: body does not decrypt: no IV header; the body as received:\n" + string(enc) + "\n"}},
		{name: "decrypt with the wrong key", cfg: listenConfig{Scheme: webhook.SchemeGitHub, Key: []byte("another key of thirty-two bytes!")}, body: enc,
			header: http.Header{"X-Herald-Encryption-Iv": {iv}}, want: []string{"decryption: FAILED: body does not decrypt: wrong key"}},
		{name: "encrypted without a key", cfg: listenConfig{Scheme: webhook.SchemeGitHub}, body: enc, header: http.Header{"X-Herald-Encryption-Iv": {iv}},
			want: []string{"decryption: not done: the body is encrypted (X-Herald-Encryption-IV is set); give --encryption-key", string(enc)}},
		{name: "decrypted batch", cfg: listenConfig{Scheme: webhook.SchemeGitHub, Key: listenKey}, body: enc, header: with(sign(webhook.SchemeGitHub, "s", now, enc), "X-Herald-Encryption-IV", iv),
			want: []string{"decryption: OK", "message: batch of 2, id (none), types x.one, x.two", "  \"data\": [\n"}},
		{name: "not JSON", cfg: listenConfig{Scheme: webhook.SchemeGitHub}, body: []byte("hello\n"), want: []string{"\nhello\n→ answered"}},
		{name: "binary", cfg: listenConfig{Scheme: webhook.SchemeGitHub}, body: []byte{0xff, 0x00}, want: []string{"\"\\xff\\x00\"\n"}},
		{name: "GET", cfg: listenConfig{Scheme: webhook.SchemeGitHub}, method: "GET", want: []string{" GET /hook\n", "(empty body)\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.HeaderPrefix, cfg.Status = "X-Herald", 409
			var out strings.Builder
			h := newListenHandler(&cfg, &out, func() time.Time { return now })
			method := tc.method
			if method == "" {
				method = "POST"
			}
			req := httptest.NewRequest(method, "/hook", strings.NewReader(string(tc.body)))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 409 {
				t.Errorf("answered %d, want --status 409", rec.Code)
			}
			got := out.String()
			wantLines(t, got, append(tc.want, "Host: example.com\n", "→ answered 409\n")...)
			for _, r := range tc.reject {
				if strings.Contains(got, r) {
					t.Errorf("output has %q:\n%s", r, got)
				}
			}
		})
	}
}

func TestParseListen(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HERALD_LISTEN_ADDR":           "127.0.0.1:7000",
		"HERALD_LISTEN_SECRET":         "env-secret",
		"HERALD_LISTEN_SCHEME":         "github",
		"HERALD_LISTEN_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")),
		"HERALD_HEADER_PREFIX":         "X-Env",
		"HERALD_LISTEN_STATUS":         "503",
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    listenConfig
		wantErr error  // errUsage or errHelp
		errText string // an error naming this
		hidden  string // never in the error
	}{
		{name: "defaults", want: listenConfig{Addr: "127.0.0.1:9000", Scheme: "standard", HeaderPrefix: "X-Herald", Status: 200}},
		{name: "environment", env: env, want: listenConfig{Addr: "127.0.0.1:7000", Scheme: "github", HeaderPrefix: "X-Env", Status: 503,
			Secrets: []string{"env-secret"}, Key: []byte("fedcba9876543210fedcba9876543210")}},
		{name: "flags beat the environment", env: env,
			args: []string{"--addr", ":0", "--secret", "a", "--secret", "b", "--scheme", "sha512-hex", "--encryption-key", listenKeyB64, "--header-prefix", "X-Teal", "--status", "204"},
			want: listenConfig{Addr: ":0", Scheme: "sha512-hex", HeaderPrefix: "X-Teal", Status: 204, Secrets: []string{"a", "b"}, Key: listenKey}},
		{name: "bad scheme", args: []string{"--scheme", "md5"}, errText: "--scheme"},
		{name: "status below 200", args: []string{"--status", "101"}, errText: "--status"},
		{name: "status over 599", args: []string{"--status", "600"}, errText: "--status"},
		{name: "status in env not a number", env: map[string]string{"HERALD_LISTEN_STATUS": "ok"}, errText: "--status"},
		{name: "short key", args: []string{"--encryption-key", "c2hvcnQ="}, errText: "--encryption-key", hidden: "c2hvcnQ="},
		{name: "standard secret without whsec_", args: []string{"--secret", "plain-secret-value"}, errText: "--secret 1", hidden: "plain-secret-value"},
		{name: "second secret bad", args: []string{"--scheme", "github", "--secret", "ok", "--secret", "bad\x01secret"}, errText: "--secret 2", hidden: "bad\x01secret"},
		{name: "bad prefix", args: []string{"--header-prefix", "X Teal"}, errText: "--header-prefix"},
		{name: "empty prefix", args: []string{"--header-prefix", ""}, errText: "--header-prefix"},
		{name: "extra argument", args: []string{"now"}, errText: "unexpected argument"},
		{name: "unknown flag", args: []string{"--port", "9000"}, wantErr: errUsage},
		{name: "help", args: []string{"--help"}, wantErr: errHelp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseListen(tc.args, io.Discard, func(k string) string { return tc.env[k] })
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("error %v, want one naming %q", err, tc.errText)
				}
				if tc.hidden != "" && strings.Contains(err.Error(), tc.hidden) {
					t.Errorf("error %q shows the secret or key", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if got.Addr != tc.want.Addr || got.Scheme != tc.want.Scheme || got.HeaderPrefix != tc.want.HeaderPrefix || got.Status != tc.want.Status ||
				strings.Join(got.Secrets, "|") != strings.Join(tc.want.Secrets, "|") || string(got.Key) != string(tc.want.Key) {
				t.Errorf("got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

// --help shows the environment's plain settings but never its secret or key.
func TestListenHelpHidesSecrets(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString(listenKey)
	env := map[string]string{"HERALD_LISTEN_SECRET": "whsec_topsecretvalue", "HERALD_LISTEN_ENCRYPTION_KEY": key, "HERALD_LISTEN_ADDR": "127.0.0.1:7777"}
	var help strings.Builder
	if _, err := parseListen([]string{"--help"}, &help, func(k string) string { return env[k] }); !errors.Is(err, errHelp) {
		t.Fatalf("error %v, want errHelp", err)
	}
	wantLines(t, help.String(), "-secret", "-encryption-key", "127.0.0.1:7777", "HERALD_LISTEN_SECRET")
	if strings.Contains(help.String(), "topsecretvalue") || strings.Contains(help.String(), key) {
		t.Errorf("--help shows a secret:\n%s", help.String())
	}
}

func TestListenAddressInUse(t *testing.T) {
	t.Parallel()
	url, _ := startListen(t)
	err := runListenEnv(context.Background(), []string{"--addr", strings.TrimPrefix(url, "http://")}, io.Discard, io.Discard, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "listen:") {
		t.Errorf("second listener on %s: %v, want an error", url, err)
	}
}

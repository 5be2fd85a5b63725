package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// secRandom returns n random bytes.
func secRandom(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// secNeedle is a secret in one of its written forms.
type secNeedle struct {
	name string
	b    []byte
}

// secForms returns the forms a key of raw bytes may be written in.
func secForms(name string, raw []byte) []secNeedle {
	return []secNeedle{
		{name + " (raw)", raw},
		{name + " (base64)", []byte(base64.StdEncoding.EncodeToString(raw))},
		{name + " (base64 raw)", []byte(base64.RawStdEncoding.EncodeToString(raw))},
		{name + " (base64 url)", []byte(base64.RawURLEncoding.EncodeToString(raw))},
		{name + " (hex)", []byte(hex.EncodeToString(raw))},
		{name + " (HEX)", []byte(strings.ToUpper(hex.EncodeToString(raw)))},
	}
}

// secGrepDir reads every file under dir and reports each needle found in a
// file other than those skip names; it returns the concatenated contents.
func secGrepDir(tb testing.TB, dir string, needles []secNeedle, skip map[string]bool) []byte {
	tb.Helper()
	var all []byte
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if os.IsNotExist(err) {
				return nil // a -wal or -shm file that went away
			}
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, fmt.Sprintf("%s (%d bytes)", rel, len(b)))
		if skip[rel] {
			return nil
		}
		all = append(all, b...)
		for _, n := range needles {
			if bytes.Contains(b, n.b) {
				tb.Errorf("%s holds the %s", rel, n.name)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("data directory: %s", strings.Join(files, ", "))
	return all
}

// TestSecurityNoSecretsAtRest creates signing secrets (given, generated and
// rotated), an encryption key, a tenant API key and uses the admin key,
// delivers, stops herald, then reads every file of the data directory: no
// secret or key is there in any form, the master key is in a mode-0600
// file in a directory only its owner may read, and nothing is in herald's
// logs either.
func TestSecurityNoSecretsAtRest(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	dir := filepath.Join(t.TempDir(), "data") // herald creates it
	h := secStart(t, dir, nil, "--allow-private-networks", "--log-level", "debug")
	if st, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	} else if perm := st.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("herald created the data directory with mode %04o; want no access for group and others", perm)
	}

	marker := "sec-marker-" + hex.EncodeToString(secRandom(8))
	var tenantKey struct {
		Key string `json:"key"`
	}
	h.mustDo(201, "POST", "/tenants", map[string]any{"id": "acme", "name": "Acme"}, nil)
	h.mustDo(201, "POST", "/tenants/acme/keys", nil, &tenantKey)
	if !strings.HasPrefix(tenantKey.Key, "hk_") || len(tenantKey.Key) < 20 {
		t.Fatalf("tenant key %q", tenantKey.Key)
	}
	asTenant := func(want int, method, path string, body, out any) {
		t.Helper()
		var raw json.RawMessage
		if code := h.doKey(tenantKey.Key, method, path, body, &raw); code != want {
			t.Fatalf("%s %s as acme: %d, want %d: %s", method, path, code, want, raw)
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				t.Fatal(err)
			}
		}
	}

	stdKey := secRandom(32)
	stdSecret := "whsec_" + base64.StdEncoding.EncodeToString(stdKey)
	encKey := secRandom(32)
	ghSecret := hex.EncodeToString(secRandom(24))
	ghRotated := hex.EncodeToString(secRandom(24))
	adminSecret := hex.EncodeToString(secRandom(24))

	var stdSub, ghSub, genSub map[string]any
	asTenant(201, "POST", "/webhooks", map[string]any{"url": rc.URL(), "events": []string{"secret.test"},
		"name": marker, "signing_secret": stdSecret, "encryption_key": base64.StdEncoding.EncodeToString(encKey)}, &stdSub)
	asTenant(201, "POST", "/webhooks", map[string]any{"url": rc.URL(), "events": []string{"secret.test"},
		"signature_scheme": "github", "signing_secret": ghSecret}, &ghSub)
	asTenant(201, "POST", "/webhooks", map[string]any{"url": rc.URL(), "events": []string{"secret.test"},
		"signature_scheme": "sha256-base64"}, &genSub)
	genSecret, _ := genSub["signing_secret"].(string)
	if len(genSecret) < 32 {
		t.Fatalf("generated secret %q", genSecret)
	}
	var rotated map[string]any
	asTenant(200, "POST", "/webhooks/"+ghSub["id"].(string)+"/rotate-secret",
		map[string]any{"signing_secret": ghRotated, "grace": "24h"}, &rotated)
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"secret.test"},
		"signature_scheme": "sha512-hex", "signing_secret": adminSecret})

	var pub map[string]any
	asTenant(202, "POST", "/events", map[string]any{"event_type": "secret.test", "data": map[string]any{"n": 1}}, &pub)
	h.publish(map[string]any{"event_type": "secret.test", "data": map[string]any{"n": 2}})
	reqs := rc.waitFor(t, 20*time.Second, "4 deliveries", func(r []received) bool { return len(r) >= 4 })
	sawIV := false
	for _, r := range reqs {
		sawIV = sawIV || r.Header.Get("X-Herald-Encryption-Iv") != ""
	}
	if !sawIV {
		t.Error("no encrypted delivery arrived")
	}

	needles := []secNeedle{
		{"standard signing secret", []byte(stdSecret)},
		{"github signing secret", []byte(ghSecret)},
		{"rotated github signing secret", []byte(ghRotated)},
		{"generated sha256-base64 signing secret", []byte(genSecret)},
		{"admin's sha512-hex signing secret", []byte(adminSecret)},
		{"admin API key", []byte(adminKey)},
		{"tenant API key", []byte(tenantKey.Key)},
		{"tenant API key's random part", []byte(strings.TrimPrefix(tenantKey.Key, "hk_"))},
	}
	needles = append(needles, secForms("standard secret's key", stdKey)...)
	needles = append(needles, secForms("encryption key", encKey)...)

	// While herald runs (the WAL holds the recent writes) and after it has
	// stopped (the WAL checkpointed into the database).
	running := secGrepDir(t, dir, needles, map[string]bool{"master.key": true})
	if code := h.term(30 * time.Second); code != 0 {
		t.Fatalf("herald exited %d after SIGTERM", code)
	}
	stopped := secGrepDir(t, dir, needles, map[string]bool{"master.key": true})
	// The grep can fail: what is not secret is there to be found.
	if !bytes.Contains(running, []byte(marker)) && !bytes.Contains(stopped, []byte(marker)) {
		t.Fatalf("the subscription name %q is in no file of the data directory: the grep reads the wrong files", marker)
	}

	st, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatalf("master key file: %v", err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("master.key has mode %04o, want 0600", mode)
	}
	mk, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	master, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(mk)))
	if err != nil || len(master) != 32 {
		t.Fatalf("master.key does not hold base64 of 32 bytes: %v", err)
	}
	for _, n := range needles {
		if bytes.Contains(mk, n.b) {
			t.Errorf("master.key holds the %s", n.name)
		}
	}
	// The master key is in its file only.
	secGrepDir(t, dir, secForms("master key", master), map[string]bool{"master.key": true})

	logs := h.out.String()
	for _, n := range append(needles, secForms("master key", master)...) {
		if len(n.b) >= 16 && strings.Contains(logs, string(n.b)) {
			t.Errorf("herald's output holds the %s", n.name)
		}
	}
}

// TestSecurityAPILimits: a body one byte over the limit answers 413 and
// stores nothing, however it is sent; herald reads little of a huge body
// before answering; JSON nested 65 deep answers 400; a 100 KiB header line
// answers 431 or closes the connection.
func TestSecurityAPILimits(t *testing.T) {
	t.Parallel()
	const limit = 1024
	h := startHerald(t, "", "--max-event-bytes", strconv.Itoa(limit))

	event := func(id string, size int) []byte {
		head := `{"id":"` + id + `","event_type":"limit.test","data":{"pad":"`
		tail := `"}}`
		return []byte(head + strings.Repeat("p", size-len(head)-len(tail)) + tail)
	}
	post := func(body io.Reader, length int64) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("POST", h.URL+"/events", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length // -1: unknown, sent chunked
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST /events: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	if code, b := post(bytes.NewReader(event("at-limit", limit)), limit); code != 202 {
		t.Errorf("a body of exactly %d bytes: %d %s, want 202", limit, code, b)
	}
	if code, b := post(bytes.NewReader(event("over-limit", limit+1)), limit+1); code != 413 {
		t.Errorf("a body of %d bytes: %d %s, want 413", limit+1, code, b)
	}
	if code, b := post(io.MultiReader(bytes.NewReader(event("over-chunked", limit+1))), -1); code != 413 {
		t.Errorf("a chunked body of %d bytes: %d %s, want 413", limit+1, code, b)
	}
	for _, id := range []string{"over-limit", "over-chunked"} {
		if code := h.do("GET", "/events/"+id, nil, nil); code != 404 {
			t.Errorf("GET /events/%s after 413: %d, want 404", id, code)
		}
	}

	// A 256 MiB chunked body, made as it is read: herald answers 413 having
	// read about the limit, so the client is stopped long before the end.
	huge := &secLazyBody{head: []byte(`{"event_type":"limit.test","data":"`), size: 256 << 20}
	code, b := secPostHuge(t, h, huge)
	if code != 413 && code != 0 {
		t.Errorf("a 256 MiB chunked body: %d %s, want 413", code, b)
	}
	if n := huge.read.Load(); n > secBufferBound() {
		t.Errorf("the client sent %d bytes of a body refused at %d", n, limit)
	}
	t.Logf("client sent %d bytes of the 256 MiB body before the answer (%d)", huge.read.Load(), code)

	// Nesting: 64 levels in all are accepted, 65 are not.
	deep := func(levels int) string {
		// The event object is the first level.
		return `{"event_type":"deep.test","data":` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `}`
	}
	var out map[string]any
	if code := h.do("POST", "/events", deep(64), &out); code != 202 {
		t.Errorf("JSON 64 deep: %d %v, want 202", code, out)
	}
	out = nil
	if code := h.do("POST", "/events", deep(65), &out); code != 400 {
		t.Errorf("JSON 65 deep: %d %v, want 400", code, out)
	}
	out = nil
	deepSub := `{"url":"https://hooks.example.com/x","events":["a"],"headers":{"X":"y"},"name":` +
		`"n","delivery":{"retry":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}`
	if code := h.do("POST", "/webhooks", deepSub, &out); code != 400 {
		t.Errorf("POST /webhooks nested 66 deep: %d %v, want 400", code, out)
	}

	// A header line of 100 KiB.
	status := secRawRequest(t, h, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 100<<10)+"\r\n\r\n")
	if status != 431 && status != 0 {
		t.Errorf("a 100 KiB header line: status %d, want 431 or a closed connection", status)
	}
	h.mustDo(200, "GET", "/healthz", nil, nil)
}

// secLazyBody is a request body of size bytes, made as it is read: head,
// then 'x' (inside a JSON string), counting what was read.
type secLazyBody struct {
	head []byte
	size int64
	read atomic.Int64
}

func (b *secLazyBody) Read(p []byte) (int, error) {
	off := b.read.Load()
	if off >= b.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), b.size-off))
	for i := range n {
		if j := off + int64(i); j < int64(len(b.head)) {
			p[i] = b.head[j]
		} else {
			p[i] = 'x'
		}
	}
	b.read.Add(int64(n))
	return n, nil
}

// secPostHuge posts a lazy body chunked; a reset connection counts as
// refused (status 0).
func secPostHuge(tb testing.TB, h *herald, body io.Reader) (int, []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", h.URL+"/events", body)
	if err != nil {
		tb.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			tb.Fatalf("POST /events with a huge body: %v", err)
		}
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// secRawRequest writes raw to the API and returns the answer's status, or 0
// when the connection is closed without one.
func secRawRequest(tb testing.TB, h *herald, raw string) int {
	tb.Helper()
	u, err := url.Parse(h.URL)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	go func() { _, _ = io.WriteString(c, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			tb.Fatalf("no answer and no close within 15s: %v", err)
		}
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSecurityHeaderReadTimeout sends request headers one byte every half
// second, forever: the API closes the connection once its header-read
// timeout (10s) has passed, however steadily the bytes come. It waits for
// that timeout, so -short skips it.
func TestSecurityHeaderReadTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the API's 10s header-read timeout")
	}
	t.Parallel()
	h := startHerald(t, "")
	u, err := url.Parse(h.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			return
		}
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("s")); err != nil {
					return
				}
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(40 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the API still held the connection after 40s of trickled headers")
	}
	if n != 0 {
		t.Logf("the API answered with %d bytes before closing", n)
	}
}

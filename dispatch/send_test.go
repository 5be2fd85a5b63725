package dispatch

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// roundTripFunc is a fake transport.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func okResponse(r *http.Request) *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}
}

// capture is an endpoint that keeps what it receives.
type capture struct {
	mu     sync.Mutex
	header http.Header
	body   []byte
	hits   int
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.header, c.body = r.Header.Clone(), b
	c.hits++
	c.mu.Unlock()
	w.Write([]byte("thanks"))
}

func testDispatcher(tb testing.TB, mod func(*Config)) *Dispatcher {
	tb.Helper()
	cfg := Config{Store: newFakeStore(), Logger: testLogger(tb), AllowPrivateNetworks: true}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// singleJob is a job of one delivery of a new event with data.
func singleJob(sub *herald.Subscription, data string) job {
	ev := herald.Event{TenantID: sub.TenantID, ID: herald.NewID(herald.PrefixEvent), EventType: "job.status",
		Version: "1.0", Data: json.RawMessage(data), CreateTime: bodyTime}
	d := herald.Delivery{ID: herald.NewID(herald.PrefixDelivery), SubscriptionID: sub.ID, EventID: ev.ID,
		TraceID: herald.NewUUID()}
	return job{items: []item{{LeasedDelivery: herald.LeasedDelivery{Delivery: d, Event: ev}}}}
}

func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		scheme  string
		sigName string
	}{
		{"standard", "standard", "Webhook-Signature"},
		{"sha256-base64", "sha256-base64", "X-Herald-Signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c capture
			srv := httptest.NewServer(&c)
			defer srv.Close()
			d := testDispatcher(t, nil)
			sub := testSub(srv.URL + "/hook")
			sub.SignatureScheme = tt.scheme
			if tt.scheme != "standard" {
				sub.Secrets = []herald.Secret{{Value: "s3cret"}}
			}
			sub.Headers = map[string]string{
				"X-Customer-Tag":     "abc",
				"content-type":       "text/evil",
				"User-Agent":         "evil",
				"X-Herald-Signature": "forged",
				"webhook-signature":  "forged",
				"X-Trace-Id":         "forged",
			}
			j := singleJob(&sub, `{"job":{}}`)
			res := d.attempt(context.Background(), &sub, j)
			if !res.success() || res.status != 200 || res.body != "thanks" {
				t.Fatalf("attempt = %+v, want a 200 success", res)
			}
			h := c.header
			want := map[string]string{
				"Content-Type":    "application/json",
				"User-Agent":      "Herald/" + herald.Version,
				"X-Trace-Id":      j.items[0].Delivery.TraceID,
				"X-Herald-Source": "webhook",
				"X-Customer-Tag":  "abc",
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if sig := h.Get(tt.sigName); sig == "" || strings.Contains(sig, "forged") {
				t.Errorf("signature header %s = %q", tt.sigName, sig)
			}
			if tt.scheme == "standard" {
				if got := h.Get("Webhook-Id"); got != j.items[0].Event.ID {
					t.Errorf("webhook-id = %q, want the event id %q", got, j.items[0].Event.ID)
				}
			}
			if h.Get("X-Herald-Encryption-Iv") != "" {
				t.Error("encryption IV header without an encryption key")
			}
			var env map[string]any
			if err := json.Unmarshal(c.body, &env); err != nil || env["id"] != j.items[0].Event.ID {
				t.Errorf("body %s: %v", c.body, err)
			}
		})
	}
}

func TestRequestEncrypted(t *testing.T) {
	t.Parallel()
	var c capture
	srv := httptest.NewServer(&c)
	defer srv.Close()
	d := testDispatcher(t, func(cfg *Config) { cfg.HeaderPrefix = "X-Acme" })
	sub := testSub(srv.URL)
	sub.EncryptionKey = []byte("0123456789abcdef0123456789abcdef")
	j := singleJob(&sub, `{"secret":"payload"}`)
	if res := d.attempt(context.Background(), &sub, j); !res.success() {
		t.Fatalf("attempt = %+v", res)
	}
	if got := c.header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain", got)
	}
	if got := c.header.Get("X-Acme-Source"); got != "webhook" {
		t.Errorf("X-Acme-Source = %q", got)
	}
	iv, err := base64.StdEncoding.DecodeString(c.header.Get("X-Acme-Encryption-IV"))
	if err != nil || len(iv) != 12 {
		t.Fatalf("IV header %q: %v", c.header.Get("X-Acme-Encryption-IV"), err)
	}
	ct, err := base64.StdEncoding.DecodeString(string(c.body))
	if err != nil {
		t.Fatalf("body is not base64: %v", err)
	}
	block, _ := aes.NewCipher(sub.EncryptionKey)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, iv, ct, nil)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	want := string(appendEvent(nil, &sub, &j.items[0].Event))
	if string(plain) != want {
		t.Errorf("decrypted body = %s, want %s", plain, want)
	}
	if strings.Contains(string(c.body), "payload") {
		t.Error("the body carries the plaintext")
	}
}

func TestRedirectIsFailure(t *testing.T) {
	t.Parallel()
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	d := testDispatcher(t, nil)
	sub := testSub(srv.URL + "/hook")
	res := d.attempt(context.Background(), &sub, singleJob(&sub, `{}`))
	if res.success() || res.status != http.StatusFound || res.err != "" {
		t.Errorf("attempt = %+v, want a failed attempt with status 302", res)
	}
	if followed.Load() != 0 {
		t.Error("the redirect was followed")
	}
}

// countingBody is a 10 MiB response body that counts what is read of it.
type countingBody struct {
	left int
	read *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), b.left)
	for i := range n {
		p[i] = 'x'
	}
	b.left -= n
	b.read.Add(int64(n))
	return n, nil
}

func (b *countingBody) Close() error { return nil }

func TestResponseReadCap(t *testing.T) {
	t.Parallel()
	var read atomic.Int64
	d := testDispatcher(t, func(cfg *Config) {
		cfg.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 500, Header: http.Header{}, Request: r,
				Body: &countingBody{left: 10 << 20, read: &read}}, nil
		})
	})
	sub := testSub("https://endpoint.example/hook")
	res := d.attempt(context.Background(), &sub, singleJob(&sub, `{}`))
	if res.status != 500 {
		t.Fatalf("status = %d", res.status)
	}
	if n := read.Load(); n > MaxResponseRead {
		t.Errorf("read %d bytes of the response, want at most %d", n, MaxResponseRead)
	}
	if len(res.body) != herald.MaxStoredResponse {
		t.Errorf("kept %d bytes, want %d", len(res.body), herald.MaxStoredResponse)
	}
}

func TestCleanText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", herald.MaxStoredResponse) // 2 bytes each
	tests := []struct {
		name, in, want string
	}{
		{"plain", "ok", "ok"},
		{"nul", "a\x00b", "ab"},
		{"invalid", "a\xffb", "a\uFFFDb"},
		{"cut rune", long[:herald.MaxStoredResponse-1], long[:herald.MaxStoredResponse-2]}, // U+FFFD would not fit
		{"short cut rune", long[:5], long[:4] + "\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := cleanText([]byte(tt.in))
			if got != tt.want {
				t.Errorf("cleanText = %.40q… (%d bytes), want %.40q… (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
			if len(got) > herald.MaxStoredResponse {
				t.Errorf("len %d > %d", len(got), herald.MaxStoredResponse)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	d := testDispatcher(t, nil)
	sub := testSub(srv.URL)
	sub.Delivery.Timeout = 50 * time.Millisecond
	res := d.attempt(context.Background(), &sub, singleJob(&sub, `{}`))
	if res.success() || res.status != 0 || !strings.Contains(res.err, "timeout") {
		t.Errorf("attempt = %+v, want a timeout with no status", res)
	}
}

// TestPrivateRefused sends to a loopback endpoint with private networks not
// allowed: the attempt fails and the server never sees a connection.
func TestPrivateRefused(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	d := testDispatcher(t, func(cfg *Config) { cfg.AllowPrivateNetworks = false })
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		sub := testSub(u)
		res := d.attempt(context.Background(), &sub, singleJob(&sub, `{}`))
		if res.success() || res.status != 0 || !strings.Contains(res.err, "refused") {
			t.Errorf("attempt to %s = %+v, want refused", u, res)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the server saw %d connections", n)
	}
}

func TestProxy(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var hosts []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.URL.Host)
		mu.Unlock()
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)

	d := testDispatcher(t, func(cfg *Config) { cfg.Proxy = pu })
	sub := testSub("http://endpoint.invalid/hook")
	if res := d.attempt(context.Background(), &sub, singleJob(&sub, `{}`)); !res.success() {
		t.Fatalf("attempt through the proxy = %+v", res)
	}

	// Through a proxy the endpoint's address is checked before the request.
	guarded := testDispatcher(t, func(cfg *Config) { cfg.Proxy = pu; cfg.AllowPrivateNetworks = false })
	sub = testSub("http://127.0.0.1:9/hook")
	if res := guarded.attempt(context.Background(), &sub, singleJob(&sub, `{}`)); !strings.Contains(res.err, "refused") {
		t.Errorf("attempt to loopback through the proxy = %+v, want refused", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hosts) != 1 || hosts[0] != "endpoint.invalid" {
		t.Errorf("the proxy saw requests for %v, want [endpoint.invalid]", hosts)
	}
}

// TestEnvironmentProxyIgnored sets HTTP_PROXY, so it cannot run in parallel.
func TestEnvironmentProxyIgnored(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy.invalid:3128")
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	req := httptest.NewRequest(http.MethodPost, "https://endpoint.example/hook", nil)
	if u, err := newTransport(nil, false).Proxy(req); u != nil || err != nil {
		t.Errorf("proxy = %v, %v; want none", u, err)
	}
	want, _ := url.Parse("http://configured.example:8080")
	if u, _ := newTransport(want, false).Proxy(req); u == nil || u.String() != want.String() {
		t.Errorf("proxy = %v, want %v", u, want)
	}
}

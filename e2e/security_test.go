package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Security tests (CONTRACT.md §7, docs/security.md): the private-network
// guard, redirects, proxies, hostile endpoints, secrets at rest and the API
// server's limits, all against the real binary and real local servers.

// secStart starts `herald serve` WITHOUT --allow-private-networks (unlike
// startHerald), with env added to its environment and extra arguments.
func secStart(tb testing.TB, dataDir string, env []string, extra ...string) *herald {
	tb.Helper()
	if dataDir == "" {
		dataDir = tb.TempDir()
	}
	h := &herald{tb: tb, DataDir: dataDir,
		// An operator's environment must not change what is tested.
		env: append([]string{"HERALD_ALLOW_PRIVATE_NETWORKS=", "HERALD_PROXY=", "HERALD_MASTER_KEY="}, env...)}
	h.args = append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--admin-key", adminKey, "--log-level", "warn"}, extra...)
	h.start()
	tb.Cleanup(h.kill)
	return h
}

// secEndpoint is an HTTP server on 127.0.0.1 that counts the connections
// and requests it sees.
type secEndpoint struct {
	srv   *httptest.Server
	conns atomic.Int32
	reqs  atomic.Int32
}

// secNewEndpoint starts an endpoint; a nil handler answers 200.
func secNewEndpoint(tb testing.TB, handler http.HandlerFunc) *secEndpoint {
	tb.Helper()
	e := &secEndpoint{}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.reqs.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if handler != nil {
			handler(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	e.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.conns.Add(1)
		}
	}
	e.srv.Start()
	tb.Cleanup(e.srv.Close)
	return e
}

func (e *secEndpoint) port() string {
	_, p, _ := net.SplitHostPort(e.srv.Listener.Addr().String())
	return p
}

// secLoopbackName returns a host name other than localhost that resolves
// only to loopback addresses (this host's name, where /etc/hosts maps it
// so), or "" if there is none.
func secLoopbackName(tb testing.TB) string {
	tb.Helper()
	var names []string
	if n, err := os.Hostname(); err == nil {
		names = append(names, n)
	}
	names = append(names, "localhost.localdomain", "ip6-localhost")
	for _, n := range names {
		l := strings.ToLower(n)
		if l == "localhost" || strings.HasSuffix(l, ".localhost") {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", n)
		cancel()
		if err != nil || len(ips) == 0 {
			continue
		}
		all := true
		for _, ip := range ips {
			all = all && ip.Unmap().IsLoopback()
		}
		if all {
			return n
		}
	}
	return ""
}

// secAttempt is one attempt of GET /deliveries/{id}.
type secAttempt struct {
	N            int     `json:"n"`
	DurationMS   float64 `json:"duration_ms"`
	StatusCode   *int    `json:"status_code"`
	Error        string  `json:"error"`
	ResponseBody string  `json:"response_body"`
}

// secDelivery is GET /deliveries/{id}.
type secDelivery struct {
	ID        string       `json:"id"`
	WebhookID string       `json:"webhook_id"`
	Status    string       `json:"status"`
	Attempts  []secAttempt `json:"attempts"`
}

// status returns the status code of the first attempt, 0 for none.
func (d *secDelivery) status() int {
	if len(d.Attempts) == 0 || d.Attempts[0].StatusCode == nil {
		return 0
	}
	return *d.Attempts[0].StatusCode
}

// secWaitDone polls a delivery until it has succeeded or failed for good.
func secWaitDone(h *herald, id string, timeout time.Duration) secDelivery {
	h.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d secDelivery
		h.mustDo(200, "GET", "/deliveries/"+id, nil, &d)
		if d.Status == "succeeded" || d.Status == "failed" {
			return d
		}
		if time.Now().After(deadline) {
			h.tb.Fatalf("delivery %s: still %q after %s: %+v", id, d.Status, timeout, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// secByWebhook maps the webhook ids of an event's deliveries to their ids.
func secByWebhook(h *herald, eventID string) map[string]string {
	h.tb.Helper()
	var out struct {
		Data []secDelivery `json:"data"`
	}
	h.mustDo(200, "GET", "/deliveries?event_id="+url.QueryEscape(eventID), nil, &out)
	m := make(map[string]string, len(out.Data))
	for _, d := range out.Data {
		m[d.WebhookID] = d.ID
	}
	return m
}

// secSub is a subscription body with one attempt and the given timeout.
func secSub(u, event, timeout string) map[string]any {
	return map[string]any{"url": u, "events": []string{event},
		"delivery": map[string]any{"timeout": timeout, "retry": map[string]any{"max_attempts": 1}}}
}

func secErrMessage(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// TestSecurityPrivateNetworkGuard runs herald without
// --allow-private-networks: literal blocked addresses are refused at
// creation and on PATCH; a name that resolves to loopback is accepted, but
// its delivery is refused in the dialer and the loopback endpoint sees no
// connection at all. With --allow-private-networks the same URL is
// delivered, so it was the guard that refused it.
func TestSecurityPrivateNetworkGuard(t *testing.T) {
	t.Parallel()
	ep := secNewEndpoint(t, nil)
	port := ep.port()
	h := secStart(t, "", nil)

	for _, u := range []string{
		"http://127.0.0.1:" + port + "/hook",
		"http://127.0.0.2:" + port + "/hook",
		"http://10.1.2.3/hook",
		"http://172.16.0.1/hook",
		"http://192.168.1.1/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:" + port + "/hook",
		"http://[::ffff:127.0.0.1]:" + port + "/hook",
		"http://[::ffff:7f00:1]:" + port + "/hook",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://[fe80::1]/hook",
		"http://[fc00::1]/hook",
		"http://100.64.0.1/hook",
		"http://0.0.0.0:" + port + "/hook",
		"http://[::]:" + port + "/hook",
		"http://[64:ff9b::7f00:1]:" + port + "/hook",
		"http://[2002:7f00:1::]:" + port + "/hook",
		"http://224.0.0.1/hook",
		"http://255.255.255.255/hook",
		"http://192.0.2.1/hook",
		"https://127.0.0.1/hook",
		"http://localhost:" + port + "/hook", // refused by name at creation
	} {
		var out map[string]any
		code := h.do("POST", "/webhooks", secSub(u, "guard.test", "2s"), &out)
		if code != 400 {
			t.Errorf("POST /webhooks url %s: status %d, want 400: %v", u, code, out)
			continue
		}
		if msg := secErrMessage(out); !strings.Contains(msg, "url") {
			t.Errorf("POST /webhooks url %s: message %q does not name the url", u, msg)
		}
	}
	var list struct {
		Data []map[string]any `json:"data"`
	}
	h.mustDo(200, "GET", "/webhooks", nil, &list)
	if len(list.Data) != 0 {
		t.Fatalf("%d subscriptions stored after refusals", len(list.Data))
	}

	// A public URL is accepted; PATCHing it to a blocked literal is not.
	pub := h.createSub(secSub("https://hooks.example.com/herald", "other.test", "2s"))
	id := pub["id"].(string)
	var out map[string]any
	if code := h.do("PATCH", "/webhooks/"+id, map[string]any{"url": "http://169.254.169.254/"}, &out); code != 400 {
		t.Errorf("PATCH to the metadata address: status %d, want 400: %v", code, out)
	}
	var got map[string]any
	h.mustDo(200, "GET", "/webhooks/"+id, nil, &got)
	if got["url"] != "https://hooks.example.com/herald" {
		t.Errorf("after a refused PATCH the url is %v", got["url"])
	}

	name := secLoopbackName(t)
	if name == "" {
		t.Skip("no host name other than localhost resolves to loopback here")
	}
	u := "http://" + net.JoinHostPort(name, port) + "/hook"
	h.createSub(secSub(u, "guard.test", "2s"))
	ev := h.publish(map[string]any{"event_type": "guard.test", "data": map[string]any{}})
	ids := h.deliveriesOf(ev["id"].(string))
	if len(ids) != 1 {
		t.Fatalf("deliveries %v, want 1", ids)
	}
	d := secWaitDone(h, ids[0], 20*time.Second)
	if d.Status != "failed" || len(d.Attempts) != 1 {
		t.Fatalf("delivery to %s: %+v, want failed after one attempt", u, d)
	}
	if a := d.Attempts[0]; !strings.Contains(a.Error, "blocked") || d.status() != 0 {
		t.Errorf("attempt = %+v, want no status and an error saying the address is blocked", a)
	}
	if n := ep.conns.Load(); n != 0 {
		t.Fatalf("the loopback endpoint saw %d connections", n)
	}
	t.Logf("delivery to %s: %q", u, d.Attempts[0].Error)

	// The same URL with private networks allowed is delivered.
	open := startHerald(t, "")
	open.createSub(secSub(u, "guard.test", "2s"))
	ev = open.publish(map[string]any{"event_type": "guard.test", "data": map[string]any{}})
	ids = open.deliveriesOf(ev["id"].(string))
	if d := secWaitDone(open, ids[0], 20*time.Second); d.Status != "succeeded" {
		t.Fatalf("with --allow-private-networks: %+v, want succeeded", d)
	}
	if ep.reqs.Load() != 1 {
		t.Errorf("the endpoint saw %d requests, want 1", ep.reqs.Load())
	}
}

// TestSecurityRedirectNotFollowed: an endpoint answering a redirect to
// another endpoint makes a failed attempt with the 3xx status, and the
// target sees nothing.
func TestSecurityRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	target := secNewEndpoint(t, nil)
	redirector := secNewEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
		http.Redirect(w, r, target.srv.URL+"/hook", code)
	})
	h := startHerald(t, "")
	codes := []int{301, 302, 303, 307, 308}
	subs := map[string]int{}
	for _, c := range codes {
		s := h.createSub(secSub(fmt.Sprintf("%s/r/%d", redirector.srv.URL, c), "redirect.test", "5s"))
		subs[s["id"].(string)] = c
	}
	ev := h.publish(map[string]any{"event_type": "redirect.test", "data": map[string]any{"a": 1}})
	byHook := secByWebhook(h, ev["id"].(string))
	if len(byHook) != len(codes) {
		t.Fatalf("%d deliveries, want %d", len(byHook), len(codes))
	}
	for hook, code := range subs {
		d := secWaitDone(h, byHook[hook], 20*time.Second)
		if d.Status != "failed" || d.status() != code {
			t.Errorf("redirect %d: delivery %+v, want failed with status %d", code, d, code)
		}
	}
	if n := redirector.reqs.Load(); n != int32(len(codes)) {
		t.Errorf("the redirecting endpoint saw %d requests, want %d", n, len(codes))
	}
	if n := target.conns.Load(); n != 0 {
		t.Errorf("the redirect target saw %d connections", n)
	}
}

// TestSecurityEnvironmentProxyIgnored sets HTTP_PROXY and friends in
// herald's environment to a local listener: deliveries go direct and the
// listener sees nothing.
func TestSecurityEnvironmentProxyIgnored(t *testing.T) {
	t.Parallel()
	trap := secNewEndpoint(t, nil)
	rc := newReceiver(t, nil)
	u := rc.URL()
	// Go's own environment proxy never proxies 127.0.0.1 or localhost, so a
	// name is needed for this test to be able to fail.
	if name := secLoopbackName(t); name != "" {
		u = strings.Replace(u, "127.0.0.1", name, 1)
	} else {
		t.Log("no loopback host name: the endpoint is 127.0.0.1, which no environment proxy would take")
	}
	p := trap.srv.URL
	h := secStart(t, "", []string{"HTTP_PROXY=" + p, "HTTPS_PROXY=" + p, "http_proxy=" + p, "https_proxy=" + p,
		"ALL_PROXY=" + p, "all_proxy=" + p, "NO_PROXY=", "no_proxy="}, "--allow-private-networks")
	h.createSub(secSub(u, "proxy.test", "5s"))
	ev := h.publish(map[string]any{"event_type": "proxy.test", "data": map[string]any{}})
	ids := h.deliveriesOf(ev["id"].(string))
	if d := secWaitDone(h, ids[0], 20*time.Second); d.Status != "succeeded" {
		t.Fatalf("delivery: %+v, want succeeded", d)
	}
	if n := len(rc.requests()); n != 1 {
		t.Errorf("the receiver got %d requests, want 1", n)
	}
	if n := trap.conns.Load(); n != 0 {
		t.Errorf("the environment's proxy saw %d connections", n)
	}
}

// secProxy is a small forward HTTP proxy on 127.0.0.1 that records the
// absolute URLs it is asked for and forwards them.
type secProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	urls []string
}

func secNewProxy(tb testing.TB) *secProxy {
	tb.Helper()
	p := &secProxy{}
	tr := &http.Transport{Proxy: nil}
	tb.Cleanup(tr.CloseIdleConnections)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.urls = append(p.urls, r.URL.String())
		p.mu.Unlock()
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Proxy-Connection")
		resp, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *secProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.urls...)
}

// TestSecurityExplicitProxy: with --proxy every delivery goes through the
// proxy; without --allow-private-networks an endpoint whose name resolves
// to loopback is still refused, before anything reaches the proxy.
func TestSecurityExplicitProxy(t *testing.T) {
	t.Parallel()
	proxy := secNewProxy(t)
	rc := newReceiver(t, nil)
	h := startHerald(t, "", "--proxy", proxy.srv.URL)
	h.createSub(secSub(rc.URL(), "proxy.test", "5s"))
	ev := h.publish(map[string]any{"event_type": "proxy.test", "data": map[string]any{}})
	ids := h.deliveriesOf(ev["id"].(string))
	if d := secWaitDone(h, ids[0], 20*time.Second); d.Status != "succeeded" {
		t.Fatalf("delivery through the proxy: %+v, want succeeded", d)
	}
	if got := proxy.seen(); len(got) != 1 || got[0] != rc.URL() {
		t.Errorf("the proxy was asked for %v, want [%s]", got, rc.URL())
	}
	if reqs := rc.requests(); len(reqs) != 1 || reqs[0].Header.Get("Webhook-Signature") == "" {
		t.Errorf("the receiver got %d requests through the proxy, want 1 signed", len(reqs))
	}

	name := secLoopbackName(t)
	if name == "" {
		t.Skip("no host name other than localhost resolves to loopback here")
	}
	guarded := secStart(t, "", nil, "--proxy", proxy.srv.URL)
	u := strings.Replace(rc.URL(), "127.0.0.1", name, 1)
	guarded.createSub(secSub(u, "proxy.test", "5s"))
	ev = guarded.publish(map[string]any{"event_type": "proxy.test", "data": map[string]any{}})
	ids = guarded.deliveriesOf(ev["id"].(string))
	d := secWaitDone(guarded, ids[0], 20*time.Second)
	if d.Status != "failed" || !strings.Contains(d.Attempts[0].Error, "blocked") {
		t.Errorf("delivery to %s through the proxy: %+v, want failed as blocked", u, d)
	}
	if got := proxy.seen(); len(got) != 1 {
		t.Errorf("the proxy was asked for %v; the blocked endpoint must not reach it", got)
	}
}

// secHostile is a raw TCP endpoint on 127.0.0.1: for each connection it
// reads one request, then answers with respond, counting the bytes it
// manages to write before herald goes away.
type secHostile struct {
	URL     string
	written atomic.Int64
	served  atomic.Int32 // connections whose answer ended
}

func secNewHostile(tb testing.TB, respond func(w io.Writer) error) *secHostile {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &secHostile{URL: "http://" + ln.Addr().String() + "/hook"}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer s.served.Add(1)
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_ = respond(secCountWriter{c, &s.written})
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

type secCountWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c secCountWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// secProcStatus returns a field of /proc/<pid>/status in KiB (VmRSS,
// VmHWM), or -1 where there is no /proc.
func secProcStatus(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("%s: %q", field, line)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// secProcIO returns a field of /proc/<pid>/io (bytes), or -1 where it
// cannot be read.
func secProcIO(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatalf("%s: %q", field, line)
			}
			return n
		}
	}
	return -1
}

// TestSecurityHostileEndpoint delivers to three hostile endpoints: one that
// streams a 1 GiB body, one that sends 1 MiB of headers, one that sends its
// answer one byte per second. Herald reads at most 64 KiB of the body (the
// endpoint cannot write much more than that plus the sockets' buffers
// before the connection closes), its memory stays small, the headers fail
// the attempt, and the slow answer ends at the subscription's timeout.
func TestSecurityHostileEndpoint(t *testing.T) {
	t.Parallel()
	big := secNewHostile(t, func(w io.Writer) error {
		const size = 1 << 30
		if _, err := fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", size); err != nil {
			return err
		}
		chunk := bytes.Repeat([]byte("x"), 32<<10) // reused: the 1 GiB is never held
		for left := size; left > 0; left -= len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	headers := secNewHostile(t, func(w io.Writer) error {
		if _, err := io.WriteString(w, "HTTP/1.1 200 OK\r\n"); err != nil {
			return err
		}
		line := strings.Repeat("h", 1000)
		for i := range 1 << 10 { // 1 MiB
			if _, err := fmt.Fprintf(w, "X-Pad-%04d: %s\r\n", i, line); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "Content-Length: 0\r\n\r\n")
		return err
	})
	slow := secNewHostile(t, func(w io.Writer) error {
		for _, c := range []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok") {
			time.Sleep(time.Second)
			if _, err := w.Write([]byte{c}); err != nil {
				return err
			}
		}
		return nil
	})

	h := startHerald(t, "")
	pid := h.cmd.Process.Pid
	bigSub := h.createSub(secSub(big.URL, "hostile.test", "10s"))["id"].(string)
	hdrSub := h.createSub(secSub(headers.URL, "hostile.test", "10s"))["id"].(string)
	slowSub := h.createSub(secSub(slow.URL, "hostile.test", "2s"))["id"].(string)
	before := secProcStatus(t, pid, "VmRSS")
	readBefore := secProcIO(t, pid, "rchar")
	ev := h.publish(map[string]any{"event_type": "hostile.test", "data": map[string]any{}})
	byHook := secByWebhook(h, ev["id"].(string))

	d := secWaitDone(h, byHook[bigSub], 30*time.Second)
	// The status line came in time, so the attempt counts as answered: 200.
	if len(d.Attempts) != 1 || d.status() != 200 || !strings.HasPrefix(d.Attempts[0].ResponseBody, "xxxx") ||
		len(d.Attempts[0].ResponseBody) > 4096 {
		t.Errorf("1 GiB body: delivery %s with %d attempts, status %d, body of %d bytes",
			d.Status, len(d.Attempts), d.status(), len(d.Attempts[0].ResponseBody))
	}
	secWaitServed(t, big, "1 GiB body")
	bound := secBufferBound()
	if n := big.written.Load(); n > bound {
		t.Errorf("1 GiB body: the endpoint wrote %d bytes before the connection closed, more than 64 KiB and the sockets' buffers (%d); herald reads at most 64 KiB", n, bound)
	}

	d = secWaitDone(h, byHook[hdrSub], 30*time.Second)
	if d.Status != "failed" || d.status() != 0 || !strings.Contains(d.Attempts[0].Error, "header") {
		t.Errorf("1 MiB of headers: %+v, want failed with no status and an error about headers", d)
	}
	secWaitServed(t, headers, "1 MiB of headers")
	if n := headers.written.Load(); n > bound {
		t.Errorf("1 MiB of headers: the endpoint wrote %d bytes", n)
	}

	d = secWaitDone(h, byHook[slowSub], 30*time.Second)
	if d.Status != "failed" || d.status() != 0 || !strings.Contains(d.Attempts[0].Error, "timeout") {
		t.Errorf("one byte per second: %+v, want failed by the timeout", d)
	}
	// The answer would take a minute; a loose bound shows it was cut short.
	if ms := d.Attempts[0].DurationMS; ms > 15000 {
		t.Errorf("one byte per second: the attempt took %.0f ms with a 2s timeout", ms)
	}

	// What herald itself read (read(2) and the like, on sockets and files),
	// unlike what the kernel buffered for it: 64 KiB of the body, the
	// headers up to their limit, the API calls of this test, the store.
	if readBefore >= 0 {
		read := secProcIO(t, pid, "rchar") - readBefore
		t.Logf("herald read %d bytes while the three endpoints answered", read)
		if read > 4<<20 {
			t.Errorf("herald read %d bytes while delivering to the hostile endpoints, want far less than 4 MiB", read)
		}
	}
	if rss, hwm := secProcStatus(t, pid, "VmRSS"), secProcStatus(t, pid, "VmHWM"); hwm >= 0 {
		t.Logf("herald RSS %d KiB before, %d KiB after, peak %d KiB; endpoints wrote %d and %d bytes",
			before, rss, hwm, big.written.Load(), headers.written.Load())
		if hwm > 100<<10 {
			t.Errorf("herald's peak RSS is %d KiB, want under 100 MiB", hwm)
		}
	}
	h.mustDo(200, "GET", "/healthz", nil, nil)
}

// secBufferBound is the most a peer can write into a TCP connection that
// the other side reads 64 KiB of: that, plus the largest receive and send
// buffers Linux may grow a socket to (tcp_rmem, tcp_wmem), plus slack. On a
// loopback with a 32 MiB tcp_rmem that is well over the 1 MiB one might
// expect, and still far below the 1 GiB a reader without a limit takes.
func secBufferBound() int64 {
	most := func(path string) int64 {
		b, err := os.ReadFile(path)
		f := strings.Fields(string(b))
		if err != nil || len(f) != 3 {
			return 16 << 20
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return 16 << 20
		}
		return n
	}
	return 64<<10 + most("/proc/sys/net/ipv4/tcp_rmem") + most("/proc/sys/net/ipv4/tcp_wmem") + 1<<20
}

// secWaitServed waits until a hostile endpoint has stopped writing to its
// connection (herald closed it).
func secWaitServed(tb testing.TB, s *secHostile, what string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.served.Load() == 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: the endpoint is still writing; herald did not close the connection", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

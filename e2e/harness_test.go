package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the herald binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/herald")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build herald:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const adminKey = "hk_test_admin_key_0123456789"

// herald is one running herald process.
type herald struct {
	tb      testing.TB
	cmd     *exec.Cmd
	URL     string
	DataDir string
	args    []string
	env     []string
	out     *syncBuffer
	done    chan struct{}
	exitErr error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHerald starts `herald serve` on a free loopback port with a fresh data
// directory (unless one is given in dataDir) and waits until it answers.
func startHerald(tb testing.TB, dataDir string, extra ...string) *herald {
	tb.Helper()
	if dataDir == "" {
		dataDir = tb.TempDir()
	}
	h := &herald{tb: tb, DataDir: dataDir}
	h.args = append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--admin-key", adminKey, "--allow-private-networks", "--log-level", "warn"}, extra...)
	h.start()
	tb.Cleanup(func() { h.kill() })
	return h
}

func (h *herald) start() {
	h.tb.Helper()
	h.cmd = exec.Command(binPath, h.args...)
	h.cmd.Env = append(os.Environ(), h.env...)
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		h.tb.Fatal(err)
	}
	h.out = &syncBuffer{}
	h.cmd.Stderr = h.out
	if err := h.cmd.Start(); err != nil {
		h.tb.Fatalf("start herald: %v", err)
	}
	h.done = make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			h.out.Write([]byte(line + "\n"))
			if i := strings.Index(line, "listening on "); i >= 0 {
				select {
				case addr <- strings.TrimSpace(line[i+len("listening on "):]):
				default:
				}
			}
		}
	}()
	go func() {
		h.exitErr = h.cmd.Wait()
		close(h.done)
	}()
	select {
	case u := <-addr:
		h.URL = u
	case <-h.done:
		h.tb.Fatalf("herald exited at start: %v\n%s", h.exitErr, h.out.String())
	case <-time.After(30 * time.Second):
		h.tb.Fatalf("herald did not start\n%s", h.out.String())
	}
}

// restart starts the process again on the same data directory (a new port).
func (h *herald) restart() {
	h.tb.Helper()
	h.start()
}

func (h *herald) kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Kill()
	<-h.done
}

// sigkill kills the process at once, as a crash would.
func (h *herald) sigkill() {
	h.tb.Helper()
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// term sends SIGTERM and waits for the exit, returning the exit code.
func (h *herald) term(wait time.Duration) int {
	h.tb.Helper()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(wait):
		h.tb.Fatalf("herald did not exit within %s after SIGTERM\n%s", wait, h.out.String())
	}
	return h.cmd.ProcessState.ExitCode()
}

// do calls the API with the admin key and decodes a JSON answer into out (if not nil).
func (h *herald) do(method, path string, body any, out any) int {
	h.tb.Helper()
	return h.doKey(adminKey, method, path, body, out)
}

func (h *herald) doKey(key, method, path string, body any, out any) int {
	h.tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.URL+path, rd)
	if err != nil {
		h.tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			h.tb.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

// mustDo is do that fails the test unless the status is want.
func (h *herald) mustDo(want int, method, path string, body any, out any) {
	h.tb.Helper()
	var raw json.RawMessage
	got := h.do(method, path, body, &raw)
	if got != want {
		h.tb.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.tb.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
}

// received is one request a receiver got.
type received struct {
	At     time.Time
	Header http.Header
	Body   []byte
}

// receiver is a real HTTP server on 127.0.0.1 that records what arrives and
// answers with the status its respond function picks (200 by default).
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []received
	notify  chan struct{}
	respond func(n int, r *http.Request) int
}

func newReceiver(tb testing.TB, respond func(n int, r *http.Request) int) *receiver {
	tb.Helper()
	rc := &receiver{notify: make(chan struct{}, 1), respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	tb.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := len(rc.got)
	rc.got = append(rc.got, received{At: time.Now(), Header: r.Header.Clone(), Body: body})
	rc.mu.Unlock()
	select {
	case rc.notify <- struct{}{}:
	default:
	}
	status := http.StatusOK
	if rc.respond != nil {
		status = rc.respond(n, r)
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"ok":%t}`, status < 300)
}

// URL is the receiver's endpoint.
func (rc *receiver) URL() string { return rc.srv.URL + "/hook" }

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// waitFor waits until cond holds on the requests so far, or fails after timeout.
func (rc *receiver) waitFor(tb testing.TB, timeout time.Duration, what string, cond func([]received) bool) []received {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		got := rc.requests()
		if cond(got) {
			return got
		}
		select {
		case <-rc.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("timed out after %s waiting for %s; got %d requests", timeout, what, len(got))
		}
	}
}

// waitStatus polls GET /deliveries/{id} until its status is want.
func (h *herald) waitStatus(id, want string, timeout time.Duration) map[string]any {
	h.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d map[string]any
	for {
		d = nil
		h.mustDo(200, "GET", "/deliveries/"+id, nil, &d)
		if d["status"] == want {
			return d
		}
		select {
		case <-ctx.Done():
			h.tb.Fatalf("delivery %s: status %v after %s, want %s: %v", id, d["status"], timeout, want, d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// createSub creates a subscription and returns its JSON answer.
func (h *herald) createSub(body map[string]any) map[string]any {
	h.tb.Helper()
	var out map[string]any
	h.mustDo(201, "POST", "/webhooks", body, &out)
	return out
}

// publish publishes one event and returns its answer.
func (h *herald) publish(ev map[string]any) map[string]any {
	h.tb.Helper()
	var out map[string]any
	h.mustDo(202, "POST", "/events", ev, &out)
	return out
}

// deliveriesOf returns the ids of an event's deliveries.
func (h *herald) deliveriesOf(eventID string) []string {
	h.tb.Helper()
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	h.mustDo(200, "GET", "/deliveries?event_id="+eventID, nil, &out)
	ids := make([]string, len(out.Data))
	for i, d := range out.Data {
		ids[i] = d.ID
	}
	return ids
}

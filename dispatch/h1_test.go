package dispatch

import (
	"bufio"
	"context"
	"fmt"
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
)

// h1Post sends one POST through c and reads the whole answer.
func h1Post(tb testing.TB, c *h1Client, rawURL string, body string) (int, string, error) {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{"Content-Type": {"application/json"}, "X-Trace-Id": {"t-1"}}
	resp, err := c.post(ctx, u, h, []byte(body))
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// countingServer is an httptest server that counts the connections it
// accepted and echoes each request's method, path, a header and body.
func countingServer(tb testing.TB, handler http.HandlerFunc, tlsOn bool) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	tb.Cleanup(srv.Close)
	return srv, &conns
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s %s %s %s %d %s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Trace-Id"), r.ContentLength, b)
}

func TestH1KeepAliveAndTLS(t *testing.T) {
	t.Parallel()
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			t.Parallel()
			srv, conns := countingServer(t, echo, tlsOn)
			c := newH1Client(true)
			if tlsOn {
				c.tls.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			}
			host := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
			for i := range 20 {
				code, body, err := h1Post(t, c, srv.URL+"/hook?a=b&c=%20", fmt.Sprintf(`{"n":%d}`, i))
				want := fmt.Sprintf(`POST /hook?a=b&c=%%20 %s t-1 %d {"n":%d}`, host, len(fmt.Sprintf(`{"n":%d}`, i)), i)
				if err != nil || code != 200 || body != want {
					t.Fatalf("request %d: %d %q %v, want 200 %q", i, code, body, err, want)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("20 sequential requests used %d connections, want 1", n)
			}
			// Concurrent requests each get a connection; all come back.
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					if code, _, err := h1Post(t, c, srv.URL+"/x", "{}"); err != nil || code != 200 {
						t.Errorf("concurrent request: %d %v", code, err)
					}
				})
			}
			wg.Wait()
			c.mu.Lock()
			idle := 0
			for _, l := range c.idle {
				idle += len(l)
			}
			c.mu.Unlock()
			if idle < 1 || int64(idle) != conns.Load() {
				t.Errorf("%d idle connections for %d opened", idle, conns.Load())
			}
			c.closeIdle(true)
			if _, _, err := h1Post(t, c, srv.URL+"/x", "{}"); err != nil {
				t.Errorf("a request after closeIdle(true): %v", err)
			}
			c.mu.Lock()
			if len(c.idle) != 0 {
				t.Errorf("a closed client pooled a connection")
			}
			c.mu.Unlock()
		})
	}
}

func TestH1TLSVerified(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, echo, true)
	c := newH1Client(true) // the test server's certificate is not trusted
	_, _, err := h1Post(t, c, srv.URL, "{}")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: error %v, want a certificate error", err)
	}
}

// rawServer answers each request on a connection with the next of answers
// (raw HTTP), closing the connection after an answer when close is set.
func rawServer(tb testing.TB, answers []string, closeAfter func(i int) bool) (string, *atomic.Int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	var next atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					i := int(next.Add(1)) - 1
					if i >= len(answers) {
						return
					}
					io.WriteString(nc, answers[i])
					if closeAfter(i) {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook", &conns
}

func TestH1Answers(t *testing.T) {
	t.Parallel()
	answers := []string{
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 4\r\n\r\nfail",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew",
		// The endpoint closes this connection after answering, without
		// saying so: the next request finds it closed and goes again on a
		// new connection.
		"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
		"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nagain",
	}
	url, conns := rawServer(t, answers, func(i int) bool { return i == 3 || i == 5 })
	c := newH1Client(true)
	want := []struct {
		code  int
		body  string
		conns int64
	}{{200, "ok", 1}, {201, "abcde", 1}, {204, "", 1}, {500, "fail", 1}, {200, "new", 2}, {200, "last", 2}, {202, "again", 3}}
	for i, w := range want {
		if i == 6 {
			time.Sleep(50 * time.Millisecond) // let the close arrive
		}
		code, body, err := h1Post(t, c, url, "{}")
		if err != nil || code != w.code || body != w.body {
			t.Errorf("answer %d: %d %q %v, want %d %q", i, code, body, err, w.code, w.body)
		}
		if n := conns.Load(); n != w.conns {
			t.Errorf("after answer %d: %d connections, want %d", i, n, w.conns)
		}
	}
}

func TestH1RefusesBadHeaders(t *testing.T) {
	t.Parallel()
	c := newH1Client(true)
	u, _ := url.Parse("http://127.0.0.1:1/hook")
	for _, h := range []http.Header{{"X-A": {"a\r\nX-B: b"}}, {"X-A\r\nX-B": {"b"}}} {
		if _, err := c.post(context.Background(), u, h, nil); err == nil || !strings.Contains(err.Error(), "invalid header") {
			t.Errorf("header %q: error %v, want invalid header", h, err)
		}
	}
}

func TestH1Blocked(t *testing.T) {
	t.Parallel()
	srv, conns := countingServer(t, echo, false)
	c := newH1Client(false) // loopback is blocked
	_, _, err := h1Post(t, c, srv.URL, "{}")
	if err == nil || !strings.Contains(err.Error(), "blocked") && !strings.Contains(err.Error(), "refus") {
		t.Errorf("loopback with private networks refused: error %v", err)
	}
	if conns.Load() != 0 {
		t.Errorf("the blocked endpoint saw %d connections", conns.Load())
	}
}

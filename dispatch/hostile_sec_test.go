package dispatch

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostileServer is a raw TCP endpoint on 127.0.0.1: it reads one request
// and answers it with respond, counting the bytes it manages to write
// before the client goes away.
type hostileServer struct {
	URL     string
	written atomic.Int64
	done    chan struct{} // closed when the first connection has been served
}

func newHostileServer(tb testing.TB, respond func(w io.Writer) error) *hostileServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &hostileServer{URL: "http://" + ln.Addr().String() + "/hook", done: make(chan struct{})}
	go func() {
		defer close(s.done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_ = respond(countWriter{c, &s.written})
	}()
	tb.Cleanup(func() {
		ln.Close()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			tb.Error("the hostile server did not finish")
		}
	})
	return s
}

// wait waits until the server has stopped writing (the client closed the
// connection, or respond returned).
func (s *hostileServer) wait(tb testing.TB) {
	tb.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		tb.Fatal("the hostile server is still writing: the client did not close the connection")
	}
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// hugeBody answers 200 with a body of 1 GiB, written lazily from one
// reused buffer.
func hugeBody(w io.Writer) error {
	const size = 1 << 30
	if _, err := fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", size); err != nil {
		return err
	}
	chunk := []byte(strings.Repeat("x", 32<<10))
	for left := size; left > 0; left -= len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// hugeHeaders answers 200 with 1 MiB of header lines.
func hugeHeaders(w io.Writer) error {
	if _, err := io.WriteString(w, "HTTP/1.1 200 OK\r\n"); err != nil {
		return err
	}
	line := strings.Repeat("y", 1000)
	for i := 0; i < 1<<20/1024; i++ {
		if _, err := fmt.Fprintf(w, "X-Pad-%05d: %s\r\n", i, line); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "Content-Length: 0\r\n\r\n")
	return err
}

// trickle writes head at once, then the bytes of slow one at a time, every
// interval.
func trickle(head, slow string, interval time.Duration) func(io.Writer) error {
	return func(w io.Writer) error {
		if _, err := io.WriteString(w, head); err != nil {
			return err
		}
		for i := 0; i < len(slow); i++ {
			time.Sleep(interval)
			if _, err := w.Write([]byte{slow[i]}); err != nil {
				return err
			}
		}
		return nil
	}
}

// socketBufferBound is the most a peer can write into a TCP connection the
// other side reads MaxResponseRead bytes of before closing: that, plus the
// largest receive and send buffers Linux may grow a socket to (tcp_rmem,
// tcp_wmem), plus slack. Far below the 1 GiB a reader without a limit takes.
func socketBufferBound() int64 {
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
	return MaxResponseRead + most("/proc/sys/net/ipv4/tcp_rmem") + most("/proc/sys/net/ipv4/tcp_wmem") + 1<<20
}

// TestHostileEndpoints sends one attempt to each kind of hostile endpoint:
// the attempt ends (at the subscription's timeout at the latest), at most
// MaxResponseRead bytes of a body are read (the server cannot write much
// more than that plus the sockets' buffers), and oversized headers fail the
// attempt.
func TestHostileEndpoints(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	const interval = 50 * time.Millisecond
	// A trickle that would take a minute at its pace.
	slowHead := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	slowBodyHead := "HTTP/1.1 200 OK\r\nContent-Length: 1200\r\n\r\n"
	tests := []struct {
		name        string
		respond     func(io.Writer) error
		wantStatus  int
		wantErr     string // a substring of the attempt's error; "" for none
		maxWritten  int64  // most bytes the server may manage to write
		bodyPrefix  string
		endsByTimer bool
	}{
		{name: "1 GiB body", respond: hugeBody, wantStatus: 200, maxWritten: socketBufferBound(), bodyPrefix: "xxxx"},
		{name: "1 MiB of headers", respond: hugeHeaders, wantErr: "header", maxWritten: socketBufferBound()},
		{name: "headers one byte at a time", respond: trickle("", strings.Repeat(slowHead, 100), interval),
			wantErr: "timeout", maxWritten: 1 << 10, endsByTimer: true},
		// The 200 came in time, so the attempt counts as delivered; reading
		// the rest of the body ends at the timeout all the same.
		{name: "body one byte at a time", respond: trickle(slowBodyHead, strings.Repeat("z", 1200), interval),
			wantStatus: 200, maxWritten: 1 << 10, endsByTimer: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newHostileServer(t, tt.respond)
			d := testDispatcher(t, nil)
			sub := testSub(srv.URL)
			sub.Delivery.Timeout = timeout
			res := d.attempt(context.Background(), &sub, singleJob(&sub, `{}`))
			srv.wait(t)
			if res.status != tt.wantStatus {
				t.Errorf("status = %d, want %d (attempt %+v)", res.status, tt.wantStatus, res)
			}
			if tt.wantErr == "" && res.err != "" || !strings.Contains(res.err, tt.wantErr) {
				t.Errorf("error = %q, want one containing %q", res.err, tt.wantErr)
			}
			if n := srv.written.Load(); n > tt.maxWritten {
				t.Errorf("the server wrote %d bytes before the connection closed, want at most %d", n, tt.maxWritten)
			}
			if !strings.HasPrefix(res.body, tt.bodyPrefix) || len(res.body) > 4096 {
				t.Errorf("kept body of %d bytes starting %.10q", len(res.body), res.body)
			}
			// A loose bound: the trickles would take a minute if waited out.
			if tt.endsByTimer && res.duration > 20*timeout {
				t.Errorf("the attempt took %s with a timeout of %s", res.duration, timeout)
			}
			t.Logf("server wrote %d bytes; attempt %d %q in %s", srv.written.Load(), res.status, res.err, res.duration)
		})
	}
}

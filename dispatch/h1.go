package dispatch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/heraldhq/herald/netguard"
)

// h1Client sends deliveries over HTTP/1.1, each exchange on the calling
// goroutine: it writes the request and reads the response on a pooled
// keep-alive connection itself. net/http's Transport hands every request to
// two goroutines of its connection (one writes, one reads) and back, and that
// hand-off cost more CPU than the rest of an attempt; on loopback a client
// like this one takes less than half the CPU per request. Responses are
// parsed by net/http's own http.ReadResponse. TLS is always verified and
// offers only http/1.1. The dialer is the same guarded one as the
// Transport's, refusing blocked addresses on the address actually dialled.
// Requests through a proxy go through net/http instead (see newTransport).
type h1Client struct {
	dialer *net.Dialer
	tls    *tls.Config

	mu     sync.Mutex
	idle   map[string][]*h1Conn // by endpoint: scheme://host:port
	closed bool
}

// h1Conn is one connection to an endpoint.
type h1Conn struct {
	key    string
	nc     net.Conn
	limit  headerLimit // what br may still read of a response's headers
	br     *bufio.Reader
	bw     *bufio.Writer
	req    *http.Request // for ReadResponse: a POST
	reused bool          // served an exchange before this one
	idleAt time.Time
}

// headerLimit lets a reader read at most n more bytes (n < 0: no limit),
// then fails: it bounds a response's headers as MaxResponseHeaderBytes
// bounds the Transport's.
type headerLimit struct {
	r io.Reader
	n int64
}

var errHeadersTooLarge = fmt.Errorf("server response headers exceeded %d bytes", maxResponseHeaderBytes)

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func newH1Client(allowPrivate bool) *h1Client {
	return &h1Client{
		dialer: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second,
			ControlContext: netguard.Control(allowPrivate)},
		// Verification is never turned off (CONTRACT.md §7).
		tls:  &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		idle: map[string][]*h1Conn{},
	}
}

// h1Usable reports whether u can go through the h1Client: an http or https
// URL with an ASCII host (net/http converts other hosts to punycode; they
// take that path).
func h1Usable(u *url.URL) bool {
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return false
	}
	for i := 0; i < len(u.Host); i++ {
		if u.Host[i] >= 0x80 {
			return false
		}
	}
	return true
}

// post sends one POST of body with headers h to u and returns the response,
// whose Body the caller must close: the connection goes back to the pool
// when the body was read to its end and the endpoint keeps the connection.
// ctx's deadline bounds the whole exchange. A pooled connection that the
// endpoint had closed meanwhile fails before any answer; the request is then
// sent once more on a new connection, as net/http does.
func (c *h1Client) post(ctx context.Context, u *url.URL, h http.Header, body []byte) (*http.Response, error) {
	for k, vs := range h {
		if !validHeaderText(k, true) {
			return nil, fmt.Errorf("invalid header %q", k)
		}
		for _, v := range vs {
			if !validHeaderText(v, false) {
				return nil, fmt.Errorf("invalid header %q", k)
			}
		}
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	key := u.Scheme + "://" + addr
	for {
		pc, err := c.get(ctx, key, u, addr)
		if err != nil {
			return nil, timeoutErr(err)
		}
		resp, err := pc.exchange(ctx, u, h, body)
		if err == nil {
			resp.Body = &h1Body{c: c, pc: pc, resp: resp, body: resp.Body}
			return resp, nil
		}
		pc.nc.Close()
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			// The deadline cut the exchange short, whatever the error says:
			// bufio hands a partial line out before the read's error.
			return nil, fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		if pc.reused && staleConn(err) && ctx.Err() == nil {
			continue // a new connection is never reused, so this ends
		}
		return nil, timeoutErr(err)
	}
}

// validHeaderText reports whether s can be written as a header name (no
// colon or space either) or value without ending the line early.
func validHeaderText(s string, name bool) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' || c == '\n' || c == 0:
			return false
		case name && (c == ':' || c == ' '):
			return false
		}
	}
	return s != "" || !name
}

// staleConn reports an error of a pooled connection the endpoint closed
// while it was idle: nothing of an answer came.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// timeoutErr makes a deadline hit on the connection a context deadline, as
// the Transport reports it.
func timeoutErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

// get returns an idle connection to key, or dials one.
func (c *h1Client) get(ctx context.Context, key string, u *url.URL, addr string) (*h1Conn, error) {
	now := time.Now()
	c.mu.Lock()
	for list := c.idle[key]; len(list) > 0; list = c.idle[key] {
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		c.idle[key] = list[:len(list)-1]
		if now.Sub(pc.idleAt) < idleConnTimeout {
			c.mu.Unlock()
			pc.reused = true
			return pc, nil
		}
		pc.nc.Close()
	}
	c.mu.Unlock()

	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" {
		cfg := c.tls.Clone()
		cfg.ServerName = u.Hostname()
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	pc := &h1Conn{key: key, nc: nc, req: &http.Request{Method: http.MethodPost}}
	pc.limit.r = nc
	pc.br = bufio.NewReaderSize(&pc.limit, 4<<10)
	pc.bw = bufio.NewWriterSize(nc, 4<<10)
	return pc, nil
}

// put returns a connection to the pool, or closes it.
func (c *h1Client) put(pc *h1Conn) {
	if pc.br.Buffered() > 0 {
		pc.nc.Close() // the endpoint sent more than its answer
		return
	}
	pc.idleAt = time.Now()
	c.mu.Lock()
	if c.closed || len(c.idle[pc.key]) >= maxIdleConnsPerHost {
		c.mu.Unlock()
		pc.nc.Close()
		return
	}
	c.idle[pc.key] = append(c.idle[pc.key], pc)
	c.mu.Unlock()
}

// closeIdle closes the connections idle for longer than idleConnTimeout,
// or all of them (and takes no more) when all is set.
func (c *h1Client) closeIdle(all bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = c.closed || all
	for key, list := range c.idle {
		keep := list[:0]
		for _, pc := range list {
			if all || now.Sub(pc.idleAt) >= idleConnTimeout {
				pc.nc.Close()
			} else {
				keep = append(keep, pc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(c.idle, key)
		} else {
			c.idle[key] = keep
		}
	}
}

// exchange writes the request and reads the response's head.
func (pc *h1Conn) exchange(ctx context.Context, u *url.URL, h http.Header, body []byte) (*http.Response, error) {
	deadline, _ := ctx.Deadline() // zero: none
	if err := pc.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	w := pc.bw
	w.WriteString("POST ")
	w.WriteString(u.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(u.Host)
	w.WriteString("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("Content-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	w.WriteString("\r\n\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return nil, err
	}
	pc.limit.n = maxResponseHeaderBytes
	for {
		resp, err := http.ReadResponse(pc.br, pc.req)
		if err != nil {
			return nil, err
		}
		// An interim answer (100 Continue, 103 Early Hints) comes before the
		// real one; 101 would switch protocols, which a webhook never asks.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		pc.limit.n = -1
		return resp, nil
	}
}

// h1Body is a response body that gives its connection back once read to its
// end and closed.
type h1Body struct {
	c      *h1Client
	pc     *h1Conn
	resp   *http.Response
	body   io.ReadCloser
	sawEOF bool
	done   bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read on a closed response body")
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.sawEOF = true
	}
	return n, err
}

// Close keeps the connection when the whole body was read and the endpoint
// keeps it open, and closes it otherwise: the rest of a body is never read
// (it may be endless).
func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if b.body == http.NoBody {
		b.sawEOF = true
	}
	if b.sawEOF && !b.resp.Close && b.resp.ProtoAtLeast(1, 1) {
		b.c.put(b.pc)
		return nil
	}
	return b.pc.nc.Close()
}

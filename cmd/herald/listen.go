package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/webhook"
)

// Defaults of listen's settings.
const (
	defaultListenAddr   = "127.0.0.1:9000"
	defaultListenStatus = http.StatusOK
	maxListenBody       = 16 << 20 // a dev receiver: generous, but bounded
	listenShutdownWait  = 5 * time.Second
)

// listenConfig is the settings of `herald listen`, parsed and validated.
type listenConfig struct {
	Addr         string
	Secrets      []string // none: signatures are shown but not checked
	Scheme       string
	Key          []byte // decoded --encryption-key; nil: bodies are not decrypted
	HeaderPrefix string
	Status       int
}

// secretsFlag collects --secret, which may be repeated to verify against
// several secrets (a rotation). String never shows a secret, so --help
// cannot print one taken from the environment.
type secretsFlag struct{ vals *[]string }

func (f secretsFlag) String() string { return "" }
func (f secretsFlag) Set(v string) error {
	*f.vals = append(*f.vals, v)
	return nil
}

// parseListen parses listen's flags; each falls back to its environment
// variable, and a flag given wins. Errors never quote a secret or a key.
func parseListen(args []string, stderr io.Writer, getenv func(string) string) (*listenConfig, error) {
	c := &listenConfig{}
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: herald listen [flags]\n\nA local receiver for development: prints each webhook with its headers,\nverifies its signature, decrypts and pretty-prints its body, and answers --status.\n\n")
		fs.PrintDefaults()
	}
	// Plain settings take the environment as their default, so --help shows it.
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
	}
	str(&c.Addr, "addr", "HERALD_LISTEN_ADDR", defaultListenAddr, "address to receive webhooks on (port 0: any free port)")
	str(&c.Scheme, "scheme", "HERALD_LISTEN_SCHEME", webhook.SchemeStandard, "signature scheme: standard, sha256-base64, sha512-hex or github")
	str(&c.HeaderPrefix, "header-prefix", "HERALD_HEADER_PREFIX", webhook.DefaultHeaderPrefix, "prefix of Herald's headers (<prefix>-Signature, -Encryption-IV)")
	status := strconv.Itoa(defaultListenStatus)
	str(&status, "status", "HERALD_LISTEN_STATUS", status, "HTTP `status` to answer every request with")
	// Secrets and keys are read from the environment only after parsing,
	// so that --help never prints them.
	var secrets []string
	fs.Var(secretsFlag{&secrets}, "secret", "signing `secret` to verify with; repeat the flag for several [HERALD_LISTEN_SECRET]")
	var key string
	fs.StringVar(&key, "encryption-key", "", "`base64` of the 32-byte key to decrypt bodies with [HERALD_LISTEN_ENCRYPTION_KEY]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("listen: unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if v := getenv("HERALD_LISTEN_SECRET"); !given["secret"] && v != "" {
		secrets = []string{v}
	}
	if v := getenv("HERALD_LISTEN_ENCRYPTION_KEY"); !given["encryption-key"] && v != "" {
		key = v
	}

	if !webhook.ValidScheme(c.Scheme) {
		return nil, fmt.Errorf("listen: --scheme: unknown scheme %q (standard, sha256-base64, sha512-hex or github)", c.Scheme)
	}
	for i, s := range secrets {
		if err := webhook.ValidSecret(c.Scheme, s); err != nil {
			return nil, fmt.Errorf("listen: --secret %d is not a %s secret: %w", i+1, c.Scheme, err)
		}
	}
	c.Secrets = secrets
	if key != "" {
		k, err := webhook.DecodeKey(key)
		if err != nil {
			return nil, fmt.Errorf("listen: --encryption-key: %w", err)
		}
		c.Key = k
	}
	n, err := strconv.Atoi(status)
	if err != nil || n < 200 || n > 599 {
		return nil, fmt.Errorf("listen: --status: want an HTTP status from 200 to 599, got %q", status)
	}
	c.Status = n
	if !validHeaderPrefix(c.HeaderPrefix) {
		return nil, fmt.Errorf("listen: --header-prefix: %q is not a header name", c.HeaderPrefix)
	}
	return c, nil
}

// validHeaderPrefix reports whether p can start a header name (RFC 9110
// token characters).
func validHeaderPrefix(p string) bool {
	if p == "" {
		return false
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)
		if !ok {
			return false
		}
	}
	return true
}

// runListen runs `herald listen` with settings from args and the process
// environment.
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runListenEnv(ctx, args, stdout, stderr, os.Getenv)
}

// runListenEnv runs a development receiver until ctx is done: it prints
// "listening on http://ADDR" once the port is bound, then for each request
// its headers, whether its signature verifies, and its body (decrypted and
// pretty-printed), and answers --status.
func runListenEnv(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c, err := parseListen(args, stderr, getenv)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	out := &lockedWriter{w: stdout}
	srv := &http.Server{
		Handler:           newListenHandler(c, out, time.Now),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(out, "listening on http://%s\n", ln.Addr())
	fmt.Fprintf(out, "%s\n\n", c.describe())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("listen: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), listenShutdownWait)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return fmt.Errorf("listen: shut down: %w", err)
	}
	return nil
}

// describe is the line printed at start: what is checked, what is answered.
func (c *listenConfig) describe() string {
	var b strings.Builder
	switch n := len(c.Secrets); n {
	case 0:
		fmt.Fprintf(&b, "signatures not checked (no --secret)")
	case 1:
		fmt.Fprintf(&b, "verifying %s signatures with 1 secret", c.Scheme)
	default:
		fmt.Fprintf(&b, "verifying %s signatures with %d secrets", c.Scheme, n)
	}
	if c.Key != nil {
		fmt.Fprintf(&b, ", decrypting bodies (IV in %s)", webhook.EncryptionIVHeader(c.HeaderPrefix))
	}
	fmt.Fprintf(&b, ", answering %d", c.Status)
	return b.String()
}

// lockedWriter keeps the blocks of concurrent requests whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// newListenHandler prints each request to out as one block and answers
// c.Status. now is the clock the standard scheme's timestamp is checked
// against.
func newListenHandler(c *listenConfig, out io.Writer, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, readErr := io.ReadAll(io.LimitReader(r.Body, maxListenBody+1))
		cut := len(body) > maxListenBody
		if cut {
			body = body[:maxListenBody]
		}
		received := now()

		var b strings.Builder
		fmt.Fprintf(&b, "── %s %s %s\n", herald.FormatTime(received), r.Method, r.URL.RequestURI())
		// Go moves Host out of the header map; show it where it was sent.
		hdr := r.Header.Clone()
		hdr.Set("Host", r.Host)
		for _, k := range slices.Sorted(maps.Keys(hdr)) {
			for _, v := range hdr[k] {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		b.WriteString("\n")

		switch {
		case len(c.Secrets) == 0:
			b.WriteString("signature: not checked: no secret given (--secret)\n")
		default:
			err := webhook.Verify(webhook.VerifyParams{Scheme: c.Scheme, HeaderPrefix: c.HeaderPrefix, Secrets: c.Secrets,
				Header: r.Header, Body: body, Now: received})
			if err != nil {
				fmt.Fprintf(&b, "signature: FAILED: %s (scheme %s)\n", strings.TrimPrefix(err.Error(), "webhook: "), c.Scheme)
			} else {
				fmt.Fprintf(&b, "signature: OK (%s)\n", c.Scheme)
			}
		}
		ivHeader := webhook.EncryptionIVHeader(c.HeaderPrefix)
		plain := body
		switch {
		case c.Key != nil:
			p, err := webhook.Decrypt(c.Key, body, r.Header.Get(ivHeader))
			if err != nil {
				fmt.Fprintf(&b, "decryption: FAILED: %s; the body as received:\n", strings.TrimPrefix(err.Error(), "webhook: "))
			} else {
				b.WriteString("decryption: OK\n")
				plain = p
			}
		case r.Header.Get(ivHeader) != "":
			fmt.Fprintf(&b, "decryption: not done: the body is encrypted (%s is set); give --encryption-key\n", ivHeader)
		}
		// Parse only reads webhook-id here: the body is already plaintext.
		if m, err := webhook.Parse(r.Header, plain, nil, c.HeaderPrefix); err == nil {
			b.WriteString(summary(m))
		}
		if readErr != nil {
			fmt.Fprintf(&b, "body: read failed after %d bytes: %v\n", len(body), readErr)
		}
		if cut {
			fmt.Fprintf(&b, "body: over %d bytes, cut there\n", maxListenBody)
		}
		writeBody(&b, plain)
		fmt.Fprintf(&b, "→ answered %d\n\n", c.Status)

		io.WriteString(out, b.String())
		w.WriteHeader(c.Status)
	})
}

// summary is one line on a parsed message: its id and its events' types.
func summary(m *webhook.Message) string {
	types := make([]string, 0, len(m.Events))
	for _, ev := range m.Events {
		var e struct {
			EventType string `json:"event_type"`
		}
		if json.Unmarshal(ev, &e) == nil && e.EventType != "" {
			types = append(types, e.EventType)
		}
	}
	kind := "event"
	if m.Batch {
		kind = fmt.Sprintf("batch of %d", len(m.Events))
	}
	id := m.ID
	if id == "" {
		id = "(none)"
	}
	return fmt.Sprintf("message: %s, id %s, types %s\n", kind, id, strings.Join(types, ", "))
}

// writeBody writes body pretty-printed when it is JSON, as text when it is
// UTF-8, and quoted otherwise.
func writeBody(b *strings.Builder, body []byte) {
	var pretty bytes.Buffer
	switch {
	case len(body) == 0:
		b.WriteString("(empty body)\n")
	case json.Indent(&pretty, body, "", "  ") == nil:
		b.Write(pretty.Bytes())
		b.WriteString("\n")
	case utf8.Valid(body):
		b.Write(body)
		if !bytes.HasSuffix(body, []byte("\n")) {
			b.WriteString("\n")
		}
	default:
		fmt.Fprintf(b, "%q\n", body)
	}
}

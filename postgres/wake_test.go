package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// cut closes the connections the proxy forwards but keeps accepting new
// ones: the server seems to have dropped its clients.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestWakeReconnects cuts Wake's connection: it connects again, LISTENs
// again, says so with a wake-up (notifications sent while it was away are
// lost), and then hears publishes again. Not parallel, as TestWake.
func TestWakeReconnects(t *testing.T) {
	base, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := freshSchema(t)
	sealer := testSealer(t)
	publisher := openSchema(t, schema, sealer)
	if err := publisher.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, publisher, sub(herald.DefaultTenant, "*"))

	p := startProxy(t, base.Host)
	via := *base
	via.Host = p.addr()
	listener, err := Open(t.Context(), Config{URL: via.String(), Sealer: sealer, Schema: schema, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })

	ctx, cancel := context.WithCancel(t.Context())
	ch := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- listener.Wake(ctx, ch) }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case err := <-done:
			t.Fatalf("%s: Wake returned early: %v", what, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
	}
	wait("listening")
	mustPublish(t, publisher, t0, event(herald.DefaultTenant, "a"))
	wait("publish")

	p.cut()
	wait("listening again")
	mustPublish(t, publisher, t0, event(herald.DefaultTenant, "b"))
	wait("publish after reconnecting")

	// Ending ctx ends Wake, with nil, also while it waits to reconnect.
	p.stop()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Wake returned %v after its context ended, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wake still running after its context ended")
	}
}

// TestCloseEndsWake closes the store under a running Wake: it returns, with
// an error matching ErrUnavailable, rather than hold its connection until
// its context ends.
func TestCloseEndsWake(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ch := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- st.Wake(t.Context(), ch) }()
	select {
	case <-ch: // listening
	case err := <-done:
		t.Fatalf("Wake returned early: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, herald.ErrUnavailable) {
		t.Errorf("Wake after Close: %v, want ErrUnavailable", err)
	}
}

// TestWakeStaysInItsSchema: stores sharing a database but not a schema do
// not wake each other, and a store whose schema comes from the URL's
// search_path listens where one given Config.Schema publishes.
func TestWakeStaysInItsSchema(t *testing.T) {
	t.Parallel()
	sealer := testSealer(t)
	mine, other := freshSchema(t), freshSchema(t)
	publisher, stranger := openSchema(t, mine, sealer), openSchema(t, other, sealer)
	for _, st := range []*Store{publisher, stranger} {
		if err := st.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, publisher, sub(herald.DefaultTenant, "*"))
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", mine)
	u.RawQuery = q.Encode()
	byURL, err := Open(t.Context(), Config{URL: u.String(), Sealer: sealer, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { byURL.Close() })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	listen := func(st *Store) chan struct{} {
		ch := make(chan struct{}, 1)
		go func() { _ = st.Wake(ctx, ch) }()
		select {
		case <-ch: // listening
		case <-time.After(30 * time.Second):
			t.Fatal("the listener never connected")
		}
		return ch
	}
	same, apart := listen(byURL), listen(stranger)
	mustPublish(t, publisher, t0, event(herald.DefaultTenant, "job.status"))
	select {
	case <-same:
	case <-time.After(30 * time.Second):
		t.Fatal("the store on the same schema (by search_path) was not woken")
	}
	select {
	case <-apart:
		t.Error("a store in another schema was woken by the publish")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestWakeChannel(t *testing.T) {
	long := strings.Repeat("s", 60)
	for schema, want := range map[string]string{
		"":       "herald_wake",
		"public": "herald_wake",
		"tenant": "herald_wake_tenant",
		long:     wakeChannel(long),
	} {
		if got := wakeChannel(schema); got != want || len(got) > 63 {
			t.Errorf("wakeChannel(%q) = %q, want %q of at most 63 bytes", schema, got, want)
		}
	}
	if wakeChannel(long) == wakeChannel(long+"x") {
		t.Error("two long schemas share a channel")
	}
}

package postgres

import (
	"context"
	"errors"
	"net/url"
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

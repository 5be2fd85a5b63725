package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestStore runs the Store conformance suite, each case in a schema of its
// own.
func TestStore(t *testing.T) {
	testURL(t)
	t.Parallel()
	storetest.Run(t, func(tb testing.TB) herald.Store { return newStore(tb) })
}

// TestMigrateConcurrent starts three stores at once on an empty schema: one
// applies the migrations, the others wait for its lock and find them done.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	sealer := testSealer(t)
	stores := make([]*Store, 3)
	for i := range stores {
		stores[i] = openSchema(t, schema, sealer)
	}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, st := range stores {
		wg.Go(func() { errs[i] = st.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	var n int
	err := stores[0].withConn(t.Context(), func(c *pgx.Conn) error {
		return c.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(ms))
	}
	for i, st := range stores {
		tn, err := st.TenantGet(t.Context(), herald.DefaultTenant)
		if err != nil || tn.Name != "Default" {
			t.Errorf("store %d: default tenant %+v, %v", i, tn, err)
		}
	}
}

// TestWake checks that a publish through one store wakes another store's
// Wake. Not parallel: every schema shares the database's notification
// channel, so another test's publish would wake it too.
func TestWake(t *testing.T) {
	schema := freshSchema(t)
	sealer := testSealer(t)
	listener, publisher := openSchema(t, schema, sealer), openSchema(t, schema, sealer)
	if err := publisher.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, publisher, sub(herald.DefaultTenant, "*"))

	ctx, cancel := context.WithCancel(t.Context())
	ch := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- listener.Wake(ctx, ch) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Wake returned %v after its context ended, want nil", err)
		}
	}()
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
	wait("listening") // the first wake-up comes once LISTEN is in effect

	mustPublish(t, publisher, t0, event(herald.DefaultTenant, "job.status"))
	wait("publish")

	l := mustLease(t, publisher, herald.LeaseParams{Owner: "w", Now: t0, Margin: time.Second, Limit: 10})
	if len(l.Deliveries) != 1 {
		t.Fatalf("leased %d, want 1", len(l.Deliveries))
	}
	if err := publisher.DeliveryRelease(t.Context(), "w", nil, t0); err != nil {
		t.Fatal(err)
	}
	wait("release")
}

// TestUnavailable checks that failures to reach the server match
// ErrUnavailable and keep their cause.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	base := testURL(t)
	sealer := testSealer(t)
	withHost := func(host string, query url.Values) string {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = host
		q := u.Query()
		for k, v := range query {
			q[k] = v
		}
		u.RawQuery = q.Encode()
		return u.String()
	}

	t.Run("closed port", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = Open(t.Context(), Config{URL: withHost(addr, nil), Sealer: sealer})
		if !errors.Is(err, herald.ErrUnavailable) {
			t.Fatalf("Open: %v, want ErrUnavailable", err)
		}
		var ce *pgconn.ConnectError
		if !errors.As(err, &ce) {
			t.Errorf("Open: %v lost its cause (*pgconn.ConnectError)", err)
		}
	})

	t.Run("server never answers", func(t *testing.T) {
		t.Parallel()
		// Accepts connections and says nothing: only the connect timeout
		// ends Open (the test's own deadline would catch a hang).
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
		_, err = Open(context.Background(), Config{URL: withHost(ln.Addr().String(), url.Values{"connect_timeout": {"1"}}), Sealer: sealer})
		if !errors.Is(err, herald.ErrUnavailable) {
			t.Fatalf("Open: %v, want ErrUnavailable", err)
		}
	})

	t.Run("connection lost", func(t *testing.T) {
		t.Parallel()
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		p := startProxy(t, u.Host)
		st, err := Open(t.Context(), Config{URL: withHost(p.addr(), nil), Sealer: sealer, MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Ping(t.Context()); err != nil {
			t.Fatalf("ping through the proxy: %v", err)
		}
		p.stop()
		err = st.Ping(t.Context())
		if !errors.Is(err, herald.ErrUnavailable) {
			t.Fatalf("ping after the server went away: %v, want ErrUnavailable", err)
		}
		_, err = st.TenantGet(t.Context(), herald.DefaultTenant)
		if !errors.Is(err, herald.ErrUnavailable) {
			t.Fatalf("get tenant after the server went away: %v, want ErrUnavailable", err)
		}
	})

	t.Run("closed store", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := st.Ping(t.Context()); !errors.Is(err, herald.ErrUnavailable) {
			t.Errorf("ping a closed store: %v", err)
		}
		if _, err := st.EventPublish(t.Context(), t0, []herald.PublishRequest{event(herald.DefaultTenant, "a")}); !errors.Is(err, herald.ErrUnavailable) {
			t.Errorf("publish to a closed store: %v", err)
		}
	})
}

// proxy forwards TCP connections to a server until stopped, then cuts them.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln}
	tb.Cleanup(p.stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestSecretsSealedAtRest reads the stored row: no secret or key is there
// in the clear.
func TestSecretsSealedAtRest(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	s := sub(herald.DefaultTenant, "*")
	s.Secrets = []herald.Secret{{Value: "plain-secret-value-0123456789"}}
	s.EncryptionKey = bytes.Repeat([]byte{0xAB}, 32)
	mustCreate(t, st, s)
	var secrets, key []byte
	err := st.withConn(t.Context(), func(c *pgx.Conn) error {
		return c.QueryRow(t.Context(), `SELECT secrets, encryption_key FROM subscriptions WHERE id = $1`, s.ID).Scan(&secrets, &key)
	})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(secrets, []byte("plain-secret-value")) || bytes.Contains(key, s.EncryptionKey[:16]) {
		t.Errorf("secret or key stored in the clear")
	}
	// A sealed value copied to another row does not open.
	other := sub(herald.DefaultTenant, "*")
	mustCreate(t, st, other)
	err = st.withConn(t.Context(), func(c *pgx.Conn) error {
		_, err := c.Exec(t.Context(), `UPDATE subscriptions SET secrets = $1 WHERE id = $2`, secrets, other.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SubscriptionGet(t.Context(), herald.DefaultTenant, other.ID); !errors.Is(err, herald.ErrSealBroken) {
		t.Errorf("get with another row's secrets: %v, want ErrSealBroken", err)
	}
}

// TestOpenSchemaWithoutCreateOnDatabase opens and migrates a store as a
// role that may create tables in its schema but not schemas in the
// database: Open finds the schema there and does not try to create it.
func TestOpenSchemaWithoutCreateOnDatabase(t *testing.T) {
	t.Parallel()
	base, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := freshSchema(t)
	role := schema + "_role"
	admin, err := pgx.Connect(t.Context(), base.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		`CREATE SCHEMA ` + pgx.Identifier{schema}.Sanitize(),
		`CREATE ROLE ` + pgx.Identifier{role}.Sanitize() + ` LOGIN`,
		`GRANT USAGE, CREATE ON SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` TO ` + pgx.Identifier{role}.Sanitize(),
	} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { // before the schema is dropped
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base.String())
		if err != nil {
			t.Errorf("drop role: %v", err)
			return
		}
		defer c.Close(ctx)
		for _, q := range []string{`DROP OWNED BY ` + pgx.Identifier{role}.Sanitize(), `DROP ROLE ` + pgx.Identifier{role}.Sanitize()} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	var canCreate bool
	if err := admin.QueryRow(t.Context(), `SELECT has_database_privilege($1, current_database(), 'CREATE')`, role).Scan(&canCreate); err != nil {
		t.Fatal(err)
	}
	if canCreate {
		t.Skipf("role %s may create schemas in this database", role)
	}

	as := *base
	as.User = url.User(role)
	st, err := Open(t.Context(), Config{URL: as.String(), Sealer: testSealer(t), Schema: schema, MaxConns: 2})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer st.Close()
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := st.TenantGet(t.Context(), herald.DefaultTenant); err != nil {
		t.Fatal(err)
	}
}

// Leases, outcomes, releases and purges commit without waiting for the WAL
// flush; everything else, publishes first, waits for it.
func TestSoftTransactions(t *testing.T) {
	st := newStore(t)
	show := func(run func(context.Context, func(pgx.Tx) error) error) string {
		t.Helper()
		var v string
		if err := run(t.Context(), func(tx pgx.Tx) error {
			return tx.QueryRow(t.Context(), `SHOW synchronous_commit`).Scan(&v)
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := show(st.tx); v != "on" {
		t.Errorf("tx: synchronous_commit = %q, want on", v)
	}
	if v := show(st.txSoft); v != "off" {
		t.Errorf("txSoft: synchronous_commit = %q, want off", v)
	}
	// SET LOCAL ends with its transaction: the connection is back to on.
	if v := show(st.tx); v != "on" {
		t.Errorf("tx after txSoft: synchronous_commit = %q, want on", v)
	}
}

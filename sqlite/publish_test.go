package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.db")
	sealer := testSealer(t)
	a, b := openAt(t, path, sealer), openAt(t, path, sealer)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, st := range []*Store{a, b} {
		wg.Go(func() { errs[i] = st.Migrate(context.Background()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	ten, err := b.TenantGet(context.Background(), herald.DefaultTenant)
	if err != nil || ten.Name != "Default" {
		t.Fatalf("default tenant = %+v, %v", ten, err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.r.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("schema_migrations rows = %d, want %d, %v", n, len(ms), err)
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no sealer", Config{Path: filepath.Join(dir, "a.db")}},
		{"no path", Config{Sealer: testSealer(t)}},
		{"query in path", Config{Path: filepath.Join(dir, "b.db?mode=ro"), Sealer: testSealer(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if st, err := Open(context.Background(), tt.cfg); err == nil {
				st.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestFanOut(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	exact := sub("t1", "job.status")
	prefix := sub("t1", "job.*")
	dash := sub("t1", "user-*")
	all := sub("t1", "*")
	twice := sub("t1", "job.*", "job.status", "*", "job.*")
	paused := sub("t1", "*")
	paused.Status = herald.StatusPaused
	disabled := sub("t1", "*")
	disabled.Status = herald.StatusDisabled
	test := sub("t1", "*")
	test.Mode = herald.ModeTest
	other := sub("t2", "*")
	mustCreate(t, st, exact, prefix, dash, all, twice, paused, disabled, test, other)

	tests := []struct {
		name   string
		typ    string
		test   bool
		tenant string
		want   []string
	}{
		{"exact and prefixes", "job.status", false, "t1", []string{exact.ID, prefix.ID, all.ID, twice.ID, paused.ID}},
		{"prefix only", "job.created", false, "t1", []string{prefix.ID, all.ID, twice.ID, paused.ID}},
		{"prefix is not a substring", "jobs.x", false, "t1", []string{all.ID, twice.ID, paused.ID}},
		{"dash prefix", "user-payroll-submitted", false, "t1", []string{dash.ID, all.ID, twice.ID, paused.ID}},
		{"test events go to test subscriptions", "job.status", true, "t1", []string{test.ID}},
		{"other tenant", "job.status", false, "t2", []string{other.ID}},
		{"no subscriptions", "job.status", false, "t3", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := event(tt.tenant, tt.typ)
			req.Event.Test = tt.test
			res := mustPublish(t, st, t0, req)[0]
			if res.Deliveries != len(tt.want) || len(res.DeliveryIDs) != len(tt.want) {
				t.Fatalf("deliveries = %d (%d ids), want %d", res.Deliveries, len(res.DeliveryIDs), len(tt.want))
			}
			got := map[string]bool{}
			for _, id := range res.DeliveryIDs {
				d, _, err := st.DeliveryGet(context.Background(), tt.tenant, id)
				if err != nil {
					t.Fatal(err)
				}
				if got[d.SubscriptionID] {
					t.Errorf("subscription %s got two deliveries", d.SubscriptionID)
				}
				got[d.SubscriptionID] = true
				if d.Status != herald.DeliveryPending || !d.NextAttemptAt.Equal(t0) || d.EventID != req.Event.ID ||
					d.TraceID == "" || d.Seq <= 0 || len(d.ID) < 5 || d.ID[:4] != herald.PrefixDelivery {
					t.Errorf("delivery = %+v", d)
				}
			}
			for _, id := range tt.want {
				if !got[id] {
					t.Errorf("subscription %s got no delivery", id)
				}
			}
			e, err := st.EventGet(context.Background(), tt.tenant, req.Event.ID)
			if err != nil {
				t.Fatal(err)
			}
			if e.Deliveries != len(tt.want) || !e.ReceivedAt.Equal(t0) || string(e.Data) != `{"n":1}` ||
				e.Test != tt.test || !e.CreateTime.Equal(t0) {
				t.Errorf("event = %+v", e)
			}
		})
	}
}

func TestPublishOnly(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	a, b := sub("t1", "nothing.matches"), sub("t2", "*")
	mustCreate(t, st, a, b)
	req := event("t1", herald.EventTypeTest)
	req.Only = a.ID
	wrong := event("t1", herald.EventTypeTest)
	wrong.Only = b.ID
	res, err := st.EventPublish(context.Background(), t0, []herald.PublishRequest{req, wrong})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Deliveries != 1 {
		t.Errorf("only = %+v", res[0])
	}
	if !errors.Is(res[1].Err, herald.ErrNotFound) {
		t.Errorf("only another tenant's subscription: err = %v", res[1].Err)
	}
	if _, err := st.EventGet(context.Background(), "t1", wrong.Event.ID); !errors.Is(err, herald.ErrNotFound) {
		t.Errorf("failed request stored its event: %v", err)
	}
}

func TestPublishIdempotent(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub("t1", "*"), sub("t1", "a"))
	first := event("t1", "a")
	res := mustPublish(t, st, t0, first)[0]
	if res.Deliveries != 2 {
		t.Fatalf("deliveries = %d", res.Deliveries)
	}
	again := first
	conflict := first
	conflict.Event.Hash = []byte("other")
	inBatch := event("t1", "b")
	inBatchConflict := inBatch
	inBatchConflict.Event.Hash = []byte("x")
	got, err := st.EventPublish(context.Background(), t0, []herald.PublishRequest{again, conflict, inBatch, inBatch, inBatchConflict})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Err != nil || got[0].Deliveries != 2 || len(got[0].DeliveryIDs) != 0 || got[0].EventID != first.Event.ID {
		t.Errorf("repeat = %+v", got[0])
	}
	if !errors.Is(got[1].Err, herald.ErrConflict) {
		t.Errorf("other hash: err = %v", got[1].Err)
	}
	if got[2].Err != nil || got[2].Deliveries != 1 || len(got[2].DeliveryIDs) != 1 {
		t.Errorf("new in batch = %+v", got[2])
	}
	if got[3].Err != nil || got[3].Deliveries != 1 || len(got[3].DeliveryIDs) != 0 {
		t.Errorf("repeat in batch = %+v", got[3])
	}
	if !errors.Is(got[4].Err, herald.ErrConflict) {
		t.Errorf("conflict in batch: err = %v", got[4].Err)
	}
	ds, _, err := st.DeliveryList(context.Background(), "t1", herald.DeliveryFilter{})
	if err != nil || len(ds) != 3 {
		t.Fatalf("deliveries stored = %d, %v", len(ds), err)
	}
	// Another tenant may use the same id.
	same := first
	same.Event.TenantID = "t2"
	if r := mustPublish(t, st, t0, same)[0]; r.Deliveries != 0 {
		t.Errorf("t2 = %+v", r)
	}
}

func TestSeqIncreases(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	s := sub("t1", "*")
	mustCreate(t, st, s)
	var last int64
	for range 3 {
		res := publishN(t, st, t0, "t1", "a", 3)
		for _, r := range res {
			d, _, err := st.DeliveryGet(context.Background(), "t1", r.DeliveryIDs[0])
			if err != nil {
				t.Fatal(err)
			}
			if d.Seq <= last {
				t.Fatalf("seq %d after %d", d.Seq, last)
			}
			last = d.Seq
		}
		// Purging the newest rows must not let seq go back.
		if _, err := st.w.Exec(`UPDATE deliveries SET status = 'succeeded', completed_at = 1`); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Purge(context.Background(), t0, 100); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSecretsSealedOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.db")
	sealer := testSealer(t)
	st := openAt(t, path, sealer)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	secret := "whsec_TOPSECRETsigningVALUE0123456789"
	key := bytes.Repeat([]byte("K3y!"), 8)
	s := sub("t1", "*")
	s.Secrets = []herald.Secret{{Value: secret}, {Value: secret + "old", ExpiresAt: t0}}
	s.EncryptionKey = key
	mustCreate(t, st, s)
	s.Name = "renamed"
	if err := st.SubscriptionUpdate(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got, err := st.SubscriptionGet(context.Background(), "t1", s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Secrets) != 2 || got.Secrets[0].Value != secret || !got.Secrets[1].ExpiresAt.Equal(t0) ||
		!bytes.Equal(got.EncryptionKey, key) || got.Name != "renamed" {
		t.Fatalf("opened = %+v", got)
	}
	// Look in every file of the database while the WAL still holds the
	// writes, then again after Close has checkpointed them.
	check := func(when string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		seen := false // a control: the URL is stored in clear, so the search works
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("TOPSECRET")) || bytes.Contains(b, key) {
				t.Errorf("%s: %s holds a secret in clear", when, e.Name())
			}
			seen = seen || bytes.Contains(b, []byte("https://example.com/hook"))
		}
		if !seen {
			t.Errorf("%s: the subscription's URL is in no file", when)
		}
	}
	check("open")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed")

	// A sealed value copied to another row does not open.
	st2 := openAt(t, path, sealer)
	other := sub("t1", "*")
	mustCreate(t, st2, other)
	if _, err := st2.w.Exec(`UPDATE subscriptions SET secrets = (SELECT secrets FROM subscriptions WHERE id = ?) WHERE id = ?`,
		s.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st2.SubscriptionGet(context.Background(), "t1", other.ID); !errors.Is(err, herald.ErrSealBroken) {
		t.Errorf("copied secret: err = %v, want ErrSealBroken", err)
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	var mode string
	var sync, fk int
	if err := st.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	// NORMAL: a commit does not wait for the disk; what must be durable
	// waits for walSync's flush instead (walsync_test.go).
	if err := st.w.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 1 {
		t.Errorf("synchronous = %d, %v; want 1 (NORMAL)", sync, err)
	}
	var checkpoint int
	if err := st.w.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&checkpoint); err != nil || checkpoint != WALCheckpointPages {
		t.Errorf("wal_autocheckpoint = %d, %v; want %d", checkpoint, err, WALCheckpointPages)
	}
	if err := st.w.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v", fk, err)
	}
	if _, err := st.r.Exec(`INSERT INTO settings (name, value) VALUES ('x', 'y')`); err == nil {
		t.Error("the read pool wrote")
	}
}

// TestClaimSeqs: the Seq of each delivery a publish claims is the one
// stored, across multi-row statements of every size (64, 32, … 1), with
// repeated events (no delivery) among new ones, and after the newest rows
// were purged (AUTOINCREMENT does not reuse their seqs).
func TestClaimSeqs(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustCreate(t, st, sub("t1", "job.*"), sub("t1", "*"))
	claim := herald.Claim{Owner: "w", Margin: time.Minute, Room: func(string) (int, bool) { return 1 << 20, true }}
	repeat := event("t1", "job.status")
	mustPublish(t, st, t0, repeat)
	for _, n := range []int{1, 3, 45, 90} {
		reqs := []herald.PublishRequest{repeat}
		for range n {
			reqs = append(reqs, event("t1", "job.status"))
		}
		res, l, err := st.EventPublishClaim(context.Background(), t0, reqs, claim)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Deliveries != 2 || len(res[0].DeliveryIDs) != 0 {
			t.Fatalf("repeat = %+v", res[0])
		}
		if len(l.Deliveries) != 2*n {
			t.Fatalf("%d events: claimed %d deliveries, want %d", n, len(l.Deliveries), 2*n)
		}
		for _, ld := range l.Deliveries {
			d, _, err := st.DeliveryGet(context.Background(), "t1", ld.Delivery.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d.Seq != ld.Delivery.Seq || d.EventID != ld.Event.ID || d.SubscriptionID != ld.Delivery.SubscriptionID {
				t.Fatalf("%d events: claimed %s as seq %d (event %s), stored as seq %d (event %s)",
					n, d.ID, ld.Delivery.Seq, ld.Event.ID, d.Seq, d.EventID)
			}
		}
		if _, err := st.w.Exec(`UPDATE deliveries SET status = 'succeeded', completed_at = 1
			WHERE seq > (SELECT max(seq) - 5 FROM deliveries)`); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Purge(context.Background(), t0, 100); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEventDeliveryRange: a publish stores each event's first delivery seq,
// its deliveries hold the consecutive seqs after it, and migration 0005
// fills first_delivery in for events stored before it.
func TestEventDeliveryRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t)
	mustCreate(t, st, sub("t1", "*"), sub("t1", "a.*"), sub("t1", "b.*"))
	res := mustPublish(t, st, t0, event("t1", "a.x"), event("t1", "b.x"), event("t1", "c.x"), event("t1", "a.y"))
	check := func(when string) {
		t.Helper()
		for _, r := range res {
			var first sql.NullInt64
			var n int
			if err := st.r.QueryRow(`SELECT first_delivery, deliveries FROM events WHERE tenant_id = 't1' AND id = ?`,
				r.EventID).Scan(&first, &n); err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			rows, err := st.r.Query(`SELECT seq FROM deliveries WHERE event_id = ? ORDER BY seq`, r.EventID)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var seq int64
				rows.Scan(&seq)
				seqs = append(seqs, seq)
			}
			rows.Close()
			if !first.Valid || len(seqs) != n || seqs[0] != first.Int64 || seqs[n-1] != first.Int64+int64(n)-1 {
				t.Errorf("%s: event %s: first_delivery %v, %d deliveries; its deliveries' seqs %v", when, r.EventID, first, n, seqs)
			}
			ds, _, err := st.DeliveryList(ctx, "t1", herald.DeliveryFilter{EventID: r.EventID})
			if err != nil || len(ds) != n {
				t.Errorf("%s: DeliveryList of event %s: %d deliveries, %v; want %d", when, r.EventID, len(ds), err, n)
			}
		}
	}
	check("published")

	// As stored before migration 0005: no first_delivery, deliveries_event.
	if _, err := st.w.Exec(`ALTER TABLE events DROP COLUMN first_delivery;
		CREATE INDEX deliveries_event ON deliveries (tenant_id, event_id);
		DELETE FROM schema_migrations WHERE version = 5`); err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// A migration applied leaves the WAL cut back to nothing.
	if fi, err := os.Stat(st.sync.path); err != nil || fi.Size() != 0 {
		t.Errorf("the WAL after a migration: %v, %v; want it empty", fi, err)
	}
	check("migrated")
	var idx int
	if err := st.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'deliveries_event'`).Scan(&idx); err != nil || idx != 0 {
		t.Errorf("deliveries_event still there after migration 0005 (%d, %v)", idx, err)
	}
}

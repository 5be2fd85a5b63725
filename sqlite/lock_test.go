package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func openExclusive(tb testing.TB, path string, sealer *herald.Sealer) (*Store, error) {
	tb.Helper()
	st, err := Open(context.Background(), Config{Path: path, Sealer: sealer, Exclusive: true})
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(context.Background()); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func TestExclusiveLocksAndResetsLeases(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.db")
	sealer := testSealer(t)
	first, err := openExclusive(t, path, sealer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openExclusive(t, path, sealer); !errors.Is(err, errLocked) {
		t.Fatalf("second exclusive open: %v, want errLocked", err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mustCreate(t, first, sub(herald.DefaultTenant, "*"))
	publishN(t, first, now, herald.DefaultTenant, "a.b", 3)
	if l := mustLease(t, first, herald.LeaseParams{Owner: "dead", Now: now, Margin: time.Hour, Limit: 10}); len(l.Deliveries) != 3 {
		t.Fatalf("leased %d, want 3", len(l.Deliveries))
	}
	// The process "dies" holding the leases; a new one opens the file.
	first.Close()
	second, err := openExclusive(t, path, sealer)
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	defer second.Close()
	l := mustLease(t, second, herald.LeaseParams{Owner: "new", Now: now, Margin: time.Hour, Limit: 10})
	if len(l.Deliveries) != 3 {
		t.Fatalf("after reopening, leased %d deliveries at once, want the 3 left by the dead owner", len(l.Deliveries))
	}
}

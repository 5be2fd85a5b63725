package sqlite_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/sqlite"
	"github.com/heraldhq/herald/storetest"
)

// TestStore runs the Store conformance suite against a fresh database file
// per case.
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(tb testing.TB) herald.Store {
		tb.Helper()
		key := make([]byte, herald.MasterKeySize)
		_, _ = rand.Read(key)
		sealer, err := herald.NewSealer(key)
		if err != nil {
			tb.Fatal(err)
		}
		st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "herald.db"), Sealer: sealer})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { st.Close() })
		if err := st.Migrate(context.Background()); err != nil {
			tb.Fatal(err)
		}
		return st
	})
}

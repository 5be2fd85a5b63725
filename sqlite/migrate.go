package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded file, migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	out := make([]migration, 0, len(names))
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and _", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migration %s: version %d used twice", out[i].name, out[i].version)
		}
	}
	return out, nil
}

// Migrate applies the embedded migrations not applied yet, forward only, in
// one BEGIN IMMEDIATE transaction: a second process calling Migrate at the
// same time waits for the lock (busy_timeout) and then finds them applied.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var applied []string
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at INTEGER NOT NULL
		)`); err != nil {
			return err
		}
		done := map[int]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			done[v] = true
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, s.now().UnixMicro()); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			applied = append(applied, m.name)
		}
		if s.lock != nil {
			// Sole owner of the file: whatever is marked delivering was
			// left by a process that died; it is due again now.
			if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', lease_owner = '',
				lease_expires = NULL WHERE status = 'delivering'`); err != nil {
				return fmt.Errorf("reset leases: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM lanes`); err != nil {
				return fmt.Errorf("reset lanes: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range applied {
		s.log.Info("migration applied", "migration", name)
	}
	if len(applied) > 0 {
		// A migration may rewrite a whole table in one transaction, and the
		// WAL file keeps the size it grew to: copy it into the database and
		// cut it back to nothing.
		if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return fmt.Errorf("migrate: checkpoint: %w", s.classify(err))
		}
	}
	return nil
}

package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
)

// SettingGet returns the value stored under name, or ErrNotFound.
func (s *Store) SettingGet(ctx context.Context, name string) ([]byte, error) {
	r, err := s.reader()
	if err != nil {
		return nil, fmt.Errorf("get setting: %w", err)
	}
	var v []byte
	if err := r.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("get setting: %w", s.classify(err))
	}
	return v, nil
}

// SettingPutIfAbsent stores value under name unless one is there, and
// returns what is stored afterwards.
func (s *Store) SettingPutIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	var out []byte
	err := s.write(ctx, func(tx *sql.Tx) error {
		if value == nil {
			value = []byte{}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&out)
	})
	if err != nil {
		return nil, fmt.Errorf("put setting: %w", err)
	}
	return out, nil
}

// TenantCreate stores a tenant; ErrConflict if its id exists.
func (s *Store) TenantCreate(ctx context.Context, t herald.Tenant) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)`,
			t.ID, t.Name, micro(t.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	return nil
}

// TenantGet returns a tenant or ErrNotFound.
func (s *Store) TenantGet(ctx context.Context, id string) (herald.Tenant, error) {
	r, err := s.reader()
	if err != nil {
		return herald.Tenant{}, fmt.Errorf("get tenant: %w", err)
	}
	var t herald.Tenant
	var created sql.NullInt64
	if err := r.QueryRowContext(ctx, `SELECT id, name, created_at FROM tenants WHERE id = ?`, id).
		Scan(&t.ID, &t.Name, &created); err != nil {
		return herald.Tenant{}, fmt.Errorf("get tenant: %w", s.classify(err))
	}
	t.CreatedAt = fromMicro(created)
	return t, nil
}

// TenantList pages through tenants by id. The cursor is the last id, encoded.
func (s *Store) TenantList(ctx context.Context, p herald.Page) ([]herald.Tenant, string, error) {
	r, err := s.reader()
	if err != nil {
		return nil, "", fmt.Errorf("list tenants: %w", err)
	}
	limit := p.Size()
	after := ""
	if p.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || len(b) == 0 {
			return nil, "", fmt.Errorf("list tenants: %w", herald.Invalid("cursor", "not a cursor of this list"))
		}
		after = string(b)
	}
	rows, err := r.QueryContext(ctx, `SELECT id, name, created_at FROM tenants WHERE id > ? ORDER BY id LIMIT ?`, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list tenants: %w", s.classify(err))
	}
	defer rows.Close()
	var out []herald.Tenant
	for rows.Next() {
		var t herald.Tenant
		var created sql.NullInt64
		if err := rows.Scan(&t.ID, &t.Name, &created); err != nil {
			return nil, "", fmt.Errorf("list tenants: %w", s.classify(err))
		}
		t.CreatedAt = fromMicro(created)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list tenants: %w", s.classify(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(out[limit-1].ID))
	}
	return out, next, nil
}

// APIKeyCreate stores a key. ErrNotFound without its tenant; ErrConflict if
// the id or hash exists.
func (s *Store) APIKeyCreate(ctx context.Context, k herald.APIKey) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM tenants WHERE id = ?`, k.TenantID).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("tenant %q: %w", k.TenantID, herald.ErrNotFound)
			}
			return err
		}
		hash := k.Hash
		if hash == nil {
			hash = []byte{}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, tenant_id, prefix, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)`,
			k.ID, k.TenantID, k.Prefix, hash, micro(k.CreatedAt), micro(k.RevokedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

// APIKeyByHash returns the unrevoked key with this hash, or ErrNotFound.
func (s *Store) APIKeyByHash(ctx context.Context, hash []byte) (herald.APIKey, error) {
	if hash == nil {
		hash = []byte{}
	}
	var k herald.APIKey
	var created, revoked sql.NullInt64
	q, err := s.readStmt(ctx, `SELECT id, tenant_id, prefix, hash, created_at, revoked_at
		FROM api_keys WHERE hash = ? AND revoked_at IS NULL`)
	if err != nil {
		return herald.APIKey{}, fmt.Errorf("api key by hash: %w", s.classify(err))
	}
	err = q.QueryRowContext(ctx, hash).
		Scan(&k.ID, &k.TenantID, &k.Prefix, &k.Hash, &created, &revoked)
	if err != nil {
		return herald.APIKey{}, fmt.Errorf("api key by hash: %w", s.classify(err))
	}
	k.CreatedAt, k.RevokedAt = fromMicro(created), fromMicro(revoked)
	return k, nil
}

// APIKeyRevoke revokes a tenant's unrevoked key at now.
func (s *Store) APIKeyRevoke(ctx context.Context, tenantID, keyID string, now time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL`,
			now.UnixMicro(), tenantID, keyID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return herald.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	return nil
}

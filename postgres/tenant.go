package postgres

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// SettingGet returns the value stored under name, or ErrNotFound.
func (s *Store) SettingGet(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	})
	if err != nil {
		return nil, fmt.Errorf("get setting: %w", err)
	}
	return v, nil
}

// SettingPutIfAbsent stores value under name unless one is there, and
// returns what is stored afterwards. A racing insert waits on the primary
// key for the first one's commit; the SELECT, a statement of its own, then
// sees the winner's value.
func (s *Store) SettingPutIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	if value == nil {
		value = []byte{}
	}
	var out []byte
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, value); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&out)
	})
	if err != nil {
		return nil, fmt.Errorf("put setting: %w", err)
	}
	return out, nil
}

// TenantCreate stores a tenant; ErrConflict if its id exists.
func (s *Store) TenantCreate(ctx context.Context, t herald.Tenant) error {
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)`,
			t.ID, t.Name, ts(t.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	return nil
}

// TenantGet returns a tenant or ErrNotFound.
func (s *Store) TenantGet(ctx context.Context, id string) (herald.Tenant, error) {
	var t herald.Tenant
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var created pgtype.Timestamptz
		if err := c.QueryRow(ctx, `SELECT id, name, created_at FROM tenants WHERE id = $1`, id).
			Scan(&t.ID, &t.Name, &created); err != nil {
			return err
		}
		t.CreatedAt = fromTS(created)
		return nil
	})
	if err != nil {
		return herald.Tenant{}, fmt.Errorf("get tenant: %w", err)
	}
	return t, nil
}

// TenantList pages through tenants by id. The cursor is the last id, encoded.
func (s *Store) TenantList(ctx context.Context, p herald.Page) ([]herald.Tenant, string, error) {
	limit := p.Size()
	after := ""
	if p.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || len(b) == 0 {
			return nil, "", fmt.Errorf("list tenants: %w", herald.Invalid("cursor", "not a cursor of this list"))
		}
		after = string(b)
	}
	var out []herald.Tenant
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		// COLLATE "C": byte order, the same as the cursor's comparison
		// whatever the database's collation.
		rows, err := c.Query(ctx, `SELECT id, name, created_at FROM tenants WHERE id > $1 COLLATE "C"
			ORDER BY id COLLATE "C" LIMIT $2`, after, limit+1)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (herald.Tenant, error) {
			var t herald.Tenant
			var created pgtype.Timestamptz
			err := r.Scan(&t.ID, &t.Name, &created)
			t.CreatedAt = fromTS(created)
			return t, err
		})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list tenants: %w", err)
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
	hash := k.Hash
	if hash == nil {
		hash = []byte{}
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var one int32
		if err := tx.QueryRow(ctx, `SELECT 1 FROM tenants WHERE id = $1`, k.TenantID).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("tenant %q: %w", k.TenantID, herald.ErrNotFound)
			}
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, tenant_id, prefix, hash, created_at, revoked_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			k.ID, k.TenantID, k.Prefix, hash, ts(k.CreatedAt), ts(k.RevokedAt))
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
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var created, revoked pgtype.Timestamptz
		if err := c.QueryRow(ctx, `SELECT id, tenant_id, prefix, hash, created_at, revoked_at
			FROM api_keys WHERE hash = $1 AND revoked_at IS NULL`, hash).
			Scan(&k.ID, &k.TenantID, &k.Prefix, &k.Hash, &created, &revoked); err != nil {
			return err
		}
		k.CreatedAt, k.RevokedAt = fromTS(created), fromTS(revoked)
		return nil
	})
	if err != nil {
		return herald.APIKey{}, fmt.Errorf("api key by hash: %w", err)
	}
	return k, nil
}

// APIKeyRevoke revokes a tenant's unrevoked key at now.
func (s *Store) APIKeyRevoke(ctx context.Context, tenantID, keyID string, now time.Time) error {
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL`,
			tsAlways(now), tenantID, keyID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return herald.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	return nil
}

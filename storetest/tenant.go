package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func lifecycleCases() []testCase {
	return []testCase{
		{"PingAnswers", func(t *testing.T, s herald.Store) {
			must(t, s.Ping(t.Context()), "ping")
		}},
		{"MigrateAgainKeepsData", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range errs {
				wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
			}
			wg.Wait()
			for i, err := range errs {
				must(t, err, fmt.Sprintf("migrate again (%d)", i))
			}
			for _, id := range []string{herald.DefaultTenant, "acme"} {
				_, err := s.TenantGet(t.Context(), id)
				must(t, err, "get tenant "+id+" after migrating again")
			}
		}},
		{"ClosedStoreUnavailable", func(t *testing.T, s herald.Store) {
			must(t, s.Close(), "close")
			_, err := s.TenantGet(t.Context(), herald.DefaultTenant)
			wantErr(t, err, herald.ErrUnavailable, "get tenant from a closed store")
		}},
	}
}

func settingCases() []testCase {
	return []testCase{
		{"GetMissing", func(t *testing.T, s herald.Store) {
			_, err := s.SettingGet(t.Context(), "storetest.missing")
			wantErr(t, err, herald.ErrNotFound, "get missing setting")
		}},
		{"PutIfAbsentKeepsFirst", func(t *testing.T, s herald.Store) {
			first := []byte("first\x00value")
			got, err := s.SettingPutIfAbsent(t.Context(), "admin_key_hash", first)
			must(t, err, "put first")
			diff(t, "first put answer", first, got)
			got, err = s.SettingPutIfAbsent(t.Context(), "admin_key_hash", []byte("second"))
			must(t, err, "put second")
			diff(t, "second put answer", first, got)
			got, err = s.SettingGet(t.Context(), "admin_key_hash")
			must(t, err, "get")
			diff(t, "stored value", first, got)
			_, err = s.SettingGet(t.Context(), "other")
			wantErr(t, err, herald.ErrNotFound, "get another name")
		}},
		{"PutIfAbsentRace", func(t *testing.T, s herald.Store) {
			const n = 4
			got := make([][]byte, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					got[i], errs[i] = s.SettingPutIfAbsent(t.Context(), "master_key", []byte{byte('a' + i)})
				})
			}
			wg.Wait()
			for i := range n {
				must(t, errs[i], "racing put")
				if !bytes.Equal(got[i], got[0]) {
					t.Errorf("racing puts answered %q and %q", got[0], got[i])
				}
			}
			stored, err := s.SettingGet(t.Context(), "master_key")
			must(t, err, "get")
			diff(t, "stored value", got[0], stored)
		}},
	}
}

func tenantCases() []testCase {
	return []testCase{
		{"DefaultExists", func(t *testing.T, s herald.Store) {
			tn, err := s.TenantGet(t.Context(), herald.DefaultTenant)
			must(t, err, "get default tenant")
			if tn.ID != herald.DefaultTenant {
				t.Errorf("default tenant id %q", tn.ID)
			}
		}},
		{"CreateGet", func(t *testing.T, s herald.Store) {
			want := herald.Tenant{ID: "acme", Name: "Acme Payroll", CreatedAt: at(time.Hour)}
			must(t, s.TenantCreate(t.Context(), want), "create")
			got, err := s.TenantGet(t.Context(), "acme")
			must(t, err, "get")
			diff(t, "tenant", want, got)
		}},
		{"GetMissing", func(t *testing.T, s herald.Store) {
			_, err := s.TenantGet(t.Context(), "nobody")
			wantErr(t, err, herald.ErrNotFound, "get missing tenant")
		}},
		{"DuplicateConflict", func(t *testing.T, s herald.Store) {
			want := newTenant(t, s, "acme")
			err := s.TenantCreate(t.Context(), herald.Tenant{ID: "acme", Name: "Other", CreatedAt: at(time.Hour)})
			wantErr(t, err, herald.ErrConflict, "create duplicate tenant")
			got, err := s.TenantGet(t.Context(), "acme")
			must(t, err, "get")
			diff(t, "tenant after failed duplicate", want, got)
			err = s.TenantCreate(t.Context(), herald.Tenant{ID: herald.DefaultTenant, Name: "x", CreatedAt: at(0)})
			wantErr(t, err, herald.ErrConflict, "create default tenant again")
		}},
		{"ListPagesByID", func(t *testing.T, s herald.Store) {
			// Created out of order; listed by id. With "default" there
			// are 6, so limit 2 ends on a full page and limit 4 does not.
			for _, id := range []string{"t04", "t01", "t05", "t03", "t02"} {
				newTenant(t, s, id)
			}
			all := []string{"default", "t01", "t02", "t03", "t04", "t05"}
			for _, tc := range []struct {
				limit int
				want  [][]string
			}{
				{1, [][]string{{"default"}, {"t01"}, {"t02"}, {"t03"}, {"t04"}, {"t05"}}},
				{2, [][]string{{"default", "t01"}, {"t02", "t03"}, {"t04", "t05"}}},
				{4, [][]string{{"default", "t01", "t02", "t03"}, {"t04", "t05"}}},
				{500, [][]string{all}},
			} {
				t.Run(fmt.Sprint("limit", tc.limit), func(t *testing.T) {
					pages := walk(t, tc.limit, func(p herald.Page) ([]herald.Tenant, string, error) {
						return s.TenantList(t.Context(), p)
					})
					diff(t, "tenant pages", tc.want, pageIDs(pages, func(tn herald.Tenant) string { return tn.ID }))
				})
			}
			got, next, err := s.TenantList(t.Context(), herald.Page{})
			must(t, err, "list with zero page")
			if next != "" || len(got) != len(all) {
				t.Errorf("zero page: %d tenants, next %q; want %d and no cursor", len(got), next, len(all))
			}
			for _, tn := range got {
				if tn.ID == "t03" {
					diff(t, "listed tenant", herald.Tenant{ID: "t03", Name: "Tenant t03", CreatedAt: at(0)}, tn)
				}
			}
		}},
		{"ListDefaultLimit", func(t *testing.T, s herald.Store) {
			// 1 + 50 tenants: a zero limit means 50.
			for i := range herald.DefaultPageLimit {
				newTenant(t, s, fmt.Sprintf("t%03d", i))
			}
			got, next, err := s.TenantList(t.Context(), herald.Page{})
			must(t, err, "list first page")
			if len(got) != herald.DefaultPageLimit || next == "" {
				t.Fatalf("zero limit: %d tenants, next %q; want %d and a cursor", len(got), next, herald.DefaultPageLimit)
			}
			rest, next, err := s.TenantList(t.Context(), herald.Page{Cursor: next})
			must(t, err, "list second page")
			if len(rest) != 1 || rest[0].ID != fmt.Sprintf("t%03d", herald.DefaultPageLimit-1) || next != "" {
				t.Errorf("second page: %v, next %q; want the last tenant alone", rest, next)
			}
		}},
	}
}

// newKey returns an unstored key of tenant with a random hash.
func newKey(tenant string) herald.APIKey {
	return herald.APIKey{
		ID:        herald.NewID(herald.PrefixKey),
		TenantID:  tenant,
		Prefix:    "hk_" + tenant[:1],
		Hash:      hashOf(string(randomBytes(16))),
		CreatedAt: at(time.Minute),
	}
}

func apiKeyCases() []testCase {
	return []testCase{
		{"CreateByHash", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			want := newKey("acme")
			must(t, s.APIKeyCreate(t.Context(), want), "create key")
			got, err := s.APIKeyByHash(t.Context(), want.Hash)
			must(t, err, "key by hash")
			diff(t, "key", want, got)
			_, err = s.APIKeyByHash(t.Context(), hashOf("unknown"))
			wantErr(t, err, herald.ErrNotFound, "unknown hash")
		}},
		{"Revoke", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			k := newKey("acme")
			must(t, s.APIKeyCreate(t.Context(), k), "create key")
			keep := newKey("acme")
			must(t, s.APIKeyCreate(t.Context(), keep), "create second key")
			must(t, s.APIKeyRevoke(t.Context(), "acme", k.ID, at(time.Hour)), "revoke")
			_, err := s.APIKeyByHash(t.Context(), k.Hash)
			wantErr(t, err, herald.ErrNotFound, "revoked key by hash")
			err = s.APIKeyRevoke(t.Context(), "acme", k.ID, at(2*time.Hour))
			wantErr(t, err, herald.ErrNotFound, "revoke twice")
			got, err := s.APIKeyByHash(t.Context(), keep.Hash)
			must(t, err, "other key by hash")
			diff(t, "other key", keep, got)
			err = s.APIKeyRevoke(t.Context(), "acme", herald.NewID(herald.PrefixKey), at(time.Hour))
			wantErr(t, err, herald.ErrNotFound, "revoke unknown key")
		}},
		{"RevokeOtherTenantsKey", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			newTenant(t, s, "evil")
			k := newKey("acme")
			must(t, s.APIKeyCreate(t.Context(), k), "create key")
			err := s.APIKeyRevoke(t.Context(), "evil", k.ID, at(time.Hour))
			wantErr(t, err, herald.ErrNotFound, "revoke another tenant's key")
			got, err := s.APIKeyByHash(t.Context(), k.Hash)
			must(t, err, "key by hash after a refused revoke")
			diff(t, "key", k, got)
		}},
		{"UnknownTenant", func(t *testing.T, s herald.Store) {
			k := newKey("nobody")
			wantErr(t, s.APIKeyCreate(t.Context(), k), herald.ErrNotFound, "key for unknown tenant")
			_, err := s.APIKeyByHash(t.Context(), k.Hash)
			wantErr(t, err, herald.ErrNotFound, "refused key by hash")
		}},
		{"DuplicateConflict", func(t *testing.T, s herald.Store) {
			newTenant(t, s, "acme")
			k := newKey("acme")
			must(t, s.APIKeyCreate(t.Context(), k), "create key")

			sameHash := newKey(herald.DefaultTenant)
			sameHash.Hash = k.Hash
			wantErr(t, s.APIKeyCreate(t.Context(), sameHash), herald.ErrConflict, "duplicate hash")
			got, err := s.APIKeyByHash(t.Context(), k.Hash)
			must(t, err, "key by hash")
			diff(t, "key after duplicate hash", k, got)

			sameID := newKey("acme")
			sameID.ID = k.ID
			wantErr(t, s.APIKeyCreate(t.Context(), sameID), herald.ErrConflict, "duplicate id")
			_, err = s.APIKeyByHash(t.Context(), sameID.Hash)
			wantErr(t, err, herald.ErrNotFound, "refused key by hash")
		}},
	}
}

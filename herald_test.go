package herald_test

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func TestMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, typ string
		want         bool
	}{
		{"*", "anything.at.all", true},
		{"job.status", "job.status", true},
		{"job.status", "job.statuses", false},
		{"job.*", "job.status", true},
		{"job.*", "job", false},
		{"job.*", "jobs.status", false},
		{"user-*", "user-payroll-submitted", true},
		{"user-*", "user.created", false},
	}
	for _, tc := range tests {
		if got := herald.Matches(tc.pattern, tc.typ); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.typ, got, tc.want)
		}
	}
}

func TestValidPatternAndIDs(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"*", "job.status", "job.*", "user-*", "RTTM_TIN_VALIDATION"} {
		if !herald.ValidPattern(p) {
			t.Errorf("ValidPattern(%q) = false", p)
		}
	}
	for _, p := range []string{"", "a*b", "*.job", ".*", "job.**", "has space"} {
		if herald.ValidPattern(p) {
			t.Errorf("ValidPattern(%q) = true", p)
		}
	}
	for _, id := range []string{"default", "acme", "a", "a_b-c9"} {
		if !herald.ValidTenantID(id) {
			t.Errorf("ValidTenantID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "Acme", "-a", "a.b", string(bytes.Repeat([]byte("a"), 64))} {
		if herald.ValidTenantID(id) {
			t.Errorf("ValidTenantID(%q) = true", id)
		}
	}
}

func TestNewUUID(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	prev := ""
	for range 1000 {
		u := herald.NewUUID()
		if !re.MatchString(u) {
			t.Fatalf("%q is not a UUIDv7", u)
		}
		if u[:13] < prev[:min(13, len(prev))] {
			t.Fatalf("UUIDv7 time prefix went back: %s after %s", u, prev)
		}
		prev = u
	}
	if id := herald.NewID(herald.PrefixSubscription); len(id) != 4+36 || id[:4] != "sub_" {
		t.Errorf("NewID = %q", id)
	}
}

func TestSealer(t *testing.T) {
	t.Parallel()
	if _, err := herald.NewSealer(make([]byte, 16)); err == nil {
		t.Error("a 16-byte master key is accepted")
	}
	key := bytes.Repeat([]byte{7}, herald.MasterKeySize)
	s, err := herald.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	ad := herald.SealAD("acme", "sub_1")
	sealed := s.Seal([]byte("whsec_secret"), ad)
	if bytes.Contains(sealed, []byte("whsec_secret")) {
		t.Fatal("sealed value shows the plaintext")
	}
	if got, err := s.Open(sealed, ad); err != nil || string(got) != "whsec_secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, herald.SealAD("acme", "sub_2")); !errors.Is(err, herald.ErrSealBroken) {
		t.Errorf("a value copied to another row opens: %v", err)
	}
	other, _ := herald.NewSealer(bytes.Repeat([]byte{8}, herald.MasterKeySize))
	if _, err := other.Open(sealed, ad); !errors.Is(err, herald.ErrSealBroken) {
		t.Errorf("another master key opens it: %v", err)
	}
	if bytes.Equal(s.Seal([]byte("x"), ad), s.Seal([]byte("x"), ad)) {
		t.Error("two seals of one value are equal: the nonce is not fresh")
	}
}

func TestActiveSecretsAndErrors(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := herald.Subscription{Secrets: []herald.Secret{{Value: "new"}, {Value: "old", ExpiresAt: now.Add(time.Hour)}, {Value: "gone", ExpiresAt: now}}}
	if got := s.ActiveSecrets(now); len(got) != 2 || got[0] != "new" || got[1] != "old" {
		t.Errorf("ActiveSecrets = %v", got)
	}
	err := herald.Invalid("delivery.timeout", "must be at most %s", time.Minute)
	var ve *herald.ValidationError
	if !errors.Is(err, herald.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "delivery.timeout" {
		t.Errorf("Invalid: %v", err)
	}
	if got := herald.FormatTime(time.Date(2022, 8, 23, 13, 54, 27, 612477000, time.UTC)); got != "2022-08-23T13:54:27.612477Z" {
		t.Errorf("FormatTime = %q", got)
	}
}

func TestSealSubscription(t *testing.T) {
	t.Parallel()
	s, _ := herald.NewSealer(bytes.Repeat([]byte{9}, herald.MasterKeySize))
	exp := time.Date(2026, 5, 1, 2, 3, 4, 567891000, time.UTC)
	sub := herald.Subscription{TenantID: "acme", ID: "sub_1",
		Secrets:       []herald.Secret{{Value: "whsec_new"}, {Value: "old-secret", ExpiresAt: exp}},
		EncryptionKey: bytes.Repeat([]byte{1}, 32)}
	secrets, key, err := s.SealSubscription(&sub)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(secrets, []byte("whsec_new")) || bytes.Contains(secrets, []byte("old-secret")) || bytes.Equal(key, sub.EncryptionKey) {
		t.Fatal("sealed values show the secrets")
	}
	got := herald.Subscription{TenantID: "acme", ID: "sub_1"}
	if err := s.OpenSubscription(&got, secrets, key); err != nil {
		t.Fatal(err)
	}
	if len(got.Secrets) != 2 || got.Secrets[0].Value != "whsec_new" || !got.Secrets[0].ExpiresAt.IsZero() ||
		got.Secrets[1].Value != "old-secret" || !got.Secrets[1].ExpiresAt.Equal(exp) || !bytes.Equal(got.EncryptionKey, sub.EncryptionKey) {
		t.Errorf("round trip: %+v", got)
	}
	other := herald.Subscription{TenantID: "evil", ID: "sub_1"}
	if err := s.OpenSubscription(&other, secrets, key); !errors.Is(err, herald.ErrSealBroken) {
		t.Errorf("secrets copied to another tenant's row open: %v", err)
	}
	noKey := herald.Subscription{TenantID: "acme", ID: "sub_2"}
	sec2, key2, _ := s.SealSubscription(&noKey)
	if key2 != nil {
		t.Error("a subscription without encryption gets a sealed key")
	}
	if err := s.OpenSubscription(&noKey, sec2, nil); err != nil || noKey.EncryptionKey != nil || len(noKey.Secrets) != 0 {
		t.Errorf("no secrets, no key: %+v %v", noKey, err)
	}
}

func TestPageSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ limit, want int }{{0, 50}, {-3, 50}, {1, 1}, {500, 500}, {501, 500}} {
		if got := (herald.Page{Limit: tc.limit}).Size(); got != tc.want {
			t.Errorf("Page{Limit: %d}.Size() = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

func TestPlanPublish(t *testing.T) {
	t.Parallel()
	req := func(id, hash string) herald.PublishRequest {
		return herald.PublishRequest{Event: herald.Event{TenantID: "t", ID: id, Hash: []byte(hash)}}
	}
	reqs := []herald.PublishRequest{
		req("stored", "h1"),  // repeat of a stored event
		req("stored2", "hX"), // conflict with a stored event
		req("new", "a"),      // new
		req("new", "a"),      // repeat within the call
		req("new", "b"),      // conflict within the call
		req("other", "c"),    // new
	}
	known := map[herald.EventKey]herald.StoredEvent{
		{TenantID: "t", ID: "stored"}:  {Hash: []byte("h1"), Deliveries: 4},
		{TenantID: "t", ID: "stored2"}: {Hash: []byte("h2"), Deliveries: 1},
	}
	p := herald.PlanPublish(reqs, known)
	if len(p.New) != 2 || p.New[0] != 2 || p.New[1] != 5 {
		t.Fatalf("New = %v, want [2 5]", p.New)
	}
	if p.First[herald.EventKey{TenantID: "t", ID: "new"}] != 2 {
		t.Errorf("First = %v", p.First)
	}
	p.Results[2].Deliveries = 3 // what the store fanned out
	res := p.Finish()
	if res[0].Deliveries != 4 || res[0].Err != nil {
		t.Errorf("stored repeat: %+v", res[0])
	}
	if !errors.Is(res[1].Err, herald.ErrConflict) || !errors.Is(res[4].Err, herald.ErrConflict) {
		t.Errorf("conflicts: %+v %+v", res[1], res[4])
	}
	if res[3].Deliveries != 3 || res[3].EventID != "new" {
		t.Errorf("repeat within the call: %+v, want it answered like its first", res[3])
	}
}

func TestTypePrefixes(t *testing.T) {
	for _, c := range []struct {
		typ  string
		want []string
	}{
		{"job", nil},
		{"job.done", []string{"job."}},
		{"a.b-c.d", []string{"a.", "a.b-", "a.b-c."}},
	} {
		got := herald.TypePrefixes(c.typ)
		if !slices.Equal(got, c.want) {
			t.Errorf("TypePrefixes(%q) = %q, want %q", c.typ, got, c.want)
		}
		// Every wildcard pattern matching the type has one of these keys.
		for _, p := range []string{"*", "job.*", "a.*", "a.b-*", "a.b-c.*", "a.b.*", "a-*"} {
			prefix, _ := herald.PatternPrefix(p)
			keyed := prefix == "" || slices.Contains(got, prefix)
			if keyed != herald.Matches(p, c.typ) {
				t.Errorf("%q and %q: keyed %v, Matches %v", p, c.typ, keyed, herald.Matches(p, c.typ))
			}
		}
	}
}

// TestTypeKeys holds fan-out's lookup to Matches: a pattern's key is among
// the keys of a type exactly when the pattern matches the type.
func TestTypeKeys(t *testing.T) {
	t.Parallel()
	types := []string{"job", "job.done", "a.b-c.d", "a.b", "a-b", "jobs"}
	patterns := []string{"*", "job", "job.*", "job.done", "a.*", "a.b-*", "a.b-c.*", "a.b.*", "a-*", "a.b", "jo*", "job-*"}
	for _, typ := range types {
		keys := herald.TypeKeys(typ)
		for _, p := range patterns {
			if !herald.ValidPattern(p) {
				continue
			}
			if keyed := slices.Contains(keys, herald.KeyOf(p)); keyed != herald.Matches(p, typ) {
				t.Errorf("%q and %q: key %v among %v is %v, Matches %v", p, typ, herald.KeyOf(p), keys, keyed, herald.Matches(p, typ))
			}
		}
	}
}

func TestAppendTime(t *testing.T) {
	t.Parallel()
	times := []time.Time{
		time.Date(2022, 8, 23, 13, 54, 27, 612477000, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1000, time.FixedZone("x", -7*3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	}
	for i := range 1000 {
		times = append(times, time.Unix(int64(i)*7919*86400/7+int64(i)*131, int64(i)*999983).In(time.FixedZone("y", i*60)))
	}
	for _, tm := range times {
		want := tm.UTC().AppendFormat([]byte("x"), herald.TimeFormat)
		if got := herald.AppendTime([]byte("x"), tm); string(got) != string(want) {
			t.Errorf("AppendTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

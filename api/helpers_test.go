package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/api"
	"github.com/heraldhq/herald/publish"
	"github.com/heraldhq/herald/sqlite"
)

const adminKey = "test-admin-key"

// env is an API over a real SQLite store in a temporary directory.
type env struct {
	tb    testing.TB
	store herald.Store
	srv   *api.Server
	clock *clock
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(tb testing.TB) herald.Store {
	tb.Helper()
	sealer, err := herald.NewSealer(bytes.Repeat([]byte{7}, herald.MasterKeySize))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(tb.TempDir(), "herald.db"), Sealer: sealer})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return st
}

// newEnv starts an API; opts adjust its Config.
func newEnv(tb testing.TB, opts ...func(*api.Config)) *env {
	tb.Helper()
	st := openStore(tb)
	pub, err := publish.New(publish.Config{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	if err := pub.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pub.Stop)
	sum := sha256.Sum256([]byte(adminKey))
	clk := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := api.Config{Store: st, Publisher: pub, AdminKeyHash: sum[:], Now: clk.Now}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := api.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &env{tb: tb, store: st, srv: srv, clock: clk}
}

// response is one answer of the API.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// decode decodes the JSON body into v.
func (r *response) decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// obj returns the JSON body as a map.
func (r *response) obj(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	r.decode(tb, &m)
	return m
}

// apiErr returns the error code and message of an error answer.
func (r *response) apiErr(tb testing.TB) (code, msg string) {
	tb.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.decode(tb, &e)
	if e.Error.Code == "" {
		tb.Fatalf("answer %d has no error body: %s", r.Code, r.Body)
	}
	return e.Error.Code, e.Error.Message
}

// req is one request to send.
type req struct {
	method, path string
	key          string // "" sends no Authorization
	body         any    // string, []byte or io.Reader as is, anything else as JSON; nil: no body
	header       map[string]string
}

func (e *env) send(r req) *response {
	e.tb.Helper()
	var rd io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	hr := httptest.NewRequest(r.method, r.path, rd)
	if rd != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, hr)
	return &response{Code: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
}

// do sends a request with key and body.
func (e *env) do(key, method, path string, body any) *response {
	e.tb.Helper()
	return e.send(req{method: method, path: path, key: key, body: body})
}

// must sends a request and fails unless the answer has status want.
func (e *env) must(want int, key, method, path string, body any) *response {
	e.tb.Helper()
	r := e.do(key, method, path, body)
	if r.Code != want {
		e.tb.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Code, want, r.Body)
	}
	return r
}

// tenant creates a tenant and returns a key of it.
func (e *env) tenant(id string) string {
	e.tb.Helper()
	e.must(201, adminKey, "POST", "/tenants", map[string]any{"id": id, "name": strings.ToUpper(id)})
	var k struct{ Key string }
	e.must(201, adminKey, "POST", "/tenants/"+id+"/keys", nil).decode(e.tb, &k)
	return k.Key
}

// webhook creates a subscription with key and returns its id.
func (e *env) webhook(key string, body map[string]any) string {
	e.tb.Helper()
	if body == nil {
		body = map[string]any{}
	}
	if _, ok := body["url"]; !ok {
		body["url"] = "https://example.com/hook"
	}
	if _, ok := body["events"]; !ok {
		body["events"] = []string{"*"}
	}
	return e.must(201, key, "POST", "/webhooks", body).obj(e.tb)["id"].(string)
}

// snapshot is everything the store holds for a tenant.
type snapshot struct {
	Subs       []herald.Subscription
	Events     []herald.Event
	Deliveries []herald.Delivery
	Attempts   map[string][]herald.Attempt
}

func (e *env) snapshot(tenant string) snapshot {
	e.tb.Helper()
	ctx := context.Background()
	var s snapshot
	s.Attempts = map[string][]herald.Attempt{}
	page := herald.Page{Limit: herald.MaxPageLimit}
	subs, _, err := e.store.SubscriptionList(ctx, tenant, page)
	if err != nil {
		e.tb.Fatal(err)
	}
	s.Subs = subs
	evs, _, err := e.store.EventList(ctx, tenant, herald.EventFilter{Page: page})
	if err != nil {
		e.tb.Fatal(err)
	}
	s.Events = evs
	ds, _, err := e.store.DeliveryList(ctx, tenant, herald.DeliveryFilter{Page: page})
	if err != nil {
		e.tb.Fatal(err)
	}
	s.Deliveries = ds
	for _, d := range ds {
		_, atts, err := e.store.DeliveryGet(ctx, tenant, d.ID)
		if err != nil {
			e.tb.Fatal(err)
		}
		s.Attempts[d.ID] = atts
	}
	return s
}

// attempt records one finished attempt of a pending delivery through the
// store, as the dispatcher would: status is the delivery's new status.
func (e *env) attempt(deliveryID string, code int, status string) {
	e.tb.Helper()
	ctx := context.Background()
	owner := "test-" + herald.NewUUID()
	now := time.Now().Add(time.Hour)
	lease, err := e.store.DeliveryLease(ctx, herald.LeaseParams{Owner: owner, Now: now, Margin: time.Minute, Limit: 100})
	if err != nil {
		e.tb.Fatal(err)
	}
	found := false
	var rest []string
	for _, ld := range lease.Deliveries {
		if ld.Delivery.ID == deliveryID {
			found = true
		} else {
			rest = append(rest, ld.Delivery.ID)
		}
	}
	if len(rest) > 0 {
		if err := e.store.DeliveryRelease(ctx, owner, rest, now); err != nil {
			e.tb.Fatal(err)
		}
	}
	if !found {
		e.tb.Fatalf("delivery %s was not leased", deliveryID)
	}
	out := herald.Outcome{
		DeliveryID: deliveryID, Owner: owner, Status: status, Now: now,
		Attempt: herald.Attempt{N: 1, StartedAt: now, Duration: 1500 * time.Microsecond, StatusCode: code,
			ResponseBody: fmt.Sprintf(`{"status":%d}`, code)},
	}
	if status == herald.DeliveryPending {
		out.NextAttemptAt = now.Add(time.Minute)
	}
	if err := e.store.DeliveryRecord(ctx, []herald.Outcome{out}); err != nil {
		e.tb.Fatal(err)
	}
}

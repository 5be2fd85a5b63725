package api_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/api"
)

func TestPublishIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.webhook(adminKey, nil)
	body := `{"id": "evt-1", "event_type": "a.b", "data": {"x": 1, "y": [1, 2]}}`
	first := e.must(202, adminKey, "POST", "/events", body).obj(t)
	if diff := cmp.Diff(map[string]any{"id": "evt-1", "deliveries": 1.0}, first); diff != "" {
		t.Errorf("publish answer (-want +got):\n%s", diff)
	}
	e.clock.Advance(time.Hour) // the defaulted create_time differs; the event does not
	for _, same := range []string{body, `{"event_type":"a.b","id":"evt-1","data":{"x":1,"y":[1,2]},"version":"1.0","test":false}`} {
		got := e.must(202, adminKey, "POST", "/events", same).obj(t)
		if diff := cmp.Diff(first, got); diff != "" {
			t.Errorf("repeat %s (-first +repeat):\n%s", same, diff)
		}
	}
	for _, other := range []string{
		`{"id": "evt-1", "event_type": "a.b", "data": {"x": 2, "y": [1, 2]}}`,
		`{"id": "evt-1", "event_type": "a.c", "data": {"x": 1, "y": [1, 2]}}`,
		`{"id": "evt-1", "event_type": "a.b", "data": {"x": 1, "y": [1, 2]}, "test": true}`,
		`{"id": "evt-1", "event_type": "a.b", "data": {"x": 1, "y": [1, 2]}, "create_time": "2025-01-01T00:00:00Z"}`,
	} {
		r := e.do(adminKey, "POST", "/events", other)
		if code, msg := r.apiErr(t); r.Code != 409 || code != "conflict" || !strings.HasPrefix(msg, "id") {
			t.Errorf("other body %s: %d %s %q, want 409 conflict naming id", other, r.Code, code, msg)
		}
	}
	s := e.snapshot(herald.DefaultTenant)
	if len(s.Events) != 1 || len(s.Deliveries) != 1 {
		t.Errorf("stored %d events and %d deliveries, want 1 and 1", len(s.Events), len(s.Deliveries))
	}
	ev := s.Events[0]
	if string(ev.Data) != `{"x":1,"y":[1,2]}` || ev.Version != "1.0" || !ev.CreateTime.Equal(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("stored event %+v", ev)
	}
}

func TestPublishGivenFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	got := e.must(202, adminKey, "POST", "/events", map[string]any{
		"event_type": "job.status", "version": "2", "create_time": "2022-08-23T13:54:27.612477Z", "test": true, "data": []int{1},
	}).obj(t)
	id := got["id"].(string)
	if !strings.HasPrefix(id, "msg_") || got["deliveries"] != 0.0 {
		t.Errorf("publish answer %v", got)
	}
	ev := e.must(200, adminKey, "GET", "/events/"+id, nil).obj(t)
	want := map[string]any{"id": id, "event_type": "job.status", "version": "2", "create_time": "2022-08-23T13:54:27.612477Z",
		"test": true, "data": []any{1.0}, "delivery_count": 0.0, "deliveries": []any{}, "received_at": ev["received_at"]}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("GET /events/{id} (-want +got):\n%s", diff)
	}
	// No data: none in the event.
	id = e.must(202, adminKey, "POST", "/events", map[string]any{"event_type": "x", "data": nil}).obj(t)["id"].(string)
	if ev := e.must(200, adminKey, "GET", "/events/"+id, nil).obj(t); ev["data"] != nil {
		t.Errorf("data of an event without data: %v", ev["data"])
	}
}

func TestPublishRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.webhook(adminKey, nil)
	deep := strings.Repeat("[", 64) + strings.Repeat("]", 64)
	tests := []struct {
		name, body, field string
	}{
		{"no event_type", `{"data": {}}`, "event_type"},
		{"bad event_type", `{"event_type": "a b"}`, "event_type"},
		{"event_type number", `{"event_type": 5}`, "event_type"},
		{"empty id", `{"id": "", "event_type": "a"}`, "id"},
		{"long id", `{"id": "` + strings.Repeat("i", 256) + `", "event_type": "a"}`, "id"},
		{"id with space", `{"id": "a b", "event_type": "a"}`, "id"},
		{"empty version", `{"event_type": "a", "version": ""}`, "version"},
		{"bad create_time", `{"event_type": "a", "create_time": "yesterday"}`, "create_time"},
		{"test string", `{"event_type": "a", "test": "yes"}`, "test"},
		{"unknown field", `{"event_type": "a", "colour": "red"}`, "colour"},
		{"too deep", `{"event_type": "a", "data": ` + deep + `}`, "body"},
		{"trailing data", `{"event_type": "a"} {}`, "body"},
		{"not JSON", `hello`, "body"},
		{"array", `[]`, "body"},
		{"empty", ``, "body"},
		{"truncated", `{"event_type": "a"`, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.do(adminKey, "POST", "/events", tt.body)
			if r.Code != 400 {
				t.Fatalf("status %d, want 400: %s", r.Code, r.Body)
			}
			if code, msg := r.apiErr(t); code != "invalid_request" || !strings.HasPrefix(msg, tt.field) {
				t.Errorf("error %s %q, want invalid_request naming %q", code, msg, tt.field)
			}
		})
	}
	t.Cleanup(func() {
		// Only the one valid event below is stored.
		if s := e.snapshot(herald.DefaultTenant); len(s.Events) != 1 || len(s.Deliveries) != 1 {
			t.Errorf("stored %d events and %d deliveries, want 1 and 1", len(s.Events), len(s.Deliveries))
		}
	})
	// 63 levels of data inside the body's object is just allowed.
	ok := strings.Repeat("[", 63) + strings.Repeat("]", 63)
	e.must(202, adminKey, "POST", "/events", `{"event_type": "a", "data": `+ok+`}`)
}

func TestPublishBodyLimitAndMediaType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.MaxEventBytes = 1024 })
	e.webhook(adminKey, nil)
	sized := func(n int) string {
		head := `{"event_type": "a", "data": "`
		return head + strings.Repeat("x", n-len(head)-2) + `"}`
	}
	e.must(202, adminKey, "POST", "/events", sized(1024))
	r := e.do(adminKey, "POST", "/events", sized(1025))
	if code, _ := r.apiErr(t); r.Code != 413 || code != "payload_too_large" {
		t.Errorf("1025 bytes: %d %s, want 413 payload_too_large", r.Code, code)
	}
	// Without a Content-Length the limit holds as well.
	chunked := e.send(req{method: "POST", path: "/events", key: adminKey, body: io.MultiReader(strings.NewReader(sized(4096)))})
	if chunked.Code != 413 {
		t.Errorf("unsized body of 4096 bytes: %d, want 413", chunked.Code)
	}

	for ct, want := range map[string]int{
		"text/plain":                        415,
		"application/x-www-form-urlencoded": 415,
		"application/xml":                   415,
		"not a type":                        415,
		"application/json; charset=utf-8":   202,
		"application/cloudevents+json":      202,
		"":                                  202, // no Content-Type: read as JSON
	} {
		r := e.send(req{method: "POST", path: "/events", key: adminKey, body: `{"event_type": "a"}`, header: map[string]string{"Content-Type": ct}})
		if r.Code != want {
			t.Errorf("Content-Type %q: %d, want %d: %s", ct, r.Code, want, r.Body)
		}
		if want == 415 {
			if code, _ := r.apiErr(t); code != "unsupported_media_type" {
				t.Errorf("Content-Type %q: code %s", ct, code)
			}
		}
	}
	if s := e.snapshot(herald.DefaultTenant); len(s.Events) != 4 {
		t.Errorf("%d events stored, want the 4 accepted", len(s.Events))
	}
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.MaxEventBytes = 512 })
	e.webhook(adminKey, map[string]any{"events": []string{"a.*"}})
	e.webhook(adminKey, map[string]any{"events": []string{"a.one"}})
	got := e.must(202, adminKey, "POST", "/events/batch", map[string]any{"events": []any{
		map[string]any{"id": "b1", "event_type": "a.one"},
		map[string]any{"event_type": "a.two", "data": map[string]any{"k": "v"}},
		map[string]any{"id": "b3", "event_type": "z"},
	}}).obj(t)
	data := got["data"].([]any)
	if len(data) != 3 {
		t.Fatalf("batch answer %v", got)
	}
	wantDeliveries := []float64{2, 1, 0}
	for i, d := range data {
		m := d.(map[string]any)
		if m["deliveries"] != wantDeliveries[i] {
			t.Errorf("data[%d] = %v, want %v deliveries", i, m, wantDeliveries[i])
		}
	}
	if data[0].(map[string]any)["id"] != "b1" || !strings.HasPrefix(data[1].(map[string]any)["id"].(string), "msg_") {
		t.Errorf("ids: %v", data)
	}
	before := e.snapshot(herald.DefaultTenant)

	// Repeating the batch's given ids with the same bodies is idempotent.
	e.must(202, adminKey, "POST", "/events/batch", map[string]any{"events": []any{
		map[string]any{"id": "b1", "event_type": "a.one"}, map[string]any{"id": "b3", "event_type": "z"},
	}})

	many := make([]any, api.MaxBatchEvents+1)
	for i := range many {
		many[i] = map[string]any{"event_type": "a.x"}
	}
	tests := []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"invalid element", map[string]any{"events": []any{map[string]any{"event_type": "a.ok"}, map[string]any{"event_type": "a b"}}}, 400, "events[1].event_type"},
		{"unknown field in element", map[string]any{"events": []any{map[string]any{"event_type": "a.ok", "colour": 1}}}, 400, "events[0].colour"},
		{"element not an object", map[string]any{"events": []any{"a.ok"}}, 400, "events[0]"},
		{"repeated id", map[string]any{"events": []any{map[string]any{"id": "r", "event_type": "a.ok"}, map[string]any{"id": "r", "event_type": "a.ok"}}}, 400, "events[1].id"},
		{"conflict", map[string]any{"events": []any{map[string]any{"id": "new", "event_type": "a.ok"}, map[string]any{"id": "b1", "event_type": "a.other"}}}, 409, "events[1].id"},
		{"empty", map[string]any{"events": []any{}}, 400, "events"},
		{"missing", map[string]any{}, 400, "events"},
		{"too many", map[string]any{"events": many}, 400, "events"},
		{"element too large", map[string]any{"events": []any{map[string]any{"event_type": "a.ok", "data": strings.Repeat("x", 600)}}}, 413, "events[0]"},
	}
	for _, tt := range tests {
		r := e.do(adminKey, "POST", "/events/batch", tt.body)
		if r.Code != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.Code, tt.status, r.Body)
			continue
		}
		if _, msg := r.apiErr(t); !strings.HasPrefix(msg, tt.field) {
			t.Errorf("%s: message %q does not name %q", tt.name, msg, tt.field)
		}
	}
	if diff := cmp.Diff(before, e.snapshot(herald.DefaultTenant)); diff != "" {
		t.Errorf("rejected batches changed the store (-before +after):\n%s", diff)
	}
}

func TestTenantPublishLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.TenantPublishRPS = 2 })
	a, b := e.tenant("alpha"), e.tenant("beta")
	ev := map[string]any{"event_type": "a"}
	e.must(202, a, "POST", "/events", ev)
	e.must(202, a, "POST", "/events", ev)
	r := e.do(a, "POST", "/events", ev)
	if code, _ := r.apiErr(t); r.Code != 429 || code != "rate_limited" || r.Header.Get("Retry-After") != "1" {
		t.Errorf("third event in a second: %d %s Retry-After %q, want 429 rate_limited 1", r.Code, code, r.Header.Get("Retry-After"))
	}
	// Another tenant is not affected.
	e.must(202, b, "POST", "/events", ev)
	e.must(202, b, "POST", "/events/batch", map[string]any{"events": []any{ev}})
	// A batch larger than the burst can never pass, and says so.
	r = e.do(b, "POST", "/events/batch", map[string]any{"events": []any{ev, ev, ev}})
	if r.Code != 429 || r.Header.Get("Retry-After") == "" {
		t.Errorf("batch over the burst: %d %s", r.Code, r.Body)
	}
	e.clock.Advance(time.Second)
	e.must(202, a, "POST", "/events/batch", map[string]any{"events": []any{ev, ev}})
	if n := len(e.snapshot("alpha").Events); n != 4 {
		t.Errorf("alpha stored %d events, want the 4 accepted", n)
	}
}

func TestEventListAndGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s1 := e.webhook(adminKey, nil)
	s2 := e.webhook(adminKey, map[string]any{"events": []string{"odd"}})
	var ids []string
	for i := range 5 {
		typ := "even"
		if i%2 == 1 {
			typ = "odd"
		}
		ids = append(ids, e.must(202, adminKey, "POST", "/events", map[string]any{"id": fmt.Sprintf("e%d", i), "event_type": typ}).obj(t)["id"].(string))
	}
	pageIDs := func(q string) (got []string, next string) {
		var page struct {
			Data []struct {
				ID string
			}
			NextCursor string `json:"next_cursor"`
		}
		e.must(200, adminKey, "GET", "/events?"+q, nil).decode(t, &page)
		for _, d := range page.Data {
			got = append(got, d.ID)
		}
		return got, page.NextCursor
	}
	var all []string
	for cursor, n := "", 0; n < 5; n++ {
		got, next := pageIDs("limit=2&cursor=" + cursor)
		all = append(all, got...)
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff([]string{"e4", "e3", "e2", "e1", "e0"}, all); diff != "" {
		t.Errorf("events newest first (-want +got):\n%s", diff)
	}
	if got, _ := pageIDs("event_type=odd"); !cmp.Equal(got, []string{"e3", "e1"}) {
		t.Errorf("event_type=odd: %v", got)
	}
	if got, _ := pageIDs("since=2999-01-01T00:00:00Z"); len(got) != 0 {
		t.Errorf("since the future: %v", got)
	}
	if got, _ := pageIDs("until=2999-01-01T00:00:00Z&since=2000-01-01T00:00:00Z"); len(got) != 5 {
		t.Errorf("since and until around now: %v", got)
	}
	for _, q := range []string{"since=yesterday", "until=1", "event_type=a%20b", "limit=none"} {
		r := e.do(adminKey, "GET", "/events?"+q, nil)
		name, _, _ := strings.Cut(q, "=")
		if _, msg := r.apiErr(t); r.Code != 400 || !strings.HasPrefix(msg, name) {
			t.Errorf("?%s: %d %q, want 400 naming %s", q, r.Code, msg, name)
		}
	}

	ev := e.must(200, adminKey, "GET", "/events/e3", nil).obj(t)
	if ev["delivery_count"] != 2.0 {
		t.Errorf("delivery_count %v", ev["delivery_count"])
	}
	var subs []string
	for _, d := range ev["deliveries"].([]any) {
		m := d.(map[string]any)
		if m["event_id"] != "e3" || m["status"] != "pending" || m["trace_id"] == "" {
			t.Errorf("delivery %v", m)
		}
		subs = append(subs, m["webhook_id"].(string))
	}
	if !cmp.Equal(len(subs), 2) || !(subs[0] == s1 || subs[1] == s1) || !(subs[0] == s2 || subs[1] == s2) {
		t.Errorf("deliveries of e3 go to %v, want %s and %s", subs, s1, s2)
	}
	e.must(404, adminKey, "GET", "/events/nope", nil)
	_ = ids
}

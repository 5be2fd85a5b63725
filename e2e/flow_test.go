package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Flow control (CONTRACT.md §3 and §5.4): every subscription's lane enforces
// its delivery settings, and one subscription's trouble never slows another.
// Everything is measured at real receivers.

// flowHit is one request a flowRecv got.
type flowHit struct {
	At   time.Time // when the handler was entered
	ID   string    // the envelope's id
	Type string    // the envelope's event_type
	Data json.RawMessage
	Body []byte
}

// flowRecv is a loopback receiver that records every request, counts the
// requests open at once, and answers through handle (nil: 200). handle may
// block; it should return when stop is closed (at the end of the test).
type flowRecv struct {
	srv    *httptest.Server
	stop   chan struct{}
	handle func(n int, hit flowHit, w http.ResponseWriter, stop <-chan struct{})
	notify chan struct{}

	mu       sync.Mutex
	hits     []flowHit
	inflight int
	peak     int
}

func newFlowRecv(tb testing.TB, handle func(n int, hit flowHit, w http.ResponseWriter, stop <-chan struct{})) *flowRecv {
	tb.Helper()
	rc := &flowRecv{stop: make(chan struct{}), handle: handle, notify: make(chan struct{}, 1)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	tb.Cleanup(func() {
		close(rc.stop)
		rc.srv.Close()
	})
	return rc
}

func (rc *flowRecv) serve(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(r.Body)
	var env struct {
		ID        string          `json:"id"`
		EventType string          `json:"event_type"`
		Data      json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(body, &env)
	hit := flowHit{At: at, ID: env.ID, Type: env.EventType, Data: env.Data, Body: body}
	rc.mu.Lock()
	n := len(rc.hits)
	rc.hits = append(rc.hits, hit)
	rc.inflight++
	rc.peak = max(rc.peak, rc.inflight)
	rc.mu.Unlock()
	// The count drops before the response is written: Herald cannot see the
	// answer, and start another request in its slot, before that.
	defer func() {
		rc.mu.Lock()
		rc.inflight--
		rc.mu.Unlock()
		select {
		case rc.notify <- struct{}{}:
		default:
		}
	}()
	if rc.handle == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc.handle(n, hit, w, rc.stop)
}

// URL is the receiver's endpoint.
func (rc *flowRecv) URL() string { return rc.srv.URL + "/hook" }

func (rc *flowRecv) got() []flowHit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.hits)
}

func (rc *flowRecv) peakInFlight() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.peak
}

// waitFor waits until cond holds on the hits so far, or fails after timeout.
func (rc *flowRecv) waitFor(tb testing.TB, timeout time.Duration, what string, cond func([]flowHit) bool) []flowHit {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		hits := rc.got()
		if cond(hits) {
			return hits
		}
		select {
		case <-rc.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("timed out after %s waiting for %s; got %d requests", timeout, what, len(hits))
		}
	}
}

// flowDistinct counts the distinct envelope ids among hits.
func flowDistinct(hits []flowHit) int {
	seen := map[string]bool{}
	for _, h := range hits {
		seen[h.ID] = true
	}
	return len(seen)
}

// flowIDs returns the envelope ids of hits, in order.
func flowIDs(hits []flowHit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

// flowMaxInWindow returns the most times within any closed window [t, t+w].
func flowMaxInWindow(hits []flowHit, w time.Duration) int {
	times := make([]time.Time, len(hits))
	for i, h := range hits {
		times[i] = h.At
	}
	slices.SortFunc(times, time.Time.Compare)
	best, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) > w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// flowPublishBatch publishes events through POST /events/batch, 1000 per call.
func flowPublishBatch(h *herald, evs []map[string]any) {
	h.tb.Helper()
	for len(evs) > 0 {
		n := min(len(evs), 1000)
		h.mustDo(202, "POST", "/events/batch", map[string]any{"events": evs[:n]}, nil)
		evs = evs[n:]
	}
}

// flowEvents returns n events of type typ with ids prefix00, prefix01…
func flowEvents(prefix, typ string, n int) []map[string]any {
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = map[string]any{"id": fmt.Sprintf("%s%02d", prefix, i), "event_type": typ, "data": map[string]any{"n": i}}
	}
	return evs
}

// flowDelivery returns GET /deliveries/{id}.
func flowDelivery(h *herald, id string) map[string]any {
	h.tb.Helper()
	var d map[string]any
	h.mustDo(200, "GET", "/deliveries/"+id, nil, &d)
	return d
}

// flowWaitAttempts waits until a delivery has at least n attempts recorded.
func flowWaitAttempts(h *herald, id string, n int, timeout time.Duration) map[string]any {
	h.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := flowDelivery(h, id)
		if atts, _ := d["attempts"].([]any); len(atts) >= n {
			return d
		}
		if time.Now().After(deadline) {
			h.tb.Fatalf("delivery %s: fewer than %d attempts after %s: %v", id, n, timeout, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flowCountStatus counts a subscription's deliveries in a status.
func flowCountStatus(h *herald, subID, status string) int {
	h.tb.Helper()
	var out struct {
		Data []map[string]any `json:"data"`
	}
	h.mustDo(200, "GET", "/deliveries?limit=500&webhook_id="+subID+"&status="+status, nil, &out)
	return len(out.Data)
}

// flowWaitCount waits until a subscription has want deliveries in status.
func flowWaitCount(h *herald, subID, status string, want int, timeout time.Duration) {
	h.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := flowCountStatus(h, subID, status)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			h.tb.Fatalf("subscription %s: %d deliveries %s after %s, want %d", subID, n, status, timeout, want)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestFlowMaxRPS: no sliding one-second window at the receiver holds more than
// max_rps requests; 100 events at max_rps 20 take at least 4.5 s. The default
// max_rps is 300, and is enforced too.
func TestFlowMaxRPS(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")

	t.Run("max_rps 20", func(t *testing.T) {
		t.Parallel()
		rc := newFlowRecv(t, nil)
		h.createSub(map[string]any{"url": rc.URL(), "events": []string{"rate.*"},
			"delivery": map[string]any{"max_rps": 20, "max_in_flight": 100}})
		flowPublishBatch(h, flowEvents("rate-", "rate.e", 100))
		hits := rc.waitFor(t, 30*time.Second, "100 deliveries", func(hs []flowHit) bool { return flowDistinct(hs) == 100 })
		time.Sleep(200 * time.Millisecond)
		hits = rc.got()
		if len(hits) != 100 {
			t.Errorf("receiver got %d requests for 100 events", len(hits))
		}
		n, span := flowMaxInWindow(hits, time.Second), hits[len(hits)-1].At.Sub(hits[0].At)
		t.Logf("max_rps 20: at most %d requests in a sliding second; 100 requests over %s", n, span)
		if n > 20 {
			t.Errorf("%d requests within one second at max_rps 20", n)
		}
		if span < 4500*time.Millisecond {
			t.Errorf("100 requests at max_rps 20 came within %s, want at least 4.5s", span)
		}
	})

	t.Run("default 300", func(t *testing.T) {
		t.Parallel()
		rc := newFlowRecv(t, nil)
		sub := h.createSub(map[string]any{"url": rc.URL(), "events": []string{"dflt.*"}})
		dc, _ := sub["delivery"].(map[string]any)
		if dc["max_rps"] != float64(300) || dc["max_in_flight"] != float64(16) {
			t.Errorf("default delivery settings %v, want max_rps 300 and max_in_flight 16", dc)
		}
		const n = 700
		flowPublishBatch(h, flowEvents("dflt-", "dflt.e", n))
		rc.waitFor(t, 30*time.Second, fmt.Sprintf("%d deliveries", n), func(hs []flowHit) bool { return flowDistinct(hs) == n })
		hits := rc.got()
		got, span := flowMaxInWindow(hits, time.Second), hits[len(hits)-1].At.Sub(hits[0].At)
		t.Logf("default max_rps: at most %d requests in a sliding second; %d requests over %s", got, len(hits), span)
		if got > 300 {
			t.Errorf("%d requests within one second at the default max_rps 300", got)
		}
		if span < 2*time.Second {
			t.Errorf("%d requests at the default max_rps 300 came within %s", n, span)
		}
	})
}

// TestFlowMaxInFlight: never more than max_in_flight requests are open at once
// to a subscription, as counted at the receiver.
func TestFlowMaxInFlight(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	rc := newFlowRecv(t, func(_ int, _ flowHit, w http.ResponseWriter, stop <-chan struct{}) {
		select {
		case <-time.After(250 * time.Millisecond):
		case <-stop:
		}
		w.WriteHeader(http.StatusOK)
	})
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"max_rps": 1000, "max_in_flight": 4}})
	flowPublishBatch(h, flowEvents("inf-", "inf.e", 24))
	rc.waitFor(t, 30*time.Second, "24 deliveries", func(hs []flowHit) bool { return flowDistinct(hs) == 24 })
	t.Logf("peak in flight %d (max_in_flight 4)", rc.peakInFlight())
	if p := rc.peakInFlight(); p > 4 {
		t.Errorf("%d requests open at once, max_in_flight 4", p)
	} else if p < 2 {
		t.Errorf("at most %d request open at once: max_in_flight 4 is not used", p)
	}
}

// TestFlowOrdered: an ordered subscription gets one request at a time, in
// publish order; event 10 of 30 fails and holds the later ones until it
// succeeds, or fails for good, and then the next one goes.
func TestFlowOrdered(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tests := []struct {
		name     string
		failures int // answers 500 to event 10 this many times
		attempts int // max_attempts
		status   string
	}{
		{"retried until success", 2, 5, "succeeded"},
		{"failed for good", 1000, 2, "failed"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := fmt.Sprintf("ord%d-", i)
			tenth := prefix + "09"
			var mu sync.Mutex
			failed := 0
			rc := newFlowRecv(t, func(_ int, hit flowHit, w http.ResponseWriter, _ <-chan struct{}) {
				mu.Lock()
				defer mu.Unlock()
				if hit.ID == tenth && failed < tt.failures {
					failed++
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			typ := fmt.Sprintf("ord%d.e", i)
			h.createSub(map[string]any{"url": rc.URL(), "events": []string{typ}, "ordered": true,
				"delivery": map[string]any{"retry": map[string]any{"max_attempts": tt.attempts, "base": "200ms", "cap": "400ms"}}})
			for _, ev := range flowEvents(prefix, typ, 30) {
				h.publish(ev) // one at a time: publish order is this order
			}
			nTenth := min(tt.failures+1, tt.attempts) // requests for event 10
			want := 30 + nTenth - 1
			hits := rc.waitFor(t, 30*time.Second, fmt.Sprintf("%d requests", want), func(hs []flowHit) bool { return len(hs) >= want })
			time.Sleep(300 * time.Millisecond)
			hits = rc.got()
			var wantIDs []string
			for k := range 30 {
				id := fmt.Sprintf("%s%02d", prefix, k)
				wantIDs = append(wantIDs, id)
				if id == tenth {
					for range nTenth - 1 {
						wantIDs = append(wantIDs, id)
					}
				}
			}
			if got := flowIDs(hits); !slices.Equal(got, wantIDs) {
				t.Errorf("arrival order:\n got %v\nwant %v", got, wantIDs)
			}
			if p := rc.peakInFlight(); p != 1 {
				t.Errorf("%d requests open at once to an ordered subscription", p)
			}
			ids := h.deliveriesOf(tenth)
			if len(ids) != 1 {
				t.Fatalf("deliveries of %s: %v", tenth, ids)
			}
			d := h.waitStatus(ids[0], tt.status, 5*time.Second)
			if atts, _ := d["attempts"].([]any); len(atts) != nTenth {
				t.Errorf("event 10: %d attempts recorded, want %d", len(atts), nTenth)
			}
		})
	}
}

// TestFlowRetryAfter: a Retry-After on 429 or 503, in seconds or as an HTTP
// date, delays the next attempt and pauses the whole lane: the
// subscription's other due deliveries wait too. It is honoured up to the
// retry policy's cap.
func TestFlowRetryAfter(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tests := []struct {
		name   string
		status int
		header func(at time.Time) string
		cap    string
		least  time.Duration // the next request comes no sooner
	}{
		{"429 seconds", http.StatusTooManyRequests, func(time.Time) string { return "2" }, "10s", 2 * time.Second},
		// An HTTP date has whole seconds: at+3s, cut to the second, is at
		// least at+2s.
		{"503 HTTP date", http.StatusServiceUnavailable, func(at time.Time) string { return at.Add(3 * time.Second).UTC().Format(http.TimeFormat) }, "10s", 2 * time.Second},
		{"capped", http.StatusTooManyRequests, func(time.Time) string { return "3600" }, "1500ms", 1500 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := newFlowRecv(t, func(n int, hit flowHit, w http.ResponseWriter, _ <-chan struct{}) {
				if n == 0 {
					w.Header().Set("Retry-After", tt.header(hit.At))
					w.WriteHeader(tt.status)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			typ := fmt.Sprintf("ra%d.e", i)
			h.createSub(map[string]any{"url": rc.URL(), "events": []string{typ},
				"delivery": map[string]any{"retry": map[string]any{"max_attempts": 5, "base": "100ms", "cap": tt.cap}}})
			first := h.publish(map[string]any{"id": fmt.Sprintf("ra%d-first", i), "event_type": typ})
			ids := h.deliveriesOf(first["id"].(string))
			// Once the throttled attempt is recorded, Herald has read the
			// Retry-After: deliveries due now must wait for the pause too.
			d := flowWaitAttempts(h, ids[0], 1, 10*time.Second)
			if code := d["attempts"].([]any)[0].(map[string]any)["status_code"]; code != float64(tt.status) {
				t.Fatalf("first attempt answered %v, want %d", code, tt.status)
			}
			for k := range 3 {
				h.publish(map[string]any{"id": fmt.Sprintf("ra%d-later-%d", i, k), "event_type": typ})
			}
			hits := rc.waitFor(t, 15*time.Second, "the retry and 3 later events", func(hs []flowHit) bool { return flowDistinct(hs) == 4 && len(hs) >= 5 })
			throttled := hits[0].At
			t.Logf("next requests came %s to %s after the %d", hits[1].At.Sub(throttled), hits[len(hits)-1].At.Sub(throttled), tt.status)
			for _, hit := range hits[1:] {
				if gap := hit.At.Sub(throttled); gap < tt.least {
					t.Errorf("%s arrived %s after the %d, inside the pause of %s", hit.ID, gap, tt.status, tt.least)
				}
			}
			h.waitStatus(ids[0], "succeeded", 5*time.Second)
		})
	}
}

// TestFlowReplay: POST /webhooks/{id}/replay re-queues the deliveries that
// match since, until and status, answers {"requeued": N}, and exactly those
// are sent again.
func TestFlowReplay(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	var mu sync.Mutex
	healed := false
	rc := newFlowRecv(t, func(_ int, hit flowHit, w http.ResponseWriter, _ <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		if !healed && strings.Contains(string(hit.Data), `"fail":true`) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	sub := h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"retry": map[string]any{"max_attempts": 1}}})
	subID := sub["id"].(string)

	// First batch: the odd ones fail for good.
	var batch1 []map[string]any
	for k := range 10 {
		batch1 = append(batch1, map[string]any{"id": fmt.Sprintf("rp1-%02d", k), "event_type": "rp.e", "data": map[string]any{"fail": k%2 == 1}})
	}
	flowPublishBatch(h, batch1)
	flowWaitCount(h, subID, "failed", 5, 15*time.Second)
	flowWaitCount(h, subID, "succeeded", 5, 15*time.Second)
	time.Sleep(20 * time.Millisecond)
	between := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	// Second batch: all fail.
	var batch2 []map[string]any
	for k := range 4 {
		batch2 = append(batch2, map[string]any{"id": fmt.Sprintf("rp2-%02d", k), "event_type": "rp.e", "data": map[string]any{"fail": true}})
	}
	flowPublishBatch(h, batch2)
	flowWaitCount(h, subID, "failed", 9, 15*time.Second)
	rc.waitFor(t, 5*time.Second, "14 requests", func(hs []flowHit) bool { return len(hs) == 14 })
	mu.Lock()
	healed = true
	mu.Unlock()

	steps := []struct {
		name      string
		body      map[string]any
		want      []string // the ids sent again
		succeeded int      // deliveries succeeded afterwards
	}{
		{"failed since the second batch", map[string]any{"since": between.Format(time.RFC3339Nano), "status": "failed"},
			[]string{"rp2-00", "rp2-01", "rp2-02", "rp2-03"}, 9},
		{"failed, no bounds", map[string]any{"status": "failed"},
			[]string{"rp1-01", "rp1-03", "rp1-05", "rp1-07", "rp1-09"}, 14},
		{"failed again: none left", map[string]any{"status": "failed"}, nil, 14},
		{"succeeded until the second batch", map[string]any{"until": between.Format(time.RFC3339Nano), "status": "succeeded"},
			[]string{"rp1-00", "rp1-01", "rp1-02", "rp1-03", "rp1-04", "rp1-05", "rp1-06", "rp1-07", "rp1-08", "rp1-09"}, 14},
	}
	for _, st := range steps {
		before := len(rc.got())
		var out struct {
			Requeued *int `json:"requeued"`
		}
		h.mustDo(200, "POST", "/webhooks/"+subID+"/replay", st.body, &out)
		if out.Requeued == nil || *out.Requeued != len(st.want) {
			t.Fatalf("%s: requeued %v, want %d", st.name, out.Requeued, len(st.want))
		}
		rc.waitFor(t, 10*time.Second, st.name, func(hs []flowHit) bool { return len(hs) >= before+len(st.want) })
		flowWaitCount(h, subID, "succeeded", st.succeeded, 10*time.Second)
		time.Sleep(300 * time.Millisecond)
		hits := rc.got()[before:]
		got := flowIDs(hits)
		slices.Sort(got)
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: sent again %v, want %v", st.name, got, st.want)
		}
	}
	if n := flowCountStatus(h, subID, "failed"); n != 0 {
		t.Errorf("%d deliveries still failed after replay", n)
	}
}

// flowKeyDo calls the API with key and fails the test unless the status is want.
func flowKeyDo(h *herald, key string, want int, method, path string, body, out any) {
	h.tb.Helper()
	var raw json.RawMessage
	if got := h.doKey(key, method, path, body, &raw); got != want {
		h.tb.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.tb.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// TestFlowGoneDisables: an endpoint answering 410 Gone disables its
// subscription at once, with a disabled_reason; herald.webhook.disabled (the
// subscription without its secrets) goes to the subscriptions of the same
// tenant that ask for it, and to no other tenant's; nothing more is created or
// sent while disabled; enabling it again by PATCH sends what was held.
func TestFlowGoneDisables(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	h.mustDo(201, "POST", "/tenants", map[string]any{"id": "gone-co", "name": "Gone Co"}, nil)
	var k struct {
		Key string `json:"key"`
	}
	h.mustDo(201, "POST", "/tenants/gone-co/keys", map[string]any{}, &k)
	key := k.Key

	// Another tenant's watcher must hear nothing.
	stranger := newFlowRecv(t, nil)
	h.createSub(map[string]any{"url": stranger.URL(), "events": []string{"*"}})
	watcher := newFlowRecv(t, nil)
	flowKeyDo(h, key, 201, "POST", "/webhooks", map[string]any{"url": watcher.URL(), "events": []string{"herald.webhook.disabled"}}, nil)
	var mu sync.Mutex
	gone := true
	rc := newFlowRecv(t, func(_ int, _ flowHit, w http.ResponseWriter, _ <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		if gone {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var sub map[string]any
	flowKeyDo(h, key, 201, "POST", "/webhooks", map[string]any{"url": rc.URL(), "events": []string{"gone.*"}, "signing_secret": secret,
		"delivery": map[string]any{"max_rps": 1, "max_in_flight": 1, "retry": map[string]any{"max_attempts": 5, "base": "100ms", "cap": "200ms"}}}, &sub)
	subID := sub["id"].(string)
	flowKeyDo(h, key, 202, "POST", "/events/batch", map[string]any{"events": flowEvents("gone-", "gone.e", 3)}, nil)

	hits := watcher.waitFor(t, 10*time.Second, "herald.webhook.disabled", func(hs []flowHit) bool { return len(hs) >= 1 })
	ev := hits[0]
	if ev.Type != "herald.webhook.disabled" {
		t.Fatalf("watcher got %s", ev.Body)
	}
	var data map[string]any
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	if data["id"] != subID || data["url"] != rc.URL() || data["status"] != "disabled" || data["disabled_reason"] == "" || data["disabled_reason"] == nil {
		t.Errorf("event data %s", ev.Data)
	}
	if strings.Contains(string(ev.Body), secret) || strings.Contains(string(ev.Body), "signing_secret") {
		t.Errorf("herald.webhook.disabled shows the secret: %s", ev.Body)
	}
	var got map[string]any
	flowKeyDo(h, key, 200, "GET", "/webhooks/"+subID, nil, &got)
	if got["status"] != "disabled" || got["disabled_reason"] == nil || got["disabled_reason"] == "" {
		t.Errorf("after 410: status %v reason %v", got["status"], got["disabled_reason"])
	}

	// Disabled: no delivery is created, and the pending ones are held.
	var pub map[string]any
	flowKeyDo(h, key, 202, "POST", "/events", map[string]any{"id": "gone-while-disabled", "event_type": "gone.e"}, &pub)
	if pub["deliveries"] != float64(0) {
		t.Errorf("publish to a disabled subscription: %v, want 0 deliveries", pub)
	}
	held := len(rc.got())
	time.Sleep(1500 * time.Millisecond)
	if n := len(rc.got()); n != held {
		t.Errorf("%d requests to a disabled subscription", n-held)
	}

	mu.Lock()
	gone = false
	mu.Unlock()
	flowKeyDo(h, key, 200, "PATCH", "/webhooks/"+subID, map[string]any{"status": "active"}, nil)
	rc.waitFor(t, 15*time.Second, "the 3 held events", func(hs []flowHit) bool { return flowDistinct(hs[held:]) == 3 })
	for _, hit := range rc.got() {
		if hit.ID == "gone-while-disabled" {
			t.Error("an event published while disabled was delivered")
		}
	}
	if n := len(watcher.got()); n != 1 {
		t.Errorf("watcher got %d herald.webhook.disabled events, want 1", n)
	}
	if n := len(stranger.got()); n != 0 {
		t.Errorf("another tenant's subscription got %d requests: %s", n, stranger.got()[0].Body)
	}
}

// flowBlackhole is a listener that accepts connections and never answers.
type flowBlackhole struct {
	ln      net.Listener
	mu      sync.Mutex
	accepts []time.Time
	conns   []net.Conn
}

func newFlowBlackhole(tb testing.TB) *flowBlackhole {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &flowBlackhole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.accepts = append(b.accepts, time.Now())
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			go io.Copy(io.Discard, c) // read, never write
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
	return b
}

func (b *flowBlackhole) URL() string { return "http://" + b.ln.Addr().String() + "/hook" }

func (b *flowBlackhole) acceptTimes() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.accepts)
}

// flowDeadURL is an endpoint on a closed port of 127.0.0.1: connection refused.
func flowDeadURL(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/hook"
}

// TestFlowIsolation: next to a dead subscription (connection refused), a
// blackhole (accepts, never answers), a slow one (4 s answers) and a
// rate-limited one (max_rps 2), each with a thousand due deliveries, a
// healthy subscription's deliveries arrive without waiting behind them; and
// the slow and blackholed subscriptions never hold more than their
// max_in_flight requests.
func TestFlowIsolation(t *testing.T) {
	t.Parallel()
	const (
		slowAnswer  = 4 * time.Second
		holeTimeout = 4 * time.Second
		badInFlight = 4
		pending     = 1000
		healthyN    = 20
	)
	h := startHerald(t, "")
	healthy := newFlowRecv(t, nil)
	slow := newFlowRecv(t, func(_ int, _ flowHit, w http.ResponseWriter, stop <-chan struct{}) {
		select {
		case <-time.After(slowAnswer):
		case <-stop:
		}
		w.WriteHeader(http.StatusOK)
	})
	hole := newFlowBlackhole(t)
	limited := newFlowRecv(t, nil)
	retry := map[string]any{"max_attempts": 3, "base": "200ms", "cap": "1s"}
	dead := h.createSub(map[string]any{"url": flowDeadURL(t), "events": []string{"bad.*"},
		"delivery": map[string]any{"retry": retry}})
	h.createSub(map[string]any{"url": slow.URL(), "events": []string{"bad.*"},
		"delivery": map[string]any{"max_in_flight": badInFlight, "timeout": "6s", "retry": retry}})
	h.createSub(map[string]any{"url": hole.URL(), "events": []string{"bad.*"},
		"delivery": map[string]any{"max_in_flight": badInFlight, "timeout": holeTimeout.String(), "retry": retry}})
	h.createSub(map[string]any{"url": limited.URL(), "events": []string{"bad.*"},
		"delivery": map[string]any{"max_rps": 2, "retry": retry}})
	h.createSub(map[string]any{"url": healthy.URL(), "events": []string{"ok.*"}})

	// A thousand due deliveries for each of the three bad subscriptions.
	flowPublishBatch(h, flowEvents("bad-", "bad.e", pending))
	slow.waitFor(t, 10*time.Second, "the slow lane to be busy", func(hs []flowHit) bool { return len(hs) >= 1 })
	time.Sleep(300 * time.Millisecond)

	// Healthy events, one every 100ms: each must arrive long before a
	// request stuck behind the slow or blackholed lanes could.
	sent := map[string]time.Time{}
	for k := range healthyN {
		id := fmt.Sprintf("ok-%02d", k)
		sent[id] = time.Now()
		h.publish(map[string]any{"id": id, "event_type": "ok.e"})
		time.Sleep(100 * time.Millisecond)
	}
	hits := healthy.waitFor(t, 15*time.Second, "the healthy deliveries", func(hs []flowHit) bool { return flowDistinct(hs) == healthyN })
	var worst time.Duration
	for _, hit := range hits {
		if lat := hit.At.Sub(sent[hit.ID]); lat > worst {
			worst = lat
		}
	}
	t.Logf("healthy publish-to-arrival, worst of %d: %s", healthyN, worst)
	if bound := slowAnswer / 2; worst >= bound {
		t.Errorf("a healthy delivery took %s from publish to arrival: it waited behind its neighbours (bound %s)", worst, bound)
	}

	// The bad subscriptions were busy all along, within their own caps.
	if p := slow.peakInFlight(); p > badInFlight || p < 1 {
		t.Errorf("slow subscription: %d requests open at once, max_in_flight %d", p, badInFlight)
	}
	if n := len(limited.got()); n == 0 {
		t.Error("the rate-limited subscription got nothing: the test proves little")
	}
	acc := hole.acceptTimes()
	if len(acc) == 0 {
		t.Fatal("the blackhole got no connection")
	}
	// No blackholed request can end before its timeout, so no more than
	// max_in_flight connections may open within one timeout of the first.
	early := 0
	for _, at := range acc {
		if at.Sub(acc[0]) < holeTimeout-200*time.Millisecond {
			early++
		}
	}
	if early > badInFlight {
		t.Errorf("blackhole: %d connections within the first timeout, max_in_flight %d", early, badInFlight)
	}
	var page struct {
		Data []map[string]any `json:"data"`
	}
	h.mustDo(200, "GET", "/deliveries?limit=500&webhook_id="+dead["id"].(string), nil, &page)
	tried := 0
	for _, d := range page.Data {
		if n, _ := d["attempt_count"].(float64); n > 0 {
			tried++
		}
	}
	if tried == 0 {
		t.Error("the dead subscription was never attempted: the test proves nothing")
	}
	t.Logf("dead subscription: %d of the newest %d deliveries attempted", tried, len(page.Data))
}

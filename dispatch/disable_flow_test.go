package dispatch

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald"
)

// Auto-disable (CONTRACT.md §3) on a fake clock: a synctest bubble runs the
// dispatcher through days of fake time in milliseconds.

// flowRequest is one request a flowEndpoint got.
type flowRequest struct {
	host string
	at   time.Time
	body []byte
}

// flowEndpoint is a fake transport that records every request and answers
// with the status status picks (by host and body).
type flowEndpoint struct {
	mu     sync.Mutex
	got    []flowRequest
	status func(host string, body []byte) int
}

func (f *flowEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.got = append(f.got, flowRequest{host: r.URL.Host, at: time.Now(), body: body})
	status := f.status
	f.mu.Unlock()
	resp := okResponse(r)
	if status != nil {
		resp.StatusCode = status(r.URL.Host, body)
	}
	return resp, nil
}

// to returns the requests that went to host.
func (f *flowEndpoint) to(host string) []flowRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []flowRequest
	for _, r := range f.got {
		if r.host == host {
			out = append(out, r)
		}
	}
	return out
}

func (f *flowEndpoint) setStatus(status func(host string, body []byte) int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// flowStart starts a dispatcher on st and rt inside the current synctest
// bubble, polling every minute, and returns the function that stops it.
func flowStart(t *testing.T, st herald.Store, rt http.RoundTripper, mod func(*Config)) (stop func()) {
	t.Helper()
	cfg := Config{Store: st, Transport: rt, Logger: testLogger(t), PollInterval: time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Start(context.Background()) }()
	return func() {
		d.Stop()
		if err := <-done; err != nil {
			t.Errorf("Start = %v", err)
		}
	}
}

// flowAdvance lets fake time pass in steps of one minute until cond holds
// (true) or limit has passed (false).
func flowAdvance(limit time.Duration, cond func() bool) bool {
	end := time.Now().Add(limit)
	for !cond() {
		if !time.Now().Before(end) {
			return false
		}
		time.Sleep(time.Minute)
	}
	return true
}

// flowNever is a condition that never holds: flowAdvance then just lets time
// pass.
func flowNever() bool { return false }

// flowFailingSub returns a subscription whose deliveries retry without limit,
// at most an hour apart, and a watcher of herald.webhook.disabled in the same
// tenant.
func flowFailingSub() (failing, watcher herald.Subscription) {
	failing = testSub("https://failing.example/hook")
	failing.Delivery.Retry = herald.RetryPolicy{MaxAttempts: 0, Window: 0, Base: time.Minute, Cap: time.Hour}
	watcher = testSub("https://watcher.example/hook")
	watcher.Events = []string{herald.EventTypeDisabled}
	return failing, watcher
}

// flowFailingHost answers 500 from failing.example and 200 from anywhere else.
func flowFailingHost(host string, _ []byte) int {
	if host == "failing.example" {
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

// TestFlowAutoDisable: a subscription whose every attempt has failed for
// --disable-after (default 120h) is disabled with its reason, and
// herald.webhook.disabled (the subscription without secrets) goes to the
// tenant's subscription that asked for it; nothing is sent to the disabled
// subscription, its pending deliveries are held, and they are sent once it is
// enabled again.
func TestFlowAutoDisable(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		failing, watcher := flowFailingSub()
		failing.EncryptionKey = []byte("0123456789abcdef0123456789abcdef")
		st.addSub(failing)
		st.addSub(watcher)
		ep := &flowEndpoint{status: flowFailingHost}
		t0 := time.Now()
		held := st.publish(t, failing.ID, t0, `{"n":1}`)
		stop := flowStart(t, st, ep, nil)
		defer stop()

		// A second event halfway: still failing.
		flowAdvance(60*time.Hour, flowNever)
		held = append(held, st.publish(t, failing.ID, time.Now(), `{"n":2}`)...)
		disabled := func() bool { return st.sub(failing.ID).Status == herald.StatusDisabled }
		if !flowAdvance(70*time.Hour, disabled) {
			t.Fatalf("not disabled %s after the first failure", time.Since(t0))
		}
		reqs := ep.to("failing.example")
		if len(reqs) < 100 {
			t.Fatalf("only %d attempts in 120h: the test proves little", len(reqs))
		}
		failingFor := time.Since(reqs[0].at)
		if failingFor < DefaultDisableAfter || failingFor > DefaultDisableAfter+5*time.Minute {
			t.Errorf("disabled after failing for %s, want 120h (checked every minute)", failingFor)
		}
		got := st.sub(failing.ID)
		if got.DisabledReason != ReasonFailing(DefaultDisableAfter) || got.DisabledReason == "" {
			t.Errorf("disabled_reason %q", got.DisabledReason)
		}

		// The event, to the same tenant, reaches the watcher.
		if !flowAdvance(10*time.Minute, func() bool { return len(ep.to("watcher.example")) == 1 }) {
			t.Fatal("the watcher got no herald.webhook.disabled")
		}
		st.mu.Lock()
		published := slices.Clone(st.published)
		st.mu.Unlock()
		if len(published) != 1 || published[0].Event.TenantID != failing.TenantID ||
			published[0].Event.EventType != herald.EventTypeDisabled {
			t.Fatalf("published %+v", published)
		}
		var env struct {
			EventType string          `json:"event_type"`
			Data      json.RawMessage `json:"data"`
		}
		body := ep.to("watcher.example")[0].body
		if err := json.Unmarshal(body, &env); err != nil || env.EventType != herald.EventTypeDisabled {
			t.Fatalf("watcher got %s: %v", body, err)
		}
		var data map[string]any
		if err := json.Unmarshal(env.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data["id"] != failing.ID || data["status"] != herald.StatusDisabled || data["disabled_reason"] != got.DisabledReason {
			t.Errorf("event data %s", env.Data)
		}
		for _, secret := range []string{failing.Secrets[0].Value, "0123456789abcdef", "signing_secret", "encryption_key"} {
			if strings.Contains(string(env.Data), secret) {
				t.Errorf("event data shows %q: %s", secret, env.Data)
			}
		}

		// Disabled: nothing is sent, the pending deliveries are held.
		before := len(ep.to("failing.example"))
		flowAdvance(24*time.Hour, flowNever)
		if n := len(ep.to("failing.example")) - before; n != 0 {
			t.Errorf("%d requests to a disabled subscription", n)
		}
		for _, id := range held {
			if dl, _ := st.delivery(id); dl.Status != herald.DeliveryPending {
				t.Errorf("held delivery %s is %s, want pending", id, dl.Status)
			}
		}

		// Enabled again (as PATCH does: status active, failing_since
		// cleared), with the endpoint fixed: what was held is sent.
		ep.setStatus(nil)
		st.mu.Lock()
		s := st.subs[failing.ID]
		s.Status, s.DisabledReason, s.FailingSince, s.UpdatedAt = herald.StatusActive, "", time.Time{}, time.Now()
		st.mu.Unlock()
		sent := func() bool {
			for _, id := range held {
				if dl, _ := st.delivery(id); dl.Status != herald.DeliverySucceeded {
					return false
				}
			}
			return true
		}
		// A held delivery is due at its next attempt time: at most the
		// retry cap (1h) after its last attempt.
		if !flowAdvance(2*time.Hour, sent) {
			t.Error("the held deliveries were not sent after the subscription was enabled again")
		}
	})
}

// TestFlowAutoDisableEveryAttempt: one success restarts the count; the
// subscription is disabled --disable-after after the first failure that
// follows it, not after the first failure ever.
func TestFlowAutoDisableEveryAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		failing, _ := flowFailingSub()
		st.addSub(failing)
		// The endpoint fails everything but events whose data says ok.
		ep := &flowEndpoint{status: func(host string, body []byte) int {
			if strings.Contains(string(body), `"ok":true`) {
				return http.StatusOK
			}
			return http.StatusInternalServerError
		}}
		t0 := time.Now()
		st.publish(t, failing.ID, t0, `{"ok":false}`)
		stop := flowStart(t, st, ep, nil)
		defer stop()
		disabled := func() bool { return st.sub(failing.ID).Status == herald.StatusDisabled }
		if flowAdvance(100*time.Hour, disabled) {
			t.Fatalf("disabled after %s", time.Since(t0))
		}
		okID := st.publish(t, failing.ID, time.Now(), `{"ok":true}`)[0]
		if !flowAdvance(time.Hour, func() bool { dl, _ := st.delivery(okID); return dl.Status == herald.DeliverySucceeded }) {
			t.Fatal("the good event was not delivered")
		}
		_, atts := st.delivery(okID)
		succeededAt := atts[0].StartedAt
		if flowAdvance(119*time.Hour, disabled) {
			t.Fatalf("disabled %s after a successful attempt", time.Since(succeededAt))
		}
		if !flowAdvance(3*time.Hour, disabled) {
			t.Fatalf("not disabled %s after the last success", time.Since(succeededAt))
		}
		if since := time.Since(succeededAt); since < DefaultDisableAfter || since > DefaultDisableAfter+time.Hour+5*time.Minute {
			t.Errorf("disabled %s after the last success; want 120h after the first failure that followed it", since)
		}
	})
}

// TestFlowDisableAfterSetting: Config.DisableAfter sets the period;
// DisableNever, or a negative period, turns auto-disable off.
func TestFlowDisableAfterSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mod     func(*Config)
		disable bool
		after   time.Duration
	}{
		{"2h", func(c *Config) { c.DisableAfter = 2 * time.Hour }, true, 2 * time.Hour},
		{"never", func(c *Config) { c.DisableNever = true }, false, 0},
		{"negative is never", func(c *Config) { c.DisableAfter = -time.Second }, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				st := newFakeStore()
				failing, watcher := flowFailingSub()
				st.addSub(failing)
				st.addSub(watcher)
				ep := &flowEndpoint{status: flowFailingHost}
				st.publish(t, failing.ID, time.Now(), `{}`)
				stop := flowStart(t, st, ep, tt.mod)
				defer stop()
				disabled := func() bool { return st.sub(failing.ID).Status == herald.StatusDisabled }
				ok := flowAdvance(200*time.Hour, disabled)
				if ok != tt.disable {
					t.Fatalf("disabled %v after %d attempts, want %v", ok, len(ep.to("failing.example")), tt.disable)
				}
				if !ok {
					if n := len(ep.to("watcher.example")); n != 0 {
						t.Errorf("watcher got %d events", n)
					}
					return
				}
				first := ep.to("failing.example")[0].at
				if d := time.Since(first); d < tt.after || d > tt.after+5*time.Minute {
					t.Errorf("disabled after failing for %s, want %s", d, tt.after)
				}
				if got := st.sub(failing.ID).DisabledReason; got != ReasonFailing(tt.after) {
					t.Errorf("disabled_reason %q", got)
				}
				if !flowAdvance(10*time.Minute, func() bool { return len(ep.to("watcher.example")) == 1 }) {
					t.Error("the watcher got no herald.webhook.disabled")
				}
			})
		})
	}
}

// TestFlowPausedNotAutoDisabled: a subscription paused by hand makes no
// attempts, so it is not one whose every attempt has failed for
// --disable-after, however old its last failure. Disabling it would also
// change what happens to new events: a paused subscription still gets (and
// holds) deliveries for them; a disabled one gets none.
func TestFlowPausedNotAutoDisabled(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		failing, watcher := flowFailingSub()
		st.addSub(failing)
		st.addSub(watcher)
		ep := &flowEndpoint{status: flowFailingHost}
		st.publish(t, failing.ID, time.Now(), `{}`)
		stop := flowStart(t, st, ep, nil)
		defer stop()
		if !flowAdvance(10*time.Hour, func() bool { return len(ep.to("failing.example")) >= 3 }) {
			t.Fatal("no failed attempts")
		}
		// Paused by hand, as PATCH does: status and updated_at change,
		// failing_since stays (it is cleared only on a change to active).
		st.mu.Lock()
		s := st.subs[failing.ID]
		s.Status, s.UpdatedAt = herald.StatusPaused, time.Now()
		st.mu.Unlock()
		attempts := len(ep.to("failing.example"))
		flowAdvance(DefaultDisableAfter+10*time.Hour, flowNever)
		if n := len(ep.to("failing.example")) - attempts; n != 0 {
			t.Errorf("%d attempts while paused", n)
		}
		if got := st.sub(failing.ID); got.Status != herald.StatusPaused {
			t.Errorf("a subscription paused for %s, with no attempt meanwhile, became %s (%q)",
				DefaultDisableAfter+10*time.Hour, got.Status, got.DisabledReason)
		}
	})
}

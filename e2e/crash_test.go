package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashLosesNothing kills herald with SIGKILL while 2,000 events are being
// published and delivered, restarts it, and checks that every event answered
// 202 arrives. Events whose publish failed in the crash are published again
// (same id) after the restart, so in the end all 2,000 must arrive.
func TestCrashLosesNothing(t *testing.T) {
	t.Parallel()
	const total = 2000
	h := startHerald(t, "")
	rc := newReceiver(t, nil)
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"max_rps": 100000, "max_in_flight": 64, "retry": map[string]any{"max_attempts": 0, "base": "100ms", "cap": "500ms"}}})

	var acked sync.Map // event id -> true once answered 202
	var nAcked atomic.Int64
	ids := make(chan string, total)
	for i := range total {
		ids <- fmt.Sprintf("crash-%04d", i)
	}
	close(ids)
	client := &http.Client{Timeout: 10 * time.Second}
	publishOne := func(base, id string) bool {
		body, _ := json.Marshal(map[string]any{"id": id, "event_type": "crash.test", "data": map[string]any{"n": id}})
		req, _ := http.NewRequest("POST", base+"/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode == 202 {
			acked.Store(id, true)
			nAcked.Add(1)
			return true
		}
		return false
	}

	var failed sync.Map
	var wg sync.WaitGroup
	base := h.URL
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if !publishOne(base, id) {
					failed.Store(id, true)
				}
			}
		}()
	}
	// Kill while both publishing and delivering are under way.
	for nAcked.Load() < total/3 {
		time.Sleep(5 * time.Millisecond)
	}
	arrivedBefore := len(rc.requests())
	h.sigkill()
	wg.Wait()
	ackedAtKill := nAcked.Load()
	t.Logf("at SIGKILL: %d answered 202, %d arrived", ackedAtKill, arrivedBefore)

	h.restart()
	var retry []string
	failed.Range(func(k, _ any) bool { retry = append(retry, k.(string)); return true })
	for _, id := range retry {
		if !publishOne(h.URL, id) {
			t.Fatalf("publish %s after restart failed", id)
		}
	}

	arrived := func(r []received) map[string]int {
		seen := map[string]int{}
		for _, q := range r {
			var env struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(q.Body, &env) == nil {
				seen[env.ID]++
			}
		}
		return seen
	}
	got := rc.waitFor(t, 90*time.Second, "all events", func(r []received) bool { return len(arrived(r)) >= total })
	seen := arrived(got)
	missing := 0
	acked.Range(func(k, _ any) bool {
		if seen[k.(string)] == 0 {
			missing++
		}
		return true
	})
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("after restart: %d distinct events arrived, %d duplicates (at-least-once after a crash)", len(seen), dups)
	if missing > 0 {
		t.Fatalf("%d events answered 202 never arrived", missing)
	}
	if len(seen) != total {
		t.Fatalf("%d distinct events arrived, want %d", len(seen), total)
	}
}

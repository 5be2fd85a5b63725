package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const pgMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// pgDatabase creates a fresh database for one test and returns its URL; it
// skips the test when TEST_DATABASE_URL is unset.
func pgDatabase(tb testing.TB) (dbURL string, admin func(sql string)) {
	tb.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		tb.Skip("TEST_DATABASE_URL is not set")
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "herald_e2e_" + hex.EncodeToString(b)
	exec := func(sql string) {
		tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Fatalf("connect %s: %v", base, err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, sql); err != nil {
			tb.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE DATABASE " + name)
	tb.Cleanup(func() { exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String(), func(sql string) { exec(strings.ReplaceAll(sql, "$DB", name)) }
}

// startPG starts one herald process on dbURL.
func startPG(tb testing.TB, dbURL string, extra ...string) *herald {
	tb.Helper()
	args := append([]string{"--database-url", dbURL, "--master-key", pgMasterKey}, extra...)
	return startHerald(tb, "", args...)
}

// successes reads herald_delivery_attempts_total{outcome="success"} of h.
func (h *herald) successes() int {
	h.tb.Helper()
	resp, err := http.Get(h.URL + "/metrics")
	if err != nil {
		h.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`herald_delivery_attempts_total\{outcome="success"\} (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func envelopeIDs(r []received) map[string]int {
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

// TestPostgresTwoProcessesShareWork starts two processes at once on an empty
// database (both migrate), publishes 4,000 events in waves alternately
// through both to 8 subscriptions, and checks that every event arrives once
// and both processes delivered a share.
func TestPostgresTwoProcessesShareWork(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgDatabase(t)
	var a, b *herald
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = startPG(t, dbURL) }()
	go func() { defer wg.Done(); b = startPG(t, dbURL) }()
	wg.Wait()
	rc := newReceiver(t, nil)
	const subs, total = 8, 4000
	for i := range subs {
		a.createSub(map[string]any{"url": rc.URL(), "events": []string{fmt.Sprintf("share.%d", i)},
			"delivery": map[string]any{"max_in_flight": 32, "max_rps": 100000}})
	}
	// Waves of 500 events, alternately through each process, with pauses
	// longer than LaneHandoff: a lane stays with its owner while it has work
	// (that keeps max_rps and order exact), and passes on once drained.
	procs := []*herald{a, b}
	const wave = 500
	for i := 0; i < total; i += wave {
		evs := make([]map[string]any, wave)
		for k := range evs {
			n := i + k
			evs[k] = map[string]any{"id": fmt.Sprintf("pg-%05d", n), "event_type": fmt.Sprintf("share.%d", n%subs)}
		}
		procs[(i/wave)%2].mustDo(202, "POST", "/events/batch", map[string]any{"events": evs}, nil)
		rc.waitFor(t, 60*time.Second, "the wave", func(r []received) bool { return len(envelopeIDs(r)) >= i+wave })
		time.Sleep(1200 * time.Millisecond)
	}
	got := rc.waitFor(t, 90*time.Second, "4000 events", func(r []received) bool { return len(envelopeIDs(r)) >= total })
	seen := envelopeIDs(got)
	dups := len(got) - len(seen)
	t.Logf("%d distinct events, %d duplicates; process A sent %d, process B %d", len(seen), dups, a.successes(), b.successes())
	if a.successes() == 0 || b.successes() == 0 {
		t.Errorf("one process did all the work: A %d, B %d", a.successes(), b.successes())
	}
}

// TestPostgresRateAndOrderAcrossProcesses checks max_rps over both processes
// together, and that an ordered subscription fed alternately through both
// receives in publish order.
func TestPostgresRateAndOrderAcrossProcesses(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgDatabase(t)
	a := startPG(t, dbURL)
	b := startPG(t, dbURL)
	rated := newReceiver(t, nil)
	ordered := newReceiver(t, nil)
	a.createSub(map[string]any{"url": rated.URL(), "events": []string{"rate"}, "delivery": map[string]any{"max_rps": 20}})
	a.createSub(map[string]any{"url": ordered.URL(), "events": []string{"order"}, "ordered": true})
	procs := []*herald{a, b}
	for i := range 30 {
		procs[i%2].publish(map[string]any{"id": fmt.Sprintf("o-%02d", i), "event_type": "order"})
	}
	for i := range 60 {
		procs[i%2].publish(map[string]any{"id": fmt.Sprintf("r-%02d", i), "event_type": "rate"})
	}
	got := ordered.waitFor(t, 30*time.Second, "30 ordered events", func(r []received) bool { return len(r) >= 30 })
	for i, r := range got[:30] {
		var env struct{ ID string }
		json.Unmarshal(r.Body, &env)
		if want := fmt.Sprintf("o-%02d", i); env.ID != want {
			t.Fatalf("ordered arrival %d is %s, want %s", i, env.ID, want)
		}
	}
	rs := rated.waitFor(t, 30*time.Second, "60 rate-limited events", func(r []received) bool { return len(r) >= 60 })
	worst := 0
	for i := range rs {
		n := 0
		for j := i; j < len(rs) && rs[j].At.Sub(rs[i].At) < time.Second; j++ {
			n++
		}
		worst = max(worst, n)
	}
	t.Logf("busiest one-second window at the receiver: %d requests (max_rps 20)", worst)
	if worst > 20 {
		t.Errorf("a one-second window held %d requests, over max_rps 20", worst)
	}
}

// TestPostgresKillOneProcess SIGKILLs a process holding leased work; the
// other takes it over when the leases expire and every event arrives.
func TestPostgresKillOneProcess(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgDatabase(t)
	a := startPG(t, dbURL, "--lease-margin", "5s")
	b := startPG(t, dbURL, "--lease-margin", "5s")
	var mu sync.Mutex
	hold := true
	rc := newReceiver(t, func(n int, r *http.Request) int {
		mu.Lock()
		h := hold
		mu.Unlock()
		if h {
			time.Sleep(3 * time.Second) // keep attempts under way while A dies
		}
		return 200
	})
	a.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"},
		"delivery": map[string]any{"timeout": "1s", "max_in_flight": 50, "retry": map[string]any{"max_attempts": 0, "base": "100ms", "cap": "500ms"}}})
	const total = 200
	evs := make([]map[string]any, total)
	for i := range evs {
		evs[i] = map[string]any{"id": fmt.Sprintf("k-%03d", i), "event_type": "kill"}
	}
	a.mustDo(202, "POST", "/events/batch", map[string]any{"events": evs}, nil)
	time.Sleep(300 * time.Millisecond)
	a.sigkill()
	mu.Lock()
	hold = false
	mu.Unlock()
	got := rc.waitFor(t, 60*time.Second, "every event via the survivor", func(r []received) bool { return len(envelopeIDs(r)) >= total })
	seen := envelopeIDs(got)
	t.Logf("%d distinct events arrived, %d requests in all (duplicates are the attempts A had under way)", len(seen), len(got))
	_ = b
}

// TestPostgresOutage cuts herald off its database: /readyz fails and a
// publish answers 503 quickly instead of hanging; when the database is back
// work resumes and nothing answered 202 is lost.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	dbURL, admin := pgDatabase(t)
	h := startPG(t, dbURL)
	rc := newReceiver(t, nil)
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"}, "delivery": map[string]any{"retry": map[string]any{"max_attempts": 0, "base": "100ms", "cap": "1s"}}})
	h.publish(map[string]any{"id": "before", "event_type": "x"})
	rc.waitFor(t, 10*time.Second, "the first event", func(r []received) bool { return len(r) >= 1 })

	admin("ALTER DATABASE $DB ALLOW_CONNECTIONS false")
	admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$DB'")
	deadline := time.Now().Add(15 * time.Second)
	for h.doKey("", "GET", "/readyz", nil, nil) == 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 with the database gone")
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	code := h.do("POST", "/events", map[string]any{"id": "during", "event_type": "x"}, nil)
	if took := time.Since(start); code != 503 || took > 10*time.Second {
		t.Errorf("publish during the outage: %d after %s, want 503 quickly", code, took)
	}
	admin("ALTER DATABASE $DB ALLOW_CONNECTIONS true")
	deadline = time.Now().Add(30 * time.Second)
	for h.doKey("", "GET", "/readyz", nil, nil) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover")
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.publish(map[string]any{"id": "after", "event_type": "x"})
	got := rc.waitFor(t, 30*time.Second, "the event published after the outage", func(r []received) bool {
		return envelopeIDs(r)["after"] > 0
	})
	if envelopeIDs(got)["before"] == 0 {
		t.Error("the event from before the outage is missing")
	}
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The isolation run (go run ./bench -isolation) measures what bad neighbours
// cost a healthy subscription (CONTRACT.md §5.4: a slow or failing
// subscription never delays another's deliveries). It measures the healthy
// subscription's publish-to-arrival latency at o.rate events/s alone, then
// again next to a dead subscription (connection refused) with o.deadPending
// deliveries pending and a slow one whose endpoint answers after o.slowAnswer.
// The aim is a p99 with neighbours within 2x of the p99 alone.

// slowReceiver answers every request after a delay and counts them.
type slowReceiver struct {
	delay time.Duration
	stop  chan struct{}
	count atomic.Int64
	open  atomic.Int64
	peak  atomic.Int64
}

func (s *slowReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.open.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer s.open.Add(-1)
	s.count.Add(1)
	select {
	case <-time.After(s.delay):
	case <-s.stop:
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusOK)
}

func runIsolation(o options) error {
	ctx := context.Background()
	rc := &receiver{arrived: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(ln, rc)
	hookURL := "http://" + ln.Addr().String() + "/hook"

	slow := &slowReceiver{delay: o.slowAnswer, stop: make(chan struct{})}
	defer close(slow.stop)
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(sln, slow)
	// A closed port: every attempt is refused at once.
	dln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	deadURL := "http://" + dln.Addr().String() + "/hook"
	dln.Close()

	bin, dir, err := build()
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	p, err := startHerald(bin, filepath.Join(dir, "data"), o.dbURL, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	procs := []*proc{p}
	api := p.url

	// The healthy subscription, with the default delivery settings
	// (max_rps 300, max_in_flight 16): it gets the events of paced().
	if err := call(api, "POST", "/webhooks", map[string]any{"url": hookURL, "events": []string{"bench.event"}}, nil); err != nil {
		return err
	}
	rows := [][]string{{"run", "delivered/s", "p50", "p99", "p99 / p99 alone"}}

	// 1. Alone.
	alone, err := paced(ctx, rc, procs, o)
	if err != nil {
		return fmt.Errorf("alone: %w", err)
	}
	fmt.Printf("alone: p50 %s p99 %s\n", round(alone.p50), round(alone.p99))
	rows = append(rows, isoRow(fmt.Sprintf("alone, %d events/s for %ds", o.rate, o.rateSeconds), alone, alone))

	// 2. The neighbours: a dead one with deadPending deliveries due, a slow
	// one with slowPending, both with the default delivery settings but
	// for the slow one's timeout, which lets its answers arrive.
	if err := call(api, "POST", "/webhooks", map[string]any{"url": deadURL, "events": []string{"dead.*"}}, nil); err != nil {
		return err
	}
	if err := call(api, "POST", "/webhooks", map[string]any{"url": "http://" + sln.Addr().String() + "/hook", "events": []string{"slow.*"},
		"delivery": map[string]any{"timeout": (o.slowAnswer + 5*time.Second).String()}}, nil); err != nil {
		return err
	}
	start := time.Now()
	if err := publishMany(api, "dead", "dead.event", o.deadPending); err != nil {
		return err
	}
	if err := publishMany(api, "slow", "slow.event", o.slowPending); err != nil {
		return err
	}
	fmt.Printf("published %d events to the dead subscription and %d to the slow one in %s\n",
		o.deadPending, o.slowPending, time.Since(start).Round(time.Millisecond))
	// Let both lanes fill before measuring.
	time.Sleep(2 * time.Second)
	failBefore, err := metric(api, `herald_delivery_attempts_total{outcome="failure"}`)
	if err != nil {
		return err
	}
	slowBefore := slow.count.Load()

	// 3. Next to them.
	with, err := paced(ctx, rc, procs, o)
	if err != nil {
		return fmt.Errorf("with neighbours: %w", err)
	}
	failAfter, err := metric(api, `herald_delivery_attempts_total{outcome="failure"}`)
	if err != nil {
		return err
	}
	pending, err := metric(api, "herald_deliveries_pending")
	if err != nil {
		return err
	}
	rows = append(rows, isoRow(fmt.Sprintf("next to dead (%d pending) + %s-slow", o.deadPending, o.slowAnswer), with, alone))

	store := "SQLite"
	if o.dbURL != "" {
		store = "PostgreSQL"
	}
	fmt.Printf("\nIsolation: healthy subscription at %d events/s, Herald on %s, 1 process, %d cores\n", o.rate, store, nproc())
	fmt.Printf("during the second run: %.0f failed attempts to the dead subscription (%.0f/s), %d requests to the slow one (peak %d open), %.0f deliveries pending at the end\n\n",
		failAfter-failBefore, (failAfter-failBefore)/float64(o.rateSeconds), slow.count.Load()-slowBefore, slow.peak.Load(), pending)
	printTable(rows)
	ratio := float64(with.p99) / float64(max(alone.p99, time.Microsecond))
	verdict := "within"
	if ratio > 2 {
		verdict = "NOT within"
	}
	fmt.Printf("\np99 with bad neighbours is %.2fx p99 alone: %s the 2x aim\n", ratio, verdict)
	return nil
}

func isoRow(name string, r, alone result) []string {
	return []string{name, fmt.Sprintf("%.0f", r.delivered), round(r.p50), round(r.p99),
		fmt.Sprintf("%.2fx", float64(r.p99)/float64(max(alone.p99, time.Microsecond)))}
}

func round(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

// publishMany publishes n small events of type typ in batches of 1000.
func publishMany(api, prefix, typ string, n int) error {
	client := &http.Client{}
	for i := 0; i < n; i += 1000 {
		k := min(1000, n-i)
		evs := make([]map[string]any, k)
		for j := range evs {
			evs[j] = map[string]any{"id": fmt.Sprintf("%s-%d", prefix, i+j), "event_type": typ, "data": map[string]any{"n": i + j}}
		}
		if err := callClient(client, api, "POST", "/events/batch", map[string]any{"events": evs}, nil); err != nil {
			return fmt.Errorf("publish %s events: %w", prefix, err)
		}
	}
	return nil
}

// metric reads one sample of Herald's /metrics (name with its labels, as
// written there).
func metric(api, name string) (float64, error) {
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, nil // not yet exported: nothing counted
}

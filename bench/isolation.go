package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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

// The backlog target of the issue: with 1,000,000 deliveries pending to a
// dead endpoint, herald's resident memory stays under rssLimit, the WAL
// under walLimit, and the healthy subscription's p99 within p99Factor of
// its p99 alone.
const (
	backlogTarget = 1_000_000
	rssLimit      = 256 * mib
	walLimit      = 64 * mib
	p99Factor     = 2.0
	// watchPeriod is how often memory and the WAL are sampled.
	watchPeriod = 250 * time.Millisecond
	// backlogBatch events per POST /events/batch, backlogConcurrency
	// batches at a time, build the backlog.
	backlogBatch       = 1000
	backlogConcurrency = 4
)

func runIsolation(ctx context.Context, o options) error {
	rc, hookURL, err := startReceiver()
	if err != nil {
		return err
	}
	defer rc.ln.Close()

	slow := &slowReceiver{delay: o.slowAnswer, stop: make(chan struct{})}
	defer close(slow.stop)
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer sln.Close()
	go http.Serve(sln, slow)
	deadURL, err := refusingURL()
	if err != nil {
		return err
	}

	f, err := launch(ctx, o, 0)
	if err != nil {
		return err
	}
	defer f.close()
	api := f.api()
	w := watch(ctx, f.procs, f.dataDir, "alone", watchPeriod)
	defer w.stop() // on an early return; stopping twice is harmless

	// The healthy subscription, with the default delivery settings
	// (max_rps 300, max_in_flight 16): it gets the events of paced().
	if err := call(ctx, api, "POST", "/webhooks", map[string]any{"url": hookURL, "events": []string{"bench.event"}}, nil); err != nil {
		return err
	}
	rows := [][]string{{"run", "delivered/s", "p50", "p99", "p99 / p99 alone", "herald CPU/delivery", "herald cores", "RSS MiB"}}

	// 1. Alone.
	alone, err := measure(f.procs, func() (result, error) { return paced(ctx, rc, f.procs, o, o.rate) })
	if err != nil {
		return fmt.Errorf("alone: %w", err)
	}
	fmt.Printf("alone: p50 %s p99 %s\n", round(alone.p50), round(alone.p99))
	rows = append(rows, isoRow(fmt.Sprintf("alone, %d events/s for %ds", o.rate, o.rateSeconds), alone, alone))

	// 2. The neighbours: a dead one with deadPending deliveries due, a slow
	// one with slowPending, both with the default delivery settings but
	// for the slow one's timeout, which lets its answers arrive.
	if err := call(ctx, api, "POST", "/webhooks", map[string]any{"url": deadURL, "events": []string{"dead.*"}}, nil); err != nil {
		return err
	}
	if err := call(ctx, api, "POST", "/webhooks", map[string]any{"url": "http://" + sln.Addr().String() + "/hook", "events": []string{"slow.*"},
		"delivery": map[string]any{"timeout": (o.slowAnswer + 5*time.Second).String()}}, nil); err != nil {
		return err
	}
	w.enter("backlog")
	start := time.Now()
	if err := publishMany(ctx, api, "dead", "dead.event", o.deadPending); err != nil {
		return err
	}
	took := time.Since(start)
	if err := publishMany(ctx, api, "slow", "slow.event", o.slowPending); err != nil {
		return err
	}
	fmt.Printf("published %d events to the dead subscription in %s (%.0f events/s, /events/batch x%d, %d at a time; small events of about %d bytes of JSON each) and %d to the slow one\n",
		o.deadPending, took.Round(time.Millisecond), float64(o.deadPending)/took.Seconds(), backlogBatch, backlogConcurrency,
		smallEventBytes(), o.slowPending)
	// Let both lanes fill before measuring.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	w.enter("beside")
	failBefore, err := metric(ctx, api, `herald_delivery_attempts_total{outcome="failure"}`)
	if err != nil {
		return err
	}
	slowBefore := slow.count.Load()

	// 3. Next to them.
	with, err := measure(f.procs, func() (result, error) { return paced(ctx, rc, f.procs, o, o.rate) })
	if err != nil {
		return fmt.Errorf("with neighbours: %w", err)
	}
	failAfter, err := metric(ctx, api, `herald_delivery_attempts_total{outcome="failure"}`)
	if err != nil {
		return err
	}
	pending, err := metric(ctx, api, "herald_deliveries_pending")
	if err != nil {
		return err
	}
	if err := w.stop(); err != nil {
		return err
	}
	end, err := readUsage(f.procs)
	if err != nil {
		return err
	}
	var files storeFiles
	if f.dataDir != "" {
		if files, err = readStoreFiles(f.dataDir); err != nil {
			return err
		}
	}
	rows = append(rows, isoRow(fmt.Sprintf("next to dead (%d pending) + %s-slow", o.deadPending, o.slowAnswer), with, alone))

	fmt.Printf("\nIsolation: healthy subscription at %d events/s, Herald on %s, 1 process, %d cores\n%s\n",
		o.rate, storeName(o), nproc(), f.build)
	fmt.Printf("during the second run: %.0f failed attempts to the dead subscription (%.0f/s), %d requests to the slow one (peak %d open), %.0f deliveries pending at the end\n\n",
		failAfter-failBefore, (failAfter-failBefore)/float64(o.rateSeconds), slow.count.Load()-slowBefore, slow.peak.Load(), pending)
	printTable(rows)
	fmt.Println("\nherald CPU/delivery: herald's CPU over the run per healthy delivery, the neighbours' attempts included.")

	fmt.Printf("\nBacklog limits (memory and WAL sampled every %s; the issue's target is at %d pending, this run had %d):\n\n",
		watchPeriod, backlogTarget, o.deadPending)
	checks := backlogChecks(w, f.dataDir != "", end, files, alone, with)
	printTable(checks)
	failed := 0
	for _, c := range checks[1:] {
		if c[3] == "FAIL" {
			failed++
		}
	}
	fmt.Printf("\nbacklog target: %s (%d of %d checks failed)\n", passFail(failed == 0), failed, len(checks)-1)
	return nil
}

// backlogChecks are the rows of the backlog limits table: each measure
// beside its limit with a verdict.
func backlogChecks(w *watcher, sqlite bool, end usage, files storeFiles, alone, with result) [][]string {
	limit := func(name string, v, lim int64) []string {
		return []string{name, mibs(v) + " MiB", fmt.Sprintf("%d MiB", lim/mib), passFail(v < lim)}
	}
	rows := [][]string{{"measure", "value", "limit", "verdict"},
		limit("herald RSS at the end (VmRSS)", end.rss, rssLimit),
		limit("herald peak RSS over the whole run (VmHWM)", end.hwm, rssLimit),
		limit("herald RSS peak while publishing the backlog (sampled)", w.peaks("backlog").rss, rssLimit),
		limit("herald RSS peak beside the backlog (sampled)", w.peaks("beside").rss, rssLimit),
	}
	if sqlite {
		rows = append(rows,
			limit("WAL peak before the backlog (herald.db-wal)", w.peaks("alone").wal, walLimit),
			limit("WAL peak while publishing the backlog", w.peaks("backlog").wal, walLimit),
			limit("WAL peak beside the backlog", w.peaks("beside").wal, walLimit),
			limit("WAL at the end", files.wal, walLimit),
			[]string{"database file at the end (herald.db)", mibs(files.db) + " MiB", "-", "-"})
	} else {
		rows = append(rows, []string{"WAL", "n/a (PostgreSQL)", fmt.Sprintf("%d MiB", walLimit/mib), "-"})
	}
	ratio := float64(with.p99) / float64(max(alone.p99, time.Microsecond))
	return append(rows, []string{"healthy p99 beside the backlog / alone",
		fmt.Sprintf("%.2fx (%s / %s)", ratio, round(with.p99), round(alone.p99)),
		fmt.Sprintf("%.0fx", p99Factor), passFail(ratio <= p99Factor)})
}

func isoRow(name string, r, alone result) []string {
	return []string{name, fmt.Sprintf("%.0f", r.delivered), round(r.p50), round(r.p99),
		fmt.Sprintf("%.2fx", float64(r.p99)/float64(max(alone.p99, time.Microsecond))),
		micros(r.cpuPerDelivery), fmt.Sprintf("%.2f", r.cores), mibs(r.rss)}
}

// refusingURL is a hook URL on a loopback port nobody listens on: every
// attempt is refused at once.
func refusingURL() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("dead endpoint: %w", err)
	}
	url := "http://" + ln.Addr().String() + "/hook"
	return url, ln.Close()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// smallEvent is one event of the backlog: its id, type and a counter.
func smallEvent(prefix, typ string, i int) map[string]any {
	return map[string]any{"id": fmt.Sprintf("%s-%d", prefix, i), "event_type": typ, "data": map[string]any{"n": i}}
}

// smallEventBytes is the JSON size of a typical backlog event.
func smallEventBytes() int {
	b, _ := json.Marshal(smallEvent("dead", "dead.event", 500000))
	return len(b)
}

// publishMany publishes n small events of type typ by /events/batch,
// backlogBatch events per call and backlogConcurrency calls at a time.
func publishMany(ctx context.Context, api, prefix, typ string, n int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: backlogConcurrency}}
	g, ctx := newGroup(ctx, backlogConcurrency)
	for i := 0; i < n && ctx.Err() == nil; i += backlogBatch {
		evs := make([]map[string]any, min(backlogBatch, n-i))
		for j := range evs {
			evs[j] = smallEvent(prefix, typ, i+j)
		}
		g.run(func() error {
			if err := callClient(ctx, client, api, "POST", "/events/batch", map[string]any{"events": evs}, nil); err != nil {
				return fmt.Errorf("publish %s events: %w", prefix, err)
			}
			return nil
		})
	}
	return g.wait()
}

// metric reads one sample of Herald's /metrics (name with its labels, as
// written there).
func metric(ctx context.Context, api, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", api+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
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

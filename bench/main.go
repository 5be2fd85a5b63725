// Command bench measures Herald end to end on this machine: it builds and
// starts the real herald binary on a fresh data directory, runs a loopback
// receiver, measures the receiver's ceiling with a plain Go client, then
// publishes events through Herald and reports publish rate, delivery rate,
// publish-to-arrival latency, herald's CPU per delivery (utime+stime from
// /proc) and its resident memory beside that ceiling.
//
//	go run ./bench                     # SQLite: 20,000 events by batch and by 32 clients, 200 and 2,000 events/s, then publishing alone
//	go run ./bench -events 20000 -subs 10
//	go run ./bench -latency-rates 200,1000,2000 -rate-seconds 10
//	go run ./bench -tags sqlite_cgo    # herald built on mattn/go-sqlite3 (cgo) instead of modernc.org/sqlite
//	go run ./bench -database-url postgres://postgres@127.0.0.1:5432/test?sslmode=disable -processes 2
//	go run ./bench -isolation -rate-seconds 10  # a healthy subscription next to bad ones (isolation.go)
//	go run ./bench -isolation -dead-pending 1000000 -rate-seconds 10  # the 1,000,000-backlog memory and WAL check
//	go run ./bench -soak 1h -rate 1000 -retention 1m  # steady load with retention: memory and database stay flat (soak.go)
//	go run ./bench -runs 3 -against ../other-checkout  # median and range of three runs each, alternating with another checkout's herald (compare.go)
//
// Every mode reads herald's CPU and memory from /proc, so bench runs on
// Linux. Ctrl-C ends a soak early and still prints its summary.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// settle is how long a run waits after its last arrival before reading
// herald's CPU, so the outcomes herald records after the last send (it
// gathers them up to 5 ms) count for that run and not the next.
const settle = 100 * time.Millisecond

type options struct {
	events       int
	subs         int
	batch        int
	clients      int
	publishAlone bool
	rate         int   // -isolation and -soak; 0 in the default run
	rates        []int // the default run's latency runs
	rateSeconds  int
	dbURL        string
	processes    int
	ceilingN     int
	keep         bool
	runs         int
	against      string // another checkout to measure alternately
	src          string // the checkout herald is built from; "" is this one
	tags         string
	isolation    bool
	deadPending  int
	slowPending  int
	slowAnswer   time.Duration
	soak         time.Duration
	retention    time.Duration
	sample       time.Duration
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second Ctrl-C ends bench at once
	runner := run
	switch {
	case o.isolation:
		runner = runIsolation
	case o.soak > 0:
		runner = runSoak
	}
	err = runner(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.IntVar(&o.events, "events", 20000, "events to publish in the throughput runs")
	fs.IntVar(&o.subs, "subs", 1, "subscriptions receiving every event")
	fs.IntVar(&o.batch, "batch", 500, "events per POST /events/batch")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients in the single-event run; 0 skips that run")
	fs.BoolVar(&o.publishAlone, "publish-alone", true, "end the default run with publishing measured alone: -events by /events/batch, then from -clients clients, to the subscriptions paused")
	rates := fs.String("latency-rates", "200,2000", "events per second of the default run's latency runs, one run (and row) each; none for no latency run")
	fs.IntVar(&o.rate, "rate", 0, "events per second to the healthy subscription: -isolation (default 200) and -soak (default 1000); the default run takes -latency-rates")
	fs.IntVar(&o.rateSeconds, "rate-seconds", 5, "length of each latency run")
	fs.StringVar(&o.dbURL, "database-url", "", "run herald on PostgreSQL instead of SQLite, each run in a fresh schema of that database (dropped after, unless -keep)")
	fs.IntVar(&o.processes, "processes", 1, "herald processes (PostgreSQL only for more than one)")
	fs.IntVar(&o.ceilingN, "ceiling-requests", 40000, "requests of the plain-client ceiling run")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directory")
	fs.IntVar(&o.runs, "runs", 1, "default run: repeat it this many times, each on a fresh herald, and print the median and range of each figure (compare.go)")
	fs.StringVar(&o.against, "against", "", "default run: also measure the herald of this other checkout (a directory), alternating with this one run by run")
	fs.StringVar(&o.tags, "tags", "", "build tags for go build of herald, e.g. sqlite_cgo (then built with CGO_ENABLED=1)")
	fs.BoolVar(&o.isolation, "isolation", false, "run the isolation benchmark instead: -rate events/s to a healthy subscription, alone and next to a dead and a slow one, with herald's memory and WAL against the backlog limits")
	fs.IntVar(&o.deadPending, "dead-pending", 100000, "isolation: deliveries pending for the dead subscription")
	fs.IntVar(&o.slowPending, "slow-pending", 1000, "isolation: deliveries pending for the slow subscription")
	fs.DurationVar(&o.slowAnswer, "slow-answer", 10*time.Second, "isolation: how long the slow endpoint takes to answer")
	fs.DurationVar(&o.soak, "soak", 0, "run the soak instead for this long: -rate events/s to one subscription with herald's --retention set to -retention")
	fs.DurationVar(&o.retention, "retention", time.Minute, "soak: herald --retention (finished deliveries, their attempts and events older than this are purged)")
	fs.DurationVar(&o.sample, "sample", 10*time.Second, "soak: interval between printed rows")
	fs.Parse(args)
	var err error
	if o.rates, err = parseRates(*rates); err != nil {
		return o, err
	}
	switch {
	case o.processes > 1 && o.dbURL == "":
		return o, errors.New("-processes > 1 needs -database-url (several processes share work only on PostgreSQL)")
	case o.isolation && o.soak > 0:
		return o, errors.New("-isolation and -soak are separate runs: pick one")
	case o.soak < 0 || o.sample <= 0 || o.retention < 0:
		return o, errors.New("-soak and -retention must not be negative, -sample must be positive")
	case o.runs < 1:
		return o, errors.New("-runs must be at least 1")
	case (o.runs > 1 || o.against != "") && (o.isolation || o.soak > 0):
		return o, errors.New("-runs and -against apply to the default run, not to -isolation or -soak")
	case o.rate < 0 || o.rateSeconds <= 0:
		return o, errors.New("-rate must not be negative, -rate-seconds must be positive")
	case o.rate > 0 && !o.isolation && o.soak == 0:
		return o, errors.New("-rate applies to -isolation and -soak; the default run takes -latency-rates")
	case o.rate == 0 && o.soak > 0:
		o.rate = 1000
	case o.rate == 0:
		o.rate = 200
	}
	return o, nil
}

// parseRates parses a comma-separated list of positive events/s.
func parseRates(s string) ([]int, error) {
	var out []int
	if s == "none" {
		return nil, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-latency-rates %q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// receiver counts arrivals and records, per event id, when it first arrived.
type receiver struct {
	mu      sync.Mutex
	arrived map[string]time.Time
	count   atomic.Int64
	last    atomic.Int64 // unix nanos of the latest arrival
	ln      net.Listener
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	now := time.Now()
	if r.URL.Path == "/hook" {
		var env struct {
			ID   string            `json:"id"`
			Data []json.RawMessage `json:"data"`
		}
		// Single events carry their id at the top; only the id is decoded.
		if i := bytes.Index(body, []byte(`"id":"`)); i >= 0 {
			rest := body[i+6:]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				env.ID = string(rest[:j])
			}
		}
		rc.mu.Lock()
		if _, ok := rc.arrived[env.ID]; !ok {
			rc.arrived[env.ID] = now
		}
		rc.mu.Unlock()
	}
	rc.count.Add(1)
	rc.last.Store(now.UnixNano())
	w.WriteHeader(200)
}

func (rc *receiver) reset() {
	rc.mu.Lock()
	rc.arrived = map[string]time.Time{}
	rc.mu.Unlock()
	rc.count.Store(0)
}

// report is what one pass of the default run measured.
type report struct {
	ceiling    float64       // requests/s of the plain client, best of three
	perRequest time.Duration // its CPU per request, client and receiver together
	build      string
	names      []string
	results    []result
}

func run(ctx context.Context, o options) error {
	rc, hookURL, err := startReceiver()
	if err != nil {
		return err
	}
	defer rc.ln.Close()
	if o.runs > 1 || o.against != "" {
		return compare(ctx, o, rc, hookURL)
	}
	r, err := measureAll(ctx, o, rc, hookURL)
	if err != nil {
		return err
	}
	fmt.Printf("ceiling: plain Go client, 64 connections: %.0f requests/s (best of 3 runs), %s of CPU per request (client and receiver together)\n",
		r.ceiling, micros(r.perRequest))
	rows := [][]string{{"run", "published/s", "delivered/s", "% of ceiling", "p50", "p99",
		"herald CPU/delivery", "herald cores", "RSS MiB", "peak RSS MiB"}}
	var verdicts []string
	for i, res := range r.results {
		rows = append(rows, res.row(r.names[i], r.ceiling))
		if res.publishOnly {
			verdicts = append(verdicts, fmt.Sprintf("%s: %.0f events/s, target at least %.0f: %s",
				r.names[i], res.published, res.publishTarget, passFail(res.published >= res.publishTarget)))
		}
		if res.rate == 0 {
			continue
		}
		if target, ok := latencyTarget(res.rate); ok {
			verdicts = append(verdicts, fmt.Sprintf("p99 at %d events/s: %s, target under %s: %s",
				res.rate, round(res.p99), target, passFail(res.p99 < target)))
		}
	}
	fmt.Printf("\nHerald on %s, %d process(es), 1 KiB events, loopback receiver, %d cores\n%s\n\n",
		storeName(o), o.processes, nproc(), r.build)
	printTable(rows)
	fmt.Println("\nherald CPU/delivery: utime+stime of the herald process(es) (/proc/<pid>/stat) over the run, per delivery;")
	fmt.Println("herald cores: that CPU over the run's wall time; RSS: VmRSS at the end of the run; peak RSS: VmHWM since herald started.")
	for _, v := range verdicts {
		fmt.Println(v)
	}
	return nil
}

// measureAll measures the ceiling, then a fresh herald built from o.src:
// the batch run, the concurrent clients' run and each latency run.
func measureAll(ctx context.Context, o options, rc *receiver, hookURL string) (report, error) {
	var r report
	// 1. Ceiling: a plain Go client posting 1 KiB bodies to the same receiver.
	// The best of three runs: a neighbour's burst on a shared machine only
	// ever lowers a run, and a lower ceiling would flatter Herald.
	for range 3 {
		c, per, err := measureCeiling(ctx, hookURL+"-ceiling", payload(1024), o.ceilingN, 64)
		if err != nil {
			return r, err
		}
		if c > r.ceiling {
			r.ceiling, r.perRequest = c, per
		}
	}

	// 2. Herald.
	f, err := launch(ctx, o, 0)
	if err != nil {
		return r, err
	}
	defer f.close()
	r.build = f.build
	var subIDs []string
	for range o.subs {
		var created struct {
			ID string `json:"id"`
		}
		if err := call(ctx, f.api(), "POST", "/webhooks", map[string]any{
			"url": hookURL, "events": []string{"*"},
			"delivery": map[string]any{"max_rps": 100000, "max_in_flight": 128},
		}, &created); err != nil {
			return r, err
		}
		subIDs = append(subIDs, created.ID)
	}
	add := func(name string, bench func() (result, error)) error {
		res, err := measure(f.procs, bench)
		if err != nil {
			return err
		}
		r.names, r.results = append(r.names, name), append(r.results, res)
		return nil
	}
	// 2a. Batch publish.
	if err := add(fmt.Sprintf("%d events, /events/batch x%d, %d sub(s)", o.events, o.batch, o.subs),
		func() (result, error) { return throughput(ctx, rc, f.procs, o, "batch") }); err != nil {
		return r, err
	}
	// 2b. Single events from concurrent clients.
	if o.clients > 0 {
		if err := add(fmt.Sprintf("%d events, %d clients x POST /events, %d sub(s)", o.events, o.clients, o.subs),
			func() (result, error) { return throughput(ctx, rc, f.procs, o, "single") }); err != nil {
			return r, err
		}
	}
	// 2c. Latency at each steady rate.
	for _, rate := range o.rates {
		err := add(fmt.Sprintf("latency at %d events/s for %ds", rate, o.rateSeconds), func() (result, error) {
			res, err := paced(ctx, rc, f.procs, o, rate)
			res.rate = rate
			return res, err
		})
		if err != nil {
			return r, fmt.Errorf("latency at %d events/s: %w", rate, err)
		}
	}
	// 2d. Publishing alone, last: the subscriptions paused, so each event's
	// deliveries are created and held, and the cores are not shared with
	// sending them.
	if o.publishAlone {
		for _, id := range subIDs {
			if err := call(ctx, f.api(), "PATCH", "/webhooks/"+id, map[string]any{"status": "paused"}, nil); err != nil {
				return r, err
			}
		}
		if err := add(fmt.Sprintf("%d events, /events/batch x%d, publish alone (sub(s) paused)", o.events, o.batch),
			func() (result, error) { return publishAlone(ctx, f.procs, o, "batch") }); err != nil {
			return r, err
		}
		if o.clients > 0 {
			if err := add(fmt.Sprintf("%d events, %d clients x POST /events, publish alone (sub(s) paused)", o.events, o.clients),
				func() (result, error) { return publishAlone(ctx, f.procs, o, "single") }); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// publishAlone publishes o.events events (in batches or as single events
// from o.clients clients) and measures only that: every one answered 202
// after its commit was flushed.
func publishAlone(ctx context.Context, procs []*proc, o options, mode string) (result, error) {
	start := time.Now()
	if err := publishAll(ctx, procs, o, mode, fmt.Sprintf("alone-%s-%d-", mode, time.Now().UnixNano()),
		make([]time.Time, o.events)); err != nil {
		return result{}, err
	}
	d := time.Since(start)
	target := 30000.0 // the publish targets, events/s
	if mode != "batch" {
		target = 5000
	}
	return result{published: float64(o.events) / d.Seconds(), publishOnly: true, publishTarget: target,
		deliveries: int64(o.events), elapsed: d}, nil
}

// latencyTarget is the p99 target at a publish rate, if it sets one.
func latencyTarget(rate int) (time.Duration, bool) {
	switch rate {
	case 200:
		return 10 * time.Millisecond, true
	case 2000:
		return 50 * time.Millisecond, true
	}
	return 0, false
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

func storeName(o options) string {
	if o.dbURL != "" {
		return "PostgreSQL"
	}
	return "SQLite"
}

// startReceiver serves a receiver on a loopback port and returns it with
// its hook URL.
func startReceiver() (*receiver, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("receiver: %w", err)
	}
	rc := &receiver{arrived: map[string]time.Time{}, ln: ln}
	go http.Serve(ln, rc)
	return rc, "http://" + ln.Addr().String() + "/hook", nil
}

type result struct {
	rate                 int // events/s of a latency run; 0 for the others
	published, delivered float64
	publishOnly          bool    // nothing delivered: CPU per delivery is per event published
	publishTarget        float64 // of a publishOnly run, events/s
	p50, p99             time.Duration
	deliveries           int64         // arrivals the run waited for
	elapsed              time.Duration // from the first publish to the last arrival
	// Set by measure:
	cpuPerDelivery time.Duration
	cores          float64
	rss, hwm       int64
}

func (r result) row(name string, ceiling float64) []string {
	pub := "-"
	if r.published > 0 {
		pub = fmt.Sprintf("%.0f", r.published)
	}
	if r.publishOnly {
		return []string{name, pub, "-", "-", "-", "-", micros(r.cpuPerDelivery) + " per event",
			fmt.Sprintf("%.2f", r.cores), mibs(r.rss), mibs(r.hwm)}
	}
	return []string{name, pub, fmt.Sprintf("%.0f", r.delivered), fmt.Sprintf("%.0f%%", 100*r.delivered/ceiling),
		round(r.p50), round(r.p99), micros(r.cpuPerDelivery), fmt.Sprintf("%.2f", r.cores), mibs(r.rss), mibs(r.hwm)}
}

// measure runs one benchmark between two readings of herald's CPU and
// memory and adds what they show to its result.
func measure(procs []*proc, bench func() (result, error)) (result, error) {
	before, err := readUsage(procs)
	if err != nil {
		return result{}, err
	}
	r, err := bench()
	if err != nil {
		return result{}, err
	}
	time.Sleep(settle)
	after, err := readUsage(procs)
	if err != nil {
		return result{}, err
	}
	r.cpuPerDelivery, r.cores = cost(before, after, r.deliveries, r.elapsed)
	r.rss, r.hwm = after.rss, after.hwm
	return r, nil
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func round(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

// throughput publishes o.events events (in batches or as single events from
// o.clients clients) and waits until every delivery has arrived.
func throughput(ctx context.Context, rc *receiver, procs []*proc, o options, mode string) (result, error) {
	rc.reset()
	prefix := fmt.Sprintf("%s-%d-", mode, time.Now().UnixNano())
	sent := make([]time.Time, o.events)
	start := time.Now()
	if err := publishAll(ctx, procs, o, mode, prefix, sent); err != nil {
		return result{}, err
	}
	pubDur := time.Since(start)
	want := int64(o.events * o.subs)
	if err := waitCount(ctx, rc, want, 5*time.Minute); err != nil {
		return result{}, err
	}
	total := time.Unix(0, rc.last.Load()).Sub(start)
	lat := latencies(rc, prefix, sent)
	return result{
		published: float64(o.events) / pubDur.Seconds(),
		delivered: float64(want) / total.Seconds(),
		p50:       pct(lat, 0.50), p99: pct(lat, 0.99),
		deliveries: want, elapsed: total,
	}, nil
}

// publishAll publishes o.events events in batches (mode "batch") or as
// single events from o.clients clients, noting each event's send time in
// sent.
func publishAll(ctx context.Context, procs []*proc, o options, mode, prefix string, sent []time.Time) error {
	if mode == "batch" {
		return publishBatches(ctx, procs, o, prefix, sent)
	}
	return publishSingles(ctx, procs, o, prefix, sent)
}

// publishBatches publishes o.events events by /events/batch, four batches
// at a time, noting each event's send time in sent.
func publishBatches(ctx context.Context, procs []*proc, o options, prefix string, sent []time.Time) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	g, ctx := newGroup(ctx, 4)
	for i := 0; i < o.events && ctx.Err() == nil; i += o.batch {
		n := min(o.batch, o.events-i)
		g.run(func() error {
			body := append(make([]byte, 0, n*(len(padding)+100)+16), `{"events":[`...)
			for k := range n {
				if k > 0 {
					body = append(body, ',')
				}
				body = appendEvent(body, prefix, i+k)
			}
			body = append(body, "]}"...)
			t := time.Now()
			for k := range n {
				sent[i+k] = t
			}
			return callBytes(ctx, client, procs[(i/o.batch)%len(procs)].url, "POST", "/events/batch", body, nil)
		})
	}
	return g.wait()
}

// group runs functions, at most n at a time, until the first fails; that
// error ends the group's context.
type group struct {
	wg     sync.WaitGroup
	sem    chan struct{}
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func newGroup(ctx context.Context, n int) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{sem: make(chan struct{}, n), cancel: cancel}, ctx
}

// run starts f once fewer than n functions run.
func (g *group) run(f func() error) {
	g.sem <- struct{}{}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() { <-g.sem }()
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err; g.cancel() })
		}
	}()
}

// wait waits for every function and returns the first error.
func (g *group) wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

// publishSingles publishes o.events events one POST /events each from
// o.clients concurrent clients, noting each event's send time in sent.
func publishSingles(ctx context.Context, procs []*proc, o options, prefix string, sent []time.Time) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var pubErr atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.events {
					return
				}
				body := appendEvent(make([]byte, 0, len(padding)+100), prefix, i)
				sent[i] = time.Now()
				if err := callBytes(ctx, client, procs[c%len(procs)].url, "POST", "/events", body, nil); err != nil {
					pubErr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := pubErr.Load().(error); err != nil {
		return err
	}
	return nil
}

// paced publishes single events at rate per second for o.rateSeconds and
// measures latency.
func paced(ctx context.Context, rc *receiver, procs []*proc, o options, rate int) (result, error) {
	rc.reset()
	n := rate * o.rateSeconds
	prefix := fmt.Sprintf("paced-%d-", time.Now().UnixNano())
	sent := make([]time.Time, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	var pubErr atomic.Value
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		sent[i] = time.Now()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := callBytes(ctx, client, procs[i%len(procs)].url, "POST", "/events", appendEvent(nil, prefix, i), nil); err != nil {
				pubErr.Store(err)
			}
		}(i)
	}
	wg.Wait()
	if err, _ := pubErr.Load().(error); err != nil {
		return result{}, err
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	want := int64(n * o.subs)
	if err := waitCount(ctx, rc, want, time.Minute); err != nil {
		return result{}, err
	}
	elapsed := time.Unix(0, rc.last.Load()).Sub(start)
	lat := latencies(rc, prefix, sent)
	return result{delivered: float64(want) / elapsed.Seconds(), p50: pct(lat, 0.5), p99: pct(lat, 0.99),
		deliveries: want, elapsed: elapsed}, nil
}

func latencies(rc *receiver, prefix string, sent []time.Time) []time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]time.Duration, 0, len(sent))
	for i, t := range sent {
		if at, ok := rc.arrived[fmt.Sprintf("%s%d", prefix, i)]; ok {
			out = append(out, at.Sub(t))
		}
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func waitCount(ctx context.Context, rc *receiver, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for rc.count.Load() < want {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d deliveries arrived within %s", rc.count.Load(), want, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// appendEvent appends event i as JSON: an id of prefix and i, type
// bench.event, and about 1 KiB of data. The load generator writes it by hand
// (prefix is plain ASCII), so that its own CPU goes to sending, not to
// encoding/json, on the cores it shares with Herald.
func appendEvent(dst []byte, prefix string, i int) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, prefix...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, `","event_type":"bench.event","data":{"pad":"`...)
	dst = append(dst, padding...)
	return append(dst, `"}}`...)
}

var padding = strings.Repeat("x", 900) // about 1 KiB per envelope

func payload(n int) []byte { return bytes.Repeat([]byte("x"), n) }

// measureCeiling posts n bodies with c concurrent clients and returns
// requests/s and this process's CPU per request (client and receiver).
func measureCeiling(ctx context.Context, url string, body []byte, n, c int) (float64, time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0, err := cpuTime(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
				if err != nil {
					return
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := cpuTime(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return float64(n) / elapsed.Seconds(), (cpu1 - cpu0) / time.Duration(n), nil
}

func printTable(rows [][]string) {
	w := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	for k, r := range rows {
		for i, c := range r {
			fmt.Printf("| %s%s ", c, strings.Repeat(" ", w[i]-utf8.RuneCountInString(c)))
		}
		fmt.Println("|")
		if k == 0 {
			for i := range r {
				fmt.Printf("|%s", strings.Repeat("-", w[i]+2))
			}
			fmt.Println("|")
		}
	}
}

func nproc() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

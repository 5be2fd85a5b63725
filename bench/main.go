// Command bench measures Herald end to end on this machine: it builds and
// starts the real herald binary on a fresh data directory, runs a loopback
// receiver, measures the receiver's ceiling with a plain Go client, then
// publishes events through Herald and reports publish rate, delivery rate and
// publish-to-arrival latency beside that ceiling.
//
//	go run ./bench                     # SQLite, defaults
//	go run ./bench -events 20000 -subs 10
//	go run ./bench -database-url postgres://postgres@127.0.0.1:5432/test?sslmode=disable -processes 2
//	go run ./bench -isolation -rate-seconds 10  # a healthy subscription next to bad ones (isolation.go)
package main

import (
	"bufio"
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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const adminKey = "hk_bench_admin_key"

type options struct {
	events      int
	subs        int
	batch       int
	clients     int
	rate        int
	rateSeconds int
	dbURL       string
	processes   int
	ceilingN    int
	keep        bool
	isolation   bool
	deadPending int
	slowPending int
	slowAnswer  time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.events, "events", 20000, "events to publish in the throughput runs")
	flag.IntVar(&o.subs, "subs", 1, "subscriptions receiving every event")
	flag.IntVar(&o.batch, "batch", 500, "events per POST /events/batch")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients in the single-event run")
	flag.IntVar(&o.rate, "rate", 200, "events per second in the latency run")
	flag.IntVar(&o.rateSeconds, "rate-seconds", 5, "length of the latency run")
	flag.StringVar(&o.dbURL, "database-url", "", "run herald on PostgreSQL instead of SQLite")
	flag.IntVar(&o.processes, "processes", 1, "herald processes (PostgreSQL only for more than one)")
	flag.IntVar(&o.ceilingN, "ceiling-requests", 40000, "requests of the plain-client ceiling run")
	flag.BoolVar(&o.keep, "keep", false, "keep the data directory")
	flag.BoolVar(&o.isolation, "isolation", false, "run the isolation benchmark instead: -rate events/s to a healthy subscription, alone and next to a dead and a slow one")
	flag.IntVar(&o.deadPending, "dead-pending", 100000, "isolation: deliveries pending for the dead subscription")
	flag.IntVar(&o.slowPending, "slow-pending", 1000, "isolation: deliveries pending for the slow subscription")
	flag.DurationVar(&o.slowAnswer, "slow-answer", 10*time.Second, "isolation: how long the slow endpoint takes to answer")
	flag.Parse()
	if o.processes > 1 && o.dbURL == "" {
		fmt.Fprintln(os.Stderr, "bench: -processes > 1 needs -database-url (several processes share work only on PostgreSQL)")
		os.Exit(2)
	}
	runner := run
	if o.isolation {
		runner = runIsolation
	}
	if err := runner(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
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

func run(o options) error {
	ctx := context.Background()
	rc := &receiver{arrived: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rc.ln = ln
	go http.Serve(ln, rc)
	hookURL := "http://" + ln.Addr().String() + "/hook"
	body1k := payload(1024)

	// 1. Ceiling: a plain Go client posting 1 KiB bodies to the same receiver.
	ceiling := measureCeiling(hookURL+"-ceiling", body1k, o.ceilingN, 64)
	fmt.Printf("ceiling: plain Go client, 64 connections: %.0f requests/s\n", ceiling)

	// 2. Herald.
	bin, dir, err := build()
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	var procs []*proc
	for i := range o.processes {
		p, err := startHerald(bin, filepath.Join(dir, "data"), o.dbURL, i)
		if err != nil {
			return err
		}
		defer p.stop()
		procs = append(procs, p)
	}
	api := procs[0].url
	for range o.subs {
		if err := call(api, "POST", "/webhooks", map[string]any{
			"url": hookURL, "events": []string{"*"},
			"delivery": map[string]any{"max_rps": 100000, "max_in_flight": 128},
		}, nil); err != nil {
			return err
		}
	}
	rows := [][]string{{"run", "published/s", "delivered/s", "% of ceiling", "p50", "p99"}}

	// 2a. Batch publish.
	r, err := throughput(ctx, rc, procs, o, "batch")
	if err != nil {
		return err
	}
	rows = append(rows, r.row(fmt.Sprintf("%d events, /events/batch x%d, %d sub(s)", o.events, o.batch, o.subs), ceiling))
	// 2b. Single events from concurrent clients.
	r, err = throughput(ctx, rc, procs, o, "single")
	if err != nil {
		return err
	}
	rows = append(rows, r.row(fmt.Sprintf("%d events, %d clients x POST /events, %d sub(s)", o.events, o.clients, o.subs), ceiling))
	// 2c. Latency at a steady rate.
	r, err = paced(ctx, rc, procs, o)
	if err != nil {
		return err
	}
	rows = append(rows, r.row(fmt.Sprintf("latency at %d events/s for %ds", o.rate, o.rateSeconds), ceiling))

	store := "SQLite"
	if o.dbURL != "" {
		store = "PostgreSQL"
	}
	fmt.Printf("\nHerald on %s, %d process(es), 1 KiB events, loopback receiver, %d cores\n\n", store, o.processes, nproc())
	printTable(rows)
	return nil
}

type result struct {
	published, delivered float64
	p50, p99             time.Duration
}

func (r result) row(name string, ceiling float64) []string {
	pub := "-"
	if r.published > 0 {
		pub = fmt.Sprintf("%.0f", r.published)
	}
	return []string{name, pub, fmt.Sprintf("%.0f", r.delivered), fmt.Sprintf("%.0f%%", 100*r.delivered/ceiling),
		r.p50.Round(10 * time.Microsecond).String(), r.p99.Round(10 * time.Microsecond).String()}
}

// throughput publishes o.events events (in batches or as single events from
// o.clients clients) and waits until every delivery has arrived.
func throughput(ctx context.Context, rc *receiver, procs []*proc, o options, mode string) (result, error) {
	rc.reset()
	prefix := fmt.Sprintf("%s-%d-", mode, time.Now().UnixNano())
	sent := make([]time.Time, o.events)
	start := time.Now()
	var pubErr atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	if mode == "batch" {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for i := 0; i < o.events; i += o.batch {
			n := min(o.batch, o.events-i)
			wg.Add(1)
			sem <- struct{}{}
			go func(i, n int) {
				defer wg.Done()
				defer func() { <-sem }()
				evs := make([]map[string]any, n)
				for k := range n {
					evs[k] = event(prefix, i+k)
				}
				t := time.Now()
				for k := range n {
					sent[i+k] = t
				}
				if err := callClient(client, procs[(i/o.batch)%len(procs)].url, "POST", "/events/batch", map[string]any{"events": evs}, nil); err != nil {
					pubErr.Store(err)
				}
			}(i, n)
		}
		wg.Wait()
	} else {
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
					sent[i] = time.Now()
					if err := callClient(client, procs[c%len(procs)].url, "POST", "/events", event(prefix, i), nil); err != nil {
						pubErr.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	if err, _ := pubErr.Load().(error); err != nil {
		return result{}, err
	}
	pubDur := time.Since(start)
	want := int64(o.events * o.subs)
	if err := waitCount(rc, want, 5*time.Minute); err != nil {
		return result{}, err
	}
	total := time.Unix(0, rc.last.Load()).Sub(start)
	lat := latencies(rc, prefix, sent)
	return result{
		published: float64(o.events) / pubDur.Seconds(),
		delivered: float64(want) / total.Seconds(),
		p50:       pct(lat, 0.50), p99: pct(lat, 0.99),
	}, nil
}

// paced publishes single events at o.rate per second and measures latency.
func paced(ctx context.Context, rc *receiver, procs []*proc, o options) (result, error) {
	rc.reset()
	n := o.rate * o.rateSeconds
	prefix := fmt.Sprintf("paced-%d-", time.Now().UnixNano())
	sent := make([]time.Time, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	interval := time.Second / time.Duration(o.rate)
	start := time.Now()
	var wg sync.WaitGroup
	var pubErr atomic.Value
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		sent[i] = time.Now()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := callClient(client, procs[i%len(procs)].url, "POST", "/events", event(prefix, i), nil); err != nil {
				pubErr.Store(err)
			}
		}(i)
	}
	wg.Wait()
	if err, _ := pubErr.Load().(error); err != nil {
		return result{}, err
	}
	if err := waitCount(rc, int64(n*o.subs), time.Minute); err != nil {
		return result{}, err
	}
	lat := latencies(rc, prefix, sent)
	return result{delivered: float64(n*o.subs) / time.Unix(0, rc.last.Load()).Sub(start).Seconds(), p50: pct(lat, 0.5), p99: pct(lat, 0.99)}, nil
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

func waitCount(rc *receiver, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for rc.count.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d deliveries arrived within %s", rc.count.Load(), want, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

func event(prefix string, i int) map[string]any {
	return map[string]any{"id": fmt.Sprintf("%s%d", prefix, i), "event_type": "bench.event", "data": map[string]any{"pad": padding}}
}

var padding = strings.Repeat("x", 900) // about 1 KiB per envelope

func payload(n int) []byte { return bytes.Repeat([]byte("x"), n) }

// measureCeiling posts n bodies with c concurrent clients and returns requests/s.
func measureCeiling(url string, body []byte, n, c int) float64 {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

type proc struct {
	cmd *exec.Cmd
	url string
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
	}
}

func build() (bin, dir string, err error) {
	dir, err = os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "herald")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/herald")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("build herald (run bench from the repository root): %w", err)
	}
	return bin, dir, nil
}

func startHerald(bin, dataDir, dbURL string, i int) (*proc, error) {
	args := []string{"serve", "--addr", "127.0.0.1:0", "--admin-key", adminKey, "--allow-private-networks", "--log-level", "warn", "--retention", "0"}
	if dbURL != "" {
		args = append(args, "--database-url", dbURL, "--master-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	} else {
		args = append(args, "--data-dir", dataDir)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if k := strings.Index(sc.Text(), "listening on "); k >= 0 {
			go io.Copy(io.Discard, out)
			return &proc{cmd: cmd, url: strings.TrimSpace(sc.Text()[k+len("listening on "):])}, nil
		}
	}
	return nil, errors.New("herald exited before listening")
}

func call(base, method, path string, body, out any) error {
	return callClient(http.DefaultClient, base, method, path, body, out)
}

func callClient(c *http.Client, base, method, path string, body, out any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func printTable(rows [][]string) {
	w := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	for k, r := range rows {
		for i, c := range r {
			fmt.Printf("| %-*s ", w[i], c)
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

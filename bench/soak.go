package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The soak (go run ./bench -soak 1h -rate 1000 -retention 1m) publishes
// -rate events/s of 1 KiB to one healthy subscription for the whole
// duration, herald purging with --retention, and prints a row every
// -sample: what was published and delivered, herald's CPU and resident
// memory, the database and WAL sizes, and the p99 latency of the deliveries
// that arrived in that interval. At the end it judges whether memory stayed
// flat and the database bounded, comparing the first and last thirds of
// the samples after a warm-up long enough for retention to start purging.

const (
	// flatFactor: the last third's average may be at most this many times
	// the first third's, for memory to count as flat and the database as
	// bounded.
	flatFactor = 1.5
	// soakInFlight bounds the publishes under way; a stalled herald then
	// holds the publisher back instead of piling up goroutines.
	soakInFlight = 256
	// drainWait is how long the soak waits, after publishing, for the
	// last deliveries.
	drainWait = time.Minute
)

// soakReceiver takes the soak's events. Each id is
// "soak-<seq>-<unix nanos of its publish>", so an arrival gives its latency
// without a table of send times, and a bitset of seqs tells duplicates.
type soakReceiver struct {
	mu       sync.Mutex
	interval []time.Duration // latencies of this interval's arrivals
	seen     []uint64        // bit seq: event seq arrived
	arrived  int64           // distinct events arrived
	dups     int64           // arrivals of an event already arrived
}

func (s *soakReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	now := time.Now()
	seq, sent, ok := soakID(body)
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for len(s.seen) <= seq/64 {
		s.seen = append(s.seen, 0)
	}
	if bit := uint64(1) << (seq % 64); s.seen[seq/64]&bit != 0 {
		s.dups++
	} else {
		s.seen[seq/64] |= bit
		s.arrived++
		s.interval = append(s.interval, now.Sub(time.Unix(0, sent)))
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// soakID finds the event id in a delivered envelope and parses it.
func soakID(body []byte) (seq int, sentNanos int64, ok bool) {
	i := bytes.Index(body, []byte(`"id":"soak-`))
	if i < 0 {
		return 0, 0, false
	}
	rest := body[i+len(`"id":"soak-`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(string(rest[:j]), "-")
	if !ok {
		return 0, 0, false
	}
	seq, err1 := strconv.Atoi(a)
	sentNanos, err2 := strconv.ParseInt(b, 10, 64)
	return seq, sentNanos, err1 == nil && err2 == nil && seq >= 0
}

// take returns the latencies of the arrivals since the last take, sorted,
// with the totals so far.
func (s *soakReceiver) take() (lat []time.Duration, arrived, dups int64) {
	s.mu.Lock()
	lat, s.interval = s.interval, nil
	arrived, dups = s.arrived, s.dups
	s.mu.Unlock()
	slices.Sort(lat)
	return lat, arrived, dups
}

func (s *soakReceiver) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived
}

// soakPublisher publishes single events at a steady rate.
type soakPublisher struct {
	api       string
	rate      int
	client    *http.Client
	published atomic.Int64 // answered 2xx
	failed    atomic.Int64
	lastErr   atomic.Value // error
	firstID   atomic.Value // string: the id of event 0 once published
}

// run publishes until ctx ends and returns when every publish is answered.
func (p *soakPublisher) run(ctx context.Context) {
	interval := time.Second / time.Duration(p.rate)
	sem := make(chan struct{}, soakInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for seq := 0; ; seq++ {
		if sleep(ctx, time.Until(start.Add(time.Duration(seq)*interval))) != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.publish(seq)
		}()
	}
	wg.Wait()
}

// publish sends event seq, its id stamped with the time just before.
func (p *soakPublisher) publish(seq int) {
	id := fmt.Sprintf("soak-%d-%d", seq, time.Now().UnixNano())
	ev := map[string]any{"id": id, "event_type": "soak.tick", "data": map[string]any{"pad": padding}}
	// Not the run's context: a publish under way when the run ends finishes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := callClient(ctx, p.client, p.api, "POST", "/events", ev, nil); err != nil {
		p.failed.Add(1)
		p.lastErr.Store(err)
		return
	}
	p.published.Add(1)
	if seq == 0 {
		p.firstID.Store(id)
	}
}

// soakSample is one printed row.
type soakSample struct {
	elapsed            time.Duration
	published, failed  int64
	delivered, dups    int64
	cores              float64
	rss, hwm           int64
	files              storeFiles
	p99                time.Duration
	arrivalsInInterval int
}

func runSoak(ctx context.Context, o options) error {
	rc := &soakReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	defer ln.Close()
	go http.Serve(ln, rc)

	f, err := launch(ctx, o, o.retention)
	if err != nil {
		return err
	}
	defer f.close()
	if err := call(ctx, f.api(), "POST", "/webhooks", map[string]any{
		"url": "http://" + ln.Addr().String() + "/hook", "events": []string{"soak.*"},
		"delivery": map[string]any{"max_rps": 100000, "max_in_flight": 128},
	}, nil); err != nil {
		return err
	}
	fmt.Printf("Soak: %d events/s of 1 KiB by POST /events to one subscription for %s, herald --retention %s, a row every %s\n",
		o.rate, o.soak, o.retention, o.sample)
	fmt.Printf("Herald on %s, %d process(es), loopback receiver, %d cores\n%s\n\n", storeName(o), o.processes, nproc(), f.build)

	pub := &soakPublisher{api: f.api(), rate: o.rate,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: soakInFlight}}}
	samples, first, prev, err := soakLoop(ctx, o, f, rc, pub)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		fmt.Println("interrupted: what follows covers the run so far")
	}
	return soakSummary(context.WithoutCancel(ctx), o, f, rc, pub, samples, first, prev)
}

// soakLoop publishes for o.soak (or until ctx ends) and prints a row every
// o.sample; it returns the rows, herald's usage at the start and at the
// last row.
func soakLoop(ctx context.Context, o options, f *fleet, rc *soakReceiver, pub *soakPublisher) (samples []soakSample, first, prev usage, err error) {
	first, err = readUsage(f.procs)
	if err != nil {
		return nil, first, prev, err
	}
	pubCtx, stop := context.WithTimeout(ctx, o.soak)
	defer stop()
	done := make(chan struct{})
	go func() { pub.run(pubCtx); close(done) }()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	printSoakRow(soakHeader())
	prev = first
	for {
		select {
		case <-done:
			return samples, first, prev, nil
		case <-tick.C:
			s, u, err := takeSoakSample(f, rc, pub, first.at, prev)
			if err != nil {
				stop()
				<-done
				return nil, first, prev, err
			}
			prev = u
			samples = append(samples, s)
			printSoakRow(s.cells(""))
		}
	}
}

func takeSoakSample(f *fleet, rc *soakReceiver, pub *soakPublisher, start time.Time, prev usage) (soakSample, usage, error) {
	u, err := readUsage(f.procs)
	if err != nil {
		return soakSample{}, u, err
	}
	var files storeFiles
	if f.dataDir != "" {
		if files, err = readStoreFiles(f.dataDir); err != nil {
			return soakSample{}, u, err
		}
	}
	lat, arrived, dups := rc.take()
	_, cores := cost(prev, u, 0, u.at.Sub(prev.at))
	return soakSample{
		elapsed: u.at.Sub(start), published: pub.published.Load(), failed: pub.failed.Load(),
		delivered: arrived, dups: dups, cores: cores, rss: u.rss, hwm: u.hwm, files: files,
		p99: pct(lat, 0.99), arrivalsInInterval: len(lat),
	}, u, nil
}

func soakHeader() []string {
	return []string{"elapsed", "published", "delivered", "pub errors", "herald cores", "RSS MiB", "peak MiB",
		"db MiB", "WAL MiB", "p99 interval"}
}

func (s soakSample) cells(label string) []string {
	if label == "" {
		label = s.elapsed.Round(time.Second).String()
	}
	p99 := "-"
	if s.arrivalsInInterval > 0 {
		p99 = round(s.p99)
	}
	return []string{label, strconv.FormatInt(s.published, 10), strconv.FormatInt(s.delivered, 10),
		strconv.FormatInt(s.failed, 10), fmt.Sprintf("%.2f", s.cores), mibs(s.rss), mibs(s.hwm),
		mibs(s.files.db), mibs(s.files.wal), p99}
}

// printSoakRow prints one row as it comes, in fixed-width columns.
func printSoakRow(cells []string) {
	for i, c := range cells {
		if i == 0 {
			fmt.Printf("%-8s", c)
			continue
		}
		fmt.Printf(" %12s", c)
	}
	fmt.Println()
}

// soakSummary waits for the last deliveries, prints a last row and the
// totals, and judges memory and the database.
func soakSummary(ctx context.Context, o options, f *fleet, rc *soakReceiver, pub *soakPublisher,
	samples []soakSample, first, prev usage) error {
	published := pub.published.Load()
	deadline := time.Now().Add(drainWait)
	for rc.count() < published && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	end, last, err := takeSoakSample(f, rc, pub, first.at, prev)
	if err != nil {
		return err
	}
	printSoakRow(end.cells("end"))
	perDelivery, cores := cost(first, last, end.delivered, last.at.Sub(first.at))
	fmt.Printf("\npublished %d events (%d publish errors), %d delivered by %s (and %d duplicate requests)",
		published, end.failed, end.delivered, end.elapsed.Round(time.Second), end.dups)
	if missing := published - end.delivered; missing > 0 {
		fmt.Printf(", %d NOT delivered within %s", missing, drainWait)
	}
	fmt.Println()
	if err, _ := pub.lastErr.Load().(error); err != nil {
		fmt.Printf("last publish error: %v\n", err)
	}
	fmt.Printf("herald CPU: %s per delivery, %.2f cores on average over the run\n", micros(perDelivery), cores)
	if worst := worstP99(samples); worst > 0 {
		fmt.Printf("p99 of the intervals: median %s, worst %s\n", round(medianP99(samples)), round(worst))
	}
	if err := checkRetention(ctx, o, f, pub); err != nil {
		return err
	}

	warm := soakWarmup(o)
	after := slices.DeleteFunc(slices.Clone(samples), func(s soakSample) bool { return s.elapsed < warm })
	if len(after) < 3 {
		fmt.Printf("too short to judge memory and database: rows after the warm-up of %s: %d, 3 needed\n", warm, len(after))
		return nil
	}
	k := len(after) / 3
	head, tail := after[:k], after[len(after)-k:]
	rss := func(s soakSample) int64 { return s.rss }
	fmt.Printf("memory flat: %s — RSS averaged %s MiB in the first third of the rows after a %s warm-up and %s MiB in the last (%.2fx, limit %.1fx); peak RSS (VmHWM) %s MiB\n",
		flatVerdict(head, tail, rss), mibs(average(head, rss)), warm, mibs(average(tail, rss)),
		ratio(head, tail, rss), flatFactor, mibs(end.hwm))
	if f.dataDir == "" {
		fmt.Println("database bounded: not judged on PostgreSQL")
		return nil
	}
	size := func(s soakSample) int64 { return s.files.db + s.files.wal }
	largest := slices.MaxFunc(samples, func(a, b soakSample) int { return cmp.Compare(size(a), size(b)) })
	fmt.Printf("database bounded: %s — herald.db + WAL averaged %s MiB in the first third and %s MiB in the last (%.2fx, limit %.1fx); largest %s MiB (WAL %s MiB)\n",
		flatVerdict(head, tail, size), mibs(average(head, size)), mibs(average(tail, size)),
		ratio(head, tail, size), flatFactor, mibs(size(largest)), mibs(largest.files.wal))
	if o.retention == 0 {
		fmt.Println("(with --retention 0 nothing is purged: the database grows by design)")
	}
	return nil
}

// soakWarmup is the part of the soak left out of the flatness verdicts:
// at least a minute and twice the retention (purging starts only once the
// first events are older than the retention), at most half the soak.
func soakWarmup(o options) time.Duration {
	return min(o.soak/2, max(time.Minute, 2*o.retention))
}

// checkRetention asks herald whether the soak's first event is gone.
func checkRetention(ctx context.Context, o options, f *fleet, pub *soakPublisher) error {
	id, _ := pub.firstID.Load().(string)
	if o.retention == 0 || id == "" {
		return nil
	}
	code, err := status(ctx, f.api(), "/events/"+id)
	if err != nil {
		return err
	}
	switch code {
	case http.StatusNotFound:
		fmt.Println("retention: the first event is purged (GET /events/<id> answers 404)")
	case http.StatusOK:
		fmt.Println("retention: the first event is still stored (GET /events/<id> answers 200)")
	default:
		fmt.Printf("retention: GET /events/<first id> answers %d\n", code)
	}
	return nil
}

func flatVerdict(head, tail []soakSample, v func(soakSample) int64) string {
	return passFail(ratio(head, tail, v) <= flatFactor)
}

func ratio(head, tail []soakSample, v func(soakSample) int64) float64 {
	return float64(average(tail, v)) / float64(max(average(head, v), 1))
}

func average(ss []soakSample, v func(soakSample) int64) int64 {
	var sum int64
	for _, s := range ss {
		sum += v(s)
	}
	return sum / int64(max(len(ss), 1))
}

func worstP99(ss []soakSample) time.Duration {
	var worst time.Duration
	for _, s := range ss {
		worst = max(worst, s.p99)
	}
	return worst
}

func medianP99(ss []soakSample) time.Duration {
	var ps []time.Duration
	for _, s := range ss {
		if s.arrivalsInInterval > 0 {
			ps = append(ps, s.p99)
		}
	}
	slices.Sort(ps)
	return pct(ps, 0.5)
}

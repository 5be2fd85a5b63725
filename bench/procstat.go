package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (`getconf CLK_TCK`). The kernel fixes it at 100 for user space on every
// architecture Go builds herald for, whatever its internal HZ.
const clockTicks = 100

const mib = 1 << 20

// usage is one reading of the herald processes' CPU and memory, summed over
// the processes.
type usage struct {
	at       time.Time
	cpu      time.Duration // utime + stime since each process started
	rss, hwm int64         // VmRSS and VmHWM (peak resident), bytes
}

// readUsage reads /proc for every process in procs.
func readUsage(procs []*proc) (usage, error) {
	u := usage{at: time.Now()}
	for _, p := range procs {
		pid := p.cmd.Process.Pid
		cpu, err := cpuTime(pid)
		if err != nil {
			return usage{}, err
		}
		rss, hwm, err := memory(pid)
		if err != nil {
			return usage{}, err
		}
		u.cpu += cpu
		u.rss += rss
		u.hwm += hwm
	}
	return u, nil
}

// cost is the CPU spent between two readings per delivery made between them,
// and the cores that CPU kept busy over wall.
func cost(before, after usage, deliveries int64, wall time.Duration) (perDelivery time.Duration, cores float64) {
	spent := after.cpu - before.cpu
	if deliveries > 0 {
		perDelivery = spent / time.Duration(deliveries)
	}
	if wall > 0 {
		cores = spent.Seconds() / wall.Seconds()
	}
	return perDelivery, cores
}

// cpuTime returns a process's user plus system CPU time.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	// "pid (comm) state ppid …": comm may hold spaces, so split after its ')'.
	s := string(b)
	k := strings.LastIndexByte(s, ')')
	if k < 0 {
		return 0, fmt.Errorf("cpu time of %d: malformed stat %q", pid, s)
	}
	f := strings.Fields(s[k+1:])
	// Fields 14 (utime) and 15 (stime) of proc(5); f[0] is field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of %d: short stat %q", pid, s)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// memory returns a process's resident set (VmRSS) and its peak (VmHWM).
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("memory of %d: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			rss = kib << 10
		} else {
			hwm = kib << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("memory of %d: no VmRSS in /proc status", pid)
	}
	return rss, hwm, nil
}

// storeFiles are the sizes of the SQLite database and its WAL
// (<data-dir>/herald.db and herald.db-wal, as cmd/herald opens them).
type storeFiles struct{ db, wal int64 }

func readStoreFiles(dataDir string) (storeFiles, error) {
	db, err := fileSize(filepath.Join(dataDir, "herald.db"))
	if err != nil {
		return storeFiles{}, err
	}
	wal, err := fileSize(filepath.Join(dataDir, "herald.db-wal"))
	if err != nil {
		return storeFiles{}, err
	}
	return storeFiles{db: db, wal: wal}, nil
}

// fileSize is a file's size, 0 when it does not exist (yet).
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return fi.Size(), nil
}

func mibs(n int64) string { return fmt.Sprintf("%.1f", float64(n)/mib) }

// peaks are the largest values a watcher saw in one phase of a run.
type peaks struct {
	rss, wal, db int64
	samples      int
}

// watcher samples herald's resident memory and store files every period
// and keeps the peaks of each named phase. dataDir is "" on PostgreSQL.
type watcher struct {
	procs   []*proc
	dataDir string
	cancel  context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	phase string
	peak  map[string]peaks
	err   error
}

// watch starts a watcher in phase; stop it with stop.
func watch(ctx context.Context, procs []*proc, dataDir, phase string, period time.Duration) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{procs: procs, dataDir: dataDir, cancel: cancel, done: make(chan struct{}),
		phase: phase, peak: map[string]peaks{}}
	go w.loop(ctx, period)
	return w
}

func (w *watcher) loop(ctx context.Context, period time.Duration) {
	defer close(w.done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		w.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *watcher) sample() {
	u, err := readUsage(w.procs)
	var f storeFiles
	if err == nil && w.dataDir != "" {
		f, err = readStoreFiles(w.dataDir)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.err == nil {
			w.err = err
		}
		return
	}
	p := w.peak[w.phase]
	p.rss, p.wal, p.db = max(p.rss, u.rss), max(p.wal, f.wal), max(p.db, f.db)
	p.samples++
	w.peak[w.phase] = p
}

// enter samples once more in the current phase and starts the next.
func (w *watcher) enter(phase string) {
	w.sample()
	w.mu.Lock()
	w.phase = phase
	w.mu.Unlock()
}

// stop takes a last sample and stops sampling; it returns the first error
// a sample met, if any.
func (w *watcher) stop() error {
	w.sample()
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return fmt.Errorf("watch herald: %w", w.err)
	}
	return nil
}

func (w *watcher) peaks(phase string) peaks {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak[phase]
}

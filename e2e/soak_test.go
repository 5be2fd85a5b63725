package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoakRetention is the CI-length soak: a steady publish rate for six
// seconds with --retention 2s, so the purger sweeps every second while
// events keep coming. Every event arrives exactly once; the oldest events are
// purged while publishing goes on; memory and the database stay bounded.
// `go run ./bench -soak 1h` is the long run.
func TestSoakRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not in -short")
	}
	t.Parallel()
	rc := newReceiver(t, nil)
	h := startHerald(t, "", "--retention", "2s")
	h.createSub(map[string]any{"url": rc.URL(), "events": []string{"*"}})

	const (
		rounds   = 60 // one every 100 ms: six seconds at 200 events/s
		perRound = 20
	)
	pad := strings.Repeat("x", 1000)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var rss []int // KiB, sampled once a second
	for r := range rounds {
		<-tick.C
		events := make([]map[string]any, perRound)
		for i := range events {
			events[i] = map[string]any{"id": fmt.Sprintf("soak-%d-%d", r, i), "event_type": "soak.tick",
				"data": map[string]any{"pad": pad}}
		}
		h.mustDo(202, "POST", "/events/batch", map[string]any{"events": events}, nil)
		if r%10 == 0 {
			rss = append(rss, residentKiB(t, h.cmd.Process.Pid))
		}
	}
	total := rounds * perRound
	got := rc.waitFor(t, 30*time.Second, "every event", func(got []received) bool { return len(got) >= total })
	if len(got) != total {
		t.Errorf("%d requests for %d events: some arrived twice", len(got), total)
	}

	// The first events are over two seconds old and delivered: swept.
	deadline := time.Now().Add(10 * time.Second)
	for h.do("GET", "/events/soak-0-0", nil, nil) != 404 {
		if time.Now().After(deadline) {
			t.Fatalf("the first event is still stored 10s after the run\n%s", h.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var page struct {
		Data []any `json:"data"`
	}
	h.mustDo(200, "GET", "/events?limit=1000", nil, &page)
	if len(page.Data) >= total {
		t.Errorf("%d events still listed of %d: retention deleted nothing", len(page.Data), total)
	}

	rss = append(rss, residentKiB(t, h.cmd.Process.Pid))
	var db int64
	for _, name := range []string{"herald.db", "herald.db-wal"} {
		if fi, err := os.Stat(filepath.Join(h.DataDir, name)); err == nil {
			db += fi.Size()
		}
	}
	t.Logf("resident KiB each second: %v; database and WAL: %d KiB", rss, db>>10)
	if peak := rss[len(rss)-1]; peak > 256<<10 {
		t.Errorf("resident memory %d KiB, over 256 MiB", peak)
	}
	if db > 64<<20 {
		t.Errorf("database and WAL %d bytes, over 64 MiB for %d events", db, total)
	}
}

// residentKiB reads a process's resident set size from /proc.
func residentKiB(tb testing.TB, pid int) int {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", v, err)
			}
			return n
		}
	}
	tb.Fatal("no VmRSS in /proc status")
	return 0
}

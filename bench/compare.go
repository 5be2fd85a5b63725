package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// compare runs the default run -runs times for this checkout and, with
// -against, as often for the other checkout's herald, alternating run by
// run, so that both meet the same minutes of a machine whose speed drifts.
// It prints, for each row, the median and the range of each figure, and
// herald's CPU per delivery divided by the ceiling's CPU per request of the
// same pass: that ratio follows the machine's speed out of the comparison.
//
//	go run ./bench -runs 3 -against ../herald-main
func compare(ctx context.Context, o options, rc *receiver, hookURL string) error {
	srcs, labels := []string{""}, []string{"this checkout"}
	if o.against != "" {
		srcs, labels = append(srcs, o.against), append(labels, o.against)
	}
	all := make([][]report, len(srcs))
	for run := range o.runs {
		for i, src := range srcs {
			oo := o
			oo.src = src
			r, err := measureAll(ctx, oo, rc, hookURL)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", labels[i], run+1, err)
			}
			fmt.Fprintf(os.Stderr, "bench: run %d of %d done for %s\n", run+1, o.runs, labels[i])
			all[i] = append(all[i], r)
		}
	}

	rows := [][]string{{"run", "herald", "published/s", "delivered/s", "% of ceiling", "p99", "herald CPU/delivery",
		"CPU/delivery ÷ ceiling's CPU/request"}}
	for i := range srcs {
		var ceilings, per []float64
		for _, r := range all[i] {
			ceilings, per = append(ceilings, r.ceiling), append(per, float64(r.perRequest))
		}
		rows = append(rows, []string{"ceiling: plain client, best of 3", labels[i], "", spread(ceilings, count), "", "",
			spread(per, micro), ""})
	}
	for k, name := range all[0][0].names {
		for i := range srcs {
			var published, delivered, share, p99, cpu, ratio []float64
			for _, r := range all[i] {
				res := r.results[k]
				published = append(published, res.published)
				delivered = append(delivered, res.delivered)
				share = append(share, 100*res.delivered/r.ceiling)
				p99 = append(p99, float64(res.p99))
				cpu = append(cpu, float64(res.cpuPerDelivery))
				ratio = append(ratio, float64(res.cpuPerDelivery)/float64(r.perRequest))
			}
			pub := "-"
			if published[0] > 0 {
				pub = spread(published, count)
			}
			if all[i][0].results[k].publishOnly {
				rows = append(rows, []string{name, labels[i], pub, "-", "-", "-", spread(cpu, micro) + " per event",
					spread(ratio, factor)})
				continue
			}
			rows = append(rows, []string{name, labels[i], pub, spread(delivered, count), spread(share, percent),
				spread(p99, duration), spread(cpu, micro), spread(ratio, factor)})
		}
	}
	fmt.Printf("\nHerald on %s, %d process(es), 1 KiB events, loopback receiver, %d cores, %d run(s) each\n%s\n\n",
		storeName(o), o.processes, nproc(), o.runs, all[0][0].build)
	printTable(rows)
	fmt.Println("\nEach cell: the median of the runs, and their range in brackets. Each run starts a fresh herald;")
	fmt.Println("with -against the checkouts alternate run by run. CPU/delivery ÷ the ceiling's CPU/request compares")
	fmt.Println("herald with the plain client and receiver measured in the same pass, whatever the machine's speed then.")
	return nil
}

// Formats of spread.

func count(v float64) string    { return fmt.Sprintf("%.0f", v) }
func percent(v float64) string  { return fmt.Sprintf("%.0f%%", v) }
func factor(v float64) string   { return fmt.Sprintf("%.2f", v) }
func micro(v float64) string    { return micros(time.Duration(v)) }
func duration(v float64) string { return round(time.Duration(v)) }

// spread is "median [min–max]" of vs in format f, or the one value alone.
func spread(vs []float64, f func(float64) string) string {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	if n == 1 {
		return f(med)
	}
	return fmt.Sprintf("%s [%s–%s]", f(med), f(s[0]), f(s[n-1]))
}

package dispatch

import (
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

func TestNextSleep(t *testing.T) {
	t.Parallel()
	p := herald.RetryPolicy{Base: 5 * time.Second, Cap: 30 * time.Minute}
	tests := []struct {
		name string
		p    herald.RetryPolicy
		prev time.Duration
		rnd  float64
		want time.Duration
	}{
		{"first, low", p, 0, 0, 5 * time.Second},
		{"first, high", p, 0, 1, 15 * time.Second},
		{"first, middle", p, 0, 0.5, 10 * time.Second},
		{"after 10s, low", p, 10 * time.Second, 0, 5 * time.Second},
		{"after 10s, high", p, 10 * time.Second, 1, 30 * time.Second},
		{"after 10s, quarter", p, 10 * time.Second, 0.25, 11250 * time.Millisecond},
		{"capped", p, 20 * time.Minute, 1, 30 * time.Minute},
		{"prev below base", p, time.Second, 1, 3 * time.Second},
		{"rnd out of range", p, 0, 7, 15 * time.Second},
		{"no cap", herald.RetryPolicy{Base: time.Second}, time.Hour, 1, 3 * time.Hour},
		{"zero base", herald.RetryPolicy{Cap: time.Minute}, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := NextSleep(tt.p, tt.prev, tt.rnd); got != tt.want {
				t.Errorf("NextSleep(%+v, %s, %v) = %s, want %s", tt.p, tt.prev, tt.rnd, got, tt.want)
			}
		})
	}
}

// TestNextSleepBounds checks the jitter's range over a sequence of sleeps:
// each between base and min(cap, 3 × previous).
func TestNextSleepBounds(t *testing.T) {
	t.Parallel()
	p := herald.RetryPolicy{Base: 100 * time.Millisecond, Cap: 10 * time.Second}
	prev := time.Duration(0)
	for i := range 200 {
		rnd := float64(i%10) / 10
		s := NextSleep(p, prev, rnd)
		upper := min(p.Cap, 3*max(prev, p.Base))
		if s < p.Base || s > upper {
			t.Fatalf("sleep %d = %s, want within [%s, %s]", i, s, p.Base, upper)
		}
		prev = s
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"absent", "", 0, false},
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"spaces", " 7 ", 7 * time.Second, true},
		{"huge", "99999999999999999999999", maxRetryAfter, true},
		{"negative", "-5", 0, false},
		{"fraction", "1.5", 0, false},
		{"garbage", "soon", 0, false},
		{"http date", "Thu, 02 Jan 2025 03:05:05 GMT", time.Minute, true},
		{"past date", "Thu, 02 Jan 2025 03:00:00 GMT", 0, true},
		{"rfc850 date", "Thursday, 02-Jan-25 03:04:15 GMT", 10 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			got, ok := RetryAfter(h, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", tt.value, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestReschedule(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	p := herald.RetryPolicy{MaxAttempts: 3, Window: time.Hour, Base: 5 * time.Second, Cap: 30 * time.Minute}
	tests := []struct {
		name     string
		p        herald.RetryPolicy
		d        herald.Delivery
		attempts int
		ra       time.Duration
		raOK     bool
		want     schedule
	}{
		{"first failure", p, herald.Delivery{}, 1, 0, false,
			schedule{next: now.Add(10 * time.Second), sleep: 10 * time.Second}},
		{"last attempt", p, herald.Delivery{Attempts: 2, FirstAttemptAt: now}, 3, 0, false, schedule{final: true}},
		{"unlimited attempts", herald.RetryPolicy{Base: time.Second, Cap: time.Second}, herald.Delivery{Attempts: 500}, 501, 0, false,
			schedule{next: now.Add(time.Second), sleep: time.Second}},
		{"window passed", p, herald.Delivery{Attempts: 1, FirstAttemptAt: now.Add(-59 * time.Minute), LastSleep: time.Minute}, 2, 0, false,
			schedule{final: true}},
		{"window not passed", p, herald.Delivery{Attempts: 1, FirstAttemptAt: now.Add(-30 * time.Minute), LastSleep: time.Minute}, 2, 0, false,
			schedule{next: now.Add(92500 * time.Millisecond), sleep: 92500 * time.Millisecond}},
		{"due within the window's last second", p, herald.Delivery{Attempts: 1, FirstAttemptAt: now.Add(-59*time.Minute - 12*time.Second), LastSleep: 30 * time.Second}, 2, 0, false,
			schedule{final: true}}, // next at 59:59.5 of a 1h window
		{"short window slack", herald.RetryPolicy{Window: time.Second, Base: 100 * time.Millisecond, Cap: 100 * time.Millisecond},
			herald.Delivery{Attempts: 1, FirstAttemptAt: now.Add(-850 * time.Millisecond)}, 2, 0, false,
			schedule{final: true}}, // next at 950ms of a 1s window, past 900ms
		{"retry-after replaces jitter", p, herald.Delivery{}, 1, 42 * time.Second, true,
			schedule{next: now.Add(42 * time.Second), sleep: 42 * time.Second}},
		{"retry-after capped", herald.RetryPolicy{Base: time.Second, Cap: time.Minute}, herald.Delivery{}, 1, time.Hour, true,
			schedule{next: now.Add(time.Minute), sleep: time.Minute}},
		{"retry-after beyond window", p, herald.Delivery{FirstAttemptAt: now.Add(-50 * time.Minute), Attempts: 1}, 2, 20 * time.Minute, true,
			schedule{final: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := reschedule(tt.p, tt.d, tt.attempts, now, now, tt.ra, tt.raOK, 0.5)
			if got != tt.want {
				t.Errorf("reschedule = %+v, want %+v", got, tt.want)
			}
		})
	}
}

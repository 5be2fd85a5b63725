package dispatch

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

// NextSleep returns how long to wait before the next attempt by decorrelated
// jitter (CONTRACT.md §5.4): min(cap, base + rnd × (3 × prev − base)), that
// is uniform between base and three times the previous sleep for rnd drawn
// uniformly from [0, 1). A zero or negative prev (no sleep yet) counts as
// base. A Cap of zero or less means no cap; the result is never negative.
func NextSleep(p herald.RetryPolicy, prev time.Duration, rnd float64) time.Duration {
	base := max(p.Base, 0)
	if prev <= 0 {
		prev = base
	}
	rnd = min(max(rnd, 0), 1)
	s := float64(base) + rnd*(3*float64(prev)-float64(base))
	limit := float64(math.MaxInt64)
	if p.Cap > 0 {
		limit = float64(p.Cap)
	}
	switch {
	case s >= limit:
		if p.Cap > 0 {
			return p.Cap
		}
		return time.Duration(math.MaxInt64)
	case s <= 0:
		return 0
	}
	return time.Duration(s)
}

// maxRetryAfter bounds what RetryAfter returns, so that adding it to a time
// cannot overflow; callers cap it further at the retry policy's Cap.
const maxRetryAfter = 365 * 24 * time.Hour

// RetryAfter parses the Retry-After header of h: a number of seconds, or an
// HTTP date (taken relative to now; a date in the past means 0). It reports
// false when the header is absent or malformed.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if allDigits(v) {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true // only a range error is possible
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	return min(max(d, 0), maxRetryAfter), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// honoursRetryAfter reports whether a response status carries a Retry-After
// that Herald obeys (CONTRACT.md §5.4).
func honoursRetryAfter(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// schedule is what happens to a delivery after a failed attempt.
type schedule struct {
	final bool          // failed for good
	next  time.Time     // when to try again, unless final
	sleep time.Duration // the sleep before next, kept as LastSleep
}

// windowSlack is how much earlier than the end of the retry window the last
// attempt must be due: an attempt starts a little after it falls due (the
// lease, the lane's limits), and no attempt may start once the window has
// passed. It is a tenth of the window, at most one second.
func windowSlack(window time.Duration) time.Duration {
	return min(window/10, time.Second)
}

// reschedule decides the fate of delivery d after its failed attempt that
// started at started (its attempt number attempts, counting this one) and
// ended at now. A Retry-After (retryAfter, with ok) replaces the jitter sleep,
// capped at the policy's Cap. The delivery fails for good after MaxAttempts
// attempts (0: no limit) or when the next attempt would fall after
// FirstAttemptAt + Window (0: no window), less windowSlack.
func reschedule(p herald.RetryPolicy, d herald.Delivery, attempts int, started, now time.Time,
	retryAfter time.Duration, ok bool, rnd float64) schedule {
	if p.MaxAttempts > 0 && attempts >= p.MaxAttempts {
		return schedule{final: true}
	}
	var sleep time.Duration
	if ok {
		sleep = retryAfter
		if p.Cap > 0 {
			sleep = min(sleep, p.Cap)
		}
	} else {
		sleep = NextSleep(p, d.LastSleep, rnd)
	}
	sleep = min(sleep, maxRetryAfter)
	next := now.Add(sleep)
	if p.Window > 0 {
		first := d.FirstAttemptAt
		if first.IsZero() {
			first = started
		}
		if next.After(first.Add(p.Window - windowSlack(p.Window))) {
			return schedule{final: true}
		}
	}
	return schedule{next: next, sleep: sleep}
}

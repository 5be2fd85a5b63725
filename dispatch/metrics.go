package dispatch

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald"
)

// pendingCountTimeout bounds the store query behind herald_deliveries_pending
// at scrape time.
const pendingCountTimeout = 2 * time.Second

// metrics are the dispatcher's Prometheus collectors. They always exist, so
// the code updates them unconditionally; they are registered only when the
// Config has a Registerer.
type metrics struct {
	attempts   *prometheus.CounterVec
	success    prometheus.Counter
	failure    prometheus.Counter
	latency    prometheus.Histogram
	duration   prometheus.Histogram
	leaseBatch prometheus.Histogram
	claimed    prometheus.Counter
	inFlight   prometheus.Gauge
	finalFail  prometheus.Counter
	disabled   prometheus.Counter
	pending    prometheus.GaugeFunc
	lastCount  atomic.Int64
}

func newMetrics(st herald.Store) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delivery_attempts_total",
			Help: "HTTP attempts to deliver webhooks, by outcome (success: a 2xx answer).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_delivery_latency_seconds",
			Help:    "Time from an event's publication to its successful delivery.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 21600},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_delivery_request_duration_seconds",
			Help:    "Duration of one HTTP attempt, until its response is read.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}),
		leaseBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_lease_batch_size",
			Help:    "Deliveries handed out by one lease call.",
			Buckets: []float64{0, 1, 10, 50, 100, 250, 500, 1000, 2500},
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_deliveries_claimed_total",
			Help: "Deliveries leased by the publish that created them, handed to their lanes without a lease call.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_delivery_requests_in_flight",
			Help: "HTTP requests to endpoints under way in this process.",
		}),
		finalFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_deliveries_failed_total",
			Help: "Deliveries that failed for good (retry budget spent).",
		}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_subscriptions_disabled_total",
			Help: "Subscriptions disabled by Herald (410 Gone, or failing for --disable-after).",
		}),
	}
	m.success = m.attempts.WithLabelValues("success")
	m.failure = m.attempts.WithLabelValues("failure")
	m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_deliveries_pending",
		Help: "Deliveries pending or being delivered, in the whole store.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), pendingCountTimeout)
		defer cancel()
		n, err := st.DeliveryPendingCount(ctx)
		if err != nil {
			return float64(m.lastCount.Load()) // the last known value beats a gap
		}
		m.lastCount.Store(n)
		return float64(n)
	})
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.attempts, m.latency, m.duration, m.leaseBatch, m.claimed, m.inFlight,
		m.finalFail, m.disabled, m.pending} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

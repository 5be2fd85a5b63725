package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/heraldhq/herald"
)

// minPause is the least pause between two batches of a sweep.
const minPause = time.Millisecond

// Defaults for Config.
const (
	DefaultInterval = time.Minute
	MinInterval     = time.Second
	DefaultBatch    = 100
)

// Config configures a Purger. A zero Retention keeps everything forever.
type Config struct {
	Store     herald.Store
	Retention time.Duration // 0: keep forever
	Interval  time.Duration // between sweeps; default Retention/10 within [MinInterval, DefaultInterval]
	Batch     int           // deliveries per delete; default DefaultBatch
	Now       func() time.Time
	Logger    *slog.Logger
}

// Purger sweeps old finished work out of the store.
type Purger struct {
	cfg Config
}

// New returns a Purger, filling defaults.
func New(cfg Config) (*Purger, error) {
	if cfg.Store == nil {
		return nil, errors.New("retention: Store is required")
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("retention: Retention must not be negative, got %s", cfg.Retention)
	}
	if cfg.Interval <= 0 {
		// Old work goes within a tenth of the retention after it expires.
		cfg.Interval = min(DefaultInterval, max(MinInterval, cfg.Retention/10))
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Purger{cfg: cfg}, nil
}

// Run sweeps every Interval until ctx ends. With Retention 0 it returns at once.
func (p *Purger) Run(ctx context.Context) {
	if p.cfg.Retention == 0 {
		return
	}
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if n, err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("retention sweep failed", "error", err)
		} else if n > 0 {
			p.cfg.Logger.Info("retention sweep", "deleted_deliveries", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep deletes everything older than the retention period, one batch at a
// time, and returns how many deliveries went. Each batch is a short
// transaction, and after each one the sweep pauses as long as the batch took,
// so it holds the store's writer (SQLite has one) at most half the time:
// publishes and outcomes waiting for it go first.
func (p *Purger) Sweep(ctx context.Context) (int, error) {
	before := p.cfg.Now().Add(-p.cfg.Retention)
	total := 0
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		start := time.Now()
		n, err := p.cfg.Store.Purge(ctx, before, p.cfg.Batch)
		total += n
		if err != nil {
			return total, fmt.Errorf("purge: %w", err)
		}
		if n < p.cfg.Batch {
			return total, nil
		}
		pause.Reset(max(time.Since(start), minPause))
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-pause.C:
		}
	}
}

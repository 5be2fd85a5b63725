package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
	"github.com/jackc/pgx/v5"
)

// Reconnection backoff of Wake.
const (
	wakeBackoffMin = 100 * time.Millisecond
	wakeBackoffMax = 5 * time.Second
)

// Wake listens on the store's channel (wakeChannel) on a connection of its own and sends on ch,
// without blocking, whenever another process (or this one) published work,
// queued deliveries again, released leases or changed a subscription. When
// the connection fails it reconnects with backoff, and sends once after each
// (re)connection, since notifications sent in between are lost. It returns
// nil when ctx ends, or an error matching herald.ErrUnavailable when the
// store is closed (Close ends it and closes its connection).
func (s *Store) Wake(ctx context.Context, ch chan<- struct{}) error {
	ctx, cancel := s.untilClosed(ctx)
	defer cancel()
	backoff := wakeBackoffMin
	for {
		if s.closed.Load() {
			return s.wakeEnd()
		}
		connected, err := s.listen(ctx, ch)
		if ctx.Err() != nil {
			return s.wakeEnd()
		}
		if connected {
			backoff = wakeBackoffMin
		}
		s.log.Warn("wake-up listener lost its connection; reconnecting", "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return s.wakeEnd()
		case <-t.C:
		}
		backoff = min(2*backoff, wakeBackoffMax)
	}
}

// wakeEnd is what Wake returns when it stops: nil when its context ended,
// ErrUnavailable when the store was closed.
func (s *Store) wakeEnd() error {
	if s.closed.Load() {
		return fmt.Errorf("wake-ups: %w", herald.ErrUnavailable)
	}
	return nil
}

// listen connects, LISTENs and forwards notifications until the connection
// fails or ctx ends. connected reports whether LISTEN took effect.
func (s *Store) listen(ctx context.Context, ch chan<- struct{}) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		return false, classify(err)
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.wake}.Sanitize()); err != nil {
		return false, classify(err)
	}
	poke(ch)
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, classify(err)
		}
		poke(ch)
	}
}

// poke sends on ch unless a wake-up is pending there already.
func poke(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// closeConn closes a dedicated connection, bounded by closeWait even when
// the server no longer answers.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	_ = c.Close(ctx)
}

package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/postgres"
)

// openPostgres opens the PostgreSQL store of --database-url.
func openPostgres(ctx context.Context, c *serveConfig, sealer *herald.Sealer, log *slog.Logger) (herald.Store, error) {
	st, err := postgres.Open(ctx, postgres.Config{URL: c.DatabaseURL, Sealer: sealer, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return st, nil
}

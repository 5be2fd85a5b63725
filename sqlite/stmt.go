package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the writer's statements prepared across transactions.
// SQLite spends as long parsing a hot-path statement as running it, and the
// writer pool has a single connection, so a statement cannot be prepared on
// the pool while a transaction holds that connection. A miss is therefore
// prepared inside the transaction as usual and noted; after the transaction,
// when the connection is free, the noted statements are prepared on the pool
// and every later transaction reuses them through Tx.StmtContext.
type stmtCache struct {
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	wanted map[string]bool
	reads  map[string]*sql.Stmt // prepared on the read pool
}

// readStmt returns q prepared on the read pool, preparing it the first
// time. database/sql prepares it again on each reader connection that runs
// it, once.
func (s *Store) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	c := &s.cache
	c.mu.Lock()
	st := c.reads[q]
	c.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err = r.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.reads[q]; prev != nil {
		st.Close()
		return prev, nil
	}
	if c.reads == nil {
		c.reads = map[string]*sql.Stmt{}
	}
	c.reads[q] = st
	return st, nil
}

// prepare returns q ready to run in tx.
func (s *Store) prepare(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	c := &s.cache
	c.mu.Lock()
	st := c.stmts[q]
	if st == nil {
		if c.wanted == nil {
			c.wanted = map[string]bool{}
		}
		c.wanted[q] = true
	}
	c.mu.Unlock()
	if st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, q)
}

// prepareWanted prepares on the writer pool the statements that missed. It
// must not run while this goroutine holds the writer connection.
func (s *Store) prepareWanted(ctx context.Context) {
	c := &s.cache
	c.mu.Lock()
	wanted := c.wanted
	c.wanted = nil
	c.mu.Unlock()
	for q := range wanted {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			continue // it was prepared in its transaction; it will be again
		}
		c.mu.Lock()
		if c.stmts == nil {
			c.stmts = map[string]*sql.Stmt{}
		}
		if c.stmts[q] == nil {
			c.stmts[q] = st
			st = nil
		}
		c.mu.Unlock()
		if st != nil {
			st.Close()
		}
	}
}

// closeStmts closes every cached statement.
func (s *Store) closeStmts() {
	c := &s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	for _, st := range c.reads {
		st.Close()
	}
	c.stmts, c.reads = nil, nil
}

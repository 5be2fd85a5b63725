// Package sqlite is Herald's embedded Store: one SQLite database file
// through modernc.org/sqlite (pure Go, no cgo; -tags sqlite_cgo builds it
// on github.com/mattn/go-sqlite3 instead), in WAL mode. The writer commits
// with synchronous=NORMAL and a durable write then waits for an fdatasync
// of the WAL (walSync), so a publish answered 202 has been flushed to disk
// while the writer already runs the next transaction.
//
// All writes go through one connection (SQLite has one writer anyway) in
// BEGIN IMMEDIATE transactions, so a write never fails half-way on a lock
// upgrade; reads use a separate pool of read-only connections that WAL lets
// run beside the writer. Publishing is group commit: the caller hands many
// events to EventPublish and they share one transaction and one fsync.
//
// Fan-out is one INSERT … SELECT per event over a side table of each
// subscription's patterns. Delivery ids come from herald.NewID through a SQL
// function registered on this package's own driver instance, so nothing is
// registered process-wide.
package sqlite

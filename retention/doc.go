// Package retention deletes finished deliveries, their attempts and their
// events once they are older than the retention period, in small batches so
// that publishing is never blocked behind a long delete.
package retention

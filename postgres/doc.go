// Package postgres is Herald's Store on PostgreSQL, for running several
// herald processes on one database (github.com/jackc/pgx/v5).
//
// Everything shared lives in the database: a process may die at any instant
// and another takes over its work once its leases expire. Each subscription
// has a lane row that one process owns at a time (claimed with an upsert
// that waits on the row, not a read-then-write), so its rate limit,
// in-flight cap and order are enforced by that process alone.
//
// Publishing is one transaction per call: per-tenant advisory locks (so an
// idempotency key is looked up after its previous publish committed, and a
// tenant's deliveries commit in Seq order), one lookup of the idempotency
// keys, then one INSERT … SELECT that stores every new event and fans it
// out to the matching subscriptions through their pattern rows. Leasing,
// recording outcomes and purging take a fixed number of statements whatever
// the number of deliveries, passing them as arrays. Commits that make work
// due send NOTIFY herald_wake; Wake listens for it on a dedicated
// connection, so other processes start at once instead of at their next
// poll.
//
// Transactions lock rows in one order, so that two never wait for each
// other in a circle: deliveries, then lanes (in subscription id order), then
// subscriptions. DeliveryLease is the exception, lanes before deliveries,
// which is safe because once it holds a lane it never waits for a delivery:
// it marks them with FOR UPDATE SKIP LOCKED. A transaction PostgreSQL
// aborts to break a deadlock all the same is run again.
//
// Times are timestamptz (microseconds), durations bigint nanoseconds.
// Secrets are sealed with the Sealer before they reach the database.
// Migrations are embedded and applied forward only, under an advisory lock,
// by Migrate.
package postgres

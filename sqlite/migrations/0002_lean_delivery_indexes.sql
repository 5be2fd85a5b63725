-- Leaner delivery indexes: every index an outcome touches is B-tree work on
-- the hot path.
--
-- deliveries_due holds only open deliveries. Finished ones, nearly all rows
-- under a 30-day retention, left it only to sit there; now a finished
-- delivery leaves the index (one delete) instead of moving within it (a
-- delete and an insert), and the index stays as small as the queue. Queries
-- that use it repeat its WHERE term literally, as SQLite requires for a
-- partial index.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, seq)
    WHERE status IN ('pending', 'delivering');

-- One index of leases instead of two: expired leases are a range of it, and
-- an owner's leases (released at shutdown) a scan of it, which holds only
-- what is delivering.
DROP INDEX deliveries_leased;
DROP INDEX deliveries_owner;
CREATE INDEX deliveries_leased ON deliveries (lease_expires, lease_owner) WHERE status = 'delivering';

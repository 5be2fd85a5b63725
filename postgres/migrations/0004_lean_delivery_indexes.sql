-- Leaner delivery indexes (as the SQLite store's 0002). An update that
-- changes an indexed column adds an entry to every index whose predicate
-- the new row matches, so each index a lease or an outcome touches is work
-- and bloat on the hot path.
--
-- deliveries_due holds only open deliveries: a finished one gets no entry
-- in it, and the index stays the size of the queue. Its queries ask for
-- status 'pending' or 'delivering', which imply the predicate.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, seq)
    WHERE status IN ('pending', 'delivering');

-- One index of leases instead of two: expired leases are a range of it, and
-- an owner's leases (released at shutdown) a scan of it, which holds only
-- what is delivering.
DROP INDEX deliveries_leased;
DROP INDEX deliveries_owner;
CREATE INDEX deliveries_leased ON deliveries (lease_expires, lease_owner) WHERE status = 'delivering';

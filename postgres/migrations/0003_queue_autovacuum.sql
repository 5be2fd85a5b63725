-- deliveries is a queue: every delivery's row is updated two or three times
-- within seconds (leased, then its outcome), each time with a new entry in
-- the indexes whose keys change (the due queue, the open and lease indexes).
-- The dead entries stay until a vacuum, and leases and the next-due query
-- walk past them: PostgreSQL's default (a vacuum once a fifth of the table
-- is dead) lets a table of ten million rows collect two million. Vacuum it
-- after every 20,000 dead rows instead, as often as autovacuum_naptime lets
-- (README: Several processes on PostgreSQL). lanes is a handful of rows updated on every lease.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE lanes SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- An event's deliveries are created by its publish, in one statement run,
-- so they hold consecutive seqs: first_delivery up to first_delivery +
-- deliveries - 1 (NULL when it has none). Finding them is then a range of
-- the deliveries table itself, and deliveries_event, an index entry per
-- delivery written on the publish's hot path (in a random place of the
-- index when event ids are random), goes.
ALTER TABLE events ADD COLUMN first_delivery INTEGER;
UPDATE events SET first_delivery = (
    SELECT min(d.seq) FROM deliveries d WHERE d.tenant_id = events.tenant_id AND d.event_id = events.id)
WHERE deliveries > 0;
DROP INDEX deliveries_event;

-- A subscription's revision counts its updates: SubscriptionUpdate applies
-- only to the revision it read (optimistic concurrency).
ALTER TABLE subscriptions ADD COLUMN revision bigint NOT NULL DEFAULT 0;

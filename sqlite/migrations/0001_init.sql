-- Herald's initial schema. Times are INTEGER unix microseconds (NULL: none),
-- durations INTEGER nanoseconds. Every tenant-scoped table carries tenant_id;
-- settings is process-wide and tenants is keyed by the tenant id itself.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER
);

INSERT INTO tenants (id, name, created_at)
VALUES ('default', 'Default', CAST(unixepoch('subsec') * 1000000 AS INTEGER));

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    prefix     TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- SubscriptionList pages by (created_at, seq); created_at is never NULL here
-- (the zero time is stored as its unix microseconds). secrets and
-- encryption_key are sealed (AES-GCM, tenant and subscription id as AD).
CREATE TABLE subscriptions (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    tenant_id          TEXT NOT NULL,
    url                TEXT NOT NULL,
    name               TEXT NOT NULL,
    events             TEXT NOT NULL,
    secrets            BLOB NOT NULL,
    signature_scheme   TEXT NOT NULL,
    encryption_key     BLOB,
    include_payload    INTEGER NOT NULL,
    payload_format     TEXT NOT NULL,
    mode               TEXT NOT NULL,
    ordered            INTEGER NOT NULL,
    headers            TEXT NOT NULL,
    max_rps            INTEGER NOT NULL,
    max_in_flight      INTEGER NOT NULL,
    timeout_ns         INTEGER NOT NULL,
    batch_max_events   INTEGER NOT NULL,
    retry_max_attempts INTEGER NOT NULL,
    retry_window_ns    INTEGER NOT NULL,
    retry_base_ns      INTEGER NOT NULL,
    retry_cap_ns       INTEGER NOT NULL,
    status             TEXT NOT NULL,
    disabled_reason    TEXT NOT NULL,
    failing_since      INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id, created_at, seq);
CREATE INDEX subscriptions_status ON subscriptions (status);
CREATE INDEX subscriptions_failing ON subscriptions (failing_since) WHERE failing_since IS NOT NULL;

-- One row per event pattern, so fan-out matches in SQL: kind 'exact' (value =
-- type), 'prefix' (value is a prefix of type) or 'all'.
CREATE TABLE subscription_patterns (
    tenant_id       TEXT NOT NULL,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('exact', 'prefix', 'all')),
    value           TEXT NOT NULL,
    PRIMARY KEY (subscription_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX subscription_patterns_match ON subscription_patterns (tenant_id, kind, value);

-- seq is the order EventList pages by, newest first.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    version     TEXT NOT NULL,
    data        BLOB,
    create_time INTEGER,
    test        INTEGER NOT NULL,
    hash        BLOB,
    deliveries  INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX events_tenant ON events (tenant_id, seq);
CREATE INDEX events_tenant_type ON events (tenant_id, event_type, seq);
-- Events that fanned out to nobody: Purge finds them without a scan.
CREATE INDEX events_orphan ON events (received_at) WHERE deliveries = 0;

-- seq is AUTOINCREMENT so it never goes back, even after Purge deletes the
-- newest rows: Delivery.Seq is greater than every earlier one.
CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    first_attempt_at INTEGER,
    last_sleep_ns    INTEGER NOT NULL DEFAULT 0,
    trace_id         TEXT NOT NULL,
    batch_id         TEXT NOT NULL DEFAULT '',
    last_status_code INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    created_at       INTEGER,
    updated_at       INTEGER,
    completed_at     INTEGER,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_expires    INTEGER
);
-- The due queue of one subscription, and its delivering count.
CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, seq);
-- Unfinished deliveries by publish order: an ordered subscription's head.
CREATE INDEX deliveries_open ON deliveries (subscription_id, seq) WHERE status IN ('pending', 'delivering');
CREATE INDEX deliveries_tenant ON deliveries (tenant_id, seq);
CREATE INDEX deliveries_sub ON deliveries (subscription_id, seq);
-- Lists of finished deliveries by status (those have completed_at);
-- unfinished rows, most of what publishing writes, stay out of it.
CREATE INDEX deliveries_final ON deliveries (tenant_id, status, seq) WHERE completed_at IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (tenant_id, event_id);
CREATE INDEX deliveries_leased ON deliveries (lease_expires) WHERE status = 'delivering';
CREATE INDEX deliveries_owner ON deliveries (lease_owner) WHERE status = 'delivering';
CREATE INDEX deliveries_batch ON deliveries (batch_id) WHERE batch_id <> '';
CREATE INDEX deliveries_completed ON deliveries (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE attempts (
    seq           INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    delivery_id   TEXT NOT NULL,
    n             INTEGER NOT NULL,
    started_at    INTEGER,
    duration_ns   INTEGER NOT NULL,
    status_code   INTEGER NOT NULL,
    error         TEXT NOT NULL,
    response_body TEXT NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, seq);

-- One owner per subscription's lane at a time, until expires_at.
CREATE TABLE lanes (
    subscription_id TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    owner           TEXT NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX lanes_owner ON lanes (owner);

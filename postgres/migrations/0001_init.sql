-- Herald's initial schema for PostgreSQL. Times are timestamptz (microsecond
-- precision; NULL: none), durations bigint nanoseconds. Every tenant-scoped
-- table carries tenant_id; settings is process-wide and tenants is keyed by
-- the tenant id itself. The tables live in the schema the connection's
-- search_path names first.

CREATE TABLE settings (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE tenants (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz
);

INSERT INTO tenants (id, name, created_at) VALUES ('default', 'Default', now());

CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenants (id),
    prefix     text NOT NULL,
    hash       bytea NOT NULL UNIQUE,
    created_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- SubscriptionList pages by (created_at, seq); created_at is never NULL here
-- (the zero time is stored as 0001-01-01). secrets and encryption_key are
-- sealed (AES-GCM, tenant and subscription id as additional data).
CREATE TABLE subscriptions (
    seq                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                 text NOT NULL UNIQUE,
    tenant_id          text NOT NULL,
    url                text NOT NULL,
    name               text NOT NULL,
    events             text[] NOT NULL,
    secrets            bytea NOT NULL,
    signature_scheme   text NOT NULL,
    encryption_key     bytea,
    include_payload    boolean NOT NULL,
    payload_format     text NOT NULL,
    mode               text NOT NULL,
    ordered            boolean NOT NULL,
    headers            text NOT NULL,
    max_rps            integer NOT NULL,
    max_in_flight      integer NOT NULL,
    timeout_ns         bigint NOT NULL,
    batch_max_events   integer NOT NULL,
    retry_max_attempts integer NOT NULL,
    retry_window_ns    bigint NOT NULL,
    retry_base_ns      bigint NOT NULL,
    retry_cap_ns       bigint NOT NULL,
    status             text NOT NULL,
    disabled_reason    text NOT NULL,
    failing_since      timestamptz,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id, created_at, seq);
CREATE INDEX subscriptions_status ON subscriptions (status);
CREATE INDEX subscriptions_failing ON subscriptions (failing_since) WHERE failing_since IS NOT NULL;

-- One row per event pattern, so fan-out matches in SQL: kind 'exact' (value =
-- type), 'prefix' (value is a prefix of type) or 'all'.
CREATE TABLE subscription_patterns (
    tenant_id       text NOT NULL,
    subscription_id text NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('exact', 'prefix', 'all')),
    value           text NOT NULL,
    PRIMARY KEY (subscription_id, kind, value)
);
CREATE INDEX subscription_patterns_match ON subscription_patterns (tenant_id, kind, value);

-- seq is the order EventList pages by, newest first. data is kept as the
-- bytes published (bytea, not jsonb, which would reorder keys and refuse
-- \u0000).
CREATE TABLE events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    event_type  text NOT NULL,
    version     text NOT NULL,
    data        bytea,
    create_time timestamptz,
    test        boolean NOT NULL,
    hash        bytea,
    deliveries  integer NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX events_tenant ON events (tenant_id, seq);
CREATE INDEX events_tenant_type ON events (tenant_id, event_type, seq);
-- Events that fanned out to nobody: Purge finds them without a scan.
CREATE INDEX events_orphan ON events (received_at) WHERE deliveries = 0;

-- seq comes from a sequence, which never goes back: Delivery.Seq is greater
-- than every earlier one. EventPublish holds a per-tenant advisory lock from
-- its first insert to its commit, so a tenant's deliveries also become
-- visible in seq order (an ordered subscription's head is never overtaken
-- by a later commit of a lower seq).
--
-- id, not seq, is the primary key: with an index led by seq the planner may
-- find an ordered subscription's head by walking every delivery in seq
-- order (when few subscriptions hold most rows), where deliveries_open
-- holds exactly that subscription's unfinished ones in seq order.
CREATE TABLE deliveries (
    id               text PRIMARY KEY,
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id        text NOT NULL,
    subscription_id  text NOT NULL,
    event_id         text NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_sleep_ns    bigint NOT NULL DEFAULT 0,
    trace_id         text NOT NULL,
    batch_id         text NOT NULL DEFAULT '',
    last_status_code integer NOT NULL DEFAULT 0,
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz,
    updated_at       timestamptz,
    completed_at     timestamptz,
    lease_owner      text NOT NULL DEFAULT '',
    lease_expires    timestamptz
);
-- The due queue of one subscription, and its delivering count.
CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, seq);
-- Unfinished deliveries by publish order: an ordered subscription's head,
-- and the pending count.
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
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text NOT NULL,
    delivery_id   text NOT NULL,
    n             integer NOT NULL,
    started_at    timestamptz,
    duration_ns   bigint NOT NULL,
    status_code   integer NOT NULL,
    error         text NOT NULL,
    response_body text NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, seq);

-- One owner per subscription's lane at a time, until expires_at.
CREATE TABLE lanes (
    subscription_id text PRIMARY KEY,
    tenant_id       text NOT NULL,
    owner           text NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX lanes_owner ON lanes (owner);

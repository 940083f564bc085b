-- The read models that replace the in-memory `LedgerState`
-- (projections/src/models/). Every table belongs to one projection, which
-- alone writes it, in the same transaction as its checkpoint. UUIDs are
-- stored as their 16 bytes, days as 'YYYY-MM-DD' text, instants as
-- microseconds since the epoch, decimals as their exact text, aggregate
-- states as their postcard encoding (applied by the aggregate's own
-- `apply`, so read and decide sides cannot drift).

-- Organizations ("organizations-v1").
CREATE TABLE rm_organizations (
    id             BYTEA    PRIMARY KEY,
    name           TEXT    NOT NULL,
    created_at     BIGINT NOT NULL,
    active_users   BIGINT NOT NULL,
    live_subscription BYTEA,
    created        BYTEA    NOT NULL,
    state          BYTEA    NOT NULL
);
CREATE TABLE rm_users (
    organization_id BYTEA    NOT NULL,
    user_id         BYTEA    NOT NULL,
    email           TEXT    NOT NULL,
    role            TEXT,
    active          BOOLEAN NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE TABLE rm_tokens (
    token_id        BYTEA    PRIMARY KEY,
    organization_id BYTEA    NOT NULL,
    role            TEXT    NOT NULL,
    token_hash      BYTEA    NOT NULL,
    revoked         BOOLEAN NOT NULL,
    expires_at      BIGINT
);
CREATE INDEX rm_tokens_by_hash ON rm_tokens (token_hash);

-- Subscriptions ("subscriptions-v1").
CREATE TABLE rm_subscriptions (
    id               BYTEA    PRIMARY KEY,
    organization_id  BYTEA,
    created_sequence BIGINT,
    end_date         TEXT,
    auto_renew       BOOLEAN NOT NULL,
    ended            BOOLEAN NOT NULL,
    state            BYTEA    NOT NULL
);
CREATE INDEX rm_subscriptions_by_organization ON rm_subscriptions (organization_id, created_sequence);
CREATE INDEX rm_subscriptions_by_end_date ON rm_subscriptions (end_date);

-- Licenses, their keys and deployments ("licenses-v1").
CREATE TABLE rm_licenses (
    id              BYTEA    PRIMARY KEY,
    organization_id BYTEA,
    subscription_id BYTEA,
    issued_sequence BIGINT,
    revoked         BOOLEAN NOT NULL,
    state           BYTEA    NOT NULL
);
CREATE INDEX rm_licenses_by_organization ON rm_licenses (organization_id, issued_sequence);
CREATE TABLE rm_license_keys (
    key_hash   BYTEA PRIMARY KEY,
    license_id BYTEA NOT NULL
);
CREATE TABLE rm_deployments (
    license_id    BYTEA    NOT NULL,
    deployment_id TEXT    NOT NULL,
    active        BOOLEAN NOT NULL,
    slot_frees_at BIGINT,
    PRIMARY KEY (license_id, deployment_id)
);

-- Validation statistics ("validations-v1"): counters, no read per record.
CREATE TABLE rm_validation_stats (
    license_id      BYTEA    PRIMARY KEY,
    count           BIGINT NOT NULL,
    last_at         BIGINT NOT NULL,
    last_code       TEXT    NOT NULL,
    last_deployment TEXT    NOT NULL
);

-- Usage ("usage-v1"): the latest report per subscription, day, deployment.
CREATE TABLE rm_usage (
    subscription_id BYTEA    NOT NULL,
    day             TEXT    NOT NULL,
    deployment_id   TEXT    NOT NULL,
    sequence        BIGINT NOT NULL,
    active_users    BIGINT NOT NULL,
    data_volume_gb  TEXT    NOT NULL,
    api_calls_count BIGINT NOT NULL,
    training_hours  TEXT    NOT NULL,
    PRIMARY KEY (subscription_id, day, deployment_id)
);

-- Invoices and their lines ("invoices-v1").
CREATE TABLE rm_invoices (
    subscription_id BYTEA    NOT NULL,
    period          TEXT    NOT NULL,
    invoice_id      BYTEA    NOT NULL,
    organization_id BYTEA    NOT NULL,
    total           TEXT    NOT NULL,
    sequence        BIGINT NOT NULL,
    issued          BYTEA    NOT NULL,
    PRIMARY KEY (subscription_id, period)
);
CREATE INDEX rm_invoices_by_organization ON rm_invoices (organization_id, period);
CREATE TABLE rm_invoice_lines (
    invoice_id  BYTEA    NOT NULL,
    line_no     BIGINT NOT NULL,
    kind        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    days        BIGINT,
    amount      TEXT    NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

-- The audit index ("audit-v1"): one row per record, pointing at it.
CREATE TABLE rm_audit (
    sequence        BIGINT  PRIMARY KEY,
    recorded_at     BIGINT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    stream_id       TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    organization_id BYTEA,
    actor           TEXT,
    source_ip       TEXT,
    leaf_hash       BYTEA    NOT NULL
);
CREATE INDEX rm_audit_by_organization ON rm_audit (organization_id, sequence);
-- Which organization a license or subscription belongs to, for the index.
CREATE TABLE rm_audit_owners (
    entity_id       BYTEA PRIMARY KEY,
    organization_id BYTEA NOT NULL
);

-- The Stripe outbox ("stripe-v1"), `domain::stripe::StripeOutbox` as rows.
CREATE TABLE rm_stripe_pending_events (
    event_id TEXT    PRIMARY KEY,
    sequence BIGINT NOT NULL
);
CREATE INDEX rm_stripe_pending_events_by_sequence ON rm_stripe_pending_events (sequence);
CREATE TABLE rm_stripe_customers (
    organization_id BYTEA PRIMARY KEY,
    customer_id     TEXT NOT NULL
);
CREATE TABLE rm_stripe_pending_invoices (
    subscription_id BYTEA    NOT NULL,
    period          TEXT    NOT NULL,
    sequence        BIGINT NOT NULL,
    target          TEXT    NOT NULL,
    PRIMARY KEY (subscription_id, period)
);
CREATE TABLE rm_stripe_invoices (
    subscription_id   BYTEA NOT NULL,
    period            TEXT NOT NULL,
    stripe_invoice_id TEXT NOT NULL,
    PRIMARY KEY (subscription_id, period)
);
CREATE TABLE rm_stripe_refused (
    target  TEXT    PRIMARY KEY,
    status  BIGINT NOT NULL,
    message TEXT    NOT NULL
);
CREATE TABLE rm_stripe_subscription_newest (
    object_id TEXT    PRIMARY KEY,
    created   BIGINT NOT NULL
);
CREATE TABLE rm_stripe_pending_payment_methods (
    organization_id BYTEA PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    setup_intent_id TEXT NOT NULL,
    target          TEXT NOT NULL
);
CREATE TABLE rm_stripe_sync (
    id            BIGINT  PRIMARY KEY,
    from_sequence BIGINT NOT NULL
);

-- The notification outbox ("notifications-v1"): decided notices not yet
-- recorded as sent or skipped; and, to stay idempotent, only what could be
-- decided again, one row per subscription and slot (a usage metric and
-- level, or the expiry reminder) holding the latest month or term end
-- done: bounded by live subscriptions, never by history.
CREATE TABLE rm_notifications_pending (
    id              BYTEA    PRIMARY KEY,
    decided_at      BIGINT  NOT NULL,
    organization_id BYTEA    NOT NULL,
    kind            TEXT    NOT NULL,
    notice          BYTEA    NOT NULL
);
CREATE INDEX rm_notifications_pending_by_decided ON rm_notifications_pending (decided_at);
CREATE TABLE rm_notifications_done (
    subscription_id BYTEA NOT NULL,
    slot            TEXT NOT NULL,
    day             TEXT NOT NULL,
    PRIMARY KEY (subscription_id, slot)
);
-- What the outbox's usage warnings are decided from, kept by the same
-- projection: each subscription's state, and each day's latest report per
-- deployment (a day's row holds its deployments' metrics).
CREATE TABLE rm_notify_subscriptions (
    id    BYTEA PRIMARY KEY,
    state BYTEA NOT NULL
);
CREATE TABLE rm_notify_usage_days (
    subscription_id BYTEA NOT NULL,
    day             TEXT NOT NULL,
    reports         BYTEA NOT NULL,
    PRIMARY KEY (subscription_id, day)
);

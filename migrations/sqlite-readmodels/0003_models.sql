-- The read models that replace the in-memory `LedgerState`
-- (projections/src/models/). Every table belongs to one projection, which
-- alone writes it, in the same transaction as its checkpoint. UUIDs are
-- stored as their 16 bytes, days as 'YYYY-MM-DD' text, instants as
-- microseconds since the epoch, decimals as their exact text, aggregate
-- states as their postcard encoding (applied by the aggregate's own
-- `apply`, so read and decide sides cannot drift).

-- Organizations ("organizations-v1").
CREATE TABLE rm_organizations (
    id             BLOB    PRIMARY KEY,
    name           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    active_users   INTEGER NOT NULL,
    live_subscription BLOB,
    created        BLOB    NOT NULL,
    state          BLOB    NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_users (
    organization_id BLOB    NOT NULL,
    user_id         BLOB    NOT NULL,
    email           TEXT    NOT NULL,
    role            TEXT,
    active          INTEGER NOT NULL,
    PRIMARY KEY (organization_id, user_id)
) WITHOUT ROWID;
CREATE TABLE rm_tokens (
    token_id        BLOB    PRIMARY KEY,
    organization_id BLOB    NOT NULL,
    role            TEXT    NOT NULL,
    token_hash      BLOB    NOT NULL,
    revoked         INTEGER NOT NULL,
    expires_at      INTEGER
) WITHOUT ROWID;
CREATE INDEX rm_tokens_by_hash ON rm_tokens (token_hash);

-- Subscriptions ("subscriptions-v1").
CREATE TABLE rm_subscriptions (
    id               BLOB    PRIMARY KEY,
    organization_id  BLOB,
    created_sequence INTEGER,
    end_date         TEXT,
    auto_renew       INTEGER NOT NULL,
    ended            INTEGER NOT NULL,
    state            BLOB    NOT NULL
) WITHOUT ROWID;
CREATE INDEX rm_subscriptions_by_organization ON rm_subscriptions (organization_id, created_sequence);
CREATE INDEX rm_subscriptions_by_end_date ON rm_subscriptions (end_date);

-- Licenses, their keys and deployments ("licenses-v1").
CREATE TABLE rm_licenses (
    id              BLOB    PRIMARY KEY,
    organization_id BLOB,
    subscription_id BLOB,
    issued_sequence INTEGER,
    revoked         INTEGER NOT NULL,
    state           BLOB    NOT NULL
) WITHOUT ROWID;
CREATE INDEX rm_licenses_by_organization ON rm_licenses (organization_id, issued_sequence);
CREATE TABLE rm_license_keys (
    key_hash   BLOB PRIMARY KEY,
    license_id BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_deployments (
    license_id    BLOB    NOT NULL,
    deployment_id TEXT    NOT NULL,
    active        INTEGER NOT NULL,
    slot_frees_at INTEGER,
    PRIMARY KEY (license_id, deployment_id)
) WITHOUT ROWID;

-- Validation statistics ("validations-v1"): counters, no read per record.
CREATE TABLE rm_validation_stats (
    license_id      BLOB    PRIMARY KEY,
    count           INTEGER NOT NULL,
    last_at         INTEGER NOT NULL,
    last_code       TEXT    NOT NULL,
    last_deployment TEXT    NOT NULL
) WITHOUT ROWID;

-- Usage ("usage-v1"): the latest report per subscription, day, deployment.
CREATE TABLE rm_usage (
    subscription_id BLOB    NOT NULL,
    day             TEXT    NOT NULL,
    deployment_id   TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    active_users    INTEGER NOT NULL,
    data_volume_gb  TEXT    NOT NULL,
    api_calls_count INTEGER NOT NULL,
    training_hours  TEXT    NOT NULL,
    PRIMARY KEY (subscription_id, day, deployment_id)
) WITHOUT ROWID;

-- Invoices and their lines ("invoices-v1").
CREATE TABLE rm_invoices (
    subscription_id BLOB    NOT NULL,
    period          TEXT    NOT NULL,
    invoice_id      BLOB    NOT NULL,
    organization_id BLOB    NOT NULL,
    total           TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    issued          BLOB    NOT NULL,
    PRIMARY KEY (subscription_id, period)
) WITHOUT ROWID;
CREATE INDEX rm_invoices_by_organization ON rm_invoices (organization_id, period);
CREATE TABLE rm_invoice_lines (
    invoice_id  BLOB    NOT NULL,
    line_no     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    days        INTEGER,
    amount      TEXT    NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
) WITHOUT ROWID;

-- The audit index ("audit-v1"): one row per record, pointing at it.
CREATE TABLE rm_audit (
    sequence        INTEGER PRIMARY KEY,
    recorded_at     INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    stream_id       TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    organization_id BLOB,
    actor           TEXT,
    source_ip       TEXT,
    leaf_hash       BLOB    NOT NULL
);
CREATE INDEX rm_audit_by_organization ON rm_audit (organization_id, sequence);
-- Which organization a license or subscription belongs to, for the index.
CREATE TABLE rm_audit_owners (
    entity_id       BLOB PRIMARY KEY,
    organization_id BLOB NOT NULL
) WITHOUT ROWID;

-- The Stripe outbox ("stripe-v1"), `domain::stripe::StripeOutbox` as rows.
CREATE TABLE rm_stripe_pending_events (
    event_id TEXT    PRIMARY KEY,
    sequence INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX rm_stripe_pending_events_by_sequence ON rm_stripe_pending_events (sequence);
CREATE TABLE rm_stripe_customers (
    organization_id BLOB PRIMARY KEY,
    customer_id     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_stripe_pending_invoices (
    subscription_id BLOB    NOT NULL,
    period          TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    target          TEXT    NOT NULL,
    PRIMARY KEY (subscription_id, period)
) WITHOUT ROWID;
CREATE TABLE rm_stripe_invoices (
    subscription_id   BLOB NOT NULL,
    period            TEXT NOT NULL,
    stripe_invoice_id TEXT NOT NULL,
    PRIMARY KEY (subscription_id, period)
) WITHOUT ROWID;
CREATE TABLE rm_stripe_refused (
    target  TEXT    PRIMARY KEY,
    status  INTEGER NOT NULL,
    message TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_stripe_subscription_newest (
    object_id TEXT    PRIMARY KEY,
    created   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_stripe_pending_payment_methods (
    organization_id BLOB PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    setup_intent_id TEXT NOT NULL,
    target          TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_stripe_sync (
    id            INTEGER PRIMARY KEY,
    from_sequence INTEGER NOT NULL
);

-- The notification outbox ("notifications-v1"): decided notices not yet
-- recorded as sent or skipped; and, to stay idempotent, only what could be
-- decided again, one row per subscription and slot (a usage metric and
-- level, or the expiry reminder) holding the latest month or term end
-- done: bounded by live subscriptions, never by history.
CREATE TABLE rm_notifications_pending (
    id              BLOB    PRIMARY KEY,
    decided_at      INTEGER NOT NULL,
    organization_id BLOB    NOT NULL,
    kind            TEXT    NOT NULL,
    notice          BLOB    NOT NULL
) WITHOUT ROWID;
CREATE INDEX rm_notifications_pending_by_decided ON rm_notifications_pending (decided_at);
CREATE TABLE rm_notifications_done (
    subscription_id BLOB NOT NULL,
    slot            TEXT NOT NULL,
    day             TEXT NOT NULL,
    PRIMARY KEY (subscription_id, slot)
) WITHOUT ROWID;
-- What the outbox's usage warnings are decided from, kept by the same
-- projection: each subscription's state, and each day's latest report per
-- deployment (a day's row holds its deployments' metrics).
CREATE TABLE rm_notify_subscriptions (
    id    BLOB PRIMARY KEY,
    state BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_notify_usage_days (
    subscription_id BLOB NOT NULL,
    day             TEXT NOT NULL,
    reports         BLOB NOT NULL,
    PRIMARY KEY (subscription_id, day)
) WITHOUT ROWID;

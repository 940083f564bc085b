-- The event log. Times are microseconds since the Unix epoch (UTC); hashes
-- are 32-byte BLAKE3 outputs; see ARCHITECTURE.md, "The record format".
CREATE TABLE events (
    sequence        INTEGER PRIMARY KEY,
    event_id        BLOB    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    stream_revision INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    occurred_at_us  INTEGER NOT NULL,
    recorded_at_us  INTEGER NOT NULL,
    idempotency_key TEXT,
    metadata        BLOB,
    metadata_hash   BLOB    NOT NULL,
    payload         BLOB,
    payload_hash    BLOB    NOT NULL,
    leaf_hash       BLOB    NOT NULL,
    chain_hash      BLOB    NOT NULL,
    UNIQUE (stream_id, stream_revision)
);

-- Records are never changed or removed. The one permitted update is
-- shredding: setting metadata or payload to NULL, whose hashes stay.
CREATE TRIGGER events_immutable BEFORE UPDATE ON events
WHEN NEW.sequence IS NOT OLD.sequence
  OR NEW.event_id IS NOT OLD.event_id
  OR NEW.stream_id IS NOT OLD.stream_id
  OR NEW.stream_revision IS NOT OLD.stream_revision
  OR NEW.event_type IS NOT OLD.event_type
  OR NEW.schema_version IS NOT OLD.schema_version
  OR NEW.occurred_at_us IS NOT OLD.occurred_at_us
  OR NEW.recorded_at_us IS NOT OLD.recorded_at_us
  OR NEW.idempotency_key IS NOT OLD.idempotency_key
  OR NEW.metadata_hash IS NOT OLD.metadata_hash
  OR NEW.payload_hash IS NOT OLD.payload_hash
  OR NEW.leaf_hash IS NOT OLD.leaf_hash
  OR NEW.chain_hash IS NOT OLD.chain_hash
  OR (NEW.metadata IS NOT OLD.metadata AND NEW.metadata IS NOT NULL)
  OR (NEW.payload IS NOT OLD.payload AND NEW.payload IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'events are immutable; only metadata and payload may be shredded');
END;

CREATE TRIGGER events_append_only BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- One row per command that carried an idempotency key: what it asked for
-- (digest) and what it got, so a retry is answered, not re-applied.
CREATE TABLE commands (
    idempotency_key TEXT    PRIMARY KEY,
    digest          BLOB    NOT NULL,
    stream_id       TEXT    NOT NULL,
    first_sequence  INTEGER NOT NULL,
    last_sequence   INTEGER NOT NULL,
    stream_revision INTEGER NOT NULL
) WITHOUT ROWID;

-- The head of the log: the last sequence, its chain hash and recordedAt.
-- Every append reads and writes it inside its transaction.
CREATE TABLE log_head (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    sequence       INTEGER NOT NULL,
    chain_hash     BLOB    NOT NULL,
    recorded_at_us INTEGER NOT NULL
);
INSERT INTO log_head (id, sequence, chain_hash, recorded_at_us) VALUES (1, 0, zeroblob(32), 0);

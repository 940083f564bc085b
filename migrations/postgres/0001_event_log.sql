-- The event log. Times are microseconds since the Unix epoch (UTC); hashes
-- are 32-byte BLAKE3 outputs; see ARCHITECTURE.md, "The record format".
CREATE TABLE events (
    sequence        BIGINT PRIMARY KEY,
    event_id        UUID   NOT NULL UNIQUE,
    stream_id       TEXT   NOT NULL,
    stream_revision BIGINT NOT NULL,
    event_type      TEXT   NOT NULL,
    schema_version  BIGINT NOT NULL,
    occurred_at_us  BIGINT NOT NULL,
    recorded_at_us  BIGINT NOT NULL,
    idempotency_key TEXT,
    metadata        BYTEA,
    metadata_hash   BYTEA  NOT NULL,
    payload         BYTEA,
    payload_hash    BYTEA  NOT NULL,
    leaf_hash       BYTEA  NOT NULL,
    chain_hash      BYTEA  NOT NULL,
    UNIQUE (stream_id, stream_revision)
);

-- Records are never changed or removed. The one permitted update is
-- shredding: setting metadata or payload to NULL, whose hashes stay.
CREATE FUNCTION events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'events are append-only';
    END IF;
    IF (NEW.sequence, NEW.event_id, NEW.stream_id, NEW.stream_revision, NEW.event_type,
        NEW.schema_version, NEW.occurred_at_us, NEW.recorded_at_us, NEW.idempotency_key,
        NEW.metadata_hash, NEW.payload_hash, NEW.leaf_hash, NEW.chain_hash)
       IS DISTINCT FROM
       (OLD.sequence, OLD.event_id, OLD.stream_id, OLD.stream_revision, OLD.event_type,
        OLD.schema_version, OLD.occurred_at_us, OLD.recorded_at_us, OLD.idempotency_key,
        OLD.metadata_hash, OLD.payload_hash, OLD.leaf_hash, OLD.chain_hash)
       OR (NEW.metadata IS DISTINCT FROM OLD.metadata AND NEW.metadata IS NOT NULL)
       OR (NEW.payload IS DISTINCT FROM OLD.payload AND NEW.payload IS NOT NULL) THEN
        RAISE EXCEPTION 'events are immutable; only metadata and payload may be shredded';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_immutable();

-- One row per command that carried an idempotency key: what it asked for
-- (digest) and what it got, so a retry is answered, not re-applied.
CREATE TABLE commands (
    idempotency_key TEXT   PRIMARY KEY,
    digest          BYTEA  NOT NULL,
    stream_id       TEXT   NOT NULL,
    first_sequence  BIGINT NOT NULL,
    last_sequence   BIGINT NOT NULL,
    stream_revision BIGINT NOT NULL
);

-- The head of the log: the last sequence, its chain hash and recordedAt.
-- Every append locks this row (SELECT … FOR UPDATE) inside its
-- transaction, so several processes still build one linear chain.
CREATE TABLE log_head (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    sequence       BIGINT NOT NULL,
    chain_hash     BYTEA  NOT NULL,
    recorded_at_us BIGINT NOT NULL
);
INSERT INTO log_head (id, sequence, chain_hash, recorded_at_us) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000', 0);

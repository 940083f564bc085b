-- Issue 16 (privacy): record format version 2 and sanctioned erasure.
-- `format` is the record format (1 unsalted, 2 salted commitments); rows
-- written before this migration are version 1. `salt` is a version 2
-- record's 32 random bytes, erased together with metadata and payload.
ALTER TABLE events ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN salt BYTEA;

-- One row per erased record, written in the same transaction as its NULLs:
-- the privacy event that sanctioned it (always a later sequence) and the
-- facts of the erased payload that stay (NULL: nothing stays).
CREATE TABLE erasures (
    sequence  BIGINT PRIMARY KEY,
    erased_by BIGINT NOT NULL,
    facts     BYTEA
);

-- Records are never changed or removed. The one permitted update is a
-- sanctioned erasure: metadata, payload and salt all set to NULL at once,
-- every other column unchanged, and an `erasures` row for the record.
CREATE OR REPLACE FUNCTION events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'events are append-only';
    END IF;
    IF (NEW.sequence, NEW.event_id, NEW.stream_id, NEW.stream_revision, NEW.event_type,
        NEW.schema_version, NEW.occurred_at_us, NEW.recorded_at_us, NEW.idempotency_key,
        NEW.metadata_hash, NEW.payload_hash, NEW.leaf_hash, NEW.chain_hash, NEW.format)
       IS DISTINCT FROM
       (OLD.sequence, OLD.event_id, OLD.stream_id, OLD.stream_revision, OLD.event_type,
        OLD.schema_version, OLD.occurred_at_us, OLD.recorded_at_us, OLD.idempotency_key,
        OLD.metadata_hash, OLD.payload_hash, OLD.leaf_hash, OLD.chain_hash, OLD.format)
       OR NEW.metadata IS NOT NULL
       OR NEW.payload IS NOT NULL
       OR NEW.salt IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM erasures WHERE erasures.sequence = OLD.sequence) THEN
        RAISE EXCEPTION 'events are immutable; only a sanctioned erasure may set metadata, payload and salt to NULL';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION erasures_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'erasures are append-only';
    END IF;
    RAISE EXCEPTION 'erasures are immutable';
END $$;

CREATE TRIGGER erasures_immutable BEFORE UPDATE OR DELETE ON erasures
    FOR EACH ROW EXECUTE FUNCTION erasures_immutable();

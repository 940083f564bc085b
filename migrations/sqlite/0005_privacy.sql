-- Issue 16 (privacy): record format version 2 and sanctioned erasure.
-- `format` is the record format (1 unsalted, 2 salted commitments); rows
-- written before this migration are version 1. `salt` is a version 2
-- record's 32 random bytes, erased together with metadata and payload.
ALTER TABLE events ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN salt BLOB;

-- One row per erased record, written in the same transaction as its NULLs:
-- the privacy event that sanctioned it (always a later sequence) and the
-- facts of the erased payload that stay (NULL: nothing stays).
CREATE TABLE erasures (
    sequence  INTEGER PRIMARY KEY,
    erased_by INTEGER NOT NULL,
    facts     BLOB
);

-- Records are never changed or removed. The one permitted update is a
-- sanctioned erasure: metadata, payload and salt all set to NULL at once,
-- every other column unchanged, and an `erasures` row for the record.
DROP TRIGGER events_immutable;
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
  OR NEW.format IS NOT OLD.format
  OR NEW.metadata IS NOT NULL
  OR NEW.payload IS NOT NULL
  OR NEW.salt IS NOT NULL
  OR NOT EXISTS (SELECT 1 FROM erasures WHERE erasures.sequence = OLD.sequence)
BEGIN
    SELECT RAISE(ABORT, 'events are immutable; only a sanctioned erasure may set metadata, payload and salt to NULL');
END;

CREATE TRIGGER erasures_immutable BEFORE UPDATE ON erasures
BEGIN
    SELECT RAISE(ABORT, 'erasures are immutable');
END;

CREATE TRIGGER erasures_append_only BEFORE DELETE ON erasures
BEGIN
    SELECT RAISE(ABORT, 'erasures are append-only');
END;

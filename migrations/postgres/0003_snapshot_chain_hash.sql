-- The chain hash of the record a snapshot's checkpoint names, saved with
-- the snapshot, so a log that no longer holds that record with that chain
-- hash (a restored backup, a failover that lost writes) is noticed instead
-- of being served as if nothing had happened (ARCHITECTURE.md, "Rollback").
-- Snapshots saved before this migration take the chain hash the log holds
-- now at their checkpoint; one whose record is gone keeps NULL, which the
-- server reads as a rollback.
ALTER TABLE projection_snapshots ADD COLUMN chain_hash BYTEA;
UPDATE projection_snapshots SET chain_hash = CASE
    WHEN sequence = 0 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
    ELSE (SELECT events.chain_hash FROM events WHERE events.sequence = projection_snapshots.sequence)
END;

-- The chain hash of the record a snapshot's checkpoint names, saved with
-- the snapshot, so a log that no longer holds that record with that chain
-- hash (a restored backup, a failover that lost writes) is noticed instead
-- of being served as if nothing had happened (ARCHITECTURE.md, "Rollback").
-- Snapshots saved before this migration take the chain hash the log holds
-- now at their checkpoint; one whose record is gone keeps NULL ("not
-- known"), which the server reads as a rollback when the log does not
-- reach the checkpoint.
ALTER TABLE projection_snapshots ADD COLUMN chain_hash BLOB;
UPDATE projection_snapshots SET chain_hash = CASE
    WHEN sequence = 0 THEN zeroblob(32)
    ELSE (SELECT events.chain_hash FROM events WHERE events.sequence = projection_snapshots.sequence)
END;

-- A version from before this migration (still running during an upgrade)
-- moves a snapshot's sequence without knowing the column: the chain hash
-- it leaves would belong to the old checkpoint. Such a row's chain hash
-- becomes NULL, "not known" (the server then trusts the log's at the
-- checkpoint, if the log holds it).
CREATE TRIGGER projection_snapshots_chain_unknown AFTER UPDATE OF sequence ON projection_snapshots
WHEN NEW.sequence IS NOT OLD.sequence AND NEW.chain_hash IS OLD.chain_hash
BEGIN
    UPDATE projection_snapshots SET chain_hash = NULL WHERE name = NEW.name;
END;

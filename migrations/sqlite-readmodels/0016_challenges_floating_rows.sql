-- The deployment challenges taken (issue 18 item 2): a challenge signed
-- once is refused by every process sharing this database, not only by the
-- one that took it. Rows are deleted once their challenge expired.
CREATE TABLE IF NOT EXISTS deployment_challenges_used (
    challenge_id BLOB PRIMARY KEY,
    expires_at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deployment_challenges_used_expiry ON deployment_challenges_used (expires_at_us);

-- Floating deployments in rm_deployments (issue 18 item 2), with the end of
-- the lease their last heartbeat got. The licenses projection starts again
-- from the log's first record to write their rows (its runner re-applies
-- it at the next start, before the node is ready).
ALTER TABLE rm_deployments ADD COLUMN floating INTEGER NOT NULL DEFAULT 0;
DELETE FROM rm_deployments;
DELETE FROM rm_license_keys;
DELETE FROM rm_licenses;
DELETE FROM readmodel_checkpoints WHERE name = 'licenses-v1';

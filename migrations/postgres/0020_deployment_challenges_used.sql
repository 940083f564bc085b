-- The deployment challenges taken (issue 18 item 2): a challenge signed
-- once is refused by every process sharing this database, not only by the
-- one that took it. Rows are deleted once their challenge expired.
CREATE TABLE IF NOT EXISTS deployment_challenges_used (
    challenge_id BYTEA PRIMARY KEY,
    expires_at_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployment_challenges_used_expiry ON deployment_challenges_used (expires_at_us);

-- Retired usage (issue 16, "usage-v1"): the latest retention run's rule,
-- from its `RetentionApplied` event: usage reports of days before
-- `before`, at or before `up_to_sequence`, are erased from the log and
-- their daily rows deleted. Billing reads it so a retired month is never
-- taken for a month whose usage dropped. One row at most.
CREATE TABLE rm_usage_retired (
    id             BIGINT PRIMARY KEY,
    before         TEXT   NOT NULL,
    up_to_sequence BIGINT NOT NULL
);

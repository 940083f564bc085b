-- The scheduler reads only the supersede windows that are open (issue
-- #13): each license's window end, in microseconds, while it is superseded
-- and not revoked (NULL otherwise), by an index, instead of every license
-- never revoked, which grows with every license ever issued.
ALTER TABLE rm_licenses ADD COLUMN window_ends_at BIGINT;
CREATE INDEX rm_licenses_by_window_end ON rm_licenses (window_ends_at);
DROP INDEX rm_licenses_unrevoked;
-- The rows written before this column have no window end: the licenses
-- projection starts again from the log's first record (its runner
-- re-applies it at the next start, before the node is ready).
DELETE FROM rm_deployments;
DELETE FROM rm_license_keys;
DELETE FROM rm_licenses;
DELETE FROM readmodel_checkpoints WHERE name = 'licenses-v1';

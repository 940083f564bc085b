-- License keys archived by retention (issue 16 item 6): when a license was
-- revoked (µs; the end of its key's validity when revoked), and whether a
-- `LicenseKeysArchived` archived it (left out of the organization's license
-- listings; its key validates as before). The licenses projection starts
-- again from the log's first record to fill them (its runner re-applies it
-- at the next start, before the node is ready).
ALTER TABLE rm_licenses ADD COLUMN IF NOT EXISTS revoked_at BIGINT;
ALTER TABLE rm_licenses ADD COLUMN IF NOT EXISTS archived BOOLEAN NOT NULL DEFAULT FALSE;
DELETE FROM rm_deployments;
DELETE FROM rm_license_keys;
DELETE FROM rm_licenses;
DELETE FROM readmodel_checkpoints WHERE name = 'licenses-v1';

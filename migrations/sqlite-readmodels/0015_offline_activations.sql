-- Air-gapped sites (issue 18 item 1): the license state kept in
-- rm_licenses.state (postcard, not self-describing) gained the air-gapped
-- deployments' license files and last imports. Rows written before cannot
-- be read in the new shape: the licenses projection starts again from the
-- log's first record (its runner re-applies it at the next start, before
-- the node is ready).
DELETE FROM rm_deployments;
DELETE FROM rm_license_keys;
DELETE FROM rm_licenses;
DELETE FROM readmodel_checkpoints WHERE name = 'licenses-v1';

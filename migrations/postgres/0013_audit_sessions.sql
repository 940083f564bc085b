-- The audit index's version 2 ("audit-v2", issue #14): the portal's
-- sign-ins, sign-outs, session revocations, refused links and SSO records
-- are placed under their organization (version 1 attributed them to
-- none). The rows version 1 wrote are emptied and its checkpoint dropped:
-- the audit projection fills again from the log's first record (its
-- runner applies it at the next start, before the node is ready). Every
-- other projection stays where it was.
DELETE FROM rm_audit;
DELETE FROM rm_audit_owners;
DELETE FROM readmodel_checkpoints WHERE name = 'audit-v1';

-- Sign-in by e-mail (issue 14): the users with an address, in any
-- organization, by an index instead of a scan.
CREATE INDEX rm_users_by_email ON rm_users (email, organization_id);

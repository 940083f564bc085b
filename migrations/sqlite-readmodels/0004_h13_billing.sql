-- The scheduler's and the active-subscriptions gauge's reads (issue #13):
-- the live subscriptions by their organizations, and the licenses not
-- revoked (the open supersede windows among them), each by an index so a
-- read never walks what has ended.
CREATE INDEX rm_organizations_by_live_subscription ON rm_organizations (live_subscription);
CREATE INDEX rm_licenses_unrevoked ON rm_licenses (revoked, id);

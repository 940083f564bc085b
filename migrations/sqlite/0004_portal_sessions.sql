-- The customer portal's sessions (issue 14), in the server's database so
-- every node sees them. Only the keyed hash of a session's cookie value is
-- kept. A row is a session that has not ended; sign-out and revocation
-- delete it, and expired rows are deleted as they are found.
CREATE TABLE portal_sessions (
    id              TEXT    PRIMARY KEY,
    token_hash      BLOB    NOT NULL UNIQUE,
    organization_id TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    last_seen_us    INTEGER NOT NULL,
    expires_at_us   INTEGER NOT NULL,
    address         TEXT    NOT NULL,
    user_agent      TEXT    NOT NULL
);
CREATE INDEX portal_sessions_by_user ON portal_sessions (user_id, created_at_us);

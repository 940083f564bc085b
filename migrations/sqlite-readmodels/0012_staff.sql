-- The vendor's staff (issue #15, "staff-v1"): staff users and service
-- tokens from the staff/directory stream, each row encoded; a staff user's
-- e-mail and whether they are active as columns for the console's sign-in.
-- A projection of its own: it fills from sequence 1.
CREATE TABLE rm_staff (
    staff_id BLOB PRIMARY KEY,
    email    TEXT NOT NULL,
    active   INTEGER NOT NULL,
    staff    BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX rm_staff_email ON rm_staff (email);
CREATE TABLE rm_service_tokens (
    token_id BLOB PRIMARY KEY,
    token    BLOB NOT NULL
) WITHOUT ROWID;

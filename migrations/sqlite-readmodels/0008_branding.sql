-- White-label branding (issue #14, "branding-v1"): each organization's
-- current branding (display name, colour, the logo's digest, size and the
-- sequence of the record that holds its bytes), encoded. The logo itself
-- stays in the log. A projection of its own: it fills from sequence 1.
CREATE TABLE rm_branding (
    organization_id BLOB PRIMARY KEY,
    branding        BLOB NOT NULL
) WITHOUT ROWID;

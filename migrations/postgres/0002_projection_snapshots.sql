-- A projection's state as of a sequence: its checkpoint, the digest of the
-- state and the state itself, written together in one statement, so a
-- projection never has a checkpoint without the state that goes with it.
CREATE TABLE projection_snapshots (
    name        TEXT   PRIMARY KEY,
    sequence    BIGINT NOT NULL,
    digest      BYTEA  NOT NULL,
    state       BYTEA  NOT NULL,
    saved_at_us BIGINT NOT NULL
);

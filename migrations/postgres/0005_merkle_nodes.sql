-- The log's Merkle tree: the root of every complete aligned subtree of
-- level >= 8, covering leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE merkle_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA  NOT NULL,
    PRIMARY KEY (level, idx)
);

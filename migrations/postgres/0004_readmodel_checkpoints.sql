-- Read models live beside the log. Each projection's checkpoint: the last
-- sequence it applied and that record's chain hash. A runner moves a
-- checkpoint only with `UPDATE … WHERE name = $n AND sequence = <where it
-- left it>`, in the same transaction as the projection's rows (fencing).
CREATE TABLE readmodel_checkpoints (
    name       TEXT   PRIMARY KEY,
    sequence   BIGINT NOT NULL,
    chain_hash BYTEA  NOT NULL
);

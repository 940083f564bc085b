-- The read models' own database (readmodels.sqlite, beside the log's
-- ledger.sqlite). Each projection's checkpoint: the last sequence it
-- applied and that record's chain hash. A runner moves a checkpoint only
-- with `UPDATE … WHERE name = ? AND sequence = <where it left it>`, in the
-- same transaction as the projection's rows (fencing).
CREATE TABLE readmodel_checkpoints (
    name       TEXT    PRIMARY KEY,
    sequence   INTEGER NOT NULL,
    chain_hash BLOB    NOT NULL
) WITHOUT ROWID;

//! Durable read models: tables that projections keep, beside the log.
//!
//! - [`ReadModelDb`]: on SQLite a file of its own in the data directory
//!   ([`READMODELS_FILE`], beside the log's), so the projector never holds
//!   the log's write lock against the appender; on PostgreSQL the log's own
//!   database, tables beside `events`. Schemas are migrated by sqlx's
//!   migrator: `migrations/sqlite-readmodels/` and the log's
//!   `migrations/postgres/`.
//! - [`Table`], [`Column`], [`Value`], [`Row`]: a read model declares its
//!   tables once; upserts, "add to" counters, deletes, point reads and
//!   ordered scans are generated for both backends from that.
//! - [`Projection`] and [`Runner`]: each projection applies records in
//!   global order into a batch of [`Changes`]; the runner commits every
//!   projection's rows and its checkpoint (sequence and chain hash) in one
//!   transaction, fenced on the previous checkpoint.
//! - [`Rebuild`]: the same applying and committing from records handed
//!   over page by page (a read-only log, an export), into empty read models.
//! - [`Leadership`]: one process at a time runs the projectors.
//! - [`merkle`]: the Merkle tree as stored subtree roots, with proofs.
//! - [`digest`] and [`compare`]: what `replay verify` compares a rebuild with.

use std::path::Path;
use std::sync::Arc;

use domain::record::Hash;

mod batch;
mod digest;
mod leader;
pub mod merkle;
mod postgres;
mod privacy;
mod rebuild;
mod rollback;
mod runner;
mod sqlite;
mod table;

pub use batch::{Changes, ROW_CACHE_ROWS_MAX};
pub use digest::{Difference, TableDigest, compare, digest};
pub use leader::{LEADER_CHECK_INTERVAL, LEADER_LOCK_FILE, LEADER_RETRY_INTERVAL, Leadership};
pub use rebuild::Rebuild;
pub use rollback::{CheckError, check_checkpoints, first_divergence};
pub use runner::{
    Applied, ApplyError, FLUSH_CHANGES_MAX, FLUSH_INTERVAL, FLUSH_RECORDS_MAX, FOLLOW_POLL_INTERVAL, Lagging, Load,
    NOTIFY_CHANNEL, Projection, RUNNER_POLL_INTERVAL, Runner, RunnerError,
};
pub use sqlite::READ_CONNECTIONS_MAX;
pub use table::{Column, ColumnType, Row, Table, Value};

/// The row of `readmodel_checkpoints` that counts purges
/// ([`ReadModelDb::purge_subject`]) in its `sequence`: a runner's commit is
/// fenced on the count it loaded at, as on its checkpoints.
pub const PURGE_FENCE: &str = "~purges";

/// The read models' SQLite file, in the data directory beside the log's.
pub const READMODELS_FILE: &str = "readmodels.sqlite";
/// Connections of the read models' PostgreSQL pool: queries share them
/// with the runner's commits; the log has a pool of its own.
pub const POOL_CONNECTIONS_MAX: u32 = 8;

/// Why the read-model database could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("read-model SQLite error: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("read-model database error: {0}")]
    Postgres(Arc<sqlx::Error>),
    #[error("read-model schema migration failed: {0}")]
    Migration(Arc<sqlx::migrate::MigrateError>),
    /// A programming error: a row that does not fit its table, a table a
    /// projection did not declare, a descriptor the database disagrees with.
    #[error("read-model schema: {0}")]
    Schema(String),
    /// A stored value this version cannot read.
    #[error("read-model row: {0}")]
    Decode(String),
    #[error("read-model file: {0}")]
    Io(Arc<std::io::Error>),
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(error))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        Self::Postgres(Arc::new(error))
    }
}

impl From<std::io::Error> for DbError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(Arc::new(error))
    }
}

/// How far a projection has applied the log: the last sequence and that
/// record's chain hash (0 and the genesis hash before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub chain_hash: Hash,
}

impl Checkpoint {
    pub const START: Self = Self { sequence: 0, chain_hash: store::CHAIN_GENESIS };
}

/// Point reads on a blocking thread, for applies and loads.
pub(crate) trait RowReader {
    fn get(&self, table: &Table, key: &[Value]) -> Result<Option<Row>, DbError>;
}

/// A checkpoint moved forward by a commit, fenced on where it was.
#[derive(Debug, Clone)]
pub(crate) struct Advance {
    pub name: &'static str,
    pub from: u64,
    pub to: Checkpoint,
}

/// Why a commit did not happen; nothing of it was written.
#[derive(Debug, Clone)]
pub(crate) enum CommitError {
    /// A checkpoint was not where this runner left it: another runner
    /// wrote since, so this one is no longer the leader.
    Fenced {
        projection: String,
        expected: u64,
    },
    Db(DbError),
}

impl From<DbError> for CommitError {
    fn from(error: DbError) -> Self {
        Self::Db(error)
    }
}

impl From<rusqlite::Error> for CommitError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Db(error.into())
    }
}

impl From<sqlx::Error> for CommitError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(error.into())
    }
}

/// The read-model database; cheap to clone.
#[derive(Clone)]
pub struct ReadModelDb {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(sqlx::PgPool),
}

impl ReadModelDb {
    /// Opens (creating and migrating) [`READMODELS_FILE`] in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, DbError> {
        Self::open_sqlite_file(&data_dir.join(READMODELS_FILE)).await
    }

    /// Opens (creating and migrating) a read-model file at `path`: a
    /// rebuild's scratch file, say.
    pub async fn open_sqlite_file(path: &Path) -> Result<Self, DbError> {
        Ok(Self { backend: Backend::Sqlite(sqlite::SqliteDb::open(path).await?) })
    }

    /// Opens an existing read-model file to read only (`replay verify`'s
    /// view of the live read models): no migration, no file created or
    /// changed, every write refused. A file without a `-wal` is read as
    /// SQLite's `immutable` file: the caller checks it did not change.
    pub async fn open_sqlite_read_only(path: &Path) -> Result<Self, DbError> {
        Ok(Self { backend: Backend::Sqlite(sqlite::SqliteDb::open_read_only(path).await?) })
    }

    /// Connects to the log's PostgreSQL database in read-only sessions,
    /// without migrating: `replay verify`'s view of the live read models.
    pub async fn open_postgres_read_only(options: sqlx::postgres::PgConnectOptions) -> Result<Self, DbError> {
        Ok(Self { backend: Backend::Postgres(postgres::open_read_only(options).await?) })
    }

    /// Connects to the log's PostgreSQL database and migrates its schema
    /// (the log's migrations, which hold the read models' tables too), so a
    /// process that only reads the read models migrates as well.
    pub async fn open_postgres(options: sqlx::postgres::PgConnectOptions) -> Result<Self, DbError> {
        Ok(Self { backend: Backend::Postgres(postgres::open(options).await?) })
    }

    /// [`ReadModelDb::open_postgres`] on the writable host of `hosts`,
    /// following it after a failover (`store::PgHosts::follow`).
    pub async fn open_postgres_hosts(hosts: &store::PgHosts) -> Result<Self, DbError> {
        let options =
            hosts.writable().await.map_err(|e| DbError::Io(Arc::new(std::io::Error::other(e.to_string()))))?;
        let pool = postgres::open(options).await?;
        hosts.follow(pool.clone());
        Ok(Self { backend: Backend::Postgres(pool) })
    }

    pub(crate) fn dialect(&self) -> table::Dialect {
        match self.backend {
            Backend::Sqlite(_) => table::Dialect::Sqlite,
            Backend::Postgres(_) => table::Dialect::Postgres,
        }
    }

    /// "sqlite" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL pool, for listeners and leadership on the same database.
    pub(crate) fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// Runs a query written with `$1`-style placeholders on either backend
    /// (SQLite gets `?1`), returning every row. Write portable SQL: no
    /// `::casts`; a NULL parameter binds as a NULL integer on PostgreSQL,
    /// so test for NULL with `IS NULL` instead. Booleans come back from
    /// SQLite as 0 or 1, which [`Row::bool`] reads.
    pub async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match &self.backend {
            Backend::Sqlite(db) => db.query(table::sqlite_placeholders(sql), params).await,
            Backend::Postgres(pool) => postgres::query(pool, sql, params).await,
        }
    }

    /// Like [`ReadModelDb::query`], for at most one row.
    pub async fn query_opt(&self, sql: &str, params: Vec<Value>) -> Result<Option<Row>, DbError> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() > 1 {
            return Err(DbError::Decode(format!("{} rows where at most one was expected", rows.len())));
        }
        Ok(rows.pop())
    }

    /// Runs SQL statements without parameters, as one transaction: for
    /// tests and tools. Read models keep their schema in migrations and
    /// write only through a [`Runner`].
    pub async fn execute_script(&self, sql: &str) -> Result<(), DbError> {
        match &self.backend {
            Backend::Sqlite(db) => db.execute_script(sql.to_owned()).await,
            Backend::Postgres(pool) => postgres::execute_script(pool, sql).await,
        }
    }

    /// The stored checkpoints of `names`, in order; `None` for a name that
    /// has none yet.
    pub async fn checkpoints(&self, names: &[&str]) -> Result<Vec<Option<Checkpoint>>, DbError> {
        pick_checkpoints(self.query(CHECKPOINTS_SQL, Vec::new()).await?, names)
    }

    /// A consistent view of the read models as they are now, however a
    /// runner moves them on meanwhile: what `replay verify` compares a
    /// rebuild with on a live server's database.
    pub async fn snapshot(&self) -> Result<Snapshot, DbError> {
        Ok(Snapshot(match &self.backend {
            Backend::Sqlite(db) => SnapshotBackend::Sqlite(db.snapshot().await?),
            Backend::Postgres(pool) => SnapshotBackend::Postgres(postgres::snapshot(pool).await?),
        }))
    }

    /// The lowest checkpoint among `names` (0 if one has none): the
    /// sequence every one of them includes.
    pub async fn applied(&self, names: &[&str]) -> Result<u64, DbError> {
        Ok(self.checkpoints(names).await?.iter().map(|c| c.map_or(0, |c| c.sequence)).min().unwrap_or(0))
    }

    /// Makes sure every name has a checkpoint row (at the start), so every
    /// later write of it is a fenced update.
    pub(crate) async fn ensure_checkpoints(&self, names: &[&str]) -> Result<(), DbError> {
        for name in names {
            self.query(
                "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES ($1, 0, $2) \
                 ON CONFLICT (name) DO NOTHING",
                vec![(*name).into(), Checkpoint::START.chain_hash.into()],
            )
            .await?;
        }
        Ok(())
    }

    /// Checks that each table exists with the descriptor's columns: a
    /// migration and a descriptor that disagree stop the runner at start.
    pub(crate) async fn probe(&self, table: &Table) -> Result<(), DbError> {
        let sql = format!("SELECT {} FROM {} WHERE 1 = 0", table.column_list(), table.name);
        self.query(&sql, Vec::new())
            .await
            .map(|_| ())
            .map_err(|error| DbError::Schema(format!("table {} does not match its descriptor: {error}", table.name)))
    }

    /// An explicit rebuild's first step: deletes every row of a
    /// projection's tables and moves its checkpoint back to the start, in
    /// one transaction. Never done on the runner's own initiative.
    pub async fn reset(&self, projection: &str, tables: &[Table]) -> Result<(), DbError> {
        let mut script: String = tables.iter().map(|t| format!("DELETE FROM {};\n", t.name)).collect();
        let name = projection.replace('\'', "''");
        script.push_str(&format!(
            "INSERT INTO readmodel_checkpoints (name, sequence, chain_hash) VALUES ('{name}', 0, {genesis}) \
             ON CONFLICT (name) DO UPDATE SET sequence = 0, chain_hash = excluded.chain_hash;",
            genesis = match self.dialect() {
                table::Dialect::Sqlite => format!("X'{}'", Checkpoint::START.chain_hash.to_hex()),
                table::Dialect::Postgres => format!("'\\x{}'::bytea", Checkpoint::START.chain_hash.to_hex()),
            }
        ));
        self.execute_script(&script).await
    }

    /// Every row of `table` in primary-key order (the same order on both
    /// backends), fetched as it is consumed: memory stays bounded.
    pub(crate) fn scan(&self, table: Table) -> futures::stream::BoxStream<'static, Result<Row, DbError>> {
        match &self.backend {
            Backend::Sqlite(db) => db.scan(table),
            Backend::Postgres(pool) => postgres::scan(pool.clone(), table),
        }
    }

    /// Point reads for a blocking thread (applies and loads).
    pub(crate) fn blocking_reader(&self) -> Box<dyn RowReader + Send + Sync> {
        match &self.backend {
            Backend::Sqlite(db) => Box::new(db.blocking_reader()),
            Backend::Postgres(pool) => {
                Box::new(postgres::BlockingReader { pool: pool.clone(), handle: tokio::runtime::Handle::current() })
            }
        }
    }

    /// Writes a batch and moves the checkpoints in one transaction; the
    /// checkpoints first, each only if it is still where this runner left
    /// it. On PostgreSQL it also notifies [`NOTIFY_CHANNEL`] on commit.
    pub(crate) async fn commit(&self, batch: Arc<batch::Batch>, advances: Vec<Advance>) -> Result<(), CommitError> {
        match &self.backend {
            Backend::Sqlite(db) => db.commit(batch, advances).await,
            Backend::Postgres(pool) => postgres::commit(pool, &batch, &advances).await,
        }
    }
}

/// Every checkpoint row: a few dozen at most, one per projection.
const CHECKPOINTS_SQL: &str = "SELECT name, sequence, chain_hash FROM readmodel_checkpoints";

/// The checkpoints of `names`, in order, from [`CHECKPOINTS_SQL`]'s rows.
fn pick_checkpoints(rows: Vec<Row>, names: &[&str]) -> Result<Vec<Option<Checkpoint>>, DbError> {
    let mut found = vec![None; names.len()];
    for row in rows {
        let name = row.text(0)?;
        if let Some(at) = names.iter().position(|n| *n == name) {
            found[at] = Some(Checkpoint { sequence: row.uint(1)?, chain_hash: row.hash(2)? });
        }
    }
    Ok(found)
}

/// A read-only view of the read models fixed when it was taken
/// ([`ReadModelDb::snapshot`]): a read transaction held open on a
/// connection of its own. Hold it briefly on a live server: while it is
/// open, SQLite's `-wal` cannot be folded past it, and PostgreSQL keeps
/// the row versions it sees.
pub struct Snapshot(SnapshotBackend);

enum SnapshotBackend {
    Sqlite(sqlite::SqliteSnapshot),
    Postgres(postgres::PgSnapshot),
}

impl Snapshot {
    /// The checkpoints of `names` in this view, in order.
    pub async fn checkpoints(&self, names: &[&str]) -> Result<Vec<Option<Checkpoint>>, DbError> {
        let rows = match &self.0 {
            SnapshotBackend::Sqlite(db) => db.query(CHECKPOINTS_SQL.to_owned(), Vec::new()).await?,
            SnapshotBackend::Postgres(db) => db.query(CHECKPOINTS_SQL, Vec::new()).await?,
        };
        pick_checkpoints(rows, names)
    }
}

/// What can be read table by table in key order: a database, or one
/// snapshot of it. [`digest`] and [`compare`] read through it.
pub trait Scan {
    fn scan_table(&self, table: Table) -> futures::stream::BoxStream<'static, Result<Row, DbError>>;
}

impl Scan for ReadModelDb {
    fn scan_table(&self, table: Table) -> futures::stream::BoxStream<'static, Result<Row, DbError>> {
        self.scan(table)
    }
}

impl Scan for Snapshot {
    fn scan_table(&self, table: Table) -> futures::stream::BoxStream<'static, Result<Row, DbError>> {
        match &self.0 {
            SnapshotBackend::Sqlite(db) => db.scan(table),
            SnapshotBackend::Postgres(db) => db.scan(table),
        }
    }
}

//! The PostgreSQL backend, for production and several API processes.
//!
//! Every append locks the head row (`SELECT … FOR UPDATE`), so appends
//! from any number of processes are serialized into one linear chain.
//! PostgreSQL's default `synchronous_commit = on` makes a commit durable
//! before it returns.
//!
//! In the steady state a commit is one round trip (issue 19): the writer
//! ([`Writer`]) plans the batch with [`plan::plan`] on what it remembers (the
//! head after its last commit, a bounded LRU of stream revisions, every
//! idempotency key assumed unknown) and sends the plan in one autocommit
//! statement to `ledger_append` (`migrations/postgres/0025`), which, under
//! the head lock, checks every assumption exactly and writes the batch, or
//! writes nothing and answers the actual head, revisions and known keys; the
//! writer re-plans on those and calls again, up to [`APPEND_ATTEMPTS_MAX`]
//! times. With nothing remembered (the first commit, and after any failure)
//! or past that bound, the locking transaction (`locked`: `BEGIN`, the head
//! lock as its own statement, the lookups, the write, `COMMIT`) reads the
//! exact state under the lock and always makes progress.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use domain::record::{Hash, Record};
use domain::{StreamId, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};

use hashlink::LruCache;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use crate::metrics::LogMetrics;
use crate::plan::{self, KnownCommand};
use crate::row::{INSERT_COLUMNS, RECORD_COLUMNS, RECORD_FROM, StoredRecord, records};
use crate::writer::{CommitError, Outcomes, Slice};
use crate::{
    Appended, Command, Head, Rejection, Snapshot, SnapshotCheckpoint, StoreError, hash_column, signed, unsigned,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Connections of one process's pool (the writer uses one at a time).
pub const POOL_CONNECTIONS_MAX: u32 = 16;
/// How long taking a connection from the pool may wait, new connection
/// attempts included. While PostgreSQL is down, sqlx keeps retrying a
/// refused connection until this passes: a request then fails (503 with
/// `Retry-After`) within this time instead of hanging for sqlx's 30 s.
pub const POOL_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The pool every connection of the log is taken from.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().max_connections(POOL_CONNECTIONS_MAX).acquire_timeout(POOL_ACQUIRE_TIMEOUT)
}

pub(crate) async fn open(options: PgConnectOptions) -> Result<PgPool, StoreError> {
    let pool = pool_options().connect_with(options).await?;
    // sqlx holds an advisory lock while migrating, so processes starting
    // together do not race.
    MIGRATOR.run(&pool).await.map_err(|e| StoreError::Migration(std::sync::Arc::new(e)))?;
    Ok(pool)
}

/// Connects to read only (`crate::read_only`): no migration, and every
/// session read-only on the server's side, so nothing can be written even
/// by mistake; the schema is checked against this version's migrations.
pub(crate) async fn open_read_only(options: PgConnectOptions) -> Result<PgPool, StoreError> {
    let options = options.options([("default_transaction_read_only", "on")]);
    let pool = pool_options().connect_with(options).await?;
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&pool).await?;
    let what = format!("the PostgreSQL schema {schema}");
    if !table_exists(&pool, "_sqlx_migrations").await? {
        return Err(StoreError::Schema(format!(
            "{what} holds no ledger schema (no _sqlx_migrations table): it is not a ledger's log"
        )));
    }
    let mut missing = Vec::new();
    for table in crate::read_only::TABLES_READ {
        if !table_exists(&pool, table).await? {
            missing.push(table);
        }
    }
    let applied = applied_migrations(&pool).await?;
    crate::read_only::check_schema(&what, &applied, MIGRATOR.iter(), &missing)?;
    Ok(pool)
}

/// Whether `table` is in the session's search path.
async fn table_exists(pool: &PgPool, table: &str) -> Result<bool, StoreError> {
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text").bind(table).fetch_one(pool).await?;
    Ok(found.is_some())
}

async fn applied_migrations(pool: &PgPool) -> Result<Vec<crate::read_only::Applied>, StoreError> {
    let rows = sqlx::query("SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await?;
    let applied = rows.iter().map(|row| {
        Ok(crate::read_only::Applied {
            version: row.try_get(0)?,
            description: row.try_get(1)?,
            success: row.try_get(2)?,
            checksum: row.try_get(3)?,
        })
    });
    Ok(applied.collect::<Result<Vec<_>, sqlx::Error>>()?)
}

/// Streams whose revision the writer remembers between commits, the most
/// recently appended to first. A stream not remembered is assumed new
/// (revision 0); if it is not, the database refuses the plan and answers
/// its revision, at the cost of one more round trip.
pub const STREAM_REVISIONS_CACHED_MAX: usize = 16_384;
/// Calls of `ledger_append` for one batch that the database may refuse
/// (another process moved the head or a stream in between) before the
/// writer falls back to the locking transaction, which always makes progress.
pub const APPEND_ATTEMPTS_MAX: usize = 3;

/// The PostgreSQL side of the writer task: the connection it appends on
/// and what it remembers of the log between commits.
pub(crate) struct Writer {
    pool: PgPool,
    /// Held between commits, so the pool's check of a connection taken
    /// from it (a round trip) is not paid on every commit.
    connection: Option<PoolConnection<Postgres>>,
    /// `None` until a locking transaction has read the head, and again
    /// after any failure.
    cached: Option<Cached>,
}

/// What the writer believes of the log: exact unless another process
/// appended since, which `ledger_append` detects.
struct Cached {
    head: Head,
    revisions: LruCache<StreamId, u64>,
}

/// What one plan is made on: the head, the revision of every stream of the
/// batch, the keys known to be used and those assumed not to be.
struct Assumed {
    head: Head,
    revisions: HashMap<StreamId, u64>,
    known: HashMap<String, KnownCommand>,
    unknown_keys: Vec<String>,
}

impl Assumed {
    /// The cache's view of a batch: its streams' remembered revisions (0 if
    /// not remembered) and none of its keys known.
    fn from_cache(cached: &mut Cached, commands: &[Command]) -> Self {
        let revisions = commands
            .iter()
            .map(|c| (c.stream_id.clone(), cached.revisions.get(&c.stream_id).copied().unwrap_or(0)))
            .collect();
        Self { head: cached.head, revisions, known: HashMap::new(), unknown_keys: keys(commands) }
    }
}

/// The idempotency keys of a batch, each once.
fn keys(commands: &[Command]) -> Vec<String> {
    let mut keys: Vec<String> = commands.iter().filter_map(|c| c.idempotency.as_ref().map(|i| i.key.clone())).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl Writer {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool, connection: None, cached: None }
    }

    /// Commits a batch: planned on the cached state and sent in one
    /// statement, re-planned on the actual state the database answers if it
    /// refuses, and after [`APPEND_ATTEMPTS_MAX`] refusals (or with nothing
    /// cached) in the locking transaction. Any failure drops the cached
    /// state and lets the connection go: back to the pool (whose check and
    /// host follower decide if it is used again) when the server answered
    /// the error, closed when it did not (its state is unknown).
    pub(crate) async fn commit(&mut self, slice: Slice<'_>, now: Timestamp, metrics: &LogMetrics) -> Outcomes {
        let answer = self.try_commit(slice, now, metrics).await;
        if let Err(failure) = &answer {
            self.cached = None;
            let connection = self.connection.take();
            if !answered_by_server(&failure.error) {
                drop(connection.map(PoolConnection::detach));
            }
        }
        answer
    }

    async fn try_commit(&mut self, slice: Slice<'_>, now: Timestamp, metrics: &LogMetrics) -> Outcomes {
        let before = |error: StoreError| CommitError { error, at_commit: false };
        if self.connection.is_none() {
            self.connection = Some(self.pool.acquire().await.map_err(|e| before(e.into()))?);
        }
        let connection = self.connection.as_mut().expect("connection just taken");
        let (commands, groups, salts) = slice;
        if let Some(cached) = &mut self.cached {
            let mut assumed = Assumed::from_cache(cached, commands);
            for _ in 0..APPEND_ATTEMPTS_MAX {
                let plan = plan::plan(
                    assumed.head,
                    assumed.known.clone(),
                    assumed.revisions.clone(),
                    commands,
                    groups,
                    salts,
                    now,
                );
                metrics.append_statements.inc();
                match append(connection, &assumed, &plan).await {
                    Ok(None) => {
                        cached.remember(plan.head, &assumed.revisions, commands, &plan.outcomes);
                        return Ok(plan.outcomes);
                    }
                    Ok(Some(mut actual)) => {
                        cached.remember(actual.head, &actual.revisions, &[], &[]);
                        // A known key's row never changes: those found before stay known.
                        actual.known.extend(assumed.known);
                        actual.unknown_keys =
                            keys(commands).into_iter().filter(|k| !actual.known.contains_key(k)).collect();
                        assumed = actual;
                    }
                    // One autocommit statement: an error the server answered
                    // committed nothing; a lost connection may have committed.
                    Err(error) => {
                        let at_commit = !answered_by_server(&error);
                        return Err(CommitError { error, at_commit });
                    }
                }
            }
        }
        let (outcomes, head, revisions) = locked(connection, slice, now, metrics).await?;
        let cached =
            self.cached.get_or_insert_with(|| Cached { head, revisions: LruCache::new(STREAM_REVISIONS_CACHED_MAX) });
        cached.remember(head, &revisions, commands, &outcomes);
        Ok(outcomes)
    }
}

impl Cached {
    /// Remembers `head` and the streams' revisions: `revisions` as they
    /// were before `outcomes`, then each command's appended revision.
    fn remember(
        &mut self,
        head: Head,
        revisions: &HashMap<StreamId, u64>,
        commands: &[Command],
        outcomes: &[Result<Appended, Rejection>],
    ) {
        self.head = head;
        for (stream, revision) in revisions {
            self.revisions.insert(stream.clone(), *revision);
        }
        for (command, outcome) in commands.iter().zip(outcomes) {
            if let Ok(appended) = outcome
                && !appended.replayed
            {
                self.revisions.insert(command.stream_id.clone(), appended.stream_revision);
            }
        }
    }
}

/// Whether the server answered the error (a SQLSTATE): then a statement
/// outside a transaction committed nothing.
fn answered_by_server(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(error) if matches!(**error, sqlx::Error::Database(_)))
}

/// Today's locking transaction: the head locked and read, the lookups, the
/// plan and its write, in five round trips. Returns the outcomes, the head
/// after the batch and the revisions of the batch's streams before it.
async fn locked(
    connection: &mut PgConnection,
    (commands, groups, salts): Slice<'_>,
    now: Timestamp,
    metrics: &LogMetrics,
) -> Result<(Vec<Result<Appended, Rejection>>, Head, HashMap<StreamId, u64>), CommitError> {
    let before = |error: StoreError| CommitError { error, at_commit: false };
    metrics.append_statements.inc();
    let mut tx = connection.begin().await.map_err(|e| before(e.into()))?;
    let planned = async {
        // The lock is its own statement: under READ COMMITTED each statement
        // sees what was committed when it started, so the lookups must start
        // after the lock is held, or they could miss another process's append.
        metrics.append_statements.inc();
        let row = sqlx::query("SELECT sequence, chain_hash, recorded_at_us FROM log_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let head = head_from_row(&row)?;
        metrics.append_statements.inc();
        let (known, mut revisions) = lookups(&mut tx, commands).await?;
        let plan = plan::plan(head, known, revisions.clone(), commands, groups, salts, now);
        if !plan.records.is_empty() {
            metrics.append_statements.inc();
        }
        write(&mut tx, &plan).await?;
        for command in commands {
            revisions.entry(command.stream_id.clone()).or_insert(0);
        }
        Ok::<_, StoreError>((plan.outcomes, plan.head, revisions))
    }
    .await;
    // On an error the transaction is rolled back when `tx` is dropped.
    let planned = planned.map_err(before)?;
    metrics.append_statements.inc();
    tx.commit().await.map_err(|e| CommitError { error: e.into(), at_commit: true })?;
    Ok(planned)
}

fn head_from_row(row: &PgRow) -> Result<Head, StoreError> {
    let sequence = unsigned(0, "head sequence", row.try_get(0)?)?;
    Ok(Head {
        sequence,
        chain_hash: hash_column(sequence, "head chain hash", row.try_get::<&[u8], _>(1)?)?,
        recorded_at: Timestamp::from_micros(row.try_get(2)?),
    })
}

/// The batch's known idempotency keys and its streams' revisions, in one
/// round trip. A scalar max per stream is one index seek; `max … GROUP BY`
/// would scan every event of each stream.
async fn lookups(
    connection: &mut PgConnection,
    commands: &[Command],
) -> Result<(HashMap<String, KnownCommand>, HashMap<StreamId, u64>), StoreError> {
    let keys: Vec<&str> = commands.iter().filter_map(|c| c.idempotency.as_ref().map(|i| i.key.as_str())).collect();
    let mut streams: Vec<&str> = commands.iter().map(|c| c.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let rows = sqlx::query(
        "SELECT true, idempotency_key, digest, stream_id, first_sequence, last_sequence, stream_revision \
         FROM commands WHERE idempotency_key = ANY($1) \
         UNION ALL \
         SELECT false, wanted, NULL, NULL, NULL, NULL, (SELECT max(stream_revision) FROM events WHERE stream_id = wanted) \
         FROM unnest($2::text[]) AS wanted",
    )
    .bind(&keys)
    .bind(&streams)
    .fetch_all(connection)
    .await?;
    let (mut known, mut revisions) = (HashMap::new(), HashMap::new());
    for row in &rows {
        let stream = |index| {
            StreamId::new(row.try_get::<String, _>(index)?)
                .map_err(|e| StoreError::Corrupt { sequence: 0, what: e.to_string() })
        };
        if row.try_get::<bool, _>(0)? {
            let first_sequence = unsigned(0, "command first sequence", row.try_get(4)?)?;
            let command = KnownCommand {
                digest: hash_column(first_sequence, "command digest", row.try_get::<&[u8], _>(2)?)?,
                stream_id: stream(3)?,
                appended: Appended {
                    first_sequence,
                    last_sequence: unsigned(first_sequence, "command last sequence", row.try_get(5)?)?,
                    stream_revision: unsigned(first_sequence, "command stream revision", row.try_get(6)?)?,
                    replayed: false,
                },
            };
            known.insert(row.try_get(1)?, command);
        } else if let Some(revision) = row.try_get::<Option<i64>, _>(6)? {
            revisions.insert(stream(1)?, unsigned(0, "stream revision", revision)?);
        }
    }
    Ok((known, revisions))
}

/// The one statement of a commit: `ledger_append` (migration 0025) checks
/// under the head lock that `assumed` holds and writes `plan`. `None` when
/// it was written; else the actual state, nothing written.
async fn append(
    connection: &mut PgConnection,
    assumed: &Assumed,
    plan: &plan::Plan,
) -> Result<Option<Assumed>, StoreError> {
    let placeholders: Vec<String> = (1..=APPEND_PARAMETERS).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT * FROM ledger_append({})", placeholders.join(", "));
    let (streams, revisions): (Vec<&str>, Vec<i64>) =
        assumed.revisions.iter().map(|(stream, revision)| (stream.as_str(), signed(*revision))).unzip();
    let query = sqlx::query(&sql)
        .bind(signed(assumed.head.sequence))
        .bind(assumed.head.chain_hash.as_bytes().as_slice())
        .bind(assumed.head.recorded_at.as_micros())
        .bind(streams)
        .bind(revisions)
        .bind(&assumed.unknown_keys);
    let rows = bind_plan(query, plan).fetch_all(&mut *connection).await?;
    match rows.first() {
        Some(row) if row.try_get::<&str, _>(0)? == "appended" => Ok(None),
        _ => refused(&rows).map(Some),
    }
}

/// Parameters of `ledger_append`.
const APPEND_PARAMETERS: usize = 32;

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds what `plan` writes: the records' columns, the command rows' and
/// the new head, in `ledger_append`'s order (after its first six) and the
/// locking transaction's write.
fn bind_plan<'q>(query: PgQuery<'q>, plan: &'q plan::Plan) -> PgQuery<'q> {
    let records = &plan.records;
    let commands = &plan.commands;
    let bytes = |f: &dyn Fn(&Record) -> Vec<u8>| records.iter().map(f).collect::<Vec<_>>();
    let int = |f: &dyn Fn(&Record) -> i64| records.iter().map(f).collect::<Vec<_>>();
    query
        .bind(int(&|r| signed(r.header.sequence)))
        .bind(records.iter().map(|r| r.header.event_id.0).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.header.stream_id.as_str()).collect::<Vec<_>>())
        .bind(int(&|r| signed(r.header.stream_revision)))
        .bind(records.iter().map(|r| r.header.event_type.as_str()).collect::<Vec<_>>())
        .bind(int(&|r| i64::from(r.header.schema_version)))
        .bind(int(&|r| r.header.occurred_at.as_micros()))
        .bind(int(&|r| r.header.recorded_at.as_micros()))
        .bind(records.iter().map(|r| r.header.idempotency_key.as_deref()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.metadata.as_deref()).collect::<Vec<_>>())
        .bind(bytes(&|r| r.metadata_hash.0.to_vec()))
        .bind(records.iter().map(|r| r.payload.as_deref()).collect::<Vec<_>>())
        .bind(bytes(&|r| r.payload_hash.0.to_vec()))
        .bind(bytes(&|r| r.leaf_hash.0.to_vec()))
        .bind(bytes(&|r| r.chain_hash.0.to_vec()))
        .bind(records.iter().map(|r| i32::from(r.format)).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.salt.as_ref().map(|salt| salt.to_vec())).collect::<Vec<_>>())
        .bind(commands.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>())
        .bind(commands.iter().map(|(_, c)| c.digest.0.to_vec()).collect::<Vec<_>>())
        .bind(commands.iter().map(|(_, c)| c.stream_id.as_str()).collect::<Vec<_>>())
        .bind(commands.iter().map(|(_, c)| signed(c.appended.first_sequence)).collect::<Vec<_>>())
        .bind(commands.iter().map(|(_, c)| signed(c.appended.last_sequence)).collect::<Vec<_>>())
        .bind(commands.iter().map(|(_, c)| signed(c.appended.stream_revision)).collect::<Vec<_>>())
        .bind(signed(plan.head.sequence))
        .bind(plan.head.chain_hash.as_bytes().to_vec())
        .bind(plan.head.recorded_at.as_micros())
}

/// The actual state `ledger_append` answered when it refused a plan: the
/// head, the revision of every stream asked about and the known rows of
/// the keys asked about (keys not among them are unknown).
fn refused(rows: &[PgRow]) -> Result<Assumed, StoreError> {
    let mut head = None;
    let (mut revisions, mut known) = (HashMap::new(), HashMap::new());
    for row in rows {
        let name = || row.try_get::<Option<String>, _>(1);
        let stream =
            |name: String| StreamId::new(name).map_err(|e| StoreError::Corrupt { sequence: 0, what: e.to_string() });
        match row.try_get::<&str, _>(0)? {
            "head" => {
                let sequence = unsigned(0, "head sequence", row.try_get(4)?)?;
                head = Some(Head {
                    sequence,
                    chain_hash: hash_column(sequence, "head chain hash", row.try_get::<&[u8], _>(2)?)?,
                    recorded_at: Timestamp::from_micros(row.try_get(7)?),
                });
            }
            "stream" => {
                let revision = unsigned(0, "stream revision", row.try_get::<Option<i64>, _>(6)?.unwrap_or(0))?;
                revisions.insert(stream(name()?.unwrap_or_default())?, revision);
            }
            _ => {
                let first_sequence = unsigned(0, "command first sequence", row.try_get(4)?)?;
                let command = KnownCommand {
                    digest: hash_column(first_sequence, "command digest", row.try_get::<&[u8], _>(2)?)?,
                    stream_id: stream(row.try_get(3)?)?,
                    appended: Appended {
                        first_sequence,
                        last_sequence: unsigned(first_sequence, "command last sequence", row.try_get(5)?)?,
                        stream_revision: unsigned(first_sequence, "command stream revision", row.try_get(6)?)?,
                        replayed: false,
                    },
                };
                known.insert(name()?.unwrap_or_default(), command);
            }
        }
    }
    let head =
        head.ok_or_else(|| StoreError::Corrupt { sequence: 0, what: "ledger_append answered no head".into() })?;
    Ok(Assumed { head, revisions, known, unknown_keys: Vec::new() })
}

/// Writes a batch's records, command rows and new head in one statement:
/// columns travel as arrays, so any batch size is the same statement.
async fn write(connection: &mut PgConnection, plan: &plan::Plan) -> Result<(), StoreError> {
    if plan.records.is_empty() {
        return Ok(());
    }
    let query = format!(
        "WITH appended AS ( \
           INSERT INTO events ({INSERT_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], \
             $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bytea[], \
             $11::bytea[], $12::bytea[], $13::bytea[], $14::bytea[], $15::bytea[], $16::integer[], $17::bytea[])), \
         keyed AS ( \
           INSERT INTO commands (idempotency_key, digest, stream_id, first_sequence, last_sequence, stream_revision) \
           SELECT * FROM UNNEST($18::text[], $19::bytea[], $20::text[], $21::bigint[], $22::bigint[], $23::bigint[])) \
         UPDATE log_head SET sequence = $24, chain_hash = $25, recorded_at_us = $26 WHERE id = 1"
    );
    bind_plan(sqlx::query(&query), plan).execute(&mut *connection).await?;
    Ok(())
}

pub(crate) async fn save_snapshot(pool: &PgPool, snapshot: Snapshot, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO projection_snapshots (name, sequence, digest, state, saved_at_us, chain_hash) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, digest = excluded.digest, \
         state = excluded.state, saved_at_us = excluded.saved_at_us, chain_hash = excluded.chain_hash \
         WHERE excluded.sequence > projection_snapshots.sequence",
    )
    .bind(&snapshot.name)
    .bind(signed(snapshot.sequence))
    .bind(snapshot.digest.as_bytes().as_slice())
    .bind(&snapshot.state)
    .bind(now.as_micros())
    .bind(snapshot.chain_hash.map(|hash| hash.0.to_vec()))
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn load_snapshot(pool: &PgPool, name: &str) -> Result<Option<Snapshot>, StoreError> {
    let row = sqlx::query("SELECT sequence, digest, state, chain_hash FROM projection_snapshots WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.map(|row| {
        let sequence = unsigned(0, "snapshot sequence", row.try_get(0)?)?;
        Ok(Snapshot {
            name: name.to_owned(),
            sequence,
            chain_hash: snapshot_chain(sequence, &row, 3)?,
            digest: hash_column(sequence, "snapshot digest", row.try_get::<&[u8], _>(1)?)?,
            state: row.try_get(2)?,
        })
    })
    .transpose()
}

fn snapshot_chain(sequence: u64, row: &PgRow, index: usize) -> Result<Option<Hash>, StoreError> {
    row.try_get::<Option<&[u8]>, _>(index)?.map(|bytes| hash_column(sequence, "snapshot chain hash", bytes)).transpose()
}

pub(crate) async fn snapshot_checkpoints(pool: &PgPool) -> Result<Vec<SnapshotCheckpoint>, StoreError> {
    let rows = sqlx::query("SELECT name, sequence, chain_hash FROM projection_snapshots ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let sequence = unsigned(0, "snapshot sequence", row.try_get(1)?)?;
            Ok(SnapshotCheckpoint { name: row.try_get(0)?, sequence, chain_hash: snapshot_chain(sequence, row, 2)? })
        })
        .collect()
}

pub(crate) async fn delete_snapshot(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM projection_snapshots WHERE name = $1").bind(name).execute(pool).await?;
    Ok(())
}

/// The advisory lock key of a lock name in a schema: 64 bits of a
/// domain-separated hash, so it cannot meet sqlx's migration lock or
/// another program's. Advisory locks belong to the whole database, so the
/// schema is in the key: the logs of two schemas are two ledgers, and one
/// ledger's Stripe sync or scheduler must not wait for the other's (v1
/// keyed the name alone, and test servers on one database took turns).
fn lock_key(schema: &str, name: &str) -> i64 {
    let hash = blake3::Hasher::new_derive_key("ledger 2026-12-01 advisory lock v2")
        .update(&(schema.len() as u64).to_le_bytes())
        .update(schema.as_bytes())
        .update(name.as_bytes())
        .finalize();
    i64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
}

/// A connection of its own (taken out of the pool, so the pool neither
/// reuses nor closes it) that holds the session-level advisory lock of
/// `name` in the connection's schema.
pub(crate) async fn try_lock(pool: &PgPool, name: &str) -> Result<Option<PgConnection>, StoreError> {
    let mut connection = pool.acquire().await?.detach();
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&mut connection).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(&schema, name))
        .fetch_one(&mut connection)
        .await?;
    Ok(locked.then_some(connection))
}

/// Whether the session still answers (and so still holds its locks).
pub(crate) async fn holds_lock(connection: &mut PgConnection) -> bool {
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), sqlx::query("SELECT 1").execute(connection));
    matches!(answer.await, Ok(Ok(_)))
}

pub(crate) async fn find_idempotency_key(pool: &PgPool, key: &str) -> Result<Option<(Hash, Appended)>, StoreError> {
    let row = sqlx::query(
        "SELECT digest, first_sequence, last_sequence, stream_revision FROM commands WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        let first_sequence = unsigned(0, "command first sequence", row.try_get(1)?)?;
        Ok((
            hash_column(first_sequence, "command digest", row.try_get::<&[u8], _>(0)?)?,
            Appended {
                first_sequence,
                last_sequence: unsigned(first_sequence, "command last sequence", row.try_get(2)?)?,
                stream_revision: unsigned(first_sequence, "command stream revision", row.try_get(3)?)?,
                replayed: true,
            },
        ))
    })
    .transpose()
}

pub(crate) async fn stream_revision(pool: &PgPool, stream_id: &StreamId) -> Result<u64, StoreError> {
    let revision: Option<i64> = sqlx::query_scalar("SELECT max(stream_revision) FROM events WHERE stream_id = $1")
        .bind(stream_id.as_str())
        .fetch_one(pool)
        .await?;
    unsigned(0, "stream revision", revision.unwrap_or(0))
}

pub(crate) async fn head(pool: &PgPool) -> Result<Head, StoreError> {
    let row =
        sqlx::query("SELECT sequence, chain_hash, recorded_at_us FROM log_head WHERE id = 1").fetch_one(pool).await?;
    head_from_row(&row)
}

pub(crate) async fn read_page(
    pool: &PgPool,
    range: RangeInclusive<u64>,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let rows: Vec<StoredRecord> = sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE e.sequence >= $1 AND e.sequence <= $2 \
         ORDER BY e.sequence LIMIT $3"
    ))
    .bind(signed(*range.start()))
    .bind(signed((*range.end()).min(i64::MAX as u64)))
    .bind(signed(limit as u64))
    .fetch_all(pool)
    .await?;
    records(rows)
}

pub(crate) async fn read_stream(
    pool: &PgPool,
    stream_id: &StreamId,
    from_revision: u64,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let rows: Vec<StoredRecord> = sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE e.stream_id = $1 AND e.stream_revision >= $2 \
         ORDER BY e.stream_revision LIMIT $3"
    ))
    .bind(stream_id.as_str())
    .bind(signed(from_revision))
    .bind(signed(limit as u64))
    .fetch_all(pool)
    .await?;
    records(rows)
}

/// Erases `rows` as sanctioned by the record at `by`
/// ([`crate::EventLog::erase`]) in one transaction: checks that `by` is in
/// the log, writes the `erasures` rows of records not yet erased (a
/// concurrent erasure of the same record waits, then skips it), then sets
/// those records' erasable columns to NULL, which the guard now allows.
pub(crate) async fn erase(pool: &PgPool, by: u64, rows: &[crate::ErasedRow]) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let present: Option<i64> = sqlx::query_scalar("SELECT sequence FROM events WHERE sequence = $1")
        .bind(signed(by))
        .fetch_optional(&mut *tx)
        .await?;
    if present.is_none() {
        return Err(StoreError::EraserMissing { by });
    }
    let inserted: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO erasures (sequence, erased_by, facts) \
         SELECT DISTINCT ON (w.sequence) w.sequence, $3, w.facts \
         FROM UNNEST($1::bigint[], $2::bytea[]) AS w(sequence, facts) JOIN events e ON e.sequence = w.sequence \
         ORDER BY w.sequence ON CONFLICT (sequence) DO NOTHING RETURNING sequence",
    )
    .bind(rows.iter().map(|row| signed(row.sequence)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.facts.as_deref()).collect::<Vec<_>>())
    .bind(signed(by))
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("UPDATE events SET metadata = NULL, payload = NULL, salt = NULL WHERE sequence = ANY($1)")
        .bind(&inserted)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(inserted.len() as u64)
}

/// `verify`'s read of a page: up to `limit` records of `range` in one
/// query, then each checked straight from its row's buffer on a blocking
/// thread ([`crate::verify::CheckedPage::push`]), nothing decoded into
/// owned fields.
pub(crate) async fn read_checked_page(
    pool: &PgPool,
    range: RangeInclusive<u64>,
    limit: usize,
) -> Result<crate::verify::CheckedPage, StoreError> {
    let rows: Vec<PgRow> = sqlx::query(&crate::row::verify_query('$'))
        .bind(signed(*range.start()))
        .bind(signed((*range.end()).min(i64::MAX as u64)))
        .bind(signed(limit as u64))
        .fetch_all(pool)
        .await?;
    tokio::task::spawn_blocking(move || {
        let mut page = crate::verify::CheckedPage::with_capacity(rows.len());
        for row in &rows {
            page.push(verify_columns(row)?)?;
        }
        Ok(page)
    })
    .await
    .expect("checking a page does not panic")
}

/// A row of [`crate::row::VERIFY_COLUMNS`], borrowed from its buffer.
fn verify_columns(row: &PgRow) -> Result<crate::verify::Columns<'_>, StoreError> {
    Ok(crate::verify::Columns {
        sequence: row.try_get(0)?,
        event_id: row.try_get::<uuid::Uuid, _>(1)?.into_bytes(),
        stream_id: row.try_get(2)?,
        stream_revision: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: row.try_get(5)?,
        occurred_at_us: row.try_get(6)?,
        recorded_at_us: row.try_get(7)?,
        idempotency_key: row.try_get(8)?,
        metadata: row.try_get(9)?,
        metadata_hash: row.try_get(10)?,
        payload: row.try_get(11)?,
        payload_hash: row.try_get(12)?,
        leaf_hash: row.try_get(13)?,
        chain_hash: row.try_get(14)?,
        format: i64::from(row.try_get::<i32, _>(15)?),
        salt: row.try_get(16)?,
        erased_by: row.try_get(17)?,
    })
}

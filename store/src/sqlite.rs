//! The SQLite backend: the embedded default, one file in the data directory.
//!
//! WAL journal with `synchronous=FULL`: a commit returns after the WAL is
//! fsynced, so an acknowledged append survives a process crash and a power
//! loss (given a disk that honours fsync). Appends run under `BEGIN
//! IMMEDIATE`, which takes the database's write lock before the head is
//! read, so a second process (say `ledger billing run` beside a running
//! server) appends to the same chain safely.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use domain::record::Record;
use domain::{StreamId, Timestamp};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use crate::plan::{self, KnownCommand};
use crate::row::{RECORD_COLUMNS, StoredRecord, records};
use crate::writer::CommitError;
use crate::{Appended, Command, Head, Rejection, StoreError, hash_column, signed, unsigned};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Connections that serve reads; the writer has its own.
pub const READ_CONNECTIONS_MAX: u32 = 4;
/// How long an append waits for another process's write lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Rows per multi-row INSERT: 15 columns × 1,000 rows stays below
/// SQLite's 32,766 bound variables.
const INSERT_ROWS_MAX: usize = 1000;

pub(crate) struct Writer {
    connection: SqliteConnection,
}

pub(crate) async fn open(path: &Path) -> Result<(SqlitePool, Writer), StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(LOCK_WAIT);
    let readers = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS_MAX)
        .connect_with(options.clone())
        .await?;
    // Through the pool: a migration future on a bare connection is not
    // `Send` for every lifetime, which spawned callers need.
    MIGRATOR
        .run(&readers)
        .await
        .map_err(|e| StoreError::Migration(std::sync::Arc::new(e)))?;
    let connection = SqliteConnection::connect_with(&options).await?;
    Ok((readers, Writer { connection }))
}

impl Writer {
    pub(crate) async fn commit(
        &mut self,
        commands: &[&Command],
        now: Timestamp,
    ) -> Result<Vec<Result<Appended, Rejection>>, CommitError> {
        let connection = &mut self.connection;
        let before = |error: sqlx::Error| CommitError {
            error: error.into(),
            at_commit: false,
        };
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *connection)
            .await
            .map_err(before)?;
        let planned = async {
            let head = read_head(&mut *connection).await?;
            let known = known_commands(&mut *connection, commands).await?;
            let revisions = stream_revisions(&mut *connection, commands).await?;
            let plan = plan::plan(head, known, revisions, commands, now);
            write(&mut *connection, &plan).await?;
            Ok::<_, StoreError>(plan.outcomes)
        }
        .await;
        match planned {
            Ok(outcomes) => match sqlx::query("COMMIT").execute(&mut *connection).await {
                Ok(_) => Ok(outcomes),
                Err(error) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                    Err(CommitError {
                        error: error.into(),
                        at_commit: true,
                    })
                }
            },
            Err(error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                Err(CommitError {
                    error,
                    at_commit: false,
                })
            }
        }
    }
}

async fn read_head(connection: &mut SqliteConnection) -> Result<Head, StoreError> {
    let row = sqlx::query("SELECT sequence, chain_hash, recorded_at_us FROM log_head WHERE id = 1")
        .fetch_one(connection)
        .await?;
    head_from_row(&row)
}

fn head_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Head, StoreError> {
    let sequence = unsigned(0, "head sequence", row.try_get(0)?)?;
    Ok(Head {
        sequence,
        chain_hash: hash_column(sequence, "head chain hash", row.try_get::<&[u8], _>(1)?)?,
        recorded_at: Timestamp::from_micros(row.try_get(2)?),
    })
}

async fn known_commands(
    connection: &mut SqliteConnection,
    commands: &[&Command],
) -> Result<HashMap<String, KnownCommand>, StoreError> {
    let keys: Vec<&str> = commands
        .iter()
        .filter_map(|c| c.idempotency.as_ref().map(|i| i.key.as_str()))
        .collect();
    let mut known = HashMap::new();
    for chunk in keys.chunks(INSERT_ROWS_MAX) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT idempotency_key, digest, stream_id, first_sequence, last_sequence, stream_revision FROM commands WHERE idempotency_key IN (",
        );
        let mut list = query.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *connection).await? {
            let (key, command) = known_command(&row)?;
            known.insert(key, command);
        }
    }
    Ok(known)
}

fn known_command(row: &sqlx::sqlite::SqliteRow) -> Result<(String, KnownCommand), StoreError> {
    let first_sequence = unsigned(0, "command first sequence", row.try_get(3)?)?;
    let command = KnownCommand {
        digest: hash_column(
            first_sequence,
            "command digest",
            row.try_get::<&[u8], _>(1)?,
        )?,
        stream_id: StreamId::new(row.try_get::<String, _>(2)?).map_err(|e| {
            StoreError::Corrupt {
                sequence: first_sequence,
                what: e.to_string(),
            }
        })?,
        appended: Appended {
            first_sequence,
            last_sequence: unsigned(first_sequence, "command last sequence", row.try_get(4)?)?,
            stream_revision: unsigned(first_sequence, "command stream revision", row.try_get(5)?)?,
            replayed: false,
        },
    };
    Ok((row.try_get(0)?, command))
}

async fn stream_revisions(
    connection: &mut SqliteConnection,
    commands: &[&Command],
) -> Result<HashMap<StreamId, u64>, StoreError> {
    let mut streams: Vec<&StreamId> = commands.iter().map(|c| &c.stream_id).collect();
    streams.sort();
    streams.dedup();
    let mut revisions = HashMap::new();
    for chunk in streams.chunks(INSERT_ROWS_MAX) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT stream_id, MAX(stream_revision) FROM events WHERE stream_id IN (",
        );
        let mut list = query.separated(", ");
        for stream in chunk {
            list.push_bind(stream.as_str());
        }
        query.push(") GROUP BY stream_id");
        for row in query.build().fetch_all(&mut *connection).await? {
            let stream =
                StreamId::new(row.try_get::<String, _>(0)?).map_err(|e| StoreError::Corrupt {
                    sequence: 0,
                    what: e.to_string(),
                })?;
            revisions.insert(stream, unsigned(0, "stream revision", row.try_get(1)?)?);
        }
    }
    Ok(revisions)
}

async fn write(connection: &mut SqliteConnection, plan: &plan::Plan) -> Result<(), StoreError> {
    if plan.records.is_empty() {
        return Ok(());
    }
    for chunk in plan.records.chunks(INSERT_ROWS_MAX) {
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("INSERT INTO events ({RECORD_COLUMNS}) "));
        query.push_values(chunk, |mut row, record: &Record| {
            let header = &record.header;
            row.push_bind(signed(header.sequence))
                .push_bind(header.event_id.0)
                .push_bind(header.stream_id.as_str())
                .push_bind(signed(header.stream_revision))
                .push_bind(header.event_type.as_str())
                .push_bind(i64::from(header.schema_version))
                .push_bind(header.occurred_at.as_micros())
                .push_bind(header.recorded_at.as_micros())
                .push_bind(header.idempotency_key.as_deref())
                .push_bind(record.metadata.as_deref())
                .push_bind(record.metadata_hash.as_bytes().as_slice())
                .push_bind(record.payload.as_deref())
                .push_bind(record.payload_hash.as_bytes().as_slice())
                .push_bind(record.leaf_hash.as_bytes().as_slice())
                .push_bind(record.chain_hash.as_bytes().as_slice());
        });
        query.build().execute(&mut *connection).await?;
    }
    for chunk in plan.commands.chunks(INSERT_ROWS_MAX) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO commands (idempotency_key, digest, stream_id, first_sequence, last_sequence, stream_revision) ",
        );
        query.push_values(chunk, |mut row, (key, command)| {
            row.push_bind(key.as_str())
                .push_bind(command.digest.as_bytes().as_slice())
                .push_bind(command.stream_id.as_str())
                .push_bind(signed(command.appended.first_sequence))
                .push_bind(signed(command.appended.last_sequence))
                .push_bind(signed(command.appended.stream_revision));
        });
        query.build().execute(&mut *connection).await?;
    }
    sqlx::query(
        "UPDATE log_head SET sequence = ?, chain_hash = ?, recorded_at_us = ? WHERE id = 1",
    )
    .bind(signed(plan.head.sequence))
    .bind(plan.head.chain_hash.as_bytes().as_slice())
    .bind(plan.head.recorded_at.as_micros())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

pub(crate) async fn head(pool: &SqlitePool) -> Result<Head, StoreError> {
    let row = sqlx::query("SELECT sequence, chain_hash, recorded_at_us FROM log_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    head_from_row(&row)
}

pub(crate) async fn read_page(
    pool: &SqlitePool,
    range: RangeInclusive<u64>,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let rows: Vec<StoredRecord> = sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM events WHERE sequence >= ? AND sequence <= ? ORDER BY sequence LIMIT ?"
    ))
    .bind(signed(*range.start()))
    .bind(signed((*range.end()).min(i64::MAX as u64)))
    .bind(signed(limit as u64))
    .fetch_all(pool)
    .await?;
    records(rows)
}

pub(crate) async fn read_stream(
    pool: &SqlitePool,
    stream_id: &StreamId,
    from_revision: u64,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let rows: Vec<StoredRecord> = sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM events WHERE stream_id = ? AND stream_revision >= ? ORDER BY stream_revision LIMIT ?"
    ))
    .bind(stream_id.as_str())
    .bind(signed(from_revision))
    .bind(signed(limit as u64))
    .fetch_all(pool)
    .await?;
    records(rows)
}

//! The read models on PostgreSQL: tables beside the log's, in the same
//! database and schema, migrated by the log's migrator. A batch is one
//! transaction of one statement per table and kind of change, its columns
//! travelling as arrays (`UNNEST`): never a round trip per row.

use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column as _, Postgres, Row as _, TypeInfo as _};

use super::batch::{Batch, Change};
use super::table::{ColumnType, Dialect, Row, Table, Value, Write};
use super::{Advance, CommitError, DbError, NOTIFY_CHANNEL, POOL_CONNECTIONS_MAX, RowReader};

/// The log's migrations: they hold the read models' tables too (files
/// from 0004 on), so opening either migrates both.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
/// Rows a scan reads ahead of its consumer.
const SCAN_ROWS_AHEAD: usize = 1024;
/// How long taking a connection may wait, as the log's pool
/// (`store::postgres::POOL_ACQUIRE_TIMEOUT`): a query while PostgreSQL is
/// down fails within this (503) instead of hanging for sqlx's 30 s.
const POOL_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().max_connections(POOL_CONNECTIONS_MAX).acquire_timeout(POOL_ACQUIRE_TIMEOUT)
}

pub(crate) async fn open(options: PgConnectOptions) -> Result<PgPool, DbError> {
    let pool = pool_options().connect_with(options).await?;
    // sqlx holds an advisory lock while migrating, so a log and a read-model
    // open racing in two processes do not both migrate.
    MIGRATOR.run(&pool).await.map_err(|e| DbError::Migration(std::sync::Arc::new(e)))?;
    Ok(pool)
}

/// Connects to read only: no migration, and every session read-only on
/// the server's side (`default_transaction_read_only`), so nothing can be
/// written even by mistake.
pub(crate) async fn open_read_only(options: PgConnectOptions) -> Result<PgPool, DbError> {
    let options = options.options([("default_transaction_read_only", "on")]);
    Ok(pool_options().connect_with(options).await?)
}

fn bind(query: Query<'_, Postgres, PgArguments>, value: Value) -> Query<'_, Postgres, PgArguments> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Int(n) => query.bind(n),
        Value::Text(s) => query.bind(s),
        Value::Blob(b) => query.bind(b),
        Value::Bool(b) => query.bind(b),
    }
}

fn row(row: &PgRow) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = match column.type_info().name() {
            "INT8" => row.try_get::<Option<i64>, _>(index)?.map(Value::Int),
            "INT4" => row.try_get::<Option<i32>, _>(index)?.map(|n| Value::Int(n.into())),
            "INT2" => row.try_get::<Option<i16>, _>(index)?.map(|n| Value::Int(n.into())),
            "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => row.try_get::<Option<String>, _>(index)?.map(Value::Text),
            "BYTEA" => row.try_get::<Option<Vec<u8>>, _>(index)?.map(Value::Blob),
            "BOOL" => row.try_get::<Option<bool>, _>(index)?.map(Value::Bool),
            other => {
                return Err(DbError::Decode(format!(
                    "column {} is of type {other}, not a read-model type",
                    column.name()
                )));
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

pub(crate) async fn query(pool: &PgPool, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
    let query = params.into_iter().fold(sqlx::query(sql), bind);
    query.fetch_all(pool).await?.iter().map(row).collect()
}

pub(crate) async fn execute_script(pool: &PgPool, sql: &str) -> Result<(), DbError> {
    // Statements sent together run as one implicit transaction.
    sqlx::raw_sql(sql).execute(pool).await?;
    Ok(())
}

pub(crate) fn scan(pool: PgPool, table: Table) -> BoxStream<'static, Result<Row, DbError>> {
    let (rows_tx, rows) = tokio::sync::mpsc::channel::<Result<Row, DbError>>(SCAN_ROWS_AHEAD);
    // A task owns the query and hands rows over as they are consumed: the
    // server streams them, so memory stays bounded by the channel.
    tokio::spawn(async move { send_rows(&pool, table, rows_tx).await });
    futures::stream::unfold(rows, |mut rows| async move { rows.recv().await.map(|row| (row, rows)) }).boxed()
}

/// Sends `table`'s rows in key order, read through `executor`, until the
/// receiver is gone or a row fails.
async fn send_rows<'c, E: sqlx::Executor<'c, Database = Postgres>>(
    executor: E,
    table: Table,
    rows_tx: tokio::sync::mpsc::Sender<Result<Row, DbError>>,
) {
    let sql = table.scan_sql(Dialect::Postgres);
    let mut found = sqlx::query(&sql).fetch(executor);
    while let Some(next) = found.next().await {
        let next = next.map_err(DbError::from).and_then(|found| {
            let Row(values) = row(&found)?;
            Ok(Row(values.into_iter().zip(table.columns).map(|(v, c)| v.into_column(c.ty)).collect()))
        });
        let failed = next.is_err();
        if rows_tx.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// One repeatable-read, read-only transaction on a connection of its own
/// (not returned to the pool; closed when dropped): every read through it
/// sees the database as it was at its first query.
pub(crate) struct PgSnapshot(std::sync::Arc<tokio::sync::Mutex<sqlx::PgConnection>>);

pub(crate) async fn snapshot(pool: &PgPool) -> Result<PgSnapshot, DbError> {
    let mut connection = pool.acquire().await?.detach();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut connection).await?;
    // The transaction's snapshot is taken at its first query.
    sqlx::query("SELECT count(*) FROM readmodel_checkpoints").fetch_one(&mut connection).await?;
    Ok(PgSnapshot(std::sync::Arc::new(tokio::sync::Mutex::new(connection))))
}

impl PgSnapshot {
    pub(crate) async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let query = params.into_iter().fold(sqlx::query(sql), bind);
        query.fetch_all(&mut *self.0.lock().await).await?.iter().map(row).collect()
    }

    pub(crate) fn scan(&self, table: Table) -> BoxStream<'static, Result<Row, DbError>> {
        let (rows_tx, rows) = tokio::sync::mpsc::channel::<Result<Row, DbError>>(SCAN_ROWS_AHEAD);
        let connection = self.0.clone();
        tokio::spawn(async move { send_rows(&mut *connection.lock().await, table, rows_tx).await });
        futures::stream::unfold(rows, |mut rows| async move { rows.recv().await.map(|row| (row, rows)) }).boxed()
    }
}

/// One column of a batch's rows as a typed array, bound to `query`.
fn bind_column<'q>(
    query: Query<'q, Postgres, PgArguments>,
    ty: ColumnType,
    values: impl Iterator<Item = &'q Value>,
) -> Query<'q, Postgres, PgArguments> {
    fn collect<'v, T>(values: impl Iterator<Item = &'v Value>, f: impl Fn(&'v Value) -> Option<T>) -> Vec<Option<T>> {
        values.map(f).collect()
    }
    match ty {
        ColumnType::Int => query.bind(collect(values, |v| if let Value::Int(n) = v { Some(*n) } else { None })),
        ColumnType::Text => {
            query.bind(collect(values, |v| if let Value::Text(s) = v { Some(s.as_str()) } else { None }))
        }
        ColumnType::Blob => {
            query.bind(collect(values, |v| if let Value::Blob(b) = v { Some(b.as_slice()) } else { None }))
        }
        ColumnType::Bool => query.bind(collect(values, |v| if let Value::Bool(b) = v { Some(*b) } else { None })),
    }
}

async fn write_rows(
    tx: &mut sqlx::PgConnection,
    table: &Table,
    write: Write,
    rows: &[&Vec<Value>],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = table.write_sql(write, Dialect::Postgres);
    let columns = if write == Write::Delete { table.key() } else { table.columns };
    let query = columns.iter().enumerate().fold(sqlx::query(&sql), |query, (index, column)| {
        bind_column(query, column.ty, rows.iter().map(move |row| &row[index]))
    });
    query.execute(tx).await?;
    Ok(())
}

pub(crate) async fn commit(pool: &PgPool, batch: &Batch, advances: &[Advance]) -> Result<(), CommitError> {
    let mut tx = pool.begin().await?;
    // The fence first: it takes the checkpoint rows' locks, so a second
    // runner waits here and then finds the checkpoints moved.
    let names: Vec<&str> = advances.iter().map(|a| a.name).collect();
    let moved: Vec<String> = sqlx::query_scalar(
        "UPDATE readmodel_checkpoints AS c SET sequence = n.sequence, chain_hash = n.chain_hash \
         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bytea[]) AS n(name, previous, sequence, chain_hash) \
         WHERE c.name = n.name AND c.sequence = n.previous RETURNING c.name",
    )
    .bind(&names)
    .bind(advances.iter().map(|a| Value::uint(a.from).map(|_| a.from as i64)).collect::<Result<Vec<_>, _>>()?)
    .bind(
        advances
            .iter()
            .map(|a| Value::uint(a.to.sequence).map(|_| a.to.sequence as i64))
            .collect::<Result<Vec<_>, _>>()?,
    )
    .bind(advances.iter().map(|a| a.to.chain_hash.0.to_vec()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    if let Some(stale) = advances.iter().find(|a| !moved.iter().any(|name| name == a.name)) {
        // Dropping `tx` rolls it back.
        return Err(CommitError::Fenced { projection: stale.name.to_owned(), expected: stale.from });
    }
    for changes in batch.tables.values() {
        let mut upserts = Vec::new();
        let mut adds = Vec::new();
        let mut deletes = Vec::new();
        for (key, change) in &changes.rows {
            match change {
                Change::Upsert(row) => upserts.push(row),
                Change::Add(row) => adds.push(row),
                Change::Delete => deletes.push(key),
            }
        }
        write_rows(&mut tx, &changes.table, Write::Delete, &deletes).await?;
        write_rows(&mut tx, &changes.table, Write::Upsert, &upserts).await?;
        write_rows(&mut tx, &changes.table, Write::Add, &adds).await?;
    }
    if let Some(last) = advances.iter().filter(|a| a.name != super::PURGE_FENCE).map(|a| a.to.sequence).max() {
        // Delivered on commit, so followers never hear of a sequence that
        // is not yet visible.
        sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(last.to_string()).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Runs `work` in one transaction on a blocking thread, driving the async
/// pool on the current runtime; committed when it returns `Ok`.
pub(crate) async fn transaction<T: Send + 'static>(
    pool: &PgPool,
    work: impl FnOnce(&mut dyn super::privacy::Tx) -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    let tx = pool.begin().await?;
    let handle = tokio::runtime::Handle::current();
    let (tx, done) = tokio::task::spawn_blocking(move || {
        let mut pg = PgTx { tx, handle };
        let done = work(&mut pg);
        (pg.tx, done)
    })
    .await
    .expect("a read-model transaction does not panic");
    let done = done?;
    tx.commit().await?;
    Ok(done)
}

struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
    handle: tokio::runtime::Handle,
}

impl super::privacy::Tx for PgTx {
    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let query = params.into_iter().fold(sqlx::query(sql), bind);
        self.handle.block_on(query.fetch_all(&mut *self.tx))?.iter().map(row).collect()
    }

    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DbError> {
        let query = params.into_iter().fold(sqlx::query(sql), bind);
        Ok(self.handle.block_on(query.execute(&mut *self.tx))?.rows_affected())
    }
}

/// Point reads from a blocking thread, driving the async pool on the
/// runtime that made it.
pub(crate) struct BlockingReader {
    pub pool: PgPool,
    pub handle: tokio::runtime::Handle,
}

impl RowReader for BlockingReader {
    fn get(&self, table: &Table, key: &[Value]) -> Result<Option<Row>, DbError> {
        let rows = self.handle.block_on(query(&self.pool, &table.get_sql(), key.to_vec()))?;
        Ok(rows
            .into_iter()
            .next()
            .map(|Row(values)| Row(values.into_iter().zip(table.columns).map(|(v, c)| v.into_column(c.ty)).collect())))
    }
}

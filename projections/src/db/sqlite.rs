//! The read models on SQLite: a file of their own, WAL with
//! `synchronous=FULL` like the log, migrated by sqlx's migrator and run on
//! rusqlite (the log's reasons, ARCHITECTURE.md "Deviations"): one writer
//! connection, which the runner alone uses, and a bounded set of read-only
//! connections for queries, all on blocking threads with cached statements.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params_from_iter};
use tokio::sync::{Semaphore, mpsc};

use super::batch::{Batch, Change};
use super::table::{Dialect, Row, Table, Value, Write};
use super::{Advance, CommitError, DbError, RowReader};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite-readmodels");

/// Read-only connections that serve queries at once; the runner's writer
/// has its own. Two cores serve the whole process: more would only queue.
pub const READ_CONNECTIONS_MAX: usize = 4;
/// How long a write waits for another process's write lock (a rebuild
/// tool beside a server, say).
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Prepared statements each connection keeps: a few per table.
const STATEMENT_CACHE_CAPACITY: usize = 64;
/// Rows a scan hands over at a time, and chunks it reads ahead.
const SCAN_CHUNK_ROWS: usize = 1024;
const SCAN_CHUNKS_AHEAD: usize = 2;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
        })
    }
}

fn value(value: ValueRef<'_>) -> Result<Value, DbError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Text(bytes) => Value::Text(
            String::from_utf8(bytes.to_vec()).map_err(|_| DbError::Decode("a text value is not UTF-8".into()))?,
        ),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        ValueRef::Real(_) => return Err(DbError::Decode("a read model holds a float; none is ever stored".into())),
    })
}

fn row(row: &rusqlite::Row<'_>, columns: usize) -> Result<Row, DbError> {
    (0..columns).map(|i| value(row.get_ref(i)?)).collect::<Result<_, _>>().map(Row)
}

fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, DbError> {
    let connection = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.busy_timeout(LOCK_WAIT)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // Deleted and overwritten content is zeroed in the file, not left in
    // free pages (issue 16: an erased e-mail must not stay readable).
    connection.pragma_update(None, "secure_delete", "ON")?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(connection)
}

fn query(connection: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
    let mut statement = connection.prepare_cached(sql)?;
    let columns = statement.column_count();
    let mut rows = statement.query(params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(found) = rows.next()? {
        out.push(row(found, columns)?);
    }
    Ok(out)
}

#[derive(Clone)]
pub(crate) struct SqliteDb {
    /// The file, or for a database opened read-only its `file:` URI.
    path: PathBuf,
    /// How read connections open `path`.
    read_flags: OpenFlags,
    writer: Arc<Mutex<Connection>>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl SqliteDb {
    pub(crate) async fn open(path: &Path) -> Result<Self, DbError> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(LOCK_WAIT);
        // sqlx's migrator takes no lock on SQLite: processes starting
        // together on a fresh file would each apply the first migration,
        // and all but one fail. A file lock beside it makes them take turns.
        let migrating = migration_lock(path).await?;
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let migrated = MIGRATOR.run(&pool).await.map_err(|e| DbError::Migration(Arc::new(e)));
        pool.close().await;
        drop(migrating);
        migrated?;
        let path = path.to_owned();
        let writer = tokio::task::spawn_blocking({
            let path = path.clone();
            move || connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        })
        .await
        .expect("opening a connection does not panic")?;
        Ok(Self {
            path,
            read_flags: OpenFlags::SQLITE_OPEN_READ_ONLY,
            writer: Arc::new(Mutex::new(writer)),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(READ_CONNECTIONS_MAX)),
        })
    }

    /// Opens an existing read-model file to read only, creating and
    /// changing no file: no migration, every connection read-only. A file
    /// with a `-wal` (a process has it open) is read under SQLite's locks
    /// beside its writer; one without is read as SQLite's `immutable` file,
    /// which creates no `-wal` or `-shm` (whoever reads it so checks that
    /// it did not change meanwhile). Writes fail.
    pub(crate) async fn open_read_only(path: &Path) -> Result<Self, DbError> {
        if !path.is_file() {
            return Err(DbError::Io(Arc::new(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ))));
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let (path, read_flags) = if Path::new(&wal).exists() {
            (path.to_owned(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        } else {
            let uri = format!("file:{}?immutable=1", store::sqlite_uri_path(path));
            (PathBuf::from(uri), OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
        };
        let writer = tokio::task::spawn_blocking({
            let path = path.clone();
            move || connect(&path, read_flags)
        })
        .await
        .expect("opening a connection does not panic")?;
        Ok(Self {
            path,
            read_flags,
            writer: Arc::new(Mutex::new(writer)),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(READ_CONNECTIONS_MAX)),
        })
    }

    /// Runs `read` on a read-only connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let idle = db.idle.lock().expect("the idle list is not poisoned").pop();
            let connection = match idle {
                Some(connection) => connection,
                None => connect(&db.path, db.read_flags)?,
            };
            let result = read(&connection);
            db.idle.lock().expect("the idle list is not poisoned").push(connection);
            result
        })
        .await
        .unwrap_or_else(|error| match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Not started before the runtime shut down (a process exiting).
            Err(_) => Err(DbError::Io(Arc::new(std::io::Error::other("the runtime shut down before the read")))),
        })
    }

    /// Runs `write` on the writer connection on a blocking thread.
    async fn write<T: Send + 'static, E: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || write(&mut writer.lock().expect("the writer is not poisoned")))
            .await
            .expect("a write does not panic")
    }

    pub(crate) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        // Statements that write (checkpoint rows at the start) go to the
        // writer; read-only connections refuse them.
        if rusqlite_readonly(&sql) {
            self.read(move |connection| query(connection, &sql, &params)).await
        } else {
            self.write(move |connection| query(connection, &sql, &params)).await
        }
    }

    pub(crate) async fn execute_script(&self, sql: String) -> Result<(), DbError> {
        self.write(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(&sql)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Runs `work` in one immediate transaction on the writer connection
    /// (committed when it returns `Ok`), then folds the `-wal` back into
    /// the file and truncates it, so what the transaction overwrote leaves
    /// the `-wal` too.
    pub(crate) async fn transaction<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn super::privacy::Tx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.write(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut sqlite_tx = SqliteTx(&tx);
            let done = work(&mut sqlite_tx)?;
            tx.commit()?;
            connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(done)
        })
        .await
    }

    pub(crate) fn blocking_reader(&self) -> WriterReader {
        WriterReader { writer: self.writer.clone() }
    }

    pub(crate) fn scan(&self, table: Table) -> BoxStream<'static, Result<Row, DbError>> {
        let (path, flags) = (self.path.clone(), self.read_flags);
        // A connection of its own: a scan may be long, and holding a pooled
        // one would starve queries.
        scan_on(ScanSource::Open(path, flags), table)
    }

    /// A read transaction on a connection of its own, begun now: every
    /// read through it sees the file as it was at its first read, however
    /// the writer moves on (WAL keeps the pages the snapshot needs).
    pub(crate) async fn snapshot(&self) -> Result<SqliteSnapshot, DbError> {
        let (path, flags) = (self.path.clone(), self.read_flags);
        let connection = tokio::task::spawn_blocking(move || {
            let connection = connect(&path, flags)?;
            connection.execute_batch("BEGIN DEFERRED")?;
            // A deferred transaction takes its snapshot at its first read.
            connection.query_row("SELECT count(*) FROM readmodel_checkpoints", [], |row| row.get::<_, i64>(0))?;
            Ok::<_, DbError>(connection)
        })
        .await
        .expect("opening a connection does not panic")?;
        Ok(SqliteSnapshot(Arc::new(Mutex::new(connection))))
    }

    pub(crate) async fn commit(&self, batch: Arc<Batch>, advances: Vec<Advance>) -> Result<(), CommitError> {
        self.write(move |connection| commit(connection, &batch, &advances)).await
    }
}

/// One read transaction's view of a read-model file ([`SqliteDb::snapshot`]).
pub(crate) struct SqliteSnapshot(Arc<Mutex<Connection>>);

impl SqliteSnapshot {
    pub(crate) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        let connection = self.0.clone();
        tokio::task::spawn_blocking(move || {
            query(&connection.lock().expect("the snapshot's connection is not poisoned"), &sql, &params)
        })
        .await
        .expect("a query does not panic")
    }

    pub(crate) fn scan(&self, table: Table) -> BoxStream<'static, Result<Row, DbError>> {
        scan_on(ScanSource::Held(self.0.clone()), table)
    }
}

/// The connection a scan reads through.
enum ScanSource {
    /// A new connection to this file, with these flags.
    Open(PathBuf, OpenFlags),
    /// A snapshot's connection.
    Held(Arc<Mutex<Connection>>),
}

/// Streams `table` in key order, read on a blocking thread, a chunk at a time.
fn scan_on(source: ScanSource, table: Table) -> BoxStream<'static, Result<Row, DbError>> {
    let (chunks_tx, chunks) = mpsc::channel::<Result<Vec<Row>, DbError>>(SCAN_CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let scan = || -> Result<(), DbError> {
            let (opened, held);
            let connection: &Connection = match &source {
                ScanSource::Open(path, flags) => {
                    opened = connect(path, *flags)?;
                    &opened
                }
                ScanSource::Held(connection) => {
                    held = connection.lock().expect("the snapshot's connection is not poisoned");
                    &held
                }
            };
            let mut statement = connection.prepare(&table.scan_sql(Dialect::Sqlite))?;
            let mut rows = statement.query([])?;
            let mut chunk = Vec::with_capacity(SCAN_CHUNK_ROWS);
            while let Some(found) = rows.next()? {
                let Row(values) = row(found, table.columns.len())?;
                chunk.push(Row(values.into_iter().zip(table.columns).map(|(v, c)| v.into_column(c.ty)).collect()));
                if chunk.len() == SCAN_CHUNK_ROWS && chunks_tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                    return Ok(());
                }
            }
            let _ = chunks_tx.blocking_send(Ok(chunk));
            Ok(())
        };
        if let Err(error) = scan() {
            let _ = chunks_tx.blocking_send(Err(error));
        }
    });
    tokio_stream(chunks)
        .flat_map(|chunk| match chunk {
            Ok(rows) => futures::stream::iter(rows.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(error) => futures::stream::iter(vec![Err(error)]),
        })
        .boxed()
}

/// A receiver as a stream, without another dependency.
fn tokio_stream<T: Send + 'static>(receiver: mpsc::Receiver<T>) -> BoxStream<'static, T> {
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
        .boxed()
}

/// True for a statement a read-only connection can run.
fn rusqlite_readonly(sql: &str) -> bool {
    let head = sql.trim_start().get(..6).unwrap_or_default();
    head.eq_ignore_ascii_case("select") || sql.trim_start().get(..4).is_some_and(|w| w.eq_ignore_ascii_case("with"))
}

fn commit(connection: &mut Connection, batch: &Batch, advances: &[Advance]) -> Result<(), CommitError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut fence = tx.prepare_cached(
            "UPDATE readmodel_checkpoints SET sequence = ?1, chain_hash = ?2 WHERE name = ?3 AND sequence = ?4",
        )?;
        for advance in advances {
            let moved = fence.execute(rusqlite::params![
                Value::uint(advance.to.sequence)?,
                &advance.to.chain_hash.as_bytes()[..],
                advance.name,
                Value::uint(advance.from)?,
            ])?;
            if moved != 1 {
                // Dropping `tx` rolls back whatever this batch wrote.
                return Err(CommitError::Fenced { projection: advance.name.to_owned(), expected: advance.from });
            }
        }
        for changes in batch.tables.values() {
            let table = &changes.table;
            let mut upsert = tx.prepare_cached(&table.write_sql(Write::Upsert, Dialect::Sqlite))?;
            let mut add = tx.prepare_cached(&table.write_sql(Write::Add, Dialect::Sqlite))?;
            let mut delete = tx.prepare_cached(&table.write_sql(Write::Delete, Dialect::Sqlite))?;
            for (key, change) in &changes.rows {
                match change {
                    Change::Upsert(row) => upsert.execute(params_from_iter(row))?,
                    Change::Add(row) => add.execute(params_from_iter(row))?,
                    Change::Delete => delete.execute(params_from_iter(key))?,
                };
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// A transaction's statements, `$n` placeholders rewritten for SQLite.
struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

impl super::privacy::Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        query(self.0, &super::table::sqlite_placeholders(sql), &params)
    }

    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DbError> {
        let mut statement = self.0.prepare_cached(&super::table::sqlite_placeholders(sql))?;
        Ok(statement.execute(params_from_iter(params))? as u64)
    }
}

/// Point reads through the writer's connection, which the runner alone
/// uses and never holds while applying: they see the last commit.
pub(crate) struct WriterReader {
    writer: Arc<Mutex<Connection>>,
}

impl RowReader for WriterReader {
    fn get(&self, table: &Table, key: &[Value]) -> Result<Option<Row>, DbError> {
        let connection = self.writer.lock().expect("the writer is not poisoned");
        let mut rows = query(&connection, &super::table::sqlite_placeholders(&table.get_sql()), key)?;
        Ok(rows
            .pop()
            .map(|Row(values)| Row(values.into_iter().zip(table.columns).map(|(v, c)| v.into_column(c.ty)).collect())))
    }
}

/// Creates the database file private (0600) if it is missing, and takes an
/// exclusive `flock` on `{database}-migrate.lock` (0600), waiting for it;
/// the kernel releases it when the file is closed or the process exits.
async fn migration_lock(database: &Path) -> Result<std::fs::File, DbError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut lock = database.as_os_str().to_owned();
    lock.push("-migrate.lock");
    let (database, lock) = (database.to_owned(), PathBuf::from(lock));
    tokio::task::spawn_blocking(move || {
        let private = |path: &Path, create_new: bool| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(!create_new)
                .create_new(create_new)
                .truncate(false)
                .mode(0o600)
                .open(path)
        };
        match private(&database, true) {
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(error),
            _ => {}
        }
        let file = private(&lock, false)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .expect("taking a lock does not panic")
    .map_err(|error| DbError::Io(Arc::new(error)))
}

//! The SQLite backend: the embedded default, one file in the data directory.
//!
//! WAL journal with `synchronous=FULL`: a commit returns after the WAL is
//! fsynced, so an acknowledged append survives a process crash and a power
//! loss (given a disk that honours fsync). Appends run under `BEGIN
//! IMMEDIATE`, which takes the database's write lock before the head is
//! read, so a second process (say `ledger billing run` beside a running
//! server) appends to the same chain safely.
//!
//! The schema is migrated by sqlx's migrator, as on PostgreSQL. Appends and
//! reads run on rusqlite, over the same `libsqlite3-sys` that sqlx links,
//! on blocking threads with cached prepared statements: sqlx's SQLite
//! driver hands every query and row across a worker thread and re-prepares
//! multi-row statements of each new size, which measured 14 µs per row read
//! and ~40 µs per event appended (ARCHITECTURE.md, "Deviations").

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::record::{Erasure, Hash, Record, RecordHeader, SALT_BYTES};
use domain::{EventId, StreamId, Timestamp};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use crate::plan::{self, KnownCommand};
use crate::row::{INSERT_COLUMNS, RECORD_COLUMNS, RECORD_FROM};
use crate::writer::{Batch, CommitError, Outcomes, Slice};
use crate::{Appended, Command, Head, Snapshot, SnapshotCheckpoint, StoreError, hash_column, signed, unsigned};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Connections that serve reads at once; the writer has its own.
pub const READ_CONNECTIONS_MAX: usize = 4;
/// How long an append waits for another process's write lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Prepared statements each connection keeps.
const STATEMENT_CACHE_CAPACITY: usize = 32;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(error))
    }
}

/// Opens the log file, migrating its schema first.
pub(crate) async fn open(path: &Path) -> Result<(Readers, Writer), StoreError> {
    create_private(path)?;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(LOCK_WAIT);
    // sqlx's migrator takes no lock on SQLite: processes starting together
    // on a fresh file would each apply the first migration, and all but
    // one fail. A file lock beside the database makes them take turns.
    let migrating = lock_file(path, "migrate", true).await?;
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let migrated = MIGRATOR.run(&pool).await.map_err(|e| StoreError::Migration(Arc::new(e)));
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
    let readers = Readers {
        path,
        idle: Arc::new(Mutex::new(Vec::new())),
        permits: Arc::new(Semaphore::new(READ_CONNECTIONS_MAX)),
        mode: ReadMode::Locked,
    };
    let writer = Writer {
        connection: Arc::new(Mutex::new(writer)),
        #[cfg(feature = "sim")]
        faults: None,
    };
    Ok((readers, writer))
}

/// Opens the log file to read only (`crate::read_only`): the file must
/// exist; nothing is migrated, and no file is created or changed.
pub(crate) async fn open_read_only(path: &Path) -> Result<Readers, StoreError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = std::fs::metadata(&path).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        if !metadata.is_file() {
            return Err(StoreError::Io(format!("{} is not a file", path.display())));
        }
        let (wal, shm) = (beside(&path, "-wal"), beside(&path, "-shm"));
        let mode = match (wal.exists(), shm.exists()) {
            (false, _) => ReadMode::Unlocked(Arc::new(FileStamp::of(&path)?)),
            (true, true) => ReadMode::Locked,
            (true, false) => {
                return Err(StoreError::Io(format!(
                    "{} exists without {}: the log was not closed cleanly, and reading it would make SQLite create \
                     the second; start and stop the ledger on it once, or read a copy of the directory",
                    wal.display(),
                    shm.display()
                )));
            }
        };
        let connection = mode.connect(&path)?;
        let (applied, missing) = schema(&connection)?;
        let what = path.display().to_string();
        crate::read_only::check_schema(&what, &applied, MIGRATOR.iter(), &missing)?;
        mode.unchanged(&path)?;
        let readers = Readers {
            path,
            idle: Arc::new(Mutex::new(vec![connection])),
            permits: Arc::new(Semaphore::new(READ_CONNECTIONS_MAX)),
            mode,
        };
        Ok(readers)
    })
    .await
    .expect("opening a connection does not panic")
}

/// The migrations the database recorded and the tables a reader reads
/// that it lacks.
fn schema(connection: &Connection) -> Result<(Vec<crate::read_only::Applied>, Vec<&'static str>), StoreError> {
    let mut exists = connection.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1")?;
    let mut has = |table: &str| exists.query_row([table], |row| row.get::<_, i64>(0)).map(|n| n > 0);
    if !has("_sqlx_migrations")? {
        let what = connection.path().unwrap_or_default().to_owned();
        return Err(StoreError::Schema(format!(
            "{what} holds no ledger schema (no _sqlx_migrations table): it is not a ledger's log"
        )));
    }
    let mut missing = Vec::new();
    for table in crate::read_only::TABLES_READ {
        if !has(table)? {
            missing.push(table);
        }
    }
    let mut statement =
        connection.prepare("SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version")?;
    let rows = statement.query_map([], |row| {
        Ok(crate::read_only::Applied {
            version: row.get(0)?,
            description: row.get(1)?,
            success: row.get(2)?,
            checksum: row.get(3)?,
        })
    })?;
    Ok((rows.collect::<Result<_, _>>()?, missing))
}

/// `{database}{suffix}`: SQLite's `-wal` and `-shm` files.
fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// How read connections open the database file.
#[derive(Clone)]
pub(crate) enum ReadMode {
    /// Under SQLite's locks, beside writers (this process's, or any while
    /// the `-wal` exists).
    Locked,
    /// A log no process had open (no `-wal`), read as SQLite's immutable
    /// file: without locks, and without creating the `-wal` and `-shm`
    /// files a locked reader needs. Each read is followed by a check that
    /// the file is still as it was opened and that no writer came.
    Unlocked(Arc<FileStamp>),
}

/// A file's length and modification time: a checkpoint that writes into
/// it changes them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: std::time::SystemTime,
}

impl FileStamp {
    fn of(path: &Path) -> Result<Self, StoreError> {
        let metadata = std::fs::metadata(path).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        let modified = metadata.modified().map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        Ok(Self { len: metadata.len(), modified })
    }
}

impl ReadMode {
    fn connect(&self, path: &Path) -> Result<Connection, StoreError> {
        match self {
            Self::Locked => connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY),
            Self::Unlocked(_) => {
                let uri = format!("file:{}?immutable=1", uri_path(path));
                connect(Path::new(&uri), OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
            }
        }
    }

    /// After a read without locks: whether the file is as it was when
    /// opened and no process opened it to write since.
    fn unchanged(&self, path: &Path) -> Result<(), StoreError> {
        let Self::Unlocked(stamp) = self else { return Ok(()) };
        if !beside(path, "-wal").exists() && FileStamp::of(path).is_ok_and(|now| now == **stamp) {
            return Ok(());
        }
        Err(StoreError::Changed(format!(
            "{} changed while it was read without locks (a ledger process opened it): read it again, which then \
             reads beside that process under SQLite's locks",
            path.display()
        )))
    }
}

/// A path as the path of a `file:` URI: every byte but unreserved ones
/// and `/` percent-encoded, so `?`, `#` and `%` in a directory name stay
/// part of the path.
pub fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'_' | b'.' | b'~') {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// Creates the database file readable by its owner only (0600) if it is
/// not there yet: it holds e-mail addresses and IP addresses. SQLite gives
/// the `-wal` and `-shm` files it makes the database file's permissions.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Io(format!("creating {}: {error}", path.display()))),
    }
}

/// An advisory `flock` on `{database}-{name}.lock` (created 0600), waiting
/// for it when `wait`; `None` when it is held elsewhere and not waiting.
/// The kernel releases it when the file is closed or the process exits.
async fn lock_file(database: &Path, name: &str, wait: bool) -> Result<Option<std::fs::File>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = database.as_os_str().to_owned();
    path.push(format!("-{name}.lock"));
    let path = PathBuf::from(path);
    tokio::task::spawn_blocking(move || {
        let failed = |error: std::io::Error| StoreError::Io(format!("{}: {error}", path.display()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(failed)?;
        if wait {
            return file.lock().map(|()| Some(file)).map_err(failed);
        }
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(error)) => Err(failed(error)),
        }
    })
    .await
    .expect("taking a lock does not panic")
}

fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    connection.busy_timeout(LOCK_WAIT)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // Freed content is overwritten with zeros, so an erased record's bytes
    // do not linger in free pages (issue 16).
    connection.pragma_update(None, "secure_delete", "ON")?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(connection)
}

/// The writer's connection. Only the writer task uses it, one batch at a
/// time; the mutex only carries it onto a blocking thread and back.
pub(crate) struct Writer {
    connection: Arc<Mutex<Connection>>,
    /// The simulation's commit faults (`crate::faults`).
    #[cfg(feature = "sim")]
    pub(crate) faults: Option<Arc<crate::faults::CommitFaults>>,
}

impl Writer {
    pub(crate) async fn commit(&self, batch: Arc<Batch>, groups: Range<usize>, now: Timestamp) -> Outcomes {
        let connection = self.connection.clone();
        #[cfg(feature = "sim")]
        let faults = self.faults.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().expect("the writer's connection is not poisoned");
            let slice = batch.slice(groups);
            #[cfg(feature = "sim")]
            return crate::faults::commit(faults.as_deref(), &mut connection, slice, now);
            #[cfg(not(feature = "sim"))]
            commit(&mut connection, slice, now)
        })
        .await
        .unwrap_or_else(|error| Err(CommitError { error: blocking_failed(error), at_commit: true }))
    }
}

pub(crate) fn commit(connection: &mut Connection, (commands, groups, salts): Slice<'_>, now: Timestamp) -> Outcomes {
    let before = |error: StoreError| CommitError { error, at_commit: false };
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| before(e.into()))?;
    let planned = (|| {
        let head = read_head(&tx)?;
        let plan = plan::plan(
            head,
            known_commands(&tx, commands)?,
            stream_revisions(&tx, commands)?,
            commands,
            groups,
            salts,
            now,
        );
        write(&tx, &plan)?;
        Ok::<_, StoreError>(plan.outcomes)
    })();
    // On an error the transaction rolls back when `tx` is dropped.
    let outcomes = planned.map_err(before)?;
    tx.commit().map_err(|e| CommitError { error: e.into(), at_commit: true })?;
    Ok(outcomes)
}

fn read_head(connection: &Connection) -> Result<Head, StoreError> {
    let (sequence, chain, recorded_at): (i64, Vec<u8>, i64) = connection
        .prepare_cached("SELECT sequence, chain_hash, recorded_at_us FROM log_head WHERE id = 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    let sequence = unsigned(0, "head sequence", sequence)?;
    Ok(Head {
        sequence,
        chain_hash: hash_column(sequence, "head chain hash", &chain)?,
        recorded_at: Timestamp::from_micros(recorded_at),
    })
}

fn known_commands(
    connection: &Connection,
    commands: &[Command],
) -> Result<std::collections::HashMap<String, KnownCommand>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT digest, stream_id, first_sequence, last_sequence, stream_revision FROM commands WHERE idempotency_key = ?1",
    )?;
    let mut known = std::collections::HashMap::new();
    for key in commands.iter().filter_map(|c| c.idempotency.as_ref().map(|i| &i.key)) {
        let row: Option<(Vec<u8>, String, i64, i64, i64)> = statement
            .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
            .optional()?;
        let Some((digest, stream_id, first, last, revision)) = row else { continue };
        let first_sequence = unsigned(0, "command first sequence", first)?;
        let command = KnownCommand {
            digest: hash_column(first_sequence, "command digest", &digest)?,
            stream_id: StreamId::new(stream_id)
                .map_err(|e| StoreError::Corrupt { sequence: first_sequence, what: e.to_string() })?,
            appended: Appended {
                first_sequence,
                last_sequence: unsigned(first_sequence, "command last sequence", last)?,
                stream_revision: unsigned(first_sequence, "command stream revision", revision)?,
                replayed: false,
            },
        };
        known.insert(key.clone(), command);
    }
    Ok(known)
}

fn stream_revisions(
    connection: &Connection,
    commands: &[Command],
) -> Result<std::collections::HashMap<StreamId, u64>, StoreError> {
    // A scalar MAX over the (stream_id, stream_revision) index is one seek.
    let mut statement = connection.prepare_cached("SELECT MAX(stream_revision) FROM events WHERE stream_id = ?1")?;
    let mut revisions = std::collections::HashMap::new();
    for command in commands {
        if revisions.contains_key(&command.stream_id) {
            continue;
        }
        let revision: Option<i64> = statement.query_row([command.stream_id.as_str()], |row| row.get(0))?;
        if let Some(revision) = revision {
            revisions.insert(command.stream_id.clone(), unsigned(0, "stream revision", revision)?);
        }
    }
    Ok(revisions)
}

fn write(connection: &Connection, plan: &plan::Plan) -> Result<(), StoreError> {
    if plan.records.is_empty() {
        return Ok(());
    }
    let mut insert = connection.prepare_cached(&format!(
        "INSERT INTO events ({INSERT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?;
    for record in &plan.records {
        let header = &record.header;
        insert.execute(params![
            signed(header.sequence),
            &header.event_id.as_bytes()[..],
            header.stream_id.as_str(),
            signed(header.stream_revision),
            header.event_type,
            i64::from(header.schema_version),
            header.occurred_at.as_micros(),
            header.recorded_at.as_micros(),
            header.idempotency_key,
            record.metadata,
            &record.metadata_hash.as_bytes()[..],
            record.payload,
            &record.payload_hash.as_bytes()[..],
            &record.leaf_hash.as_bytes()[..],
            &record.chain_hash.as_bytes()[..],
            i64::from(record.format),
            record.salt.as_ref().map(|salt| &salt[..]),
        ])?;
    }
    let mut insert = connection.prepare_cached(
        "INSERT INTO commands (idempotency_key, digest, stream_id, first_sequence, last_sequence, stream_revision) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (key, command) in &plan.commands {
        insert.execute(params![
            key,
            &command.digest.as_bytes()[..],
            command.stream_id.as_str(),
            signed(command.appended.first_sequence),
            signed(command.appended.last_sequence),
            signed(command.appended.stream_revision),
        ])?;
    }
    connection
        .prepare_cached("UPDATE log_head SET sequence = ?1, chain_hash = ?2, recorded_at_us = ?3 WHERE id = 1")?
        .execute(params![
            signed(plan.head.sequence),
            &plan.head.chain_hash.as_bytes()[..],
            plan.head.recorded_at.as_micros()
        ])?;
    Ok(())
}

/// A snapshot row: sequence, digest, state, chain hash.
type SnapshotRow = (i64, [u8; 32], Vec<u8>, Option<Vec<u8>>);

/// Read-only connections, kept for reuse, used on blocking threads.
#[derive(Clone)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
    mode: ReadMode,
}

impl Readers {
    async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let idle = readers.idle.lock().expect("the idle list is not poisoned").pop();
            let connection = match idle {
                Some(connection) => connection,
                None => readers.mode.connect(&readers.path)?,
            };
            let result = read(&connection);
            readers.idle.lock().expect("the idle list is not poisoned").push(connection);
            let unchanged = readers.mode.unchanged(&readers.path);
            result.and_then(|value| unchanged.map(|()| value))
        })
        .await
        .unwrap_or_else(|error| Err(blocking_failed(error)))
    }

    pub(crate) async fn save_snapshot(&self, snapshot: Snapshot, now: Timestamp) -> Result<(), StoreError> {
        let path = self.path.clone();
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            // Snapshots are rare; a connection of their own keeps the read
            // connections read-only.
            let connection = connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            connection.execute(
                "INSERT INTO projection_snapshots (name, sequence, digest, state, saved_at_us, chain_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, digest = excluded.digest, \
                 state = excluded.state, saved_at_us = excluded.saved_at_us, chain_hash = excluded.chain_hash \
                 WHERE excluded.sequence > projection_snapshots.sequence",
                params![
                    snapshot.name,
                    signed(snapshot.sequence),
                    &snapshot.digest.as_bytes()[..],
                    snapshot.state,
                    now.as_micros(),
                    snapshot.chain_hash.map(|hash| hash.0.to_vec()),
                ],
            )?;
            Ok(())
        })
        .await
        .expect("saving a snapshot does not panic")
    }

    pub(crate) async fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>, StoreError> {
        let name = name.to_owned();
        self.run(move |connection| {
            let row: Option<SnapshotRow> = connection
                .prepare_cached("SELECT sequence, digest, state, chain_hash FROM projection_snapshots WHERE name = ?1")?
                .query_row([&name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                .optional()?;
            row.map(|(sequence, digest, state, chain)| {
                let sequence = unsigned(0, "snapshot sequence", sequence)?;
                Ok(Snapshot {
                    chain_hash: chain.map(|c| hash_column(sequence, "snapshot chain hash", &c)).transpose()?,
                    sequence,
                    digest: Hash(digest),
                    state,
                    name,
                })
            })
            .transpose()
        })
        .await
    }

    pub(crate) async fn snapshot_checkpoints(&self) -> Result<Vec<SnapshotCheckpoint>, StoreError> {
        self.run(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT name, sequence, chain_hash FROM projection_snapshots ORDER BY name")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<Vec<u8>>>(2)?))
            })?;
            let mut checkpoints = Vec::new();
            for row in rows {
                let (name, sequence, chain) = row?;
                let sequence = unsigned(0, "snapshot sequence", sequence)?;
                let chain_hash = chain.map(|c| hash_column(sequence, "snapshot chain hash", &c)).transpose()?;
                checkpoints.push(SnapshotCheckpoint { name, sequence, chain_hash });
            }
            Ok(checkpoints)
        })
        .await
    }

    pub(crate) async fn delete_snapshot(&self, name: &str) -> Result<(), StoreError> {
        let (path, name) = (self.path.clone(), name.to_owned());
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let connection = connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            connection.execute("DELETE FROM projection_snapshots WHERE name = ?1", [name])?;
            Ok(())
        })
        .await
        .expect("deleting a snapshot does not panic")
    }

    /// An advisory lock on `{database}-{name}.lock` (0600), taken without
    /// waiting; every process sharing the SQLite log sees the same file.
    pub(crate) async fn try_lock(&self, name: &str) -> Result<Option<std::fs::File>, StoreError> {
        lock_file(&self.path, name, false).await
    }

    pub(crate) async fn find_idempotency_key(&self, key: &str) -> Result<Option<(Hash, Appended)>, StoreError> {
        let key = key.to_owned();
        self.run(move |connection| {
            let commands = [Command {
                stream_id: StreamId::new("lookup/key").expect("a valid stream id"),
                expected: crate::ExpectedRevision::Any,
                idempotency: Some(crate::Idempotency { key: key.clone(), digest: Hash([0; 32]) }),
                events: Vec::new(),
            }];
            Ok(known_commands(connection, &commands)?.remove(&key).map(|known| (known.digest, known.appended)))
        })
        .await
    }

    pub(crate) async fn stream_revision(&self, stream_id: &StreamId) -> Result<u64, StoreError> {
        let stream_id = stream_id.clone();
        self.run(move |connection| {
            let revision: Option<i64> = connection
                .prepare_cached("SELECT MAX(stream_revision) FROM events WHERE stream_id = ?1")?
                .query_row([stream_id.as_str()], |row| row.get(0))?;
            unsigned(0, "stream revision", revision.unwrap_or(0))
        })
        .await
    }

    pub(crate) async fn head(&self) -> Result<Head, StoreError> {
        self.run(read_head).await
    }

    pub(crate) async fn read_page(&self, range: RangeInclusive<u64>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.run(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE e.sequence >= ?1 AND e.sequence <= ?2 \
                 ORDER BY e.sequence LIMIT ?3"
            ))?;
            let rows = statement.query_map(
                params![signed(*range.start()), signed((*range.end()).min(i64::MAX as u64)), signed(limit as u64)],
                record,
            )?;
            collect(rows)
        })
        .await
    }

    pub(crate) async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_revision: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let stream_id = stream_id.clone();
        self.run(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE e.stream_id = ?1 AND e.stream_revision >= ?2 \
                 ORDER BY e.stream_revision LIMIT ?3"
            ))?;
            let rows = statement
                .query_map(params![stream_id.as_str(), signed(from_revision), signed(limit as u64)], record)?;
            collect(rows)
        })
        .await
    }
}

/// Decodes a row straight into a record: hashes land in fixed arrays, not
/// vectors, which saves four allocations a row on the hot read path.
fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Record, StoreError>> {
    let sequence: i64 = row.get(0)?;
    let stream_id: String = row.get(2)?;
    let stream_revision: i64 = row.get(3)?;
    let schema_version: i64 = row.get(5)?;
    let header = (|| {
        let sequence = unsigned(0, "sequence", sequence)?;
        let corrupt = |what: String| StoreError::Corrupt { sequence, what };
        Ok::<_, StoreError>(RecordHeader {
            sequence,
            event_id: EventId(uuid::Uuid::from_bytes(row.get(1).map_err(|e| corrupt(e.to_string()))?)),
            stream_id: StreamId::new(stream_id).map_err(|e| corrupt(e.to_string()))?,
            stream_revision: unsigned(sequence, "stream revision", stream_revision)?,
            event_type: row.get(4).map_err(|e| corrupt(e.to_string()))?,
            schema_version: u32::try_from(schema_version).map_err(|_| corrupt("schema version is not a u32".into()))?,
            occurred_at: Timestamp::from_micros(row.get(6).map_err(|e| corrupt(e.to_string()))?),
            recorded_at: Timestamp::from_micros(row.get(7).map_err(|e| corrupt(e.to_string()))?),
            idempotency_key: row.get(8).map_err(|e| corrupt(e.to_string()))?,
        })
    })();
    let header = match header {
        Ok(header) => header,
        Err(error) => return Ok(Err(error)),
    };
    let hash = |index: usize, what: &str| {
        row.get::<_, [u8; 32]>(index)
            .map(Hash)
            .map_err(|_| StoreError::Corrupt { sequence: header.sequence, what: format!("{what} is not 32 bytes") })
    };
    let hashes = (|| {
        Ok::<_, StoreError>((
            hash(10, "metadata hash")?,
            hash(12, "payload hash")?,
            hash(13, "leaf hash")?,
            hash(14, "chain hash")?,
        ))
    })();
    let (metadata_hash, payload_hash, leaf_hash, chain_hash) = match hashes {
        Ok(hashes) => hashes,
        Err(error) => return Ok(Err(error)),
    };
    let (format, salt, erasure) = match privacy_columns(row, header.sequence) {
        Ok(privacy) => privacy,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(Record {
        format,
        salt,
        erasure,
        metadata: row.get(9)?,
        payload: row.get(11)?,
        header,
        metadata_hash,
        payload_hash,
        leaf_hash,
        chain_hash,
    }))
}

/// A record's format, salt and erasure.
type PrivacyColumns = (u8, Option<[u8; SALT_BYTES]>, Option<Erasure>);

/// A record's format, salt and erasure from its row.
fn privacy_columns(row: &rusqlite::Row<'_>, sequence: u64) -> Result<PrivacyColumns, StoreError> {
    Ok((
        crate::row::format_column(sequence, row.get(15)?)?,
        crate::row::salt_column(sequence, row.get(16)?)?,
        crate::row::erasure_columns(sequence, row.get(17)?, row.get(18)?)?,
    ))
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<Result<Record, StoreError>>>,
) -> Result<Vec<Record>, StoreError> {
    rows.map(|row| row?).collect()
}

/// A blocking task that did not finish: a panic is the caller's again; a
/// task cancelled because the runtime is shutting down is an error, not a
/// panic (a read or commit in flight when a process exits).
fn blocking_failed(error: tokio::task::JoinError) -> StoreError {
    match error.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(_) => StoreError::Io("the runtime shut down while the database was in use".into()),
    }
}

impl Readers {
    /// Erases `rows` as sanctioned by the record at `by`
    /// ([`crate::EventLog::erase`]), on a connection of its own in one
    /// `BEGIN IMMEDIATE` transaction, then checkpoints the WAL into the
    /// database and truncates it, so the erased bytes leave the `-wal` too.
    pub(crate) async fn erase(&self, by: u64, rows: Vec<crate::ErasedRow>) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let mut connection = connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let erased = erase_rows(&tx, by, &rows)?;
            tx.commit()?;
            checkpoint(&connection)?;
            Ok(erased)
        })
        .await
        .unwrap_or_else(|error| Err(blocking_failed(error)))
    }

    /// The log file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Erases `rows` inside the caller's transaction: checks that `by` is in
/// the log and later than every row, then for each row not yet erased
/// writes its `erasures` row and sets its erasable columns to NULL.
fn erase_rows(connection: &Connection, by: u64, rows: &[crate::ErasedRow]) -> Result<u64, StoreError> {
    let present: Option<i64> = connection
        .prepare_cached("SELECT sequence FROM events WHERE sequence = ?1")?
        .query_row([signed(by)], |row| row.get(0))
        .optional()?;
    if present.is_none() {
        return Err(StoreError::EraserMissing { by });
    }
    let mut erased = 0;
    for row in rows {
        let inserted = connection
            .prepare_cached(
                "INSERT INTO erasures (sequence, erased_by, facts) SELECT sequence, ?2, ?3 FROM events \
                 WHERE sequence = ?1 ON CONFLICT (sequence) DO NOTHING",
            )?
            .execute(params![signed(row.sequence), signed(by), row.facts])?;
        if inserted == 0 {
            continue;
        }
        connection
            .prepare_cached("UPDATE events SET metadata = NULL, payload = NULL, salt = NULL WHERE sequence = ?1")?
            .execute([signed(row.sequence)])?;
        erased += 1;
    }
    Ok(erased)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: copies every frame of the WAL into
/// the database and truncates the WAL to zero bytes. A reader still on an
/// old snapshot keeps it from completing: that is reported, not hidden.
fn checkpoint(connection: &Connection) -> Result<(), StoreError> {
    let (busy, frames, copied): (i64, i64, i64) =
        connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    if busy != 0 {
        return Err(StoreError::Io(format!(
            "the erasure is committed, but the WAL could not be checkpointed ({copied} of {frames} frames copied): \
             another connection is reading; erased bytes may remain in the -wal until the next checkpoint"
        )));
    }
    Ok(())
}

impl Readers {
    /// `verify`'s read of a page: up to `limit` records of `range`, each
    /// checked straight from SQLite's row buffer on this reader's thread
    /// ([`crate::verify::CheckedPage::push`]), nothing allocated per record.
    pub(crate) async fn read_checked_page(
        &self,
        range: RangeInclusive<u64>,
        limit: usize,
    ) -> Result<crate::verify::CheckedPage, StoreError> {
        self.run(move |connection| {
            let mut statement = connection.prepare_cached(&crate::row::verify_query('?'))?;
            let mut rows = statement.query(params![
                signed(*range.start()),
                signed((*range.end()).min(i64::MAX as u64)),
                signed(limit as u64)
            ])?;
            let mut page = crate::verify::CheckedPage::with_capacity(limit);
            while let Some(row) = rows.next()? {
                page.push(verify_columns(row)?)?;
            }
            Ok(page)
        })
        .await
    }
}

/// A row of [`crate::row::VERIFY_COLUMNS`], borrowed from SQLite's buffer.
fn verify_columns<'a>(row: &'a rusqlite::Row<'_>) -> Result<crate::verify::Columns<'a>, StoreError> {
    use rusqlite::types::ValueRef;
    let sequence = row.get_ref(0)?.as_i64().map_err(|e| StoreError::Corrupt { sequence: 0, what: e.to_string() })?;
    let corrupt = |what: String| StoreError::Corrupt { sequence: sequence.max(0) as u64, what };
    let text = |index: usize| -> Result<Option<&'a str>, StoreError> {
        row.get_ref(index)?.as_str_or_null().map_err(|e| corrupt(e.to_string()))
    };
    let blob = |index: usize| -> Result<Option<&'a [u8]>, StoreError> {
        match row.get_ref(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(bytes) => Ok(Some(bytes)),
            other => Err(corrupt(format!("column {index} is {}, not a blob", other.data_type()))),
        }
    };
    let integer = |index: usize| -> Result<Option<i64>, StoreError> {
        row.get_ref(index)?.as_i64_or_null().map_err(|e| corrupt(e.to_string()))
    };
    let required = |what: &str| corrupt(format!("{what} is NULL"));
    let event_id = blob(1)?.and_then(|bytes| <[u8; 16]>::try_from(bytes).ok());
    Ok(crate::verify::Columns {
        sequence,
        event_id: event_id.ok_or_else(|| corrupt("the event id is not 16 bytes".into()))?,
        stream_id: text(2)?.ok_or_else(|| required("the stream id"))?,
        stream_revision: integer(3)?.ok_or_else(|| required("the stream revision"))?,
        event_type: text(4)?.ok_or_else(|| required("the event type"))?,
        schema_version: integer(5)?.ok_or_else(|| required("the schema version"))?,
        occurred_at_us: integer(6)?.ok_or_else(|| required("occurredAt"))?,
        recorded_at_us: integer(7)?.ok_or_else(|| required("recordedAt"))?,
        idempotency_key: text(8)?,
        metadata: blob(9)?,
        metadata_hash: blob(10)?.unwrap_or_default(),
        payload: blob(11)?,
        payload_hash: blob(12)?.unwrap_or_default(),
        leaf_hash: blob(13)?.unwrap_or_default(),
        chain_hash: blob(14)?.unwrap_or_default(),
        format: integer(15)?.ok_or_else(|| required("the format"))?,
        salt: blob(16)?,
        erased_by: integer(17)?,
    })
}

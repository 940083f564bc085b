//! The event log: one immutable, totally ordered, hash-chained sequence of
//! records, on SQLite (the embedded default) or PostgreSQL.
//!
//! All appends of a process go through one writer task. It takes every
//! request waiting in its bounded queue, decides them together
//! ([`plan`](crate::plan)) and commits them in one transaction (group
//! commit), so throughput comes from batching, not from parallel writers.
//! Inside the transaction it first takes the database's write lock (SQLite
//! `BEGIN IMMEDIATE`, PostgreSQL `SELECT … FOR UPDATE` on the head row) and
//! re-reads the head, so several processes may append to one log and the
//! chain stays linear.

use std::ops::RangeInclusive;
use std::sync::Arc;

use domain::record::{Hash, Record, VerifyFailure};
use domain::{Clock, EventId, StreamId, Timestamp};
use futures::{Stream, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

#[cfg(feature = "sim")]
pub mod faults;
mod hosts;
pub mod metrics;
mod plan;
mod postgres;
mod read_only;
mod row;
pub mod sessions;
mod sqlite;
pub mod testing;
mod verify;
mod writer;

pub use domain::record::CHAIN_GENESIS;
pub use hosts::{HOST_CHECK_INTERVAL, HOSTS_MAX, PgHosts};
pub use postgres::{APPEND_ATTEMPTS_MAX, STREAM_REVISIONS_CACHED_MAX};
pub use read_only::ReadOnlyLog;
/// A path as the path of a SQLite `file:` URI (the read-only readers' `immutable=1` opens).
pub use sqlite::uri_path as sqlite_uri_path;
pub use verify::VERIFY_PAGE_RECORDS;

/// Requests waiting for the writer; a full queue makes `append` wait.
pub const QUEUE_REQUESTS_MAX: usize = 1024;
/// The writer stops adding requests to a batch once it holds this many events.
pub const BATCH_EVENTS_MAX: usize = 8192;
/// Events one command may append.
pub const COMMAND_EVENTS_MAX: usize = 4096;
/// Records fetched per query when reading the log in order.
pub const READ_PAGE_RECORDS: usize = 4096;
/// Pages `verify` reads ahead of the one it is checking.
pub const VERIFY_PAGES_AHEAD: usize = 2;
/// Most pages `verify` reads and checks at once, one per core up to this.
pub const VERIFY_PAGES_IN_FLIGHT_MAX: usize = 8;

/// One event to append; the log adds sequence, revision and recordedAt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: Timestamp,
    /// Encoded [`domain::Metadata`].
    pub metadata: Vec<u8>,
    /// The encoded event, stored exactly as given.
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// A domain event as a new record.
    pub fn from_event<E: domain::event::StoredEvent>(
        event: &E,
        event_id: EventId,
        occurred_at: Timestamp,
        metadata: &domain::Metadata,
    ) -> Self {
        Self {
            event_id,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            occurred_at,
            metadata: metadata.encode(),
            payload: event.encode_payload(),
        }
    }
}

/// The revision a command expects its stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// Append whatever the stream's revision.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this revision.
    Exactly(u64),
    /// The stream must hold fewer than this many events: a cap that holds
    /// exactly without making concurrent appends conflict (the writer
    /// checks it in order), as for a key's validations of a day.
    Below(u64),
}

impl std::fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any revision"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exactly(revision) => write!(f, "revision {revision}"),
            Self::Below(bound) => write!(f, "fewer than {bound} events"),
        }
    }
}

/// A command's idempotency key and a digest of what it asks for. The same
/// key with the same digest is answered with the first result; with
/// another digest it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub digest: Hash,
}

impl Idempotency {
    /// A digest of the events' types, versions and payloads, for callers
    /// whose events are the same on a retry. Callers whose events carry
    /// fresh ids or times on each attempt digest their request instead.
    pub fn of_events(key: impl Into<String>, stream_id: &StreamId, events: &[NewEvent]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("ledger 2026-11-29 command digest v1");
        let mut put = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        put(stream_id.as_str().as_bytes());
        for event in events {
            put(event.event_type.as_bytes());
            put(&event.schema_version.to_le_bytes());
            put(&event.payload);
        }
        Self { key: key.into(), digest: Hash(*hasher.finalize().as_bytes()) }
    }
}

/// Events for one stream, appended all or nothing.
#[derive(Debug, Clone)]
pub struct Command {
    pub stream_id: StreamId,
    pub expected: ExpectedRevision,
    pub idempotency: Option<Idempotency>,
    pub events: Vec<NewEvent>,
}

/// Where a command's events landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// The stream's revision after the command.
    pub stream_revision: u64,
    /// True when this answers a retry from the first attempt's result.
    pub replayed: bool,
}

/// Why one command was not appended. Nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("stream {stream_id} expected {expected} but is at revision {actual}")]
    WrongRevision { stream_id: StreamId, expected: ExpectedRevision, actual: u64 },
    #[error("idempotency key {key:?} was used before for a different command")]
    IdempotencyConflict { key: String },
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// The log could not do what was asked; nothing was acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] Arc<sqlx::Error>),
    #[error("SQLite error: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("schema migration failed: {0}")]
    Migration(Arc<sqlx::migrate::MigrateError>),
    #[error("the database holds a value this version cannot read at sequence {sequence}: {what}")]
    Corrupt { sequence: u64, what: String },
    #[error("the log's writer has stopped")]
    WriterStopped,
    #[error("{0}")]
    Io(String),
    #[error("lock: {0}")]
    Lock(String),
    /// A log opened read-only whose schema is not this version's: it is
    /// reported, never migrated ([`ReadOnlyLog`]).
    #[error("{0}")]
    Schema(String),
    /// A SQLite log read without locks changed while it was read.
    #[error("{0}")]
    Changed(String),
    /// An erasure named a sanctioning record that is not in the log.
    #[error("erasure refused: the record {by} that would sanction it is not in the log")]
    EraserMissing { by: u64 },
    /// An erasure named a record that is not earlier than the record that
    /// sanctions it.
    #[error("erasure refused: record {sequence} is not earlier than the record {by} that would sanction it")]
    ErasureNotLater { by: u64, sequence: u64 },
    /// An erasure listed more than [`ERASE_ROWS_MAX`] records.
    #[error("erasure refused: {rows} records listed, at most {max} per call", max = ERASE_ROWS_MAX)]
    TooManyErasures { rows: usize },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(Arc::new(error))
    }
}

/// The last record's sequence and chain hash (sequence 0 and
/// [`CHAIN_GENESIS`] for an empty log), and its recordedAt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub sequence: u64,
    pub chain_hash: Hash,
    pub recorded_at: Timestamp,
}

impl Default for Head {
    fn default() -> Self {
        Self { sequence: 0, chain_hash: CHAIN_GENESIS, recorded_at: Timestamp::from_micros(0) }
    }
}

/// A projection's state as of a sequence of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    /// The last sequence the state includes: the projection's checkpoint.
    pub sequence: u64,
    /// The chain hash of the record at `sequence` (or [`CHAIN_GENESIS`] at
    /// 0) as the projection applied it, so a log that no longer holds that
    /// record (a rollback) is noticed. `None` only for a snapshot saved
    /// before chain hashes were kept whose record the log no longer held
    /// when the migration added them: a rollback too.
    pub chain_hash: Option<Hash>,
    pub digest: Hash,
    pub state: Vec<u8>,
}

/// Where a saved snapshot stands, without its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheckpoint {
    pub name: String,
    pub sequence: u64,
    pub chain_hash: Option<Hash>,
}

/// A lock that one process at a time holds among all processes on one
/// log (`EventLog::try_lock`), for work that must not run twice at once
/// (the Stripe sync). Released when dropped, or when the process dies.
pub struct ExclusiveLock {
    inner: LockInner,
}

enum LockInner {
    /// An advisory `flock` on a file beside the SQLite database; the
    /// kernel releases it when the file is closed or the process exits.
    Sqlite(#[allow(dead_code)] std::fs::File),
    /// A session-level advisory lock, held by a connection of its own: it
    /// lasts as long as that session.
    Postgres(tokio::sync::Mutex<sqlx::PgConnection>),
}

impl ExclusiveLock {
    /// Whether the lock is still held. On PostgreSQL the lock belongs to a
    /// session, so a session that no longer answers (a dropped connection,
    /// a failover) may have lost it to another process: the holder asks
    /// before each piece of work.
    pub async fn held(&self) -> bool {
        match &self.inner {
            LockInner::Sqlite(_) => true,
            LockInner::Postgres(connection) => {
                let mut connection = connection.lock().await;
                postgres::holds_lock(&mut connection).await
            }
        }
    }
}

impl std::fmt::Debug for ExclusiveLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            LockInner::Sqlite(_) => "ExclusiveLock(file)",
            LockInner::Postgres(_) => "ExclusiveLock(advisory)",
        })
    }
}

/// Lock names: a few lowercase ASCII letters and dashes, so they make safe
/// file names and stable advisory lock keys.
pub const LOCK_NAME_BYTES_MAX: usize = 64;

/// What [`EventLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked before the first failure (all of them if none).
    pub checked: u64,
    /// The first defect, naming its sequence; `None` when all holds.
    pub failure: Option<VerifyFailure>,
}

/// A record [`EventLog::verify_with`] checked (its leaf, its erasure's
/// sanction by a later record, and its link to the chain), as handed to
/// the caller's visitor, in sequence order. Borrowed: nothing is copied
/// per record for a caller that keeps nothing.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedRecord<'a> {
    pub sequence: u64,
    pub stream_id: &'a str,
    pub event_type: &'a str,
    pub leaf_hash: &'a Hash,
    pub chain_hash: &'a Hash,
    /// The later record that sanctioned this record's erasure, if erased.
    pub erased_by: Option<u64>,
}

/// The read side of a backend.
#[derive(Clone)]
enum Reader {
    Sqlite(sqlite::Readers),
    Postgres(sqlx::PgPool),
}

impl Reader {
    async fn head(&self) -> Result<Head, StoreError> {
        match self {
            Reader::Sqlite(readers) => readers.head().await,
            Reader::Postgres(pool) => postgres::head(pool).await,
        }
    }

    async fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Reader::Sqlite(readers) => readers.load_snapshot(name).await,
            Reader::Postgres(pool) => postgres::load_snapshot(pool, name).await,
        }
    }

    /// A range beyond what the databases can hold (past 2^63) is empty.
    async fn read_page(&self, range: RangeInclusive<u64>, limit: usize) -> Result<Vec<Record>, StoreError> {
        if range.is_empty() || *range.start() > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        match self {
            Reader::Sqlite(readers) => readers.read_page(range, limit).await,
            Reader::Postgres(pool) => postgres::read_page(pool, range, limit).await,
        }
    }
}

/// Records one [`EventLog::erase`] call may erase: as many as one privacy
/// event may list.
pub const ERASE_ROWS_MAX: usize = domain::privacy::ERASED_RECORDS_PER_EVENT_MAX;

/// One record to erase and the facts of it that stay (`None`: nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedRow {
    pub sequence: u64,
    pub facts: Option<Vec<u8>>,
}

/// A handle to the log; cheap to clone, shared by all tasks of a process.
#[derive(Clone)]
pub struct EventLog {
    queue: mpsc::Sender<writer::Request>,
    reader: Reader,
    /// The last sequence this process's writer committed; other processes'
    /// appends are seen by polling [`EventLog::head`].
    appended: tokio::sync::watch::Receiver<u64>,
    /// Closed when the writer task has ended and dropped its connection.
    writer_stopped: tokio::sync::watch::Receiver<()>,
    /// The writer's figures, for `/metrics`.
    metrics: Arc<metrics::LogMetrics>,
}

impl EventLog {
    /// Opens (creating if needed) the SQLite log at `path`.
    pub async fn open_sqlite(path: &std::path::Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let (reader, writer) = sqlite::open(path).await?;
        Ok(Self::start(Reader::Sqlite(reader), writer::Backend::Sqlite(writer), clock))
    }

    /// Opens the SQLite log at `path` with the simulation's commit faults
    /// (`sim/`; feature `sim`): the only log that has any.
    #[cfg(feature = "sim")]
    pub async fn open_sqlite_with_faults(
        path: &std::path::Path,
        clock: Arc<dyn Clock>,
        faults: Arc<faults::CommitFaults>,
    ) -> Result<Self, StoreError> {
        let (reader, mut writer) = sqlite::open(path).await?;
        writer.faults = Some(faults);
        Ok(Self::start(Reader::Sqlite(reader), writer::Backend::Sqlite(writer), clock))
    }

    /// Connects to PostgreSQL and migrates its schema.
    pub async fn open_postgres(
        options: sqlx::postgres::PgConnectOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let pool = postgres::open(options).await?;
        Ok(Self::start(Reader::Postgres(pool.clone()), writer::Backend::Postgres(postgres::Writer::new(pool)), clock))
    }

    /// Connects to the writable host of `hosts` (a primary and its
    /// standbys), migrates, and keeps following the writable host
    /// ([`PgHosts::follow`]) after a failover.
    pub async fn open_postgres_hosts(hosts: &PgHosts, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let pool = postgres::open(hosts.writable().await?).await?;
        hosts.follow(pool.clone());
        Ok(Self::start(Reader::Postgres(pool.clone()), writer::Backend::Postgres(postgres::Writer::new(pool)), clock))
    }

    fn start(reader: Reader, backend: writer::Backend, clock: Arc<dyn Clock>) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let (appended_tx, appended) = tokio::sync::watch::channel(0);
        let (stopped, writer_stopped) = tokio::sync::watch::channel(());
        let metrics = Arc::new(metrics::LogMetrics::default());
        let figures = metrics.clone();
        tokio::spawn(async move {
            writer::run(backend, requests, clock, appended_tx, figures).await;
            drop(stopped);
        });
        Self { queue, reader, appended, writer_stopped, metrics }
    }

    /// Closes this handle and waits until the writer has closed its
    /// connection, which it does once every clone of the log is closed or
    /// dropped. On SQLite the last connection to close, the writer's,
    /// folds the `-wal` into the database and removes it with the `-shm`,
    /// as a stopped server leaves its log; dropping a handle instead closes
    /// the connections on other threads, in no fixed order, later.
    pub async fn close(self) {
        let Self { queue, reader, mut writer_stopped, .. } = self;
        // This handle's idle read connections close here, before the writer's.
        drop(reader);
        drop(queue);
        while writer_stopped.changed().await.is_ok() {}
    }

    /// The writer's figures (append latency, batch sizes, errors).
    pub fn metrics(&self) -> &metrics::LogMetrics {
        &self.metrics
    }

    /// Append requests waiting for the writer now (at most
    /// [`QUEUE_REQUESTS_MAX`]).
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Changes whenever this process appends; for projections to wake up.
    pub fn watch_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.clone()
    }

    /// What an idempotency key was used for: the digest of the command it
    /// came with and where that landed. Callers look before deciding, so a
    /// retry is answered even when deciding again would now be refused.
    pub async fn find_idempotency_key(&self, key: &str) -> Result<Option<(Hash, Appended)>, StoreError> {
        match &self.reader {
            Reader::Sqlite(readers) => readers.find_idempotency_key(key).await,
            Reader::Postgres(pool) => postgres::find_idempotency_key(pool, key).await,
        }
    }

    /// Appends commands, each all or nothing. The outer error means the
    /// batch could not be committed and nothing of it was acknowledged;
    /// the inner results say, per command, where it landed or why not.
    pub async fn append(&self, commands: Vec<Command>) -> Result<Vec<Result<Appended, Rejection>>, StoreError> {
        let mut answers: Vec<Option<Result<Appended, Rejection>>> = Vec::with_capacity(commands.len());
        let mut valid = Vec::with_capacity(commands.len());
        for command in commands {
            match validate(&command) {
                Ok(()) => {
                    valid.push(command);
                    answers.push(None);
                }
                Err(rejection) => answers.push(Some(Err(rejection))),
            }
        }
        if !valid.is_empty() {
            let mut results = self.submit(valid, false).await?.into_iter();
            for slot in answers.iter_mut().filter(|slot| slot.is_none()) {
                *slot = results.next();
            }
        }
        Ok(answers.into_iter().map(|answer| answer.expect("every command answered")).collect())
    }

    /// Appends commands to several streams as one: all of them or none. A
    /// refusal names the first command that was refused.
    pub async fn append_atomic(&self, commands: Vec<Command>) -> Result<Result<Vec<Appended>, Rejection>, StoreError> {
        if let Some(rejection) = commands.iter().find_map(|command| validate(command).err()) {
            return Ok(Err(rejection));
        }
        if commands.is_empty() {
            return Ok(Err(Rejection::Invalid("an atomic append has at least one command".into())));
        }
        let results = self.submit(commands, true).await?;
        Ok(results.into_iter().collect())
    }

    async fn submit(&self, commands: Vec<Command>, atomic: bool) -> writer::Answer {
        let started = std::time::Instant::now();
        let answer = self.submit_unmeasured(commands, atomic, false).await;
        self.metrics.append_seconds.observe(started.elapsed().as_secs_f64());
        if answer.is_err() {
            self.metrics.append_errors.inc();
        }
        answer
    }

    async fn submit_unmeasured(&self, commands: Vec<Command>, atomic: bool, legacy_v1: bool) -> writer::Answer {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(writer::Request { commands, atomic, legacy_v1, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Appends one command.
    pub async fn append_one(&self, command: Command) -> Result<Result<Appended, Rejection>, StoreError> {
        let mut results = self.append(vec![command]).await?;
        Ok(results.pop().expect("one command, one answer"))
    }

    /// The last record's sequence, chain hash and recordedAt.
    pub async fn head(&self) -> Result<Head, StoreError> {
        self.reader.head().await
    }

    /// Saves a projection's snapshot, state and checkpoint in one write. A
    /// snapshot never replaces one of a later sequence (several processes
    /// may save the same projection).
    pub async fn save_snapshot(&self, snapshot: Snapshot, now: Timestamp) -> Result<(), StoreError> {
        match &self.reader {
            Reader::Sqlite(readers) => readers.save_snapshot(snapshot, now).await,
            Reader::Postgres(pool) => postgres::save_snapshot(pool, snapshot, now).await,
        }
    }

    /// The latest snapshot of a projection, if one was saved.
    pub async fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>, StoreError> {
        self.reader.load_snapshot(name).await
    }

    /// Every saved snapshot's checkpoint, by name.
    pub async fn snapshot_checkpoints(&self) -> Result<Vec<SnapshotCheckpoint>, StoreError> {
        match &self.reader {
            Reader::Sqlite(readers) => readers.snapshot_checkpoints().await,
            Reader::Postgres(pool) => postgres::snapshot_checkpoints(pool).await,
        }
    }

    /// Removes a projection's snapshot, whatever its sequence: only for an
    /// operator who accepted that the log was rolled back behind it (`ledger
    /// projections rebuild --accept-rollback`), since a snapshot otherwise
    /// only ever moves forward.
    pub async fn delete_snapshot(&self, name: &str) -> Result<(), StoreError> {
        match &self.reader {
            Reader::Sqlite(readers) => readers.delete_snapshot(name).await,
            Reader::Postgres(pool) => postgres::delete_snapshot(pool, name).await,
        }
    }

    /// Takes the lock `name` if no other process on this log holds it:
    /// on SQLite an advisory file lock beside the database (processes
    /// sharing a SQLite log share its directory), on PostgreSQL a
    /// session-level advisory lock on a connection of its own (processes
    /// may be on different machines). `None` when another process holds it.
    pub async fn try_lock(&self, name: &str) -> Result<Option<ExclusiveLock>, StoreError> {
        if name.is_empty()
            || name.len() > LOCK_NAME_BYTES_MAX
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        {
            return Err(StoreError::Lock(format!(
                "{name:?} is not a lock name (a-z and -, at most {LOCK_NAME_BYTES_MAX})"
            )));
        }
        let inner = match &self.reader {
            Reader::Sqlite(readers) => readers.try_lock(name).await?.map(LockInner::Sqlite),
            Reader::Postgres(pool) => {
                postgres::try_lock(pool, name).await?.map(|c| LockInner::Postgres(tokio::sync::Mutex::new(c)))
            }
        };
        Ok(inner.map(|inner| ExclusiveLock { inner }))
    }

    /// Up to `limit` records in global order with sequences in `range`. A
    /// range beyond what the databases can hold (past 2^63) is empty.
    pub async fn read_page(&self, range: RangeInclusive<u64>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.reader.read_page(range, limit).await
    }

    /// Records with sequences in `range`, in order, fetched a page at a
    /// time: memory stays bounded however long the log.
    pub fn read(&self, range: RangeInclusive<u64>) -> impl Stream<Item = Result<Record, StoreError>> + Send + 'static {
        let log = self.clone();
        let end = *range.end();
        futures::stream::try_unfold(Some(*range.start()), move |next| {
            let log = log.clone();
            async move {
                let Some(from) = next.filter(|from| *from <= end) else {
                    return Ok(None);
                };
                let page = log.read_page(from..=end, READ_PAGE_RECORDS).await?;
                let next = match page.last() {
                    Some(last) if page.len() == READ_PAGE_RECORDS => Some(last.header.sequence + 1),
                    _ => None,
                };
                Ok::<_, StoreError>(Some((futures::stream::iter(page.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
    }

    /// A stream's revision: the number of events in it (0 if none).
    pub async fn stream_revision(&self, stream_id: &StreamId) -> Result<u64, StoreError> {
        match &self.reader {
            Reader::Sqlite(readers) => readers.stream_revision(stream_id).await,
            Reader::Postgres(pool) => postgres::stream_revision(pool, stream_id).await,
        }
    }

    /// Up to `limit` records of one stream, from `from_revision` on.
    pub async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_revision: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if from_revision > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        match &self.reader {
            Reader::Sqlite(readers) => readers.read_stream(stream_id, from_revision, limit).await,
            Reader::Postgres(pool) => postgres::read_stream(pool, stream_id, from_revision, limit).await,
        }
    }

    /// Erases the erasable part (metadata, payload, salt) of each listed
    /// record, sanctioned by the privacy event at sequence `by`, which must
    /// already be in the log and later than every listed record; keeps each
    /// record's `facts` beside it (`Record::erasure`). One transaction;
    /// records already erased are skipped. Returns how many were erased.
    /// On SQLite the WAL is checkpointed afterwards, so the erased bytes
    /// leave the `-wal` file too.
    ///
    /// Refused, with nothing changed, when `by` is not in the log
    /// ([`StoreError::EraserMissing`]), a record is not earlier than `by`
    /// ([`StoreError::ErasureNotLater`]) or more than [`ERASE_ROWS_MAX`]
    /// records are listed ([`StoreError::TooManyErasures`]).
    pub async fn erase(&self, by: u64, records: &[ErasedRow]) -> Result<u64, StoreError> {
        if records.len() > ERASE_ROWS_MAX {
            return Err(StoreError::TooManyErasures { rows: records.len() });
        }
        if let Some(row) = records.iter().find(|row| row.sequence >= by) {
            return Err(StoreError::ErasureNotLater { by, sequence: row.sequence });
        }
        if by > i64::MAX as u64 {
            return Err(StoreError::EraserMissing { by });
        }
        match &self.reader {
            Reader::Sqlite(readers) => readers.erase(by, records.to_vec()).await,
            Reader::Postgres(pool) => postgres::erase(pool, by, records).await,
        }
    }

    /// Appends commands as [`EventLog::append`] does, but sealed in record
    /// format version 1 (unsalted), as records written before format 2 were.
    /// Only for tests that need a log "from before" format 2 (a user added
    /// before the privacy change); nothing else may call it.
    #[doc(hidden)]
    pub async fn append_legacy_v1_for_tests(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Appended, Rejection>>, StoreError> {
        if let Some(rejection) = commands.iter().find_map(|command| validate(command).err()) {
            return Err(StoreError::Io(format!("a legacy test append was invalid: {rejection}")));
        }
        self.submit_unmeasured(commands, false, true).await
    }

    /// Recomputes every leaf and chain hash of the records in `range` and
    /// names the first defect. A range from sequence 1 starts at
    /// [`CHAIN_GENESIS`]; a later start trusts the stored chain hash of the
    /// record before it. A range that reaches the head also checks the
    /// head row against the last record, so a removed or added tail is
    /// caught.
    pub async fn verify(&self, range: RangeInclusive<u64>) -> Result<VerifyReport, StoreError> {
        self.verify_with(range, |_| {}).await
    }

    /// [`Self::verify`], handing each record that holds to `visit`, in
    /// sequence order, as it is linked to the chain (`replay verify` builds
    /// the Merkle tree and finds the checkpoints from these). A record that
    /// fails is not handed on.
    pub async fn verify_with(
        &self,
        range: RangeInclusive<u64>,
        mut visit: impl FnMut(VerifiedRecord<'_>) + Send,
    ) -> Result<VerifyReport, StoreError> {
        self.verify_pages(range, &mut visit).await
    }
}

fn validate(command: &Command) -> Result<(), Rejection> {
    use domain::record::{EVENT_TYPE_BYTES_MAX, IDEMPOTENCY_KEY_BYTES_MAX, METADATA_BYTES_MAX, PAYLOAD_BYTES_MAX};
    let invalid = |why: String| Err(Rejection::Invalid(why));
    if command.events.is_empty() {
        return invalid("a command appends at least one event".into());
    }
    if command.events.len() > COMMAND_EVENTS_MAX {
        return invalid(format!("a command appends at most {COMMAND_EVENTS_MAX} events"));
    }
    if let Some(idempotency) = &command.idempotency
        && idempotency.key.len() > IDEMPOTENCY_KEY_BYTES_MAX
    {
        return invalid(format!("idempotency keys are at most {IDEMPOTENCY_KEY_BYTES_MAX} bytes"));
    }
    for event in &command.events {
        if event.event_type.is_empty() || event.event_type.len() > EVENT_TYPE_BYTES_MAX {
            return invalid(format!("event types are 1 to {EVENT_TYPE_BYTES_MAX} bytes"));
        }
        if event.metadata.len() > METADATA_BYTES_MAX {
            return invalid(format!("metadata is at most {METADATA_BYTES_MAX} bytes"));
        }
        if event.payload.len() > PAYLOAD_BYTES_MAX {
            return invalid(format!("a payload is at most {PAYLOAD_BYTES_MAX} bytes"));
        }
    }
    Ok(())
}

/// The system's real clock: what the server uses unless told otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono_now())
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Converts a stored integer to the u64 it was written from.
fn unsigned(sequence: u64, what: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt { sequence, what: format!("{what} is negative") })
}

/// Converts a u64 to the signed integer both databases store. Sequences,
/// revisions and versions stay far below 2^63; beyond it is a bug.
fn signed(value: u64) -> i64 {
    i64::try_from(value).expect("sequences and revisions stay below 2^63")
}

/// Reads a stored hash column.
fn hash_column(sequence: u64, what: &str, bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::from_slice(bytes).ok_or_else(|| StoreError::Corrupt { sequence, what: format!("{what} is not 32 bytes") })
}

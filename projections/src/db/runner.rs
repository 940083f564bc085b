//! The one runner of every durable projection.
//!
//! It reads the log from the projections' lowest checkpoint, a page at a
//! time, decodes each record once and applies it to every projection that
//! has not yet seen it, in global order, into one batch of changes; then
//! commits the batch and every projection's new checkpoint (sequence and
//! chain hash) in one transaction. A crash before the commit loses the
//! batch and nothing else; after it, the records are never applied again.
//!
//! Invariants:
//! - A checkpoint is only ever moved by a write conditional on where this
//!   runner left it (fencing): a runner that lost leadership and wakes up
//!   later (SIGSTOP, a long pause) writes nothing and stops.
//! - Before each batch, the record at each checkpoint is read back and its
//!   chain hash compared (it is the first record of the batch's first
//!   page), and the log's head must not be behind any checkpoint: a
//!   rolled-back or replaced log stops the runner, which never rebuilds on
//!   its own.
//! - A record a projection cannot apply stops the runner, naming the
//!   sequence and the projection; nothing is skipped.
//! - A projection's memory is derived from its tables at its checkpoint
//!   ([`Projection::load`]): after any error the runner reloads it before
//!   applying again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::event::LedgerEvent;
use domain::record::Record;
use store::{EventLog, Head, READ_PAGE_RECORDS, StoreError};
use tokio::sync::watch;

use super::batch::{Batch, Changes, RowCache};
use super::leader::{LEADER_RETRY_INTERVAL, Leadership};
use super::table::{Row, Table, Value};
use super::{Advance, Checkpoint, CommitError, DbError, ReadModelDb, RowReader};

/// A batch is committed once it holds this many records: large enough
/// that a commit's fsync is shared by many records, small enough that a
/// crash loses little work and a batch's changes stay a few megabytes.
pub const FLUSH_RECORDS_MAX: usize = 16_384;
/// …or this many row changes (before coalescing), which bounds a batch's
/// memory whatever a projection writes per record.
pub const FLUSH_CHANGES_MAX: usize = 262_144;
/// …or once it has been building this long, so queries see progress
/// while a long backlog is applied. A caught-up runner commits at once.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How often a caught-up runner looks for other processes' appends (its
/// own process's wake it at once).
pub const RUNNER_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often a follower reads the checkpoints when no notification came:
/// the fallback that keeps a lost `LISTEN` connection from stalling reads.
pub const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The PostgreSQL channel a runner notifies with its applied sequence.
pub const NOTIFY_CHANNEL: &str = "ledger_readmodels";

/// A read model: a fold of the log into its own tables.
///
/// `apply` sees each record once, in global order, with its event decoded
/// (`None` for an event this version does not know, or a shredded one),
/// and writes into [`Changes`]; it reads only its own tables, through the
/// same [`Changes`], which show this batch's changes first. It must be a
/// pure function of the records and its rows: a rebuild from sequence 0
/// must give the same rows (`replay verify` compares them).
pub trait Projection: Send + 'static {
    /// The name its checkpoint is kept under. A change to what it stores
    /// gets a new name (and new tables), so old rows are never misread.
    fn name(&self) -> &'static str;
    /// The tables it writes and reads, and no other projection does.
    fn tables(&self) -> &'static [Table];
    /// Rebuilds what it keeps in memory from its tables at its checkpoint
    /// (at start, and after any error). Most projections keep nothing.
    fn load(&mut self, _load: &Load<'_>) -> Result<(), ApplyError> {
        Ok(())
    }
    /// Applies one record.
    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError>;
}

/// Why a projection could not apply a record or load its state.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

impl From<DbError> for ApplyError {
    fn from(error: DbError) -> Self {
        Self(error.to_string())
    }
}

impl From<StoreError> for ApplyError {
    fn from(error: StoreError) -> Self {
        Self(error.to_string())
    }
}

impl From<String> for ApplyError {
    fn from(reason: String) -> Self {
        Self(reason)
    }
}

impl From<&str> for ApplyError {
    fn from(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

/// What a projection may read while loading: its rows and the log.
pub struct Load<'a> {
    pub checkpoint: Checkpoint,
    projection: &'static str,
    tables: &'static [Table],
    reader: &'a dyn RowReader,
    /// `None` in a [`Rebuild`](super::Rebuild), which starts from
    /// sequence 0 and has no log to read (its records come from elsewhere).
    log: Option<&'a EventLog>,
    handle: &'a tokio::runtime::Handle,
}

impl Load<'_> {
    /// One of its rows by key.
    pub fn get(&self, table: &Table, key: &[Value]) -> Result<Option<Row>, DbError> {
        if !self.tables.contains(table) {
            return Err(DbError::Schema(format!(
                "projection {} does not declare the table {}",
                self.projection, table.name
            )));
        }
        self.reader.get(table, key)
    }

    /// Records of the log (at most `limit`), as [`EventLog::read_page`].
    pub fn read_log(&self, range: std::ops::RangeInclusive<u64>, limit: usize) -> Result<Vec<Record>, StoreError> {
        match self.log {
            Some(log) => self.handle.block_on(log.read_page(range, limit)),
            None => Err(StoreError::Io(format!(
                "projection {} reads the log while loading, and a rebuild from records has none",
                self.projection
            ))),
        }
    }
}

/// Why the runner stopped. It never skips a record: it stops, and says
/// where and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunnerError {
    /// Reading the log failed; nothing was committed. Transient: running
    /// again resumes from the checkpoints.
    #[error("reading the log: {0}")]
    Store(#[from] StoreError),
    /// The read-model database failed outside a commit. Transient.
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the projections are misconfigured: {0}")]
    Config(String),
    #[error("record {sequence} does not decode: {reason}")]
    Undecodable { sequence: u64, reason: String },
    #[error("projection {projection} cannot apply record {sequence}: {reason}")]
    Apply { sequence: u64, projection: &'static str, reason: String },
    #[error("projection {projection} cannot load its state at sequence {sequence}: {reason}")]
    Load { sequence: u64, projection: &'static str, reason: String },
    /// The batch ending at `sequence` could not be committed (a full disk,
    /// a lost connection); nothing of it was written.
    #[error("the read models up to record {sequence} could not be committed: {reason}")]
    Commit { sequence: u64, reason: DbError },
    /// Another runner moved a checkpoint: this one is no longer the leader.
    #[error("projection {projection}'s checkpoint is no longer at {expected}: another runner took over")]
    Fenced { projection: String, expected: u64 },
    /// The log does not hold what the checkpoint says it applied: a
    /// restored backup, another database. Only an explicit rebuild continues.
    #[error("projection {projection}'s checkpoint at sequence {sequence} does not match the log: {reason}")]
    Mismatch { projection: &'static str, sequence: u64, reason: String },
    #[error("the log skips from sequence {expected} to {found}")]
    Gap { expected: u64, found: u64 },
}

impl RunnerError {
    /// The sequence the error is about, if it is about one.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Self::Undecodable { sequence, .. }
            | Self::Apply { sequence, .. }
            | Self::Load { sequence, .. }
            | Self::Commit { sequence, .. }
            | Self::Mismatch { sequence, .. } => Some(*sequence),
            Self::Fenced { expected, .. } => Some(*expected),
            Self::Gap { expected, .. } => Some(*expected),
            Self::Store(_) | Self::Db(_) | Self::Config(_) => None,
        }
    }

    /// True when a purge ([`ReadModelDb::purge_subject`]) fenced the
    /// commit: the runner loads again and goes on.
    pub fn is_purge(&self) -> bool {
        matches!(self, Self::Fenced { projection, .. } if projection == super::PURGE_FENCE)
    }

    /// True when running again may succeed without anyone's intervention.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Db(_) | Self::Commit { .. })
    }
}

/// The sequence the read models include, published by a runner or learnt
/// by a follower; what a query waits on for read-your-writes.
#[derive(Clone)]
pub struct Applied {
    receiver: watch::Receiver<u64>,
}

/// A wait for a sequence timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read models did not reach sequence {wanted} in time (they are at {at})")]
pub struct Lagging {
    pub wanted: u64,
    pub at: u64,
}

impl Applied {
    pub fn get(&self) -> u64 {
        *self.receiver.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.receiver.clone()
    }

    /// Waits until the read models include `sequence`.
    pub async fn wait_for(&self, sequence: u64, timeout: Duration) -> Result<u64, Lagging> {
        let mut receiver = self.receiver.clone();
        match tokio::time::timeout(timeout, receiver.wait_for(|at| *at >= sequence)).await {
            Ok(Ok(at)) => Ok(*at),
            _ => Err(Lagging { wanted: sequence, at: self.get() }),
        }
    }

    /// Follows another process's runner: on PostgreSQL it listens on
    /// [`NOTIFY_CHANNEL`] and reads the checkpoints of `names` when told,
    /// and every [`FOLLOW_POLL_INTERVAL`] in any case (a notification can
    /// be missed while the listening connection reconnects); on SQLite it
    /// polls. The task ends when every receiver is dropped.
    pub fn follow(db: ReadModelDb, names: Vec<String>) -> Self {
        let (sender, receiver) = watch::channel(0);
        tokio::spawn(async move {
            let mut listener = match db.pg_pool() {
                Some(pool) => listen(pool).await,
                None => None,
            };
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            while !sender.is_closed() {
                match db.applied(&names).await {
                    Ok(at) => {
                        sender.send_if_modified(|known| std::mem::replace(known, (*known).max(at)) < at);
                    }
                    Err(error) => tracing::warn!(%error, "could not read the read models' checkpoints"),
                }
                match listener.as_mut() {
                    Some(listener) => {
                        if let Ok(Err(error)) = tokio::time::timeout(FOLLOW_POLL_INTERVAL, listener.recv()).await {
                            tracing::warn!(%error, "read-model notifications lost; polling");
                            tokio::time::sleep(FOLLOW_POLL_INTERVAL).await;
                        }
                    }
                    None => tokio::time::sleep(FOLLOW_POLL_INTERVAL).await,
                }
            }
        });
        Self { receiver }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Option<sqlx::postgres::PgListener> {
    let connected = async {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match connected.await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for read-model notifications; polling");
            None
        }
    }
}

pub(super) struct Slot {
    pub(super) projection: Box<dyn Projection>,
    pub(super) checkpoint: Checkpoint,
}

/// Runs a set of projections over a log into a read-model database.
pub struct Runner {
    log: EventLog,
    db: ReadModelDb,
    slots: Vec<Slot>,
    reader: Option<Arc<dyn RowReader + Send + Sync>>,
    applied: watch::Sender<u64>,
    /// False until the projections are loaded at their checkpoints, and
    /// again after any error.
    loaded: bool,
    flush_records_max: usize,
    /// Taken by a batch being built, like the projections.
    cache: Option<RowCache>,
    /// The purges counted when the projections were loaded
    /// ([`super::PURGE_FENCE`]): every commit is fenced on it, so a batch
    /// built from rows (cached or in memory) that a purge has since
    /// redacted is never written, and the runner reloads.
    purges: u64,
}

impl Runner {
    /// A runner of `projections`, whose names and tables must be distinct.
    pub fn new(log: EventLog, db: ReadModelDb, projections: Vec<Box<dyn Projection>>) -> Result<Self, RunnerError> {
        check_distinct(&projections)?;
        let slots =
            projections.into_iter().map(|projection| Slot { projection, checkpoint: Checkpoint::START }).collect();
        Ok(Self {
            log,
            db,
            slots,
            reader: None,
            applied: watch::channel(0).0,
            loaded: false,
            flush_records_max: FLUSH_RECORDS_MAX,
            cache: Some(RowCache::new()),
            purges: 0,
        })
    }

    /// Commits after at most `records` records instead of
    /// [`FLUSH_RECORDS_MAX`] (never more): smaller batches, more commits.
    pub fn with_flush_records_max(mut self, records: usize) -> Self {
        self.flush_records_max = records.clamp(1, FLUSH_RECORDS_MAX);
        self
    }

    /// The sequence every projection includes, as it moves.
    pub fn applied(&self) -> Applied {
        Applied { receiver: self.applied.subscribe() }
    }

    /// Each projection's name and checkpoint.
    pub fn checkpoints(&self) -> Vec<(&'static str, Checkpoint)> {
        self.slots.iter().map(|slot| (slot.projection.name(), slot.checkpoint)).collect()
    }

    fn lowest(&self) -> u64 {
        self.slots.iter().map(|slot| slot.checkpoint.sequence).min().unwrap_or(0)
    }

    /// Reads the checkpoints, checks them against the log and loads each
    /// projection at its own.
    async fn start(&mut self) -> Result<(), RunnerError> {
        if self.slots.is_empty() || self.cache.is_none() {
            return Err(RunnerError::Config(
                "the runner was cancelled in the middle of a batch; make a new one".into(),
            ));
        }
        let names: Vec<&str> = self.slots.iter().map(|slot| slot.projection.name()).collect();
        self.db.ensure_checkpoints(&names).await?;
        self.db.ensure_checkpoints(&[super::PURGE_FENCE]).await?;
        // Read before the projections load: a purge after this fences the
        // first commit, and the runner loads again.
        self.purges = self.db.checkpoints(&[super::PURGE_FENCE]).await?[0].map_or(0, |c| c.sequence);
        // No borrow of a projection is held across an await: projections
        // need only be `Send`, not `Sync`.
        let tables: Vec<Table> = self.slots.iter().flat_map(|slot| slot.projection.tables().iter().copied()).collect();
        for table in &tables {
            self.db.probe(table).await?;
        }
        let stored = self.db.checkpoints(&names).await?;
        for (slot, checkpoint) in self.slots.iter_mut().zip(stored) {
            slot.checkpoint = checkpoint.unwrap_or(Checkpoint::START);
        }
        let head = self.log.head().await?;
        check_against_log(&self.log, self.checkpoints(), &head).await?;
        let reader = match &self.reader {
            Some(reader) => reader.clone(),
            None => self.reader.insert(Arc::from(self.db.blocking_reader())).clone(),
        };
        let (slots, loaded) = load_slots(std::mem::take(&mut self.slots), reader, Some(self.log.clone())).await;
        self.slots = slots;
        loaded?;
        self.cache.as_mut().expect("checked above").clear();
        self.applied.send_replace(self.lowest());
        self.loaded = true;
        Ok(())
    }
}

/// Loads each projection at its slot's checkpoint, on a blocking thread.
pub(super) async fn load_slots(
    mut slots: Vec<Slot>,
    reader: Arc<dyn RowReader + Send + Sync>,
    log: Option<EventLog>,
) -> (Vec<Slot>, Result<(), RunnerError>) {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let loaded = slots.iter_mut().try_for_each(|slot| {
            let load = Load {
                checkpoint: slot.checkpoint,
                projection: slot.projection.name(),
                tables: slot.projection.tables(),
                reader: reader.as_ref(),
                log: log.as_ref(),
                handle: &handle,
            };
            slot.projection.load(&load).map_err(|error| RunnerError::Load {
                sequence: slot.checkpoint.sequence,
                projection: slot.projection.name(),
                reason: error.0,
            })
        });
        (slots, loaded)
    })
    .await
    .expect("a projection's load does not panic")
}

/// Projections of one runner: at least one, their names and tables distinct.
pub(super) fn check_distinct(projections: &[Box<dyn Projection>]) -> Result<(), RunnerError> {
    let mut names = std::collections::BTreeSet::new();
    let mut tables = std::collections::BTreeSet::new();
    for projection in projections {
        if !names.insert(projection.name()) {
            return Err(RunnerError::Config(format!("two projections are named {}", projection.name())));
        }
        for table in projection.tables() {
            if !tables.insert(table.name) {
                return Err(RunnerError::Config(format!("two projections declare the table {}", table.name)));
            }
        }
    }
    if projections.is_empty() {
        return Err(RunnerError::Config("a runner needs at least one projection".into()));
    }
    Ok(())
}

/// The head must not be behind any checkpoint, and the record at each
/// checkpoint must carry its chain hash.
async fn check_against_log(
    log: &EventLog,
    checkpoints: Vec<(&'static str, Checkpoint)>,
    head: &Head,
) -> Result<(), RunnerError> {
    {
        for (projection, Checkpoint { sequence, chain_hash }) in checkpoints {
            let mismatch = |reason: String| RunnerError::Mismatch { projection, sequence, reason };
            if head.sequence < sequence {
                return Err(mismatch(format!(
                    "the log's head is at sequence {}, behind the checkpoint",
                    head.sequence
                )));
            }
            if sequence == 0 {
                continue;
            }
            match log.read_page(sequence..=sequence, 1).await?.pop() {
                Some(record) if record.header.sequence == sequence && record.chain_hash == chain_hash => {}
                Some(record) if record.header.sequence == sequence => {
                    return Err(mismatch(format!(
                        "the log's chain hash there is {}, the checkpoint's {}",
                        record.chain_hash.to_hex(),
                        chain_hash.to_hex()
                    )));
                }
                _ => return Err(mismatch("the log has no record there".into())),
            }
        }
        Ok(())
    }
}

impl Runner {
    /// Applies everything up to the log's head as it is now, then returns
    /// the sequence every projection includes.
    pub async fn catch_up(&mut self) -> Result<u64, RunnerError> {
        let target = self.log.head().await?.sequence;
        loop {
            if !self.loaded {
                self.start().await?;
            }
            if self.lowest() >= target {
                return Ok(self.lowest());
            }
            match self.step().await {
                Ok(true) => {}
                // Nothing to apply: the head is where the projections are.
                Ok(false) => return Ok(self.lowest()),
                // A purge redacted rows this batch was built from: load again.
                Err(error) if error.is_purge() => self.loaded = false,
                Err(error) => {
                    self.loaded = false;
                    return Err(error);
                }
            }
        }
    }

    /// Follows the log until an error stops it, and returns that error
    /// (see [`RunnerError::is_transient`]); calling it again resumes from
    /// the committed checkpoints. Not cancel-safe: stop it by aborting its
    /// task (the runner goes with it), or run it through [`Runner::lead`].
    pub async fn run(&mut self) -> RunnerError {
        let (_always, leading) = watch::channel(true);
        self.run_while(leading).await.expect("leadership never ends here")
    }

    /// Runs the projections whenever this process leads: waits for
    /// leadership, follows the log until leadership is lost, carries on
    /// after being fenced (another runner wrote: reload, and go on if still
    /// leading) and after transient errors (after [`LEADER_RETRY_INTERVAL`]).
    /// Returns the first error that needs someone: a checkpoint the log
    /// does not hold, a record that cannot be applied.
    pub async fn lead(&mut self, leadership: &Leadership) -> RunnerError {
        loop {
            leadership.acquired().await;
            let Some(error) = self.run_while(leadership.watch()).await else {
                tracing::warn!("leadership lost; projections paused");
                continue;
            };
            match error {
                RunnerError::Fenced { .. } => tracing::warn!(%error, "projections fenced; reloading"),
                error if error.is_transient() => {
                    tracing::warn!(%error, "projections stopped; retrying");
                    tokio::time::sleep(LEADER_RETRY_INTERVAL).await;
                }
                error => return error,
            }
        }
    }

    /// Follows the log while `leading` says so (checked between batches,
    /// never in the middle of one); `None` once it no longer does.
    async fn run_while(&mut self, mut leading: watch::Receiver<bool>) -> Option<RunnerError> {
        let mut appends = self.log.watch_appends();
        loop {
            if !*leading.borrow_and_update() {
                self.loaded = false;
                return None;
            }
            if !self.loaded
                && let Err(error) = self.start().await
            {
                return Some(error);
            }
            match self.step().await {
                Ok(true) => {}
                Err(error) if error.is_purge() => self.loaded = false,
                Ok(false) => {
                    // Only waiting is cancelled here, never a batch.
                    tokio::select! {
                        _ = tokio::time::timeout(RUNNER_POLL_INTERVAL, appends.changed()) => {}
                        _ = leading.changed() => {}
                    }
                }
                Err(error) => {
                    self.loaded = false;
                    return Some(error);
                }
            }
        }
    }

    /// Applies and commits one batch; false when there was nothing to apply.
    async fn step(&mut self) -> Result<bool, RunnerError> {
        let head = self.log.head().await?;
        if let Some(slot) = self.slots.iter().find(|slot| slot.checkpoint.sequence > head.sequence) {
            return Err(RunnerError::Mismatch {
                projection: slot.projection.name(),
                sequence: slot.checkpoint.sequence,
                reason: format!("the log's head is at sequence {}, behind the checkpoint", head.sequence),
            });
        }
        let lowest = self.lowest();
        if head.sequence <= lowest {
            return Ok(false);
        }
        let reader = self.reader.clone().expect("a loaded runner has its reader");
        let work = Work {
            checkpoints: self.slots.iter().map(|slot| slot.checkpoint).collect(),
            slots: std::mem::take(&mut self.slots),
            cache: self.cache.take().expect("a loaded runner has its cache"),
            batch: Batch::default(),
            records: 0,
        };
        // The first page starts at the lowest checkpoint's own record, so
        // its chain hash is checked before anything is applied after it.
        let (work, built) = build(&self.log, lowest.max(1), head.sequence, self.flush_records_max, reader, work).await;
        let Work { slots, checkpoints, batch, cache, .. } = work;
        self.slots = slots;
        // The cache holds committed rows only: on any error below the
        // runner reloads, which empties it; after the commit it takes the
        // batch's changes.
        self.cache = Some(cache);
        let last = built?;
        let mut advances: Vec<Advance> = self
            .slots
            .iter()
            .zip(&checkpoints)
            .filter(|(slot, to)| slot.checkpoint != **to)
            .map(|(slot, to)| Advance { name: slot.projection.name(), from: slot.checkpoint.sequence, to: *to })
            .collect();
        if !advances.is_empty() {
            // Fenced on the purges seen at the load; moves nothing.
            let purges = Checkpoint { sequence: self.purges, chain_hash: Checkpoint::START.chain_hash };
            advances.push(Advance { name: super::PURGE_FENCE, from: self.purges, to: purges });
        }
        let batch = Arc::new(batch);
        match self.db.commit(batch.clone(), advances).await {
            Ok(()) => {}
            Err(CommitError::Fenced { projection, expected }) => {
                return Err(RunnerError::Fenced { projection, expected });
            }
            Err(CommitError::Db(reason)) => return Err(RunnerError::Commit { sequence: last, reason }),
        }
        for (slot, checkpoint) in self.slots.iter_mut().zip(checkpoints) {
            slot.checkpoint = checkpoint;
        }
        self.cache.as_mut().expect("returned above").committed(&batch);
        self.applied.send_replace(self.lowest());
        Ok(true)
    }
}

/// Applies records `from..=head` into `work` until the batch is full;
/// returns it with the last sequence applied, or the error that stopped it.
/// The next page is read while one is applied (reading the log and
/// applying each take a core).
async fn build(
    log: &EventLog,
    from: u64,
    head: u64,
    flush_records_max: usize,
    reader: Arc<dyn RowReader + Send + Sync>,
    mut work: Work,
) -> (Work, Result<u64, RunnerError>) {
    let started = Instant::now();
    let read = |from: u64, limit: usize| {
        let log = log.clone();
        tokio::spawn(async move { log.read_page(from..=head, limit).await })
    };
    let mut expected = from;
    // The first page holds the checkpoint's own record besides the batch's.
    let mut pending = Some(read(from, READ_PAGE_RECORDS.min(flush_records_max + 1)));
    loop {
        let reading = pending.take().expect("a read is pending while the batch is not full");
        let page = match reading.await.expect("reading a page does not panic") {
            Ok(page) => page,
            Err(error) => return (work, Err(error.into())),
        };
        let Some(last) = page.last().map(|record| record.header.sequence) else {
            return (work, Err(RunnerError::Gap { expected, found: 0 }));
        };
        let records = work.records + page.len();
        if last < head && records < flush_records_max {
            pending = Some(read(last + 1, READ_PAGE_RECORDS.min(flush_records_max - records)));
        }
        let reader = reader.clone();
        let (returned, applied) = tokio::task::spawn_blocking(move || {
            let applied = work.apply(&page, reader.as_ref());
            (work, applied)
        })
        .await
        .expect("applying a page does not panic");
        work = returned;
        let full = work.batch.changes >= FLUSH_CHANGES_MAX || started.elapsed() >= FLUSH_INTERVAL;
        match applied {
            Ok(()) if pending.is_some() && !full => expected = last + 1,
            result => {
                if let Some(reading) = pending.take() {
                    reading.abort();
                }
                return (work, result.map(|()| last));
            }
        }
    }
}

/// A batch being built on a blocking thread.
pub(super) struct Work {
    pub(super) slots: Vec<Slot>,
    pub(super) cache: RowCache,
    /// Where each projection will be once the batch commits.
    pub(super) checkpoints: Vec<Checkpoint>,
    pub(super) batch: Batch,
    pub(super) records: usize,
}

impl Work {
    pub(super) fn apply(&mut self, page: &[Record], reader: &dyn RowReader) -> Result<(), RunnerError> {
        for record in page {
            let sequence = record.header.sequence;
            let mut decoded: Option<Option<LedgerEvent>> = None;
            for (slot, checkpoint) in self.slots.iter_mut().zip(self.checkpoints.iter_mut()) {
                let name = slot.projection.name();
                if sequence < checkpoint.sequence {
                    continue;
                }
                if sequence == checkpoint.sequence {
                    if record.chain_hash != checkpoint.chain_hash {
                        return Err(RunnerError::Mismatch {
                            projection: name,
                            sequence,
                            reason: format!(
                                "the log's chain hash there is {}, the checkpoint's {}",
                                record.chain_hash.to_hex(),
                                checkpoint.chain_hash.to_hex()
                            ),
                        });
                    }
                    continue;
                }
                if sequence != checkpoint.sequence + 1 {
                    return Err(RunnerError::Gap { expected: checkpoint.sequence + 1, found: sequence });
                }
                let event = match &decoded {
                    Some(event) => event,
                    None => decoded.insert(decode(record)?),
                };
                let mut changes = Changes {
                    projection: name,
                    tables: slot.projection.tables(),
                    batch: &mut self.batch,
                    cache: &mut self.cache,
                    reader,
                };
                slot.projection.apply(&mut changes, record, event.as_ref()).map_err(|error| RunnerError::Apply {
                    sequence,
                    projection: name,
                    reason: error.0,
                })?;
                *checkpoint = Checkpoint { sequence, chain_hash: record.chain_hash };
            }
            self.records += 1;
        }
        Ok(())
    }
}

/// A record's event, decoded once for every projection. A shredded
/// payload still moves the sequence; it applies as an event this version
/// cannot see.
fn decode(record: &Record) -> Result<Option<LedgerEvent>, RunnerError> {
    match record.event_bytes() {
        Some(payload) => LedgerEvent::decode(&record.header, payload)
            .map_err(|error| RunnerError::Undecodable { sequence: record.header.sequence, reason: error.to_string() }),
        None => Ok(None),
    }
}

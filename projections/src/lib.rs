//! Read models built from the log in global order.
//!
//! One projection for now, [`LedgerState`]: organizations, users, tokens,
//! subscriptions, licenses and the audit list, held in memory. The runner
//! tails the log, applies each record once and in order, and from time to
//! time saves the encoded state together with its checkpoint (the last
//! sequence applied) as one snapshot row. After a crash it starts from the
//! latest snapshot and applies what came after: nothing is lost, nothing
//! is applied twice, and a rebuild from sequence 0 gives the same bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::event::LedgerEvent;
use domain::record::{CHAIN_GENESIS, ChainVerifier, Defect, Hash, VerifyFailure};
use domain::{Clock, Timestamp};
use store::{EventLog, READ_PAGE_RECORDS, Snapshot, StoreError};
use tokio::sync::{RwLock, RwLockReadGuard, watch};

pub mod db;
pub mod invoices;
pub mod models;
mod state;

pub use state::{AuditEntry, LedgerState, OrganizationEntry, TokenEntry, ValidationStats};

/// The snapshot's name. A change to `LedgerState`'s shape gets a new name,
/// so an old snapshot is never decoded as the new shape: the new one is
/// rebuilt from the log instead.
pub const SNAPSHOT_NAME: &str = "ledger-state-v10";
/// A snapshot is saved after this many records…
pub const SNAPSHOT_EVERY_RECORDS: u64 = 10_000;
/// …or this long after the last one, whichever comes first.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// How often the runner looks for appends of other processes.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record {sequence} does not decode: {reason}")]
    Undecodable { sequence: u64, reason: String },
    #[error("the projection did not reach sequence {wanted} in time (it is at {at})")]
    Lagging { wanted: u64, at: u64 },
    #[error("the projection stopped: {0}")]
    Stopped(String),
    #[error("{0}")]
    RolledBack(Rollback),
    #[error("the log does not verify at {0}")]
    Broken(VerifyFailure),
}

/// The log no longer holds what a read model applied: its head is behind
/// the read model's checkpoint, or another record stands at it (a restored
/// backup, a PostgreSQL failover that lost acknowledged writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The snapshot (or the running read model, [`SNAPSHOT_NAME`]) that
    /// does not match.
    pub projection: String,
    /// The last sequence it applied, and that record's chain hash as it
    /// applied it (`None`: not known, from a snapshot saved before chain
    /// hashes were kept, or moved by a version that did not keep them).
    pub applied: u64,
    pub applied_chain: Option<Hash>,
    /// The log's head when it was noticed.
    pub head: u64,
    /// The log's chain hash at `applied` now, when it was read and differs;
    /// `None` when the log ends before it, or when what follows it does
    /// not link to it.
    pub log_chain: Option<Hash>,
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |hash: Option<Hash>| hash.map_or_else(|| "unknown".to_owned(), |h| h.to_hex());
        write!(
            f,
            "the log was rolled back behind the read model {}: it had applied sequence {} (chain hash {}), ",
            self.projection,
            self.applied,
            hex(self.applied_chain)
        )?;
        match self.log_chain {
            Some(log_chain) => write!(f, "but the log holds another record there (chain hash {})", log_chain.to_hex())?,
            None if self.head < self.applied => write!(f, "but the log's head is sequence {}", self.head)?,
            None => write!(f, "but the log does not continue from it (its head is sequence {})", self.head)?,
        }
        f.write_str("; refusing to serve until an operator runs `ledger projections rebuild --accept-rollback`")
    }
}

/// Why the read models stopped; they serve nothing until a restart (and,
/// for a rollback, an operator's `ledger projections rebuild --accept-rollback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A record this version cannot read, or a log that does not verify.
    Stopped(String),
    RolledBack(Rollback),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Stopped(reason) => f.write_str(reason),
            Failure::RolledBack(rollback) => rollback.fmt(f),
        }
    }
}

/// The running projection: its state, and how far it has got.
pub struct Projections {
    state: RwLock<LedgerState>,
    /// The chain hash of the last record applied ([`CHAIN_GENESIS`] before
    /// the first), written under `state`'s write lock together with it.
    chain: std::sync::Mutex<Hash>,
    applied: watch::Sender<u64>,
    failure: std::sync::Mutex<Option<Failure>>,
    /// Since when the runner has seen a head it has not applied yet.
    behind_since: std::sync::Mutex<Option<Instant>>,
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values: a panic elsewhere leaves nothing half-written.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Projections {
    fn empty() -> Self {
        Self {
            state: RwLock::default(),
            chain: std::sync::Mutex::new(CHAIN_GENESIS),
            applied: watch::channel(0).0,
            failure: std::sync::Mutex::new(None),
            behind_since: std::sync::Mutex::new(None),
        }
    }

    /// Loads the latest snapshot, checks that the log still holds what
    /// every snapshot applied, catches up with the log, and keeps following
    /// it in a background task. A log rolled back behind a snapshot is not
    /// an error here: the projections start *failed* (see
    /// [`Projections::failure`]), so the server can say why it refuses to
    /// serve; nothing is rebuilt on its own.
    pub async fn start(log: EventLog, clock: Arc<dyn Clock>) -> Result<Arc<Self>, ProjectionError> {
        let projections = Arc::new(Self::empty());
        if let Some(rollback) = check_snapshots(&log).await?.into_iter().next() {
            tracing::error!(%rollback, "the read models do not match the log");
            projections.fail(Failure::RolledBack(rollback));
            return Ok(projections);
        }
        if let Some(snapshot) = log.load_snapshot(SNAPSHOT_NAME).await? {
            // Checked above; a chain hash not known is the log's (checked
            // to be there).
            let head = log.head().await?.sequence;
            let chain = match snapshot.chain_hash {
                Some(chain) => Some(chain),
                None => chain_at(&log, snapshot.sequence, head).await?,
            };
            match (domain::codec::decode::<LedgerState>(&snapshot.state), chain) {
                (Ok(state), Some(chain)) => {
                    *lock(&projections.chain) = chain;
                    projections.applied.send_replace(state.sequence);
                    *projections.state.write().await = state;
                }
                (Err(error), _) => tracing::warn!(%error, "the snapshot does not decode; rebuilding from the log"),
                // The log lost the record since the check above.
                (Ok(state), None) => {
                    let rollback = Rollback {
                        projection: SNAPSHOT_NAME.to_owned(),
                        applied: state.sequence,
                        applied_chain: None,
                        head,
                        log_chain: None,
                    };
                    tracing::error!(%rollback, "the read models do not match the log");
                    projections.fail(Failure::RolledBack(rollback));
                    return Ok(projections);
                }
            }
        }
        match projections.catch_up(&log).await {
            Ok(_) => {}
            Err(ProjectionError::RolledBack(rollback)) => {
                tracing::error!(%rollback, "the read models do not match the log");
                projections.fail(Failure::RolledBack(rollback));
                return Ok(projections);
            }
            Err(error) => return Err(error),
        }
        tokio::spawn(run(projections.clone(), log, clock));
        Ok(projections)
    }

    /// Builds the state from sequence 0 without saving anything: what
    /// `replay rebuild` and the rebuild test compare against.
    pub async fn rebuild(log: &EventLog, to: u64) -> Result<LedgerState, ProjectionError> {
        let projections = Self::empty();
        projections.apply_until(log, to).await?;
        Ok(projections.state.into_inner())
    }

    /// [`Projections::rebuild`] up to the head, saved as the snapshot
    /// (replacing any): `ledger projections rebuild`, after an operator
    /// accepted a rollback and stale snapshots were removed.
    pub async fn rebuild_and_save(log: &EventLog, now: Timestamp) -> Result<(u64, Hash), ProjectionError> {
        let projections = Self::empty();
        let head = log.head().await?.sequence;
        projections.apply_until(log, head).await?;
        log.delete_snapshot(SNAPSHOT_NAME).await?;
        let sequence = projections.save_snapshot(log, now).await?;
        Ok((sequence, projections.digest().await.1))
    }

    /// The state, for reading. Hold the guard briefly: the runner waits for it.
    pub async fn read(&self) -> RwLockReadGuard<'_, LedgerState> {
        self.state.read().await
    }

    /// The last sequence applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Why the runner stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).as_ref().map(ToString::to_string)
    }

    /// Why the runner stopped, typed.
    pub fn failed(&self) -> Option<Failure> {
        lock(&self.failure).clone()
    }

    /// How long the read models have been behind a head the runner saw:
    /// zero when caught up. A runner that cannot read the log keeps this
    /// growing, so answers that must be fresh (validation) can refuse.
    pub fn lag(&self) -> Duration {
        lock(&self.behind_since).map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn fail(&self, failure: Failure) {
        lock(&self.failure).get_or_insert(failure);
    }

    /// Waits until the state includes `sequence` (read-your-writes).
    pub async fn wait_for(&self, sequence: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, applied.wait_for(|at| *at >= sequence)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ProjectionError::Lagging { wanted: sequence, at: self.applied() }),
        }
    }

    /// Applies what the log holds beyond the state, after checking that
    /// the log still holds what the state applied: a head behind it, or
    /// another chain hash at it, is a rollback.
    async fn catch_up(&self, log: &EventLog) -> Result<bool, ProjectionError> {
        let head = log.head().await?;
        let applied = self.applied();
        let chain = *lock(&self.chain);
        if head.sequence < applied || (head.sequence == applied && head.chain_hash != chain) {
            let log_chain = (head.sequence == applied).then_some(head.chain_hash);
            return Err(self.rollback(applied, chain, head.sequence, log_chain));
        }
        if head.sequence == applied {
            *lock(&self.behind_since) = None;
            return Ok(false);
        }
        lock(&self.behind_since).get_or_insert_with(Instant::now);
        self.apply_until(log, head.sequence).await?;
        *lock(&self.behind_since) = None;
        Ok(true)
    }

    fn rollback(&self, applied: u64, chain: Hash, head: u64, log_chain: Option<Hash>) -> ProjectionError {
        let projection = SNAPSHOT_NAME.to_owned();
        ProjectionError::RolledBack(Rollback { projection, applied, applied_chain: Some(chain), head, log_chain })
    }

    async fn apply_until(&self, log: &EventLog, head: u64) -> Result<(), ProjectionError> {
        let mut from = self.applied() + 1;
        while from <= head {
            let page = log.read_page(from..=head, READ_PAGE_RECORDS).await?;
            let Some(last) = page.last().map(|record| record.header.sequence) else { break };
            // Each record must follow from the one before, the first from
            // the last one applied: a first record that does not is a log
            // that changed under the read model (a rollback); one further in
            // is a log that does not verify. One hash per record.
            let chain = *lock(&self.chain);
            let mut verifier = ChainVerifier::resume(from, chain, None);
            for (index, record) in page.iter().enumerate() {
                if let Err(failure) = verifier.link(record) {
                    return Err(match failure.defect {
                        Defect::ChainHash if index == 0 => self.rollback(from - 1, chain, head, None),
                        _ => ProjectionError::Broken(failure),
                    });
                }
            }
            let mut decoded = Vec::with_capacity(page.len());
            for record in &page {
                // A shredded payload still moves the sequence; it applies as
                // an event this version cannot see.
                let event = match &record.payload {
                    Some(payload) => LedgerEvent::decode(&record.header, payload).map_err(|error| {
                        ProjectionError::Undecodable { sequence: record.header.sequence, reason: error.to_string() }
                    })?,
                    None => None,
                };
                decoded.push(event);
            }
            let mut state = self.state.write().await;
            for (record, event) in page.iter().zip(decoded) {
                state.apply(record, event);
            }
            *lock(&self.chain) = verifier.chain();
            drop(state);
            self.applied.send_replace(last);
            from = last + 1;
        }
        Ok(())
    }

    /// Saves the state and its checkpoint (with the chain hash it applied)
    /// now; returns the checkpoint.
    pub async fn save_snapshot(&self, log: &EventLog, now: Timestamp) -> Result<u64, ProjectionError> {
        let (sequence, chain_hash, state, digest) = {
            let state = self.state.read().await;
            let (bytes, digest) = state.encode();
            (state.sequence, *lock(&self.chain), bytes, digest)
        };
        let snapshot = Snapshot { name: SNAPSHOT_NAME.into(), sequence, chain_hash: Some(chain_hash), digest, state };
        log.save_snapshot(snapshot, now).await?;
        Ok(sequence)
    }

    /// The digest of the current state.
    pub async fn digest(&self) -> (u64, Hash) {
        let state = self.state.read().await;
        (state.sequence, state.encode().1)
    }
}

/// Every saved snapshot (the read models', the notification outbox's)
/// whose checkpoint the log no longer holds with the chain hash it was
/// saved with.
pub async fn check_snapshots(log: &EventLog) -> Result<Vec<Rollback>, StoreError> {
    // The snapshots first, then the head: a snapshot is saved at most at the
    // head of its time and the head only grows, so another process saving
    // one meanwhile never looks like a snapshot past the head.
    let checkpoints = log.snapshot_checkpoints().await?;
    let head = log.head().await?;
    let mut rollbacks = Vec::new();
    for checkpoint in checkpoints {
        let log_chain = chain_at(log, checkpoint.sequence, head.sequence).await?;
        // A chain hash that is not known (a row an older version moved)
        // is taken from the log, if the log reaches the checkpoint.
        let expected = checkpoint.chain_hash.or(log_chain);
        if log_chain.is_none() || log_chain != expected {
            rollbacks.push(Rollback {
                projection: checkpoint.name,
                applied: checkpoint.sequence,
                applied_chain: checkpoint.chain_hash,
                head: head.sequence,
                log_chain,
            });
        }
    }
    Ok(rollbacks)
}

/// The log's chain hash after `sequence` ([`CHAIN_GENESIS`] at 0); `None`
/// when the log (whose head is `head`) does not hold that record.
pub(crate) async fn chain_at(log: &EventLog, sequence: u64, head: u64) -> Result<Option<Hash>, StoreError> {
    Ok(match sequence {
        0 => Some(CHAIN_GENESIS),
        n if n > head => None,
        n => log.read_page(n..=n, 1).await?.pop().filter(|r| r.header.sequence == n).map(|r| r.chain_hash),
    })
}

/// The first sequence, up to `to`, at which the log holds another record
/// than the one `state` applied (compared by leaf hash, which the audit
/// list keeps for every record applied); `None` when the log holds them
/// all. A sequence the audit list does not hold cannot be compared, so it
/// counts as lost: the answer is never later than the truth.
pub async fn first_divergence(log: &EventLog, state: &LedgerState, to: u64) -> Result<Option<u64>, StoreError> {
    let to = to.min(state.sequence);
    let mut from = 1;
    while from <= to {
        let page = log.read_page(from..=to, READ_PAGE_RECORDS).await?;
        for record in &page {
            let sequence = record.header.sequence;
            let applied = state.audit.binary_search_by_key(&sequence, |entry| entry.sequence).ok();
            let same = applied.is_some_and(|index| state.audit[index].leaf_hash == record.leaf_hash);
            if sequence != from || !same {
                return Ok(Some(from));
            }
            from += 1;
        }
        if page.is_empty() {
            return Ok(Some(from));
        }
    }
    Ok(None)
}

async fn run(projections: Arc<Projections>, log: EventLog, clock: Arc<dyn Clock>) {
    let mut appends = log.watch_appends();
    let mut snapshot_at = projections.applied();
    let mut snapshot_time = Instant::now();
    loop {
        if let Err(error) = projections.catch_up(&log).await {
            match error {
                // A database hiccup: try again at the next poll.
                ProjectionError::Store(error) => tracing::warn!(%error, "projection could not read the log"),
                ProjectionError::RolledBack(rollback) => {
                    tracing::error!(%rollback, "the read models do not match the log");
                    // What the read model applied is the evidence of what
                    // was lost: keep it, for `--accept-rollback` to name.
                    if let Err(error) = projections.save_snapshot(&log, clock.now()).await {
                        tracing::warn!(%error, "the read model's snapshot was not saved");
                    }
                    projections.fail(Failure::RolledBack(rollback));
                    return;
                }
                // A record this version cannot read: stop, loudly; /ready says so.
                error => {
                    tracing::error!(%error, "projection stopped");
                    projections.fail(Failure::Stopped(error.to_string()));
                    return;
                }
            }
        }
        let applied = projections.applied();
        let due = applied - snapshot_at >= SNAPSHOT_EVERY_RECORDS
            || (applied > snapshot_at && snapshot_time.elapsed() >= SNAPSHOT_EVERY);
        if due {
            match projections.save_snapshot(&log, clock.now()).await {
                Ok(sequence) => {
                    snapshot_at = sequence;
                    snapshot_time = Instant::now();
                }
                Err(error) => tracing::warn!(%error, "projection snapshot not saved; will retry"),
            }
        }
        // Wake on this process's appends, or poll for other processes'.
        let _ = tokio::time::timeout(POLL_EVERY, appends.changed()).await;
    }
}

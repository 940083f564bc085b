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
use domain::record::Hash;
use domain::{Clock, Timestamp};
use store::{EventLog, READ_PAGE_RECORDS, Snapshot, StoreError};
use tokio::sync::{RwLock, RwLockReadGuard, watch};

pub mod db;
pub mod invoices;
mod state;

pub use state::{AuditEntry, LedgerState, OrganizationEntry, TokenEntry, ValidationStats};

/// The snapshot's name. A change to `LedgerState`'s shape gets a new name,
/// so an old snapshot is never decoded as the new shape: the new one is
/// rebuilt from the log instead.
pub const SNAPSHOT_NAME: &str = "ledger-state-v7";
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
}

/// The running projection: its state, and how far it has got.
pub struct Projections {
    state: RwLock<LedgerState>,
    applied: watch::Sender<u64>,
    failure: std::sync::Mutex<Option<String>>,
}

impl Projections {
    /// Loads the latest snapshot, catches up with the log, and keeps
    /// following it in a background task.
    pub async fn start(log: EventLog, clock: Arc<dyn Clock>) -> Result<Arc<Self>, ProjectionError> {
        let state = match log.load_snapshot(SNAPSHOT_NAME).await? {
            Some(snapshot) => domain::codec::decode::<LedgerState>(&snapshot.state).unwrap_or_else(|error| {
                tracing::warn!(%error, "the snapshot does not decode; rebuilding from the log");
                LedgerState::default()
            }),
            None => LedgerState::default(),
        };
        let at = state.sequence;
        let projections = Arc::new(Self {
            state: RwLock::new(state),
            applied: watch::channel(at).0,
            failure: std::sync::Mutex::new(None),
        });
        projections.catch_up(&log).await?;
        tokio::spawn(run(projections.clone(), log, clock));
        Ok(projections)
    }

    /// Builds the state from sequence 0 without saving anything: what
    /// `replay rebuild` and the rebuild test compare against.
    pub async fn rebuild(log: &EventLog, to: u64) -> Result<LedgerState, ProjectionError> {
        let projections = Self { state: RwLock::default(), applied: watch::channel(0).0, failure: Default::default() };
        projections.apply_until(log, to).await?;
        Ok(projections.state.into_inner())
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
        self.failure.lock().expect("not poisoned").clone()
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

    async fn catch_up(&self, log: &EventLog) -> Result<bool, ProjectionError> {
        let head = log.head().await?.sequence;
        if head <= self.applied() {
            return Ok(false);
        }
        self.apply_until(log, head).await?;
        Ok(true)
    }

    async fn apply_until(&self, log: &EventLog, head: u64) -> Result<(), ProjectionError> {
        let mut from = self.applied() + 1;
        while from <= head {
            let page = log.read_page(from..=head, READ_PAGE_RECORDS).await?;
            let Some(last) = page.last().map(|record| record.header.sequence) else { break };
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
            drop(state);
            self.applied.send_replace(last);
            from = last + 1;
        }
        Ok(())
    }

    /// Saves the state and its checkpoint now; returns the checkpoint.
    pub async fn save_snapshot(&self, log: &EventLog, now: Timestamp) -> Result<u64, ProjectionError> {
        let (sequence, state, digest) = {
            let state = self.state.read().await;
            let (bytes, digest) = state.encode();
            (state.sequence, bytes, digest)
        };
        log.save_snapshot(Snapshot { name: SNAPSHOT_NAME.into(), sequence, digest, state }, now).await?;
        Ok(sequence)
    }

    /// The digest of the current state.
    pub async fn digest(&self) -> (u64, Hash) {
        let state = self.state.read().await;
        (state.sequence, state.encode().1)
    }
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
                // A record this version cannot read: stop, loudly; /ready says so.
                error => {
                    tracing::error!(%error, "projection stopped");
                    *projections.failure.lock().expect("not poisoned") = Some(error.to_string());
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

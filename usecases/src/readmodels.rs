//! The durable read models a node serves from (issue #13): the tables of
//! `projections::models` and the stored Merkle tree, in `readmodels.sqlite`
//! beside the log (SQLite) or beside the log's tables (PostgreSQL).
//!
//! Every node opens the tables and serves queries from them. One node at a
//! time, the leader ([`Leadership`]: an advisory lock on PostgreSQL, a file
//! lock in the data directory on SQLite), runs the projections; the others
//! follow its checkpoints. What the node has applied is the highest of its
//! own runner's commits and the checkpoints it reads, so a leader sees its
//! own commits at once and a follower within [`FOLLOW_POLL_INTERVAL`]
//! (sooner on PostgreSQL, which notifies).
//!
//! A record the projections cannot apply stops them and marks the node
//! failed ([`ReadModels::failed`]), naming the sequence and why; nothing is
//! skipped. A node that is behind the log says since when
//! ([`ReadModels::lag`]).
//!
//! [`FOLLOW_POLL_INTERVAL`]: projections::db::FOLLOW_POLL_INTERVAL

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use domain::catalog::Catalog;
use projections::db::{Applied, Leadership, ReadModelDb, Runner, RunnerError, merkle};
use store::EventLog;
use tokio::sync::watch;

use crate::LedgerConfig;

/// How often a node compares the log's head with what its read models
/// include, for [`ReadModels::lag`].
pub const LAG_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Why the projections stopped: the record they could not apply (when one
/// is named) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsFailure {
    pub sequence: Option<u64>,
    pub reason: String,
    /// A checkpoint the log no longer holds: the log was rolled back
    /// behind the read models (only an operator's rebuild continues).
    pub rolled_back: bool,
}

impl std::fmt::Display for ModelsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.rolled_back, self.sequence) {
            (true, _) => write!(f, "the log was rolled back behind the read models: {}", self.reason),
            (false, Some(sequence)) => write!(f, "the read models stopped at sequence {sequence}: {}", self.reason),
            (false, None) => write!(f, "the read models stopped: {}", self.reason),
        }
    }
}

/// The read models of this node: the database, how far it has got, who
/// leads.
pub struct ReadModels {
    pub db: ReadModelDb,
    leadership: Leadership,
    applied: watch::Receiver<u64>,
    failure: Mutex<Option<ModelsFailure>>,
    /// The oldest head this node has seen and not yet applied, and since when.
    behind: Mutex<Option<(u64, Instant)>>,
    /// The log's head when this node started: it is not ready before its
    /// read models include it (a node that starts far behind, or on an
    /// empty read-model database, catches up first).
    head_at_start: u64,
    /// The projections' names (their checkpoints' rows), for `/metrics`.
    names: Vec<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain values: a panic elsewhere leaves nothing half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens (creating and migrating) the read-model database of `config`.
pub async fn open_db(config: &LedgerConfig) -> anyhow::Result<ReadModelDb> {
    use anyhow::Context;
    Ok(match &config.database_url {
        Some(url) => {
            let hosts: store::PgHosts = url.parse().map_err(anyhow::Error::msg).context("DATABASE_URL")?;
            ReadModelDb::open_postgres_hosts(&hosts).await?
        }
        None => ReadModelDb::open_sqlite(&config.data_dir).await?,
    })
}

/// Every projection a node runs: the models and the Merkle tree.
pub fn all_projections(catalog: &Catalog) -> Vec<Box<dyn projections::db::Projection>> {
    let mut all = projections::models::all(catalog.clone());
    all.push(Box::new(merkle::MerkleProjection::new()));
    all
}

impl ReadModels {
    /// Opens the read-model database of `config`, contends for leadership,
    /// and starts the runner (projecting while this node leads) and the
    /// follower of the checkpoints.
    pub async fn start(config: &LedgerConfig, log: EventLog, catalog: &Catalog) -> anyhow::Result<Arc<Self>> {
        let db = open_db(config).await?;
        let leadership = match &config.database_url {
            Some(url) => Leadership::postgres_hosts(url.parse().map_err(anyhow::Error::msg)?),
            None => Leadership::sqlite(&config.data_dir),
        };
        let all = all_projections(catalog);
        let names: Vec<String> = all.iter().map(|projection| projection.name().to_owned()).collect();
        // What the tables hold already, before anything answers: a node
        // that just started reads from where they are, not from 0.
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let stored = db.applied(&name_refs).await?;
        let failure = rolled_back_at_start(&db, &log, &name_refs).await?;
        let head_at_start = log.head().await?.sequence;
        let mut runner = Runner::new(log.clone(), db.clone(), all)?;
        let own = runner.applied();
        let followed = Applied::follow(db.clone(), names.clone());
        let (sender, applied) = watch::channel(stored.max(followed.get()).max(own.get()));
        let stopped = failure.is_some();
        let failure = Mutex::new(failure);
        let behind = Mutex::new(None);
        let models = Arc::new(Self { db, leadership, applied, failure, behind, head_at_start, names });
        tokio::spawn(merge_applied(own, followed, sender));
        if !stopped {
            let models = models.clone();
            tokio::spawn(async move {
                let error = runner.lead(&models.leadership).await;
                let rolled_back = matches!(error, RunnerError::Mismatch { .. });
                let failure = ModelsFailure { sequence: error.sequence(), reason: error.to_string(), rolled_back };
                tracing::error!(%failure, "read models stopped; only `ledger projections rebuild` continues");
                *lock(&models.failure) = Some(failure);
            });
        }
        tokio::spawn(watch_lag(Arc::downgrade(&models), log));
        Ok(models)
    }

    /// The sequence the read models include.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the read models include `sequence`.
    pub async fn wait_for(&self, sequence: u64, timeout: Duration) -> Result<u64, projections::db::Lagging> {
        let mut applied = self.applied.clone();
        match tokio::time::timeout(timeout, applied.wait_for(|at| *at >= sequence)).await {
            Ok(Ok(at)) => Ok(*at),
            _ => Err(projections::db::Lagging { wanted: sequence, at: self.applied() }),
        }
    }

    /// Why the projections stopped, if they did.
    pub fn failed(&self) -> Option<ModelsFailure> {
        lock(&self.failure).clone()
    }

    /// How long the read models have been behind a head this node saw;
    /// zero when they were caught up at the last check.
    pub fn lag(&self) -> Duration {
        lock(&self.behind).map(|(_, since)| since.elapsed()).unwrap_or_default()
    }

    /// Whether the read models include the log as it was when this node
    /// started: until then it is catching up, not ready.
    pub fn started(&self) -> bool {
        self.applied() >= self.head_at_start
    }

    /// Whether this node runs the projections, the scheduler and the
    /// outboxes now.
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// The names of the projections this node runs or follows.
    pub fn projection_names(&self) -> &[String] {
        &self.names
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }
}

/// Before anything is served, on every node (the leader's runner would
/// notice it too, but only once it leads): a checkpoint the log no longer
/// holds means the log was rolled back behind the tables.
async fn rolled_back_at_start(
    db: &ReadModelDb,
    log: &EventLog,
    names: &[&str],
) -> anyhow::Result<Option<ModelsFailure>> {
    let rollbacks = projections::db::check_checkpoints(db, log, names).await?;
    Ok(rollbacks.first().map(|rollback| {
        let failure =
            ModelsFailure { sequence: Some(rollback.applied), reason: rollback.to_string(), rolled_back: true };
        tracing::error!(%failure, "read models stopped; only `ledger projections rebuild` continues");
        failure
    }))
}

/// Publishes the higher of the runner's own commits and the checkpoints
/// read back, until nobody reads it. The runner's own stops moving when
/// it stops (the node is failed then); the checkpoints go on.
async fn merge_applied(own: Applied, followed: Applied, sender: watch::Sender<u64>) {
    let (mut own, mut followed) = (Some(own.subscribe()), followed.subscribe());
    loop {
        let mine = own.as_mut().map_or(0, |own| *own.borrow_and_update());
        let at = mine.max(*followed.borrow_and_update());
        sender.send_if_modified(|known| std::mem::replace(known, (*known).max(at)) < at);
        let own_changed = async {
            match own.as_mut() {
                Some(receiver) => receiver.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            open = own_changed => if !open { own = None },
            changed = followed.changed() => if changed.is_err() { return },
            () = sender.closed() => return,
        }
    }
}

/// Keeps [`ReadModels::lag`] current until the read models are dropped.
async fn watch_lag(models: std::sync::Weak<ReadModels>, log: EventLog) {
    loop {
        tokio::time::sleep(LAG_CHECK_INTERVAL).await;
        let Some(models) = models.upgrade() else { return };
        let Ok(head) = log.head().await else { continue };
        let applied = models.applied();
        let mut behind = lock(&models.behind);
        *behind = match *behind {
            // Caught up with the head as it is now (which may have gone
            // back: a rollback), whatever was seen before.
            _ if head.sequence <= applied => None,
            Some((target, since)) if applied < target => Some((target, since)),
            _ => Some((head.sequence, Instant::now())),
        };
    }
}

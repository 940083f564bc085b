//! Read models built from the log in global order.
//!
//! What servers read: the tables of [`models`] (and the stored Merkle tree
//! of [`db::merkle`]), kept by the one runner of [`db`]; nothing of them is
//! held in memory beyond bounded caches. [`LedgerState`] is the same
//! history held whole in memory: the oracle the tables are tested against
//! and what `replay` walks for its as-of views, never a server's. Also
//! here: the check of a log rolled back behind stored checkpoints
//! ([`check_snapshots`], [`db::check_checkpoints`]) and the re-derivation
//! of issued invoices ([`invoices`]).

use domain::Timestamp;
use domain::event::LedgerEvent;
use domain::record::{CHAIN_GENESIS, ChainVerifier, Hash, Record, VerifyFailure};
use store::{EventLog, READ_PAGE_RECORDS, ReadOnlyLog, StoreError};

pub mod db;
pub mod invoices;
pub mod models;
pub mod revenue;
mod state;

pub use state::{AuditEntry, LedgerState, OrganizationEntry, TokenEntry, ValidationStats};

/// The name of the snapshot a version before the tables saved of its
/// in-memory read models. No server writes it now; one left by an older
/// version is still checked against the log (a rollback names it, and
/// `--accept-rollback` drops it) and compared by `replay verify`.
pub const SNAPSHOT_NAME: &str = "ledger-state-v11";

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record {sequence} does not decode: {reason}")]
    Undecodable { sequence: u64, reason: String },
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

impl LedgerState {
    /// Builds the state from sequence 1 to `to`, checking that each record
    /// follows from the one before: the oracle the read-model tables are
    /// tested against, and what `replay`'s tests compare with. Held whole
    /// in memory; servers read the tables (`models`).
    pub async fn rebuild(log: &EventLog, to: u64) -> Result<LedgerState, ProjectionError> {
        let mut state = LedgerState::default();
        let mut verifier = ChainVerifier::resume(1, CHAIN_GENESIS, None);
        let mut from = 1;
        while from <= to {
            let page = log.read_page(from..=to, READ_PAGE_RECORDS).await?;
            let Some(last) = page.last().map(|record| record.header.sequence) else { break };
            for record in &page {
                state.apply_checked(&mut verifier, record)?;
            }
            from = last + 1;
        }
        Ok(state)
    }

    /// Applies one record after checking it follows from the one before.
    fn apply_checked(&mut self, verifier: &mut ChainVerifier, record: &Record) -> Result<(), ProjectionError> {
        verifier.link(record).map_err(ProjectionError::Broken)?;
        // A shredded payload still moves the sequence; it applies as an
        // event this version cannot see.
        let event = match record.event_bytes() {
            Some(payload) => LedgerEvent::decode(&record.header, payload).map_err(|error| {
                ProjectionError::Undecodable { sequence: record.header.sequence, reason: error.to_string() }
            })?,
            None => None,
        };
        self.apply(record, event);
        Ok(())
    }

    /// The state of a read-only log as it stood at `until`: every record
    /// recorded by then, from sequence 1, each checked to follow from the
    /// one before (as `replay as-of` walks it; what `ledger report --as-of`
    /// computes its figures from). Read a page at a time; nothing is written.
    pub async fn rebuild_until(log: &ReadOnlyLog, until: Timestamp) -> Result<LedgerState, ProjectionError> {
        let mut state = LedgerState::default();
        let mut verifier = ChainVerifier::resume(1, CHAIN_GENESIS, None);
        let head = log.head().await?.sequence;
        let mut from = 1;
        while from <= head {
            let page = log.read_page(from..=head, READ_PAGE_RECORDS).await?;
            let Some(last) = page.last().map(|record| record.header.sequence) else { break };
            for record in &page {
                if record.header.recorded_at > until {
                    return Ok(state);
                }
                state.apply_checked(&mut verifier, record)?;
            }
            from = last + 1;
        }
        Ok(state)
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

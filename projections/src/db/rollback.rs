//! A log rolled back behind the read models' tables (ARCHITECTURE.md,
//! "Rollback"): which checkpoints the log no longer holds, and from where
//! the histories part, for `ledger projections rebuild --accept-rollback`.

use store::EventLog;

use super::{DbError, ReadModelDb};
use crate::Rollback;

/// Records compared per page: no more than `audit::leaves` answers at once.
const DIVERGENCE_PAGE_RECORDS: usize = 2048;

/// Why the check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// The checkpoints of `names` the log no longer holds: behind the log's
/// head, or at a record whose chain hash is not the one applied. A name
/// without a checkpoint row, or at the start, holds nothing to lose.
pub async fn check_checkpoints(db: &ReadModelDb, log: &EventLog, names: &[&str]) -> Result<Vec<Rollback>, CheckError> {
    // The checkpoints first, then the head: the head only grows, so a
    // runner committing meanwhile never looks like one past the head.
    let checkpoints = db.checkpoints(names).await?;
    let head = log.head().await?;
    let mut rollbacks = Vec::new();
    for (name, checkpoint) in names.iter().zip(checkpoints) {
        let Some(checkpoint) = checkpoint.filter(|c| c.sequence > 0) else { continue };
        let log_chain = crate::chain_at(log, checkpoint.sequence, head.sequence).await?;
        if log_chain != Some(checkpoint.chain_hash) {
            rollbacks.push(Rollback {
                projection: (*name).to_owned(),
                applied: checkpoint.sequence,
                applied_chain: Some(checkpoint.chain_hash),
                head: head.sequence,
                log_chain,
            });
        }
    }
    Ok(rollbacks)
}

/// The first sequence, up to `to`, at which the log holds another record
/// than the audit index applied (compared by leaf hash, which the index
/// keeps for every record); `None` when the log holds them all. Reads both
/// a page at a time. A sequence the index does not hold counts as lost:
/// the answer is never later than the truth.
pub async fn first_divergence(db: &ReadModelDb, log: &EventLog, to: u64) -> Result<Option<u64>, CheckError> {
    let mut from = 1;
    while from <= to {
        let page = log.read_page(from..=to, DIVERGENCE_PAGE_RECORDS).await?;
        if page.is_empty() {
            return Ok(Some(from));
        }
        let applied = crate::models::audit::leaves(db, from - 1, page.len()).await?;
        for (index, record) in page.iter().enumerate() {
            let same = applied.get(index).is_some_and(|&(sequence, leaf)| {
                sequence == from && record.header.sequence == from && leaf == record.leaf_hash
            });
            if !same {
                return Ok(Some(from));
            }
            from += 1;
        }
    }
    Ok(None)
}

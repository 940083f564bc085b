//! A rebuild from records handed over page by page, from any source (a
//! log opened read-only, an export file), into read models of its own
//! (`replay rebuild`'s scratch file): the [`Runner`](super::Runner)'s
//! applying and committing without its log.
//!
//! The runner's invariants hold: records are applied in global order from
//! sequence 1 (a gap stops it, naming the sequence), a record a projection
//! cannot apply stops it, and every commit writes the rows and every
//! projection's checkpoint (sequence and chain hash) in one transaction.
//! Memory is bounded as the runner's: a batch is committed once it holds
//! [`FLUSH_RECORDS_MAX`] records or [`FLUSH_CHANGES_MAX`] changes.

use std::sync::Arc;

use domain::record::Record;

use super::batch::{Batch, RowCache};
use super::runner::{FLUSH_CHANGES_MAX, FLUSH_RECORDS_MAX, Slot, Work, check_distinct, load_slots};
use super::{Advance, Checkpoint, CommitError, Projection, ReadModelDb, RowReader, RunnerError};

/// Projections being rebuilt from sequence 1 into an empty read-model
/// database, up to a last sequence.
pub struct Rebuild {
    db: ReadModelDb,
    /// `None` once an apply or a commit failed: a rebuild does not go on
    /// after an error.
    work: Option<Work>,
    /// Each projection's checkpoint as last committed.
    committed: Vec<Checkpoint>,
    reader: Arc<dyn RowReader + Send + Sync>,
    until: u64,
}

impl Rebuild {
    /// A rebuild of `projections` (distinct names and tables) into `db`,
    /// whose checkpoints must all be at the start (a new file), applying
    /// records up to sequence `until` and ignoring those after it.
    pub async fn new(db: ReadModelDb, projections: Vec<Box<dyn Projection>>, until: u64) -> Result<Self, RunnerError> {
        check_distinct(&projections)?;
        let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
        db.ensure_checkpoints(&names).await?;
        for table in projections.iter().flat_map(|p| p.tables()) {
            db.probe(table).await?;
        }
        let stored = db.checkpoints(&names).await?;
        if let Some((name, at)) = names.iter().zip(&stored).find(|(_, c)| c.is_some_and(|c| c != Checkpoint::START)) {
            return Err(RunnerError::Config(format!(
                "a rebuild starts from empty read models, and projection {name} is at sequence {}",
                at.map_or(0, |c| c.sequence)
            )));
        }
        let reader: Arc<dyn RowReader + Send + Sync> = Arc::from(db.blocking_reader());
        let slots = projections.into_iter().map(|projection| Slot { projection, checkpoint: Checkpoint::START });
        let (slots, loaded) = load_slots(slots.collect(), reader.clone(), None).await;
        loaded?;
        let committed = vec![Checkpoint::START; slots.len()];
        let work =
            Work { checkpoints: committed.clone(), slots, cache: RowCache::new(), batch: Batch::default(), records: 0 };
        Ok(Self { db, work: Some(work), committed, reader, until })
    }

    /// The last sequence it applies.
    pub fn until(&self) -> u64 {
        self.until
    }

    /// Each projection's name and checkpoint, applied (committed or not).
    pub fn checkpoints(&self) -> Vec<(&'static str, Checkpoint)> {
        let Some(work) = &self.work else { return Vec::new() };
        work.slots.iter().zip(&work.checkpoints).map(|(slot, c)| (slot.projection.name(), *c)).collect()
    }

    /// Applies the page's records up to [`Rebuild::until`], in order,
    /// committing whenever a batch is full. The page must follow the
    /// records applied so far (a gap is an error).
    pub async fn apply(&mut self, page: Arc<[Record]>) -> Result<(), RunnerError> {
        let end = page.iter().take_while(|record| record.header.sequence <= self.until).count();
        let mut start = 0;
        while start < end {
            let work = self.work.take().ok_or_else(failed_before)?;
            let stop = end.min(start + FLUSH_RECORDS_MAX.saturating_sub(work.records).max(1));
            let (reader, records) = (self.reader.clone(), page.clone());
            let (work, applied) = tokio::task::spawn_blocking(move || {
                let mut work = work;
                let applied = work.apply(&records[start..stop], reader.as_ref());
                (work, applied)
            })
            .await
            .expect("applying a page does not panic");
            applied?;
            let full = work.records >= FLUSH_RECORDS_MAX || work.batch.changes >= FLUSH_CHANGES_MAX;
            self.work = Some(work);
            if full {
                self.commit().await?;
            }
            start = stop;
        }
        Ok(())
    }

    /// Commits what is applied and not yet committed; returns each
    /// projection's name and checkpoint.
    pub async fn finish(mut self) -> Result<Vec<(&'static str, Checkpoint)>, RunnerError> {
        self.commit().await?;
        Ok(self.checkpoints())
    }

    /// Commits what is applied and not yet committed, and goes on: a
    /// rebuild that follows a growing log (the simulation's oracle) is
    /// compared after each commit.
    pub async fn commit_applied(&mut self) -> Result<(), RunnerError> {
        self.commit().await
    }

    async fn commit(&mut self) -> Result<(), RunnerError> {
        let mut work = self.work.take().ok_or_else(failed_before)?;
        let advances: Vec<Advance> = work
            .slots
            .iter()
            .zip(self.committed.iter().zip(&work.checkpoints))
            .filter(|(_, (from, to))| from != to)
            .map(|(slot, (from, to))| Advance { name: slot.projection.name(), from: from.sequence, to: *to })
            .collect();
        if advances.is_empty() {
            self.work = Some(work);
            return Ok(());
        }
        let last = work.checkpoints.iter().map(|c| c.sequence).max().unwrap_or(0);
        let batch = Arc::new(std::mem::take(&mut work.batch));
        match self.db.commit(batch.clone(), advances).await {
            Ok(()) => {}
            Err(CommitError::Fenced { projection, expected }) => {
                return Err(RunnerError::Fenced { projection, expected });
            }
            Err(CommitError::Db(reason)) => return Err(RunnerError::Commit { sequence: last, reason }),
        }
        self.committed.clone_from(&work.checkpoints);
        work.cache.committed(&batch);
        work.records = 0;
        self.work = Some(work);
        Ok(())
    }
}

fn failed_before() -> RunnerError {
    RunnerError::Config("the rebuild stopped at an earlier error; start a new one".into())
}

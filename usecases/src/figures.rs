//! The gauges of `/metrics` that are read at scrape time rather than kept:
//! whether the database answers, how far each projection is behind the
//! log, how much the outboxes have waiting and for how long, how old the
//! latest signed checkpoint is, how long since the scheduler last ran. A
//! scrape reads a fixed number of rows, each by index, and a figure whose
//! read fails is left out (the database being down is `up: false`), so
//! `/metrics` answers while the database does not.

use std::time::Duration;

use domain::Timestamp;
use projections::models::outbox::{self, Backlog};

use crate::Ledger;

/// The outboxes [`Figures::outboxes`] names, in order.
pub const OUTBOXES: [&str; 2] = ["email", "stripe"];

/// What a scrape reads now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The log's database answered.
    pub up: bool,
    /// `/ready` would answer 200.
    pub ready: bool,
    /// The log's head, when the database answered.
    pub head: Option<u64>,
    /// Append requests waiting for the writer.
    pub writer_queue_depth: usize,
    /// How long the read models have been behind a head this node saw.
    pub behind: Duration,
    /// Each projection's name and how many records it is behind the head.
    pub projection_lag: Vec<(String, u64)>,
    /// Each outbox of [`OUTBOXES`] that could be read: its name, its
    /// pending items and the age of the oldest (zero when none waits).
    pub outboxes: Vec<(&'static str, u64, Duration)>,
    /// The age of the latest kept checkpoint and the records the log has
    /// past what it covers; `None` when none was kept yet or the log could
    /// not be read.
    pub checkpoint: Option<(Duration, u64)>,
    /// Since the scheduler last finished a tick, on the leader only (the
    /// only node that schedules).
    pub scheduler_lag: Option<Duration>,
}

/// Reads the figures of a scrape.
pub async fn figures(ledger: &Ledger) -> Figures {
    let head = ledger.log.head().await.ok().map(|head| head.sequence);
    let mut figures = Figures {
        up: head.is_some(),
        ready: crate::ops::readiness(ledger).await.ready,
        head,
        writer_queue_depth: ledger.log.queue_depth(),
        behind: ledger.models.lag(),
        scheduler_lag: if ledger.models.is_leader() { ledger.metrics.scheduler_lag() } else { None },
        ..Figures::default()
    };
    let Some(head) = head else { return figures };
    figures.projection_lag = projection_lag(ledger, head).await;
    let now = ledger.now();
    for (name, read) in
        [("email", outbox::email(&ledger.models.db).await), ("stripe", outbox::stripe(&ledger.models.db).await)]
    {
        if let Ok(Backlog { items, oldest_sequence }) = read {
            let age = match oldest_sequence {
                Some(sequence) => recorded_at(ledger, sequence).await.map_or(Duration::ZERO, |at| age(now, at)),
                None => Duration::ZERO,
            };
            figures.outboxes.push((name, items, age));
        }
    }
    figures.checkpoint = checkpoint(ledger, head, now).await;
    figures
}

/// Each projection's records behind `head` (by its stored checkpoint).
async fn projection_lag(ledger: &Ledger, head: u64) -> Vec<(String, u64)> {
    let names = ledger.models.projection_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Ok(checkpoints) = ledger.models.db.checkpoints(&refs).await else { return Vec::new() };
    names
        .iter()
        .zip(checkpoints)
        .map(|(name, checkpoint)| (name.clone(), head.saturating_sub(checkpoint.map_or(0, |c| c.sequence))))
        .collect()
}

/// The latest kept checkpoint's age and the records past what it covers.
async fn checkpoint(ledger: &Ledger, head: u64, now: Timestamp) -> Option<(Duration, u64)> {
    let kept = crate::log::latest_kept(&ledger.log).await.ok()??;
    let at = recorded_at(ledger, kept.sequence).await?;
    // The checkpoint's own record is not past what it covers.
    let uncovered = head.saturating_sub(kept.size).saturating_sub(u64::from(kept.sequence > kept.size));
    Some((age(now, at), uncovered))
}

async fn recorded_at(ledger: &Ledger, sequence: u64) -> Option<Timestamp> {
    let records = ledger.log.read_page(sequence..=sequence, 1).await.ok()?;
    records.first().map(|record| record.header.recorded_at)
}

/// From `then` to `now`, zero if `then` is later (a clock set back).
fn age(now: Timestamp, then: Timestamp) -> Duration {
    Duration::from_micros(u64::try_from(now.as_micros().saturating_sub(then.as_micros())).unwrap_or(0))
}

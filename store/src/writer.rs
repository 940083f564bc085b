//! The one writer task of a log: group commit.

use std::ops::Range;
use std::sync::Arc;

use domain::{Clock, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::LogMetrics;
use crate::plan::{Group, Salt};
use crate::{Appended, BATCH_EVENTS_MAX, Command, Rejection, StoreError, postgres, sqlite};

pub(crate) type Answer = Result<Vec<Result<Appended, Rejection>>, StoreError>;

/// Commands of one `append` call and where to send their answers.
pub(crate) struct Request {
    pub commands: Vec<Command>,
    /// All commands or none, rather than each on its own.
    pub atomic: bool,
    /// Seal in format version 1 (tests only: `append_legacy_v1_for_tests`).
    pub legacy_v1: bool,
    pub reply: oneshot::Sender<Answer>,
}

/// The commands of a batch, in order, and the requests they came in.
pub(crate) struct Batch {
    pub commands: Vec<Command>,
    pub groups: Vec<Group>,
    /// One random salt per event of `commands`, in order, drawn here and
    /// not in [`crate::plan`], which stays pure.
    pub salts: Vec<Salt>,
}

/// The commands of some groups of a batch, their groups and their salts.
pub(crate) type Slice<'b> = (&'b [Command], &'b [Group], &'b [Salt]);

impl Batch {
    /// The commands, groups and salts of `groups`, a range of this batch's groups.
    pub fn slice(&self, groups: Range<usize>) -> Slice<'_> {
        let start: usize = self.groups[..groups.start].iter().map(|g| g.len).sum();
        let len: usize = self.groups[groups.clone()].iter().map(|g| g.len).sum();
        let commands = &self.commands[start..start + len];
        let salts_start: usize = self.commands[..start].iter().map(|c| c.events.len()).sum();
        let salts_len: usize = commands.iter().map(|c| c.events.len()).sum();
        (commands, &self.groups[groups], &self.salts[salts_start..salts_start + salts_len])
    }
}

/// `events` random salts: one per record a batch may append.
fn draw_salts(events: usize) -> Result<Vec<Salt>, StoreError> {
    let mut salts = vec![[0; domain::record::SALT_BYTES]; events];
    getrandom::fill(salts.as_flattened_mut()).map_err(|e| StoreError::Io(format!("no randomness for salts: {e}")))?;
    Ok(salts)
}

pub(crate) enum Backend {
    Sqlite(sqlite::Writer),
    Postgres(postgres::Writer),
}

impl Backend {
    /// `events` salts: random, or the simulation's seeded ones.
    fn draw_salts(&self, events: usize) -> Result<Vec<Salt>, StoreError> {
        #[cfg(feature = "sim")]
        if let Backend::Sqlite(writer) = self
            && let Some(salts) = writer.faults.as_ref().and_then(|faults| faults.salts(events))
        {
            return Ok(salts);
        }
        draw_salts(events)
    }
}

/// Why a batch was not committed. When the failure came before `COMMIT`,
/// the transaction was rolled back and its requests may be tried again one
/// by one. When `COMMIT` itself failed, the outcome is unknown (a lost
/// connection may have committed), so nothing is retried here: callers
/// retry with their idempotency key, which makes that safe. A PostgreSQL
/// commit in the steady state is one autocommit statement: an error the
/// server answered is "before", a connection lost during it is "at commit".
pub(crate) struct CommitError {
    pub error: StoreError,
    pub at_commit: bool,
}

pub(crate) type Outcomes = Result<Vec<Result<Appended, Rejection>>, CommitError>;

impl Backend {
    /// Commits the requests `groups` of `batch` in one transaction.
    async fn commit(
        &mut self,
        batch: &Arc<Batch>,
        groups: Range<usize>,
        now: Timestamp,
        metrics: &LogMetrics,
    ) -> Outcomes {
        match self {
            Self::Sqlite(writer) => writer.commit(batch.clone(), groups, now).await,
            Self::Postgres(writer) => writer.commit(batch.slice(groups), now, metrics).await,
        }
    }
}

pub(crate) async fn run(
    mut backend: Backend,
    mut requests: mpsc::Receiver<Request>,
    clock: Arc<dyn Clock>,
    appended: tokio::sync::watch::Sender<u64>,
    metrics: Arc<crate::metrics::LogMetrics>,
) {
    while let Some(first) = requests.recv().await {
        let mut events = first.commands.iter().map(|c| c.events.len()).sum::<usize>();
        let mut batch = vec![first];
        while events < BATCH_EVENTS_MAX {
            let Ok(request) = requests.try_recv() else { break };
            events += request.commands.iter().map(|c| c.events.len()).sum::<usize>();
            batch.push(request);
        }
        metrics.batch_events.observe(events as f64);
        if let Some(last) = commit_batch(&mut backend, batch, clock.as_ref(), &metrics).await {
            appended.send_replace(last);
        }
    }
}

/// Commits a batch and answers its requests; returns the last sequence
/// appended, if any.
async fn commit_batch(
    backend: &mut Backend,
    requests: Vec<Request>,
    clock: &dyn Clock,
    metrics: &LogMetrics,
) -> Option<u64> {
    let mut batch = Batch { commands: Vec::new(), groups: Vec::with_capacity(requests.len()), salts: Vec::new() };
    let mut replies = Vec::with_capacity(requests.len());
    for request in requests {
        batch.groups.push(Group { len: request.commands.len(), atomic: request.atomic, legacy_v1: request.legacy_v1 });
        batch.commands.extend(request.commands);
        replies.push(request.reply);
    }
    match backend.draw_salts(batch.commands.iter().map(|c| c.events.len()).sum()) {
        Ok(salts) => batch.salts = salts,
        Err(error) => {
            tracing::error!(%error, "append failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
            return None;
        }
    }
    let batch = Arc::new(batch);
    let last_of = |outcomes: &[Result<Appended, Rejection>]| {
        outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()).map(|appended| appended.last_sequence).max()
    };
    match backend.commit(&batch, 0..batch.groups.len(), clock.now(), metrics).await {
        Ok(outcomes) => {
            let last = last_of(&outcomes);
            let mut outcomes = outcomes.into_iter();
            for (group, reply) in batch.groups.iter().zip(replies) {
                let answers = outcomes.by_ref().take(group.len).collect();
                // The caller may have gone away; its events are durable anyway.
                let _ = reply.send(Ok(answers));
            }
            last
        }
        Err(failure) if !failure.at_commit && replies.len() > 1 => {
            // One request may have poisoned the batch (say, a reused event
            // id): try each alone so the others are not refused for it.
            tracing::warn!(error = %failure.error, requests = replies.len(), "batch rolled back; retrying its requests one by one");
            let mut last = None;
            for (index, reply) in replies.into_iter().enumerate() {
                let answer = backend
                    .commit(&batch, index..index + 1, clock.now(), metrics)
                    .await
                    .map_err(|failure| failure.error);
                if let Ok(outcomes) = &answer {
                    last = last.max(last_of(outcomes));
                }
                let _ = reply.send(answer);
            }
            last
        }
        Err(failure) => {
            tracing::error!(error = %failure.error, at_commit = failure.at_commit, "append failed");
            for reply in replies {
                let _ = reply.send(Err(failure.error.clone()));
            }
            None
        }
    }
}

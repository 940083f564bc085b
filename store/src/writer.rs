//! The one writer task of a log: group commit.

use std::ops::Range;
use std::sync::Arc;

use domain::{Clock, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::{Appended, BATCH_EVENTS_MAX, Command, Rejection, StoreError, postgres, sqlite};

pub(crate) type Answer = Result<Vec<Result<Appended, Rejection>>, StoreError>;

/// Commands of one `append` call and where to send their answers.
pub(crate) struct Request {
    pub commands: Vec<Command>,
    pub reply: oneshot::Sender<Answer>,
}

pub(crate) enum Backend {
    Sqlite(sqlite::Writer),
    Postgres(sqlx::PgPool),
}

/// Why a batch was not committed. When the failure came before `COMMIT`,
/// the transaction was rolled back and its requests may be tried again one
/// by one. When `COMMIT` itself failed, the outcome is unknown (a lost
/// connection may have committed), so nothing is retried here: callers
/// retry with their idempotency key, which makes that safe.
pub(crate) struct CommitError {
    pub error: StoreError,
    pub at_commit: bool,
}

pub(crate) type Outcomes = Result<Vec<Result<Appended, Rejection>>, CommitError>;

impl Backend {
    /// Commits `commands[range]` in one transaction.
    async fn commit(&mut self, commands: &Arc<[Command]>, range: Range<usize>, now: Timestamp) -> Outcomes {
        match self {
            Self::Sqlite(writer) => writer.commit(commands.clone(), range, now).await,
            Self::Postgres(pool) => postgres::commit(pool, &commands[range], now).await,
        }
    }
}

pub(crate) async fn run(mut backend: Backend, mut requests: mpsc::Receiver<Request>, clock: Arc<dyn Clock>) {
    while let Some(first) = requests.recv().await {
        let mut events = first.commands.iter().map(|c| c.events.len()).sum::<usize>();
        let mut batch = vec![first];
        while events < BATCH_EVENTS_MAX {
            let Ok(request) = requests.try_recv() else { break };
            events += request.commands.iter().map(|c| c.events.len()).sum::<usize>();
            batch.push(request);
        }
        commit_batch(&mut backend, batch, clock.as_ref()).await;
    }
}

async fn commit_batch(backend: &mut Backend, batch: Vec<Request>, clock: &dyn Clock) {
    let mut commands = Vec::new();
    let mut requests = Vec::with_capacity(batch.len());
    for request in batch {
        let start = commands.len();
        commands.extend(request.commands);
        requests.push((start..commands.len(), request.reply));
    }
    let commands: Arc<[Command]> = commands.into();
    match backend.commit(&commands, 0..commands.len(), clock.now()).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (range, reply) in requests {
                let answers = outcomes.by_ref().take(range.len()).collect();
                // The caller may have gone away; its events are durable anyway.
                let _ = reply.send(Ok(answers));
            }
        }
        Err(failure) if !failure.at_commit && requests.len() > 1 => {
            // One request may have poisoned the batch (say, a reused event
            // id): try each alone so the others are not refused for it.
            tracing::warn!(error = %failure.error, requests = requests.len(), "batch rolled back; retrying its requests one by one");
            for (range, reply) in requests {
                let answer = backend.commit(&commands, range, clock.now()).await.map_err(|failure| failure.error);
                let _ = reply.send(answer);
            }
        }
        Err(failure) => {
            tracing::error!(error = %failure.error, at_commit = failure.at_commit, "append failed");
            for (_, reply) in requests {
                let _ = reply.send(Err(failure.error.clone()));
            }
        }
    }
}

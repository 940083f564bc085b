//! Running a command: decide on fresh state, append, answer.
//!
//! Handlers build the log commands from aggregates' decisions; `execute`
//! appends them as one atomic group, retries from fresh state when another
//! writer got there first, and answers from the *events* appended, so a
//! retried request (same `Idempotency-Key`, same method, path and body) is
//! answered from the first attempt's events, byte for byte.

use std::future::Future;
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use domain::event::{LedgerEvent, StoredEvent};
use domain::record::{Hash, Record};
use domain::{EventId, Metadata, StreamId, Timestamp};
use store::{Command, ExpectedRevision, Idempotency, NewEvent, Rejection};

use crate::Ledger;
use crate::acknowledged::{self, Credential};
use crate::error::Error;

/// Attempts of a command whose stream moved while it was deciding.
pub const ATTEMPTS_MAX: usize = 3;
/// Events of one stream a command may load to decide.
pub const STREAM_EVENTS_MAX: usize = 100_000;
/// How long a read waits for the read models to include what it must see
/// (the caller's own writes, `?minSequence=`; `acknowledged`): past it the
/// answer is `projection_lagging`, never stale data. A command no longer
/// waits: it answers once its append is durable.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);
/// Events one request appends, at most (a few commands of a few events).
pub const GROUP_EVENTS_MAX: usize = 64;
/// The longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;

/// Who asked, from where, and with which idempotency key.
#[derive(Debug, Clone)]
pub struct Context {
    pub metadata: Metadata,
    /// The caller-scoped key and the digest of method, path and body.
    pub idempotency: Option<(String, Hash)>,
    /// Whose command this is: what it appends is remembered as
    /// acknowledged to this credential, and it decides on read models that
    /// include the credential's earlier writes. `None`: the server's own
    /// jobs (scheduler, Stripe reactor).
    pub credential: Option<Credential>,
}

/// An aggregate's state, the revision it was loaded at, and the events
/// decided on it since.
pub struct Loaded<A: Aggregate> {
    pub state: A,
    pub revision: u64,
    pub stream_id: StreamId,
    decided: Vec<A::Event>,
}

/// Replays a stream into its aggregate.
pub async fn load<A>(state: &Ledger, stream_id: StreamId) -> Result<Loaded<A>, Error>
where
    A: Aggregate,
    A::Event: StoredEvent,
{
    let records = state.log.read_stream(&stream_id, 1, STREAM_EVENTS_MAX).await?;
    let mut aggregate = A::default();
    for record in &records {
        let payload = record.event_bytes().unwrap_or_default();
        let event = A::Event::decode(&record.header.event_type, record.header.schema_version, payload)
            .map_err(|e| Error::Internal(format!("{stream_id} at {}: {e}", record.header.sequence)))?
            .ok_or_else(|| Error::Internal(format!("{stream_id}: unknown event {}", record.header.event_type)))?;
        aggregate.apply(event);
    }
    let revision = records.last().map_or(0, |record| record.header.stream_revision);
    Ok(Loaded { state: aggregate, revision, stream_id, decided: Vec::new() })
}

impl<A> Loaded<A>
where
    A: Aggregate,
    A::Event: StoredEvent,
{
    /// Decides `command` on the current state (which then includes its
    /// events, so several commands can be decided in turn); a refusal is
    /// the aggregate's own error.
    pub async fn decide(&mut self, command: A::Command, services: &A::Services) -> Result<&mut Self, A::Error> {
        let sink = EventSink::<A>::default();
        self.state.handle(command, services, &sink).await?;
        self.decided.extend(sink.collect().await);
        Ok(self)
    }

    /// The events decided so far (empty when the command changed nothing).
    pub fn decided(&self) -> &[A::Event] {
        &self.decided
    }

    /// Takes events a rule spanning aggregates decided for this one
    /// (`domain::workflows`) as decided here, applying them in order.
    pub fn record(&mut self, events: Vec<A::Event>) {
        for event in events {
            self.state.apply(event.clone());
            self.decided.push(event);
        }
    }

    /// The log command that appends what was decided, expecting the stream
    /// still at the revision it was loaded at.
    pub fn into_command(self, context: &Context, now: Timestamp) -> Command {
        let events = self
            .decided
            .iter()
            .map(|event| NewEvent::from_event(event, new_event_id(), now, &context.metadata))
            .collect();
        let expected =
            if self.revision == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exactly(self.revision) };
        Command { stream_id: self.stream_id, expected, idempotency: None, events }
    }
}

pub fn new_event_id() -> EventId {
    EventId(uuid::Uuid::now_v7())
}

/// The events a command appended, decoded, for its answer.
pub struct Appended {
    pub records: Vec<(Record, LedgerEvent)>,
    pub sequence: u64,
}

impl Appended {
    /// The first event of a type, for building an answer.
    pub fn find<T>(&self, pick: impl Fn(&LedgerEvent) -> Option<T>) -> Result<T, Error> {
        self.records
            .iter()
            .find_map(|(_, event)| pick(event))
            .ok_or_else(|| Error::Internal("an expected event is missing".into()))
    }
}

/// Runs a command: answers a known idempotency key from its events, or
/// builds the log commands (`build`, re-run on a revision conflict),
/// appends them as one group, and returns what was appended.
pub async fn execute<F, Fut>(state: &Ledger, context: &Context, build: F) -> Result<Appended, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<Command>, Error>>,
{
    execute_with(state, context, build).await
}

/// [`execute`] for a `build` that fails with the caller's own error type, so
/// front ends that still speak theirs can use it; every failure of the log
/// is an [`Error`], converted.
pub async fn execute_with<E, F, Fut>(state: &Ledger, context: &Context, build: F) -> Result<Appended, E>
where
    E: From<Error>,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<Command>, E>>,
{
    // Decide on read models that include this caller's own earlier writes.
    acknowledged::catch_up(state, context.credential, None).await?;
    let answer = append_with(state, context, build).await?;
    acknowledge(state, context, &answer);
    Ok(answer)
}

/// Answers a known idempotency key from its events, or appends the group.
async fn append_with<E, F, Fut>(state: &Ledger, context: &Context, build: F) -> Result<Appended, E>
where
    E: From<Error>,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<Command>, E>>,
{
    if let Some((key, digest)) = &context.idempotency
        && let Some((stored, first)) = state.log.find_idempotency_key(&group_key(key, 0)).await.map_err(Error::from)?
    {
        if stored != *digest {
            return Err(Error::IdempotencyConflict.into());
        }
        return Ok(read_group(state, key, first.first_sequence).await?);
    }
    for attempt in 1..=ATTEMPTS_MAX {
        let mut commands = build().await?;
        if let Some((key, digest)) = &context.idempotency {
            for (index, command) in commands.iter_mut().enumerate() {
                command.idempotency = Some(Idempotency { key: group_key(key, index), digest: *digest });
            }
        }
        match state.log.append_atomic(commands).await.map_err(Error::from)? {
            // Answered as soon as the append is durable: the read models
            // follow, and this caller's next read waits for them
            // (`acknowledged`).
            Ok(appended) => {
                let first = appended.iter().map(|a| a.first_sequence).min().expect("a group has commands");
                return Ok(match &context.idempotency {
                    Some((key, _)) => read_group(state, key, first).await?,
                    None => {
                        let last = appended.iter().map(|a| a.last_sequence).max().expect("a group has commands");
                        read_range(state, first, last).await?
                    }
                });
            }
            Err(Rejection::WrongRevision { .. }) if attempt < ATTEMPTS_MAX => continue,
            Err(Rejection::WrongRevision { stream_id, .. }) => {
                return Err(Error::conflict("conflict", format!("{stream_id} kept changing; try again")).into());
            }
            Err(Rejection::IdempotencyConflict { .. }) => return Err(Error::IdempotencyConflict.into()),
            Err(Rejection::Invalid(why)) => return Err(Error::Validation(why).into()),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Remembers the answered sequence (a replay's too) as a command every
/// credential on this node reads after (`Acknowledged::record_command`), as
/// acknowledged to the caller, and to every credential the events change (a token revoked, a
/// license revoked: `acknowledged::named_by`).
fn acknowledge(state: &Ledger, context: &Context, answer: &Appended) {
    state.acknowledged.record_command(answer.sequence);
    if let Some(credential) = context.credential {
        state.acknowledged.record(credential, answer.sequence);
    }
    for (record, event) in &answer.records {
        if let Some(credential) = acknowledged::named_by(record, event) {
            state.acknowledged.record(credential, answer.sequence);
        }
    }
}

fn group_key(key: &str, index: usize) -> String {
    format!("{key}#{index}")
}

/// The events of a group, found by the key its commands carry.
async fn read_group(state: &Ledger, key: &str, first: u64) -> Result<Appended, Error> {
    let prefix = format!("{key}#");
    let page = state.log.read_page(first..=u64::MAX, GROUP_EVENTS_MAX).await?;
    let group: Vec<Record> = page
        .into_iter()
        // `{key}#{n}`, n digits only: a later request keyed `{key}#x` is not ours.
        .take_while(|r| {
            let rest = r.header.idempotency_key.as_deref().and_then(|k| k.strip_prefix(&prefix));
            rest.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    decoded(group)
}

async fn read_range(state: &Ledger, first: u64, last: u64) -> Result<Appended, Error> {
    decoded(state.log.read_page(first..=last, (last - first + 1) as usize).await?)
}

fn decoded(records: Vec<Record>) -> Result<Appended, Error> {
    let sequence = records.last().map(|r| r.header.sequence).ok_or_else(|| Error::Internal("no events".into()))?;
    let records = records
        .into_iter()
        .map(|record| {
            let payload = record.event_bytes().map(<[u8]>::to_vec).unwrap_or_default();
            let event = LedgerEvent::decode(&record.header, &payload)
                .map_err(|e| Error::Internal(e.to_string()))?
                .ok_or_else(|| Error::Internal(format!("unknown event {}", record.header.event_type)))?;
            Ok((record, event))
        })
        .collect::<Result<_, Error>>()?;
    Ok(Appended { records, sequence })
}

/// The digest of a request that an idempotency key is bound to.
pub fn request_digest(method: &str, path: &str, body: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key("ledger 2026-11-29 http request digest v1");
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Hash(*hasher.finalize().as_bytes())
}

//! Deciding a batch: which commands are appended, answered from an earlier
//! identical command, or rejected; and the sealed records of those appended.
//!
//! This is the one place that assigns sequences, revisions, recordedAt and
//! chain hashes. It is backend-independent and does no I/O: a backend gives
//! it the head, the known idempotency keys and the streams' revisions (read
//! inside its write transaction, or, on PostgreSQL's one-round-trip path,
//! the writer's cached values, which the database checks before it writes
//! and answers with the true ones when they are stale), and writes what it
//! returns.
//! Records are sealed in format version 2 with salts the writer drew
//! (randomness is I/O too), one per event of the batch.

use std::collections::HashMap;

use domain::record::{Hash, Record, RecordHeader, SALT_BYTES};
use domain::{StreamId, Timestamp};

use crate::{Appended, Command, ExpectedRevision, Head, Rejection};

/// A command with an idempotency key, as stored.
#[derive(Debug, Clone)]
pub(crate) struct KnownCommand {
    pub digest: Hash,
    pub stream_id: StreamId,
    pub appended: Appended,
}

/// What a batch writes and answers.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub records: Vec<Record>,
    /// New rows of the `commands` table: key and what it was answered.
    pub commands: Vec<(String, KnownCommand)>,
    /// One answer per command, in the order given.
    pub outcomes: Vec<Result<Appended, Rejection>>,
    /// The head after the batch.
    pub head: Head,
}

/// Commands that arrived in one request: each all or nothing, or, when
/// `atomic`, all of them or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Group {
    pub len: usize,
    pub atomic: bool,
    /// Sealed in format version 1 (unsalted), as records written before
    /// version 2 were: only for tests that need such records
    /// ([`crate::EventLog::append_legacy_v1_for_tests`]).
    pub legacy_v1: bool,
}

/// One salt per event of `commands`, in order: the salt of event `j` of
/// command `i` is at the count of events before command `i`, plus `j`.
pub(crate) type Salt = [u8; SALT_BYTES];

pub(crate) fn plan(
    head: Head,
    mut known: HashMap<String, KnownCommand>,
    mut revisions: HashMap<StreamId, u64>,
    commands: &[Command],
    groups: &[Group],
    salts: &[Salt],
    now: Timestamp,
) -> Plan {
    debug_assert_eq!(groups.iter().map(|g| g.len).sum::<usize>(), commands.len());
    debug_assert_eq!(commands.iter().map(|c| c.events.len()).sum::<usize>(), salts.len());
    // recordedAt never decreases along the log, even if the clock steps
    // back (NTP, another process's clock): "as of T" stays well-defined.
    let recorded_at = now.max(head.recorded_at);
    let mut plan = Plan { head, ..Plan::default() };
    let mut start = 0;
    let mut salts = salts;
    let mut take_salts = |command: &Command| {
        let (these, rest) = std::mem::take(&mut salts).split_at(command.events.len());
        salts = rest;
        Sealing { salts: these, legacy_v1: false }
    };
    for group in groups {
        let group_commands = &commands[start..start + group.len];
        start += group.len;
        if !group.atomic {
            for command in group_commands {
                let sealing = Sealing { legacy_v1: group.legacy_v1, ..take_salts(command) };
                let outcome = decide(&mut plan, &mut known, &mut revisions, command, sealing, recorded_at);
                plan.outcomes.push(outcome);
            }
            continue;
        }
        // All or none: remember where the plan stood, and go back there if
        // any command of the group is refused.
        let (records, rows, head) = (plan.records.len(), plan.commands.len(), plan.head);
        let (known_before, revisions_before) = (known.clone(), revisions.clone());
        let mut outcomes = Vec::with_capacity(group.len);
        let sealings: Vec<Sealing> =
            group_commands.iter().map(|c| Sealing { legacy_v1: group.legacy_v1, ..take_salts(c) }).collect();
        for (command, sealing) in group_commands.iter().zip(sealings) {
            match decide(&mut plan, &mut known, &mut revisions, command, sealing, recorded_at) {
                Ok(appended) => outcomes.push(Ok(appended)),
                Err(rejection) => {
                    plan.records.truncate(records);
                    plan.commands.truncate(rows);
                    plan.head = head;
                    (known, revisions) = (known_before, revisions_before);
                    outcomes = vec![Err(rejection); group.len];
                    break;
                }
            }
        }
        plan.outcomes.extend(outcomes);
    }
    plan
}

/// How one command's records are sealed: with these salts, one per event,
/// or (for tests) in format version 1.
#[derive(Clone, Copy)]
struct Sealing<'s> {
    salts: &'s [Salt],
    legacy_v1: bool,
}

fn decide(
    plan: &mut Plan,
    known: &mut HashMap<String, KnownCommand>,
    revisions: &mut HashMap<StreamId, u64>,
    command: &Command,
    sealing: Sealing<'_>,
    recorded_at: Timestamp,
) -> Result<Appended, Rejection> {
    // An idempotent retry is answered before the revision check: the
    // stream has moved on since the first attempt, by that attempt itself.
    if let Some(idempotency) = &command.idempotency
        && let Some(earlier) = known.get(&idempotency.key)
    {
        return if earlier.digest == idempotency.digest && earlier.stream_id == command.stream_id {
            Ok(Appended { replayed: true, ..earlier.appended })
        } else {
            Err(Rejection::IdempotencyConflict { key: idempotency.key.clone() })
        };
    }
    let actual = revisions.get(&command.stream_id).copied().unwrap_or(0);
    let matches = match command.expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => actual == 0,
        ExpectedRevision::Exactly(expected) => actual == expected,
        ExpectedRevision::Below(bound) => actual < bound,
    };
    if !matches {
        return Err(Rejection::WrongRevision {
            stream_id: command.stream_id.clone(),
            expected: command.expected,
            actual,
        });
    }
    let first_sequence = plan.head.sequence + 1;
    let mut revision = actual;
    for (event, salt) in command.events.iter().zip(sealing.salts) {
        revision += 1;
        let header = RecordHeader {
            sequence: plan.head.sequence + 1,
            event_id: event.event_id,
            stream_id: command.stream_id.clone(),
            stream_revision: revision,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            occurred_at: event.occurred_at,
            recorded_at,
            idempotency_key: command.idempotency.as_ref().map(|i| i.key.clone()),
        };
        let (metadata, payload, previous) = (event.metadata.clone(), event.payload.clone(), &plan.head.chain_hash);
        let record = if sealing.legacy_v1 {
            Record::seal(header, metadata, payload, previous)
        } else {
            Record::seal_v2(header, metadata, payload, *salt, previous)
        };
        plan.head = Head { sequence: record.header.sequence, chain_hash: record.chain_hash, recorded_at };
        plan.records.push(record);
    }
    revisions.insert(command.stream_id.clone(), revision);
    let appended =
        Appended { first_sequence, last_sequence: plan.head.sequence, stream_revision: revision, replayed: false };
    if let Some(idempotency) = &command.idempotency {
        let row = KnownCommand { digest: idempotency.digest, stream_id: command.stream_id.clone(), appended };
        known.insert(idempotency.key.clone(), row.clone());
        plan.commands.push((idempotency.key.clone(), row));
    }
    Ok(appended)
}

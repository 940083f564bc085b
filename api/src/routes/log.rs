//! The log's head, signed checkpoints and Merkle proofs (ARCHITECTURE.md,
//! "The Merkle tree and signed checkpoints").
//!
//! [`LogTree`] holds the Merkle tree of the whole log in memory, built from
//! the log and following it. It checks every record (leaf and chain) as it
//! adds it, so the server never signs a checkpoint over a log that does not
//! verify.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointSigned};
use domain::event::LedgerEvent;
use domain::merkle::MerkleTree;
use domain::record::{ChainVerifier, Hash, Record, VerifyFailure};
use domain::{Metadata, StreamId, Timestamp};
use serde_json::{Value, json};
use store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent, READ_PAGE_RECORDS};
use tokio::sync::{Mutex, MutexGuard};

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::extract::Consistency;

/// How often the server signs and keeps a checkpoint, if the log grew.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// The log's name in its checkpoints unless `LEDGER_CHECKPOINT_ORIGIN` says otherwise.
pub const DEFAULT_ORIGIN: &str = "ledger";
/// How often the tree looks for appends of other processes.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The Merkle tree of the log, with what a checkpoint states besides it.
pub struct LogTree {
    origin: String,
    state: Mutex<TreeState>,
}

pub struct TreeState {
    tree: MerkleTree,
    verifier: ChainVerifier,
    recorded_at: Timestamp,
    /// The first record that did not verify: nothing is signed past it.
    broken: Option<VerifyFailure>,
    /// The latest checkpoint kept in the log.
    kept: Option<Kept>,
}

/// A checkpoint kept in the log: the size it covers, where it was kept.
#[derive(Debug, Clone)]
pub struct Kept {
    pub size: u64,
    pub sequence: u64,
    pub note: String,
}

impl LogTree {
    /// An empty tree; [`LogTree::follow`] or any request fills it.
    pub fn new(origin: Option<String>) -> anyhow::Result<Arc<Self>> {
        let origin = origin.unwrap_or_else(|| DEFAULT_ORIGIN.to_owned());
        // The origin must be one a checkpoint can carry.
        let probe = Checkpoint {
            origin: origin.clone(),
            size: 0,
            root: Hash([0; 32]),
            chain: Hash([0; 32]),
            time: Timestamp::from_micros(0),
        };
        probe
            .sign(&ed25519_dalek::SigningKey::from_bytes(&[0; 32]))
            .map_err(|e| anyhow::anyhow!("LEDGER_CHECKPOINT_ORIGIN: {e}"))?;
        Ok(Arc::new(Self {
            origin,
            state: Mutex::new(TreeState {
                tree: MerkleTree::new(),
                verifier: ChainVerifier::from_genesis(),
                recorded_at: Timestamp::from_micros(0),
                broken: None,
                kept: None,
            }),
        }))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Adds every record up to the log's head and returns the tree, locked.
    pub async fn caught_up(&self, log: &EventLog) -> Result<MutexGuard<'_, TreeState>, ApiError> {
        let mut state = self.state.lock().await;
        let head = log.head().await?.sequence;
        // A head behind the tree: the log lost records the tree holds (a
        // rollback). Nothing is signed over records the log no longer has.
        if state.broken.is_none() && head < state.tree.size() {
            let last = state.tree.size();
            tracing::error!(
                head,
                tree = last,
                "the log's head is behind the Merkle tree; no checkpoint will be signed"
            );
            state.broken =
                Some(VerifyFailure { sequence: head + 1, defect: domain::record::Defect::HeadMismatch { last, head } });
        }
        while state.broken.is_none() && state.tree.size() < head {
            let page = log.read_page(state.tree.size() + 1..=head, READ_PAGE_RECORDS).await?;
            if page.is_empty() {
                break;
            }
            for record in &page {
                state.add(record);
                if state.broken.is_some() {
                    break;
                }
            }
        }
        if let Some(failure) = &state.broken {
            return Err(ApiError::Unavailable(format!("the log does not verify: {failure}")));
        }
        Ok(state)
    }

    /// Keeps the tree up with the log (this process's appends wake it;
    /// other processes' are polled for).
    pub async fn follow(self: Arc<Self>, log: EventLog) {
        let mut appends = log.watch_appends();
        let mut warned = false;
        loop {
            match self.caught_up(&log).await {
                Ok(_) => warned = false,
                // Said once, not every poll; requests keep saying it.
                Err(error) if !warned => {
                    tracing::warn!(%error, "the Merkle tree could not follow the log");
                    warned = true;
                }
                Err(_) => {}
            }
            let _ = tokio::time::timeout(POLL_EVERY, appends.changed()).await;
        }
    }
}

impl TreeState {
    fn add(&mut self, record: &Record) {
        if let Err(failure) = self.verifier.check(record) {
            tracing::error!(%failure, "the log does not verify; no checkpoint will be signed past it");
            self.broken = Some(failure);
            return;
        }
        self.tree.push_record(&record.leaf_hash);
        self.recorded_at = record.header.recorded_at;
        if record.header.stream_id.as_str() == CHECKPOINT_STREAM
            && let Some(payload) = &record.payload
            && let Ok(Some(LedgerEvent::Checkpoint(CheckpointEvent::CheckpointSigned(kept)))) =
                LedgerEvent::decode(&record.header, payload)
            && let Ok((checkpoint, _, _)) = Checkpoint::parse(&kept.note)
        {
            self.kept = Some(Kept { size: checkpoint.size, sequence: record.header.sequence, note: kept.note });
        }
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// A checkpoint of the whole tree, signed now.
    fn sign(&self, origin: &str, key: &ed25519_dalek::SigningKey, now: Timestamp) -> Result<String, ApiError> {
        let size = self.tree.size();
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size,
            root: self.tree.root(size).map_err(|e| ApiError::Internal(e.to_string()))?,
            chain: self.verifier.chain(),
            time: now.max(self.recorded_at),
        };
        checkpoint.sign(key).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// True when records other than the latest kept checkpoint's own have
    /// come since it.
    fn grown_since_kept(&self) -> bool {
        let size = self.tree.size();
        match &self.kept {
            None => size > 0,
            Some(kept) => size > kept.size && !(size == kept.sequence && kept.sequence == kept.size + 1),
        }
    }
}

/// Signs a checkpoint of the head and keeps it in the log, unless nothing
/// but the last kept checkpoint came since it; returns the latest kept
/// checkpoint and the sequence it is kept at.
pub async fn keep_checkpoint(state: &AppState) -> Result<Option<Kept>, ApiError> {
    // Read models that do not match the log (a rollback): sign nothing.
    if state.projections.failed().is_some() {
        return Err(ApiError::ReadModelFailed);
    }
    let (note, size) = {
        let tree = state.log_tree.caught_up(&state.log).await?;
        if !tree.grown_since_kept() {
            return Ok(tree.kept.clone());
        }
        (tree.sign(state.log_tree.origin(), &state.keys.checkpoint, state.now())?, tree.size())
    };
    let stream_id = StreamId::new(CHECKPOINT_STREAM).expect("a valid stream id");
    let event = CheckpointEvent::CheckpointSigned(CheckpointSigned { note: note.clone() });
    let metadata = Metadata { actor: Some("checkpointer".into()), ..Default::default() };
    let events = vec![NewEvent::from_event(&event, crate::command::new_event_id(), state.now(), &metadata)];
    let command = Command {
        idempotency: Some(Idempotency::of_events(format!("checkpoint:{size}"), &stream_id, &events)),
        stream_id,
        expected: ExpectedRevision::Any,
        events,
    };
    match state.log.append_one(command).await? {
        Ok(appended) => Ok(Some(Kept { size, sequence: appended.first_sequence, note })),
        // Another process kept its own checkpoint of this size first.
        Err(store::Rejection::IdempotencyConflict { .. }) => {
            Ok(state.log_tree.caught_up(&state.log).await?.kept.clone())
        }
        Err(rejection) => Err(ApiError::Internal(rejection.to_string())),
    }
}

/// Keeps a checkpoint every [`CHECKPOINT_EVERY`] while the log grows
/// (`LEDGER_CHECKPOINT_INTERVAL_SECONDS` sets another interval; 0 keeps
/// checkpoints only when an operator asks).
pub async fn keep_checkpoints(state: AppState) {
    let every = match std::env::var("LEDGER_CHECKPOINT_INTERVAL_SECONDS").ok().map(|s| s.parse::<u64>()) {
        None => CHECKPOINT_EVERY,
        Some(Ok(0)) => return,
        Some(Ok(seconds)) => Duration::from_secs(seconds),
        Some(Err(_)) => {
            tracing::error!(
                "LEDGER_CHECKPOINT_INTERVAL_SECONDS is not a whole number; keeping every {CHECKPOINT_EVERY:?}"
            );
            CHECKPOINT_EVERY
        }
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = keep_checkpoint(&state).await {
            tracing::warn!(%error, "no checkpoint kept this time");
        }
    }
}

/// `name=value` pairs of a query string; the values here are all numbers.
fn number(query: &Option<String>, name: &str) -> Result<Option<u64>, ApiError> {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value.parse::<u64>().map_err(|_| ApiError::Validation(format!("{name} must be a whole number")))
        })
        .transpose()
}

fn hexes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(Hash::to_hex).collect()
}

#[utoipa::path(
    get,
    path = "/api/v1/log/head",
    tag = "ledger",
    responses(
        (status = 200, description = "The log head and a checkpoint of it signed now (operator, auditor): {sequence, chainHash, rootHash, recordedAt, checkpoint, keptCheckpoint}. `checkpoint` is a signed note (ARCHITECTURE.md, \"Checkpoint notes\"); `keptCheckpoint` the latest one kept in the log, with its `size` and `sequence`."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 503, description = "unavailable: the log does not verify, so nothing is signed"),
    ),
)]
pub async fn head(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
) -> Result<Json<Value>, ApiError> {
    caller.require_vendor()?;
    let tree = state.log_tree.caught_up(&state.log).await?;
    let size = tree.size();
    let note = tree.sign(state.log_tree.origin(), &state.keys.checkpoint, state.now())?;
    Ok(Json(json!({
        "sequence": size,
        "chainHash": tree.verifier.chain().to_hex(),
        "rootHash": tree.tree.root(size).map_err(|e| ApiError::Internal(e.to_string()))?.to_hex(),
        "recordedAt": tree.recorded_at.to_rfc3339(),
        "checkpoint": note,
        "keptCheckpoint": tree.kept.as_ref().map(kept_json),
    })))
}

fn kept_json(kept: &Kept) -> Value {
    json!({ "size": kept.size, "sequence": kept.sequence, "checkpoint": kept.note })
}

#[utoipa::path(
    post,
    path = "/api/v1/log/checkpoints",
    tag = "ledger",
    responses(
        (status = 200, description = "Signs a checkpoint of the head and keeps it in the log, unless nothing came since the last kept one (operator): {size, sequence, checkpoint}; `sequence` is where it is kept."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found: the log is empty"),
        (status = 503, description = "unavailable: the log does not verify, so nothing is signed"),
    ),
)]
pub async fn keep(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_operator()?;
    let kept = keep_checkpoint(&state).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(kept_json(&kept)))
}

#[utoipa::path(
    get,
    path = "/api/v1/log/proof/inclusion",
    tag = "ledger",
    params(
        ("sequence" = u64, Query, description = "The record to prove."),
        ("size" = Option<u64>, Query, description = "The tree size (a kept checkpoint's) to prove it in; the head when absent, with a checkpoint of the head signed now."),
    ),
    responses(
        (status = 200, description = "An inclusion proof (operator, auditor; an organization's analysts and admins for its own events): {sequence, leafIndex, treeSize, record, merkleLeaf, proof, rootHash, checkpoint?}. `record` has the header fields and content hashes to recompute the leaf hash; `proof` the hex hashes from the leaf up."),
        (status = 400, description = "validation_failed"),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found: no such record, or not the caller's"),
        (status = 503, description = "unavailable"),
    ),
)]
pub async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let sequence = number(&query, "sequence")?.ok_or(ApiError::Validation("sequence is required".into()))?;
    let size = number(&query, "size")?;
    if sequence == 0 {
        return Err(ApiError::Validation("sequences start at 1".into()));
    }
    if let Caller::Member { organization_id, .. } = caller {
        // Only the organization's own events, as the audit list attributes
        // them; anything else is as if it did not exist.
        caller.require_org(organization_id, Need::Analyst)?;
        let ledger = state.projections.read().await;
        let owner = usize::try_from(sequence - 1)
            .ok()
            .and_then(|index| ledger.audit.get(index))
            .filter(|entry| entry.sequence == sequence)
            .and_then(|entry| entry.organization_id);
        if owner != Some(organization_id) {
            return Err(ApiError::NotFound);
        }
    } else {
        caller.require_vendor()?;
    }
    let record = state.log.read_page(sequence..=sequence, 1).await?.pop().ok_or(ApiError::NotFound)?;
    let tree = state.log_tree.caught_up(&state.log).await?;
    let size = size.unwrap_or(tree.size());
    if size < sequence {
        return Err(ApiError::Validation(format!("a tree of size {size} does not hold sequence {sequence}")));
    }
    let proof = tree.tree.inclusion_proof(sequence - 1, size).map_err(|_| ApiError::NotFound)?;
    let root = tree.tree.root(size).map_err(|_| ApiError::NotFound)?;
    let checkpoint = if size == tree.size() {
        Some(tree.sign(state.log_tree.origin(), &state.keys.checkpoint, state.now())?)
    } else {
        None
    };
    let document = domain::proof::InclusionProof::new(&record, size, &proof, root, checkpoint);
    Ok(Json(serde_json::to_value(document).expect("a proof is JSON")))
}

#[utoipa::path(
    get,
    path = "/api/v1/log/proof/consistency",
    tag = "ledger",
    params(
        ("from" = u64, Query, description = "The earlier tree size (a kept checkpoint's)."),
        ("to" = Option<u64>, Query, description = "The later tree size; the head when absent, with a checkpoint of the head signed now."),
    ),
    responses(
        (status = 200, description = "A consistency proof (operator, auditor): {from, to, fromRoot, toRoot, proof, checkpoint?}, `proof` the hex hashes of RFC 9162 2.1.4."),
        (status = 400, description = "validation_failed"),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found: a size beyond the head"),
        (status = 503, description = "unavailable"),
    ),
)]
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require_vendor()?;
    let from = number(&query, "from")?.ok_or(ApiError::Validation("from is required".into()))?;
    let to = number(&query, "to")?;
    let tree = state.log_tree.caught_up(&state.log).await?;
    let to = to.unwrap_or(tree.size());
    if from > to {
        return Err(ApiError::Validation(format!("from ({from}) is after to ({to})")));
    }
    let proof = tree.tree.consistency_proof(from, to).map_err(|_| ApiError::NotFound)?;
    let checkpoint = if to == tree.size() {
        Some(tree.sign(state.log_tree.origin(), &state.keys.checkpoint, state.now())?)
    } else {
        None
    };
    let root = |size| tree.tree.root(size).map(|r| r.to_hex()).map_err(|_| ApiError::NotFound);
    Ok(Json(json!({
        "from": from,
        "to": to,
        "fromRoot": root(from)?,
        "toRoot": root(to)?,
        "proof": hexes(&proof),
        "checkpoint": checkpoint,
    })))
}

#[cfg(test)]
mod tests {
    use domain::record::{CHAIN_GENESIS, RecordHeader};
    use domain::{EventId, Metadata};

    use super::*;

    fn empty() -> TreeState {
        TreeState {
            tree: MerkleTree::new(),
            verifier: ChainVerifier::from_genesis(),
            recorded_at: Timestamp::from_micros(0),
            broken: None,
            kept: None,
        }
    }

    fn records(n: u64) -> Vec<Record> {
        let mut previous = CHAIN_GENESIS;
        (1..=n)
            .map(|sequence| {
                let header = RecordHeader {
                    sequence,
                    event_id: EventId::v7(1_700_000_000_000 + sequence, [sequence as u8; 10]),
                    stream_id: StreamId::new("org/x").unwrap(),
                    stream_revision: sequence,
                    event_type: "Test".into(),
                    schema_version: 1,
                    occurred_at: Timestamp::from_micros(sequence as i64),
                    recorded_at: Timestamp::from_micros(sequence as i64),
                    idempotency_key: None,
                };
                let record = Record::seal(header, Metadata::default().encode(), vec![sequence as u8], &previous);
                previous = record.chain_hash;
                record
            })
            .collect()
    }

    #[test]
    fn nothing_is_signed_past_a_record_that_does_not_verify() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let mut good = empty();
        records(3).iter().for_each(|r| good.add(r));
        let note = good.sign("ledger", &key, Timestamp::from_micros(10)).unwrap();
        let checkpoint = Checkpoint::verify(&note, &key.verifying_key()).unwrap();
        assert_eq!((checkpoint.size, checkpoint.chain), (3, records(3)[2].chain_hash));
        assert_eq!(checkpoint.time, Timestamp::from_micros(10));

        let mut tampered = records(3);
        tampered[1].payload = Some(vec![99]);
        let mut state = empty();
        tampered.iter().for_each(|r| state.add(r));
        assert_eq!(state.size(), 1, "the tree stops before the bad record");
        assert_eq!(state.broken.as_ref().map(|f| f.sequence), Some(2));
    }

    #[test]
    fn a_checkpoint_is_kept_only_when_more_than_its_own_record_came() {
        let mut state = empty();
        assert!(!state.grown_since_kept(), "an empty log");
        records(4).iter().for_each(|r| state.add(r));
        assert!(state.grown_since_kept());
        // Kept at sequence 5 for size 4: only its own record came since.
        state.kept = Some(Kept { size: 4, sequence: 5, note: String::new() });
        assert!(!state.grown_since_kept(), "nothing past what the kept checkpoint covers");
        let mut five = empty();
        records(5).iter().for_each(|r| five.add(r));
        five.kept = Some(Kept { size: 4, sequence: 5, note: String::new() });
        assert!(!five.grown_since_kept());
        // Kept at 5 for size 3 (record 4 came between signing and keeping).
        five.kept = Some(Kept { size: 3, sequence: 5, note: String::new() });
        assert!(five.grown_since_kept(), "record 4 is not covered by any kept checkpoint");
    }
}

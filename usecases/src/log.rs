//! The log's head, signed checkpoints and Merkle proofs (ARCHITECTURE.md,
//! "The Merkle tree and signed checkpoints"), as use cases: the HTTP routes
//! (`GET /api/v1/log/head`, `POST /api/v1/log/checkpoints`, the proofs)
//! and the server's checkpoint keeping call these.
//!
//! [`LogTree`] holds the Merkle tree of the whole log in memory, built from
//! the log and following it. It checks every record (leaf and chain) as it
//! adds it, so the server never signs a checkpoint over a log that does not
//! verify.

use std::sync::Arc;
use std::time::Duration;

use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointSigned};
use domain::event::LedgerEvent;
use domain::merkle::MerkleTree;
use domain::proof::InclusionProof;
use domain::record::{ChainVerifier, Hash, Record, VerifyFailure};
use domain::{Metadata, StreamId, Timestamp};
use store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent, READ_PAGE_RECORDS};
use tokio::sync::{Mutex, MutexGuard};

use crate::command::new_event_id;
use crate::error::Error;
use crate::views::log::{ConsistencyProof, Head, KeptCheckpoint};
use crate::{Caller, Ledger, Need};

/// Where the log's checkpoints come from: the log's name in them and how
/// often they are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// `LEDGER_CHECKPOINT_ORIGIN`; [`DEFAULT_ORIGIN`] when unset.
    pub origin: Option<String>,
    /// `LEDGER_CHECKPOINT_INTERVAL_SECONDS`; `None` (0) keeps checkpoints
    /// only when an operator asks.
    pub every: Option<Duration>,
}

impl CheckpointSettings {
    /// From the environment; an interval that is not a whole number is
    /// said once and the default kept.
    pub fn from_env() -> Self {
        let origin = std::env::var("LEDGER_CHECKPOINT_ORIGIN").ok().filter(|o| !o.is_empty());
        let every = match std::env::var("LEDGER_CHECKPOINT_INTERVAL_SECONDS").ok().map(|s| s.parse::<u64>()) {
            None => Some(CHECKPOINT_EVERY),
            Some(Ok(0)) => None,
            Some(Ok(seconds)) => Some(Duration::from_secs(seconds)),
            Some(Err(_)) => {
                tracing::error!(
                    "LEDGER_CHECKPOINT_INTERVAL_SECONDS is not a whole number; keeping every {CHECKPOINT_EVERY:?}"
                );
                Some(CHECKPOINT_EVERY)
            }
        };
        Self { origin, every }
    }
}

/// How often the server signs and keeps a checkpoint, if the log grew
/// (`LEDGER_CHECKPOINT_INTERVAL_SECONDS` sets another interval).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// The log's name in its checkpoints unless `LEDGER_CHECKPOINT_ORIGIN` says otherwise.
pub const DEFAULT_ORIGIN: &str = "ledger";
/// How often the tree looks for appends of other processes.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The Merkle tree of the log, with what a checkpoint states besides it.
pub struct LogTree {
    origin: String,
    /// How often [`keep_checkpoints`] keeps one; `None`: only when asked.
    every: Option<Duration>,
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
    pub fn new(settings: CheckpointSettings) -> anyhow::Result<Arc<Self>> {
        let origin = settings.origin.unwrap_or_else(|| DEFAULT_ORIGIN.to_owned());
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
            every: settings.every,
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
    pub async fn caught_up(&self, log: &EventLog) -> Result<MutexGuard<'_, TreeState>, Error> {
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
            return Err(Error::Unavailable(format!("the log does not verify: {failure}")));
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
    fn sign(&self, origin: &str, key: &ed25519_dalek::SigningKey, now: Timestamp) -> Result<String, Error> {
        let size = self.tree.size();
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size,
            root: self.tree.root(size).map_err(|e| Error::Internal(e.to_string()))?,
            chain: self.verifier.chain(),
            time: now.max(self.recorded_at),
        };
        checkpoint.sign(key).map_err(|e| Error::Internal(e.to_string()))
    }

    /// A checkpoint of the whole tree signed now when `size` is the whole
    /// tree; `None` for an earlier size (a kept checkpoint's, which the
    /// caller has).
    fn signed_if_head(&self, size: u64, origin: &str, ledger: &Ledger) -> Result<Option<String>, Error> {
        if size == self.size() { Ok(Some(self.sign(origin, &ledger.keys.checkpoint, ledger.now())?)) } else { Ok(None) }
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
pub async fn keep_checkpoint(ledger: &Ledger, tree: &LogTree) -> Result<Option<Kept>, Error> {
    // Read models that do not match the log (a rollback): sign nothing.
    if ledger.projections.failed().is_some() {
        return Err(Error::ReadModelFailed);
    }
    let (note, size) = {
        let state = tree.caught_up(&ledger.log).await?;
        if !state.grown_since_kept() {
            return Ok(state.kept.clone());
        }
        (state.sign(tree.origin(), &ledger.keys.checkpoint, ledger.now())?, state.size())
    };
    let stream_id = StreamId::new(CHECKPOINT_STREAM).expect("a valid stream id");
    let event = CheckpointEvent::CheckpointSigned(CheckpointSigned { note: note.clone() });
    let metadata = Metadata { actor: Some("checkpointer".into()), ..Default::default() };
    let events = vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &metadata)];
    let command = Command {
        idempotency: Some(Idempotency::of_events(format!("checkpoint:{size}"), &stream_id, &events)),
        stream_id,
        expected: ExpectedRevision::Any,
        events,
    };
    match ledger.log.append_one(command).await? {
        Ok(appended) => Ok(Some(Kept { size, sequence: appended.first_sequence, note })),
        // Another process kept its own checkpoint of this size first.
        Err(store::Rejection::IdempotencyConflict { .. }) => Ok(tree.caught_up(&ledger.log).await?.kept.clone()),
        Err(rejection) => Err(Error::Internal(rejection.to_string())),
    }
}

/// Keeps a checkpoint at the tree's interval while the log grows; without
/// one, only when an operator asks ([`keep`]).
pub async fn keep_checkpoints(ledger: Ledger, tree: Arc<LogTree>) {
    let Some(every) = tree.every else { return };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = keep_checkpoint(&ledger, &tree).await {
            tracing::warn!(%error, "no checkpoint kept this time");
        }
    }
}

/// The log head and a checkpoint of it signed now: the operator's and the
/// auditor's.
pub async fn head(ledger: &Ledger, tree: &LogTree, caller: &Caller) -> Result<Head, Error> {
    caller.require_vendor()?;
    let state = tree.caught_up(&ledger.log).await?;
    let size = state.size();
    let note = state.sign(tree.origin(), &ledger.keys.checkpoint, ledger.now())?;
    Ok(Head {
        sequence: size,
        chain_hash: state.verifier.chain().to_hex(),
        root_hash: state.tree.root(size).map_err(|e| Error::Internal(e.to_string()))?.to_hex(),
        recorded_at: state.recorded_at.to_rfc3339(),
        checkpoint: note,
        kept_checkpoint: state.kept.as_ref().map(KeptCheckpoint::from),
    })
}

/// Signs a checkpoint of the head and keeps it in the log now: the
/// operator's. Not found for an empty log.
pub async fn keep(ledger: &Ledger, tree: &LogTree, caller: &Caller) -> Result<KeptCheckpoint, Error> {
    caller.require_operator()?;
    let kept = keep_checkpoint(ledger, tree).await?.ok_or(Error::NotFound)?;
    Ok(KeptCheckpoint::from(&kept))
}

/// An inclusion proof of the record at `sequence` in the tree of `size`
/// (the head when `None`, with a checkpoint of the head signed now). The
/// operator and the auditor may prove any record; an organization's
/// analysts and admins only its own events, as the audit list attributes
/// them (anything else is as if it did not exist).
pub async fn inclusion(
    ledger: &Ledger,
    tree: &LogTree,
    caller: &Caller,
    sequence: u64,
    size: Option<u64>,
) -> Result<InclusionProof, Error> {
    if sequence == 0 {
        return Err(Error::Validation("sequences start at 1".into()));
    }
    if let Caller::Member { organization_id, .. } = caller {
        caller.require_org(*organization_id, Need::Analyst)?;
        let state = ledger.projections.read().await;
        let owner = usize::try_from(sequence - 1)
            .ok()
            .and_then(|index| state.audit.get(index))
            .filter(|entry| entry.sequence == sequence)
            .and_then(|entry| entry.organization_id);
        if owner != Some(*organization_id) {
            return Err(Error::NotFound);
        }
    } else {
        caller.require_vendor()?;
    }
    let record = ledger.log.read_page(sequence..=sequence, 1).await?.pop().ok_or(Error::NotFound)?;
    let state = tree.caught_up(&ledger.log).await?;
    let size = size.unwrap_or(state.size());
    if size < sequence {
        return Err(Error::Validation(format!("a tree of size {size} does not hold sequence {sequence}")));
    }
    let proof = state.tree.inclusion_proof(sequence - 1, size).map_err(|_| Error::NotFound)?;
    let root = state.tree.root(size).map_err(|_| Error::NotFound)?;
    let checkpoint = state.signed_if_head(size, tree.origin(), ledger)?;
    Ok(InclusionProof::new(&record, size, &proof, root, checkpoint))
}

/// A consistency proof from the tree of size `from` to the one of `to`
/// (the head when `None`, with a checkpoint of the head signed now): the
/// operator's and the auditor's.
pub async fn consistency(
    ledger: &Ledger,
    tree: &LogTree,
    caller: &Caller,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof, Error> {
    caller.require_vendor()?;
    let state = tree.caught_up(&ledger.log).await?;
    let to = to.unwrap_or(state.size());
    if from > to {
        return Err(Error::Validation(format!("from ({from}) is after to ({to})")));
    }
    let proof = state.tree.consistency_proof(from, to).map_err(|_| Error::NotFound)?;
    let root = |size| state.tree.root(size).map(|r| r.to_hex()).map_err(|_| Error::NotFound);
    Ok(ConsistencyProof {
        from,
        to,
        from_root: root(from)?,
        to_root: root(to)?,
        proof: proof.iter().map(Hash::to_hex).collect(),
        checkpoint: state.signed_if_head(to, tree.origin(), ledger)?,
    })
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

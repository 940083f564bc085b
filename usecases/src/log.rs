//! The log's head, signed checkpoints and Merkle proofs (ARCHITECTURE.md,
//! "The Merkle tree and signed checkpoints"), as use cases: the HTTP routes
//! (`GET /api/v1/log/head`, `POST /api/v1/log/checkpoints`, the proofs)
//! and the server's checkpoint keeping call these.
//!
//! Roots and proofs come from the stored tree ([`MerkleNodes`], the
//! `merkle-v1` projection's subtree hashes: a proof reads O(log n) nodes
//! and at most two blocks of leaves), at the size the read models
//! include. Nothing here holds the log's leaves: [`LogTree`] keeps only a
//! chain verifier (a position and a chain hash). The runner applies
//! records without recomputing their hashes, so before signing, the
//! records since the latest kept checkpoint (one this server's key signed)
//! are verified, leaf and chain, a page at a time, and the server never
//! signs a checkpoint past a record that does not verify.

use domain::staff::StaffPermission;
use std::sync::Arc;
use std::time::Duration;

use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointSigned};
use domain::event::LedgerEvent;
use domain::proof::InclusionProof;
use domain::record::{CHAIN_GENESIS, ChainVerifier, Defect, Hash, Record, VerifyFailure};
use domain::{Metadata, StreamId, Timestamp};
use projections::db::merkle::{MerkleError, MerkleNodes};
use store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent, READ_PAGE_RECORDS};
use tokio::sync::Mutex;

use crate::command::{READ_YOUR_WRITES_WAIT, new_event_id};
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

/// The checkpoint stream's records read back at a time when looking for
/// the latest kept checkpoint (past key rotations, which are rare)…
const KEPT_SCAN_RECORDS: usize = 64;
/// …and at most this many such pages.
const KEPT_SCAN_PAGES_MAX: u64 = 4;

/// What a checkpoint states besides the tree's size, and how far the log
/// is verified: no leaf of the log is held.
pub struct LogTree {
    origin: String,
    /// How often [`keep_checkpoints`] keeps one; `None`: only when asked.
    every: Option<Duration>,
    verified: Mutex<Verified>,
}

/// How far the records are verified (leaf and chain hashes).
#[derive(Default)]
struct Verified {
    /// `None` until its start is found: the latest kept checkpoint this
    /// server's key signed, else the genesis.
    verifier: Option<ChainVerifier>,
    /// The first record that did not verify: nothing is signed past it.
    broken: Option<VerifyFailure>,
}

/// A checkpoint kept in the log: the size it covers, where it was kept.
#[derive(Debug, Clone)]
pub struct Kept {
    pub size: u64,
    pub sequence: u64,
    pub note: String,
}

impl LogTree {
    /// A tree that has verified nothing yet; [`LogTree::follow`] or any
    /// request verifies the log.
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
        Ok(Arc::new(Self { origin, every: settings.every, verified: Mutex::new(Verified::default()) }))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Verifies the records up to `target` (and those up to the log's head
    /// it already verified still being there); the error says why not.
    pub async fn verify_to(&self, ledger: &Ledger, target: u64) -> Result<(), Error> {
        let mut state = self.verified.lock().await;
        if let Some(failure) = &state.broken {
            return Err(does_not_verify(failure));
        }
        let mut verifier = match state.verifier.take() {
            Some(verifier) => verifier,
            None => verifier_from_kept(ledger).await?,
        };
        let result = verify_pages(&ledger.log, &mut verifier, target).await;
        state.verifier = Some(verifier);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => {
                tracing::error!(%failure, "the log does not verify; no checkpoint will be signed past it");
                let error = does_not_verify(&failure);
                state.broken = Some(failure);
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Keeps the verification up with the log (this process's appends
    /// wake it; other processes' are polled for), so requests find it done.
    pub async fn follow(self: Arc<Self>, ledger: Ledger) {
        let mut appends = ledger.log.watch_appends();
        let mut warned = false;
        loop {
            let verified = match ledger.log.head().await {
                Ok(head) => self.verify_to(&ledger, head.sequence).await,
                Err(error) => Err(error.into()),
            };
            match verified {
                Ok(()) => warned = false,
                // Said once, not every poll; requests keep saying it.
                Err(error) if !warned => {
                    tracing::warn!(%error, "the log's verification could not follow it");
                    warned = true;
                }
                Err(_) => {}
            }
            let _ = tokio::time::timeout(POLL_EVERY, appends.changed()).await;
        }
    }

    /// The size the read models include once they include the log's head
    /// as it is now (a bounded wait), verified: what is signed and proved.
    async fn size(&self, ledger: &Ledger) -> Result<u64, Error> {
        if ledger.models.failed().is_some() {
            return Err(Error::ReadModelFailed);
        }
        let head = ledger.log.head().await?.sequence;
        let size = ledger
            .models
            .wait_for(head, READ_YOUR_WRITES_WAIT)
            .await
            .map_err(|lagging| Error::ProjectionLagging(lagging.wanted))?;
        self.verify_to(ledger, size).await?;
        Ok(size)
    }

    /// A checkpoint of the tree of `size` (verified) with root `root`,
    /// signed now.
    async fn sign(&self, ledger: &Ledger, size: u64, root: Hash) -> Result<Signed, Error> {
        let (chain, recorded_at) = match size {
            0 => (CHAIN_GENESIS, Timestamp::from_micros(0)),
            size => {
                let record = record_at(&ledger.log, size).await?.ok_or_else(|| {
                    Error::Unavailable(format!("the log no longer holds record {size}, which the read models include"))
                })?;
                (record.chain_hash, record.header.recorded_at)
            }
        };
        let checkpoint =
            Checkpoint { origin: self.origin.clone(), size, root, chain, time: ledger.now().max(recorded_at) };
        let note = checkpoint.sign(&ledger.keys.checkpoint).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Signed { chain, recorded_at, note })
    }
}

/// A checkpoint signed now, and what it states of the log.
struct Signed {
    chain: Hash,
    recorded_at: Timestamp,
    note: String,
}

fn does_not_verify(failure: &VerifyFailure) -> Error {
    Error::Unavailable(format!("the log does not verify: {failure}"))
}

fn merkle_error(error: MerkleError) -> Error {
    match error {
        // A size or an index the tree does not have.
        MerkleError::Proof(_) => Error::NotFound,
        MerkleError::Db(error) => Error::Unavailable(error.to_string()),
        MerkleError::Store(error) => error.into(),
        MerkleError::Missing(what) => Error::Internal(format!("the stored Merkle tree is incomplete: {what}")),
    }
}

async fn record_at(log: &EventLog, sequence: u64) -> Result<Option<Record>, Error> {
    Ok(log.read_page(sequence..=sequence, 1).await?.pop().filter(|record| record.header.sequence == sequence))
}

/// Checks the records after the verifier's position up to `target`, a
/// page at a time; first that the log's head is not behind what was
/// verified (a rollback: nothing is signed over records the log no
/// longer has). `Ok(Err)` names the first record that does not verify.
async fn verify_pages(
    log: &EventLog,
    verifier: &mut ChainVerifier,
    target: u64,
) -> Result<Result<(), VerifyFailure>, Error> {
    let head = log.head().await?.sequence;
    let last = verifier.next_sequence() - 1;
    if head < last {
        return Ok(Err(VerifyFailure { sequence: head + 1, defect: Defect::HeadMismatch { last, head } }));
    }
    while verifier.next_sequence() <= target {
        let page = log.read_page(verifier.next_sequence()..=target, READ_PAGE_RECORDS).await?;
        if page.is_empty() {
            return Err(Error::Unavailable(format!(
                "the log ends before record {target}, which the read models include"
            )));
        }
        if let Err(failure) = check_page(verifier, &page) {
            return Ok(Err(failure));
        }
    }
    Ok(Ok(()))
}

/// Verifies each record of a page in turn (leaf, then the chain from the
/// previous one); stops at the first that does not verify.
fn check_page(verifier: &mut ChainVerifier, page: &[Record]) -> Result<(), VerifyFailure> {
    page.iter().try_for_each(|record| verifier.check(record))
}

/// Where verification starts: after the latest kept checkpoint when this
/// server's current key signed it and the log still carries its chain
/// hash (the records it covers were verified before it was signed), else
/// at the genesis (a first start, or after a key rotation).
async fn verifier_from_kept(ledger: &Ledger) -> Result<ChainVerifier, Error> {
    let Some(kept) = latest_kept(&ledger.log).await? else { return Ok(ChainVerifier::from_genesis()) };
    let Ok(checkpoint) = Checkpoint::verify(&kept.note, &ledger.keys.checkpoint.verifying_key()) else {
        return Ok(ChainVerifier::from_genesis());
    };
    if checkpoint.size == 0 {
        return Ok(ChainVerifier::from_genesis());
    }
    match record_at(&ledger.log, checkpoint.size).await? {
        Some(record) if record.chain_hash == checkpoint.chain => {
            Ok(ChainVerifier::resume(checkpoint.size + 1, checkpoint.chain, Some(record.header.recorded_at)))
        }
        // The log no longer holds what the kept checkpoint signed: verify
        // it all, which names the first record that differs.
        _ => {
            tracing::warn!(size = checkpoint.size, "the log does not carry the kept checkpoint's chain hash");
            Ok(ChainVerifier::from_genesis())
        }
    }
}

/// The latest checkpoint kept in the log: the last `CheckpointSigned` of
/// the checkpoint stream, read backwards a bounded page at a time.
pub async fn latest_kept(log: &EventLog) -> Result<Option<Kept>, Error> {
    let stream = StreamId::new(CHECKPOINT_STREAM).expect("a valid stream id");
    let mut end = log.stream_revision(&stream).await?;
    for _ in 0..KEPT_SCAN_PAGES_MAX {
        if end == 0 {
            break;
        }
        let from = end.saturating_sub(KEPT_SCAN_RECORDS as u64 - 1).max(1);
        let records = log.read_stream(&stream, from, KEPT_SCAN_RECORDS).await?;
        if let Some(kept) = records.iter().rev().filter(|r| r.header.stream_revision <= end).find_map(kept_in) {
            return Ok(Some(kept));
        }
        end = from - 1;
    }
    Ok(None)
}

/// The checkpoint a record keeps, if it keeps one.
fn kept_in(record: &Record) -> Option<Kept> {
    let payload = record.event_bytes()?;
    let Ok(Some(LedgerEvent::Checkpoint(CheckpointEvent::CheckpointSigned(kept)))) =
        LedgerEvent::decode(&record.header, payload)
    else {
        return None;
    };
    let (checkpoint, _, _) = Checkpoint::parse(&kept.note).ok()?;
    Some(Kept { size: checkpoint.size, sequence: record.header.sequence, note: kept.note })
}

/// True when records other than the latest kept checkpoint's own have
/// come since it, in a tree of `size`.
fn grown_since_kept(size: u64, kept: Option<&Kept>) -> bool {
    match kept {
        None => size > 0,
        Some(kept) => size > kept.size && !(size == kept.sequence && kept.sequence == kept.size + 1),
    }
}

fn nodes(ledger: &Ledger) -> MerkleNodes {
    MerkleNodes::new(ledger.models.db.clone(), ledger.log.clone())
}

/// Signs a checkpoint of the tree the read models include and keeps it in
/// the log, unless nothing but the last kept checkpoint came since it;
/// returns the latest kept checkpoint and the sequence it is kept at.
pub async fn keep_checkpoint(ledger: &Ledger, tree: &LogTree) -> Result<Option<Kept>, Error> {
    // Read models that do not match the log (a rollback): sign nothing.
    let size = tree.size(ledger).await?;
    let kept = latest_kept(&ledger.log).await?;
    if !grown_since_kept(size, kept.as_ref()) {
        return Ok(kept);
    }
    let root = nodes(ledger).root(size).await.map_err(merkle_error)?;
    let note = tree.sign(ledger, size, root).await?.note;
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
        Err(store::Rejection::IdempotencyConflict { .. }) => latest_kept(&ledger.log).await,
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
    caller.require(StaffPermission::Audit)?;
    let size = tree.size(ledger).await?;
    let root = nodes(ledger).root(size).await.map_err(merkle_error)?;
    let signed = tree.sign(ledger, size, root).await?;
    let kept = latest_kept(&ledger.log).await?;
    Ok(Head {
        sequence: size,
        chain_hash: signed.chain.to_hex(),
        root_hash: root.to_hex(),
        recorded_at: signed.recorded_at.to_rfc3339(),
        checkpoint: signed.note,
        kept_checkpoint: kept.as_ref().map(KeptCheckpoint::from),
    })
}

/// Signs a checkpoint of the head and keeps it in the log now: the
/// operator's. Not found for an empty log.
pub async fn keep(ledger: &Ledger, tree: &LogTree, caller: &Caller) -> Result<KeptCheckpoint, Error> {
    caller.require(StaffPermission::Operate)?;
    let kept = keep_checkpoint(ledger, tree).await?.ok_or(Error::NotFound)?;
    Ok(KeptCheckpoint::from(&kept))
}

/// Whether an organization's member may prove the record at `sequence`:
/// the audit index attributes it to the organization.
async fn owns(ledger: &Ledger, organization_id: domain::OrganizationId, sequence: u64) -> Result<bool, Error> {
    if sequence > i64::MAX as u64 {
        return Ok(false);
    }
    let entry = projections::models::audit::by_sequence(&ledger.models.db, sequence)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(entry.and_then(|entry| entry.organization_id) == Some(organization_id))
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
    if let Caller::Member { organization_id, .. } | Caller::User { organization_id, .. } = caller {
        caller.require_org(*organization_id, Need::Analyst)?;
        if !owns(ledger, *organization_id, sequence).await? {
            return Err(Error::NotFound);
        }
    } else {
        caller.require(StaffPermission::Audit)?;
    }
    let record = record_at(&ledger.log, sequence).await?.ok_or(Error::NotFound)?;
    let head = tree.size(ledger).await?;
    let size = size.unwrap_or(head);
    if size < sequence {
        return Err(Error::Validation(format!("a tree of size {size} does not hold sequence {sequence}")));
    }
    let nodes = nodes(ledger);
    let proof = nodes.inclusion_proof(sequence - 1, size).await.map_err(merkle_error)?;
    let root = nodes.root(size).await.map_err(merkle_error)?;
    let checkpoint = if size == head { Some(tree.sign(ledger, size, root).await?.note) } else { None };
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
    caller.require(StaffPermission::Audit)?;
    let head = tree.size(ledger).await?;
    let to = to.unwrap_or(head);
    if from > to {
        return Err(Error::Validation(format!("from ({from}) is after to ({to})")));
    }
    let nodes = nodes(ledger);
    let proof = nodes.consistency_proof(from, to).await.map_err(merkle_error)?;
    let from_root = nodes.root(from).await.map_err(merkle_error)?;
    let to_root = nodes.root(to).await.map_err(merkle_error)?;
    let checkpoint = if to == head { Some(tree.sign(ledger, to, to_root).await?.note) } else { None };
    Ok(ConsistencyProof {
        from,
        to,
        from_root: from_root.to_hex(),
        to_root: to_root.to_hex(),
        proof: proof.iter().map(Hash::to_hex).collect(),
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use domain::record::RecordHeader;
    use domain::{EventId, Metadata};

    use super::*;

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
    fn verification_stops_at_a_record_that_does_not_verify() {
        let mut good = ChainVerifier::from_genesis();
        check_page(&mut good, &records(3)).unwrap();
        assert_eq!((good.next_sequence(), good.chain()), (4, records(3)[2].chain_hash));

        let mut tampered = records(3);
        tampered[1].payload = Some(vec![99]);
        let mut verifier = ChainVerifier::from_genesis();
        let failure = check_page(&mut verifier, &tampered).unwrap_err();
        assert_eq!(failure.sequence, 2);
        assert_eq!(verifier.next_sequence(), 2, "nothing past the bad record counts as verified");
    }

    #[test]
    fn verification_resumes_after_a_kept_checkpoint_and_checks_the_chain_from_it() {
        let all = records(5);
        // Resumed at a checkpoint of size 3: records 4 and 5 follow its chain.
        let mut verifier = ChainVerifier::resume(4, all[2].chain_hash, Some(all[2].header.recorded_at));
        check_page(&mut verifier, &all[3..]).unwrap();
        assert_eq!(verifier.chain(), all[4].chain_hash);
        // A checkpoint stating another chain hash: the next record does not follow.
        let mut verifier = ChainVerifier::resume(4, all[1].chain_hash, Some(all[2].header.recorded_at));
        assert_eq!(check_page(&mut verifier, &all[3..]).unwrap_err().sequence, 4);
    }

    #[test]
    fn a_kept_checkpoint_is_read_from_its_record() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let checkpoint = Checkpoint {
            origin: "ledger".into(),
            size: 4,
            root: Hash([1; 32]),
            chain: Hash([2; 32]),
            time: Timestamp::from_micros(9),
        };
        let note = checkpoint.sign(&key).unwrap();
        let event = CheckpointEvent::CheckpointSigned(CheckpointSigned { note: note.clone() });
        let new = NewEvent::from_event(&event, new_event_id(), Timestamp::from_micros(9), &Metadata::default());
        let header = RecordHeader {
            sequence: 5,
            event_id: new.event_id,
            stream_id: StreamId::new(CHECKPOINT_STREAM).unwrap(),
            stream_revision: 1,
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            occurred_at: new.occurred_at,
            recorded_at: new.occurred_at,
            idempotency_key: None,
        };
        let record = Record::seal(header, new.metadata, new.payload, &CHAIN_GENESIS);
        let kept = kept_in(&record).expect("a kept checkpoint");
        assert_eq!((kept.size, kept.sequence, kept.note), (4, 5, note));
        assert!(kept_in(&records(1)[0]).is_none(), "not a checkpoint");
    }

    #[test]
    fn a_checkpoint_is_kept_only_when_more_than_its_own_record_came() {
        assert!(!grown_since_kept(0, None), "an empty log");
        assert!(grown_since_kept(4, None));
        // Kept at sequence 5 for size 4: only its own record came since.
        let at_five = |size| Kept { size, sequence: 5, note: String::new() };
        assert!(!grown_since_kept(4, Some(&at_five(4))), "nothing past what the kept checkpoint covers");
        assert!(!grown_since_kept(5, Some(&at_five(4))));
        // Kept at 5 for size 3 (record 4 came between signing and keeping).
        assert!(grown_since_kept(5, Some(&at_five(3))), "record 4 is not covered by any kept checkpoint");
        assert!(grown_since_kept(6, Some(&at_five(4))));
    }
}

//! One pass over the history in global order, doing what a command needs:
//! checking every record (leaf, chain, payload), building the Merkle tree,
//! checking kept checkpoints and their signatures, rebuilding the
//! projections, re-deriving invoices, handing each checked page to a
//! rebuild of the durable read models. The first thing found wrong stops it
//! and is named with its sequence.

use std::ops::ControlFlow;

use domain::Timestamp;
use domain::catalog::Catalog;
use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointKeyRotated};
use domain::event::LedgerEvent;
use domain::merkle::{Blake3Hasher, MerkleTree, verify_consistency};
use domain::record::{CHAIN_GENESIS, ChainVerifier, Hash, Record, RecordHeader, VerifyFailure};
use projections::LedgerState;
use projections::invoices::InvoiceCheck;
use store::{Head, Snapshot};

use crate::readmodels::Scratch;
use crate::source::Source;

/// What to do besides reading.
#[derive(Default)]
pub struct Plan {
    /// Recompute leaves and content hashes (verify); links are always checked.
    pub check_leaves: bool,
    /// Refuse events this version cannot decode.
    pub decode_strictly: bool,
    /// Keep the Merkle tree and the chain hash after every record.
    pub tree: bool,
    /// Check the checkpoints kept in the log.
    pub checkpoints: bool,
    /// Re-derive every issued invoice.
    pub invoices: bool,
    /// Check that every erased payload or metadata is sanctioned by a
    /// privacy event (`erasures.rs`).
    pub erasures: bool,
    /// Compare with the live snapshot at its sequence.
    pub snapshot: bool,
    /// Rebuild the projections.
    pub state: bool,
    /// Stop after this sequence, or after the last record recorded by this time.
    pub until_sequence: Option<u64>,
    pub until_time: Option<Timestamp>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// The first failure: where (a sequence, if one is to blame) and what.
#[derive(Debug)]
pub struct Failure {
    pub sequence: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.sequence {
            Some(sequence) => write!(f, "sequence {sequence}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

fn at(sequence: u64, what: impl Into<String>) -> Failure {
    Failure { sequence: Some(sequence), what: what.into() }
}

impl From<VerifyFailure> for Failure {
    fn from(failure: VerifyFailure) -> Self {
        at(failure.sequence, failure.defect.to_string())
    }
}

/// A checkpoint kept in the log, checked against the tree when met; its
/// signature is checked at the end, once every key rotation is known.
pub struct KeptCheckpoint {
    pub sequence: u64,
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// What the pass found.
#[derive(Default)]
pub struct Walk {
    pub records: u64,
    pub last_recorded_at: Option<Timestamp>,
    pub tree: MerkleTree,
    /// `chains[n]` is the chain hash after sequence n (`chains[0]` genesis).
    pub chains: Vec<Hash>,
    pub state: LedgerState,
    pub kept: Vec<KeptCheckpoint>,
    pub rotations: Vec<(u64, CheckpointKeyRotated)>,
    pub invoices_checked: u64,
    /// Invoices whose usage was retired, checked against their recorded
    /// inputs instead of re-derived.
    pub invoices_on_recorded_inputs: u64,
    /// (sequence, live digest) when a snapshot was compared.
    pub snapshot_compared: Option<(u64, Hash)>,
    /// Records whose payload was erased, each sanctioned (checked when the
    /// plan says so), and of them the ones that kept nothing (retired).
    pub erased: u64,
    pub retired: u64,
    pub verifier: Option<ChainVerifier>,
}

/// Walks the history as `plan` asks, up to its end or the plan's stop.
pub async fn walk(source: &Source, plan: &Plan) -> anyhow::Result<Result<Walk, Failure>> {
    walk_into(source, plan, None).await
}

/// Walks the history as [`walk`] does, and hands every page it checked to
/// `read_models` (a rebuild of the durable read models), which applies
/// what it needs of it. A plan with a stop hands over no page past it.
pub async fn walk_into(
    source: &Source,
    plan: &Plan,
    mut read_models: Option<&mut Scratch>,
) -> anyhow::Result<Result<Walk, Failure>> {
    let head = source.head().await?;
    let snapshot = if plan.snapshot { source.snapshot().await? } else { None };
    let mut pass = Pass::new(plan, snapshot);
    let mut sanctions = crate::erasures::Sanctions::default();
    let bar = progress(plan, head.map(|h| h.sequence));
    let mut pages = source.pages(head.map_or(0, |h| h.sequence));
    while let Some(page) = pages.recv().await {
        let Prepared { records, decoded, leaf_failure } = prepare_page(page?, plan.check_leaves).await;
        let unsanctioned = if plan.erasures { sanctions.judge(source, &records).await? } else { None };
        let leaf_failure = leaf_failure.map(|(index, failure)| (index, failure.into()));
        let checked = match pass.page(&records, decoded, [leaf_failure, unsanctioned]) {
            Ok(flow) => flow,
            Err(failure) => {
                bar.abandon();
                return Ok(Err(failure));
            }
        };
        if checked.is_break() {
            break;
        }
        if let Some(read_models) = read_models.as_deref_mut()
            && let Err(failure) = read_models.apply(records).await?
        {
            bar.abandon();
            return Ok(Err(failure));
        }
        bar.set_position(pass.done.records);
    }
    bar.finish_and_clear();
    if pass.is_whole()
        && let Some(at) = head
        && let Some((last, now)) = source.past_the_head(at.sequence).await?
    {
        let defect = domain::record::Defect::HeadMismatch { last, head: now };
        return Ok(Err(VerifyFailure { sequence: now + 1, defect }.into()));
    }
    Ok(pass.finish(head))
}

/// A page of records, each decoded, and the first whose leaf does not
/// verify (by index).
struct Prepared {
    records: Vec<Record>,
    decoded: Vec<Decoded>,
    leaf_failure: Option<(usize, VerifyFailure)>,
}

/// Leaves and payloads are independent of each other: checked and decoded
/// on all cores, while the chain, the tree and the state, which are
/// sequential, follow in [`Pass::page`].
async fn prepare_page(records: Vec<Record>, check_leaves: bool) -> Prepared {
    tokio::task::spawn_blocking(move || {
        let (leaf_failure, decoded) = prepare(&records, check_leaves);
        Prepared { records, decoded, leaf_failure }
    })
    .await
    .expect("leaf checks and decoding do not panic")
}

/// The walk under way: what it found so far and what it carries from one
/// record to the next.
struct Pass<'a> {
    plan: &'a Plan,
    done: Walk,
    verifier: ChainVerifier,
    invoices: InvoiceCheck,
    snapshot: Option<Snapshot>,
}

impl<'a> Pass<'a> {
    fn new(plan: &'a Plan, snapshot: Option<Snapshot>) -> Self {
        Self {
            plan,
            done: Walk { chains: vec![CHAIN_GENESIS], ..Default::default() },
            verifier: ChainVerifier::from_genesis(),
            invoices: InvoiceCheck::new(Catalog::builtin()),
            snapshot,
        }
    }

    /// Each record of the page in turn; `Break` once past the plan's stop.
    fn page(
        &mut self,
        records: &[Record],
        decoded: Vec<Decoded>,
        failures: [Option<(usize, Failure)>; 2],
    ) -> Result<ControlFlow<()>, Failure> {
        // The first record found wrong (its leaf, then its erasure).
        let mut failures = failures.into_iter().flatten().collect::<Vec<_>>();
        failures.sort_by_key(|(index, _)| *index);
        let mut failures = failures.into_iter().peekable();
        for ((index, record), decoded) in records.iter().enumerate().zip(decoded) {
            if self.past_the_stop(&record.header) {
                return Ok(ControlFlow::Break(()));
            }
            if let Some((_, failure)) = failures.next_if(|(failed, _)| *failed == index) {
                return Err(failure);
            }
            self.record(record, decoded)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    fn past_the_stop(&self, header: &RecordHeader) -> bool {
        self.plan.until_sequence.is_some_and(|until| header.sequence > until)
            || self.plan.until_time.is_some_and(|until| header.recorded_at > until)
    }

    /// One record: its link in the chain, the tree, its event's checks, the
    /// projections, and the snapshot at its sequence.
    fn record(&mut self, record: &Record, decoded: Decoded) -> Result<(), Failure> {
        let header = &record.header;
        self.verifier.link(record)?;
        if self.plan.tree {
            self.done.tree.push_record(&record.leaf_hash);
            self.done.chains.push(record.chain_hash);
        }
        let event = self.event(record, decoded)?;
        self.check_event(header, event.as_ref())?;
        if self.plan.state {
            self.done.state.apply(record, event);
        }
        self.done.records += 1;
        self.done.last_recorded_at = Some(header.recorded_at);
        self.compare_snapshot(header.sequence)
    }

    /// The record's event (from its payload, or the facts its erasure
    /// kept): `None` when retired (nothing kept), or unknown and the plan
    /// allows it.
    fn event(&mut self, record: &Record, decoded: Decoded) -> Result<Option<LedgerEvent>, Failure> {
        let header = &record.header;
        if record.erasure.is_some() {
            self.done.erased += 1;
        }
        match decoded {
            Decoded::Retired => {
                self.done.retired += 1;
                if self.plan.invoices {
                    self.invoices.retired(header);
                }
                Ok(None)
            }
            Decoded::Event(event) => Ok(Some(*event)),
            Decoded::Portal => Ok(None),
            Decoded::Unknown if self.plan.decode_strictly => Err(at(
                header.sequence,
                format!(
                    "the event type {} (schema {}) on stream {} is unknown to this replay",
                    header.event_type, header.schema_version, header.stream_id
                ),
            )),
            Decoded::Unknown => Ok(None),
            Decoded::Undecodable(error) => Err(at(header.sequence, format!("the payload does not decode: {error}"))),
        }
    }

    /// A kept checkpoint against the tree, an invoice against its events.
    fn check_event(&mut self, header: &RecordHeader, event: Option<&LedgerEvent>) -> Result<(), Failure> {
        let Some(event) = event else { return Ok(()) };
        if self.plan.checkpoints
            && header.stream_id.as_str() == CHECKPOINT_STREAM
            && let LedgerEvent::Checkpoint(checkpoint) = event
        {
            kept_checkpoint(&mut self.done, header.sequence, checkpoint)?;
        }
        if self.plan.invoices {
            self.invoices.apply(header, event).map_err(|mismatch| at(header.sequence, mismatch.to_string()))?;
        }
        Ok(())
    }

    /// At the live snapshot's sequence, the rebuilt projections must have
    /// its digest.
    fn compare_snapshot(&mut self, sequence: u64) -> Result<(), Failure> {
        let Some(snapshot) = self.snapshot.as_ref().filter(|s| s.sequence == sequence) else { return Ok(()) };
        let (_, digest) = self.done.state.encode();
        if digest != snapshot.digest {
            return Err(at(
                sequence,
                format!(
                    "the projections rebuilt from the log (digest {digest}) differ from the live snapshot (digest {})",
                    snapshot.digest
                ),
            ));
        }
        self.done.snapshot_compared = Some((sequence, digest));
        Ok(())
    }

    /// After the last record: a whole walk must end at the head the log
    /// claims and have met the live snapshot.
    /// Whether the plan walks the whole history (no stop).
    fn is_whole(&self) -> bool {
        self.plan.until_sequence.is_none() && self.plan.until_time.is_none()
    }

    fn finish(mut self, head: Option<Head>) -> Result<Walk, Failure> {
        self.done.invoices_checked = self.invoices.checked();
        self.done.invoices_on_recorded_inputs = self.invoices.checked_on_recorded_inputs();
        let whole = self.is_whole();
        if whole && let Some(head) = head {
            self.verifier.check_head(head.sequence, &head.chain_hash)?;
        }
        if let Some(snapshot) = &self.snapshot
            && whole
            && self.done.snapshot_compared.is_none()
        {
            let what = format!("the live snapshot is at sequence {}, past the log's end", snapshot.sequence);
            return Err(Failure { sequence: None, what });
        }
        self.done.verifier = Some(self.verifier);
        Ok(self.done)
    }
}

/// A checkpoint kept in the log must cover only earlier records and match
/// the tree and chain at its size, and extend the one kept before it.
fn kept_checkpoint(done: &mut Walk, sequence: u64, event: &CheckpointEvent) -> Result<(), Failure> {
    match event {
        CheckpointEvent::CheckpointKeyRotated(rotation) => {
            done.rotations.push((sequence, rotation.clone()));
            Ok(())
        }
        // A record of lost history: the checkpoints kept before it were
        // rolled back with the log, so there is nothing to check it against.
        CheckpointEvent::LogRollbackAccepted(_) => Ok(()),
        // The keyed-hash secret's rotation signs nothing the walk checks.
        CheckpointEvent::ServerSecretRotated(_) | CheckpointEvent::ServerSecretRetired(_) => Ok(()),
        CheckpointEvent::CheckpointSigned(signed) => {
            let (checkpoint, _, _) = Checkpoint::parse(&signed.note)
                .map_err(|e| at(sequence, format!("the kept checkpoint does not read: {e}")))?;
            let size = checkpoint.size;
            if size >= sequence {
                return Err(at(sequence, format!("a checkpoint kept at sequence {sequence} claims size {size}")));
            }
            check_against_tree(done, &checkpoint).map_err(|what| at(sequence, format!("kept checkpoint: {what}")))?;
            if let Some(previous) = done.kept.last() {
                let from = &previous.checkpoint;
                if from.size > size || from.time > checkpoint.time {
                    return Err(at(
                        sequence,
                        format!(
                            "the kept checkpoint of size {size} goes back from the one at sequence {}",
                            previous.sequence
                        ),
                    ));
                }
                let proof = done.tree.consistency_proof(from.size, size).map_err(|e| at(sequence, e.to_string()))?;
                verify_consistency(&Blake3Hasher, from.size, size, &proof, &from.root, &checkpoint.root).map_err(
                    |e| {
                        at(
                            sequence,
                            format!("not consistent with the checkpoint kept at sequence {}: {e}", previous.sequence),
                        )
                    },
                )?;
            }
            done.kept.push(KeptCheckpoint { sequence, checkpoint, note: signed.note.clone() });
            Ok(())
        }
    }
}

/// Whether the log, as walked so far, has the checkpoint's root and chain
/// hash at its size.
pub fn check_against_tree(done: &Walk, checkpoint: &Checkpoint) -> Result<(), String> {
    let size = checkpoint.size;
    let root = done
        .tree
        .root(size)
        .map_err(|_| format!("the checkpoint is of size {size} but the log holds only {} records", done.tree.size()))?;
    if root != checkpoint.root {
        return Err(format!(
            "the Merkle root of the first {size} records is {root}, the checkpoint says {}",
            checkpoint.root
        ));
    }
    if done.chains[size as usize] != checkpoint.chain {
        return Err(format!("the chain hash after sequence {size} is not the checkpoint's"));
    }
    Ok(())
}

/// A record's payload, decoded.
enum Decoded {
    /// Nothing to decode: the payload was erased and nothing of it kept
    /// (retired usage); whether that was sanctioned is `erasures.rs`'s.
    Retired,
    Event(Box<LedgerEvent>),
    /// One of the portal's records: not a `LedgerEvent`, known all the same.
    Portal,
    Unknown,
    Undecodable(String),
}

fn decode(record: &Record) -> Decoded {
    match record.event_bytes() {
        None => Decoded::Retired,
        Some(payload) => match LedgerEvent::decode(&record.header, payload) {
            Ok(Some(event)) => Decoded::Event(Box::new(event)),
            // The portal's records (sign-ins, sessions, SSO) are known
            // to this replay: their payloads must decode; only the audit
            // reads them (`LedgerState::apply`).
            Ok(None) => match projections::models::audit::portal_event(&record.header, payload) {
                Ok(Some(_)) => Decoded::Portal,
                Ok(None) => Decoded::Unknown,
                Err(error) => Decoded::Undecodable(error.to_string()),
            },
            Err(error) => Decoded::Undecodable(error.to_string()),
        },
    }
}

/// Every record of `page` decoded, and the first whose leaf does not
/// verify (by index, when `check` is set), on all cores.
fn prepare(page: &[Record], check: bool) -> (Option<(usize, VerifyFailure)>, Vec<Decoded>) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = page.len().div_ceil(threads).max(256);
    std::thread::scope(|scope| {
        let workers: Vec<_> = page
            .chunks(chunk)
            .enumerate()
            .map(|(n, records)| {
                scope.spawn(move || {
                    let failure = if check {
                        records.iter().enumerate().find_map(|(i, record)| {
                            record.check_leaf().err().map(|defect| {
                                (n * chunk + i, VerifyFailure { sequence: record.header.sequence, defect })
                            })
                        })
                    } else {
                        None
                    };
                    (failure, records.iter().map(decode).collect::<Vec<_>>())
                })
            })
            .collect();
        let mut first = None;
        let mut decoded = Vec::with_capacity(page.len());
        for worker in workers {
            let (failure, events) = worker.join().expect("leaf checks and decoding do not panic");
            if first.is_none() {
                first = failure;
            }
            decoded.extend(events);
        }
        (first, decoded)
    })
}

fn progress(plan: &Plan, total: Option<u64>) -> indicatif::ProgressBar {
    progress_bar(plan.progress, total)
}

/// A progress bar of records on stderr (hidden unless `show`).
pub fn progress_bar(show: bool, total: Option<u64>) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} records ({per_sec}, {eta})",
        )
        .expect("a valid template"),
    );
    bar
}

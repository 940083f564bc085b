//! `replay verify`'s integrity phase, before any read model is rebuilt:
//! every record's leaf (its salted metadata and payload hashes), the chain,
//! the Merkle tree, every checkpoint kept in the log (its signature by the
//! key in force, root and chain hash at its size, and that it extends the
//! one kept before it), each key rotation, the head, and the checkpoints the
//! auditor kept. Nothing is decoded but the few checkpoint records.
//!
//! Pages are read ahead and their leaves checked on every core, a page per
//! thread, while the one sequential step, linking the chain and pushing the
//! tree, follows in order. Memory does not grow with the history: the tree
//! is a [`Frontier`] (O(log n)) trailing the head by at most [`WINDOW`]
//! records, whose leaf and chain hashes are kept, so a checkpoint kept
//! within [`WINDOW`] records of its size is checked from memory; one kept
//! later is checked by reading the log again up to its size.
//!
//! A checkpoint whose root and chain hash equal the log's at its size also
//! extends every earlier checkpoint that does (both are roots of prefixes
//! of the same tree), so no consistency proof is needed between them.

use std::collections::VecDeque;
use std::path::PathBuf;

use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent};
use domain::event::LedgerEvent;
use domain::merkle::Frontier;
use domain::record::{CHAIN_GENESIS, ChainVerifier, Hash, Record, VerifyFailure};
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;

use crate::source::Source;
use crate::walk::Failure;

/// The records behind the head whose leaf and chain hashes are kept (64
/// bytes each: 4 MiB), so that a checkpoint kept up to this many records
/// after its size is checked without reading the log again.
pub const WINDOW: usize = 1 << 16;

/// What the integrity phase checked.
pub struct Integrity {
    pub records: u64,
    pub chain: Hash,
    pub root: Hash,
    /// Checkpoints kept in the log, each checked.
    pub kept: u64,
    /// The keys in force along the log: the trusted one, then each rotation.
    pub keys: Vec<(u64, VerifyingKey)>,
    pub seconds: f64,
}

/// A checkpoint note the auditor kept (`--checkpoint`): its file and text.
pub type Yours = (PathBuf, String);

/// The Merkle tree's frontier, trailing the head by up to [`WINDOW`]
/// records, whose (leaf, chain) hashes are kept.
struct Tree {
    trailing: Frontier,
    /// The chain hash after `trailing`'s last record.
    trailing_chain: Hash,
    recent: VecDeque<(Hash, Hash)>,
}

impl Tree {
    fn new() -> Self {
        Self { trailing: Frontier::new(), trailing_chain: CHAIN_GENESIS, recent: VecDeque::with_capacity(WINDOW) }
    }

    fn size(&self) -> u64 {
        self.trailing.size() + self.recent.len() as u64
    }

    fn push(&mut self, leaf: &Hash, chain: &Hash) {
        if self.recent.len() == WINDOW
            && let Some((leaf, chain)) = self.recent.pop_front()
        {
            self.trailing.push_record(&leaf);
            self.trailing_chain = chain;
        }
        self.recent.push_back((*leaf, *chain));
    }

    /// The root and chain hash after `size` records, if still in memory.
    fn at(&self, size: u64) -> Option<(Hash, Hash)> {
        let back = size.checked_sub(self.trailing.size())?;
        if back > self.recent.len() as u64 {
            return None;
        }
        let mut frontier = self.trailing.clone();
        let mut chain = self.trailing_chain;
        for (leaf, after) in self.recent.iter().take(back as usize) {
            frontier.push_record(leaf);
            chain = *after;
        }
        Some((frontier.root(), chain))
    }
}

/// The root and chain hash after `size` records (fewer than were checked),
/// read again from the source: a checkpoint kept long after its size.
async fn read_again(source: &Source, size: u64) -> anyhow::Result<(Hash, Hash)> {
    let mut frontier = Frontier::new();
    let mut chain = CHAIN_GENESIS;
    let mut pages = source.pages(size);
    while let Some(page) = pages.recv().await {
        for record in page?.iter().take_while(|r| r.header.sequence <= size) {
            frontier.push_record(&record.leaf_hash);
            chain = record.chain_hash;
        }
        if frontier.size() >= size {
            break;
        }
    }
    Ok((frontier.root(), chain))
}

/// The pass under way.
struct Pass<'a> {
    source: &'a Source,
    verifier: ChainVerifier,
    tree: Tree,
    records: u64,
    /// The last checkpoint kept in the log: (its sequence, the checkpoint).
    last_kept: Option<(u64, Checkpoint)>,
    kept: u64,
    keys: Vec<(u64, VerifyingKey)>,
    /// A checkpoint or rotation was met without a key to check it.
    needs_key: bool,
    /// Your checkpoints' sizes and, once passed, the log's root and chain
    /// hash at each.
    yours: Vec<(u64, Option<(Hash, Hash)>)>,
}

fn at(sequence: u64, what: impl Into<String>) -> Failure {
    Failure { sequence: Some(sequence), what: what.into() }
}

/// Runs the integrity phase over `source`; the first defect is named at
/// its sequence. `trusted` is the first checkpoint key, if known.
pub async fn check(
    source: &Source,
    trusted: Option<VerifyingKey>,
    yours: &[Yours],
) -> anyhow::Result<Result<Integrity, Failure>> {
    let started = std::time::Instant::now();
    let head = source.head().await?;
    let sizes = yours.iter().map(|(_, note)| match Checkpoint::parse(note).map(|(c, _, _)| c.size) {
        Ok(0) => (0, Some((Frontier::new().root(), CHAIN_GENESIS))),
        Ok(size) => (size, None),
        Err(_) => (u64::MAX, None),
    });
    let mut pass = Pass {
        source,
        verifier: ChainVerifier::from_genesis(),
        tree: Tree::new(),
        records: 0,
        last_kept: None,
        kept: 0,
        keys: trusted.map(|key| vec![(0, key)]).unwrap_or_default(),
        needs_key: trusted.is_none() && !yours.is_empty(),
        yours: sizes.collect(),
    };
    if let Err(failure) = pass.all(head.map_or(0, |h| h.sequence)).await? {
        return Ok(Err(failure));
    }
    if let Some(head) = head {
        if let Some((last, now)) = source.past_the_head(head.sequence).await? {
            let defect = domain::record::Defect::HeadMismatch { last, head: now };
            return Ok(Err(VerifyFailure { sequence: now + 1, defect }.into()));
        }
        if let Err(failure) = pass.verifier.check_head(head.sequence, &head.chain_hash) {
            return Ok(Err(failure.into()));
        }
    }
    if pass.needs_key {
        anyhow::bail!("the history has signed checkpoints: give --public-key to check them");
    }
    if let Err(failure) = pass.check_yours(yours) {
        return Ok(Err(failure));
    }
    let (root, chain) = pass.tree.at(pass.tree.size()).expect("the head is in memory");
    let seconds = started.elapsed().as_secs_f64();
    Ok(Ok(Integrity { records: pass.records, chain, root, kept: pass.kept, keys: pass.keys, seconds }))
}

/// The first record of a page whose leaf does not verify, by index.
fn first_bad_leaf(records: &[Record]) -> Option<(usize, VerifyFailure)> {
    records.iter().enumerate().find_map(|(index, record)| {
        record.check_leaf().err().map(|defect| (index, VerifyFailure { sequence: record.header.sequence, defect }))
    })
}

impl Pass<'_> {
    /// Every record up to `head`: leaves checked a page per core, ahead of
    /// the page being linked.
    async fn all(&mut self, head: u64) -> anyhow::Result<Result<(), Failure>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pages = futures::stream::unfold(self.source.pages(head), |mut pages| async move {
            pages.recv().await.map(|page| (page, pages))
        });
        let mut checked = std::pin::pin!(
            pages
                .map(|page| async move {
                    let records = page?;
                    let checked = tokio::task::spawn_blocking(move || (first_bad_leaf(&records), records));
                    anyhow::Ok(checked.await.expect("leaf checks do not panic"))
                })
                .buffered(cores + 1)
        );
        let bar = crate::walk::progress_bar(true, Some(head));
        while let Some(page) = checked.next().await {
            let (bad_leaf, records) = page?;
            if let Err(failure) = self.page(&records, bad_leaf).await? {
                bar.abandon();
                return Ok(Err(failure));
            }
            bar.set_position(self.records);
        }
        bar.finish_and_clear();
        Ok(Ok(()))
    }

    /// One page's records in order: the first whose leaf failed, link,
    /// tree, and the checkpoints among them.
    async fn page(
        &mut self,
        records: &[Record],
        bad_leaf: Option<(usize, VerifyFailure)>,
    ) -> anyhow::Result<Result<(), Failure>> {
        for (index, record) in records.iter().enumerate() {
            if let Some((_, failure)) = bad_leaf.as_ref().filter(|(bad, _)| *bad == index) {
                return Ok(Err(failure.clone().into()));
            }
            if let Err(failure) = self.verifier.link(record) {
                return Ok(Err(failure.into()));
            }
            self.tree.push(&record.leaf_hash, &record.chain_hash);
            self.records += 1;
            let size = self.tree.size();
            if self.yours.iter().any(|(wanted, _)| *wanted == size) {
                let here = self.tree.at(size);
                self.yours.iter_mut().filter(|(wanted, _)| *wanted == size).for_each(|(_, at)| *at = here);
            }
            if record.header.stream_id.as_str() == CHECKPOINT_STREAM
                && let Err(failure) = self.checkpoint_record(record).await?
            {
                return Ok(Err(failure));
            }
        }
        Ok(Ok(()))
    }

    /// A record on the checkpoint stream: decoded, and checked if it is a
    /// checkpoint or a key rotation. An erased or unknown one is left to
    /// the rebuild phase, which decodes every payload.
    async fn checkpoint_record(&mut self, record: &Record) -> anyhow::Result<Result<(), Failure>> {
        let sequence = record.header.sequence;
        let Some(payload) = record.event_bytes() else { return Ok(Ok(())) };
        let event = match LedgerEvent::decode(&record.header, payload) {
            Ok(Some(LedgerEvent::Checkpoint(event))) => event,
            Ok(_) => return Ok(Ok(())),
            Err(error) => return Ok(Err(at(sequence, format!("the payload does not decode: {error}")))),
        };
        match event {
            CheckpointEvent::CheckpointKeyRotated(rotation) => Ok(self.rotation(sequence, &rotation)),
            CheckpointEvent::CheckpointSigned(signed) => self.kept_checkpoint(sequence, &signed.note).await,
            // A record of lost history: the checkpoints kept before it were
            // rolled back with the log, so there is nothing to check it
            // against. The keyed-hash secret's rotation signs nothing here.
            CheckpointEvent::LogRollbackAccepted(_)
            | CheckpointEvent::ServerSecretRotated(_)
            | CheckpointEvent::ServerSecretRetired(_) => Ok(Ok(())),
        }
    }

    /// A key rotation, signed by the key it replaces, which must be the
    /// one in force.
    fn rotation(&mut self, sequence: u64, rotation: &domain::checkpoint::CheckpointKeyRotated) -> Result<(), Failure> {
        let Some(&(_, current)) = self.keys.last() else {
            self.needs_key = true;
            return Ok(());
        };
        let (old, new) = rotation.verify().map_err(|e| at(sequence, e.to_string()))?;
        if old != current {
            return Err(at(sequence, "a key rotation from a key that is not the one in force"));
        }
        self.keys.push((sequence, new));
        Ok(())
    }

    /// A checkpoint kept at `sequence`: of earlier records only, signed by
    /// the key in force, the log's root and chain hash at its size, and
    /// not going back from the one kept before it.
    async fn kept_checkpoint(&mut self, sequence: u64, note: &str) -> anyhow::Result<Result<(), Failure>> {
        let checkpoint = match Checkpoint::parse(note) {
            Ok((checkpoint, _, _)) => checkpoint,
            Err(e) => return Ok(Err(at(sequence, format!("the kept checkpoint does not read: {e}")))),
        };
        let size = checkpoint.size;
        if size >= sequence {
            return Ok(Err(at(sequence, format!("a checkpoint kept at sequence {sequence} claims size {size}"))));
        }
        let here = match self.tree.at(size) {
            Some(here) => here,
            None => read_again(self.source, size).await?,
        };
        if let Err(what) = against(&checkpoint, Some(here), self.tree.size()) {
            return Ok(Err(at(sequence, format!("kept checkpoint: {what}"))));
        }
        if let Some((previous, from)) = &self.last_kept
            && (from.size > size || from.time > checkpoint.time)
        {
            let what = format!("the kept checkpoint of size {size} goes back from the one at sequence {previous}");
            return Ok(Err(at(sequence, what)));
        }
        match self.keys.iter().rev().find(|(from, _)| *from < sequence) {
            Some((_, key)) => {
                if let Err(error) = Checkpoint::verify(note, key) {
                    let what =
                        format!("the kept checkpoint of size {size} is not signed by the checkpoint key: {error}");
                    return Ok(Err(at(sequence, what)));
                }
            }
            None => self.needs_key = true,
        }
        self.last_kept = Some((sequence, checkpoint));
        self.kept += 1;
        Ok(Ok(()))
    }

    /// Each of your checkpoints signed by a key in force along the log and
    /// still held by it.
    fn check_yours(&self, yours: &[Yours]) -> Result<(), Failure> {
        for ((path, note), (_, here)) in yours.iter().zip(&self.yours) {
            let name = path.display();
            let verified = self.keys.iter().rev().find_map(|(_, key)| Checkpoint::verify(note, key).ok());
            let Some(checkpoint) = verified else {
                let what = match Checkpoint::parse(note) {
                    Ok(_) => format!("your checkpoint {name} is not signed by the checkpoint key"),
                    Err(error) => format!("your checkpoint {name} does not read: {error}"),
                };
                return Err(Failure { sequence: None, what });
            };
            if let Err(what) = against(&checkpoint, *here, self.records) {
                return Err(Failure {
                    sequence: Some(checkpoint.size.min(self.records)),
                    what: format!("the log no longer holds your checkpoint {name}: {what}"),
                });
            }
        }
        Ok(())
    }
}

/// Whether the log's root and chain hash at the checkpoint's size (`here`,
/// none when the log holds fewer than `records`) are the checkpoint's.
fn against(checkpoint: &Checkpoint, here: Option<(Hash, Hash)>, records: u64) -> Result<(), String> {
    let size = checkpoint.size;
    let Some((root, chain)) = here.filter(|_| size <= records) else {
        return Err(format!("the checkpoint is of size {size} but the log holds only {records} records"));
    };
    if root != checkpoint.root {
        return Err(format!(
            "the Merkle root of the first {size} records is {root}, the checkpoint says {}",
            checkpoint.root
        ));
    }
    if chain != checkpoint.chain {
        return Err(format!("the chain hash after sequence {size} is not the checkpoint's"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use domain::merkle::MerkleTree;

    use super::{Hash, Tree, WINDOW};

    #[test]
    fn the_tree_answers_every_size_in_its_window_and_none_before() {
        let mut tree = Tree::new();
        let mut all = MerkleTree::new();
        let pushed = WINDOW as u64 + 10;
        for n in 0..pushed {
            let (mut leaf, mut chain) = (Hash([0; 32]), Hash([1; 32]));
            leaf.0[..8].copy_from_slice(&n.to_le_bytes());
            chain.0[..8].copy_from_slice(&n.to_be_bytes());
            tree.push(&leaf, &chain);
            all.push_record(&leaf);
            if n < 3 {
                assert_eq!(tree.at(n + 1), Some((all.root(n + 1).unwrap(), chain)));
            }
        }
        assert_eq!(tree.size(), pushed);
        for size in [10, 11, pushed - 1, pushed] {
            assert_eq!(tree.at(size).map(|(root, _)| root), Some(all.root(size).unwrap()), "size {size}");
        }
        assert_eq!(tree.at(9), None, "older than the window");
        assert_eq!(tree.at(pushed + 1), None, "not yet pushed");
    }
}

//! The log's Merkle tree as stored nodes (domain::merkle has the maths).
//!
//! The projection stores the root of every complete aligned subtree at
//! levels [`MERKLE_STORED_LEVEL_MIN`] and up, `(level, index) -> hash` in
//! [`MERKLE_NODES`]: one row per 2^L records and fewer above, so about
//! 2/2^L rows a record. In memory it keeps only the frontier, the roots of
//! the tree's largest perfect subtrees (O(log n)), rebuilt at start from
//! the stored nodes plus the leaves of the last incomplete block.
//!
//! [`MerkleNodes`] answers roots and proofs for any size up to its
//! checkpoint by the recursions of RFC 9162, taking each perfect aligned
//! subtree of level >= L from the table and the smaller ones from the
//! leaves: at most two blocks of 2^L leaves (the one holding the proved
//! leaf or the older size's border, and the newer size's last incomplete
//! block), read from the log, and O(log n) stored nodes.

use std::collections::{BTreeSet, HashMap};

use domain::event::LedgerEvent;
use domain::merkle::{Blake3Hasher, ProofError, TreeHasher, record_leaf};
use domain::record::{Hash, Record};
use store::EventLog;

use super::runner::{ApplyError, Load, Projection};
use super::table::{Column, Table, Value};
use super::{Changes, DbError, ReadModelDb};

/// The lowest level stored: subtrees of 2^8 = 256 leaves. Lower would
/// store more rows (one per 2^L records, doubling with each level down);
/// higher would make each proof read more leaves from the log (up to two
/// blocks of 2^L).
pub const MERKLE_STORED_LEVEL_MIN: u32 = 8;
/// The projection's name (its checkpoint).
pub const MERKLE_PROJECTION: &str = "merkle-v1";
/// `(level, idx) -> hash`: the root of leaves `[idx·2^level, (idx+1)·2^level)`.
pub const MERKLE_NODES: Table =
    Table::new("merkle_nodes", &[Column::int("level"), Column::int("idx"), Column::blob("hash")], 2);
const TABLES: &[Table] = &[MERKLE_NODES];
const BLOCK_LEAVES: u64 = 1 << MERKLE_STORED_LEVEL_MIN;

/// The projection: appends each record's leaf and stores each completed
/// subtree of level >= L.
#[derive(Debug, Default)]
pub struct MerkleProjection {
    size: u64,
    /// (root, level) of the largest perfect subtrees, leftmost first.
    frontier: Vec<(Hash, u32)>,
}

impl MerkleProjection {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves applied.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves applied so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.frontier.iter().rev();
        let Some(&(mut root, _)) = nodes.next() else { return Blake3Hasher.empty_root() };
        for (left, _) in nodes {
            root = Blake3Hasher.hash_children(left, &root);
        }
        root
    }

    /// Pushes a leaf; returns the completed subtrees of level >= L as
    /// (level, index, hash).
    fn push(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut node = (leaf, 0u32);
        self.size += 1;
        let mut completed = Vec::new();
        while let Some(&(left, level)) = self.frontier.last() {
            if level != node.1 {
                break;
            }
            self.frontier.pop();
            node = (Blake3Hasher.hash_children(&left, &node.0), level + 1);
            if node.1 >= MERKLE_STORED_LEVEL_MIN {
                completed.push((node.1, (self.size >> node.1) - 1, node.0));
            }
        }
        self.frontier.push(node);
        completed
    }
}

fn node_key(level: u32, index: u64) -> Result<Vec<Value>, DbError> {
    Ok(vec![Value::from(level), Value::uint(index)?])
}

impl Projection for MerkleProjection {
    fn name(&self) -> &'static str {
        MERKLE_PROJECTION
    }

    fn tables(&self) -> &'static [Table] {
        TABLES
    }

    fn load(&mut self, load: &Load<'_>) -> Result<(), ApplyError> {
        let size = load.checkpoint.sequence;
        self.size = 0;
        self.frontier.clear();
        // The stored perfect subtrees of the tree of `size`: one per bit of
        // `size` at level >= L, largest first.
        let mut start = 0;
        for level in (MERKLE_STORED_LEVEL_MIN..64).rev() {
            if size & (1 << level) == 0 {
                continue;
            }
            let row = load
                .get(&MERKLE_NODES, &node_key(level, start >> level)?)?
                .ok_or_else(|| format!("the stored node ({level}, {}) is missing", start >> level))?;
            self.frontier.push((row.hash(2)?, level));
            start += 1 << level;
        }
        self.size = start;
        // The last incomplete block's leaves, from the log.
        if start < size {
            let records = load.read_log(start + 1..=size, BLOCK_LEAVES as usize)?;
            if records.len() as u64 != size - start {
                return Err(format!("the log holds {} of records {}..={size}", records.len(), start + 1).into());
            }
            for record in &records {
                self.push(record_leaf(&record.leaf_hash));
            }
        }
        Ok(())
    }

    fn apply(&mut self, changes: &mut Changes<'_>, record: &Record, _: Option<&LedgerEvent>) -> Result<(), ApplyError> {
        if record.header.sequence != self.size + 1 {
            return Err(format!(
                "the tree has {} leaves; record {} is not the next",
                self.size, record.header.sequence
            )
            .into());
        }
        for (level, index, hash) in self.push(record_leaf(&record.leaf_hash)) {
            let mut row = node_key(level, index)?;
            row.push(hash.into());
            changes.upsert(&MERKLE_NODES, row)?;
        }
        Ok(())
    }
}

/// Why a root or proof could not be made from the stored tree.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MerkleError {
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reading the log: {0}")]
    Store(#[from] store::StoreError),
    #[error("the stored tree is incomplete: {0}")]
    Missing(String),
}

/// A subtree's hash, from stored nodes and leaves. The first pass of a
/// computation only notes what it needs (hashes are placeholders); the
/// second has fetched all of it.
trait Source {
    fn node(&mut self, level: u32, index: u64) -> Hash;
    fn leaf(&mut self, index: u64) -> Hash;
}

#[derive(Default)]
struct Needs {
    nodes: BTreeSet<(u32, u64)>,
    leaves: BTreeSet<u64>,
}

impl Source for Needs {
    fn node(&mut self, level: u32, index: u64) -> Hash {
        self.nodes.insert((level, index));
        Hash([0; 32])
    }

    fn leaf(&mut self, index: u64) -> Hash {
        self.leaves.insert(index);
        Hash([0; 32])
    }
}

struct Fetched {
    nodes: HashMap<(u32, u64), Hash>,
    leaves: HashMap<u64, Hash>,
}

impl Source for Fetched {
    fn node(&mut self, level: u32, index: u64) -> Hash {
        self.nodes[&(level, index)]
    }

    fn leaf(&mut self, index: u64) -> Hash {
        self.leaves[&index]
    }
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start : start + n]), n >= 1.
fn subtree(source: &mut impl Source, start: u64, n: u64) -> Hash {
    if n.is_power_of_two() && start.is_multiple_of(n) && n.trailing_zeros() >= MERKLE_STORED_LEVEL_MIN {
        return source.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    if n == 1 {
        return source.leaf(start);
    }
    let k = split(n);
    let left = subtree(source, start, k);
    let right = subtree(source, start + k, n - k);
    Blake3Hasher.hash_children(&left, &right)
}

/// PATH(m, D[start : start + n]) (RFC 9162 2.1.3.1).
fn path(source: &mut impl Source, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
    if n == 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(source, m, start, k, out);
        out.push(subtree(source, start + k, n - k));
    } else {
        path(source, m - k, start + k, n - k, out);
        out.push(subtree(source, start, k));
    }
}

/// SUBPROOF(m, D[start : start + n], b) (RFC 9162 2.1.4.1).
fn subproof(source: &mut impl Source, m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<Hash>) {
    if m == n {
        if !whole {
            out.push(subtree(source, start, n));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(source, m, start, k, whole, out);
        out.push(subtree(source, start + k, n - k));
    } else {
        subproof(source, m - k, start + k, n - k, false, out);
        out.push(subtree(source, start, k));
    }
}

/// Roots and proofs from the stored tree, for sizes up to the merkle
/// projection's checkpoint.
#[derive(Clone)]
pub struct MerkleNodes {
    db: ReadModelDb,
    log: EventLog,
}

impl MerkleNodes {
    pub fn new(db: ReadModelDb, log: EventLog) -> Self {
        Self { db, log }
    }

    /// The number of leaves the stored tree holds (its checkpoint).
    pub async fn size(&self) -> Result<u64, MerkleError> {
        Ok(self.db.applied(&[MERKLE_PROJECTION]).await?)
    }

    async fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        let available = self.size().await?;
        if size > available {
            return Err(ProofError::BeyondTree { size, available }.into());
        }
        Ok(())
    }

    async fn fetch(&self, needs: Needs) -> Result<Fetched, MerkleError> {
        let mut nodes = HashMap::with_capacity(needs.nodes.len());
        if !needs.nodes.is_empty() {
            let wheres: Vec<String> =
                (0..needs.nodes.len()).map(|i| format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2)).collect();
            let sql = format!("SELECT level, idx, hash FROM merkle_nodes WHERE {}", wheres.join(" OR "));
            let mut params = Vec::with_capacity(2 * needs.nodes.len());
            for (level, index) in &needs.nodes {
                params.extend(node_key(*level, *index)?);
            }
            for row in self.db.query(&sql, params).await? {
                let level = u32::try_from(row.uint(0)?).map_err(|_| DbError::Decode("a level beyond 63".into()))?;
                nodes.insert((level, row.uint(1)?), row.hash(2)?);
            }
            if let Some((level, index)) = needs.nodes.iter().find(|node| !nodes.contains_key(node)) {
                return Err(MerkleError::Missing(format!("node ({level}, {index})")));
            }
        }
        let mut leaves = HashMap::with_capacity(needs.leaves.len());
        // Contiguous runs of leaves, each read as one page of the log.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &index in &needs.leaves {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == index => *end = index,
                _ => runs.push((index, index)),
            }
        }
        for (first, last) in runs {
            let records = self.log.read_page(first + 1..=last + 1, (last - first + 1) as usize).await?;
            for record in &records {
                leaves.insert(record.header.sequence - 1, record_leaf(&record.leaf_hash));
            }
            if let Some(missing) = (first..=last).find(|index| !leaves.contains_key(index)) {
                return Err(MerkleError::Missing(format!("leaf {missing} (record {})", missing + 1)));
            }
        }
        Ok(Fetched { nodes, leaves })
    }

    /// The root of the tree of the first `size` records.
    pub async fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size).await?;
        if size == 0 {
            return Ok(Blake3Hasher.empty_root());
        }
        let mut needs = Needs::default();
        subtree(&mut needs, 0, size);
        Ok(subtree(&mut self.fetch(needs).await?, 0, size))
    }

    /// The inclusion proof of leaf `index` (record `index + 1`) in the tree
    /// of `size`, from the leaf up.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size).await?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        let mut needs = Needs::default();
        path(&mut needs, index, 0, size, &mut Vec::new());
        let mut proof = Vec::new();
        path(&mut self.fetch(needs).await?, index, 0, size, &mut proof);
        Ok(proof)
    }

    /// The consistency proof from the tree of `from` to the tree of `to`.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(to).await?;
        if from > to {
            return Err(ProofError::SizesReversed { from, to }.into());
        }
        if from == 0 || from == to {
            return Ok(Vec::new());
        }
        let mut needs = Needs::default();
        subproof(&mut needs, from, 0, to, true, &mut Vec::new());
        let mut proof = Vec::new();
        subproof(&mut self.fetch(needs).await?, from, 0, to, true, &mut proof);
        Ok(proof)
    }
}

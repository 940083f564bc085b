//! The Merkle tree over the log: RFC 6962/9162's shape with BLAKE3.
//!
//! The tree's leaves are the records in global order: leaf `i` (from 0) is
//! the record of sequence `i + 1`, and a tree of size `n` is the log up to
//! sequence `n`. Hashes, BLAKE3 in `derive_key` mode like the record hashes:
//!
//! ```text
//! merkle leaf  = H_mleaf(record leaf hash)                (32 bytes in)
//! merkle node  = H_mnode(left ‖ right)                    (64 bytes in)
//! empty root   = H_mempty("")                             (the tree of size 0)
//! MTH(D[n])    = the merkle leaf of D[0]                  for n = 1
//!              = H_mnode(MTH(D[0:k]) ‖ MTH(D[k:n]))       for n > 1, k the largest power of two < n
//! ```
//!
//! The three contexts differ, so a leaf can never pass for a node (the
//! domain separation RFC 6962 gets from its `0x00`/`0x01` prefixes).
//! Proofs are RFC 9162's: an inclusion proof is the audit path from a leaf
//! to the root (2.1.3), a consistency proof shows a tree is a prefix of a
//! larger one (2.1.4). The verifiers refuse proofs that are too short, too
//! long, or that do not end at the root, and never panic on any input.
//!
//! [`TreeHasher`] makes the shapes independent of the hash, so the tests
//! check them against RFC 6962's own SHA-256 test vectors.

use std::sync::LazyLock;

use crate::record::Hash;

/// BLAKE3 context of a Merkle leaf (input: the record's 32-byte leaf hash).
pub const CONTEXT_MERKLE_LEAF: &str = "ledger 2026-11-29 merkle leaf v1";
/// BLAKE3 context of a Merkle node (input: left ‖ right, 64 bytes).
pub const CONTEXT_MERKLE_NODE: &str = "ledger 2026-11-29 merkle node v1";
/// BLAKE3 context of the empty tree's root (input: nothing).
pub const CONTEXT_MERKLE_EMPTY: &str = "ledger 2026-11-29 merkle empty v1";

/// The hash functions of a tree.
pub trait TreeHasher {
    /// The root of the tree of size 0.
    fn empty_root(&self) -> Hash;
    /// A leaf's hash from its data.
    fn hash_leaf(&self, data: &[u8]) -> Hash;
    /// An inner node's hash from its children's.
    fn hash_children(&self, left: &Hash, right: &Hash) -> Hash;
}

/// The ledger's tree hash: BLAKE3 with the three contexts above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blake3Hasher;

fn context_hasher(key: &blake3::hazmat::ContextKey) -> blake3::Hasher {
    use blake3::hazmat::HasherExt;
    blake3::Hasher::new_from_context_key(key)
}

static LEAF_KEY: LazyLock<blake3::hazmat::ContextKey> =
    LazyLock::new(|| blake3::hazmat::hash_derive_key_context(CONTEXT_MERKLE_LEAF));
static NODE_KEY: LazyLock<blake3::hazmat::ContextKey> =
    LazyLock::new(|| blake3::hazmat::hash_derive_key_context(CONTEXT_MERKLE_NODE));
static EMPTY_ROOT: LazyLock<Hash> =
    LazyLock::new(|| Hash(*blake3::Hasher::new_derive_key(CONTEXT_MERKLE_EMPTY).finalize().as_bytes()));

impl TreeHasher for Blake3Hasher {
    fn empty_root(&self) -> Hash {
        *EMPTY_ROOT
    }

    fn hash_leaf(&self, data: &[u8]) -> Hash {
        Hash(*context_hasher(&LEAF_KEY).update(data).finalize().as_bytes())
    }

    fn hash_children(&self, left: &Hash, right: &Hash) -> Hash {
        Hash(*context_hasher(&NODE_KEY).update(&left.0).update(&right.0).finalize().as_bytes())
    }
}

/// The Merkle leaf of a record, from its record leaf hash.
pub fn record_leaf(record_leaf_hash: &Hash) -> Hash {
    Blake3Hasher.hash_leaf(&record_leaf_hash.0)
}

/// Why a proof was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of size {from} cannot be a prefix of one of size {to}")]
    SizesReversed { from: u64, to: u64 },
    #[error("the tree has {available} leaves; size {size} was asked for")]
    BeyondTree { size: u64, available: u64 },
    #[error("the proof has {found} hashes; this index and size need {expected}")]
    WrongLength { expected: usize, found: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the proof does not lead to the earlier tree's root")]
    FirstRootMismatch,
}

/// Hashes of the aligned perfect subtrees, level by level: what answers a
/// proof for any size up to the current one in O(log² n) lookups. Level 0
/// holds the leaves' hashes; entry `i` of level `k` is the root of leaves
/// `[i·2^k, (i+1)·2^k)`, kept once complete. Twice the leaves' memory
/// (64 bytes a record: 64 MB for a million).
#[derive(Debug, Clone)]
pub struct MerkleTree<H: TreeHasher = Blake3Hasher> {
    hasher: H,
    levels: Vec<Vec<Hash>>,
}

impl<H: TreeHasher + Default> Default for MerkleTree<H> {
    fn default() -> Self {
        Self::with_hasher(H::default())
    }
}

impl MerkleTree<Blake3Hasher> {
    /// An empty tree with the ledger's hash.
    pub fn new() -> Self {
        Self::with_hasher(Blake3Hasher)
    }

    /// Appends a record by its record leaf hash.
    pub fn push_record(&mut self, record_leaf_hash: &Hash) {
        self.push_leaf_hash(record_leaf(record_leaf_hash));
    }
}

impl<H: TreeHasher> MerkleTree<H> {
    pub fn with_hasher(hasher: H) -> Self {
        Self { hasher, levels: vec![Vec::new()] }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Leaf `index`'s hash (the Merkle leaf hash, not the data).
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.levels[0].get(usize::try_from(index).ok()?).copied()
    }

    /// Appends a leaf by its (already hashed) leaf hash.
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut level = 0;
        // A completed right child completes its parent.
        while self.levels[level].len().is_multiple_of(2) {
            let nodes = &self.levels[level];
            let parent = self.hasher.hash_children(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(if size == 0 { self.hasher.empty_root() } else { self.subtree(0, size) })
    }

    /// The inclusion proof of leaf `index` in the tree of size `size`
    /// (RFC 9162 2.1.3.1), ordered from the leaf up.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    /// The consistency proof from the tree of size `from` to the tree of
    /// size `to` (RFC 9162 2.1.4.1): empty when `from` is 0 or `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(to)?;
        if from > to {
            return Err(ProofError::SizesReversed { from, to });
        }
        let mut proof = Vec::new();
        if from > 0 && from < to {
            self.subproof(from, 0, to, true, &mut proof);
        }
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            return Err(ProofError::BeyondTree { size, available: self.size() });
        }
        Ok(())
    }

    /// MTH(D[start : start + n]), n ≥ 1, from the cached perfect subtrees.
    fn subtree(&self, start: u64, n: u64) -> Hash {
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            if let Some(hash) = self.levels.get(level).and_then(|nodes| nodes.get((start >> level) as usize)) {
                return *hash;
            }
        }
        let k = split(n);
        self.hasher.hash_children(&self.subtree(start, k), &self.subtree(start + k, n - k))
    }

    /// PATH(m, D[start : start + n]).
    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n == 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.subtree(start, k));
        }
    }

    /// SUBPROOF(m, D[start : start + n], b).
    fn subproof(&self, m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.subtree(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, whole, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.subtree(start, k));
        }
    }
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of a growing tree in O(log n) memory: the roots of its
/// largest perfect subtrees, left to right. What a verifier streaming the
/// log needs to compare a checkpoint's root at its size.
#[derive(Debug, Clone, Default)]
pub struct Frontier<H: TreeHasher = Blake3Hasher> {
    hasher: H,
    size: u64,
    /// (root, height) of each perfect subtree, largest (leftmost) first.
    nodes: Vec<(Hash, u32)>,
}

impl Frontier<Blake3Hasher> {
    pub fn new() -> Self {
        Self::with_hasher(Blake3Hasher)
    }

    /// Appends a record by its record leaf hash.
    pub fn push_record(&mut self, record_leaf_hash: &Hash) {
        self.push_leaf_hash(record_leaf(record_leaf_hash));
    }
}

impl<H: TreeHasher> Frontier<H> {
    pub fn with_hasher(hasher: H) -> Self {
        Self { hasher, size: 0, nodes: Vec::new() }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let mut node = (leaf, 0);
        while let Some(&(left, height)) = self.nodes.last() {
            if height != node.1 {
                break;
            }
            self.nodes.pop();
            node = (self.hasher.hash_children(&left, &node.0), height + 1);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root of the tree of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(&(mut root, _)) = nodes.next() else { return self.hasher.empty_root() };
        for (left, _) in nodes {
            root = self.hasher.hash_children(left, &root);
        }
        root
    }
}

/// How an inclusion proof of `index` in a tree of `size` splits: the
/// hashes below the point where the leaf's path meets the right border of
/// the tree, and those along the border.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    (inner, border)
}

fn chain_inner<H: TreeHasher>(hasher: &H, mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, hash) in proof.iter().enumerate() {
        seed =
            if (index >> i) & 1 == 0 { hasher.hash_children(&seed, hash) } else { hasher.hash_children(hash, &seed) };
    }
    seed
}

fn chain_inner_right<H: TreeHasher>(hasher: &H, mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, hash) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = hasher.hash_children(hash, &seed);
        }
    }
    seed
}

fn chain_border_right<H: TreeHasher>(hasher: &H, mut seed: Hash, proof: &[Hash]) -> Hash {
    for hash in proof {
        seed = hasher.hash_children(hash, &seed);
    }
    seed
}

/// The root an inclusion proof leads to from `leaf` at `index` in a tree of
/// `size`, after checking the proof has exactly the length it must.
pub fn root_from_inclusion<H: TreeHasher>(
    hasher: &H,
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decompose(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength { expected: inner + border, found: proof.len() });
    }
    let root = chain_inner(hasher, *leaf, &proof[..inner], index);
    Ok(chain_border_right(hasher, root, &proof[inner..]))
}

/// Checks that `leaf` (a Merkle leaf hash) is leaf `index` of the tree of
/// `size` whose root is `root`.
pub fn verify_inclusion<H: TreeHasher>(
    hasher: &H,
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(hasher, index, size, leaf, proof)? != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of size `from` with root `from_root` is a prefix of
/// the tree of size `to` with root `to_root`. A tree of size 0 is a prefix
/// of every tree (its root must be the empty root); equal sizes need equal
/// roots and an empty proof.
pub fn verify_consistency<H: TreeHasher>(
    hasher: &H,
    from: u64,
    to: u64,
    proof: &[Hash],
    from_root: &Hash,
    to_root: &Hash,
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    if from == to || from == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { expected: 0, found: proof.len() });
        }
        if from == 0 && *from_root != hasher.empty_root() {
            return Err(ProofError::FirstRootMismatch);
        }
        if from == to && from_root != to_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { expected: 1, found: 0 });
    }
    let (inner, border) = decompose(from - 1, to);
    let shift = from.trailing_zeros() as usize;
    let inner = inner - shift;
    // When `from` is a power of two, its tree is a perfect subtree of the
    // larger one, and its root is the proof's implicit first hash.
    let (seed, rest) = if from == 1 << shift { (*from_root, proof) } else { (proof[0], &proof[1..]) };
    let expected = proof.len() - rest.len() + inner + border;
    if proof.len() != expected {
        return Err(ProofError::WrongLength { expected, found: proof.len() });
    }
    let mask = (from - 1) >> shift;
    let first = chain_inner_right(hasher, seed, &rest[..inner], mask);
    if chain_border_right(hasher, first, &rest[inner..]) != *from_root {
        return Err(ProofError::FirstRootMismatch);
    }
    let second = chain_inner(hasher, seed, &rest[..inner], mask);
    if chain_border_right(hasher, second, &rest[inner..]) != *to_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962's recursive definitions, straight from the text, over a
    /// slice of leaf hashes: what the cached tree must agree with.
    fn reference_root<H: TreeHasher>(hasher: &H, leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => hasher.empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                hasher.hash_children(&reference_root(hasher, &leaves[..k]), &reference_root(hasher, &leaves[k..]))
            }
        }
    }

    fn reference_path<H: TreeHasher>(hasher: &H, m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let k = split(leaves.len() as u64) as usize;
        if m < k {
            let mut path = reference_path(hasher, m, &leaves[..k]);
            path.push(reference_root(hasher, &leaves[k..]));
            path
        } else {
            let mut path = reference_path(hasher, m - k, &leaves[k..]);
            path.push(reference_root(hasher, &leaves[..k]));
            path
        }
    }

    fn reference_subproof<H: TreeHasher>(hasher: &H, m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![reference_root(hasher, leaves)] };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut proof = reference_subproof(hasher, m, &leaves[..k], whole);
            proof.push(reference_root(hasher, &leaves[k..]));
            proof
        } else {
            let mut proof = reference_subproof(hasher, m - k, &leaves[k..], false);
            proof.push(reference_root(hasher, &leaves[..k]));
            proof
        }
    }

    fn blake_leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| Blake3Hasher.hash_leaf(&(i as u64).to_le_bytes())).collect()
    }

    fn tree_of<H: TreeHasher + Clone>(hasher: &H, leaves: &[Hash]) -> MerkleTree<H> {
        let mut tree = MerkleTree::with_hasher(hasher.clone());
        for leaf in leaves {
            tree.push_leaf_hash(*leaf);
        }
        tree
    }

    #[test]
    fn the_cached_tree_and_the_frontier_agree_with_the_definition() {
        let leaves = blake_leaves(70);
        let tree = tree_of(&Blake3Hasher, &leaves);
        assert_eq!(MerkleTree::<Blake3Hasher>::default().root(0).unwrap(), Blake3Hasher.empty_root());
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), Blake3Hasher.empty_root());
        for size in 0..=leaves.len() {
            let expected = reference_root(&Blake3Hasher, &leaves[..size]);
            assert_eq!(tree.root(size as u64).unwrap(), expected, "root of size {size}");
            if size > 0 {
                frontier.push_leaf_hash(leaves[size - 1]);
            }
            assert_eq!(frontier.root(), expected, "frontier at size {size}");
            for index in 0..size {
                let proof = tree.inclusion_proof(index as u64, size as u64).unwrap();
                assert_eq!(proof, reference_path(&Blake3Hasher, index, &leaves[..size]));
                verify_inclusion(&Blake3Hasher, index as u64, size as u64, &leaves[index], &proof, &expected).unwrap();
            }
            for from in 0..=size {
                let proof = tree.consistency_proof(from as u64, size as u64).unwrap();
                if from > 0 && from < size {
                    assert_eq!(proof, reference_subproof(&Blake3Hasher, from, &leaves[..size], true));
                } else {
                    assert!(proof.is_empty());
                }
                let from_root = reference_root(&Blake3Hasher, &leaves[..from]);
                verify_consistency(&Blake3Hasher, from as u64, size as u64, &proof, &from_root, &expected).unwrap();
            }
        }
        assert!(matches!(tree.root(71), Err(ProofError::BeyondTree { .. })));
        assert!(matches!(tree.inclusion_proof(5, 5), Err(ProofError::IndexOutOfRange { .. })));
        assert!(matches!(tree.consistency_proof(6, 5), Err(ProofError::SizesReversed { .. })));
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        let a = Hash([1; 32]);
        let b = Hash([2; 32]);
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&a.0);
        both[32..].copy_from_slice(&b.0);
        assert_ne!(Blake3Hasher.hash_leaf(&both), Blake3Hasher.hash_children(&a, &b));
        assert_ne!(Blake3Hasher.hash_leaf(&[]), Blake3Hasher.empty_root());
        // The exact bytes of ARCHITECTURE.md: derive_key(context, input).
        let expected = blake3::Hasher::new_derive_key(CONTEXT_MERKLE_NODE).update(&both).finalize();
        assert_eq!(Blake3Hasher.hash_children(&a, &b).0, *expected.as_bytes());
        let expected = blake3::Hasher::new_derive_key(CONTEXT_MERKLE_LEAF).update(&a.0).finalize();
        assert_eq!(record_leaf(&a).0, *expected.as_bytes());
    }

    /// A small deterministic generator (SplitMix64), so a failing case can
    /// be replayed from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn hash(&mut self) -> Hash {
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&self.next().to_le_bytes());
            }
            Hash(bytes)
        }
    }

    /// Every way of changing a valid proof that the verifier must refuse.
    fn mutations(rng: &mut Rng, proof: &[Hash]) -> Vec<(String, Vec<Hash>)> {
        let mut out = vec![
            ("appended hash".to_owned(), [proof, &[rng.hash()]].concat()),
            ("prepended hash".to_owned(), [&[rng.hash()], proof].concat()),
        ];
        if !proof.is_empty() {
            out.push(("last hash removed".into(), proof[..proof.len() - 1].to_vec()));
            out.push(("first hash removed".into(), proof[1..].to_vec()));
            out.push(("duplicated hash".into(), [proof, &proof[proof.len() - 1..]].concat()));
            let at = rng.below(proof.len() as u64) as usize;
            let mut flipped = proof.to_vec();
            flipped[at].0[rng.below(32) as usize] ^= 1 << rng.below(8);
            out.push((format!("bit flipped in hash {at}"), flipped));
        }
        if proof.len() > 1 {
            let mut swapped = proof.to_vec();
            let (a, b) = (rng.below(proof.len() as u64) as usize, rng.below(proof.len() as u64) as usize);
            swapped.swap(a, b);
            if swapped != proof {
                out.push((format!("hashes {a} and {b} swapped"), swapped));
            }
        }
        out
    }

    #[test]
    fn fuzzed_proofs_hold_and_every_mutation_is_refused() {
        let mut rng = Rng(0x1ed9_e2026);
        let leaves = blake_leaves(300);
        let tree = tree_of(&Blake3Hasher, &leaves);
        for case in 0..2_000 {
            let size = 1 + rng.below(leaves.len() as u64);
            let root = tree.root(size).unwrap();
            let index = rng.below(size);
            let proof = tree.inclusion_proof(index, size).unwrap();
            let leaf = leaves[index as usize];
            verify_inclusion(&Blake3Hasher, index, size, &leaf, &proof, &root).unwrap();
            for (what, bad) in mutations(&mut rng, &proof) {
                assert!(
                    verify_inclusion(&Blake3Hasher, index, size, &leaf, &bad, &root).is_err(),
                    "case {case}: inclusion of {index} in {size} accepted with {what}"
                );
            }
            let other = rng.below(size + 2);
            if other != index {
                assert!(
                    verify_inclusion(&Blake3Hasher, other, size, &leaf, &proof, &root).is_err(),
                    "case {case}: the proof of {index} passed for index {other}"
                );
            }
            assert!(verify_inclusion(&Blake3Hasher, index, size, &rng.hash(), &proof, &root).is_err());
            assert!(verify_inclusion(&Blake3Hasher, index, size, &leaf, &proof, &rng.hash()).is_err());

            let from = 1 + rng.below(size);
            let from_root = tree.root(from).unwrap();
            let proof = tree.consistency_proof(from, size).unwrap();
            verify_consistency(&Blake3Hasher, from, size, &proof, &from_root, &root).unwrap();
            if from == size {
                continue;
            }
            for (what, bad) in mutations(&mut rng, &proof) {
                assert!(
                    verify_consistency(&Blake3Hasher, from, size, &bad, &from_root, &root).is_err(),
                    "case {case}: consistency {from}→{size} accepted with {what}"
                );
            }
            assert!(verify_consistency(&Blake3Hasher, from, size, &proof, &root, &from_root).is_err());
            assert!(verify_consistency(&Blake3Hasher, from, size, &proof, &rng.hash(), &root).is_err());
            assert!(verify_consistency(&Blake3Hasher, from, size, &proof, &from_root, &rng.hash()).is_err());
            // A tree that is not an extension: one leaf of the prefix changed.
            let mut forked = leaves[..size as usize].to_vec();
            forked[rng.below(from) as usize] = rng.hash();
            let forked_root = reference_root(&Blake3Hasher, &forked);
            assert!(verify_consistency(&Blake3Hasher, from, size, &proof, &from_root, &forked_root).is_err());
        }
    }

    /// One proof check: (index or first size, tree size, leaf or first
    /// root, proof, root) → accepted or not.
    type Check<'a> = &'a dyn Fn(u64, u64, &Hash, &[Hash], &Hash) -> bool;

    fn inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
        verify_inclusion(&Blake3Hasher, index, size, leaf, proof, root).is_ok()
    }

    fn consistency(from: u64, to: u64, from_root: &Hash, proof: &[Hash], to_root: &Hash) -> bool {
        verify_consistency(&Blake3Hasher, from, to, proof, from_root, to_root).is_ok()
    }

    /// Flips 1 to 3 random bits of the proof's hashes, the leaf (or first
    /// root) or the root of a valid proof. Not its index or sizes: they
    /// are not hashed into the proof, and the same hashes prove leaf 0 of
    /// 6 and of 7 (as in RFC 9162's own algorithm); the size is committed
    /// by the signed checkpoint that names the root.
    fn mutate(rng: &mut Rng, case: &mut (u64, u64, Hash, Vec<Hash>, Hash)) -> String {
        let mut what = Vec::new();
        for _ in 0..=rng.below(3) {
            let bit = 1u8 << rng.below(8);
            let byte = rng.below(32) as usize;
            match rng.below(if case.3.is_empty() { 2 } else { 3 }) {
                0 => {
                    case.2.0[byte] ^= bit;
                    what.push("leaf".to_owned());
                }
                1 => {
                    case.4.0[byte] ^= bit;
                    what.push("root".to_owned());
                }
                _ => {
                    let at = rng.below(case.3.len() as u64) as usize;
                    case.3[at].0[byte] ^= bit;
                    what.push(format!("proof[{at}]"));
                }
            }
        }
        what.join(", ")
    }

    /// Runs `cases` valid proofs of `kind` through `check`, each once as
    /// made (it must verify) and once mutated ([`mutate`]; it must not,
    /// unless the mutations cancelled out). The first failure, if any.
    fn no_mutation_verifies(check: Check<'_>, kind: &str, seed: u64, cases: usize) -> Result<(), String> {
        let mut rng = Rng(seed);
        let leaves = blake_leaves(200);
        let tree = tree_of(&Blake3Hasher, &leaves);
        for case in 0..cases {
            let size = 1 + rng.below(leaves.len() as u64);
            let valid = if kind == "inclusion" {
                let index = rng.below(size);
                let proof = tree.inclusion_proof(index, size).unwrap();
                (index, size, leaves[index as usize], proof, tree.root(size).unwrap())
            } else {
                let from = 1 + rng.below(size);
                let proof = tree.consistency_proof(from, size).unwrap();
                (from, size, tree.root(from).unwrap(), proof, tree.root(size).unwrap())
            };
            if !check(valid.0, valid.1, &valid.2, &valid.3, &valid.4) {
                return Err(format!("seed {seed:#x} case {case}: a valid {kind} proof was refused"));
            }
            let mut bad = valid.clone();
            let what = mutate(&mut rng, &mut bad);
            if bad != valid && check(bad.0, bad.1, &bad.2, &bad.3, &bad.4) {
                return Err(format!("seed {seed:#x} case {case}: a {kind} proof verified with {what} mutated"));
            }
        }
        Ok(())
    }

    #[test]
    fn arbitrary_input_never_panics_the_verifiers_and_never_verifies() {
        let mut rng = Rng(7);
        for case in 0..20_000 {
            let size = match rng.below(4) {
                0 => rng.below(4),
                1 => rng.next(),
                2 => u64::MAX - rng.below(3),
                _ => rng.below(1 << 20),
            };
            let index = if rng.below(2) == 0 { rng.below(size.saturating_add(2)) } else { rng.next() };
            let proof: Vec<Hash> = (0..rng.below(70)).map(|_| rng.hash()).collect();
            let (a, b) = (rng.hash(), rng.hash());
            // Random roots: accepting any of these would be a hash collision.
            assert!(!inclusion(index, size, &a, &proof, &b), "case {case}: random inclusion proof verified");
            // Except the trivial consistency of the empty tree, whose root
            // is fixed: random roots never are the empty root.
            assert!(!consistency(index, size, &a, &proof, &b), "case {case}: random consistency proof verified");
        }
    }

    #[test]
    fn no_mutated_proof_verifies() {
        no_mutation_verifies(&inclusion, "inclusion", 0x5eed_0001, 3_000).unwrap();
        no_mutation_verifies(&consistency, "consistency", 0x5eed_0002, 3_000).unwrap();
    }

    /// The check above can fail: a verifier that forgets to compare the
    /// root it computed, or one that checks a consistency proof against
    /// the first root only, is caught.
    #[test]
    fn the_mutation_check_catches_a_careless_verifier() {
        let no_root_comparison = |index: u64, size: u64, leaf: &Hash, proof: &[Hash], _root: &Hash| {
            root_from_inclusion(&Blake3Hasher, index, size, leaf, proof).is_ok()
        };
        let error = no_mutation_verifies(&no_root_comparison, "inclusion", 0x5eed_0001, 3_000).unwrap_err();
        assert!(error.contains("verified with"), "{error}");
        let first_root_only =
            |from: u64, to: u64, from_root: &Hash, proof: &[Hash], to_root: &Hash| match verify_consistency(
                &Blake3Hasher,
                from,
                to,
                proof,
                from_root,
                to_root,
            ) {
                Ok(()) | Err(ProofError::RootMismatch) => true,
                Err(_) => false,
            };
        let error = no_mutation_verifies(&first_root_only, "consistency", 0x5eed_0002, 3_000).unwrap_err();
        assert!(error.contains("verified with"), "{error}");
    }

    /// RFC 6962's hash (SHA-256 with 0x00/0x01 prefixes), to check the
    /// shapes against the published test vectors.
    #[derive(Clone)]
    struct Sha256Hasher;

    impl TreeHasher for Sha256Hasher {
        fn empty_root(&self) -> Hash {
            use sha2::Digest;
            Hash(sha2::Sha256::digest(b"").into())
        }

        fn hash_leaf(&self, data: &[u8]) -> Hash {
            use sha2::Digest;
            Hash(sha2::Sha256::new().chain_update([0u8]).chain_update(data).finalize().into())
        }

        fn hash_children(&self, left: &Hash, right: &Hash) -> Hash {
            use sha2::Digest;
            Hash(sha2::Sha256::new().chain_update([1u8]).chain_update(left.0).chain_update(right.0).finalize().into())
        }
    }

    fn h(text: &str) -> Hash {
        Hash::from_slice(&hex::decode(text).unwrap()).unwrap()
    }

    /// The leaves, roots and proofs of RFC 6962's reference test data, as
    /// published with certificate-transparency and transparency-dev/merkle
    /// (proof/verify_test.go).
    const RFC6962_LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const RFC6962_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// (leaf index from 0, tree size, proof).
    fn rfc6962_inclusion() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (0, 1, vec![]),
            (
                0,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                5,
                8,
                vec![
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (2, 3, vec![h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
            (
                1,
                5,
                vec![
                    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
        ]
    }

    /// (size 1, size 2, proof).
    fn rfc6962_consistency() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (
                6,
                7,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
        ]
    }

    #[test]
    fn rfc6962_reference_vectors_with_sha256() {
        let leaves: Vec<Hash> =
            RFC6962_LEAVES.iter().map(|l| Sha256Hasher.hash_leaf(&hex::decode(l).unwrap())).collect();
        let tree = tree_of(&Sha256Hasher, &leaves);
        assert_eq!(
            tree.root(0).unwrap(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "the empty tree"
        );
        let mut frontier = Frontier::with_hasher(Sha256Hasher);
        for (size, root) in (1..).zip(RFC6962_ROOTS) {
            assert_eq!(tree.root(size).unwrap(), h(root), "root of size {size}");
            frontier.push_leaf_hash(leaves[size as usize - 1]);
            assert_eq!(frontier.root(), h(root), "frontier root of size {size}");
        }
        for (index, size, proof) in rfc6962_inclusion() {
            assert_eq!(tree.inclusion_proof(index, size).unwrap(), proof, "inclusion of {index} in {size}");
            let root = h(RFC6962_ROOTS[size as usize - 1]);
            verify_inclusion(&Sha256Hasher, index, size, &leaves[index as usize], &proof, &root).unwrap();
            let mut rng = Rng(index * 31 + size);
            for (what, bad) in mutations(&mut rng, &proof) {
                assert!(
                    verify_inclusion(&Sha256Hasher, index, size, &leaves[index as usize], &bad, &root).is_err(),
                    "{what}"
                );
            }
        }
        for (from, to, proof) in rfc6962_consistency() {
            assert_eq!(tree.consistency_proof(from, to).unwrap(), proof, "consistency {from}→{to}");
            let (r1, r2) = (h(RFC6962_ROOTS[from as usize - 1]), h(RFC6962_ROOTS[to as usize - 1]));
            verify_consistency(&Sha256Hasher, from, to, &proof, &r1, &r2).unwrap();
            if from != to {
                assert!(verify_consistency(&Sha256Hasher, from, to, &[], &r1, &r2).is_err(), "empty proof");
                assert!(verify_consistency(&Sha256Hasher, from, to, &proof, &r2, &r1).is_err(), "swapped roots");
                let mut rng = Rng(from * 31 + to);
                for (what, bad) in mutations(&mut rng, &proof) {
                    assert!(verify_consistency(&Sha256Hasher, from, to, &bad, &r1, &r2).is_err(), "{what}");
                }
            }
        }
        // transparency-dev's edge cases: sizes that are always consistent,
        // time travel, and non-empty proofs where none is due.
        let empty = Sha256Hasher.empty_root();
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        verify_consistency(&Sha256Hasher, 0, 0, &[], &empty, &empty).unwrap();
        verify_consistency(&Sha256Hasher, 0, 1, &[], &empty, &some).unwrap();
        verify_consistency(&Sha256Hasher, 1, 1, &[], &some, &some).unwrap();
        assert!(verify_consistency(&Sha256Hasher, 1, 1, &[], &some, &empty).is_err());
        assert!(verify_consistency(&Sha256Hasher, 1, 0, &[], &some, &empty).is_err());
        assert!(verify_consistency(&Sha256Hasher, 2, 1, &[], &some, &empty).is_err());
        assert!(verify_consistency(&Sha256Hasher, 1, 2, &[], &some, &empty).is_err());
        assert!(verify_consistency(&Sha256Hasher, 0, 0, &[empty], &empty, &empty).is_err());
        assert!(verify_consistency(&Sha256Hasher, 0, 1, &[empty], &empty, &empty).is_err());
        assert!(verify_consistency(&Sha256Hasher, 1, 1, &[empty], &empty, &empty).is_err());
        for (index, size) in [(0, 0), (1, 0), (2, 1)] {
            assert!(verify_inclusion(&Sha256Hasher, index, size, &some, &[], &empty).is_err());
        }
    }
}

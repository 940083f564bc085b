//! The record format of the log and its hashes.
//!
//! Every event is one record. Its hashes, all BLAKE3 in `derive_key` mode
//! with the context strings below, are:
//!
//! ```text
//! metadata_hash = H_metadata(metadata bytes)
//! payload_hash  = H_payload(payload bytes)
//! leaf_n        = H_leaf(canonical header bytes ‖ metadata_hash ‖ payload_hash)
//! chain_n       = H_chain(chain_{n-1} ‖ leaf_n),   chain_0 = 32 zero bytes
//! ```
//!
//! Because the leaf commits to the *hashes* of metadata and payload, either
//! can be shredded (personal data, retention) while the chain still
//! verifies. The canonical header encoding is specified field by field in
//! ARCHITECTURE.md and pinned by `domain/tests/vectors/records-v1.json`.
//!
//! Version 2 (issue 16) salts the two content hashes with 32 random bytes
//! per record, kept in the erasable part beside metadata and payload:
//!
//! ```text
//! metadata_hash = H_metadata_v2(salt ‖ metadata bytes)
//! payload_hash  = H_payload_v2(salt ‖ payload bytes)
//! ```
//!
//! The canonical header's first byte is the format (`0x02`); leaf and chain
//! are computed as in version 1. Erasing salt, metadata and payload together
//! leaves nothing that can be brute-forced. Pinned by
//! `domain/tests/vectors/records-v2.json`.

use serde::{Deserialize, Serialize};

use crate::{EventId, StreamId, Timestamp};

/// BLAKE3 context of the metadata hash.
pub const CONTEXT_METADATA: &str = "ledger 2026-11-29 record metadata v1";
/// BLAKE3 context of the payload hash.
pub const CONTEXT_PAYLOAD: &str = "ledger 2026-11-29 record payload v1";
/// BLAKE3 context of the leaf hash.
pub const CONTEXT_LEAF: &str = "ledger 2026-11-29 record leaf v1";
/// BLAKE3 context of the chain hash.
pub const CONTEXT_CHAIN: &str = "ledger 2026-11-29 record chain v1";

/// BLAKE3 context of a version 2 record's metadata hash (over `salt ‖ metadata`).
pub const CONTEXT_METADATA_V2: &str = "ledger 2026-12-01 record metadata v2";
/// BLAKE3 context of a version 2 record's payload hash (over `salt ‖ payload`).
pub const CONTEXT_PAYLOAD_V2: &str = "ledger 2026-12-01 record payload v2";

/// The first byte of every canonical header: the header format version.
pub const HEADER_FORMAT_V1: u8 = 1;
/// Record format version 2: the metadata and payload hashes commit to a
/// per-record salt (issue 16).
pub const HEADER_FORMAT_V2: u8 = 2;
/// Bytes of a version 2 record's salt.
pub const SALT_BYTES: usize = 32;

/// The chain hash before sequence 1.
pub const CHAIN_GENESIS: Hash = Hash([0; 32]);

/// Bounds on what one record may carry, checked before anything is written.
pub const EVENT_TYPE_BYTES_MAX: usize = 128;
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 512;
pub const METADATA_BYTES_MAX: usize = 16 * 1024;
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// A 32-byte BLAKE3 output.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A hasher in `derive_key` mode for `context`. Deriving a context's key
/// costs a compression, so it is done once per context (BLAKE3's `hazmat`
/// API exists for exactly this); verifying millions of records notices.
fn hasher(context: &'static str) -> blake3::Hasher {
    use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};
    use std::sync::LazyLock;
    static METADATA: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(CONTEXT_METADATA));
    static PAYLOAD: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(CONTEXT_PAYLOAD));
    static LEAF: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(CONTEXT_LEAF));
    static CHAIN: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(CONTEXT_CHAIN));
    static METADATA_V2: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(CONTEXT_METADATA_V2));
    static PAYLOAD_V2: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(CONTEXT_PAYLOAD_V2));
    let key = match context {
        CONTEXT_METADATA => &*METADATA,
        CONTEXT_PAYLOAD => &*PAYLOAD,
        CONTEXT_METADATA_V2 => &*METADATA_V2,
        CONTEXT_PAYLOAD_V2 => &*PAYLOAD_V2,
        CONTEXT_LEAF => &*LEAF,
        CONTEXT_CHAIN => &*CHAIN,
        other => return blake3::Hasher::new_derive_key(other),
    };
    blake3::Hasher::new_from_context_key(key)
}

fn keyed(context: &'static str, parts: &[&[u8]]) -> Hash {
    let mut hasher = hasher(context);
    for part in parts {
        hasher.update(part);
    }
    Hash(*hasher.finalize().as_bytes())
}

/// A version 1 record's metadata hash (unsalted).
pub fn metadata_hash(metadata: &[u8]) -> Hash {
    keyed(CONTEXT_METADATA, &[metadata])
}

/// A version 1 record's payload hash (unsalted).
pub fn payload_hash(payload: &[u8]) -> Hash {
    keyed(CONTEXT_PAYLOAD, &[payload])
}

/// A version 2 record's metadata hash: `H_metadata_v2(salt ‖ metadata)`.
pub fn metadata_hash_v2(salt: &[u8; SALT_BYTES], metadata: &[u8]) -> Hash {
    keyed(CONTEXT_METADATA_V2, &[salt, metadata])
}

/// A version 2 record's payload hash: `H_payload_v2(salt ‖ payload)`.
pub fn payload_hash_v2(salt: &[u8; SALT_BYTES], payload: &[u8]) -> Hash {
    keyed(CONTEXT_PAYLOAD_V2, &[salt, payload])
}

/// Whether `format` is a record format this version knows.
pub fn check_format(format: u8) -> Result<(), Defect> {
    match format {
        HEADER_FORMAT_V1 | HEADER_FORMAT_V2 => Ok(()),
        other => Err(Defect::UnknownFormat(other)),
    }
}

/// The leaf of a version 1 record. For a record of either format use
/// [`leaf_hash_as`] (or [`Record::check_leaf`]).
pub fn leaf_hash(header: &RecordHeader, metadata_hash: &Hash, payload_hash: &Hash) -> Hash {
    leaf_hash_as(HEADER_FORMAT_V1, header, metadata_hash, payload_hash)
}

/// The leaf of a record of `format`: the canonical header bytes begin with
/// the format byte, the rest is the same for every format. The caller
/// checks the format ([`check_format`]); an unknown one gives a leaf that
/// matches no record.
pub fn leaf_hash_as(format: u8, header: &RecordHeader, metadata_hash: &Hash, payload_hash: &Hash) -> Hash {
    leaf_hash_of(format, &header.borrowed(), metadata_hash, payload_hash)
}

/// [`leaf_hash_as`] from borrowed header fields (as `verify` reads them
/// from the database's row buffers, without building a [`RecordHeader`]).
pub fn leaf_hash_of(format: u8, header: &HeaderRef<'_>, metadata_hash: &Hash, payload_hash: &Hash) -> Hash {
    let mut hasher = hasher(CONTEXT_LEAF);
    header.write_canonical(format, &mut HashWriter(&mut hasher));
    hasher.update(&metadata_hash.0);
    hasher.update(&payload_hash.0);
    Hash(*hasher.finalize().as_bytes())
}

pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    keyed(CONTEXT_CHAIN, &[&previous.0, &leaf.0])
}

/// Where canonical header bytes go: a buffer, or straight into a hasher so
/// the hot path allocates nothing.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct HashWriter<'a>(&'a mut blake3::Hasher);

impl Sink for HashWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Who did what from where. Personal data lives here, not in the header,
/// so it can be shredded without breaking the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The credential or principal that issued the command.
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Metadata {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        crate::codec::decode(bytes)
    }
}

/// The hashed, fixed part of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Position in the one global order, from 1.
    pub sequence: u64,
    pub event_id: EventId,
    pub stream_id: StreamId,
    /// Position within the stream, from 1.
    pub stream_revision: u64,
    pub event_type: String,
    pub schema_version: u32,
    /// Business time: when the fact took effect.
    pub occurred_at: Timestamp,
    /// Append time: when the log accepted it. Never decreases along the log.
    pub recorded_at: Timestamp,
    /// The key of the command that appended this event, if it had one.
    pub idempotency_key: Option<String>,
}

impl RecordHeader {
    /// The canonical bytes of a version 1 record's header: fixed field
    /// order, little-endian integers, strings as a u32 little-endian byte
    /// length and UTF-8.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        self.canonical_bytes_as(HEADER_FORMAT_V1)
    }

    /// The canonical bytes of the header of a record of `format`: the
    /// format byte, then the same fields for every format.
    pub fn canonical_bytes_as(&self, format: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.stream_id.as_str().len() + self.event_type.len());
        self.write_canonical(format, &mut out);
        out
    }

    /// The header's fields, borrowed.
    pub fn borrowed(&self) -> HeaderRef<'_> {
        HeaderRef {
            sequence: self.sequence,
            event_id: self.event_id.as_bytes(),
            stream_id: self.stream_id.as_str(),
            stream_revision: self.stream_revision,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            idempotency_key: self.idempotency_key.as_deref(),
        }
    }

    fn write_canonical(&self, format: u8, out: &mut impl Sink) {
        self.borrowed().write_canonical(format, out);
    }
}

/// A [`RecordHeader`]'s fields borrowed from wherever they are stored: the
/// one canonical encoding ([`RecordHeader::canonical_bytes_as`]) is written
/// from this form, so an owned and a borrowed header hash the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub sequence: u64,
    pub event_id: &'a [u8; 16],
    pub stream_id: &'a str,
    pub stream_revision: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub idempotency_key: Option<&'a str>,
}

impl HeaderRef<'_> {
    fn write_canonical(&self, format: u8, out: &mut impl Sink) {
        fn string(out: &mut impl Sink, text: &str) {
            let len = u32::try_from(text.len()).expect("header strings are bounded far below 4 GiB");
            out.put(&len.to_le_bytes());
            out.put(text.as_bytes());
        }
        out.put(&[format]);
        out.put(&self.sequence.to_le_bytes());
        out.put(self.event_id);
        string(out, self.stream_id);
        out.put(&self.stream_revision.to_le_bytes());
        string(out, self.event_type);
        out.put(&self.schema_version.to_le_bytes());
        out.put(&self.occurred_at.as_micros().to_le_bytes());
        out.put(&self.recorded_at.as_micros().to_le_bytes());
        match self.idempotency_key {
            None => out.put(&[0]),
            Some(key) => {
                out.put(&[1]);
                string(out, key);
            }
        }
    }
}

/// A record's erasure, as the store keeps it beside the record (issue 16):
/// which privacy event sanctioned it and the facts that stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The sequence of the privacy event (`SubjectErased`, `RetentionApplied`)
    /// that sanctioned the erasure; always later than the erased record.
    pub by: u64,
    /// The erased payload's facts: the event with its personal fields
    /// redacted, encoded at the record's type and version. `None` when
    /// nothing of it is kept (retired usage).
    pub facts: Option<Vec<u8>>,
}

/// One record as stored: header, the two byte strings (either may have been
/// erased) and the hashes written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub header: RecordHeader,
    /// The record format: [`HEADER_FORMAT_V1`] (unsalted) or
    /// [`HEADER_FORMAT_V2`] (salted commitments). Written as the header's first byte.
    pub format: u8,
    /// The per-record salt of a version 2 record; `None` for version 1 and
    /// once erased.
    pub salt: Option<[u8; SALT_BYTES]>,
    /// Set when the record's erasable part was erased by a sanctioned erasure.
    pub erasure: Option<Erasure>,
    /// `None` once shredded; `metadata_hash` still commits to it.
    pub metadata: Option<Vec<u8>>,
    pub metadata_hash: Hash,
    /// `None` once shredded; `payload_hash` still commits to it.
    pub payload: Option<Vec<u8>>,
    pub payload_hash: Hash,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

impl Record {
    /// The bytes a reader decodes the event from: the payload, or once it
    /// was erased the facts its erasure kept. `None`: nothing to apply (the
    /// record was retired, or erased without a sanctioned erasure, which
    /// `verify` reports).
    pub fn event_bytes(&self) -> Option<&[u8]> {
        self.payload.as_deref().or_else(|| self.erasure.as_ref().and_then(|e| e.facts.as_deref()))
    }

    /// Seals a new record onto a chain whose last hash is `previous`.
    pub fn seal(header: RecordHeader, metadata: Vec<u8>, payload: Vec<u8>, previous: &Hash) -> Self {
        let metadata_hash = metadata_hash(&metadata);
        let payload_hash = payload_hash(&payload);
        let leaf_hash = leaf_hash(&header, &metadata_hash, &payload_hash);
        let chain_hash = chain_hash(previous, &leaf_hash);
        Self {
            header,
            format: HEADER_FORMAT_V1,
            salt: None,
            erasure: None,
            metadata: Some(metadata),
            metadata_hash,
            payload: Some(payload),
            payload_hash,
            leaf_hash,
            chain_hash,
        }
    }

    /// Seals a new version 2 record (salted commitments) onto a chain whose
    /// last hash is `previous`; `salt` is random, drawn by the caller.
    ///
    pub fn seal_v2(
        header: RecordHeader,
        metadata: Vec<u8>,
        payload: Vec<u8>,
        salt: [u8; SALT_BYTES],
        previous: &Hash,
    ) -> Self {
        let metadata_hash = metadata_hash_v2(&salt, &metadata);
        let payload_hash = payload_hash_v2(&salt, &payload);
        let leaf_hash = leaf_hash_as(HEADER_FORMAT_V2, &header, &metadata_hash, &payload_hash);
        let chain_hash = chain_hash(previous, &leaf_hash);
        Self {
            header,
            format: HEADER_FORMAT_V2,
            salt: Some(salt),
            erasure: None,
            metadata: Some(metadata),
            metadata_hash,
            payload: Some(payload),
            payload_hash,
            leaf_hash,
            chain_hash,
        }
    }

    /// The canonical bytes of this record's header, in its own format.
    pub fn canonical_header_bytes(&self) -> Vec<u8> {
        self.header.canonical_bytes_as(self.format)
    }

    /// Recomputes the leaf from what is stored and names the first thing
    /// that does not match. Independent of any other record, so leaves can
    /// be checked in parallel; [`ChainVerifier`] does the sequential part.
    ///
    /// Content that was erased is not checked (its hashes still are, by the
    /// leaf); whether an erasure was sanctioned is the store's question. A
    /// version 2 record holding content but no salt, a version 1 record
    /// holding a salt, or an unknown format is a defect.
    pub fn check_leaf(&self) -> Result<(), Defect> {
        self.borrowed().check_leaf()
    }

    /// The record's hashed parts, borrowed.
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            header: self.header.borrowed(),
            format: self.format,
            salt: self.salt.as_ref(),
            metadata: self.metadata.as_deref(),
            metadata_hash: &self.metadata_hash,
            payload: self.payload.as_deref(),
            payload_hash: &self.payload_hash,
            leaf_hash: &self.leaf_hash,
        }
    }
}

/// What a record's leaf commits to, borrowed ([`Record::borrowed`], or the
/// database's row buffers in `verify`): [`Record::check_leaf`] is this
/// form's [`RecordRef::check_leaf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub header: HeaderRef<'a>,
    pub format: u8,
    pub salt: Option<&'a [u8; SALT_BYTES]>,
    pub metadata: Option<&'a [u8]>,
    pub metadata_hash: &'a Hash,
    pub payload: Option<&'a [u8]>,
    pub payload_hash: &'a Hash,
    pub leaf_hash: &'a Hash,
}

impl RecordRef<'_> {
    /// [`Record::check_leaf`].
    pub fn check_leaf(&self) -> Result<(), Defect> {
        check_format(self.format)?;
        let erased = self.metadata.is_none() && self.payload.is_none();
        match (self.format, self.salt) {
            (HEADER_FORMAT_V1, None) => self.check_contents(metadata_hash, payload_hash)?,
            (HEADER_FORMAT_V1, Some(_)) => return Err(Defect::Salt),
            (_, Some(salt)) => {
                self.check_contents(|m| metadata_hash_v2(salt, m), |p| payload_hash_v2(salt, p))?;
            }
            (_, None) if erased => {}
            (_, None) => return Err(Defect::Salt),
        }
        if leaf_hash_of(self.format, &self.header, self.metadata_hash, self.payload_hash) != *self.leaf_hash {
            return Err(Defect::LeafHash);
        }
        Ok(())
    }

    /// Checks the metadata and payload still held against their hashes.
    fn check_contents(
        &self,
        metadata_hash: impl Fn(&[u8]) -> Hash,
        payload_hash: impl Fn(&[u8]) -> Hash,
    ) -> Result<(), Defect> {
        if let Some(metadata) = self.metadata
            && metadata_hash(metadata) != *self.metadata_hash
        {
            return Err(Defect::MetadataHash);
        }
        if let Some(payload) = self.payload
            && payload_hash(payload) != *self.payload_hash
        {
            return Err(Defect::PayloadHash);
        }
        Ok(())
    }
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("sequence gap: expected sequence {expected}, found {found}")]
    SequenceGap { expected: u64, found: u64 },
    #[error("metadata bytes do not match their stored hash")]
    MetadataHash,
    #[error("payload bytes do not match their stored hash")]
    PayloadHash,
    #[error("leaf hash does not match the header and content hashes")]
    LeafHash,
    #[error("chain hash does not follow from the previous record")]
    ChainHash,
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error(
        "the salt does not fit the record format: a version 1 record with a salt, or a version 2 record holding content without one"
    )]
    Salt,
    #[error(
        "payload or metadata erased without a sanctioned erasure (no erasure recorded, or one not later than the record)"
    )]
    UnsanctionedErasure,
    #[error("recordedAt {found} is earlier than the previous record's {previous}")]
    RecordedAtWentBack { previous: Timestamp, found: Timestamp },
    #[error("the log ends at sequence {last} but its head says sequence {head}")]
    HeadMismatch { last: u64, head: u64 },
    #[error("the head's chain hash is not the last record's")]
    HeadChainMismatch,
}

/// The first thing found wrong in a log: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sequence {sequence}: {defect}")]
pub struct VerifyFailure {
    pub sequence: u64,
    pub defect: Defect,
}

/// Walks records in global order and checks the sequential invariants:
/// sequences consecutive, chain hashes linked, recordedAt non-decreasing.
/// Leaf checks are [`Record::check_leaf`], which the caller may run in
/// parallel before feeding records here.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_sequence: u64,
    chain: Hash,
    recorded_at: Option<Timestamp>,
}

impl ChainVerifier {
    /// A verifier for a log from its first record.
    pub fn from_genesis() -> Self {
        Self::resume(1, CHAIN_GENESIS, None)
    }

    /// A verifier that starts at `next_sequence`, trusting `chain` as the
    /// hash after the record before it.
    pub fn resume(next_sequence: u64, chain: Hash, recorded_at: Option<Timestamp>) -> Self {
        Self { next_sequence, chain, recorded_at }
    }

    /// Checks the next record's links (not its leaf).
    pub fn link(&mut self, record: &Record) -> Result<(), VerifyFailure> {
        let header = &record.header;
        self.link_parts(header.sequence, header.recorded_at, &record.leaf_hash, &record.chain_hash)
    }

    /// [`Self::link`] from the parts of a record it checks: its sequence,
    /// recordedAt, leaf and stored chain hash.
    pub fn link_parts(
        &mut self,
        sequence: u64,
        recorded_at: Timestamp,
        leaf_hash: &Hash,
        stored_chain: &Hash,
    ) -> Result<(), VerifyFailure> {
        let fail = |defect| Err(VerifyFailure { sequence: self.next_sequence, defect });
        if sequence != self.next_sequence {
            return fail(Defect::SequenceGap { expected: self.next_sequence, found: sequence });
        }
        if let Some(previous) = self.recorded_at
            && recorded_at < previous
        {
            return fail(Defect::RecordedAtWentBack { previous, found: recorded_at });
        }
        if chain_hash(&self.chain, leaf_hash) != *stored_chain {
            return fail(Defect::ChainHash);
        }
        self.chain = *stored_chain;
        self.recorded_at = Some(recorded_at);
        self.next_sequence += 1;
        Ok(())
    }

    /// Checks a record completely: its leaf, then its links.
    pub fn check(&mut self, record: &Record) -> Result<(), VerifyFailure> {
        record.check_leaf().map_err(|defect| VerifyFailure { sequence: record.header.sequence, defect })?;
        self.link(record)
    }

    /// Checks that a log's head row agrees with the last record verified.
    pub fn check_head(&self, head_sequence: u64, head_chain: &Hash) -> Result<(), VerifyFailure> {
        let last = self.next_sequence - 1;
        if head_sequence != last {
            // Named at the first sequence the two disagree on: the first
            // missing record, or the first one the head never acknowledged.
            let sequence = last.min(head_sequence) + 1;
            return Err(VerifyFailure { sequence, defect: Defect::HeadMismatch { last, head: head_sequence } });
        }
        if *head_chain != self.chain {
            return Err(VerifyFailure { sequence: last, defect: Defect::HeadChainMismatch });
        }
        Ok(())
    }

    /// The sequence the next record must carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The chain hash after the last record linked.
    pub fn chain(&self) -> Hash {
        self.chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(sequence: u64, micros: i64) -> RecordHeader {
        RecordHeader {
            sequence,
            event_id: EventId::v7(1_700_000_000_000 + sequence, [sequence as u8; 10]),
            stream_id: StreamId::new("org/a").unwrap(),
            stream_revision: sequence,
            event_type: "OrganizationCreated".into(),
            schema_version: 1,
            occurred_at: Timestamp::from_micros(micros),
            recorded_at: Timestamp::from_micros(micros),
            idempotency_key: None,
        }
    }

    fn chain(n: u64) -> Vec<Record> {
        let mut previous = CHAIN_GENESIS;
        (1..=n)
            .map(|sequence| {
                let record = Record::seal(header(sequence, 10 * sequence as i64), vec![1], vec![2, 3], &previous);
                previous = record.chain_hash;
                record
            })
            .collect()
    }

    fn first_failure(records: &[Record]) -> Option<VerifyFailure> {
        let mut verifier = ChainVerifier::from_genesis();
        records.iter().find_map(|r| verifier.check(r).err())
    }

    #[test]
    fn an_untouched_chain_verifies_and_matches_its_head() {
        let records = chain(4);
        let mut verifier = ChainVerifier::from_genesis();
        for record in &records {
            verifier.check(record).unwrap();
        }
        verifier.check_head(4, &records[3].chain_hash).unwrap();
        let at = |head, chain| verifier.check_head(head, chain).unwrap_err().sequence;
        assert_eq!(at(3, &records[3].chain_hash), 4, "a record the head never acknowledged");
        assert_eq!(at(6, &records[3].chain_hash), 5, "the first record missing behind the head");
        assert_eq!(at(4, &records[2].chain_hash), 4, "the head's hash is not the last record's");
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_its_sequence() {
        let check = |mutate: &dyn Fn(&mut Vec<Record>), sequence, defect| {
            let mut records = chain(4);
            mutate(&mut records);
            assert_eq!(first_failure(&records), Some(VerifyFailure { sequence, defect }));
        };
        check(&|r| r[1].payload.as_mut().unwrap()[0] ^= 1, 2, Defect::PayloadHash);
        check(&|r| r[1].metadata.as_mut().unwrap()[0] ^= 1, 2, Defect::MetadataHash);
        check(&|r| r[2].header.stream_revision = 9, 3, Defect::LeafHash);
        check(&|r| r[2].header.recorded_at = Timestamp::from_micros(1), 3, Defect::LeafHash);
        check(&|r| r[2].chain_hash.0[0] ^= 1, 3, Defect::ChainHash);
        check(&|r| drop(r.remove(1)), 2, Defect::SequenceGap { expected: 2, found: 3 });
        // Swapped rows keep their own sequence numbers in the header, so the
        // position is wrong first; renumbered, their leaves no longer match.
        check(&|r| r.swap(1, 2), 2, Defect::SequenceGap { expected: 2, found: 3 });
        check(
            &|r| {
                r.swap(1, 2);
                r[1].header.sequence = 2;
                r[2].header.sequence = 3;
            },
            2,
            Defect::LeafHash,
        );
    }

    #[test]
    fn shredded_content_still_verifies() {
        let mut records = chain(3);
        records[1].metadata = None;
        records[1].payload = None;
        assert_eq!(first_failure(&records), None);
    }

    /// Two version 1 records, then version 2 records with salts 1, 2, …
    fn mixed_chain(v1: u64, v2: u64) -> Vec<Record> {
        let mut previous = CHAIN_GENESIS;
        (1..=v1 + v2)
            .map(|sequence| {
                let header = header(sequence, 10 * sequence as i64);
                let (metadata, payload) = (vec![1, sequence as u8], vec![2, 3, sequence as u8]);
                let record = if sequence <= v1 {
                    Record::seal(header, metadata, payload, &previous)
                } else {
                    Record::seal_v2(header, metadata, payload, [sequence as u8; SALT_BYTES], &previous)
                };
                previous = record.chain_hash;
                record
            })
            .collect()
    }

    /// What erasure leaves of a version 2 record: header and hashes.
    fn erase(record: &mut Record) {
        record.metadata = None;
        record.payload = None;
        record.salt = None;
    }

    #[test]
    fn a_v2_record_commits_to_its_salt_and_its_format() {
        let salt = [7; SALT_BYTES];
        let record = Record::seal_v2(header(1, 10), vec![1], vec![2, 3], salt, &CHAIN_GENESIS);
        record.check_leaf().unwrap();
        assert_eq!((record.format, record.salt), (HEADER_FORMAT_V2, Some(salt)));
        assert_eq!(record.payload_hash, payload_hash_v2(&salt, &[2, 3]));
        assert_eq!(record.metadata_hash, metadata_hash_v2(&salt, &[1]));
        // Not the unsalted hashes, and another salt gives other hashes.
        assert_ne!(record.payload_hash, payload_hash(&[2, 3]));
        assert_ne!(record.metadata_hash, metadata_hash(&[1]));
        assert_ne!(record.payload_hash, payload_hash_v2(&[8; SALT_BYTES], &[2, 3]));
        // The salt and the content are one input: moving a byte across the
        // boundary changes the hash (the domain's contexts differ, too).
        let v1 = Record::seal(header(1, 10), vec![1], vec![2, 3], &CHAIN_GENESIS);
        assert_ne!(record.leaf_hash, leaf_hash(&record.header, &record.metadata_hash, &record.payload_hash));
        assert_eq!(record.canonical_header_bytes()[0], 2);
        assert_eq!(v1.canonical_header_bytes(), v1.header.canonical_bytes());
        assert_eq!(record.canonical_header_bytes()[1..], v1.header.canonical_bytes()[1..]);
        assert_eq!(
            record.leaf_hash,
            leaf_hash_as(HEADER_FORMAT_V2, &record.header, &record.metadata_hash, &record.payload_hash)
        );
        assert_eq!(record.chain_hash, chain_hash(&CHAIN_GENESIS, &record.leaf_hash));
    }

    #[test]
    fn tampering_with_a_v2_record_is_named() {
        let check = |mutate: &dyn Fn(&mut Record), defect| {
            let mut record = mixed_chain(0, 1).remove(0);
            mutate(&mut record);
            assert_eq!(record.check_leaf(), Err(defect));
        };
        // The salt is checked through both hashes; metadata first.
        check(&|r| r.salt.as_mut().unwrap()[31] ^= 1, Defect::MetadataHash);
        check(&|r| r.payload.as_mut().unwrap()[2] ^= 0x80, Defect::PayloadHash);
        check(&|r| r.metadata.as_mut().unwrap()[0] ^= 1, Defect::MetadataHash);
        // A v2 record read as v1, or v1 as v2: its hashes no longer match.
        check(
            &|r| {
                r.format = HEADER_FORMAT_V1;
                r.salt = None;
            },
            Defect::MetadataHash,
        );
        check(&|r| r.format = HEADER_FORMAT_V1, Defect::Salt);
        check(&|r| r.format = 3, Defect::UnknownFormat(3));
        check(&|r| r.format = 0, Defect::UnknownFormat(0));
        // The salt erased alone: the content it held can no longer be checked.
        check(&|r| r.salt = None, Defect::Salt);
        // Erased completely: the header still goes through the leaf.
        check(
            &|r| {
                erase(r);
                r.header.stream_revision += 1;
            },
            Defect::LeafHash,
        );
        check(
            &|r| {
                erase(r);
                r.payload_hash.0[0] ^= 1;
            },
            Defect::LeafHash,
        );
        let mut v1 = chain(1).remove(0);
        v1.format = HEADER_FORMAT_V2;
        v1.salt = Some([0; SALT_BYTES]);
        assert_eq!(v1.check_leaf(), Err(Defect::MetadataHash), "a v1 record read as v2");
        v1.metadata = None;
        v1.payload = None;
        assert_eq!(v1.check_leaf(), Err(Defect::LeafHash), "a v1 record's header read as v2's");
    }

    #[test]
    fn a_mixed_v1_v2_chain_verifies_and_names_tampering_at_its_sequence() {
        let records = mixed_chain(2, 4);
        assert_eq!(records.iter().map(|r| r.format).collect::<Vec<_>>(), [1, 1, 2, 2, 2, 2]);
        assert_eq!(first_failure(&records), None);
        let at = |mutate: &dyn Fn(&mut Vec<Record>)| {
            let mut records = mixed_chain(2, 4);
            mutate(&mut records);
            first_failure(&records)
        };
        let fails = |sequence, defect| Some(VerifyFailure { sequence, defect });
        assert_eq!(at(&|r| r[3].payload.as_mut().unwrap()[0] ^= 1), fails(4, Defect::PayloadHash));
        assert_eq!(at(&|r| r[4].salt.as_mut().unwrap()[0] ^= 1), fails(5, Defect::MetadataHash));
        assert_eq!(at(&|r| r[2].chain_hash.0[0] ^= 1), fails(3, Defect::ChainHash));
        assert_eq!(at(&|r| r[1].salt = Some([0; SALT_BYTES])), fails(2, Defect::Salt));
    }

    #[test]
    fn an_erased_v2_record_still_checks_and_links() {
        let mut records = mixed_chain(2, 4);
        erase(&mut records[3]);
        records[3].erasure = Some(Erasure { by: 6, facts: None });
        records[3].check_leaf().unwrap();
        assert_eq!(records[3].event_bytes(), None);
        let mut verifier = ChainVerifier::from_genesis();
        for record in &records {
            verifier.check(record).unwrap();
        }
        verifier.check_head(6, &records[5].chain_hash).unwrap();
        // Its facts are what a reader applies; they are not hashed.
        records[3].erasure = Some(Erasure { by: 6, facts: Some(vec![9]) });
        assert_eq!(records[3].event_bytes(), Some(&[9][..]));
        assert_eq!(first_failure(&records), None);
    }

    #[test]
    fn recorded_at_may_not_go_back() {
        let mut previous = CHAIN_GENESIS;
        let records: Vec<Record> = [(1, 50), (2, 40)]
            .into_iter()
            .map(|(sequence, micros)| {
                let record = Record::seal(header(sequence, micros), vec![], vec![], &previous);
                previous = record.chain_hash;
                record
            })
            .collect();
        let failure = first_failure(&records).unwrap();
        assert_eq!(failure.sequence, 2);
        assert!(matches!(failure.defect, Defect::RecordedAtWentBack { .. }));
    }
}

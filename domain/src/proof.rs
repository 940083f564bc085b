//! The inclusion proof document: what `GET /api/v1/log/proof/inclusion`
//! answers and `replay prove` writes, and what `replay check-proof` reads.
//! One type, so the server and the auditor's tool cannot drift apart.
//!
//! `record` carries the header fields and content hashes from which the
//! checker recomputes the record's leaf hash itself; hashes are lowercase
//! hex.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::merkle::{Blake3Hasher, record_leaf, root_from_inclusion};
use crate::record::{HEADER_FORMAT_V1, Hash, Record, RecordHeader, check_format, leaf_hash_as};
use crate::{EventId, StreamId, Timestamp};

/// Why a proof was not checked, or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofCheckError {
    /// The document is not a proof (a field out of its format).
    #[error("{0}")]
    Malformed(String),
    /// A well-formed proof that does not prove the record in the
    /// checkpoint's log.
    #[error("{0}")]
    DoesNotHold(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub sequence: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub record: ProvedRecord,
    /// The Merkle leaf hashed from the record's leaf hash.
    pub merkle_leaf: String,
    /// The sibling hashes from the leaf up.
    pub proof: Vec<String>,
    pub root_hash: String,
    /// A signed checkpoint of `tree_size`, when the prover had one.
    pub checkpoint: Option<String>,
}

/// A record's header and content hashes, as the proof shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvedRecord {
    /// The record format (the canonical header's first byte); absent for
    /// version 1, so version 1 proofs read as they always did.
    #[serde(default = "format_v1", skip_serializing_if = "is_format_v1")]
    pub format: u8,
    pub sequence: u64,
    pub event_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_revision: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at_us: i64,
    pub recorded_at_us: i64,
    pub idempotency_key: Option<String>,
    pub metadata_hash: String,
    pub payload_hash: String,
    pub leaf_hash: String,
}

impl InclusionProof {
    pub fn new(record: &Record, tree_size: u64, proof: &[Hash], root: Hash, checkpoint: Option<String>) -> Self {
        let header = &record.header;
        Self {
            sequence: header.sequence,
            leaf_index: header.sequence - 1,
            tree_size,
            record: ProvedRecord {
                format: record.format,
                sequence: header.sequence,
                event_id: header.event_id.0,
                stream_id: header.stream_id.as_str().to_owned(),
                stream_revision: header.stream_revision,
                event_type: header.event_type.clone(),
                schema_version: header.schema_version,
                occurred_at_us: header.occurred_at.as_micros(),
                recorded_at_us: header.recorded_at.as_micros(),
                idempotency_key: header.idempotency_key.clone(),
                metadata_hash: record.metadata_hash.to_hex(),
                payload_hash: record.payload_hash.to_hex(),
                leaf_hash: record.leaf_hash.to_hex(),
            },
            merkle_leaf: crate::merkle::record_leaf(&record.leaf_hash).to_hex(),
            proof: proof.iter().map(Hash::to_hex).collect(),
            root_hash: root.to_hex(),
            checkpoint,
        }
    }
}

fn format_v1() -> u8 {
    HEADER_FORMAT_V1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_format_v1(format: &u8) -> bool {
    *format == HEADER_FORMAT_V1
}

fn hash(what: &str, text: &str) -> Result<Hash, ProofCheckError> {
    let bytes = hex::decode(text).map_err(|_| ProofCheckError::Malformed(format!("{what}: a hash is not hex")))?;
    Hash::from_slice(&bytes).ok_or_else(|| ProofCheckError::Malformed(format!("{what}: a hash is not 32 bytes")))
}

impl InclusionProof {
    /// Checks that `note` is a checkpoint signed by `key` and that the
    /// proof leads from the record's own fields to its root; returns the
    /// checkpoint. What `replay check-proof` does, without I/O.
    pub fn check(&self, note: &str, key: &VerifyingKey) -> Result<Checkpoint, ProofCheckError> {
        let fails = |what: String| Err(ProofCheckError::DoesNotHold(what));
        let checkpoint = match Checkpoint::verify(note, key) {
            Ok(checkpoint) => checkpoint,
            Err(error) => return fails(format!("the checkpoint does not hold: {error}")),
        };
        let record = &self.record;
        // The leaf from the record's own fields: what the proof is about.
        let header = record.header().map_err(ProofCheckError::Malformed)?;
        check_format(record.format).map_err(|defect| ProofCheckError::Malformed(format!("format: {defect}")))?;
        let metadata = hash("metadataHash", &record.metadata_hash)?;
        let leaf = leaf_hash_as(record.format, &header, &metadata, &hash("payloadHash", &record.payload_hash)?);
        if self.leaf_index.checked_add(1) != Some(record.sequence) {
            return fails(format!("the proof is for leaf index {}, not the record's", self.leaf_index));
        }
        if self.tree_size != checkpoint.size {
            return fails(format!(
                "the proof is for a tree of size {}, the checkpoint of size {}",
                self.tree_size, checkpoint.size
            ));
        }
        let hashes = self.proof.iter().map(|h| hash("proof", h)).collect::<Result<Vec<_>, _>>()?;
        match root_from_inclusion(&Blake3Hasher, self.leaf_index, self.tree_size, &record_leaf(&leaf), &hashes) {
            Ok(root) if root == checkpoint.root => Ok(checkpoint),
            Ok(_) => fails("the proof does not lead to the checkpoint's root".into()),
            Err(error) => fails(format!("the proof does not hold: {error}")),
        }
    }
}

impl ProvedRecord {
    /// The header the fields describe.
    pub fn header(&self) -> Result<RecordHeader, String> {
        Ok(RecordHeader {
            sequence: self.sequence,
            event_id: EventId(self.event_id),
            stream_id: StreamId::new(self.stream_id.clone()).map_err(|e| format!("streamId: {e}"))?,
            stream_revision: self.stream_revision,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            occurred_at: Timestamp::from_micros(self.occurred_at_us),
            recorded_at: Timestamp::from_micros(self.recorded_at_us),
            idempotency_key: self.idempotency_key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::merkle::MerkleTree;

    /// A one-record log, its proof and checkpoint, and the signing key.
    fn proved() -> (InclusionProof, SigningKey) {
        proved_with(Record::seal)
    }

    /// The same of a record sealed by `seal`.
    fn proved_with(seal: impl Fn(RecordHeader, Vec<u8>, Vec<u8>, &Hash) -> Record) -> (InclusionProof, SigningKey) {
        let key = SigningKey::from_bytes(&[5; 32]);
        let header = RecordHeader {
            sequence: 1,
            event_id: EventId(uuid::Uuid::from_u128(1)),
            stream_id: StreamId::new("org/acme").unwrap(),
            stream_revision: 1,
            event_type: "OrganizationCreated".into(),
            schema_version: 1,
            occurred_at: Timestamp::from_micros(1),
            recorded_at: Timestamp::from_micros(2),
            idempotency_key: None,
        };
        let record = seal(header, vec![0, 0, 0, 0], vec![1, 2, 3], &Hash([0; 32]));
        let mut tree = MerkleTree::new();
        tree.push_record(&record.leaf_hash);
        let root = tree.root(1).unwrap();
        let checkpoint = Checkpoint {
            origin: "ledger.test".into(),
            size: 1,
            root,
            chain: record.chain_hash,
            time: Timestamp::from_micros(3),
        };
        let note = checkpoint.sign(&key).unwrap();
        (InclusionProof::new(&record, 1, &[], root, Some(note)), key)
    }

    #[test]
    fn a_proof_checks_against_its_checkpoint_and_its_record() {
        let (proof, key) = proved();
        let note = proof.checkpoint.clone().unwrap();
        assert_eq!(proof.check(&note, &key.verifying_key()).unwrap().size, 1);
        let mut other = proof.clone();
        other.record.payload_hash = Hash([9; 32]).to_hex();
        assert!(matches!(other.check(&note, &key.verifying_key()), Err(ProofCheckError::DoesNotHold(_))));
        other.record.payload_hash = "zz".into();
        assert!(matches!(other.check(&note, &key.verifying_key()), Err(ProofCheckError::Malformed(_))));
        let stranger = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert!(matches!(proof.check(&note, &stranger), Err(ProofCheckError::DoesNotHold(_))));
    }

    #[test]
    fn a_v2_record_is_proved_with_its_format() {
        let (proof, key) = proved_with(|header, metadata, payload, previous| {
            Record::seal_v2(header, metadata, payload, [3; crate::record::SALT_BYTES], previous)
        });
        let note = proof.checkpoint.clone().unwrap();
        assert_eq!(proof.check(&note, &key.verifying_key()).unwrap().size, 1);
        let document = serde_json::to_value(&proof).unwrap();
        assert_eq!(document["record"]["format"], 2);
        let read: InclusionProof = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(read, proof);
        // Without its format it reads as version 1 and no longer holds.
        let mut stripped = document;
        stripped["record"].as_object_mut().unwrap().remove("format");
        let stripped: InclusionProof = serde_json::from_value(stripped).unwrap();
        assert_eq!(stripped.record.format, HEADER_FORMAT_V1);
        assert!(matches!(stripped.check(&note, &key.verifying_key()), Err(ProofCheckError::DoesNotHold(_))));
        let mut unknown = proof.clone();
        unknown.record.format = 9;
        assert!(matches!(unknown.check(&note, &key.verifying_key()), Err(ProofCheckError::Malformed(_))));
        // A version 1 proof's document has no format, as before version 2.
        let (v1, _) = proved();
        assert!(serde_json::to_value(&v1).unwrap()["record"].get("format").is_none());
    }

    /// `replay check-proof` added 1 to the leaf index unchecked: a proof
    /// naming leaf u64::MAX panicked (debug) instead of being refused.
    #[test]
    fn a_leaf_index_of_u64_max_is_refused_not_a_panic() {
        let (mut proof, key) = proved();
        proof.leaf_index = u64::MAX;
        let note = proof.checkpoint.clone().unwrap();
        let refused = proof.check(&note, &key.verifying_key()).unwrap_err();
        assert!(refused.to_string().contains("leaf index"), "{refused}");
    }
}

//! The inclusion proof document: what `GET /api/v1/log/proof/inclusion`
//! answers and `replay prove` writes, and what `replay check-proof` reads.
//! One type, so the server and the auditor's tool cannot drift apart.
//!
//! `record` carries the header fields and content hashes from which the
//! checker recomputes the record's leaf hash itself; hashes are lowercase
//! hex.

use serde::{Deserialize, Serialize};

use crate::record::{Hash, Record, RecordHeader};
use crate::{EventId, StreamId, Timestamp};

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

//! The log's head, kept checkpoints and proofs as the API answers them.
//! Hashes are lowercase hex; checkpoints are signed notes (ARCHITECTURE.md,
//! "Checkpoint notes").

use serde::Serialize;
use utoipa::ToSchema;

use crate::log::Kept;

/// The log head and a checkpoint of it signed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// The last sequence: the tree's size.
    pub sequence: u64,
    pub chain_hash: String,
    pub root_hash: String,
    /// When the last record was appended (RFC 3339).
    pub recorded_at: String,
    /// A checkpoint of the head, signed now.
    pub checkpoint: String,
    /// The latest checkpoint kept in the log, if any.
    pub kept_checkpoint: Option<KeptCheckpoint>,
}

/// A checkpoint kept in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeptCheckpoint {
    /// The tree size it covers.
    pub size: u64,
    /// Where it is kept in the log.
    pub sequence: u64,
    /// The signed note.
    pub checkpoint: String,
}

impl From<&Kept> for KeptCheckpoint {
    fn from(kept: &Kept) -> Self {
        Self { size: kept.size, sequence: kept.sequence, checkpoint: kept.note.clone() }
    }
}

/// A consistency proof between two tree sizes (RFC 9162, 2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    /// The proof's hashes.
    pub proof: Vec<String>,
    /// A checkpoint of `to` signed now, when `to` is the head.
    pub checkpoint: Option<String>,
}

/// The schema of `domain::proof::InclusionProof`, the one inclusion proof
/// document of the server, `replay prove` and `replay check-proof` (the
/// domain knows no OpenAPI). A test checks it names exactly the fields the
/// document has.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes domain::proof::InclusionProof for the OpenAPI document; never built")]
#[schema(rename_all = "camelCase")]
pub struct InclusionProof {
    sequence: u64,
    leaf_index: u64,
    tree_size: u64,
    /// The record's header fields and content hashes, from which a checker
    /// recomputes its leaf hash.
    #[schema(inline)]
    record: ProvedRecord,
    /// The Merkle leaf hashed from the record's leaf hash.
    merkle_leaf: String,
    /// The sibling hashes from the leaf up.
    proof: Vec<String>,
    root_hash: String,
    /// A signed checkpoint of `treeSize`, when the prover had one.
    checkpoint: Option<String>,
}

/// The schema of `domain::proof::ProvedRecord`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes domain::proof::ProvedRecord for the OpenAPI document; never built")]
#[schema(rename_all = "camelCase")]
pub struct ProvedRecord {
    /// The record format, the canonical header's first byte: absent for
    /// version 1, `2` for a version 2 record (salted commitments).
    #[schema(minimum = 2, maximum = 2)]
    format: Option<u8>,
    sequence: u64,
    event_id: uuid::Uuid,
    stream_id: String,
    stream_revision: u64,
    event_type: String,
    schema_version: u32,
    occurred_at_us: i64,
    recorded_at_us: i64,
    idempotency_key: Option<String>,
    metadata_hash: String,
    payload_hash: String,
    leaf_hash: String,
}

#[cfg(test)]
mod tests {
    use domain::record::{CHAIN_GENESIS, Hash, Record, RecordHeader};
    use domain::{EventId, Metadata, StreamId, Timestamp};
    use utoipa::PartialSchema;

    /// The names of an object schema's properties (inlined with a
    /// description, it is the one schema of an `allOf`).
    fn properties(schema: &serde_json::Value) -> Vec<String> {
        let schema = schema.get("allOf").map_or(schema, |all| &all[0]);
        let mut names: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    fn keys(value: &serde_json::Value) -> Vec<String> {
        let mut names: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    #[test]
    fn the_inclusion_proof_schema_names_the_documents_fields() {
        let header = RecordHeader {
            sequence: 1,
            event_id: EventId::v7(1_700_000_000_000, [1; 10]),
            stream_id: StreamId::new("org/x").unwrap(),
            stream_revision: 1,
            event_type: "Test".into(),
            schema_version: 1,
            occurred_at: Timestamp::from_micros(1),
            recorded_at: Timestamp::from_micros(1),
            idempotency_key: None,
        };
        // The log writes version 2 records; their proofs name every field.
        let record = Record::seal_v2(header.clone(), Metadata::default().encode(), vec![1], [7; 32], &CHAIN_GENESIS);
        let proof = domain::proof::InclusionProof::new(&record, 1, &[], Hash([0; 32]), None);
        let document = serde_json::to_value(&proof).unwrap();
        let schema = serde_json::to_value(super::InclusionProof::schema()).unwrap();
        assert_eq!(properties(&schema), keys(&document));
        assert_eq!(properties(&schema["properties"]["record"]), keys(&document["record"]));
        // A version 1 record's proof leaves out only its format.
        let v1 = Record::seal(header, Metadata::default().encode(), vec![1], &CHAIN_GENESIS);
        let v1 = serde_json::to_value(domain::proof::InclusionProof::new(&v1, 1, &[], Hash([0; 32]), None)).unwrap();
        let mut without_format = properties(&schema["properties"]["record"]);
        without_format.retain(|name| name != "format");
        assert_eq!(without_format, keys(&v1["record"]));
    }
}

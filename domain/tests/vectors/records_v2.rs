//! `records-v2.json`: record format version 2 (issue 16) continuing a
//! version 1 chain: two version 1 records, then four version 2 records
//! with salted content hashes, the first of them erased (salt, metadata
//! and payload gone, its hashes kept), as a log holds them after an
//! erasure. Regenerated with `UPDATE_VECTORS=1` like `records-v1.json`;
//! `tools/verify_vectors.py` recomputes every hash from the bytes alone.

use ledger_domain::record::{self, CHAIN_GENESIS, ChainVerifier, HEADER_FORMAT_V2, Record, SALT_BYTES};
use ledger_domain::{Metadata, codec};
use serde_json::{Value, json};

use super::{actor, header};

pub const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/records-v2.json");

/// The sequence whose record is shown erased.
const ERASED: u64 = 3;

/// A fixed salt per sequence (the store draws them at random).
fn salt(sequence: u64) -> [u8; SALT_BYTES] {
    std::array::from_fn(|i| (sequence as u8).wrapping_mul(0x9d).wrapping_add((i as u8).wrapping_mul(0x3b)))
}

fn visitor(name: &str, ip: &str) -> Metadata {
    Metadata {
        actor: Some(name.into()),
        correlation_id: Some("req-7f3a".into()),
        source_ip: Some(ip.into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
    }
}

/// (format, header, metadata, payload) of each record, in log order.
fn inputs() -> Vec<(u8, record::RecordHeader, Metadata, Vec<u8>)> {
    let org = "org/0194b3a0-0000-7000-8000-000000000001";
    vec![
        (
            record::HEADER_FORMAT_V1,
            header(1, org, 1, "OrganizationCreated", 1, "2026-11-30T09:00:00Z", "2026-11-30T09:00:00Z", None),
            actor("operator"),
            codec::encode(&("Acme GmbH", "EUR")),
        ),
        (
            record::HEADER_FORMAT_V1,
            header(2, org, 2, "UserAdded", 1, "2026-11-30T09:01:00Z", "2026-11-30T09:01:00.5Z", Some("op:add-ana")),
            visitor("org-admin:jörg", "203.0.113.7"),
            codec::encode(&("ana@acme.example", "analyst")),
        ),
        (
            HEADER_FORMAT_V2,
            header(3, org, 3, "UserAdded", 1, "2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z", Some("op:add-bo")),
            visitor("org-admin:jörg", "2001:db8::17"),
            codec::encode(&("bo@acme.example", "viewer")),
        ),
        (
            HEADER_FORMAT_V2,
            header(
                4,
                "subscription/0194b3a0-0000-7000-8000-000000000002",
                1,
                "SubscriptionCreated",
                1,
                "2026-12-01T00:00:00Z",
                "2026-12-01T10:05:00Z",
                Some("op:subscribe-1"),
            ),
            actor("operator"),
            vec![0x5a; 300],
        ),
        (
            // Empty metadata and payload: the hashes are over the salt alone.
            HEADER_FORMAT_V2,
            header(5, org, 4, "Empty", 1, "2026-12-01T10:06:00Z", "2026-12-01T10:06:00Z", None),
            Metadata::default(),
            Vec::new(),
        ),
        (
            HEADER_FORMAT_V2,
            header(6, "privacy/log", 1, "SubjectErased", 1, "2026-12-01T11:00:00Z", "2026-12-01T11:00:00Z", None),
            actor("operator"),
            codec::encode(&("user", 3u64, "request")),
        ),
    ]
}

/// The records, sealed in order, with sequence [`ERASED`] erased.
pub fn records() -> Vec<Record> {
    let mut previous = CHAIN_GENESIS;
    inputs()
        .into_iter()
        .map(|(format, header, metadata, payload)| {
            let sequence = header.sequence;
            let mut sealed = if format == HEADER_FORMAT_V2 {
                Record::seal_v2(header, metadata.encode(), payload, salt(sequence), &previous)
            } else {
                Record::seal(header, metadata.encode(), payload, &previous)
            };
            previous = sealed.chain_hash;
            if sequence == ERASED {
                (sealed.metadata, sealed.payload, sealed.salt) = (None, None, None);
            }
            sealed
        })
        .collect()
}

pub fn compute() -> Value {
    let records: Vec<Value> = records()
        .iter()
        .map(|sealed| {
            let header = &sealed.header;
            json!({
                "format": sealed.format,
                "sequence": header.sequence,
                "event_id": header.event_id.to_string(),
                "stream_id": header.stream_id.as_str(),
                "stream_revision": header.stream_revision,
                "event_type": header.event_type,
                "schema_version": header.schema_version,
                "occurred_at_us": header.occurred_at.as_micros(),
                "recorded_at_us": header.recorded_at.as_micros(),
                "idempotency_key": header.idempotency_key,
                "salt_hex": sealed.salt.map(hex::encode),
                "metadata_hex": sealed.metadata.as_ref().map(hex::encode),
                "payload_hex": sealed.payload.as_ref().map(hex::encode),
                "header_hex": hex::encode(sealed.canonical_header_bytes()),
                "metadata_hash": sealed.metadata_hash.to_hex(),
                "payload_hash": sealed.payload_hash.to_hex(),
                "leaf_hash": sealed.leaf_hash.to_hex(),
                "chain_hash": sealed.chain_hash.to_hex(),
            })
        })
        .collect();
    json!({
        "format": "ledger record v2",
        "contexts": {
            "metadata": record::CONTEXT_METADATA,
            "payload": record::CONTEXT_PAYLOAD,
            "metadata_v2": record::CONTEXT_METADATA_V2,
            "payload_v2": record::CONTEXT_PAYLOAD_V2,
            "leaf": record::CONTEXT_LEAF,
            "chain": record::CONTEXT_CHAIN,
        },
        "chain_genesis": CHAIN_GENESIS.to_hex(),
        "records": records,
    })
}

/// The vectors' records, erased one included, verify as a log.
pub fn verify() {
    let records = records();
    let mut verifier = ChainVerifier::from_genesis();
    for record in &records {
        verifier.check(record).unwrap_or_else(|failure| panic!("{failure}"));
    }
    verifier.check_head(records.len() as u64, &records.last().unwrap().chain_hash).unwrap();
    let erased = &records[ERASED as usize - 1];
    assert_eq!((erased.format, erased.salt, erased.payload.as_ref()), (HEADER_FORMAT_V2, None, None));
}

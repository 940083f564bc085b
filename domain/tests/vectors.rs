//! The record format's and the stored events' test vectors.
//!
//! `domain/tests/vectors/records-v1.json` pins the canonical header bytes
//! and every hash of six records; `records-v2.json` the same for record
//! format version 2 continuing a version 1 chain, one record erased
//! (`vectors/records_v2.rs`); `domain/tests/vectors/events-v1.json`
//! pins every stored event type and version: a real event, its payload
//! bytes and its full record (`vectors/events.rs`). These tests recompute
//! them; the independent Python verifier (`tools/verify_vectors.py`, run by
//! `cargo xtask test`) recomputes every record's hashes from
//! ARCHITECTURE.md alone. The files are regenerated with `UPDATE_VECTORS=1
//! cargo test -p ledger-domain --test vectors`, never edited by hand; a
//! diff in them is a format change.

#[path = "vectors/events.rs"]
mod events;
#[path = "vectors/examples.rs"]
mod examples;
#[path = "vectors/records_v2.rs"]
mod records_v2;
#[path = "vectors/values.rs"]
mod values;

use std::collections::{BTreeMap, BTreeSet};

use ledger_domain::event::LedgerEvent;
use ledger_domain::record::{self, CHAIN_GENESIS, Record, RecordHeader};
use ledger_domain::{EventId, Metadata, StreamId, Timestamp};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/records-v1.json");

/// A header from its fields, in the order of the record format.
#[allow(clippy::too_many_arguments)]
fn header(
    sequence: u64,
    stream: &str,
    revision: u64,
    event_type: &str,
    version: u32,
    occurred: &str,
    recorded: &str,
    key: Option<&str>,
) -> RecordHeader {
    RecordHeader {
        sequence,
        event_id: EventId::v7(1_767_225_600_000 + sequence, [sequence as u8; 10]),
        stream_id: StreamId::new(stream).unwrap(),
        stream_revision: revision,
        event_type: event_type.into(),
        schema_version: version,
        occurred_at: Timestamp::parse_rfc3339(occurred).unwrap(),
        recorded_at: Timestamp::parse_rfc3339(recorded).unwrap(),
        idempotency_key: key.map(str::to_owned),
    }
}

fn actor(name: &str) -> Metadata {
    Metadata { actor: Some(name.into()), ..Metadata::default() }
}

fn inputs() -> Vec<(RecordHeader, Metadata, Vec<u8>)> {
    let mut inputs = first_inputs();
    inputs.extend(last_inputs());
    inputs
}

fn first_inputs() -> Vec<(RecordHeader, Metadata, Vec<u8>)> {
    vec![
        (
            header(
                1,
                "org/0194b3a0-0000-7000-8000-000000000001",
                1,
                "OrganizationCreated",
                1,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00.000001Z",
                Some("op:create-acme"),
            ),
            Metadata {
                actor: Some("operator".into()),
                correlation_id: Some("c-1".into()),
                source_ip: Some("203.0.113.7".into()),
                user_agent: Some("curl/8.5".into()),
            },
            ledger_domain::codec::encode(&("Acme GmbH", "acme.example", 120u32)),
        ),
        (
            header(
                2,
                "subscription/0194b3a0-0000-7000-8000-000000000002",
                1,
                "SubscriptionCreated",
                1,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00.5Z",
                None,
            ),
            actor("operator"),
            ledger_domain::codec::encode(&("starter", "2026-01-01", true)),
        ),
        (
            // Empty payload and empty metadata bytes are legal and hash.
            header(
                3,
                "license/0194b3a0-0000-7000-8000-000000000003",
                7,
                "LicenseValidated",
                2,
                "2025-12-31T23:59:59.999999Z",
                "2026-01-02T03:04:05Z",
                Some(""),
            ),
            Metadata::default(),
            vec![],
        ),
    ]
}

fn last_inputs() -> Vec<(RecordHeader, Metadata, Vec<u8>)> {
    vec![
        (
            // Non-ASCII text is UTF-8 and length-prefixed by bytes.
            header(
                4,
                "org/0194b3a0-0000-7000-8000-000000000001",
                2,
                "UserAdded",
                1,
                "2026-01-02T03:04:05Z",
                "2026-01-02T03:04:05Z",
                Some("key:Zürich-№1"),
            ),
            actor("org-admin:ümlaut"),
            ledger_domain::codec::encode(&("jörg@acme.example", "analyst")),
        ),
        (
            // Times before 1970 are negative microsecond counts.
            header(5, "org/x", u64::MAX, "Backdated", u32::MAX, "1969-12-31T23:59:59Z", "2026-01-02T03:04:05Z", None),
            actor("importer"),
            (0..=255u8).collect(),
        ),
        (
            header(
                6,
                "subscription/0194b3a0-0000-7000-8000-000000000002",
                2,
                "SubscriptionUpgraded",
                1,
                "2026-01-16T00:00:00Z",
                "2026-01-16T08:00:00Z",
                Some("op:upgrade-1"),
            ),
            actor("operator"),
            vec![0x5a; 300],
        ),
    ]
}

fn compute() -> Value {
    let mut previous = CHAIN_GENESIS;
    let records: Vec<Value> = inputs()
        .into_iter()
        .map(|(header, metadata, payload)| {
            let metadata = metadata.encode();
            let sealed = Record::seal(header.clone(), metadata.clone(), payload.clone(), &previous);
            previous = sealed.chain_hash;
            json!({
                "sequence": header.sequence,
                "event_id": header.event_id.to_string(),
                "stream_id": header.stream_id.as_str(),
                "stream_revision": header.stream_revision,
                "event_type": header.event_type,
                "schema_version": header.schema_version,
                "occurred_at_us": header.occurred_at.as_micros(),
                "recorded_at_us": header.recorded_at.as_micros(),
                "idempotency_key": header.idempotency_key,
                "metadata_hex": hex::encode(&metadata),
                "payload_hex": hex::encode(&payload),
                "header_hex": hex::encode(header.canonical_bytes()),
                "metadata_hash": sealed.metadata_hash.to_hex(),
                "payload_hash": sealed.payload_hash.to_hex(),
                "leaf_hash": sealed.leaf_hash.to_hex(),
                "chain_hash": sealed.chain_hash.to_hex(),
            })
        })
        .collect();
    json!({
        "format": "ledger record v1",
        "contexts": {
            "metadata": record::CONTEXT_METADATA,
            "payload": record::CONTEXT_PAYLOAD,
            "leaf": record::CONTEXT_LEAF,
            "chain": record::CONTEXT_CHAIN,
        },
        "chain_genesis": CHAIN_GENESIS.to_hex(),
        "records": records,
    })
}

#[test]
fn records_match_the_published_vectors() {
    let computed = compute();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(stored, computed, "the record format changed; a stored log would no longer verify");
}

#[test]
fn v2_records_match_the_published_vectors() {
    let computed = records_v2::compute();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(records_v2::PATH, text).unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(records_v2::PATH).unwrap()).unwrap();
    assert_eq!(stored, computed, "record format version 2 changed; a stored log would no longer verify");
    records_v2::verify();
}

#[test]
fn the_metadata_encoding_round_trips() {
    for (_, metadata, _) in inputs() {
        assert_eq!(Metadata::decode(&metadata.encode()).unwrap(), metadata);
    }
}

const UPDATE: &str = "UPDATE_VECTORS=1 cargo test -p ledger-domain --test vectors";

#[test]
fn stored_events_match_the_golden_file() {
    let computed = events::compute();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        if let Some(stored) = events::read() {
            let problems = events::changed_or_dropped(&stored, &computed);
            assert!(
                problems.is_empty(),
                "{}\n(regenerating adds to events-v1.json; it never changes or drops what the file holds)",
                events::refusal(&problems)
            );
        }
        events::write(&computed);
    }
    let stored = events::read().unwrap_or_else(|| panic!("{} is missing: create it with {UPDATE}", events::PATH));
    let problems = events::changed_or_dropped(&stored, &computed);
    assert!(problems.is_empty(), "{}", events::refusal(&problems));
    let missing = events::missing(&stored, &computed);
    assert!(
        missing.is_empty(),
        "not in domain/tests/vectors/events-v1.json yet: {}. Add them with {UPDATE} and review the diff",
        missing.join(", ")
    );
    assert_eq!(
        stored, computed,
        "events-v1.json differs from what this version computes, though every payload's bytes are the same (an \
         example's record, its metadata or the JSON that describes it changed): review, then regenerate with {UPDATE}"
    );
}

/// What each golden record must decode to: the example itself, or for an
/// older version the event it reads as.
fn expected_events() -> BTreeMap<(String, u64), LedgerEvent> {
    examples::all()
        .into_iter()
        .map(|example| match example.stored {
            examples::Stored::Current(event) => {
                let (event_type, version, _, _) = events::parts(&event);
                ((event_type, u64::from(version)), event)
            }
            examples::Stored::Old { event_type, version, reads_as, .. } => {
                ((event_type.to_owned(), u64::from(version)), reads_as)
            }
        })
        .collect()
}

fn header_of(record: &Value) -> RecordHeader {
    let text = |name: &str| record[name].as_str().unwrap().to_owned();
    let number = |name: &str| record[name].as_u64().unwrap();
    let micros = |name: &str| Timestamp::from_micros(record[name].as_i64().unwrap());
    RecordHeader {
        sequence: number("sequence"),
        event_id: EventId(text("event_id").parse().unwrap()),
        stream_id: StreamId::new(text("stream_id")).unwrap(),
        stream_revision: number("stream_revision"),
        event_type: text("event_type"),
        schema_version: u32::try_from(number("schema_version")).unwrap(),
        occurred_at: micros("occurred_at_us"),
        recorded_at: micros("recorded_at_us"),
        idempotency_key: record["idempotency_key"].as_str().map(str::to_owned),
    }
}

/// The bytes in the golden file, as a log holds them, decode to the event
/// they were written from (older versions through their upcaster).
#[test]
fn every_golden_payload_decodes_to_its_event() {
    let stored = events::read().unwrap_or_else(|| panic!("{} is missing: create it with {UPDATE}", events::PATH));
    let expected = expected_events();
    for record in stored["records"].as_array().unwrap() {
        let (event_type, version) = events::key(record);
        let payload = hex::decode(record["payload_hex"].as_str().unwrap()).unwrap();
        let decoded = LedgerEvent::decode(&header_of(record), &payload)
            .unwrap_or_else(|error| panic!("{event_type} version {version} no longer decodes: {error}"))
            .unwrap_or_else(|| panic!("{event_type} is not a type of its stream's category"));
        let want = expected.get(&(event_type.clone(), version));
        assert_eq!(Some(&decoded), want, "{event_type} version {version} decodes to another event");
    }
}

/// Every stored event type and version this version reads (the lists
/// `stored_events!` makes) has an example and is in the golden file, and
/// the golden file holds nothing else.
#[test]
fn the_golden_file_covers_every_stored_event_type() {
    let stored = events::read().unwrap_or_else(|| panic!("{} is missing: create it with {UPDATE}", events::PATH));
    let records = stored["records"].as_array().unwrap();
    let golden: BTreeMap<(String, u64), bool> =
        records.iter().map(|r| (events::key(r), r["current"].as_bool().unwrap())).collect();
    let examples = expected_events();
    let known: BTreeSet<(String, u64)> = LedgerEvent::STORED_TYPES
        .iter()
        .flat_map(|types| types.iter())
        .map(|t| (t.name.to_owned(), u64::from(t.version)))
        .collect();
    let mut problems = Vec::new();
    for stored_type in LedgerEvent::STORED_TYPES.iter().flat_map(|types| types.iter()) {
        let key = (stored_type.name.to_owned(), u64::from(stored_type.version));
        let what = format!("{} version {}", stored_type.name, stored_type.version);
        if !examples.contains_key(&key) {
            problems.push(format!("{what} has no example in domain/tests/vectors/examples.rs: add a realistic one"));
        } else if !golden.contains_key(&key) {
            problems.push(format!("{what} is not in events-v1.json: add it with {UPDATE}"));
        } else if golden[&key] != stored_type.current {
            problems.push(format!(
                "{what}: events-v1.json says current = {}, the code {}",
                golden[&key], stored_type.current
            ));
        }
    }
    for (event_type, version) in golden.keys().filter(|key| !known.contains(*key)) {
        problems.push(format!(
            "{event_type} version {version} is in events-v1.json but this version no longer reads it: logs that hold \
             it would no longer decode"
        ));
    }
    assert!(problems.is_empty(), "the golden file does not cover the stored event types:\n  {}", problems.join("\n  "));
}

/// `verify` checks records from borrowed column bytes
/// (`record::RecordRef`, `record::leaf_hash_of`, `ChainVerifier::link_parts`):
/// read straight from the published vectors of both formats, they give
/// every stored leaf and chain hash, and name a changed byte.
#[test]
fn borrowed_records_check_against_the_published_vectors() {
    use ledger_domain::record::{ChainVerifier, Defect, Hash, HeaderRef, RecordRef};
    let v1 = std::fs::read_to_string(PATH).unwrap();
    let v2 = std::fs::read_to_string(records_v2::PATH).unwrap();
    for text in [v1, v2] {
        let vectors: Value = serde_json::from_str(&text).unwrap();
        let mut chain = ChainVerifier::from_genesis();
        for record in vectors["records"].as_array().unwrap() {
            let hash = |name: &str| Hash::from_slice(&hex::decode(record[name].as_str().unwrap()).unwrap()).unwrap();
            let bytes = |name: &str| record[name].as_str().map(|h| hex::decode(h).unwrap());
            let (metadata, payload, salt) = (bytes("metadata_hex"), bytes("payload_hex"), bytes("salt_hex"));
            let salt: Option<[u8; 32]> = salt.map(|s| s.try_into().unwrap());
            let event_id = *EventId(record["event_id"].as_str().unwrap().parse().unwrap()).as_bytes();
            let micros = |name: &str| Timestamp::from_micros(record[name].as_i64().unwrap());
            let header = HeaderRef {
                sequence: record["sequence"].as_u64().unwrap(),
                event_id: &event_id,
                stream_id: record["stream_id"].as_str().unwrap(),
                stream_revision: record["stream_revision"].as_u64().unwrap(),
                event_type: record["event_type"].as_str().unwrap(),
                schema_version: record["schema_version"].as_u64().unwrap() as u32,
                occurred_at: micros("occurred_at_us"),
                recorded_at: micros("recorded_at_us"),
                idempotency_key: record["idempotency_key"].as_str(),
            };
            let format = record.get("format").map_or(1, |f| f.as_u64().unwrap() as u8);
            let (metadata_hash, payload_hash, leaf) = (hash("metadata_hash"), hash("payload_hash"), hash("leaf_hash"));
            assert_eq!(record::leaf_hash_of(format, &header, &metadata_hash, &payload_hash), leaf);
            let borrowed = RecordRef {
                header,
                format,
                salt: salt.as_ref(),
                metadata: metadata.as_deref(),
                metadata_hash: &metadata_hash,
                payload: payload.as_deref(),
                payload_hash: &payload_hash,
                leaf_hash: &leaf,
            };
            assert_eq!(borrowed.check_leaf(), Ok(()));
            let other_type = RecordRef { header: HeaderRef { event_type: "Other", ..header }, ..borrowed };
            assert_eq!(other_type.check_leaf(), Err(Defect::LeafHash));
            chain.link_parts(header.sequence, header.recorded_at, &leaf, &hash("chain_hash")).unwrap();
        }
    }
}

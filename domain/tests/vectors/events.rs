//! The stored events' golden file: `domain/tests/vectors/events-v1.json`.
//!
//! For every stored event type and every schema version this version reads,
//! a realistic event (`examples.rs`) and its exact payload bytes, sealed
//! into a chain of full records (header fields, metadata, the four hashes)
//! that `tools/verify_vectors.py` recomputes on its own; and every variant
//! of the enums events embed (`values.rs`). A stored event's bytes never
//! change: a changed shape is a new schema version, so events already in a
//! log keep decoding. The file is regenerated with `UPDATE_VECTORS=1 cargo
//! test -p ledger-domain --test vectors`, which adds what is new and
//! refuses to change or drop what is there.

use std::collections::BTreeMap;

use ledger_domain::event::{LedgerEvent, StoredEvent};
use ledger_domain::record::{self, CHAIN_GENESIS, Record, RecordHeader};
use ledger_domain::{EventId, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use super::examples::{self, Example, Stored};
use super::values;

pub const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/events-v1.json");

/// The recordedAt of the first record; each next one is 1.5 s later.
const FIRST_RECORDED_AT: &str = "2026-03-06T08:00:00Z";
const RECORDED_STEP_MICROS: i64 = 1_500_000;

/// A stored event's type name, version, payload bytes and its fields as JSON.
struct Parts {
    event_type: String,
    version: u32,
    payload: Vec<u8>,
    json: Value,
}

/// Byte arrays (hashes, keys, nonces, signatures: 16 bytes or more) as
/// hex text, so the description stays readable; the bytes themselves are
/// in `payload_hex`.
fn bytes_as_hex(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items.iter().map(|i| i.as_u64().and_then(|n| u8::try_from(n).ok())).collect();
            match bytes {
                Some(bytes) if bytes.len() >= 16 => Value::String(hex::encode(bytes)),
                _ => Value::Array(items.into_iter().map(bytes_as_hex).collect()),
            }
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, bytes_as_hex(v))).collect()),
        other => other,
    }
}

/// An event's fields as JSON, for people reading the golden file.
pub fn describe<T: Serialize>(event: &T) -> Value {
    bytes_as_hex(serde_json::to_value(event).unwrap())
}

fn parts_of<E: StoredEvent + Serialize>(event: &E) -> Parts {
    // The enum serializes as `{"RustVariant": {fields}}`: keep the fields
    // only, as the Rust variant's name is not part of what is stored.
    let json = describe(event);
    let fields = json.as_object().and_then(|map| map.values().next().cloned()).unwrap_or(json);
    Parts {
        event_type: event.event_type().to_owned(),
        version: event.schema_version(),
        payload: event.encode_payload(),
        json: fields,
    }
}

pub fn parts(event: &LedgerEvent) -> (String, u32, Vec<u8>, Value) {
    let parts = match event {
        LedgerEvent::Organization(e) => parts_of(e),
        LedgerEvent::Subscription(e) => parts_of(e),
        LedgerEvent::License(e) => parts_of(e),
        LedgerEvent::Validation(e) => parts_of(e),
        LedgerEvent::Usage(e) => parts_of(e),
        LedgerEvent::Invoice(e) => parts_of(e),
        LedgerEvent::Checkpoint(e) => parts_of(e),
        LedgerEvent::Notification(e) => parts_of(e),
        LedgerEvent::Stripe(e) => parts_of(e),
        LedgerEvent::Branding(e) => parts_of(e),
        LedgerEvent::Staff(e) => parts_of(e),
        LedgerEvent::Privacy(e) => parts_of(e),
    };
    (parts.event_type, parts.version, parts.payload, parts.json)
}

/// The record of an example at `sequence`, after `previous`.
fn record(sequence: u64, example: &Example, previous: &record::Hash) -> (Record, Value) {
    let (event_type, version, payload, mut described) = match &example.stored {
        Stored::Current(event) => {
            let (event_type, version, payload, json) = parts(event);
            (event_type, version, payload, json!({ "current": true, "event": json }))
        }
        Stored::Old { event_type, version, payload, event, reads_as } => {
            let (_, _, _, reads_as) = parts(reads_as);
            let described = json!({ "current": false, "event": event, "reads_as": reads_as });
            ((*event_type).to_owned(), *version, payload.clone(), described)
        }
    };
    let first = Timestamp::parse_rfc3339(FIRST_RECORDED_AT).unwrap().as_micros();
    let recorded_at = Timestamp::from_micros(first + (sequence as i64 - 1) * RECORDED_STEP_MICROS);
    let random: [u8; 10] = blake3::hash(format!("event id {sequence}").as_bytes()).as_bytes()[..10].try_into().unwrap();
    let header = RecordHeader {
        sequence,
        event_id: EventId::v7((recorded_at.as_micros() / 1000) as u64, random),
        stream_id: example.stream.clone(),
        stream_revision: example.revision,
        event_type,
        schema_version: version,
        occurred_at: example.occurred_at,
        recorded_at,
        idempotency_key: example.idempotency_key.clone(),
    };
    let metadata = example.metadata.encode();
    let sealed = Record::seal(header.clone(), metadata.clone(), payload.clone(), previous);
    let fields = json!({
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
    });
    described.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    (sealed, described)
}

/// The whole golden file as this version computes it.
pub fn compute() -> Value {
    let mut previous = CHAIN_GENESIS;
    let mut records = Vec::new();
    for (index, example) in examples::all().iter().enumerate() {
        let (sealed, json) = record(index as u64 + 1, example, &previous);
        previous = sealed.chain_hash;
        records.push(json);
    }
    json!({
        "format": "ledger events v1",
        "contexts": {
            "metadata": record::CONTEXT_METADATA,
            "payload": record::CONTEXT_PAYLOAD,
            "leaf": record::CONTEXT_LEAF,
            "chain": record::CONTEXT_CHAIN,
        },
        "chain_genesis": CHAIN_GENESIS.to_hex(),
        "records": records,
        "values": values::compute(),
    })
}

/// A stored type and version, as the golden file names it.
pub fn key(record: &Value) -> (String, u64) {
    (record["event_type"].as_str().unwrap().to_owned(), record["schema_version"].as_u64().unwrap())
}

fn payloads(file: &Value) -> BTreeMap<(String, u64), String> {
    let records = file["records"].as_array().unwrap();
    records.iter().map(|r| (key(r), r["payload_hex"].as_str().unwrap().to_owned())).collect()
}

fn enum_values(file: &Value) -> BTreeMap<(String, String), String> {
    let mut all = BTreeMap::new();
    for (name, entries) in file["values"].as_object().unwrap() {
        for entry in entries.as_array().unwrap() {
            let variant = entry["variant"].as_str().unwrap().to_owned();
            all.insert((name.clone(), variant), entry["hex"].as_str().unwrap().to_owned());
        }
    }
    all
}

const ADD_A_VERSION: &str = "Events already in a log hold the old bytes and must still decode: never change a stored \
    event's shape in place. Add a new schema version instead: keep the old shape as a frozen struct (`…V1`), list it \
    in the type's `stored_events!` entry (`Name = \"Name\" version 2 { 1 => NameV1 }`) with its upcaster \
    (`From<NameV1> for Name`), and give the new version an example in domain/tests/vectors/examples.rs \
    (ARCHITECTURE.md, \"Stored events\")";

/// What the golden file holds that this version changed or dropped: the
/// one thing regenerating never blesses.
pub fn changed_or_dropped(stored: &Value, computed: &Value) -> Vec<String> {
    let (now, values_now) = (payloads(computed), enum_values(computed));
    let mut problems = Vec::new();
    for ((event_type, version), hex) in payloads(stored) {
        match now.get(&(event_type.clone(), version)) {
            None => problems.push(format!(
                "{event_type} version {version} is in the golden file but not computed now: its example in \
                 domain/tests/vectors/examples.rs is gone, or this version no longer reads it (then logs that hold \
                 it would no longer decode)"
            )),
            Some(now) if *now != hex => problems.push(format!(
                "{event_type} version {version}: its payload encodes differently now (a field added, removed, \
                 reordered or retyped, or a value it embeds changed its encoding)\n    golden: {hex}\n    now:    {now}"
            )),
            Some(_) => {}
        }
    }
    for ((name, variant), hex) in enum_values(stored) {
        match values_now.get(&(name.clone(), variant.clone())) {
            None => problems.push(format!(
                "{name}::{variant}, embedded in stored events, is gone (if it was only renamed, which changes no \
                 byte, rename it in events-v1.json by hand)"
            )),
            Some(now) if *now != hex => problems.push(format!(
                "{name}::{variant} encodes as {now}, not {hex}: the variants were reordered or one was inserted \
                 before it (new variants go last), or its fields changed"
            )),
            Some(_) => {}
        }
    }
    problems
}

/// What this version has that the golden file lacks.
pub fn missing(stored: &Value, computed: &Value) -> Vec<String> {
    let stored_payloads = payloads(stored);
    let stored_values = enum_values(stored);
    let events = payloads(computed).into_keys().filter(|key| !stored_payloads.contains_key(key));
    let values = enum_values(computed).into_keys().filter(|key| !stored_values.contains_key(key));
    events
        .map(|(event_type, version)| format!("{event_type} version {version}"))
        .chain(values.map(|(name, variant)| format!("{name}::{variant}")))
        .collect()
}

pub fn read() -> Option<Value> {
    let text = std::fs::read_to_string(PATH).ok()?;
    Some(serde_json::from_str(&text).expect("events-v1.json is JSON"))
}

pub fn write(file: &Value) {
    std::fs::write(PATH, serde_json::to_string_pretty(file).unwrap() + "\n").unwrap();
}

/// The panic message for changed or dropped stored shapes.
pub fn refusal(problems: &[String]) -> String {
    format!("stored event shapes changed:\n  {}\n{ADD_A_VERSION}", problems.join("\n  "))
}

//! The seed corpora (fuzz/corpus/<target>/), generated here from real
//! encodings: the record-format golden files (domain/tests/vectors), and
//! leases, refusals, checkpoints, proofs, webhooks and keys signed with the
//! fuzz crate's fixed keys.
//!
//! `cargo test -p ledger-fuzz` checks that every generated seed is
//! committed unchanged, and runs every file of every corpus through its
//! target on stable: seeds named `valid-…` must be accepted, `invalid-…`
//! refused. After a format change, rewrite the seeds with
//! `LEDGER_FUZZ_WRITE_SEEDS=1 cargo test -p ledger-fuzz --test corpus`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use domain::checkpoint::{Checkpoint, CheckpointKeyRotated};
use domain::keys::{api_token, license_key};
use domain::lease::{LeaseBody, LeaseLimits, RefusalBody, SignedLease, SignedRefusal, key_binding};
use domain::merkle::MerkleTree;
use domain::proof::InclusionProof;
use domain::record::{Hash, Record, RecordHeader};
use domain::{EventId, LicenseId, OrganizationId, StreamId, Timestamp, TokenId};
use hmac::{Hmac, Mac};
use ledger_fuzz::{
    CLIENT_NONCE, CLIENT_TIME_US, Outcome, WEBHOOK_NOW, WEBHOOK_SECRET, client_deployment_key, client_license_key,
    other_key, server_key, server_secret,
};
use serde_json::{Value, json};

type Seeds = BTreeMap<String, Vec<u8>>;
type Target = fn(&[u8]) -> Outcome;

/// Seeds per target, at most: the corpora stay small enough to read.
const SEEDS_PER_TARGET_MAX: usize = 128;

const TARGETS: [(&str, Target); 7] = [
    ("record", ledger_fuzz::record),
    ("events", ledger_fuzz::events),
    ("proof", ledger_fuzz::proof),
    ("checkpoint", ledger_fuzz::checkpoint),
    ("client_answer", ledger_fuzz::client_answer),
    ("webhook", ledger_fuzz::webhook),
    ("license_key", ledger_fuzz::license_key),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn vectors(name: &str) -> Vec<Value> {
    let path = root().join("../domain/tests/vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: Value = serde_json::from_str(&text).unwrap();
    file["records"].as_array().unwrap().clone()
}

fn hex_field(record: &Value, field: &str) -> Vec<u8> {
    hex::decode(record[field].as_str().unwrap()).unwrap()
}

fn record_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    for (i, record) in vectors("records-v1.json").iter().enumerate() {
        let metadata = hex_field(record, "metadata_hex");
        seeds.insert(format!("invalid-metadata-{i}-truncated"), metadata[..metadata.len() - 1].to_vec());
        seeds.insert(format!("valid-metadata-{i}"), metadata);
    }
    seeds
}

fn event_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    for (i, record) in vectors("events-v1.json").iter().enumerate() {
        let event_type = record["event_type"].as_str().unwrap();
        let version = u8::try_from(record["schema_version"].as_u64().unwrap()).unwrap();
        let mut seed = [event_type.as_bytes(), &[0, version]].concat();
        seed.extend_from_slice(&hex_field(record, "payload_hex"));
        seeds.insert(format!("valid-{i:02}-{event_type}-v{version}"), seed.clone());
        if i % 8 == 0 {
            seed.push(0);
            seeds.insert(format!("invalid-{i:02}-{event_type}-v{version}-trailing-byte"), seed);
        }
    }
    seeds
}

fn checkpoint_of(size: u64, root: Hash, chain: Hash) -> Checkpoint {
    Checkpoint { origin: "ledger.example/log".into(), size, root, chain, time: Timestamp::from_micros(CLIENT_TIME_US) }
}

/// Five records sealed in a chain, their tree, and a signed checkpoint.
fn sealed_log() -> (Vec<Record>, MerkleTree, String) {
    let (mut records, mut tree, mut chain) = (Vec::new(), MerkleTree::new(), Hash([0; 32]));
    for sequence in 1..=5u64 {
        let header = RecordHeader {
            sequence,
            event_id: EventId(uuid::Uuid::from_u128(u128::from(sequence))),
            stream_id: StreamId::new(format!("org/acme-{sequence}")).unwrap(),
            stream_revision: 1,
            event_type: "OrganizationCreated".into(),
            schema_version: 1,
            occurred_at: Timestamp::from_micros(CLIENT_TIME_US),
            recorded_at: Timestamp::from_micros(CLIENT_TIME_US + sequence as i64),
            idempotency_key: (sequence == 2).then(|| "op:create".to_owned()),
        };
        let record = Record::seal(header, vec![0, 0, 0, 0], vec![sequence as u8; 8], &chain);
        chain = record.chain_hash;
        tree.push_record(&record.leaf_hash);
        records.push(record);
    }
    let note = checkpoint_of(5, tree.root(5).unwrap(), chain).sign(&server_key()).unwrap();
    (records, tree, note)
}

fn proof_seeds() -> Seeds {
    let (records, tree, note) = sealed_log();
    let mut seeds = Seeds::new();
    for (index, record) in records.iter().enumerate() {
        let path = tree.inclusion_proof(index as u64, 5).unwrap();
        let proof = InclusionProof::new(record, 5, &path, tree.root(5).unwrap(), Some(note.clone()));
        seeds.insert(format!("valid-leaf-{index}-of-5"), serde_json::to_vec_pretty(&proof).unwrap());
        if index == 2 {
            let mut bad = proof.clone();
            bad.proof[0] = Hash([9; 32]).to_hex();
            seeds.insert("invalid-a-proof-hash-changed".into(), serde_json::to_vec_pretty(&bad).unwrap());
            let mut bad = proof;
            bad.record.payload_hash = Hash([9; 32]).to_hex();
            seeds.insert("invalid-the-payload-hash-changed".into(), serde_json::to_vec_pretty(&bad).unwrap());
        }
    }
    seeds
}

fn checkpoint_seeds() -> Seeds {
    let (_, tree, note) = sealed_log();
    let mut seeds = Seeds::new();
    seeds.insert("valid-size-5".into(), note.into_bytes());
    let empty = checkpoint_of(0, MerkleTree::new().root(0).unwrap(), Hash([0; 32]));
    seeds.insert("valid-size-0".into(), empty.sign(&server_key()).unwrap().into_bytes());
    let other = checkpoint_of(3, tree.root(3).unwrap(), Hash([1; 32])).sign(&other_key()).unwrap();
    seeds.insert("invalid-signed-by-another-key".into(), other.into_bytes());
    let rotation = CheckpointKeyRotated::announce(&server_key(), &other_key().verifying_key());
    let bytes = [&rotation.old_key[..], &rotation.new_key[..], &rotation.signature[..]].concat();
    seeds.insert("valid-key-rotation".into(), bytes);
    seeds
}

fn lease(nonce: &str, code: &str) -> LeaseBody {
    LeaseBody {
        version: 1,
        license_id: LicenseId(uuid::Uuid::from_u128(1)),
        organization_id: OrganizationId(uuid::Uuid::from_u128(2)),
        key_binding: key_binding(&client_license_key()),
        deployment_id: "default".into(),
        nonce: nonce.into(),
        client_time: Some(Timestamp::from_micros(CLIENT_TIME_US)),
        issued_at: Timestamp::from_micros(CLIENT_TIME_US + 1),
        lease_expires_at: Timestamp::from_micros(CLIENT_TIME_US + 7 * 86_400_000_000),
        code: code.into(),
        tier: "professional".into(),
        limits: LeaseLimits { max_users: 50, max_data_volume_gb: 1000, max_api_calls: -1, model_size: "large".into() },
        features: vec!["sso".into(), "audit-log".into()],
        heartbeat_interval_seconds: None,
        deployment_key: Some(client_deployment_key()),
    }
}

fn refusal(nonce: &str, code: &str) -> RefusalBody {
    RefusalBody {
        version: 1,
        key_binding: key_binding(&client_license_key()),
        deployment_id: "default".into(),
        nonce: nonce.into(),
        code: code.into(),
        issued_at: Timestamp::from_micros(CLIENT_TIME_US + 1),
    }
}

fn answer(is_valid: bool, code: &str, lease: Option<SignedLease>, refusal: Option<SignedRefusal>) -> Vec<u8> {
    let body = json!({"isValid": is_valid, "code": code, "warnings": [], "lease": lease, "refusal": refusal});
    serde_json::to_vec(&body).unwrap()
}

fn client_seeds() -> Seeds {
    let (server, other) = (server_key(), other_key());
    let signed = SignedLease::sign(&lease(CLIENT_NONCE, "VALID"), &server);
    let mut seeds = Seeds::new();
    seeds.insert("valid-lease".into(), answer(true, "VALID", Some(signed.clone()), None));
    seeds.insert("valid-lease-file".into(), serde_json::to_vec(&signed).unwrap());
    let revoked = SignedRefusal::sign(&refusal(CLIENT_NONCE, "REVOKED"), &server);
    seeds.insert("valid-refusal-revoked".into(), answer(false, "REVOKED", None, Some(revoked)));
    let stale = SignedLease::sign(&lease("another-nonce", "VALID"), &server);
    seeds.insert("invalid-lease-for-another-request".into(), answer(true, "VALID", Some(stale), None));
    let mut copied = lease(CLIENT_NONCE, "VALID");
    copied.deployment_key = Some(domain::deployment_key::public_key_text(&other.verifying_key()));
    let copied = SignedLease::sign(&copied, &server);
    seeds.insert("invalid-lease-bound-to-another-deployment-key".into(), answer(true, "VALID", Some(copied), None));
    let forged = SignedLease::sign(&lease(CLIENT_NONCE, "VALID"), &other);
    seeds.insert("invalid-lease-signed-by-another-key".into(), answer(true, "VALID", Some(forged), None));
    let forged = SignedRefusal::sign(&refusal(CLIENT_NONCE, "REVOKED"), &other);
    seeds.insert("invalid-refusal-signed-by-another-key".into(), answer(false, "REVOKED", None, Some(forged)));
    let unsigned = answer(false, "EXPIRED", None, None);
    seeds.insert("invalid-unsigned-refusal".into(), unsigned);
    let next = other.verifying_key();
    let signature = domain::lease::sign_next_key(&server, &next);
    let b64 = base64::engine::general_purpose::STANDARD;
    let keys = json!({"leases": {
        "current": b64.encode(server.verifying_key().as_bytes()),
        "next": b64.encode(next.as_bytes()),
        "nextSignature": b64.encode(signature),
    }});
    seeds.insert("valid-key-list".into(), serde_json::to_vec(&keys).unwrap());
    seeds
}

fn stripe_signature(t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn webhook_seeds() -> Seeds {
    let events = [
        (
            "invoice-payment-failed",
            json!({"id": "evt_1Fuzz", "object": "event", "type": "invoice.payment_failed",
            "created": WEBHOOK_NOW - 5, "livemode": false, "data": {"object": {"id": "in_1Fuzz", "object": "invoice",
            "amount_due": 49900, "currency": "eur", "metadata": {"subscription_id": "01961f3a-8c00-7d2e-9a41-5b6c7d8e9f01"}}}}),
        ),
        (
            "checkout-completed",
            json!({"id": "evt_2Fuzz", "object": "event", "type": "checkout.session.completed",
            "created": WEBHOOK_NOW, "livemode": true, "data": {"object": {"id": "cs_test_a1", "object": "checkout.session",
            "mode": "setup", "setup_intent": "seti_1Fuzz", "metadata": {"tier": "professional"}}}}),
        ),
        (
            "unhandled-type",
            json!({"id": "evt_3Fuzz", "object": "event", "type": "customer.created",
            "created": WEBHOOK_NOW - 100, "data": {"object": {"id": "cus_1Fuzz"}}}),
        ),
    ];
    let mut seeds = Seeds::new();
    for (name, event) in events {
        let body = serde_json::to_vec(&event).unwrap();
        let signed = |t: i64| [stripe_signature(t, &body).as_bytes(), b"\n", &body].concat();
        seeds.insert(format!("valid-{name}"), signed(WEBHOOK_NOW - 10));
        if name == "invoice-payment-failed" {
            seeds.insert(format!("invalid-{name}-stale"), signed(WEBHOOK_NOW - 301));
            let mut other = signed(WEBHOOK_NOW);
            *other.last_mut().unwrap() = b' ';
            seeds.insert(format!("invalid-{name}-body-changed"), other);
        }
    }
    seeds
}

fn license_key_seeds() -> Seeds {
    let key = license_key(&server_key(), LicenseId(uuid::Uuid::from_u128(1)), [7; 16]);
    let token = api_token(&server_secret(), TokenId(uuid::Uuid::from_u128(3)));
    let mut seeds = Seeds::new();
    let flipped = format!("{}{}", &key[..key.len() - 1], if key.ends_with('A') { 'B' } else { 'A' });
    seeds.insert("invalid-license-key-last-character-changed".into(), flipped.into_bytes());
    let forged = license_key(&other_key(), LicenseId(uuid::Uuid::from_u128(1)), [7; 16]);
    seeds.insert("invalid-license-key-of-another-server".into(), forged.into_bytes());
    seeds.insert("valid-license-key".into(), key.into_bytes());
    let wrong = api_token(&domain::keys::ServerSecret::from_bytes([0x44; 32]), TokenId(uuid::Uuid::from_u128(3)));
    seeds.insert("invalid-api-token-of-another-secret".into(), wrong.into_bytes());
    seeds.insert("valid-api-token".into(), token.into_bytes());
    seeds
}

fn generated(target: &str) -> Seeds {
    match target {
        "record" => record_seeds(),
        "events" => event_seeds(),
        "proof" => proof_seeds(),
        "checkpoint" => checkpoint_seeds(),
        "client_answer" => client_seeds(),
        "webhook" => webhook_seeds(),
        "license_key" => license_key_seeds(),
        other => panic!("no seeds for {other}"),
    }
}

#[test]
fn the_committed_seeds_are_the_generated_ones_and_reach_their_verdicts() {
    let write = std::env::var_os("LEDGER_FUZZ_WRITE_SEEDS").is_some();
    let mut checked = 0;
    for (target, run) in TARGETS {
        let dir = root().join("corpus").join(target);
        let seeds = generated(target);
        assert!(seeds.len() <= SEEDS_PER_TARGET_MAX, "{target}: {} seeds", seeds.len());
        assert!(seeds.keys().any(|name| name.starts_with("valid-")), "{target}: no seed is accepted");
        for (name, bytes) in &seeds {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; write the seeds with LEDGER_FUZZ_WRITE_SEEDS=1", path.display()));
            assert!(&committed == bytes, "{} differs from the generated seed", path.display());
        }
        // Every file of the corpus, generated or added after a finding.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let outcome = run(&std::fs::read(&path).unwrap());
            if name.starts_with("valid-") {
                assert_eq!(outcome, Outcome::Accepted, "{target}/{name}");
            } else if name.starts_with("invalid-") {
                assert_eq!(outcome, Outcome::Refused, "{target}/{name}");
            }
            checked += 1;
        }
    }
    println!("{checked} corpus files ran through the 7 targets");
}

#[test]
fn every_aggregate_has_its_stream_category() {
    assert_eq!(domain::event::LedgerEvent::STORED_TYPES.len(), ledger_fuzz::CATEGORIES.len());
    for (types, category) in domain::event::LedgerEvent::STORED_TYPES.iter().zip(ledger_fuzz::CATEGORIES) {
        let header = RecordHeader {
            sequence: 1,
            event_id: EventId(uuid::Uuid::nil()),
            stream_id: StreamId::new(format!("{category}/x")).unwrap(),
            stream_revision: 1,
            event_type: types[0].name.into(),
            schema_version: types[0].version,
            occurred_at: Timestamp::from_micros(0),
            recorded_at: Timestamp::from_micros(0),
            idempotency_key: None,
        };
        // Known on this stream: decoded or an error, never "unknown here".
        let decoded = domain::event::LedgerEvent::decode(&header, &[]);
        assert!(!matches!(decoded, Ok(None)), "{category}: {}", types[0].name);
    }
}

#[test]
fn a_mutated_seed_is_refused_by_its_check() {
    // The targets' verdicts are not constant: a seed each accepts, with a
    // byte changed in its signed part, is refused.
    let key = generated("license_key").remove("valid-license-key").unwrap();
    let mut changed = key.clone();
    changed[10] ^= 1;
    assert_eq!(ledger_fuzz::license_key(&key), Outcome::Accepted);
    assert_eq!(ledger_fuzz::license_key(&changed), Outcome::Refused);
}

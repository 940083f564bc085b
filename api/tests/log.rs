//! Signed checkpoints and Merkle proofs over HTTP, against the real binary,
//! on both backends: every answer is checked the way an auditor or a
//! customer would, with nothing but the published key and the formats.

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{AUDITOR, Backend, OPERATOR, Server};
use domain::checkpoint::Checkpoint;
use domain::merkle::{Blake3Hasher, record_leaf, verify_consistency, verify_inclusion};
use domain::record::{HEADER_FORMAT_V1, Hash, RecordHeader, leaf_hash_as};
use domain::{EventId, StreamId, Timestamp};
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

fn hash(value: &Value) -> Hash {
    Hash::from_slice(&hex::decode(value.as_str().expect("a hex hash")).unwrap()).unwrap()
}

async fn checkpoint_key(s: &Server) -> VerifyingKey {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let bytes = STANDARD.decode(keys["checkpoints"]["current"].as_str().unwrap()).unwrap();
    VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
}

/// Checks an inclusion proof as a customer would: the leaf from the
/// record's fields, the path to the root, the root in a signed checkpoint.
fn check_inclusion(proof: &Value, checkpoint: &Checkpoint) {
    let record = &proof["record"];
    let header = RecordHeader {
        sequence: record["sequence"].as_u64().unwrap(),
        event_id: EventId(record["eventId"].as_str().unwrap().parse().unwrap()),
        stream_id: StreamId::new(record["streamId"].as_str().unwrap()).unwrap(),
        stream_revision: record["streamRevision"].as_u64().unwrap(),
        event_type: record["eventType"].as_str().unwrap().into(),
        schema_version: record["schemaVersion"].as_u64().unwrap() as u32,
        occurred_at: Timestamp::from_micros(record["occurredAtUs"].as_i64().unwrap()),
        recorded_at: Timestamp::from_micros(record["recordedAtUs"].as_i64().unwrap()),
        idempotency_key: record["idempotencyKey"].as_str().map(Into::into),
    };
    // Absent for a version 1 record; a version 2 record names its format.
    let format = record["format"].as_u64().map_or(HEADER_FORMAT_V1, |f| u8::try_from(f).unwrap());
    let leaf = leaf_hash_as(format, &header, &hash(&record["metadataHash"]), &hash(&record["payloadHash"]));
    assert_eq!(leaf, hash(&record["leafHash"]), "the leaf follows from the record's fields");
    let path: Vec<Hash> = proof["proof"].as_array().unwrap().iter().map(hash).collect();
    let index = proof["leafIndex"].as_u64().unwrap();
    assert_eq!(proof["treeSize"].as_u64().unwrap(), checkpoint.size);
    verify_inclusion(&Blake3Hasher, index, checkpoint.size, &record_leaf(&leaf), &path, &checkpoint.root).unwrap();
}

async fn checkpoints_are_signed_kept_and_consistent(backend: Backend) {
    let s = backend.start().await;
    let key = checkpoint_key(&s).await;
    let acme = s.create_org("Acme").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;

    // The head with a checkpoint of it, signed now.
    let head = s.get("/api/v1/log/head", Some(AUDITOR)).await.expect(200);
    let note = head["checkpoint"].as_str().unwrap();
    let first = Checkpoint::verify(note, &key).expect("signed by the published key");
    assert_eq!(first.size, head["sequence"].as_u64().unwrap());
    assert_eq!(first.root, hash(&head["rootHash"]));
    assert_eq!(first.chain, hash(&head["chainHash"]));
    assert_eq!(first.origin, "ledger");
    assert!(head["keptCheckpoint"].is_null(), "nothing kept yet: {head}");

    // Kept on demand: appended to the log, covering what came before it.
    let kept = s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    let kept_checkpoint = Checkpoint::verify(kept["checkpoint"].as_str().unwrap(), &key).unwrap();
    assert_eq!(kept["size"].as_u64().unwrap(), first.size);
    assert_eq!(kept["sequence"].as_u64().unwrap(), first.size + 1);
    assert_eq!(s.head().await, first.size + 1);
    // Nothing new but the checkpoint itself: nothing more is kept.
    let again = s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    assert_eq!(again, kept);
    assert_eq!(s.head().await, first.size + 1);
    let audit = s.audit(&acme).await;
    assert!(audit.iter().all(|entry| entry["eventType"] != "CheckpointSigned"), "not an organization's event");

    // The log grows; the new head is consistent with the kept checkpoint.
    s.create_org("Globex").await;
    let head = s.get("/api/v1/log/head", Some(OPERATOR)).await.expect(200);
    assert_eq!(head["keptCheckpoint"], kept);
    let later = Checkpoint::verify(head["checkpoint"].as_str().unwrap(), &key).unwrap();
    let path = format!("/api/v1/log/proof/consistency?from={}", kept_checkpoint.size);
    let proof = s.get(&path, Some(AUDITOR)).await.expect(200);
    assert_eq!(proof["to"].as_u64().unwrap(), later.size);
    let hashes: Vec<Hash> = proof["proof"].as_array().unwrap().iter().map(hash).collect();
    verify_consistency(&Blake3Hasher, kept_checkpoint.size, later.size, &hashes, &kept_checkpoint.root, &later.root)
        .unwrap();
    // A proof between two given sizes carries no checkpoint; it still holds.
    let path = format!("/api/v1/log/proof/consistency?from=1&to={}", kept_checkpoint.size);
    let proof = s.get(&path, Some(OPERATOR)).await.expect(200);
    assert!(proof["checkpoint"].is_null());
    let hashes: Vec<Hash> = proof["proof"].as_array().unwrap().iter().map(hash).collect();
    verify_consistency(
        &Blake3Hasher,
        1,
        kept_checkpoint.size,
        &hashes,
        &hash(&proof["fromRoot"]),
        &kept_checkpoint.root,
    )
    .unwrap();

    // Bad sizes are refused and change nothing.
    let before = s.head().await;
    s.get("/api/v1/log/proof/consistency?from=5&to=2", Some(AUDITOR)).await.problem(400, "validation_failed");
    s.get("/api/v1/log/proof/consistency?from=x", Some(AUDITOR)).await.problem(400, "validation_failed");
    s.get("/api/v1/log/proof/consistency", Some(AUDITOR)).await.problem(400, "validation_failed");
    s.get("/api/v1/log/proof/consistency?from=1&to=999999", Some(AUDITOR)).await.problem(404, "not_found");
    assert_eq!(s.head().await, before);

    // A restarted server finds the kept checkpoint in the log again.
    s.stop().await;
    let s = backend.start().await;
    let head = s.get("/api/v1/log/head", Some(AUDITOR)).await.expect(200);
    assert_eq!(head["keptCheckpoint"], kept);
}

async fn inclusion_proofs_for_auditors_and_for_an_organization_s_own_events(backend: Backend) {
    let s = backend.start().await;
    let key = checkpoint_key(&s).await;
    let acme = s.create_org("Acme").await;
    let globex = s.create_org("Globex").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    let token = |org: String, role: &'static str| {
        let s = &s;
        async move {
            let answer =
                s.post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": role })).await;
            answer.expect(201)["token"].as_str().unwrap().to_owned()
        }
    };
    let analyst = token(acme.clone(), "analyst").await;
    let viewer = token(acme.clone(), "viewer").await;
    let audit = s.audit(&acme).await;
    let own = audit.iter().map(|e| e["sequence"].as_u64().unwrap()).collect::<Vec<_>>();
    let theirs = s.audit(&globex).await[0]["sequence"].as_u64().unwrap();

    // Every record, proved to the auditor against a checkpoint of the head.
    let head = s.head().await;
    for sequence in 1..=head {
        let proof = s.get(&format!("/api/v1/log/proof/inclusion?sequence={sequence}"), Some(AUDITOR)).await.expect(200);
        let checkpoint = Checkpoint::verify(proof["checkpoint"].as_str().unwrap(), &key).unwrap();
        check_inclusion(&proof, &checkpoint);
    }
    // A customer's analyst: its own organization's events, against the
    // signed checkpoint that comes with the proof; its leaf hash is the
    // one its audit list shows.
    for (entry, sequence) in audit.iter().zip(&own) {
        let path = format!("/api/v1/log/proof/inclusion?sequence={sequence}&minSequence={head}");
        let proof = s.get(&path, Some(&analyst)).await.expect(200);
        assert_eq!(proof["record"]["leafHash"], entry["leafHash"]);
        let checkpoint = Checkpoint::verify(proof["checkpoint"].as_str().unwrap(), &key).unwrap();
        check_inclusion(&proof, &checkpoint);
    }
    // Another organization's event is as if it did not exist; a viewer may
    // not ask; a sequence beyond the head does not exist.
    let path = format!("/api/v1/log/proof/inclusion?sequence={theirs}");
    s.get(&path, Some(&analyst)).await.problem(404, "not_found");
    s.get(&format!("/api/v1/log/proof/inclusion?sequence={}", own[0]), Some(&viewer)).await.problem(403, "forbidden");
    s.get(&format!("/api/v1/log/proof/inclusion?sequence={}", head + 100), Some(AUDITOR))
        .await
        .problem(404, "not_found");
    s.get("/api/v1/log/proof/inclusion?sequence=0", Some(AUDITOR)).await.problem(400, "validation_failed");
    s.get("/api/v1/log/proof/inclusion", Some(AUDITOR)).await.problem(400, "validation_failed");
    s.get("/api/v1/log/proof/inclusion?sequence=-1", Some(AUDITOR)).await.problem(400, "validation_failed");

    // Against a kept checkpoint's size: the proof leads to its root.
    let kept = s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    let kept = Checkpoint::verify(kept["checkpoint"].as_str().unwrap(), &key).unwrap();
    s.create_org("Initech").await;
    let path = format!("/api/v1/log/proof/inclusion?sequence=2&size={}", kept.size);
    let proof = s.get(&path, Some(AUDITOR)).await.expect(200);
    assert!(proof["checkpoint"].is_null());
    check_inclusion(&proof, &kept);
    let path = format!("/api/v1/log/proof/inclusion?sequence={}&size={}", kept.size, kept.size - 1);
    s.get(&path, Some(AUDITOR)).await.problem(400, "validation_failed");
}

/// The checkpoint notes and key rotations kept in the log, in order.
async fn checkpoint_stream(backend: &Backend) -> Vec<domain::checkpoint::CheckpointEvent> {
    use domain::event::LedgerEvent;
    let log = backend.open_log().await;
    let stream = StreamId::new(domain::checkpoint::CHECKPOINT_STREAM).unwrap();
    let records = log.read_stream(&stream, 1, 1000).await.unwrap();
    records
        .iter()
        .map(|r| match LedgerEvent::decode(&r.header, r.payload.as_deref().unwrap()) {
            Ok(Some(LedgerEvent::Checkpoint(event))) => event,
            other => panic!("not a checkpoint event: {other:?}"),
        })
        .collect()
}

async fn the_checkpoint_key_rotates_through_the_log(backend: Backend) {
    use domain::checkpoint::CheckpointEvent;
    let s = backend.start().await;
    let old = checkpoint_key(&s).await;
    s.create_org("Acme").await;
    s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    s.stop().await;

    // Rotated with the server stopped: the answer names both keys.
    let output = backend.cli(&["keys", "rotate-checkpoint"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rotated: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rotated["oldKey"], STANDARD.encode(old.as_bytes()));
    let new =
        VerifyingKey::from_bytes(&STANDARD.decode(rotated["newKey"].as_str().unwrap()).unwrap().try_into().unwrap())
            .unwrap();
    assert_ne!(new, old);

    // The server signs with the new key and publishes it.
    let s = backend.start().await;
    assert_eq!(checkpoint_key(&s).await, new);
    s.create_org("Globex").await;
    s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    let head = s.get("/api/v1/log/head", Some(AUDITOR)).await.expect(200);
    Checkpoint::verify(head["checkpoint"].as_str().unwrap(), &new).expect("signed by the new key");
    assert!(Checkpoint::verify(head["checkpoint"].as_str().unwrap(), &old).is_err());
    s.stop().await;

    // In the log: a checkpoint by the old key, the rotation signed by the
    // old key, a checkpoint by the new key.
    let kept = checkpoint_stream(&backend).await;
    let [
        CheckpointEvent::CheckpointSigned(before),
        CheckpointEvent::CheckpointKeyRotated(rotation),
        CheckpointEvent::CheckpointSigned(after),
    ] = &kept[..]
    else {
        panic!("unexpected checkpoint stream: {kept:?}");
    };
    Checkpoint::verify(&before.note, &old).expect("the first checkpoint is the old key's");
    assert_eq!(rotation.verify().expect("signed by the old key"), (old, new));
    Checkpoint::verify(&after.note, &new).expect("the later checkpoint is the new key's");

    // An interrupted rotation (the next key written, nothing else) keeps
    // every server from starting until it is finished.
    let next = backend.data_dir().join("keys/checkpoint.next.ed25519");
    std::fs::write(&next, [7u8; 32]).unwrap();
    let refused = backend.cli(&["serve", "--listen", "127.0.0.1:0"]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rotation is unfinished"), "{refused:?}");
    let output = backend.cli(&["keys", "rotate-checkpoint"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let finished: Value = serde_json::from_slice(&output.stdout).unwrap();
    let seventh = public_of([7u8; 32]);
    assert_eq!((&finished["oldKey"], &finished["newKey"]), (&rotated["newKey"], &json!(seventh)));
    assert!(!next.exists());
    let s = backend.start().await;
    assert_eq!(STANDARD.encode(checkpoint_key(&s).await.as_bytes()), seventh);
}

/// The base64 public key of the signing key with these 32 bytes.
fn public_of(seed: [u8; 32]) -> String {
    STANDARD.encode(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes())
}

backends!(
    checkpoints_are_signed_kept_and_consistent,
    inclusion_proofs_for_auditors_and_for_an_organization_s_own_events,
    the_checkpoint_key_rotates_through_the_log
);

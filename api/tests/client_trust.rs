//! What an on-premises client may trust, against the real `ledger` binary
//! on both backends, with the `ledger-client` library itself: refusals are
//! signed with the lease key for the very request (key, deployment, nonce),
//! and the client acts on them; a server whose read models failed or fell
//! behind answers 503, never NOT_FOUND, and the client keeps its lease; a
//! key another server process issued a moment ago is found; the next lease
//! key is announced signed by the current one, and only then learned.

#[allow(dead_code)]
#[macro_use]
mod common;
#[path = "support/rollback.rs"]
mod rollback;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use client::{Config, LicenseClient, Status, ValidationCode, VerifyingKey, parse_public_key};
use common::{Backend, OPERATOR, Server, id};
use domain::lease::SignedRefusal;
use serde_json::{Value, json};

backends!(
    refusals_are_signed_for_the_request_and_the_client_acts_on_them,
    with_the_read_models_failed_validation_answers_503_and_the_client_keeps_its_lease,
    a_key_issued_by_another_server_a_moment_ago_is_valid_not_not_found,
    the_next_lease_key_is_announced_signed_by_the_current_one_and_only_then_learned,
);

async fn lease_key(s: &Server) -> VerifyingKey {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    parse_public_key(keys["leases"]["current"].as_str().expect("a lease key")).unwrap()
}

/// A client of `key` on `s`, its state in `dir`, pinned to the server's
/// lease key (the test server listens on plain HTTP, on loopback).
async fn client(s: &Server, key: &str, dir: &Path, learn: bool) -> LicenseClient {
    let mut config = Config::new(&s.base, key, dir, vec![lease_key(s).await]);
    config.allow_plain_http = true;
    config.learn_lease_keys = learn;
    LicenseClient::new(config).expect("the client starts")
}

/// An organization with a starter subscription: (license key, sequence).
async fn customer(s: &Server, name: &str) -> (String, u64) {
    let org = s.create_org(name).await;
    let created = s.create_subscription(&org, "starter", "2026-01-01", true).await;
    (id(&created["licenseKey"]), created["sequence"].as_u64().expect("a sequence"))
}

async fn validate(s: &Server, key: &str, nonce: &str) -> common::Reply {
    let body = json!({ "licenseKey": key, "nonce": nonce, "clientInfo": { "deployment_id": "plant-7" } });
    s.post("/api/v1/license/validate", None, body).await
}

/// The answer's refusal, checked as a client checks it.
fn refusal(answer: &Value, lease_key: &VerifyingKey, key: &str) -> domain::lease::RefusalBody {
    let signed: SignedRefusal = serde_json::from_value(answer["refusal"].clone())
        .unwrap_or_else(|e| panic!("a signed refusal in {answer}: {e}"));
    signed.verify(lease_key, key).expect("signed with the lease key, for this key")
}

fn assert_valid(status: &Status, offline: bool) {
    match status {
        Status::Valid { offline: o, .. } => assert_eq!(*o, offline, "{status:?}"),
        other => panic!("expected a valid status, got {other:?}"),
    }
}

async fn refusals_are_signed_for_the_request_and_the_client_acts_on_them(backend: Backend) {
    let s = backend.start().await;
    let (key, _) = customer(&s, "Acme").await;
    let lease_key = lease_key(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&s, &key, dir.path(), false).await;
    assert_valid(&client.validate().await.unwrap(), false);
    let lease_file = dir.path().join(client::LEASE_FILE);
    assert!(lease_file.exists());

    // A well-formed request for a key nobody issued: a signed NOT_FOUND.
    let unknown = "LK1-not-a-key-this-server-issued";
    let answer = validate(&s, unknown, "nonce-unknown").await.expect(200);
    assert_eq!((answer["isValid"].clone(), answer["code"].clone()), (json!(false), json!("NOT_FOUND")));
    let body = refusal(&answer, &lease_key, unknown);
    assert_eq!(
        (body.code.as_str(), body.nonce.as_str(), body.deployment_id.as_str()),
        ("NOT_FOUND", "nonce-unknown", "plant-7")
    );
    assert!(answer["lease"].is_null());

    // The operator revokes the key: the refusal names this request.
    let license = id(&validate(&s, &key, "nonce-1").await.expect(200)["licenseId"]);
    let revoke = json!({ "reason": "contract ended" });
    s.post(&format!("/api/v1/licenses/{license}/revoke"), Some(OPERATOR), revoke).await.expect(200);
    let answer = validate(&s, &key, "nonce-2").await.expect(200);
    assert_eq!(answer["code"], "REVOKED", "{answer}");
    let body = refusal(&answer, &lease_key, &key);
    assert_eq!((body.code.as_str(), body.nonce.as_str()), ("REVOKED", "nonce-2"));
    let signed: SignedRefusal = serde_json::from_value(answer["refusal"].clone()).unwrap();
    assert!(signed.verify(&lease_key, "LK1-other-key").is_err(), "bound to the key it answers");

    // The client acts on it: the lease is gone, offline too.
    assert_eq!(client.validate().await.unwrap(), Status::Invalid { code: ValidationCode::Revoked });
    assert!(!lease_file.exists());
    assert!(!client.allows_feature("basic_analytics"));
}

async fn with_the_read_models_failed_validation_answers_503_and_the_client_keeps_its_lease(backend: Backend) {
    let s = backend.start().await;
    let (_, restored_to) = customer(&s, "Kept").await;
    let (key, _) = customer(&s, "Lost").await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&s, &key, dir.path(), false).await;
    assert_valid(&client.validate().await.unwrap(), false);
    s.stop().await;
    // The log comes back without the subscription that issued the key.
    rollback::roll_back(&backend, restored_to).await;

    let s = backend.start().await;
    validate(&s, &key, "nonce-1").await.problem(503, "read_model_failed");
    // No answer is not "not valid": the client keeps its lease, offline.
    let status = client.validate().await.unwrap();
    assert_valid(&status, true);
    assert!(dir.path().join(client::LEASE_FILE).exists());
    assert!(client.allows_feature("basic_analytics"));
}

async fn a_key_issued_by_another_server_a_moment_ago_is_valid_not_not_found(backend: Backend) {
    let issuing = backend.start().await;
    let validating = backend.start().await;
    for n in 0..5 {
        let (key, _) = customer(&issuing, &format!("Customer {n}")).await;
        let answer = validate(&validating, &key, "nonce-1").await.expect(200);
        assert_eq!(answer["code"], "VALID", "the other server knows the key at once: {answer}");
    }
}

async fn the_next_lease_key_is_announced_signed_by_the_current_one_and_only_then_learned(backend: Backend) {
    // A server has run on this data before (its keys exist).
    backend.start().await.stop().await;
    let prepared = backend.cli(&["keys", "prepare-lease"]).await;
    assert!(prepared.status.success(), "{}", String::from_utf8_lossy(&prepared.stderr));
    let prepared: Value = serde_json::from_slice(&prepared.stdout).expect("JSON");
    let s = backend.start().await;
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let leases = &keys["leases"];
    assert_eq!(leases["next"], prepared["nextKey"], "{keys}");
    assert_eq!(leases["nextSignature"], prepared["nextSignature"], "{keys}");
    let current = parse_public_key(leases["current"].as_str().unwrap()).unwrap();
    let next = parse_public_key(leases["next"].as_str().unwrap()).unwrap();
    let signature = STANDARD.decode(leases["nextSignature"].as_str().expect("a signature")).unwrap();
    assert!(domain::lease::verify_next_key(&current, &next, &signature), "signed by the current lease key");

    let (key, _) = customer(&s, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&s, &key, dir.path(), true).await;
    assert_valid(&client.validate().await.unwrap(), false);
    assert_eq!(client.lease_keys(), [current, next], "learned through the key it trusts");

    // After the rotation the server signs with the key the client learned.
    s.stop().await;
    let rotated = backend.cli(&["keys", "rotate-lease"]).await;
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let s = backend.start().await;
    assert_eq!(lease_key(&s).await, next);
    // The deployment the client activated ("default") bound the client's
    // key pair: plain HTTP is refused until an admin resets the binding,
    // then the key's one place is its own again.
    let refused =
        s.post("/api/v1/license/validate", None, json!({ "licenseKey": key, "nonce": "n" })).await.expect(200);
    assert_eq!(refused["code"], "DEPLOYMENT_KEY_REQUIRED", "{refused}");
    let reset = format!("/api/v1/licenses/{}/deployments/default/reset-key", id(&refused["licenseId"]));
    s.post(&reset, Some(OPERATOR), json!({})).await.expect(200);
    let answer = s.post("/api/v1/license/validate", None, json!({ "licenseKey": key, "nonce": "n" })).await.expect(200);
    let lease: domain::lease::SignedLease = serde_json::from_value(answer["lease"].clone()).expect("a lease");
    assert!(lease.verify(&client.lease_keys()[1], &key).is_ok());
}

/// PostgreSQL only: there the test can hold the read models back (an
/// exclusive lock on `events`) while the head moves, as a stalled replica
/// or a struggling database would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_more_than_5_s_behind_the_log_answers_503_not_an_old_answer() {
    let Some(backend) = Backend::postgres("client_trust::a_read_model_more_than_5_s_behind_the_log").await else {
        return;
    };
    let s = backend.start().await;
    let (key, _) = customer(&s, "Acme").await;
    assert_eq!(validate(&s, &key, "nonce-1").await.expect(200)["code"], "VALID");

    let pool = sqlx::PgPool::connect(backend.database_url().unwrap()).await.unwrap();
    let mut stall = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut *stall).await.unwrap();
    // The head names a record the read models cannot read yet.
    sqlx::query("UPDATE log_head SET sequence = sequence + 1").execute(&pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    validate(&s, &key, "nonce-2").await.problem(503, "projection_lagging");

    sqlx::query("UPDATE log_head SET sequence = sequence - 1").execute(&pool).await.unwrap();
    stall.rollback().await.unwrap();
    common::poll("the read models catch up", || async {
        (validate(&s, &key, "nonce-3").await.status.as_u16() == 200).then_some(())
    })
    .await;
}

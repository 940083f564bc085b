//! Black-box tests of deployment identity (issue 18 item 2) on the real
//! `ledger` binary: a deployment proves its key pair by signing a fresh
//! challenge at every validation; its first proof binds the key (trust on
//! first use, `DeploymentKeyBound`), the lease names the key, and from then
//! on the deployment must present that key (`DEPLOYMENT_KEY_REQUIRED`,
//! `DEPLOYMENT_KEY_MISMATCH`, signed refusals) until an organization admin
//! resets it (`DeploymentKeyReset`). A replayed, altered, forged or expired
//! proof is refused with a named code. A client presenting no key on a
//! deployment that never bound one keeps today's answers.
//!
//! Each test runs on both backends (`backends!` at the bottom).

#[allow(dead_code)]
#[macro_use]
mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, OPERATOR, Server, id};
use domain::deployment_key::{mint_challenge, public_key_text, sign_proof};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

backends!(
    a_deployment_binds_its_key_on_first_use_and_must_keep_presenting_it_until_reset,
    replayed_altered_forged_and_expired_proofs_are_refused_with_named_codes,
);

/// An organization with an admin token and a starter subscription of three
/// deployments:
/// (org, admin token, license id, key).
async fn customer(s: &Server, name: &str) -> (String, String, String, String) {
    let org = s.create_org(name).await;
    let tokens = format!("/api/v1/organizations/{org}/tokens");
    let admin = id(&s.post(&tokens, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201)["token"]);
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "maxDeployments": 3 });
    let key = id(&s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)["licenseKey"]);
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={head}");
    let license = id(&s.get(&path, Some(OPERATOR)).await.expect(200)[0]["id"]);
    (org, admin, license, key)
}

async fn challenge(s: &Server) -> String {
    id(&s.post("/api/v1/license/challenge", None, json!({})).await.expect(200)["challenge"])
}

/// A validation request of `key` from `deployment`, with `pair`'s proof
/// over `challenge` (none: no deployment key, as the seed's client).
fn request(key: &str, deployment: &str, nonce: &str, proof: Option<(&SigningKey, &str)>) -> Value {
    let mut body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": deployment }, "nonce": nonce });
    if let Some((pair, challenge)) = proof {
        let binding = domain::lease::key_binding(key);
        body["deploymentKey"] = json!(public_key_text(&pair.verifying_key()));
        body["challenge"] = json!(challenge);
        body["signature"] = json!(sign_proof(pair, challenge, &binding, deployment, nonce));
    }
    body
}

/// Validates with a fresh challenge (or none); the answer.
async fn validate(s: &Server, key: &str, deployment: &str, pair: Option<&SigningKey>) -> Value {
    let challenge = match pair {
        Some(_) => Some(challenge(s).await),
        None => None,
    };
    let proof = pair.zip(challenge.as_deref());
    s.post("/api/v1/license/validate", None, request(key, deployment, "n-1", proof)).await.expect(200)
}

/// The signed document of a lease or refusal, read (the signature is the
/// clients' to check; `validation.rs` tests it).
fn document(signed: &Value) -> Value {
    let payload = URL_SAFE_NO_PAD.decode(signed["payload"].as_str().expect("a payload")).expect("base64url");
    serde_json::from_slice(&payload).expect("JSON")
}

fn pair(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(seed: u8) -> String {
    public_key_text(&pair(seed).verifying_key())
}

async fn bound_keys(s: &Server, org: &str) -> Value {
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={head}");
    s.get(&path, Some(OPERATOR)).await.expect(200)[0]["deploymentKeys"].clone()
}

fn count(entries: &[Value], event_type: &str) -> usize {
    entries.iter().filter(|e| e["eventType"] == event_type).count()
}

async fn a_deployment_binds_its_key_on_first_use_and_must_keep_presenting_it_until_reset(backend: Backend) {
    let s = backend.start().await;
    let (org, admin, license, key) = customer(&s, "Acme").await;
    // No deployment key: today's answer, a lease bound to no key.
    let keyless = validate(&s, &key, "edge-0", None).await;
    assert_eq!(keyless["code"], "VALID", "{keyless}");
    assert_eq!(document(&keyless["lease"]).get("deploymentKey"), None, "{keyless}");

    // First proof: bound, recorded once, named in the lease.
    let first = validate(&s, &key, "edge-1", Some(&pair(1))).await;
    assert_eq!(first["code"], "VALID", "{first}");
    assert_eq!(document(&first["lease"])["deploymentKey"], public(1));
    let again = validate(&s, &key, "edge-1", Some(&pair(1))).await;
    assert_eq!(again["code"], "VALID", "{again}");
    assert_eq!(count(&s.audit(&org).await, "DeploymentKeyBound"), 1);
    assert_eq!(bound_keys(&s, &org).await, json!([{ "deploymentId": "edge-1", "publicKey": public(1) }]));

    // Bound: no key, or another, is refused (signed, nothing recorded).
    let none = validate(&s, &key, "edge-1", None).await;
    assert_eq!((none["isValid"].clone(), none["code"].clone()), (json!(false), json!("DEPLOYMENT_KEY_REQUIRED")));
    assert_eq!(document(&none["refusal"])["code"], "DEPLOYMENT_KEY_REQUIRED");
    assert!(none["lease"].is_null(), "{none}");
    let other = validate(&s, &key, "edge-1", Some(&pair(2))).await;
    assert_eq!(other["code"], "DEPLOYMENT_KEY_MISMATCH", "{other}");
    assert_eq!(document(&other["refusal"])["nonce"], "n-1");

    // An existing deployment (activated without a key) binds at its next validation.
    let existing = validate(&s, &key, "edge-0", Some(&pair(3))).await;
    assert_eq!(existing["code"], "VALID", "{existing}");
    assert_eq!(validate(&s, &key, "edge-0", None).await["code"], "DEPLOYMENT_KEY_REQUIRED");

    // The admin resets edge-1's binding: the next key presented is bound.
    let reset = format!("/api/v1/licenses/{license}/deployments/edge-1/reset-key");
    s.post(&reset, Some(&admin), json!({})).await.expect(200);
    s.post(&reset, Some(&admin), json!({})).await.problem(409, "deployment_key_not_bound");
    let rebound = validate(&s, &key, "edge-1", Some(&pair(2))).await;
    assert_eq!(rebound["code"], "VALID", "{rebound}");
    assert_eq!(document(&rebound["lease"])["deploymentKey"], public(2));
    assert_eq!(validate(&s, &key, "edge-1", Some(&pair(1))).await["code"], "DEPLOYMENT_KEY_MISMATCH");
    let audit = s.audit(&org).await;
    assert_eq!((count(&audit, "DeploymentKeyBound"), count(&audit, "DeploymentKeyReset")), (3, 1));
    let bound = bound_keys(&s, &org).await;
    assert_eq!(
        bound,
        json!([{ "deploymentId": "edge-0", "publicKey": public(3) }, { "deploymentId": "edge-1", "publicKey": public(2) }])
    );
    // Another organization's admin cannot see the license to reset it.
    let (_, globex_admin, _, _) = customer(&s, "Globex").await;
    s.post(&reset, Some(&globex_admin), json!({})).await.problem(404, "not_found");
    s.stop().await;
}

async fn replayed_altered_forged_and_expired_proofs_are_refused_with_named_codes(backend: Backend) {
    let s = backend.start().await;
    let (org, _, _, key) = customer(&s, "Acme").await;
    let validate = "/api/v1/license/validate";
    let c = challenge(&s).await;
    let body = request(&key, "edge-1", "n-1", Some((&pair(1), &c)));
    assert_eq!(s.post(validate, None, body.clone()).await.expect(200)["code"], "VALID");
    // The same signed request again: the challenge was answered.
    s.post(validate, None, body.clone()).await.problem(409, "challenge_replayed");

    // A signature over another nonce, deployment or key pair.
    let c = challenge(&s).await;
    let mut altered = request(&key, "edge-1", "n-2", Some((&pair(1), &c)));
    altered["nonce"] = json!("n-3");
    s.post(validate, None, altered).await.problem(400, "deployment_proof_invalid");
    let mut foreign = request(&key, "edge-1", "n-2", Some((&pair(1), &c)));
    foreign["deploymentKey"] = json!(public(2));
    s.post(validate, None, foreign).await.problem(400, "deployment_proof_invalid");
    // A refused proof does not use the challenge up.
    let honest = request(&key, "edge-1", "n-2", Some((&pair(1), &c)));
    assert_eq!(s.post(validate, None, honest).await.expect(200)["code"], "VALID");

    // A challenge this server did not mint, or altered in one byte.
    let mut bytes = URL_SAFE_NO_PAD.decode(challenge(&s).await).unwrap();
    bytes[20] ^= 1;
    let forged = URL_SAFE_NO_PAD.encode(bytes);
    let body = request(&key, "edge-1", "n-4", Some((&pair(1), &forged)));
    s.post(validate, None, body).await.problem(400, "challenge_invalid");
    // One the server minted (its secret) that has expired.
    let secret = std::fs::read(backend.data_dir().join("keys/secret")).expect("the server secret");
    let secret = domain::keys::ServerSecret::from_bytes(secret.try_into().expect("32 bytes"));
    let expired = mint_challenge(&secret, [4; 16], chrono::Utc::now().timestamp_micros() - 1);
    let body = request(&key, "edge-1", "n-5", Some((&pair(1), &expired)));
    s.post(validate, None, body).await.problem(400, "challenge_expired");
    let mut body = request(&key, "edge-1", "n-6", Some((&pair(1), &challenge(&s).await)));
    body["deploymentKey"] = json!("not-a-key");
    s.post(validate, None, body).await.problem(400, "deployment_key_malformed");
    // Only some of the three fields.
    let mut partial = request(&key, "edge-1", "n-7", Some((&pair(1), &challenge(&s).await)));
    partial.as_object_mut().unwrap().remove("signature");
    s.post(validate, None, partial).await.problem(400, "validation_failed");
    // Nothing refused was recorded: one binding, two valid validations.
    assert_eq!(count(&s.audit(&org).await, "DeploymentKeyBound"), 1);
    s.stop().await;
}

/// Two server processes on one PostgreSQL schema (as `multinode.rs`): a
/// signed request answered by one is refused by the other, since the
/// challenge is taken in the shared database, not only in the process.
/// Skipped (with a notice) without `DATABASE_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_answered_on_one_node_is_refused_on_the_other() {
    let Some(backend) = Backend::postgres("challenge_two_nodes").await else { return };
    let (first, second) = (backend.start().await, backend.start().await);
    let (_, _, _, key) = customer(&first, "Acme").await;
    let validate = "/api/v1/license/validate";
    // Minted by one node, answered on the other, replayed to both.
    let c = challenge(&first).await;
    let body = request(&key, "edge-1", "n-1", Some((&pair(1), &c)));
    let answer = second.post(validate, None, body.clone()).await.expect(200);
    assert_eq!(answer["code"], "VALID", "{answer}");
    first.post(validate, None, body.clone()).await.problem(409, "challenge_replayed");
    second.post(validate, None, body).await.problem(409, "challenge_replayed");
    // A fresh challenge works on either.
    let c = challenge(&second).await;
    let answer = first.post(validate, None, request(&key, "edge-1", "n-2", Some((&pair(1), &c)))).await.expect(200);
    assert_eq!(answer["code"], "VALID", "{answer}");
    first.stop().await;
    second.stop().await;
}

//! Black-box tests of floating deployments (issue 18 part 2) on the real
//! `ledger` binary: the operator allows some of a subscription's
//! `maxDeployments` to float; a floating deployment holds its place only
//! while it sends heartbeats (validations with `floating: true`), its lease
//! ends with its place, and one that stops heartbeating frees its place
//! when that lease ends, decided from the log's clock with no admin.
//! Activations (a deployment taking a place it did not hold) are
//! rate-limited per key.
//!
//! Each test runs on both backends (`backends!` at the bottom).

#[allow(dead_code)]
#[macro_use]
mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Backend, OPERATOR, Server, id};
use domain::lease::{LeaseBody, SignedLease};
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

backends!(
    a_floating_deployment_holds_its_place_while_it_heartbeats,
    floating_deployments_are_set_by_the_operator_within_bounds,
    activations_are_rate_limited_per_key,
);

/// An organization with an admin token and a starter subscription from
/// 2026-01-01 of `max` deployments: (org, admin token, key).
async fn customer(s: &Server, name: &str, max: u32) -> (String, String, String) {
    let org = s.create_org(name).await;
    let tokens = format!("/api/v1/organizations/{org}/tokens");
    let admin = id(&s.post(&tokens, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201)["token"]);
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "maxDeployments": max });
    let key = id(&s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)["licenseKey"]);
    (org, admin, key)
}

fn floating_path(org: &str) -> String {
    format!("/api/v1/subscriptions/{org}/floating-deployments")
}

/// Validates `key` from `deployment` (a heartbeat when `floating`): the
/// answer.
async fn validate(s: &Server, key: &str, deployment: &str, floating: bool) -> Value {
    let body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": deployment }, "floating": floating });
    s.post("/api/v1/license/validate", None, body).await.expect(200)
}

async fn code(s: &Server, key: &str, deployment: &str, floating: bool) -> String {
    id(&validate(s, key, deployment, floating).await["code"])
}

/// The answer's lease, verified with the server's published lease key.
async fn lease(s: &Server, answer: &Value, key: &str) -> LeaseBody {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let bytes: [u8; 32] = STANDARD.decode(id(&keys["leases"]["current"])).unwrap().try_into().unwrap();
    let public = VerifyingKey::from_bytes(&bytes).unwrap();
    let lease: SignedLease =
        serde_json::from_value(answer["lease"].clone()).unwrap_or_else(|e| panic!("{e}: {answer}"));
    lease.verify(&public, key).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// maxDeployments 2, one of them floating (heartbeat 10 minutes, place
/// lease 1 hour). `pod-a` takes the floating place at 10:00 (lease to
/// 11:00, with the heartbeat interval), a second floating deployment is
/// refused, a fixed one takes the other place and a second fixed one is
/// refused (the floating place counts). A heartbeat at 10:10 does not
/// extend (more than half the lease left); one at 10:31 does, to 11:31.
/// Then `pod-a` stops: at 11:30:59 `pod-b` is still refused, at 11:31 it
/// gets the place with no admin, and `pod-a` coming back is refused.
async fn a_floating_deployment_holds_its_place_while_it_heartbeats(backend: Backend) {
    let s = backend.start().await;
    let (org, _, key) = customer(&s, "Acme", 2).await;
    // Before the operator allows any, a heartbeat gets no place.
    let refused = validate(&s, &key, "pod-a", true).await;
    assert_eq!(refused["code"], "TOO_MANY_DEPLOYMENTS", "{refused}");
    assert!(refused["refusal"].is_object() && refused["lease"].is_null(), "{refused}");
    s.post(&floating_path(&org), Some(OPERATOR), json!({ "floatingDeployments": 1 })).await.expect(200);

    s.move_clock("2026-01-05T10:00:00Z").await;
    let answer = validate(&s, &key, "pod-a", true).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    let given = lease(&s, &answer, &key).await;
    assert_eq!(given.lease_expires_at.to_rfc3339(), "2026-01-05T11:00:00Z");
    assert_eq!(given.heartbeat_interval_seconds, Some(600));
    assert_eq!(code(&s, &key, "pod-b", true).await, "TOO_MANY_DEPLOYMENTS", "one floating place");
    // The floating deployment reports usage like a fixed one; one that
    // never held a place cannot.
    let usage = |deployment: &str| {
        json!({ "licenseKey": key, "deploymentId": deployment, "reportingPeriod": "2026-01-05",
            "metrics": { "activeUsers": 2, "dataVolumeGB": 1, "apiCallsCount": 10, "trainingHours": 0 } })
    };
    s.post("/api/v1/usage/report", None, usage("pod-a")).await.expect(200);
    s.post("/api/v1/usage/report", None, usage("pod-b")).await.problem(409, "deployment_not_activated");
    let fixed = validate(&s, &key, "edge-1", false).await;
    assert_eq!(fixed["code"], "VALID");
    let fixed_lease = lease(&s, &fixed, &key).await;
    assert_eq!(fixed_lease.lease_expires_at.to_rfc3339(), "2026-01-12T10:00:00Z", "fixed: seven days");
    assert_eq!(fixed_lease.heartbeat_interval_seconds, None);
    assert_eq!(code(&s, &key, "edge-2", false).await, "TOO_MANY_DEPLOYMENTS", "the floating place counts");

    s.move_clock("2026-01-05T10:10:00Z").await;
    let answer = validate(&s, &key, "pod-a", true).await;
    assert_eq!(lease(&s, &answer, &key).await.lease_expires_at.to_rfc3339(), "2026-01-05T11:00:00Z");
    s.move_clock("2026-01-05T10:31:00Z").await;
    let answer = validate(&s, &key, "pod-a", true).await;
    assert_eq!(lease(&s, &answer, &key).await.lease_expires_at.to_rfc3339(), "2026-01-05T11:31:00Z");
    // The key's listing (the read model) shows the floating place with its lease's end.
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={}", s.head().await);
    let listed = s.get(&path, Some(OPERATOR)).await.expect(200);
    let places = json!([{ "deploymentId": "pod-a", "leaseEndsAt": "2026-01-05T11:31:00Z" }]);
    assert_eq!(listed[0]["floatingDeployments"], places, "{listed}");
    assert_eq!(listed[0]["deployments"], json!(["edge-1"]), "{listed}");

    // pod-a is killed: no more heartbeats.
    s.move_clock("2026-01-05T11:30:59Z").await;
    assert_eq!(code(&s, &key, "pod-b", true).await, "TOO_MANY_DEPLOYMENTS");
    s.move_clock("2026-01-05T11:31:00Z").await;
    let answer = validate(&s, &key, "pod-b", true).await;
    assert_eq!(answer["code"], "VALID", "the place freed with pod-a's lease: {answer}");
    assert_eq!(lease(&s, &answer, &key).await.lease_expires_at.to_rfc3339(), "2026-01-05T12:31:00Z");
    assert_eq!(code(&s, &key, "pod-a", true).await, "TOO_MANY_DEPLOYMENTS", "pod-a lost its place");
    assert_eq!(code(&s, &key, "edge-1", false).await, "VALID", "the fixed one keeps its place");
    // Each heartbeat is a validation, recorded and counted like one.
    let audit = s.audit(&org).await;
    let leased = audit.iter().filter(|e| e["eventType"] == "FloatingDeploymentLeased").count();
    assert_eq!(leased, 2, "pod-a taken, pod-b taken: the key's own stream");
    // The renewal is on the key's floating stream of the day, not its own.
    let log = backend.open_log().await;
    let license =
        id(&s.get(&format!("/api/v1/organizations/{org}/licenses"), Some(OPERATOR)).await.expect(200)[0]["id"]);
    let floating = domain::StreamId::new(format!("floating/{license}:2026-01-05")).unwrap();
    let extended = log.read_stream(&floating, 1, 100).await.unwrap();
    let types: Vec<_> = extended.iter().map(|r| r.header.event_type.as_str()).collect();
    assert_eq!(types, ["FloatingLeaseExtended"], "pod-a extended once");
}

/// Only the operator sets floating deployments: at most `maxDeployments`,
/// a heartbeat interval of 60 s to a day, a lease of two intervals to a
/// day; the same settings again are a conflict. The subscription shows them.
async fn floating_deployments_are_set_by_the_operator_within_bounds(backend: Backend) {
    let s = backend.start().await;
    let (org, admin, _) = customer(&s, "Acme", 2).await;
    let path = floating_path(&org);
    s.post(&path, Some(&admin), json!({ "floatingDeployments": 1 })).await.problem(403, "forbidden");
    s.post(&path, Some(OPERATOR), json!({ "floatingDeployments": 3 })).await.problem(400, "validation_failed");
    let short = json!({ "floatingDeployments": 1, "heartbeatIntervalSeconds": 30 });
    s.post(&path, Some(OPERATOR), short).await.problem(400, "validation_failed");
    let lease = json!({ "floatingDeployments": 1, "heartbeatIntervalSeconds": 300, "leaseSeconds": 500 });
    s.post(&path, Some(OPERATOR), lease).await.problem(400, "validation_failed");
    let set = json!({ "floatingDeployments": 2, "heartbeatIntervalSeconds": 300, "leaseSeconds": 900 });
    s.post(&path, Some(OPERATOR), set.clone()).await.expect(200);
    s.post(&path, Some(OPERATOR), set).await.problem(409, "floating_unchanged");
    let details = s.subscription(&org, &admin).await;
    assert_eq!(
        details["floatingDeployments"],
        json!({ "deployments": 2, "heartbeatIntervalSeconds": 300, "leaseSeconds": 900 }),
        "{details}"
    );
}

/// `--activations-per-key-per-hour 2`: a key's third new deployment within
/// the hour is refused 429 `rate_limited` (limit
/// activations_per_key_per_hour) with Retry-After and appends nothing;
/// deployments holding their place validate on; another key is not limited.
async fn activations_are_rate_limited_per_key(backend: Backend) {
    let s = backend.start_with(&["--activations-per-key-per-hour", "2"]).await;
    let (org, _, key) = customer(&s, "Acme", 5).await;
    let (_, _, other_key) = customer(&s, "Globex", 5).await;
    s.post(&floating_path(&org), Some(OPERATOR), json!({ "floatingDeployments": 2 })).await.expect(200);
    assert_eq!(code(&s, &key, "edge-1", false).await, "VALID");
    assert_eq!(code(&s, &key, "pod-1", true).await, "VALID");
    let before = s.head().await;
    let body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": "pod-2" }, "floating": true });
    let path = "/api/v1/license/validate";
    let response = reqwest::Client::new().post(s.url(path)).json(&body).send().await.unwrap();
    let response = s.conformed(&reqwest::Method::POST, path, response).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited", "{problem}");
    assert_eq!(problem["limit"], "activations_per_key_per_hour", "{problem}");
    assert_eq!(s.head().await, before, "a refused activation appends nothing");
    assert_eq!(code(&s, &key, "edge-1", false).await, "VALID", "a fixed deployment holding its place");
    assert_eq!(code(&s, &key, "pod-1", true).await, "VALID", "a floating one holding its place");
    assert_eq!(code(&s, &other_key, "edge-9", false).await, "VALID");
}

//! Black-box tests of the deployment cap across releases, on the real
//! `ledger` binary: a released deployment keeps its place until the last
//! lease it was given ends (the release answers when: `slotFreesAt`), so
//! releasing and activating in turn cannot hand out more leases than
//! `maxDeployments`; and releases of one key are rate-limited.
//!
//! Each test runs on both backends (`backends!` at the bottom).

#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, OPERATOR, Server, id};
use serde_json::{Value, json};

backends!(released_deployments_hold_their_place_until_their_last_lease_ends, releases_are_rate_limited_per_key,);

/// An organization with an admin token and a starter subscription of one
/// deployment: (org, admin token, license id, key).
async fn customer(s: &Server, name: &str) -> (String, String, String, String) {
    let org = s.create_org(name).await;
    let tokens = format!("/api/v1/organizations/{org}/tokens");
    let admin = id(&s.post(&tokens, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201)["token"]);
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "maxDeployments": 1 });
    let key = id(&s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)["licenseKey"]);
    let license = id(&licenses(s, &org).await[0]["id"]);
    (org, admin, license, key)
}

async fn licenses(s: &Server, org: &str) -> Vec<Value> {
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={head}");
    s.get(&path, Some(OPERATOR)).await.expect(200).as_array().expect("a license list").clone()
}

/// Validates `key` from `deployment`; the code, and whether a lease came with it.
async fn validate(s: &Server, key: &str, deployment: &str) -> (String, bool) {
    let body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": deployment } });
    let answer = s.post("/api/v1/license/validate", None, body).await.expect(200);
    (id(&answer["code"]), answer["lease"].is_object())
}

fn release_path(license: &str, deployment: &str) -> String {
    format!("/api/v1/licenses/{license}/deployments/{deployment}/release")
}

/// maxDeployments 1. `dep-a` validates on two days and is released: its
/// place stays taken until 7 days after its last validation (the answer
/// says so), so `dep-b` and `dep-c` get no lease until then, while `dep-a`
/// may come back to its own place. A deployment whose last lease has
/// already ended frees its place at once.
async fn released_deployments_hold_their_place_until_their_last_lease_ends(backend: Backend) {
    let s = backend.start().await;
    let (org, admin, license, key) = customer(&s, "Acme").await;
    let (_, globex_admin, globex_license, globex_key) = customer(&s, "Globex").await;
    s.move_clock("2026-01-02T10:00:00Z").await;
    assert_eq!(validate(&s, &key, "dep-a").await, ("VALID".into(), true));
    assert_eq!(validate(&s, &globex_key, "dep-x").await, ("VALID".into(), true));
    s.move_clock("2026-01-03T08:00:00Z").await;
    assert_eq!(validate(&s, &key, "dep-a").await, ("VALID".into(), true));

    let released = s.post(&release_path(&license, "dep-a"), Some(&admin), json!({})).await.expect(200);
    assert_eq!(released["slotFreesAt"], "2026-01-10T08:00:00Z", "{released}");
    let listed = &licenses(&s, &org).await[0];
    assert_eq!(listed["deployments"], json!([]), "{listed}");
    assert_eq!(
        listed["releasedDeployments"],
        json!([{ "deploymentId": "dep-a", "slotFreesAt": "2026-01-10T08:00:00Z" }]),
        "{listed}"
    );
    // The review's bypass: release, activate another, repeat. No lease.
    for deployment in ["dep-b", "dep-c", "dep-d"] {
        assert_eq!(validate(&s, &key, deployment).await, ("TOO_MANY_DEPLOYMENTS".into(), false), "{deployment}");
    }
    // The released deployment may take its own place back, and be released again.
    assert_eq!(validate(&s, &key, "dep-a").await, ("VALID".into(), true));
    assert_eq!(licenses(&s, &org).await[0]["deployments"], json!(["dep-a"]));
    let again = s.post(&release_path(&license, "dep-a"), Some(&admin), json!({})).await.expect(200);
    assert_eq!(again["slotFreesAt"], "2026-01-10T08:00:00Z", "the lease just given ends then too");

    s.move_clock("2026-01-10T07:59:59Z").await;
    assert_eq!(validate(&s, &key, "dep-b").await, ("TOO_MANY_DEPLOYMENTS".into(), false));
    s.move_clock("2026-01-10T08:00:00Z").await;
    assert_eq!(validate(&s, &key, "dep-b").await, ("VALID".into(), true));
    assert_eq!(licenses(&s, &org).await[0]["releasedDeployments"], json!([]));

    // Globex's dep-x last validated on 2026-01-02 at 10:00: its lease ended
    // on the 9th, so releasing it frees the place now.
    let freed = s.post(&release_path(&globex_license, "dep-x"), Some(&globex_admin), json!({})).await.expect(200);
    assert_eq!(freed["slotFreesAt"], "2026-01-10T08:00:00Z", "{freed}");
    assert_eq!(validate(&s, &globex_key, "dep-y").await, ("VALID".into(), true));
}

/// `--deployment-releases-per-license-per-hour 2`: a key's third release
/// within the hour is refused 429 `rate_limited` with `Retry-After` and
/// appends nothing; another key is not affected.
async fn releases_are_rate_limited_per_key(backend: Backend) {
    let s = backend.start_with(&["--deployment-releases-per-license-per-hour", "2"]).await;
    let (_, admin, license, key) = customer(&s, "Acme").await;
    let (_, other_admin, other_license, other_key) = customer(&s, "Globex").await;
    for _ in 0..2 {
        assert_eq!(validate(&s, &key, "dep-a").await.0, "VALID");
        s.post(&release_path(&license, "dep-a"), Some(&admin), json!({})).await.expect(200);
    }
    assert_eq!(validate(&s, &key, "dep-a").await.0, "VALID");
    let before = s.head().await;
    let path = release_path(&license, "dep-a");
    let response = reqwest::Client::new().post(s.url(&path)).bearer_auth(&admin).json(&json!({})).send().await.unwrap();
    let response = s.conformed(&reqwest::Method::POST, &path, response).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited", "{problem}");
    assert_eq!(s.head().await, before, "a refused release appends nothing");
    assert_eq!(validate(&s, &other_key, "dep-z").await.0, "VALID");
    s.post(&release_path(&other_license, "dep-z"), Some(&other_admin), json!({})).await.expect(200);
}

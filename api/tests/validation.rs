//! Black-box tests of license validation (`/api/v1/license/validate`) and
//! releasing a deployment, against the real `ledger` binary on SQLite and
//! on PostgreSQL (BILLING-RULES.md "License keys and validation", API.md
//! "On-premises clients").
//!
//! Each test is written once against a `Backend` and instantiated for both
//! by `backends!` at the bottom; PostgreSQL variants need `DATABASE_URL`
//! and skip with a notice without it.
//!
//! `PAST_DUE` and `SUSPENDED` follow payment failures, so they are reached
//! through signed Stripe webhooks: `api/tests/stripe.rs` (dunning) and
//! `scenarios/suspension-days-still-billed.yaml`.

#[allow(dead_code)]
#[macro_use]
mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Backend, Body, OPERATOR, Server, id, poll};
use domain::Timestamp;
use domain::keys::verify_license_key;
use domain::lease::{LeaseBody, LeaseError, SignedLease};
use ed25519_dalek::VerifyingKey;
use reqwest::Method;
use serde_json::{Value, json};

const VALIDATE: &str = "/api/v1/license/validate";
const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;
/// The seed's 1,440 validations per key per UTC day.
const PER_DAY: usize = 1440;
/// Concurrent clients of one key in the per-key limit test.
const BULK_CLIENTS: usize = 2;

// ---------------------------------------------------------------------------
// Helpers.

/// An organization with a subscription, its (first) key and an admin token.
struct Customer {
    org: String,
    key: String,
    license: String,
    admin: String,
}

/// Creates an organization, an org admin token and a subscription from
/// 2026-01-01 (operator).
async fn customer(s: &Server, name: &str, tier: &str, auto_renew: bool, max_deployments: Option<u32>) -> Customer {
    let org = s.create_org(name).await;
    let issued = s
        .post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" }))
        .await
        .expect(201);
    let admin = id(&issued["token"]);
    let mut body = json!({ "organizationId": org, "tier": tier, "startDate": "2026-01-01", "autoRenew": auto_renew });
    if let Some(max) = max_deployments {
        body["maxDeployments"] = json!(max);
    }
    let created = s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201);
    let key = id(&created["licenseKey"]);
    let listed = licenses(s, &org).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    Customer { license: id(&listed[0]["id"]), org, key, admin }
}

/// An organization's licenses (operator), once the read models include
/// everything appended so far.
async fn licenses(s: &Server, org: &str) -> Vec<Value> {
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={head}");
    s.get(&path, Some(OPERATOR)).await.expect(200).as_array().expect("a license list").clone()
}

/// One license of an organization, by id.
async fn license(s: &Server, org: &str, license: &str) -> Value {
    let all = licenses(s, org).await;
    all.into_iter().find(|l| l["id"] == license).unwrap_or_else(|| panic!("license {license} listed"))
}

/// `{licenseKey, clientInfo?, nonce?}`.
fn request(key: &str, deployment: Option<&str>, nonce: Option<&str>) -> Value {
    let mut body = json!({ "licenseKey": key });
    if let Some(deployment) = deployment {
        body["clientInfo"] =
            json!({ "version": "2.3.1", "deployment_id": deployment, "last_sync": "2026-01-01T00:00:00Z" });
    }
    if let Some(nonce) = nonce {
        body["nonce"] = json!(nonce);
    }
    body
}

/// POSTs a validation body; expects 200.
async fn validate(s: &Server, body: Value) -> Value {
    s.post(VALIDATE, None, body).await.expect(200)
}

/// Validates `key` from `deployment` and checks the answer's code and that
/// the log grew by `appended` events (its head is the answer's sequence).
async fn validate_appends(s: &Server, key: &str, deployment: Option<&str>, code: &str, appended: u64) -> Value {
    let before = s.head().await;
    let answer = validate(s, request(key, deployment, None)).await;
    assert_eq!(answer["code"], code, "{answer}");
    let after = s.head().await;
    assert_eq!(after, before + appended, "a {code} answer appends {appended} event(s): {answer}");
    assert_eq!(answer["sequence"].as_u64(), Some(after), "the answer names its sequence: {answer}");
    answer
}

/// Checks the shape of a refusal: not valid, no lease, the code.
#[track_caller]
fn assert_refused(answer: &Value, code: &str, expired: bool) {
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(answer["isValid"], false, "{answer}");
    assert_eq!(answer["isExpired"], expired, "{answer}");
    assert_eq!(answer["warnings"], json!([]), "{answer}");
    assert_eq!(answer["lease"], Value::Null, "a refusal carries no lease: {answer}");
}

/// A NOT_FOUND answer.
#[track_caller]
fn assert_not_found(answer: &Value) {
    assert_refused(answer, "NOT_FOUND", false);
    assert_eq!(answer["licenseId"], Value::Null, "{answer}");
}

/// A public key of the server (`leases`, `licenseKeys`), from `GET /api/v1/keys`.
async fn public_key(s: &Server, purpose: &str) -> VerifyingKey {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    assert!(keys[purpose]["current"].is_string(), "{purpose} in {keys}");
    public_key_of(&keys[purpose]["current"])
}

/// The answer's lease, verified with the server's published lease key and
/// for `key`.
async fn verified_lease(s: &Server, answer: &Value, key: &str) -> LeaseBody {
    let lease: SignedLease = serde_json::from_value(answer["lease"].clone())
        .unwrap_or_else(|e| panic!("a lease {{payload, signature}} in {answer}: {e}"));
    lease.verify(&public_key(s, "leases").await, key).unwrap_or_else(|e| panic!("the lease verifies: {e}; {answer}"))
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn plus_days(at: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_micros(at.as_micros() + days * DAY_MICROS)
}

/// The limits JSON of a tier, as the validation answer writes it.
fn limits(tier: &str) -> Value {
    match tier {
        "starter" => json!({ "maxUsers": 5, "maxDataVolumeGB": 1000, "maxApiCalls": 10000, "modelSize": "small" }),
        "professional" => {
            json!({ "maxUsers": 10, "maxDataVolumeGB": 3000, "maxApiCalls": 50000, "modelSize": "medium" })
        }
        _ => unreachable!("{tier}"),
    }
}

fn features(tier: &str) -> Value {
    match tier {
        "starter" => json!(["basic_analytics"]),
        "professional" => json!(["basic_analytics", "advanced_analytics", "custom_models", "custom_integrations"]),
        _ => unreachable!("{tier}"),
    }
}

/// Checks `subscription` of a valid answer: tier, limits and the feature
/// list in all three places, and `expiresAt`.
#[track_caller]
fn assert_subscription(answer: &Value, tier: &str, expires_at: &str) {
    let subscription = &answer["subscription"];
    assert_eq!(subscription["tier"], tier, "{answer}");
    let mut expected = limits(tier);
    expected["allowedFeatures"] = features(tier);
    assert_eq!(subscription["limits"], expected, "{answer}");
    assert_eq!(subscription["features"], features(tier), "{answer}");
    assert_eq!(subscription["allowedFeatures"], features(tier), "{answer}");
    assert_eq!(subscription["expiresAt"], expires_at, "{answer}");
}

/// Checks the lease's tier, limits and features.
#[track_caller]
fn assert_lease_tier(lease: &LeaseBody, tier: &str) {
    assert_eq!(lease.tier, tier);
    let expected = limits(tier);
    assert_eq!(lease.limits.max_users, expected["maxUsers"].as_i64().unwrap());
    assert_eq!(lease.limits.max_data_volume_gb, expected["maxDataVolumeGB"].as_i64().unwrap());
    assert_eq!(lease.limits.max_api_calls, expected["maxApiCalls"].as_i64().unwrap());
    assert_eq!(lease.limits.model_size, expected["modelSize"].as_str().unwrap());
    assert_eq!(json!(lease.features), features(tier));
}

/// Waits for the scheduler to record `event_type` on a stream named
/// `stream…`, then for the read models, so that later head counts are ours.
async fn scheduled(s: &Server, org: &str, stream: &str, event_type: &str) {
    poll(&format!("the scheduler to append {event_type} to {stream}…"), || async {
        let audit = s.audit(org).await;
        audit
            .iter()
            .any(|e| {
                e["eventType"] == event_type
                    && e["actor"] == "scheduler"
                    && e["streamId"].as_str().is_some_and(|id| id.starts_with(stream))
            })
            .then_some(())
    })
    .await;
    s.wait_ready().await;
}

/// Audit entries of an organization on a validation stream.
async fn validations_on(s: &Server, org: &str, license: &str, day: &str) -> usize {
    s.wait_ready().await;
    let stream = format!("validation/{license}:{day}");
    s.audit(org).await.iter().filter(|e| e["streamId"] == stream.as_str()).count()
}

/// A request sent with our own client, to read the headers (`Retry-After`).
async fn raw(s: &Server, method: Method, bearer: Option<&str>, body: Option<Value>) -> reqwest::Response {
    let mut request = reqwest::Client::new().request(method.clone(), s.url(VALIDATE));
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    s.conformed(&method, VALIDATE, request.send().await.expect("the request is answered")).await
}

/// Checks a 429 `rate_limited` problem and returns its `Retry-After`.
async fn assert_rate_limited(response: reqwest::Response) -> u64 {
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    let text = response.text().await.expect("a body");
    assert_eq!(status, 429, "rate limited: {text}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{text}");
    let problem: Value = serde_json::from_str(&text).expect("problem+json");
    assert_eq!(problem["code"], "rate_limited", "{text}");
    let retry_after = retry_after.unwrap_or_else(|| panic!("a Retry-After header: {text}"));
    let seconds: u64 = retry_after.parse().unwrap_or_else(|_| panic!("Retry-After is whole seconds: {retry_after:?}"));
    assert!(seconds > 0, "Retry-After > 0");
    seconds
}

/// The text of `/metrics` (the operator may read it).
async fn metrics(s: &Server) -> String {
    let reply = s.get("/metrics", Some(OPERATOR)).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    reply.text
}

#[track_caller]
fn assert_metric(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "metrics lack `{line}`:\n{text}");
}

/// An answer without what differs between two validations (its id and
/// sequence).
fn comparable(answer: &Value) -> Value {
    let mut answer = answer.clone();
    let object = answer.as_object_mut().expect("an object");
    object.remove("validationId");
    object.remove("sequence");
    answer
}

// ---------------------------------------------------------------------------
// 1. VALID: the answer, the signed lease, and what the log records.

async fn a_valid_key_gets_a_signed_lease(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme Analytics", "starter", true, None).await;
    s.move_clock("2026-01-05T10:30:00Z").await;

    // Without clientInfo: the deployment is `default`, activated now (two
    // events: the activation and the validation).
    let before = s.head().await;
    let nonce = "n0nce-0123_abcdef";
    let body = json!({ "licenseKey": c.key, "nonce": nonce, "clientTime": "2026-01-05T10:29:58Z" });
    let answer = validate(&s, body).await;
    assert_eq!(s.head().await, before + 2, "a first activation appends two events: {answer}");
    assert_eq!(answer["sequence"].as_u64(), Some(before + 2));
    assert_eq!(answer["isValid"], true, "{answer}");
    assert_eq!(answer["isExpired"], false, "{answer}");
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(answer["warnings"], json!([]), "{answer}");
    assert_eq!(answer["licenseId"], c.license.as_str());
    let validation_id = id(&answer["validationId"]);
    assert!(uuid::Uuid::parse_str(&validation_id).is_ok(), "{validation_id}");
    assert_eq!(answer["organization"], json!({ "id": c.org, "name": "Acme Analytics" }));
    assert_eq!(answer["serverTime"], "2026-01-05T10:30:00Z");
    assert_subscription(&answer, "starter", "2027-01-01T00:00:00Z");

    // The lease verifies with the published lease key and binds this key,
    // this deployment, the nonce and the server's time.
    let lease = verified_lease(&s, &answer, &c.key).await;
    assert_eq!(lease.version, 1);
    assert_eq!(lease.license_id.0.to_string(), c.license);
    assert_eq!(lease.organization_id.0.to_string(), c.org);
    assert_eq!(lease.deployment_id, "default");
    assert_eq!(lease.nonce, nonce);
    assert_eq!(lease.client_time, Some(ts("2026-01-05T10:29:58Z")));
    assert_eq!(lease.issued_at, ts("2026-01-05T10:30:00Z"), "issuedAt is the server's time");
    assert_eq!(lease.lease_expires_at, plus_days(lease.issued_at, 7), "a lease lasts 7 days");
    assert_eq!(lease.code, "VALID");
    assert_lease_tier(&lease, "starter");
    // Only for this key, only with the lease key.
    let signed: SignedLease = serde_json::from_value(answer["lease"].clone()).unwrap();
    let lease_key = public_key(&s, "leases").await;
    let other_key = format!("{}x", c.key);
    assert_eq!(signed.verify(&lease_key, &other_key).err(), Some(LeaseError::OtherKey));
    let license_keys = public_key(&s, "licenseKeys").await;
    assert_eq!(signed.verify(&license_keys, &c.key).err(), Some(LeaseError::BadSignature));

    // `deployment_id: "default"` is the same deployment: one event.
    let answer = validate_appends(&s, &c.key, Some("default"), "VALID", 1).await;
    assert_eq!(verified_lease(&s, &answer, &c.key).await.deployment_id, "default");

    // The license list shows the deployment and the count.
    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["deployments"], json!(["default"]), "{listed}");
    assert_eq!(listed["validationCount"], 2, "{listed}");
    assert_eq!(listed["lastValidatedAt"], "2026-01-05T10:30:00Z", "{listed}");
    let text = s.get(&format!("/api/v1/organizations/{}/licenses", c.org), Some(OPERATOR)).await.text;
    assert!(!text.contains(&c.key), "the list never shows the key");

    // The next day: a new validation stream, the count goes on.
    s.move_clock("2026-01-06T08:00:00Z").await;
    let answer = validate_appends(&s, &c.key, None, "VALID", 1).await;
    let lease = verified_lease(&s, &answer, &c.key).await;
    assert_eq!(lease.issued_at, ts("2026-01-06T08:00:00Z"));
    assert_eq!(lease.lease_expires_at, ts("2026-01-13T08:00:00Z"));
    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["validationCount"], 3, "{listed}");
    assert_eq!(listed["lastValidatedAt"], "2026-01-06T08:00:00Z", "{listed}");
    assert_eq!(validations_on(&s, &c.org, &c.license, "2026-01-05").await, 2);
    assert_eq!(validations_on(&s, &c.org, &c.license, "2026-01-06").await, 1);
}

// ---------------------------------------------------------------------------
// 2. NOT_FOUND: unknown keys append nothing.

async fn unknown_keys_are_not_found_and_append_nothing(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    // A well-formed key, signed by another server (its own data directory).
    let foreign = {
        let other = Backend::sqlite().await;
        let o = other.start().await;
        let foreign = customer(&o, "Elsewhere", "starter", true, None).await;
        // It is valid there.
        assert_eq!(validate(&o, request(&foreign.key, None, None)).await["code"], "VALID");
        o.stop().await;
        foreign.key
    };
    assert!(foreign.starts_with("LK1-") && foreign.len() == c.key.len(), "{foreign}");
    // Our key with one character changed.
    let tampered = {
        let mut bytes = c.key.clone().into_bytes();
        let at = bytes.len() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let candidates = [
        ("garbage", "garbage".to_owned()),
        ("the prefix alone", "LK1-".to_owned()),
        ("another server's key", foreign),
        ("a tampered key", tampered),
        ("our key and one more character", format!("{}A", c.key)),
        ("an oversize key", format!("LK1-{}", "A".repeat(10_000))),
        ("an API token", c.admin.clone()),
    ];

    let before = s.head().await;
    for (what, key) in &candidates {
        let reply = s.post(VALIDATE, None, json!({ "licenseKey": key })).await;
        assert_eq!(reply.status.as_u16(), 200, "{what}: {}", reply.text);
        assert_not_found(&reply.json);
        let reply = s.get(VALIDATE, Some(key)).await;
        assert_eq!(reply.status.as_u16(), 200, "{what} (bearer): {}", reply.text);
        assert_not_found(&reply.json);
    }
    let text = metrics(&s).await;
    let not_found = (candidates.len() * 2).to_string();
    assert_metric(&text, &format!(r#"license_validations_total{{status="NOT_FOUND",tier="none"}} {not_found}"#));
    // No key at all: as the brief reads "a missing key", NOT_FOUND.
    for reply in [
        s.get(VALIDATE, None).await,
        s.post(VALIDATE, None, json!({})).await,
        s.post(VALIDATE, None, json!({ "clientInfo": { "deployment_id": "d1" } })).await,
        s.send(Method::POST, VALIDATE, None, Body::None, &[]).await,
    ] {
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_not_found(&reply.json);
    }
    // A key too large for a request body is refused as such, not a 5xx.
    let huge = s.post(VALIDATE, None, json!({ "licenseKey": "A".repeat(100 * 1024) })).await;
    huge.problem(413, "payload_too_large");
    assert_eq!(s.head().await, before, "unknown keys append nothing");

    // The real key still works.
    validate_appends(&s, &c.key, None, "VALID", 2).await;
}

// ---------------------------------------------------------------------------
// 3. REVOKED, and its precedence.

async fn a_revoked_key_is_refused(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    s.move_clock("2026-01-03T00:00:00Z").await;
    validate_appends(&s, &c.key, None, "VALID", 2).await;

    let revoked = s
        .post(&format!("/api/v1/licenses/{}/revoke", c.license), Some(OPERATOR), json!({ "reason": "key leaked" }))
        .await
        .expect(200);
    assert_eq!(revoked["sequence"].as_u64(), Some(s.head().await));
    let answer = validate_appends(&s, &c.key, None, "REVOKED", 1).await;
    assert_refused(&answer, "REVOKED", false);
    assert_eq!(answer["licenseId"], c.license.as_str());
    // A new deployment on a revoked key: REVOKED comes before TOO_MANY_DEPLOYMENTS.
    let answer = validate_appends(&s, &c.key, Some("another"), "REVOKED", 1).await;
    assert_refused(&answer, "REVOKED", false);
    // Bearer form too.
    let bearer = s.get(VALIDATE, Some(&c.key)).await.expect(200);
    assert_refused(&bearer, "REVOKED", false);

    // Cancelled as well: REVOKED comes before EXPIRED.
    let cancel = format!("/api/v1/subscriptions/{}/cancel", c.org);
    let cancelled = s.post(&cancel, Some(OPERATOR), json!({ "immediate": true })).await.expect(200);
    assert_eq!(cancelled["sequence"].as_u64(), Some(s.head().await), "an immediate cancellation ends at once");
    let answer = validate_appends(&s, &c.key, None, "REVOKED", 1).await;
    assert_refused(&answer, "REVOKED", false);

    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["status"], "revoked", "{listed}");
    assert_eq!(listed["validationCount"], 5, "refusals of a known key are recorded: {listed}");
    assert_eq!(listed["deployments"], json!(["default"]), "a refusal activates nothing: {listed}");
}

// ---------------------------------------------------------------------------
// 4. An upgrade: SUPERSEDED within the window, then REVOKED.

async fn an_upgrade_supersedes_then_revokes_the_old_key(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    s.move_clock("2026-01-10T00:00:00Z").await;
    validate_appends(&s, &c.key, None, "VALID", 2).await;

    let upgrade = json!({ "targetTier": "professional", "effectiveDate": "2026-01-16" });
    let upgraded =
        s.post(&format!("/api/v1/subscriptions/{}/upgrade", c.org), Some(&c.admin), upgrade).await.expect(200);
    let new_key = id(&upgraded["newLicenseKey"]);
    let new_license = {
        let all = licenses(&s, &c.org).await;
        id(&all.iter().find(|l| l["id"] != c.license.as_str()).expect("the new license")["id"])
    };

    // Before the effective day both keys are VALID, with the limits in
    // effect (starter); the old key's lease is a plain 7 days.
    let old = validate_appends(&s, &c.key, None, "VALID", 1).await;
    assert_eq!(old["isValid"], true);
    assert_subscription(&old, "starter", "2026-01-23T00:00:00Z");
    let lease = verified_lease(&s, &old, &c.key).await;
    assert_eq!(lease.lease_expires_at, ts("2026-01-17T00:00:00Z"));
    let new = validate_appends(&s, &new_key, None, "VALID", 2).await;
    assert_eq!(new["licenseId"], new_license.as_str());
    assert_subscription(&new, "starter", "2027-01-01T00:00:00Z");

    // On the effective day the old key is SUPERSEDED: valid, with a
    // warning and the new limits; its lease ends with the window.
    s.move_clock("2026-01-16T08:00:00Z").await;
    let old = validate_appends(&s, &c.key, None, "SUPERSEDED", 1).await;
    assert_eq!(old["isValid"], true, "{old}");
    assert_eq!(old["isExpired"], false, "{old}");
    let warnings = old["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "a SUPERSEDED answer warns: {old}");
    assert!(warnings[0].as_str().is_some_and(|w| !w.is_empty()), "{old}");
    assert_subscription(&old, "professional", "2026-01-23T00:00:00Z");
    let lease = verified_lease(&s, &old, &c.key).await;
    assert_eq!(lease.code, "SUPERSEDED");
    assert_lease_tier(&lease, "professional");
    assert_eq!(lease.issued_at, ts("2026-01-16T08:00:00Z"));
    assert!(lease.lease_expires_at <= ts("2026-01-23T00:00:00Z"), "the lease ends with the window: {lease:?}");
    assert_eq!(lease.lease_expires_at, ts("2026-01-23T00:00:00Z"));
    // From a deployment it never saw (maxDeployments 1): TOO_MANY_DEPLOYMENTS
    // comes before SUPERSEDED.
    let elsewhere = validate_appends(&s, &c.key, Some("elsewhere"), "TOO_MANY_DEPLOYMENTS", 1).await;
    assert_refused(&elsewhere, "TOO_MANY_DEPLOYMENTS", false);
    let new = validate_appends(&s, &new_key, None, "VALID", 1).await;
    assert_eq!(new["warnings"], json!([]));
    assert_subscription(&new, "professional", "2027-01-01T00:00:00Z");
    assert_eq!(verified_lease(&s, &new, &new_key).await.lease_expires_at, ts("2026-01-23T08:00:00Z"));

    // The window's last second.
    s.move_clock("2026-01-22T23:59:59Z").await;
    let old = validate_appends(&s, &c.key, None, "SUPERSEDED", 1).await;
    assert_eq!(verified_lease(&s, &old, &c.key).await.lease_expires_at, ts("2026-01-23T00:00:00Z"));

    // 7 x 24 hours after the effective day began: REVOKED (the scheduler
    // records the revocation too).
    s.move_clock("2026-01-23T00:00:00Z").await;
    scheduled(&s, &c.org, &format!("license/{}", c.license), "LicenseRevoked").await;
    let old = validate_appends(&s, &c.key, None, "REVOKED", 1).await;
    assert_refused(&old, "REVOKED", false);
    validate_appends(&s, &new_key, None, "VALID", 1).await;

    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["status"], "revoked", "{listed}");
    assert_eq!(listed["validationCount"], 6, "{listed}");
    assert_eq!(listed["lastValidatedAt"], "2026-01-23T00:00:00Z", "{listed}");
    assert_eq!(listed["deployments"], json!(["default"]), "{listed}");
}

// ---------------------------------------------------------------------------
// 5. EXPIRED: an immediate cancellation, and a term that ended.

async fn cancelled_and_ended_terms_are_expired(backend: Backend) {
    let s = backend.start().await;
    let acme = customer(&s, "Acme", "starter", true, None).await;
    let globex = customer(&s, "Globex", "starter", false, None).await;
    s.move_clock("2026-01-05T00:00:00Z").await;
    validate_appends(&s, &acme.key, None, "VALID", 2).await;

    // Cancelled at once by the operator.
    let cancel = format!("/api/v1/subscriptions/{}/cancel", acme.org);
    let cancelled = s.post(&cancel, Some(OPERATOR), json!({ "immediate": true })).await.expect(200);
    assert_eq!(cancelled["effectiveDate"], "2026-01-05");
    assert_eq!(cancelled["sequence"].as_u64(), Some(s.head().await), "an immediate cancellation ends at once");
    let answer = validate_appends(&s, &acme.key, None, "EXPIRED", 1).await;
    assert_refused(&answer, "EXPIRED", true);
    assert_eq!(answer["licenseId"], acme.license.as_str());

    // Globex does not renew: on the last second of its term it is VALID
    // and its lease ends with the term; then EXPIRED.
    s.move_clock("2026-12-31T23:59:59Z").await;
    let answer = validate_appends(&s, &globex.key, None, "VALID", 2).await;
    assert_subscription(&answer, "starter", "2027-01-01T00:00:00Z");
    let lease = verified_lease(&s, &answer, &globex.key).await;
    assert_eq!(lease.lease_expires_at, ts("2027-01-01T00:00:00Z"), "a lease never outlives the term");
    s.move_clock("2027-01-01T00:00:00Z").await;
    scheduled(&s, &globex.org, "org/", "SubscriptionEnded").await;
    let answer = validate_appends(&s, &globex.key, None, "EXPIRED", 1).await;
    assert_refused(&answer, "EXPIRED", true);
    // The same from a deployment the key never saw: EXPIRED comes before
    // TOO_MANY_DEPLOYMENTS.
    let answer = validate_appends(&s, &globex.key, Some("another"), "EXPIRED", 1).await;
    assert_refused(&answer, "EXPIRED", true);

    let listed = license(&s, &globex.org, &globex.license).await;
    assert_eq!(listed["validationCount"], 3, "{listed}");
    assert_eq!(listed["deployments"], json!(["default"]), "{listed}");
}

// ---------------------------------------------------------------------------
// 6. TOO_MANY_DEPLOYMENTS, and releasing one.

async fn too_many_deployments_until_one_is_released(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, Some(1)).await;
    let globex = customer(&s, "Globex", "starter", true, Some(2)).await;
    validate_appends(&s, &c.key, Some("dep-a"), "VALID", 2).await;
    validate_appends(&s, &c.key, Some("dep-a"), "VALID", 1).await;
    let answer = validate_appends(&s, &c.key, Some("dep-b"), "TOO_MANY_DEPLOYMENTS", 1).await;
    assert_refused(&answer, "TOO_MANY_DEPLOYMENTS", false);
    assert_eq!(answer["licenseId"], c.license.as_str());
    // No deployment id is `default`, another deployment.
    let answer = validate_appends(&s, &c.key, None, "TOO_MANY_DEPLOYMENTS", 1).await;
    assert_refused(&answer, "TOO_MANY_DEPLOYMENTS", false);
    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["deployments"], json!(["dep-a"]), "{listed}");
    assert_eq!(listed["validationCount"], 4, "{listed}");

    // Releasing: not by a viewer, not another organization's admin, not a
    // deployment that is not active; then by the org admin.
    let viewer = s
        .post(&format!("/api/v1/organizations/{}/tokens", c.org), Some(OPERATOR), json!({ "role": "viewer" }))
        .await
        .expect(201);
    let viewer = id(&viewer["token"]);
    let release = |dep: &str| format!("/api/v1/licenses/{}/deployments/{dep}/release", c.license);
    let before = s.head().await;
    s.post(&release("dep-a"), Some(&viewer), json!({})).await.problem(403, "forbidden");
    s.post(&release("dep-a"), Some(&globex.admin), json!({})).await.problem(404, "not_found");
    s.post(&release("dep-b"), Some(&c.admin), json!({})).await.problem(404, "not_found");
    assert_eq!(s.head().await, before, "refused releases append nothing");
    let released = s.post(&release("dep-a"), Some(&c.admin), json!({})).await.expect(200);
    assert_eq!(released["sequence"].as_u64(), Some(before + 1));
    assert_eq!(license(&s, &c.org, &c.license).await["deployments"], json!([]));
    // Its place frees when its last lease ends (tests/deployments.rs).
    s.move_clock(released["slotFreesAt"].as_str().unwrap()).await;

    // The second deployment takes the freed place; the first is now refused.
    let answer = validate_appends(&s, &c.key, Some("dep-b"), "VALID", 2).await;
    assert_eq!(verified_lease(&s, &answer, &c.key).await.deployment_id, "dep-b");
    validate_appends(&s, &c.key, Some("dep-a"), "TOO_MANY_DEPLOYMENTS", 1).await;
    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["deployments"], json!(["dep-b"]), "{listed}");
    assert_eq!(listed["validationCount"], 6, "{listed}");

    // maxDeployments 2: two deployments, not three.
    validate_appends(&s, &globex.key, Some("one"), "VALID", 2).await;
    validate_appends(&s, &globex.key, Some("two"), "VALID", 2).await;
    validate_appends(&s, &globex.key, Some("three"), "TOO_MANY_DEPLOYMENTS", 1).await;
    validate_appends(&s, &globex.key, Some("one"), "VALID", 1).await;
    assert_eq!(license(&s, &globex.org, &globex.license).await["deployments"], json!(["one", "two"]));
}

// ---------------------------------------------------------------------------
// 7. GET and POST with `Authorization: Bearer <key>` answer as the body form.

async fn bearer_forms_answer_as_the_body_form(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    s.move_clock("2026-01-03T09:00:00Z").await;

    let mut answers = Vec::new();
    let first = validate_appends(&s, &c.key, None, "VALID", 2).await;
    answers.push(first);
    for (what, method, body) in [
        ("GET with a bearer", Method::GET, Body::None),
        ("POST with a bearer", Method::POST, Body::None),
        ("POST with a bearer and an empty body", Method::POST, Body::Raw(Vec::new())),
    ] {
        let before = s.head().await;
        let answer = s.send(method, VALIDATE, Some(&c.key), body, &[]).await.expect(200);
        assert_eq!(s.head().await, before + 1, "{what} is recorded once: {answer}");
        assert_eq!(answer["sequence"].as_u64(), Some(before + 1), "{what}: {answer}");
        answers.push(answer);
    }
    // The scheme is case-insensitive (RFC 9110, 11.1), as on every route.
    for scheme in ["bearer", "BEARER"] {
        let before = s.head().await;
        let header = format!("{scheme} {}", c.key);
        let answer = s.send(Method::POST, VALIDATE, None, Body::None, &[("authorization", &header)]).await.expect(200);
        assert_eq!(answer["sequence"].as_u64(), Some(before + 1), "{scheme}: {answer}");
        answers.push(answer);
    }
    answers.push(validate_appends(&s, &c.key, None, "VALID", 1).await);
    for answer in &answers[1..] {
        assert_eq!(comparable(answer), comparable(&answers[0]), "every form answers the same");
    }
    verified_lease(&s, &answers[1], &c.key).await;

    // The same for a refusal, and for an unknown key.
    s.post(&format!("/api/v1/licenses/{}/revoke", c.license), Some(OPERATOR), json!({ "reason": "test" }))
        .await
        .expect(200);
    let body = comparable(&validate(&s, request(&c.key, None, None)).await);
    assert_eq!(body["code"], "REVOKED");
    assert_eq!(comparable(&s.get(VALIDATE, Some(&c.key)).await.expect(200)), body);
    let post = s.send(Method::POST, VALIDATE, Some(&c.key), Body::None, &[]).await.expect(200);
    assert_eq!(comparable(&post), body);
    let garbage = "LK1-not-a-key";
    let body = validate(&s, request(garbage, None, None)).await;
    assert_not_found(&body);
    assert_eq!(s.get(VALIDATE, Some(garbage)).await.expect(200), body);
    assert_eq!(s.send(Method::POST, VALIDATE, Some(garbage), Body::None, &[]).await.expect(200), body);
    assert_eq!(license(&s, &c.org, &c.license).await["validationCount"], 10);
}

// ---------------------------------------------------------------------------
// 8. Malformed requests: 400 validation_failed, nothing appended.

async fn malformed_requests_are_refused(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    validate_appends(&s, &c.key, None, "VALID", 2).await;

    let with = |field: &str, value: Value| {
        let mut body = request(&c.key, None, None);
        body[field] = value;
        Body::Json(body)
    };
    let long_deployment = request(&c.key, Some(&"d".repeat(129)), None);
    let spaced_deployment = request(&c.key, Some("dep 1"), None);
    let cases = [
        ("a nonce with spaces", with("nonce", json!("a nonce with spaces"))),
        ("a nonce of 129 characters", with("nonce", json!("n".repeat(129)))),
        ("a nonce that is not a string", with("nonce", json!(42))),
        ("a clientTime that is not a time", with("clientTime", json!("yesterday"))),
        ("a clientTime in no month", with("clientTime", json!("2026-13-01T00:00:00Z"))),
        ("a clientTime without a zone", with("clientTime", json!("2026-01-01 10:00"))),
        ("a deployment id of 129 characters", Body::Json(long_deployment)),
        ("a deployment id with a space", Body::Json(spaced_deployment)),
        ("invalid JSON", Body::Raw(format!("{{\"licenseKey\": \"{}", c.key).into_bytes())),
        ("a JSON array", Body::Raw(b"[]".to_vec())),
        ("a licenseKey that is not a string", Body::Json(json!({ "licenseKey": 7 }))),
    ];
    let before = s.head().await;
    for (what, body) in cases {
        let reply = s.send(Method::POST, VALIDATE, None, body, &[]).await;
        assert_eq!(reply.status.as_u16(), 400, "{what}: {}", reply.text);
        reply.problem(400, "validation_failed");
    }
    // The bearer form with a malformed body.
    let bad = Body::Json(json!({ "nonce": "not ok!" }));
    s.send(Method::POST, VALIDATE, Some(&c.key), bad, &[]).await.problem(400, "validation_failed");
    assert_eq!(s.head().await, before, "malformed requests append nothing");

    // The longest nonce is fine, and the lease echoes it.
    let nonce = format!("{}-_", "aZ09".repeat(31));
    assert_eq!(nonce.len(), 126);
    let nonce = format!("{nonce}xy");
    let answer = validate(&s, request(&c.key, None, Some(&nonce))).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(s.head().await, before + 1);
    assert_eq!(verified_lease(&s, &answer, &c.key).await.nonce, nonce);
}

// ---------------------------------------------------------------------------
// 9. Rate limits: per client address, and per key per UTC day.

async fn validations_are_limited_per_address(backend: Backend) {
    let s = backend.start_with(&["--validations-per-address-per-minute", "5"]).await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    let before = s.head().await;
    // Five requests, known and unknown keys alike, are answered.
    validate(&s, request(&c.key, None, None)).await;
    validate(&s, request(&c.key, None, None)).await;
    assert_not_found(&validate(&s, request("LK1-unknown", None, None)).await);
    s.get(VALIDATE, Some(&c.key)).await.expect(200);
    assert_not_found(&validate(&s, json!({ "licenseKey": "garbage" })).await);
    assert_eq!(s.head().await, before + 4);

    // The sixth is refused, whatever its form, and appends nothing.
    let seconds = assert_rate_limited(raw(&s, Method::POST, None, Some(request(&c.key, None, None))).await).await;
    assert!(seconds <= 60, "Retry-After within the minute: {seconds}");
    assert_rate_limited(raw(&s, Method::GET, Some(&c.key), None).await).await;
    assert_rate_limited(raw(&s, Method::POST, None, Some(json!({ "licenseKey": "garbage" }))).await).await;
    assert_eq!(s.head().await, before + 4, "rate-limited requests append nothing");

    // Other routes are not limited.
    assert_eq!(license(&s, &c.org, &c.license).await["validationCount"], 3);
    let text = metrics(&s).await;
    assert_metric(&text, r#"license_validations_total{status="rate_limited",tier="none"} 3"#);
    assert_metric(&text, r#"license_validations_total{status="VALID",tier="starter"} 3"#);
}

async fn validations_are_limited_per_key_per_day(backend: Backend) {
    let unlimited = ["--validations-per-address-per-minute", "0"];
    let s = backend.start_with(&unlimited).await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    let other = customer(&s, "Globex", "starter", true, None).await;
    s.move_clock("2026-01-05T18:30:00Z").await;
    let before = s.head().await;

    // 1,000 validations, then a restart, then 440 more (by a few concurrent
    // clients, as deployments of one key would).
    let turn = BULK.lock().await;
    let first_part = validate_many(&s, &c.key, 1000, BULK_CLIENTS).await;
    assert_eq!(s.head().await, before + 1001, "1,000 validations and one activation");
    s.stop().await;
    let s = backend.start_with(&unlimited).await;
    s.wait_ready().await;
    let second_part = validate_many(&s, &c.key, PER_DAY - 1000, BULK_CLIENTS).await;
    drop(turn);
    let elapsed = first_part.elapsed + second_part.elapsed;
    let conflicts = first_part.conflicts + second_part.conflicts;
    eprintln!("{PER_DAY} validations by {BULK_CLIENTS} clients took {elapsed:?} ({conflicts} 409 conflicts retried)");
    let head = s.head().await;
    assert_eq!(head, before + 1 + PER_DAY as u64);

    // The 1,441st: 429 until the next UTC midnight by the server's clock
    // (5 h 30 min away), in every form; nothing appended.
    let seconds = assert_rate_limited(raw(&s, Method::POST, None, Some(request(&c.key, None, None))).await).await;
    assert_eq!(seconds, 5 * 3600 + 30 * 60, "Retry-After is the time to the next UTC midnight");
    assert_rate_limited(raw(&s, Method::GET, Some(&c.key), None).await).await;
    assert_rate_limited(raw(&s, Method::POST, None, Some(request(&c.key, Some("dep-x"), None))).await).await;
    assert_eq!(s.head().await, head, "refused by the daily limit: nothing appended");
    assert_eq!(validations_on(&s, &c.org, &c.license, "2026-01-05").await, PER_DAY);
    assert_eq!(license(&s, &c.org, &c.license).await["validationCount"], PER_DAY);
    // Another key is not affected.
    validate_appends(&s, &other.key, None, "VALID", 2).await;

    // An hour later, still the same day: 4 h 30 min to go.
    s.move_clock("2026-01-05T19:30:00Z").await;
    let seconds = assert_rate_limited(raw(&s, Method::GET, Some(&c.key), None).await).await;
    assert_eq!(seconds, 4 * 3600 + 30 * 60);

    // The next day it works again.
    s.move_clock("2026-01-06T00:00:00Z").await;
    let answer = validate_appends(&s, &c.key, None, "VALID", 1).await;
    assert_eq!(answer["isValid"], true);
    assert_eq!(validations_on(&s, &c.org, &c.license, "2026-01-06").await, 1);
    assert_eq!(validations_on(&s, &c.org, &c.license, "2026-01-05").await, PER_DAY);
    let text = metrics(&s).await;
    assert_metric(&text, r#"license_validations_total{status="rate_limited",tier="none"} 4"#);
}

/// The bulk validations of the per-key tests (both backends) take turns,
/// so that each has the machine's cores while it is timed.
static BULK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What [`validate_many`] saw.
struct Bulk {
    elapsed: Duration,
    /// 409 `conflict` answers (retried): concurrent validations of one key
    /// the server gave up on. Tested on their own by
    /// `concurrent_validations_of_one_key_are_all_answered`.
    conflicts: usize,
}

/// `count` validations of `key` by `clients` concurrent clients, each
/// answered VALID; a 409 `conflict` is retried (and counted), as a client
/// would when told to "try again".
async fn validate_many(s: &Server, key: &str, count: usize, clients: usize) -> Bulk {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client_no| {
            let (url, key) = (s.url(VALIDATE), key.to_owned());
            let share = count / clients + usize::from(client_no < count % clients);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut conflicts = 0;
                let mut n = 0;
                while n < share {
                    let response = client
                        .post(&url)
                        .json(&json!({ "licenseKey": key }))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("validation {client_no}/{n} is answered: {e:?}"));
                    let status = response.status().as_u16();
                    let text = response.text().await.expect("a body");
                    let answer: Value = serde_json::from_str(&text).expect("JSON");
                    if status == 409 && answer["code"] == "conflict" {
                        conflicts += 1;
                        continue;
                    }
                    assert_eq!(status, 200, "validation {client_no}/{n}: {text}");
                    assert_eq!(answer["code"], "VALID", "validation {client_no}/{n}: {text}");
                    n += 1;
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.expect("a validating client");
    }
    Bulk { elapsed: started.elapsed(), conflicts }
}

/// Several deployments (or workers) validating one key at the same time
/// are each answered, and each validation is recorded once.
async fn concurrent_validations_of_one_key_are_all_answered(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, Some(1)).await;
    let before = s.head().await;
    let (clients, each) = (4, 25);
    let bulk = validate_many(&s, &c.key, clients * each, clients).await;
    // Whatever was refused was not recorded: the log holds the answered
    // validations and the one activation, exactly.
    assert_eq!(s.head().await, before + 1 + (clients * each) as u64);
    assert_eq!(license(&s, &c.org, &c.license).await["validationCount"], clients * each);
    assert_eq!(
        bulk.conflicts,
        0,
        "{} of {} concurrent validations of one key were answered 409 conflict (\"validated concurrently too \
         often; try again\") instead of being answered",
        bulk.conflicts,
        clients * each + bulk.conflicts
    );
}

// ---------------------------------------------------------------------------
// 10. Metrics.

async fn metrics_count_validations(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    for _ in 0..3 {
        validate(&s, request(&c.key, None, None)).await;
    }
    assert_not_found(&validate(&s, request("garbage", None, None)).await);
    assert_not_found(&s.get(VALIDATE, Some("LK1-unknown")).await.expect(200));
    let bad_nonce = Body::Json(request(&c.key, None, Some("bad nonce")));
    s.send(Method::POST, VALIDATE, None, bad_nonce, &[]).await.problem(400, "validation_failed");
    let broken = Body::Raw(b"{".to_vec());
    s.send(Method::POST, VALIDATE, None, broken, &[]).await.problem(400, "validation_failed");
    s.post(&format!("/api/v1/licenses/{}/revoke", c.license), Some(OPERATOR), json!({ "reason": "test" }))
        .await
        .expect(200);
    validate_appends(&s, &c.key, None, "REVOKED", 1).await;

    let text = metrics(&s).await;
    assert_metric(&text, r#"license_validations_total{status="VALID",tier="starter"} 3"#);
    assert_metric(&text, r#"license_validations_total{status="NOT_FOUND",tier="none"} 2"#);
    assert_metric(&text, r#"license_validations_total{status="malformed",tier="none"} 2"#);
    assert_metric(&text, r#"license_validations_total{status="REVOKED",tier="starter"} 1"#);
    assert!(text.contains("# TYPE license_validations counter"), "{text}");
}

// ---------------------------------------------------------------------------
// 11. The seed's TypeScript `LicenseManager`, in Node, against the server.

/// Runs tests/seed/license-manager.mjs; `None` when `node` is not installed.
async fn license_manager(s: &Server, action: &str, key: &str) -> Option<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed/license-manager.mjs");
    let run = tokio::process::Command::new("node")
        .arg(script)
        .arg(action)
        .env("LEDGER_API_BASE", s.url("/api/v1"))
        .env("LEDGER_LICENSE_KEY", key)
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(60), run).await.expect("node finishes in time") {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running node: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node {script} {action}: {:?}\n{stdout}\n{stderr}", output.status);
    Some(serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("JSON from the script ({e}): {stdout}")))
}

async fn the_seeds_license_manager_in_node(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    let before = s.head().await;
    let Some(result) = license_manager(&s, "check", &c.key).await else {
        let test = "the_seeds_license_manager_in_node";
        return store::testing::skip(test, store::testing::Peer::Node, "`node` is not on PATH");
    };
    assert_eq!(
        result,
        json!({ "validateLicense": true, "basic_analytics": true, "white_labeling": false, "maxUsers_3": true }),
        "validateLicense(), checkFeatureAccess('basic_analytics'), checkFeatureAccess('white_labeling'), \
         checkUsageLimit('maxUsers', 3)"
    );
    assert_eq!(s.head().await, before + 2, "one validation (GET with a bearer) and the activation");

    s.post(&format!("/api/v1/licenses/{}/revoke", c.license), Some(OPERATOR), json!({ "reason": "test" }))
        .await
        .expect(200);
    let result = license_manager(&s, "validate", &c.key).await.expect("node ran before");
    assert_eq!(result, json!({ "validateLicense": false }), "a revoked key");
    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["validationCount"], 2, "{listed}");
}

/// The published next lease key, if any.
async fn next_lease_key(s: &Server) -> Value {
    s.get("/api/v1/keys", None).await.expect(200)["leases"]["next"].clone()
}

async fn the_lease_key_is_announced_then_rotated(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme Analytics", "starter", true, None).await;
    let old = public_key(&s, "leases").await;
    assert_eq!(next_lease_key(&s).await, Value::Null, "nothing announced yet");
    s.stop().await;

    // Announced: published as `next` while the old key still signs.
    let output = backend.cli(&["keys", "prepare-lease"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let prepared: Value = serde_json::from_slice(&output.stdout).unwrap();
    let s = backend.start().await;
    assert_eq!(next_lease_key(&s).await, prepared["nextKey"]);
    assert_eq!(public_key(&s, "leases").await, old);
    let answer = validate(&s, request(&c.key, None, None)).await;
    verified_lease(&s, &answer, &c.key).await;
    s.stop().await;

    // Rotated: the announced key signs, the old one no longer verifies.
    let output = backend.cli(&["keys", "rotate-lease"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rotated: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (&rotated["oldKey"], &rotated["newKey"]),
        (&json!(STANDARD.encode(old.as_bytes())), &prepared["nextKey"])
    );
    let s = backend.start().await;
    assert_eq!(json!(STANDARD.encode(public_key(&s, "leases").await.as_bytes())), prepared["nextKey"]);
    assert_eq!(next_lease_key(&s).await, Value::Null);
    let answer = validate(&s, request(&c.key, None, None)).await;
    verified_lease(&s, &answer, &c.key).await;
    let lease: SignedLease = serde_json::from_value(answer["lease"].clone()).unwrap();
    assert!(lease.verify(&old, &c.key).is_err(), "the retired key does not verify the new leases");

    // Rotating again needs a new announcement first.
    let output = backend.cli(&["keys", "rotate-lease"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("prepare-lease"), "{output:?}");
}

/// The license-key signing key: announced (signed by the current key),
/// then rotated. Keys signed before keep validating and are shown again as
/// they were issued (an idempotent retry derives the key anew from its
/// event); keys issued after are signed with the new key only.
async fn the_license_signing_key_is_announced_then_rotated(backend: Backend) {
    let s = backend.start().await;
    let org = s.create_org("Acme Analytics").await;
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "autoRenew": true });
    let created = s.post_keyed("/api/v1/subscriptions", OPERATOR, "sub-acme", body.clone()).await.expect(201);
    let old_key = id(&created["licenseKey"]);
    let old = public_key(&s, "licenseKeys").await;
    assert!(verify_license_key(&old, &old_key).is_some(), "signed by the published key");
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    assert_eq!(keys["licenseKeys"]["next"], Value::Null, "nothing announced yet");
    s.stop().await;

    let output = backend.cli(&["keys", "prepare-license"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let prepared: Value = serde_json::from_slice(&output.stdout).unwrap();
    let s = backend.start().await;
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    assert_eq!(keys["licenseKeys"]["next"], prepared["nextKey"]);
    let next = public_key_of(&prepared["nextKey"]);
    let signature = STANDARD.decode(id(&keys["licenseKeys"]["nextSignature"])).unwrap();
    let domain = domain::keys::NEXT_LICENSE_SIGNING_KEY_DOMAIN;
    assert!(
        domain::keys::verify_next_key_announcement(domain, &old, &next, &signature),
        "announced by the current key"
    );
    s.stop().await;

    let output = backend.cli(&["keys", "rotate-license"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let s = backend.start().await;
    assert_eq!(public_key(&s, "licenseKeys").await, next);
    // Issued before: still valid, and shown again as issued.
    let answer = validate(&s, request(&old_key, None, None)).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    let retried = s.post_keyed("/api/v1/subscriptions", OPERATOR, "sub-acme", body).await.expect(201);
    assert_eq!(id(&retried["licenseKey"]), old_key, "the retry shows the key signed by the retired key");
    // Issued after: signed by the new key only.
    let c = customer(&s, "Beta", "starter", true, None).await;
    assert!(verify_license_key(&next, &c.key).is_some());
    assert!(verify_license_key(&old, &c.key).is_none(), "the retired key signs no new key");
    assert_eq!(validate(&s, request(&c.key, None, None)).await["code"], "VALID");
    s.stop().await;

    let output = backend.cli(&["keys", "rotate-license"]).await;
    assert!(!output.status.success(), "rotating again needs a new announcement");
    assert!(String::from_utf8_lossy(&output.stderr).contains("prepare-license"), "{output:?}");
}

/// A public key from its standard base64 text.
fn public_key_of(text: &Value) -> VerifyingKey {
    let bytes: [u8; 32] = STANDARD.decode(id(text)).expect("standard base64").try_into().expect("32 bytes");
    VerifyingKey::from_bytes(&bytes).expect("an Ed25519 public key")
}

// ---------------------------------------------------------------------------
// The validation cache: a change made through this server is seen at once.

/// A key validated a moment ago (its facts in the server's validation
/// cache, `usecases::validation_cache`) is decided on fresh state by its
/// next validation after a change made through the same server: the
/// subscription cancelled, then the key revoked.
async fn a_change_here_is_seen_at_once_although_the_key_was_cached(backend: Backend) {
    let s = backend.start().await;
    let c = customer(&s, "Acme", "starter", true, None).await;
    s.move_clock("2026-01-03T00:00:00Z").await;
    validate_appends(&s, &c.key, None, "VALID", 2).await;
    // Validations that only record themselves: the next ones read the cache.
    validate_appends(&s, &c.key, None, "VALID", 1).await;
    validate_appends(&s, &c.key, None, "VALID", 1).await;

    let cancel = format!("/api/v1/subscriptions/{}/cancel", c.org);
    s.post(&cancel, Some(OPERATOR), json!({ "immediate": true })).await.expect(200);
    assert_refused(&validate_appends(&s, &c.key, None, "EXPIRED", 1).await, "EXPIRED", true);
    validate_appends(&s, &c.key, None, "EXPIRED", 1).await;

    let revoke = format!("/api/v1/licenses/{}/revoke", c.license);
    s.post(&revoke, Some(OPERATOR), json!({ "reason": "key leaked" })).await.expect(200);
    assert_refused(&validate_appends(&s, &c.key, None, "REVOKED", 1).await, "REVOKED", false);
    let listed = license(&s, &c.org, &c.license).await;
    assert_eq!(listed["validationCount"], 6, "every validation is recorded, cached or not: {listed}");
}

backends!(
    a_valid_key_gets_a_signed_lease,
    unknown_keys_are_not_found_and_append_nothing,
    a_revoked_key_is_refused,
    an_upgrade_supersedes_then_revokes_the_old_key,
    cancelled_and_ended_terms_are_expired,
    too_many_deployments_until_one_is_released,
    bearer_forms_answer_as_the_body_form,
    malformed_requests_are_refused,
    validations_are_limited_per_address,
    validations_are_limited_per_key_per_day,
    concurrent_validations_of_one_key_are_all_answered,
    metrics_count_validations,
    the_seeds_license_manager_in_node,
    the_lease_key_is_announced_then_rotated,
    the_license_signing_key_is_announced_then_rotated,
    a_change_here_is_seen_at_once_although_the_key_was_cached,
);

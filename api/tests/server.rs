//! Black-box tests of the `ledger` HTTP server: the real binary, started
//! as a child process, on SQLite and on PostgreSQL.
//!
//! Each test is written once against a `Backend` and instantiated for both
//! by `backends!` at the bottom. PostgreSQL variants need `DATABASE_URL`
//! and skip with a notice without it (they fail under CI instead).

// Test code: a scenario or fixture reads best in one piece; the 70-line
// limit (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{AUDITOR, Backend, Body, OPERATOR, Server, id, poll};
use reqwest::Method;
use serde_json::{Value, json};

/// The event types of audit entries, in order.
fn event_types(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["eventType"].as_str().expect("an eventType")).collect()
}

fn count(entries: &[Value], event_type: &str) -> usize {
    entries.iter().filter(|e| e["eventType"] == event_type).count()
}

/// Sequences of audit entries rise strictly.
#[track_caller]
fn assert_rising(entries: &[Value]) {
    let sequences: Vec<u64> = entries.iter().map(|e| e["sequence"].as_u64().expect("a sequence")).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "audit sequences rise: {sequences:?}");
}

async fn enforcement(s: &Server, org: &str, token: &str, query: &str) -> Value {
    s.get(&format!("/api/v1/enforcement/{org}/check?{query}"), Some(token)).await.expect(200)
}

async fn licenses(s: &Server, org: &str, token: &str) -> (Vec<Value>, String) {
    let reply = s.get(&format!("/api/v1/organizations/{org}/licenses"), Some(token)).await;
    let text = reply.text.clone();
    let items = reply.expect(200).as_array().expect("a license list").clone();
    (items, text)
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

/// Adds a user; returns the answer.
async fn add_user(s: &Server, org: &str, token: &str, email: &str, role: &str) -> common::Reply {
    s.post(&format!("/api/v1/organizations/{org}/users"), Some(token), json!({ "email": email, "role": role })).await
}

/// Sends a request that must be refused with `status` and `code`, and
/// checks that the log did not move.
#[allow(clippy::too_many_arguments)]
async fn refused(
    s: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Body,
    headers: &[(&str, &str)],
    status: u16,
    code: &str,
) -> Value {
    let before = s.head().await;
    let problem = s.send(method, path, token, body, headers).await.problem(status, code);
    assert_eq!(s.head().await, before, "a refused {path} ({code}) appends nothing");
    problem
}

// ---------------------------------------------------------------------------
// 1. The full lifecycle.

async fn full_lifecycle(backend: Backend) {
    let s = backend.start().await;
    assert_eq!(s.get("/health", None).await.expect(200), json!({ "status": "ok" }));

    // An organization, by the operator only.
    let org_body = json!({ "name": "Acme Analytics", "domain": "acme.example", "industry": "manufacturing", "employeeCount": 250 });
    s.post("/api/v1/organizations", Some(AUDITOR), org_body.clone()).await.problem(403, "forbidden");
    let created = s.post("/api/v1/organizations", Some(OPERATOR), org_body).await.expect(201);
    let org = id(&created["id"]);
    let mut last = created["sequence"].as_u64().expect("a sequence");
    let organizations = s.get("/api/v1/organizations", Some(AUDITOR)).await.expect(200);
    let listed = organizations["items"].as_array().unwrap().iter().find(|o| o["id"] == org.as_str()).expect("listed");
    assert_eq!(listed["name"], "Acme Analytics");
    assert_eq!(listed["domain"], "acme.example");
    assert_eq!(listed["employeeCount"], 250);

    // Its first admin, added by the operator, and an org admin token.
    let ada = add_user(&s, &org, OPERATOR, "ada@acme.example", "admin").await.expect(201);
    assert!(ada["id"].is_string());
    assert!(ada["sequence"].as_u64().unwrap() > last);
    let issued = s
        .post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" }))
        .await
        .expect(201);
    let admin = id(&issued["token"]);
    let token_id = id(&issued["tokenId"]);
    assert!(issued["sequence"].as_u64().unwrap() > ada["sequence"].as_u64().unwrap());
    assert_ne!(admin, token_id, "the token is a secret, not its id");

    // The admin token is an org admin, not an operator.
    let subscription_body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01" });
    s.post("/api/v1/subscriptions", Some(&admin), subscription_body.clone()).await.problem(403, "forbidden");
    s.post("/api/v1/organizations", Some(&admin), json!({ "name": "Not Mine" })).await.problem(403, "forbidden");

    // A starter subscription from 2026-01-01.
    let subscribed = s.post("/api/v1/subscriptions", Some(OPERATOR), subscription_body).await.expect(201);
    let subscription_id = id(&subscribed["subscriptionId"]);
    let first_key = id(&subscribed["licenseKey"]);
    assert!(first_key.len() >= 22, "a license key carries at least 128 random bits: {first_key}");

    let details = s.subscription(&org, &admin).await;
    assert_eq!(details["id"], subscription_id.as_str());
    assert_eq!(details["organizationId"], org.as_str());
    assert_eq!(details["tier"], "starter");
    assert_eq!(details["status"], "active");
    assert_eq!(details["startDate"], "2026-01-01");
    assert_eq!(details["endDate"], "2027-01-01");
    assert_eq!(details["autoRenew"], true);
    assert_eq!(details["limits"]["maxUsers"], 5);
    assert_eq!(details["limits"]["maxDataVolumeGB"], 1000);
    assert_eq!(details["limits"]["maxApiCalls"], 10000);
    assert_eq!(details["limits"]["modelSize"], "small");
    assert_eq!(details["limits"]["allowedFeatures"], json!(["basic_analytics"]));
    assert_eq!(details["currentUsage"]["users"], 1);

    // Another organization, on enterprise: unlimited limits are -1, and
    // Acme's admin cannot see it.
    let globex = s.create_org("Globex").await;
    s.create_subscription(&globex, "enterprise", "2026-01-01", true).await;
    let enterprise = s.subscription(&globex, AUDITOR).await;
    assert_eq!(enterprise["tier"], "enterprise");
    assert_eq!(enterprise["limits"]["maxUsers"], -1);
    assert_eq!(enterprise["limits"]["maxApiCalls"], -1);
    assert_eq!(enterprise["limits"]["maxDataVolumeGB"], 5000);
    s.get(&format!("/api/v1/subscriptions/{globex}"), Some(&admin)).await.problem(404, "not_found");
    add_user(&s, &globex, &admin, "mallory@acme.example", "admin").await.problem(404, "not_found");

    // Seats: starter has 5. Ada and four more fill them.
    let mut users = Vec::new();
    for (email, role) in [
        ("bo@acme.example", "analyst"),
        ("cy@acme.example", "viewer"),
        ("di@acme.example", "viewer"),
        ("ed@acme.example", "analyst"),
    ] {
        let user = add_user(&s, &org, &admin, email, role).await.expect(201);
        users.push(id(&user["id"]));
    }
    let full = enforcement(&s, &org, &admin, "action=ADD_USER").await;
    assert_eq!(full, json!({ "allowed": false, "reason": "limit_reached", "limit": 5, "current": 5 }));
    let head = s.head().await;
    let sixth = add_user(&s, &org, &admin, "fay@acme.example", "viewer").await.problem(409, "seat_limit_reached");
    assert!(sixth["detail"].is_string());
    assert_eq!(s.head().await, head, "a refused user appends nothing");

    // Deactivating one frees a seat.
    let deactivated = s
        .post(&format!("/api/v1/organizations/{org}/users/{}/deactivate", users[1]), Some(&admin), json!({}))
        .await
        .expect(200);
    assert_eq!(deactivated["sequence"].as_u64(), Some(head + 1));
    s.post(&format!("/api/v1/organizations/{org}/users/{}/deactivate", users[1]), Some(&admin), json!({}))
        .await
        .problem(409, "conflict");
    let freed = enforcement(&s, &org, &admin, "action=ADD_USER").await;
    assert_eq!(freed, json!({ "allowed": true, "reason": null, "limit": 5, "current": 4 }));
    add_user(&s, &org, &admin, "fay@acme.example", "viewer").await.expect(201);
    assert_eq!(s.subscription(&org, &admin).await["currentUsage"]["users"], 5);

    // Roles change; the last active admin keeps theirs, a deactivated user
    // has none to change, and a refusal appends nothing.
    let role = |user: &str| format!("/api/v1/organizations/{org}/users/{user}/role");
    let head = s.head().await;
    let promoted = s.post(&role(&users[0]), Some(&admin), json!({ "role": "admin" })).await.expect(200);
    assert_eq!(promoted["sequence"].as_u64(), Some(head + 1));
    s.post(&role(&users[0]), Some(&admin), json!({ "role": "admin" })).await.problem(409, "conflict");
    s.post(&role(&users[1]), Some(&admin), json!({ "role": "admin" })).await.problem(409, "conflict");
    s.post(&role(&users[0]), Some(&admin), json!({ "role": "owner" })).await.problem(400, "validation_failed");
    // Two admins: Ada may step down, then Bo (the last) may not.
    let ada = id(&ada["id"]);
    s.post(&role(&ada), Some(&admin), json!({ "role": "analyst" })).await.expect(200);
    let head = s.head().await;
    s.post(&role(&users[0]), Some(&admin), json!({ "role": "viewer" })).await.problem(409, "last_admin");
    assert_eq!(s.head().await, head, "a refused change appends nothing");

    let text = metrics(&s).await;
    assert_metric(&text, r#"active_subscriptions_total{tier="starter"} 1"#);
    assert_metric(&text, r#"active_subscriptions_total{tier="professional"} 0"#);
    assert_metric(&text, r#"active_subscriptions_total{tier="enterprise"} 1"#);

    // 2026-01-10: upgrade to professional effective 2026-01-16 (worked example 2).
    s.post("/api/v1/test-clock", Some(&admin), json!({ "now": "2026-01-10T00:00:00Z" }))
        .await
        .problem(403, "forbidden");
    s.move_clock("2026-01-10T00:00:00Z").await;
    let upgrade = json!({ "targetTier": "professional", "effectiveDate": "2026-01-16" });
    let upgraded = s.post(&format!("/api/v1/subscriptions/{org}/upgrade"), Some(&admin), upgrade).await.expect(200);
    assert_eq!(upgraded["success"], true);
    assert_eq!(upgraded["newSubscriptionId"], subscription_id.as_str(), "an upgrade keeps the subscription");
    assert_eq!(upgraded["proratedAmount"], "1290.32");
    assert_eq!(upgraded["effectiveDate"], "2026-01-16");
    let second_key = id(&upgraded["newLicenseKey"]);
    assert_ne!(second_key, first_key, "an upgrade issues a new key");
    let upgrade_sequence = upgraded["sequence"].as_u64().unwrap();

    // Until the 16th the subscription is still starter.
    let details = s.subscription(&org, &admin).await;
    assert_eq!(details["tier"], "starter");
    assert_eq!(details["limits"]["maxUsers"], 5);

    // Two licenses, never a key.
    let (list, text) = licenses(&s, &org, &admin).await;
    assert_eq!(list.len(), 2, "{text}");
    assert!(!text.contains(&first_key) && !text.contains(&second_key), "the license list never shows a key: {text}");
    assert_ne!(list[0]["id"], list[1]["id"]);
    for license in &list {
        assert_eq!(license["status"], "valid", "before the effective day both keys are valid: {text}");
        assert_eq!(license["deployments"], json!([]));
    }
    assert_eq!(list[0]["issuedAt"], "2026-01-01T00:00:00Z");
    assert_eq!(
        list[0]["expiresAt"], "2026-01-23T00:00:00Z",
        "the old key ends 7 x 24 h after the effective day starts"
    );
    assert_eq!(list[1]["issuedAt"], "2026-01-10T00:00:00Z");
    assert_eq!(list[1]["expiresAt"], "2027-01-01T00:00:00Z");

    // Enforcement answers for the tier in effect today.
    let basic = enforcement(&s, &org, &admin, "action=ACCESS_FEATURE&feature=basic_analytics").await;
    assert_eq!(basic["allowed"], true);
    let advanced = enforcement(&s, &org, &admin, "action=ACCESS_FEATURE&feature=advanced_analytics").await;
    assert_eq!(advanced, json!({ "allowed": false, "reason": "feature_not_in_tier" }));
    let seats = enforcement(&s, &org, &admin, "action=ADD_USER").await;
    assert_eq!(seats, json!({ "allowed": false, "reason": "limit_reached", "limit": 5, "current": 5 }));

    // A downgrade waits for the term's end.
    let downgraded = s
        .post(&format!("/api/v1/subscriptions/{org}/downgrade"), Some(&admin), json!({ "targetTier": "starter" }))
        .await
        .expect(200);
    assert_eq!(downgraded["effectiveDate"], "2027-01-01");
    assert_eq!(downgraded["sequence"].as_u64(), Some(upgrade_sequence + 1));
    assert_eq!(s.subscription(&org, &admin).await["scheduledDowngrade"], "starter");

    // An extra TB of data from 2026-01-20, at the professional list price.
    let addon = json!({ "kind": "extra_data_tb", "quantity": 1, "effectiveDate": "2026-01-20" });
    let added = s.post(&format!("/api/v1/subscriptions/{org}/addons"), Some(&admin), addon).await.expect(201);
    let addon_id = id(&added["addonId"]);
    let details = s.subscription(&org, &admin).await;
    let addons = details["addons"].as_array().expect("add-ons");
    assert_eq!(addons.len(), 1);
    assert_eq!(addons[0]["id"], addon_id.as_str());
    assert_eq!(addons[0]["kind"], "extra_data_tb");
    assert_eq!(addons[0]["quantity"], 1);
    assert_eq!(addons[0]["annualPrice"], "4000.00");
    assert_eq!(addons[0]["effectiveDate"], "2026-01-20");
    assert_eq!(details["limits"]["maxDataVolumeGB"], 1000, "neither the upgrade nor the add-on is in effect yet");

    // 2026-01-16: professional is in effect.
    s.move_clock("2026-01-16T00:00:00Z").await;
    let details = s.subscription(&org, &admin).await;
    assert_eq!(details["tier"], "professional");
    assert_eq!(details["status"], "active");
    assert_eq!(details["limits"]["maxUsers"], 10);
    assert_eq!(details["limits"]["maxDataVolumeGB"], 3000);
    assert_eq!(details["limits"]["maxApiCalls"], 50000);
    assert_eq!(details["limits"]["modelSize"], "medium");
    let advanced = enforcement(&s, &org, &admin, "action=ACCESS_FEATURE&feature=advanced_analytics").await;
    assert_eq!(advanced["allowed"], true);
    let white_label = enforcement(&s, &org, &admin, "action=ACCESS_FEATURE&feature=white_labeling").await;
    assert_eq!(white_label["allowed"], false);
    let seats = enforcement(&s, &org, &admin, "action=ADD_USER").await;
    assert_eq!(seats, json!({ "allowed": true, "reason": null, "limit": 10, "current": 5 }));
    let (list, text) = licenses(&s, &org, &admin).await;
    assert_eq!(list[0]["status"], "superseded", "{text}");
    assert_eq!(list[0]["supersededUntil"], "2026-01-23T00:00:00Z");
    assert_eq!(list[1]["status"], "valid", "{text}");
    for license in &list {
        assert_eq!(license["tier"], "professional", "both keys report the limits in effect: {text}");
    }
    let text = metrics(&s).await;
    assert_metric(&text, r#"active_subscriptions_total{tier="professional"} 1"#);
    assert_metric(&text, r#"active_subscriptions_total{tier="starter"} 0"#);
    assert_metric(&text, r#"active_subscriptions_total{tier="enterprise"} 1"#);

    // 2026-01-20: the add-on raises the data limit by 1,000 GB.
    s.move_clock("2026-01-20T00:00:00Z").await;
    assert_eq!(s.subscription(&org, &admin).await["limits"]["maxDataVolumeGB"], 4000);
    let upload = enforcement(&s, &org, &admin, "action=UPLOAD_DATA").await;
    assert_eq!(upload["allowed"], true);
    assert_eq!(upload["limit"], 4000);

    // Cancel at the term's end: auto-renewal off, still active.
    let cancelled = s.post(&format!("/api/v1/subscriptions/{org}/cancel"), Some(&admin), json!({})).await.expect(200);
    assert_eq!(cancelled["effectiveDate"], "2027-01-01");
    last = cancelled["sequence"].as_u64().unwrap();
    let details = s.subscription(&org, &admin).await;
    assert_eq!(details["autoRenew"], false);
    assert_eq!(details["status"], "active");
    assert_eq!(details["cancelledFrom"], Value::Null);

    // The audit list: every event of the organization, in order.
    let audit = s.audit(&org).await;
    assert_eq!(
        event_types(&audit),
        [
            "OrganizationCreated",
            "UserAdded",
            "ApiTokenIssued",
            "SubscriptionStarted",
            "SubscriptionCreated",
            "LicenseIssued",
            "UserAdded",
            "UserAdded",
            "UserAdded",
            "UserAdded",
            "UserDeactivated",
            "UserAdded",
            "UserRoleChanged",
            "UserRoleChanged",
            "SubscriptionUpgraded",
            "LicenseSuperseded",
            "LicenseIssued",
            "DowngradeScheduled",
            "AddonAdded",
            "AutoRenewalCancelled",
        ]
    );
    assert_rising(&audit);
    assert!(audit.iter().all(|e| e["organizationId"] == org.as_str()));
    assert_eq!(audit[0]["sequence"], created["sequence"]);
    assert_eq!(audit[0]["actor"], "operator");
    let upgrade_entry = audit.iter().find(|e| e["eventType"] == "SubscriptionUpgraded").unwrap();
    assert_eq!(upgrade_entry["actor"], format!("org:{org}:admin:token:{token_id}"));
    assert_eq!(upgrade_entry["occurredAt"], "2026-01-10T00:00:00Z", "events carry the business clock's time");
    assert_eq!(audit.last().unwrap()["sequence"].as_u64(), Some(last));
    // The auditor reads every organization's; an org admin only its own.
    let all = s.get("/api/v1/audit?limit=200", Some(AUDITOR)).await.expect(200);
    assert!(all["items"].as_array().unwrap().iter().any(|e| e["organizationId"] == globex.as_str()));
    s.get("/api/v1/audit", Some(&admin)).await.problem(403, "forbidden");
    s.get(&format!("/api/v1/audit?organizationId={globex}"), Some(&admin)).await.problem(404, "not_found");
    let own = s.get(&format!("/api/v1/audit?organizationId={org}&limit=200"), Some(&admin)).await.expect(200);
    assert_eq!(own["items"].as_array().unwrap().len(), audit.len());

    // The log head is the last command's sequence.
    let head = s.get("/api/v1/log/head", Some(AUDITOR)).await.expect(200);
    assert_eq!(head["sequence"].as_u64(), Some(last));
    let chain = head["chainHash"].as_str().expect("a chain hash");
    assert!(chain.len() == 64 && chain.bytes().all(|b| b.is_ascii_hexdigit()), "{chain}");
    s.get("/api/v1/log/head", Some(&admin)).await.problem(403, "forbidden");

    // Public keys need no credential.
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    assert_eq!(keys["algorithm"], "Ed25519");
    for purpose in ["licenseKeys", "leases", "checkpoints"] {
        let current = keys[purpose]["current"].as_str().unwrap_or_else(|| panic!("{purpose} in {keys}"));
        assert_eq!(current.len(), 44, "a base64 Ed25519 public key: {current}");
    }

    assert_eq!(s.get("/health", None).await.expect(200), json!({ "status": "ok" }));
    // Readiness is public; its figures are the operator's and auditor's.
    assert_eq!(s.get("/ready", None).await.expect(200), json!({ "status": "ready" }));
    let ready = s.get("/ready", Some(OPERATOR)).await.expect(200);
    assert_eq!(ready, json!({ "status": "ready", "head": last, "applied": last }));
}

// ---------------------------------------------------------------------------
// 2. Idempotency-Key.

async fn idempotency_keys(backend: Backend) {
    let s = backend.start().await;
    let org = s.create_org("Initech").await;
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01" });

    let first =
        s.post_keyed("/api/v1/subscriptions", OPERATOR, "create-subscription-1", body.clone()).await.expect(201);
    let head = s.head().await;
    assert_eq!(first["sequence"].as_u64(), Some(head));

    // The same key and body: the first answer again, nothing appended.
    let again =
        s.post_keyed("/api/v1/subscriptions", OPERATOR, "create-subscription-1", body.clone()).await.expect(201);
    assert_eq!(again, first, "a retry is answered with the first response, license key included");
    assert_eq!(s.head().await, head);

    // The same key with another body, or another path: a conflict.
    let other = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-02" });
    let path = "/api/v1/subscriptions";
    let key = [("idempotency-key", "create-subscription-1")];
    refused(&s, Method::POST, path, Some(OPERATOR), Body::Json(other), &key, 409, "idempotency_conflict").await;
    let org_body = Body::Json(json!({ "name": "Other" }));
    refused(&s, Method::POST, "/api/v1/organizations", Some(OPERATOR), org_body, &key, 409, "idempotency_conflict")
        .await;

    // Keys are at most 255 characters.
    let long = "k".repeat(256);
    let long_key = [("idempotency-key", long.as_str())];
    let org_body = Body::Json(json!({ "name": "Too Long" }));
    refused(&s, Method::POST, "/api/v1/organizations", Some(OPERATOR), org_body, &long_key, 400, "validation_failed")
        .await;
    let longest = "k".repeat(255);
    let created =
        s.post_keyed("/api/v1/organizations", OPERATOR, &longest, json!({ "name": "Long" })).await.expect(201);
    let repeated =
        s.post_keyed("/api/v1/organizations", OPERATOR, &longest, json!({ "name": "Long" })).await.expect(201);
    assert_eq!(repeated, created);

    // One subscription was created, once.
    let details = s.subscription(&org, OPERATOR).await;
    assert_eq!(details["id"], first["subscriptionId"]);
    assert_eq!(count(&s.audit(&org).await, "SubscriptionCreated"), 1);

    // Keys are scoped to the credential: an org admin's key of the same
    // name is another key.
    let issued = s
        .post_keyed(&format!("/api/v1/organizations/{org}/tokens"), OPERATOR, "token-1", json!({ "role": "admin" }))
        .await
        .expect(201);
    let retried = s
        .post_keyed(&format!("/api/v1/organizations/{org}/tokens"), OPERATOR, "token-1", json!({ "role": "admin" }))
        .await
        .expect(201);
    assert_eq!(retried, issued, "a retried token issue shows the same token");
    let admin = id(&issued["token"]);
    let user = json!({ "email": "pat@initech.example", "role": "viewer" });
    let users = format!("/api/v1/organizations/{org}/users");
    let added = s.post_keyed(&users, &admin, "create-subscription-1", user.clone()).await.expect(201);
    assert_eq!(s.post_keyed(&users, &admin, "create-subscription-1", user).await.expect(201), added);

    // An upgrade retried shows the same new key.
    s.move_clock("2026-01-10T00:00:00Z").await;
    let upgrade = json!({ "targetTier": "professional", "effectiveDate": "2026-01-16" });
    let upgrade_path = format!("/api/v1/subscriptions/{org}/upgrade");
    let upgraded = s.post_keyed(&upgrade_path, &admin, "upgrade-1", upgrade.clone()).await.expect(200);
    assert_eq!(upgraded["proratedAmount"], "1290.32");
    let head = s.head().await;
    let retried = s.post_keyed(&upgrade_path, &admin, "upgrade-1", upgrade).await.expect(200);
    assert_eq!(retried, upgraded, "the retried upgrade shows the same newLicenseKey");
    assert_eq!(s.head().await, head);
    assert_eq!(licenses(&s, &org, &admin).await.0.len(), 2);
}

// ---------------------------------------------------------------------------
// 3. Restarts: state, the test clock and the scheduler survive.

async fn restart_keeps_state_clock_and_schedule(backend: Backend) {
    let s = backend.start().await;
    // Acme does not renew; Globex upgrades on 2026-01-10 and renews.
    let acme = s.create_org("Acme").await;
    s.create_subscription(&acme, "starter", "2026-01-01", false).await;
    let globex = s.create_org("Globex").await;
    let first = s.create_subscription(&globex, "starter", "2026-01-01", true).await;
    s.move_clock("2026-01-10T12:00:00Z").await;
    let upgraded = s
        .post(
            &format!("/api/v1/subscriptions/{globex}/upgrade"),
            Some(OPERATOR),
            json!({ "targetTier": "professional" }),
        )
        .await
        .expect(200);
    assert_eq!(upgraded["effectiveDate"], "2026-01-10", "an upgrade without a date is immediate");
    assert_eq!(upgraded["proratedAmount"], "1774.19", "2,500.00 x 22 / 31");
    assert_ne!(upgraded["newLicenseKey"], first["licenseKey"]);
    let (list, text) = licenses(&s, &globex, OPERATOR).await;
    assert_eq!(list.len(), 2);
    let old_license = id(&list[0]["id"]);
    assert_eq!(list[0]["status"], "superseded", "{text}");
    assert_eq!(list[0]["supersededUntil"], "2026-01-17T00:00:00Z");
    assert_eq!(list[1]["status"], "valid");

    let acme_before = s.subscription(&acme, OPERATOR).await;
    let globex_before = s.subscription(&globex, OPERATOR).await;
    assert_eq!(acme_before["autoRenew"], false);
    assert_eq!(globex_before["tier"], "professional");
    let head = s.head().await;
    s.stop().await;

    // Restarted on the same data: the same state, the clock where it was.
    let s = backend.start().await;
    s.wait_ready().await;
    assert_eq!(s.head().await, head);
    assert_eq!(s.subscription(&acme, OPERATOR).await, acme_before);
    assert_eq!(s.subscription(&globex, OPERATOR).await, globex_before, "still professional: the clock continued");
    let backwards = s
        .post("/api/v1/test-clock", Some(OPERATOR), json!({ "now": "2026-01-10T11:00:00Z" }))
        .await
        .problem(409, "clock_backwards");
    assert!(backwards["detail"].as_str().unwrap().contains("2026-01-10T12:00:00Z"), "{backwards}");
    assert_eq!(s.head().await, head);

    // Past the supersede window (D + 7 days) the old key is revoked, and
    // the scheduler records it.
    s.move_clock("2026-01-17T06:00:00Z").await;
    let (list, text) = licenses(&s, &globex, OPERATOR).await;
    assert_eq!(list[0]["status"], "revoked", "{text}");
    assert_eq!(list[1]["status"], "valid", "{text}");
    poll("the scheduler to revoke the superseded license", || async {
        let audit = s.audit(&globex).await;
        audit
            .iter()
            .any(|e| e["eventType"] == "LicenseRevoked" && e["streamId"] == format!("license/{old_license}"))
            .then_some(())
    })
    .await;

    // 2027-01-02: Acme's term ended without renewal, Globex renewed.
    s.move_clock("2027-01-02T00:00:00Z").await;
    let expired = poll("Acme's subscription to expire", || async {
        let details = s.subscription(&acme, OPERATOR).await;
        (details["status"] == "expired").then_some(details)
    })
    .await;
    assert_eq!(expired["endDate"], "2027-01-01");
    let renewed = poll("Globex's subscription to renew", || async {
        let details = s.subscription(&globex, OPERATOR).await;
        (details["endDate"] == "2028-01-01").then_some(details)
    })
    .await;
    assert_eq!(renewed["status"], "active");
    assert_eq!(renewed["startDate"], "2027-01-01");
    assert_eq!(renewed["tier"], "professional");
    let (list, text) = licenses(&s, &acme, OPERATOR).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "expired", "{text}");
    let check = enforcement(&s, &acme, OPERATOR, "action=ACCESS_FEATURE&feature=basic_analytics").await;
    assert_eq!(check["allowed"], false, "an expired subscription allows nothing: {check}");
    s.wait_ready().await;
    let head = s.head().await;
    s.stop().await;

    // After another restart nothing happens twice.
    let s = backend.start().await;
    s.wait_ready().await;
    assert_eq!(s.subscription(&acme, OPERATOR).await["status"], "expired");
    // Give the scheduler a few ticks to do anything it (wrongly) would.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(s.head().await, head, "the restarted scheduler appends nothing");
    let acme_audit = s.audit(&acme).await;
    assert_eq!(count(&acme_audit, "SubscriptionExpired"), 1, "{:?}", event_types(&acme_audit));
    assert_eq!(count(&acme_audit, "SubscriptionEnded"), 1, "{:?}", event_types(&acme_audit));
    let expiry = acme_audit.iter().find(|e| e["eventType"] == "SubscriptionExpired").unwrap();
    assert_eq!(expiry["actor"], "scheduler");
    let globex_audit = s.audit(&globex).await;
    assert_eq!(count(&globex_audit, "SubscriptionRenewed"), 1, "{:?}", event_types(&globex_audit));
    assert_eq!(count(&globex_audit, "LicenseRevoked"), 1, "{:?}", event_types(&globex_audit));
    assert_eq!(count(&globex_audit, "SubscriptionExpired"), 0);

    // Acme's live subscription ended: it may start a new one; Globex may not.
    let fresh = s.create_subscription(&acme, "professional", "2027-01-02", true).await;
    let details = s.subscription(&acme, OPERATOR).await;
    assert_eq!(details["id"], fresh["subscriptionId"]);
    assert_eq!(details["status"], "active");
    assert_eq!(details["tier"], "professional");
    assert_eq!(details["startDate"], "2027-01-02");
    assert_eq!(details["endDate"], "2028-01-02");
    let second = json!({ "organizationId": globex, "tier": "starter", "startDate": "2027-01-02" });
    refused(
        &s,
        Method::POST,
        "/api/v1/subscriptions",
        Some(OPERATOR),
        Body::Json(second),
        &[],
        409,
        "subscription_exists",
    )
    .await;
}

// ---------------------------------------------------------------------------
// 4. Bad input: refused with a problem+json code, nothing appended.

async fn bad_input_is_refused_and_appends_nothing(backend: Backend) {
    let s = backend.start().await;
    let post = Method::POST;
    // Acme on starter with an admin token; Globex on professional; Hooli without a subscription.
    let acme = s.create_org("Acme").await;
    add_user(&s, &acme, OPERATOR, "ada@acme.example", "admin").await.expect(201);
    let issued = s
        .post(&format!("/api/v1/organizations/{acme}/tokens"), Some(OPERATOR), json!({ "role": "admin" }))
        .await
        .expect(201);
    let admin = id(&issued["token"]);
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    let globex = s.create_org("Globex").await;
    s.create_subscription(&globex, "professional", "2026-01-01", true).await;
    let hooli = s.create_org("Hooli").await;

    let subscriptions = "/api/v1/subscriptions";
    let op = Some(OPERATOR);
    let sub =
        |tier: &str, start: &str| Body::Json(json!({ "organizationId": hooli, "tier": tier, "startDate": start }));

    // Unknown tier, malformed dates.
    let problem =
        refused(&s, post.clone(), subscriptions, op, sub("platinum", "2026-01-01"), &[], 400, "validation_failed")
            .await;
    assert!(problem["detail"].as_str().unwrap().contains("platinum"), "{problem}");
    refused(&s, post.clone(), subscriptions, op, sub("starter", "2026-02-30"), &[], 400, "validation_failed").await;
    refused(&s, post.clone(), subscriptions, op, sub("starter", "01/01/2026"), &[], 400, "validation_failed").await;
    refused(&s, post.clone(), subscriptions, op, sub("starter", "2026-1-1"), &[], 400, "validation_failed").await;

    // A start more than 31 days in the past; 31 days is allowed.
    refused(&s, post.clone(), subscriptions, op, sub("starter", "2025-11-30"), &[], 409, "start_date_out_of_range")
        .await;
    let backdated = s.create_subscription(&hooli, "starter", "2025-12-01", true).await;
    assert!(backdated["subscriptionId"].is_string());

    // Upgrades go up, downgrades go down.
    let upgrade = format!("/api/v1/subscriptions/{globex}/upgrade");
    for tier in ["starter", "professional"] {
        let body = Body::Json(json!({ "targetTier": tier }));
        refused(&s, post.clone(), &upgrade, op, body, &[], 409, "not_an_upgrade").await;
    }
    let downgrade = format!("/api/v1/subscriptions/{acme}/downgrade");
    for tier in ["professional", "enterprise", "starter"] {
        let body = Body::Json(json!({ "targetTier": tier }));
        refused(&s, post.clone(), &downgrade, Some(&admin), body, &[], 409, "not_a_downgrade").await;
    }

    // Duplicate e-mail (addresses compare case-insensitively).
    let users = format!("/api/v1/organizations/{globex}/users");
    add_user(&s, &globex, OPERATOR, "dup@globex.example", "analyst").await.expect(201);
    let again = Body::Json(json!({ "email": "DUP@globex.example", "role": "viewer" }));
    refused(&s, post.clone(), &users, op, again, &[], 409, "duplicate_email").await;

    // Bodies: too large, not JSON, unknown fields.
    let organizations = "/api/v1/organizations";
    let huge = Body::Json(json!({ "name": "x".repeat(70 * 1024) }));
    refused(&s, post.clone(), organizations, op, huge, &[], 413, "payload_too_large").await;
    let broken = Body::Raw(b"{\"name\": \"Half".to_vec());
    refused(&s, post.clone(), organizations, op, broken, &[], 400, "validation_failed").await;
    let array = Body::Raw(b"[]".to_vec());
    refused(&s, post.clone(), organizations, op, array, &[], 400, "validation_failed").await;
    let unknown = Body::Json(json!({ "name": "Acme 2", "colour": "red" }));
    refused(&s, post.clone(), organizations, op, unknown, &[], 400, "validation_failed").await;
    let unknown =
        Body::Json(json!({ "organizationId": hooli, "tier": "starter", "startDate": "2026-01-01", "seats": 3 }));
    refused(&s, post.clone(), subscriptions, op, unknown, &[], 400, "validation_failed").await;

    // Credentials: missing, garbage, wrong scheme.
    let name = || Body::Json(json!({ "name": "Nobody" }));
    refused(&s, post.clone(), organizations, None, name(), &[], 401, "unauthorized").await;
    refused(&s, post.clone(), organizations, Some("garbage"), name(), &[], 401, "unauthorized").await;
    let forged = format!("{admin}x");
    refused(&s, post.clone(), organizations, Some(&forged), name(), &[], 401, "unauthorized").await;
    let basic = [("authorization", "Basic b3BlcmF0b3I6c2VjcmV0")];
    refused(&s, post.clone(), organizations, None, name(), &basic, 401, "unauthorized").await;
    let get = Method::GET;
    refused(&s, get.clone(), &format!("/api/v1/subscriptions/{acme}"), None, Body::None, &[], 401, "unauthorized")
        .await;
    let nowhere = format!("/api/v1/subscriptions/{}", uuid::Uuid::now_v7());
    refused(&s, get, &nowhere, op, Body::None, &[], 404, "not_found").await;
}

/// A subscription cancelled at once (by the operator) takes no more changes.
async fn a_cancelled_subscription_takes_no_changes(backend: Backend) {
    let s = backend.start().await;
    let post = Method::POST;
    let acme = s.create_org("Acme").await;
    let issued = s
        .post(&format!("/api/v1/organizations/{acme}/tokens"), Some(OPERATOR), json!({ "role": "admin" }))
        .await
        .expect(201);
    let admin = id(&issued["token"]);
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.move_clock("2026-01-05T00:00:00Z").await;

    let cancel = format!("/api/v1/subscriptions/{acme}/cancel");
    let immediate = || Body::Json(json!({ "immediate": true }));
    refused(&s, post.clone(), &cancel, Some(&admin), immediate(), &[], 403, "forbidden").await;
    let cancelled = s.send(post.clone(), &cancel, Some(OPERATOR), immediate(), &[]).await.expect(200);
    assert_eq!(cancelled["effectiveDate"], "2026-01-05");
    let details = s.subscription(&acme, &admin).await;
    assert_eq!(details["status"], "cancelled");
    assert_eq!(details["cancelledFrom"], "2026-01-05");

    let addon = Body::Json(json!({ "kind": "extra_data_tb", "quantity": 1, "effectiveDate": "2026-01-06" }));
    let addons = format!("/api/v1/subscriptions/{acme}/addons");
    refused(&s, post.clone(), &addons, Some(&admin), addon, &[], 409, "subscription_not_changeable").await;
    let upgrade = Body::Json(json!({ "targetTier": "professional" }));
    let path = format!("/api/v1/subscriptions/{acme}/upgrade");
    refused(&s, post, &path, Some(&admin), upgrade, &[], 409, "subscription_not_changeable").await;
}

/// Paging organizations, revoking a token and a license, and the OpenAPI
/// document, over HTTP.
async fn revocations_paging_and_the_document(backend: Backend) {
    let s = backend.start().await;
    let mut created = Vec::new();
    for name in ["Initech", "Umbrella", "Vandelay"] {
        created.push(s.create_org(name).await);
    }
    let first = s.get("/api/v1/organizations?limit=2", Some(AUDITOR)).await.expect(200);
    let cursor = id(&first["nextCursor"]);
    let second = s.get(&format!("/api/v1/organizations?limit=2&cursor={cursor}"), Some(AUDITOR)).await.expect(200);
    assert_eq!(second["nextCursor"], Value::Null);
    let mut listed: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|o| id(&o["id"]))
        .collect();
    listed.sort();
    created.sort();
    assert_eq!(listed, created, "two pages hold every organization once");
    s.get("/api/v1/organizations?limit=0", Some(AUDITOR)).await.problem(400, "validation_failed");

    // A revoked token stops working at once; revoking it twice is refused.
    let org = &created[0];
    let issued = s
        .post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "viewer" }))
        .await
        .expect(201);
    let (token, token_id) = (id(&issued["token"]), id(&issued["tokenId"]));
    let licenses = format!("/api/v1/organizations/{org}/licenses");
    assert_eq!(s.get(&licenses, Some(&token)).await.expect(200), json!([]));
    let revoke = format!("/api/v1/organizations/{org}/tokens/{token_id}/revoke");
    let revoked = s.post(&revoke, Some(OPERATOR), json!({})).await.expect(200);
    assert_eq!(revoked["sequence"].as_u64(), Some(s.head().await));
    s.get(&licenses, Some(&token)).await.problem(401, "unauthorized");
    s.post(&revoke, Some(OPERATOR), json!({})).await.problem(409, "conflict");

    // A revoked license shows as revoked, with its reason, and stays so.
    s.create_subscription(org, "starter", "2026-01-01", true).await;
    let listed = s.get(&licenses, Some(OPERATOR)).await.expect(200);
    let license = id(&listed[0]["id"]);
    let path = format!("/api/v1/licenses/{license}/revoke");
    s.post(&path, Some(OPERATOR), json!({ "reason": "  key leaked  " })).await.expect(200);
    let listed = s.get(&licenses, Some(OPERATOR)).await.expect(200);
    assert_eq!((&listed[0]["status"], &listed[0]["revocationReason"]), (&json!("revoked"), &json!("key leaked")));
    s.post(&path, Some(OPERATOR), json!({ "reason": "again" })).await.problem(409, "already_revoked");
    let unknown = format!("/api/v1/licenses/{}/revoke", uuid::Uuid::now_v7());
    s.post(&unknown, Some(OPERATOR), json!({ "reason": "x" })).await.problem(404, "not_found");

    // The OpenAPI document, without credentials.
    let document = s.get("/api/v1/openapi.json", None).await.expect(200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."), "{}", document["openapi"]);
    assert!(document["paths"]["/api/v1/subscriptions/{org_id}/upgrade"]["post"].is_object());
}

backends!(
    full_lifecycle,
    idempotency_keys,
    restart_keeps_state_clock_and_schedule,
    bad_input_is_refused_and_appends_nothing,
    a_cancelled_subscription_takes_no_changes,
    revocations_paging_and_the_document,
);

//! Black-box tests of air-gapped sites (issue 18 item 1) on the real
//! `ledger` binary: a deployment's activation request becomes a license
//! file (over the API and with `ledger licenses activate-offline`), the
//! `ledger-client` loads it with no network, exports its usage, and the
//! export is imported (`POST /api/v1/usage/imports`, `ledger usage
//! import`) with the correction window measured from the import. Replayed,
//! altered, foreign and expired files are refused with a named reason and
//! change nothing.
//!
//! Each test runs on both backends (`backends!` at the bottom).

#[allow(dead_code)]
#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client::{Config, Decimal, LicenseClient, ManualTime, Status, UsageMetrics, UsageReport};
use common::{Backend, OPERATOR, Server, id};
use domain::Timestamp;
use domain::airgap::{ActivationRequest, ExportedDay, SignedFile, UsageExport};
use domain::deployment_key::public_key_text;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

backends!(
    an_air_gapped_site_is_activated_by_file_and_billed_for_its_imported_usage,
    replayed_altered_foreign_and_expired_files_are_refused_with_named_reasons,
    the_operator_activates_and_imports_with_the_command_line,
);

const ACTIVATE: &str = "/api/v1/licenses/offline-activations";
const IMPORT: &str = "/api/v1/usage/imports";

/// An organization with an admin token and a starter subscription of two
/// deployments: (org, admin token, key).
async fn customer(s: &Server, name: &str) -> (String, String, String) {
    let org = s.create_org(name).await;
    let tokens = format!("/api/v1/organizations/{org}/tokens");
    let admin = id(&s.post(&tokens, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201)["token"]);
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "maxDeployments": 2 });
    let key = id(&s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)["licenseKey"]);
    (org, admin, key)
}

fn pair(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn file_json(file: &SignedFile) -> Value {
    serde_json::to_value(file).unwrap()
}

/// An activation request of `key`'s license for `deployment`, by `signer`
/// naming `named`'s public key.
fn request(key: &str, deployment: &str, nonce: &str, at: &str, named: &SigningKey, signer: &SigningKey) -> Value {
    let request = ActivationRequest {
        version: 1,
        license_id: domain::keys::license_id_unverified(key).unwrap(),
        key_binding: domain::lease::key_binding(key),
        deployment_id: deployment.into(),
        deployment_key: public_key_text(&named.verifying_key()),
        nonce: nonce.into(),
        client_time: Timestamp::parse_rfc3339(at).unwrap(),
    };
    file_json(&request.sign(signer))
}

fn day(date: &str, users: &str) -> ExportedDay {
    ExportedDay {
        day: date.parse().unwrap(),
        active_users: users.into(),
        data_volume_gb: "10.5".into(),
        api_calls_count: "100".into(),
        training_hours: "0".into(),
    }
}

/// A usage export of `key`'s license from `deployment`, signed by `signer`.
fn export(
    key: &str,
    license_nonce: &str,
    export_id: &str,
    at: &str,
    days: Vec<ExportedDay>,
    signer: &SigningKey,
) -> Value {
    let export = UsageExport {
        version: 1,
        license_id: domain::keys::license_id_unverified(key).unwrap(),
        key_binding: domain::lease::key_binding(key),
        deployment_id: "vault-1".into(),
        deployment_key: public_key_text(&signer.verifying_key()),
        license_nonce: license_nonce.into(),
        export_id: export_id.into(),
        created_at: Timestamp::parse_rfc3339(at).unwrap(),
        days,
    };
    file_json(&export.sign(signer))
}

/// One byte of a file's signed document changed.
fn altered(file: &Value) -> Value {
    let mut bytes = URL_SAFE_NO_PAD.decode(file["payload"].as_str().unwrap()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let mut file = file.clone();
    file["payload"] = json!(URL_SAFE_NO_PAD.encode(bytes));
    file
}

fn document(file: &Value) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(file["payload"].as_str().unwrap()).unwrap()).unwrap()
}

fn count(entries: &[Value], event_type: &str) -> usize {
    entries.iter().filter(|e| e["eventType"] == event_type).count()
}

async fn lease_key(s: &Server) -> ed25519_dalek::VerifyingKey {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    client::parse_public_key(keys["leases"]["current"].as_str().unwrap()).unwrap()
}

/// The client of an air-gapped site: no server (nothing answers its URL).
fn site(
    key: &str,
    dir: &std::path::Path,
    lease_key: ed25519_dalek::VerifyingKey,
    time: &Arc<ManualTime>,
) -> LicenseClient {
    let mut config = Config::new("http://127.0.0.1:9", key, dir, vec![lease_key]);
    config.allow_plain_http = true;
    config.deployment_id = "vault-1".into();
    config.time = time.clone();
    config.request_timeout = Duration::from_secs(2);
    LicenseClient::new(config).unwrap()
}

fn report(date: &str, users: u64) -> UsageReport {
    UsageReport {
        reporting_period: date.parse().unwrap(),
        metrics: UsageMetrics {
            active_users: users,
            data_volume_gb: Decimal::new(105, 1),
            api_calls_count: 100,
            training_hours: Decimal::ZERO,
        },
    }
}

async fn an_air_gapped_site_is_activated_by_file_and_billed_for_its_imported_usage(backend: Backend) {
    let s = backend.start().await;
    let (org, admin, key) = customer(&s, "Acme").await;
    let scratch = tempfile::tempdir().unwrap();
    let time = Arc::new(ManualTime::new("2026-01-01T08:00:00Z".parse().unwrap()));
    let vault = site(&key, &scratch.path().join("state"), lease_key(&s).await, &time);
    assert_eq!(vault.status(), Status::NoLease);

    // The site writes its request; the admin uploads it and carries the
    // license file back; the site loads it with no network.
    let request_path = scratch.path().join("request.json");
    vault.write_activation_request(&request_path).unwrap();
    let request: Value = serde_json::from_slice(&std::fs::read(&request_path).unwrap()).unwrap();
    let file = s.post(ACTIVATE, Some(&admin), request).await.expect(200);
    let body = document(&file);
    assert_eq!(body["leaseExpiresAt"], "2026-04-01T00:00:00Z", "90 days from the server's time: {body}");
    assert_eq!(body["deploymentKey"], json!(vault.deployment_public_key()));
    let license_path = scratch.path().join("license.json");
    std::fs::write(&license_path, serde_json::to_vec(&file).unwrap()).unwrap();
    assert!(matches!(vault.load_license_file(&license_path).unwrap(), Status::Valid { .. }));
    assert!(vault.allows_feature("basic_analytics"));
    // Past the seven-day grace it still works, on the license file.
    time.advance(Duration::from_secs(60 * 24 * 3600));
    assert!(matches!(vault.status(), Status::Valid { .. }), "{:?}", vault.status());
    // A restart reads it back.
    drop(vault);
    let vault = site(&key, &scratch.path().join("state"), lease_key(&s).await, &time);
    assert!(matches!(vault.status(), Status::Valid { .. }), "{:?}", vault.status());

    // It takes a place of the two: one online deployment fits, a second not.
    let validate = |d: &str| json!({ "licenseKey": key, "clientInfo": { "deployment_id": d }, "nonce": "n-1" });
    assert_eq!(s.post("/api/v1/license/validate", None, validate("edge-1")).await.expect(200)["code"], "VALID");
    let full = s.post("/api/v1/license/validate", None, validate("edge-2")).await.expect(200);
    assert_eq!(full["code"], "TOO_MANY_DEPLOYMENTS");

    // Two and a half months on, January's usage is imported: the window
    // runs from the import, not from the reported day.
    s.move_clock("2026-03-15T00:00:00Z").await;
    let export_path = scratch.path().join("usage.json");
    vault.export_usage(&[report("2026-01-05", 3), report("2026-01-06", 4)], &export_path).unwrap();
    let export: Value = serde_json::from_slice(&std::fs::read(&export_path).unwrap()).unwrap();
    let imported = s.post(IMPORT, Some(&admin), export).await.expect(200);
    assert_eq!((imported["daysImported"].clone(), imported["deploymentId"].clone()), (json!(2), json!("vault-1")));
    // A later export replaces a day's report, as reports do.
    time.advance(Duration::from_secs(60));
    vault.export_usage(&[report("2026-01-05", 5)], &export_path).unwrap();
    let export: Value = serde_json::from_slice(&std::fs::read(&export_path).unwrap()).unwrap();
    let seen = s.post(IMPORT, Some(&admin), export).await.expect(200)["sequence"].as_u64().unwrap();
    let usage_path = format!("/api/v1/organizations/{org}/usage?period=2026-01&minSequence={seen}");
    let usage = s.get(&usage_path, Some(OPERATOR)).await.expect(200);
    let users: Vec<_> = usage["days"].as_array().unwrap().iter().map(|d| d["metrics"]["activeUsers"].clone()).collect();
    assert_eq!(users, [json!(5), json!(4)], "{usage}");
    let audit = s.audit(&org).await;
    assert_eq!((count(&audit, "OfflineActivated"), count(&audit, "OfflineUsageImported")), (1, 2));

    // The clock set back is detected; past the file's end nothing is allowed.
    let wall = client::TimeSource::wall(&*time);
    time.set_wall(wall - chrono::Duration::days(2));
    assert_eq!(vault.status(), Status::ClockTampered);
    time.set_wall(wall);
    time.advance(Duration::from_secs(40 * 24 * 3600));
    assert_eq!(vault.status(), Status::NoLease);
    s.stop().await;
}

/// The client takes only a license file answering its own pending request,
/// unaltered, signed with a pinned key, bound to its key pair.
async fn the_client_refuses_a_license_file_not_made_for_it(s: &Server, key: &str, admin: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let time = Arc::new(ManualTime::new("2026-01-01T08:00:00Z".parse().unwrap()));
    let (one, two) = (scratch.path().join("one"), scratch.path().join("two"));
    let (request_one, request_two) = (scratch.path().join("r1.json"), scratch.path().join("r2.json"));
    let site_one = site(key, &one, lease_key(s).await, &time);
    let site_two = site(key, &two, lease_key(s).await, &time);
    site_one.write_activation_request(&request_one).unwrap();
    site_two.write_activation_request(&request_two).unwrap();
    let body: Value = serde_json::from_slice(&std::fs::read(&request_one).unwrap()).unwrap();
    let file = s.post(ACTIVATE, Some(admin), body).await.expect(200);
    let path = scratch.path().join("license.json");
    // Another machine's (another key pair, another nonce).
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    assert!(site_two.load_license_file(&path).is_err());
    // Altered in one byte.
    std::fs::write(&path, serde_json::to_vec(&altered(&file)).unwrap()).unwrap();
    assert!(site_one.load_license_file(&path).is_err());
    // Signed by a key the site does not pin.
    let stranger = site(key, &scratch.path().join("three"), pair(9).verifying_key(), &time);
    std::fs::copy(&request_one, scratch.path().join("three").join(client::airgap::PENDING_REQUEST_FILE)).unwrap();
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    assert!(stranger.load_license_file(&path).is_err());
    assert_eq!(site_two.status(), Status::NoLease);
    assert!(site_one.load_license_file(&path).unwrap().is_valid());
    // Loaded once: the request is answered, the same file is not taken again.
    assert!(site_one.load_license_file(&path).is_err());
}

async fn replayed_altered_foreign_and_expired_files_are_refused_with_named_reasons(backend: Backend) {
    let s = backend.start().await;
    let (org, admin, key) = customer(&s, "Acme").await;
    let (_, globex_admin, globex_key) = customer(&s, "Globex").await;
    the_client_refuses_a_license_file_not_made_for_it(&s, &globex_key, &globex_admin).await;
    let at = "2026-01-01T00:00:00Z";
    let first = request(&key, "vault-1", "n-1", at, &pair(1), &pair(1));
    s.post(ACTIVATE, Some(&admin), altered(&first)).await.problem(400, "offline_file_altered");
    s.post(ACTIVATE, Some(&admin), json!({ "format": "x" })).await.problem(400, "offline_file_malformed");
    // Signed by another key than the one it names.
    let forged = request(&key, "vault-1", "n-1", at, &pair(1), &pair(2));
    s.post(ACTIVATE, Some(&admin), forged).await.problem(400, "offline_file_altered");
    // Another organization's admin does not see the license.
    s.post(ACTIVATE, Some(&globex_admin), first.clone()).await.problem(404, "not_found");
    // Made more than 30 days ago.
    let old = request(&key, "vault-1", "n-0", "2025-11-15T00:00:00Z", &pair(1), &pair(1));
    s.post(ACTIVATE, Some(&admin), old).await.problem(409, "offline_file_expired");
    // Acme's license named with Globex's key.
    let mut mixed = request(&globex_key, "vault-1", "n-1", at, &pair(1), &pair(1));
    let mut doc = document(&mixed);
    doc["licenseId"] = json!(domain::keys::license_id_unverified(&key).unwrap());
    let re_signed: ActivationRequest = serde_json::from_value(doc).unwrap();
    mixed = file_json(&re_signed.sign(&pair(1)));
    s.post(ACTIVATE, Some(&admin), mixed).await.problem(409, "offline_file_foreign");

    let file = s.post(ACTIVATE, Some(&admin), first.clone()).await.expect(200);
    s.post(ACTIVATE, Some(&admin), first).await.problem(409, "offline_file_replayed");
    // Another key pair for the deployment bound to the first.
    let other = request(&key, "vault-1", "n-2", "2026-01-01T00:01:00Z", &pair(2), &pair(2));
    s.post(ACTIVATE, Some(&admin), other).await.problem(409, "offline_file_foreign");
    let nonce = document(&file)["nonce"].as_str().unwrap().to_owned();
    assert_eq!(nonce, "n-1");

    let days = || vec![day("2026-01-02", "3")];
    let good = export(&key, &nonce, "e-1", "2026-01-03T00:00:00Z", days(), &pair(1));
    s.post(IMPORT, Some(&admin), altered(&good)).await.problem(400, "offline_file_altered");
    let foreign = export(&key, &nonce, "e-1", "2026-01-03T00:00:00Z", days(), &pair(2));
    s.post(IMPORT, Some(&admin), foreign).await.problem(409, "offline_file_foreign");
    let other_file = export(&key, "n-9", "e-1", "2026-01-03T00:00:00Z", days(), &pair(1));
    s.post(IMPORT, Some(&admin), other_file).await.problem(409, "offline_file_foreign");
    let other_key = export(&globex_key, &nonce, "e-1", "2026-01-03T00:00:00Z", days(), &pair(1));
    s.post(IMPORT, Some(&globex_admin), other_key).await.problem(409, "offline_file_foreign");
    s.post(IMPORT, Some(&admin), good.clone()).await.expect(200);
    s.post(IMPORT, Some(&admin), good).await.problem(409, "offline_file_replayed");
    let older = export(&key, &nonce, "e-2", "2026-01-02T00:00:00Z", days(), &pair(1));
    s.post(IMPORT, Some(&admin), older).await.problem(409, "offline_file_replayed");
    // The license file ended 2026-04-01: 35 days on, its usage is closed.
    s.move_clock("2026-05-07T00:00:00Z").await;
    let late = export(&key, &nonce, "e-3", "2026-05-01T00:00:00Z", days(), &pair(1));
    s.post(IMPORT, Some(&admin), late).await.problem(409, "offline_file_expired");

    // Nothing refused was recorded.
    let audit = s.audit(&org).await;
    assert_eq!((count(&audit, "OfflineActivated"), count(&audit, "OfflineUsageImported")), (1, 1));
    assert_eq!(count(&audit, "UsageReported"), 1);
    s.stop().await;
}

async fn the_operator_activates_and_imports_with_the_command_line(backend: Backend) {
    let s = backend.start().await;
    let (org, _, key) = customer(&s, "Acme").await;
    let scratch = tempfile::tempdir().unwrap();
    let request_path = scratch.path().join("request.json");
    let request = request(&key, "vault-1", "n-1", "2026-01-01T00:00:00Z", &pair(1), &pair(1));
    std::fs::write(&request_path, serde_json::to_vec(&request).unwrap()).unwrap();
    let out = scratch.path().join("license.json");
    let (request_arg, out_arg) = (request_path.to_str().unwrap(), out.to_str().unwrap());
    let ran = backend.cli(&["licenses", "activate-offline", "--request", request_arg, "--out", out_arg]).await;
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let file = SignedFile::parse(&std::fs::read(&out).unwrap(), domain::airgap::LICENSE_FILE_FORMAT).unwrap();
    let body = domain::airgap::open_license_file(&file, &lease_key(&s).await, &key).unwrap();
    assert_eq!((body.nonce.as_str(), body.deployment_id.as_str()), ("n-1", "vault-1"));
    // The same request again is a replay, named on stderr.
    let again = backend.cli(&["licenses", "activate-offline", "--request", request_arg, "--out", out_arg]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("offline_file_replayed"));

    let export_path = scratch.path().join("usage.json");
    let export = export(&key, "n-1", "e-1", "2026-01-02T00:00:00Z", vec![day("2026-01-01", "7")], &pair(1));
    std::fs::write(&export_path, serde_json::to_vec(&export).unwrap()).unwrap();
    let ran = backend.cli(&["usage", "import", export_path.to_str().unwrap()]).await;
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let answer: Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(answer["daysImported"], 1);
    let head = s.head().await;
    let usage_path = format!("/api/v1/organizations/{org}/usage?period=2026-01&minSequence={head}");
    let usage = s.get(&usage_path, Some(OPERATOR)).await.expect(200);
    assert_eq!(usage["days"][0]["metrics"]["activeUsers"], 7, "{usage}");
    s.stop().await;
}

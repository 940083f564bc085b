//! The shared client cases (`clients/cases.json`), against the real
//! `ledger` binary: the Rust client (`ledger-client`) runs each passing case
//! here, and the TypeScript client runs the same file with Node's own test
//! runner (`clients/typescript/test/cases.test.ts`, built by `cargo xtask
//! test`'s peer step), started from here with this build's binary.
//!
//! The cases run on SQLite: what they check is the clients' behaviour
//! against the server's answers; the backends' equality is what the other
//! black-box tests check on both.

#[allow(dead_code, unused_macros)]
mod common;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client::{Action, Config, Decimal, LicenseClient, ManualTime, Status, UsageMetrics, UsageReport, UsageReporter};
use common::{Backend, OPERATOR, Server, id};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const CLIENT_CLOCK: &str = "2026-03-10T12:00:00Z";
const POLL: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("api/ is in the workspace").to_owned()
}

fn cases() -> Value {
    let path = root().join("clients/cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("clients/cases.json")).expect("JSON")
}

/// One case's world: the server, the customer and the deployment.
struct World {
    backend: Backend,
    server: Option<Server>,
    secret: String,
    time: Arc<ManualTime>,
    scratch: tempfile::TempDir,
    state_dir: PathBuf,
    key: String,
    org: String,
    subscription: String,
    admin: String,
    lease_key: String,
    client: Option<LicenseClient>,
    reporter: Option<UsageReporter>,
    /// The deployment is a floating one (`allow_floating`).
    floating: bool,
    /// The server's announced next lease key, pinned beside the current
    /// one (`pin_next_lease_key`).
    next_lease_key: Option<String>,
}

impl World {
    fn server(&self) -> &Server {
        self.server.as_ref().expect("the server runs")
    }

    fn base(&self) -> String {
        // A stopped server's address: nothing answers there any more.
        self.server.as_ref().map_or_else(|| "http://127.0.0.1:9".to_owned(), |s| s.base.clone())
    }

    fn config(&self, key: &str, dir: &Path) -> Config {
        let pinned = std::iter::once(&self.lease_key).chain(&self.next_lease_key);
        let pinned = pinned.map(|k| client::parse_public_key(k).expect("the server's lease key")).collect();
        let mut config = Config::new(self.base(), key, dir, pinned);
        config.allow_plain_http = true;
        config.time = self.time.clone();
        config.request_timeout = Duration::from_secs(5);
        config.floating = self.floating;
        config
    }

    /// The deployment (re)starts on its state directory.
    fn open(&mut self) {
        let config = self.config(&self.key, &self.state_dir);
        self.reporter = Some(UsageReporter::open(&config).expect("the reporter opens"));
        self.client = Some(LicenseClient::new(config).expect("the client starts"));
    }

    fn client(&self) -> &LicenseClient {
        self.client.as_ref().expect("the client is open")
    }
}

async fn customer(s: &Server, name: &str) -> (String, String, String, String) {
    let org = s.create_org(name).await;
    let issued =
        s.post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" })).await;
    let admin = id(&issued.expect(201)["token"]);
    let created = s.create_subscription(&org, "starter", "2026-01-01", true).await;
    (org, id(&created["subscriptionId"]), id(&created["licenseKey"]), admin)
}

fn seen(status: &Status) -> Value {
    match status {
        Status::Valid { code, tier, offline, .. } => {
            json!({ "state": "valid", "code": code.as_str(), "tier": tier, "offline": offline })
        }
        Status::Invalid { code } => json!({ "state": "invalid", "code": code.as_str() }),
        Status::ClockTampered => json!({ "state": "clock_tampered" }),
        Status::NoLease => json!({ "state": "no_lease" }),
    }
}

fn matches(seen: &Value, expect: &Value) -> bool {
    expect.as_object().expect("an expect object").iter().all(|(field, value)| &seen[field] == value)
}

async fn validate(w: &World, step: &Value) -> Result<(), String> {
    let deadline = Instant::now() + if step["poll"] == true { POLL } else { Duration::ZERO };
    loop {
        let status = if step["do"] == "status" {
            w.client().status()
        } else {
            w.client().validate().await.map_err(|e| format!("validate failed: {e}"))?
        };
        let seen = seen(&status);
        if matches(&seen, &step["expect"]) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("expected {}, got {seen} ({status:?})", step["expect"]));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn decimal(value: &Value) -> Decimal {
    Decimal::from_str(&value.to_string()).expect("a decimal")
}

fn check(w: &World, step: &Value) -> Result<(), String> {
    let value = &step["value"];
    let action = match step["action"].as_str() {
        Some("add_user") => Action::AddUser { active_users: value.as_u64().expect("a count") },
        Some("upload_data") => Action::UploadData { data_volume_gb: decimal(value) },
        Some("api_call") => Action::ApiCall { calls_this_month: value.as_u64().expect("a count") },
        other => return Err(format!("unknown action {other:?}")),
    };
    let decision = w.client().check(&action);
    (decision.is_allowed() == step["allowed"]).then_some(()).ok_or(format!("{action:?}: {decision:?}"))
}

fn tamper_lease(w: &World) {
    let path = w.state_dir.join(client::LEASE_FILE);
    let mut lease: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(lease["payload"].as_str().unwrap()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    lease["payload"] = json!(URL_SAFE_NO_PAD.encode(bytes));
    std::fs::write(&path, lease.to_string()).unwrap();
}

async fn foreign_lease(w: &World) -> Result<(), String> {
    let (_, _, key, _) = customer(w.server(), "Other").await;
    let dir = w.scratch.path().join("other");
    let other = LicenseClient::new(w.config(&key, &dir)).expect("the other client starts");
    let status = other.validate().await.map_err(|e| e.to_string())?;
    status.is_valid().then_some(()).ok_or(format!("the other key: {status:?}"))?;
    std::fs::copy(dir.join(client::LEASE_FILE), w.state_dir.join(client::LEASE_FILE)).unwrap();
    Ok(())
}

async fn revoke(w: &World) {
    let s = w.server();
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{}/licenses?minSequence={head}", w.org);
    let license = id(&s.get(&path, Some(OPERATOR)).await.expect(200)[0]["id"]);
    let reason = json!({ "reason": "contract ended" });
    s.post(&format!("/api/v1/licenses/{license}/revoke"), Some(OPERATOR), reason).await.expect(200);
}

/// A Stripe `invoice.payment_failed`, signed as Stripe signs webhooks.
async fn payment_failed(w: &World) {
    let created = chrono::Utc::now().timestamp();
    let invoice =
        json!({ "id": "in_cases_1", "object": "invoice", "metadata": { "ledger_subscription_id": w.subscription } });
    let event = json!({ "id": "evt_cases_failed", "object": "event", "type": "invoice.payment_failed",
        "created": created, "data": { "object": invoice } })
    .to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(w.secret.as_bytes()).unwrap();
    mac.update(format!("{created}.{event}").as_bytes());
    let header = format!("t={created},v1={}", hex::encode(mac.finalize().into_bytes()));
    let body = common::Body::Raw(event.into_bytes());
    let headers = [("stripe-signature", header.as_str())];
    w.server().send(reqwest::Method::POST, "/api/v1/webhooks/stripe", None, body, &headers).await.expect(200);
}

fn enqueue_report(step: &Value) -> UsageReport {
    let m = &step["metrics"];
    UsageReport {
        reporting_period: step["day"].as_str().unwrap().parse().expect("a day"),
        metrics: UsageMetrics {
            active_users: m["activeUsers"].as_u64().unwrap(),
            data_volume_gb: decimal(&m["dataVolumeGB"]),
            api_calls_count: m["apiCallsCount"].as_u64().unwrap(),
            training_hours: decimal(&m["trainingHours"]),
        },
    }
}

async fn flush(w: &World, step: &Value) -> Result<(), String> {
    let outcome = w.reporter.as_ref().unwrap().flush().await.map_err(|e| e.to_string())?;
    let seen = json!({ "sent": outcome.sent, "rejected": outcome.rejected, "remaining": outcome.remaining,
        "stopped": outcome.stopped.is_some() });
    matches(&seen, &step["expect"]).then_some(()).ok_or(format!("flush: expected {}, got {outcome:?}", step["expect"]))
}

/// The deployment restarts with the server's announced next lease key
/// pinned beside the current one, once the current key's signature of it
/// checks (as an install or update reading `GET /api/v1/keys` would).
async fn pin_next_lease_key(w: &mut World) -> Result<(), String> {
    let keys = w.server().get("/api/v1/keys", None).await.expect(200);
    let leases = &keys["leases"];
    let current = client::parse_public_key(&id(&leases["current"])).map_err(|e| e.to_string())?;
    let next_text = leases["next"].as_str().ok_or(format!("no next lease key announced: {keys}"))?;
    let next = client::parse_public_key(next_text).map_err(|e| e.to_string())?;
    let signature = base64::engine::general_purpose::STANDARD.decode(id(&leases["nextSignature"])).unwrap_or_default();
    if !domain::lease::verify_next_key(&current, &next, &signature) {
        return Err(format!("the next lease key is not signed by the current one: {keys}"));
    }
    w.next_lease_key = Some(next_text.to_owned());
    w.open();
    Ok(())
}

/// Another deployment of the case's key validates over plain HTTP.
async fn other_deployment(w: &World, step: &Value) -> Result<(), String> {
    let body = json!({ "licenseKey": w.key, "clientInfo": { "deployment_id": step["deployment"] },
        "floating": step["floating"] });
    let answer = w.server().post("/api/v1/license/validate", None, body).await.expect(200);
    matches(&answer, &step["expect"]).then_some(()).ok_or(format!("expected {}, got {answer}", step["expect"]))
}
/// Whether the key's license lists this deployment's public key as bound.
async fn bound(w: &World, step: &Value) -> Result<(), String> {
    let s = w.server();
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{}/licenses?minSequence={head}", w.org);
    let listed = s.get(&path, Some(OPERATOR)).await.expect(200);
    let public = w.client().deployment_public_key().to_owned();
    let license =
        listed.as_array().unwrap().iter().find(|l| l["deployments"].as_array().is_some_and(|d| !d.is_empty()));
    let keys = license.map(|l| l["deploymentKeys"].clone()).unwrap_or(json!([]));
    let seen = keys.as_array().unwrap().iter().any(|k| k["deploymentId"] == "default" && k["publicKey"] == public);
    (json!(seen) == step["expect"]).then_some(()).ok_or(format!("bound: {seen}, the license lists {keys}"))
}

/// Another machine: a new state directory with this one's lease and clock
/// files (its own key pair is made when the client opens it).
fn copy_to_new_machine(w: &mut World) {
    let dir = w.scratch.path().join("copy");
    std::fs::create_dir_all(&dir).unwrap();
    for file in [client::LEASE_FILE, client::CLOCK_FILE] {
        std::fs::copy(w.state_dir.join(file), dir.join(file)).unwrap();
    }
    w.state_dir = dir;
    w.open();
}

async fn reset_key(w: &World) {
    let s = w.server();
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{}/licenses?minSequence={head}", w.org);
    let license = id(&s.get(&path, Some(OPERATOR)).await.expect(200)[0]["id"]);
    let reset = format!("/api/v1/licenses/{license}/deployments/default/reset-key");
    s.post(&reset, Some(&w.admin), json!({})).await.expect(200);
}

/// The deployment-key steps (issue 18 item 2).
async fn deployment_key(w: &mut World, step: &Value) -> Result<(), String> {
    match step["do"].as_str().unwrap_or_default() {
        "bound" => return bound(w, step).await,
        "copy_to_new_machine" => copy_to_new_machine(w),
        "new_deployment_key" => {
            std::fs::remove_file(w.state_dir.join(client::DEPLOYMENT_KEY_FILE)).unwrap();
            w.open();
        }
        _ => reset_key(w).await,
    }
    Ok(())
}

/// Posts a file of the scratch directory as the org admin; compares the
/// answer's status and fields (`status`, `code`, `daysImported`) with `expect`.
async fn upload(w: &World, route: &str, file: &str, step: &Value) -> Result<Value, String> {
    let mut body: Value =
        serde_json::from_slice(&std::fs::read(w.scratch.path().join(file)).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    if step["tamper"] == true {
        let bytes = URL_SAFE_NO_PAD.decode(body["payload"].as_str().unwrap()).unwrap();
        let altered = String::from_utf8(bytes).unwrap().replacen("2026-", "2027-", 1);
        body["payload"] = json!(URL_SAFE_NO_PAD.encode(altered));
    }
    let reply = w.server().send(reqwest::Method::POST, route, Some(&w.admin), common::Body::Json(body), &[]).await;
    let mut seen = if reply.json.is_object() { reply.json.clone() } else { json!({}) };
    seen["status"] = json!(reply.status.as_u16());
    matches(&seen, &step["expect"]).then_some(seen.clone()).ok_or(format!("expected {}, got {seen}", step["expect"]))
}

/// The air-gapped steps (issue 18 item 1): files in the scratch directory.
async fn airgap(w: &World, step: &Value) -> Result<(), String> {
    let scratch = w.scratch.path();
    match step["do"].as_str().unwrap_or_default() {
        "offline_request" => {
            w.client().write_activation_request(&scratch.join("request.json")).map_err(|e| e.to_string())?
        }
        "offline_activate" => {
            let answer = upload(w, "/api/v1/licenses/offline-activations", "request.json", step).await?;
            if answer["status"] == 200 {
                answer.as_object().unwrap().get("payload").ok_or("no license file")?;
                let mut file = answer.clone();
                file.as_object_mut().unwrap().remove("status");
                std::fs::write(scratch.join("license.json"), file.to_string()).unwrap();
            }
        }
        "load_license_file" => {
            let loaded = w.client().load_license_file(&scratch.join("license.json"));
            if json!(loaded.is_ok()) != step["expect"]["loaded"] {
                return Err(format!("load_license_file: {loaded:?}"));
            }
        }
        "export_usage" => {
            let reports: Vec<UsageReport> = step["days"].as_array().unwrap().iter().map(enqueue_report).collect();
            w.client().export_usage(&reports, &scratch.join("usage.json")).map_err(|e| e.to_string())?;
        }
        "import_usage" => {
            upload(w, "/api/v1/usage/imports", "usage.json", step).await?;
        }
        _ => {
            let day = step["day"].as_str().unwrap();
            let head = w.server().head().await;
            let path = format!("/api/v1/organizations/{}/usage?period={}&minSequence={head}", w.org, &day[..7]);
            let usage = w.server().get(&path, Some(OPERATOR)).await.expect(200);
            let found = usage["days"].as_array().unwrap().iter().find(|d| d["day"] == day);
            let users = found.map(|d| d["metrics"]["activeUsers"].clone()).unwrap_or(Value::Null);
            (users == step["expect"]).then_some(()).ok_or(format!("{day}: activeUsers {users}, usage {usage}"))?;
        }
    }
    Ok(())
}

async fn run(w: &mut World, step: &Value) -> Result<(), String> {
    let hour = Duration::from_secs(3600);
    match step["do"].as_str().unwrap_or_default() {
        "validate" | "status" => return validate(w, step).await,
        "feature" => {
            let feature = step["feature"].as_str().unwrap();
            let allowed = w.client().allows_feature(feature);
            if json!(allowed) != step["allowed"] {
                return Err(format!("feature {feature}: allowed {allowed}"));
            }
        }
        "limit" => return check(w, step),
        "advance_hours" => w.time.advance(hour * u32::try_from(step["hours"].as_u64().unwrap()).unwrap()),
        "wall_minutes" => {
            let wall = client::TimeSource::wall(&*w.time);
            w.time.set_wall(wall + chrono::Duration::minutes(step["minutes"].as_i64().unwrap()));
        }
        "restart_client" => w.open(),
        "server_stop" => w.server.take().expect("the server runs").stop().await,
        "server_start" => {
            w.server = Some(w.backend.start_with_env(&[], &[("STRIPE_WEBHOOK_SECRET", &w.secret)]).await);
            w.open();
        }
        "keys" => {
            for job in step["run"].as_array().expect("the key jobs") {
                let output = w.backend.cli(&["keys", job.as_str().expect("a key job")]).await;
                if !output.status.success() {
                    return Err(format!("ledger keys {job}: {}", String::from_utf8_lossy(&output.stderr)));
                }
            }
        }
        "server_clock" => w.server().move_clock(step["to"].as_str().unwrap()).await,
        "tamper_lease" => tamper_lease(w),
        "bound" | "copy_to_new_machine" | "new_deployment_key" | "reset_key" => return deployment_key(w, step).await,
        "foreign_lease" => return foreign_lease(w).await,
        "revoke" => revoke(w).await,
        "upgrade" => {
            let body = json!({ "targetTier": step["targetTier"], "effectiveDate": step["effectiveDate"] });
            let path = format!("/api/v1/subscriptions/{}/upgrade", w.org);
            w.server().post(&path, Some(&w.admin), body).await.expect(200);
        }
        "payment_failed" => payment_failed(w).await,
        "enqueue" => {
            let reporter = w.reporter.as_ref().unwrap();
            reporter.enqueue(enqueue_report(step)).await.map_err(|e| e.to_string())?;
        }
        "flush" => return flush(w, step).await,
        "allow_floating" => {
            let body = json!({ "floatingDeployments": step["deployments"] });
            let path = format!("/api/v1/subscriptions/{}/floating-deployments", w.org);
            w.server().post(&path, Some(OPERATOR), body).await.expect(200);
            w.floating = true;
            w.open();
        }
        "heartbeat_interval" => {
            let seconds = w.client().heartbeat_interval().map(|d| d.as_secs());
            if json!(seconds) != step["seconds"] {
                return Err(format!("heartbeat interval {seconds:?}"));
            }
        }
        "other_deployment" => return other_deployment(w, step).await,
        "pin_next_lease_key" => return pin_next_lease_key(w).await,
        "offline_request" | "offline_activate" | "load_license_file" | "export_usage" | "import_usage"
        | "usage_day" => {
            return airgap(w, step).await;
        }
        other => return Err(format!("unknown step {other}")),
    }
    Ok(())
}

async fn run_case(case: &Value, secret: &str) -> Result<(), String> {
    let backend = Backend::sqlite().await;
    let server = backend.start_with_env(&[], &[("STRIPE_WEBHOOK_SECRET", secret)]).await;
    let (org, subscription, key, admin) = customer(&server, "Acme").await;
    let keys = server.get("/api/v1/keys", None).await.expect(200);
    let scratch = tempfile::tempdir().unwrap();
    let wall = chrono::DateTime::parse_from_rfc3339(CLIENT_CLOCK).unwrap().to_utc();
    let mut w = World {
        backend,
        server: Some(server),
        secret: secret.to_owned(),
        time: Arc::new(ManualTime::new(wall)),
        state_dir: scratch.path().join("state"),
        scratch,
        key,
        org,
        subscription,
        admin,
        lease_key: id(&keys["leases"]["current"]),
        client: None,
        reporter: None,
        floating: false,
        next_lease_key: None,
    };
    w.open();
    for (n, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
        if let Err(why) = run(&mut w, step).await {
            let output = w.server.as_ref().map(|s| s.output()).unwrap_or_default();
            let tail = output[output.len().saturating_sub(30)..].join("\n");
            return Err(format!("step {} ({step}): {why}\n--- server output (last lines):\n{tail}", n + 1));
        }
    }
    if let Some(server) = w.server.take() {
        server.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_passes_the_shared_cases_against_the_real_binary() {
    let cases = cases();
    let secret = cases["stripeWebhookSecret"].as_str().expect("a webhook secret");
    let mut failed = Vec::new();
    let mut passed = 0;
    for case in cases["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("a name");
        if case["status"] == "pending" {
            println!("PENDING {name}: {}", case["why"]);
            continue;
        }
        match run_case(case, secret).await {
            Ok(()) => passed += 1,
            Err(why) => failed.push(format!("{name}: {why}")),
        }
    }
    assert!(failed.is_empty(), "{} case(s) failed:\n{}", failed.len(), failed.join("\n\n"));
    assert!(passed >= 14, "the passing cases ran: {passed}");
}

#[test]
fn the_typescript_client_passes_the_shared_cases_against_the_real_binary() {
    const TEST: &str = "client_cases::the_typescript_client_passes_the_shared_cases_against_the_real_binary";
    let package = root().join("clients/typescript");
    let cases_js = package.join("dist/test/cases.test.js");
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return store::testing::skip(TEST, store::testing::Peer::Node, "`node` is not on PATH");
    }
    if !cases_js.is_file() {
        let why = "clients/typescript is not built (`cargo xtask test` runs npm ci and tsc there)";
        return store::testing::skip(TEST, store::testing::Peer::Node, why);
    }
    let output = std::process::Command::new("node")
        .args(["--test", "--test-reporter=tap"])
        .arg(&cases_js)
        .arg(package.join("dist/test/unit.test.js"))
        .arg(package.join("dist/test/heartbeats.test.js"))
        .current_dir(&package)
        .env("LEDGER_BIN", env!("CARGO_BIN_EXE_ledger"))
        .env_remove("DATABASE_URL")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the TypeScript cases failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passing = cases()["cases"].as_array().unwrap().iter().filter(|c| c["status"] == "passing").count();
    let count =
        |label: &str| stdout.lines().find_map(|l| l.strip_prefix(label)).and_then(|n| n.trim().parse::<usize>().ok());
    assert!(count("# pass ").is_some_and(|n| n >= passing), "every passing case ran ({passing}):\n{stdout}");
    assert_eq!((count("# fail "), count("# skipped ")), (Some(0), Some(0)), "{stdout}");
}

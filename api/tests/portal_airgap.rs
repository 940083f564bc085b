//! The portal's Offline sites page in a real browser (issue 18 item 1):
//! an organization admin, signed in through the e-mailed link (aiosmtpd),
//! uploads an air-gapped deployment's activation request in chromium and
//! downloads its license file, which the `ledger-client` of that site
//! loads with no network; uploads the site's usage export and sees it
//! imported (replacing and late days named) on the page and in the usage
//! API; altered and replayed files are refused on the page by name with
//! nothing appended. A member's forged post is 403, an oversized upload
//! 413; axe-core checks the page; the screenshot goes to
//! docs/portal/offline-sites.png.
//!
//! The request and usage files are the client crate's own (as in
//! tests/airgap.rs). On both backends (`backends!`: PostgreSQL with
//! `DATABASE_URL`, the screenshot from the SQLite run only); the suite
//! takes about 10 s on each.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod browser;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use browser::{Browser, Mailbox, http, peers_available};
use client::{Config, Decimal, LicenseClient, ManualTime, Status, UsageMetrics, UsageReport};
use common::{Backend, OPERATOR, Server, id};
use fantoccini::Locator;
use serde_json::{Value, json};

backends!(an_admin_activates_an_air_gapped_site_and_imports_its_usage_in_the_portal);

const FROM: &str = "Ledger <portal@ledger.test>";
/// The page's two forms: (file input, submit button).
const ACTIVATE: (&str, &str) = ("#request", "#activate");
const IMPORT: (&str, &str) = ("#export", "#import");

/// Submits a form of the page from the page itself (`fetch` with the
/// form's own `FormData`: its CSRF token and the chosen file, the
/// session's cookie), so the test reads the download the browser gets:
/// [status, Content-Disposition, body].
const SUBMIT_FORM: &str = "const done = arguments[arguments.length - 1];
    const form = document.querySelector(arguments[0]);
    fetch(form.action, { method: 'POST', body: new FormData(form), credentials: 'same-origin' })
      .then(async r => done([r.status, r.headers.get('content-disposition'), await r.text()]))
      .catch(e => done(['fetch failed: ' + e]));";

async fn lease_key(s: &Server) -> ed25519_dalek::VerifyingKey {
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    client::parse_public_key(keys["leases"]["current"].as_str().unwrap()).unwrap()
}

/// The client of an air-gapped site: no server (nothing answers its URL).
fn site(key: &str, dir: &Path, lease_key: ed25519_dalek::VerifyingKey, time: &Arc<ManualTime>) -> LicenseClient {
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

/// An export whose first day's active users were changed after it was
/// signed (the document stays well-formed; only its signature fails).
fn altered(path: &Path, out: &Path) {
    let mut file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(file["payload"].as_str().unwrap()).unwrap();
    let mut document: Value = serde_json::from_slice(&bytes).unwrap();
    assert_ne!(document["days"][0]["activeUsers"], "60");
    document["days"][0]["activeUsers"] = json!("60");
    file["payload"] = json!(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&document).unwrap()));
    std::fs::write(out, serde_json::to_vec(&file).unwrap()).unwrap();
}

async fn add_user(s: &Server, org: &str, email: &str, role: &str) {
    let body = json!({ "email": email, "role": role });
    s.post(&format!("/api/v1/organizations/{org}/users"), Some(OPERATOR), body).await.expect(201);
}

/// On `page`, chooses `file` in the file input `input` and submits its
/// form with a click; the text of `expect` on the answer page (the page
/// before has neither a refusal nor a summary).
async fn upload(b: &Browser, page: &str, (input, button): (&str, &str), file: &Path, expect: &str) -> String {
    b.go(page).await;
    b.fill(input, file.to_str().unwrap()).await;
    b.click(button).await;
    b.text(expect).await
}

/// A multipart post of `file` as `field` with `cookie`'s session and
/// `csrf`: the status and the page.
async fn post_file(s: &Server, path: &str, cookie: &str, csrf: &str, field: &str, file: Vec<u8>) -> (u16, String) {
    let part = reqwest::multipart::Part::bytes(file).file_name("file.json");
    let form = reqwest::multipart::Form::new().text("csrf", csrf.to_owned()).part(field.to_owned(), part);
    let answer = http()
        .post(format!("{}{path}", s.base))
        .header("cookie", format!("ledger_portal_session={cookie}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn csrf_of(b: &Browser) -> String {
    b.find("input[name=csrf]").await.attr("value").await.unwrap().unwrap()
}

/// How many offline activations, usage imports and usage reports the
/// organization's log holds (the log's head alone would also count the
/// notifications the server records meanwhile).
async fn recorded(s: &Server, org: &str) -> [usize; 3] {
    let audit = s.audit(org).await;
    let count = |t: &str| audit.iter().filter(|e| e["eventType"] == t).count();
    [count("OfflineActivated"), count("OfflineUsageImported"), count("UsageReported")]
}

/// The organization's January usage of `activeUsers` per day, once the
/// read models include `sequence`.
async fn january_users(s: &Server, org: &str) -> Vec<Value> {
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/usage?period=2026-01&minSequence={head}");
    let usage = s.get(&path, Some(OPERATOR)).await.expect(200);
    usage["days"].as_array().unwrap().iter().map(|d| json!([d["day"], d["metrics"]["activeUsers"]])).collect()
}

async fn an_admin_activates_an_air_gapped_site_and_imports_its_usage_in_the_portal(backend: Backend) {
    if !peers_available(module_path!()) {
        return;
    }
    let started = Instant::now();
    let mailbox = Mailbox::start().await;
    let smtp = format!("smtp://127.0.0.1:{}", mailbox.port);
    let s = backend.start_with(&["--smtp-url", &smtp, "--mail-from", FROM, "--portal-insecure-cookies"]).await;
    let acme = s.create_org("Acme GmbH").await;
    let key = id(&s.create_subscription(&acme, "starter", "2026-01-01", true).await["licenseKey"]);
    add_user(&s, &acme, "admin@acme.test", "admin").await;
    add_user(&s, &acme, "ana@acme.test", "analyst").await;
    let b = Browser::start(&s.base, &backend).await;
    b.sign_in(&mailbox, "admin@acme.test", 1).await;
    let page = format!("/portal/orgs/{acme}/offline-sites");

    // The admin's navigation has the page.
    b.click(&format!("nav a[href='{page}']")).await;
    assert_eq!(b.text("h1").await, "Offline sites");
    assert_eq!(b.text("#no-activations").await, "None yet.");
    b.accessible("offline sites").await;

    // The site writes its request; the admin uploads it in the browser and
    // the answer is the license file, as a download.
    let scratch = tempfile::tempdir().unwrap();
    let time = Arc::new(ManualTime::new("2026-01-01T08:00:00Z".parse().unwrap()));
    let vault = site(&key, &scratch.path().join("state"), lease_key(&s).await, &time);
    let request_path = scratch.path().join("request.json");
    vault.write_activation_request(&request_path).unwrap();
    let request: Value = serde_json::from_slice(&std::fs::read(&request_path).unwrap()).unwrap();
    assert_eq!(recorded(&s, &acme).await, [0, 0, 0]);
    b.fill("#request", request_path.to_str().unwrap()).await;
    let answer = b.client.execute_async(SUBMIT_FORM, vec![json!("#activate-form")]).await.unwrap();
    assert_eq!(answer[0], 200, "{answer}");
    assert_eq!(answer[1], "attachment; filename=\"license-vault-1.json\"");
    assert_eq!(recorded(&s, &acme).await, [1, 0, 0], "the activation recorded");
    let license_path = scratch.path().join("license-vault-1.json");
    std::fs::write(&license_path, answer[2].as_str().unwrap()).unwrap();
    // Bound to the deployment's key and the request's nonce, signed with
    // the lease key the site pins: it loads with no network.
    let file = domain::airgap::SignedFile::parse(answer[2].as_str().unwrap().as_bytes(), "ledger-offline-license");
    let body = domain::airgap::open_license_file(&file.unwrap(), &lease_key(&s).await, &key).unwrap();
    let asked = domain::airgap::ActivationRequest::open(&serde_json::from_value(request).unwrap()).unwrap();
    assert_eq!((body.nonce.as_str(), body.deployment_id.as_str()), (asked.nonce.as_str(), "vault-1"));
    assert_eq!(body.deployment_key.as_deref(), Some(vault.deployment_public_key()));
    assert!(matches!(vault.load_license_file(&license_path).unwrap(), Status::Valid { .. }));
    // The page lists the activation.
    b.go(&page).await;
    let listed = b.text("#activations tbody").await;
    assert!(listed.contains("vault-1") && listed.contains(vault.deployment_public_key()), "{listed}");

    // The same request again: a replay, named on the page, nothing appended.
    let code = upload(&b, &page, ACTIVATE, &request_path, "#error-code").await;
    assert_eq!(code, "offline_file_replayed");
    b.accessible("offline sites, a refusal").await;
    assert_eq!(recorded(&s, &acme).await, [1, 0, 0], "a refusal appends nothing");

    // Two days on (the session idled out: sign in again), the site's
    // usage of January 1 and 2 is imported.
    s.move_clock("2026-01-03T00:00:00Z").await;
    time.advance(Duration::from_secs(2 * 24 * 3600));
    b.sign_in(&mailbox, "admin@acme.test", 2).await;
    b.go(&page).await;
    let export_path = scratch.path().join("usage-1.json");
    vault.export_usage(&[report("2026-01-01", 3), report("2026-01-02", 4)], &export_path).unwrap();
    assert_eq!(upload(&b, &page, IMPORT, &export_path, "#days-imported").await, "2");
    assert_eq!((b.text("#days-replaced").await, b.text("#days-late").await), ("0".into(), "0".into()));
    assert_eq!(january_users(&s, &acme).await, [json!(["2026-01-01", 3]), json!(["2026-01-02", 4])]);
    b.go(&format!("/portal/orgs/{acme}/usage")).await;
    assert_eq!(b.client.find_all(Locator::Css("#days-chart rect")).await.unwrap().len(), 2, "two days' bars");

    // A later export replaces a day's report, named on the page.
    time.advance(Duration::from_secs(60));
    let replacing = scratch.path().join("usage-2.json");
    vault.export_usage(&[report("2026-01-02", 6)], &replacing).unwrap();
    b.go(&page).await;
    assert_eq!(upload(&b, &page, IMPORT, &replacing, "#days-imported").await, "1");
    assert_eq!(b.text("#days-replaced").await, "1");
    assert!(b.text("#import-summary tbody").await.contains("replaces the earlier report"));
    assert_eq!(january_users(&s, &acme).await, [json!(["2026-01-01", 3]), json!(["2026-01-02", 6])]);
    b.accessible("offline sites, usage imported").await;
    b.screenshot("offline-sites").await;
    let listed = b.text("#activations tbody").await;
    assert!(listed.contains("made 2026-01-03T08:01:00+00:00"), "the last export listed: {listed}");

    // An altered export and a replayed one: named, nothing appended.
    let tampered = scratch.path().join("usage-altered.json");
    altered(&replacing, &tampered);
    assert_eq!(upload(&b, &page, IMPORT, &tampered, "#error-code").await, "offline_file_altered");
    assert_eq!(upload(&b, &page, IMPORT, &export_path, "#error-code").await, "offline_file_replayed");
    assert!(b.text("#error").await.contains("Nothing was recorded."));
    assert_eq!(recorded(&s, &acme).await, [1, 2, 3], "refusals append nothing");
    assert_eq!(january_users(&s, &acme).await, [json!(["2026-01-01", 3]), json!(["2026-01-02", 6])]);

    // Oversized uploads: 413 on the page, nothing read further or stored;
    // over the form's limit too (refused while the body is read).
    let (admin, csrf) = (b.session_cookie().await, csrf_of(&b).await);
    let import = format!("{page}/import");
    let just_over = vec![b' '; domain::airgap::FILE_BYTES_MAX + 1];
    let (status, html) = post_file(&s, &import, &admin, &csrf, "export", just_over).await;
    assert_eq!(status, 413);
    assert!(html.contains("payload_too_large"), "{html}");
    let (status, _) = post_file(&s, &format!("{page}/activate"), &admin, &csrf, "request", vec![b'{'; 1 << 20]).await;
    assert_eq!(status, 413);
    // Without the session's CSRF token: 403, nothing imported.
    let other = std::fs::read(&replacing).unwrap();
    assert_eq!(post_file(&s, &import, &admin, "forged", "export", other).await.0, 403);
    assert_eq!(recorded(&s, &acme).await, [1, 2, 3], "nothing stored");

    // A member (analyst): no link, the page and a forged post are 403.
    b.client.delete_all_cookies().await.unwrap();
    b.sign_in(&mailbox, "ana@acme.test", 1).await;
    b.go(&format!("/portal/orgs/{acme}/usage")).await;
    assert!(b.client.find(Locator::Css(&format!("nav a[href='{page}']"))).await.is_err(), "no link for a member");
    let (analyst, analyst_csrf) = (b.session_cookie().await, csrf_of(&b).await);
    let (status, _) =
        post_file(&s, &import, &analyst, &analyst_csrf, "export", std::fs::read(&replacing).unwrap()).await;
    assert_eq!(status, 403);
    let request = std::fs::read(&request_path).unwrap();
    assert_eq!(post_file(&s, &format!("{page}/activate"), &analyst, &analyst_csrf, "request", request).await.0, 403);
    b.go(&page).await;
    assert_eq!(b.text("h1").await, "Not allowed");
    assert_eq!(recorded(&s, &acme).await, [1, 2, 3], "nothing stored");

    // January invoiced, a later import of a January day is late: billed
    // as an adjustment, named on the page.
    s.move_clock("2026-02-02T00:00:00Z").await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    b.client.delete_all_cookies().await.unwrap();
    b.sign_in(&mailbox, "admin@acme.test", 3).await;
    b.go(&page).await;
    time.advance(Duration::from_secs(30 * 24 * 3600));
    let late = scratch.path().join("usage-late.json");
    vault.export_usage(&[report("2026-01-02", 7), report("2026-01-20", 2)], &late).unwrap();
    assert_eq!(upload(&b, &page, IMPORT, &late, "#days-imported").await, "2");
    assert_eq!((b.text("#days-replaced").await, b.text("#days-late").await), ("1".into(), "2".into()));
    assert_eq!(recorded(&s, &acme).await, [1, 3, 5]);

    b.client.close().await.unwrap();
    let name = if backend.database_url().is_some() { "postgres" } else { "sqlite" };
    println!("portal offline sites suite ({name}): {:.1} s", started.elapsed().as_secs_f64());
}

//! Privacy end to end (issue 16), on SQLite and PostgreSQL, against the
//! real binaries (`ledger serve`, `ledger privacy export|erase`, `ledger
//! users login-link`, `replay verify|export`).
//!
//! One organization, two admins who sign in to the portal from a known
//! address with a known user agent and act there: one added "before this
//! change" (version 1 records: their `UserAdded` and a sign-in), one added
//! through the API (version 2). Each is exported (the export holds every
//! record the test wrote about them), deactivated and erased (the CLI for
//! one, the operator's route for the other). Then every command on the
//! organization still works, a third user the erased admin invited keeps
//! their address, `replay verify` passes (the read models equal a rebuild),
//! and no byte of either address, IP or user agent is left: in every file
//! of the data directory (SQLite's databases, `-wal`, `-shm`, read-model
//! files), in every export written after the erasure, in the server's and
//! the CLI's output, and on PostgreSQL in every table's live rows.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
#[path = "common/privacy_search.rs"]
mod search;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Backend, OPERATOR, Server, id};
use reqwest::Method;
use search::Needle;
use serde_json::{Value, json};
use tokio::process::Command;

backends!(erased_users_leave_no_byte_behind_and_the_organization_works_on);

const OLD_EMAIL: &str = "hedwig.before-7f3a@privacy-old.example";
const NEW_EMAIL: &str = "konrad.after-91c2@privacy-new.example";
const OLD_IP: &str = "203.0.113.71";
const NEW_IP: &str = "198.51.100.92";
const OLD_AGENT: &str = "PrivacyProbe/1.0 (old-5e1d)";
const NEW_AGENT: &str = "PrivacyProbe/2.0 (new-8b4c)";
/// Invited by the new admin in the portal: that record names the erased
/// admin as its actor, but the address is the third user's and stays.
const THIRD_EMAIL: &str = "third.stays-44d0@privacy-new.example";

fn needles() -> Vec<Needle> {
    vec![
        Needle::new("the old admin's e-mail", OLD_EMAIL),
        Needle::new("the new admin's e-mail", NEW_EMAIL),
        Needle::new("the old admin's IP", OLD_IP),
        Needle::new("the new admin's IP", NEW_IP),
        Needle::new("the old admin's user agent", OLD_AGENT),
        Needle::new("the new admin's user agent", NEW_AGENT),
    ]
}

/// A portal client: no redirects followed, cookies passed by hand.
fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client")
}

/// Runs `ledger ARGS` beside the server; fails the test unless it exits 0.
async fn cli(backend: &Backend, args: &[&str], said: &mut Vec<u8>) -> Output {
    let output = backend.cli(args).await;
    said.extend_from_slice(&output.stdout);
    said.extend_from_slice(&output.stderr);
    assert!(
        output.status.success(),
        "ledger {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Signs `email` in to the portal through a login link, from `ip` (behind
/// the trusted proxy) with `agent`: the session cookie.
async fn sign_in(s: &Server, backend: &Backend, org: &str, email: &str, ip: &str, agent: &str) -> String {
    let mut said = Vec::new();
    let args = ["users", "login-link", "--email", email, "--organization", org, "--portal-url", &s.base];
    let output = cli(backend, &args, &mut said).await;
    let link = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let token = link.split("token=").nth(1).unwrap_or_else(|| panic!("a link: {link}")).to_owned();
    let answer = http()
        .post(s.url("/portal/link"))
        .header("cookie", "ledger_portal_csrf=double-submit")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", ip)
        .header("user-agent", agent)
        .body(format!("token={token}&csrf=double-submit"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303, "signed in");
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap())
        .find_map(|c| c.strip_prefix("ledger_portal_session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .filter(|c| !c.is_empty())
        .expect("a session cookie")
}

/// A signed-in portal request from `ip` with `agent`: status and body.
async fn portal(
    s: &Server,
    method: Method,
    path: &str,
    cookie: &str,
    client: (&str, &str),
    form: Option<String>,
) -> (u16, String) {
    let mut request = http()
        .request(method, s.url(path))
        .header("cookie", format!("ledger_portal_session={cookie}"))
        .header("x-forwarded-for", client.0)
        .header("user-agent", client.1);
    if let Some(form) = form {
        request = request.header("content-type", "application/x-www-form-urlencoded").body(form);
    }
    let answer = request.send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The `csrf` value of a portal page's first form.
async fn csrf(s: &Server, path: &str, cookie: &str, client: (&str, &str)) -> String {
    let (status, page) = portal(s, Method::GET, path, cookie, client, None).await;
    assert_eq!(status, 200, "{path}: {page}");
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// The sequences of the organization's audit entries whose actor is `user`.
async fn acted_by(s: &Server, org: &str, user: &str) -> BTreeSet<u64> {
    let suffix = format!(":user:{user}");
    s.audit(org)
        .await
        .iter()
        .filter(|e| e["actor"].as_str().is_some_and(|a| a.ends_with(&suffix)))
        .map(|e| e["sequence"].as_u64().expect("a sequence"))
        .collect()
}

/// Every page of the operator's export of `user`.
async fn export_over_api(s: &Server, org: &str, user: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let mut path = format!("/api/v1/privacy/exports?user={org}/{user}&limit=100");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        let page = s.get(&path, Some(OPERATOR)).await.expect(200);
        let next = page["next"].as_u64();
        pages.push(page);
        assert!(pages.len() < 100, "the export ends");
        match next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

/// Every record of an export names `user`: in its event or as its actor.
#[track_caller]
fn only_about(export: &Value, user: &str) {
    for record in export["records"].as_array().expect("records") {
        assert!(record.to_string().contains(user), "a record not about {user} in the export: {record}");
    }
}

/// The `replay` binary built beside `ledger` (`cargo test --workspace`,
/// or `cargo build -p ledger-replay`).
fn replay_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_ledger")).with_file_name("replay");
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is missing: CI runs `cargo test --workspace`", path.display());
    eprintln!("SKIPPED: replay verify and export need the replay binary; build it with `cargo build -p ledger-replay`");
    None
}

/// `replay ARGS` on the backend's data: its output, after checking it exited 0.
async fn replay(replay: &Path, backend: &Backend, args: &[&str], said: &mut Vec<u8>) -> String {
    let mut command = Command::new(replay);
    command.args(args);
    match backend.database_url() {
        Some(url) => command.args(["--database-url", url]),
        None => command.arg("--data-dir").arg(backend.data_dir()),
    };
    let output = command.env_remove("DATABASE_URL").output().await.unwrap();
    said.extend_from_slice(&output.stdout);
    said.extend_from_slice(&output.stderr);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "replay {args:?}: {text}");
    text
}

/// Every file of the data directory and `extra`, and on PostgreSQL every
/// table's live rows: where any of [`needles`] is found.
async fn search_backend(backend: &Backend, extra: &[PathBuf]) -> Vec<String> {
    let needles = needles();
    let (files, mut found) = search::search_files(backend.data_dir(), extra, &needles);
    match backend.database_url() {
        Some(url) => {
            let (tables, in_rows) = search::search_postgres(url, &needles).await;
            assert!(tables.iter().any(|t| t == "events") && tables.len() > 10, "every table searched: {tables:?}");
            found.extend(in_rows);
        }
        None => {
            let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
            assert!(names.iter().any(|n| n == "ledger.sqlite"), "the log's file is searched: {names:?}");
            assert!(names.iter().any(|n| n.starts_with("readmodels")), "the read models' file is searched: {names:?}");
        }
    }
    found
}

async fn erased_users_leave_no_byte_behind_and_the_organization_works_on(backend: Backend) {
    let serve = ["--portal-insecure-cookies", "--trusted-proxy", "127.0.0.1"];
    let mut said = Vec::new(); // everything the CLI and replay printed
    let handed_over = tempfile::tempdir().unwrap(); // the exports given to the people
    let written_after = tempfile::tempdir().unwrap(); // exports written after the erasure

    // An organization, then a user added "before this change": version 1
    // records written with the server stopped.
    let s = backend.start_with(&serve).await;
    let org = s.create_org("Privacy GmbH").await;
    s.create_subscription(&org, "starter", "2026-01-01", true).await;
    s.stop().await;
    let old = uuid::Uuid::now_v7();
    let old_v1 = search::append_v1_user(&backend, &org, old, OLD_EMAIL, OLD_IP, OLD_AGENT).await;
    let old = old.to_string();
    let s = backend.start_with(&serve).await;
    s.wait_ready().await;

    // The new admin, through the API (version 2).
    let added = s
        .post(
            &format!("/api/v1/organizations/{org}/users"),
            Some(OPERATOR),
            json!({ "email": NEW_EMAIL, "role": "admin" }),
        )
        .await
        .expect(201);
    let new = id(&added["id"]);
    let new_added = added["sequence"].as_u64().expect("a sequence");
    s.wait_ready().await;

    // Each signs in from their address and acts in the portal: the old
    // admin upgrades the plan, the new one invites a third user.
    s.move_clock("2026-01-05T09:00:00Z").await;
    let old_client = (OLD_IP, OLD_AGENT);
    let old_session = sign_in(&s, &backend, &org, OLD_EMAIL, OLD_IP, OLD_AGENT).await;
    let token = csrf(&s, &format!("/portal/orgs/{org}/plan"), &old_session, old_client).await;
    let form = format!("csrf={token}&change=upgrade&tier=professional");
    let (status, page) =
        portal(&s, Method::POST, &format!("/portal/orgs/{org}/plan/confirm"), &old_session, old_client, Some(form))
            .await;
    assert_eq!(status, 200, "the upgrade: {page}");
    assert_eq!(s.subscription(&org, OPERATOR).await["tier"], "professional");
    let new_client = (NEW_IP, NEW_AGENT);
    let new_session = sign_in(&s, &backend, &org, NEW_EMAIL, NEW_IP, NEW_AGENT).await;
    let token = csrf(&s, &format!("/portal/orgs/{org}/users"), &new_session, new_client).await;
    let form = format!("csrf={token}&email={}&role=admin", THIRD_EMAIL.replace('@', "%40"));
    let (status, page) =
        portal(&s, Method::POST, &format!("/portal/orgs/{org}/users"), &new_session, new_client, Some(form)).await;
    assert_eq!(status, 200, "the invitation: {page}");
    s.wait_ready().await;

    // What the test wrote about each: the records that added them and
    // every record they were the actor of (sign-ins, the portal's commands).
    let mut old_records: BTreeSet<u64> = old_v1.into_iter().collect();
    old_records.extend(acted_by(&s, &org, &old).await);
    let mut new_records = BTreeSet::from([new_added]);
    new_records.extend(acted_by(&s, &org, &new).await);
    assert!(old_records.len() >= 4, "the v1 records, a sign-in and the upgrade: {old_records:?}");
    assert!(new_records.len() >= 3, "added, a sign-in and the invitation: {new_records:?}");

    // Before the erasure the search finds every value (so it would find a
    // leftover after).
    let before = search_backend(&backend, &[]).await;
    for needle in needles() {
        assert!(before.iter().any(|f| f.starts_with(needle.what)), "{} not found before the erasure", needle.what);
    }

    // Exports before the erasure: every record about the subject, none of
    // the other admin's.
    let old_export_file = handed_over.path().join("old.json");
    let out = old_export_file.to_str().unwrap();
    cli(&backend, &["privacy", "export", "--user", &old, "--out", out], &mut Vec::new()).await;
    let old_export_text = std::fs::read_to_string(&old_export_file).expect("the export file");
    let old_export: Value = serde_json::from_str(&old_export_text).expect("the export is JSON");
    let exported = search::sequences(&old_export);
    assert!(exported.is_superset(&old_records), "missing from the export: {:?}", old_records.difference(&exported));
    assert!(!exported.contains(&new_added), "the other admin's record in the export");
    only_about(&old_export, &old);
    assert!(
        old_export_text.contains(OLD_EMAIL) && old_export_text.contains(OLD_IP),
        "the data itself: {old_export_text}"
    );
    let new_export = export_over_api(&s, &org, &new).await;
    let new_export_text = serde_json::to_string(&new_export).unwrap();
    let exported: BTreeSet<u64> = new_export.iter().flat_map(search::sequences).collect();
    assert!(exported.is_superset(&new_records), "missing from the export: {:?}", new_records.difference(&exported));
    assert!(!exported.contains(&old_v1[0]), "the other admin's record in the export");
    new_export.iter().for_each(|page| only_about(page, &new));
    assert!(new_export_text.contains(NEW_EMAIL) && new_export_text.contains(NEW_IP), "the data itself");

    // An active user is not erased; nothing changes.
    let erase =
        |user: &str| json!({ "subject": { "user": { "organizationId": org, "userId": user } }, "reason": "request" });
    let head = s.head().await;
    let refused = s.post("/api/v1/privacy/erasures", Some(OPERATOR), erase(&new)).await;
    assert_eq!(refused.status.as_u16(), 409, "an active user: {}", refused.text);
    assert_eq!(s.head().await, head, "a refused erasure appends nothing");

    // Deactivated, then erased: the old admin with the CLI, the new one
    // through the operator's route (twice: the second changes nothing).
    s.move_clock("2026-01-10T09:00:00Z").await;
    for user in [&old, &new] {
        let path = format!("/api/v1/organizations/{org}/users/{user}/deactivate");
        s.post(&path, Some(OPERATOR), json!({})).await.expect(200);
    }
    cli(&backend, &["privacy", "erase", "--user", &old, "--reason", "request"], &mut said).await;
    let erased = s.post("/api/v1/privacy/erasures", Some(OPERATOR), erase(&new)).await.expect(200);
    let count = erased["erasedRecords"].as_u64().expect("a count");
    assert!(count >= new_records.len() as u64, "{erased}");
    assert!(!erased["erasureSequences"].as_array().expect("sequences").is_empty(), "{erased}");
    let head = s.head().await;
    let again = s.post("/api/v1/privacy/erasures", Some(OPERATOR), erase(&new)).await.expect(200);
    assert_eq!(s.head().await, head, "erasing twice appends nothing: {again}");
    s.wait_ready().await;

    // Every command on the organization still works.
    let added = s
        .post(
            &format!("/api/v1/organizations/{org}/users"),
            Some(OPERATOR),
            json!({ "email": "after.erasure@privacy-new.example", "role": "admin" }),
        )
        .await
        .expect(201);
    let after = id(&added["id"]);
    s.wait_ready().await;
    let third_link = cli(
        &backend,
        &["users", "login-link", "--email", THIRD_EMAIL, "--organization", &org, "--portal-url", &s.base],
        &mut said,
    )
    .await;
    assert!(String::from_utf8_lossy(&third_link.stdout).contains("token="), "the invited user keeps their address");
    let role = format!("/api/v1/organizations/{org}/users/{after}/role");
    s.post(&role, Some(OPERATOR), json!({ "role": "analyst" })).await.expect(200);
    let issued = s
        .post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "viewer" }))
        .await
        .expect(201);
    let token_id = id(&issued["tokenId"]);
    assert_eq!(s.subscription(&org, &id(&issued["token"])).await["tier"], "professional", "the new token works");
    let revoke = format!("/api/v1/organizations/{org}/tokens/{token_id}/revoke");
    s.post(&revoke, Some(OPERATOR), json!({})).await.expect(200);
    let upgrade = format!("/api/v1/subscriptions/{org}/upgrade");
    s.post(&upgrade, Some(OPERATOR), json!({ "targetTier": "enterprise" })).await.expect(200);
    assert_eq!(s.subscription(&org, OPERATOR).await["tier"], "enterprise");
    s.move_clock("2026-02-02T09:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    assert!(run["failed"].as_array().is_some_and(Vec::is_empty), "{run}");
    s.wait_ready().await;
    let invoices = s.get(&format!("/api/v1/organizations/{org}/invoices"), Some(OPERATOR)).await.expect(200);
    assert!(invoices.to_string().contains("2026-01"), "January's invoice: {invoices}");

    // Exports after the erasure hold the facts, not the data.
    let old_after = written_after.path().join("old-after.json");
    cli(&backend, &["privacy", "export", "--user", &old, "--out", old_after.to_str().unwrap()], &mut said).await;
    let new_after = written_after.path().join("new-after.json");
    std::fs::write(&new_after, serde_json::to_vec(&export_over_api(&s, &org, &new).await).unwrap()).unwrap();
    let after_text = std::fs::read_to_string(&new_after).unwrap();
    assert!(after_text.contains("\"erased\":true"), "erased records are marked: {after_text}");

    // The auditor's tool: the chain, every erasure sanctioned, the read
    // models equal a rebuild, every invoice re-derived.
    if let Some(replay_bin) = replay_binary() {
        let verified = replay(&replay_bin, &backend, &["verify"], &mut said).await;
        assert!(verified.contains("match the live read models") && verified.contains("row for row"), "{verified}");
        let exported = written_after.path().join("ledger.jsonl");
        replay(&replay_bin, &backend, &["export", "--out", exported.to_str().unwrap()], &mut said).await;
    }

    // No byte left: the data directory while the server runs and after it
    // stopped, the exports written since, the CLI's and the server's output.
    let needles = needles();
    let exports = search::files_under(written_after.path());
    let live = search_backend(&backend, &exports).await;
    let output = s.output().join("\n");
    s.stop().await;
    let (files, stopped) = search::search_files(backend.data_dir(), &exports, &needles);
    let mut found = [live, stopped].concat();
    found.extend(search::find_in(output.as_bytes(), &needles, "the server's output"));
    found.extend(search::find_in(&said, &needles, "the CLI's and replay's output"));
    assert!(!files.is_empty(), "the data directory's files are searched");
    assert!(found.is_empty(), "personal data left after the erasure:\n{}", found.join("\n"));
}

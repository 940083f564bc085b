//! Two `ledger serve` processes on one PostgreSQL schema (issue #13): a
//! write on one node is read on the other with `?minSequence=`; when the
//! leader is killed (SIGKILL) or stalls (SIGSTOP, then SIGCONT), the other
//! takes over within seconds, its read models catch up, nothing is applied
//! twice and nothing acknowledged is lost (the tables equal a rebuild from
//! the log, row by row), and the woken former leader writes nothing; each
//! e-mail goes out once across the two.
//!
//! PostgreSQL only (skipped with a notice without `DATABASE_URL`), each test
//! on a fresh schema; the SMTP test needs aiosmtpd like `notify.rs`.

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, OPERATOR, Server, id};
use projections::db::{ReadModelDb, Runner, merkle};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A node that leads says so in its log (`projections::db::leader`).
const ACQUIRED: &str = "leadership acquired";
/// How long the other node may take to lead once the leader is killed: its
/// lock session ends with the process, and followers try every second.
const TAKEOVER_AFTER_KILL: Duration = Duration::from_secs(5);
/// …and once the leader stalls: PostgreSQL ends the idle lock session after
/// `LEADER_SESSION_TIMEOUT` (5 s), then a follower's next try.
const TAKEOVER_AFTER_STALL: Duration = Duration::from_secs(10);
/// The longest a test waits for read models or e-mails.
const WAIT: Duration = Duration::from_secs(15);
const FROM: &str = "Ledger <billing@ledger.test>";

/// A fresh schema and two servers on it; `None` (after a notice) without
/// `DATABASE_URL`.
async fn two_nodes(test: &str, args: &[&str]) -> Option<(Backend, Server, Server)> {
    let backend = Backend::postgres(test).await?;
    let first = backend.start_with(args).await;
    let second = backend.start_with(args).await;
    Some((backend, first, second))
}

fn acquisitions(s: &Server) -> usize {
    s.output().iter().filter(|line| line.contains(ACQUIRED)).count()
}

/// Waits until one of the two leads; (leader, follower).
async fn leader_first(a: Server, b: Server) -> (Server, Server) {
    let deadline = Instant::now() + WAIT;
    loop {
        match (acquisitions(&a), acquisitions(&b)) {
            (1, 0) => return (a, b),
            (0, 1) => return (b, a),
            (0, 0) => {}
            both => panic!("both nodes lead: {both:?}"),
        }
        assert!(Instant::now() < deadline, "no node leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `s` has acquired leadership `times` times; how long that took.
async fn wait_acquired(s: &Server, times: usize, within: Duration) -> Duration {
    let started = Instant::now();
    while acquisitions(s) < times {
        assert!(started.elapsed() < within, "the other node did not take over within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn signal(s: &Server, name: &str) {
    let pid = s.pid().expect("the server runs").to_string();
    let sent = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status();
    assert!(sent.is_ok_and(|status| status.success()), "SIG{name} sent to {pid}");
}

/// The names of the organizations listed by `s` once it includes `sequence`.
async fn listed(s: &Server, sequence: u64) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/organizations?limit=200&minSequence={sequence}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = s.get(&path, Some(OPERATOR)).await.expect(200);
        names.extend(page["items"].as_array().unwrap().iter().map(|item| id(&item["name"])));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return names,
        }
    }
}

/// What a light load had acknowledged: organization names and license
/// validations (counted by the validation statistics, which a record applied
/// twice would count twice), and the highest sequence answered.
#[derive(Default)]
struct Acknowledged {
    names: Vec<String>,
    validations: usize,
    sequence: u64,
}

impl Acknowledged {
    /// One organization created and one validation through `s`, unless the
    /// node does not answer (killed, stalled).
    async fn write(&mut self, s: &Server, key: &str, n: usize) {
        let name = format!("Load {n}");
        let created = post(s, "/api/v1/organizations", Some(OPERATOR), json!({ "name": name })).await;
        if let Some(created) = created {
            self.sequence = self.sequence.max(created["sequence"].as_u64().unwrap());
            self.names.push(name);
        }
        let validated = post(s, "/api/v1/license/validate", None, json!({ "licenseKey": key })).await;
        if let Some(validated) = validated {
            assert_eq!(validated["code"], "VALID", "{validated}");
            self.validations += 1;
        }
    }
}

/// A POST that gives up (`None`) on a node that does not answer within a
/// second, or answers 503 (a validation while no node runs the read
/// models, during a takeover); any other answer but a success fails the
/// test.
async fn post(s: &Server, path: &str, token: Option<&str>, body: Value) -> Option<Value> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let mut request = http.post(s.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    let status = response.status();
    let body: Value = response.json().await.ok()?;
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    assert!(status.is_success(), "{path}: {status} {body}");
    Some(body)
}

/// A subscription's license key on `s` (an organization of its own).
async fn license_key(s: &Server) -> String {
    let org = s.create_org("Validating").await;
    id(&s.create_subscription(&org, "starter", "2026-01-01", true).await["licenseKey"])
}

/// Every read-model table of the backend, once the checkpoints include the
/// log's head, equals a rebuild from the log into a scratch file, row by
/// row (so nothing was applied twice or skipped); the validations counted
/// equal those in the log, and include every one acknowledged.
async fn models_match_a_rebuild(backend: &Backend, acknowledged: &Acknowledged) {
    let url = backend.database_url().unwrap();
    let live = ReadModelDb::open_postgres(url.parse().unwrap()).await.unwrap();
    let log = backend.open_log().await;
    let head = log.head().await.unwrap().sequence;
    let all = || {
        let mut all = projections::models::all(domain::catalog::Catalog::builtin());
        all.push(Box::new(merkle::MerkleProjection::new()) as Box<dyn projections::db::Projection>);
        all
    };
    let names: Vec<&str> = all().iter().map(|p| p.name()).collect();
    let deadline = Instant::now() + WAIT;
    while live.applied(&names).await.unwrap() < head {
        assert!(Instant::now() < deadline, "the live read models did not reach the head {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scratch_dir = tempfile::tempdir().unwrap();
    let scratch = ReadModelDb::open_sqlite_file(&scratch_dir.path().join("rebuild.sqlite")).await.unwrap();
    let records = log.read_page(1..=head, head as usize + 1).await.unwrap();
    let logged = records.iter().filter(|r| r.header.event_type == "LicenseValidated").count();
    let mut runner = Runner::new(log, scratch.clone(), all()).unwrap();
    let applied = runner.applied();
    let rebuild = tokio::spawn(async move { runner.run().await });
    applied.wait_for(head, WAIT).await.expect("the rebuild reaches the head");
    rebuild.abort();
    let tables: Vec<_> = all().iter().flat_map(|p| p.tables().iter().copied()).collect();
    let difference = projections::db::compare(&live, &scratch, &tables).await.unwrap();
    assert!(difference.is_none(), "the live read models differ from a rebuild: {}", difference.unwrap());
    let counts = live.query("SELECT count FROM rm_validation_stats", vec![]).await.unwrap();
    let validations: i64 = counts.iter().map(|row| row.int(0).unwrap()).sum();
    assert_eq!(usize::try_from(validations).unwrap(), logged, "each validation in the log counted once");
    assert!(logged >= acknowledged.validations, "an acknowledged validation is lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_is_read_on_the_other_with_min_sequence() {
    let Some((_backend, a, b)) = two_nodes("multinode::min_sequence", &[]).await else { return };
    let (leader, follower) = leader_first(a, b).await;
    for (writer, reader, name) in [(&leader, &follower, "Written on the leader"), (&follower, &leader, "On the other")]
    {
        let created = writer.post("/api/v1/organizations", Some(OPERATOR), json!({ "name": name })).await.expect(201);
        let sequence = created["sequence"].as_u64().unwrap();
        assert!(listed(reader, sequence).await.iter().any(|n| n == name), "{name} not read on the other node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_is_lost_or_applied_twice() {
    let Some((backend, a, b)) = two_nodes("multinode::sigkill", &[]).await else { return };
    let (leader, follower) = leader_first(a, b).await;
    let key = license_key(&follower).await;
    let mut acknowledged = Acknowledged::default();
    let (mut killed, mut took_over) = (None, None);
    for n in 0..40 {
        acknowledged.write(if n % 2 == 0 { &leader } else { &follower }, &key, n).await;
        if n == 20 {
            signal(&leader, "KILL");
            killed = Some(Instant::now());
        }
        if let Some(killed) = killed
            && took_over.is_none()
            && acquisitions(&follower) > 0
        {
            took_over = Some(killed.elapsed());
        }
    }
    let killed = killed.unwrap();
    wait_acquired(&follower, 1, TAKEOVER_AFTER_KILL.saturating_sub(killed.elapsed())).await;
    let took_over = took_over.unwrap_or_else(|| killed.elapsed());
    eprintln!("takeover after SIGKILL: within {took_over:?}");
    assert!(took_over < TAKEOVER_AFTER_KILL, "took over after {took_over:?}");
    for n in 40..50 {
        acknowledged.write(&follower, &key, n).await;
    }
    let mut names = listed(&follower, acknowledged.sequence).await;
    names.retain(|name| name.starts_with("Load "));
    names.sort();
    let mut expected = acknowledged.names.clone();
    expected.sort();
    assert_eq!(names, expected, "every acknowledged organization once, and nothing else");
    models_match_a_rebuild(&backend, &acknowledged).await;
    drop(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_wakes_fenced_and_the_models_stay_right() {
    let Some((backend, a, b)) = two_nodes("multinode::sigstop", &[]).await else { return };
    let (leader, follower) = leader_first(a, b).await;
    let key = license_key(&follower).await;
    let mut acknowledged = Acknowledged::default();
    for n in 0..10 {
        acknowledged.write(&leader, &key, n).await;
    }
    signal(&leader, "STOP");
    let stopped = Instant::now();
    let mut n = 10;
    while acquisitions(&follower) == 0 {
        assert!(stopped.elapsed() < TAKEOVER_AFTER_STALL, "the other node did not take over");
        acknowledged.write(&follower, &key, n).await;
        n += 1;
    }
    eprintln!("takeover after SIGSTOP: {:?}", stopped.elapsed());
    signal(&leader, "CONT");
    // The woken node notices it lost the lock; meanwhile writes go on.
    let deadline = Instant::now() + WAIT;
    while !leader.output().iter().any(|line| line.contains("leadership lost")) {
        assert!(Instant::now() < deadline, "the woken node did not notice it no longer leads");
        acknowledged.write(&follower, &key, n).await;
        n += 1;
    }
    for m in n..n + 5 {
        acknowledged.write(&leader, &key, m).await;
    }
    assert_eq!(acquisitions(&leader), 1, "the woken node does not lead again");
    for line in leader.output().iter().filter(|line| line.contains("fenced") || line.contains("leadership lost")) {
        eprintln!("woken node: {line}");
    }
    for reader in [&leader, &follower] {
        let mut names = listed(reader, acknowledged.sequence).await;
        names.retain(|name| name.starts_with("Load "));
        assert_eq!(names.len(), acknowledged.names.len(), "each acknowledged organization once");
    }
    models_match_a_rebuild(&backend, &acknowledged).await;
}

/// Where `cargo xtask test` installs aiosmtpd.
fn python_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python")
}

/// aiosmtpd (`smtp_sink.py`) on a free port, keeping each message as a
/// JSON file; `None` (after a notice) when python3 cannot import it.
async fn smtp_sink(test: &str, dir: &Path) -> Option<(Child, u16)> {
    let found = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .env("PYTHONPATH", python_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        store::testing::skip(test, store::testing::Peer::Aiosmtpd, "python3 cannot import aiosmtpd from target/python");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py"))
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir)
        .env("PYTHONPATH", python_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(matches!(&ready, Ok(Ok(Some(line))) if line == "smtp sink ready"), "no SMTP sink: {ready:?}");
    Some((child, port))
}

/// The recipients of every welcome e-mail received so far.
fn welcomed(dir: &Path) -> Vec<String> {
    let mut recipients = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") || name.starts_with('.') {
            continue;
        }
        let message: Value = serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        if message["subject"].as_str().unwrap().contains("Welcome") {
            recipients.extend(message["rcpt_tos"].as_array().unwrap().iter().map(|r| id(r)));
        }
    }
    recipients.sort();
    recipients
}

/// A new customer with an admin and a subscription (an onboarding e-mail).
async fn customer(s: &Server, n: usize) -> String {
    let org = s.create_org(&format!("Customer {n}")).await;
    let admin = format!("admin{n}@customer.test");
    let body = json!({ "email": admin, "role": "admin" });
    s.post(&format!("/api/v1/organizations/{org}/users"), Some(OPERATOR), body).await.expect(201);
    s.create_subscription(&org, "starter", "2026-01-01", true).await;
    admin
}

async fn wait_welcomed(dir: &Path, expected: &[String]) {
    let deadline = Instant::now() + WAIT;
    while welcomed(dir).len() < expected.len() {
        assert!(Instant::now() < deadline, "welcome e-mails: {:?}, expected {expected:?}", welcomed(dir));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_email_goes_out_once_across_two_nodes_and_a_failover() {
    let test = "multinode::smtp";
    if store::testing::postgres_url(test).is_none() {
        return;
    }
    let mail = tempfile::tempdir().unwrap();
    let Some((_sink, port)) = smtp_sink(test, mail.path()).await else { return };
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let args = ["--smtp-url", smtp_url.as_str(), "--mail-from", FROM];
    let Some((_backend, a, b)) = two_nodes(test, &args).await else { return };
    let (leader, follower) = leader_first(a, b).await;
    let mut expected = Vec::new();
    for n in 0..3 {
        expected.push(customer(if n % 2 == 0 { &follower } else { &leader }, n).await);
    }
    wait_welcomed(mail.path(), &expected).await;
    signal(&leader, "KILL");
    for n in 3..6 {
        expected.push(customer(&follower, n).await);
    }
    wait_acquired(&follower, 1, TAKEOVER_AFTER_KILL).await;
    wait_welcomed(mail.path(), &expected).await;
    // Both nodes have had time to send anything twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    expected.sort();
    assert_eq!(welcomed(mail.path()), expected, "each welcome e-mail once");
    drop(leader);
}

const WEBHOOK_SECRET: &str = "whsec_multinode_test_secret_0123456789";

/// A signed invoice event (`kind`, created `later` seconds from now) for a
/// ledger subscription, as Stripe signs it (`t=…,v1=HMAC-SHA256(secret,
/// "t.body")`).
fn invoice_event(event_id: &str, kind: &str, later: u64, subscription: &str) -> (String, String) {
    use hmac::Mac;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let body = json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": now + later,
        "data": { "object": {
            "id": format!("in_{event_id}"),
            "object": "invoice",
            "metadata": { "ledger_subscription_id": subscription },
        } },
    })
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{now}.{body}").as_bytes());
    (body, format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes())))
}

/// Delivers one webhook to a node.
async fn deliver(s: &Server, body: &str, signature: &str) {
    let raw = common::Body::Raw(body.as_bytes().to_vec());
    let headers = [("stripe-signature", signature)];
    s.send(reqwest::Method::POST, "/api/v1/webhooks/stripe", None, raw, &headers).await.expect(200);
}

/// Delivers one webhook to both nodes at once, twice each.
async fn deliver_to_both(a: &Server, b: &Server, body: &str, signature: &str) {
    tokio::join!(deliver(a, body, signature), deliver(b, body, signature));
    tokio::join!(deliver(a, body, signature), deliver(b, body, signature));
}

/// The log's records of each of `types`, counted.
async fn counts(backend: &Backend, types: &[&str]) -> Vec<usize> {
    let log = backend.open_log().await;
    let head = log.head().await.unwrap().sequence;
    let records = log.read_page(1..=head, head as usize + 1).await.unwrap();
    types.iter().map(|t| records.iter().filter(|r| r.header.event_type == *t).count()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stripe_event_is_handled_once_across_two_nodes_and_a_failover() {
    let test = "multinode::stripe_webhooks";
    let Some(backend) = Backend::postgres(test).await else { return };
    let env = [("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)];
    let (a, b) = (backend.start_with_env(&[], &env).await, backend.start_with_env(&[], &env).await);
    let (leader, follower) = leader_first(a, b).await;
    let org = follower.create_org("Paying").await;
    let subscription = id(&follower.create_subscription(&org, "starter", "2026-01-01", true).await["subscriptionId"]);
    let types = ["StripeEventReceived", "StripeEventHandled", "PaymentFailed", "PaymentSucceeded"];
    let (body, signature) = invoice_event("evt_failed", "invoice.payment_failed", 0, &subscription);
    deliver_to_both(&leader, &follower, &body, &signature).await;
    let handled = |n: usize| {
        let backend = &backend;
        async move {
            let deadline = Instant::now() + WAIT;
            while counts(backend, &types).await[1] < n {
                assert!(Instant::now() < deadline, "the event was not handled");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    handled(1).await;
    signal(&leader, "KILL");
    let (body, signature) = invoice_event("evt_paid", "invoice.payment_succeeded", 1, &subscription);
    for _ in 0..2 {
        deliver(&follower, &body, &signature).await;
    }
    handled(2).await;
    // Time for a second handling, had either node made one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counts(&backend, &types).await, [2, 2, 1, 1], "each event received, handled and applied once");
    drop(leader);
}

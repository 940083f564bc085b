//! Notification e-mails, against the real binary and a real SMTP server
//! (aiosmtpd, `smtp_sink.py`), on both backends: the onboarding e-mail
//! carries the license key and nothing else keeps it; the expiry reminder
//! goes out once, across clock moves and restarts; usage warnings at 80%
//! and 100% once each; dunning notices; an SMTP outage delays an e-mail and
//! loses nothing.
//!
//! `cargo xtask test` installs aiosmtpd (`pip install --target target/python`).
//! Without it these tests print `SKIPPED` and pass, except under CI.

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use domain::catalog::Catalog;
use domain::event::StoredEvent;
use domain::subscription::{Policy, Services, Subscription, SubscriptionCommand, SubscriptionEvent};
use domain::{EventId, Metadata, StreamId};
use store::{ExpectedRevision, NewEvent};

use common::{Backend, OPERATOR, Server, id};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a test waits for an e-mail (an SMTP retry may wait seconds).
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);
const FROM: &str = "Ledger <billing@ledger.test>";

/// Where `cargo xtask test` installs aiosmtpd.
fn python_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python")
}

/// Whether aiosmtpd can be imported; under CI its absence fails the test,
/// elsewhere the test skips with a notice.
fn aiosmtpd_available(test: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .env("PYTHONPATH", python_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        store::testing::skip(test, store::testing::Peer::Aiosmtpd, "python3 cannot import aiosmtpd from target/python");
    }
    found
}

/// A free TCP port on loopback (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running aiosmtpd that keeps every message as a JSON file.
struct SmtpSink {
    child: Child,
}

/// The messages a sink (or several, one after another) received.
struct Mailbox {
    dir: tempfile::TempDir,
    port: u16,
}

impl Mailbox {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), port: free_port() }
    }

    fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the SMTP server on this mailbox's port.
    async fn start(&self) -> SmtpSink {
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py"))
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .env("PYTHONPATH", python_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(
            matches!(&ready, Ok(Ok(Some(line))) if line == "smtp sink ready"),
            "the SMTP sink did not start: {ready:?}"
        );
        SmtpSink { child }
    }

    /// Every message so far, in the order received.
    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| serde_json::from_slice(&std::fs::read(self.dir.path().join(name)).unwrap()).unwrap())
            .collect()
    }

    /// The messages to `address` whose subject contains `subject`.
    fn to(&self, address: &str, subject: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["rcpt_tos"].as_array().unwrap().iter().any(|r| r == address))
            .filter(|m| m["subject"].as_str().unwrap().contains(subject))
            .collect()
    }

    /// Waits for the first message to `address` with `subject` in its subject.
    async fn wait_for(&self, address: &str, subject: &str) -> Value {
        let deadline = Instant::now() + MAIL_TIMEOUT;
        loop {
            if let Some(found) = self.to(address, subject).into_iter().next() {
                return found;
            }
            let all: Vec<String> =
                self.messages().iter().map(|m| format!("{} {}", m["rcpt_tos"], m["subject"])).collect();
            assert!(Instant::now() < deadline, "no e-mail to {address} about {subject:?}; received: {all:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl SmtpSink {
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

async fn start(backend: &Backend, mailbox: &Mailbox) -> Server {
    backend.start_with(&["--smtp-url", &mailbox.smtp_url(), "--mail-from", FROM]).await
}

async fn add_admin(s: &Server, org: &str, email: &str) {
    let body = json!({ "email": email, "role": "admin" });
    s.post(&format!("/api/v1/organizations/{org}/users"), Some(OPERATOR), body).await.expect(201);
}

/// A new organization with an admin and a subscription, whose onboarding
/// e-mail is awaited: after it arrives, every notice decided before it was
/// created has been attempted (notices go out in the order decided).
async fn sentinel(s: &Server, mailbox: &Mailbox, name: &str, start: &str) {
    let org = s.create_org(name).await;
    let admin = format!("admin@{}.test", name.to_lowercase());
    add_admin(s, &org, &admin).await;
    s.create_subscription(&org, "starter", start, true).await;
    mailbox.wait_for(&admin, "Welcome").await;
}

/// Every payload, metadata and snapshot byte string of the log.
async fn stored_bytes(backend: &Backend) -> Vec<Vec<u8>> {
    let log = backend.open_log().await;
    let head = log.head().await.unwrap().sequence;
    let mut stored = Vec::new();
    for record in log.read_page(1..=head, head as usize + 1).await.unwrap() {
        stored.extend(record.payload);
        stored.extend(record.metadata);
    }
    for name in [usecases::notify::LEGACY_SNAPSHOT_NAME, usecases::notify::SNAPSHOT_NAME, projections::SNAPSHOT_NAME] {
        if let Some(snapshot) = log.load_snapshot(name).await.unwrap() {
            stored.push(snapshot.state);
        }
    }
    stored
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// The recorded notifications of a kind, from the audit list.
async fn recorded(s: &Server, event_type: &str) -> usize {
    let audit = s.get("/api/v1/audit?limit=200", Some(OPERATOR)).await.expect(200);
    audit["items"].as_array().unwrap().iter().filter(|e| e["eventType"] == event_type).count()
}

/// Waits until exactly `count` sends are recorded (the record follows the
/// SMTP server's acceptance, so it may trail the e-mail a little).
async fn wait_recorded(s: &Server, count: usize) {
    let what = format!("exactly {count} NotificationSent records");
    common::poll(&what, || async { (recorded(s, "NotificationSent").await == count).then_some(()) }).await;
}

async fn onboarding_mail_carries_the_key_and_nothing_else_keeps_it(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::new();
    let sink = mailbox.start().await;
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme GmbH").await;
    // The license is issued before the organization has an admin: the
    // e-mail waits for one.
    let key = id(&s.create_subscription(&org, "starter", "2026-01-01", true).await["licenseKey"]);
    let body = json!({ "email": "ana@acme.test", "role": "analyst" });
    s.post(&format!("/api/v1/organizations/{org}/users"), Some(OPERATOR), body).await.expect(201);
    add_admin(&s, &org, "Admin@Acme.test").await;

    let mail = mailbox.wait_for("admin@acme.test", "Welcome").await;
    assert!(mail["body"].as_str().unwrap().lines().any(|line| line.trim() == key), "the key, on a line: {mail}");
    assert_eq!(mail["rcpt_tos"], json!(["admin@acme.test"]), "admins only: {mail}");
    assert_eq!(mail["from"], FROM);
    assert!(mail["subject"].as_str().unwrap().contains("Acme GmbH"));
    let message_id = mail["message_id"].as_str().unwrap().to_owned();
    assert!(message_id.ends_with("@ledger.test>"), "{message_id}");

    // An upgrade issues a new key: a second onboarding e-mail carries it.
    let upgraded = s
        .post(&format!("/api/v1/subscriptions/{org}/upgrade"), Some(OPERATOR), json!({ "targetTier": "professional" }))
        .await
        .expect(200);
    let new_key = id(&upgraded["newLicenseKey"]);
    let second = mailbox.wait_for("admin@acme.test", "new professional license key").await;
    assert!(second["body"].as_str().unwrap().contains(&new_key), "{second}");
    assert_ne!(second["message_id"], message_id);

    // Recorded once each; the keys are nowhere but in the e-mails.
    wait_recorded(&s, 2).await;
    for stored in stored_bytes(&backend).await {
        assert!(!contains(&stored, &key) && !contains(&stored, &new_key), "a key in the log's stored bytes");
    }
    if backend.data_dir().join("ledger.sqlite").exists() {
        for file in ["ledger.sqlite", "ledger.sqlite-wal"] {
            let bytes = std::fs::read(backend.data_dir().join(file)).unwrap_or_default();
            assert!(!contains(&bytes, &key) && !contains(&bytes, &new_key), "a key in {file}");
        }
    }
    let output = s.output().join("\n");
    assert!(output.contains("notification sent"), "the sends are logged: {output}");
    assert!(!output.contains(&key) && !output.contains(&new_key), "a key in the server's output");
    assert_eq!(mailbox.to("admin@acme.test", "").len(), 2);
    assert!(mailbox.to("ana@acme.test", "").is_empty(), "analysts get no notices");
    s.stop().await;
    sink.stop().await;
}

async fn expiry_reminder_goes_out_once_across_clock_moves_and_restarts(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::new();
    let sink = mailbox.start().await;
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme").await;
    add_admin(&s, &org, "admin@acme.test").await;
    // Ends 2027-01-01 without renewal; one that renews gets no reminder.
    s.create_subscription(&org, "starter", "2026-01-01", false).await;
    let renewing = s.create_org("Renews").await;
    add_admin(&s, &renewing, "admin@renews.test").await;
    s.create_subscription(&renewing, "starter", "2026-01-01", true).await;
    mailbox.wait_for("admin@acme.test", "Welcome").await;
    mailbox.wait_for("admin@renews.test", "Welcome").await;
    let reminders = |address: &str| mailbox.to(address, "ends on 2027-01-01").len();

    // The last moment before the 30 days: nothing yet.
    s.move_clock("2026-12-01T23:59:59Z").await;
    sentinel(&s, &mailbox, "Early", "2026-12-01").await;
    assert_eq!(reminders("admin@acme.test"), 0, "too early");

    s.move_clock("2026-12-02T00:00:00Z").await;
    let reminder = mailbox.wait_for("admin@acme.test", "ends on 2027-01-01").await;
    assert!(reminder["body"].as_str().unwrap().contains("auto-renewal is off"), "{reminder}");
    s.move_clock("2026-12-20T00:00:00Z").await;
    sentinel(&s, &mailbox, "Later", "2026-12-20").await;
    assert_eq!(reminders("admin@acme.test"), 1, "once, however the clock moves");

    // A restart reads its outbox back and sends nothing again.
    s.stop().await;
    let s = start(&backend, &mailbox).await;
    s.move_clock("2026-12-21T00:00:00Z").await;
    sentinel(&s, &mailbox, "Restarted", "2026-12-21").await;
    assert_eq!(reminders("admin@acme.test"), 1, "once, across a restart");
    assert_eq!(reminders("admin@renews.test"), 0, "a renewing subscription gets no reminder");
    // Five onboardings and one reminder, each recorded once (a record
    // follows its e-mail's acceptance).
    wait_recorded(&s, 6).await;
    s.stop().await;
    sink.stop().await;
}

fn report(key: &str, day: &str, users: u64, data: u64, calls: u64) -> Value {
    json!({
        "licenseKey": key,
        "metrics": { "activeUsers": users, "dataVolumeGB": data, "apiCallsCount": calls, "trainingHours": 0 },
        "reportingPeriod": day,
    })
}

async fn usage_warnings_go_out_at_80_and_100_percent_once_each(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::new();
    let sink = mailbox.start().await;
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme").await;
    add_admin(&s, &org, "admin@acme.test").await;
    // Starter: 5 seats, 1,000 GB, 10,000 API calls a month.
    let key = id(&s.create_subscription(&org, "starter", "2026-01-01", true).await["licenseKey"]);
    // Reports come from an activated deployment.
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200);
    let send = |body: Value| s.post("/api/v1/usage/report", None, body);
    let warnings = |subject: &str| mailbox.to("admin@acme.test", subject);

    let answer = send(report(&key, "2026-01-01", 1, 10, 8000)).await.expect(200);
    assert_eq!(answer["limitsApproaching"], json!(["apiCalls"]));
    let eighty = mailbox.wait_for("admin@acme.test", "API calls at 80%").await;
    assert!(eighty["body"].as_str().unwrap().contains("8000 of a limit of 10000 (80%)"), "{eighty}");
    // Still between 80% and 100%: a correction and another day send nothing.
    send(report(&key, "2026-01-01", 1, 10, 8500)).await.expect(200);
    send(report(&key, "2026-01-02", 1, 10, 1000)).await.expect(200);
    // Over 100% of API calls, and data straight past its limit.
    let answer = send(report(&key, "2026-01-02", 1, 1200, 2000)).await.expect(200);
    assert_eq!(answer["warningsIssued"], json!(["dataVolumeGB", "apiCalls"]));
    let hundred = mailbox.wait_for("admin@acme.test", "API calls reached").await;
    assert!(hundred["body"].as_str().unwrap().contains("10500 of a limit of 10000 (105%)"), "{hundred}");
    mailbox.wait_for("admin@acme.test", "data volume (GB) reached").await;
    send(report(&key, "2026-01-02", 1, 1300, 3000)).await.expect(200);

    sentinel(&s, &mailbox, "Sentinel", "2026-01-01").await;
    assert_eq!(warnings("API calls at 80%").len(), 1);
    assert_eq!(warnings("API calls reached").len(), 1);
    assert_eq!(warnings("data volume (GB) reached").len(), 1);
    assert!(warnings("data volume (GB) at 80%").is_empty(), "a metric past 100% gets no 80% warning after");
    assert!(warnings("active users").is_empty());
    s.stop().await;
    sink.stop().await;
}

async fn an_smtp_outage_delays_the_mail_and_loses_nothing(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    // Nothing listens on the mailbox's port yet.
    let mailbox = Mailbox::new();
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme").await;
    add_admin(&s, &org, "admin@acme.test").await;
    let key = id(&s.create_subscription(&org, "starter", "2026-01-01", true).await["licenseKey"]);
    common::poll("a failed send, logged", || async {
        s.output().iter().any(|line| line.contains("notification not sent; will retry")).then_some(())
    })
    .await;
    assert_eq!(recorded(&s, "NotificationSent").await, 0, "not recorded while undelivered");

    let sink = mailbox.start().await;
    let mail = mailbox.wait_for("admin@acme.test", "Welcome").await;
    assert!(mail["body"].as_str().unwrap().contains(&key));
    sentinel(&s, &mailbox, "Sentinel", "2026-01-01").await;
    assert_eq!(mailbox.to("admin@acme.test", "Welcome").len(), 1, "delivered once");
    wait_recorded(&s, 2).await;
    assert!(!s.output().join("\n").contains(&key), "the key is not in the failure's log lines");
    // The counter moves right after the record is appended.
    let sent = r#"notifications_total{kind="onboarding",outcome="sent"} 2"#;
    let metrics = common::poll("the sends counted", || async {
        Some(s.get("/metrics", Some(OPERATOR)).await.text).filter(|metrics| metrics.contains(sent))
    })
    .await;
    let failed = metrics.lines().find(|l| l.starts_with(r#"notifications_total{kind="onboarding",outcome="failed"}"#));
    assert!(failed.is_some_and(|line| !line.ends_with(" 0")), "failed attempts are counted: {metrics}");
    s.stop().await;
    sink.stop().await;
}

/// Decides a subscription command as the server would (load the stream,
/// decide through the aggregate, append expecting its revision), from a
/// second process: the dunning events arrive however the payment
/// processor's reports are wired, and the outbox follows the log.
async fn decide(backend: &Backend, subscription_id: &str, command: SubscriptionCommand) {
    let log = backend.open_log().await;
    let stream_id = StreamId::of("subscription", subscription_id.parse().unwrap());
    let records = log.read_stream(&stream_id, 1, 10_000).await.unwrap();
    let mut subscription = Subscription::default();
    for record in &records {
        let payload = record.payload.as_deref().unwrap();
        let event = SubscriptionEvent::decode(&record.header.event_type, record.header.schema_version, payload);
        subscription.apply(event.unwrap().unwrap());
    }
    let services = Services { catalog: Arc::new(Catalog::builtin()), policy: Policy::default() };
    let sink = EventSink::<Subscription>::default();
    subscription.handle(command, &services, &sink).await.expect("the command is accepted");
    let now = domain::Timestamp::parse_rfc3339(common::CLOCK_START).unwrap();
    let events = sink
        .collect()
        .await
        .iter()
        .map(|event| NewEvent::from_event(event, EventId(uuid::Uuid::now_v7()), now, &Metadata::default()))
        .collect();
    let revision = records.last().unwrap().header.stream_revision;
    let command =
        store::Command { stream_id, expected: ExpectedRevision::Exactly(revision), idempotency: None, events };
    log.append_one(command).await.unwrap().expect("appended");
}

async fn dunning_notices_follow_a_failed_payment_the_suspension_and_the_recovery(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::new();
    let sink = mailbox.start().await;
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme").await;
    add_admin(&s, &org, "admin@acme.test").await;
    let subscription = id(&s.create_subscription(&org, "starter", "2026-01-01", true).await["subscriptionId"]);
    mailbox.wait_for("admin@acme.test", "Welcome").await;
    let at = |text: &str| domain::Timestamp::parse_rfc3339(text).unwrap();

    let failed = SubscriptionCommand::RecordPaymentFailed {
        reference: "in_1".into(),
        reported_at: at("2026-01-05T00:00:00Z"),
        now: at("2026-01-05T00:00:00Z"),
    };
    decide(&backend, &subscription, failed).await;
    let mail = mailbox.wait_for("admin@acme.test", "Payment failed").await;
    assert!(mail["body"].as_str().unwrap().contains("2026-01-19T00:00:00"), "suspended 14 days later: {mail}");

    decide(&backend, &subscription, SubscriptionCommand::Suspend { now: at("2026-01-19T00:00:00Z") }).await;
    mailbox.wait_for("admin@acme.test", "is suspended").await;
    let paid = SubscriptionCommand::RecordPaymentSucceeded {
        reference: "in_1".into(),
        reported_at: at("2026-01-20T00:00:00Z"),
        now: at("2026-01-20T00:00:00Z"),
    };
    decide(&backend, &subscription, paid).await;
    mailbox.wait_for("admin@acme.test", "active again").await;

    sentinel(&s, &mailbox, "Sentinel", "2026-01-01").await;
    for subject in ["Payment failed", "is suspended", "active again"] {
        assert_eq!(mailbox.to("admin@acme.test", subject).len(), 1, "{subject}: once");
    }
    s.stop().await;
    sink.stop().await;
}

async fn a_notice_without_an_admin_is_skipped_and_recorded_but_an_onboarding_waits_for_one(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::new();
    let sink = mailbox.start().await;
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme").await;
    let key = id(&s.create_subscription(&org, "starter", "2026-01-01", true).await["licenseKey"]);
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200);
    // No admin yet: the usage warning cannot go anywhere and is recorded as
    // skipped; the onboarding e-mail waits.
    let answer = s.post("/api/v1/usage/report", None, report(&key, "2026-01-01", 5, 10, 10)).await.expect(200);
    assert_eq!(answer["warningsIssued"], json!(["users"]));
    common::poll("the warning recorded as skipped", || async {
        (recorded(&s, "NotificationSkipped").await == 1).then_some(())
    })
    .await;
    assert_eq!(recorded(&s, "NotificationSent").await, 0);
    let skipped = r#"notifications_total{kind="usage_warning",outcome="skipped"} 1"#;
    common::poll("the skip counted", || async {
        s.get("/metrics", Some(OPERATOR)).await.text.contains(skipped).then_some(())
    })
    .await;

    // An upgrade replaces the key before anyone could be told: the first
    // key's onboarding no longer applies; the new key's waits too.
    let upgrade = json!({ "targetTier": "professional" });
    let upgraded = s.post(&format!("/api/v1/subscriptions/{org}/upgrade"), Some(OPERATOR), upgrade).await.expect(200);
    let new_key = id(&upgraded["newLicenseKey"]);
    common::poll("the first key's onboarding recorded as skipped", || async {
        (recorded(&s, "NotificationSkipped").await == 2).then_some(())
    })
    .await;

    add_admin(&s, &org, "admin@acme.test").await;
    let welcome = mailbox.wait_for("admin@acme.test", "new professional license key").await;
    assert!(welcome["body"].as_str().unwrap().contains(&new_key), "{welcome}");
    assert!(!welcome["body"].as_str().unwrap().contains(&key), "not the replaced key: {welcome}");
    wait_recorded(&s, 1).await;
    assert_eq!(mailbox.messages().len(), 1, "only the new key's e-mail");
    assert!(mailbox.to("admin@acme.test", "active users").is_empty(), "skipped is never sent later");
    s.stop().await;
    sink.stop().await;
}

/// A bad SMTP setting stops the start with a message that names the flag
/// and never echoes the URL's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_smtp_settings_stop_the_start_without_showing_the_password() {
    let backend = Backend::sqlite().await;
    let cases: [(&[&str], &str); 4] = [
        (&["--smtp-url", "http://user:s3cret@mail.test", "--mail-from", "b@ledger.test"], "--smtp-url must be"),
        (&["--smtp-url", "smtp://user:s3cret@mail.test?tls=sometimes", "--mail-from", "b@ledger.test"], "--smtp-url"),
        (&["--smtp-url", "smtp://user:s3cret@mail.test", "--mail-from", "not an address"], "--mail-from"),
        (&["--smtp-url", "smtp://user:s3cret@mail.test"], "--mail-from"),
    ];
    for (flags, expected) in cases {
        let args: Vec<&str> = ["serve", "--listen", "127.0.0.1:0"].iter().chain(flags).copied().collect();
        let output = backend.cli(&args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} must not start");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{flags:?} shows the password: {stderr}");
    }
}

/// A white-labelled organization's e-mails name it by its display name
/// (the text and the sender's name); before the branding, by its name.
async fn a_branded_organizations_mails_carry_its_display_name(backend: Backend) {
    if !aiosmtpd_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::new();
    let sink = mailbox.start().await;
    let s = start(&backend, &mailbox).await;
    let org = s.create_org("Acme Holdings").await;
    add_admin(&s, &org, "admin@acme.test").await;
    // Enterprise: white_labeling, and 5,000 GB of data a month.
    let key = id(&s.create_subscription(&org, "enterprise", "2026-01-01", true).await["licenseKey"]);
    let welcome = mailbox.wait_for("admin@acme.test", "Welcome").await;
    assert!(welcome["subject"].as_str().unwrap().contains("Acme Holdings"), "{welcome}");
    let issued = s
        .post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" }))
        .await
        .expect(201);
    let admin = id(&issued["token"]);
    let body = json!({ "displayName": "  Acme Cloud  ", "primaryColor": "#1F6FEB" });
    let path = format!("/api/v1/organizations/{org}/branding");
    let set = s.send(reqwest::Method::PUT, &path, Some(&admin), common::Body::Json(body), &[]).await.expect(200);
    assert_eq!(set["displayName"], "Acme Cloud");

    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200);
    s.post("/api/v1/usage/report", None, report(&key, "2026-01-01", 1, 4000, 10)).await.expect(200);
    let warning = mailbox.wait_for("admin@acme.test", "data volume (GB) at 80%").await;
    let subject = warning["subject"].as_str().unwrap();
    assert!(subject.contains("Acme Cloud") && !subject.contains("Acme Holdings"), "{warning}");
    assert!(warning["body"].as_str().unwrap().contains("Acme Cloud"), "{warning}");
    assert!(warning["from"].as_str().unwrap().starts_with("Acme Cloud <billing@ledger.test>"), "{warning}");
    s.stop().await;
    sink.stop().await;
}

backends!(
    a_branded_organizations_mails_carry_its_display_name,
    onboarding_mail_carries_the_key_and_nothing_else_keeps_it,
    expiry_reminder_goes_out_once_across_clock_moves_and_restarts,
    usage_warnings_go_out_at_80_and_100_percent_once_each,
    an_smtp_outage_delays_the_mail_and_loses_nothing,
    dunning_notices_follow_a_failed_payment_the_suspension_and_the_recovery,
    a_notice_without_an_admin_is_skipped_and_recorded_but_an_onboarding_waits_for_one,
);

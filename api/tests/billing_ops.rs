//! The billing team's operations on issued invoices (issue 15 part 2),
//! against the real binary, on both backends: voiding an invoice that is
//! not paid, billing its month again, and `replay verify` re-deriving
//! every invoice afterwards.

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, OPERATOR, Reply, Server, id};
use domain::stripe::{StripeEvent, StripeInvoiceCreated};
use domain::subscription::{PaymentSucceeded, SubscriptionEvent};
use domain::{EventId, Metadata, Money, OrganizationId, StreamId, SubscriptionId, Timestamp};
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent};
use uuid::Uuid;

fn kinds(invoice: &Value) -> Vec<(String, String)> {
    let lines = invoice["lines"].as_array().unwrap().iter();
    lines.map(|l| (l["kind"].as_str().unwrap().to_owned(), l["amount"].as_str().unwrap().to_owned())).collect()
}

fn replay_binary() -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_ledger")).with_file_name("replay");
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is missing: CI runs `cargo test --workspace`", path.display());
    eprintln!("SKIPPED: the replay check needs the replay binary; build it with `cargo test --workspace`");
    None
}

/// `replay verify` over the test's store: its output, after asserting it
/// succeeded.
async fn replay_verify(s: &common::Server, backend: &Backend) -> Option<String> {
    let replay = replay_binary()?;
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let mut command = std::process::Command::new(replay);
    command.args(["verify", "--public-key", keys["checkpoints"]["current"].as_str().unwrap()]);
    match backend.database_url() {
        Some(url) => command.args(["--database-url", url]),
        None => command.arg("--data-dir").arg(backend.data_dir()),
    };
    let output = command.env_remove("DATABASE_URL").output().expect("replay runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    Some(stdout)
}

/// Void, then bill the month again: the voided invoice is `void` and out
/// of `amountDue`; the month's next invoice has a new id; the next month's
/// late-usage adjustment counts the voided overage as never invoiced; a second void, an unknown id, a bad
/// reason and a customer's token are refused, changing nothing; and
/// `replay verify` re-derives all three invoices.
async fn a_voided_month_is_billed_again_under_a_new_id(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    let created = s.create_subscription(&acme, "professional", "2026-01-01", true).await;
    let key = id(&created["licenseKey"]);
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200);
    let report = json!({ "licenseKey": key, "reportingPeriod": "2026-01-06",
        "metrics": { "activeUsers": 1, "dataVolumeGB": 4250, "apiCallsCount": 0, "trainingHours": 0 } });
    s.move_clock("2026-01-06T12:00:00Z").await;
    s.post("/api/v1/usage/report", None, report).await.expect(200);
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = |period: &str| s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": period }));
    let first = run("2026-01").await.expect(200)["invoices"][0].clone();
    assert_eq!(first["total"], "13000.00");
    let admin = admin_token(&s, &acme).await;
    assert_eq!(s.subscription(&acme, OPERATOR).await["billing"]["amountDue"], "13000.00");

    let void = |invoice: &str, token: &str, body: Value| void(&s, invoice.to_owned(), token.to_owned(), body);
    let first_id = id(&first["id"]);
    let head = s.head().await;
    void(&first_id, OPERATOR, json!({ "reason": "  " })).await.problem(400, "validation_failed");
    void(&first_id, OPERATOR, json!({ "reason": "x".repeat(501) })).await.problem(400, "validation_failed");
    void(&first_id, OPERATOR, json!({})).await.problem(400, "validation_failed");
    void(&Uuid::now_v7().to_string(), OPERATOR, json!({ "reason": "typo" })).await.problem(404, "not_found");
    void(&first_id, &admin, json!({ "reason": "typo" })).await.problem(403, "forbidden");
    assert_eq!(s.head().await, head, "no refused void appended anything");

    let voided = void(&first_id, OPERATOR, json!({ "reason": "wrong usage figures" })).await.expect(200);
    assert_eq!((&voided["status"], &voided["voided"]["reason"]), (&json!("void"), &json!("wrong usage figures")));
    void(&first_id, OPERATOR, json!({ "reason": "again" })).await.problem(409, "invoice_already_voided");
    let listed = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(&admin)).await.expect(200);
    assert_eq!((listed.as_array().unwrap().len(), &listed[0]["status"]), (1, &json!("void")));
    assert_eq!(s.subscription(&acme, OPERATOR).await["billing"]["amountDue"], "0.00");
    let audit = s.audit(&acme).await;
    assert!(audit.iter().any(|e| e["eventType"] == "InvoiceVoided" && e["actor"] == "operator"), "{audit:?}");

    // The usage figure is corrected; the next run bills January again,
    // under a new id, without the overage.
    s.move_clock("2026-02-02T00:00:00Z").await;
    let corrected = json!({ "licenseKey": key, "reportingPeriod": "2026-01-06",
        "metrics": { "activeUsers": 1, "dataVolumeGB": 100, "apiCallsCount": 0, "trainingHours": 0 } });
    s.post("/api/v1/usage/report", None, corrected).await.expect(200);
    let again = run("2026-01").await.expect(200)["invoices"][0].clone();
    assert_ne!(again["id"], first["id"]);
    assert_eq!((kinds(&again), &again["status"]), (vec![("base".to_owned(), "5000.00".to_owned())], &json!("open")));
    assert!(run("2026-01").await.expect(200)["invoices"].as_array().unwrap().is_empty(), "once more: nothing");
    assert_eq!(s.subscription(&acme, OPERATOR).await["billing"]["amountDue"], "5000.00");

    // February adjusts nothing: the voided overage was never invoiced (had
    // it counted, February would credit 8,000.00 back).
    s.move_clock("2026-03-01T00:00:00Z").await;
    let february = run("2026-02").await.expect(200)["invoices"][0].clone();
    assert_eq!(kinds(&february), vec![("base".to_owned(), "5000.00".to_owned())]);
    let listed = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(&admin)).await.expect(200);
    let statuses: Vec<(&Value, &Value)> =
        listed.as_array().unwrap().iter().map(|i| (&i["period"], &i["status"])).collect();
    assert_eq!(statuses.len(), 3, "{listed}");
    assert!(
        statuses.contains(&(&json!("2026-01"), &json!("void")))
            && statuses.contains(&(&json!("2026-01"), &json!("open")))
    );

    let Some(stdout) = replay_verify(&s, &backend).await else { return };
    assert!(stdout.contains("ok invoices: 3 re-derived"), "{stdout}");
}

async fn void(s: &Server, invoice: String, token: String, body: Value) -> Reply {
    s.post(&format!("/api/v1/invoices/{invoice}/void"), Some(&token), body).await
}

async fn admin_token(s: &Server, org: &str) -> String {
    let path = format!("/api/v1/organizations/{org}/tokens");
    id(&s.post(&path, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201)["token"])
}

async fn credit(s: &Server, path: String, token: String, reason: String, lines: Vec<Value>) -> Reply {
    s.post(&path, Some(&token), json!({ "reason": reason, "lines": lines })).await
}

/// Appends events straight through the store beside the running server:
/// the Stripe invoice of `invoice` created and its payment succeeded, as
/// the sync and the reactor record them.
async fn plant_paid(backend: &Backend, invoice: &Value) {
    let log = backend.open_log().await;
    let subscription_id = SubscriptionId(id(&invoice["subscriptionId"]).parse().unwrap());
    let period =
        chrono::NaiveDate::parse_from_str(&format!("{}-01", invoice["period"].as_str().unwrap()), "%Y-%m-%d").unwrap();
    let at = Timestamp::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
    let created = StripeInvoiceCreated {
        invoice_id: id(&invoice["id"]).parse().unwrap(),
        subscription_id,
        organization_id: OrganizationId(id(&invoice["organizationId"]).parse().unwrap()),
        period,
        customer_id: "cus_test".into(),
        stripe_invoice_id: "in_paid".into(),
        total: Money::usd(invoice["total"].as_str().unwrap().parse().unwrap()),
    };
    let event = NewEvent::from_event(
        &StripeEvent::StripeInvoiceCreated(created),
        EventId(Uuid::now_v7()),
        at,
        &Metadata::default(),
    );
    let stream_id = domain::stripe::invoice_stream(subscription_id, period);
    let command = Command { stream_id, expected: ExpectedRevision::NoStream, idempotency: None, events: vec![event] };
    log.append_one(command).await.expect("the store appends").expect("the command is accepted");
    let stream_id = StreamId::new(format!("subscription/{}", subscription_id.0)).unwrap();
    let records = log.read_stream(&stream_id, 1, 1000).await.expect("the stream reads");
    let revision = records.last().expect("the subscription's events").header.stream_revision;
    let paid = PaymentSucceeded { reference: "in_paid".into(), reported_at: at, at, reactivated: false };
    let event = NewEvent::from_event(
        &SubscriptionEvent::PaymentSucceeded(paid),
        EventId(Uuid::now_v7()),
        at,
        &Metadata::default(),
    );
    let command =
        Command { stream_id, expected: ExpectedRevision::Exactly(revision), idempotency: None, events: vec![event] };
    log.append_one(command).await.expect("the store appends").expect("the command is accepted");
}

/// A paid invoice is not voided (`invoice_paid`, nothing appended); the
/// command line voids an open one as the route does.
async fn a_paid_invoice_is_not_voided_and_the_command_line_voids(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    let other = s.create_org("Other").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.create_subscription(&other, "starter", "2026-01-01", true).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let invoices = run["invoices"].as_array().unwrap();
    let of = |org: &str| invoices.iter().find(|i| i["organizationId"] == org).unwrap().clone();
    let (paid, open) = (of(&acme), of(&other));
    plant_paid(&backend, &paid).await;
    let listed = format!("/api/v1/organizations/{acme}/invoices");
    common::poll("the server to see the payment", || async {
        (s.get(&listed, Some(OPERATOR)).await.expect(200)[0]["status"] == "paid").then_some(())
    })
    .await;
    let head = s.head().await;
    let body = json!({ "reason": "duplicate" });
    s.post(&format!("/api/v1/invoices/{}/void", id(&paid["id"])), Some(OPERATOR), body)
        .await
        .problem(409, "invoice_paid");
    assert_eq!(s.head().await, head);

    let output = backend.cli(&["billing", "void", "--invoice", &id(&open["id"]), "--reason", "sent twice"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("the command prints JSON");
    assert_eq!((&printed["status"], &printed["voided"]["reason"]), (&json!("void"), &json!("sent twice")));
    let listed = format!("/api/v1/organizations/{other}/invoices");
    common::poll("the server to see the void", || async {
        (s.get(&listed, Some(OPERATOR)).await.expect(200)[0]["status"] == "void").then_some(())
    })
    .await;
}

/// The command line issues a credit note as the route does; a voided
/// invoice then takes none, and asks for nothing.
async fn command_line_credit_then_void(s: &Server, backend: &Backend, other: &str, other_invoice: &str) {
    let line = |description: &str, amount: &str| json!({ "description": description, "amount": amount });
    let output = backend
        .cli(&["billing", "credit-note", "--invoice", other_invoice, "--reason", "outage", "--line", "100.00:a day"])
        .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("the command prints JSON");
    assert_eq!((&printed["number"], &printed["total"]), (&json!(1), &json!("100.00")));
    common::poll("the server to see the credit note", || async {
        let due = &s.subscription(other, OPERATOR).await["billing"]["amountDue"];
        (due == "2400.00").then_some(())
    })
    .await;
    let void = json!({ "reason": "wrong month" });
    s.post(&format!("/api/v1/invoices/{other_invoice}/void"), Some(OPERATOR), void).await.expect(200);
    let after = format!("/api/v1/invoices/{other_invoice}/credit-notes");
    let body = json!({ "reason": "late", "lines": [line("a day", "1.00")] });
    s.post(&after, Some(OPERATOR), body).await.problem(409, "invoice_voided");
    assert_eq!(s.subscription(other, OPERATOR).await["billing"]["amountDue"], "0.00");
}

/// Credit notes: bounded lines, never more in total than the invoice
/// (checked against the earlier ones), each lowering the invoice's
/// `amountDue` until, credited in full, it is `paid`; listed by number to
/// the organization's analysts and up and the operator, 404 to another
/// organization; a voided invoice takes none; the command line issues one
/// as the route does; `replay verify` checks them.
async fn credit_notes_lower_what_an_invoice_asks_for(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme").await;
    let other = s.create_org("Other").await;
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.create_subscription(&other, "starter", "2026-01-01", true).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let invoices = run["invoices"].as_array().unwrap();
    let of = |org: &str| id(&invoices.iter().find(|i| i["organizationId"] == org).unwrap()["id"]);
    let (invoice, other_invoice) = (of(&acme), of(&other));
    let (admin, other_admin) = (admin_token(&s, &acme).await, admin_token(&s, &other).await);
    let notes = format!("/api/v1/invoices/{invoice}/credit-notes");
    let line = |description: &str, amount: &str| json!({ "description": description, "amount": amount });
    let credit = |token: &str, reason: &str, lines: Vec<Value>| {
        credit(&s, notes.clone(), token.to_owned(), reason.to_owned(), lines)
    };

    let head = s.head().await;
    credit(OPERATOR, "outage", vec![]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line("a day", "0")]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line("a day", "-5.00")]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line("a day", "1.001")]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line("a day", "10000000.01")]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line(&"d".repeat(201), "1.00")]).await.problem(400, "validation_failed");
    credit(OPERATOR, "", vec![line("a day", "1.00")]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line("a day", "1.00"); 21]).await.problem(400, "validation_failed");
    credit(OPERATOR, "outage", vec![line("all", "2500.01")]).await.problem(409, "credit_exceeds_invoice");
    credit(&admin, "outage", vec![line("a day", "1.00")]).await.problem(403, "forbidden");
    let unknown = format!("/api/v1/invoices/{}/credit-notes", Uuid::now_v7());
    let body = json!({ "reason": "outage", "lines": [line("a day", "1.00")] });
    s.post(&unknown, Some(OPERATOR), body).await.problem(404, "not_found");
    assert_eq!(s.head().await, head, "no refused credit note appended anything");

    let first = credit(OPERATOR, "outage on 14 January", vec![line("a day", "600.00"), line("support", "400.00")]);
    let first = first.await.expect(201);
    assert_eq!((&first["number"], &first["total"]), (&json!(1), &json!("1000.00")));
    assert_eq!(s.subscription(&acme, OPERATOR).await["billing"]["amountDue"], "1500.00");
    let listed = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(&admin)).await.expect(200);
    assert_eq!((&listed[0]["status"], &listed[0]["credited"]), (&json!("open"), &json!("1000.00")));
    credit(OPERATOR, "more", vec![line("the rest and a cent", "1500.01")]).await.problem(409, "credit_exceeds_invoice");
    let rest = credit(OPERATOR, "goodwill", vec![line("the rest", "1500.00")]).await.expect(201);
    assert_eq!(rest["number"], 2);
    assert_eq!(s.subscription(&acme, OPERATOR).await["billing"]["amountDue"], "0.00");
    let listed = s.get(&format!("/api/v1/organizations/{acme}/invoices"), Some(&admin)).await.expect(200);
    assert_eq!((&listed[0]["status"], &listed[0]["credited"]), (&json!("paid"), &json!("2500.00")));
    credit(OPERATOR, "more", vec![line("a cent", "0.01")]).await.problem(409, "credit_exceeds_invoice");
    let void = json!({ "reason": "credited in full" });
    s.post(&format!("/api/v1/invoices/{invoice}/void"), Some(OPERATOR), void).await.problem(409, "invoice_paid");

    let read = s.get(&notes, Some(&admin)).await.expect(200);
    let numbers: Vec<(&Value, &Value)> = read.as_array().unwrap().iter().map(|n| (&n["number"], &n["total"])).collect();
    assert_eq!(numbers, vec![(&json!(1), &json!("1000.00")), (&json!(2), &json!("1500.00"))]);
    assert_eq!(read[0]["lines"][1], json!({ "description": "support", "amount": "400.00" }));
    s.get(&notes, Some(&other_admin)).await.problem(404, "not_found");

    command_line_credit_then_void(&s, &backend, &other, &other_invoice).await;

    let Some(stdout) = replay_verify(&s, &backend).await else { return };
    assert!(stdout.contains("ok invoices: 2 re-derived"), "{stdout}");
}

backends!(
    a_voided_month_is_billed_again_under_a_new_id,
    a_paid_invoice_is_not_voided_and_the_command_line_voids,
    credit_notes_lower_what_an_invoice_asks_for
);

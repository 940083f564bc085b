//! The billing team's Stripe operations (issue 15 item 2), on the real
//! `ledger` binary and both backends, against localstripe and the stand-in
//! (`stripe/peers.rs`): a sync Stripe refuses is listed with its reason,
//! retried by a billing staff member once its cause is gone, and synced;
//! invoices that cannot reach Stripe are listed as stuck with the sync's
//! last error; and a month's reconciliation names each difference planted
//! in the stand-in while matching invoices are reported as matching.

// Test code: a scenario reads best in one piece.
#![allow(clippy::too_many_lines)]

#[allow(dead_code)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod browser;
#[allow(dead_code)]
#[path = "stripe/peers.rs"]
mod peers;

use common::{Backend, OPERATOR, Server, id, poll};
use peers::{LocalStripe, StandIn};
use serde_json::{Value, json};

backends!(a_refused_sync_is_retried_and_the_month_reconciled, the_console_lists_retries_and_reconciles);

/// The server's public URL as its e-mailed links name it.
const PORTAL: &str = "http://portal.test";

async fn count(backend: &Backend, event_type: &str) -> usize {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap();
    records.iter().filter(|r| r.header.event_type == event_type).count()
}

async fn wait_for(backend: &Backend, event_type: &str, n: usize) {
    poll(event_type, || async { (count(backend, event_type).await == n).then_some(()) }).await;
}

/// A service token of a staff role, issued by the operator.
async fn staff_token(s: &Server, role: &str) -> String {
    let body = json!({ "name": format!("{role} automation"), "role": role, "expiresInDays": 30 });
    let issued = s.post("/api/v1/staff/tokens", Some(OPERATOR), body).await.expect(201);
    id(&issued["token"])
}

/// The syncs page once the read models list a refusal (the sync's
/// refusal is not the caller's write, so no read-your-writes wait covers it).
async fn refused_listed(s: &Server, token: &str) -> Value {
    poll("a refusal listed", || async {
        let page = s.get("/api/v1/stripe/syncs", Some(token)).await.expect(200);
        (!page["refused"].as_array().unwrap().is_empty()).then_some(page)
    })
    .await
}

fn retry_path(target: &str) -> String {
    format!("/api/v1/stripe/syncs/{}/retry", target.replace('/', "%2F"))
}

/// The stand-in invoice the sync made for the ledger invoice `invoice`.
fn stripe_invoice_of(stand_in: &StandIn, invoice: &str) -> String {
    let all = stand_in.invoices();
    let found = all.iter().find(|i| i["metadata"]["ledger_invoice_id"] == invoice);
    id(&found.unwrap_or_else(|| panic!("no Stripe invoice for {invoice}: {all:#?}"))["id"])
}

fn row<'a>(report: &'a Value, invoice: &str) -> &'a Value {
    let rows = report["invoices"].as_array().unwrap();
    rows.iter().find(|r| r["invoiceId"] == invoice).unwrap_or_else(|| panic!("no row for {invoice}: {report:#}"))
}

async fn a_refused_sync_is_retried_and_the_month_reconciled(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("stripe_ops").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_ops"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let s = backend.start_with_env(&[], &env).await;
    let (billing, support) = (staff_token(&s, "billing").await, staff_token(&s, "support").await);
    let orgs = [s.create_org("Acme").await, s.create_org("Other").await, s.create_org("Third").await];
    for org in &orgs {
        s.create_subscription(org, "starter", "2026-01-01", true).await;
    }
    // Stripe refuses the first invoice the sync makes, for good.
    stand_in.refuse_next("POST /v1/invoices", 1, "No such customer: 'cus_gone'");
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let invoices: Vec<String> = run["invoices"].as_array().unwrap().iter().map(|i| id(&i["id"])).collect();
    let targets: Vec<String> = run["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("stripe-invoice/{}:2026-01", id(&i["subscriptionId"])))
        .collect();
    assert_eq!(invoices.len(), 3);
    wait_for(&backend, "StripeSyncRefused", 1).await;
    wait_for(&backend, "StripeInvoiceCreated", 2).await;

    // The refusal is listed with its reason (billing); support may not look.
    let syncs = refused_listed(&s, &billing).await;
    let refused = syncs["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{syncs:#}");
    let target = id(&refused[0]["target"]);
    assert!(target.starts_with("stripe-invoice/") && target.ends_with(":2026-01"), "{target}");
    assert_eq!((&refused[0]["status"], &refused[0]["reason"]), (&json!(400), &json!("No such customer: 'cus_gone'")));
    assert_eq!(refused[0]["refusedAt"], "2026-02-01T00:00:00Z");
    assert_eq!(syncs["stuck"], json!([]));
    s.get("/api/v1/stripe/syncs", Some(&support)).await.problem(403, "forbidden");
    s.post(&retry_path(&target), Some(&support), json!({})).await.problem(403, "forbidden");
    s.get("/api/v1/stripe/reconciliation?period=2026-01", Some(&support)).await.problem(403, "forbidden");

    // Retrying what is not refused, or no sync target at all, changes nothing.
    assert!(targets.contains(&target), "{target} is one of the run's invoices");
    let synced = targets.iter().find(|t| **t != target).unwrap();
    s.post(&retry_path(synced), Some(&billing), json!({})).await.problem(409, "sync_not_refused");
    s.post(&retry_path("organization/nope"), Some(&billing), json!({})).await.problem(400, "validation_failed");
    assert_eq!(count(&backend, "StripeSyncRetried").await, 0);

    // The cause is gone (the planted refusal was used up): retried, it syncs.
    let retried = s.post(&retry_path(&target), Some(&billing), json!({})).await.expect(200);
    assert_eq!((&retried["target"], &retried["alreadyRetried"]), (&json!(target), &json!(false)));
    let actor = retried["actor"].as_str().unwrap();
    assert!(actor.starts_with("service:") && actor.ends_with(":billing"), "the billing token's: {retried}");
    wait_for(&backend, "StripeInvoiceCreated", 3).await;
    let again = s.post(&retry_path(&target), Some(&billing), json!({})).await;
    // Answered with the same retry while it is the stream's last word, and
    // refused once the invoice is in Stripe; never appended twice.
    if again.status.as_u16() == 200 {
        assert_eq!((&again.json["alreadyRetried"], &again.json["sequence"]), (&json!(true), &retried["sequence"]));
    } else {
        again.problem(409, "sync_not_refused");
    }
    assert_eq!(count(&backend, "StripeSyncRetried").await, 1);
    assert_eq!(count(&backend, "StripeSyncRefused").await, 1);
    let syncs = s.get("/api/v1/stripe/syncs", Some(&billing)).await.expect(200);
    assert_eq!((&syncs["refused"], &syncs["stuck"]), (&json!([]), &json!([])));

    // A credit note Stripe refuses once: retried, it reaches Stripe too
    // (after the refusal and the retry on its stream), and every invoice
    // matches.
    stand_in.refuse_next("POST /v1/credit_notes", 1, "Invoice is being finalized");
    let body = json!({ "reason": "outage", "lines": [{ "description": "one day", "amount": "80.65" }] });
    s.post(&format!("/api/v1/invoices/{}/credit-notes", invoices[1]), Some(&billing), body).await.expect(201);
    wait_for(&backend, "StripeSyncRefused", 2).await;
    let syncs = refused_listed(&s, &billing).await;
    let note_target = id(&syncs["refused"][0]["target"]);
    assert!(note_target.starts_with("stripe-credit-note/"), "{syncs:#}");
    s.post(&retry_path(&note_target), Some(&billing), json!({})).await.expect(200);
    wait_for(&backend, "StripeCreditNoteCreated", 1).await;
    let report = s.get("/api/v1/stripe/reconciliation?period=2026-01", Some(&billing)).await.expect(200);
    assert_eq!(
        (&report["matching"], &report["differing"], &report["truncated"]),
        (&json!(3), &json!(0), &json!(false))
    );
    for invoice in &invoices {
        let found = row(&report, invoice);
        assert_eq!(found["differences"], json!([]), "{found:#}");
        assert_eq!(found["ledger"], found["stripe"], "{found:#}");
        assert_eq!(found["stripeInvoiceId"], stripe_invoice_of(&stand_in, invoice));
    }
    assert_eq!(row(&report, &invoices[1])["stripe"]["credited"], "80.65");

    // Differences planted in Stripe, each named.
    stand_in
        .plant(&stripe_invoice_of(&stand_in, &invoices[0]), |i| i["total"] = json!(i["total"].as_i64().unwrap() + 100));
    stand_in.plant(&stripe_invoice_of(&stand_in, &invoices[1]), |i| {
        i["status"] = json!("paid");
        i["customer"] = json!("cus_someone_else");
        i["post_payment_credit_notes_amount"] = json!(0);
    });
    stand_in.delete_invoice(&stripe_invoice_of(&stand_in, &invoices[2]));
    let stray = stand_in.add_invoice("cus_stray", 4200, json!({ "ledger_period": "2026-01" }));
    stand_in.add_invoice("cus_stray", 4200, json!({ "ledger_period": "2026-02" }));
    let report = s.get("/api/v1/stripe/reconciliation?period=2026-01", Some(&billing)).await.expect(200);
    assert_eq!((&report["matching"], &report["differing"]), (&json!(0), &json!(4)), "{report:#}");
    assert_eq!(row(&report, &invoices[0])["differences"], json!(["amount_differs"]));
    assert_eq!(
        row(&report, &invoices[1])["differences"],
        json!(["status_differs", "customer_differs", "credit_notes_differ"])
    );
    assert_eq!(row(&report, &invoices[2])["differences"], json!(["missing_in_stripe"]));
    let rows = report["invoices"].as_array().unwrap();
    let strays: Vec<&Value> = rows.iter().filter(|r| r["ledger"].is_null()).collect();
    assert_eq!(strays.len(), 1, "{report:#}");
    assert_eq!(
        (&strays[0]["stripeInvoiceId"], &strays[0]["differences"]),
        (&json!(stray), &json!(["missing_in_ledger"]))
    );
    assert_eq!(strays[0]["stripe"]["total"], "42.00");

    // The same as CSV.
    let csv = s.get("/api/v1/stripe/reconciliation?period=2026-01&format=csv", Some(&billing)).await;
    assert_eq!((csv.status.as_u16(), csv.content_type.as_deref()), (200, Some("text/csv")), "{}", csv.text);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 5, "{}", csv.text);
    assert!(lines[0].starts_with("period,invoice_id,stripe_invoice_id,"), "{}", lines[0]);
    let line = lines.iter().find(|l| l.contains(&invoices[1])).unwrap();
    assert!(line.ends_with(",status_differs;customer_differs;credit_notes_differ"), "{line}");
    assert!(line.contains(",open,paid,"), "{line}");
    assert!(lines.iter().any(|l| l.contains(&stray) && l.ends_with(",missing_in_ledger")), "{}", csv.text);

    // Bad periods and formats are refused.
    for bad in ["2026-13", "2026-1", "26-01", "", "2026-01-01"] {
        let path = format!("/api/v1/stripe/reconciliation?period={bad}");
        s.get(&path, Some(&billing)).await.problem(400, "validation_failed");
    }
    s.get("/api/v1/stripe/reconciliation", Some(&billing)).await.problem(400, "validation_failed");
    let xml = "/api/v1/stripe/reconciliation?period=2026-01&format=xml";
    s.get(xml, Some(&billing)).await.problem(400, "validation_failed");

    // Stuck: February's invoices cannot reach Stripe (an outage); an hour
    // later they are listed with the sync's last error.
    stand_in.fail_next(1_000_000);
    s.move_clock("2026-03-01T00:00:00Z").await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-02" })).await.expect(200);
    let stuck = s.get("/api/v1/stripe/syncs", Some(&billing)).await.expect(200);
    assert_eq!(stuck["stuck"], json!([]), "not stuck yet");
    s.move_clock("2026-03-01T01:00:00Z").await;
    let page = poll("the stuck invoices with their last errors", || async {
        let page = s.get("/api/v1/stripe/syncs?limit=2", Some(&billing)).await.expect(200);
        let stuck = page["stuck"].as_array().unwrap().clone();
        (stuck.len() == 2 && stuck.iter().all(|s| s["lastError"].as_str().is_some_and(|e| e.contains("500"))))
            .then_some(page)
    })
    .await;
    assert_eq!(page["stuck"][0]["pendingSince"], "2026-03-01T00:00:00Z");
    assert_eq!(page["stuck"][0]["period"], "2026-02");
    assert_eq!(page["stuckAfterSeconds"], 1800);
    let next = id(&page["next"]);
    let rest = s.get(&format!("/api/v1/stripe/syncs?limit=2&after={}", next.replace('/', "%2F")), Some(&billing)).await;
    let rest = rest.expect(200);
    assert_eq!(rest["stuck"].as_array().unwrap().len(), 1, "{rest:#}");
    assert!(rest["next"].is_null());
    let all: Vec<&Value> = page["stuck"].as_array().unwrap().iter().chain(rest["stuck"].as_array().unwrap()).collect();
    let mut targets: Vec<&str> = all.iter().map(|s| s["target"].as_str().unwrap()).collect();
    targets.dedup();
    assert_eq!(targets.len(), 3, "three distinct invoices over two pages");
    s.get("/api/v1/stripe/syncs?limit=0", Some(&billing)).await.problem(400, "validation_failed");

    // The auditor's replay reads the retries like every other event.
    replay_verify(&s, &backend).await;
}

/// `replay verify` over the test's store succeeds (skipped, with a notice,
/// without the replay binary outside CI).
async fn replay_verify(s: &Server, backend: &Backend) {
    let replay = std::path::Path::new(env!("CARGO_BIN_EXE_ledger")).with_file_name("replay");
    if !replay.exists() {
        assert!(std::env::var_os("CI").is_none(), "{} is missing: CI runs `cargo test --workspace`", replay.display());
        eprintln!("SKIPPED: the replay check needs the replay binary; build it with `cargo test --workspace`");
        return;
    }
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let mut command = std::process::Command::new(replay);
    command.args(["verify", "--public-key", keys["checkpoints"]["current"].as_str().unwrap()]);
    match backend.database_url() {
        Some(url) => command.args(["--database-url", url]),
        None => command.arg("--data-dir").arg(backend.data_dir()),
    };
    let output = command.env_remove("DATABASE_URL").output().expect("replay runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
}

/// The console's Stripe page in a real browser: a billing staff member
/// sees the refused sync with its reason, presses Retry (a CSRF-checked
/// form) and sees it gone once synced; the month's report names a planted
/// difference; axe finds no serious violation; a support user has no
/// Stripe page.
async fn the_console_lists_retries_and_reconciles(backend: Backend) {
    if !browser::peers_available(module_path!()) {
        return;
    }
    let Some(localstripe) = LocalStripe::start("stripe_ops_console").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_console"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let flags = ["--portal-insecure-cookies", "--portal-url", PORTAL];
    let s = backend.start_with_env(&flags, &env).await;
    for (name, email, role) in [("Bob", "bob@vendor.test", "billing"), ("Sam", "sam@vendor.test", "support")] {
        let body = json!({ "name": name, "email": email, "role": role });
        s.post("/api/v1/staff", Some(OPERATOR), body).await.expect(201);
    }
    let orgs = [s.create_org("Acme").await, s.create_org("Other").await];
    for org in &orgs {
        s.create_subscription(org, "starter", "2026-01-01", true).await;
    }
    stand_in.refuse_next("POST /v1/invoices", 1, "No such customer: 'cus_gone'");
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    wait_for(&backend, "StripeSyncRefused", 1).await;
    wait_for(&backend, "StripeInvoiceCreated", 1).await;
    refused_listed(&s, OPERATOR).await;

    let b = browser::Browser::start_with_shots(&s.url(""), &backend, "console").await;
    sign_in(&b, &backend, "bob@vendor.test").await;
    b.go("/console/stripe").await;
    assert_eq!(b.text("nav a[aria-current=page]").await, "Stripe");
    assert!(b.text("#refused").await.contains("No such customer: 'cus_gone'"));
    assert!(b.text("#summary").await.starts_with("2026-01: 1 matching, 1 with differences"));
    assert!(b.text("#reconciliation").await.contains("missing_in_stripe"));
    b.accessible("stripe-syncs").await;
    b.screenshot("stripe-syncs").await;

    // Retry: the invoice syncs, and the report matches in full.
    b.click("#refused button").await;
    assert!(b.text("#message").await.ends_with("will be synced again."));
    wait_for(&backend, "StripeInvoiceCreated", 2).await;
    assert_eq!(actors_of(&backend, "StripeSyncRetried").await.len(), 1);
    let first = id(&run["invoices"][0]["id"]);
    let stripe_id = {
        let all = stand_in.invoices();
        id(&all.iter().find(|i| i["metadata"]["ledger_invoice_id"] == first.as_str()).unwrap()["id"])
    };
    stand_in.plant(&stripe_id, |i| i["status"] = json!("void"));
    b.go("/console/stripe?period=2026-01").await;
    assert_eq!(b.text("#no-refused").await, "Stripe refused nothing.");
    assert!(
        b.text("#summary").await.starts_with("2026-01: 1 matching, 1 with differences"),
        "{}",
        b.text("#summary").await
    );
    assert!(b.text("#reconciliation").await.contains("status_differs"));
    b.accessible("stripe-reconciliation").await;
    b.screenshot("stripe-reconciliation").await;

    // A retry without the session's CSRF token changes nothing.
    let cookie = b.cookie("ledger_console_session").await;
    let forged = browser::http()
        .post(s.url("/console/stripe/retry"))
        .header("cookie", format!("ledger_console_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("target=stripe-invoice%2Fx&csrf=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(actors_of(&backend, "StripeSyncRetried").await.len(), 1);

    // Support: no Stripe link, and the page is refused.
    let b = browser::Browser::start_with_shots(&s.url(""), &backend, "console").await;
    sign_in(&b, &backend, "sam@vendor.test").await;
    b.go("/console/").await;
    assert!(!b.text("nav").await.contains("Stripe"));
    let page = browser::http()
        .get(s.url("/console/stripe"))
        .header("cookie", format!("ledger_console_session={}", b.cookie("ledger_console_session").await))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 403);
}

/// Signs a staff user in with a link from `ledger staff login-link`.
async fn sign_in(b: &browser::Browser, backend: &Backend, email: &str) {
    let out = backend.cli(&["staff", "login-link", "--email", email, "--portal-url", PORTAL]).await;
    assert!(out.status.success(), "login-link: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let link = text.split_whitespace().find(|w| w.starts_with(PORTAL)).expect("a link").to_owned();
    b.go(link.strip_prefix(PORTAL).unwrap()).await;
    b.click("#use-link").await;
    b.find("#me").await;
}

/// The actor of each record of a type, in log order.
async fn actors_of(backend: &Backend, event_type: &str) -> Vec<String> {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap();
    records
        .into_iter()
        .filter(|r| r.header.event_type == event_type)
        .map(|r| {
            domain::Metadata::decode(r.metadata.as_deref().unwrap_or_default())
                .unwrap_or_default()
                .actor
                .unwrap_or_default()
        })
        .collect()
}

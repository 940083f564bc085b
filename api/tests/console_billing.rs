//! The console's customer and invoice pages (issue 15) in a real browser
//! (the shared harness, `browser/mod.rs`: chromium over WebDriver, axe-core
//! on every page, aiosmtpd catching the server's e-mail), against the real
//! `ledger` binary with Stripe on (the stand-in in front of localstripe,
//! `stripe/peers.rs`): a billing staff user finds a customer, voids one
//! invoice and issues a credit note on another, and the invoice's status,
//! the subscription's `amountDue` and Stripe's copy follow; a support user
//! resends a sign-in e-mail, which arrives; an auditor reads the same pages
//! without their forms, and a forged void from the auditor is refused and
//! appends nothing. Screenshots go to docs/console/ (SQLite run only).
//! The resend route's refusals are checked over HTTP on both backends.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod browser;
#[allow(dead_code)]
#[path = "stripe/peers.rs"]
mod peers;

use browser::{Browser, Mailbox};
use common::{Backend, OPERATOR, Server, id, poll};
use peers::{Call, LocalStripe, StandIn};
use serde_json::{Value, json};

/// The public URL `ledger staff login-link` and the e-mails name.
const PORTAL: &str = "http://portal.test";
const FROM: &str = "Ledger <portal@ledger.test>";

backends!(the_resend_route_refuses_unknown_users_other_organizations_and_floods);

async fn records_of(backend: &Backend, event_type: &str) -> Vec<domain::record::Record> {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap();
    records.into_iter().filter(|r| r.header.event_type == event_type).collect()
}

async fn count(backend: &Backend, event_type: &str) -> usize {
    records_of(backend, event_type).await.len()
}

async fn wait_for(backend: &Backend, event_type: &str, n: usize) {
    poll(event_type, || async { (count(backend, event_type).await == n).then_some(()) }).await;
}

fn actor(record: &domain::record::Record) -> String {
    let metadata = domain::Metadata::decode(record.metadata.as_deref().unwrap_or_default()).unwrap_or_default();
    metadata.actor.unwrap_or_default()
}

/// The Stripe invoice the stand-in made for the ledger invoice `invoice`.
fn stripe_invoice(calls: &[Call], invoice: &str) -> String {
    let item = calls.iter().find(|c| {
        c.path == "POST /v1/invoiceitems" && c.status == 200 && c.field("metadata[ledger_invoice_id]") == Some(invoice)
    });
    item.and_then(|c| c.field("invoice"))
        .unwrap_or_else(|| panic!("no Stripe invoice for {invoice}: {calls:#?}"))
        .to_owned()
}

async fn amount_due(s: &Server, org: &str) -> Value {
    s.subscription(org, OPERATOR).await["billing"]["amountDue"].clone()
}

/// Adds a staff user over the API with the operator token; their id.
async fn add_staff(s: &Server, name: &str, email: &str, role: &str) -> String {
    let body = json!({ "name": name, "email": email, "role": role });
    id(&s.post("/api/v1/staff", Some(OPERATOR), body).await.expect(201)["id"])
}

/// The console path of a sign-in link from `ledger staff login-link`.
async fn login_link(backend: &Backend, email: &str) -> String {
    let out = backend.cli(&["staff", "login-link", "--email", email, "--portal-url", PORTAL]).await;
    assert!(out.status.success(), "login-link: {}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    link.strip_prefix(PORTAL).expect("a link on the portal's URL").to_owned()
}

/// Signs the browser in as the staff user `email` (signing out whoever was).
async fn sign_in(b: &Browser, backend: &Backend, email: &str) {
    b.client.delete_all_cookies().await.unwrap();
    b.go(&login_link(backend, email).await).await;
    b.click("#use-link").await;
    assert!(b.text("#me").await.contains('('), "signed in as {email}");
}

async fn add_user(s: &Server, org: &str, email: &str, role: &str) -> String {
    let body = json!({ "email": email, "role": role });
    id(&s.post(&format!("/api/v1/organizations/{org}/users"), Some(OPERATOR), body).await.expect(201)["id"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_staff_void_and_credit_in_the_console_and_support_resends_a_sign_in() {
    let backend = Backend::sqlite().await;
    if !browser::peers_available(module_path!()) {
        return;
    }
    let Some(localstripe) = LocalStripe::start("console_billing_void_and_credit").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let mailbox = Mailbox::start().await;
    let smtp = format!("smtp://127.0.0.1:{}", mailbox.port);
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_console"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let flags = ["--smtp-url", &smtp, "--mail-from", FROM, "--portal-insecure-cookies", "--portal-url", PORTAL];
    let s = backend.start_with_env(&flags, &env).await;
    let (acme, other) = (s.create_org("Acme Robotics").await, s.create_org("Initech").await);
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.create_subscription(&other, "starter", "2026-01-01", true).await;
    add_user(&s, &acme, "admin@acme.test", "admin").await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let invoices = run["invoices"].as_array().unwrap().clone();
    let of = |org: &str| id(&invoices.iter().find(|i| i["organizationId"] == org).unwrap()["id"]);
    let (voided, credited) = (of(&acme), of(&other));
    wait_for(&backend, "StripeInvoiceCreated", 2).await;
    assert_eq!(amount_due(&s, &acme).await, "2500.00");
    let bea = add_staff(&s, "Bea", "bea@vendor.test", "billing").await;
    add_staff(&s, "Sam", "sam@vendor.test", "support").await;
    add_staff(&s, "Eve", "eve@vendor.test", "auditor").await;
    let b = Browser::start_with_shots(&s.base, &backend, "console").await;

    // Bea (billing) finds the customer by a word of its name.
    sign_in(&b, &backend, "bea@vendor.test").await;
    b.click("a[href='/console/customers']").await;
    b.fill("#q", "acme").await;
    b.click("#search").await;
    assert!(b.text("#customers").await.contains("Acme Robotics"));
    assert!(!b.text("#customers").await.contains("Initech"));
    b.screenshot("customers").await;
    b.accessible("customers").await;
    b.click(&format!("a[href='/console/customers/{acme}']")).await;
    assert_eq!(b.text("#amount-due").await, "2500.00");
    assert!(b.text("#users").await.contains("admin@acme.test"));
    assert!(b.text("#timeline").await.contains("InvoiceIssued"));
    b.screenshot("customer").await;
    b.accessible("customer").await;

    // The invoice, then its void: status void, amountDue 0, Stripe's copy
    // voided once under the invoice's own key.
    b.click(&format!("#invoice-{voided}")).await;
    assert_eq!(b.text("#invoice-status").await, "open");
    assert!(b.text("#lines").await.contains("2500.00"));
    b.screenshot("invoice").await;
    b.accessible("invoice").await;
    b.fill("#void-reason-input", "sent to the wrong customer").await;
    b.click("#void").await;
    assert_eq!(b.text("#message").await, "The invoice was voided.");
    assert_eq!(b.text("#invoice-status").await, "void");
    assert_eq!(b.text("#void-reason").await, "sent to the wrong customer");
    b.screenshot("invoice-void").await;
    b.accessible("the voided invoice").await;
    wait_for(&backend, "StripeInvoiceVoided", 1).await;
    let calls = stand_in.calls();
    let voids: Vec<&Call> = calls.iter().filter(|c| c.path.ends_with("/void")).collect();
    assert_eq!(voids.len(), 1, "{calls:#?}");
    assert_eq!(voids[0].path, format!("POST /v1/invoices/{}/void", stripe_invoice(&calls, &voided)));
    assert_eq!(amount_due(&s, &acme).await, "0.00");
    assert_eq!(actor(&records_of(&backend, "InvoiceVoided").await[0]), format!("staff:{bea}:billing"));

    // A credit note of two lines on the other customer's invoice.
    b.go(&format!("/console/customers/{other}/invoices/{credited}")).await;
    b.fill("#credit-reason", "outage on 14 January").await;
    b.fill("#description-1", "one day of service").await;
    b.fill("#amount-1", "80.65").await;
    b.fill("#description-2", "support").await;
    b.fill("#amount-2", "19.35").await;
    b.click("#credit").await;
    assert_eq!(b.text("#message").await, "Credit note 1 for 100.00 was issued.");
    assert_eq!(b.text("#invoice-status").await, "open");
    assert_eq!(b.text("#credited").await, "100.00");
    assert!(b.text("#notes").await.contains("one day of service: 80.65"));
    b.screenshot("credit-note").await;
    b.accessible("the credited invoice").await;
    wait_for(&backend, "StripeCreditNoteCreated", 1).await;
    let calls = stand_in.calls();
    let notes: Vec<&Call> = calls.iter().filter(|c| c.path == "POST /v1/credit_notes").collect();
    assert_eq!(notes.len(), 1, "{calls:#?}");
    assert_eq!(notes[0].field("invoice"), Some(stripe_invoice(&calls, &credited).as_str()));
    assert_eq!(
        (notes[0].field("lines[0][unit_amount]"), notes[0].field("lines[1][unit_amount]")),
        (Some("8065"), Some("1935"))
    );
    assert_eq!(amount_due(&s, &other).await, "2400.00");
    // More than is left to credit: refused on the page, nothing appended.
    b.fill("#credit-reason", "too much").await;
    b.fill("#description-1", "everything").await;
    b.fill("#amount-1", "2400.01").await;
    b.click("#credit").await;
    assert!(b.client.source().await.unwrap().contains("more"), "the refusal is shown");
    assert_eq!(count(&backend, "CreditNoteIssued").await, 1);

    // Sam (support) reads the invoice without its forms, and resends the
    // customer's admin a sign-in e-mail, which arrives.
    sign_in(&b, &backend, "sam@vendor.test").await;
    b.go(&format!("/console/customers/{other}/invoices/{credited}")).await;
    assert_eq!(b.text("#invoice-status").await, "open");
    assert!(
        !b.client.source().await.unwrap().contains("id=\"void-form\"")
            && !b.client.source().await.unwrap().contains("id=\"credit-form\"")
    );
    b.go(&format!("/console/customers/{acme}")).await;
    b.click("button[aria-label='Send admin@acme.test a sign-in e-mail']").await;
    assert_eq!(b.text("#message").await, "A sign-in e-mail was sent.");
    b.accessible("customer after a resend").await;
    let link = mailbox.link("admin@acme.test", "Your sign-in link to the customer portal", 1).await;
    assert!(link.starts_with("/portal/link?token="), "{link}");
    let resent = records_of(&backend, "PortalMailResent").await;
    assert_eq!(resent.len(), 1);
    assert!(actor(&resent[0]).starts_with("staff:") && actor(&resent[0]).ends_with(":support"));
    let payload = String::from_utf8_lossy(resent[0].payload.as_deref().unwrap()).into_owned();
    assert!(!payload.contains("admin@acme.test") && !payload.contains("token"), "{payload}");
    assert!(b.text("#timeline").await.contains("PortalMailResent"), "the resend is on the customer's timeline");

    // Eve (auditor): the pages, read only; a forged void with her own
    // session's CSRF token is refused and appends nothing.
    sign_in(&b, &backend, "eve@vendor.test").await;
    b.go(&format!("/console/customers/{other}")).await;
    assert!(!b.client.source().await.unwrap().contains("/resend\""), "no resend buttons for the auditor");
    b.accessible("customer, as the auditor").await;
    b.go(&format!("/console/customers/{other}/invoices/{credited}")).await;
    let page = b.client.source().await.unwrap();
    assert!(!page.contains("id=\"void-form\"") && !page.contains("id=\"credit-form\""));
    b.accessible("invoice, as the auditor").await;
    let session = b.cookie("ledger_console_session").await;
    let csrf = {
        let start = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
        page[start..].split('"').next().unwrap().to_owned()
    };
    let before = backend.open_log().await.head().await.unwrap().sequence;
    let forged = reqwest::Client::new()
        .post(s.url(&format!("/console/customers/{other}/invoices/{credited}/void")))
        .header("cookie", format!("ledger_console_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&reason=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let resend = reqwest::Client::new()
        .post(s.url(&format!("/console/customers/{acme}/users/{}/resend", "00000000-0000-0000-0000-000000000000")))
        .header("cookie", format!("ledger_console_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&kind=signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status().as_u16(), 403, "the auditor may not resend");
    let credit = reqwest::Client::new()
        .post(s.url(&format!("/console/customers/{other}/invoices/{credited}/credit-notes")))
        .header("cookie", format!("ledger_console_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&reason=forged&description_1=x&amount_1=1.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(credit.status().as_u16(), 403, "the auditor may not credit");
    // An invoice under another customer's path is not found.
    let elsewhere = reqwest::Client::new()
        .get(s.url(&format!("/console/customers/{acme}/invoices/{credited}")))
        .header("cookie", format!("ledger_console_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status().as_u16(), 404);
    assert_eq!(backend.open_log().await.head().await.unwrap().sequence, before, "nothing appended");
    assert_eq!(count(&backend, "InvoiceVoided").await, 1);
}

/// The resend route over HTTP: the operator (a staff admin) resends; an
/// unknown user, another organization's user, a deactivated user and the
/// auditor are refused; the fourth resend within the hour is 429 with
/// Retry-After. Each refusal appends nothing.
async fn the_resend_route_refuses_unknown_users_other_organizations_and_floods(backend: Backend) {
    if !browser::peers_available(module_path!()) {
        return;
    }
    let mailbox = Mailbox::start().await;
    let smtp = format!("smtp://127.0.0.1:{}", mailbox.port);
    let s = backend.start_with(&["--smtp-url", &smtp, "--mail-from", FROM, "--portal-url", PORTAL]).await;
    let (acme, other) = (s.create_org("Acme").await, s.create_org("Other").await);
    let ann = add_user(&s, &acme, "ann@acme.test", "admin").await;
    let olga = add_user(&s, &other, "olga@other.test", "admin").await;
    let gone = add_user(&s, &acme, "gone@acme.test", "viewer").await;
    s.post(&format!("/api/v1/organizations/{acme}/users/{gone}/deactivate"), Some(OPERATOR), json!({}))
        .await
        .expect(200);
    let path = |org: &str, user: &str| format!("/api/v1/organizations/{org}/users/{user}/resend");
    let signin = json!({ "kind": "signin" });
    let resent = || async { count(&backend, "PortalMailResent").await };

    let unknown = path(&acme, "00000000-0000-0000-0000-0000000000ff");
    s.post(&unknown, Some(OPERATOR), signin.clone()).await.problem(404, "not_found");
    s.post(&path(&acme, &olga), Some(OPERATOR), signin.clone()).await.problem(404, "not_found");
    s.post(&path(&acme, &gone), Some(OPERATOR), signin.clone()).await.problem(409, "user_inactive");
    s.post(&path(&acme, &ann), Some(OPERATOR), json!({ "kind": "welcome" })).await.problem(400, "validation_failed");
    assert_eq!(resent().await, 0);

    // The invitation, then sign-in e-mails up to the hourly limit.
    let first = s.post(&path(&acme, &ann), Some(OPERATOR), json!({ "kind": "invitation" })).await.expect(200);
    assert!(first["sequence"].as_u64().unwrap() > 0);
    mailbox.link("ann@acme.test", "You were invited", 1).await;
    for _ in 1..usecases::resend::RESENDS_PER_USER_PER_HOUR {
        s.post(&path(&acme, &ann), Some(OPERATOR), signin.clone()).await.expect(200);
    }
    let limit = usize::try_from(usecases::resend::RESENDS_PER_USER_PER_HOUR).unwrap();
    assert_eq!(resent().await, limit);
    let flood = reqwest::Client::new()
        .post(s.url(&path(&acme, &ann)))
        .bearer_auth(OPERATOR)
        .json(&signin)
        .send()
        .await
        .unwrap();
    assert_eq!(flood.status().as_u16(), 429);
    let retry_after: u64 = flood.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(resent().await, limit, "a refused resend appends nothing");
    // Another user is not held back by Ann's limit.
    s.post(&path(&other, &olga), Some(OPERATOR), signin.clone()).await.expect(200);
    mailbox.link("olga@other.test", "Your sign-in link to the customer portal", 1).await;
    let actors: Vec<String> = records_of(&backend, "PortalMailResent").await.iter().map(actor).collect();
    assert!(actors.iter().all(|a| a == "operator"), "{actors:?}");
}

//! Voids and credit notes with Stripe on (issue 15 part 2), on the real
//! `ledger` binary and both backends, against localstripe and the stand-in
//! (`stripe/peers.rs`): a voided invoice's Stripe invoice is voided, a
//! credit note becomes a Stripe credit note on the invoice's Stripe
//! invoice, each once, with idempotency keys derived from the ledger's
//! events; the invoice's status and the subscription's `amountDue` follow;
//! the voided month billed again goes to Stripe as a new invoice.

#[allow(dead_code)]
#[macro_use]
mod common;
#[allow(dead_code)]
#[path = "stripe/peers.rs"]
mod peers;

use common::{Backend, OPERATOR, Server, id, poll};
use peers::{Call, LocalStripe, StandIn};
use serde_json::{Value, json};

backends!(a_void_and_a_credit_note_reach_stripe);

async fn count(backend: &Backend, event_type: &str) -> usize {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap();
    records.iter().filter(|r| r.header.event_type == event_type).count()
}

async fn wait_for(backend: &Backend, event_type: &str, n: usize) {
    poll(event_type, || async { (count(backend, event_type).await == n).then_some(()) }).await;
}

/// The Stripe invoice the stand-in made for the ledger invoice `invoice`
/// (its invoice items name both).
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

async fn a_void_and_a_credit_note_reach_stripe(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("void_and_credit_note_in_stripe").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_ops"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let s = backend.start_with_env(&[], &env).await;
    let (acme, other) = (s.create_org("Acme").await, s.create_org("Other").await);
    s.create_subscription(&acme, "starter", "2026-01-01", true).await;
    s.create_subscription(&other, "starter", "2026-01-01", true).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let invoices = run["invoices"].as_array().unwrap().clone();
    let of = |org: &str| id(&invoices.iter().find(|i| i["organizationId"] == org).unwrap()["id"]);
    let (voided, credited) = (of(&acme), of(&other));
    wait_for(&backend, "StripeInvoiceCreated", 2).await;

    // The void: Stripe's copy voided once, under the invoice's own key.
    let body = json!({ "reason": "sent to the wrong customer" });
    let answer = s.post(&format!("/api/v1/invoices/{voided}/void"), Some(OPERATOR), body).await.expect(200);
    assert_eq!(answer["status"], "void");
    wait_for(&backend, "StripeInvoiceVoided", 1).await;
    let calls = stand_in.calls();
    let in_stripe = stripe_invoice(&calls, &voided);
    let voids: Vec<&Call> = calls.iter().filter(|c| c.path.ends_with("/void")).collect();
    assert_eq!(voids.len(), 1, "{calls:#?}");
    assert_eq!(voids[0].path, format!("POST /v1/invoices/{in_stripe}/void"));
    assert_eq!(voids[0].idempotency_key.as_deref(), Some(format!("ledger:invoice:{voided}:void").as_str()));
    assert_eq!(amount_due(&s, &acme).await, "0.00");

    // The credit note: a Stripe credit note on the invoice's Stripe invoice.
    let body = json!({ "reason": "outage on 14 January",
        "lines": [{ "description": "one day of service", "amount": "80.65" }, { "description": "support", "amount": "19.35" }] });
    let note = s.post(&format!("/api/v1/invoices/{credited}/credit-notes"), Some(OPERATOR), body).await.expect(201);
    wait_for(&backend, "StripeCreditNoteCreated", 1).await;
    let calls = stand_in.calls();
    let notes: Vec<&Call> = calls.iter().filter(|c| c.path == "POST /v1/credit_notes").collect();
    assert_eq!(notes.len(), 1, "{calls:#?}");
    let copy = notes[0];
    assert_eq!(copy.field("invoice"), Some(stripe_invoice(&calls, &credited).as_str()));
    assert_eq!(
        (copy.field("lines[0][unit_amount]"), copy.field("lines[1][unit_amount]")),
        (Some("8065"), Some("1935"))
    );
    assert_eq!(copy.field("lines[0][type]"), Some("custom_line_item"));
    assert_eq!(copy.field("memo"), Some("outage on 14 January"));
    assert_eq!(copy.idempotency_key.as_deref(), Some(format!("ledger:credit-note:{}", id(&note["id"])).as_str()));
    assert_eq!(amount_due(&s, &other).await, "2400.00");
    let listed = s.get(&format!("/api/v1/organizations/{other}/invoices"), Some(OPERATOR)).await.expect(200);
    assert_eq!((&listed[0]["status"], &listed[0]["credited"]), (&json!("open"), &json!("100.00")));

    // The voided month billed again: a new ledger invoice, a new Stripe
    // invoice; the void and the credit note are not sent again.
    let again = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let rebilled = id(&again["invoices"][0]["id"]);
    assert_ne!(rebilled, voided);
    wait_for(&backend, "StripeInvoiceCreated", 3).await;
    let calls = stand_in.calls();
    assert_ne!(stripe_invoice(&calls, &rebilled), in_stripe);
    assert_eq!(amount_due(&s, &acme).await, "2500.00");
    assert_eq!(calls.iter().filter(|c| c.path.ends_with("/void") || c.path == "POST /v1/credit_notes").count(), 2);
    assert_eq!(count(&backend, "StripeSyncRefused").await, 0);
}

//! Black-box tests of the Stripe integration, on the real `ledger` binary:
//! webhooks signed by Stripe's own library (wrong secret, old timestamp,
//! replay, reordering, a burst in parallel), dunning reached through them
//! (PAST_DUE, SUSPENDED, back to VALID, in validation and enforcement),
//! cancellation from Stripe, provisioning from Checkout, the checkout route,
//! and the outbound sync of invoices against localstripe and a stand-in.

#[allow(dead_code)]
#[macro_use]
mod common;
#[path = "stripe/peers.rs"]
mod peers;

use common::{Backend, Body, OPERATOR, Server, poll};
use peers::{LocalStripe, Signer, StandIn, fixture, unix_now};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "whsec_ledger_test_secret_0123456789";
const OLD_SECRET: &str = "whsec_ledger_test_rotated_out_0123";
const WEBHOOK: &str = "/api/v1/webhooks/stripe";

backends!(
    webhooks_unsigned_badly_signed_stale_or_oversized_are_refused_and_append_nothing,
    dunning_goes_past_due_then_suspended_then_active_in_validation_and_enforcement,
    a_replayed_event_is_recorded_once_and_acted_on_once,
    reordered_payment_events_never_move_a_subscription_back,
    a_burst_of_the_same_event_in_parallel_is_appended_once_and_acted_on_once,
    a_subscription_deleted_in_stripe_is_cancelled_at_once,
    unknown_events_are_acknowledged_and_recorded,
    checkout_session_completed_provisions_exactly_once,
    issued_invoices_are_synced_to_stripe_once_through_an_outage,
    checkout_starts_a_setup_session_for_a_tier,
    the_purchase_flow_runs_from_checkout_to_a_license_and_a_default_payment_method,
    invoices_issued_before_stripe_was_turned_on_are_not_sent_to_stripe,
    nothing_is_provisioned_before_stripe_says_the_session_completed,
    checkout_is_rate_limited_per_address_and_in_total,
);

/// A server with webhooks on (two secrets: a rotation in progress).
async fn start(backend: &Backend) -> Server {
    let secrets = format!("{SECRET},{OLD_SECRET}");
    backend.start_with_env(&[], &[("STRIPE_WEBHOOK_SECRET", &secrets)]).await
}

/// A Stripe event around `object`, from Stripe's published example event.
fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    let mut event = fixture("event");
    event["id"] = json!(id);
    event["type"] = json!(kind);
    event["created"] = json!(created);
    event["data"] = json!({ "object": object });
    event.to_string()
}

/// Stripe's example invoice, naming a ledger subscription in its metadata.
fn invoice(id: &str, subscription: &str) -> Value {
    let mut invoice = fixture("invoice");
    invoice["id"] = json!(id);
    invoice["metadata"] = json!({ "ledger_subscription_id": subscription });
    invoice
}

async fn deliver(s: &Server, signer: &Signer, body: &str) -> common::Reply {
    let header = signer.header(body, SECRET, unix_now()).await;
    send_signed(s, body, &header).await
}

async fn send_signed(s: &Server, body: &str, header: &str) -> common::Reply {
    s.send(Method::POST, WEBHOOK, None, Body::Raw(body.as_bytes().to_vec()), &[("stripe-signature", header)]).await
}

/// The event types of every record in the log, in order.
async fn event_types(backend: &Backend) -> Vec<(String, String)> {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX, 100_000).await.unwrap();
    records.into_iter().map(|r| (r.header.stream_id.to_string(), r.header.event_type)).collect()
}

async fn count(backend: &Backend, event_type: &str) -> usize {
    event_types(backend).await.iter().filter(|(_, t)| t == event_type).count()
}

/// Waits until the reactor has handled event `id` and the read models
/// include it.
async fn handled(backend: &Backend, s: &Server, id: &str) {
    let stream = format!("stripe-event/{id}");
    let sequence = poll(&format!("{id} handled"), || async {
        let log = backend.open_log().await;
        let stream = domain::StreamId::new(stream.clone()).unwrap();
        log.read_stream(&stream, 2, 1).await.unwrap().first().map(|record| record.header.sequence)
    })
    .await;
    s.get(&format!("/api/v1/organizations?minSequence={sequence}"), Some(OPERATOR)).await.expect(200);
}

/// What the reactor recorded for event `id` (`Applied …` / `Ignored …`).
async fn outcome(backend: &Backend, id: &str) -> String {
    use domain::event::StoredEvent;
    use domain::stripe::StripeEvent;
    let log = backend.open_log().await;
    let stream = domain::StreamId::new(format!("stripe-event/{id}")).unwrap();
    let records = log.read_stream(&stream, 2, 1).await.unwrap();
    let record = records.first().unwrap_or_else(|| panic!("{id} is handled"));
    let payload = record.payload.as_deref().unwrap();
    match StripeEvent::decode(&record.header.event_type, record.header.schema_version, payload) {
        Ok(Some(StripeEvent::StripeEventHandled(handled))) => format!("{:?}", handled.outcome),
        other => panic!("{id}: {other:?}"),
    }
}

/// A starter subscription from 2026-01-01: (org, subscription id, key).
async fn subscribed(s: &Server) -> (String, String, String) {
    let org = s.create_org("Acme").await;
    let created = s.create_subscription(&org, "starter", "2026-01-01", true).await;
    (org, common::id(&created["subscriptionId"]), common::id(&created["licenseKey"]))
}

async fn validate(s: &Server, key: &str) -> Value {
    s.post("/api/v1/license/validate", None, json!({ "licenseKey": key })).await.expect(200)
}

async fn enforcement(s: &Server, org: &str) -> Value {
    s.get(&format!("/api/v1/enforcement/{org}/check?action=ACCESS_FEATURE&feature=basic_analytics"), Some(OPERATOR))
        .await
        .expect(200)
}

async fn status(s: &Server, org: &str) -> String {
    common::id(&s.subscription(org, OPERATOR).await["status"])
}

async fn webhooks_unsigned_badly_signed_stale_or_oversized_are_refused_and_append_nothing(backend: Backend) {
    let Some(signer) = Signer::find("webhooks_refused") else { return };
    let s = start(&backend).await;
    let (_, subscription, _) = subscribed(&s).await;
    let body = event("evt_refused_1", "invoice.payment_failed", unix_now(), invoice("in_refused_1", &subscription));
    let head = s.head().await;

    // No signature, a malformed one, a wrong secret, an old timestamp, one
    // from the future, a body changed after signing.
    let reply = s.send(Method::POST, WEBHOOK, None, Body::Raw(body.clone().into_bytes()), &[]).await;
    reply.problem(400, "invalid_signature");
    send_signed(&s, &body, "t=abc,v1=00").await.problem(400, "invalid_signature");
    let wrong = signer.header(&body, "whsec_not_the_secret", unix_now()).await;
    send_signed(&s, &body, &wrong).await.problem(400, "invalid_signature");
    let old = signer.header(&body, SECRET, unix_now() - 301).await;
    send_signed(&s, &body, &old).await.problem(400, "invalid_signature");
    let future = signer.header(&body, SECRET, unix_now() + 400).await;
    send_signed(&s, &body, &future).await.problem(400, "invalid_signature");
    let signed = signer.header(&body, SECRET, unix_now()).await;
    let tampered = body.replace("payment_failed", "payment_succeeded");
    send_signed(&s, &tampered, &signed).await.problem(400, "invalid_signature");
    // Signed, but not an event: refused as such.
    let not_event = r#"{"hello":"world"}"#;
    let header = signer.header(not_event, SECRET, unix_now()).await;
    send_signed(&s, not_event, &header).await.problem(400, "invalid_event");
    // Too large: 413 before any signature check.
    let huge = format!(r#"{{"id":"evt_huge","pad":"{}"}}"#, "x".repeat(600 * 1024));
    let header = signer.header(&huge, SECRET, unix_now()).await;
    send_signed(&s, &huge, &header).await.problem(413, "payload_too_large");
    assert_eq!(s.head().await, head, "nothing refused is appended");

    // The secret being rotated out still verifies, and within the 300 s.
    let rotated = signer.header(&body, OLD_SECRET, unix_now() - 290).await;
    assert_eq!(send_signed(&s, &body, &rotated).await.expect(200)["duplicate"], false);
    assert!(s.head().await > head);
}

async fn dunning_goes_past_due_then_suspended_then_active_in_validation_and_enforcement(backend: Backend) {
    let Some(signer) = Signer::find("dunning") else { return };
    let s = start(&backend).await;
    let (org, subscription, key) = subscribed(&s).await;
    s.move_clock("2026-02-03T10:00:00Z").await;
    assert_eq!(validate(&s, &key).await["code"], "VALID");

    let failed = event("evt_dunning_fail", "invoice.payment_failed", unix_now(), invoice("in_dunning", &subscription));
    assert_eq!(deliver(&s, &signer, &failed).await.expect(200), json!({ "received": true, "duplicate": false }));
    handled(&backend, &s, "evt_dunning_fail").await;
    // Past due: valid, with a warning; enforcement still allows.
    let answer = validate(&s, &key).await;
    assert_eq!((answer["code"].clone(), answer["isValid"].clone()), (json!("PAST_DUE"), json!(true)), "{answer}");
    assert_eq!(status(&s, &org).await, "past_due");
    assert_eq!(enforcement(&s, &org).await["allowed"], true);

    // 14 × 24 h after the failure, less a second: still past due.
    s.move_clock("2026-02-17T09:59:59Z").await;
    assert_eq!(validate(&s, &key).await["code"], "PAST_DUE");
    // Exactly 14 × 24 h: suspended, at once.
    s.move_clock("2026-02-17T10:00:00Z").await;
    poll("suspension", || async { (status(&s, &org).await == "suspended").then_some(()) }).await;
    let answer = validate(&s, &key).await;
    assert_eq!((answer["code"].clone(), answer["isValid"].clone()), (json!("SUSPENDED"), json!(false)), "{answer}");
    let refused = enforcement(&s, &org).await;
    assert_eq!((refused["allowed"].clone(), refused["reason"].clone()), (json!(false), json!("suspended")));
    assert_eq!(count(&backend, "SubscriptionSuspended").await, 1, "suspended once, however many ticks");

    // A successful payment: active again, valid, allowed.
    let paid = event("evt_dunning_paid", "invoice.paid", unix_now() + 1, invoice("in_dunning", &subscription));
    deliver(&s, &signer, &paid).await.expect(200);
    handled(&backend, &s, "evt_dunning_paid").await;
    assert_eq!(status(&s, &org).await, "active");
    assert_eq!(validate(&s, &key).await["code"], "VALID");
    assert_eq!(enforcement(&s, &org).await["allowed"], true);
    // And a later failure starts a new dunning: past due again.
    let again =
        event("evt_dunning_again", "invoice.payment_failed", unix_now() + 2, invoice("in_march", &subscription));
    deliver(&s, &signer, &again).await.expect(200);
    handled(&backend, &s, "evt_dunning_again").await;
    assert_eq!(validate(&s, &key).await["code"], "PAST_DUE");
}

async fn a_replayed_event_is_recorded_once_and_acted_on_once(backend: Backend) {
    let Some(signer) = Signer::find("replay") else { return };
    let s = start(&backend).await;
    let (_, subscription, _) = subscribed(&s).await;
    let body = event("evt_replayed", "invoice.payment_failed", unix_now(), invoice("in_replayed", &subscription));
    let header = signer.header(&body, SECRET, unix_now()).await;
    assert_eq!(send_signed(&s, &body, &header).await.expect(200)["duplicate"], false);
    handled(&backend, &s, "evt_replayed").await;
    // The same delivery replayed, and Stripe's own retry (a new signature).
    assert_eq!(send_signed(&s, &body, &header).await.expect(200)["duplicate"], true);
    assert_eq!(deliver(&s, &signer, &body).await.expect(200)["duplicate"], true);
    assert_eq!(count(&backend, "StripeEventReceived").await, 1);
    assert_eq!(count(&backend, "StripeEventHandled").await, 1);
    assert_eq!(count(&backend, "PaymentFailed").await, 1);
}

async fn reordered_payment_events_never_move_a_subscription_back(backend: Backend) {
    let Some(signer) = Signer::find("reordered") else { return };
    let s = start(&backend).await;
    let (org, subscription, key) = subscribed(&s).await;
    let t = unix_now();
    // Stripe reported the failure first and the payment later, but the
    // payment arrives first.
    let paid = event("evt_order_paid", "invoice.payment_succeeded", t, invoice("in_order", &subscription));
    let failed = event("evt_order_failed", "invoice.payment_failed", t - 60, invoice("in_order", &subscription));
    deliver(&s, &signer, &paid).await.expect(200);
    handled(&backend, &s, "evt_order_paid").await;
    deliver(&s, &signer, &failed).await.expect(200);
    handled(&backend, &s, "evt_order_failed").await;
    assert_eq!(status(&s, &org).await, "active");
    assert_eq!(validate(&s, &key).await["code"], "VALID");
    assert_eq!(count(&backend, "PaymentFailed").await, 0, "the late failure is recorded, not acted on");
    assert!(outcome(&backend, "evt_order_failed").await.contains("stale"));
    // Another invoice's failure reported before the payment: stale as well.
    let other = event("evt_order_other", "invoice.payment_failed", t - 30, invoice("in_other", &subscription));
    deliver(&s, &signer, &other).await.expect(200);
    handled(&backend, &s, "evt_order_other").await;
    assert_eq!(status(&s, &org).await, "active");
    // A failure reported after the payment counts.
    let later = event("evt_order_later", "invoice.payment_failed", t + 60, invoice("in_later", &subscription));
    deliver(&s, &signer, &later).await.expect(200);
    handled(&backend, &s, "evt_order_later").await;
    assert_eq!(status(&s, &org).await, "past_due");
}

async fn a_burst_of_the_same_event_in_parallel_is_appended_once_and_acted_on_once(backend: Backend) {
    let Some(signer) = Signer::find("burst") else { return };
    let s = start(&backend).await;
    let (_, subscription, _) = subscribed(&s).await;
    let body = event("evt_burst", "invoice.payment_failed", unix_now(), invoice("in_burst", &subscription));
    let header = signer.header(&body, SECRET, unix_now()).await;
    let replies = futures::future::join_all((0..24).map(|_| send_signed(&s, &body, &header))).await;
    let fresh = replies.into_iter().map(|r| r.expect(200)).filter(|r| r["duplicate"] == false).count();
    assert_eq!(fresh, 1, "exactly one delivery of the burst recorded it");
    handled(&backend, &s, "evt_burst").await;
    assert_eq!(count(&backend, "StripeEventReceived").await, 1);
    assert_eq!(count(&backend, "StripeEventHandled").await, 1);
    assert_eq!(count(&backend, "PaymentFailed").await, 1);
}

async fn a_subscription_deleted_in_stripe_is_cancelled_at_once(backend: Backend) {
    let Some(signer) = Signer::find("deleted") else { return };
    let s = start(&backend).await;
    let (org, subscription, key) = subscribed(&s).await;
    s.move_clock("2026-03-10T00:00:00Z").await;
    let mut stripe_subscription = fixture("subscription");
    stripe_subscription["id"] = json!("sub_ledger_deleted");
    stripe_subscription["status"] = json!("canceled");
    stripe_subscription["metadata"] = json!({ "ledger_subscription_id": subscription });
    // Set to cancel at the period's end in Stripe: auto-renewal off.
    let mut ending = stripe_subscription.clone();
    ending["status"] = json!("active");
    ending["cancel_at_period_end"] = json!(true);
    let update = event("evt_sub_ending", "customer.subscription.updated", unix_now() - 200, ending);
    deliver(&s, &signer, &update).await.expect(200);
    handled(&backend, &s, "evt_sub_ending").await;
    assert_eq!(s.subscription(&org, OPERATOR).await["autoRenew"], false);
    assert_eq!(status(&s, &org).await, "active");
    // Then deleted in Stripe: cancelled at once. An older update arriving
    // after the deletion changes nothing more.
    let deleted = event("evt_sub_deleted", "customer.subscription.deleted", unix_now(), stripe_subscription.clone());
    deliver(&s, &signer, &deleted).await.expect(200);
    handled(&backend, &s, "evt_sub_deleted").await;
    poll("cancellation", || async { (status(&s, &org).await == "cancelled").then_some(()) }).await;
    assert_eq!(validate(&s, &key).await["code"], "EXPIRED");
    stripe_subscription["status"] = json!("active");
    stripe_subscription["cancel_at_period_end"] = json!(true);
    let older = event("evt_sub_older", "customer.subscription.updated", unix_now() - 100, stripe_subscription);
    deliver(&s, &signer, &older).await.expect(200);
    handled(&backend, &s, "evt_sub_older").await;
    assert!(outcome(&backend, "evt_sub_older").await.contains("stale"), "older than the deletion");
    assert_eq!(count(&backend, "SubscriptionCancelled").await, 1);
    assert_eq!(count(&backend, "AutoRenewalCancelled").await, 1);
}

async fn unknown_events_are_acknowledged_and_recorded(backend: Backend) {
    let Some(signer) = Signer::find("unknown") else { return };
    let s = start(&backend).await;
    // Stripe's example event as published (a plan), and an invoice event
    // for an invoice the ledger did not make.
    let mut plan = fixture("event");
    plan["created"] = json!(unix_now());
    let body = plan.to_string();
    deliver(&s, &signer, &body).await.expect(200);
    let foreign = event("evt_foreign_invoice", "invoice.payment_failed", unix_now(), fixture("invoice"));
    deliver(&s, &signer, &foreign).await.expect(200);
    handled(&backend, &s, plan["id"].as_str().unwrap()).await;
    handled(&backend, &s, "evt_foreign_invoice").await;
    assert_eq!(count(&backend, "StripeEventReceived").await, 2);
    assert_eq!(count(&backend, "PaymentFailed").await, 0);
    assert!(outcome(&backend, plan["id"].as_str().unwrap()).await.contains("recorded, not handled"));
    assert!(outcome(&backend, "evt_foreign_invoice").await.contains("no ledger subscription"));
    assert!(s.get("/health", None).await.status.is_success(), "the handler did not crash");
}

async fn checkout_session_completed_provisions_exactly_once(backend: Backend) {
    let Some(signer) = Signer::find("provision") else { return };
    let s = start(&backend).await;
    s.move_clock("2026-01-15T12:00:00Z").await;
    let mut session = fixture("checkout.session");
    session["id"] = json!("cs_test_provision_1");
    session["status"] = json!("complete");
    session["mode"] = json!("setup");
    session["customer"] = json!("cus_provision_1");
    session["setup_intent"] = json!("seti_provision_1");
    session["metadata"] = json!({
        "ledger_tier": "professional",
        "ledger_organization_name": "Initech",
        "ledger_admin_email": "admin@initech.example",
    });
    let completed = event("evt_checkout_1", "checkout.session.completed", unix_now(), session.clone());
    // Delivered, redelivered, and (as if Stripe sent two events) once more
    // under another event id: one organization.
    deliver(&s, &signer, &completed).await.expect(200);
    deliver(&s, &signer, &completed).await.expect(200);
    let again = event("evt_checkout_2", "checkout.session.completed", unix_now(), session);
    deliver(&s, &signer, &again).await.expect(200);
    handled(&backend, &s, "evt_checkout_1").await;
    handled(&backend, &s, "evt_checkout_2").await;
    let organizations = s.get("/api/v1/organizations", Some(OPERATOR)).await.expect(200);
    let initech: Vec<&Value> = organizations["items"]
        .as_array()
        .expect("a list of organizations")
        .iter()
        .filter(|o| o["name"] == "Initech")
        .collect();
    assert_eq!(initech.len(), 1, "{organizations}");
    let org = common::id(&initech[0]["id"]);
    let subscription = s.subscription(&org, OPERATOR).await;
    assert_eq!(
        (subscription["tier"].clone(), subscription["status"].clone()),
        (json!("professional"), json!("active"))
    );
    assert_eq!(subscription["startDate"], "2026-01-15", "{subscription}");
    for (event_type, n) in [
        ("OrganizationCreated", 1),
        ("UserAdded", 1),
        ("SubscriptionCreated", 1),
        ("LicenseIssued", 1),
        ("StripeCustomerLinked", 1),
        ("StripePaymentMethodSaved", 1),
        // Stripe's API is not configured here: the default waits.
        ("StripeDefaultPaymentMethodSet", 0),
        ("StripeEventHandled", 2),
    ] {
        assert_eq!(count(&backend, event_type).await, n, "{event_type}");
    }
    let licenses = s.get(&format!("/api/v1/organizations/{org}/licenses"), Some(OPERATOR)).await.expect(200);
    let licenses = licenses.as_array().expect("a list of licenses");
    assert_eq!(licenses.len(), 1, "{licenses:?}");
    assert_eq!((licenses[0]["tier"].clone(), licenses[0]["status"].clone()), (json!("professional"), json!("valid")));
}

async fn issued_invoices_are_synced_to_stripe_once_through_an_outage(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("invoice_sync").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    // Stripe is down when the first invoice is due: the first two calls fail.
    stand_in.fail_next(2);
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_sync"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let s = backend.start_with_env(&[], &env).await;
    let (org, subscription, _) = subscribed(&s).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    assert!(run.to_string().contains("2500.00"), "{run}");
    poll("the invoice in Stripe", || async { (count(&backend, "StripeInvoiceCreated").await == 1).then_some(()) })
        .await;

    let calls = stand_in.calls();
    // One customer, made at localstripe, with the organization's id.
    let customers: Vec<_> = calls.iter().filter(|c| c.path == "POST /v1/customers" && c.status == 200).collect();
    assert_eq!(customers.len(), 1, "{calls:#?}");
    assert_eq!(customers[0].field("metadata[ledger_organization_id]"), Some(org.as_str()));
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/v1/customers", localstripe.base))
        .bearer_auth("sk_test_ledger_sync")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    // The invoice: retried through the outage under one idempotency key,
    // charging automatically, taking no pending items, carrying our ids.
    let invoices: Vec<_> = calls.iter().filter(|c| c.path == "POST /v1/invoices").collect();
    assert_eq!(invoices.iter().filter(|c| c.status == 500).count(), 2, "{calls:#?}");
    let keys: std::collections::BTreeSet<_> = invoices.iter().map(|c| c.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "every attempt carries the same key: {keys:?}");
    let created = invoices.iter().find(|c| c.status == 200).expect("created after the outage");
    assert_eq!(created.field("collection_method"), Some("charge_automatically"));
    // The draft does not advance on its own: finalization turns it on.
    assert_eq!(created.field("auto_advance"), Some("false"));
    assert_eq!(created.field("pending_invoice_items_behavior"), Some("exclude"));
    assert_eq!(created.field("metadata[ledger_subscription_id]"), Some(subscription.as_str()));
    assert_eq!(created.field("metadata[ledger_period]"), Some("2026-01"));
    let invoice_id = created.field("metadata[ledger_invoice_id]").expect("our invoice id").to_owned();
    assert!(created.idempotency_key.as_deref().unwrap().contains(&invoice_id));
    // One item per line (starter, January: one base line of 2,500.00), then finalized.
    let items: Vec<_> = calls.iter().filter(|c| c.path == "POST /v1/invoiceitems" && c.status == 200).collect();
    assert_eq!(items.len(), 1, "{calls:#?}");
    assert_eq!((items[0].field("amount"), items[0].field("currency")), (Some("250000"), Some("usd")));
    let finalized: Vec<_> = calls.iter().filter(|c| c.path.ends_with("/finalize") && c.status == 200).collect();
    assert_eq!(finalized.len(), 1);
    assert_eq!(finalized[0].field("auto_advance"), Some("true"));

    // A restart syncs nothing again.
    let made = stand_in.calls().len();
    s.stop().await;
    let s = backend.start_with_env(&[], &env).await;
    s.wait_ready().await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(stand_in.calls().len(), made, "nothing is synced twice");
    assert_eq!(count(&backend, "StripeInvoiceCreated").await, 1);
    assert_eq!(count(&backend, "StripeCustomerLinked").await, 1);
}

/// The origins Checkout may send buyers back to in these tests.
const RETURN_ORIGINS: &str = "https://ledger.example";

async fn checkout_starts_a_setup_session_for_a_tier(backend: Backend) {
    // Without Stripe: 503, nothing else.
    let off = backend.start().await;
    let body = json!({
        "tier": "starter",
        "organizationName": "Globex",
        "adminEmail": "admin@globex.example",
        "successUrl": "https://ledger.example/welcome",
        "cancelUrl": "https://ledger.example/pricing",
    });
    off.post("/api/v1/checkout", None, body.clone()).await.problem(503, "unavailable");
    off.stop().await;

    let Some(localstripe) = LocalStripe::start("checkout").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let env = [
        ("STRIPE_SECRET_KEY", "sk_test_ledger_checkout"),
        ("STRIPE_API_BASE", stand_in.base.as_str()),
        ("LEDGER_RETURN_ORIGINS", RETURN_ORIGINS),
    ];
    let s = backend.start_with_env(&[], &env).await;
    let mut bad = body.clone();
    bad["tier"] = json!("platinum");
    s.post("/api/v1/checkout", None, bad).await.problem(400, "validation_failed");
    let mut bad = body.clone();
    bad["successUrl"] = json!("javascript:alert(1)");
    s.post("/api/v1/checkout", None, bad).await.problem(400, "validation_failed");
    // Stripe sends the buyer back only to the configured origins: no open
    // redirect through the vendor's Stripe account.
    for elsewhere in ["https://evil.example/welcome", "https://ledger.example.evil.example/", "http://ledger.example/"]
    {
        for field in ["successUrl", "cancelUrl"] {
            let mut bad = body.clone();
            bad[field] = json!(elsewhere);
            let refused = s.post("/api/v1/checkout", None, bad).await.problem(400, "validation_failed");
            assert!(refused["detail"].as_str().unwrap().contains("LEDGER_RETURN_ORIGINS"), "{refused}");
        }
    }
    assert!(stand_in.calls().is_empty(), "refused requests reach no Stripe");

    let headers = [("idempotency-key", "buy-globex-1")];
    let first = s.send(Method::POST, "/api/v1/checkout", None, Body::Json(body.clone()), &headers).await.expect(201);
    let again = s.send(Method::POST, "/api/v1/checkout", None, Body::Json(body.clone()), &headers).await.expect(201);
    assert_eq!(first, again, "a retry with the same key is the same session");
    assert!(first["sessionId"].as_str().unwrap().starts_with("cs_test"), "{first}");
    let calls = stand_in.calls();
    let session = calls.iter().find(|c| c.path == "POST /v1/checkout/sessions").unwrap();
    assert_eq!(session.field("mode"), Some("setup"), "a payment method is saved, nothing is charged");
    assert_eq!(session.field("metadata[ledger_tier]"), Some("starter"));
    assert_eq!(session.field("metadata[ledger_admin_email]"), Some("admin@globex.example"));
    assert!(session.field("customer").is_some_and(|c| c.starts_with("cus_")), "{session:?}");
    // The longest Idempotency-Key still fits Stripe's (at most 255 characters).
    let long = "k".repeat(255);
    let headers = [("idempotency-key", long.as_str())];
    s.send(Method::POST, "/api/v1/checkout", None, Body::Json(body.clone()), &headers).await.expect(201);
    let last = stand_in.calls().pop().unwrap();
    assert!(last.idempotency_key.is_some_and(|k| k.len() <= 255 && !k.contains(&long)));
    // The retry asked for its customer under the same key as the first.
    let keys: std::collections::BTreeSet<_> =
        calls.iter().filter(|c| c.path == "POST /v1/customers").map(|c| c.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

async fn the_purchase_flow_runs_from_checkout_to_a_license_and_a_default_payment_method(backend: Backend) {
    let Some(signer) = Signer::find("purchase_flow") else { return };
    let Some(localstripe) = LocalStripe::start("purchase_flow").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let env = [
        ("STRIPE_SECRET_KEY", "sk_test_ledger_purchase"),
        ("STRIPE_API_BASE", stand_in.base.as_str()),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("LEDGER_RETURN_ORIGINS", RETURN_ORIGINS),
    ];
    let s = backend.start_with_env(&[], &env).await;
    s.move_clock("2026-01-20T09:00:00Z").await;
    // 1. The buyer picks a tier: a Checkout session.
    let body = json!({
        "tier": "enterprise",
        "organizationName": "Umbrella",
        "adminEmail": "it@umbrella.example",
        "successUrl": "https://ledger.example/welcome",
        "cancelUrl": "https://ledger.example/pricing",
    });
    let started = s.post("/api/v1/checkout", None, body).await.expect(201);
    let session_id = common::id(&started["sessionId"]);
    let calls = stand_in.calls();
    let created = calls.iter().find(|c| c.path == "POST /v1/checkout/sessions").unwrap();
    let customer = created.field("customer").unwrap().to_owned();
    // 2. The buyer pays; Stripe reports the session completed, with the
    // metadata the ledger gave it and the SetupIntent that saved the card.
    let mut session = fixture("checkout.session");
    session["id"] = json!(session_id);
    session["status"] = json!("complete");
    session["mode"] = json!("setup");
    session["customer"] = json!(customer);
    session["setup_intent"] = json!("seti_umbrella");
    session["metadata"] = json!({
        "ledger_tier": created.field("metadata[ledger_tier]"),
        "ledger_organization_name": created.field("metadata[ledger_organization_name]"),
        "ledger_admin_email": created.field("metadata[ledger_admin_email]"),
    });
    let completed = event("evt_purchase_completed", "checkout.session.completed", unix_now(), session);
    deliver(&s, &signer, &completed).await.expect(200);
    handled(&backend, &s, "evt_purchase_completed").await;
    // 3. Provisioned: the organization, its admin, the subscription from
    // that day, a valid license.
    let organizations = s.get("/api/v1/organizations", Some(OPERATOR)).await.expect(200);
    let umbrella = organizations["items"].as_array().unwrap().iter().find(|o| o["name"] == "Umbrella").unwrap();
    let org = common::id(&umbrella["id"]);
    let subscription = s.subscription(&org, OPERATOR).await;
    assert_eq!(subscription["tier"], "enterprise", "{subscription}");
    assert_eq!(subscription["startDate"], "2026-01-20", "{subscription}");
    // 4. The saved card becomes the default for the invoices Stripe collects.
    poll("the default payment method", || async {
        (count(&backend, "StripeDefaultPaymentMethodSet").await == 1).then_some(())
    })
    .await;
    let calls = stand_in.calls();
    let update =
        calls.iter().find(|c| c.path == format!("POST /v1/customers/{customer}")).expect("the customer updated");
    assert_eq!(update.field("invoice_settings[default_payment_method]"), Some("pm_card_for_seti_umbrella"));
    assert!(update.idempotency_key.as_deref().unwrap().contains(&org), "{update:?}");
    // The customer the session was made with is the organization's: no second one.
    s.move_clock("2026-02-01T00:00:00Z").await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    poll("the invoice in Stripe", || async { (count(&backend, "StripeInvoiceCreated").await == 1).then_some(()) })
        .await;
    let calls = stand_in.calls();
    let invoice = calls.iter().find(|c| c.path == "POST /v1/invoices" && c.status == 200).unwrap();
    assert_eq!(invoice.field("customer"), Some(customer.as_str()));
    assert_eq!(calls.iter().filter(|c| c.path == "POST /v1/customers").count(), 1, "{calls:#?}");
}

async fn invoices_issued_before_stripe_was_turned_on_are_not_sent_to_stripe(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("sync_start").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    // January is billed without Stripe.
    let s = backend.start().await;
    subscribed(&s).await;
    s.move_clock("2026-02-01T00:00:00Z").await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    s.stop().await;
    // Then Stripe is turned on: February goes to Stripe, January does not.
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_start"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let s = backend.start_with_env(&[], &env).await;
    poll("the sync's start", || async { (count(&backend, "StripeSyncStarted").await == 1).then_some(()) }).await;
    s.move_clock("2026-03-01T00:00:00Z").await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-02" })).await.expect(200);
    poll("the invoice in Stripe", || async { (count(&backend, "StripeInvoiceCreated").await == 1).then_some(()) })
        .await;
    let calls = stand_in.calls();
    let periods: Vec<_> = calls
        .iter()
        .filter(|c| c.path == "POST /v1/invoices")
        .map(|c| c.field("metadata[ledger_period]").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(periods, ["2026-02"], "{calls:#?}");
    // A restart does not move the start.
    s.stop().await;
    let s = backend.start_with_env(&[], &env).await;
    s.wait_ready().await;
    assert_eq!(count(&backend, "StripeSyncStarted").await, 1);
}

/// Only `checkout.session.completed` with a session Stripe reports
/// `complete`, in the `setup` mode the ledger starts sessions in,
/// provisions: an open session, one without a status, a payment-mode one
/// and an expired one create nothing (each is handled as ignored).
async fn nothing_is_provisioned_before_stripe_says_the_session_completed(backend: Backend) {
    let Some(signer) = Signer::find("provision_only_complete") else { return };
    let s = start(&backend).await;
    let session = |id: &str, status: Option<&str>, mode: &str| {
        let mut session = fixture("checkout.session");
        session["id"] = json!(id);
        match status {
            Some(status) => session["status"] = json!(status),
            None => {
                session.as_object_mut().unwrap().remove("status");
            }
        }
        session["mode"] = json!(mode);
        session["customer"] = json!("cus_early_1");
        session["metadata"] = json!({
            "ledger_tier": "starter",
            "ledger_organization_name": format!("Early {id}"),
            "ledger_admin_email": "admin@early.example",
        });
        session
    };
    let early = [
        ("evt_early_open", "checkout.session.completed", session("cs_test_early_1", Some("open"), "setup")),
        ("evt_early_no_status", "checkout.session.completed", session("cs_test_early_2", None, "setup")),
        ("evt_early_payment", "checkout.session.completed", session("cs_test_early_3", Some("complete"), "payment")),
        ("evt_early_expired", "checkout.session.expired", session("cs_test_early_4", Some("expired"), "setup")),
        (
            "evt_early_async",
            "checkout.session.async_payment_succeeded",
            session("cs_test_early_5", Some("open"), "setup"),
        ),
    ];
    for (id, kind, object) in &early {
        deliver(&s, &signer, &event(id, kind, unix_now(), object.clone())).await.expect(200);
    }
    for (id, _, _) in &early {
        handled(&backend, &s, id).await;
        assert!(outcome(&backend, id).await.starts_with("Ignored"), "{id}: {}", outcome(&backend, id).await);
    }
    assert_eq!(count(&backend, "OrganizationCreated").await, 0);
    assert_eq!(count(&backend, "LicenseIssued").await, 0);
    // The same session once Stripe says it is complete: provisioned.
    let complete = session("cs_test_early_2", Some("complete"), "setup");
    deliver(&s, &signer, &event("evt_early_done", "checkout.session.completed", unix_now(), complete))
        .await
        .expect(200);
    handled(&backend, &s, "evt_early_done").await;
    assert_eq!(count(&backend, "OrganizationCreated").await, 1);
}

/// A checkout from `from` (a loopback address of its own); the reply.
async fn checkout_from(s: &Server, from: std::net::IpAddr, body: &Value) -> reqwest::Response {
    let http = reqwest::Client::builder().local_address(from).build().unwrap();
    let response = http.post(s.url("/api/v1/checkout")).json(body).send().await.unwrap();
    s.conformed(&Method::POST, "/api/v1/checkout", response).await
}

/// `--checkouts-per-address-per-hour 2 --checkouts-per-hour 3`: one
/// address's third checkout is refused, and so is any address's once three
/// sessions were made in the hour; refusals are 429 `rate_limited` with
/// `Retry-After` and reach no Stripe.
async fn checkout_is_rate_limited_per_address_and_in_total(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("checkout_limits").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    let env = [
        ("STRIPE_SECRET_KEY", "sk_test_ledger_limits"),
        ("STRIPE_API_BASE", stand_in.base.as_str()),
        ("LEDGER_RETURN_ORIGINS", RETURN_ORIGINS),
    ];
    let args = ["--checkouts-per-address-per-hour", "2", "--checkouts-per-hour", "3"];
    let s = backend.start_with_env(&args, &env).await;
    let body = json!({
        "tier": "starter",
        "organizationName": "Globex",
        "adminEmail": "admin@globex.example",
        "successUrl": "https://ledger.example/welcome",
        "cancelUrl": "https://ledger.example/pricing",
    });
    let address = |n: u8| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n));
    let refused = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "rate_limited");
    };
    // Bounded fields: refused before Stripe, and not counted.
    for (field, long) in [
        ("organizationName", "n".repeat(201)),
        ("adminEmail", format!("{}@globex.example", "a".repeat(250))),
        ("successUrl", format!("https://ledger.example/{}", "p".repeat(2048))),
    ] {
        let mut bad = body.clone();
        bad[field] = json!(long);
        let response = checkout_from(&s, address(41), &bad).await;
        assert_eq!(response.status(), 400, "{field}");
    }
    assert_eq!(checkout_from(&s, address(41), &body).await.status(), 201);
    assert_eq!(checkout_from(&s, address(41), &body).await.status(), 201);
    refused(checkout_from(&s, address(41), &body).await).await;
    assert_eq!(checkout_from(&s, address(42), &body).await.status(), 201);
    refused(checkout_from(&s, address(43), &body).await).await;
    let calls = stand_in.calls();
    let sessions = calls.iter().filter(|c| c.path == "POST /v1/checkout/sessions").count();
    let customers = calls.iter().filter(|c| c.path == "POST /v1/customers").count();
    assert_eq!((sessions, customers), (3, 3), "{calls:#?}");
}

//! Invoice status and the subscription's `amountDue`/`paymentMethod`
//! follow the payments the ledger records (issue #14): an issued invoice is
//! open and due, a failed charge of its Stripe invoice makes it past due
//! (and overdue), a successful one paid; a payment method saved at
//! Checkout makes the method `stripe`. Payments arrive as signed webhook
//! deliveries handled by the reactor, as in production; the Stripe invoice
//! link is appended as the sync appends it.
// Test code: a scenario reads best in one piece; the 70-line limit
// (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

use std::time::Duration;

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::stripe::{StripeEvent, StripeInvoiceCreated, StripePaymentMethodSaved, invoice_stream};
use domain::{Metadata, OrganizationId, StreamId};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent};
use usecases::caller::Caller;
use usecases::command::{Context, new_event_id};
use usecases::organizations::{self, CreateOrganizationInput};
use usecases::stripe::reactor::{Reactor, handle_pending};
use usecases::stripe::signature::WebhookSecret;
use usecases::stripe::webhook::receive;
use usecases::stripe::{Settings, Stripe};
use usecases::subscriptions::{self, CreateSubscriptionInput};
use usecases::{Ledger, LedgerConfig};

const SECRET: &str = "whsec_payments_test";

fn context() -> Context {
    Context { metadata: Metadata::default(), idempotency: None, credential: None }
}

fn system_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign(body: &str, t: i64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn settle(ledger: &Ledger) {
    let head = ledger.log.head().await.unwrap().sequence;
    ledger.models.wait_for(head, Duration::from_secs(5)).await.unwrap();
}

/// Appends one Stripe bookkeeping event on `stream`, expecting no stream
/// (as the sync and the provisioning do).
async fn append_stripe(ledger: &Ledger, stream_id: StreamId, event: StripeEvent) {
    let command = Command {
        stream_id,
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &Metadata::default())],
    };
    ledger.log.append_one(command).await.unwrap().unwrap();
    settle(ledger).await;
}

/// A signed `invoice.*` delivery for the Stripe invoice `stripe_id`,
/// handled by the reactor.
async fn deliver(ledger: &Ledger, reactor: &Reactor, event_id: &str, kind: &str, stripe_id: &str, sub: uuid::Uuid) {
    let body = json!({
        "id": event_id,
        "type": kind,
        "created": system_now(),
        "data": { "object": { "id": stripe_id, "metadata": { "ledger_subscription_id": sub.to_string() } } },
    })
    .to_string();
    let now = system_now();
    receive(ledger, &reactor.stripe, Some(&sign(&body, now)), body.as_bytes(), now).await.unwrap();
    settle(ledger).await;
    assert_eq!(handle_pending(ledger, reactor).await.unwrap(), 1);
    settle(ledger).await;
}

async fn details(ledger: &Ledger, org: OrganizationId) -> Value {
    let details = usecases::queries::subscription(ledger, &Caller::Operator, org).await.unwrap();
    serde_json::to_value(details).unwrap()["billing"].clone()
}

async fn statuses(ledger: &Ledger, org: OrganizationId) -> Vec<(String, String)> {
    let invoices = usecases::billing::invoices(ledger, &Caller::Operator, org).await.unwrap();
    let invoices = serde_json::to_value(invoices).unwrap();
    let list = invoices.as_array().unwrap();
    list.iter().map(|i| (i["period"].as_str().unwrap().into(), i["status"].as_str().unwrap().into())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amount_due_and_invoice_status_follow_the_recorded_payments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        data_dir: dir.path().to_owned(),
        database_url: None,
        clock: "manual:2026-03-15T12:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    let ledger = Ledger::open(&config).await.unwrap();
    let settings = Settings { webhook_secrets: vec![WebhookSecret::new(SECRET)], ..Settings::default() };
    let reactor = Reactor { stripe: Stripe::new(settings).unwrap() };

    let input = CreateOrganizationInput { name: "Acme".into(), domain: None, industry: None, employee_count: None };
    let org = organizations::create_organization(&ledger, &Caller::Operator, &context(), input).await.unwrap().id;
    let org = OrganizationId(org);
    let input = CreateSubscriptionInput {
        organization_id: org,
        tier: Tier::Starter,
        start_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
    };
    let created = subscriptions::create_subscription(&ledger, &Caller::Operator, &context(), input).await;
    let sub = created.unwrap().subscription_id;
    settle(&ledger).await;

    let before = details(&ledger, org).await;
    assert_eq!((before["amountDue"].as_str(), before["paymentMethod"].as_str()), (Some("0.00"), Some("invoice")));
    assert_eq!(before["dunning"], Value::Null);

    usecases::ops::move_clock(&ledger, &Caller::Operator, "2026-04-02T00:00:00Z").unwrap();
    let run = usecases::billing::run(&ledger, &Caller::Operator, "test", "2026-03", false).await.unwrap();
    assert_eq!(run.invoices.len(), 1);
    settle(&ledger).await;
    assert_eq!(statuses(&ledger, org).await, vec![("2026-03".into(), "open".into())]);
    let due = details(&ledger, org).await;
    assert_eq!(due["amountDue"], "2500.00", "an issued invoice is due: {due}");
    assert_eq!((due["amountOverdue"].as_str(), due["paymentMethod"].as_str()), (Some("0.00"), Some("invoice")));

    // Checkout saved a payment method: invoices are charged through Stripe.
    let saved = StripePaymentMethodSaved {
        organization_id: org,
        customer_id: "cus_1".into(),
        setup_intent_id: "seti_1".into(),
    };
    append_stripe(&ledger, domain::stripe::payment_method_stream(org), saved.into()).await;
    assert_eq!(details(&ledger, org).await["paymentMethod"], "stripe");

    // A charge fails before the sync has recorded which invoice `in_1` is:
    // nothing of the invoice changes until the link arrives.
    let subscription_id = domain::SubscriptionId(sub);
    deliver(&ledger, &reactor, "evt_1", "invoice.payment_failed", "in_1", sub).await;
    assert_eq!(statuses(&ledger, org).await, vec![("2026-03".into(), "open".into())]);
    let march = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    let created = StripeInvoiceCreated {
        invoice_id: run.invoices[0].id,
        subscription_id,
        organization_id: org,
        period: march,
        customer_id: "cus_1".into(),
        stripe_invoice_id: "in_1".into(),
        total: domain::Money::usd(2500.into()),
    };
    append_stripe(&ledger, invoice_stream(subscription_id, march), created.into()).await;
    assert_eq!(statuses(&ledger, org).await, vec![("2026-03".into(), "past_due".into())]);
    let overdue = details(&ledger, org).await;
    assert_eq!((overdue["amountDue"].as_str(), overdue["amountOverdue"].as_str()), (Some("2500.00"), Some("2500.00")));
    assert_eq!(overdue["dunning"]["suspended"], false, "the subscription's dunning is shown: {overdue}");

    // Paid: nothing is due, and the dunning is over.
    deliver(&ledger, &reactor, "evt_2", "invoice.paid", "in_1", sub).await;
    assert_eq!(statuses(&ledger, org).await, vec![("2026-03".into(), "paid".into())]);
    let paid = details(&ledger, org).await;
    assert_eq!((paid["amountDue"].as_str(), paid["amountOverdue"].as_str()), (Some("0.00"), Some("0.00")));
    assert_eq!(paid["dunning"], Value::Null);

    // The tables answer what `LedgerState`, replay's source, derives.
    let head = ledger.log.head().await.unwrap().sequence;
    let state = projections::LedgerState::rebuild(&ledger.log, head).await.unwrap();
    let from_state = usecases::views::billing::Invoice::of_organization(&state, org).unwrap();
    let from_tables = usecases::billing::invoices(&ledger, &Caller::Operator, org).await.unwrap();
    assert_eq!(from_state, from_tables);
}

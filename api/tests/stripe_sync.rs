//! Black-box tests of the outbound Stripe sync's safety, on the real
//! `ledger` binary and both backends, against localstripe and the stand-in
//! (`stripe/peers.rs`), which answers 409 `idempotency_key_in_use` to a
//! request whose idempotency key another request is still using, as Stripe
//! does: a draft never advances on its own before its lines are in, a 409
//! is retried rather than recorded as a refusal, and two server processes on
//! one database sync each invoice once, one process at a time.

#[allow(dead_code)]
#[macro_use]
mod common;
#[allow(dead_code)]
#[path = "stripe/peers.rs"]
mod peers;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, OPERATOR, Server, poll};
use peers::{LocalStripe, StandIn};
use serde_json::json;

backends!(
    a_draft_does_not_advance_until_its_lines_are_in_and_a_409_is_retried_not_refused,
    two_servers_on_one_database_sync_each_invoice_once,
);

async fn count(backend: &Backend, event_type: &str) -> usize {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX >> 1, 100_000).await.unwrap();
    records.iter().filter(|r| r.header.event_type == event_type).count()
}

/// Customers with a starter subscription from 2026-01-01, January billed.
async fn billed(s: &Server, customers: usize) {
    for n in 0..customers {
        let org = s.create_org(&format!("Customer {n}")).await;
        s.create_subscription(&org, "starter", "2026-01-01", true).await;
    }
    s.move_clock("2026-02-01T00:00:00Z").await;
    let run = s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    assert_eq!(run["invoices"].as_array().map(Vec::len), Some(customers), "{run}");
}

async fn a_draft_does_not_advance_until_its_lines_are_in_and_a_409_is_retried_not_refused(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("draft_and_409").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    // Another request "is using" the draft's idempotency key the first time.
    stand_in.conflict_next("POST /v1/invoices", 1);
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_409"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let s = backend.start_with_env(&[], &env).await;
    billed(&s, 1).await;
    poll("the invoice in Stripe", || async { (count(&backend, "StripeInvoiceCreated").await == 1).then_some(()) })
        .await;
    assert_eq!(count(&backend, "StripeSyncRefused").await, 0, "a 409 is not a refusal");

    let calls = stand_in.calls();
    let drafts: Vec<_> = calls.iter().filter(|c| c.path == "POST /v1/invoices").collect();
    assert_eq!(drafts.iter().map(|c| c.status).collect::<Vec<_>>(), [409, 200], "{calls:#?}");
    assert_eq!(drafts[0].idempotency_key, drafts[1].idempotency_key, "retried under the same key");
    assert_eq!(drafts[1].field("auto_advance"), Some("false"), "the draft does not advance on its own");
    // Every line is in before the finalization turns automatic collection on.
    let position = |path: &str| calls.iter().rposition(|c| c.path.ends_with(path) && c.status == 200);
    let (last_item, finalized) = (position("/v1/invoiceitems").unwrap(), position("/finalize").unwrap());
    assert!(last_item < finalized, "{calls:#?}");
    assert_eq!(calls[finalized].field("auto_advance"), Some("true"));
}

async fn two_servers_on_one_database_sync_each_invoice_once(backend: Backend) {
    let Some(localstripe) = LocalStripe::start("two_servers").await else { return };
    let stand_in = StandIn::start(&localstripe).await;
    // A slow Stripe: a second process working on the same invoice would
    // overlap the first's requests (and get 409s) or repeat them.
    stand_in.slow(Duration::from_millis(400));
    let env = [("STRIPE_SECRET_KEY", "sk_test_ledger_two"), ("STRIPE_API_BASE", stand_in.base.as_str())];
    let first = backend.start_with_env(&[], &env).await;
    let second = backend.start_with_env(&[], &env).await;
    billed(&first, 3).await;
    let synced = || async { (count(&backend, "StripeInvoiceCreated").await == 3).then_some(()) };
    tokio::time::timeout(Duration::from_secs(60), async {
        while synced().await.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("three invoices in Stripe within a minute");
    // Both processes stay up and look for work a while longer.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let calls = stand_in.calls();
    assert!(calls.iter().all(|c| c.status == 200), "no request overlapped another: {calls:#?}");
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        *per_key.entry(call.idempotency_key.clone().unwrap_or_default()).or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "each Stripe call made once: {per_key:#?}");
    assert_eq!(calls.iter().filter(|c| c.path.ends_with("/finalize")).count(), 3, "{calls:#?}");
    assert_eq!(count(&backend, "StripeSyncRefused").await, 0);
    assert_eq!(count(&backend, "StripeInvoiceCreated").await, 3);
    assert_eq!(count(&backend, "StripeCustomerLinked").await, 3);
    drop(second);
    drop(first);
}

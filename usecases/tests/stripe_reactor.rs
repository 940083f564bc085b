//! The Stripe use cases without HTTP: a webhook delivery received and
//! handled by the reactor, on a ledger in a temporary directory.
//!
//! The reactor tells a domain refusal (recorded as handled, not retried)
//! from a failure (retried) by the aggregate's typed error, and one refusal
//! by its variant: Stripe saying "cancel at period end" for a subscription
//! whose auto-renewal is already off is nothing to do.

use std::time::Duration;

use domain::catalog::Tier;
use domain::event::StoredEvent;
use domain::stripe::{Outcome, StripeEvent, event_stream};
use domain::subscription::{Subscription, SubscriptionCommand};
use domain::{LicenseId, Metadata, OrganizationId, SubscriptionId};
use hmac::{Hmac, Mac};
use serde_json::json;
use usecases::command::{Context, load};
use usecases::stripe::reactor::{Reactor, handle_pending};
use usecases::stripe::signature::{SignatureError, WebhookSecret};
use usecases::stripe::webhook::{WebhookError, receive};
use usecases::stripe::{Settings, Stripe};
use usecases::{Error, Ledger, LedgerConfig};

const SECRET: &str = "whsec_reactor_test";

struct Fixture {
    ledger: Ledger,
    reactor: Reactor,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        data_dir: dir.path().to_owned(),
        database_url: None,
        clock: "fixed:2026-01-15T12:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    let ledger = Ledger::open(&config).await.unwrap();
    let settings = Settings { webhook_secrets: vec![WebhookSecret::new(SECRET)], ..Settings::default() };
    let reactor = Reactor { stripe: Stripe::new(settings).unwrap() };
    Fixture { ledger, reactor, _dir: dir }
}

fn system_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign(body: &str, t: i64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A starter subscription from January 1st, then `then` decided on it.
async fn subscription(ledger: &Ledger, then: Option<SubscriptionCommand>) -> SubscriptionId {
    let id = SubscriptionId(uuid::Uuid::now_v7());
    let today = ledger.today();
    let mut loaded = load::<Subscription>(ledger, id.stream()).await.unwrap();
    let create = SubscriptionCommand::Create {
        id,
        organization_id: OrganizationId(uuid::Uuid::now_v7()),
        tier: Tier::Starter,
        start_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: LicenseId(uuid::Uuid::now_v7()),
        today,
    };
    loaded.decide(create, &ledger.subscription_services).await.unwrap();
    if let Some(command) = then {
        loaded.decide(command, &ledger.subscription_services).await.unwrap();
    }
    let context = Context { metadata: Metadata::default(), idempotency: None, credential: None };
    let appended = ledger.log.append_atomic(vec![loaded.into_command(&context, ledger.now())]).await.unwrap().unwrap();
    ledger.models.wait_for(appended[0].last_sequence, Duration::from_secs(5)).await.unwrap();
    id
}

/// Delivers a signed `customer.subscription.*` event for the subscription,
/// lets the reactor handle it, and returns the outcome it recorded.
async fn deliver(f: &Fixture, event_id: &str, kind: &str, subscription_id: SubscriptionId) -> Outcome {
    let body = json!({
        "id": event_id,
        "type": kind,
        "created": system_now(),
        "data": { "object": {
            "id": format!("sub_{}", &event_id[4..]),
            "status": "active",
            "cancel_at_period_end": true,
            "metadata": { "ledger_subscription_id": subscription_id.0.to_string() },
        } },
    })
    .to_string();
    let received =
        receive(&f.ledger, &f.reactor.stripe, Some(&sign(&body, system_now())), body.as_bytes(), system_now())
            .await
            .unwrap();
    assert!(received.received && !received.duplicate);
    let head = f.ledger.log.head().await.unwrap().sequence;
    f.ledger.models.wait_for(head, Duration::from_secs(5)).await.unwrap();
    assert_eq!(handle_pending(&f.ledger, &f.reactor).await.unwrap(), 1, "handled once");
    let records = f.ledger.log.read_stream(&event_stream(event_id).unwrap(), 1, 10).await.unwrap();
    assert_eq!(records.len(), 2, "received, then handled");
    let handled = &records[1];
    let payload = handled.payload.as_deref().unwrap();
    match StripeEvent::decode(&handled.header.event_type, handled.header.schema_version, payload).unwrap() {
        Some(StripeEvent::StripeEventHandled(handled)) => handled.outcome,
        other => panic!("not a handled event: {other:?}"),
    }
}

#[tokio::test]
async fn cancel_at_period_end_on_a_subscription_already_not_renewing_is_nothing_to_do() {
    let f = fixture().await;
    let today = f.ledger.today();
    let off = SubscriptionCommand::Cancel { immediate: false, effective_date: None, today };
    let id = subscription(&f.ledger, Some(off)).await;
    let outcome = deliver(&f, "evt_already_off", "customer.subscription.updated", id).await;
    assert_eq!(outcome, Outcome::Ignored { reason: "auto-renewal is already off".into() });
}

#[tokio::test]
async fn cancel_at_period_end_turns_auto_renewal_off() {
    let f = fixture().await;
    let id = subscription(&f.ledger, None).await;
    let outcome = deliver(&f, "evt_turns_off", "customer.subscription.updated", id).await;
    assert_eq!(outcome, Outcome::Applied { what: format!("{id} auto-renewal cancelled") });
    let subscription = load::<Subscription>(&f.ledger, id.stream()).await.unwrap();
    assert!(!subscription.state.auto_renew);
}

/// What the reactor changes is read on this node at once, as a command's:
/// every credential's floor (and so the validation cache's check, a key's
/// floor) reaches it. Before, a key validated a moment earlier kept its
/// cached facts for up to the cache's TTL after a failed payment.
#[tokio::test]
async fn what_the_reactor_applies_is_read_at_once_on_this_node() {
    let f = fixture().await;
    let id = subscription(&f.ledger, None).await;
    // A key no command here named: its floor is every command's.
    let key = Some(usecases::acknowledged::Credential::License(LicenseId(uuid::Uuid::now_v7())));
    assert_eq!(f.ledger.acknowledged.floor(key), 0, "nothing acknowledged yet");
    deliver(&f, "evt_read_at_once", "customer.subscription.updated", id).await;
    let handled = f.ledger.log.head().await.unwrap().sequence;
    assert_eq!(f.ledger.acknowledged.floor(key), handled);
    assert_eq!(f.ledger.acknowledged.floor(Some(usecases::acknowledged::Credential::Operator)), handled);
}

#[tokio::test]
async fn a_change_the_subscription_refuses_is_recorded_as_refused_not_retried() {
    let f = fixture().await;
    let today = f.ledger.today();
    let cancelled = SubscriptionCommand::Cancel { immediate: true, effective_date: None, today };
    let id = subscription(&f.ledger, Some(cancelled)).await;
    let outcome = deliver(&f, "evt_refused", "customer.subscription.deleted", id).await;
    let Outcome::Ignored { reason } = outcome else { panic!("{outcome:?}") };
    assert!(reason.starts_with("refused: "), "{reason}");
    // Handled: nothing is pending any more.
    assert_eq!(handle_pending(&f.ledger, &f.reactor).await.unwrap(), 0);
}

#[tokio::test]
async fn a_delivery_is_recorded_once_and_a_bad_signature_records_nothing() {
    let f = fixture().await;
    let body = json!({ "id": "evt_once", "type": "invoice.created", "created": system_now() }).to_string();
    let header = sign(&body, system_now());
    let first = receive(&f.ledger, &f.reactor.stripe, Some(&header), body.as_bytes(), system_now()).await.unwrap();
    let again = receive(&f.ledger, &f.reactor.stripe, Some(&header), body.as_bytes(), system_now()).await.unwrap();
    assert!(!first.duplicate && again.duplicate);
    let head = f.ledger.log.head().await.unwrap().sequence;
    let tampered = body.replace("invoice.created", "invoice.paid");
    let refused = receive(&f.ledger, &f.reactor.stripe, Some(&header), tampered.as_bytes(), system_now()).await;
    assert!(matches!(refused, Err(Error::Webhook(WebhookError::Signature(SignatureError::NoMatch)))), "{refused:?}");
    let unsigned = receive(&f.ledger, &f.reactor.stripe, None, body.as_bytes(), system_now()).await;
    assert!(matches!(unsigned, Err(Error::Webhook(WebhookError::Signature(SignatureError::Missing)))));
    let off = Stripe::off();
    let not_configured = receive(&f.ledger, &off, Some(&header), body.as_bytes(), system_now()).await;
    assert!(matches!(not_configured, Err(Error::Webhook(WebhookError::NotConfigured))));
    assert_eq!(f.ledger.log.head().await.unwrap().sequence, head, "nothing more recorded");
}

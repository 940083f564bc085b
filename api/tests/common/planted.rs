//! Events planted straight through the store beside a running server, as
//! a log written before today's bounds held it (the hostile review's
//! cases): the billing suites share them.

use domain::subscription::{AddonAdded, AddonKind, SubscriptionEvent};
use domain::{AddonId, EventId, Metadata, Money, StreamId, Timestamp};
use rust_decimal::Decimal;
use store::{Command, ExpectedRevision, NewEvent};
use uuid::Uuid;

use super::Backend;

/// The add-on of the hostile review: 1,000 extra TB at the largest amount
/// a decimal holds, which no invoice can be computed with.
pub fn overflowing_addon() -> AddonAdded {
    AddonAdded {
        addon_id: AddonId(Uuid::now_v7()),
        kind: AddonKind::ExtraDataTb,
        quantity: 1000,
        annual_price: Some(Money::usd(Decimal::MAX)),
        one_time_price: None,
        effective_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    }
}

/// Appends an event to a subscription's stream straight through the store,
/// beside the running server, as a log written before the bounds held it.
pub async fn plant(backend: &Backend, subscription_id: &str, event: SubscriptionEvent) {
    let log = backend.open_log().await;
    let stream_id = StreamId::new(format!("subscription/{subscription_id}")).unwrap();
    let records = log.read_stream(&stream_id, 1, 1000).await.expect("the stream reads");
    let revision = records.last().expect("the subscription's events").header.stream_revision;
    let at = Timestamp::parse_rfc3339("2026-01-05T00:00:00Z").unwrap();
    let event = NewEvent::from_event(&event, EventId(Uuid::now_v7()), at, &Metadata::default());
    let command =
        Command { stream_id, expected: ExpectedRevision::Exactly(revision), idempotency: None, events: vec![event] };
    log.append_one(command).await.expect("the store appends").expect("the command is accepted");
}

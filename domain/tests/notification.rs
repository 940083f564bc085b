//! Which notices are due, and their ids (ledger_domain::notification).

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use ledger_domain::catalog::{Catalog, Tier};
use ledger_domain::event::{LedgerEvent, StoredEvent};
use ledger_domain::notification::{
    Notice, NotificationEvent, NotificationSent, UsageLevel, UsageMetric, expiry_reminder, usage_levels,
};
use ledger_domain::subscription::{
    AutoRenewalCancelled, Subscription, SubscriptionCancelled, SubscriptionCreated, SubscriptionExpired,
};
use ledger_domain::usage::Metrics;
use ledger_domain::{EventId, LicenseId, OrganizationId, SubscriptionId, UserId};
use rust_decimal::Decimal;
use uuid::Uuid;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// A starter subscription from 2026-01-01 (ends 2027-01-01).
fn subscription(auto_renew: bool) -> Subscription {
    let mut subscription = Subscription::default();
    subscription.apply(
        SubscriptionCreated {
            id: SubscriptionId(Uuid::from_u128(1)),
            organization_id: OrganizationId(Uuid::from_u128(2)),
            tier: Tier::Starter,
            catalog_version: 1,
            start_date: d(2026, 1, 1),
            end_date: d(2027, 1, 1),
            auto_renew,
            max_deployments: 1,
            enterprise_overage_rate: None,
            license_id: LicenseId(Uuid::from_u128(3)),
        }
        .into(),
    );
    subscription
}

#[test]
fn the_expiry_reminder_is_due_in_the_last_30_days_of_a_term_that_does_not_renew() {
    let ending = subscription(false);
    assert_eq!(expiry_reminder(&ending, d(2026, 12, 1)), None, "31 days before");
    let reminder = expiry_reminder(&ending, d(2026, 12, 2)).expect("30 days before");
    assert_eq!(
        reminder,
        Notice::ExpiryReminder {
            organization_id: OrganizationId(Uuid::from_u128(2)),
            subscription_id: SubscriptionId(Uuid::from_u128(1)),
            end_date: d(2027, 1, 1),
        }
    );
    assert_eq!(expiry_reminder(&ending, d(2026, 12, 31)), Some(reminder.clone()), "the same notice all along");
    assert_eq!(expiry_reminder(&ending, d(2027, 1, 1)), None, "the term is over");

    assert_eq!(expiry_reminder(&subscription(true), d(2026, 12, 15)), None, "it renews");
    // Turning auto-renewal off later makes it due.
    let mut cancelled = subscription(true);
    cancelled.apply(AutoRenewalCancelled { effective_date: d(2027, 1, 1) }.into());
    assert_eq!(expiry_reminder(&cancelled, d(2026, 12, 15)), Some(reminder));
    // An immediate cancellation says when it ends: no reminder.
    let mut ended = subscription(false);
    ended.apply(SubscriptionCancelled { effective_date: d(2026, 12, 10) }.into());
    assert_eq!(expiry_reminder(&ended, d(2026, 12, 15)), None);
    // Nor once it has expired.
    let mut expired = subscription(false);
    expired.apply(SubscriptionExpired { on: d(2027, 1, 1) }.into());
    assert_eq!(expiry_reminder(&expired, d(2026, 12, 15)), None);
}

#[test]
fn usage_levels_name_metrics_from_80_percent_and_skip_unlimited_ones() {
    let catalog = Catalog::builtin();
    let starter = catalog.current(d(2026, 1, 1)).tier(Tier::Starter);
    let metrics = |users, data: i64, calls| Metrics {
        active_users: users,
        data_volume_gb: Decimal::from(data),
        api_calls_count: calls,
        training_hours: Decimal::ZERO,
    };
    assert!(usage_levels(&metrics(3, 799, 7999), starter, 0).is_empty(), "all under 80%");
    let levels = usage_levels(&metrics(4, 1000, 8000), starter, 0);
    let named: Vec<_> = levels.iter().map(|c| (c.metric, c.level)).collect();
    assert_eq!(
        named,
        [
            (UsageMetric::Users, UsageLevel::Approaching),
            (UsageMetric::DataVolumeGb, UsageLevel::Reached),
            (UsageMetric::ApiCalls, UsageLevel::Approaching),
        ]
    );
    assert_eq!((levels[1].value, levels[1].limit), (Decimal::from(1000), Decimal::from(1000)));
    // Extra data raises the data limit; enterprise has no seat or call limit.
    assert!(usage_levels(&metrics(0, 1000, 0), starter, 1000).is_empty());
    let enterprise = catalog.current(d(2026, 1, 1)).tier(Tier::Enterprise);
    assert!(usage_levels(&metrics(10_000, 0, 10_000_000), enterprise, 0).is_empty());
}

#[test]
fn ids_follow_what_made_a_notice_due_and_nothing_else() {
    let (org, sub) = (OrganizationId(Uuid::from_u128(2)), SubscriptionId(Uuid::from_u128(1)));
    let warning = |metric, level, month| Notice::UsageWarning {
        organization_id: org,
        subscription_id: sub,
        metric,
        level,
        month,
    };
    let base = warning(UsageMetric::ApiCalls, UsageLevel::Approaching, d(2026, 1, 1));
    assert_eq!(base.id(), warning(UsageMetric::ApiCalls, UsageLevel::Approaching, d(2026, 1, 1)).id(), "stable");
    let others = [
        warning(UsageMetric::ApiCalls, UsageLevel::Reached, d(2026, 1, 1)),
        warning(UsageMetric::Users, UsageLevel::Approaching, d(2026, 1, 1)),
        warning(UsageMetric::ApiCalls, UsageLevel::Approaching, d(2026, 2, 1)),
        Notice::ExpiryReminder { organization_id: org, subscription_id: sub, end_date: d(2027, 1, 1) },
        Notice::ExpiryReminder { organization_id: org, subscription_id: sub, end_date: d(2028, 1, 1) },
        Notice::PaymentFailed { organization_id: org, subscription_id: sub, trigger: EventId(Uuid::from_u128(9)) },
        Notice::Suspended { organization_id: org, subscription_id: sub, trigger: EventId(Uuid::from_u128(9)) },
        Notice::Restored { organization_id: org, subscription_id: sub, trigger: EventId(Uuid::from_u128(9)) },
        Notice::Onboarding { organization_id: org, subscription_id: sub, license_id: LicenseId(Uuid::from_u128(9)) },
    ];
    let mut ids: Vec<_> = others.iter().map(Notice::id).collect();
    ids.push(base.id());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), others.len() + 1, "every notice its own id");
    assert_eq!(base.id().stream().as_str(), format!("notification/{}", base.id()));
}

#[test]
fn a_sent_notification_is_read_back_from_its_stream() {
    let notice = Notice::Onboarding {
        organization_id: OrganizationId(Uuid::from_u128(2)),
        subscription_id: SubscriptionId(Uuid::from_u128(1)),
        license_id: LicenseId(Uuid::from_u128(3)),
    };
    let event = NotificationEvent::NotificationSent(NotificationSent {
        id: notice.id(),
        notice,
        recipients: vec![UserId(Uuid::from_u128(4))],
        message_id: "<x@ledger.test>".into(),
    });
    let header = ledger_domain::RecordHeader {
        sequence: 1,
        event_id: EventId(Uuid::from_u128(5)),
        stream_id: event.id().stream(),
        stream_revision: 1,
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        occurred_at: ledger_domain::Timestamp::from_micros(0),
        recorded_at: ledger_domain::Timestamp::from_micros(0),
        idempotency_key: None,
    };
    let decoded = LedgerEvent::decode(&header, &event.encode_payload()).unwrap();
    assert_eq!(decoded, Some(LedgerEvent::Notification(event)));
}

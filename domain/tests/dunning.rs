//! Given / when / then tests of dunning (BILLING-RULES.md, "Payment
//! failure"): past due on a failed payment, suspended 14 × 24 hours after
//! the first failure, active again on a successful payment; reports that
//! arrive out of order never move the status back.

use std::sync::Arc;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use ledger_domain::catalog::{Catalog, Tier};
use ledger_domain::subscription::{
    PaymentFailed, PaymentSucceeded, Policy, Services, Status, Subscription, SubscriptionCancelled,
    SubscriptionCommand, SubscriptionCreated, SubscriptionError, SubscriptionEvent, SubscriptionSuspended,
};
use ledger_domain::{LicenseId, OrganizationId, SubscriptionId, Timestamp};
use uuid::Uuid;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// 2026-01-10T00:00:00Z plus `micros`.
fn t(micros: i64) -> Timestamp {
    Timestamp::from_micros(Timestamp::parse_rfc3339("2026-01-10T00:00:00Z").unwrap().as_micros() + micros)
}

fn created() -> SubscriptionEvent {
    SubscriptionCreated {
        id: SubscriptionId(Uuid::from_u128(0x5b)),
        organization_id: OrganizationId(Uuid::from_u128(0x0a)),
        tier: Tier::Starter,
        catalog_version: 1,
        start_date: d(2026, 1, 1),
        end_date: d(2027, 1, 1),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: LicenseId(Uuid::from_u128(0x11)),
    }
    .into()
}

fn services(policy: Policy) -> Services {
    Services { catalog: Arc::new(Catalog::builtin()), policy }
}

fn given(events: Vec<SubscriptionEvent>) -> AggregateTestExecutor<Subscription> {
    TestFramework::<Subscription>::with(services(Policy::default())).given(events)
}

fn failed(reference: &str, reported_at: Timestamp, now: Timestamp) -> SubscriptionCommand {
    SubscriptionCommand::RecordPaymentFailed { reference: reference.into(), reported_at, now }
}

fn succeeded(reference: &str, reported_at: Timestamp, now: Timestamp) -> SubscriptionCommand {
    SubscriptionCommand::RecordPaymentSucceeded { reference: reference.into(), reported_at, now }
}

/// The first failure, recorded at `t(0)`, reported by Stripe at `t(-1h)`.
fn first_failure() -> SubscriptionEvent {
    PaymentFailed {
        reference: "in_1".into(),
        reported_at: t(-HOUR),
        at: t(0),
        first: true,
        past_due_since: t(0),
        suspend_at: t(14 * DAY),
    }
    .into()
}

fn state(events: Vec<SubscriptionEvent>) -> Subscription {
    let mut subscription = Subscription::default();
    for event in events {
        subscription.apply(event);
    }
    subscription
}

#[test]
fn the_first_failed_payment_makes_the_subscription_past_due_for_14_days() {
    given(vec![created()]).when(failed("in_1", t(-HOUR), t(0))).then_expect_events(vec![first_failure()]);
    let subscription = state(vec![created(), first_failure()]);
    assert_eq!(subscription.status_on(d(2026, 1, 10)), Status::PastDue);
}

#[test]
fn a_later_failure_keeps_the_first_failures_deadline() {
    given(vec![created(), first_failure()]).when(failed("in_1", t(3 * DAY), t(3 * DAY + HOUR))).then_expect_events(
        vec![
            PaymentFailed {
                reference: "in_1".into(),
                reported_at: t(3 * DAY),
                at: t(3 * DAY + HOUR),
                first: false,
                past_due_since: t(0),
                suspend_at: t(14 * DAY),
            }
            .into(),
        ],
    );
}

#[test]
fn the_dunning_days_are_configuration() {
    let policy = Policy { dunning_days: 3, ..Policy::default() };
    TestFramework::<Subscription>::with(services(policy))
        .given(vec![created()])
        .when(failed("in_1", t(0), t(0)))
        .then_expect_events(vec![
            PaymentFailed {
                reference: "in_1".into(),
                reported_at: t(0),
                at: t(0),
                first: true,
                past_due_since: t(0),
                suspend_at: t(3 * DAY),
            }
            .into(),
        ]);
}

#[test]
fn suspension_comes_exactly_14_times_24_hours_after_the_first_failure() {
    given(vec![created(), first_failure()])
        .when(SubscriptionCommand::Suspend { now: t(14 * DAY - 1) })
        .then_expect_error(SubscriptionError::GraceNotOver(t(14 * DAY)));
    given(vec![created(), first_failure()])
        .when(SubscriptionCommand::Suspend { now: t(14 * DAY) })
        .then_expect_events(vec![SubscriptionSuspended { at: t(14 * DAY), past_due_since: t(0) }.into()]);
    let suspended = SubscriptionSuspended { at: t(14 * DAY), past_due_since: t(0) };
    let subscription = state(vec![created(), first_failure(), suspended.clone().into()]);
    assert_eq!(subscription.status_on(d(2026, 1, 24)), Status::Suspended);
    // Suspended once: the scheduler's next tick finds nothing to do.
    given(vec![created(), first_failure(), suspended.into()])
        .when(SubscriptionCommand::Suspend { now: t(15 * DAY) })
        .then_expect_error(SubscriptionError::NotPastDue);
}

#[test]
fn a_subscription_in_good_standing_is_not_suspended() {
    given(vec![created()])
        .when(SubscriptionCommand::Suspend { now: t(30 * DAY) })
        .then_expect_error(SubscriptionError::NotPastDue);
}

#[test]
fn a_successful_payment_returns_a_past_due_or_suspended_subscription_to_active() {
    let paid = PaymentSucceeded { reference: "in_1".into(), reported_at: t(DAY), at: t(DAY + 1), reactivated: true };
    given(vec![created(), first_failure()])
        .when(succeeded("in_1", t(DAY), t(DAY + 1)))
        .then_expect_events(vec![paid.clone().into()]);
    assert_eq!(state(vec![created(), first_failure(), paid.into()]).status_on(d(2026, 1, 11)), Status::Active);

    let suspended: SubscriptionEvent = SubscriptionSuspended { at: t(14 * DAY), past_due_since: t(0) }.into();
    let paid =
        PaymentSucceeded { reference: "in_1".into(), reported_at: t(15 * DAY), at: t(15 * DAY), reactivated: true };
    given(vec![created(), first_failure(), suspended.clone()])
        .when(succeeded("in_1", t(15 * DAY), t(15 * DAY)))
        .then_expect_events(vec![paid.clone().into()]);
    let subscription = state(vec![created(), first_failure(), suspended, paid.into()]);
    assert_eq!(subscription.status_on(d(2026, 1, 25)), Status::Active);
    assert_eq!(subscription.dunning, None);
}

#[test]
fn a_payment_in_good_standing_is_recorded_without_reactivating() {
    given(vec![created()]).when(succeeded("in_1", t(0), t(0))).then_expect_events(vec![
        PaymentSucceeded { reference: "in_1".into(), reported_at: t(0), at: t(0), reactivated: false }.into(),
    ]);
}

#[test]
fn a_failure_reported_before_a_known_success_arrives_late_and_changes_nothing() {
    let paid: SubscriptionEvent =
        PaymentSucceeded { reference: "in_2".into(), reported_at: t(2 * DAY), at: t(3 * DAY), reactivated: false }
            .into();
    // Another invoice's failure, reported earlier than the success.
    given(vec![created(), paid.clone()]).when(failed("in_1", t(DAY), t(4 * DAY))).then_expect_events(vec![]);
    // Reported in the same second as the success: the success wins.
    given(vec![created(), paid.clone()]).when(failed("in_1", t(2 * DAY), t(4 * DAY))).then_expect_events(vec![]);
    // The paid invoice itself: a failure for it is stale whenever reported.
    given(vec![created(), paid.clone()]).when(failed("in_2", t(5 * DAY), t(5 * DAY))).then_expect_events(vec![]);
    // A failure reported after the success is a new failure.
    given(vec![created(), paid]).when(failed("in_3", t(5 * DAY), t(5 * DAY))).then_expect_events(vec![
        PaymentFailed {
            reference: "in_3".into(),
            reported_at: t(5 * DAY),
            at: t(5 * DAY),
            first: true,
            past_due_since: t(5 * DAY),
            suspend_at: t(19 * DAY),
        }
        .into(),
    ]);
}

#[test]
fn a_success_reported_before_a_known_failure_pays_its_invoice_but_leaves_the_failure() {
    // Another invoice's failure (in_1, reported at -1h) is newer than the
    // success of in_0 reported at -2h, delivered late: in_0 is paid (Stripe
    // collected it), the subscription stays past due for in_1.
    let late: SubscriptionEvent =
        PaymentSucceeded { reference: "in_0".into(), reported_at: t(-2 * HOUR), at: t(HOUR), reactivated: false }
            .into();
    given(vec![created(), first_failure()])
        .when(succeeded("in_0", t(-2 * HOUR), t(HOUR)))
        .then_expect_events(vec![late.clone()]);
    let subscription = state(vec![created(), first_failure(), late.clone()]);
    assert!(subscription.paid.contains("in_0"));
    assert_eq!(subscription.status_on(d(2026, 1, 2)), Status::PastDue);
    // Reported again, it is recorded once; in_1's own success still reactivates.
    given(vec![created(), first_failure(), late.clone()])
        .when(succeeded("in_0", t(-2 * HOUR), t(2 * HOUR)))
        .then_expect_events(vec![]);
    given(vec![created(), first_failure(), late]).when(succeeded("in_1", t(DAY), t(DAY))).then_expect_events(vec![
        PaymentSucceeded { reference: "in_1".into(), reported_at: t(DAY), at: t(DAY), reactivated: true }.into(),
    ]);
    // The same invoice reported paid twice (invoice.paid and
    // invoice.payment_succeeded) is recorded once.
    let paid: SubscriptionEvent =
        PaymentSucceeded { reference: "in_1".into(), reported_at: t(DAY), at: t(DAY), reactivated: true }.into();
    given(vec![created(), first_failure(), paid]).when(succeeded("in_1", t(DAY), t(DAY))).then_expect_events(vec![]);
}

#[test]
fn an_ended_subscription_takes_no_payment_reports_and_is_not_suspended() {
    let cancelled: SubscriptionEvent = SubscriptionCancelled { effective_date: d(2026, 1, 5) }.into();
    given(vec![created(), cancelled.clone()])
        .when(failed("in_1", t(0), t(0)))
        .then_expect_error(SubscriptionError::NotChangeable("cancelled"));
    given(vec![created(), first_failure(), cancelled])
        .when(SubscriptionCommand::Suspend { now: t(14 * DAY) })
        .then_expect_error(SubscriptionError::NotChangeable("cancelled"));
}

#[test]
fn a_payment_reference_must_be_a_short_printable_id() {
    for bad in [String::new(), "x".repeat(256), "in_\n1".into()] {
        given(vec![created()])
            .when(failed(&bad, t(0), t(0)))
            .then_expect_error(SubscriptionError::InvalidPaymentReference);
    }
    given(vec![]).when(failed("in_1", t(0), t(0))).then_expect_error(SubscriptionError::NotFound);
}

#[test]
fn dunning_events_round_trip_through_the_log_encoding() {
    use ledger_domain::event::StoredEvent;
    let events: Vec<SubscriptionEvent> = vec![
        first_failure(),
        PaymentSucceeded { reference: "in_1".into(), reported_at: t(1), at: t(2), reactivated: true }.into(),
        SubscriptionSuspended { at: t(3), past_due_since: t(0) }.into(),
    ];
    for event in events {
        let bytes = event.encode_payload();
        let back = SubscriptionEvent::decode(event.event_type(), event.schema_version(), &bytes).unwrap().unwrap();
        assert_eq!(back, event);
    }
}

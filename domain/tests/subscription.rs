//! Given / when / then tests of the subscription aggregate (BILLING-RULES.md,
//! "Subscriptions", worked example 2, and the add-on price list).
//!
//! Tables that try several inputs print the case before running it, so a
//! failure names the case that broke (libtest shows a failing test's output).

use std::str::FromStr;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use ledger_domain::catalog::{Catalog, Tier};
use ledger_domain::event::{EventDecodeError, StoredEvent};
use ledger_domain::floating::{FloatingDeploymentsSet, FloatingPolicy, FloatingPolicyError};
use ledger_domain::subscription::{
    AddonAdded, AddonEnded, AddonKind, AddonRepriced, AutoRenewalCancelled, DowngradeScheduled, PaymentFailed,
    PaymentSucceeded, Policy, Pricing, Services, Subscription, SubscriptionCancelled, SubscriptionCommand,
    SubscriptionCreated, SubscriptionError, SubscriptionEvent, SubscriptionExpired, SubscriptionRenewed,
    SubscriptionSuspended, SubscriptionUpgraded,
};
use ledger_domain::{AddonId, LicenseId, Money, OrganizationId, SubscriptionId, Timestamp};
use rust_decimal::Decimal;
use uuid::Uuid;

use Tier::{Enterprise, Professional, Starter};

const SUB: SubscriptionId = SubscriptionId(Uuid::from_u128(0x5b));
const ORG: OrganizationId = OrganizationId(Uuid::from_u128(0x0a));

const EXTRA_DATA_PRICE_REQUIRED: &str = "extra_data_tb takes a positive annualPrice (required on enterprise)";
const TRAINING_PRICE: &str = "training_session takes a positive oneTimePrice only";
const RECURRING_PRICE: &str = "recurring add-ons take a positive annualPrice";

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn usd(text: &str) -> Money {
    Money::usd(dec(text))
}

fn license(n: u128) -> LicenseId {
    LicenseId(Uuid::from_u128(0x1100 + n))
}

fn addon(n: u128) -> AddonId {
    AddonId(Uuid::from_u128(0xadd0 + n))
}

fn services_with(policy: Policy) -> Services {
    Services { catalog: Arc::new(Catalog::builtin()), policy }
}

fn given(events: Vec<SubscriptionEvent>) -> AggregateTestExecutor<Subscription> {
    TestFramework::<Subscription>::with(services_with(Policy::default())).given(events)
}

// Givens. A term is one year; none of these starts on 29 February.

fn created_with(tier: Tier, start: NaiveDate, auto_renew: bool) -> SubscriptionEvent {
    SubscriptionCreated {
        id: SUB,
        organization_id: ORG,
        tier,
        catalog_version: 1,
        start_date: start,
        end_date: d(start.year() + 1, start.month(), start.day()),
        auto_renew,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: license(1),
    }
    .into()
}

/// Auto-renewing, license 1, catalog version 1.
fn created(tier: Tier, start: NaiveDate) -> SubscriptionEvent {
    created_with(tier, start, true)
}

/// Starter, term 2026-01-01 to 2027-01-01 (exclusive), auto-renewing.
fn starter_2026() -> Vec<SubscriptionEvent> {
    vec![created(Starter, d(2026, 1, 1))]
}

/// Starter from 2026-01-01, upgraded to professional from 2026-01-16 (worked
/// example 2), the new key being license 2.
fn starter_upgraded_on_16_january() -> Vec<SubscriptionEvent> {
    vec![created(Starter, d(2026, 1, 1)), upgraded(Starter, Professional, d(2026, 1, 16), "1290.32", 1, 2)]
}

fn upgraded(
    from: Tier,
    to: Tier,
    effective: NaiveDate,
    prorated: &str,
    previous: u128,
    new: u128,
) -> SubscriptionEvent {
    SubscriptionUpgraded {
        from_tier: from,
        to_tier: to,
        effective_date: effective,
        prorated_amount: usd(prorated),
        previous_license_id: license(previous),
        new_license_id: license(new),
    }
    .into()
}

fn downgrade_scheduled(to: Tier, effective: NaiveDate) -> SubscriptionEvent {
    DowngradeScheduled { to_tier: to, effective_date: effective }.into()
}

fn auto_renewal_cancelled(end: NaiveDate) -> SubscriptionEvent {
    AutoRenewalCancelled { effective_date: end }.into()
}

fn cancelled(effective: NaiveDate) -> SubscriptionEvent {
    SubscriptionCancelled { effective_date: effective }.into()
}

fn renewed(start: NaiveDate, end: NaiveDate, tier: Tier) -> SubscriptionEvent {
    SubscriptionRenewed { start_date: start, end_date: end, tier, catalog_version: 1 }.into()
}

fn expired(on: NaiveDate) -> SubscriptionEvent {
    SubscriptionExpired { on }.into()
}

fn addon_added(
    kind: AddonKind,
    quantity: u32,
    annual: Option<&str>,
    one_time: Option<&str>,
    effective: NaiveDate,
) -> SubscriptionEvent {
    AddonAdded {
        addon_id: addon(1),
        kind,
        quantity,
        annual_price: annual.map(usd),
        one_time_price: one_time.map(usd),
        effective_date: effective,
    }
    .into()
}

// Commands.

/// Auto-renewing, one deployment, no contract overage rate, license 1.
fn create(tier: Tier, start: NaiveDate, today: NaiveDate) -> SubscriptionCommand {
    SubscriptionCommand::Create {
        id: SUB,
        organization_id: ORG,
        tier,
        start_date: start,
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: license(1),
        today,
    }
}

fn create_event(tier: Tier, start: NaiveDate, end: NaiveDate) -> SubscriptionEvent {
    SubscriptionCreated {
        id: SUB,
        organization_id: ORG,
        tier,
        catalog_version: 1,
        start_date: start,
        end_date: end,
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: license(1),
    }
    .into()
}

fn upgrade(target: Tier, effective: Option<NaiveDate>, today: NaiveDate, new_license: u128) -> SubscriptionCommand {
    SubscriptionCommand::Upgrade {
        target_tier: target,
        effective_date: effective,
        new_license_id: license(new_license),
        today,
    }
}

fn downgrade(target: Tier, today: NaiveDate) -> SubscriptionCommand {
    SubscriptionCommand::ScheduleDowngrade { target_tier: target, today }
}

fn cancel_at_term_end(today: NaiveDate) -> SubscriptionCommand {
    SubscriptionCommand::Cancel { immediate: false, effective_date: None, today }
}

fn cancel_now(effective: Option<NaiveDate>, today: NaiveDate) -> SubscriptionCommand {
    SubscriptionCommand::Cancel { immediate: true, effective_date: effective, today }
}

fn add_addon(
    kind: AddonKind,
    quantity: u32,
    annual: Option<&str>,
    one_time: Option<&str>,
    effective: NaiveDate,
    today: NaiveDate,
) -> SubscriptionCommand {
    SubscriptionCommand::AddAddon {
        addon_id: addon(1),
        kind,
        quantity,
        annual_price: annual.map(dec),
        one_time_price: one_time.map(dec),
        effective_date: effective,
        today,
        pricing: Pricing::Operator,
    }
}

/// An organization's admin buying an add-on: no price of its own.
fn buy_addon(kind: AddonKind, quantity: u32, effective: NaiveDate, today: NaiveDate) -> SubscriptionCommand {
    SubscriptionCommand::AddAddon {
        addon_id: addon(1),
        kind,
        quantity,
        annual_price: None,
        one_time_price: None,
        effective_date: effective,
        today,
        pricing: Pricing::Catalog,
    }
}

fn end_addon(effective: NaiveDate, invoiced_through: Option<NaiveDate>) -> SubscriptionCommand {
    SubscriptionCommand::EndAddon { addon_id: addon(1), effective_date: effective, invoiced_through }
}

fn reprice_addon(annual: Option<&str>, one_time: Option<&str>) -> SubscriptionCommand {
    SubscriptionCommand::RepriceAddon {
        addon_id: addon(1),
        annual_price: annual.map(dec),
        one_time_price: one_time.map(dec),
    }
}

fn end_term(today: NaiveDate) -> SubscriptionCommand {
    SubscriptionCommand::EndTerm { today }
}

// Create.

#[test]
fn create_prices_with_the_current_catalog_for_one_year() {
    given(vec![]).when(create(Starter, d(2026, 1, 1), d(2026, 1, 1))).then_expect_events(vec![create_event(
        Starter,
        d(2026, 1, 1),
        d(2027, 1, 1),
    )]);
}

#[test]
fn create_records_its_options() {
    given(vec![])
        .when(SubscriptionCommand::Create {
            id: SUB,
            organization_id: ORG,
            tier: Enterprise,
            start_date: d(2026, 3, 31),
            auto_renew: false,
            max_deployments: 1000,
            enterprise_overage_rate: Some(dec("3500.00")),
            license_id: license(7),
            today: d(2026, 3, 20),
        })
        .then_expect_events(vec![
            SubscriptionCreated {
                id: SUB,
                organization_id: ORG,
                tier: Enterprise,
                catalog_version: 1,
                start_date: d(2026, 3, 31),
                end_date: d(2027, 3, 31),
                auto_renew: false,
                max_deployments: 1000,
                enterprise_overage_rate: Some(dec("3500.00")),
                license_id: license(7),
            }
            .into(),
        ]);
}

#[test]
fn a_start_date_exactly_31_days_in_the_past_is_accepted() {
    given(vec![]).when(create(Professional, d(2026, 1, 1), d(2026, 2, 1))).then_expect_events(vec![create_event(
        Professional,
        d(2026, 1, 1),
        d(2027, 1, 1),
    )]);
}

#[test]
fn a_start_date_32_days_in_the_past_is_refused() {
    given(vec![])
        .when(create(Professional, d(2025, 12, 31), d(2026, 2, 1)))
        .then_expect_error(SubscriptionError::StartTooFarInPast { start: d(2025, 12, 31), days: 31 });
}

#[test]
fn the_backdating_allowance_is_configuration() {
    let policy = Policy { backdate_days_max: 7, ..Policy::default() };
    TestFramework::<Subscription>::with(services_with(policy))
        .given(vec![])
        .when(create(Starter, d(2026, 3, 3), d(2026, 3, 10)))
        .then_expect_events(vec![create_event(Starter, d(2026, 3, 3), d(2027, 3, 3))]);
    TestFramework::<Subscription>::with(services_with(policy))
        .given(vec![])
        .when(create(Starter, d(2026, 3, 2), d(2026, 3, 10)))
        .then_expect_error(SubscriptionError::StartTooFarInPast { start: d(2026, 3, 2), days: 7 });
}

#[test]
fn a_term_starting_on_29_february_ends_on_1_march() {
    given(vec![]).when(create(Starter, d(2028, 2, 29), d(2028, 2, 29))).then_expect_events(vec![create_event(
        Starter,
        d(2028, 2, 29),
        d(2029, 3, 1),
    )]);
}

#[test]
fn creating_an_existing_subscription_is_refused() {
    given(starter_2026())
        .when(create(Starter, d(2026, 1, 1), d(2026, 1, 1)))
        .then_expect_error(SubscriptionError::AlreadyExists);
}

#[test]
fn max_deployments_outside_1_to_1000_is_refused() {
    for max_deployments in [0, 1001, u32::MAX] {
        println!("case: {max_deployments}");
        let SubscriptionCommand::Create {
            id, organization_id, tier, start_date, auto_renew, license_id, today, ..
        } = create(Starter, d(2026, 1, 1), d(2026, 1, 1))
        else {
            unreachable!()
        };
        given(vec![])
            .when(SubscriptionCommand::Create {
                id,
                organization_id,
                tier,
                start_date,
                auto_renew,
                max_deployments,
                enterprise_overage_rate: None,
                license_id,
                today,
            })
            .then_expect_error(SubscriptionError::InvalidMaxDeployments);
    }
}

#[test]
fn an_overage_rate_is_refused_unless_enterprise_and_positive() {
    for (tier, rate) in [(Starter, "4000"), (Professional, "4000"), (Enterprise, "0"), (Enterprise, "-1")] {
        println!("case: {tier} at {rate}");
        given(vec![])
            .when(SubscriptionCommand::Create {
                id: SUB,
                organization_id: ORG,
                tier,
                start_date: d(2026, 1, 1),
                auto_renew: true,
                max_deployments: 1,
                enterprise_overage_rate: Some(dec(rate)),
                license_id: license(1),
                today: d(2026, 1, 1),
            })
            .then_expect_error(SubscriptionError::InvalidOverageRate);
    }
}

#[test]
fn every_change_to_a_missing_subscription_is_not_found() {
    let today = d(2026, 1, 10);
    for command in [
        upgrade(Professional, None, today, 2),
        downgrade(Starter, today),
        cancel_at_term_end(today),
        cancel_now(None, today),
        add_addon(AddonKind::CustomModule, 1, Some("1000"), None, today, today),
        end_term(today),
        end_addon(today, None),
        reprice_addon(Some("1000"), None),
    ] {
        println!("case: {command:?}");
        given(vec![]).when(command).then_expect_error(SubscriptionError::NotFound);
    }
}

// Upgrade.

#[test]
fn worked_example_2_upgrade_to_professional_on_16_january_prorates_1290_32() {
    let expected = upgraded(Starter, Professional, d(2026, 1, 16), "1290.32", 1, 2);
    for (case, command) in [
        ("scheduled on 10 January", upgrade(Professional, Some(d(2026, 1, 16)), d(2026, 1, 10), 2)),
        ("immediate on 16 January", upgrade(Professional, None, d(2026, 1, 16), 2)),
    ] {
        println!("case: {case}");
        given(starter_2026()).when(command).then_expect_events(vec![expected.clone()]);
    }
}

#[test]
fn an_upgrade_may_take_effect_on_any_day_of_the_current_month() {
    // (new − old annual) / 12 × days to month end, inclusive / days in month.
    for (target, effective, prorated) in [
        (Professional, d(2026, 3, 1), "2500.00"), // 2,500 × 31 / 31
        (Professional, d(2026, 3, 31), "80.65"),  // 2,500 × 1 / 31 = 80.645…
        (Enterprise, d(2026, 3, 2), "7258.06"),   // 7,500 × 30 / 31 = 7,258.064…
        (Enterprise, d(2026, 3, 20), "2903.23"),  // 7,500 × 12 / 31 = 2,903.225…
    ] {
        println!("case: {target} from {effective}");
        given(starter_2026())
            .when(upgrade(target, Some(effective), d(2026, 3, 15), 2))
            .then_expect_events(vec![upgraded(Starter, target, effective, prorated, 1, 2)]);
    }
}

#[test]
fn an_upgrade_in_february_prorates_over_its_28_days() {
    given(starter_2026())
        .when(upgrade(Enterprise, Some(d(2026, 2, 15)), d(2026, 2, 3), 2))
        // 7,500 × 14 / 28.
        .then_expect_events(vec![upgraded(Starter, Enterprise, d(2026, 2, 15), "3750.00", 1, 2)]);
}

#[test]
fn a_second_upgrade_in_a_month_prorates_against_the_latest_tier() {
    // Professional to enterprise is 60,000 a year more, 5,000 a month.
    for (effective, prorated) in [
        (d(2026, 1, 20), "1935.48"), // 5,000 × 12 / 31 = 1,935.483…
        (d(2026, 1, 16), "2580.65"), // 5,000 × 16 / 31 = 2,580.645…
    ] {
        println!("case: from {effective}");
        given(starter_upgraded_on_16_january())
            .when(upgrade(Enterprise, Some(effective), d(2026, 1, 16), 3))
            .then_expect_events(vec![upgraded(Professional, Enterprise, effective, prorated, 2, 3)]);
    }
}

#[test]
fn an_upgrade_in_a_renewed_term_may_take_effect_from_the_renewal_day() {
    let events = vec![created(Starter, d(2025, 1, 20)), renewed(d(2026, 1, 20), d(2027, 1, 20), Starter)];
    given(events)
        .when(upgrade(Professional, Some(d(2026, 1, 20)), d(2026, 1, 20), 2))
        // 2,500 × 12 / 31 = 967.741…
        .then_expect_events(vec![upgraded(Starter, Professional, d(2026, 1, 20), "967.74", 1, 2)]);
}

#[test]
fn upgrade_to_the_same_or_a_lower_tier_is_refused() {
    let today = d(2026, 1, 20);
    for (case, events, target, current) in [
        ("starter to starter", starter_2026(), Starter, Starter),
        ("professional to starter", vec![created(Professional, d(2026, 1, 1))], Starter, Professional),
        ("enterprise to professional", vec![created(Enterprise, d(2026, 1, 1))], Professional, Enterprise),
        ("to the tier of an upgrade already made", starter_upgraded_on_16_january(), Professional, Professional),
        ("to the tier left by an upgrade", starter_upgraded_on_16_january(), Starter, Professional),
    ] {
        println!("case: {case}");
        given(events)
            .when(upgrade(target, None, today, 3))
            .then_expect_error(SubscriptionError::NotAnUpgrade { current, target });
    }
}

#[test]
fn an_upgrade_effective_outside_the_current_month_or_term_is_refused() {
    let today = d(2026, 3, 15);
    let starting_10_march = vec![created(Starter, d(2026, 3, 10))];
    let starting_20_march = vec![created(Starter, d(2026, 3, 20))];
    let ending_20_march = vec![created(Starter, d(2025, 3, 20))];
    let mut upgraded_on_16_march = starter_2026();
    upgraded_on_16_march.push(upgraded(Starter, Professional, d(2026, 3, 16), "1290.32", 1, 2));
    for (case, events, effective) in [
        ("last month", starter_2026(), Some(d(2026, 2, 28))),
        ("next month", starter_2026(), Some(d(2026, 4, 1))),
        ("before the start", starting_10_march, Some(d(2026, 3, 9))),
        ("immediate, before the start", starting_20_march, None),
        ("before the latest upgrade", upgraded_on_16_march, Some(d(2026, 3, 15))),
        ("on the term's (exclusive) end", ending_20_march.clone(), Some(d(2026, 3, 20))),
        ("after the term's end", ending_20_march, Some(d(2026, 3, 25))),
    ] {
        println!("case: {case}");
        given(events)
            .when(upgrade(Enterprise, effective, today, 3))
            .then_expect_error(SubscriptionError::EffectiveDateOutOfRange(effective.unwrap_or(today)));
    }
}

#[test]
fn an_upgrade_on_the_last_day_of_the_term_is_accepted() {
    given(vec![created(Starter, d(2025, 3, 20))])
        .when(upgrade(Professional, Some(d(2026, 3, 19)), d(2026, 3, 15), 2))
        // 2,500 × 13 / 31 = 1,048.387…: the amount runs to the month's end.
        .then_expect_events(vec![upgraded(Starter, Professional, d(2026, 3, 19), "1048.39", 1, 2)]);
}

// Downgrade.

#[test]
fn a_downgrade_is_scheduled_for_the_end_of_the_term() {
    let renewed_2027 = vec![created(Professional, d(2026, 1, 1)), renewed(d(2027, 1, 1), d(2028, 1, 1), Professional)];
    for (case, events, target, today, effective) in [
        ("professional to starter", vec![created(Professional, d(2026, 1, 1))], Starter, d(2026, 5, 10), d(2027, 1, 1)),
        (
            "enterprise to professional",
            vec![created(Enterprise, d(2026, 1, 1))],
            Professional,
            d(2026, 1, 1),
            d(2027, 1, 1),
        ),
        ("after an upgrade", starter_upgraded_on_16_january(), Starter, d(2026, 1, 20), d(2027, 1, 1)),
        ("in a renewed term", renewed_2027, Starter, d(2027, 6, 1), d(2028, 1, 1)),
    ] {
        println!("case: {case}");
        given(events).when(downgrade(target, today)).then_expect_events(vec![downgrade_scheduled(target, effective)]);
    }
}

#[test]
fn downgrade_to_the_same_or_a_higher_tier_is_refused() {
    let today = d(2026, 1, 20);
    for (case, events, target, current) in [
        ("starter to starter", starter_2026(), Starter, Starter),
        ("starter to enterprise", starter_2026(), Enterprise, Starter),
        ("to the tier of an upgrade already made", starter_upgraded_on_16_january(), Professional, Professional),
    ] {
        println!("case: {case}");
        given(events)
            .when(downgrade(target, today))
            .then_expect_error(SubscriptionError::NotADowngrade { current, target });
    }
}

#[test]
fn a_downgrade_is_refused_when_the_subscription_does_not_renew() {
    let term_end = d(2027, 1, 1);
    for (case, events) in [
        ("created without auto-renewal", vec![created_with(Professional, d(2026, 1, 1), false)]),
        ("auto-renewal cancelled", vec![created(Professional, d(2026, 1, 1)), auto_renewal_cancelled(term_end)]),
        ("cancelled from a later day", vec![created(Professional, d(2026, 1, 1)), cancelled(d(2026, 6, 1))]),
    ] {
        println!("case: {case}");
        given(events).when(downgrade(Starter, d(2026, 5, 10))).then_expect_error(SubscriptionError::DoesNotRenew);
    }
}

// Cancel.

#[test]
fn cancel_by_default_turns_auto_renewal_off_at_the_term_end() {
    given(starter_2026())
        .when(cancel_at_term_end(d(2026, 5, 10)))
        .then_expect_events(vec![auto_renewal_cancelled(d(2027, 1, 1))]);
}

#[test]
fn cancelling_auto_renewal_twice_is_refused() {
    for (case, events) in [
        ("cancelled before", vec![created(Starter, d(2026, 1, 1)), auto_renewal_cancelled(d(2027, 1, 1))]),
        ("created without auto-renewal", vec![created_with(Starter, d(2026, 1, 1), false)]),
    ] {
        println!("case: {case}");
        given(events)
            .when(cancel_at_term_end(d(2026, 5, 10)))
            .then_expect_error(SubscriptionError::AutoRenewalAlreadyOff);
    }
}

#[test]
fn an_immediate_cancel_without_a_date_takes_effect_today() {
    given(starter_2026()).when(cancel_now(None, d(2026, 5, 10))).then_expect_events(vec![cancelled(d(2026, 5, 10))]);
}

#[test]
fn an_immediate_cancel_takes_effect_on_its_effective_date() {
    let today = d(2026, 5, 10);
    let auto_renewal_off = vec![created(Starter, d(2026, 1, 1)), auto_renewal_cancelled(d(2027, 1, 1))];
    for (case, events, effective) in [
        ("earlier this month", starter_2026(), d(2026, 5, 1)),
        ("later in the term", starter_2026(), d(2026, 9, 30)),
        ("the last day of the term", starter_2026(), d(2026, 12, 31)),
        ("the start day", vec![created(Starter, d(2026, 5, 4))], d(2026, 5, 4)),
        ("after auto-renewal was turned off", auto_renewal_off, d(2026, 5, 10)),
    ] {
        println!("case: {case}");
        given(events).when(cancel_now(Some(effective), today)).then_expect_events(vec![cancelled(effective)]);
    }
}

#[test]
fn an_immediate_cancel_outside_the_current_month_or_term_is_refused() {
    let today = d(2026, 5, 10);
    for (case, events, effective) in [
        ("last month", starter_2026(), Some(d(2026, 4, 30))),
        ("before the start", vec![created(Starter, d(2026, 5, 4))], Some(d(2026, 5, 3))),
        ("immediate, before the start", vec![created(Starter, d(2026, 5, 20))], None),
        ("on the term's (exclusive) end", starter_2026(), Some(d(2027, 1, 1))),
        ("after the term's end", starter_2026(), Some(d(2027, 2, 1))),
    ] {
        println!("case: {case}");
        given(events)
            .when(cancel_now(effective, today))
            .then_expect_error(SubscriptionError::EffectiveDateOutOfRange(effective.unwrap_or(today)));
    }
}

#[test]
fn cancelling_immediately_twice_is_refused() {
    let mut events = starter_2026();
    events.push(cancelled(d(2026, 5, 10)));
    given(events)
        .when(cancel_now(None, d(2026, 5, 10)))
        .then_expect_error(SubscriptionError::NotChangeable("cancelled"));
}

// Add-ons.

#[test]
fn each_addon_kind_is_recorded_with_its_price() {
    let today = d(2026, 5, 10);
    for (case, events, command, expected) in [
        (
            "training_session, one-time",
            starter_2026(),
            add_addon(AddonKind::TrainingSession, 2, None, Some("1500.00"), d(2026, 5, 12), today),
            addon_added(AddonKind::TrainingSession, 2, None, Some("1500.00"), d(2026, 5, 12)),
        ),
        (
            "custom_module, yearly",
            starter_2026(),
            add_addon(AddonKind::CustomModule, 1, Some("12000"), None, d(2026, 5, 1), today),
            addon_added(AddonKind::CustomModule, 1, Some("12000"), None, d(2026, 5, 1)),
        ),
        (
            "dedicated_support, yearly, in cents",
            vec![created(Professional, d(2026, 1, 1))],
            add_addon(AddonKind::DedicatedSupport, 1, Some("24000.5"), None, d(2026, 6, 1), today),
            addon_added(AddonKind::DedicatedSupport, 1, Some("24000.50"), None, d(2026, 6, 1)),
        ),
        (
            "extra_data_tb at the contract price on enterprise",
            vec![created(Enterprise, d(2026, 1, 1))],
            add_addon(AddonKind::ExtraDataTb, 3, Some("3500.00"), None, d(2026, 5, 10), today),
            addon_added(AddonKind::ExtraDataTb, 3, Some("3500.00"), None, d(2026, 5, 10)),
        ),
        (
            "the largest quantity, on the last day of the term",
            starter_2026(),
            add_addon(AddonKind::TrainingSession, 1000, None, Some("0.01"), d(2026, 12, 31), today),
            addon_added(AddonKind::TrainingSession, 1000, None, Some("0.01"), d(2026, 12, 31)),
        ),
    ] {
        println!("case: {case}");
        given(events).when(command).then_expect_events(vec![expected]);
    }
}

#[test]
fn extra_data_tb_defaults_to_the_catalog_price_on_starter_and_professional() {
    let today = d(2026, 1, 20);
    for (case, events, price) in [
        ("starter", starter_2026(), "5000.00"),
        ("professional", vec![created(Professional, d(2026, 1, 1))], "4000.00"),
        ("upgraded to professional", starter_upgraded_on_16_january(), "4000.00"),
    ] {
        println!("case: {case}");
        given(events)
            .when(add_addon(AddonKind::ExtraDataTb, 2, None, None, today, today))
            .then_expect_events(vec![addon_added(AddonKind::ExtraDataTb, 2, Some(price), None, today)]);
    }
}

#[test]
fn extra_data_tb_on_starter_may_name_its_own_price() {
    given(starter_2026())
        .when(add_addon(AddonKind::ExtraDataTb, 1, Some("4500"), None, d(2026, 1, 20), d(2026, 1, 20)))
        .then_expect_events(vec![addon_added(AddonKind::ExtraDataTb, 1, Some("4500.00"), None, d(2026, 1, 20))]);
}

#[test]
fn extra_data_tb_on_enterprise_needs_an_annual_price() {
    given(vec![created(Enterprise, d(2026, 1, 1))])
        .when(add_addon(AddonKind::ExtraDataTb, 1, None, None, d(2026, 1, 20), d(2026, 1, 20)))
        .then_expect_error(SubscriptionError::InvalidAddonPrice(EXTRA_DATA_PRICE_REQUIRED));
}

#[test]
fn addon_prices_that_break_the_price_rules_are_refused() {
    use AddonKind::{CustomModule, DedicatedSupport, ExtraDataTb, TrainingSession};
    let enterprise = || vec![created(Enterprise, d(2026, 1, 1))];
    for (kind, events, annual, one_time, error) in [
        (TrainingSession, starter_2026(), None, None, TRAINING_PRICE),
        (TrainingSession, starter_2026(), Some("1000"), None, TRAINING_PRICE),
        (TrainingSession, starter_2026(), Some("1000"), Some("1000"), TRAINING_PRICE),
        (TrainingSession, starter_2026(), None, Some("0"), TRAINING_PRICE),
        (TrainingSession, starter_2026(), None, Some("-100"), TRAINING_PRICE),
        (TrainingSession, starter_2026(), None, Some("100.005"), TRAINING_PRICE),
        (CustomModule, starter_2026(), None, None, RECURRING_PRICE),
        (CustomModule, starter_2026(), None, Some("1000"), RECURRING_PRICE),
        (CustomModule, starter_2026(), Some("1000"), Some("1000"), RECURRING_PRICE),
        (CustomModule, starter_2026(), Some("0.00"), None, RECURRING_PRICE),
        (CustomModule, starter_2026(), Some("-1"), None, RECURRING_PRICE),
        (CustomModule, starter_2026(), Some("1000.001"), None, RECURRING_PRICE),
        (DedicatedSupport, enterprise(), None, None, RECURRING_PRICE),
        (DedicatedSupport, enterprise(), None, Some("1000"), RECURRING_PRICE),
        (DedicatedSupport, enterprise(), Some("0"), None, RECURRING_PRICE),
        (DedicatedSupport, enterprise(), Some("-5000"), None, RECURRING_PRICE),
        (DedicatedSupport, enterprise(), Some("5000.125"), None, RECURRING_PRICE),
        (ExtraDataTb, starter_2026(), None, Some("1000"), EXTRA_DATA_PRICE_REQUIRED),
        (ExtraDataTb, starter_2026(), Some("0"), None, EXTRA_DATA_PRICE_REQUIRED),
        (ExtraDataTb, starter_2026(), Some("-5000"), None, EXTRA_DATA_PRICE_REQUIRED),
        (ExtraDataTb, starter_2026(), Some("4999.999"), None, EXTRA_DATA_PRICE_REQUIRED),
        (ExtraDataTb, enterprise(), None, Some("1000"), EXTRA_DATA_PRICE_REQUIRED),
        (ExtraDataTb, enterprise(), Some("0"), None, EXTRA_DATA_PRICE_REQUIRED),
        (ExtraDataTb, enterprise(), Some("3500.5001"), None, EXTRA_DATA_PRICE_REQUIRED),
    ] {
        println!("case: {kind:?} annual {annual:?} one-time {one_time:?}");
        given(events)
            .when(add_addon(kind, 1, annual, one_time, d(2026, 1, 20), d(2026, 1, 20)))
            .then_expect_error(SubscriptionError::InvalidAddonPrice(error));
    }
}

#[test]
fn addon_quantity_outside_1_to_1000_is_refused() {
    for quantity in [0, 1001] {
        println!("case: {quantity}");
        given(starter_2026())
            .when(add_addon(AddonKind::CustomModule, quantity, Some("1000"), None, d(2026, 1, 20), d(2026, 1, 20)))
            .then_expect_error(SubscriptionError::InvalidQuantity);
    }
}

#[test]
fn an_addon_effective_outside_the_current_month_or_term_is_refused() {
    let today = d(2026, 5, 10);
    for (case, events, effective) in [
        ("last month", starter_2026(), d(2026, 4, 30)),
        ("before the start", vec![created(Starter, d(2026, 5, 4))], d(2026, 5, 3)),
        ("on the term's (exclusive) end", starter_2026(), d(2027, 1, 1)),
        ("after the term's end", starter_2026(), d(2027, 3, 1)),
    ] {
        println!("case: {case}");
        given(events)
            .when(add_addon(AddonKind::TrainingSession, 1, None, Some("500"), effective, today))
            .then_expect_error(SubscriptionError::EffectiveDateOutOfRange(effective));
    }
}

// The end of a term.

#[test]
fn end_term_before_the_end_date_is_refused() {
    for today in [d(2026, 12, 31), d(2026, 6, 1)] {
        println!("case: {today}");
        given(starter_2026()).when(end_term(today)).then_expect_error(SubscriptionError::TermNotEnded);
    }
}

#[test]
fn end_term_renews_for_another_year_from_the_end_date() {
    // A late scheduler still renews from the end date, not from its today.
    for today in [d(2027, 1, 1), d(2027, 1, 5)] {
        println!("case: {today}");
        given(starter_2026()).when(end_term(today)).then_expect_events(vec![renewed(
            d(2027, 1, 1),
            d(2028, 1, 1),
            Starter,
        )]);
    }
}

#[test]
fn renewal_applies_the_scheduled_downgrade() {
    let events = vec![created(Enterprise, d(2026, 1, 1)), downgrade_scheduled(Starter, d(2027, 1, 1))];
    given(events).when(end_term(d(2027, 1, 1))).then_expect_events(vec![renewed(
        d(2027, 1, 1),
        d(2028, 1, 1),
        Starter,
    )]);
}

#[test]
fn a_downgrade_applies_only_to_the_renewal_it_was_scheduled_for() {
    let events = vec![
        created(Professional, d(2026, 1, 1)),
        downgrade_scheduled(Starter, d(2027, 1, 1)),
        renewed(d(2027, 1, 1), d(2028, 1, 1), Starter),
    ];
    given(events).when(end_term(d(2028, 1, 1))).then_expect_events(vec![renewed(
        d(2028, 1, 1),
        d(2029, 1, 1),
        Starter,
    )]);
}

#[test]
fn renewal_keeps_an_upgrade_made_during_the_term() {
    let mut events = starter_upgraded_on_16_january();
    events.push(upgraded(Professional, Enterprise, d(2026, 7, 1), "5000.00", 2, 3));
    given(events).when(end_term(d(2027, 1, 1))).then_expect_events(vec![renewed(
        d(2027, 1, 1),
        d(2028, 1, 1),
        Enterprise,
    )]);
}

#[test]
fn an_upgrade_cancels_a_scheduled_downgrade() {
    let events = vec![
        created(Professional, d(2026, 1, 1)),
        downgrade_scheduled(Starter, d(2027, 1, 1)),
        upgraded(Professional, Enterprise, d(2026, 7, 1), "5000.00", 1, 2),
    ];
    given(events).when(end_term(d(2027, 1, 1))).then_expect_events(vec![renewed(
        d(2027, 1, 1),
        d(2028, 1, 1),
        Enterprise,
    )]);
}

#[test]
fn renewal_takes_the_catalog_version_in_effect_on_the_renewal_date() {
    // The built-in catalog has one version and `Catalog` has no constructor
    // for a test catalog, so the term is given as priced with a version
    // that is no longer current: the renewal must not carry it over.
    let end = d(2027, 1, 1);
    let retired_version = Catalog::builtin().current(end).version + 41;
    assert!(Catalog::builtin().version(retired_version).is_none());
    let SubscriptionEvent::SubscriptionCreated(mut created) = created(Professional, d(2026, 1, 1)) else {
        unreachable!()
    };
    created.catalog_version = retired_version;
    given(vec![created.into()]).when(end_term(end)).then_expect_events(vec![
        SubscriptionRenewed {
            start_date: end,
            end_date: d(2028, 1, 1),
            tier: Professional,
            catalog_version: Catalog::builtin().current(end).version,
        }
        .into(),
    ]);
}

#[test]
fn a_term_from_29_february_renews_from_1_march() {
    let events = vec![create_event(Starter, d(2028, 2, 29), d(2029, 3, 1))];
    given(events).when(end_term(d(2029, 3, 1))).then_expect_events(vec![renewed(
        d(2029, 3, 1),
        d(2030, 3, 1),
        Starter,
    )]);
}

#[test]
fn end_term_expires_the_subscription_when_auto_renew_is_off() {
    let end = d(2027, 1, 1);
    for (case, events) in [
        ("created without auto-renewal", vec![created_with(Starter, d(2026, 1, 1), false)]),
        ("auto-renewal cancelled", vec![created(Starter, d(2026, 1, 1)), auto_renewal_cancelled(end)]),
        (
            "a scheduled downgrade, then auto-renewal cancelled",
            vec![created(Professional, d(2026, 1, 1)), downgrade_scheduled(Starter, end), auto_renewal_cancelled(end)],
        ),
    ] {
        println!("case: {case}");
        given(events).when(end_term(d(2027, 1, 2))).then_expect_events(vec![expired(end)]);
    }
}

// Cancelled and expired subscriptions.

/// Every change command, on `today`.
fn every_change(today: NaiveDate) -> Vec<SubscriptionCommand> {
    vec![
        upgrade(Enterprise, None, today, 2),
        downgrade(Starter, today),
        cancel_at_term_end(today),
        cancel_now(None, today),
        add_addon(AddonKind::TrainingSession, 1, None, Some("500"), today, today),
        end_term(today),
    ]
}

#[test]
fn every_change_to_a_cancelled_subscription_is_refused() {
    let events = vec![created(Professional, d(2026, 1, 1)), cancelled(d(2026, 5, 10))];
    // From the effective day on, including the term's end.
    for today in [d(2026, 5, 10), d(2026, 5, 31), d(2027, 1, 1)] {
        for command in every_change(today) {
            println!("case: {command:?}");
            given(events.clone()).when(command).then_expect_error(SubscriptionError::NotChangeable("cancelled"));
        }
    }
}

#[test]
fn every_change_to_an_expired_subscription_is_refused() {
    let events = vec![created_with(Professional, d(2026, 1, 1), false), expired(d(2027, 1, 1))];
    for today in [d(2027, 1, 1), d(2027, 2, 15)] {
        for command in every_change(today) {
            println!("case: {command:?}");
            given(events.clone()).when(command).then_expect_error(SubscriptionError::NotChangeable("expired"));
        }
    }
}

#[test]
fn a_subscription_stays_changeable_until_its_cancellation_takes_effect() {
    let events = vec![created(Starter, d(2026, 1, 1)), cancelled(d(2026, 5, 20))];
    given(events)
        .when(add_addon(AddonKind::TrainingSession, 1, None, Some("500"), d(2026, 5, 12), d(2026, 5, 19)))
        .then_expect_events(vec![addon_added(AddonKind::TrainingSession, 1, None, Some("500"), d(2026, 5, 12))]);
}

// The stored form.

/// One event of each variant. The match makes this fail to compile when a
/// variant is added, so the round trip below cannot silently skip it.
fn one_of_each_event() -> Vec<SubscriptionEvent> {
    let events = vec![
        SubscriptionCreated {
            id: SUB,
            organization_id: ORG,
            tier: Enterprise,
            catalog_version: 1,
            start_date: d(2028, 2, 29),
            end_date: d(2029, 3, 1),
            auto_renew: false,
            max_deployments: 3,
            enterprise_overage_rate: Some(dec("3999.99")),
            license_id: license(1),
        }
        .into(),
        upgraded(Starter, Professional, d(2026, 1, 16), "1290.32", 1, 2),
        downgrade_scheduled(Starter, d(2027, 1, 1)),
        auto_renewal_cancelled(d(2027, 1, 1)),
        cancelled(d(2026, 5, 10)),
        addon_added(AddonKind::ExtraDataTb, 2, Some("5000.00"), None, d(2026, 2, 1)),
        renewed(d(2027, 1, 1), d(2028, 1, 1), Starter),
        expired(d(2027, 1, 1)),
        PaymentFailed {
            reference: "in_1".into(),
            reported_at: Timestamp::from_micros(1),
            at: Timestamp::from_micros(2),
            first: true,
            past_due_since: Timestamp::from_micros(2),
            suspend_at: Timestamp::from_micros(3),
        }
        .into(),
        PaymentSucceeded {
            reference: "in_1".into(),
            reported_at: Timestamp::from_micros(4),
            at: Timestamp::from_micros(5),
            reactivated: true,
        }
        .into(),
        SubscriptionSuspended { at: Timestamp::from_micros(3), past_due_since: Timestamp::from_micros(2) }.into(),
        AddonEnded { addon_id: addon(1), effective_date: d(2026, 3, 1) }.into(),
        AddonRepriced { addon_id: addon(1), annual_price: Some(usd("4000.00")), one_time_price: None }.into(),
        FloatingDeploymentsSet { deployments: 1, heartbeat_interval_seconds: 600, lease_seconds: 3600 }.into(),
    ];
    let mut seen = [false; 14];
    for event in &events {
        let index = match event {
            SubscriptionEvent::SubscriptionCreated(_) => 0,
            SubscriptionEvent::SubscriptionUpgraded(_) => 1,
            SubscriptionEvent::DowngradeScheduled(_) => 2,
            SubscriptionEvent::AutoRenewalCancelled(_) => 3,
            SubscriptionEvent::SubscriptionCancelled(_) => 4,
            SubscriptionEvent::AddonAdded(_) => 5,
            SubscriptionEvent::SubscriptionRenewed(_) => 6,
            SubscriptionEvent::SubscriptionExpired(_) => 7,
            SubscriptionEvent::PaymentFailed(_) => 8,
            SubscriptionEvent::PaymentSucceeded(_) => 9,
            SubscriptionEvent::SubscriptionSuspended(_) => 10,
            SubscriptionEvent::AddonEnded(_) => 11,
            SubscriptionEvent::AddonRepriced(_) => 12,
            SubscriptionEvent::FloatingDeploymentsSet(_) => 13,
        };
        seen[index] = true;
    }
    assert!(seen.iter().all(|&s| s), "one event of each variant: {seen:?}");
    events
}

#[test]
fn every_event_survives_its_stored_form() {
    for event in one_of_each_event() {
        let payload = event.encode_payload();
        let decoded = SubscriptionEvent::decode(event.event_type(), event.schema_version(), &payload);
        assert_eq!(decoded.unwrap(), Some(event.clone()), "{}", event.event_type());
        assert_eq!(event.schema_version(), 1, "{}", event.event_type());
    }
}

#[test]
fn money_keeps_its_scale_and_currency_through_the_stored_form() {
    // Decimal equality ignores trailing zeros; the stored form must not.
    let event = upgraded(Starter, Professional, d(2026, 1, 16), "1290.30", 1, 2);
    let decoded = SubscriptionEvent::decode(event.event_type(), 1, &event.encode_payload()).unwrap();
    let Some(SubscriptionEvent::SubscriptionUpgraded(upgraded)) = decoded else { panic!("{decoded:?}") };
    assert_eq!(upgraded.prorated_amount.amount().to_string(), "1290.30");
    assert_eq!(upgraded.prorated_amount.currency().code(), "USD");
}

#[test]
fn money_is_stored_in_the_plain_serde_form_of_its_fields() {
    // Postcard writes a struct as its fields in order, like a tuple; the
    // stored form is the derived one, so no stored byte depends on how
    // money is read back.
    let event = upgraded(Starter, Professional, d(2026, 1, 16), "1290.32", 1, 2);
    let plain = (Starter, Professional, d(2026, 1, 16), usd("1290.32"), license(1), license(2));
    assert_eq!(event.encode_payload(), ledger_domain::codec::encode(&plain));
    let event = addon_added(AddonKind::CustomModule, 3, Some("12000.50"), None, d(2026, 2, 1));
    let plain = (addon(1), AddonKind::CustomModule, 3u32, Some(usd("12000.50")), None::<Money>, d(2026, 2, 1));
    assert_eq!(event.encode_payload(), ledger_domain::codec::encode(&plain));
}

#[test]
fn decoding_an_unknown_schema_version_is_an_error() {
    for event in one_of_each_event() {
        let decoded = SubscriptionEvent::decode(event.event_type(), 0, &event.encode_payload());
        assert!(
            matches!(&decoded, Err(EventDecodeError::UnknownVersion { event_type, schema_version: 0 })
                if event_type == event.event_type()),
            "{}: {decoded:?}",
            event.event_type()
        );
    }
}

#[test]
fn decoding_another_aggregates_event_type_gives_none() {
    let payload = expired(d(2027, 1, 1)).encode_payload();
    for event_type in ["OrganizationCreated", "LicenseRevoked", "SubscriptionDeleted", "subscriptioncreated"] {
        let decoded = SubscriptionEvent::decode(event_type, 1, &payload);
        assert!(matches!(decoded, Ok(None)), "{event_type}: {decoded:?}");
    }
}

#[test]
fn a_pending_immediate_cancellation_is_not_moved_by_cancelling_again() {
    given(vec![created(Tier::Starter, d(2026, 1, 1)), SubscriptionCancelled { effective_date: d(2026, 1, 20) }.into()])
        .when(cancel_now(Some(d(2026, 1, 25)), d(2026, 1, 10)))
        .then_expect_error(SubscriptionError::AlreadyCancelled(d(2026, 1, 20)));
}

// Who sets prices, and bounds (BILLING-RULES.md; issue 11, findings 1 and 2).

#[test]
fn an_organizations_admin_buys_at_the_catalog_price() {
    let today = d(2026, 1, 20);
    for (case, events, price) in [
        ("starter", starter_2026(), "5000.00"),
        ("professional", vec![created(Professional, d(2026, 1, 1))], "4000.00"),
        ("upgraded to professional", starter_upgraded_on_16_january(), "4000.00"),
    ] {
        println!("case: {case}");
        given(events)
            .when(buy_addon(AddonKind::ExtraDataTb, 1000, today, today))
            .then_expect_events(vec![addon_added(AddonKind::ExtraDataTb, 1000, Some(price), None, today)]);
    }
}

#[test]
fn a_price_in_an_organizations_command_is_refused_whatever_it_is() {
    let today = d(2026, 1, 20);
    for (kind, annual, one_time) in [
        (AddonKind::ExtraDataTb, Some("0.01"), None),
        (AddonKind::ExtraDataTb, Some("5000.00"), None),
        (AddonKind::CustomModule, Some("1000"), None),
        (AddonKind::DedicatedSupport, Some("1000"), None),
        (AddonKind::TrainingSession, None, Some("500")),
        (AddonKind::TrainingSession, Some("1"), Some("1")),
    ] {
        println!("case: {kind:?} {annual:?} {one_time:?}");
        let SubscriptionCommand::AddAddon { addon_id, quantity, effective_date, today, pricing, .. } =
            buy_addon(kind, 1, today, today)
        else {
            unreachable!()
        };
        let command = SubscriptionCommand::AddAddon {
            addon_id,
            kind,
            quantity,
            annual_price: annual.map(dec),
            one_time_price: one_time.map(dec),
            effective_date,
            today,
            pricing,
        };
        given(starter_2026()).when(command).then_expect_error(SubscriptionError::PriceNotAllowed);
    }
}

#[test]
fn an_addon_without_a_catalog_price_is_the_operators_alone() {
    let today = d(2026, 1, 20);
    let enterprise = || vec![created(Enterprise, d(2026, 1, 1))];
    for (kind, events) in [
        (AddonKind::CustomModule, starter_2026()),
        (AddonKind::DedicatedSupport, starter_2026()),
        (AddonKind::TrainingSession, starter_2026()),
        (AddonKind::ExtraDataTb, enterprise()),
    ] {
        println!("case: {kind:?}");
        given(events)
            .when(buy_addon(kind, 1, today, today))
            .then_expect_error(SubscriptionError::OperatorOnlyAddon(kind.as_str()));
    }
    // The operator sells them at a price it sets.
    given(enterprise())
        .when(add_addon(AddonKind::ExtraDataTb, 2, Some("3000.00"), None, today, today))
        .then_expect_events(vec![addon_added(AddonKind::ExtraDataTb, 2, Some("3000.00"), None, today)]);
}

#[test]
fn a_price_above_10_million_is_refused() {
    let today = d(2026, 1, 20);
    given(starter_2026())
        .when(add_addon(AddonKind::CustomModule, 1000, Some("10000000.00"), None, today, today))
        .then_expect_events(vec![addon_added(AddonKind::CustomModule, 1000, Some("10000000.00"), None, today)]);
    for (kind, annual, one_time) in [
        (AddonKind::CustomModule, Some("10000000.01"), None),
        (AddonKind::ExtraDataTb, Some("79228162514264337593543950335"), None),
        (AddonKind::TrainingSession, None, Some("10000001")),
    ] {
        println!("case: {kind:?} {annual:?} {one_time:?}");
        given(starter_2026())
            .when(add_addon(kind, 1, annual, one_time, today, today))
            .then_expect_error(SubscriptionError::PriceTooHigh);
    }
}

#[test]
fn an_overage_rate_is_bounded_like_a_price() {
    let create = |rate: &str| SubscriptionCommand::Create {
        id: SUB,
        organization_id: ORG,
        tier: Enterprise,
        start_date: d(2026, 1, 1),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: Some(dec(rate)),
        license_id: license(1),
        today: d(2026, 1, 1),
    };
    for rate in ["10000000.01", "3000.001", "79228162514264337593543950335"] {
        println!("case: {rate}");
        given(vec![]).when(create(rate)).then_expect_error(SubscriptionError::InvalidOverageRate);
    }
    let mut expected = create_event(Enterprise, d(2026, 1, 1), d(2027, 1, 1));
    if let SubscriptionEvent::SubscriptionCreated(created) = &mut expected {
        created.enterprise_overage_rate = Some(dec("10000000.00"));
    }
    given(vec![]).when(create("10000000.00")).then_expect_events(vec![expected]);
}

/// Starter from 2026-01-01 with 1,000 extra TB from 17 January at the
/// largest decimal, as a log written before the bounds can hold.
fn with_an_overflowing_addon() -> Vec<SubscriptionEvent> {
    vec![
        created(Starter, d(2026, 1, 1)),
        addon_added(AddonKind::ExtraDataTb, 1000, Some("79228162514264337593543950335"), None, d(2026, 1, 17)),
    ]
}

#[test]
fn the_operator_ends_an_addon_after_the_invoiced_months() {
    let ended = |on| vec![AddonEnded { addon_id: addon(1), effective_date: on }.into()];
    given(with_an_overflowing_addon()).when(end_addon(d(2026, 1, 17), None)).then_expect_events(ended(d(2026, 1, 17)));
    given(with_an_overflowing_addon())
        .when(end_addon(d(2026, 2, 1), Some(d(2026, 1, 1))))
        .then_expect_events(ended(d(2026, 2, 1)));
    // An ended subscription's add-on too: its last months may still wait.
    let mut expired_events = with_an_overflowing_addon();
    expired_events.push(auto_renewal_cancelled(d(2027, 1, 1)));
    expired_events.push(expired(d(2027, 1, 1)));
    given(expired_events).when(end_addon(d(2026, 3, 1), None)).then_expect_events(ended(d(2026, 3, 1)));
    // Ending again moves the end earlier, never later.
    let mut again = with_an_overflowing_addon();
    again.extend(ended(d(2026, 3, 1)));
    given(again.clone()).when(end_addon(d(2026, 2, 1), None)).then_expect_events(ended(d(2026, 2, 1)));
    given(again)
        .when(end_addon(d(2026, 3, 1), None))
        .then_expect_error(SubscriptionError::AddonAlreadyEnded(d(2026, 3, 1)));
}

#[test]
fn ending_an_addon_is_refused_inside_an_invoiced_month_or_outside_the_addon() {
    given(with_an_overflowing_addon()).when(end_addon(d(2026, 1, 31), Some(d(2026, 1, 1)))).then_expect_error(
        SubscriptionError::EffectiveDateInvoiced { date: d(2026, 1, 31), invoiced: "2026-01".into() },
    );
    for date in [d(2026, 1, 16), d(2027, 1, 2)] {
        println!("case: {date}");
        given(with_an_overflowing_addon())
            .when(end_addon(date, None))
            .then_expect_error(SubscriptionError::EffectiveDateOutOfRange(date));
    }
    given(starter_2026())
        .when(end_addon(d(2026, 2, 1), None))
        .then_expect_error(SubscriptionError::AddonNotFound(addon(1)));
}

#[test]
fn the_operator_reprices_an_addon_within_the_bounds() {
    given(with_an_overflowing_addon()).when(reprice_addon(Some("4000.00"), None)).then_expect_events(vec![
        AddonRepriced { addon_id: addon(1), annual_price: Some(usd("4000.00")), one_time_price: None }.into(),
    ]);
    given(with_an_overflowing_addon())
        .when(reprice_addon(Some("10000000.01"), None))
        .then_expect_error(SubscriptionError::PriceTooHigh);
    given(with_an_overflowing_addon())
        .when(reprice_addon(None, Some("100")))
        .then_expect_error(SubscriptionError::InvalidAddonPrice(EXTRA_DATA_PRICE_REQUIRED));
    let training = vec![
        created(Starter, d(2026, 1, 1)),
        addon_added(AddonKind::TrainingSession, 1, None, Some("1"), d(2026, 1, 5)),
    ];
    given(training).when(reprice_addon(None, Some("750.00"))).then_expect_events(vec![
        AddonRepriced { addon_id: addon(1), annual_price: None, one_time_price: Some(usd("750.00")) }.into(),
    ]);
    given(starter_2026())
        .when(reprice_addon(Some("1"), None))
        .then_expect_error(SubscriptionError::AddonNotFound(addon(1)));
}

#[test]
fn an_ended_extra_data_addon_stops_raising_the_limit() {
    use cqrs_es::Aggregate;
    let catalog = Catalog::builtin();
    let mut subscription = Subscription::default();
    for event in with_an_overflowing_addon() {
        subscription.apply(event);
    }
    subscription.apply(AddonEnded { addon_id: addon(1), effective_date: d(2026, 2, 1) }.into());
    subscription
        .apply(AddonRepriced { addon_id: addon(1), annual_price: Some(usd("4000.00")), one_time_price: None }.into());
    let extra = |day| subscription.spec_on(&catalog, day).unwrap().1;
    assert_eq!((extra(d(2026, 1, 16)), extra(d(2026, 1, 31)), extra(d(2026, 2, 1))), (0, 1_000_000, 0));
    assert_eq!(subscription.addons[0].annual_price, Some(usd("4000.00")));
}

/// BILLING-RULES, "Upgrade": `proratedAmount` is information, the month's
/// invoice is the charge, "and may differ from it by a cent of rounding".
/// Proration and invoicing share the day count (`billing::by_days`), so on
/// every day of months of each length, for every upgrade, the invoice
/// charges beyond a whole month at the old tier what the upgrade said, to
/// within that cent.
#[test]
fn the_prorated_amount_is_what_the_month_s_invoice_adds_to_within_a_cent() {
    use ledger_domain::billing::invoice;
    use ledger_domain::usage::Usage;
    let catalog = Catalog::builtin();
    let services = services_with(Policy::default());
    let cent = dec("0.01");
    let mut checked = 0;
    for first in [d(2026, 1, 1), d(2026, 2, 1), d(2028, 2, 1), d(2026, 4, 1)] {
        for (from, to) in [(Starter, Professional), (Starter, Enterprise), (Professional, Enterprise)] {
            let mut effective = first;
            while effective.month() == first.month() {
                let mut subscription = Subscription::default();
                cqrs_es::Aggregate::apply(&mut subscription, created(from, first));
                let command = upgrade(to, Some(effective), first, 2);
                let events = TestFramework::<Subscription>::with(services.clone())
                    .given(vec![created(from, first)])
                    .when(command)
                    .inspect_result()
                    .unwrap_or_else(|e| panic!("{from} to {to} on {effective}: {e}"));
                let Some(SubscriptionEvent::SubscriptionUpgraded(upgraded)) = events.first().cloned() else {
                    panic!("{events:?}")
                };
                cqrs_es::Aggregate::apply(&mut subscription, upgraded.clone().into());
                let month = invoice(&subscription, &Usage::default(), &catalog, first, []).unwrap().unwrap();
                let whole_month_at_old_tier = catalog.version(1).unwrap().tier(from).annual_price / Decimal::from(12);
                let added = month.total.amount() - whole_month_at_old_tier;
                let difference = (added - upgraded.prorated_amount.amount()).abs();
                assert!(
                    difference <= cent,
                    "{from} to {to} on {effective}: the invoice adds {added}, the upgrade said {}",
                    upgraded.prorated_amount
                );
                checked += 1;
                effective = effective.succ_opt().unwrap();
            }
        }
    }
    assert_eq!(checked, 3 * (31 + 28 + 29 + 30));
}

// Floating deployments (issue 18 part 2).

/// The operator allows floating deployments within `maxDeployments`, with
/// a heartbeat interval and a place lease within bounds; the same policy
/// again, and an ended subscription, are refused.
#[test]
fn the_operator_sets_floating_deployments_within_bounds() {
    let today = d(2026, 1, 5);
    let policy = FloatingPolicy { deployments: 1, heartbeat_interval_seconds: 300, lease_seconds: 1200 };
    let set = |policy| SubscriptionCommand::SetFloating { policy, today };
    given(starter_2026()).when(set(policy)).then_expect_events(vec![
        FloatingDeploymentsSet { deployments: 1, heartbeat_interval_seconds: 300, lease_seconds: 1200 }.into(),
    ]);
    let two = FloatingPolicy { deployments: 2, ..policy };
    given(starter_2026())
        .when(set(two))
        .then_expect_error(SubscriptionError::InvalidFloating(FloatingPolicyError::TooManyFloating(1)));
    let short_lease = FloatingPolicy { lease_seconds: 599, ..policy };
    given(starter_2026())
        .when(set(short_lease))
        .then_expect_error(SubscriptionError::InvalidFloating(FloatingPolicyError::Lease));
    given(starter_2026()).when(set(FloatingPolicy::default())).then_expect_error(SubscriptionError::FloatingUnchanged);
    given(vec![created(Starter, d(2026, 1, 1)), FloatingDeploymentsSet::from(policy).into()])
        .when(set(policy))
        .then_expect_error(SubscriptionError::FloatingUnchanged);
    given(vec![created_with(Starter, d(2025, 1, 1), false), expired(d(2026, 1, 1))])
        .when(set(policy))
        .then_expect_error(SubscriptionError::NotChangeable("expired"));
    let mut subscription = Subscription::default();
    for event in [created(Starter, d(2026, 1, 1)), FloatingDeploymentsSet::from(policy).into()] {
        cqrs_es::Aggregate::apply(&mut subscription, event);
    }
    assert_eq!(subscription.floating, policy);
}

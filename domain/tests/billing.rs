//! The monthly invoice: BILLING-RULES.md's worked examples 1–4 (5 is in
//! `usage`), and the edges the rules name. Each case builds a subscription
//! from events, as the log would, and compares the invoice's lines.

use std::str::FromStr;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use ledger_domain::billing::{Invoice, LineKind, invoice};
use ledger_domain::catalog::{Catalog, Tier};
use ledger_domain::subscription::{
    AddonAdded, AddonKind, Subscription, SubscriptionCancelled, SubscriptionCreated, SubscriptionEvent,
    SubscriptionUpgraded,
};
use ledger_domain::usage::{Metrics, Usage, UsageReported};
use ledger_domain::{AddonId, LicenseId, Money, OrganizationId, SubscriptionId};
use rust_decimal::Decimal;
use uuid::Uuid;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn usd(text: &str) -> Money {
    Money::usd(Decimal::from_str(text).unwrap())
}

fn created(tier: Tier, start: NaiveDate) -> SubscriptionEvent {
    SubscriptionCreated {
        id: SubscriptionId(Uuid::nil()),
        organization_id: OrganizationId(Uuid::nil()),
        tier,
        catalog_version: 1,
        start_date: start,
        end_date: ledger_domain::calendar::term_end(start),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: LicenseId(Uuid::nil()),
    }
    .into()
}

fn upgraded(from: Tier, to: Tier, effective: NaiveDate) -> SubscriptionEvent {
    SubscriptionUpgraded {
        from_tier: from,
        to_tier: to,
        effective_date: effective,
        prorated_amount: usd("0"),
        previous_license_id: LicenseId(Uuid::nil()),
        new_license_id: LicenseId(Uuid::from_u128(1)),
    }
    .into()
}

fn addon(
    kind: AddonKind,
    quantity: u32,
    annual: Option<&str>,
    one_time: Option<&str>,
    effective: NaiveDate,
) -> SubscriptionEvent {
    AddonAdded {
        addon_id: AddonId(Uuid::nil()),
        kind,
        quantity,
        annual_price: annual.map(usd),
        one_time_price: one_time.map(usd),
        effective_date: effective,
    }
    .into()
}

fn subscription(events: Vec<SubscriptionEvent>) -> Subscription {
    let mut subscription = Subscription::default();
    for event in events {
        subscription.apply(event);
    }
    subscription
}

fn peak(days: &[(NaiveDate, &str)]) -> Usage {
    let mut usage = Usage::default();
    for (day, gb) in days {
        usage.apply(&UsageReported {
            subscription_id: SubscriptionId(Uuid::nil()),
            license_id: LicenseId(Uuid::nil()),
            deployment_id: "default".into(),
            day: *day,
            metrics: Metrics { data_volume_gb: Decimal::from_str(gb).unwrap(), ..Metrics::default() },
        });
    }
    usage
}

/// The invoice's lines as (kind, days, amount) and its total.
fn check(
    events: Vec<SubscriptionEvent>,
    usage: Usage,
    month: NaiveDate,
    lines: &[(LineKind, Option<u32>, &str)],
    total: &str,
) {
    let invoice = invoice(&subscription(events), &usage, &Catalog::builtin(), month, []).expect("a billable month");
    let got: Vec<(LineKind, Option<u32>, Money)> = invoice.lines.iter().map(|l| (l.kind, l.days, l.amount)).collect();
    let want: Vec<(LineKind, Option<u32>, Money)> =
        lines.iter().map(|(k, days, amount)| (*k, *days, usd(amount))).collect();
    assert_eq!(got, want, "{:#?}", invoice.lines);
    assert_eq!(invoice.total, usd(total));
}

use LineKind::{Addon, Base, DataOverage, OneTimeAddon};

#[test]
fn example_1_a_whole_month_of_starter() {
    check(
        vec![created(Tier::Starter, d(2026, 1, 1))],
        Usage::default(),
        d(2026, 1, 1),
        &[(Base, Some(31), "2500.00")],
        "2500.00",
    );
}

#[test]
fn example_2_an_upgrade_on_the_sixteenth() {
    let events =
        vec![created(Tier::Starter, d(2026, 1, 1)), upgraded(Tier::Starter, Tier::Professional, d(2026, 1, 16))];
    check(
        events,
        Usage::default(),
        d(2026, 1, 31),
        &[(Base, Some(15), "1209.68"), (Base, Some(16), "2580.65")],
        "3790.33",
    );
}

#[test]
fn example_3_overage_per_started_tb() {
    let usage = peak(&[(d(2026, 3, 3), "1200"), (d(2026, 3, 20), "4250"), (d(2026, 3, 21), "4000")]);
    check(
        vec![created(Tier::Professional, d(2026, 3, 1))],
        usage,
        d(2026, 3, 1),
        &[(Base, Some(31), "5000.00"), (DataOverage, None, "8000.00")],
        "13000.00",
    );
}

#[test]
fn example_4_a_start_in_february() {
    check(
        vec![created(Tier::Starter, d(2026, 2, 10))],
        Usage::default(),
        d(2026, 2, 1),
        &[(Base, Some(19), "1696.43")],
        "1696.43",
    );
}

#[test]
fn leap_year_february_and_a_start_on_the_last_day() {
    // 2,500 × 29 / 29 and 2,500 × 1 / 31.
    check(
        vec![created(Tier::Starter, d(2028, 1, 1))],
        Usage::default(),
        d(2028, 2, 1),
        &[(Base, Some(29), "2500.00")],
        "2500.00",
    );
    check(
        vec![created(Tier::Starter, d(2026, 1, 31))],
        Usage::default(),
        d(2026, 1, 1),
        &[(Base, Some(1), "80.65")],
        "80.65",
    );
    // Not billable before the start.
    assert!(
        invoice(
            &subscription(vec![created(Tier::Starter, d(2026, 2, 1))]),
            &Usage::default(),
            &Catalog::builtin(),
            d(2026, 1, 1),
            []
        )
        .is_none()
    );
}

#[test]
fn two_upgrades_in_one_month_make_three_runs() {
    let events = vec![
        created(Tier::Starter, d(2026, 4, 1)),
        upgraded(Tier::Starter, Tier::Professional, d(2026, 4, 11)),
        upgraded(Tier::Professional, Tier::Enterprise, d(2026, 4, 21)),
    ];
    // 2,500 × 10/30, 5,000 × 10/30, 10,000 × 10/30.
    check(
        events,
        Usage::default(),
        d(2026, 4, 1),
        &[(Base, Some(10), "833.33"), (Base, Some(10), "1666.67"), (Base, Some(10), "3333.33")],
        "5833.33",
    );
}

#[test]
fn add_ons_bought_mid_month() {
    let events = vec![
        created(Tier::Starter, d(2026, 1, 1)),
        addon(AddonKind::ExtraDataTb, 2, Some("5000"), None, d(2026, 1, 17)),
        addon(AddonKind::TrainingSession, 3, None, Some("1500"), d(2026, 1, 20)),
    ];
    // 2 × 5,000 / 12 × 15 / 31 = 403.225… and 3 × 1,500.
    check(
        events.clone(),
        Usage::default(),
        d(2026, 1, 1),
        &[(Base, Some(31), "2500.00"), (Addon, Some(15), "403.23"), (OneTimeAddon, None, "4500.00")],
        "7403.23",
    );
    // February: the recurring add-on all month, the one-time one gone.
    check(
        events,
        Usage::default(),
        d(2026, 2, 1),
        &[(Base, Some(28), "2500.00"), (Addon, Some(28), "833.33")],
        "3333.33",
    );
}

#[test]
fn overage_at_just_over_and_far_over_the_limit() {
    let starter = || vec![created(Tier::Starter, d(2026, 1, 1))];
    let month = d(2026, 1, 1);
    check(starter(), peak(&[(d(2026, 1, 5), "1000")]), month, &[(Base, Some(31), "2500.00")], "2500.00");
    check(
        starter(),
        peak(&[(d(2026, 1, 5), "1000.01")]),
        month,
        &[(Base, Some(31), "2500.00"), (DataOverage, None, "5000.00")],
        "7500.00",
    );
    check(
        starter(),
        peak(&[(d(2026, 1, 5), "9000")]),
        month,
        &[(Base, Some(31), "2500.00"), (DataOverage, None, "40000.00")],
        "42500.00",
    );
    // An extra TB raises the limit from its effective day on.
    let mut with_extra = starter();
    with_extra.push(addon(AddonKind::ExtraDataTb, 1, Some("5000"), None, d(2026, 1, 1)));
    check(
        with_extra,
        peak(&[(d(2026, 1, 5), "2000")]),
        month,
        &[(Base, Some(31), "2500.00"), (Addon, Some(31), "416.67")],
        "2916.67",
    );
}

#[test]
fn an_immediate_cancellation_bills_the_days_before_it() {
    let events =
        vec![created(Tier::Starter, d(2026, 1, 1)), SubscriptionCancelled { effective_date: d(2026, 1, 11) }.into()];
    // Days 1–10: 2,500 × 10 / 31.
    check(events.clone(), Usage::default(), d(2026, 1, 1), &[(Base, Some(10), "806.45")], "806.45");
    assert!(invoice(&subscription(events), &Usage::default(), &Catalog::builtin(), d(2026, 2, 1), []).is_none());
}

#[test]
fn enterprise_overage_uses_the_contract_rate() {
    let mut created = created(Tier::Enterprise, d(2026, 1, 1));
    if let SubscriptionEvent::SubscriptionCreated(c) = &mut created {
        c.enterprise_overage_rate = Some(Decimal::from(3500));
    }
    check(
        vec![created],
        peak(&[(d(2026, 1, 9), "6500")]),
        d(2026, 1, 1),
        &[(Base, Some(31), "10000.00"), (DataOverage, None, "7000.00")],
        "17000.00",
    );
}

#[test]
fn an_invoice_records_its_inputs_and_digests_them() {
    let catalog = Catalog::builtin();
    let upgraded_in_january = subscription(vec![
        created(Tier::Starter, d(2026, 1, 1)),
        upgraded(Tier::Starter, Tier::Professional, d(2026, 1, 16)),
    ]);
    let january = invoice(&upgraded_in_january, &Usage::default(), &catalog, d(2026, 1, 1), []).unwrap();
    let runs: Vec<(NaiveDate, NaiveDate, Tier, u32, Money)> =
        january.inputs.runs.iter().map(|r| (r.from, r.to, r.tier, r.catalog_version, r.annual_price)).collect();
    assert_eq!(
        runs,
        [
            (d(2026, 1, 1), d(2026, 1, 15), Tier::Starter, 1, usd("30000")),
            (d(2026, 1, 16), d(2026, 1, 31), Tier::Professional, 1, usd("60000")),
        ]
    );

    let professional = subscription(vec![created(Tier::Professional, d(2026, 3, 1))]);
    let usage = peak(&[(d(2026, 3, 20), "4250")]);
    let march = invoice(&professional, &usage, &catalog, d(2026, 3, 1), []).unwrap();
    let inputs = march.inputs.overage.as_ref().unwrap();
    assert_eq!(
        (inputs.peak_data_gb, inputs.data_limit_gb, inputs.overage_rate),
        (Decimal::from(4250), 3000, usd("4000"))
    );
    // The same inputs give the same digest; other usage, another.
    assert_eq!(march.digest(), invoice(&professional, &usage, &catalog, d(2026, 3, 1), []).unwrap().digest());
    let other = invoice(&professional, &peak(&[(d(2026, 3, 20), "4251")]), &catalog, d(2026, 3, 1), []).unwrap();
    assert_eq!(other.total, march.total, "the same started TB");
    assert_ne!(other.digest(), march.digest(), "but a different peak");
}

/// Each line as (kind, amount), for comparisons.
fn amounts(invoice: &Invoice) -> Vec<(LineKind, Money)> {
    invoice.lines.iter().map(|line| (line.kind, line.amount)).collect()
}

fn report(usage: &mut Usage, day: NaiveDate, gb: &str) {
    usage.apply(&UsageReported {
        subscription_id: SubscriptionId(Uuid::nil()),
        license_id: LicenseId(Uuid::nil()),
        deployment_id: "default".into(),
        day,
        metrics: Metrics { data_volume_gb: Decimal::from_str(gb).unwrap(), ..Metrics::default() },
    });
}

#[test]
fn late_usage_is_adjusted_on_the_next_invoice_and_adjustments_add_up() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    // Professional: 3,000 GB, 4,000 per started TB over it.
    let professional = subscription(vec![created(Tier::Professional, d(2026, 1, 1))]);
    let mut usage = peak(&[(d(2026, 1, 10), "2500")]);
    let january = invoice(&professional, &usage, &catalog, d(2026, 1, 1), []).unwrap();
    assert_eq!(amounts(&january), [(Base, usd("5000.00"))]);

    // A report for 31 January arrives after January was invoiced: 4,250 GB
    // is 2 started TB over. February carries the difference, naming January.
    report(&mut usage, d(2026, 1, 31), "4250");
    report(&mut usage, d(2026, 2, 3), "1000");
    let february = invoice(&professional, &usage, &catalog, d(2026, 2, 1), [&january]).unwrap();
    assert_eq!(amounts(&february), [(Base, usd("5000.00")), (UsageAdjustment, usd("8000.00"))]);
    assert!(february.lines[1].description.contains("2026-01"), "{}", february.lines[1].description);
    assert_eq!(february.total, usd("13000.00"));
    let adjustment = &february.inputs.adjustments[0];
    assert_eq!(
        (adjustment.month, adjustment.inputs.peak_data_gb, adjustment.recomputed, adjustment.billed),
        (d(2026, 1, 1), Decimal::from(4250), usd("8000.00"), usd("0"))
    );

    // Nothing new: March adjusts nothing (the earlier adjustment counts as
    // billed).
    let march = invoice(&professional, &usage, &catalog, d(2026, 3, 1), [&january, &february]).unwrap();
    assert_eq!(amounts(&march), [(Base, usd("5000.00"))]);

    // A correction lowers 31 January to 3,100 GB (1 started TB): a credit
    // of one TB on April's invoice.
    report(&mut usage, d(2026, 1, 31), "3100");
    let april = invoice(&professional, &usage, &catalog, d(2026, 4, 1), [&march, &january, &february]).unwrap();
    assert_eq!(amounts(&april), [(Base, usd("5000.00")), (UsageAdjustment, usd("-4000.00"))]);
    assert_eq!(april.total, usd("1000.00"));
    assert_eq!(april.inputs.adjustments[0].billed, usd("8000.00"));
}

#[test]
fn late_usage_after_the_last_invoice_gives_an_adjustment_only_invoice() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    let mut events = vec![created(Tier::Professional, d(2026, 1, 1))];
    events.push(SubscriptionCancelled { effective_date: d(2026, 2, 1) }.into());
    let ended = subscription(events);
    let mut usage = peak(&[(d(2026, 1, 10), "3000")]);
    let january = invoice(&ended, &usage, &catalog, d(2026, 1, 1), []).unwrap();
    assert_eq!(amounts(&january), [(Base, usd("5000.00"))], "exactly at the limit is no overage");
    // February has no billable day and nothing to adjust: no invoice.
    assert!(invoice(&ended, &usage, &catalog, d(2026, 2, 1), [&january]).is_none());

    // One GB over, reported late: an invoice with only the adjustment.
    report(&mut usage, d(2026, 1, 20), "3001");
    let february = invoice(&ended, &usage, &catalog, d(2026, 2, 1), [&january]).unwrap();
    assert_eq!(amounts(&february), [(UsageAdjustment, usd("4000.00"))]);
    assert!(february.inputs.runs.is_empty() && february.inputs.overage.is_none());
}

#[test]
fn past_due_and_suspended_days_are_billed() {
    use ledger_domain::Timestamp;
    use ledger_domain::subscription::{PaymentFailed, Status, SubscriptionSuspended};
    let at = |day: u32| Timestamp::from_datetime(d(2026, 1, day).and_hms_opt(9, 0, 0).unwrap().and_utc());
    let failed = PaymentFailed {
        reference: "in_1".into(),
        reported_at: at(5),
        at: at(5),
        first: true,
        past_due_since: at(5),
        suspend_at: at(19),
    };
    let suspended = SubscriptionSuspended { at: at(19), past_due_since: at(5) };
    let events = vec![created(Tier::Starter, d(2026, 1, 1)), failed.into(), suspended.into()];
    assert_eq!(subscription(events.clone()).status_on(d(2026, 1, 20)), Status::Suspended);
    check(events, Usage::default(), d(2026, 1, 1), &[(Base, Some(31), "2500.00")], "2500.00");
}

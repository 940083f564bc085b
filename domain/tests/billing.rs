//! The monthly invoice: BILLING-RULES.md's worked examples 1–4 (5 is in
//! `usage`), and the edges the rules name. Each case builds a subscription
//! from events, as the log would, and compares the invoice's lines.

use std::str::FromStr;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use ledger_domain::billing::{Billed, BillingError, Invoice, LineKind, invoice};
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

/// Reports of data volumes, appended at sequences 1, 2, …
fn peak(days: &[(NaiveDate, &str)]) -> Usage {
    let mut usage = Usage::default();
    for (sequence, (day, gb)) in (1..).zip(days) {
        report(&mut usage, sequence, *day, gb);
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
    let invoice = invoice(&subscription(events), &usage, &Catalog::builtin(), month, [])
        .expect("a computable invoice")
        .expect("a billable month");
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
        .unwrap()
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

/// Each add-on kind has its own line function; the lines still follow the
/// order the add-ons were bought in, whatever their kind, because an
/// issued invoice is re-derived byte for byte from the same events.
#[test]
fn add_on_lines_keep_the_order_the_add_ons_were_bought_in() {
    let events = vec![
        created(Tier::Starter, d(2026, 1, 1)),
        addon(AddonKind::TrainingSession, 1, None, Some("1500"), d(2026, 1, 2)),
        addon(AddonKind::DedicatedSupport, 1, Some("12000"), None, d(2026, 1, 1)),
        addon(AddonKind::TrainingSession, 2, None, Some("1000"), d(2026, 1, 3)),
    ];
    check(
        events,
        Usage::default(),
        d(2026, 1, 1),
        &[
            (Base, Some(31), "2500.00"),
            (OneTimeAddon, None, "1500.00"),
            (Addon, Some(31), "1000.00"),
            (OneTimeAddon, None, "2000.00"),
        ],
        "7000.00",
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
    assert!(
        invoice(&subscription(events), &Usage::default(), &Catalog::builtin(), d(2026, 2, 1), []).unwrap().is_none()
    );
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
    let january = invoice(&upgraded_in_january, &Usage::default(), &catalog, d(2026, 1, 1), []).unwrap().unwrap();
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
    let march = invoice(&professional, &usage, &catalog, d(2026, 3, 1), []).unwrap().unwrap();
    let inputs = march.inputs.overage.as_ref().unwrap();
    assert_eq!(
        (inputs.peak_data_gb, inputs.data_limit_gb, inputs.overage_rate),
        (Decimal::from(4250), 3000, usd("4000"))
    );
    // The same inputs give the same digest; other usage, another.
    assert_eq!(march.digest(), invoice(&professional, &usage, &catalog, d(2026, 3, 1), []).unwrap().unwrap().digest());
    let other =
        invoice(&professional, &peak(&[(d(2026, 3, 20), "4251")]), &catalog, d(2026, 3, 1), []).unwrap().unwrap();
    assert_eq!(other.total, march.total, "the same started TB");
    assert_ne!(other.digest(), march.digest(), "but a different peak");
}

/// Each line as (kind, amount), for comparisons.
fn amounts(invoice: &Invoice) -> Vec<(LineKind, Money)> {
    invoice.lines.iter().map(|line| (line.kind, line.amount)).collect()
}

/// A report of `gb` for `day`, appended at `sequence`.
fn report(usage: &mut Usage, sequence: u64, day: NaiveDate, gb: &str) {
    let report = UsageReported {
        subscription_id: SubscriptionId(Uuid::nil()),
        license_id: LicenseId(Uuid::nil()),
        deployment_id: "default".into(),
        day,
        metrics: Metrics { data_volume_gb: Decimal::from_str(gb).unwrap(), ..Metrics::default() },
    };
    usage.apply(&report, sequence);
}

/// An invoice issued after the run saw usage up to `usage_sequence`.
fn billed(invoice: &Invoice, usage_sequence: u64) -> Billed<'_> {
    Billed { invoice, usage_sequence }
}

#[test]
fn late_usage_is_adjusted_on_the_next_invoice_and_adjustments_add_up() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    // Professional: 3,000 GB, 4,000 per started TB over it.
    let professional = subscription(vec![created(Tier::Professional, d(2026, 1, 1))]);
    let mut usage = peak(&[(d(2026, 1, 10), "2500")]);
    let january = invoice(&professional, &usage, &catalog, d(2026, 1, 1), []).unwrap().unwrap();
    assert_eq!(amounts(&january), [(Base, usd("5000.00"))]);

    // A report for 31 January arrives after January was invoiced: 4,250 GB
    // is 2 started TB over. February carries the difference, naming January
    // and the report (sequence 2) it comes from.
    report(&mut usage, 2, d(2026, 1, 31), "4250");
    report(&mut usage, 3, d(2026, 2, 3), "1000");
    let february = invoice(&professional, &usage, &catalog, d(2026, 2, 1), [billed(&january, 1)]).unwrap().unwrap();
    assert_eq!(amounts(&february), [(Base, usd("5000.00")), (UsageAdjustment, usd("8000.00"))]);
    assert!(february.lines[1].description.contains("2026-01"), "{}", february.lines[1].description);
    assert_eq!(february.lines[1].reports, [2]);
    assert!(february.lines[0].reports.is_empty());
    assert_eq!(february.total, usd("13000.00"));
    let adjustment = &february.inputs.adjustments[0];
    assert_eq!(
        (adjustment.month, adjustment.inputs.peak_data_gb, adjustment.recomputed, adjustment.billed),
        (d(2026, 1, 1), Decimal::from(4250), usd("8000.00"), usd("0"))
    );

    // Nothing new: March adjusts nothing (the earlier adjustment counts as
    // billed).
    let march =
        invoice(&professional, &usage, &catalog, d(2026, 3, 1), [billed(&january, 1), billed(&february, 3)]).unwrap();
    let march = march.unwrap();
    assert_eq!(amounts(&march), [(Base, usd("5000.00"))]);

    // A correction lowers 31 January to 3,100 GB (1 started TB): a credit
    // of one TB on April's invoice, naming the correction (sequence 4), not
    // the report February's adjustment already billed.
    report(&mut usage, 4, d(2026, 1, 31), "3100");
    let issued = [billed(&march, 4), billed(&january, 1), billed(&february, 3)];
    let april = invoice(&professional, &usage, &catalog, d(2026, 4, 1), issued).unwrap().unwrap();
    assert_eq!(amounts(&april), [(Base, usd("5000.00")), (UsageAdjustment, usd("-4000.00"))]);
    assert_eq!(april.lines[1].reports, [4]);
    assert_eq!(april.total, usd("1000.00"));
    assert_eq!(april.inputs.adjustments[0].billed, usd("8000.00"));
}

/// A month whose usage was retired (issue 16: retention erases every
/// report of whole months) is final: a later invoice does not credit back
/// the overage it billed, as it would if the reports had been lowered.
#[test]
fn a_month_whose_usage_was_retired_is_not_adjusted() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    let professional = subscription(vec![created(Tier::Professional, d(2026, 1, 1))]);
    let january = invoice(&professional, &peak(&[(d(2026, 1, 10), "4250")]), &catalog, d(2026, 1, 1), []);
    let january = january.unwrap().unwrap();
    assert_eq!(amounts(&january), [(Base, usd("5000.00")), (DataOverage, usd("8000.00"))]);
    // January's reports retired: only February's are held.
    let usage = peak(&[(d(2026, 2, 3), "1000")]);
    let february = invoice(&professional, &usage, &catalog, d(2026, 2, 1), [billed(&january, 1)]).unwrap().unwrap();
    assert_eq!(amounts(&february), [(Base, usd("5000.00"))], "no credit for the retired month");
    // Lowered instead of retired, January is credited as before.
    let lowered = peak(&[(d(2026, 1, 10), "100"), (d(2026, 2, 3), "1000")]);
    let february = invoice(&professional, &lowered, &catalog, d(2026, 2, 1), [billed(&january, 1)]).unwrap().unwrap();
    assert_eq!(amounts(&february), [(Base, usd("5000.00")), (UsageAdjustment, usd("-8000.00"))]);
}

#[test]
fn late_usage_after_the_last_invoice_gives_an_adjustment_only_invoice() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    let mut events = vec![created(Tier::Professional, d(2026, 1, 1))];
    events.push(SubscriptionCancelled { effective_date: d(2026, 2, 1) }.into());
    let ended = subscription(events);
    let mut usage = peak(&[(d(2026, 1, 10), "3000")]);
    let january = invoice(&ended, &usage, &catalog, d(2026, 1, 1), []).unwrap().unwrap();
    assert_eq!(amounts(&january), [(Base, usd("5000.00"))], "exactly at the limit is no overage");
    // February has no billable day and nothing to adjust: no invoice.
    assert!(invoice(&ended, &usage, &catalog, d(2026, 2, 1), [billed(&january, 1)]).unwrap().is_none());

    // One GB over, reported late: an invoice with only the adjustment.
    report(&mut usage, 2, d(2026, 1, 20), "3001");
    let february = invoice(&ended, &usage, &catalog, d(2026, 2, 1), [billed(&january, 1)]).unwrap().unwrap();
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

// Checked arithmetic, corrections and stored versions (issue 11).

/// An add-on of 1,000 extra TB at the largest decimal, as a log written
/// before prices were bounded can hold.
fn overflowing_addon(effective: NaiveDate) -> SubscriptionEvent {
    addon(AddonKind::ExtraDataTb, 1000, Some("79228162514264337593543950335"), None, effective)
}

#[test]
fn an_amount_that_overflows_is_a_named_error_not_a_panic() {
    let catalog = Catalog::builtin();
    let month = d(2026, 1, 1);
    let recurring = subscription(vec![created(Tier::Starter, d(2026, 1, 1)), overflowing_addon(d(2026, 1, 1))]);
    let error = invoice(&recurring, &Usage::default(), &catalog, month, []).unwrap_err();
    assert!(matches!(&error, BillingError::Overflow(what) if what.contains(&Uuid::nil().to_string())), "{error}");

    let one_time = subscription(vec![
        created(Tier::Starter, d(2026, 1, 1)),
        addon(AddonKind::TrainingSession, 1000, None, Some("79228162514264337593543950335"), d(2026, 1, 5)),
    ]);
    assert!(matches!(invoice(&one_time, &Usage::default(), &catalog, month, []), Err(BillingError::Overflow(_))));

    // A contract overage rate at the largest decimal, times 2 started TB.
    let mut created = created(Tier::Enterprise, d(2026, 1, 1));
    if let SubscriptionEvent::SubscriptionCreated(c) = &mut created {
        c.enterprise_overage_rate = Some(Decimal::MAX);
    }
    let usage = peak(&[(d(2026, 1, 9), "6500")]);
    assert!(matches!(
        invoice(&subscription(vec![created]), &usage, &catalog, month, []),
        Err(BillingError::Overflow(_))
    ));

    // Two deployments whose data volumes add up past a decimal.
    let mut usage = Usage::default();
    for (sequence, deployment) in [(1, "a"), (2, "b")] {
        let report = UsageReported {
            subscription_id: SubscriptionId(Uuid::nil()),
            license_id: LicenseId(Uuid::nil()),
            deployment_id: deployment.into(),
            day: d(2026, 1, 9),
            metrics: Metrics { data_volume_gb: Decimal::MAX, ..Metrics::default() },
        };
        usage.apply(&report, sequence);
    }
    let starter = subscription(vec![self::created(Tier::Starter, d(2026, 1, 1))]);
    assert!(matches!(invoice(&starter, &usage, &catalog, month, []), Err(BillingError::Usage(_))));
}

#[test]
fn an_ended_or_repriced_addon_is_billed_as_corrected() {
    use ledger_domain::subscription::{AddonEnded, AddonRepriced};
    let ended = |on| SubscriptionEvent::from(AddonEnded { addon_id: AddonId(Uuid::nil()), effective_date: on });
    let repriced = SubscriptionEvent::from(AddonRepriced {
        addon_id: AddonId(Uuid::nil()),
        annual_price: Some(usd("4000.00")),
        one_time_price: None,
    });
    let events =
        vec![created(Tier::Starter, d(2026, 1, 1)), overflowing_addon(d(2026, 1, 1)), repriced, ended(d(2026, 2, 15))];
    // 1,000 × 4,000 / 12 for January; 14 of February's 28 days.
    check(
        events.clone(),
        Usage::default(),
        d(2026, 1, 1),
        &[(Base, Some(31), "2500.00"), (Addon, Some(31), "333333.33")],
        "335833.33",
    );
    check(
        events.clone(),
        Usage::default(),
        d(2026, 2, 1),
        &[(Base, Some(28), "2500.00"), (Addon, Some(14), "166666.67")],
        "169166.67",
    );
    check(events, Usage::default(), d(2026, 3, 1), &[(Base, Some(31), "2500.00")], "2500.00");
    // Ended on its effective day, a one-time add-on is not billed at all.
    let training = vec![
        created(Tier::Starter, d(2026, 1, 1)),
        addon(AddonKind::TrainingSession, 1000, None, Some("79228162514264337593543950335"), d(2026, 1, 5)),
        ended(d(2026, 1, 5)),
    ];
    check(training, Usage::default(), d(2026, 1, 1), &[(Base, Some(31), "2500.00")], "2500.00");
}

#[test]
fn a_later_month_waits_for_every_earlier_billable_month() {
    use ledger_domain::billing::unbilled_month_before;
    let from_february = subscription(vec![created(Tier::Starter, d(2026, 2, 10))]);
    let invoiced = |months: &'static [NaiveDate]| move |month: NaiveDate| months.contains(&month);
    assert_eq!(unbilled_month_before(&from_february, d(2026, 2, 1), invoiced(&[])), None);
    assert_eq!(unbilled_month_before(&from_february, d(2026, 4, 1), invoiced(&[])), Some(d(2026, 2, 1)));
    const FEBRUARY: &[NaiveDate] = &[NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()];
    assert_eq!(unbilled_month_before(&from_february, d(2026, 4, 1), invoiced(FEBRUARY)), Some(d(2026, 3, 1)));
    // Months after a cancellation have no billable day: nothing to wait for.
    let cancelled = subscription(vec![
        created(Tier::Starter, d(2026, 1, 1)),
        SubscriptionCancelled { effective_date: d(2026, 2, 1) }.into(),
    ]);
    const JANUARY: &[NaiveDate] = &[NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()];
    assert_eq!(unbilled_month_before(&cancelled, d(2026, 6, 1), invoiced(JANUARY)), None);
    assert_eq!(unbilled_month_before(&cancelled, d(2026, 6, 1), invoiced(&[])), Some(d(2026, 1, 1)));
}

/// An `InvoiceIssued` payload as schema version 1 wrote it, before lines
/// named their reports: bytes taken from the code of that version (an
/// adjustment line included), so old logs keep decoding.
const INVOICE_ISSUED_V1_HEX: &str = "10c0bbe0854bb7853ead55c41574845267100000000000000000000000000000000710000000000000000000000000000000030a323032362d30322d303102003370726f66657373696f6e616c20737562736372697074696f6e2c20323032362d30322d303120746f20323032362d30322d3238011c07353030302e3030555344043d6c61746520757361676520666f7220323032362d30313a2064617461206f766572616765206e6f7720383030302e30302c2062696c6c656420302e30300007383030302e30305553440831333030302e3030555344010a323032362d30322d30310a323032362d30322d323801010836303030302e3030555344010130b81707343030302e3030555344010a323032362d30312d303106343235302e35b81707343030302e303055534407383030302e303055534404302e30305553447202c912e16cca29f6216816088e4c7837f6e50f6adba80f2e7e6064a273333129";

#[test]
fn an_invoice_issued_at_schema_version_1_still_decodes_and_digests() {
    use ledger_domain::billing::{INVOICE_ISSUED_VERSION, InvoiceEvent, InvoiceV1};
    use ledger_domain::event::StoredEvent;
    let payload = hex::decode(INVOICE_ISSUED_V1_HEX).unwrap();
    let Some(InvoiceEvent::InvoiceIssued(issued)) = InvoiceEvent::decode("InvoiceIssued", 1, &payload).unwrap() else {
        panic!("no invoice")
    };
    assert_eq!(issued.usage_sequence, 41);
    assert_eq!(amounts(&issued.invoice), [(Base, usd("5000.00")), (LineKind::UsageAdjustment, usd("8000.00"))]);
    assert!(issued.invoice.lines.iter().all(|line| line.reports.is_empty()), "version 1 names no reports");
    // Back in version 1's shape it is the stored bytes, and its digest.
    let v1 = InvoiceV1::from(&issued.invoice);
    assert_eq!(v1.digest(), issued.digest);
    assert_ne!(issued.invoice.digest(), issued.digest, "version 2 digests its own shape");
    // Version 2 is written now, and reads back as written.
    let event = InvoiceEvent::from(issued.clone());
    assert_eq!(event.schema_version(), INVOICE_ISSUED_VERSION);
    assert_eq!(InvoiceEvent::decode("InvoiceIssued", 2, &event.encode_payload()).unwrap(), Some(event));
    // Version 1's bytes are not version 2's, and an unknown version is an error.
    assert!(InvoiceEvent::decode("InvoiceIssued", 2, &payload).is_err());
    assert!(InvoiceEvent::decode("InvoiceIssued", 3, &payload).is_err());
    assert!(matches!(InvoiceEvent::decode("InvoiceRefunded", 1, &payload), Ok(None)));
}

/// Issue 15 part 2: a month billed again after its invoice was voided,
/// while a later month's invoice (with an adjustment for it) is in force.
/// What was billed for the month counts every invoice in force, whatever
/// its month, and the voided one not at all: the next adjustment settles
/// exactly what the customer was charged.
#[test]
fn a_month_billed_again_after_a_void_counts_every_invoice_in_force() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    let professional = subscription(vec![created(Tier::Professional, d(2026, 1, 1))]);
    let mut usage = peak(&[(d(2026, 1, 10), "2500")]);
    let january = invoice(&professional, &usage, &catalog, d(2026, 1, 1), []).unwrap().unwrap();
    // Late January usage: February adjusts January by 8,000.00.
    report(&mut usage, 2, d(2026, 1, 31), "4250");
    let february = invoice(&professional, &usage, &catalog, d(2026, 2, 1), [billed(&january, 1)]).unwrap().unwrap();
    assert_eq!(amounts(&february), [(Base, usd("5000.00")), (UsageAdjustment, usd("8000.00"))]);

    // January is voided (not in force) and billed again: its own overage
    // now, and nothing to adjust before it.
    let again = invoice(&professional, &usage, &catalog, d(2026, 1, 1), [billed(&february, 2)]).unwrap().unwrap();
    assert_eq!(amounts(&again), [(Base, usd("5000.00")), (DataOverage, usd("8000.00"))]);
    // March: January was charged 8,000.00 by its new invoice and 8,000.00
    // by February's adjustment; it comes to 8,000.00, so 8,000.00 back.
    let march = invoice(&professional, &usage, &catalog, d(2026, 3, 1), [billed(&february, 2), billed(&again, 2)]);
    let march = march.unwrap().unwrap();
    assert_eq!(amounts(&march), [(Base, usd("5000.00")), (UsageAdjustment, usd("-8000.00"))]);
    assert_eq!(amounts(&january), [(Base, usd("5000.00"))]);
}

/// A voided invoice's overage is never invoiced: the caller leaves it out
/// of the invoices in force, and the month billed again bills it once.
#[test]
fn a_voided_invoices_overage_counts_as_never_invoiced() {
    use LineKind::*;
    let catalog = Catalog::builtin();
    let professional = subscription(vec![created(Tier::Professional, d(2026, 1, 1))]);
    let mut usage = peak(&[(d(2026, 1, 10), "4250")]);
    let voided = invoice(&professional, &usage, &catalog, d(2026, 1, 1), []).unwrap().unwrap();
    assert_eq!(amounts(&voided), [(Base, usd("5000.00")), (DataOverage, usd("8000.00"))]);
    // The figure was wrong: corrected, the invoice voided, January again.
    report(&mut usage, 2, d(2026, 1, 10), "2500");
    let again = invoice(&professional, &usage, &catalog, d(2026, 1, 1), []).unwrap().unwrap();
    assert_eq!(amounts(&again), [(Base, usd("5000.00"))]);
    let february = invoice(&professional, &usage, &catalog, d(2026, 2, 1), [billed(&again, 2)]).unwrap().unwrap();
    assert_eq!(amounts(&february), [(Base, usd("5000.00"))]);
    // Counted, the voided overage would be credited back a second time.
    let counted = [billed(&voided, 1), billed(&again, 2)];
    let wrong = invoice(&professional, &usage, &catalog, d(2026, 2, 1), counted).unwrap().unwrap();
    assert_eq!(amounts(&wrong), [(Base, usd("5000.00")), (UsageAdjustment, usd("-8000.00"))]);
}

#[test]
fn revision_ids_and_streams_keep_revision_0_as_before() {
    use ledger_domain::billing::{invoice_id, invoice_id_of, revision_of, stream, stream_of};
    let (sub, month) = (SubscriptionId(Uuid::from_u128(7)), d(2026, 1, 1));
    assert_eq!((invoice_id_of(sub, month, 0), stream_of(sub, month, 0)), (invoice_id(sub, month), stream(sub, month)));
    let ids: std::collections::BTreeSet<Uuid> = (0..5).map(|r| invoice_id_of(sub, month, r)).collect();
    assert_eq!(ids.len(), 5, "each revision has its own id");
    assert_eq!(stream_of(sub, month, 3).as_str(), format!("invoice/{}:2026-01:r3", sub.0));
    assert_eq!(revision_of(sub, month, invoice_id_of(sub, month, 3)), Some(3));
    assert_eq!(revision_of(sub, d(2026, 2, 1), invoice_id_of(sub, month, 3)), None);
}

#[test]
fn credit_notes_never_total_more_than_the_invoice() {
    use ledger_domain::billing::{
        CREDIT_NOTE_LINES_MAX, CREDIT_NOTES_PER_INVOICE_MAX, CreditNoteError, InvoiceIssued, credit_note,
    };
    let starter = subscription(vec![created(Tier::Starter, d(2026, 1, 1))]);
    let january = invoice(&starter, &Usage::default(), &Catalog::builtin(), d(2026, 1, 1), []).unwrap().unwrap();
    let issued = InvoiceIssued {
        invoice_id: Uuid::from_u128(9),
        subscription_id: SubscriptionId(Uuid::nil()),
        organization_id: OrganizationId(Uuid::nil()),
        digest: january.digest(),
        invoice: january,
        usage_sequence: 1,
    };
    let dec = |t: &str| Decimal::from_str(t).unwrap();
    let lines = |items: &[(&str, &str)]| items.iter().map(|(d, a)| ((*d).to_owned(), dec(a))).collect::<Vec<_>>();
    let first = credit_note(&issued, &[], false, " outage ", &lines(&[("a day", "600.00"), ("b", "400.00")])).unwrap();
    assert_eq!((first.number, first.total, first.reason.as_str()), (1, usd("1000.00"), "outage"));
    let earlier = [first];
    let too_much = credit_note(&issued, &earlier, false, "more", &lines(&[("rest", "1500.01")]));
    assert!(matches!(too_much, Err(CreditNoteError::Exceeds { .. })), "{too_much:?}");
    let rest = credit_note(&issued, &earlier, false, "rest", &lines(&[("rest", "1500.00")])).unwrap();
    assert_eq!((rest.number, rest.total), (2, usd("1500.00")));
    assert_ne!(rest.credit_note_id, earlier[0].credit_note_id);
    assert_eq!(credit_note(&issued, &earlier, true, "x", &lines(&[("a", "1.00")])), Err(CreditNoteError::Voided));
    for bad in [
        lines(&[]),
        lines(&[("a", "0")]),
        lines(&[("a", "-1.00")]),
        lines(&[("a", "1.001")]),
        lines(&[("a", "10000000.01")]),
        lines(&[("", "1.00")]),
        lines(&[("a\u{7}", "1.00")]),
        vec![("a".to_owned(), dec("1.00")); CREDIT_NOTE_LINES_MAX + 1],
    ] {
        let refused = credit_note(&issued, &[], false, "reason", &bad);
        assert!(matches!(refused, Err(CreditNoteError::Invalid(_))), "{bad:?}: {refused:?}");
    }
    let ones = vec![rest.clone(); CREDIT_NOTES_PER_INVOICE_MAX as usize];
    let exhausted = credit_note(&issued, &ones, false, "x", &lines(&[("a", "0.01")]));
    assert_eq!(exhausted, Err(CreditNoteError::TooMany));
}

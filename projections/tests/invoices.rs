//! Re-deriving issued invoices: a faithful invoice passes, one that was
//! altered, or computed from usage it could not have seen, is named.

use chrono::NaiveDate;
use domain::billing::{Billed, InvoiceEvent, InvoiceIssued, InvoiceIssuedV1, InvoiceV1, LineKind, invoice, invoice_id};
use domain::catalog::{Catalog, Tier};
use domain::event::{LedgerEvent, StoredEvent};
use domain::subscription::{Subscription, SubscriptionCreated, SubscriptionEvent};
use domain::usage::{Metrics, Usage, UsageEvent, UsageReported};
use domain::{EventId, LicenseId, Money, OrganizationId, RecordHeader, StreamId, SubscriptionId, Timestamp};
use ledger_projections::invoices::InvoiceCheck;
use rust_decimal::Decimal;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

const SUBSCRIPTION: SubscriptionId = SubscriptionId(uuid::Uuid::from_u128(7));
const ORGANIZATION: OrganizationId = OrganizationId(uuid::Uuid::from_u128(3));

fn header(sequence: u64, stream_id: StreamId) -> RecordHeader {
    header_at(sequence, stream_id, 1)
}

fn header_at(sequence: u64, stream_id: StreamId, schema_version: u32) -> RecordHeader {
    RecordHeader {
        sequence,
        event_id: EventId(uuid::Uuid::from_u128(u128::from(sequence))),
        stream_id,
        stream_revision: 1,
        event_type: "test".into(),
        schema_version,
        occurred_at: Timestamp::from_micros(0),
        recorded_at: Timestamp::from_micros(0),
        idempotency_key: None,
    }
}

fn created() -> SubscriptionEvent {
    SubscriptionCreated {
        id: SUBSCRIPTION,
        organization_id: ORGANIZATION,
        tier: Tier::Professional,
        catalog_version: 1,
        start_date: d(2026, 1, 1),
        end_date: d(2027, 1, 1),
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: LicenseId(uuid::Uuid::from_u128(9)),
    }
    .into()
}

fn report(day: NaiveDate, gb: u32) -> UsageReported {
    UsageReported {
        subscription_id: SUBSCRIPTION,
        license_id: LicenseId(uuid::Uuid::from_u128(9)),
        deployment_id: "default".into(),
        day,
        metrics: Metrics { data_volume_gb: Decimal::from(gb), ..Metrics::default() },
    }
}

/// January's invoice as the billing run would issue it after seeing
/// `reports` (and only them).
fn issued(reports: &[UsageReported], usage_sequence: u64) -> InvoiceIssued {
    let mut subscription = Subscription::default();
    cqrs_es::Aggregate::apply(&mut subscription, created());
    let mut usage = Usage::default();
    // The records of `check`: reports at sequences 2 and 3.
    (2..).zip(reports).for_each(|(sequence, r)| usage.apply(r, sequence));
    let invoice = invoice(&subscription, &usage, &Catalog::builtin(), d(2026, 1, 1), []).unwrap().unwrap();
    InvoiceIssued {
        invoice_id: invoice_id(SUBSCRIPTION, d(2026, 1, 1)),
        subscription_id: SUBSCRIPTION,
        organization_id: ORGANIZATION,
        digest: invoice.digest(),
        invoice,
        usage_sequence,
    }
}

/// Feeds: 1 subscription created, 2 a report of 2,000 GB, 3 a report of
/// 4,500 GB (late for a run that saw up to 2), 4 the invoice.
fn check(invoice: InvoiceIssued) -> Result<u64, String> {
    let mut check = InvoiceCheck::new(Catalog::builtin());
    let usage_stream = domain::usage::stream(SUBSCRIPTION, d(2026, 1, 5));
    let records = [
        (header(1, SUBSCRIPTION.stream()), LedgerEvent::Subscription(created())),
        (header(2, usage_stream.clone()), LedgerEvent::Usage(UsageEvent::from(report(d(2026, 1, 5), 2000)))),
        (header(3, usage_stream), LedgerEvent::Usage(UsageEvent::from(report(d(2026, 1, 6), 4500)))),
        (header_at(4, domain::billing::stream(SUBSCRIPTION, d(2026, 1, 1)), 2), LedgerEvent::Invoice(invoice.into())),
    ];
    for (header, event) in &records {
        check.apply(header, event).map_err(|e| e.to_string())?;
    }
    Ok(check.checked())
}

#[test]
fn an_invoice_follows_from_the_usage_its_run_saw() {
    // The run saw sequence 2 only: no overage, although 3 is over the limit.
    assert_eq!(check(issued(&[report(d(2026, 1, 5), 2000)], 2)), Ok(1));
    // The run saw both reports: 4,500 GB is 2 started TB over 3,000.
    let both = issued(&[report(d(2026, 1, 5), 2000), report(d(2026, 1, 6), 4500)], 3);
    assert_eq!(both.invoice.lines.last().map(|l| l.kind), Some(LineKind::DataOverage));
    assert_eq!(check(both), Ok(1));
}

#[test]
fn an_altered_or_impossible_invoice_is_named() {
    let faithful = issued(&[report(d(2026, 1, 5), 2000)], 2);

    // It claims to have seen sequence 2 but bills the overage of 3.
    let mut claims = issued(&[report(d(2026, 1, 5), 2000), report(d(2026, 1, 6), 4500)], 3);
    claims.usage_sequence = 2;
    assert!(check(claims).unwrap_err().contains("recomputed lines"));

    // A line's amount changed, with the digest made to match.
    let mut altered = faithful.clone();
    altered.invoice.lines[0].amount = Money::usd(Decimal::from(4999));
    altered.digest = altered.invoice.digest();
    assert!(check(altered).unwrap_err().contains("sequence 4"));

    // The contents as issued, but a digest of something else.
    let mut digest = faithful.clone();
    digest.digest = issued(&[], 1).invoice.digest();
    digest.digest.0[0] ^= 1;
    assert!(check(digest).unwrap_err().contains("digest"));

    // Another id, another organization, or usage from the future.
    let mut id = faithful.clone();
    id.invoice_id = uuid::Uuid::from_u128(1);
    assert!(check(id).unwrap_err().contains("its id"));
    let mut organization = faithful.clone();
    organization.organization_id = OrganizationId(uuid::Uuid::from_u128(4));
    assert!(check(organization).unwrap_err().contains("organization"));
    let mut future = faithful;
    future.usage_sequence = 4;
    assert!(check(future).unwrap_err().contains("up to sequence 4"));
}

/// A subscription's history: January invoiced at schema version 1 (as a log
/// written before issue 11 holds it), a late report that lowers January,
/// and February invoiced at version 2 with the adjustment naming that
/// report. Both are re-derived byte for byte, each in its own shape.
fn history_with_both_versions(january_v1: InvoiceIssuedV1, february: InvoiceIssued) -> Result<u64, String> {
    let mut check = InvoiceCheck::new(Catalog::builtin());
    let usage = |day| domain::usage::stream(SUBSCRIPTION, day);
    let records = [
        (header(1, SUBSCRIPTION.stream()), LedgerEvent::Subscription(created())),
        (header(2, usage(d(2026, 1, 6))), LedgerEvent::Usage(UsageEvent::from(report(d(2026, 1, 6), 4500)))),
        (
            header_at(3, domain::billing::stream(SUBSCRIPTION, d(2026, 1, 1)), 1),
            LedgerEvent::Invoice(InvoiceEvent::from(InvoiceIssued::from(january_v1))),
        ),
        (header(4, usage(d(2026, 1, 6))), LedgerEvent::Usage(UsageEvent::from(report(d(2026, 1, 6), 100)))),
        (
            header_at(5, domain::billing::stream(SUBSCRIPTION, d(2026, 2, 1)), 2),
            LedgerEvent::Invoice(InvoiceEvent::from(february)),
        ),
    ];
    for (header, event) in &records {
        check.apply(header, event).map_err(|e| e.to_string())?;
    }
    Ok(check.checked())
}

/// January as version 1 stored it, and February as version 2 stores it.
fn january_and_february() -> (InvoiceIssuedV1, InvoiceIssued) {
    let mut subscription = Subscription::default();
    cqrs_es::Aggregate::apply(&mut subscription, created());
    let catalog = Catalog::builtin();
    let mut usage = Usage::default();
    usage.apply(&report(d(2026, 1, 6), 4500), 2);
    let january = invoice(&subscription, &usage, &catalog, d(2026, 1, 1), []).unwrap().unwrap();
    let january_v1 = InvoiceV1::from(&january);
    let january_issued = InvoiceIssuedV1 {
        invoice_id: invoice_id(SUBSCRIPTION, d(2026, 1, 1)),
        subscription_id: SUBSCRIPTION,
        organization_id: ORGANIZATION,
        digest: january_v1.digest(),
        invoice: january_v1,
        usage_sequence: 2,
    };
    usage.apply(&report(d(2026, 1, 6), 100), 4);
    let billed = [Billed { invoice: &january, usage_sequence: 2 }];
    let february = invoice(&subscription, &usage, &catalog, d(2026, 2, 1), billed).unwrap().unwrap();
    let february = InvoiceIssued {
        invoice_id: invoice_id(SUBSCRIPTION, d(2026, 2, 1)),
        subscription_id: SUBSCRIPTION,
        organization_id: ORGANIZATION,
        digest: february.digest(),
        invoice: february,
        usage_sequence: 4,
    };
    (january_issued, february)
}

#[test]
fn invoices_of_both_schema_versions_are_re_derived_byte_for_byte() {
    let (january, february) = january_and_february();
    // 1,500 GB over: 2 started TB, 8,000.00, then credited in February.
    assert_eq!(january.invoice.lines[1].amount, Money::usd(Decimal::from(8000)));
    let adjustment = &february.invoice.lines[1];
    assert_eq!((adjustment.kind, adjustment.amount), (LineKind::UsageAdjustment, Money::usd(Decimal::from(-8000))));
    assert_eq!(adjustment.reports, [4], "the adjustment names the report that lowered January");
    // Through the stored form, as `replay verify` reads it.
    let stored = InvoiceEvent::decode("InvoiceIssued", 1, &domain::codec::encode(&january)).unwrap().unwrap();
    let InvoiceEvent::InvoiceIssued(decoded) = stored else { panic!("an InvoiceIssued was stored") };
    assert_eq!(InvoiceV1::from(&decoded.invoice), january.invoice);
    assert_eq!(history_with_both_versions(january.clone(), february.clone()), Ok(2));

    // A version 1 invoice checked in version 2's digest fails; so does a
    // version 2 adjustment that names another report.
    let mut wrong_digest = january.clone();
    wrong_digest.digest = InvoiceIssued::from(january.clone()).invoice.digest();
    assert!(history_with_both_versions(wrong_digest, february.clone()).unwrap_err().contains("digest"));
    let mut other_report = february;
    other_report.invoice.lines[1].reports = vec![2];
    other_report.digest = other_report.invoice.digest();
    assert!(history_with_both_versions(january, other_report).unwrap_err().contains("sequence 5"));
    assert_eq!(InvoiceEvent::from(issued(&[], 1)).schema_version(), 2);
}

/// Feeds 1–4 as `check` does, but the report at 3 was retired (issue 16:
/// erased with nothing kept): answers (re-derived, checked against
/// recorded inputs).
fn check_retired(invoice: InvoiceIssued) -> Result<(u64, u64), String> {
    let mut check = InvoiceCheck::new(Catalog::builtin());
    let usage_stream = domain::usage::stream(SUBSCRIPTION, d(2026, 1, 5));
    check.apply(&header(1, SUBSCRIPTION.stream()), &LedgerEvent::Subscription(created())).map_err(|e| e.to_string())?;
    let report = LedgerEvent::Usage(UsageEvent::from(report(d(2026, 1, 5), 2000)));
    check.apply(&header(2, usage_stream), &report).map_err(|e| e.to_string())?;
    check.retired(&header(3, domain::usage::stream(SUBSCRIPTION, d(2026, 1, 6))));
    let header = header_at(4, domain::billing::stream(SUBSCRIPTION, d(2026, 1, 1)), 2);
    check.apply(&header, &LedgerEvent::Invoice(invoice.into())).map_err(|e| e.to_string())?;
    Ok((check.checked(), check.checked_on_recorded_inputs()))
}

#[test]
fn an_invoice_whose_usage_was_retired_is_checked_against_its_recorded_inputs() {
    // The run saw both reports; the overage came from the retired one.
    let both = issued(&[report(d(2026, 1, 5), 2000), report(d(2026, 1, 6), 4500)], 3);
    assert_eq!(check_retired(both.clone()), Ok((0, 1)));
    // What it recorded still holds it: a total not the sum of its lines, a
    // digest not of its contents, another id are named.
    let mut total = both.clone();
    total.invoice.total = Money::usd(Decimal::from(1));
    total.digest = total.invoice.digest();
    assert!(check_retired(total).unwrap_err().contains("its total is not the sum of its lines (usage retired)"));
    let mut digest = both.clone();
    digest.digest.0[0] ^= 1;
    assert!(check_retired(digest).unwrap_err().contains("digest"));
    let mut id = both.clone();
    id.invoice_id = uuid::Uuid::from_u128(1);
    assert!(check_retired(id).unwrap_err().contains("its id"));
    // A run that saw only sequence 2 saw nothing retired: re-derived.
    assert_eq!(check_retired(issued(&[report(d(2026, 1, 5), 2000)], 2)), Ok((1, 0)));
    // And one that claims what the kept events do not give, without
    // retired usage behind it, is named as before.
    let mut claims = both;
    claims.usage_sequence = 2;
    assert!(check_retired(claims).unwrap_err().contains("recomputed lines"));
}

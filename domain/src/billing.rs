//! The monthly invoice of a subscription (BILLING-RULES.md, "Monthly
//! invoices"), as a pure function of the subscription's state, its usage
//! and the catalog.
//!
//! Amounts are exact until each line is rounded once, to cents, half away
//! from zero; the total is the sum of the rounded lines. Late usage for a
//! month already invoiced becomes an adjustment line on the next invoice,
//! computed from the invoices issued before it.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Money;
use crate::calendar::{days_in_month, first_of_month, last_of_month};
use crate::catalog::{Catalog, Tier};
use crate::subscription::{Addon, Subscription};
use crate::usage::Usage;

/// Data is billed over its limit per started TB of 1,000 GB.
const GB_PER_TB: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Base,
    Addon,
    OneTimeAddon,
    DataOverage,
    /// The change of an earlier month's data overage after usage reported
    /// late (it may be negative, a credit).
    UsageAdjustment,
}

/// One line of an invoice, rounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// The days it covers, for lines billed by the day.
    pub days: Option<u32>,
    pub amount: Money,
    /// For a late-usage adjustment: the log sequences of the usage reports
    /// it comes from (appended after its month was last billed), so the
    /// billing team sees who changed what. Empty for other lines, and for
    /// every line of an invoice issued at schema version 1.
    pub reports: Vec<u64>,
}

/// A run of consecutive billable days at one tier and price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayRun {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tier: Tier,
    pub catalog_version: u32,
    pub annual_price: Money,
}

/// What a month's data overage is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverageInputs {
    /// The month's largest reported data volume.
    pub peak_data_gb: Decimal,
    /// The data limit on the month's last billable day, add-ons included.
    pub data_limit_gb: u64,
    /// The overage rate per started TB on that day.
    pub overage_rate: Money,
}

impl OverageInputs {
    /// `ceil((peak − limit) / 1000) × rate` when the peak is over the limit,
    /// rounded to cents; otherwise `None`.
    fn overage(&self) -> Result<Option<(Decimal, Money)>, BillingError> {
        let limit = Decimal::from(self.data_limit_gb);
        if self.peak_data_gb <= limit {
            return Ok(None);
        }
        // Both are non-negative and the peak is the larger: no overflow.
        let started_tb = ((self.peak_data_gb - limit) / Decimal::from(GB_PER_TB)).ceil();
        let amount = self.overage_rate.checked_mul(started_tb).map_err(|_| overflow("the data overage line"))?;
        Ok(Some((started_tb, amount.round_cents())))
    }
}

/// A late-usage adjustment: an earlier month's overage recomputed with the
/// usage known now, against what was billed for it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// The first day of the month adjusted.
    pub month: NaiveDate,
    pub inputs: OverageInputs,
    /// The month's overage, recomputed.
    pub recomputed: Money,
    /// Its invoice's overage line plus the adjustments for it on invoices
    /// since.
    pub billed: Money,
}

/// What an invoice was computed from, so it can be recomputed and checked
/// (and a later correction can name what was invoiced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub runs: Vec<DayRun>,
    /// The month's own overage inputs; `None` for an adjustment-only
    /// invoice (no billable day in the month).
    pub overage: Option<OverageInputs>,
    pub adjustments: Vec<Adjustment>,
}

/// A month's invoice lines and total, and what they were computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub period: NaiveDate,
    pub lines: Vec<Line>,
    pub total: Money,
    pub inputs: Inputs,
}

impl Invoice {
    /// A digest of the invoice and its inputs: the same inputs always give
    /// the same invoice, bit for bit, so an auditor's recomputation can be
    /// compared by digest.
    pub fn digest(&self) -> crate::record::Hash {
        digest(DIGEST_CONTEXT, &crate::codec::encode(self))
    }
}

fn digest(context: &str, bytes: &[u8]) -> crate::record::Hash {
    crate::record::Hash(*blake3::Hasher::new_derive_key(context).update(bytes).finalize().as_bytes())
}

/// The digest of an invoice as `InvoiceIssued` schema version 2 stores it.
const DIGEST_CONTEXT: &str = "ledger 2026-11-29 invoice digest v2";

/// Why an invoice cannot be computed. It is named for its subscription
/// and the billing run goes on with every other (BILLING-RULES, "Who sets
/// prices, and bounds"); only a log written before the bounds were checked
/// when deciding can hold amounts that get here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("{0} overflows: the amount is beyond what a decimal holds")]
    Overflow(String),
    #[error("the subscription names catalog version {0}, which this ledger does not know")]
    UnknownCatalogVersion(u32),
    #[error(transparent)]
    Usage(#[from] crate::usage::UsageOverflow),
}

/// An invoice issued before, and the log sequence up to which it saw
/// usage: late-usage adjustments name the reports appended after it.
#[derive(Debug, Clone, Copy)]
pub struct Billed<'a> {
    pub invoice: &'a Invoice,
    pub usage_sequence: u64,
}

impl<'a> From<&'a InvoiceIssued> for Billed<'a> {
    fn from(issued: &'a InvoiceIssued) -> Self {
        Billed { invoice: &issued.invoice, usage_sequence: issued.usage_sequence }
    }
}

/// Whether the subscription is billed on `day`: within its terms (from its
/// first start to its current end) and not cancelled yet. Suspended and
/// past-due days are billed.
fn billable(subscription: &Subscription, day: NaiveDate) -> bool {
    let (Some(first), Some(end)) = (subscription.tiers.first(), subscription.end_date) else { return false };
    first.from <= day && day < end && subscription.cancelled_from.is_none_or(|from| day < from)
}

/// Whether any day of the month of `month` is billable.
fn billable_in(subscription: &Subscription, month: NaiveDate) -> bool {
    let (Some(first), Some(end)) = (subscription.tiers.first(), subscription.end_date) else { return false };
    let stop = subscription.cancelled_from.map_or(end, |from| from.min(end));
    first_of_month(month) < stop && last_of_month(month) >= first.from
}

/// The oldest month before `month` with a billable day that `invoiced`
/// says has no invoice. Months are issued in order, so that each invoice's
/// late-usage adjustments follow from the invoices before it: while one
/// month of a subscription is not issued (its invoice could not be
/// computed, or its run has not happened), its later months wait.
pub fn unbilled_month_before(
    subscription: &Subscription,
    month: NaiveDate,
    invoiced: impl Fn(NaiveDate) -> bool,
) -> Option<NaiveDate> {
    let first = first_of_month(subscription.tiers.first()?.from);
    let month = first_of_month(month);
    std::iter::successors(Some(first), |m| m.checked_add_months(chrono::Months::new(1)))
        .take_while(|m| *m < month)
        .find(|m| billable_in(subscription, *m) && !invoiced(*m))
}

fn money(amount: Decimal) -> Money {
    Money::usd(amount).round_cents()
}

fn overflow(what: impl std::fmt::Display) -> BillingError {
    BillingError::Overflow(what.to_string())
}

/// `annual / 12 × days / days in month`, exactly (in this order, as every
/// invoice was computed); `None` when it overflows.
pub fn by_days(annual: Decimal, days: u32, month: NaiveDate) -> Option<Decimal> {
    annual
        .checked_div(Decimal::from(12))?
        .checked_mul(Decimal::from(days))?
        .checked_div(Decimal::from(days_in_month(month)))
}

fn catalog_version(catalog: &Catalog, version: u32) -> Result<&crate::catalog::CatalogVersion, BillingError> {
    catalog.version(version).ok_or(BillingError::UnknownCatalogVersion(version))
}

/// A month's data overage inputs: the month's peak against the limit and
/// rate in effect on its last billable day. `None` when no day of the
/// month was billable.
fn overage_inputs(
    subscription: &Subscription,
    usage: &Usage,
    catalog: &Catalog,
    month: NaiveDate,
) -> Result<Option<OverageInputs>, BillingError> {
    let Some(last_billable) = billable_days(subscription, month).pop() else { return Ok(None) };
    let period = subscription.tier_on(last_billable).expect("a billable day has a tier");
    let spec = catalog_version(catalog, period.catalog_version)?.tier(period.tier);
    let (_, extra_gb) = subscription.spec_on(catalog, last_billable).expect("its catalog version is known");
    let rate = match period.tier {
        Tier::Enterprise => subscription.enterprise_overage_rate.unwrap_or(spec.overage_rate_per_tb),
        _ => spec.overage_rate_per_tb,
    };
    Ok(Some(OverageInputs {
        peak_data_gb: usage.peak_data_gb(month)?,
        data_limit_gb: spec.data_gb.saturating_add(extra_gb),
        overage_rate: Money::usd(rate),
    }))
}

fn billable_days(subscription: &Subscription, month: NaiveDate) -> Vec<NaiveDate> {
    let (first, last) = (first_of_month(month), last_of_month(month));
    first.iter_days().take_while(|d| *d <= last).filter(|d| billable(subscription, *d)).collect()
}

/// The maximal runs of consecutive billable days at the same tier and
/// price. A run records the catalog version of the tier in effect on its
/// first day (as recorded since the first invoice).
fn day_runs(subscription: &Subscription, catalog: &Catalog, days: &[NaiveDate]) -> Result<Vec<DayRun>, BillingError> {
    let mut runs: Vec<DayRun> = Vec::new();
    for day in days {
        let period = subscription.tier_on(*day).expect("a billable day has a tier");
        let price = Money::usd(catalog_version(catalog, period.catalog_version)?.tier(period.tier).annual_price);
        match runs.last_mut() {
            Some(run) if run.tier == period.tier && run.annual_price == price && run.to.succ_opt() == Some(*day) => {
                run.to = *day;
            }
            _ => runs.push(DayRun {
                from: *day,
                to: *day,
                tier: period.tier,
                catalog_version: period.catalog_version,
                annual_price: price,
            }),
        }
    }
    Ok(runs)
}

/// The base line of one run: `annual price / 12 × days / days in month`.
fn base_line(run: &DayRun, month: NaiveDate) -> Result<Line, BillingError> {
    let days = (run.to - run.from).num_days() + 1;
    let days = u32::try_from(days).expect("a run lies within one month");
    let amount = by_days(run.annual_price.amount(), days, month)
        .ok_or_else(|| overflow(format!("the {} base line", run.tier)))?;
    Ok(Line {
        kind: LineKind::Base,
        description: format!("{} subscription, {} to {}", run.tier, run.from, run.to),
        days: Some(days),
        amount: money(amount),
        reports: Vec::new(),
    })
}

/// Add-on lines, in the order the add-ons were bought: a recurring add-on
/// by its billable days ([`recurring_addon_line`]), a one-time add-on in
/// full in the month of its effective date ([`one_time_addon_line`]).
fn addon_lines(subscription: &Subscription, month: NaiveDate, days: &[NaiveDate]) -> Result<Vec<Line>, BillingError> {
    let mut lines = Vec::new();
    for addon in &subscription.addons {
        let line = if addon.kind.is_one_time() {
            one_time_addon_line(addon, month)?
        } else {
            recurring_addon_line(addon, month, days)?
        };
        lines.extend(line);
    }
    Ok(lines)
}

fn addon_overflow(addon: &Addon) -> BillingError {
    overflow(format!("the add-on {} ({} × {})", addon.addon_id, addon.quantity, addon.kind.as_str()))
}

fn addon_description(addon: &Addon) -> String {
    format!("{} × {}", addon.quantity, addon.kind.as_str())
}

/// A recurring add-on (`extra_data_tb`, `custom_module`,
/// `dedicated_support`): `quantity × annual price`, billed like a base
/// line for the billable days it was active; `None` for none (or no price).
fn recurring_addon_line(addon: &Addon, month: NaiveDate, days: &[NaiveDate]) -> Result<Option<Line>, BillingError> {
    let active = days.iter().filter(|day| addon.is_active_on(**day)).count() as u32;
    let Some(price) = addon.annual_price.filter(|_| active > 0) else { return Ok(None) };
    let annual = price.checked_mul(Decimal::from(addon.quantity)).map_err(|_| addon_overflow(addon))?;
    let amount = by_days(annual.amount(), active, month).ok_or_else(|| addon_overflow(addon))?;
    Ok(Some(Line {
        kind: LineKind::Addon,
        description: addon_description(addon),
        days: Some(active),
        amount: money(amount),
        reports: Vec::new(),
    }))
}

/// A one-time add-on (`training_session`): `quantity × one-time price`,
/// in full in the month of its effective date, unless it was ended by then.
fn one_time_addon_line(addon: &Addon, month: NaiveDate) -> Result<Option<Line>, BillingError> {
    let (first, last) = (first_of_month(month), last_of_month(month));
    let Some(price) = addon.one_time_price else { return Ok(None) };
    if !(first..=last).contains(&addon.effective_date) || !addon.is_active_on(addon.effective_date) {
        return Ok(None);
    }
    let amount = price.checked_mul(Decimal::from(addon.quantity)).map_err(|_| addon_overflow(addon))?;
    Ok(Some(Line {
        kind: LineKind::OneTimeAddon,
        description: addon_description(addon),
        days: None,
        amount: amount.round_cents(),
        reports: Vec::new(),
    }))
}

/// The month's data overage line: its peak against the limit in effect on
/// its last billable day, per started TB at that day's rate; `None` when
/// the peak is within the limit.
fn overage_line(inputs: &OverageInputs) -> Result<Option<Line>, BillingError> {
    let Some((started_tb, amount)) = inputs.overage()? else { return Ok(None) };
    Ok(Some(Line {
        kind: LineKind::DataOverage,
        description: format!(
            "data over {} GB: peak {} GB, {started_tb} started TB",
            inputs.data_limit_gb, inputs.peak_data_gb
        ),
        days: None,
        amount,
        reports: Vec::new(),
    }))
}

/// Late usage: each earlier invoiced month's overage, recomputed, against
/// its overage line and the adjustments for it since (one
/// [`adjustment_line`] per month that changed).
fn adjustment_lines(
    subscription: &Subscription,
    usage: &Usage,
    catalog: &Catalog,
    month: NaiveDate,
    issued: Vec<Billed<'_>>,
) -> Result<(Vec<Line>, Vec<Adjustment>), BillingError> {
    // Every invoice in force counts for what was billed (a month billed
    // again after a void can have later months' invoices, with their
    // adjustments, before it); only earlier months are adjusted. Without
    // voids every invoice passed is of an earlier month.
    let mut all: Vec<Billed<'_>> = issued;
    all.sort_by_key(|b| b.invoice.period);
    let earlier: Vec<&Billed<'_>> = all.iter().filter(|b| b.invoice.period < first_of_month(month)).collect();
    let (mut lines, mut adjustments) = (Vec::new(), Vec::new());
    for invoiced in earlier {
        let period = invoiced.invoice.period;
        // A month invoiced and holding no report any more had its usage
        // retired (issue 16, usage retention, whole months): what it billed
        // is final. (A month that never had a report billed no overage, so
        // it had nothing to adjust either.)
        if !usage.has_reports_in(period) {
            continue;
        }
        let Some(inputs) = overage_inputs(subscription, usage, catalog, period)? else { continue };
        if let Some((line, adjustment)) = adjustment_line(usage, invoiced, &all, inputs)? {
            lines.push(line);
            adjustments.push(adjustment);
        }
    }
    Ok((lines, adjustments))
}

/// The late-usage adjustment of one invoiced month: `recomputed overage −
/// (invoiced overage + earlier adjustments for it)`, or `None` when that is
/// zero. The line names the reports of that month appended after the month
/// was last billed (its invoice, or its latest adjustment): the ones the
/// difference comes from.
fn adjustment_line(
    usage: &Usage,
    invoiced: &Billed<'_>,
    earlier: &[Billed<'_>],
    inputs: OverageInputs,
) -> Result<Option<(Line, Adjustment)>, BillingError> {
    let period = invoiced.invoice.period;
    let month_text = period_text(period);
    let usd = |m: Result<Money, crate::money::MoneyError>| {
        m.map_err(|_| overflow(format!("the late-usage adjustment for {month_text}")))
    };
    let recomputed = match inputs.overage()? {
        Some((_, amount)) => amount,
        None => Money::zero(crate::Currency::USD),
    };
    let adjusting = earlier.iter().filter(|b| b.invoice.inputs.adjustments.iter().any(|a| a.month == period));
    let seen = adjusting.map(|b| b.usage_sequence).fold(invoiced.usage_sequence, u64::max);
    let mut billed = Money::zero(crate::Currency::USD);
    for line in invoiced.invoice.lines.iter().filter(|line| line.kind == LineKind::DataOverage) {
        billed = usd(billed.checked_add(line.amount))?;
    }
    let since = earlier.iter().flat_map(|b| &b.invoice.inputs.adjustments).filter(|a| a.month == period);
    for adjustment in since {
        billed = usd(billed.checked_add(usd(adjustment.recomputed.checked_sub(adjustment.billed))?))?;
    }
    let amount = usd(recomputed.checked_sub(billed))?;
    if amount.amount().is_zero() {
        return Ok(None);
    }
    let line = Line {
        kind: LineKind::UsageAdjustment,
        description: format!(
            "late usage for {month_text}: data overage now {}, billed {}",
            recomputed.amount(),
            billed.amount()
        ),
        days: None,
        amount,
        reports: usage.reports_after(period, seen),
    };
    Ok(Some((line, Adjustment { month: period, inputs, recomputed, billed })))
}

/// The invoice of the month of `month` (any day of it), or `None` when no
/// day of it was billable and nothing invoiced earlier needs adjusting; an
/// error when an amount cannot be computed (it overflows).
///
/// `issued` are the subscription's invoices issued so far (any order); the
/// ones for months before `month` are checked for late usage.
pub fn invoice<'a>(
    subscription: &Subscription,
    usage: &Usage,
    catalog: &Catalog,
    month: NaiveDate,
    issued: impl IntoIterator<Item = Billed<'a>>,
) -> Result<Option<Invoice>, BillingError> {
    let first = first_of_month(month);
    let days = billable_days(subscription, month);
    let runs = day_runs(subscription, catalog, &days)?;
    let mut lines = runs.iter().map(|run| base_line(run, month)).collect::<Result<Vec<_>, _>>()?;
    // A month without a billable day bills no add-on.
    if !days.is_empty() {
        lines.extend(addon_lines(subscription, month, &days)?);
    }
    let overage = overage_inputs(subscription, usage, catalog, month)?;
    if let Some(inputs) = &overage {
        lines.extend(overage_line(inputs)?);
    }
    let (adjustment_lines, adjustments) =
        adjustment_lines(subscription, usage, catalog, month, issued.into_iter().collect())?;
    lines.extend(adjustment_lines);

    if lines.is_empty() && days.is_empty() {
        return Ok(None);
    }
    let mut total = Money::zero(crate::Currency::USD);
    for line in &lines {
        total = total.checked_add(line.amount).map_err(|_| overflow("the invoice total"))?;
    }
    Ok(Some(Invoice { period: first, lines, total, inputs: Inputs { runs, overage, adjustments } }))
}

/// The month an invoice covers, written `YYYY-MM`.
pub fn period_text(month: NaiveDate) -> String {
    month.format("%Y-%m").to_string()
}

/// The stream of a subscription's invoice for a month: one invoice each,
/// so issuing expects the stream not to exist and a second run issues
/// nothing.
pub fn stream(subscription_id: crate::SubscriptionId, month: NaiveDate) -> crate::StreamId {
    crate::StreamId::new(format!("invoice/{subscription_id}:{}", period_text(month)))
        .expect("a UUID and a month form a valid stream id")
}

/// The most times one month of a subscription is issued: its first
/// invoice and at most this many less one after voids. A void that would
/// pass it is refused.
pub const INVOICE_REVISIONS_MAX: u32 = 100;

/// The stream of a subscription's month at `revision` (the number of its
/// invoices voided before): revision 0 is [`stream`], so logs written
/// before voids existed are unchanged.
pub fn stream_of(subscription_id: crate::SubscriptionId, month: NaiveDate, revision: u32) -> crate::StreamId {
    if revision == 0 {
        return stream(subscription_id, month);
    }
    crate::StreamId::new(format!("invoice/{subscription_id}:{}:r{revision}", period_text(month)))
        .expect("a UUID, a month and a number form a valid stream id")
}

/// The invoice id of a subscription's month at `revision` (see
/// [`stream_of`]): revision 0 is [`invoice_id`].
pub fn invoice_id_of(subscription_id: crate::SubscriptionId, month: NaiveDate, revision: u32) -> uuid::Uuid {
    if revision == 0 {
        return invoice_id(subscription_id, month);
    }
    let hash = blake3::Hasher::new_derive_key("ledger 2026-12-01 invoice id revision v1")
        .update(subscription_id.0.as_bytes())
        .update(period_text(month).as_bytes())
        .update(&revision.to_le_bytes())
        .finalize();
    let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().expect("16 of 32 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The revision whose derived id is `invoice_id`, if any (at most
/// [`INVOICE_REVISIONS_MAX`] are tried).
pub fn revision_of(subscription_id: crate::SubscriptionId, month: NaiveDate, invoice_id: uuid::Uuid) -> Option<u32> {
    (0..INVOICE_REVISIONS_MAX).find(|r| invoice_id_of(subscription_id, month, *r) == invoice_id)
}

/// The invoice id of a subscription's month: derived, so the same month is
/// always the same invoice.
pub fn invoice_id(subscription_id: crate::SubscriptionId, month: NaiveDate) -> uuid::Uuid {
    let hash = blake3::Hasher::new_derive_key("ledger 2026-11-29 invoice id v1")
        .update(subscription_id.0.as_bytes())
        .update(period_text(month).as_bytes())
        .finalize();
    let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().expect("16 of 32 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The schema version `InvoiceIssued` is written at (a test checks it is
/// the one `stored_events!` below writes).
pub const INVOICE_ISSUED_VERSION: u32 = 2;

crate::stored_events! {
    /// An invoice, issued. Issued invoices never change; corrections are
    /// lines of later invoices.
    ///
    /// `InvoiceIssued` is stored at schema version 2 (lines name the reports
    /// behind an adjustment); version 1, without them, still decodes and is
    /// upcast with no reports named.
    pub enum InvoiceEvent {
        InvoiceIssued = "InvoiceIssued" version 2 { 1 => InvoiceIssuedV1 },
        InvoiceVoided = "InvoiceVoided" version 1,
        CreditNoteIssued = "CreditNoteIssued" version 1,
    }
}

/// The most characters of a void's reason.
pub const VOID_REASON_CHARS_MAX: usize = 500;

/// An issued invoice, voided (not paid): it asks for nothing, its month is
/// billed again by the next run under the next revision's id, and its
/// overage counts as never invoiced. Appended on the invoice's own stream
/// after its `InvoiceIssued`; the actor is in the metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceVoided {
    pub invoice_id: uuid::Uuid,
    pub subscription_id: crate::SubscriptionId,
    pub organization_id: crate::OrganizationId,
    /// The month the invoice covers (its first day).
    pub period: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceIssued {
    pub invoice_id: uuid::Uuid,
    pub subscription_id: crate::SubscriptionId,
    pub organization_id: crate::OrganizationId,
    /// The lines, total and what they were computed from.
    pub invoice: Invoice,
    /// The digest of `invoice` as stored: [`Invoice::digest`] at schema
    /// version 2, [`InvoiceV1::digest`] at version 1.
    pub digest: crate::record::Hash,
    /// The log sequence up to which the invoice saw usage: it was computed
    /// from the events up to and including this one.
    pub usage_sequence: u64,
}

/// `InvoiceIssued` as schema version 1 stored it. Frozen: these shapes
/// decode every version 1 payload in every log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceIssuedV1 {
    pub invoice_id: uuid::Uuid,
    pub subscription_id: crate::SubscriptionId,
    pub organization_id: crate::OrganizationId,
    pub invoice: InvoiceV1,
    pub digest: crate::record::Hash,
    pub usage_sequence: u64,
}

/// An invoice as schema version 1 stored it: lines without `reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceV1 {
    pub period: NaiveDate,
    pub lines: Vec<LineV1>,
    pub total: Money,
    pub inputs: Inputs,
}

/// A line as schema version 1 stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineV1 {
    pub kind: LineKind,
    pub description: String,
    pub days: Option<u32>,
    pub amount: Money,
}

impl InvoiceV1 {
    /// The digest version 1 invoices were issued with.
    pub fn digest(&self) -> crate::record::Hash {
        digest(DIGEST_CONTEXT_V1, &crate::codec::encode(self))
    }
}

const DIGEST_CONTEXT_V1: &str = "ledger 2026-11-29 invoice digest v1";

/// An invoice in version 1's shape: the same lines, without the reports
/// they name. What a version 1 invoice is checked against when recomputed.
impl From<&Invoice> for InvoiceV1 {
    fn from(invoice: &Invoice) -> Self {
        let lines = invoice
            .lines
            .iter()
            .map(|l| LineV1 { kind: l.kind, description: l.description.clone(), days: l.days, amount: l.amount })
            .collect();
        InvoiceV1 { period: invoice.period, lines, total: invoice.total, inputs: invoice.inputs.clone() }
    }
}

/// The upcaster: a version 1 invoice names no reports.
impl From<InvoiceIssuedV1> for InvoiceIssued {
    fn from(v1: InvoiceIssuedV1) -> Self {
        let lines = v1
            .invoice
            .lines
            .into_iter()
            .map(|l| Line {
                kind: l.kind,
                description: l.description,
                days: l.days,
                amount: l.amount,
                reports: Vec::new(),
            })
            .collect();
        let invoice = Invoice { period: v1.invoice.period, lines, total: v1.invoice.total, inputs: v1.invoice.inputs };
        InvoiceIssued {
            invoice_id: v1.invoice_id,
            subscription_id: v1.subscription_id,
            organization_id: v1.organization_id,
            invoice,
            digest: v1.digest,
            usage_sequence: v1.usage_sequence,
        }
    }
}

/// The most credit notes against one invoice.
pub const CREDIT_NOTES_PER_INVOICE_MAX: u32 = 50;
/// The most lines of one credit note.
pub const CREDIT_NOTE_LINES_MAX: usize = 20;
/// The most characters of a credit note line's description.
pub const CREDIT_LINE_DESCRIPTION_CHARS_MAX: usize = 200;
/// The most characters of a credit note's reason.
pub const CREDIT_REASON_CHARS_MAX: usize = 500;

/// One line of a credit note: what is credited, and how much (positive,
/// cents, at most `subscription::PRICE_MAX`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditLine {
    pub description: String,
    pub amount: Money,
}

/// A credit note against an issued invoice: it lowers what the invoice asks
/// for by its total. The credit notes of one invoice never total more than
/// the invoice. Appended on the invoice's own stream; the actor is in the
/// metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditNoteIssued {
    /// Derived from the invoice and `number` ([`credit_note_id`]).
    pub credit_note_id: uuid::Uuid,
    pub invoice_id: uuid::Uuid,
    pub subscription_id: crate::SubscriptionId,
    pub organization_id: crate::OrganizationId,
    /// The invoice's month (its first day).
    pub period: NaiveDate,
    /// 1 for the invoice's first credit note, then 2, …
    pub number: u32,
    pub reason: String,
    pub lines: Vec<CreditLine>,
    /// The sum of the lines.
    pub total: Money,
}

/// The id of an invoice's `number`th credit note.
pub fn credit_note_id(invoice_id: uuid::Uuid, number: u32) -> uuid::Uuid {
    let hash = blake3::Hasher::new_derive_key("ledger 2026-12-01 credit note id v1")
        .update(invoice_id.as_bytes())
        .update(&number.to_le_bytes())
        .finalize();
    let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().expect("16 of 32 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Why a credit note is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditNoteError {
    /// The request is out of bounds (lines, lengths, amounts).
    #[error("{0}")]
    Invalid(String),
    #[error("the invoice is voided: it asks for nothing to credit")]
    Voided,
    #[error("the invoice has {CREDIT_NOTES_PER_INVOICE_MAX} credit notes already")]
    TooMany,
    /// The credits would total more than the invoice.
    #[error("the invoice's credit notes would total {would}, more than its total {total}")]
    Exceeds { total: Money, would: Money },
}

/// A text field: trimmed, 1 to `max` characters, no control characters.
fn bounded_text(what: &str, text: &str, max: usize) -> Result<String, CreditNoteError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(CreditNoteError::Invalid(format!(
            "{what} must be 1 to {max} characters without control characters"
        )));
    }
    Ok(text.to_owned())
}

/// Decides a credit note against `issued`, whose stream holds the credit
/// notes `earlier` and, if `voided`, a void: its lines (description,
/// amount) are bounded and their total, added to the earlier credits, is
/// at most the invoice's total (checked arithmetic).
pub fn credit_note(
    issued: &InvoiceIssued,
    earlier: &[CreditNoteIssued],
    voided: bool,
    reason: &str,
    lines: &[(String, Decimal)],
) -> Result<CreditNoteIssued, CreditNoteError> {
    let reason = bounded_text("reason", reason, CREDIT_REASON_CHARS_MAX)?;
    if lines.is_empty() || lines.len() > CREDIT_NOTE_LINES_MAX {
        return Err(CreditNoteError::Invalid(format!("a credit note has 1 to {CREDIT_NOTE_LINES_MAX} lines")));
    }
    let mut credit_lines = Vec::with_capacity(lines.len());
    for (description, amount) in lines {
        let description = bounded_text("a line's description", description, CREDIT_LINE_DESCRIPTION_CHARS_MAX)?;
        if !crate::subscription::valid_price(*amount) {
            return Err(CreditNoteError::Invalid(format!(
                "a line's amount must be positive, in cents, at most {}",
                crate::subscription::PRICE_MAX
            )));
        }
        credit_lines.push(CreditLine { description, amount: Money::usd(*amount) });
    }
    if voided {
        return Err(CreditNoteError::Voided);
    }
    let number = u32::try_from(earlier.len()).unwrap_or(u32::MAX).saturating_add(1);
    if number > CREDIT_NOTES_PER_INVOICE_MAX {
        return Err(CreditNoteError::TooMany);
    }
    let overflow = |_| CreditNoteError::Invalid("the credit note's amounts overflow".into());
    let mut total = Money::zero(crate::Currency::USD);
    for line in &credit_lines {
        total = total.checked_add(line.amount).map_err(overflow)?;
    }
    let mut would = total;
    for note in earlier {
        would = would.checked_add(note.total).map_err(overflow)?;
    }
    if would.amount() > issued.invoice.total.amount() {
        return Err(CreditNoteError::Exceeds { total: issued.invoice.total, would });
    }
    Ok(CreditNoteIssued {
        credit_note_id: credit_note_id(issued.invoice_id, number),
        invoice_id: issued.invoice_id,
        subscription_id: issued.subscription_id,
        organization_id: issued.organization_id,
        period: issued.invoice.period,
        number,
        reason,
        lines: credit_lines,
        total,
    })
}

//! The monthly invoice of a subscription (BILLING-RULES.md, "Monthly
//! invoices"), as a pure function of the subscription's state, its usage
//! and the catalog.
//!
//! Amounts are exact until each line is rounded once, to cents, half away
//! from zero; the total is the sum of the rounded lines. Late usage for a
//! month already invoiced becomes an adjustment line on the next invoice,
//! computed from the invoices issued before it.

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Money;
use crate::calendar::{days_in_month, first_of_month, last_of_month};
use crate::catalog::{Catalog, Tier};
use crate::subscription::Subscription;
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
    fn overage(&self) -> Option<(Decimal, Money)> {
        let limit = Decimal::from(self.data_limit_gb);
        (self.peak_data_gb > limit).then(|| {
            let started_tb = ((self.peak_data_gb - limit) / Decimal::from(GB_PER_TB)).ceil();
            (started_tb, money(started_tb * self.overage_rate.amount()))
        })
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
        let bytes = crate::codec::encode(self);
        crate::record::Hash(*blake3::Hasher::new_derive_key(DIGEST_CONTEXT).update(&bytes).finalize().as_bytes())
    }
}

const DIGEST_CONTEXT: &str = "ledger 2026-11-29 invoice digest v1";

/// Whether the subscription is billed on `day`: within its terms (from its
/// first start to its current end) and not cancelled yet. Suspended and
/// past-due days are billed.
fn billable(subscription: &Subscription, day: NaiveDate) -> bool {
    let (Some(first), Some(end)) = (subscription.tiers.first(), subscription.end_date) else { return false };
    first.from <= day && day < end && subscription.cancelled_from.is_none_or(|from| day < from)
}

fn money(amount: Decimal) -> Money {
    Money::usd(amount).round_cents()
}

/// `annual / 12 × days / days in month`, exactly.
fn by_days(annual: Decimal, days: u32, month: NaiveDate) -> Decimal {
    annual / Decimal::from(12) * Decimal::from(days) / Decimal::from(days_in_month(month))
}

/// A month's data overage inputs: the month's peak against the limit and
/// rate in effect on its last billable day. `None` when no day of the
/// month was billable.
fn overage_inputs(
    subscription: &Subscription,
    usage: &Usage,
    catalog: &Catalog,
    month: NaiveDate,
) -> Option<OverageInputs> {
    let last_billable = billable_days(subscription, month).pop()?;
    let period = subscription.tier_on(last_billable).expect("a billable day has a tier");
    let (spec, extra_gb) =
        subscription.spec_on(catalog, last_billable).expect("subscriptions name known catalog versions");
    let rate = match period.tier {
        Tier::Enterprise => subscription.enterprise_overage_rate.unwrap_or(spec.overage_rate_per_tb),
        _ => spec.overage_rate_per_tb,
    };
    Some(OverageInputs {
        peak_data_gb: usage.month(month).total.data_volume_gb,
        data_limit_gb: spec.data_gb + extra_gb,
        overage_rate: Money::usd(rate),
    })
}

fn billable_days(subscription: &Subscription, month: NaiveDate) -> Vec<NaiveDate> {
    let (first, last) = (first_of_month(month), last_of_month(month));
    first.iter_days().take_while(|d| *d <= last).filter(|d| billable(subscription, *d)).collect()
}

/// The invoice of the month of `month` (any day of it), or `None` when no
/// day of it was billable and nothing invoiced earlier needs adjusting.
///
/// `issued` are the subscription's invoices issued so far (any order); the
/// ones for months before `month` are checked for late usage.
pub fn invoice<'a>(
    subscription: &Subscription,
    usage: &Usage,
    catalog: &Catalog,
    month: NaiveDate,
    issued: impl IntoIterator<Item = &'a Invoice>,
) -> Option<Invoice> {
    let (first, last) = (first_of_month(month), last_of_month(month));
    let days = billable_days(subscription, month);
    let mut lines = Vec::new();

    // Base: one line per maximal run of consecutive billable days at the
    // same tier and price.
    let price_on = |day: NaiveDate| {
        let period = subscription.tier_on(day).expect("a billable day has a tier");
        let spec = catalog.version(period.catalog_version).expect("subscriptions name known catalog versions");
        (period.tier, spec.tier(period.tier).annual_price)
    };
    let mut runs = Vec::new();
    let mut run: Option<(Tier, Decimal, NaiveDate, u32)> = None;
    let mut flush = |run: Option<(Tier, Decimal, NaiveDate, u32)>, lines: &mut Vec<Line>| {
        if let Some((tier, price, from, count)) = run {
            let to = from + Days::new(u64::from(count) - 1);
            let catalog_version = subscription.tier_on(from).map_or(0, |p| p.catalog_version);
            runs.push(DayRun { from, to, tier, catalog_version, annual_price: Money::usd(price) });
            lines.push(Line {
                kind: LineKind::Base,
                description: format!("{tier} subscription, {from} to {to}"),
                days: Some(count),
                amount: money(by_days(price, count, month)),
            });
        }
    };
    for day in &days {
        let (tier, price) = price_on(*day);
        run = match run {
            Some((t, p, from, count)) if t == tier && p == price && from + Days::new(u64::from(count)) == *day => {
                Some((t, p, from, count + 1))
            }
            other => {
                flush(other, &mut lines);
                Some((tier, price, *day, 1))
            }
        };
    }
    flush(run, &mut lines);

    // Add-ons: recurring ones by their billable days, one-time ones in full
    // in the month of their effective date (a month without a billable day
    // bills no add-on).
    let addons = if days.is_empty() { &[][..] } else { &subscription.addons[..] };
    for addon in addons {
        let quantity = Decimal::from(addon.quantity);
        if addon.kind.is_one_time() {
            if let Some(price) = addon.one_time_price
                && (first..=last).contains(&addon.effective_date)
            {
                lines.push(Line {
                    kind: LineKind::OneTimeAddon,
                    description: format!("{} × {}", addon.quantity, addon.kind.as_str()),
                    days: None,
                    amount: money(quantity * price.amount()),
                });
            }
            continue;
        }
        let active = days.iter().filter(|d| **d >= addon.effective_date).count() as u32;
        if let (Some(price), true) = (addon.annual_price, active > 0) {
            lines.push(Line {
                kind: LineKind::Addon,
                description: format!("{} × {}", addon.quantity, addon.kind.as_str()),
                days: Some(active),
                amount: money(by_days(quantity * price.amount(), active, month)),
            });
        }
    }

    // Data overage: the month's peak against the limit in effect on its
    // last billable day, per started TB at that day's rate.
    let overage = overage_inputs(subscription, usage, catalog, month);
    if let Some(inputs) = &overage
        && let Some((started_tb, amount)) = inputs.overage()
    {
        lines.push(Line {
            kind: LineKind::DataOverage,
            description: format!(
                "data over {} GB: peak {} GB, {started_tb} started TB",
                inputs.data_limit_gb, inputs.peak_data_gb
            ),
            days: None,
            amount,
        });
    }

    // Late usage: each earlier invoiced month's overage, recomputed, against
    // its overage line and the adjustments for it since.
    let mut earlier: Vec<&Invoice> = issued.into_iter().filter(|i| i.period < first).collect();
    earlier.sort_by_key(|i| i.period);
    let mut adjustments = Vec::new();
    for invoiced in &earlier {
        let Some(inputs) = overage_inputs(subscription, usage, catalog, invoiced.period) else { continue };
        let recomputed = inputs.overage().map_or(Money::zero(crate::Currency::USD), |(_, amount)| amount);
        let usd = |m: Result<Money, crate::money::CurrencyMismatch>| m.expect("invoices are in USD");
        let invoiced_overage = invoiced.lines.iter().filter(|line| line.kind == LineKind::DataOverage);
        let adjusted_since = earlier.iter().flat_map(|i| &i.inputs.adjustments).filter(|a| a.month == invoiced.period);
        let billed = invoiced_overage
            .map(|line| line.amount)
            .chain(adjusted_since.map(|a| usd(a.recomputed.checked_sub(a.billed))))
            .fold(Money::zero(crate::Currency::USD), |sum, amount| usd(sum.checked_add(amount)));
        let amount = usd(recomputed.checked_sub(billed));
        if amount.amount().is_zero() {
            continue;
        }
        lines.push(Line {
            kind: LineKind::UsageAdjustment,
            description: format!(
                "late usage for {}: data overage now {}, billed {}",
                period_text(invoiced.period),
                recomputed.amount(),
                billed.amount()
            ),
            days: None,
            amount,
        });
        adjustments.push(Adjustment { month: invoiced.period, inputs, recomputed, billed });
    }

    if lines.is_empty() && days.is_empty() {
        return None;
    }
    let total = lines.iter().fold(Money::zero(crate::Currency::USD), |total, line| {
        total.checked_add(line.amount).expect("every line is in USD")
    });
    Some(Invoice { period: first, lines, total, inputs: Inputs { runs, overage, adjustments } })
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

crate::stored_events! {
    /// An invoice, issued. Issued invoices never change; corrections are
    /// lines of later invoices.
    pub enum InvoiceEvent {
        InvoiceIssued = 1,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceIssued {
    pub invoice_id: uuid::Uuid,
    pub subscription_id: crate::SubscriptionId,
    pub organization_id: crate::OrganizationId,
    /// The lines, total and what they were computed from.
    pub invoice: Invoice,
    /// [`Invoice::digest`] of `invoice`.
    pub digest: crate::record::Hash,
    /// The log sequence up to which the invoice saw usage: it was computed
    /// from the events up to and including this one.
    pub usage_sequence: u64,
}

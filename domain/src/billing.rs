//! The monthly invoice of a subscription (BILLING-RULES.md, "Monthly
//! invoices"), as a pure function of the subscription's state, its usage
//! and the catalog.
//!
//! Amounts are exact until each line is rounded once, to cents, half away
//! from zero; the total is the sum of the rounded lines. Late-usage
//! adjustments (which need the invoices already issued) arrive with the
//! billing run.

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

/// What an invoice was computed from, so it can be recomputed and checked
/// (and a later correction can name what was invoiced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub runs: Vec<DayRun>,
    /// The month's largest reported data volume.
    pub peak_data_gb: Decimal,
    /// The data limit on the month's last billable day, add-ons included.
    pub data_limit_gb: u64,
    /// The overage rate per started TB on that day.
    pub overage_rate: Money,
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

/// The invoice of the month of `month` (any day of it), or `None` when no
/// day of it was billable.
pub fn invoice(subscription: &Subscription, usage: &Usage, catalog: &Catalog, month: NaiveDate) -> Option<Invoice> {
    let (first, last) = (first_of_month(month), last_of_month(month));
    let days: Vec<NaiveDate> =
        first.iter_days().take_while(|d| *d <= last).filter(|d| billable(subscription, *d)).collect();
    let last_billable = *days.last()?;
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
    // in the month of their effective date.
    for addon in &subscription.addons {
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
    let peak = usage.month(month).total.data_volume_gb;
    let period = subscription.tier_on(last_billable).expect("a billable day has a tier");
    let (spec, extra_gb) =
        subscription.spec_on(catalog, last_billable).expect("subscriptions name known catalog versions");
    let data_limit_gb = spec.data_gb + extra_gb;
    let limit = Decimal::from(data_limit_gb);
    let rate = match period.tier {
        Tier::Enterprise => subscription.enterprise_overage_rate.unwrap_or(spec.overage_rate_per_tb),
        _ => spec.overage_rate_per_tb,
    };
    if peak > limit {
        let started_tb = ((peak - limit) / Decimal::from(GB_PER_TB)).ceil();
        lines.push(Line {
            kind: LineKind::DataOverage,
            description: format!("data over {limit} GB: peak {peak} GB, {started_tb} started TB"),
            days: None,
            amount: money(started_tb * rate),
        });
    }

    let total = lines.iter().fold(Money::zero(crate::Currency::USD), |total, line| {
        total.checked_add(line.amount).expect("every line is in USD")
    });
    let inputs = Inputs { runs, peak_data_gb: peak, data_limit_gb, overage_rate: Money::usd(rate) };
    Some(Invoice { period: first, lines, total, inputs })
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
    /// The first day of the month invoiced.
    pub period: NaiveDate,
    pub lines: Vec<Line>,
    pub total: Money,
    /// What the lines were computed from.
    pub inputs: Inputs,
    /// [`Invoice::digest`] of the lines, total and inputs.
    pub digest: crate::record::Hash,
    /// The log sequence up to which the invoice saw usage.
    pub usage_sequence: u64,
}

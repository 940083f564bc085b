//! Revenue analytics (issue 15, part 3): each subscription's MRR as a step
//! function of the day ([`Schedule`], derived from the aggregate's own
//! state), and the figures of a month ([`Book`] → [`Figures`]) folded
//! from the schedules and the usage billed by tier.
//!
//! The same fold serves the read model (`models::revenue`, a page of rows
//! at a time) and the state `replay`/`ledger report --as-of` rebuild from
//! the log up to a date ([`Book::of_state`]), so the figures for a past
//! date come from the log alone.
//!
//! Definitions (README, "Revenue analytics"):
//! - a subscription's MRR on a day is (the annual price of its tier in
//!   force that day + the annual prices of its recurring add-ons active
//!   that day) ÷ 12, while it is active: from its start, until its
//!   cancellation day, or until its term's end when it expired or does not
//!   renew. Past-due and suspended subscriptions are still active (still
//!   billed). Overage, one-time add-ons and credits are not MRR.
//! - a month's movements are each subscription's MRR change from one day
//!   to the next, on the day it took effect, over the month's days up to
//!   `through` (the month's last day, or today in the current month):
//!   from zero is new, to zero is churned, up is expansion, down is
//!   contraction. So MRR at the start (the day before the month's first)
//!   + new + expansion − contraction − churned = MRR on `through`.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use domain::OrganizationId;
use domain::billing::{InvoiceIssued, LineKind};
use domain::catalog::{Catalog, Tier};
use domain::subscription::Subscription;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// The months of MRR history a report and its chart show (bounded).
pub const CHART_MONTHS_MAX: u32 = 12;

/// The most steps one subscription's schedule keeps: far more than its
/// tier changes, renewals and add-ons make in practice; a schedule past it
/// is an arithmetic failure, not a silent cut.
pub const SCHEDULE_STEPS_MAX: usize = 10_000;

/// The decimal places a ratio (churn, retention) is rounded to.
pub const RATIO_DECIMALS: u32 = 4;

/// Why figures could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevenueError {
    #[error("revenue arithmetic overflows")]
    Overflow,
    #[error("the subscription's catalog version {0} is not known")]
    UnknownCatalogVersion(u32),
    #[error("a schedule has more than {SCHEDULE_STEPS_MAX} steps")]
    TooManySteps,
}

/// One step of a schedule: the MRR from `from` on (until the next step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub from: NaiveDate,
    pub mrr: Decimal,
}

/// A subscription's MRR by day: zero before the first step; each step's
/// value from its day until the next. Consecutive steps differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: Vec<Step>,
}

impl Schedule {
    /// The MRR in force on `day`.
    pub fn on(&self, day: NaiveDate) -> Decimal {
        self.steps.iter().rev().find(|step| step.from <= day).map_or(Decimal::ZERO, |step| step.mrr)
    }

    /// The steps that take effect from `first` to `last` (inclusive), each
    /// with the MRR the day before it.
    fn changes(&self, first: NaiveDate, last: NaiveDate) -> impl Iterator<Item = (Decimal, Decimal)> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(move |(_, step)| first <= step.from && step.from <= last)
            .map(|(i, step)| (if i == 0 { Decimal::ZERO } else { self.steps[i - 1].mrr }, step.mrr))
    }

    /// The schedule `subscription`'s state gives.
    /// The schedule, or none (no MRR) for a subscription whose MRR cannot be
    /// computed (an amount overflows: only history written before prices
    /// were bounded gets there), named in the server's log: one
    /// subscription's bad data never stops the figures of the others.
    pub fn of_or_none(subscription: &Subscription, catalog: &Catalog, id: impl std::fmt::Display) -> Schedule {
        Schedule::of(subscription, catalog).unwrap_or_else(|error| {
            tracing::warn!(subscription = %id, %error, "no MRR counted for a subscription");
            Schedule::default()
        })
    }

    pub fn of(subscription: &Subscription, catalog: &Catalog) -> Result<Schedule, RevenueError> {
        let Some(start) = subscription.tiers.first().map(|t| t.from) else { return Ok(Schedule::default()) };
        let end = active_until(subscription);
        let mut days: Vec<NaiveDate> = vec![start];
        days.extend(subscription.tiers.iter().map(|t| t.from));
        days.extend(subscription.end_date);
        for addon in subscription.addons.iter().filter(|a| a.annual_price.is_some()) {
            days.push(addon.effective_date);
            days.extend(addon.ended_from);
        }
        days.extend(end);
        days.retain(|day| *day >= start);
        days.sort_unstable();
        days.dedup();
        let mut steps: Vec<Step> = Vec::new();
        for day in days {
            let mrr =
                if end.is_some_and(|end| day >= end) { Decimal::ZERO } else { mrr_on(subscription, catalog, day)? };
            if steps.last().is_none_or(|last| last.mrr != mrr) && !(steps.is_empty() && mrr.is_zero()) {
                steps.push(Step { from: day, mrr });
            }
        }
        if steps.len() > SCHEDULE_STEPS_MAX {
            return Err(RevenueError::TooManySteps);
        }
        Ok(Schedule { steps })
    }
}

/// The first day the subscription is no longer active, if known: its
/// cancellation day, or its term's end when it expired or does not renew.
fn active_until(subscription: &Subscription) -> Option<NaiveDate> {
    let term_end = (subscription.expired || !subscription.auto_renew).then_some(subscription.end_date).flatten();
    match (subscription.cancelled_from, term_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// (annual base price + recurring add-ons' annual prices) ÷ 12 on `day`,
/// for an active day. From the term's end on, a scheduled downgrade is the
/// tier the renewal will bring.
fn mrr_on(subscription: &Subscription, catalog: &Catalog, day: NaiveDate) -> Result<Decimal, RevenueError> {
    let Some(period) = subscription.tier_on(day) else { return Ok(Decimal::ZERO) };
    let tier = match (subscription.scheduled_downgrade, subscription.end_date) {
        (Some(lower), Some(end)) if day >= end => lower,
        _ => period.tier,
    };
    let version =
        catalog.version(period.catalog_version).ok_or(RevenueError::UnknownCatalogVersion(period.catalog_version))?;
    let mut annual = version.tier(tier).annual_price;
    for addon in subscription.addons.iter().filter(|a| a.is_active_on(day)) {
        if let Some(price) = addon.annual_price {
            let amount = price.amount().checked_mul(Decimal::from(addon.quantity)).ok_or(RevenueError::Overflow)?;
            annual = annual.checked_add(amount).ok_or(RevenueError::Overflow)?;
        }
    }
    annual.checked_div(Decimal::from(12)).ok_or(RevenueError::Overflow)
}

/// Usage and overage billed in a month for one tier (the tier of the
/// invoice's last billable day).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billed {
    /// Invoices issued for the month.
    pub invoices: u64,
    /// The months' peak data volumes, summed over the invoices (GB).
    pub peak_data_gb: Decimal,
    /// Data overage lines (and late-usage adjustments) billed.
    pub overage: Decimal,
}

impl Billed {
    /// Adds `other` (checked).
    pub fn add(&mut self, other: &Billed) -> Result<(), RevenueError> {
        self.invoices = self.invoices.checked_add(other.invoices).ok_or(RevenueError::Overflow)?;
        self.peak_data_gb = self.peak_data_gb.checked_add(other.peak_data_gb).ok_or(RevenueError::Overflow)?;
        self.overage = self.overage.checked_add(other.overage).ok_or(RevenueError::Overflow)?;
        Ok(())
    }

    /// Takes `other` out again (a voided invoice; checked).
    pub fn sub(&mut self, other: &Billed) -> Result<(), RevenueError> {
        self.invoices = self.invoices.checked_sub(other.invoices).ok_or(RevenueError::Overflow)?;
        self.peak_data_gb = self.peak_data_gb.checked_sub(other.peak_data_gb).ok_or(RevenueError::Overflow)?;
        self.overage = self.overage.checked_sub(other.overage).ok_or(RevenueError::Overflow)?;
        Ok(())
    }

    /// What one issued invoice bills: its month, its tier and its usage.
    pub fn of_invoice(issued: &InvoiceIssued) -> Result<Option<(NaiveDate, Tier, Billed)>, RevenueError> {
        let invoice = &issued.invoice;
        let Some(tier) = invoice.inputs.runs.last().map(|run| run.tier) else { return Ok(None) };
        let mut overage = Decimal::ZERO;
        for line in &invoice.lines {
            if matches!(line.kind, LineKind::DataOverage | LineKind::UsageAdjustment) {
                overage = overage.checked_add(line.amount.amount()).ok_or(RevenueError::Overflow)?;
            }
        }
        let peak_data_gb = invoice.inputs.overage.as_ref().map_or(Decimal::ZERO, |o| o.peak_data_gb);
        Ok(Some((invoice.period, tier, Billed { invoices: 1, peak_data_gb, overage })))
    }
}

/// One organization's MRR on the days a report compares.
#[derive(Debug, Clone, Default)]
struct OrgMrr {
    at_start: Decimal,
    at_through: Decimal,
    year_before: Decimal,
}

/// The fold of a report: fed every subscription's schedule (and the
/// month's billed usage), gives the [`Figures`].
#[derive(Debug, Clone)]
pub struct Book {
    month: NaiveDate,
    through: NaiveDate,
    organizations: BTreeMap<OrganizationId, OrgMrr>,
    new: Decimal,
    expansion: Decimal,
    contraction: Decimal,
    churned: Decimal,
    chart: Vec<(NaiveDate, Decimal)>,
    billed: BTreeMap<Tier, Billed>,
}

/// The first day of `day`'s month.
pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

/// The last day of the month starting `month`.
pub fn last_day(month: NaiveDate) -> NaiveDate {
    month_of(month).checked_add_months(Months::new(1)).and_then(|next| next.pred_opt()).unwrap_or(NaiveDate::MAX)
}

fn add(sum: &mut Decimal, value: Decimal) -> Result<(), RevenueError> {
    *sum = sum.checked_add(value).ok_or(RevenueError::Overflow)?;
    Ok(())
}

impl Book {
    /// A report for the month starting `month`, up to `through` (a day of
    /// it: its last, or today in the current month).
    pub fn new(month: NaiveDate, through: NaiveDate) -> Self {
        let month = month_of(month);
        let chart = (0..CHART_MONTHS_MAX)
            .rev()
            .filter_map(|back| month.checked_sub_months(Months::new(back)))
            .map(|first| (first, Decimal::ZERO))
            .collect();
        Self {
            month,
            through: through.clamp(month, last_day(month)),
            organizations: BTreeMap::new(),
            new: Decimal::ZERO,
            expansion: Decimal::ZERO,
            contraction: Decimal::ZERO,
            churned: Decimal::ZERO,
            chart,
            billed: BTreeMap::new(),
        }
    }

    /// The day before the month's first: the MRR "at the start".
    fn before(&self) -> NaiveDate {
        self.month.pred_opt().unwrap_or(NaiveDate::MIN)
    }

    /// Adds one subscription of `organization`.
    pub fn add_subscription(&mut self, organization: OrganizationId, schedule: &Schedule) -> Result<(), RevenueError> {
        let year_before = self.through.checked_sub_months(Months::new(12)).unwrap_or(NaiveDate::MIN);
        let (before, through) = (self.before(), self.through);
        let entry = self.organizations.entry(organization).or_default();
        add(&mut entry.at_start, schedule.on(before))?;
        add(&mut entry.at_through, schedule.on(through))?;
        add(&mut entry.year_before, schedule.on(year_before))?;
        for (previous, now) in schedule.changes(self.month, self.through) {
            let change = now.checked_sub(previous).ok_or(RevenueError::Overflow)?;
            match (previous.is_zero(), now.is_zero()) {
                (true, false) => add(&mut self.new, now)?,
                (false, true) => add(&mut self.churned, previous)?,
                _ if change.is_sign_positive() => add(&mut self.expansion, change)?,
                _ => add(&mut self.contraction, -change)?,
            }
        }
        for (first, mrr) in &mut self.chart {
            let day = if *first == self.month { self.through } else { last_day(*first) };
            add(mrr, schedule.on(day))?;
        }
        Ok(())
    }

    /// Adds usage billed for `month` at `tier` (ignored for another month).
    pub fn add_billed(&mut self, month: NaiveDate, tier: Tier, billed: &Billed) -> Result<(), RevenueError> {
        if month_of(month) != self.month {
            return Ok(());
        }
        self.billed.entry(tier).or_default().add(billed)
    }

    /// Every subscription and invoice of a state rebuilt from the log (as
    /// `replay` and `ledger report --as-of` rebuild it up to a date).
    pub fn of_state(
        state: &crate::LedgerState,
        catalog: &Catalog,
        month: NaiveDate,
        through: NaiveDate,
    ) -> Result<Figures, RevenueError> {
        let mut book = Book::new(month, through);
        for (id, subscription) in &state.subscriptions {
            if let Some(organization) = subscription.organization_id {
                book.add_subscription(organization, &Schedule::of_or_none(subscription, catalog, id))?;
            }
        }
        for issued in state.invoices.values().flat_map(BTreeMap::values) {
            if let Some((month, tier, billed)) = Billed::of_invoice(issued)? {
                book.add_billed(month, tier, &billed)?;
            }
        }
        book.figures()
    }
}

/// A month's revenue figures. Money is rounded to cents (half away from
/// zero, as invoices are) only here, after exact sums; ratios to
/// [`RATIO_DECIMALS`] places, `None` when their denominator is zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// The month's first day.
    pub month: NaiveDate,
    /// The last day counted: the month's last, or today in the current month.
    pub through: NaiveDate,
    /// MRR on `through`, and 12 × it.
    pub mrr: Decimal,
    pub arr: Decimal,
    /// MRR on the day before the month's first.
    pub mrr_at_start: Decimal,
    pub new_mrr: Decimal,
    pub expansion_mrr: Decimal,
    pub contraction_mrr: Decimal,
    pub churned_mrr: Decimal,
    /// Organizations with MRR at the start, and those of them with none on `through`.
    pub organizations_at_start: u64,
    pub organizations_churned: u64,
    pub logo_churn: Option<Decimal>,
    /// Churned MRR ÷ MRR at the start.
    pub revenue_churn: Option<Decimal>,
    /// MRR on `through` of the organizations with MRR 12 months before ÷ their MRR then.
    pub net_revenue_retention: Option<Decimal>,
    /// Organizations with MRR on `through`, and MRR ÷ them.
    pub active_organizations: u64,
    pub arpa: Option<Decimal>,
    /// Usage and overage billed for the month, by tier.
    pub billed: Vec<(Tier, Billed)>,
    /// MRR at the end of each of the last [`CHART_MONTHS_MAX`] months (this
    /// one on `through`), oldest first.
    pub mrr_by_month: Vec<(NaiveDate, Decimal)>,
}

fn cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn ratio(numerator: Decimal, denominator: Decimal) -> Result<Option<Decimal>, RevenueError> {
    if denominator.is_zero() {
        return Ok(None);
    }
    let value = numerator.checked_div(denominator).ok_or(RevenueError::Overflow)?;
    Ok(Some(value.round_dp_with_strategy(RATIO_DECIMALS, RoundingStrategy::MidpointAwayFromZero)))
}

impl Book {
    /// The figures of everything added.
    pub fn figures(self) -> Result<Figures, RevenueError> {
        let (mut mrr, mut mrr_at_start, mut retained, mut year_before) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let (mut at_start, mut churned, mut active) = (0u64, 0u64, 0u64);
        for org in self.organizations.values() {
            add(&mut mrr, org.at_through)?;
            add(&mut mrr_at_start, org.at_start)?;
            if org.at_start > Decimal::ZERO {
                at_start += 1;
                churned += u64::from(org.at_through.is_zero());
            }
            active += u64::from(org.at_through > Decimal::ZERO);
            if org.year_before > Decimal::ZERO {
                add(&mut year_before, org.year_before)?;
                add(&mut retained, org.at_through)?;
            }
        }
        let arr = mrr.checked_mul(Decimal::from(12)).ok_or(RevenueError::Overflow)?;
        let arpa = match active {
            0 => None,
            _ => Some(cents(mrr.checked_div(Decimal::from(active)).ok_or(RevenueError::Overflow)?)),
        };
        Ok(Figures {
            month: self.month,
            through: self.through,
            mrr: cents(mrr),
            arr: cents(arr),
            mrr_at_start: cents(mrr_at_start),
            new_mrr: cents(self.new),
            expansion_mrr: cents(self.expansion),
            contraction_mrr: cents(self.contraction),
            churned_mrr: cents(self.churned),
            organizations_at_start: at_start,
            organizations_churned: churned,
            logo_churn: ratio(Decimal::from(churned), Decimal::from(at_start))?,
            revenue_churn: ratio(self.churned, mrr_at_start)?,
            net_revenue_retention: ratio(retained, year_before)?,
            active_organizations: active,
            arpa,
            billed: self
                .billed
                .into_iter()
                .map(|(tier, b)| (tier, Billed { overage: cents(b.overage), ..b }))
                .collect(),
            mrr_by_month: self.chart.into_iter().map(|(month, mrr)| (month, cents(mrr))).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::Aggregate;
    use domain::Money;
    use domain::subscription::{
        AddonAdded, AddonEnded, AddonKind, DowngradeScheduled, SubscriptionCancelled, SubscriptionCreated,
        SubscriptionEvent, SubscriptionUpgraded,
    };
    use domain::{LicenseId, SubscriptionId};

    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn starter(organization: OrganizationId, start: &str) -> Subscription {
        let mut state = Subscription::default();
        state.apply(SubscriptionEvent::SubscriptionCreated(SubscriptionCreated {
            id: SubscriptionId(uuid::Uuid::now_v7()),
            organization_id: organization,
            tier: Tier::Starter,
            catalog_version: 1,
            start_date: d(start),
            end_date: domain::calendar::term_end(d(start)),
            auto_renew: true,
            max_deployments: 1,
            enterprise_overage_rate: None,
            license_id: LicenseId(uuid::Uuid::now_v7()),
        }));
        state
    }

    #[test]
    fn a_schedule_follows_upgrades_add_ons_downgrades_and_cancellations() {
        let catalog = Catalog::builtin();
        let mut state = starter(OrganizationId(uuid::Uuid::now_v7()), "2026-01-01");
        let addon_id = domain::AddonId(uuid::Uuid::now_v7());
        state.apply(SubscriptionEvent::SubscriptionUpgraded(SubscriptionUpgraded {
            from_tier: Tier::Starter,
            to_tier: Tier::Professional,
            effective_date: d("2026-02-16"),
            prorated_amount: Money::usd(Decimal::ZERO),
            previous_license_id: LicenseId(uuid::Uuid::now_v7()),
            new_license_id: LicenseId(uuid::Uuid::now_v7()),
        }));
        state.apply(SubscriptionEvent::AddonAdded(AddonAdded {
            addon_id,
            kind: AddonKind::DedicatedSupport,
            quantity: 2,
            annual_price: Some(Money::usd(dec("1200"))),
            one_time_price: None,
            effective_date: d("2026-03-01"),
        }));
        state.apply(SubscriptionEvent::AddonAdded(AddonAdded {
            addon_id: domain::AddonId(uuid::Uuid::now_v7()),
            kind: AddonKind::TrainingSession,
            quantity: 1,
            annual_price: None,
            one_time_price: Some(Money::usd(dec("1500"))),
            effective_date: d("2026-03-05"),
        }));
        state.apply(SubscriptionEvent::AddonEnded(AddonEnded { addon_id, effective_date: d("2026-05-01") }));
        state.apply(SubscriptionEvent::DowngradeScheduled(DowngradeScheduled {
            to_tier: Tier::Starter,
            effective_date: d("2027-01-01"),
        }));
        let schedule = Schedule::of(&state, &catalog).unwrap();
        let steps: Vec<(NaiveDate, Decimal)> = schedule.steps.iter().map(|s| (s.from, s.mrr)).collect();
        assert_eq!(
            steps,
            vec![
                (d("2026-01-01"), dec("2500")),
                (d("2026-02-16"), dec("5000")),
                // Two units at 1,200 a year: +200 a month; the one-time add-on is not MRR.
                (d("2026-03-01"), dec("5200")),
                (d("2026-05-01"), dec("5000")),
                (d("2027-01-01"), dec("2500")),
            ]
        );
        assert_eq!(schedule.on(d("2025-12-31")), Decimal::ZERO);
        assert_eq!(schedule.on(d("2026-02-15")), dec("2500"));
        state
            .apply(SubscriptionEvent::SubscriptionCancelled(SubscriptionCancelled { effective_date: d("2026-06-10") }));
        let cancelled = Schedule::of(&state, &catalog).unwrap();
        assert_eq!(cancelled.steps.last(), Some(&Step { from: d("2026-06-10"), mrr: Decimal::ZERO }));
        assert_eq!(cancelled.on(d("2027-02-01")), Decimal::ZERO);
    }

    #[test]
    fn a_month_s_movements_add_up_to_its_mrr() {
        let catalog = Catalog::builtin();
        let (a, b) = (OrganizationId(uuid::Uuid::now_v7()), OrganizationId(uuid::Uuid::now_v7()));
        let mut stays = starter(a, "2026-01-01");
        stays.apply(SubscriptionEvent::SubscriptionUpgraded(SubscriptionUpgraded {
            from_tier: Tier::Starter,
            to_tier: Tier::Enterprise,
            effective_date: d("2026-02-10"),
            prorated_amount: Money::usd(Decimal::ZERO),
            previous_license_id: LicenseId(uuid::Uuid::now_v7()),
            new_license_id: LicenseId(uuid::Uuid::now_v7()),
        }));
        let mut leaves = starter(b, "2026-01-01");
        leaves
            .apply(SubscriptionEvent::SubscriptionCancelled(SubscriptionCancelled { effective_date: d("2026-02-01") }));
        let new_one = starter(b, "2026-02-20");
        let mut book = Book::new(d("2026-02-01"), d("2026-02-28"));
        for state in [&stays, &leaves, &new_one] {
            book.add_subscription(state.organization_id.unwrap(), &Schedule::of(state, &catalog).unwrap()).unwrap();
        }
        let f = book.figures().unwrap();
        assert_eq!(
            (f.mrr_at_start, f.new_mrr, f.expansion_mrr, f.churned_mrr),
            (dec("5000"), dec("2500"), dec("7500"), dec("2500"))
        );
        assert_eq!(f.mrr, f.mrr_at_start + f.new_mrr + f.expansion_mrr - f.contraction_mrr - f.churned_mrr);
        assert_eq!(f.mrr, dec("12500"));
        // b had MRR at the start and has it again at the end: no logo churned.
        assert_eq!((f.organizations_at_start, f.organizations_churned, f.logo_churn), (2, 0, Some(dec("0"))));
        assert_eq!(f.revenue_churn, Some(dec("0.5")));
        assert_eq!(f.arpa, Some(dec("6250")));
        assert_eq!(f.net_revenue_retention, None, "nobody had MRR a year before");
    }
}

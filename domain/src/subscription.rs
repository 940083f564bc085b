//! The subscription aggregate: one organization's yearly term, its tier,
//! changes and add-ons (BILLING-RULES.md, "Subscriptions").
//!
//! Stream `subscription/{id}`. Everything from outside (today's date, new
//! ids, the operator's back-dating allowance) is in the command; the
//! catalog is the one service, and it is plain data.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Days, NaiveDate};

pub use crate::floating::FloatingDeploymentsSet;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::calendar::{days_to_month_end, first_of_month, last_of_month, term_end};
use crate::catalog::{Catalog, CatalogVersion, Tier};
use crate::{AddonId, LicenseId, Money, OrganizationId, SubscriptionId, Timestamp};

/// Deployments a license key may activate on, at most.
pub const MAX_DEPLOYMENTS_MAX: u32 = 1000;
/// Units of one add-on, at most.
pub const ADDON_QUANTITY_MAX: u32 = 1000;
/// The largest price the operator may set: an add-on's annual or one-time
/// price per unit, or an enterprise contract's overage rate
/// (BILLING-RULES, "Who sets prices, and bounds": 10,000,000.00). With at
/// most 1,000 units, no invoice line comes near what a decimal holds.
pub const PRICE_MAX: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 2);
/// Decimal places a price may have: cents.
pub const PRICE_DECIMALS_MAX: u32 = 2;

/// Who decides a price. Prices come from the catalog; only the operator
/// may set or override one (BILLING-RULES, "Who sets prices, and bounds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// An organization's own admin: buys at catalog prices only; a price in
    /// the command, or an add-on without a catalog price, is refused.
    Catalog,
    /// The vendor's operator: may give a price (within the bounds).
    Operator,
}

impl Pricing {
    /// A price in a command is the operator's alone: refused, never
    /// ignored, for anyone who buys at catalog prices.
    pub fn allows_price(self, names_a_price: bool) -> Result<(), SubscriptionError> {
        match self {
            Pricing::Catalog if names_a_price => Err(SubscriptionError::PriceNotAllowed),
            _ => Ok(()),
        }
    }
}

/// A price as the operator may set it: positive, cents at most, at most
/// [`PRICE_MAX`].
pub fn valid_price(price: Decimal) -> bool {
    price > Decimal::ZERO && price <= PRICE_MAX && price.scale() <= PRICE_DECIMALS_MAX
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    PastDue,
    Suspended,
    Cancelled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Suspended => "suspended",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    /// Whether the organization may start another subscription beside it.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Cancelled | Status::Expired)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddonKind {
    ExtraDataTb,
    CustomModule,
    TrainingSession,
    DedicatedSupport,
}

impl AddonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AddonKind::ExtraDataTb => "extra_data_tb",
            AddonKind::CustomModule => "custom_module",
            AddonKind::TrainingSession => "training_session",
            AddonKind::DedicatedSupport => "dedicated_support",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::ExtraDataTb, Self::CustomModule, Self::TrainingSession, Self::DedicatedSupport]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// One-time add-ons are billed once; the others every day they run.
    pub fn is_one_time(self) -> bool {
        self == AddonKind::TrainingSession
    }
}

/// Rules that are configuration, not catalog data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How far in the past a start date may lie (BILLING-RULES: 31 days).
    pub backdate_days_max: u32,
    /// How long after the first failed payment, without a successful one,
    /// a subscription is suspended (BILLING-RULES: 14 × 24 hours).
    pub dunning_days: u32,
    /// The retention job's periods (issue 16, `usecases::retention`).
    pub retention: RetentionSettings,
}

impl Default for Policy {
    fn default() -> Self {
        Self { backdate_days_max: 31, dunning_days: 14, retention: RetentionSettings::default() }
    }
}

/// The retention policy's periods, in years (the plan's: usage details 3
/// years, license keys archived 1 year after they expire, organizations
/// whose subscriptions all ended anonymized after 7 years). Each is at
/// least 1 and at most [`RETENTION_YEARS_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub usage_years: u32,
    pub key_archive_years_after_expiry: u32,
    pub anonymize_years_after_end: u32,
}

/// The longest retention period a setting may name.
pub const RETENTION_YEARS_MAX: u32 = 100;

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { usage_years: 3, key_archive_years_after_expiry: 1, anonymize_years_after_end: 7 }
    }
}

impl RetentionSettings {
    /// Each period within 1 to [`RETENTION_YEARS_MAX`] years, or the first
    /// that is not, named.
    pub fn check(&self) -> Result<(), String> {
        let periods = [
            ("usage_years", self.usage_years),
            ("key_archive_years_after_expiry", self.key_archive_years_after_expiry),
            ("anonymize_years_after_end", self.anonymize_years_after_end),
        ];
        match periods.iter().find(|(_, years)| !(1..=RETENTION_YEARS_MAX).contains(years)) {
            Some((name, years)) => {
                Err(format!("{name} is {years}: a retention period is 1 to {RETENTION_YEARS_MAX} years"))
            }
            None => Ok(()),
        }
    }
}

/// Microseconds in one day of dunning grace (24 hours, not a calendar day).
const DAY_MICROS: i64 = 24 * 60 * 60 * 1_000_000;
/// The longest reference (a payment processor's invoice id) an event keeps.
pub const PAYMENT_REFERENCE_CHARS_MAX: usize = 255;

/// What the aggregate may consult while deciding.
#[derive(Debug, Clone)]
pub struct Services {
    pub catalog: Arc<Catalog>,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionCommand {
    Create {
        id: SubscriptionId,
        organization_id: OrganizationId,
        tier: Tier,
        start_date: NaiveDate,
        auto_renew: bool,
        max_deployments: u32,
        enterprise_overage_rate: Option<Decimal>,
        license_id: LicenseId,
        today: NaiveDate,
    },
    Upgrade {
        target_tier: Tier,
        effective_date: Option<NaiveDate>,
        new_license_id: LicenseId,
        today: NaiveDate,
    },
    ScheduleDowngrade {
        target_tier: Tier,
        today: NaiveDate,
    },
    Cancel {
        immediate: bool,
        effective_date: Option<NaiveDate>,
        today: NaiveDate,
    },
    AddAddon {
        addon_id: AddonId,
        kind: AddonKind,
        quantity: u32,
        annual_price: Option<Decimal>,
        one_time_price: Option<Decimal>,
        effective_date: NaiveDate,
        today: NaiveDate,
        /// Who asks: an organization's admin buys at catalog prices only.
        pricing: Pricing,
    },
    /// The operator ends an add-on: it is not billed from `effective_date`
    /// on (inclusive); a one-time add-on ended on its own date is not billed
    /// at all. A correction of what is not invoiced yet: `invoiced_through`
    /// is the last month of the subscription with an invoice, and the date
    /// must lie after it, so no issued invoice is contradicted.
    EndAddon {
        addon_id: AddonId,
        effective_date: NaiveDate,
        invoiced_through: Option<NaiveDate>,
    },
    /// The operator corrects an add-on's price (per unit: annual for a
    /// recurring add-on, one-time for a one-time one). It applies to every
    /// month not invoiced yet; issued invoices never change.
    RepriceAddon {
        addon_id: AddonId,
        annual_price: Option<Decimal>,
        one_time_price: Option<Decimal>,
    },
    /// The term's end has come (the scheduler sends this once `today`
    /// reaches `end_date`): renew, or expire when auto-renewal is off.
    EndTerm {
        today: NaiveDate,
    },
    /// A payment for the subscription failed. `reference` names what was
    /// charged (a Stripe invoice id); `reported_at` is when the payment
    /// processor reported it (its event's creation time), which orders
    /// reports that arrive out of order; `now` is the ledger's time.
    RecordPaymentFailed {
        reference: String,
        reported_at: Timestamp,
        now: Timestamp,
    },
    /// A payment for the subscription succeeded (see `RecordPaymentFailed`).
    RecordPaymentSucceeded {
        reference: String,
        reported_at: Timestamp,
        now: Timestamp,
    },
    /// The dunning grace is over (the scheduler sends this once `now`
    /// reaches the `suspend_at` of the first failure).
    Suspend {
        now: Timestamp,
    },
    /// The operator sets how many of the subscription's deployments may
    /// float, and their heartbeat interval and place lease
    /// (`crate::floating`).
    SetFloating {
        policy: crate::floating::FloatingPolicy,
        today: NaiveDate,
    },
}

crate::stored_events! {
    /// What happened to a subscription.
    pub enum SubscriptionEvent {
        SubscriptionCreated = "SubscriptionCreated" version 1,
        SubscriptionUpgraded = "SubscriptionUpgraded" version 1,
        DowngradeScheduled = "DowngradeScheduled" version 1,
        AutoRenewalCancelled = "AutoRenewalCancelled" version 1,
        SubscriptionCancelled = "SubscriptionCancelled" version 1,
        AddonAdded = "AddonAdded" version 1,
        SubscriptionRenewed = "SubscriptionRenewed" version 1,
        SubscriptionExpired = "SubscriptionExpired" version 1,
        PaymentFailed = "PaymentFailed" version 1,
        PaymentSucceeded = "PaymentSucceeded" version 1,
        SubscriptionSuspended = "SubscriptionSuspended" version 1,
        AddonEnded = "AddonEnded" version 1,
        AddonRepriced = "AddonRepriced" version 1,
        FloatingDeploymentsSet = "FloatingDeploymentsSet" version 1,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionCreated {
    pub id: SubscriptionId,
    pub organization_id: OrganizationId,
    pub tier: Tier,
    pub catalog_version: u32,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub auto_renew: bool,
    pub max_deployments: u32,
    pub enterprise_overage_rate: Option<Decimal>,
    pub license_id: LicenseId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionUpgraded {
    pub from_tier: Tier,
    pub to_tier: Tier,
    pub effective_date: NaiveDate,
    /// Information for the customer, never charged by itself.
    pub prorated_amount: Money,
    pub previous_license_id: LicenseId,
    pub new_license_id: LicenseId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DowngradeScheduled {
    pub to_tier: Tier,
    pub effective_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoRenewalCancelled {
    /// The term's end, when the subscription expires.
    pub effective_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionCancelled {
    /// From this day on (inclusive) the subscription is cancelled and not billed.
    pub effective_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonAdded {
    pub addon_id: AddonId,
    pub kind: AddonKind,
    pub quantity: u32,
    /// Per unit per year, for recurring add-ons.
    pub annual_price: Option<Money>,
    /// Per unit, for one-time add-ons.
    pub one_time_price: Option<Money>,
    pub effective_date: NaiveDate,
}

/// The operator ended an add-on: from `effective_date` on (inclusive) it
/// is not billed and (extra data) no longer raises the data limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonEnded {
    pub addon_id: AddonId,
    pub effective_date: NaiveDate,
}

/// The operator corrected an add-on's price per unit, for every month not
/// invoiced yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonRepriced {
    pub addon_id: AddonId,
    pub annual_price: Option<Money>,
    pub one_time_price: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRenewed {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub tier: Tier,
    /// The catalog version in effect at renewal: prices may change here.
    pub catalog_version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionExpired {
    pub on: NaiveDate,
}

/// A payment failed: the subscription is `past_due` (unless already
/// `suspended`) and will be suspended at `suspend_at` unless a payment
/// succeeds first. Dunning notices are sent from this event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    /// What was charged: the payment processor's invoice id.
    pub reference: String,
    /// When the payment processor reported the failure.
    pub reported_at: Timestamp,
    /// The ledger's time of recording.
    pub at: Timestamp,
    /// Whether this failure started the dunning (the first since the
    /// subscription was last in good standing).
    pub first: bool,
    /// The first failure of this dunning, by the ledger's time.
    pub past_due_since: Timestamp,
    /// When the subscription is suspended without a successful payment.
    pub suspend_at: Timestamp,
}

/// A payment succeeded; a `past_due` or `suspended` subscription is
/// `active` again (`reactivated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub reference: String,
    pub reported_at: Timestamp,
    pub at: Timestamp,
    /// The subscription was `past_due` or `suspended` and is `active` again.
    pub reactivated: bool,
}

/// The dunning grace ended without a successful payment: validation
/// answers `SUSPENDED` and enforcement allows nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionSuspended {
    pub at: Timestamp,
    pub past_due_since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the subscription already exists")]
    AlreadyExists,
    #[error("the subscription does not exist")]
    NotFound,
    #[error("startDate {start} lies more than {days} days in the past")]
    StartTooFarInPast { start: NaiveDate, days: u32 },
    #[error("maxDeployments must be 1 to {MAX_DEPLOYMENTS_MAX}")]
    InvalidMaxDeployments,
    #[error(transparent)]
    InvalidFloating(#[from] crate::floating::FloatingPolicyError),
    #[error("the floating deployments are already set so")]
    FloatingUnchanged,
    #[error(
        "enterpriseOverageRate applies to the enterprise tier only and must be positive, in cents, at most 10000000.00"
    )]
    InvalidOverageRate,
    #[error("the subscription is {0} and cannot be changed")]
    NotChangeable(&'static str),
    #[error("{target} is not above the current tier {current}")]
    NotAnUpgrade { current: Tier, target: Tier },
    #[error("{target} is not below the current tier {current}")]
    NotADowngrade { current: Tier, target: Tier },
    #[error("effectiveDate {0} must lie in the current month, within the term")]
    EffectiveDateOutOfRange(NaiveDate),
    #[error("the subscription does not renew, so there is no renewal to downgrade at")]
    DoesNotRenew,
    #[error("auto-renewal is already off")]
    AutoRenewalAlreadyOff,
    #[error("the subscription is already cancelled from {0}")]
    AlreadyCancelled(NaiveDate),
    #[error("add-on quantity must be 1 to {ADDON_QUANTITY_MAX}")]
    InvalidQuantity,
    #[error("{0}")]
    InvalidAddonPrice(&'static str),
    #[error("a price is at most 10000000.00")]
    PriceTooHigh,
    #[error("only the operator may set a price: add-ons are bought at the catalog price")]
    PriceNotAllowed,
    #[error("{0} has no catalog price for this tier: only the operator may add it")]
    OperatorOnlyAddon(&'static str),
    #[error("the subscription has no add-on {0}")]
    AddonNotFound(AddonId),
    #[error("the add-on is already ended from {0}")]
    AddonAlreadyEnded(NaiveDate),
    #[error("effectiveDate {date} lies in or before {invoiced}, which is invoiced already")]
    EffectiveDateInvoiced { date: NaiveDate, invoiced: String },
    #[error("the subscription names catalog version {0}, which this ledger does not know")]
    UnknownCatalogVersion(u32),
    #[error("the prorated amount overflows")]
    AmountOverflow,
    #[error("the term has not ended yet")]
    TermNotEnded,
    #[error("a payment reference must be 1 to {PAYMENT_REFERENCE_CHARS_MAX} characters")]
    InvalidPaymentReference,
    #[error("the subscription is not past due")]
    NotPastDue,
    #[error("the dunning grace lasts until {0}")]
    GraceNotOver(Timestamp),
}

/// An unpaid subscription: since when, and when it is (or was) suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dunning {
    pub past_due_since: Timestamp,
    pub suspend_at: Timestamp,
    pub suspended: bool,
}

/// An add-on of a subscription: as added, with the operator's later
/// corrections (price, end) applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addon {
    pub addon_id: AddonId,
    pub kind: AddonKind,
    pub quantity: u32,
    /// Per unit per year, for recurring add-ons.
    pub annual_price: Option<Money>,
    /// Per unit, for one-time add-ons.
    pub one_time_price: Option<Money>,
    pub effective_date: NaiveDate,
    /// From this day on (inclusive) the add-on has ended.
    pub ended_from: Option<NaiveDate>,
}

impl Addon {
    /// Whether the add-on runs on `day`: from its effective date, until
    /// the day it was ended.
    pub fn is_active_on(&self, day: NaiveDate) -> bool {
        self.effective_date <= day && self.ended_from.is_none_or(|end| day < end)
    }
}

impl From<AddonAdded> for Addon {
    fn from(added: AddonAdded) -> Self {
        Addon {
            addon_id: added.addon_id,
            kind: added.kind,
            quantity: added.quantity,
            annual_price: added.annual_price,
            one_time_price: added.one_time_price,
            effective_date: added.effective_date,
            ended_from: None,
        }
    }
}

/// A tier in effect from a date on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierPeriod {
    pub from: NaiveDate,
    pub tier: Tier,
    pub catalog_version: u32,
}

/// The state that decisions need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: Option<SubscriptionId>,
    pub organization_id: Option<OrganizationId>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub auto_renew: bool,
    /// Tier changes in date order; the last is the newest decided.
    pub tiers: Vec<TierPeriod>,
    pub scheduled_downgrade: Option<Tier>,
    pub cancelled_from: Option<NaiveDate>,
    pub expired: bool,
    pub max_deployments: u32,
    pub enterprise_overage_rate: Option<Decimal>,
    pub license_id: Option<LicenseId>,
    pub addons: Vec<Addon>,
    /// Set from the first failed payment until a successful one.
    pub dunning: Option<Dunning>,
    /// The newest payment report applied (by the processor's time): an
    /// older report arriving late never moves the status back.
    pub payments_reported_up_to: Option<Timestamp>,
    /// References (invoices) known to be paid: a failure reported for one
    /// of them is stale.
    pub paid: BTreeSet<String>,
    /// Floating deployments the operator allows (none by default).
    pub floating: crate::floating::FloatingPolicy,
}

impl Subscription {
    /// The newest tier decided (an upgrade effective later this month
    /// included): what an upgrade or downgrade compares against.
    pub fn latest_tier(&self) -> Option<&TierPeriod> {
        self.tiers.last()
    }

    /// The tier in effect on `date`.
    pub fn tier_on(&self, date: NaiveDate) -> Option<&TierPeriod> {
        self.tiers.iter().rev().find(|period| period.from <= date).or(self.tiers.first())
    }

    /// The tier spec in effect on `date` and the extra data (GB) its
    /// `extra_data_tb` add-ons buy by then: 1,000 GB per TB.
    pub fn spec_on<'a>(&self, catalog: &'a Catalog, date: NaiveDate) -> Option<(&'a crate::catalog::TierSpec, u64)> {
        let period = self.tier_on(date)?;
        let spec = catalog.version(period.catalog_version)?.tier(period.tier);
        // At most u32::MAX units an add-on: saturating sums never panic,
        // even on a log written before quantities were bounded.
        let extra_tb: u64 = self
            .addons
            .iter()
            .filter(|a| a.kind == AddonKind::ExtraDataTb && a.is_active_on(date))
            .fold(0u64, |sum, a| sum.saturating_add(u64::from(a.quantity)));
        Some((spec, extra_tb.saturating_mul(1000)))
    }

    /// Status on `date`: ended (expired, cancelled from a day on), else
    /// what dunning says (suspended, past due), else active.
    pub fn status_on(&self, date: NaiveDate) -> Status {
        if self.expired {
            Status::Expired
        } else if self.cancelled_from.is_some_and(|from| from <= date) {
            Status::Cancelled
        } else {
            match self.dunning {
                Some(Dunning { suspended: true, .. }) => Status::Suspended,
                Some(_) => Status::PastDue,
                None => Status::Active,
            }
        }
    }

    /// Whether a payment report is older than what is already known. Ties
    /// (processors report in whole seconds) favour the success: a failure
    /// reported in the same second as a known success is stale, a success
    /// in the same second as a failure is not.
    fn payment_report_is_stale(&self, reported_at: Timestamp, success: bool) -> bool {
        self.payments_reported_up_to.is_some_and(|newest| reported_at < newest || (!success && reported_at == newest))
    }

    /// Refuses changes to a subscription that has ended.
    fn changeable(&self, today: NaiveDate) -> Result<(), SubscriptionError> {
        match self.status_on(today) {
            status if status.is_ended() => Err(SubscriptionError::NotChangeable(status.as_str())),
            _ => Ok(()),
        }
    }

    /// The term every command but `Create` decides on; a subscription that
    /// was never created has none.
    fn term(&self) -> Result<Term<'_>, SubscriptionError> {
        match (self.start_date, self.end_date, self.latest_tier()) {
            (Some(start), Some(end), Some(latest)) => Ok(Term { start, end, latest }),
            _ => Err(SubscriptionError::NotFound),
        }
    }

    /// Decides a command: one function per command. Every command but
    /// `Create` is refused as `NotFound` first on a subscription that does
    /// not exist.
    fn decide(
        &self,
        command: SubscriptionCommand,
        services: &Services,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        use SubscriptionCommand as C;
        let event = match command {
            C::Create {
                id,
                organization_id,
                tier,
                start_date,
                auto_renew,
                max_deployments,
                enterprise_overage_rate,
                license_id,
                today,
            } => {
                let asked = SubscriptionCreated {
                    id,
                    organization_id,
                    tier,
                    catalog_version: services.catalog.current(today).version,
                    start_date,
                    end_date: term_end(start_date),
                    auto_renew,
                    max_deployments,
                    enterprise_overage_rate,
                    license_id,
                };
                self.decide_create(asked, today, &services.policy)?
            }
            C::Upgrade { target_tier, effective_date, new_license_id, today } => {
                let effective = effective_date.unwrap_or(today);
                self.decide_upgrade(self.term()?, target_tier, effective, new_license_id, today, &services.catalog)?
            }
            C::ScheduleDowngrade { target_tier, today } => self.decide_downgrade(self.term()?, target_tier, today)?,
            C::Cancel { immediate: false, today, .. } => self.decide_cancel_at_term_end(self.term()?, today)?,
            C::Cancel { immediate: true, effective_date, today } => {
                self.decide_cancel_now(self.term()?, effective_date.unwrap_or(today), today)?
            }
            C::AddAddon { addon_id, kind, quantity, annual_price, one_time_price, effective_date, today, pricing } => {
                let order =
                    AddonOrder { addon_id, kind, quantity, annual_price, one_time_price, effective_date, pricing };
                self.decide_add_addon(self.term()?, order, today, &services.catalog)?
            }
            C::EndAddon { addon_id, effective_date, invoiced_through } => {
                self.decide_end_addon(self.term()?, addon_id, effective_date, invoiced_through)?
            }
            C::RepriceAddon { addon_id, annual_price, one_time_price } => {
                self.term()?;
                self.decide_reprice_addon(addon_id, annual_price, one_time_price)?
            }
            C::EndTerm { today } => self.decide_end_term(self.term()?, today, &services.catalog)?,
            // A stale payment report decides nothing.
            C::RecordPaymentFailed { reference, reported_at, now } => {
                self.term()?;
                let event = self.decide_payment_failed(reference, reported_at, now, &services.policy)?;
                return Ok(Vec::from_iter(event));
            }
            C::RecordPaymentSucceeded { reference, reported_at, now } => {
                self.term()?;
                return Ok(Vec::from_iter(self.decide_payment_succeeded(reference, reported_at, now)?));
            }
            C::Suspend { now } => {
                self.term()?;
                self.decide_suspend(now)?
            }
            C::SetFloating { policy, today } => self.decide_floating(policy, today)?,
        };
        Ok(vec![event])
    }

    /// The operator's floating deployments: within `maxDeployments` and the
    /// policy's bounds, on a subscription that can change, and a change.
    fn decide_floating(
        &self,
        policy: crate::floating::FloatingPolicy,
        today: NaiveDate,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        self.term()?;
        self.changeable(today)?;
        policy.check(self.max_deployments)?;
        if policy == self.floating {
            return Err(SubscriptionError::FloatingUnchanged);
        }
        Ok(FloatingDeploymentsSet::from(policy).into())
    }

    /// A new subscription: its start no further back than the policy
    /// allows, its deployments and contract rate within bounds.
    fn decide_create(
        &self,
        asked: SubscriptionCreated,
        today: NaiveDate,
        policy: &Policy,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        if self.id.is_some() {
            return Err(E::AlreadyExists);
        }
        let days = policy.backdate_days_max;
        if asked.start_date < today - Days::new(u64::from(days)) {
            return Err(E::StartTooFarInPast { start: asked.start_date, days });
        }
        if asked.max_deployments == 0 || asked.max_deployments > MAX_DEPLOYMENTS_MAX {
            return Err(E::InvalidMaxDeployments);
        }
        if let Some(rate) = asked.enterprise_overage_rate
            && (asked.tier != Tier::Enterprise || !valid_price(rate))
        {
            return Err(E::InvalidOverageRate);
        }
        Ok(asked.into())
    }

    /// An upgrade to a higher tier, effective on a day of the current
    /// month within the term, with its prorated amount for the customer.
    fn decide_upgrade(
        &self,
        term: Term<'_>,
        target_tier: Tier,
        effective: NaiveDate,
        new_license_id: LicenseId,
        today: NaiveDate,
        catalog: &Catalog,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        let Term { start, end, latest } = term;
        self.changeable(today)?;
        if target_tier <= latest.tier {
            return Err(E::NotAnUpgrade { current: latest.tier, target: target_tier });
        }
        let earliest = first_of_month(today).max(start).max(latest.from);
        if effective < earliest || effective > last_of_month(today) || effective >= end {
            return Err(E::EffectiveDateOutOfRange(effective));
        }
        let prices: &CatalogVersion =
            catalog.version(latest.catalog_version).ok_or(E::UnknownCatalogVersion(latest.catalog_version))?;
        let prorated =
            prorated(prices.tier(latest.tier).annual_price, prices.tier(target_tier).annual_price, effective)
                .ok_or(E::AmountOverflow)?;
        Ok(SubscriptionUpgraded {
            from_tier: latest.tier,
            to_tier: target_tier,
            effective_date: effective,
            prorated_amount: Money::usd(prorated).round_cents(),
            previous_license_id: self.license_id.expect("a created subscription has a license"),
            new_license_id,
        }
        .into())
    }

    /// A downgrade, scheduled for the renewal at the term's end.
    fn decide_downgrade(
        &self,
        term: Term<'_>,
        target_tier: Tier,
        today: NaiveDate,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        self.changeable(today)?;
        if target_tier >= term.latest.tier {
            return Err(E::NotADowngrade { current: term.latest.tier, target: target_tier });
        }
        if !self.auto_renew || self.cancelled_from.is_some() {
            return Err(E::DoesNotRenew);
        }
        Ok(DowngradeScheduled { to_tier: target_tier, effective_date: term.end }.into())
    }

    /// A cancellation at the term's end: auto-renewal off, the status
    /// unchanged until the term ends.
    fn decide_cancel_at_term_end(
        &self,
        term: Term<'_>,
        today: NaiveDate,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        self.changeable(today)?;
        if !self.auto_renew {
            return Err(SubscriptionError::AutoRenewalAlreadyOff);
        }
        Ok(AutoRenewalCancelled { effective_date: term.end }.into())
    }

    /// An immediate cancellation, from `effective` (inclusive): a day of the
    /// current month, within the term.
    fn decide_cancel_now(
        &self,
        term: Term<'_>,
        effective: NaiveDate,
        today: NaiveDate,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        self.changeable(today)?;
        // A cancellation dated later is still pending; it is not moved by
        // cancelling again.
        if let Some(from) = self.cancelled_from {
            return Err(E::AlreadyCancelled(from));
        }
        if effective < first_of_month(today).max(term.start) || effective >= term.end {
            return Err(E::EffectiveDateOutOfRange(effective));
        }
        Ok(SubscriptionCancelled { effective_date: effective }.into())
    }

    /// The term's end has come: a renewal (at the scheduled downgrade's
    /// tier, with the catalog in effect then), or the expiry.
    fn decide_end_term(
        &self,
        term: Term<'_>,
        today: NaiveDate,
        catalog: &Catalog,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        self.changeable(today)?;
        if today < term.end {
            return Err(SubscriptionError::TermNotEnded);
        }
        Ok(if self.auto_renew && self.cancelled_from.is_none() {
            SubscriptionRenewed {
                start_date: term.end,
                end_date: term_end(term.end),
                tier: self.scheduled_downgrade.unwrap_or(term.latest.tier),
                catalog_version: catalog.current(term.end).version,
            }
            .into()
        } else {
            SubscriptionExpired { on: term.end }.into()
        })
    }

    /// Buying an add-on. An organization's admin buys at the catalog price
    /// of its tier: a price in its command is refused, and so is an add-on
    /// the catalog has no price for on that tier (it is the operator's to
    /// sell, at a price the operator sets).
    fn decide_add_addon(
        &self,
        term: Term<'_>,
        order: AddonOrder,
        today: NaiveDate,
        catalog: &Catalog,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        let AddonOrder { addon_id, kind, quantity, annual_price, one_time_price, effective_date, pricing } = order;
        let Term { start, end, latest } = term;
        // Who may set a price is decided first: the answer to a customer's
        // price does not depend on anything else in the request.
        pricing.allows_price(annual_price.is_some() || one_time_price.is_some())?;
        let tier_spec = catalog
            .version(latest.catalog_version)
            .ok_or(E::UnknownCatalogVersion(latest.catalog_version))?
            .tier(latest.tier);
        let catalog_price = match kind {
            AddonKind::ExtraDataTb => tier_spec.extra_data_tb_annual_price,
            AddonKind::CustomModule | AddonKind::DedicatedSupport | AddonKind::TrainingSession => None,
        };
        if pricing == Pricing::Catalog && catalog_price.is_none() {
            return Err(E::OperatorOnlyAddon(kind.as_str()));
        }
        self.changeable(today)?;
        if quantity == 0 || quantity > ADDON_QUANTITY_MAX {
            return Err(E::InvalidQuantity);
        }
        if effective_date < first_of_month(today).max(start) || effective_date >= end {
            return Err(E::EffectiveDateOutOfRange(effective_date));
        }
        let (annual, one_time) = addon_prices(kind, annual_price.or(catalog_price), one_time_price)?;
        Ok(AddonAdded {
            addon_id,
            kind,
            quantity,
            annual_price: annual.map(Money::usd),
            one_time_price: one_time.map(Money::usd),
            effective_date,
        }
        .into())
    }

    fn addon(&self, addon_id: AddonId) -> Result<&Addon, SubscriptionError> {
        self.addons.iter().find(|a| a.addon_id == addon_id).ok_or(SubscriptionError::AddonNotFound(addon_id))
    }

    /// The operator ends an add-on (a correction, so that an invoice that
    /// could not be computed can be fixed and issued by the next run of its
    /// month). Allowed on a subscription that has ended too: its last
    /// months may still be waiting for their invoices.
    fn decide_end_addon(
        &self,
        term: Term<'_>,
        addon_id: AddonId,
        effective_date: NaiveDate,
        invoiced_through: Option<NaiveDate>,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        let addon = self.addon(addon_id)?;
        if let Some(invoiced) = invoiced_through
            && effective_date <= last_of_month(invoiced)
        {
            let invoiced = crate::billing::period_text(invoiced);
            return Err(E::EffectiveDateInvoiced { date: effective_date, invoiced });
        }
        if effective_date < addon.effective_date || effective_date > term.end {
            return Err(E::EffectiveDateOutOfRange(effective_date));
        }
        // Ending again may only move the end earlier.
        if let Some(ended) = addon.ended_from
            && ended <= effective_date
        {
            return Err(E::AddonAlreadyEnded(ended));
        }
        Ok(AddonEnded { addon_id, effective_date }.into())
    }

    /// The operator corrects an add-on's price (allowed on an ended
    /// subscription too, like [`Self::decide_end_addon`]).
    fn decide_reprice_addon(
        &self,
        addon_id: AddonId,
        annual_price: Option<Decimal>,
        one_time_price: Option<Decimal>,
    ) -> Result<SubscriptionEvent, SubscriptionError> {
        let addon = self.addon(addon_id)?;
        let (annual, one_time) = addon_prices(addon.kind, annual_price, one_time_price)?;
        let repriced =
            AddonRepriced { addon_id, annual_price: annual.map(Money::usd), one_time_price: one_time.map(Money::usd) };
        Ok(repriced.into())
    }

    /// A failed payment: past due from the first failure on, suspended
    /// after the policy's grace. `None` for a stale report (older than what
    /// is known, or for an invoice known paid).
    fn decide_payment_failed(
        &self,
        reference: String,
        reported_at: Timestamp,
        now: Timestamp,
        policy: &Policy,
    ) -> Result<Option<SubscriptionEvent>, SubscriptionError> {
        check_reference(&reference)?;
        self.changeable(day_of(now))?;
        if self.paid.contains(&reference) || self.payment_report_is_stale(reported_at, false) {
            return Ok(None);
        }
        let grace = i64::from(policy.dunning_days) * DAY_MICROS;
        let (first, past_due_since, suspend_at) = match self.dunning {
            Some(d) => (false, d.past_due_since, d.suspend_at),
            None => (true, now, Timestamp::from_micros(now.as_micros().saturating_add(grace))),
        };
        Ok(Some(PaymentFailed { reference, reported_at, at: now, first, past_due_since, suspend_at }.into()))
    }

    /// A successful payment: the invoice is paid, whenever it is reported
    /// (a paid invoice stays paid). It returns the subscription to active
    /// unless a newer report is already known: a late success for one
    /// invoice does not clear another invoice's newer failure. `None` for
    /// an invoice already recorded paid.
    fn decide_payment_succeeded(
        &self,
        reference: String,
        reported_at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<SubscriptionEvent>, SubscriptionError> {
        check_reference(&reference)?;
        self.changeable(day_of(now))?;
        if self.paid.contains(&reference) {
            return Ok(None);
        }
        let reactivated = self.dunning.is_some() && !self.payment_report_is_stale(reported_at, true);
        Ok(Some(PaymentSucceeded { reference, reported_at, at: now, reactivated }.into()))
    }

    /// The dunning grace is over without a successful payment.
    fn decide_suspend(&self, now: Timestamp) -> Result<SubscriptionEvent, SubscriptionError> {
        use SubscriptionError as E;
        self.changeable(day_of(now))?;
        match self.dunning {
            None | Some(Dunning { suspended: true, .. }) => Err(E::NotPastDue),
            Some(d) if now < d.suspend_at => Err(E::GraceNotOver(d.suspend_at)),
            Some(d) => Ok(SubscriptionSuspended { at: now, past_due_since: d.past_due_since }.into()),
        }
    }
}

/// What a change decides on: the term's first day, its exclusive end, and
/// the newest tier decided.
#[derive(Clone, Copy)]
struct Term<'a> {
    start: NaiveDate,
    end: NaiveDate,
    latest: &'a TierPeriod,
}

/// An add-on as `AddAddon` asks for it.
struct AddonOrder {
    addon_id: AddonId,
    kind: AddonKind,
    quantity: u32,
    annual_price: Option<Decimal>,
    one_time_price: Option<Decimal>,
    effective_date: NaiveDate,
    pricing: Pricing,
}

/// An add-on's prices, checked: a one-time add-on takes a one-time price
/// only, a recurring one an annual price only, each positive, in cents and
/// at most [`PRICE_MAX`].
fn addon_prices(
    kind: AddonKind,
    annual_price: Option<Decimal>,
    one_time_price: Option<Decimal>,
) -> Result<(Option<Decimal>, Option<Decimal>), SubscriptionError> {
    use SubscriptionError as E;
    let positive = |price: Decimal| price > Decimal::ZERO && price.scale() <= PRICE_DECIMALS_MAX;
    let prices = match (kind, annual_price, one_time_price) {
        (AddonKind::TrainingSession, None, Some(price)) if positive(price) => (None, Some(price)),
        (AddonKind::TrainingSession, _, _) => {
            return Err(E::InvalidAddonPrice("training_session takes a positive oneTimePrice only"));
        }
        (_, Some(price), None) if positive(price) => (Some(price), None),
        // Extra data has a list price, except on enterprise, where the
        // contract sets it and a price is required.
        (AddonKind::ExtraDataTb, _, _) => {
            return Err(E::InvalidAddonPrice("extra_data_tb takes a positive annualPrice (required on enterprise)"));
        }
        _ => return Err(E::InvalidAddonPrice("recurring add-ons take a positive annualPrice")),
    };
    if prices.0.or(prices.1).is_some_and(|price| price > PRICE_MAX) {
        return Err(E::PriceTooHigh);
    }
    Ok(prices)
}

/// `(new annual − old annual) / 12 × days from the effective day to the
/// month's end / days in the month`, exactly; `None` on overflow. The
/// share of a year's price for some days of a month is the invoice's own
/// (`billing::by_days`), so the upgrade's information and the month's
/// invoice compute alike and differ by at most the rounding of their lines.
fn prorated(old_annual: Decimal, new_annual: Decimal, effective: NaiveDate) -> Option<Decimal> {
    crate::billing::by_days(new_annual.checked_sub(old_annual)?, days_to_month_end(effective), effective)
}

/// The UTC day of a time: payment commands carry the ledger's time.
fn day_of(now: Timestamp) -> NaiveDate {
    now.to_datetime().date_naive()
}

fn check_reference(reference: &str) -> Result<(), SubscriptionError> {
    let chars = reference.chars().count();
    if chars == 0 || chars > PAYMENT_REFERENCE_CHARS_MAX || reference.chars().any(char::is_control) {
        return Err(SubscriptionError::InvalidPaymentReference);
    }
    Ok(())
}

impl cqrs_es::Aggregate for Subscription {
    const TYPE: &'static str = "subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = Services;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SubscriptionEvent::SubscriptionCreated(e) => {
                self.id = Some(e.id);
                self.organization_id = Some(e.organization_id);
                self.start_date = Some(e.start_date);
                self.end_date = Some(e.end_date);
                self.auto_renew = e.auto_renew;
                self.tiers = vec![TierPeriod { from: e.start_date, tier: e.tier, catalog_version: e.catalog_version }];
                self.max_deployments = e.max_deployments;
                self.enterprise_overage_rate = e.enterprise_overage_rate;
                self.license_id = Some(e.license_id);
            }
            SubscriptionEvent::SubscriptionUpgraded(e) => {
                let catalog_version = self.latest_tier().map_or(1, |t| t.catalog_version);
                self.tiers.push(TierPeriod { from: e.effective_date, tier: e.to_tier, catalog_version });
                self.scheduled_downgrade = None;
                self.license_id = Some(e.new_license_id);
            }
            SubscriptionEvent::DowngradeScheduled(e) => self.scheduled_downgrade = Some(e.to_tier),
            SubscriptionEvent::AutoRenewalCancelled(_) => {
                self.auto_renew = false;
                self.scheduled_downgrade = None;
            }
            SubscriptionEvent::SubscriptionCancelled(e) => self.cancelled_from = Some(e.effective_date),
            SubscriptionEvent::AddonAdded(e) => self.addons.push(e.into()),
            SubscriptionEvent::AddonEnded(e) => {
                if let Some(addon) = self.addons.iter_mut().find(|a| a.addon_id == e.addon_id) {
                    addon.ended_from = Some(e.effective_date);
                }
            }
            SubscriptionEvent::AddonRepriced(e) => {
                if let Some(addon) = self.addons.iter_mut().find(|a| a.addon_id == e.addon_id) {
                    addon.annual_price = e.annual_price;
                    addon.one_time_price = e.one_time_price;
                }
            }
            SubscriptionEvent::SubscriptionRenewed(e) => {
                self.start_date = Some(e.start_date);
                self.end_date = Some(e.end_date);
                self.tiers.push(TierPeriod { from: e.start_date, tier: e.tier, catalog_version: e.catalog_version });
                self.scheduled_downgrade = None;
            }
            SubscriptionEvent::SubscriptionExpired(_) => self.expired = true,
            SubscriptionEvent::PaymentFailed(e) => {
                self.payments_reported_up_to = self.payments_reported_up_to.max(Some(e.reported_at));
                let suspended = self.dunning.is_some_and(|d| d.suspended);
                self.dunning = Some(Dunning { past_due_since: e.past_due_since, suspend_at: e.suspend_at, suspended });
            }
            SubscriptionEvent::PaymentSucceeded(e) => {
                // A late success (older than a known report) pays its
                // invoice only; logs written before late successes were
                // recorded hold none, so they apply as they always did.
                if !self.payment_report_is_stale(e.reported_at, true) {
                    self.dunning = None;
                }
                self.payments_reported_up_to = self.payments_reported_up_to.max(Some(e.reported_at));
                self.paid.insert(e.reference);
            }
            SubscriptionEvent::SubscriptionSuspended(_) => {
                if let Some(dunning) = &mut self.dunning {
                    dunning.suspended = true;
                }
            }
            SubscriptionEvent::FloatingDeploymentsSet(e) => self.floating = e.into(),
        }
    }
}

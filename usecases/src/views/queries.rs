//! The read queries' response shapes: organizations, subscription details,
//! the enforcement check, audit entries.

use chrono::NaiveDate;
use domain::catalog::Catalog;
use domain::enforcement::Decision;
use domain::money::MoneyError;
use domain::payment::PaymentStatus;
use domain::subscription::Addon;
use domain::subscription::Subscription;
use domain::usage::Usage;
use domain::{AddonId, Money, OrganizationId, SubscriptionId, Timestamp};
use projections::models::organizations::OrganizationRow;
use projections::models::payments::InvoicePayment;
use projections::{AuditEntry, LedgerState, OrganizationEntry};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::Amount;
use super::licensing::Limits;
use super::usage::Quantity;

/// An organization as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    #[schema(value_type = String, format = Uuid)]
    pub id: OrganizationId,
    pub name: String,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub employee_count: Option<u32>,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl OrganizationView {
    /// An organization as the read models hold it.
    pub fn of(id: OrganizationId, entry: &OrganizationEntry) -> Self {
        Self {
            id,
            name: entry.created.name.clone(),
            domain: entry.created.domain.clone(),
            industry: entry.created.industry.clone(),
            employee_count: entry.created.employee_count,
            created_at: entry.created_at,
        }
    }

    /// An organization as its table row holds it.
    pub fn of_row(row: &OrganizationRow) -> Self {
        Self {
            id: row.id,
            name: row.created.name.clone(),
            domain: row.created.domain.clone(),
            industry: row.created.industry.clone(),
            employee_count: row.created.employee_count,
            created_at: row.created_at,
        }
    }
}

/// A page of organizations, in id order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationPage {
    pub items: Vec<OrganizationView>,
    /// The `cursor` of the next page; `null` on the last.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<OrganizationId>,
    /// The read models' sequence the page was read at.
    pub sequence: u64,
}

/// The seed's `SubscriptionDetails`: an organization's live subscription
/// (or its latest), as in effect today.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDetails {
    #[schema(value_type = String, format = Uuid)]
    pub id: SubscriptionId,
    #[schema(value_type = String, format = Uuid)]
    pub organization_id: OrganizationId,
    pub tier: &'static str,
    /// `active`, `past_due`, `suspended`, `cancelled` or `expired`.
    pub status: &'static str,
    pub start_date: Option<NaiveDate>,
    /// Exclusive.
    pub end_date: Option<NaiveDate>,
    pub auto_renew: bool,
    pub scheduled_downgrade: Option<&'static str>,
    pub cancelled_from: Option<NaiveDate>,
    pub catalog_version: u32,
    pub max_deployments: u32,
    /// How many of `maxDeployments` may be floating, and their heartbeat
    /// interval and place lease (`domain::floating`).
    pub floating_deployments: FloatingView,
    pub limits: Option<Limits>,
    pub current_usage: CurrentUsage,
    pub billing: BillingSummary,
    pub addons: Vec<AddonView>,
    pub sequence: u64,
}

/// A subscription's floating deployments, as the operator set them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FloatingView {
    /// 0: none may float.
    pub deployments: u32,
    pub heartbeat_interval_seconds: u32,
    pub lease_seconds: u32,
}

impl SubscriptionDetails {
    /// The subscription `id` of `organization_id` as in effect on `day`,
    /// from the read models at `state.sequence`: what `GET
    /// /subscriptions/{orgId}` answers for today and `replay as-of` prints
    /// for a day in the past. `None` when the organization or the
    /// subscription is not in `state`, or the subscription has no tier.
    pub fn on(
        state: &LedgerState,
        catalog: &Catalog,
        organization_id: OrganizationId,
        id: SubscriptionId,
        day: NaiveDate,
    ) -> Option<Self> {
        let entry = state.organizations.get(&organization_id)?;
        let subscription = state.subscriptions.get(&id)?;
        let empty = Usage::default();
        let usage = state.usage.get(&id).unwrap_or(&empty);
        let payments = &state.payments;
        let due = payments.invoices.values().filter(|p| p.subscription_id == id && p.status.is_due());
        let dues = Dues::of(due, payments.method(organization_id)).ok()?;
        let read = Read { organization_id, active_users: entry.state.active_users(), sequence: state.sequence, dues };
        Self::of(read, catalog, id, subscription, usage, day)
    }

    /// The subscription `id` (its state `subscription`) of an organization
    /// as in effect on `day`, with `usage` holding at least that month's
    /// reports: what [`SubscriptionDetails::on`] answers, from the tables.
    /// `None` when the subscription has no tier.
    pub fn of(
        read: Read,
        catalog: &Catalog,
        id: SubscriptionId,
        subscription: &Subscription,
        usage: &Usage,
        day: NaiveDate,
    ) -> Option<Self> {
        let period = subscription.tier_on(day)?;
        let month = usage.month(day);
        Some(Self {
            id,
            organization_id: read.organization_id,
            tier: period.tier.as_str(),
            status: subscription.status_on(day).as_str(),
            start_date: subscription.start_date,
            end_date: subscription.end_date,
            auto_renew: subscription.auto_renew,
            scheduled_downgrade: subscription.scheduled_downgrade.map(|t| t.as_str()),
            cancelled_from: subscription.cancelled_from,
            catalog_version: period.catalog_version,
            max_deployments: subscription.max_deployments,
            floating_deployments: FloatingView {
                deployments: subscription.floating.deployments,
                heartbeat_interval_seconds: subscription.floating.heartbeat_interval_seconds,
                lease_seconds: subscription.floating.lease_seconds,
            },
            limits: Limits::on(subscription, catalog, day),
            current_usage: CurrentUsage {
                users: read.active_users,
                data_volume_gb: Quantity(month.total.data_volume_gb),
                api_calls: month.total.api_calls_count,
                training_hours: Quantity(month.total.training_hours),
            },
            billing: BillingSummary {
                next_billing_date: domain::calendar::first_of_month(day).checked_add_months(chrono::Months::new(1)),
                amount_due: Amount(read.dues.amount_due),
                amount_overdue: Amount(read.dues.amount_overdue),
                payment_method: read.dues.payment_method,
                dunning: subscription.dunning.map(|d| DunningView {
                    past_due_since: d.past_due_since,
                    suspend_at: d.suspend_at,
                    suspended: d.suspended,
                }),
            },
            addons: subscription.addons.iter().map(AddonView::from).collect(),
            sequence: read.sequence,
        })
    }
}

/// What [`SubscriptionDetails::of`] reads of the organization, and the
/// read models' sequence it was read at.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub organization_id: OrganizationId,
    pub active_users: u32,
    pub sequence: u64,
    pub dues: Dues,
}

/// What the subscription's invoices still ask for, and how they are paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dues {
    /// The totals of its invoices not paid (open or past due), less their
    /// credit notes.
    pub amount_due: Money,
    /// The part of it past due (its Stripe charge failed).
    pub amount_overdue: Money,
    /// `stripe` (charged automatically) or `invoice`.
    pub payment_method: &'static str,
}

impl Dues {
    /// The sums over `due` (invoices not paid), checked.
    pub fn of<'a>(
        due: impl Iterator<Item = &'a InvoicePayment>,
        payment_method: &'static str,
    ) -> Result<Self, MoneyError> {
        let zero = Money::usd(Decimal::ZERO);
        let (mut amount_due, mut amount_overdue) = (zero, zero);
        for payment in due.filter(|p| p.status.is_due()) {
            let owed = payment.total.checked_sub(payment.credited)?;
            amount_due = amount_due.checked_add(owed)?;
            if payment.status == PaymentStatus::PastDue {
                amount_overdue = amount_overdue.checked_add(owed)?;
            }
        }
        Ok(Self { amount_due, amount_overdue, payment_method })
    }
}

/// Seats are the organization's active users; the rest is this month's
/// reported usage.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUsage {
    pub users: u32,
    #[serde(rename = "dataVolumeGB")]
    pub data_volume_gb: Quantity,
    pub api_calls: u64,
    pub training_hours: Quantity,
}

/// The seed's billing summary, with what is overdue and the dunning.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingSummary {
    pub next_billing_date: Option<NaiveDate>,
    /// The totals of the subscription's invoices not paid yet (`open` or
    /// `past_due`); without Stripe, every issued invoice is `open`, since
    /// the ledger learns of payments only from Stripe.
    pub amount_due: Amount,
    /// The part of `amountDue` whose Stripe charge failed (`past_due`).
    pub amount_overdue: Amount,
    /// `stripe` (a payment method saved at Checkout: invoices are charged
    /// automatically) or `invoice` (paid as sent).
    #[schema(example = "invoice")]
    pub payment_method: &'static str,
    /// The dunning under way: `null` in good standing.
    pub dunning: Option<DunningView>,
}

/// A dunning (docs/BILLING-RULES.md, "Payment failure"): past due since
/// the first failed payment, suspended at `suspendAt` without a successful
/// one.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DunningView {
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub past_due_since: Timestamp,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub suspend_at: Timestamp,
    pub suspended: bool,
}

/// An add-on of a subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddonView {
    #[schema(value_type = String, format = Uuid)]
    pub id: AddonId,
    /// `extra_data_tb`, `custom_module`, `training_session` or `dedicated_support`.
    pub kind: &'static str,
    pub quantity: u32,
    /// Per unit per year, for recurring add-ons.
    pub annual_price: Option<Amount>,
    /// Per unit, for one-time add-ons.
    pub one_time_price: Option<Amount>,
    pub effective_date: NaiveDate,
}

impl From<&Addon> for AddonView {
    fn from(addon: &Addon) -> Self {
        Self {
            id: addon.addon_id,
            kind: addon.kind.as_str(),
            quantity: addon.quantity,
            annual_price: addon.annual_price.map(Amount),
            one_time_price: addon.one_time_price.map(Amount),
            effective_date: addon.effective_date,
        }
    }
}

/// The seed's `validateUsage` answer: allowed or not, why not, and for the
/// limit checks the limit (`-1`: none) and the usage compared with it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementView {
    pub allowed: bool,
    /// `null` when allowed; else `no_subscription`, `suspended`,
    /// `cancelled`, `expired`, `limit_reached` or `feature_not_in_tier`.
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Users, gigabytes or calls: a JSON number, exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub current: Option<serde_json::Number>,
}

impl From<Decision> for EnforcementView {
    fn from(decision: Decision) -> Self {
        Self {
            allowed: decision.is_allowed(),
            reason: decision.denied.map(|reason| reason.as_str()),
            limit: decision.measured.map(|measured| measured.limit.to_seed()),
            current: decision.measured.map(|measured| number(measured.current)),
        }
    }
}

/// A decimal as a JSON number: whole numbers as integers, others as the
/// nearest double (usage has at most two decimals and 15 significant
/// digits, which a double holds exactly as written).
fn number(value: Decimal) -> serde_json::Number {
    let value = value.normalize();
    if value.scale() == 0
        && let Ok(whole) = u64::try_from(value.mantissa())
    {
        return whole.into();
    }
    value.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64).unwrap_or_else(|| u64::MAX.into())
}

/// One record of the log, as the audit shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub sequence: u64,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: Timestamp,
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    pub stream_id: String,
    pub event_type: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub organization_id: Option<OrganizationId>,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    /// The record's leaf hash, hex.
    pub leaf_hash: String,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(entry: &AuditEntry) -> Self {
        Self {
            sequence: entry.sequence,
            recorded_at: entry.recorded_at,
            occurred_at: entry.occurred_at,
            stream_id: entry.stream_id.clone(),
            event_type: entry.event_type.clone(),
            organization_id: entry.organization_id,
            actor: entry.actor.clone(),
            source_ip: entry.source_ip.clone(),
            leaf_hash: entry.leaf_hash.to_hex(),
        }
    }
}

/// A page of audit entries, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntryView>,
    /// The `cursor` (a sequence) of the next page; `null` on the last.
    pub next_cursor: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_written_as_an_exact_json_number() {
        for (value, text) in [("41300", "41300"), ("3100.25", "3100.25"), ("999.50", "999.5"), ("0", "0")] {
            assert_eq!(number(value.parse().unwrap()).to_string(), text);
        }
    }
}

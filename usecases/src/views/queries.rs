//! The read queries' response shapes: organizations, subscription details,
//! the enforcement check, audit entries.

use chrono::NaiveDate;
use domain::enforcement::Decision;
use domain::{AddonId, OrganizationId, SubscriptionId, Timestamp};
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
    pub limits: Option<Limits>,
    pub current_usage: CurrentUsage,
    pub billing: BillingSummary,
    pub addons: Vec<AddonView>,
    pub sequence: u64,
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

/// The seed's billing summary; invoices arrive with the billing run.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingSummary {
    pub next_billing_date: Option<NaiveDate>,
    pub amount_due: Amount,
    pub payment_method: &'static str,
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

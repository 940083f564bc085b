//! Usage's response shapes: a report's acknowledgement and an
//! organization's month of usage.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use domain::usage::{Metrics, Usage};
use domain::{OrganizationId, Timestamp};
use projections::LedgerState;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// A measured quantity that is not money (gigabytes, hours): its exact
/// decimal text as reported, e.g. `"2400.5"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub Decimal);

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl utoipa::PartialSchema for Quantity {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[0-9]+(\.[0-9]+)?$"))
            .examples([serde_json::json!("2400.5")])
            .description(Some("A decimal quantity, exactly as reported (at most two decimals)."))
            .into()
    }
}

impl ToSchema for Quantity {}

/// The seed's usage metrics: `activeUsers` and `dataVolumeGB` are gauges,
/// `apiCallsCount` and `trainingHours` counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsView {
    pub active_users: u64,
    #[serde(rename = "dataVolumeGB")]
    pub data_volume_gb: Quantity,
    pub api_calls_count: u64,
    pub training_hours: Quantity,
}

impl From<&Metrics> for MetricsView {
    fn from(metrics: &Metrics) -> Self {
        Self {
            active_users: metrics.active_users,
            data_volume_gb: Quantity(metrics.data_volume_gb),
            api_calls_count: metrics.api_calls_count,
            training_hours: Quantity(metrics.training_hours),
        }
    }
}

/// One day's values, summed over the organization's deployments.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    pub day: NaiveDate,
    pub metrics: MetricsView,
}

/// An organization's usage in a month: the month's totals (gauges: the
/// largest day; counts: the sum of the days) and each day's values.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    #[schema(value_type = String, format = Uuid)]
    pub organization_id: OrganizationId,
    /// `YYYY-MM`.
    pub period: String,
    pub total: MetricsView,
    pub days: Vec<UsageDay>,
    /// The read models' sequence the answer was read at.
    pub sequence: u64,
}

impl UsageView {
    /// The organization's usage in the month of `month` (any day of it),
    /// from the read models at `state.sequence`: over all its subscriptions
    /// that month (an upgrade keeps one; a new term after an expiry is
    /// another), each day summed. What `GET /organizations/{id}/usage`
    /// answers and `replay as-of` prints; `None` for an organization not in
    /// `state`.
    pub fn of(state: &LedgerState, organization_id: OrganizationId, month: NaiveDate) -> Option<Self> {
        let entry = state.organizations.get(&organization_id)?;
        let empty = Usage::default();
        let usages = entry.subscriptions.iter().map(|id| state.usage.get(id).unwrap_or(&empty));
        Some(Self::of_usages(organization_id, month, usages, state.sequence))
    }

    /// The organization's usage in the month of `month` from the usage of
    /// each of its subscriptions (holding at least that month), read at
    /// `sequence`: what [`UsageView::of`] answers, from the tables.
    pub fn of_usages<'a>(
        organization_id: OrganizationId,
        month: NaiveDate,
        usages: impl IntoIterator<Item = &'a Usage>,
        sequence: u64,
    ) -> Self {
        let mut days = BTreeMap::<NaiveDate, Metrics>::new();
        for usage in usages {
            for (day, metrics) in usage.month(month).days {
                let merged = days.entry(day).or_default();
                *merged = merged.saturating_add(metrics);
            }
        }
        let total = domain::usage::month_total(days.values());
        Self {
            organization_id,
            period: month.format("%Y-%m").to_string(),
            total: MetricsView::from(&total),
            days: days.iter().map(|(day, metrics)| UsageDay { day: *day, metrics: metrics.into() }).collect(),
            sequence,
        }
    }
}

/// The seed's `UsageReportResponse`, plus `sequence`. Metric names are
/// `users`, `dataVolumeGB` and `apiCalls`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageReportResponse {
    pub acknowledged: bool,
    /// Metrics at or over their limit this month.
    pub warnings_issued: Vec<&'static str>,
    /// Metrics at 80% to under 100% of their limit this month.
    pub limits_approaching: Vec<&'static str>,
    /// The next day, 00:00 UTC.
    #[serde(with = "domain::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub next_report_due: Timestamp,
    /// Where the report was appended.
    pub sequence: u64,
}

//! Usage reports from on-premises deployments, and the usage query.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::NaiveDate;
use domain::lease::DEPLOYMENT_ID_CHARS_MAX;
use domain::license::{KeyState, valid_deployment_id};
use domain::notification::UsageLevel;
use domain::usage::{Metrics, Usage, UsageReported, check};
use domain::{Metadata, OrganizationId};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::command::new_event_id;
use crate::error::ApiError;
use crate::extract::Consistency;

/// The seed's `UsageReportRequest`, plus `deploymentId`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageReport {
    license_key: String,
    #[schema(value_type = Object)]
    metrics: Value,
    reporting_period: String,
    deployment_id: Option<String>,
}

/// A metric as sent: a JSON number or a decimal string, read through its
/// text (never through a float), so "more than two decimals" is judged on
/// what the client wrote.
fn metric(metrics: &Value, name: &'static str) -> Result<(&'static str, Decimal), ApiError> {
    let text = match metrics.get(name) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::Validation(format!("metrics.{name} must be a number"))),
        None => return Err(ApiError::Validation(format!("metrics.{name} is missing"))),
    };
    let value = text.parse::<Decimal>().or_else(|_| Decimal::from_scientific(&text));
    value.map(|v| (name, v)).map_err(|_| ApiError::Validation(format!("metrics.{name} is not a number: {text}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/usage/report",
    tag = "ledger",
    request_body = UsageReport,
    responses(
        (status = 200, description = "The seed's UsageReportResponse plus sequence: acknowledged, warningsIssued (metrics at or over their limit), limitsApproaching (80% to under 100%), nextReportDue."),
        (status = 400, description = "validation_failed: negative numbers, more than two decimals, a day more than one day ahead or before the subscription; nothing is recorded"),
        (status = 404, description = "not_found: not a known license key"),
        (status = 409, description = "license_not_valid: the key is revoked, or its subscription did not cover the reported day (an ended subscription still takes reports for the days it covered)"),
    ),
)]
pub async fn report(State(state): State<AppState>, request: axum::extract::Request) -> Result<Json<Value>, ApiError> {
    let body = axum::body::to_bytes(request.into_body(), crate::extract::REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(crate::extract::REQUEST_BODY_BYTES_MAX))?;
    let report: UsageReport =
        serde_json::from_slice(&body).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?;
    let deployment_id = report.deployment_id.unwrap_or_else(|| "default".into());
    valid_deployment_id(&deployment_id).map_err(|_| {
        ApiError::Validation(format!("deploymentId must be 1 to {DEPLOYMENT_ID_CHARS_MAX} visible ASCII characters"))
    })?;
    let day = strict_day(&report.reporting_period)?;
    let values = [
        metric(&report.metrics, "activeUsers")?,
        metric(&report.metrics, "dataVolumeGB")?,
        metric(&report.metrics, "apiCallsCount")?,
        metric(&report.metrics, "trainingHours")?,
    ];
    let (license_id, _) = super::license::known_license(&state, &report.license_key).await.ok_or(ApiError::NotFound)?;
    let (now, today) = (state.now(), state.today());
    let (subscription_id, subscription, usage) = {
        let ledger = state.projections.read().await;
        let license = ledger.licenses.get(&license_id).ok_or(ApiError::NotFound)?;
        let issued = license.issued.as_ref().ok_or(ApiError::NotFound)?;
        let subscription = ledger.subscriptions.get(&issued.subscription_id).ok_or(ApiError::NotFound)?;
        // A subscription that has ended still takes reports for the days it
        // covered: late usage is billed as an adjustment (BILLING-RULES.md).
        if license.state_at(now) == KeyState::Revoked || subscription.status_on(day).is_ended() {
            return Err(ApiError::conflict(
                "license_not_valid",
                "the key is revoked, or its subscription did not cover the reported day",
            ));
        }
        // Only the reported month's days are needed for the answer.
        let usage = ledger.usage.get(&issued.subscription_id).map(|u| u.of_month(day)).unwrap_or_default();
        (issued.subscription_id, subscription.clone(), usage)
    };
    let start = subscription.start_date.ok_or(ApiError::NotFound)?;
    let metrics = check(values, day, today, start).map_err(|e| ApiError::Validation(e.to_string()))?;
    let reported = UsageReported { subscription_id, license_id, deployment_id, day, metrics };
    let event = domain::usage::UsageEvent::from(reported.clone());
    let metadata = Metadata { actor: Some(format!("license:{license_id}")), ..Metadata::default() };
    let command = Command {
        stream_id: domain::usage::stream(subscription_id, day),
        // Reports never conflict: the latest for a day and deployment wins.
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, &metadata)],
    };
    let appended = state.log.append_one(command).await?.map_err(|e| ApiError::Internal(e.to_string()))?;

    // Limits as of the reported day, against the month with this report.
    let mut usage = usage;
    usage.apply(&reported);
    let month = usage.month(day).total;
    // The same rule as the usage warnings e-mailed (`notify`).
    let (mut approaching, mut warnings) = (Vec::new(), Vec::new());
    if let Some((spec, extra_gb)) = super::queries::effective_spec(&state, &subscription, day) {
        for check in domain::notification::usage_levels(&month, spec, extra_gb) {
            match check.level {
                UsageLevel::Reached => warnings.push(check.metric.as_str()),
                UsageLevel::Approaching => approaching.push(check.metric.as_str()),
            }
        }
    }
    let next_due = today.succ_opt().expect("dates stay far from the end of time");
    Ok(Json(json!({
        "acknowledged": true,
        "warningsIssued": warnings,
        "limitsApproaching": approaching,
        "nextReportDue": format!("{next_due}T00:00:00Z"),
        "sequence": appended.last_sequence,
    })))
}

fn strict_day(text: &str) -> Result<NaiveDate, ApiError> {
    let value = serde_json::Value::String(text.to_owned());
    crate::extract::date(value).map_err(|e: serde_json::Error| ApiError::Validation(format!("reportingPeriod: {e}")))
}

#[derive(Deserialize)]
pub struct Period {
    period: Option<String>,
}

fn metrics_json(metrics: &Metrics) -> Value {
    json!({
        "activeUsers": metrics.active_users,
        "dataVolumeGB": metrics.data_volume_gb.to_string(),
        "apiCallsCount": metrics.api_calls_count,
        "trainingHours": metrics.training_hours.to_string(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/usage",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID"), ("period" = String, Query, description = "YYYY-MM; this month by default")),
    responses(
        (status = 200, description = "Month totals (gauges: the largest day; counts: the sum) and per-day values per metric."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
    Query(query): Query<Period>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = OrganizationId(org_id);
    caller.require_org(organization_id, Need::Read)?;
    let month = match &query.period {
        Some(period) => NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| period.len() == 7)
            .ok_or_else(|| ApiError::Validation("period is YYYY-MM".into()))?,
        None => domain::calendar::first_of_month(state.today()),
    };
    let ledger = state.projections.read().await;
    let entry = ledger.organizations.get(&organization_id).ok_or(ApiError::NotFound)?;
    let empty = Usage::default();
    // All of the organization's subscriptions that month (an upgrade keeps
    // one; a new term after an expiry is another).
    let mut days = std::collections::BTreeMap::<NaiveDate, Metrics>::new();
    for id in &entry.subscriptions {
        for (day, metrics) in ledger.usage.get(id).unwrap_or(&empty).month(month).days {
            let merged = days.entry(day).or_default();
            *merged = *merged + metrics;
        }
    }
    let total = domain::usage::month_total(days.values());
    let days: Vec<Value> = days.iter().map(|(day, m)| json!({ "day": day, "metrics": metrics_json(m) })).collect();
    Ok(Json(json!({
        "organizationId": organization_id,
        "period": format!("{}", month.format("%Y-%m")),
        "total": metrics_json(&total),
        "days": days,
        "sequence": ledger.sequence,
    })))
}

//! Usage reports from on-premises deployments, and the usage query: the
//! HTTP side of `usecases::usage` (reading a report's JSON numbers from
//! their text).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use domain::OrganizationId;
use domain::usage::parse_metric;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use usecases::usage::UsageReportInput;
use usecases::views::usage::{UsageReportResponse, UsageView};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Consistency, REQUEST_BODY_BYTES_MAX};
use crate::openapi::{Problem, ProblemResponses, PublicProblemResponses};

/// The seed's `UsageReportRequest`, plus `deploymentId`. The metrics are
/// kept as their JSON text.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageReport {
    license_key: String,
    #[schema(value_type = Object)]
    metrics: Box<RawValue>,
    #[schema(format = Date)]
    reporting_period: String,
    #[schema(min_length = 1, max_length = 128)]
    deployment_id: Option<String>,
}

/// A metric as sent: a JSON number or a decimal string, read from its text
/// (never through a float), so `1e-400` is not taken for 0 and "more than
/// two decimals" is judged on what the client wrote.
fn metric(metrics: &BTreeMap<String, Box<RawValue>>, name: &'static str) -> Result<(&'static str, Decimal), ApiError> {
    let text = metrics.get(name).map(|value| value.get());
    let text = match text {
        None => return Err(ApiError::Validation(format!("metrics.{name} is missing"))),
        Some(text) if text.starts_with('"') => serde_json::from_str::<String>(text)
            .map_err(|_| ApiError::Validation(format!("metrics.{name} is not a number")))?,
        Some(text) if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => text.to_owned(),
        Some(_) => return Err(ApiError::Validation(format!("metrics.{name} must be a number"))),
    };
    let value = parse_metric(name, &text).map_err(|e| ApiError::Validation(format!("metrics.{e}")))?;
    Ok((name, value))
}

/// A report from its JSON body.
fn input(body: &[u8]) -> Result<UsageReportInput, ApiError> {
    let report: UsageReport =
        serde_json::from_slice(body).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?;
    let day = crate::extract::date(serde_json::Value::String(report.reporting_period))
        .map_err(|e: serde_json::Error| ApiError::Validation(format!("reportingPeriod: {e}")))?;
    let metrics: BTreeMap<String, Box<RawValue>> = serde_json::from_str(report.metrics.get())
        .map_err(|_| ApiError::Validation("metrics must be an object".into()))?;
    let values = [
        metric(&metrics, "activeUsers")?,
        metric(&metrics, "dataVolumeGB")?,
        metric(&metrics, "apiCallsCount")?,
        metric(&metrics, "trainingHours")?,
    ];
    Ok(UsageReportInput { license_key: report.license_key, deployment_id: report.deployment_id, day, values })
}

#[utoipa::path(
    post,
    path = "/api/v1/usage/report",
    tag = "ledger",
    request_body = UsageReport,
    responses(
        (status = 200, body = UsageReportResponse, description = "The seed's UsageReportResponse plus sequence: acknowledged, warningsIssued (metrics at or over their limit), limitsApproaching (80% to under 100%), nextReportDue."),
        PublicProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "validation_failed: negative numbers, more than two decimals, more than 10^12, a day more than one day ahead or before the subscription; nothing is recorded"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not_found: not a known license key"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "license_not_valid: the key is revoked, or its subscription did not cover the reported day (an ended subscription still takes reports for the days it covered); deployment_not_activated: the deployment has not validated the key; correction_window_closed: the day is more than --usage-correction-days-max (35) days back"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited, with Retry-After; `limit` names the limit: reports_per_key_per_minute (the key's reports a minute are used up: retry after Retry-After), or reports_per_day (the subscription's reports for the reported day are used up: a report for that day is refused from now on)"),
    ),
)]
pub async fn report(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Json<UsageReportResponse>, ApiError> {
    let body = axum::body::to_bytes(request.into_body(), REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(REQUEST_BODY_BYTES_MAX))?;
    let started = std::time::Instant::now();
    let answer = match input(&body) {
        Ok(input) => usecases::usage::report(&state, &state.usage, input).await.map_err(ApiError::from),
        Err(error) => Err(error),
    };
    state.metrics.usage_report_processing.observe(started.elapsed().as_secs_f64());
    Ok(Json(answer?))
}

#[derive(Deserialize)]
pub struct Period {
    period: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/usage",
    tag = "ledger",
    params(("org_id" = Uuid, Path, description = "UUID"), ("period" = Option<String>, Query, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$", description = "YYYY-MM; this month by default")),
    responses(
        (status = 200, body = UsageView, description = "Month totals (gauges: the largest day; counts: the sum) and per-day values per metric."),
        ProblemResponses,
    ),
)]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
    Query(query): Query<Period>,
) -> Result<Json<UsageView>, ApiError> {
    Ok(Json(usecases::usage::usage(&state, &caller, OrganizationId(org_id), query.period.as_deref()).await?))
}

//! Usage reports from on-premises deployments, and the usage query.
//!
//! A report is refused, appending nothing, unless its key is known and
//! valid, its deployment is one the key activated (as validation does), the
//! key is within its rate (`--usage-reports-per-key-per-minute`, in memory,
//! per server process) and the subscription's reports for the reported day
//! are below their cap (`--usage-reports-per-day-max`, counted from the log:
//! a day's reports are one stream, appended with `ExpectedRevision::Below`,
//! exactly like a key's validations of a day).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use domain::lease::DEPLOYMENT_ID_CHARS_MAX;
use domain::license::{KeyState, License, valid_deployment_id};
use domain::notification::UsageLevel;
use domain::subscription::Subscription;
use domain::usage::{Metrics, Usage, UsageError, UsageReported, check, parse_metric};
use domain::{LicenseId, Metadata, OrganizationId, SubscriptionId};
use governor::{DefaultKeyedRateLimiter, Quota};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::command::new_event_id;
use crate::error::ApiError;
use crate::extract::Consistency;

/// License keys the per-key limiter tracks at once, at most. Only keys the
/// server issued reach it (an unknown key is refused before), and a key is
/// forgotten a minute after its last report, so this is the number of keys
/// reporting within one minute: far above a vendor's customers' deployments
/// (a few thousand), and about 10 MB at most. Past it, reports are refused
/// until idle keys are forgotten, so memory never grows with callers.
pub const USAGE_LIMITER_KEYS_MAX: usize = 100_000;
/// How often idle keys are forgotten: once a minute, the limiter's period,
/// or at once (at most once a second) when the map is full.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(60);
const LIMITER_SWEEP_FULL_EVERY: Duration = Duration::from_secs(1);

/// The limits on usage reports (README, "Usage reports").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSettings {
    /// Reports one license key may send a minute, on each server process;
    /// 0 turns the limit off (benchmarks).
    pub reports_per_key_per_minute: u32,
    /// Reports one subscription may make for one reported day, counted from
    /// the log (at least 1).
    pub reports_per_day_max: u64,
    /// How many days back a report may correct usage.
    pub correction_days_max: u32,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            reports_per_key_per_minute: 60,
            reports_per_day_max: domain::usage::REPORTS_PER_DAY_DEFAULT,
            correction_days_max: domain::usage::CORRECTION_DAYS_DEFAULT,
        }
    }
}

/// The usage route's settings and its per-key rate limiter.
pub struct UsageIntake {
    pub settings: UsageSettings,
    limiter: Option<DefaultKeyedRateLimiter<LicenseId>>,
    last_sweep: Mutex<Instant>,
}

impl UsageIntake {
    pub fn new(settings: UsageSettings) -> Self {
        let limiter = std::num::NonZeroU32::new(settings.reports_per_key_per_minute)
            .map(|n| governor::RateLimiter::keyed(Quota::per_minute(n)));
        Self { settings, limiter, last_sweep: Mutex::new(Instant::now()) }
    }

    /// `Err(seconds to wait)` when the key is over its rate.
    fn check_rate(&self, key: LicenseId) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let full = limiter.len() >= USAGE_LIMITER_KEYS_MAX;
        self.sweep(limiter, if full { LIMITER_SWEEP_FULL_EVERY } else { LIMITER_SWEEP_EVERY });
        if full && limiter.len() >= USAGE_LIMITER_KEYS_MAX {
            return Err(LIMITER_SWEEP_EVERY.as_secs());
        }
        limiter.check_key(&key).map_err(|not_until| {
            let clock = governor::clock::DefaultClock::default();
            not_until.wait_time_from(governor::clock::Clock::now(&clock)).as_secs().max(1)
        })
    }

    /// Forgets the keys whose limit is full again (idle for a minute), when
    /// `every` has passed since the last sweep; one request sweeps at a time.
    fn sweep(&self, limiter: &DefaultKeyedRateLimiter<LicenseId>, every: Duration) {
        let Ok(mut last) = self.last_sweep.try_lock() else { return };
        if last.elapsed() >= every {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            *last = Instant::now();
        }
    }
}

/// The seed's `UsageReportRequest`, plus `deploymentId`. The metrics are
/// kept as their JSON text.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageReport {
    license_key: String,
    #[schema(value_type = Object)]
    metrics: Box<RawValue>,
    reporting_period: String,
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

/// What a report asks, checked for shape (before anything is looked up).
struct Asked {
    key: String,
    deployment_id: String,
    day: NaiveDate,
    values: [(&'static str, Decimal); 4],
}

fn asked(body: &[u8]) -> Result<Asked, ApiError> {
    let report: UsageReport =
        serde_json::from_slice(body).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?;
    let deployment_id = report.deployment_id.unwrap_or_else(|| "default".into());
    valid_deployment_id(&deployment_id).map_err(|_| {
        ApiError::Validation(format!("deploymentId must be 1 to {DEPLOYMENT_ID_CHARS_MAX} visible ASCII characters"))
    })?;
    let day = strict_day(&report.reporting_period)?;
    let metrics: BTreeMap<String, Box<RawValue>> = serde_json::from_str(report.metrics.get())
        .map_err(|_| ApiError::Validation("metrics must be an object".into()))?;
    let values = [
        metric(&metrics, "activeUsers")?,
        metric(&metrics, "dataVolumeGB")?,
        metric(&metrics, "apiCallsCount")?,
        metric(&metrics, "trainingHours")?,
    ];
    Ok(Asked { key: report.license_key, deployment_id, day, values })
}

/// A 429 `rate_limited` with `Retry-After`.
fn too_many(retry_after_seconds: u64, message: String) -> Response {
    ApiError::RateLimited { retry_after_seconds, message }.into_response()
}

/// Whether `deployment_id` is a deployment the key activated (validation
/// activates it; a release ends it).
fn deployment_is_active(license: &License, deployment_id: &str) -> bool {
    license.deployments.contains(deployment_id)
}

/// The key's subscription and its month of usage from the read model,
/// refusing a revoked key, a day its subscription did not cover, and a
/// deployment the key has not activated.
async fn reported_for(
    state: &AppState,
    license_id: LicenseId,
    asked: &Asked,
) -> Result<(SubscriptionId, Subscription, Usage), ApiError> {
    let (active, found) = {
        let ledger = state.projections.read().await;
        let license = ledger.licenses.get(&license_id).ok_or(ApiError::NotFound)?;
        let issued = license.issued.as_ref().ok_or(ApiError::NotFound)?;
        let subscription = ledger.subscriptions.get(&issued.subscription_id).ok_or(ApiError::NotFound)?;
        // A subscription that has ended still takes reports for the days it
        // covered: late usage is billed as an adjustment (BILLING-RULES.md).
        if license.state_at(state.now()) == KeyState::Revoked || subscription.status_on(asked.day).is_ended() {
            return Err(ApiError::conflict(
                "license_not_valid",
                "the key is revoked, or its subscription did not cover the reported day",
            ));
        }
        // Only the reported month's days are needed for the answer.
        let usage = ledger.usage.get(&issued.subscription_id).map(|u| u.of_month(asked.day)).unwrap_or_default();
        (deployment_is_active(license, &asked.deployment_id), (issued.subscription_id, subscription.clone(), usage))
    };
    // The read model may not include a validation that just activated the
    // deployment (another process's, or one a moment ago): the key's own
    // stream decides. Unknown deployments are rate-limited before this.
    if !active {
        let license = crate::command::load::<License>(state, license_id.stream()).await?;
        if !deployment_is_active(&license.state, &asked.deployment_id) {
            return Err(ApiError::conflict(
                "deployment_not_activated",
                format!(
                    "deployment {:?} has not validated this key: validate it first (POST /api/v1/license/validate)",
                    asked.deployment_id
                ),
            ));
        }
    }
    Ok(found)
}

fn usage_refusal(error: UsageError) -> ApiError {
    match error {
        UsageError::TooOld { .. } => ApiError::conflict("correction_window_closed", error),
        other => ApiError::Validation(other.to_string()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/usage/report",
    tag = "ledger",
    request_body = UsageReport,
    responses(
        (status = 200, description = "The seed's UsageReportResponse plus sequence: acknowledged, warningsIssued (metrics at or over their limit), limitsApproaching (80% to under 100%), nextReportDue."),
        (status = 400, description = "validation_failed: negative numbers, more than two decimals, more than 10^12, a day more than one day ahead or before the subscription; nothing is recorded"),
        (status = 404, description = "not_found: not a known license key"),
        (status = 409, description = "license_not_valid: the key is revoked, or its subscription did not cover the reported day (an ended subscription still takes reports for the days it covered); deployment_not_activated: the deployment has not validated the key; correction_window_closed: the day is more than --usage-correction-days-max (35) days back"),
        (status = 429, description = "rate_limited, with Retry-After: the key's reports a minute, or the subscription's reports for the reported day, are used up"),
    ),
)]
pub async fn report(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let body = axum::body::to_bytes(request.into_body(), crate::extract::REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(crate::extract::REQUEST_BODY_BYTES_MAX))?;
    let asked = asked(&body)?;
    let (license_id, _) = super::license::known_license(&state, &asked.key).await.ok_or(ApiError::NotFound)?;
    let settings = state.usage.settings;
    if let Err(seconds) = state.usage.check_rate(license_id) {
        let detail = format!("this key may report {} times a minute", settings.reports_per_key_per_minute);
        return Ok(too_many(seconds, detail));
    }
    let (subscription_id, subscription, mut usage) = reported_for(&state, license_id, &asked).await?;
    let (now, today) = (state.now(), state.today());
    let start = subscription.start_date.ok_or(ApiError::NotFound)?;
    let metrics = check(asked.values, asked.day, today, start, settings.correction_days_max).map_err(usage_refusal)?;
    let (day, deployment_id) = (asked.day, asked.deployment_id);
    let reported = UsageReported { subscription_id, license_id, deployment_id, day, metrics };
    let event = domain::usage::UsageEvent::from(reported.clone());
    let metadata = Metadata { actor: Some(format!("license:{license_id}")), ..Metadata::default() };
    let stream_id = domain::usage::stream(subscription_id, day);
    let command = Command {
        stream_id: stream_id.clone(),
        // The day's cap holds exactly, across processes and restarts (the
        // writer checks it in order), and reports never conflict otherwise:
        // the latest for a day and deployment wins.
        expected: ExpectedRevision::Below(settings.reports_per_day_max),
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, &metadata)],
    };
    let appended = match state.log.append_one(command).await? {
        Ok(appended) => appended,
        Err(Rejection::WrongRevision { .. }) => {
            let midnight =
                domain::license::start_of_day(today.succ_opt().expect("dates stay far from the end of time"));
            let seconds = ((midnight.as_micros() - now.as_micros()) / 1_000_000).max(1) as u64;
            let detail = format!(
                "{day} has had its {} reports for this subscription; reports for it are refused from now on",
                settings.reports_per_day_max
            );
            return Ok(too_many(seconds, detail));
        }
        Err(other) => return Err(ApiError::Internal(other.to_string())),
    };
    usage.apply(&reported, appended.last_sequence);
    Ok(Json(answer(&state, &subscription, &usage, day, today, appended.last_sequence)).into_response())
}

/// The seed's `UsageReportResponse`: limits as of the reported day, against
/// the month with this report, by the same rule as the usage warnings
/// e-mailed (`notify`).
fn answer(
    state: &AppState,
    subscription: &Subscription,
    usage: &Usage,
    day: NaiveDate,
    today: NaiveDate,
    sequence: u64,
) -> Value {
    let month = usage.month(day).total;
    let (mut approaching, mut warnings) = (Vec::new(), Vec::new());
    if let Some((spec, extra_gb)) = super::queries::effective_spec(state, subscription, day) {
        for check in domain::notification::usage_levels(&month, spec, extra_gb) {
            match check.level {
                UsageLevel::Reached => warnings.push(check.metric.as_str()),
                UsageLevel::Approaching => approaching.push(check.metric.as_str()),
            }
        }
    }
    let next_due = today.succ_opt().expect("dates stay far from the end of time");
    json!({
        "acknowledged": true,
        "warningsIssued": warnings,
        "limitsApproaching": approaching,
        "nextReportDue": format!("{next_due}T00:00:00Z"),
        "sequence": sequence,
    })
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
            *merged = merged.saturating_add(metrics);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> LicenseId {
        LicenseId(Uuid::from_u128(n))
    }

    #[test]
    fn the_per_key_limit_holds_per_key() {
        let intake = UsageIntake::new(UsageSettings { reports_per_key_per_minute: 2, ..UsageSettings::default() });
        assert_eq!((intake.check_rate(key(1)), intake.check_rate(key(1))), (Ok(()), Ok(())));
        let wait = intake.check_rate(key(1)).unwrap_err();
        assert!((1..=30).contains(&wait), "a refill every 30 s: {wait}");
        assert_eq!(intake.check_rate(key(2)), Ok(()), "another key is not held back");
        let off = UsageIntake::new(UsageSettings { reports_per_key_per_minute: 0, ..UsageSettings::default() });
        assert!((0..100).all(|_| off.check_rate(key(1)).is_ok()));
    }

    /// Memory never grows with the number of keys: past the bound, a new
    /// key waits until idle keys are forgotten.
    #[test]
    fn the_limiter_tracks_a_bounded_number_of_keys() {
        let intake = UsageIntake::new(UsageSettings::default());
        for n in 0..USAGE_LIMITER_KEYS_MAX as u128 {
            assert_eq!(intake.check_rate(key(n)), Ok(()));
        }
        let refused = intake.check_rate(key(u128::MAX));
        assert_eq!(refused, Err(LIMITER_SWEEP_EVERY.as_secs()));
        assert_eq!(intake.limiter.as_ref().unwrap().len(), USAGE_LIMITER_KEYS_MAX);
    }
}

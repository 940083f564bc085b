//! Health, readiness, metrics, the log head, public keys and the test clock.

use std::sync::atomic::AtomicU64;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use usecases::ops;
use usecases::views::ops::{ClockMoved, Health, PublicKeys, Readiness};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::{Problem, ProblemResponses};

#[utoipa::path(
    get,
    path = "/health",
    tag = "ledger",
    responses(
        (status = 200, body = Health, description = "Liveness."),
    ),
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Whether the request may see the server's figures (the log head, what
/// the read models applied, why they stopped, the metrics): the operator,
/// the auditor, or the metrics token. Organizations' tokens may not.
fn may_see_figures(state: &AppState, headers: &HeaderMap, caller: Result<Caller, ApiError>) -> Result<(), ApiError> {
    match crate::auth::bearer(headers) {
        Some(token) if state.edge.is_metrics_token(token) => Ok(()),
        _ => Ok(caller?.require(domain::staff::StaffPermission::Audit)?),
    }
}

/// Ready when the database answers and the read models have caught up
/// with the log (and have not stopped). Public, for load balancers, with
/// the status only; the figures need a token that may see them.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "ledger",
    responses(
        (status = 200, body = Readiness, description = "Ready: the database answers and the read models have caught up. `status`; with the operator's, the auditor's or the metrics token also `head`, `applied` (and why read models stopped)."),
        (status = 503, body = Readiness, description = "Not ready (the same shape): the database does not answer, the read models are catching up or stopped."),
    ),
)]
pub async fn ready(State(state): State<AppState>, headers: HeaderMap, caller: Result<Caller, ApiError>) -> Response {
    let figures = may_see_figures(&state, &headers, caller).is_ok();
    let readiness = ops::readiness(&state).await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = if figures { readiness } else { readiness.without_figures() };
    (status, Json(body)).into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimiterLabel {
    limiter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabel {
    projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabel {
    outbox: &'static str,
}

/// Prometheus text format, for the operator, the auditor or the metrics
/// token (`LEDGER_METRICS_TOKEN`); with `--metrics-listen`, served there
/// instead (404 here). Gauges are computed from the read models at scrape
/// time, so every process reports the same numbers.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ledger",
    responses(
        (status = 200, content_type = "application/openmetrics-text", body = String, description = "Prometheus metrics, including active_subscriptions_total{tier} (operator, auditor or the metrics token; with --metrics-listen, served there and 404 here)."),
        ProblemResponses,
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not_found: served on --metrics-listen"),
    ),
)]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    if state.edge.metrics_elsewhere() {
        return Err(ApiError::NotFound);
    }
    may_see_figures(&state, &headers, caller)?;
    render_metrics(&state).await
}

/// The router of `--metrics-listen`: `GET /metrics` without a token (the
/// address is the operator's to keep private), nothing else.
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { render_metrics(&state).await }),
        )
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn(crate::transport::problems))
        .with_state(state)
}

async fn render_metrics(state: &AppState) -> Result<Response, ApiError> {
    let mut registry = Registry::default();
    register_counters(&mut registry, state);
    register_figures(&mut registry, &usecases::figures::figures(state).await);
    let active = Family::<TierLabel, Gauge>::default();
    registry.register("active_subscriptions_total", "Subscriptions active today, by tier", active.clone());
    // Read from the tables: left out while the database does not answer.
    if let Ok(counts) = usecases::metrics::active_subscriptions(state).await {
        for (tier, count) in counts {
            active.get_or_create(&TierLabel { tier: tier.as_str().into() }).set(count);
        }
    }
    let applied = Gauge::<i64>::default();
    registry.register("ledger_projection_sequence", "The last sequence the read models include", applied.clone());
    applied.set(state.models.applied() as i64);
    let acknowledged = Gauge::<i64>::default();
    registry.register(
        "ledger_acknowledged_credentials",
        "Credentials whose last acknowledged sequence this node remembers (read-your-writes; bounded)",
        acknowledged.clone(),
    );
    acknowledged.set(state.acknowledged.len() as i64);
    register_limiters(&mut registry, state);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

/// This process's counters and histograms (kept as events happen).
fn register_counters(registry: &mut Registry, state: &AppState) {
    let metrics = &state.metrics;
    registry.register(
        "license_validations",
        "License validations answered, by code (or malformed, rate_limited) and tier",
        metrics.license_validations.clone(),
    );
    registry.register(
        "notifications",
        "Notification e-mails by kind and outcome (sent, skipped, failed attempts), by this process",
        metrics.notifications.clone(),
    );
    registry.register(
        "usage_report_processing_seconds",
        "Time spent processing usage reports, from the body read to the answer",
        metrics.usage_report_processing.clone(),
    );
    registry.register(
        "ledger_http_request_duration_seconds",
        "HTTP requests by method, route template and status class, and how long they took",
        metrics.http_requests.clone(),
    );
    registry.register(
        "ledger_billing_run_duration_seconds",
        "Billing runs (not previews) this process ran, and how long they took",
        metrics.billing_run_seconds.clone(),
    );
    registry.register(
        "ledger_billing_run_failures",
        "Billing runs that failed or left invoices unissued",
        metrics.billing_run_failures.clone(),
    );
    let log = state.log.metrics();
    registry.register(
        "ledger_append_duration_seconds",
        "Appends to the log, from the call to the answer (queue wait and commit)",
        log.append_seconds.clone(),
    );
    registry.register(
        "ledger_append_batch_events",
        "Events per group commit of the log's writer",
        log.batch_events.clone(),
    );
    registry.register(
        "ledger_append_errors",
        "Appends answered with an error (not a refusal)",
        log.append_errors.clone(),
    );
}

/// What is read at scrape time (`usecases::figures`).
fn register_figures(registry: &mut Registry, figures: &usecases::figures::Figures) {
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    };
    gauge(registry, "ledger_up", "1 when the log's database answers, else 0", i64::from(figures.up));
    gauge(registry, "ledger_ready", "1 when /ready answers 200, else 0", i64::from(figures.ready));
    if let Some(head) = figures.head {
        gauge(registry, "ledger_log_head_sequence", "The last sequence of the log", head as i64);
    }
    gauge(
        registry,
        "ledger_writer_queue_depth",
        "Append requests waiting for the log's writer",
        figures.writer_queue_depth as i64,
    );
    seconds(
        registry,
        "ledger_read_models_behind_seconds",
        "How long the read models have been behind a head this node saw",
        Some(figures.behind),
    );
    let lag = Family::<ProjectionLabel, Gauge>::default();
    registry.register(
        "ledger_projection_lag_events",
        "Records the log has past each projection's checkpoint",
        lag.clone(),
    );
    for (projection, behind) in &figures.projection_lag {
        lag.get_or_create(&ProjectionLabel { projection: projection.clone() }).set(*behind as i64);
    }
    let backlog = Family::<OutboxLabel, Gauge>::default();
    registry.register("ledger_outbox_backlog_items", "Items an outbox has waiting (capped at 100000)", backlog.clone());
    let oldest = Family::<OutboxLabel, Gauge<f64, AtomicU64>>::default();
    registry.register(
        "ledger_outbox_oldest_age_seconds",
        "Age of an outbox's oldest waiting item (0 when none waits)",
        oldest.clone(),
    );
    for (outbox, items, age) in &figures.outboxes {
        backlog.get_or_create(&OutboxLabel { outbox }).set(*items as i64);
        oldest.get_or_create(&OutboxLabel { outbox }).set(age.as_secs_f64());
    }
    let (age, uncovered) = figures.checkpoint.map_or((None, None), |(age, uncovered)| (Some(age), Some(uncovered)));
    seconds(registry, "ledger_checkpoint_age_seconds", "Age of the latest signed checkpoint kept in the log", age);
    if let Some(uncovered) = uncovered {
        gauge(
            registry,
            "ledger_checkpoint_uncovered_records",
            "Records the log has past the latest signed checkpoint",
            uncovered as i64,
        );
    }
    seconds(
        registry,
        "ledger_scheduler_lag_seconds",
        "Since the scheduler last finished a tick (on the leader)",
        figures.scheduler_lag,
    );
}

/// A gauge in seconds, registered only when there is a value.
fn seconds(registry: &mut Registry, name: &str, help: &str, value: Option<std::time::Duration>) {
    if let Some(value) = value {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(value.as_secs_f64());
        registry.register(name, help, gauge);
    }
}

/// The rate limiters' entries and refusals.
fn register_limiters(registry: &mut Registry, state: &AppState) {
    let limiter_keys = Family::<LimiterLabel, Gauge>::default();
    registry.register(
        "ledger_rate_limiter_keys",
        "Entries held by an in-memory rate limiter (client addresses or licenses seen lately)",
        limiter_keys.clone(),
    );
    let refusals = Family::<LimiterLabel, Counter>::default();
    registry.register("ledger_rate_limit_refusals", "Requests a rate limiter refused, by limiter", refusals.clone());
    let (address_limiter, usage_limiter) = (state.address_limiter.limiter(), state.usage.limiter());
    let own = [(address_limiter.name(), address_limiter.len()), (usage_limiter.name(), usage_limiter.len())];
    for (name, len) in state.edge.limiters().into_iter().chain(own) {
        limiter_keys.get_or_create(&LimiterLabel { limiter: name.into() }).set(len as i64);
    }
    let own = [(address_limiter.name(), address_limiter.refusals()), (usage_limiter.name(), usage_limiter.refusals())];
    for (name, refused) in state.edge.refusals().into_iter().chain(own) {
        refusals.get_or_create(&LimiterLabel { limiter: name.into() }).inc_by(refused);
    }
}

/// The server's public keys; no credential needed.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "ledger",
    responses(
        (status = 200, body = PublicKeys, description = "The server's Ed25519 public keys for license keys, leases and checkpoints; no credential. `leases.nextSignature` (when `leases.next` is set) is the current lease key's signature over `ledger 2026-11-29 next lease key v1\\0` ‖ current key ‖ next key."),
    ),
)]
pub async fn keys(State(state): State<AppState>) -> Json<PublicKeys> {
    Json(ops::public_keys(&state))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveClock {
    /// RFC 3339.
    #[schema(format = DateTime)]
    now: String,
}

/// Moves the manual test clock forward (operator only). The route exists in
/// manual mode only; the router does not mount it otherwise.
#[utoipa::path(
    post,
    path = "/api/v1/test-clock",
    tag = "ledger",
    request_body = MoveClock,
    responses(
        (status = 200, body = ClockMoved, description = "Move the manual test clock forward (operator; only with --clock manual:…)."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "clock_backwards: the test clock only moves forward"),
    ),
)]
pub async fn test_clock(
    State(state): State<AppState>,
    request: crate::extract::CommandRequest<MoveClock>,
) -> Result<Json<ClockMoved>, ApiError> {
    Ok(Json(ops::move_clock(&state, &request.caller, &request.body.now)?))
}

//! Health, readiness, metrics, the log head, public keys and the test clock.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
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
        _ => Ok(caller?.require_vendor()?),
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
    let active = Family::<TierLabel, Gauge>::default();
    registry.register("active_subscriptions_total", "Subscriptions active today, by tier", active.clone());
    let head = Gauge::<i64>::default();
    registry.register("ledger_log_head_sequence", "The last sequence of the log", head.clone());
    let applied = Gauge::<i64>::default();
    registry.register("ledger_projection_sequence", "The last sequence the read models include", applied.clone());
    registry.register(
        "license_validations",
        "License validations answered, by code (or malformed, rate_limited) and tier",
        state.metrics.license_validations.clone(),
    );
    registry.register(
        "notifications",
        "Notification e-mails by kind and outcome (sent, skipped, failed attempts), by this process",
        state.metrics.notifications.clone(),
    );
    let acknowledged = Gauge::<i64>::default();
    registry.register(
        "ledger_acknowledged_credentials",
        "Credentials whose last acknowledged sequence this node remembers (read-your-writes; bounded)",
        acknowledged.clone(),
    );
    acknowledged.set(state.acknowledged.len() as i64);
    let limiter_keys = Family::<LimiterLabel, Gauge>::default();
    registry.register(
        "ledger_rate_limiter_keys",
        "Entries held by an in-memory rate limiter (client addresses or licenses seen lately)",
        limiter_keys.clone(),
    );
    let limiters = state.edge.limiters();
    let (address_limiter, usage_limiter) = (state.address_limiter.limiter(), state.usage.limiter());
    let own = [(address_limiter.name(), address_limiter.len()), (usage_limiter.name(), usage_limiter.len())];
    for (name, len) in limiters.into_iter().chain(own) {
        limiter_keys.get_or_create(&LimiterLabel { limiter: name.into() }).set(len as i64);
    }
    for (tier, count) in usecases::metrics::active_subscriptions(state).await? {
        active.get_or_create(&TierLabel { tier: tier.as_str().into() }).set(count);
    }
    applied.set(state.models.applied() as i64);
    head.set(state.log.head().await?.sequence as i64);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
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

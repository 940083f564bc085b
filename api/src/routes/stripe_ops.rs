//! The billing team's Stripe operations (issue 15 item 2):
//! `GET /api/v1/stripe/syncs` (refused and stuck syncs),
//! `POST /api/v1/stripe/syncs/{target}/retry` and
//! `GET /api/v1/stripe/reconciliation?period=YYYY-MM` (JSON or CSV), all
//! through `usecases::stripe::ops`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::staff::StaffPermission;
use serde::Deserialize;
use usecases::stripe::ops::{self, Reconciliation, SyncRetry, SyncsPage};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{CommandRequest, Consistency};
use crate::openapi::{Problem, ProblemResponses};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncsQuery {
    after: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/stripe/syncs",
    tag = "ledger",
    params(
        ("after" = Option<String>, Query, description = "The `next` of the previous page: targets after it"),
        ("limit" = Option<usize>, Query, description = "At most this many of each list (1 to 200, default 50)"),
    ),
    responses(
        (status = 200, body = SyncsPage, description = "The syncs Stripe refused for good (target, status, reason, when) and the invoices waiting for Stripe longer than `stuckAfterSeconds` (since when, and the sync's last error when this node syncs), each by target (billing)."),
        ProblemResponses,
    ),
)]
pub async fn syncs(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<SyncsQuery>,
) -> Result<Json<SyncsPage>, ApiError> {
    Ok(Json(ops::syncs(&state, &caller, &state.stripe, query.after.as_deref(), query.limit).await?))
}

/// A retry takes no fields.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {}

#[utoipa::path(
    post,
    path = "/api/v1/stripe/syncs/{target}/retry",
    tag = "ledger",
    params(("target" = String, Path, description = "The refused target, as listed (its `/` percent-encoded)")),
    responses(
        (status = 200, body = SyncRetry, description = "The retry as recorded (`StripeSyncRetried`, by the caller): the sync takes the target up again. A target already retried is answered with that retry (`alreadyRetried`), nothing appended (billing)."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "sync_not_refused (Stripe has not refused it, or it is synced), sync_retries_exhausted (retried 20 times)"),
    ),
)]
pub async fn retry(
    State(state): State<AppState>,
    Path(target): Path<String>,
    request: CommandRequest<RetryRequest>,
) -> Result<Json<SyncRetry>, ApiError> {
    let CommandRequest { caller, context, body: RetryRequest {} } = request;
    Ok(Json(ops::retry(&state, &caller, &state.stripe, context.metadata, &target).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationQuery {
    period: Option<String>,
    format: Option<String>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/stripe/reconciliation",
    tag = "ledger",
    params(
        ("period" = String, Query, description = "`YYYY-MM`"),
        ("format" = Option<String>, Query, description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The month's ledger invoices against Stripe's (at most 1000 a side), each with its differences: missing_in_stripe, missing_in_ledger, amount_differs, status_differs, customer_differs, credit_notes_differ (billing). With format=csv, the same as text/csv.",
            content((Reconciliation = "application/json"), (String = "text/csv"))),
        ProblemResponses,
        (status = 503, body = Problem, content_type = "application/problem+json", description = "stripe_not_configured (STRIPE_SECRET_KEY unset), or unavailable (Stripe did not answer)"),
    ),
)]
pub async fn reconciliation(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<ReconciliationQuery>,
) -> Result<Response, ApiError> {
    caller.require(StaffPermission::BillingOps)?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::Validation(format!("format must be json or csv, not {other:?}"))),
    };
    let period = query.period.ok_or_else(|| ApiError::Validation("period (YYYY-MM) is required".into()))?;
    usecases::billing::parse_period(&period)?;
    let Some(client) = state.stripe.client.as_ref() else {
        let message = "Stripe is not configured (STRIPE_SECRET_KEY)".to_owned();
        return Err(ApiError::NotConfigured { code: "stripe_not_configured", message });
    };
    let report: Reconciliation = ops::reconcile(&state, &caller, client, &period).await?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    let filename = format!("attachment; filename=\"stripe-reconciliation-{}.csv\"", report.period);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, filename)],
        report.csv(),
    )
        .into_response())
}

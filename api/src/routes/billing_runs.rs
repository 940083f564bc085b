//! Billing runs for the billing team (`usecases::billing_runs`): a month's
//! preview compared with the invoices issued, and runs in the background
//! with their progress. The synchronous `POST /api/v1/billing/runs` stays in
//! `routes::billing`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use usecases::billing_runs::{self, BackgroundRun, RunPreview};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{CommandRequest, Consistency};
use crate::openapi::{Problem, ProblemResponses};

#[derive(Deserialize)]
pub struct PreviewQuery {
    period: String,
    cursor: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/runs/preview",
    tag = "ledger",
    params(
        ("period" = String, Query, description = "`YYYY-MM`"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the page before (a subscription id)"),
        ("limit" = Option<usize>, Query, description = "Subscriptions walked: 1 to 200, default 200"),
    ),
    responses(
        (status = 200, body = RunPreview, description = "One page of the month's preview (billing): per subscription the invoice the run would issue (`new`, `voided_would_rebill`) or the issued one compared with its recomputation (`same`, `differs` with the amounts, `already_issued`), and the subscriptions whose invoice could not be issued. Appends nothing."),
        ProblemResponses,
    ),
)]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<PreviewQuery>,
) -> Result<Json<RunPreview>, ApiError> {
    let cursor = query.cursor.as_deref();
    Ok(Json(billing_runs::preview(&state, &caller, &query.period, cursor, query.limit).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackgroundRunRequest {
    /// `YYYY-MM`.
    #[schema(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/billing/runs/background",
    tag = "ledger",
    request_body = BackgroundRunRequest,
    responses(
        (status = 202, body = BackgroundRun, description = "The run started (billing): it issues the month page by page in the background; GET /api/v1/billing/runs/{id} gives its progress. It issues what the synchronous run would: an invoice issued before is not issued again."),
        (status = 200, body = BackgroundRun, description = "The month's run already running on this node, unchanged."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "month_not_ended, or too_many_runs (32 running on this node)"),
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    request: CommandRequest<BackgroundRunRequest>,
) -> Result<(StatusCode, Json<BackgroundRun>), ApiError> {
    let (run, started) = billing_runs::start(&state, &request.caller, &request.body.period).await?;
    Ok((if started { StatusCode::ACCEPTED } else { StatusCode::OK }, Json(run)))
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/runs/background",
    tag = "ledger",
    responses(
        (status = 200, body = [BackgroundRun], description = "The background runs this node remembers (billing), newest first: at most 32."),
        ProblemResponses,
    ),
)]
pub async fn recent(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
) -> Result<Json<Vec<BackgroundRun>>, ApiError> {
    Ok(Json(billing_runs::recent(&state, &caller)?))
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/runs/{run_id}",
    tag = "ledger",
    params(("run_id" = Uuid, Path, description = "UUID")),
    responses(
        (status = 200, body = BackgroundRun, description = "A background run's progress (billing): subscriptions done of the total, invoices issued, the subscriptions whose invoice could not be issued (each named; the others are issued), and whether it is running, finished or failed. Progress is this node's: a run started on another node is not_found here, its invoices are in the log."),
        ProblemResponses,
    ),
)]
pub async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(run_id): Path<Uuid>,
) -> Result<Json<BackgroundRun>, ApiError> {
    Ok(Json(billing_runs::progress(&state, &caller, run_id)?))
}

//! The billing run and the invoices query (`usecases::billing`).

use axum::Json;
use axum::extract::{Path, State};
use domain::OrganizationId;
use serde::Deserialize;
use usecases::billing;
use usecases::views::billing::{BillingRun, Invoice};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{CommandRequest, Consistency};
use crate::openapi::{Problem, ProblemResponses};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillingRunRequest {
    /// `YYYY-MM`.
    #[schema(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: String,
    preview: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/billing/runs",
    tag = "ledger",
    request_body = BillingRunRequest,
    responses(
        (status = 200, body = BillingRun, description = "The invoices this run issued (none for a month already run) or, with preview, would issue, and the subscriptions whose invoice could not be issued. A failed invoice (an amount that overflows, or an earlier month of the subscription without an invoice) holds back only its own subscription; fixed, it is issued by the next run of its month."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "month_not_ended: only a preview can run a month that has not ended"),
    ),
)]
pub async fn billing_run(
    State(state): State<AppState>,
    request: CommandRequest<BillingRunRequest>,
) -> Result<Json<BillingRun>, ApiError> {
    let (caller, body) = (&request.caller, &request.body);
    Ok(Json(billing::run(&state, caller, &caller.actor(), &body.period, body.preview.unwrap_or(false)).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/invoices",
    tag = "ledger",
    params(("org_id" = Uuid, Path, description = "UUID")),
    responses(
        (status = 200, body = [Invoice], description = "The organization's invoices, oldest first."),
        ProblemResponses,
    ),
)]
pub async fn invoices(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Invoice>>, ApiError> {
    Ok(Json(billing::invoices(&state, &caller, OrganizationId(org_id)).await?))
}

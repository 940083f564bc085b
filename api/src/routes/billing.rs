//! The billing run and the invoices query (`usecases::billing`).

use axum::Json;
use axum::extract::{Path, State};
use domain::OrganizationId;
use rust_decimal::Decimal;
use serde::Deserialize;
use usecases::views::billing::{BillingRun, CreditNote, Invoice};
use usecases::{billing, invoice_ops};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{CommandRequest, Consistency};
use crate::openapi::{Problem, ProblemResponses};
use axum::http::StatusCode;

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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoidRequest {
    /// Why it is voided: 1 to 500 characters, no control characters.
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/invoices/{invoice_id}/void",
    tag = "ledger",
    params(("invoice_id" = Uuid, Path, description = "UUID")),
    request_body = VoidRequest,
    responses(
        (status = 200, body = Invoice, description = "The voided invoice (status `void`): it asks for nothing, and the next billing run of its month issues the month again under a new id."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "invoice_paid (a paid invoice is corrected by a credit note), invoice_already_voided, invoice_revisions_exhausted"),
    ),
)]
pub async fn void_invoice(
    State(state): State<AppState>,
    Path(invoice_id): Path<Uuid>,
    request: CommandRequest<VoidRequest>,
) -> Result<Json<Invoice>, ApiError> {
    let CommandRequest { caller, context, body } = request;
    Ok(Json(invoice_ops::void(&state, &caller, context.metadata, invoice_id, &body.reason).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditNoteLineRequest {
    /// 1 to 200 characters, no control characters.
    description: String,
    /// Positive, in cents, at most 10000000.00.
    #[schema(value_type = String, pattern = r"^[0-9]{1,8}(\.[0-9]{1,2})?$")]
    amount: Decimal,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditNoteRequest {
    /// Why: 1 to 500 characters, no control characters.
    reason: String,
    /// 1 to 20 lines.
    lines: Vec<CreditNoteLineRequest>,
}

#[utoipa::path(
    post,
    path = "/api/v1/invoices/{invoice_id}/credit-notes",
    tag = "ledger",
    params(("invoice_id" = Uuid, Path, description = "UUID")),
    request_body = CreditNoteRequest,
    responses(
        (status = 201, body = CreditNote, description = "The credit note: the invoice asks for its total less its credit notes (status `paid` once nothing is left), and the subscription's amountDue with it. An invoice's credit notes never total more than the invoice."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "credit_exceeds_invoice (more than invoiced minus earlier credits), invoice_voided, credit_notes_exhausted (50 per invoice), invoice_changed (another credit note or a void came first: try again)"),
    ),
)]
pub async fn issue_credit_note(
    State(state): State<AppState>,
    Path(invoice_id): Path<Uuid>,
    request: CommandRequest<CreditNoteRequest>,
) -> Result<(StatusCode, Json<CreditNote>), ApiError> {
    let CommandRequest { caller, context, body } = request;
    if body.lines.len() > domain::billing::CREDIT_NOTE_LINES_MAX {
        return Err(ApiError::Validation(format!(
            "a credit note has 1 to {} lines",
            domain::billing::CREDIT_NOTE_LINES_MAX
        )));
    }
    let lines = body.lines.into_iter().map(|line| (line.description, line.amount)).collect();
    let asked = invoice_ops::CreditNoteRequest { reason: body.reason, lines };
    let note = invoice_ops::credit(&state, &caller, context.metadata, invoice_id, &asked).await?;
    Ok((StatusCode::CREATED, Json(note)))
}

#[utoipa::path(
    get,
    path = "/api/v1/invoices/{invoice_id}/credit-notes",
    tag = "ledger",
    params(("invoice_id" = Uuid, Path, description = "UUID")),
    responses(
        (status = 200, body = [CreditNote], description = "The invoice's credit notes, by number (at most 50)."),
        ProblemResponses,
    ),
)]
pub async fn credit_notes(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(invoice_id): Path<Uuid>,
) -> Result<Json<Vec<CreditNote>>, ApiError> {
    Ok(Json(invoice_ops::credit_notes(&state, &caller, invoice_id).await?))
}

//! The billing run and the invoices query.

use axum::Json;
use axum::extract::{Path, State};
use domain::OrganizationId;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::billing::{failed_json, invoice_json, parse_period, run};
use crate::error::ApiError;
use crate::extract::{CommandRequest, Consistency};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillingRun {
    /// `YYYY-MM`.
    period: String,
    preview: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/billing/runs",
    tag = "ledger",
    request_body = BillingRun,
    responses(
        (status = 200, description = "The invoices this run issued (none for a month already run) or, with preview, would issue, and the subscriptions whose invoice could not be issued: {invoices, failed: [{subscriptionId, organizationId, reason}], sequence}. A failed invoice (an amount that overflows, or an earlier month of the subscription without an invoice) holds back only its own subscription; fixed, it is issued by the next run of its month."),
        (status = 400, description = "validation_failed"),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 409, description = "month_not_ended: only a preview can run a month that has not ended"),
    ),
)]
pub async fn billing_run(
    State(state): State<AppState>,
    request: CommandRequest<BillingRun>,
) -> Result<Json<Value>, ApiError> {
    request.caller.require_operator()?;
    let period = parse_period(&request.body.period)?;
    let done = run(&state, period, request.body.preview.unwrap_or(false), &request.caller.actor()).await?;
    Ok(Json(json!({
        "invoices": done.invoices.iter().map(invoice_json).collect::<Vec<_>>(),
        "failed": done.failed.iter().map(failed_json).collect::<Vec<_>>(),
        "sequence": done.sequence,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/invoices",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    responses(
        (status = 200, description = "The organization's invoices, oldest first: [{id, period, lines: [{kind, description, days?, amount}], total, status}]."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn invoices(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = OrganizationId(org_id);
    caller.require_org(organization_id, Need::Analyst)?;
    let ledger = state.projections.read().await;
    let entry = ledger.organizations.get(&organization_id).ok_or(ApiError::NotFound)?;
    let mut items: Vec<&domain::billing::InvoiceIssued> = entry
        .subscriptions
        .iter()
        .filter_map(|id| ledger.invoices.get(id))
        .flat_map(|by_month| by_month.values())
        .collect();
    items.sort_by_key(|issued| (issued.invoice.period, issued.invoice_id));
    Ok(Json(Value::Array(items.into_iter().map(invoice_json).collect())))
}

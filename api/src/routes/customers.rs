//! Customers (issue 15 part 2): search and one customer's timeline, for the
//! vendor's staff (operator, auditor).

use axum::Json;
use axum::extract::{Path, Query, State};
use domain::OrganizationId;
use serde::Deserialize;
use usecases::views::customers::{CustomerPage, Timeline};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Consistency;
use crate::openapi::ProblemResponses;

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    limit: Option<usize>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/customers",
    tag = "ledger",
    params(
        ("q" = String, Query, description = "An organization id; an e-mail domain (`@example.com`, or an address); or the start of a word of the name or of a domain. 1 to 255 characters, case-insensitive"),
        ("limit" = Option<usize>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, body = CustomerPage, description = "The organizations found (operator, auditor), name matches first; `more` when the page could not hold them all."),
        ProblemResponses,
    ),
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<SearchQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    Ok(Json(usecases::customers::search(&state, &caller, &query.q, query.limit).await?))
}

#[derive(Deserialize)]
pub struct TimelineQuery {
    cursor: Option<u64>,
    limit: Option<usize>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/customers/{org_id}/timeline",
    tag = "ledger",
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("cursor" = Option<u64>, Query, description = "The sequence after which the page starts (the last page's nextCursor)"),
        ("limit" = Option<usize>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, body = Timeline, description = "The customer's history, oldest first, by sequence (operator, auditor): its events, invoices, payments and dunning, each with its kind."),
        ProblemResponses,
    ),
)]
pub async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
    Query(query): Query<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let organization = OrganizationId(org_id);
    Ok(Json(usecases::customers::timeline(&state, &caller, organization, query.cursor, query.limit).await?))
}

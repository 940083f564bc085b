//! Enterprise SSO's settings (issue 14): an organization admin sets, reads
//! and removes the organization's OpenID Connect issuer. The client secret
//! is sealed before it reaches the log and never answered.

use axum::Json;
use axum::extract::{Path, State};
use domain::OrganizationId;
use usecases::sso::{SsoInput, SsoView};
use usecases::views::SequenceResponse;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::CommandRequest;
use crate::openapi::ProblemResponses;

#[utoipa::path(
    put,
    path = "/api/v1/organizations/{org_id}/sso",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    request_body = SsoInput,
    responses(
        (status = 200, description = "Set the organization's SSO issuer (its admin's; enterprise tier: \
            409 feature_not_in_tier otherwise). The issuer URL must be https and resolve to public \
            addresses only. The client secret is stored sealed and never answered.", body = SsoView),
        ProblemResponses,
    ),
)]
pub async fn put(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<SsoInput>,
) -> Result<Json<SsoView>, ApiError> {
    let CommandRequest { caller, body, .. } = request;
    let allow_loopback = state.portal.as_ref().is_some_and(|p| p.sso_allows_loopback_issuer());
    Ok(Json(usecases::sso::configure(&state, &caller, OrganizationId(org_id), body, allow_loopback).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/sso",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    responses(
        (status = 200, description = "The organization's SSO issuer, never the client secret.", body = SsoView),
        ProblemResponses,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<Uuid>,
) -> Result<Json<SsoView>, ApiError> {
    Ok(Json(usecases::sso::get(&state, &caller, OrganizationId(org_id)).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{org_id}/sso",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    responses(
        (status = 200, description = "Remove the organization's SSO issuer; sessions stay, new SSO sign-ins are refused.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<Uuid>,
) -> Result<Json<SequenceResponse>, ApiError> {
    let sequence = usecases::sso::remove(&state, &caller, OrganizationId(org_id)).await?;
    Ok(Json(SequenceResponse { sequence }))
}

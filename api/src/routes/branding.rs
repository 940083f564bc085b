//! White-label branding's settings (issue 14): an organization admin sets,
//! reads and removes the organization's display name, primary colour and
//! logo (tiers with `white_labeling` only). The portal applies them.

use axum::Json;
use axum::extract::{Path, State};
use domain::OrganizationId;
use usecases::branding::{BrandingInput, BrandingView};
use usecases::views::SequenceResponse;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::CommandRequest;
use crate::openapi::ProblemResponses;

/// The largest branding body: a logo of 256 KiB in base64 and the rest.
pub const BRANDING_BODY_BYTES_MAX: usize = usecases::branding::LOGO_BASE64_CHARS_MAX + 4096;

#[utoipa::path(
    put,
    path = "/api/v1/organizations/{org_id}/branding",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    request_body = BrandingInput,
    responses(
        (status = 200, description = "Set the organization's white-label branding (its admin's; tiers with the \
            `white_labeling` feature: 409 feature_not_in_tier otherwise). The logo (base64) must be a PNG or \
            JPEG of at most 256 KiB whose header announces at most 4096 pixels a side and 4,000,000 in all \
            (400 logo_format, logo_too_large, logo_too_many_pixels, logo_invalid); it is decoded, shrunk to \
            fit 320×96 and stored as PNG. The colour is #rrggbb (400 invalid_color). Nothing changes on a \
            refusal.", body = BrandingView),
        ProblemResponses,
    ),
)]
pub async fn put(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<BrandingInput, BRANDING_BODY_BYTES_MAX>,
) -> Result<Json<BrandingView>, ApiError> {
    let CommandRequest { caller, body, context } = request;
    let logo = body.logo.as_deref().map(usecases::branding::logo_from_base64).transpose()?;
    let names = (body.display_name.as_str(), body.primary_color.as_str());
    let organization_id = OrganizationId(org_id);
    Ok(Json(usecases::branding::set(&state, &caller, context.metadata, organization_id, names, logo).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/branding",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    responses(
        (status = 200, description = "The organization's branding as set (its admin's); 404 when none is set.",
            body = BrandingView),
        ProblemResponses,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Path(org_id): Path<Uuid>,
) -> Result<Json<BrandingView>, ApiError> {
    Ok(Json(usecases::branding::get(&state, &caller, OrganizationId(org_id)).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{org_id}/branding",
    tag = "ledger",
    params(("org_id" = String, Path, description = "UUID")),
    responses(
        (status = 200, description = "Remove the organization's branding (its admin's): its pages and e-mails \
            are the default ones again.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<serde::de::IgnoredAny>,
) -> Result<Json<SequenceResponse>, ApiError> {
    let CommandRequest { caller, context, .. } = request;
    let sequence = usecases::branding::remove(&state, &caller, context.metadata, OrganizationId(org_id)).await?;
    Ok(Json(SequenceResponse { sequence }))
}

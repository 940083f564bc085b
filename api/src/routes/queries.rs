//! Query routes (API.md, "Queries"): the HTTP side of `usecases::queries`.

use axum::Json;
use axum::extract::{Path, Query, State};
use domain::OrganizationId;
use serde::Deserialize;
use usecases::queries::AuditFilter;
use usecases::views::licensing::LicenseView;
use usecases::views::queries::{AuditPage, EnforcementView, OrganizationPage, SubscriptionDetails};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Consistency;
use crate::openapi::{Problem, ProblemResponses};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    limit: Option<usize>,
    cursor: Option<String>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations",
    tag = "ledger",
    responses(
        (status = 200, body = OrganizationPage, description = "Organizations, paged (operator, auditor): ?limit=&cursor=."),
        ProblemResponses,
    ),
)]
pub async fn organizations(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(page): Query<Page>,
) -> Result<Json<OrganizationPage>, ApiError> {
    Ok(Json(usecases::queries::organizations(&state, &caller, page.limit, page.cursor.as_deref()).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{org_id}",
    tag = "ledger",
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, body = SubscriptionDetails, description = "The seed's SubscriptionDetails of the organization's subscription."),
        ProblemResponses,
    ),
)]
pub async fn subscription(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
) -> Result<Json<SubscriptionDetails>, ApiError> {
    Ok(Json(usecases::queries::subscription(&state, &caller, OrganizationId(org_id)).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/licenses",
    tag = "ledger",
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, body = Vec<LicenseView>, description = "The organization's licenses, never a key."),
        ProblemResponses,
    ),
)]
pub async fn licenses(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<LicenseView>>, ApiError> {
    Ok(Json(usecases::queries::licenses(&state, &caller, OrganizationId(org_id)).await?))
}

#[derive(Deserialize)]
pub struct Check {
    action: String,
    feature: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/enforcement/{org_id}/check",
    tag = "ledger",
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("action" = String, Query, pattern = "^(ADD_USER|UPLOAD_DATA|API_CALL|ACCESS_FEATURE)$", description = "ADD_USER, UPLOAD_DATA, API_CALL or ACCESS_FEATURE"),
        ("feature" = Option<String>, Query, description = "the feature key, for ACCESS_FEATURE"),
    ),
    responses(
        (status = 200, body = EnforcementView, description = "The seed's validateUsage: {allowed, reason, limit?, current?}."),
        ProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "validation_failed: an unknown action, or ACCESS_FEATURE without a feature"),
    ),
)]
pub async fn enforcement(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
    Query(check): Query<Check>,
) -> Result<Json<EnforcementView>, ApiError> {
    let organization_id = OrganizationId(org_id);
    let view =
        usecases::queries::enforcement(&state, &caller, organization_id, &check.action, check.feature.as_deref())
            .await?;
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    organization_id: Option<Uuid>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "ledger",
    responses(
        (status = 200, body = AuditPage, description = "Audit entries, oldest first, paged: ?organizationId=&from=&to=&cursor=&limit=."),
        ProblemResponses,
    ),
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let filter = AuditFilter {
        organization_id: query.organization_id.map(OrganizationId),
        from: query.from,
        to: query.to,
        cursor: query.cursor,
        limit: query.limit,
    };
    Ok(Json(usecases::queries::audit(&state, &caller, filter).await?))
}

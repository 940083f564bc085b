//! The vendor's staff users and service tokens (issue 15 part 1): a staff
//! admin's (`StaffPermission::ManageStaff`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use domain::staff::{ServiceTokenId, StaffId};
use serde::Deserialize;
use usecases::staff::{self, AddStaffInput, IssueServiceTokenInput, StaffChange, parse_staff_role};
use usecases::views::SequenceResponse;
use usecases::views::staff::{AddStaffResponse, IssueServiceTokenResponse, ServiceTokenList, StaffList};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::CommandRequest;
use crate::openapi::ProblemResponses;

type Answer<T> = Result<(StatusCode, Json<T>), ApiError>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddStaff {
    #[schema(max_length = 100)]
    name: String,
    #[schema(max_length = 255)]
    email: String,
    #[schema(pattern = "^(staff_admin|billing|support|auditor)$")]
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/staff",
    tag = "ledger",
    request_body = AddStaff,
    responses(
        (status = 201, description = "Add a staff user with one role (staff_admin, billing, support, auditor); a \
            staff admin's. The e-mail address is unique among active staff (409 duplicate_email); at most 500 \
            staff users (409 limit_reached).", body = AddStaffResponse),
        ProblemResponses,
    ),
)]
pub async fn add(State(state): State<AppState>, request: CommandRequest<AddStaff>) -> Answer<AddStaffResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = AddStaffInput { name: body.name, email: body.email, role: parse_staff_role(&body.role)? };
    Ok((StatusCode::CREATED, Json(staff::add_staff(&state, &caller, &context, input).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/staff",
    tag = "ledger",
    responses(
        (status = 200, description = "Every staff user, oldest first; a staff admin's.", body = StaffList),
        ProblemResponses,
    ),
)]
pub async fn list(State(state): State<AppState>, caller: crate::auth::Caller) -> Result<Json<StaffList>, ApiError> {
    Ok(Json(staff::list_staff(&state, &caller).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeStaff {
    /// The new role; or
    #[schema(pattern = "^(staff_admin|billing|support|auditor)$")]
    role: Option<String>,
    /// `true` disables the staff user (their console sessions end).
    disabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/staff/{staff_id}",
    tag = "ledger",
    request_body = ChangeStaff,
    params(("staff_id" = Uuid, Path, description = "UUID")),
    responses(
        (status = 200, description = "Change a staff user's role, or disable them (`{\"disabled\": true}`): one \
            of the two; a staff admin's. 409 role_unchanged, staff_disabled; 429 rate_limited (limit \
            staff_role_changes_per_day): a staff user's role changes at most 10 times a UTC day, with Retry-After.",
            body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn change(
    State(state): State<AppState>,
    Path(staff_id): Path<Uuid>,
    request: CommandRequest<ChangeStaff>,
) -> Answer<SequenceResponse> {
    let CommandRequest { caller, context, body } = request;
    let change = match (body.role, body.disabled) {
        (Some(role), None) => StaffChange::Role(parse_staff_role(&role)?),
        (None, Some(true)) => StaffChange::Disable,
        _ => return Err(ApiError::Validation("give either role or disabled: true".into())),
    };
    Ok((StatusCode::OK, Json(staff::change_staff(&state, &caller, &context, StaffId(staff_id), change).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssueServiceToken {
    #[schema(max_length = 100)]
    name: String,
    #[schema(pattern = "^(staff_admin|billing|support|auditor)$")]
    role: String,
    #[schema(minimum = 1, maximum = 366)]
    expires_in_days: u32,
}

#[utoipa::path(
    post,
    path = "/api/v1/staff/tokens",
    tag = "ledger",
    request_body = IssueServiceToken,
    responses(
        (status = 201, description = "Issue a service token for a role, expiring after 1 to 366 days (by the \
            system clock; 401 from then on); a staff admin's. The token is in this answer only (and in a retry's \
            with the same Idempotency-Key). 409 limit_reached: 100 tokens alive (neither revoked nor expired) at \
            once, or 5,000 ever issued.", body = IssueServiceTokenResponse),
        ProblemResponses,
    ),
)]
pub async fn issue_token(
    State(state): State<AppState>,
    request: CommandRequest<IssueServiceToken>,
) -> Answer<IssueServiceTokenResponse> {
    let CommandRequest { caller, context, body } = request;
    let role = parse_staff_role(&body.role)?;
    let input = IssueServiceTokenInput { name: body.name, role, expires_in_days: body.expires_in_days };
    Ok((StatusCode::CREATED, Json(staff::issue_service_token(&state, &caller, &context, input).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/staff/tokens",
    tag = "ledger",
    responses(
        (status = 200, description = "Every service token (never the token itself), oldest first; a staff admin's.",
            body = ServiceTokenList),
        ProblemResponses,
    ),
)]
pub async fn tokens(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> Result<Json<ServiceTokenList>, ApiError> {
    Ok(Json(staff::list_service_tokens(&state, &caller).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/staff/tokens/{token_id}",
    tag = "ledger",
    params(("token_id" = Uuid, Path, description = "UUID")),
    responses(
        (status = 200, description = "Revoke a service token: refused (401) from then on, on every node; a staff \
            admin's. 409 already_revoked.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(token_id): Path<Uuid>,
    request: CommandRequest<serde::de::IgnoredAny>,
) -> Answer<SequenceResponse> {
    let CommandRequest { caller, context, .. } = request;
    let token_id = ServiceTokenId(token_id);
    Ok((StatusCode::OK, Json(staff::revoke_service_token(&state, &caller, &context, token_id).await?)))
}

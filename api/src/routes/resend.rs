//! Resending a customer's user their invitation or a sign-in e-mail
//! (issue 15; `usecases::resend`), through the portal's e-mail queue.

use axum::Json;
use axum::extract::{Path, State};
use domain::{OrganizationId, UserId};
use serde::Deserialize;
use usecases::views::SequenceResponse;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::CommandRequest;
use crate::openapi::{Problem, ProblemResponses};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResendRequest {
    /// `invitation` (a sign-in link valid 3 days) or `signin` (valid 15
    /// minutes).
    #[schema(pattern = "^(invitation|signin)$")]
    kind: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/users/{user_id}/resend",
    tag = "ledger",
    params(("org_id" = Uuid, Path, description = "UUID"), ("user_id" = Uuid, Path, description = "UUID")),
    request_body = ResendRequest,
    responses(
        (status = 200, body = SequenceResponse, description = "The e-mail was queued, with a new link; `PortalMailResent` (the staff user, the user's id and the kind; never the address or the link) was appended at `sequence`. Support and up; the auditor reads only. At most 3 a user an hour (429 with Retry-After)."),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "user_inactive (a deactivated user is sent nothing), mail_not_configured (the server has no SMTP)"),
    ),
)]
pub async fn resend(
    State(state): State<AppState>,
    Path((org_id, user_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<ResendRequest>,
) -> Result<Json<SequenceResponse>, ApiError> {
    let CommandRequest { caller, context, body } = request;
    let kind = usecases::resend::parse_kind(&body.kind)?;
    if !usecases::resend::may_resend(&caller) {
        return Err(usecases::Error::Forbidden.into());
    }
    // The mails are the portal's, sent by its queue: a server without the
    // portal (an in-process router) has none.
    let portal = state.portal.as_ref().ok_or_else(|| ApiError::NotConfigured {
        code: "mail_not_configured",
        message: "this server sends no portal e-mail".into(),
    })?;
    let target = (OrganizationId(org_id), UserId(user_id));
    let sequence = portal.resend(&caller, &context.metadata, target, kind).await?;
    Ok(Json(SequenceResponse { sequence }))
}

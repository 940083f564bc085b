//! What the organization commands answer: organizations, users, API tokens.

use serde::Serialize;
use uuid::Uuid;

/// `POST /organizations`: the new organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrganizationResponse {
    pub id: Uuid,
    /// The log position the command was appended at.
    pub sequence: u64,
}

/// `POST /organizations/{orgId}/users`: the new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddUserResponse {
    pub id: Uuid,
    pub sequence: u64,
}

/// `POST /organizations/{orgId}/tokens`: the new API token. The token is
/// derived again from its event for every answer (a retry with the same
/// `Idempotency-Key` shows it again); it is never stored. No `Debug`: the
/// token must not reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueTokenResponse {
    pub token_id: Uuid,
    pub token: String,
    /// RFC 3339; `null` for a token that does not expire.
    pub expires_at: Option<String>,
    pub sequence: u64,
}

//! What the staff routes answer (issue 15): staff users, service tokens.

use serde::Serialize;
use uuid::Uuid;

/// `POST /staff`: the new staff user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddStaffResponse {
    pub id: Uuid,
    pub sequence: u64,
}

/// A staff user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaffView {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// `staff_admin`, `billing`, `support` or `auditor`.
    pub role: String,
    pub active: bool,
    /// RFC 3339.
    pub added_at: String,
}

/// `GET /staff`: every staff user, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaffList {
    pub items: Vec<StaffView>,
}

/// `POST /staff/tokens`: the new service token, shown in this answer only
/// (derived again from its event for a retry with the same
/// `Idempotency-Key`; never stored). No `Debug`: the token must not reach a
/// log.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueServiceTokenResponse {
    pub token_id: Uuid,
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub sequence: u64,
}

/// A service token, without the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTokenView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub revoked: bool,
    /// RFC 3339.
    pub expires_at: String,
    /// RFC 3339.
    pub issued_at: String,
}

/// `GET /staff/tokens`: every service token, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTokenList {
    pub items: Vec<ServiceTokenView>,
}

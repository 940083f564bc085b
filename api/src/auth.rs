//! Who is calling, and what they may do (API.md, "Authentication").

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use domain::keys::{api_token_hash, constant_time_eq, verify_api_token};
use domain::organization::Role;
use domain::{OrganizationId, Timestamp, TokenId};

use crate::AppState;
use crate::error::ApiError;
use crate::secrets::Bootstrap;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Auditor,
    Member { organization_id: OrganizationId, role: Role, token_id: TokenId },
}

/// How much an organization's own members need for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Any member: viewer and up.
    Read,
    /// Invoices and audit: analyst and up.
    Analyst,
    /// Changes: admins.
    Admin,
}

impl Caller {
    /// The label recorded as the actor of an event.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Auditor => "auditor".into(),
            Caller::Member { organization_id, role, token_id } => {
                format!("org:{organization_id}:{}:token:{token_id}", role.as_str())
            }
        }
    }

    /// The scope of this caller's idempotency keys.
    pub fn scope(&self) -> String {
        match self {
            Caller::Member { token_id, .. } => format!("token:{token_id}"),
            other => other.actor(),
        }
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }

    /// Access to one organization's resources. Members of another
    /// organization get 404, as if it did not exist.
    pub fn require_org(&self, organization_id: OrganizationId, need: Need) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Auditor if need == Need::Admin => Err(ApiError::Forbidden),
            Caller::Auditor => Ok(()),
            Caller::Member { organization_id: own, .. } if *own != organization_id => Err(ApiError::NotFound),
            Caller::Member { role, .. } => {
                let allowed = match need {
                    Need::Read => true,
                    Need::Analyst => matches!(role, Role::Admin | Role::Analyst),
                    Need::Admin => *role == Role::Admin,
                };
                if allowed { Ok(()) } else { Err(ApiError::Forbidden) }
            }
        }
    }

    /// All organizations, the log head, proofs: operator and auditor.
    pub fn require_vendor(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator | Caller::Auditor => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// The credential of `Authorization: Bearer <token>`. The scheme is
/// matched case-insensitively (RFC 9110, 11.1); `None` for another scheme,
/// no header, or no token.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Now by the system clock: token expiry is a transport check, like a
/// webhook signature's age (API.md), never the business clock's.
fn system_now() -> Timestamp {
    domain::Clock::now(&store::SystemClock)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        match state.keys.bootstrap(token) {
            Some(Bootstrap::Operator) => return Ok(Caller::Operator),
            Some(Bootstrap::Auditor) => return Ok(Caller::Auditor),
            None => {}
        }
        let token_id = verify_api_token(&state.keys.secret, token).ok_or(ApiError::Unauthorized)?;
        let presented = api_token_hash(&state.keys.secret, token);
        let ledger = state.projections.read().await;
        let entry = ledger.tokens.get(&token_id).ok_or(ApiError::Unauthorized)?;
        if entry.revoked || !constant_time_eq(presented.as_bytes(), entry.token_hash.as_bytes()) {
            return Err(ApiError::Unauthorized);
        }
        let expired = ledger
            .organizations
            .get(&entry.organization_id)
            .and_then(|organization| organization.state.tokens.get(&token_id))
            .is_some_and(|token| token.expired_at(system_now()));
        if expired {
            return Err(ApiError::Unauthorized);
        }
        Ok(Caller::Member { organization_id: entry.organization_id, role: entry.role, token_id })
    }
}

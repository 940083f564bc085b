//! Who is calling, and what they may do (API.md, "Authentication").

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use domain::Timestamp;

use crate::AppState;
use crate::error::ApiError;

pub use usecases::{Caller, Need};

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
        // Read-your-writes and `?minSequence=`: waited for here, once the
        // credential is known, for every route that has a caller.
        let min_sequence = crate::extract::min_sequence(parts)?;
        Ok(usecases::caller::authenticate(state, token, system_now(), min_sequence).await?)
    }
}

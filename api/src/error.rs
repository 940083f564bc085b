//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.
//!
//! Every failure of a request becomes one `ApiError`; its variant decides
//! the status and the code, and internal details (database messages) are
//! logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use problem_details::ProblemDetails;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("this credential may not do that")]
    Forbidden,
    #[error("not found")]
    NotFound,
    /// A domain rule refused the command; `code` names which.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the Idempotency-Key was used before for a different request")]
    IdempotencyConflict,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    RateLimited(String),
    #[error("the read model has not caught up with sequence {0} yet")]
    ProjectionLagging(u64),
    #[error("the service is not available: {0}")]
    Unavailable(String),
    /// The read models stopped: the log was rolled back behind them, or
    /// holds a record this version cannot read. Nothing is served from
    /// them until an operator acts (the reason is in `/ready` and the log).
    #[error("the read models do not match the log; an operator must act (see the server's log)")]
    ReadModelFailed,
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Extensions {
    code: &'static str,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::IdempotencyConflict => (StatusCode::CONFLICT, "idempotency_conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::ProjectionLagging(_) => (StatusCode::SERVICE_UNAVAILABLE, "projection_lagging"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::ReadModelFailed => (StatusCode::SERVICE_UNAVAILABLE, "read_model_failed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn conflict(code: &'static str, message: impl ToString) -> Self {
        ApiError::Conflict { code, message: message.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "unavailable");
                "the service is temporarily unavailable".to_owned()
            }
            other => other.to_string(),
        };
        ProblemDetails::from_status_code(status)
            .with_detail(detail)
            .with_extensions(Extensions { code })
            .into_response()
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        ApiError::Unavailable(error.to_string())
    }
}

impl From<projections::ProjectionError> for ApiError {
    fn from(error: projections::ProjectionError) -> Self {
        match error {
            projections::ProjectionError::Lagging { wanted, .. } => ApiError::ProjectionLagging(wanted),
            projections::ProjectionError::RolledBack(_) | projections::ProjectionError::Broken(_) => {
                ApiError::ReadModelFailed
            }
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

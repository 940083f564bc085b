//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.
//!
//! Every failure of a request becomes one `ApiError`; its variant decides
//! the status and the code, and internal details (database messages) are
//! logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::license::LicenseError;
use domain::organization::OrganizationError;
use domain::subscription::SubscriptionError;
use domain::usage::UsageError;
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
    /// Over a limit: 429 with `Retry-After` (whole seconds), and the
    /// limit's stable name in the `limit` member when it has one.
    #[error("{message}")]
    RateLimited { limit: Option<&'static str>, retry_after_seconds: u64, message: String },
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
    /// A refusal with a code of its own (400), e.g. a Stripe webhook's
    /// `invalid_signature`.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// Something this server was not configured for (503), e.g.
    /// `stripe_not_configured`; the detail says which setting.
    #[error("{message}")]
    NotConfigured { code: &'static str, message: String },
}

/// `Retry-After` of a 503 that waiting lifts (the database or Stripe did
/// not answer, the read models lag): PostgreSQL restarting or failing over
/// takes seconds, and the pool gives up on a connection after 2 s, so a
/// client retrying after a second neither hammers nor waits long.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 1;

#[derive(Serialize)]
struct Extensions {
    code: &'static str,
    /// Which limit a 429 is about (`reports_per_day`, …), so a client can
    /// tell a wait from a refusal that waiting cannot lift.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'static str>,
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
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::ProjectionLagging(_) => (StatusCode::SERVICE_UNAVAILABLE, "projection_lagging"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::ReadModelFailed => (StatusCode::SERVICE_UNAVAILABLE, "read_model_failed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotConfigured { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
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
        let (retry_after, limit) = match &self {
            ApiError::RateLimited { retry_after_seconds, limit, .. } => (Some(*retry_after_seconds), *limit),
            ApiError::Unavailable(_) | ApiError::ProjectionLagging(_) => (Some(UNAVAILABLE_RETRY_AFTER_SECONDS), None),
            _ => (None, None),
        };
        let mut response = ProblemDetails::from_status_code(status)
            .with_detail(detail)
            .with_extensions(Extensions { code, limit })
            .into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        usecases::Error::from(error).into()
    }
}

/// The one mapping of a use case's error to HTTP: a status and a stable code.
impl From<usecases::Error> for ApiError {
    fn from(error: usecases::Error) -> Self {
        use usecases::Error as E;
        match error {
            E::Organization(error) => organization_refusal(error),
            E::Subscription(error) => subscription_refusal(error),
            E::License(error) => license_refusal(error),
            E::Validation(message) => ApiError::Validation(message),
            E::Unauthorized => ApiError::Unauthorized,
            E::Forbidden => ApiError::Forbidden,
            E::NotFound => ApiError::NotFound,
            E::Conflict { code, message } => ApiError::Conflict { code, message },
            E::Refused { code, message } => ApiError::BadRequest { code, message },
            E::IdempotencyConflict => ApiError::IdempotencyConflict,
            E::RateLimited { limit, retry_after_seconds, message } => {
                ApiError::RateLimited { limit: Some(limit), retry_after_seconds, message }
            }
            E::ProjectionLagging(sequence) => ApiError::ProjectionLagging(sequence),
            E::ReadModelFailed => ApiError::ReadModelFailed,
            E::Unavailable(detail) => ApiError::Unavailable(detail),
            E::Internal(detail) => ApiError::Internal(detail),
            E::Usage(error) => usage_refusal(error),
            E::Webhook(error) => webhook_refusal(error),
            E::BadRequest { code, message } => ApiError::BadRequest { code, message },
        }
    }
}

impl From<OrganizationError> for ApiError {
    fn from(error: OrganizationError) -> Self {
        organization_refusal(error)
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(error: SubscriptionError) -> Self {
        subscription_refusal(error)
    }
}

impl From<LicenseError> for ApiError {
    fn from(error: LicenseError) -> Self {
        license_refusal(error)
    }
}

fn organization_refusal(error: OrganizationError) -> ApiError {
    use OrganizationError as E;
    match error {
        E::NotFound | E::UserNotFound | E::TokenNotFound => ApiError::NotFound,
        E::InvalidText { .. } | E::InvalidEmail(_) | E::InvalidEmployeeCount | E::InvalidTokenExpiry => {
            ApiError::Validation(error.to_string())
        }
        E::SeatLimitReached { .. } => ApiError::conflict("seat_limit_reached", error),
        E::DuplicateEmail(_) => ApiError::conflict("duplicate_email", error),
        E::LiveSubscriptionExists(_) => ApiError::conflict("subscription_exists", error),
        E::LastAdmin => ApiError::conflict("last_admin", error),
        E::AlreadyExists
        | E::UserAlreadyDeactivated
        | E::UserNotActive
        | E::RoleUnchanged
        | E::TokenExists
        | E::TokenAlreadyRevoked
        | E::NotTheLiveSubscription(_) => ApiError::conflict("conflict", error),
    }
}

fn subscription_refusal(error: SubscriptionError) -> ApiError {
    use SubscriptionError as E;
    match error {
        E::NotFound => ApiError::NotFound,
        E::StartTooFarInPast { .. } => ApiError::conflict("start_date_out_of_range", error),
        E::EffectiveDateOutOfRange(_) => ApiError::conflict("effective_date_out_of_range", error),
        E::InvalidMaxDeployments
        | E::InvalidOverageRate
        | E::InvalidQuantity
        | E::InvalidAddonPrice(_)
        | E::PriceTooHigh
        | E::InvalidPaymentReference
        | E::InvalidFloating(_) => ApiError::Validation(error.to_string()),
        E::FloatingUnchanged => ApiError::conflict("floating_unchanged", error),
        // Prices are the operator's (BILLING-RULES, "Who sets prices").
        E::PriceNotAllowed | E::OperatorOnlyAddon(_) => ApiError::Forbidden,
        E::AddonNotFound(_) => ApiError::NotFound,
        E::AddonAlreadyEnded(_) => ApiError::conflict("addon_already_ended", error),
        E::EffectiveDateInvoiced { .. } => ApiError::conflict("effective_date_invoiced", error),
        E::UnknownCatalogVersion(_) | E::AmountOverflow => ApiError::Internal(error.to_string()),
        E::NotChangeable(_) => ApiError::conflict("subscription_not_changeable", error),
        E::NotAnUpgrade { .. } => ApiError::conflict("not_an_upgrade", error),
        E::NotADowngrade { .. } => ApiError::conflict("not_a_downgrade", error),
        E::DoesNotRenew => ApiError::conflict("does_not_renew", error),
        E::AutoRenewalAlreadyOff | E::AlreadyCancelled(_) => ApiError::conflict("already_cancelled", error),
        E::AlreadyExists | E::TermNotEnded | E::NotPastDue | E::GraceNotOver(_) => {
            ApiError::conflict("conflict", error)
        }
    }
}

fn webhook_refusal(error: usecases::stripe::webhook::WebhookError) -> ApiError {
    use usecases::stripe::signature::SignatureError;
    use usecases::stripe::webhook::WebhookError as E;
    match error {
        E::NotConfigured => ApiError::NotConfigured { code: "stripe_not_configured", message: error.to_string() },
        // Which secret or signature came close is not said.
        E::Signature(SignatureError::NoMatch) => {
            ApiError::BadRequest { code: "invalid_signature", message: "the signature does not match".into() }
        }
        E::Signature(error) => ApiError::BadRequest { code: "invalid_signature", message: error.to_string() },
        E::InvalidEvent(what) => ApiError::BadRequest { code: "invalid_event", message: what.into() },
    }
}

fn license_refusal(error: LicenseError) -> ApiError {
    use LicenseError as E;
    match error {
        E::NotFound => ApiError::NotFound,
        E::InvalidReason => ApiError::Validation(error.to_string()),
        E::AlreadyRevoked => ApiError::conflict("already_revoked", error),
        E::AlreadyExists | E::AlreadySuperseded | E::WindowNotOver => ApiError::conflict("conflict", error),
        E::TooManyDeployments { .. } => ApiError::conflict("too_many_deployments", error),
        E::DeploymentNotFound(_) => ApiError::NotFound,
        E::InvalidDeploymentId | E::InvalidDeploymentKey => ApiError::Validation(error.to_string()),
        E::DeploymentKeyAlreadyBound(_) => ApiError::conflict("deployment_key_bound", error),
        E::DeploymentKeyNotBound(_) => ApiError::conflict("deployment_key_not_bound", error),
        E::OfflineReplayed => ApiError::conflict("offline_file_replayed", error),
        E::OfflineForeign => ApiError::conflict("offline_file_foreign", error),
    }
}

fn usage_refusal(error: UsageError) -> ApiError {
    match error {
        UsageError::TooOld { .. } => ApiError::conflict("correction_window_closed", error),
        UsageError::NotANumber(_)
        | UsageError::Negative(_)
        | UsageError::TooPrecise(_)
        | UsageError::TooLarge(_)
        | UsageError::TooFarAhead { .. }
        | UsageError::BeforeStart { .. } => ApiError::Validation(error.to_string()),
    }
}

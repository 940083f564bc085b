//! What a use case answers when it does not do what was asked.
//!
//! One typed error for every use case. A domain refusal keeps the
//! aggregate's own error (`From`), so callers match on the rule that
//! refused, never on its message; the HTTP layer maps each variant to a
//! status and a stable code in one place (`api::error`), the CLI prints it,
//! the Stripe reactor records it.

use domain::license::LicenseError;
use domain::organization::OrganizationError;
use domain::subscription::SubscriptionError;
use domain::usage::UsageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An organization refused the command.
    #[error(transparent)]
    Organization(#[from] OrganizationError),
    /// A subscription refused the command.
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// A license refused the command.
    #[error(transparent)]
    License(#[from] LicenseError),
    /// The request is malformed or out of bounds; nothing was decided.
    #[error("{0}")]
    Validation(String),
    /// The request is refused for a reason of its own (400), `code` naming
    /// it stably (a deployment key's proof: `challenge_expired`, …).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("this credential may not do that")]
    Forbidden,
    /// Unknown, or another organization's (which must look the same).
    #[error("not found")]
    NotFound,
    /// A rule of the use case itself (not of one aggregate) refused;
    /// `code` names which, stably.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request's content is refused by a rule of its own (400, e.g.
    /// `logo_format`); `code` names which, stably. Nothing was decided.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("the Idempotency-Key was used before for a different request")]
    IdempotencyConflict,
    /// Over a limit; the caller may try again after `retry_after_seconds`.
    /// `limit` names which limit, stably (e.g. `reports_per_day`), so a
    /// client can tell a wait from a refusal that waiting cannot lift.
    #[error("{message}")]
    RateLimited { limit: &'static str, retry_after_seconds: u64, message: String },
    #[error("the read model has not caught up with sequence {0} yet")]
    ProjectionLagging(u64),
    /// The read models stopped (a rolled-back log, a record this version
    /// cannot read): nothing is decided or answered from them.
    #[error("the read models do not match the log; an operator must act (see the server's log)")]
    ReadModelFailed,
    /// A dependency (the database, Stripe) is not available now.
    #[error("the service is not available: {0}")]
    Unavailable(String),
    /// A bug or an impossible state; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
    /// A usage report refused; nothing was recorded.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// A Stripe webhook delivery was refused; nothing was recorded.
    #[error(transparent)]
    Webhook(#[from] crate::stripe::webhook::WebhookError),
}

impl Error {
    pub fn conflict(code: &'static str, message: impl ToString) -> Self {
        Error::Conflict { code, message: message.to_string() }
    }
}

impl From<store::StoreError> for Error {
    fn from(error: store::StoreError) -> Self {
        Error::Unavailable(error.to_string())
    }
}

/// The read-model tables could not be read: unavailable (503), or, for a
/// row this version cannot decode, a bug (500).
impl From<projections::db::DbError> for Error {
    fn from(error: projections::db::DbError) -> Self {
        use projections::db::DbError;
        match error {
            DbError::Schema(_) | DbError::Decode(_) => Error::Internal(error.to_string()),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

/// A refusal of a rule spanning aggregates is the refusing aggregate's own.
impl From<domain::workflows::Refusal> for Error {
    fn from(refusal: domain::workflows::Refusal) -> Self {
        use domain::workflows::Refusal;
        match refusal {
            Refusal::Organization(error) => Error::Organization(error),
            Refusal::Subscription(error) => Error::Subscription(error),
            Refusal::License(error) => Error::License(error),
        }
    }
}

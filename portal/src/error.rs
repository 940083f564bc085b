//! The portal's one error type: an HTML page with the right status, never
//! an internal detail.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// Not signed in (or the session ended): to the sign-in page.
    #[error("sign in first")]
    SignIn,
    #[error("This page does not exist.")]
    NotFound,
    #[error("Your role may not do that.")]
    Forbidden,
    /// A form without its CSRF token, or with another session's.
    #[error("This form has expired; go back, reload the page and try again.")]
    Csrf,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("Too many requests; try again later.")]
    RateLimited,
    #[error("The service is not available now; try again shortly.")]
    Unavailable,
    #[error("Something went wrong on our side.")]
    Internal,
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    title: &'static str,
    message: String,
}

impl PortalError {
    pub(crate) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            PortalError::SignIn => (StatusCode::UNAUTHORIZED, "Sign in"),
            PortalError::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            PortalError::Forbidden => (StatusCode::FORBIDDEN, "Not allowed"),
            PortalError::Csrf => (StatusCode::FORBIDDEN, "Form expired"),
            PortalError::Invalid(_) => (StatusCode::BAD_REQUEST, "Check your input"),
            PortalError::Refused(_) => (StatusCode::CONFLICT, "Not done"),
            PortalError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
            PortalError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            PortalError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Error"),
        }
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        if matches!(self, PortalError::SignIn) {
            return Redirect::to("/portal/signin").into_response();
        }
        let (status, title) = self.status();
        (status, ErrorPage { title, message: self.to_string() }).into_response()
    }
}

impl From<usecases::Error> for PortalError {
    fn from(error: usecases::Error) -> Self {
        use usecases::Error as E;
        match error {
            E::NotFound => PortalError::NotFound,
            E::Forbidden => PortalError::Forbidden,
            E::Unauthorized => PortalError::SignIn,
            E::Validation(message) | E::Refused { message, .. } => PortalError::Invalid(message),
            E::Organization(refused) => PortalError::Refused(refused.to_string()),
            E::License(refused) => PortalError::Refused(refused.to_string()),
            E::Subscription(refused) => PortalError::Refused(refused.to_string()),
            E::Conflict { message, .. } => PortalError::Refused(message),
            E::RateLimited { .. } => PortalError::RateLimited,
            E::ProjectionLagging(_) | E::Unavailable(_) | E::ReadModelFailed => PortalError::Unavailable,
            other => {
                tracing::error!(error = %other, "portal request failed");
                PortalError::Internal
            }
        }
    }
}

impl From<store::StoreError> for PortalError {
    fn from(error: store::StoreError) -> Self {
        tracing::error!(%error, "portal session store failed");
        PortalError::Unavailable
    }
}

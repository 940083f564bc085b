//! The seam between the Stripe reactor (`usecases::stripe::reactor`) and
//! the provisioning of Checkout sessions (`super::checkout::provision`,
//! which still answers in the HTTP layer's error type).
//!
//! Once provisioning is a use case (`usecases`), the reactor calls it
//! directly: this module and [`CheckoutProvisioning`] go, and `run` is
//! `usecases::stripe::reactor::run`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
pub use usecases::stripe::reactor::{Decision, EVENTS_PER_TICK_MAX, SUBSCRIPTION_METADATA, TICK};
use usecases::stripe::reactor::{Provisioning, Reactor};
use usecases::{Error, Ledger};

use crate::AppState;
use crate::command::Context;
use crate::error::ApiError;

/// The code a domain refusal is mapped to while provisioning decides, so
/// it can be told apart from a failure of the store.
pub(crate) const REFUSED: &str = "stripe_event_refused";

pub(crate) fn refused<E: std::fmt::Display>(error: E) -> ApiError {
    ApiError::conflict(REFUSED, error)
}

/// Checkout's provisioning, for the reactor.
pub struct CheckoutProvisioning(pub AppState);

impl Provisioning for CheckoutProvisioning {
    fn provision<'a>(
        &'a self,
        _ledger: &'a Ledger,
        context: &'a Context,
        session: &'a Value,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send + 'a>> {
        Box::pin(async move {
            match super::checkout::provision(&self.0, context, session).await {
                Ok(decision) => Ok(decision),
                Err(ApiError::Conflict { code: REFUSED, message }) => {
                    Ok(Decision::ignored(format!("refused: {message}")))
                }
                Err(ApiError::Unavailable(detail)) => Err(Error::Unavailable(detail)),
                Err(other) => Err(Error::Internal(other.to_string())),
            }
        })
    }
}

/// The reactor of this server: the use case, with checkout's provisioning.
pub fn reactor(state: &AppState) -> Reactor {
    Reactor { stripe: state.stripe.clone(), provisioning: Arc::new(CheckoutProvisioning(state.clone())) }
}

/// Runs the reactor for good.
pub async fn run(state: AppState) {
    usecases::stripe::reactor::run(state.ledger.clone(), reactor(&state)).await
}

/// Handles the pending events the read model knows of. Public for tests.
pub async fn handle_pending(state: &AppState) -> Result<usize, ApiError> {
    Ok(usecases::stripe::reactor::handle_pending(state, &reactor(state)).await?)
}

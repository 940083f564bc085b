//! The Stripe reactor of this server: the use case
//! (`usecases::stripe::reactor`) with this server's Stripe client.

use usecases::stripe::reactor::Reactor;
pub use usecases::stripe::reactor::{Decision, EVENTS_PER_TICK_MAX, SUBSCRIPTION_METADATA, TICK};

use crate::AppState;
use crate::error::ApiError;

fn reactor(state: &AppState) -> Reactor {
    Reactor { stripe: state.stripe.clone() }
}

/// Runs the reactor for good.
pub async fn run(state: AppState) {
    usecases::stripe::reactor::run(state.ledger.clone(), reactor(&state)).await
}

/// Handles the pending events the read model knows of. Public for tests.
pub async fn handle_pending(state: &AppState) -> Result<usize, ApiError> {
    Ok(usecases::stripe::reactor::handle_pending(state, &reactor(state)).await?)
}

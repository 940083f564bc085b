//! The purchase flow: a Stripe Checkout session for a tier, and the
//! provisioning when Stripe reports it completed.
//!
//! The session runs in `setup` mode: it saves the buyer's payment method
//! on a Stripe customer and charges nothing, because the ledger computes
//! every invoice and Stripe only collects them (a Stripe price billing on
//! its own would charge twice). `checkout.session.completed` then creates
//! the organization, its admin user, the subscription (from that day) and
//! its license, all with ids derived from the session id, in one atomic
//! group with the event's `StripeEventHandled`: however often Stripe
//! delivers it, the organization is created once (a second delivery finds
//! the organization's stream and records "already provisioned"). The
//! provisioning is a use case (`usecases::provisioning`), the same workflow
//! as the operator's `create_subscription`.

use std::collections::HashMap;

use domain::catalog::Tier;
use stripe::StripeRequest;

use crate::AppState;
use crate::error::ApiError;

pub use usecases::provisioning::{EMAIL_METADATA, NAME_METADATA, TIER_METADATA};

/// What a buyer asks for.
pub struct Purchase {
    pub tier: Tier,
    pub organization_name: String,
    pub admin_email: String,
    pub success_url: String,
    pub cancel_url: String,
    /// The caller's `Idempotency-Key`, if any: a retry makes no second
    /// customer or session.
    pub idempotency_key: Option<String>,
}

/// Starts a session; answers its id and the URL to send the buyer to.
pub async fn start(state: &AppState, purchase: &Purchase) -> Result<(String, Option<String>), ApiError> {
    let client = state.stripe.client.as_ref().ok_or_else(not_configured)?;
    let metadata = HashMap::from([
        (TIER_METADATA.to_owned(), purchase.tier.as_str().to_owned()),
        (NAME_METADATA.to_owned(), purchase.organization_name.clone()),
        (EMAIL_METADATA.to_owned(), purchase.admin_email.clone()),
    ]);
    let key = |step: &str| {
        let key = match &purchase.idempotency_key {
            Some(key) => format!("ledger:checkout:{key}:{step}"),
            None => format!("ledger:checkout:{}:{step}", uuid::Uuid::now_v7()),
        };
        stripe::IdempotencyKey::new(key)
            .map(stripe::RequestStrategy::Idempotent)
            .map_err(|e| ApiError::Validation(e.to_string()))
    };
    let customer = stripe_core::customer::CreateCustomer::new()
        .email(purchase.admin_email.clone())
        .name(purchase.organization_name.clone())
        .metadata(metadata.clone())
        .customize()
        .request_strategy(key("customer")?)
        .send(client)
        .await
        .map_err(stripe_failure)?;
    let session = stripe_checkout::checkout_session::CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Setup)
        .currency(stripe_types::Currency::USD)
        .customer(customer.id.as_str().to_owned())
        .success_url(purchase.success_url.clone())
        .cancel_url(purchase.cancel_url.clone())
        .metadata(metadata)
        .customize()
        .request_strategy(key("session")?)
        .send(client)
        .await
        .map_err(stripe_failure)?;
    Ok((session.id.as_str().to_owned(), session.url))
}

pub fn not_configured() -> ApiError {
    ApiError::Unavailable("Stripe is not configured (STRIPE_SECRET_KEY)".into())
}

/// A Stripe answer as an API error: Stripe's refusal is the caller's
/// (400, with Stripe's message); anything else is Stripe unavailable.
pub fn stripe_failure(error: stripe::StripeError) -> ApiError {
    match error {
        stripe::StripeError::Stripe(errors, status) if (400..500).contains(&status) && status != 429 => {
            ApiError::Validation(format!("Stripe refused: {}", errors.message.as_deref().unwrap_or("no message")))
        }
        other => ApiError::Unavailable(format!("Stripe: {other}")),
    }
}

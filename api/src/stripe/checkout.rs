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
//! the organization's stream and records "already provisioned").

use std::collections::HashMap;

use domain::catalog::Tier;
use domain::organization::{Organization, OrganizationCommand, Role};
use domain::stripe::{
    StripeCustomerLinked, StripeEvent, StripePaymentMethodSaved, customer_stream, payment_method_stream,
    valid_stripe_id,
};
use domain::subscription::{Subscription, SubscriptionCommand};
use domain::{LicenseId, OrganizationId, SubscriptionId, UserId};
use serde_json::Value;
use store::{Command, ExpectedRevision, NewEvent};
use stripe::StripeRequest;

use super::derived_id;
use super::reactor::{Decision, refused};
use crate::AppState;
use crate::command::{Context, load, new_event_id};
use crate::error::ApiError;

/// Metadata keys the ledger puts on a checkout session.
pub const TIER_METADATA: &str = "ledger_tier";
pub const NAME_METADATA: &str = "ledger_organization_name";
pub const EMAIL_METADATA: &str = "ledger_admin_email";

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

/// Provisions what a completed session bought. Nothing is appended for a
/// session the ledger did not start (no tier in its metadata) or one whose
/// payment method is not saved yet.
pub async fn provision(state: &AppState, context: &Context, session: &Value) -> Result<Decision, ApiError> {
    let Some(session_id) = session["id"].as_str().filter(|id| valid_stripe_id(id)) else {
        return Ok(Decision::ignored("the session has no id"));
    };
    let metadata = &session["metadata"];
    let Some(tier) = metadata[TIER_METADATA].as_str().and_then(Tier::parse) else {
        return Ok(Decision::ignored("the session was not started by the ledger (no tier)"));
    };
    // Nothing is provisioned until Stripe says the session is complete
    // (a missing status is not complete), and only for the setup-mode
    // sessions the ledger starts (`start`).
    if session["status"].as_str() != Some("complete") {
        return Ok(Decision::ignored("the session is not complete"));
    }
    if session["mode"].as_str() != Some("setup") {
        return Ok(Decision::ignored("the session is not in setup mode: the ledger did not start it"));
    }
    let name = metadata[NAME_METADATA].as_str().unwrap_or_default().to_owned();
    let email = metadata[EMAIL_METADATA]
        .as_str()
        .or(session["customer_details"]["email"].as_str())
        .unwrap_or_default()
        .to_owned();
    let id = |what: &str| derived_id(&format!("ledger 2026-11-29 checkout {what} id v1"), session_id);
    let organization_id = OrganizationId(id("organization"));
    let (subscription_id, license_id) = (SubscriptionId(id("subscription")), LicenseId(id("license")));
    let (now, today) = (state.now(), state.today());

    let mut org = load::<Organization>(state, organization_id.stream()).await?;
    if org.state.id.is_some() {
        return Ok(Decision::ignored(format!("already provisioned as organization {organization_id}")));
    }
    let create =
        OrganizationCommand::Create { id: organization_id, name, domain: None, industry: None, employee_count: None };
    org.decide(create, &()).await.map_err(refused)?;
    let admin =
        OrganizationCommand::AddUser { user_id: UserId(id("admin")), email, role: Role::Admin, seat_limit: None };
    org.decide(admin, &()).await.map_err(refused)?;
    org.decide(OrganizationCommand::StartSubscription { subscription_id }, &()).await.map_err(refused)?;
    let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
    let create = SubscriptionCommand::Create {
        id: subscription_id,
        organization_id,
        tier,
        start_date: today,
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id,
        today,
    };
    subscription.decide(create, &state.subscription_services).await.map_err(refused)?;
    let license =
        crate::routes::commands::issue_license(state, license_id, subscription_id, organization_id, now).await?;
    let mut commands = vec![
        org.into_command(context, now),
        subscription.into_command(context, now),
        license.into_command(context, now),
    ];
    let new_stream = |stream_id, event: StripeEvent| Command {
        stream_id,
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, &context.metadata)],
    };
    if let Some(customer_id) = session["customer"].as_str().filter(|id| valid_stripe_id(id)) {
        let linked = StripeCustomerLinked { organization_id, customer_id: customer_id.to_owned() };
        commands.push(new_stream(customer_stream(organization_id), linked.into()));
        // The payment method the session saved becomes the default for
        // invoices (the sync does it: it needs Stripe).
        if let Some(setup_intent_id) = session["setup_intent"].as_str().filter(|id| valid_stripe_id(id)) {
            let saved = StripePaymentMethodSaved {
                organization_id,
                customer_id: customer_id.to_owned(),
                setup_intent_id: setup_intent_id.to_owned(),
            };
            commands.push(new_stream(payment_method_stream(organization_id), saved.into()));
        }
    }
    Ok(Decision::applied(commands, format!("provisioned organization {organization_id} ({} tier)", tier.as_str())))
}

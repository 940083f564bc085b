//! Provisioning from Checkout: what a completed session bought.
//!
//! The session ran in `setup` mode (it saved a payment method and charged
//! nothing; the ledger computes every invoice). Its completion creates the
//! organization, its admin user, the subscription (from that day) and its
//! license, with ids derived from the session id, through the same
//! workflow as the operator's `create_subscription`
//! (`subscriptions::start_subscription`, `domain::workflows::provision`).
//! The decision is answered, not appended: the Stripe reactor appends it in
//! one atomic group with the event's handling, so however often Stripe
//! delivers the completion, the organization is created once (a second
//! delivery finds the organization's stream and is ignored).

use domain::catalog::Tier;
use domain::organization::Organization;
use domain::stripe::{
    StripeCustomerLinked, StripeEvent, StripePaymentMethodSaved, customer_stream, payment_method_stream,
    valid_stripe_id,
};
use domain::workflows::{CheckoutIds, Purchase};
use domain::{OrganizationId, StreamId};
use serde_json::Value;
use store::{Command, ExpectedRevision, NewEvent};

use crate::command::{Context, load, new_event_id};
use crate::subscriptions::{Start, start_subscription};
use crate::{Error, Ledger};

/// Metadata keys the ledger puts on a checkout session.
pub const TIER_METADATA: &str = "ledger_tier";
pub const NAME_METADATA: &str = "ledger_organization_name";
pub const EMAIL_METADATA: &str = "ledger_admin_email";

/// What a completed session decides.
#[derive(Debug)]
pub enum Provisioning {
    /// Nothing to append, and why (a session the ledger did not start, one
    /// not complete, one provisioned already).
    Ignored { reason: String },
    /// The log commands to append with the event's handling, and what they do.
    Applied { commands: Vec<Command>, what: String },
}

impl Provisioning {
    fn ignored(reason: impl Into<String>) -> Self {
        Provisioning::Ignored { reason: reason.into() }
    }
}

/// Decides what a completed Checkout session (`checkout.session.completed`'s
/// object) provisions. A refusal of the organization, subscription or
/// license (an address that is not one) is their own [`Error`] variant.
pub async fn provision(ledger: &Ledger, context: &Context, session: &Value) -> Result<Provisioning, Error> {
    let Some(session_id) = session["id"].as_str().filter(|id| valid_stripe_id(id)) else {
        return Ok(Provisioning::ignored("the session has no id"));
    };
    let metadata = &session["metadata"];
    let Some(tier) = metadata[TIER_METADATA].as_str().and_then(Tier::parse) else {
        return Ok(Provisioning::ignored("the session was not started by the ledger (no tier)"));
    };
    // Nothing is provisioned until Stripe says the session is complete
    // (a missing status is not complete), and only for the setup-mode
    // sessions the ledger starts.
    if session["status"].as_str() != Some("complete") {
        return Ok(Provisioning::ignored("the session is not complete"));
    }
    if session["mode"].as_str() != Some("setup") {
        return Ok(Provisioning::ignored("the session is not in setup mode: the ledger did not start it"));
    }
    let ids = CheckoutIds::of(session_id);
    let organization_id = ids.organization_id;
    let organization = load::<Organization>(ledger, organization_id.stream()).await?;
    if organization.state.id.is_some() {
        return Ok(Provisioning::ignored(format!("already provisioned as organization {organization_id}")));
    }
    let purchase = Purchase {
        organization_id,
        organization_name: metadata[NAME_METADATA].as_str().unwrap_or_default().to_owned(),
        admin_id: ids.admin_id,
        admin_email: metadata[EMAIL_METADATA]
            .as_str()
            .or(session["customer_details"]["email"].as_str())
            .unwrap_or_default()
            .to_owned(),
        subscription_id: ids.subscription_id,
        tier,
        today: ledger.today(),
    };
    let start = Start::Provision(purchase);
    let mut commands = start_subscription(ledger, context, organization, start, ids.license_id).await?;
    commands.extend(stripe_links(ledger, context, organization_id, session));
    let what = format!("provisioned organization {organization_id} ({} tier)", tier.as_str());
    Ok(Provisioning::Applied { commands, what })
}

/// The session's Stripe customer, linked to the organization, and the
/// payment method it saved, to become the default for invoices (the sync
/// does that: it needs Stripe). Each on a stream of its own, expecting none.
fn stripe_links(ledger: &Ledger, context: &Context, organization_id: OrganizationId, session: &Value) -> Vec<Command> {
    let now = ledger.now();
    let new_stream = |stream_id: StreamId, event: StripeEvent| Command {
        stream_id,
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, &context.metadata)],
    };
    let Some(customer_id) = session["customer"].as_str().filter(|id| valid_stripe_id(id)) else {
        return Vec::new();
    };
    let linked = StripeCustomerLinked { organization_id, customer_id: customer_id.to_owned() };
    let mut commands = vec![new_stream(customer_stream(organization_id), linked.into())];
    if let Some(setup_intent_id) = session["setup_intent"].as_str().filter(|id| valid_stripe_id(id)) {
        let saved = StripePaymentMethodSaved {
            organization_id,
            customer_id: customer_id.to_owned(),
            setup_intent_id: setup_intent_id.to_owned(),
        };
        commands.push(new_stream(payment_method_stream(organization_id), saved.into()));
    }
    commands
}

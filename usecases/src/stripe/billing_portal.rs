//! "Billing details" (issue 14): a Stripe customer-portal session for an
//! organization's Stripe customer, where its admin manages the payment
//! method. Stripe sends the browser back to `return_url`, which must be
//! one of the configured return origins (`Stripe::allows_return_to`), so
//! the portal is no open redirect.

use domain::OrganizationId;

use super::Stripe;
use crate::{Caller, Error, Ledger, Need};

/// Whether billing details can be offered: Stripe configured with a key.
pub fn available(stripe: &Stripe) -> bool {
    stripe.client.is_some()
}

/// Creates a customer-portal session for the organization's Stripe
/// customer (its admin's) and answers the URL to send the browser to.
pub async fn session(
    ledger: &Ledger,
    stripe: &Stripe,
    caller: &Caller,
    organization_id: OrganizationId,
    return_url: &str,
) -> Result<String, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let client = stripe.client.as_ref().ok_or_else(|| Error::Unavailable("Stripe is not configured".into()))?;
    if !stripe.allows_return_to(return_url) {
        return Err(Error::conflict(
            "return_url_not_allowed",
            "the return URL's origin is not one of the configured return origins (LEDGER_RETURN_ORIGINS)",
        ));
    }
    let customer = projections::models::stripe::customer(&ledger.models.db, organization_id)
        .await
        .map_err(super::unavailable)?
        .ok_or_else(|| Error::conflict("no_stripe_customer", "the organization has no Stripe customer yet"))?;
    let session = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
        .customer(customer)
        .return_url(return_url.to_owned())
        .send(client)
        .await
        .map_err(|e| Error::Unavailable(format!("Stripe refused the customer-portal session: {e}")))?;
    let origin = url::Url::parse(&session.url).map(|url| url.origin().ascii_serialization());
    if !origin.is_ok_and(|origin| stripe.billing_portal_origins().contains(&origin)) {
        return Err(Error::Unavailable("Stripe answered a customer-portal URL on an unexpected origin".into()));
    }
    Ok(session.url)
}

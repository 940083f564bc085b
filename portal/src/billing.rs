//! "Billing details" (issue 14): when Stripe is configured, the admin's
//! button (a POST form, so no link opens a session by itself) creates a
//! Stripe customer-portal session for the organization's Stripe customer
//! and sends the browser there (303); Stripe sends it back to the
//! overview, whose origin must be one of `LEDGER_RETURN_ORIGINS`.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Redirect;
use serde::Deserialize;

use crate::session::Signed;
use crate::{Portal, PortalError};

#[derive(Deserialize)]
pub struct BillingForm {
    #[serde(default)]
    csrf: String,
}

/// Whether the overview offers billing details to this user.
pub fn offered(portal: &Portal, signed: &Signed) -> bool {
    signed.is_admin() && usecases::stripe::billing_portal::available(&portal.stripe)
}

/// The portal's CSP with `form-action` widened to Stripe's customer-portal
/// origins: a form's redirect is held to its page's `form-action`.
pub fn content_security_policy(portal: &Portal) -> String {
    let origins = portal.stripe.billing_portal_origins().join(" ");
    crate::headers::CONTENT_SECURITY_POLICY.replace("form-action 'self'", &format!("form-action 'self' {origins}"))
}

pub async fn open(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Form(input): Form<BillingForm>,
) -> Result<Redirect, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let return_url = format!("{}/portal/orgs/{org}", portal.settings.portal_url.trim_end_matches('/'));
    let url =
        usecases::stripe::billing_portal::session(&portal.ledger, &portal.stripe, &signed.caller(), org, &return_url)
            .await?;
    Ok(Redirect::to(&url))
}

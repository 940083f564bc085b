//! An erased organization's Stripe customer (issue 16): its name, e-mail
//! address, phone, description and address are set empty through Stripe's
//! API. The customer itself stays (Stripe keeps the invoices and payments
//! the law requires), known by its id and the ledger's organization id in
//! its metadata, neither of which is personal.

use stripe::StripeRequest;
use stripe_core::customer::{OptionalFieldsCustomerAddress, UpdateCustomer};

use crate::Error;
use crate::stripe::Stripe;

/// Redacts `customer_id` (the organization's customer) when a Stripe
/// client is configured; `false` when Stripe is off. Idempotent by
/// itself: a repeated redaction sets the same empty fields.
pub async fn redact_customer(
    stripe: &Stripe,
    organization_id: domain::OrganizationId,
    customer_id: &str,
) -> Result<bool, Error> {
    let Some(client) = stripe.client.as_ref() else { return Ok(false) };
    let empty = || Some(String::new());
    let address = OptionalFieldsCustomerAddress {
        city: empty(),
        country: empty(),
        line1: empty(),
        line2: empty(),
        postal_code: empty(),
        state: empty(),
    };
    UpdateCustomer::new(customer_id)
        .name("")
        .email("")
        .phone("")
        .description("")
        .address(address)
        .customize()
        .send(client)
        .await
        .map_err(|e| Error::Unavailable(format!("Stripe did not redact the customer: {e}")))?;
    tracing::info!(organization = %organization_id, "Stripe customer redacted");
    Ok(true)
}

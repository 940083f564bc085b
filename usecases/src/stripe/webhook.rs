//! Receiving a Stripe webhook delivery: the signature checked against the
//! raw body under the system clock, then the event appended once.
//!
//! Only a body whose `Stripe-Signature` matches is looked at as JSON. An
//! accepted event is appended once, to `stripe-event/{id}` expecting no
//! stream: a redelivery, a replay or a burst of the same event appends
//! nothing more and is acknowledged the same. Handling happens after the
//! acknowledgement, in the reactor, from the log.

use domain::Metadata;
use domain::stripe::{StripeEvent, event_stream};
use domain::webhook::parse_event;
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use super::Stripe;
use super::signature::{SignatureError, verify};
use crate::Ledger;
use crate::command::new_event_id;
use crate::error::Error;
use crate::views::stripe::WebhookReceived;

/// Why a webhook delivery was refused; nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No webhook secret is configured: Stripe retries later.
    #[error("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET)")]
    NotConfigured,
    /// The `Stripe-Signature` is missing, malformed, stale or matches no
    /// secret.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Signed, but not a Stripe event the ledger can record.
    #[error("{0}")]
    InvalidEvent(&'static str),
}

/// Checks a delivery (`signature`: the `Stripe-Signature` header's value,
/// if any; `system_now`: Unix seconds by the system clock, never the
/// business clock) and records its event once.
pub async fn receive(
    ledger: &Ledger,
    stripe: &Stripe,
    signature: Option<&str>,
    body: &[u8],
    system_now: i64,
) -> Result<WebhookReceived, Error> {
    if !stripe.webhooks_enabled() {
        return Err(WebhookError::NotConfigured.into());
    }
    verify(signature, body, &stripe.webhook_secrets, system_now).map_err(WebhookError::from)?;
    let received = parse_event(body).map_err(|e| WebhookError::InvalidEvent(e.0))?;
    let id = received.event_id.clone();
    let metadata = Metadata { actor: Some("stripe".into()), correlation_id: Some(id.clone()), ..Metadata::default() };
    let stream_id = event_stream(&id).ok_or(WebhookError::InvalidEvent("the event id is not a Stripe id"))?;
    let command = Command {
        stream_id,
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(&StripeEvent::from(received), new_event_id(), ledger.now(), &metadata)],
    };
    // A failure of the store is not acknowledged: Stripe delivers it again.
    let duplicate = match ledger.log.append_one(command).await? {
        Ok(_) => false,
        Err(Rejection::WrongRevision { .. }) => true,
        Err(rejection) => return Err(Error::Validation(rejection.to_string())),
    };
    stripe.reactor.notify_one();
    Ok(WebhookReceived { received: true, duplicate })
}

//! Stripe's answers: a webhook delivery received, a checkout started.

use serde::Serialize;
use utoipa::ToSchema;

/// A webhook delivery, recorded (or recorded before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceived {
    pub received: bool,
    /// The event was recorded by an earlier delivery; nothing more was.
    pub duplicate: bool,
}

/// A Stripe Checkout session to send the buyer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutSession {
    pub session_id: String,
    pub url: Option<String>,
}

//! `POST /api/v1/webhooks/stripe` and `POST /api/v1/checkout`.
//!
//! The webhook reads the raw body (at most [`WEBHOOK_BODY_BYTES_MAX`])
//! before any parsing and hands it, with the `Stripe-Signature` header, to
//! `usecases::stripe::webhook::receive`, which checks the signature under
//! the system clock and records the event once.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use usecases::stripe::webhook::{self, WebhookError};
use usecases::views::stripe::{CheckoutSession, WebhookReceived};

use crate::AppState;
use crate::address::ClientAddress;
use crate::command::{IDEMPOTENCY_KEY_CHARS_MAX, request_digest};
use crate::error::ApiError;
use crate::extract::REQUEST_BODY_BYTES_MAX;
use crate::openapi::{Problem, PublicProblemResponses};
use crate::stripe::checkout::{Purchase, not_configured};

/// The largest webhook body accepted (Stripe's events are far smaller; an
/// invoice with many lines stays well inside).
pub const WEBHOOK_BODY_BYTES_MAX: usize = 512 * 1024;

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/stripe",
    tag = "stripe",
    request_body(content = String, description = "A Stripe event, exactly as Stripe sent it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<HMAC-SHA256 hex>[,v1=…]")),
    responses(
        (status = 200, body = WebhookReceived, description = "Recorded (or recorded before: `duplicate`). Handled after the answer, exactly once."),
        PublicProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "invalid_signature (missing, malformed, wrong or older than 300 s) or invalid_event; nothing recorded"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "stripe_not_configured (STRIPE_WEBHOOK_SECRET unset: Stripe retries later) or unavailable"),
    ),
)]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<WebhookReceived>, ApiError> {
    let raw = axum::body::to_bytes(body, WEBHOOK_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(WEBHOOK_BODY_BYTES_MAX))?;
    let signature = headers.get("stripe-signature").map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let system_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX));
    match webhook::receive(&state, &state.stripe, signature, &raw, system_now).await {
        Ok(received) => Ok(axum::Json(received)),
        Err(usecases::Error::Webhook(WebhookError::Signature(error))) => {
            // Anyone can post here: one warning per interval, counting the rest.
            if let Some(suppressed) = state.edge.webhook_warnings.admit() {
                tracing::warn!(%error, suppressed, "stripe webhook refused");
            }
            Err(usecases::Error::Webhook(WebhookError::Signature(error)).into())
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckoutRequest {
    tier: String,
    organization_name: String,
    admin_email: String,
    success_url: String,
    cancel_url: String,
}

/// The longest organization name and URL accepted here.
const NAME_CHARS_MAX: usize = 200;
const URL_CHARS_MAX: usize = 2048;

#[utoipa::path(
    post,
    path = "/api/v1/checkout",
    tag = "stripe",
    request_body = CheckoutRequest,
    responses(
        (status = 201, body = CheckoutSession, description = "A Stripe Checkout session (setup mode: saves a payment method, charges nothing) for a tier. Public: the buyer has no account yet; checkout.session.completed provisions the organization, admin, subscription and license."),
        PublicProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "validation_failed (also when Stripe refuses the session)"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited: too many checkouts from this address, or from everyone, this hour; with Retry-After"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "unavailable: Stripe not configured (STRIPE_SECRET_KEY) or not answering"),
    ),
)]
pub async fn checkout(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if state.stripe.client.is_none() {
        return Err(not_configured());
    }
    let raw = axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(REQUEST_BODY_BYTES_MAX))?;
    let body: CheckoutRequest =
        serde_json::from_slice(&raw).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value.to_str().ok().filter(|k| {
                !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_CHARS_MAX && k.bytes().all(|b| b.is_ascii_graphic())
            });
            let key = key.ok_or_else(|| {
                ApiError::Validation(format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters"
                ))
            })?;
            // Bound to the body (the same key with another body is another
            // purchase) and of fixed length, within Stripe's 255 characters.
            Some(request_digest("POST", &format!("/api/v1/checkout#{key}"), &raw).to_string())
        }
    };
    let body = &body;
    let tier = domain::catalog::Tier::parse(&body.tier)
        .ok_or_else(|| ApiError::Validation(format!("unknown tier {:?}", body.tier)))?;
    let name = body.organization_name.trim();
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!("organizationName must be 1 to {NAME_CHARS_MAX} characters")));
    }
    let email = body.admin_email.trim();
    let plausible = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plausible {
        return Err(ApiError::Validation(format!("{email:?} is not an e-mail address")));
    }
    for (field, url) in [("successUrl", &body.success_url), ("cancelUrl", &body.cancel_url)] {
        let ok = url.len() <= URL_CHARS_MAX
            && (url.starts_with("https://") || url.starts_with("http://"))
            && !url.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ApiError::Validation(format!("{field} must be an http(s) URL")));
        }
        if !state.stripe.allows_return_to(url) {
            return Err(ApiError::Validation(format!(
                "{field} must begin with one of the server's return origins (LEDGER_RETURN_ORIGINS)"
            )));
        }
    }
    // Only a well-formed request counts, and it counts before Stripe is
    // asked: each one makes a Stripe customer and session.
    if let Err(seconds) = state.edge.check_checkout(client.map(|Extension(ClientAddress(address))| address)) {
        return Ok(crate::transport::rate_limited(seconds, "too many checkouts this hour; try again later"));
    }
    let purchase = Purchase {
        tier,
        organization_name: name.to_owned(),
        admin_email: email.to_owned(),
        success_url: body.success_url.clone(),
        cancel_url: body.cancel_url.clone(),
        idempotency_key,
    };
    let (session_id, url) = crate::stripe::checkout::start(&state, &purchase).await?;
    Ok((StatusCode::CREATED, axum::Json(CheckoutSession { session_id, url })).into_response())
}

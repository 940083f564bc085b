//! `POST /api/v1/webhooks/stripe` and `POST /api/v1/checkout`.
//!
//! The webhook reads the raw body (at most [`WEBHOOK_BODY_BYTES_MAX`])
//! before any parsing, checks the `Stripe-Signature` against it under the
//! system clock, and only then looks at the JSON. An accepted event is
//! appended once, to `stripe-event/{id}` expecting no stream: a redelivery,
//! a replay or a burst of the same event appends nothing more and is
//! acknowledged the same. Handling happens after the acknowledgement, in
//! the reactor, from the log.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::stripe::{StripeEvent, StripeEventReceived, event_stream};
use domain::{Metadata, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::AppState;
use crate::address::ClientAddress;
use crate::command::{IDEMPOTENCY_KEY_CHARS_MAX, new_event_id, request_digest};
use crate::error::ApiError;
use crate::extract::REQUEST_BODY_BYTES_MAX;
use crate::stripe::checkout::{Purchase, not_configured};
use crate::stripe::signature::{SignatureError, verify};

/// The largest webhook body accepted (Stripe's events are far smaller; an
/// invoice with many lines stays well inside).
pub const WEBHOOK_BODY_BYTES_MAX: usize = 512 * 1024;

/// A webhook refusal: problem+json with a stable code, like `ApiError`.
fn refusal(status: StatusCode, code: &'static str, detail: String) -> Response {
    #[derive(serde::Serialize)]
    struct Extensions {
        code: &'static str,
    }
    problem_details::ProblemDetails::from_status_code(status)
        .with_detail(detail)
        .with_extensions(Extensions { code })
        .into_response()
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/stripe",
    tag = "stripe",
    request_body(content = String, description = "A Stripe event, exactly as Stripe sent it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<HMAC-SHA256 hex>[,v1=…]")),
    responses(
        (status = 200, description = "Recorded (or recorded before: {received, duplicate}). Handled after the answer, exactly once."),
        (status = 400, description = "invalid_signature (missing, malformed, wrong or older than 300 s) or invalid_event; nothing recorded"),
        (status = 413, description = "payload_too_large"),
        (status = 503, description = "stripe_not_configured (STRIPE_WEBHOOK_SECRET unset: Stripe retries later) or unavailable"),
    ),
)]
pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if !state.stripe.webhooks_enabled() {
        let detail = "Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET)".to_owned();
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "stripe_not_configured", detail);
    }
    let Ok(raw) = axum::body::to_bytes(body, WEBHOOK_BODY_BYTES_MAX).await else {
        return ApiError::PayloadTooLarge(WEBHOOK_BODY_BYTES_MAX).into_response();
    };
    let header = headers.get("stripe-signature").map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let system_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX));
    if let Err(error) = verify(header, &raw, &state.stripe.webhook_secrets, system_now) {
        // Anyone can post here: one warning per interval, counting the rest.
        if let Some(suppressed) = state.edge.webhook_warnings.admit() {
            tracing::warn!(%error, suppressed, "stripe webhook refused");
        }
        let detail = match error {
            SignatureError::Missing | SignatureError::Malformed | SignatureError::Stale => error.to_string(),
            // Which secret or signature came close is not said.
            SignatureError::NoMatch => "the signature does not match".to_owned(),
        };
        return refusal(StatusCode::BAD_REQUEST, "invalid_signature", detail);
    }
    match record(&state, &raw).await {
        Ok(duplicate) => {
            state.stripe.reactor.notify_one();
            (StatusCode::OK, axum::Json(json!({ "received": true, "duplicate": duplicate }))).into_response()
        }
        Err(response) => response,
    }
}

/// Appends the event; `Ok(true)` when it was recorded before.
async fn record(state: &AppState, raw: &[u8]) -> Result<bool, Response> {
    let invalid = |detail: &str| refusal(StatusCode::BAD_REQUEST, "invalid_event", detail.to_owned());
    let body = std::str::from_utf8(raw).map_err(|_| invalid("the body is not UTF-8"))?;
    let event: Value = serde_json::from_str(body).map_err(|_| invalid("the body is not JSON"))?;
    let id = event["id"].as_str().ok_or_else(|| invalid("the event has no id"))?;
    let stream_id = event_stream(id).ok_or_else(|| invalid("the event id is not a Stripe id"))?;
    let event_type = event["type"]
        .as_str()
        .filter(|t| !t.is_empty() && t.len() <= 100 && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| invalid("the event has no type"))?;
    let created = event["created"]
        .as_i64()
        .and_then(|seconds| seconds.checked_mul(1_000_000))
        .ok_or_else(|| invalid("the event has no created time"))?;
    let object_id =
        event["data"]["object"]["id"].as_str().filter(|id| domain::stripe::valid_stripe_id(id)).map(str::to_owned);
    let received: StripeEvent = StripeEventReceived {
        event_id: id.to_owned(),
        event_type: event_type.to_owned(),
        created: Timestamp::from_micros(created),
        livemode: event["livemode"].as_bool().unwrap_or(false),
        object_id,
        body: body.to_owned(),
    }
    .into();
    let metadata =
        Metadata { actor: Some("stripe".into()), correlation_id: Some(id.to_owned()), ..Metadata::default() };
    let command = Command {
        stream_id,
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(&received, new_event_id(), state.now(), &metadata)],
    };
    match state.log.append_one(command).await {
        Ok(Ok(_)) => Ok(false),
        Ok(Err(Rejection::WrongRevision { .. })) => Ok(true),
        Ok(Err(rejection)) => Err(ApiError::Validation(rejection.to_string()).into_response()),
        // Not acknowledged: Stripe delivers it again.
        Err(error) => Err(ApiError::from(error).into_response()),
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
        (status = 201, description = "A Stripe Checkout session (setup mode: saves a payment method, charges nothing) for a tier. Answers {sessionId, url}. Public: the buyer has no account yet; checkout.session.completed provisions the organization, admin, subscription and license."),
        (status = 400, description = "validation_failed (also when Stripe refuses the session)"),
        (status = 429, description = "rate_limited: too many checkouts from this address, or from everyone, this hour; with Retry-After"),
        (status = 503, description = "unavailable: Stripe not configured (STRIPE_SECRET_KEY) or not answering"),
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
    Ok((StatusCode::CREATED, axum::Json(json!({ "sessionId": session_id, "url": url }))).into_response())
}

//! License validation for on-premises clients, and releasing a deployment:
//! the HTTP side of `usecases::validation` and `usecases::deployments`.
//! The per-address limit of validations is the edge's, here.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use domain::LicenseId;
use serde::Deserialize;
use usecases::deployment_keys::Proof;
use usecases::validation::{Origin, ValidationRequest};
use usecases::views::SequenceResponse;
use usecases::views::licensing::{ChallengeResponse, ReleaseResponse, ValidationResponse};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{CommandRequest, REQUEST_BODY_BYTES_MAX};
use crate::openapi::{Problem, ProblemResponses, PublicProblemResponses};

/// The name of the per-address limit, in a rate-limited answer.
pub const VALIDATIONS_PER_ADDRESS_PER_MINUTE: &str = "validations_per_address_per_minute";
/// The longest `User-Agent` kept in a validation's metadata.
const USER_AGENT_CHARS_MAX: usize = 256;

/// The seed's `LicenseValidationRequest`, plus `nonce` and `clientTime`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateRequest {
    license_key: Option<String>,
    client_info: Option<ClientInfo>,
    nonce: Option<String>,
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$")]
    client_time: Option<String>,
    /// A heartbeat of a floating deployment: it holds its place only while
    /// it sends these, and its lease ends with its place.
    floating: Option<bool>,
    /// The deployment's Ed25519 public key (base64url of 32 bytes), sent
    /// with `challenge` and `signature`, or none of the three (a client
    /// without a deployment key, as the seed's, keeps today's answers).
    deployment_key: Option<String>,
    /// A challenge from `POST /api/v1/license/challenge`, answered once.
    challenge: Option<String>,
    /// The deployment key's signature (base64url of 64 bytes) over
    /// `ledger 2026-12-01 deployment proof v1\0` ‖ challenge ‖ 0 ‖ key
    /// binding ‖ 0 ‖ deployment id ‖ 0 ‖ nonce (`domain::deployment_key`).
    signature: Option<String>,
}

/// As the seed writes it: snake_case fields.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct ClientInfo {
    version: Option<String>,
    deployment_id: Option<String>,
    #[allow(dead_code)]
    last_sync: Option<String>,
}

/// The request, from its JSON body (none: `{}`) and, for the key, the
/// `Authorization: Bearer` credential (the seed's `LicenseManager`).
fn validation_request(headers: &HeaderMap, body: &Bytes) -> Result<ValidationRequest, ApiError> {
    let request: ValidateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ValidateRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?
    };
    let client = request.client_info.unwrap_or_default();
    let proof = match (request.deployment_key, request.challenge, request.signature) {
        (Some(public_key), Some(challenge), Some(signature)) => Some(Proof { public_key, challenge, signature }),
        (None, None, None) => None,
        _ => {
            let why = "deploymentKey, challenge and signature go together: all three or none";
            return Err(ApiError::Validation(why.into()));
        }
    };
    Ok(ValidationRequest {
        license_key: request.license_key.or_else(|| crate::auth::bearer(headers).map(str::to_owned)),
        deployment_id: client.deployment_id,
        nonce: request.nonce,
        client_time: request.client_time,
        client_version: client.version,
        floating: request.floating.unwrap_or(false),
        proof,
    })
}

#[utoipa::path(
    method(get, post),
    path = "/api/v1/license/validate",
    tag = "ledger",
    request_body(content = ValidateRequest, description = "Optional: without a body (a GET, as the seed's client sends), the key is the `Authorization: Bearer` credential."),
    responses(
        (status = 200, body = ValidationResponse, description = "The seed's LicenseValidationResponse plus licenseId, code, warnings, a signed lease (when valid; bound to the deployment key when the request proved one, which binds it on first use), a signed refusal (when not valid: REVOKED, EXPIRED, SUSPENDED, TOO_MANY_DEPLOYMENTS, NOT_FOUND for a request that names a key, DEPLOYMENT_KEY_REQUIRED or DEPLOYMENT_KEY_MISMATCH when the deployment bound a key and the request presents none or another; `domain::lease::SignedRefusal`, bound to the key, deployment and nonce) and sequence. Unknown or malformed keys answer isValid false, code NOT_FOUND."),
        PublicProblemResponses,
        (status = 400, body = Problem, content_type = "application/problem+json", description = "validation_failed: a malformed nonce, clientTime or deployment id"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited, with Retry-After; `limit` names the limit: validations_per_address_per_minute, validations_per_key_per_day (until the next UTC midnight; heartbeats count), or activations_per_key_per_hour (a deployment taking a place it did not hold)"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "validation_failed: a malformed nonce, clientTime or deployment id, or only some of deploymentKey, challenge and signature; a deployment key's proof refused: deployment_key_malformed, challenge_invalid (not minted by this server), challenge_expired, deployment_proof_invalid (the signature is not the key's over this challenge, license key, deployment and nonce)"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "challenge_replayed: the challenge was answered before (a replayed signature)"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited, with Retry-After; `limit` names the limit: validations_per_address_per_minute, or validations_per_key_per_day (until the next UTC midnight)"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "read_model_failed or projection_lagging: the read models failed or are more than 5 s behind the log; never answered as NOT_FOUND"),
    ),
)]
pub async fn validate(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip());
    if let Err(seconds) = state.address_limiter.check(address) {
        state.metrics.validation("rate_limited", "none");
        return Err(ApiError::RateLimited {
            limit: Some(VALIDATIONS_PER_ADDRESS_PER_MINUTE),
            retry_after_seconds: seconds,
            message: "too many validations from this address".into(),
        });
    }
    let body = axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(REQUEST_BODY_BYTES_MAX))?;
    let asked =
        validation_request(&parts.headers, &body).inspect_err(|_| state.metrics.validation("malformed", "none"))?;
    let origin = Origin {
        source_ip: address.map(|a| a.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(USER_AGENT_CHARS_MAX).collect()),
    };
    let activations = Some(&state.edge.activations);
    Ok(Json(usecases::validation::validate_limited(&state, asked, origin, activations).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {}

#[utoipa::path(
    post,
    path = "/api/v1/licenses/{license_id}/deployments/{deployment_id}/release",
    tag = "ledger",
    params(
        ("license_id" = Uuid, Path, description = "UUID"),
        ("deployment_id" = String, Path, description = "the deployment id"),
    ),
    responses(
        (status = 200, body = ReleaseResponse, description = "Release a deployment of a key (org admin). Its place frees when the last lease it was given ends (slotFreesAt)."),
        ProblemResponses,
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited (limit releases_per_license_per_hour): too many releases of this key this hour, with Retry-After"),
    ),
)]
pub async fn release_deployment(
    State(state): State<AppState>,
    Path((license_id, deployment_id)): Path<(Uuid, String)>,
    request: CommandRequest<Release>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    let released = usecases::deployments::release(
        &state,
        &request.caller,
        &request.context,
        &state.edge.releases,
        LicenseId(license_id),
        &deployment_id,
    )
    .await?;
    Ok(Json(released))
}

#[utoipa::path(
    post,
    path = "/api/v1/license/challenge",
    tag = "ledger",
    responses(
        (status = 200, body = ChallengeResponse, description = "A challenge for a deployment to sign with its key pair in its next validation (deploymentKey, challenge, signature); valid for a minute and answered once. No credential; limited per address with the validations."),
        PublicProblemResponses,
        (status = 429, body = Problem, content_type = "application/problem+json", description = "rate_limited (limit validations_per_address_per_minute), with Retry-After"),
    ),
)]
pub async fn challenge(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip());
    if let Err(seconds) = state.address_limiter.check(address) {
        return Err(ApiError::RateLimited {
            limit: Some(VALIDATIONS_PER_ADDRESS_PER_MINUTE),
            retry_after_seconds: seconds,
            message: "too many validations from this address".into(),
        });
    }
    Ok(Json(usecases::deployment_keys::challenge(&state)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/licenses/{license_id}/deployments/{deployment_id}/reset-key",
    tag = "ledger",
    params(
        ("license_id" = Uuid, Path, description = "UUID"),
        ("deployment_id" = String, Path, description = "the deployment id"),
    ),
    responses(
        (status = 200, body = SequenceResponse, description = "Forget the key pair bound to a deployment (org admin, or the operator; DeploymentKeyReset): its next validation binds the key it presents. 409 deployment_key_not_bound when none is bound."),
        ProblemResponses,
    ),
)]
pub async fn reset_deployment_key(
    State(state): State<AppState>,
    Path((license_id, deployment_id)): Path<(Uuid, String)>,
    request: CommandRequest<Release>,
) -> Result<Json<SequenceResponse>, ApiError> {
    let id = LicenseId(license_id);
    let reset =
        usecases::deployment_keys::reset_key(&state, &request.caller, &request.context, id, &deployment_id).await?;
    Ok(Json(reset))
}

//! License validation for on-premises clients, and releasing a deployment.
//!
//! A validation of a *known* key is recorded as an event, refusals
//! included; malformed, unknown and rate-limited attempts are only counted
//! in metrics, so nobody can flood the log. The key is found by its id (in
//! its signed payload) and accepted only if its keyed hash equals the
//! stored one, compared in constant time: [`known_license`] is the one
//! place that does it.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::keys::{constant_time_eq, license_key_hash};
use domain::lease::{
    DEPLOYMENT_ID_CHARS_MAX, LEASE_MICROS, LeaseBody, LeaseLimits, NONCE_CHARS_MAX, RefusalBody, SignedLease,
    SignedRefusal,
};
use domain::license::{License, LicenseCommand, SubscriptionFacts, ValidationCode, valid_deployment_id};
use domain::validation::{LicenseValidated, VALIDATIONS_PER_DAY_MAX};
use domain::{LicenseId, Metadata, OrganizationId, Timestamp};
use serde::Deserialize;
use serde_json::json;
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::command::{ATTEMPTS_MAX, load, new_event_id};
use crate::error::ApiError;
use crate::extract::{CommandRequest, REQUEST_BODY_BYTES_MAX};

/// The seed's `LicenseValidationRequest`, plus `nonce` and `clientTime`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateRequest {
    license_key: Option<String>,
    client_info: Option<ClientInfo>,
    nonce: Option<String>,
    client_time: Option<String>,
}

/// As the seed writes it: snake_case fields.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct ClientInfo {
    version: Option<String>,
    deployment_id: Option<String>,
    #[allow(dead_code)]
    last_sync: Option<String>,
}

/// What a validation request asks, checked.
struct Asked {
    key: Option<String>,
    deployment_id: String,
    nonce: Option<String>,
    client_time: Option<Timestamp>,
    client_version: Option<String>,
}

fn asked(headers: &HeaderMap, body: &Bytes) -> Result<Asked, ApiError> {
    let request: ValidateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ValidateRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))?
    };
    let bearer = crate::auth::bearer(headers).map(str::to_owned);
    let client = request.client_info.unwrap_or_default();
    let deployment_id = client.deployment_id.unwrap_or_else(|| "default".into());
    valid_deployment_id(&deployment_id).map_err(|_| {
        ApiError::Validation(format!(
            "clientInfo.deployment_id must be 1 to {DEPLOYMENT_ID_CHARS_MAX} visible ASCII characters"
        ))
    })?;
    if let Some(nonce) = &request.nonce
        && (nonce.is_empty()
            || nonce.len() > NONCE_CHARS_MAX
            || !nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(ApiError::Validation(format!(
            "nonce must be 1 to {NONCE_CHARS_MAX} characters of A-Z a-z 0-9 - _"
        )));
    }
    let client_time = request
        .client_time
        .map(|t| Timestamp::parse_rfc3339(&t).map_err(|e| ApiError::Validation(format!("clientTime: {e}"))))
        .transpose()?;
    let client_version = client.version.map(|v| v.chars().take(64).collect());
    Ok(Asked { key: request.license_key.or(bearer), deployment_id, nonce: request.nonce, client_time, client_version })
}

/// The license a presented key names: the one whose stored keyed hash
/// equals the presented key's, compared in constant time. The keyed hash
/// is computed under the server secret, so finding it in the index first
/// tells a guesser nothing, and a match proves the key is one this server
/// issued (no signature check is needed on this path).
pub(crate) async fn known_license(state: &AppState, key: &str) -> Option<(LicenseId, OrganizationId)> {
    if key.len() > domain::keys::SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let presented = license_key_hash(&state.keys.secret, key);
    let ledger = state.projections.read().await;
    let license_id = *ledger.license_keys.get(&presented)?;
    let issued = ledger.licenses.get(&license_id)?.issued.as_ref()?;
    constant_time_eq(presented.as_bytes(), issued.key_hash.as_bytes()).then_some((license_id, issued.organization_id))
}

/// Whole seconds until the next UTC midnight, at least one.
fn seconds_to_midnight(now: Timestamp, today: chrono::NaiveDate) -> u64 {
    let midnight = domain::license::start_of_day(today.succ_opt().expect("dates stay far from the end of time"));
    ((midnight.as_micros() - now.as_micros()) / 1_000_000).max(1) as u64
}

/// How far behind the log's head the read models may be for a validation
/// to be answered from them: a refusal (or a NOT_FOUND for a key issued by
/// another process a moment ago) from older state switches a deployment
/// off for nothing, so past this the answer is 503 and the client keeps
/// its lease. Five seconds is what a command waits for the read models
/// (`command::execute`), so a healthy server is never this far behind.
pub const READ_MODEL_LAG_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses to validate from read models that failed or fell behind.
fn fresh_enough(state: &AppState) -> Result<(), ApiError> {
    if state.projections.failed().is_some() {
        return Err(ApiError::ReadModelFailed);
    }
    if state.projections.lag() > READ_MODEL_LAG_MAX {
        return Err(ApiError::ProjectionLagging(state.projections.applied() + 1));
    }
    Ok(())
}

/// A key the read models do not know: before saying NOT_FOUND, wait (up
/// to [`READ_MODEL_LAG_MAX`]) until they include the log's head, since
/// another process may have issued the key a moment ago, then look again.
async fn found_after_catching_up(state: &AppState, key: &str) -> Result<Option<(LicenseId, OrganizationId)>, ApiError> {
    let head = state.log.head().await?.sequence;
    if state.projections.applied() < head {
        state.projections.wait_for(head, READ_MODEL_LAG_MAX).await.map_err(|_| ApiError::ProjectionLagging(head))?;
        fresh_enough(state)?;
    }
    Ok(known_license(state, key).await)
}

/// The license and organization of a presented key, from read models that
/// are fresh enough; otherwise the signed `NOT_FOUND` answer.
async fn license_of(
    state: &AppState,
    key: &str,
    asked: &Asked,
) -> Result<Result<(LicenseId, OrganizationId), Response>, ApiError> {
    fresh_enough(state)?;
    let found = match known_license(state, key).await {
        Some(found) => Some(found),
        None => found_after_catching_up(state, key).await?,
    };
    Ok(found.ok_or_else(|| {
        state.metrics.validation(ValidationCode::NotFound.as_str(), "none");
        let refused = (key.len() <= domain::keys::SECRET_TEXT_BYTES_MAX)
            .then(|| sign_refusal(state, key, asked, ValidationCode::NotFound, state.now()));
        not_found(refused)
    }))
}

/// A refusal of this request, signed with the lease key and bound to its
/// key, deployment and nonce, so the client can trust it (`domain::lease`).
fn sign_refusal(state: &AppState, key: &str, asked: &Asked, code: ValidationCode, now: Timestamp) -> SignedRefusal {
    let body = RefusalBody {
        version: 1,
        key_binding: domain::lease::key_binding(key),
        deployment_id: asked.deployment_id.clone(),
        nonce: asked.nonce.clone().unwrap_or_default(),
        code: code.as_str().into(),
        issued_at: now,
    };
    SignedRefusal::sign(&body, &state.keys.lease)
}

/// `NOT_FOUND`; signed when the request named a key (a well-formed request).
fn not_found(refusal: Option<SignedRefusal>) -> Response {
    Json(json!({
        "isValid": false,
        "isExpired": false,
        "code": ValidationCode::NotFound.as_str(),
        "warnings": [],
        "licenseId": null,
        "validationId": null,
        "subscription": null,
        "organization": null,
        "lease": null,
        "refusal": refusal,
        "sequence": null,
    }))
    .into_response()
}

fn too_many(retry_after_seconds: u64, detail: &str) -> Response {
    ApiError::RateLimited { retry_after_seconds, message: detail.to_owned() }.into_response()
}

#[utoipa::path(
    post,
    path = "/api/v1/license/validate",
    tag = "ledger",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "The seed's LicenseValidationResponse plus licenseId, code, warnings, a signed lease (when valid), a signed refusal (when not valid: REVOKED, EXPIRED, SUSPENDED, TOO_MANY_DEPLOYMENTS, NOT_FOUND for a request that names a key; `domain::lease::SignedRefusal`, bound to the key, deployment and nonce) and sequence. Unknown or malformed keys answer isValid false, code NOT_FOUND."),
        (status = 400, description = "validation_failed: a malformed nonce, clientTime or deployment id"),
        (status = 429, description = "rate_limited, with Retry-After"),
        (status = 503, description = "read_model_failed or projection_lagging: the read models failed or are more than 5 s behind the log; never answered as NOT_FOUND"),
    ),
)]
pub async fn validate(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip());
    if let Err(seconds) = state.address_limiter.check(address) {
        state.metrics.validation("rate_limited", "none");
        return Ok(too_many(seconds, "too many validations from this address"));
    }
    let body = axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(REQUEST_BODY_BYTES_MAX))?;
    let headers = parts.headers;
    let asked = asked(&headers, &body).inspect_err(|_| state.metrics.validation("malformed", "none"))?;
    let Some(key) = asked.key.as_deref() else {
        state.metrics.validation("malformed", "none");
        return Ok(not_found(None));
    };
    let (license_id, organization_id) = match license_of(&state, key, &asked).await? {
        Ok(found) => found,
        Err(not_found) => return Ok(not_found),
    };
    let metadata = Metadata {
        actor: Some(format!("license:{license_id}")),
        correlation_id: None,
        source_ip: address.map(|a| a.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect()),
    };
    for _ in 0..ATTEMPTS_MAX {
        let (now, today) = (state.now(), state.today());
        let day = domain::validation::stream(license_id, today);
        // Decided on the read model's state of the key (which every command
        // response waits for); only a first activation of a deployment,
        // which appends to the key's own stream, reloads it from the log and
        // decides again there, with optimistic concurrency.
        let (current, facts, subscription) = {
            let ledger = state.projections.read().await;
            let license = ledger.licenses.get(&license_id).cloned().ok_or(ApiError::NotFound)?;
            let issued = license.issued.as_ref().ok_or(ApiError::NotFound)?;
            let subscription = ledger.subscriptions.get(&issued.subscription_id).cloned().ok_or(ApiError::NotFound)?;
            let facts = SubscriptionFacts {
                status: subscription.status_on(today),
                term_end: subscription.end_date.ok_or(ApiError::NotFound)?,
                auto_renew: subscription.auto_renew,
                max_deployments: subscription.max_deployments,
            };
            (license, facts, subscription)
        };
        let mut code = current.validation_code(&facts, &asked.deployment_id, now, today);
        let key_end = current.end(&facts);
        let superseded_until = current.superseded.as_ref().map(|s| s.window_ends_at);
        let mut commands = Vec::new();
        if code.is_valid() && !current.deployments.contains(&asked.deployment_id) {
            let mut license = load::<License>(&state, license_id.stream()).await?;
            code = license.state.validation_code(&facts, &asked.deployment_id, now, today);
            if code.is_valid() && !license.state.deployments.contains(&asked.deployment_id) {
                let activate = LicenseCommand::ActivateDeployment {
                    deployment_id: asked.deployment_id.clone(),
                    max_deployments: facts.max_deployments,
                };
                license.decide(activate, &()).await?;
                let context = crate::command::Context { metadata: metadata.clone(), idempotency: None };
                commands.push(license.into_command(&context, now));
            }
        }
        let validation_id = Uuid::now_v7();
        let validated = domain::validation::ValidationEvent::from(LicenseValidated {
            license_id,
            validation_id,
            deployment_id: asked.deployment_id.clone(),
            code,
            client_version: asked.client_version.clone(),
            at: now,
        });
        // The cap holds exactly (the writer checks it in order) and never
        // makes concurrent validations of the key conflict.
        let expected = ExpectedRevision::Below(VALIDATIONS_PER_DAY_MAX);
        let event = NewEvent::from_event(&validated, new_event_id(), now, &metadata);
        commands.push(Command { stream_id: day.clone(), expected, idempotency: None, events: vec![event] });
        match state.log.append_atomic(commands).await? {
            Ok(appended) => {
                let sequence = appended.iter().map(|a| a.last_sequence).max().unwrap_or_default();
                let tier = subscription.tier_on(today).map_or("none", |t| t.tier.as_str());
                state.metrics.validation(code.as_str(), tier);
                let answer = Answered {
                    license_id,
                    organization_id,
                    code,
                    validation_id,
                    sequence,
                    now,
                    today,
                    key_end,
                    superseded_until,
                };
                return Ok(answer.respond(&state, &subscription, key, &asked).await);
            }
            // The day's validations filled up while this one was deciding.
            Err(Rejection::WrongRevision { stream_id, .. }) if stream_id == day => {
                state.metrics.validation("rate_limited", "none");
                return Ok(too_many(seconds_to_midnight(now, today), "this key was validated 1,440 times today"));
            }
            // A deployment change of the key got there first (two
            // validations activating the same new deployment): decide again.
            Err(Rejection::WrongRevision { .. }) => continue,
            Err(other) => return Err(ApiError::Internal(other.to_string())),
        }
    }
    Err(ApiError::conflict("conflict", "the key's deployments kept changing; try again"))
}

struct Answered {
    license_id: LicenseId,
    organization_id: OrganizationId,
    code: ValidationCode,
    validation_id: Uuid,
    sequence: u64,
    now: Timestamp,
    today: chrono::NaiveDate,
    /// The key's own end: its supersede window's, or its term's.
    key_end: Timestamp,
    superseded_until: Option<Timestamp>,
}

impl Answered {
    async fn respond(
        self,
        state: &AppState,
        subscription: &domain::subscription::Subscription,
        key: &str,
        asked: &Asked,
    ) -> Response {
        let organization_name = {
            let ledger = state.projections.read().await;
            ledger.organizations.get(&self.organization_id).map(|o| o.created.name.clone())
        };
        let spec = super::queries::effective_spec(state, subscription, self.today);
        let tier = subscription.tier_on(self.today).map(|t| t.tier.as_str());
        let limits = spec.map(|(spec, extra_gb)| LeaseLimits {
            max_users: spec.seats.map_or(-1, i64::from),
            max_data_volume_gb: (spec.data_gb + extra_gb) as i64,
            max_api_calls: spec.api_calls_per_month.map_or(-1, |n| n as i64),
            model_size: spec.model_size.clone(),
        });
        let features: Vec<String> = spec.map(|(spec, _)| spec.features.clone()).unwrap_or_default();
        let mut warnings = Vec::new();
        if self.code == ValidationCode::PastDue {
            warnings.push("payment is past due: the subscription will be suspended unless paid".to_owned());
        }
        if let (ValidationCode::Superseded, Some(until)) = (self.code, self.superseded_until) {
            warnings.push(format!("this key was superseded; switch to the new key before {until}"));
        }
        let expires_at = self.key_end;
        let lease = match (self.code.is_valid(), &limits, tier) {
            (true, Some(limits), Some(tier)) => {
                let body = LeaseBody {
                    version: 1,
                    license_id: self.license_id,
                    organization_id: self.organization_id,
                    key_binding: domain::lease::key_binding(key),
                    deployment_id: asked.deployment_id.clone(),
                    nonce: asked.nonce.clone().unwrap_or_default(),
                    client_time: asked.client_time,
                    issued_at: self.now,
                    // Seven days offline, never past the key's own end.
                    lease_expires_at: Timestamp::from_micros(self.now.as_micros() + LEASE_MICROS).min(expires_at),
                    code: self.code.as_str().into(),
                    tier: tier.into(),
                    limits: limits.clone(),
                    features: features.clone(),
                };
                Some(SignedLease::sign(&body, &state.keys.lease))
            }
            _ => None,
        };
        let limits_json = limits.map(|l| {
            json!({
                "maxUsers": l.max_users,
                "maxDataVolumeGB": l.max_data_volume_gb,
                "maxApiCalls": l.max_api_calls,
                "allowedFeatures": features,
                "modelSize": l.model_size,
            })
        });
        let is_expired = matches!(self.code, ValidationCode::Expired);
        let refusal = (!self.code.is_valid()).then(|| sign_refusal(state, key, asked, self.code, self.now));
        Json(json!({
            "isValid": self.code.is_valid(),
            "isExpired": is_expired,
            "code": self.code.as_str(),
            "warnings": warnings,
            "licenseId": self.license_id,
            "validationId": self.validation_id,
            "serverTime": self.now.to_rfc3339(),
            // The feature list appears three ways, as each of the seed's
            // types reads one of them.
            "subscription": {
                "tier": tier,
                "limits": limits_json,
                "features": features,
                "allowedFeatures": features,
                "expiresAt": expires_at.to_rfc3339(),
            },
            "organization": { "id": self.organization_id, "name": organization_name },
            "lease": lease,
            "refusal": refusal,
            "sequence": self.sequence,
        }))
        .into_response()
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {}

#[utoipa::path(
    post,
    path = "/api/v1/licenses/{license_id}/deployments/{deployment_id}/release",
    tag = "ledger",
    params(
        ("license_id" = String, Path, description = "UUID"),
        ("deployment_id" = String, Path, description = "the deployment id"),
    ),
    responses(
        (status = 200, description = "Release a deployment of a key (org admin). Its place frees when the last lease it was given ends. Answers {sequence, slotFreesAt}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 429, description = "rate_limited: too many releases of this key this hour, with Retry-After"),
    ),
)]
pub async fn release_deployment(
    State(state): State<AppState>,
    Path((license_id, deployment_id)): Path<(Uuid, String)>,
    request: CommandRequest<Release>,
) -> Result<Response, ApiError> {
    let license_id = LicenseId(license_id);
    let organization_id = {
        let ledger = state.projections.read().await;
        ledger.licenses.get(&license_id).and_then(|l| l.issued.as_ref()).map(|i| i.organization_id)
    };
    // Another organization's license answers 404, as if it did not exist.
    let organization_id = organization_id.ok_or(ApiError::NotFound)?;
    request.caller.require_org(organization_id, Need::Admin)?;
    if matches!(request.caller, Caller::Auditor) {
        return Err(ApiError::Forbidden);
    }
    // Each release is an event; a key's releases are bounded per hour.
    if let Err(seconds) = state.edge.releases.check(&license_id) {
        return Ok(crate::transport::rate_limited(seconds, "too many releases of this key this hour"));
    }
    let appended = crate::command::execute(&state, &request.context, || async {
        let mut license = load::<License>(&state, license_id.stream()).await?;
        let (now, today) = (state.now(), state.today());
        let last_lease_ends = last_lease_end(&state, license_id, &deployment_id, today).await?;
        let release = LicenseCommand::ReleaseDeployment { deployment_id: deployment_id.clone(), now, last_lease_ends };
        license.decide(release, &()).await?;
        Ok(vec![license.into_command(&request.context, now)])
    })
    .await?;
    let slot_frees_at = appended.find(|e| match e {
        domain::event::LedgerEvent::License(domain::license::LicenseEvent::DeploymentReleased(r)) => {
            Some(r.slot_frees_at)
        }
        _ => None,
    })?;
    let answer = json!({ "sequence": appended.sequence, "slotFreesAt": slot_frees_at.to_rfc3339() });
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// When the last lease given to `deployment_id` of a key ends, from the
/// key's validations of the last days (a lease lasts
/// [`LEASE_MICROS`], so older days cannot hold a running one), newest day
/// first. Each day's stream holds at most `VALIDATIONS_PER_DAY_MAX` events.
async fn last_lease_end(
    state: &AppState,
    license_id: LicenseId,
    deployment_id: &str,
    today: chrono::NaiveDate,
) -> Result<Option<Timestamp>, ApiError> {
    use domain::event::StoredEvent;
    use domain::validation::ValidationEvent;
    const DAY_MICROS: u64 = 24 * 3600 * 1_000_000;
    for back in 0..=(LEASE_MICROS as u64).div_ceil(DAY_MICROS) {
        let Some(day) = today.checked_sub_days(chrono::Days::new(back)) else { break };
        let stream = domain::validation::stream(license_id, day);
        let records = state.log.read_stream(&stream, 1, VALIDATIONS_PER_DAY_MAX as usize).await?;
        let validations: Vec<LicenseValidated> = records
            .iter()
            .filter_map(|r| {
                let payload = r.payload.as_deref()?;
                match ValidationEvent::decode(&r.header.event_type, r.header.schema_version, payload) {
                    Ok(Some(ValidationEvent::LicenseValidated(validated))) => Some(validated),
                    _ => None,
                }
            })
            .collect();
        if let Some(end) = domain::license::last_lease_end(&validations, deployment_id) {
            return Ok(Some(end));
        }
    }
    Ok(None)
}

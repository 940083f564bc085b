//! License validation for on-premises clients (docs/API.md, "On-premises
//! clients"; BILLING-RULES.md, "License keys and validation").
//!
//! A validation of a *known* key is recorded as an event, refusals
//! included; malformed and unknown attempts are only counted in metrics, so
//! nobody can flood the log. A key's validations of one UTC day are capped
//! (`VALIDATIONS_PER_DAY_MAX`, counted from the log). The key is found by
//! its keyed hash, compared in constant time: [`known_license`] is the one
//! place that does it. Valid answers carry a signed lease, refusals a
//! signed refusal of this very request; read models that failed or lag
//! answer an error, never a NOT_FOUND that would switch a deployment off.
//!
//! The per-address limit is the HTTP edge's (it knows addresses).

use chrono::NaiveDate;
use domain::keys::{SECRET_TEXT_BYTES_MAX, constant_time_eq, license_key_hash};
use domain::lease::{DEPLOYMENT_ID_CHARS_MAX, LeaseBody, NONCE_CHARS_MAX, RefusalBody, SignedLease, SignedRefusal};
use domain::license::{License, LicenseCommand, SubscriptionFacts, ValidationCode, valid_deployment_id};
use domain::subscription::Subscription;
use domain::validation::{LicenseValidated, VALIDATIONS_PER_DAY_MAX};
use domain::{LicenseId, Metadata, OrganizationId, Timestamp};
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use uuid::Uuid;

use crate::Ledger;
use crate::acknowledged::{self, Credential};
use crate::command::{ATTEMPTS_MAX, Context, load, new_event_id};
use crate::error::Error;
use crate::views::licensing::{Limits, OrganizationRef, ValidatedSubscription, ValidationResponse};

/// How far behind the log's head the read models may be for a validation
/// to be answered from them: a refusal (or a NOT_FOUND for a key issued by
/// another process a moment ago) from older state switches a deployment
/// off for nothing, so past this the answer is an error and the client
/// keeps its lease. Five seconds is what a read waits for the read models
/// (`command::READ_YOUR_WRITES_WAIT`), so a healthy server is never this
/// far behind.
pub const READ_MODEL_LAG_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest client version kept in the validation event; longer is cut.
pub const CLIENT_VERSION_CHARS_MAX: usize = 64;
/// The name of the per-key daily cap, in a rate-limited answer.
pub const VALIDATIONS_PER_KEY_PER_DAY: &str = "validations_per_key_per_day";

/// A validation request as the client sent it (the seed's
/// `LicenseValidationRequest`, plus `nonce` and `clientTime`); checked by
/// [`validate`].
#[derive(Debug, Clone, Default)]
pub struct ValidationRequest {
    /// From the body, or the `Authorization: Bearer` credential.
    pub license_key: Option<String>,
    /// `default` when absent.
    pub deployment_id: Option<String>,
    pub nonce: Option<String>,
    /// RFC 3339.
    pub client_time: Option<String>,
    pub client_version: Option<String>,
}

/// Where a validation came from, for its event's metadata.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What a validation request asks, checked.
struct Asked {
    key: Option<String>,
    deployment_id: String,
    nonce: Option<String>,
    client_time: Option<Timestamp>,
    client_version: Option<String>,
}

fn asked(request: ValidationRequest) -> Result<Asked, Error> {
    let deployment_id = request.deployment_id.unwrap_or_else(|| "default".into());
    valid_deployment_id(&deployment_id).map_err(|_| {
        Error::Validation(format!(
            "clientInfo.deployment_id must be 1 to {DEPLOYMENT_ID_CHARS_MAX} visible ASCII characters"
        ))
    })?;
    if let Some(nonce) = &request.nonce
        && (nonce.is_empty()
            || nonce.len() > NONCE_CHARS_MAX
            || !nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(Error::Validation(format!("nonce must be 1 to {NONCE_CHARS_MAX} characters of A-Z a-z 0-9 - _")));
    }
    let client_time = request
        .client_time
        .map(|t| Timestamp::parse_rfc3339(&t).map_err(|e| Error::Validation(format!("clientTime: {e}"))))
        .transpose()?;
    let client_version = request.client_version.map(|v| v.chars().take(CLIENT_VERSION_CHARS_MAX).collect());
    Ok(Asked { key: request.license_key, deployment_id, nonce: request.nonce, client_time, client_version })
}

/// Validates a license key for a deployment: records the validation (and a
/// deployment's first activation) and answers with a signed lease or a
/// signed refusal. Over the key's daily cap: [`Error::RateLimited`] until
/// the next UTC midnight. Read models that failed or lag:
/// [`Error::ReadModelFailed`] or [`Error::ProjectionLagging`].
pub async fn validate(
    ledger: &Ledger,
    request: ValidationRequest,
    origin: Origin,
) -> Result<ValidationResponse, Error> {
    let asked = asked(request).inspect_err(|_| ledger.metrics.validation("malformed", "none"))?;
    let Some(key) = asked.key.as_deref() else {
        ledger.metrics.validation("malformed", "none");
        return Ok(ValidationResponse::not_found(None));
    };
    let Some((license_id, organization_id)) = license_of(ledger, key).await? else {
        ledger.metrics.validation(ValidationCode::NotFound.as_str(), "none");
        let refusal = (key.len() <= SECRET_TEXT_BYTES_MAX)
            .then(|| sign_refusal(ledger, key, &asked, ValidationCode::NotFound, ledger.now()));
        return Ok(ValidationResponse::not_found(refusal));
    };
    // Decided on state that includes what this node acknowledged to the
    // key, and the key's revocation or release acknowledged here.
    let credential = Credential::License(license_id);
    acknowledged::catch_up(ledger, Some(credential), None).await?;
    let metadata = Metadata {
        actor: Some(format!("license:{license_id}")),
        correlation_id: None,
        source_ip: origin.source_ip,
        user_agent: origin.user_agent,
    };
    for _ in 0..ATTEMPTS_MAX {
        match attempt(ledger, license_id, &asked, &metadata).await? {
            Attempt::Recorded(decided) => {
                ledger.acknowledged.record(credential, decided.sequence);
                let tier = decided.subscription.tier_on(decided.today).map_or("none", |t| t.tier.as_str());
                ledger.metrics.validation(decided.code.as_str(), tier);
                return Ok(answer(ledger, &decided, organization_id, key, &asked).await);
            }
            Attempt::DayFull { now, today } => {
                ledger.metrics.validation("rate_limited", "none");
                return Err(Error::RateLimited {
                    limit: VALIDATIONS_PER_KEY_PER_DAY,
                    retry_after_seconds: seconds_to_midnight(now, today),
                    message: format!("this key was validated {VALIDATIONS_PER_DAY_MAX} times today"),
                });
            }
            Attempt::Raced => continue,
        }
    }
    Err(Error::conflict("conflict", "the key's deployments kept changing; try again"))
}

/// The license a presented key names: the one whose stored keyed hash
/// equals the presented key's, compared in constant time. The keyed hash
/// is computed under the server secret, so finding it in the index first
/// tells a guesser nothing, and a match proves the key is one this server
/// issued (no signature check is needed on this path).
pub(crate) async fn known_license(ledger: &Ledger, key: &str) -> Option<(LicenseId, OrganizationId)> {
    if key.len() > SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let presented = license_key_hash(&ledger.keys.secret, key);
    let state = ledger.projections.read().await;
    let license_id = *state.license_keys.get(&presented)?;
    let issued = state.licenses.get(&license_id)?.issued.as_ref()?;
    constant_time_eq(presented.as_bytes(), issued.key_hash.as_bytes()).then_some((license_id, issued.organization_id))
}

/// Whole seconds until the next UTC midnight, at least one.
pub(crate) fn seconds_to_midnight(now: Timestamp, today: NaiveDate) -> u64 {
    let midnight = domain::license::start_of_day(today.succ_opt().expect("dates stay far from the end of time"));
    u64::try_from((midnight.as_micros() - now.as_micros()) / 1_000_000).unwrap_or(0).max(1)
}

/// Refuses to validate from read models that failed or fell behind.
fn fresh_enough(ledger: &Ledger) -> Result<(), Error> {
    if ledger.projections.failed().is_some() {
        return Err(Error::ReadModelFailed);
    }
    if ledger.projections.lag() > READ_MODEL_LAG_MAX {
        return Err(Error::ProjectionLagging(ledger.projections.applied() + 1));
    }
    Ok(())
}

/// The license and organization of a presented key, from read models that
/// are fresh enough. A key they do not know: before saying it is unknown,
/// wait (up to [`READ_MODEL_LAG_MAX`]) until they include the log's head,
/// since another process may have issued the key a moment ago, and look
/// again.
async fn license_of(ledger: &Ledger, key: &str) -> Result<Option<(LicenseId, OrganizationId)>, Error> {
    fresh_enough(ledger)?;
    if let Some(found) = known_license(ledger, key).await {
        return Ok(Some(found));
    }
    let head = ledger.log.head().await?.sequence;
    if ledger.projections.applied() < head {
        ledger.projections.wait_for(head, READ_MODEL_LAG_MAX).await.map_err(|_| Error::ProjectionLagging(head))?;
        fresh_enough(ledger)?;
    }
    Ok(known_license(ledger, key).await)
}

/// A refusal of this request, signed with the lease key and bound to its
/// key, deployment and nonce, so the client can trust it (`domain::lease`).
fn sign_refusal(ledger: &Ledger, key: &str, asked: &Asked, code: ValidationCode, now: Timestamp) -> SignedRefusal {
    let body = RefusalBody {
        version: 1,
        key_binding: domain::lease::key_binding(key),
        deployment_id: asked.deployment_id.clone(),
        nonce: asked.nonce.clone().unwrap_or_default(),
        code: code.as_str().into(),
        issued_at: now,
    };
    SignedRefusal::sign(&body, &ledger.keys.lease)
}

/// What one attempt at recording a validation came to.
enum Attempt {
    Recorded(Box<Decided>),
    /// The key's validations of the day reached their cap.
    DayFull {
        now: Timestamp,
        today: NaiveDate,
    },
    /// A deployment change of the key got there first: decide again.
    Raced,
}

/// A recorded validation: what was decided, and on what.
struct Decided {
    license_id: LicenseId,
    code: ValidationCode,
    /// The key as the read model had it.
    license: License,
    facts: SubscriptionFacts,
    subscription: Subscription,
    validation_id: Uuid,
    sequence: u64,
    now: Timestamp,
    today: NaiveDate,
}

/// Decides the validation on the read model's state of the key (which
/// every command response waits for) and appends it; only a first
/// activation of a deployment, which appends to the key's own stream,
/// reloads the key from the log and decides again there, with optimistic
/// concurrency.
async fn attempt(ledger: &Ledger, license_id: LicenseId, asked: &Asked, metadata: &Metadata) -> Result<Attempt, Error> {
    let (now, today) = (ledger.now(), ledger.today());
    let (license, facts, subscription) = key_state(ledger, license_id, today).await?;
    let mut code = license.validation_code(&facts, &asked.deployment_id, now, today);
    let mut commands = Vec::new();
    if code.is_valid() && !license.deployments.contains(&asked.deployment_id) {
        let mut fresh = load::<License>(ledger, license_id.stream()).await?;
        code = fresh.state.validation_code(&facts, &asked.deployment_id, now, today);
        if code.is_valid() && !fresh.state.deployments.contains(&asked.deployment_id) {
            let activate = LicenseCommand::ActivateDeployment {
                deployment_id: asked.deployment_id.clone(),
                max_deployments: facts.max_deployments,
            };
            fresh.decide(activate, &()).await?;
            let context = Context { metadata: metadata.clone(), idempotency: None, credential: None };
            commands.push(fresh.into_command(&context, now));
        }
    }
    let validation_id = Uuid::now_v7();
    let day = domain::validation::stream(license_id, today);
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
    let event = NewEvent::from_event(&validated, new_event_id(), now, metadata);
    commands.push(Command { stream_id: day.clone(), expected, idempotency: None, events: vec![event] });
    Ok(match ledger.log.append_atomic(commands).await? {
        Ok(appended) => {
            let sequence = appended.iter().map(|a| a.last_sequence).max().unwrap_or_default();
            let decided =
                Decided { license_id, code, license, facts, subscription, validation_id, sequence, now, today };
            Attempt::Recorded(Box::new(decided))
        }
        Err(Rejection::WrongRevision { stream_id, .. }) if stream_id == day => Attempt::DayFull { now, today },
        Err(Rejection::WrongRevision { .. }) => Attempt::Raced,
        Err(other) => return Err(Error::Internal(other.to_string())),
    })
}

/// The key, what a validation needs to know of its subscription today, and
/// the subscription, from the read model.
async fn key_state(
    ledger: &Ledger,
    license_id: LicenseId,
    today: NaiveDate,
) -> Result<(License, SubscriptionFacts, Subscription), Error> {
    let state = ledger.projections.read().await;
    let license = state.licenses.get(&license_id).cloned().ok_or(Error::NotFound)?;
    let issued = license.issued.as_ref().ok_or(Error::NotFound)?;
    let subscription = state.subscriptions.get(&issued.subscription_id).cloned().ok_or(Error::NotFound)?;
    let facts = SubscriptionFacts {
        status: subscription.status_on(today),
        term_end: subscription.end_date.ok_or(Error::NotFound)?,
        auto_renew: subscription.auto_renew,
        max_deployments: subscription.max_deployments,
    };
    Ok((license, facts, subscription))
}

/// The answer to a recorded validation: the limits in effect today, a
/// lease when valid (never outliving the key), a signed refusal when not.
async fn answer(
    ledger: &Ledger,
    decided: &Decided,
    organization_id: OrganizationId,
    key: &str,
    asked: &Asked,
) -> ValidationResponse {
    let name = {
        let state = ledger.projections.read().await;
        state.organizations.get(&organization_id).map(|o| o.created.name.clone())
    };
    let (code, now) = (decided.code, decided.now);
    let tier = decided.subscription.tier_on(decided.today).map(|t| t.tier.as_str());
    let limits = Limits::on(&decided.subscription, &ledger.catalog, decided.today);
    let features = limits.as_ref().map(|l| l.allowed_features.clone()).unwrap_or_default();
    let lease = match (code.is_valid(), &limits, tier) {
        (true, Some(limits), Some(tier)) => {
            Some(sign_lease(ledger, decided, organization_id, key, asked, tier, limits))
        }
        _ => None,
    };
    ValidationResponse {
        is_valid: code.is_valid(),
        is_expired: code == ValidationCode::Expired,
        code: code.as_str(),
        warnings: warnings(decided),
        license_id: Some(decided.license_id),
        validation_id: Some(decided.validation_id),
        server_time: Some(now),
        subscription: Some(ValidatedSubscription {
            tier,
            limits,
            allowed_features: features.clone(),
            features,
            expires_at: decided.license.end(&decided.facts),
        }),
        organization: Some(OrganizationRef { id: organization_id, name }),
        lease,
        refusal: (!code.is_valid()).then(|| sign_refusal(ledger, key, asked, code, now)),
        sequence: Some(decided.sequence),
    }
}

fn warnings(decided: &Decided) -> Vec<String> {
    let superseded_until = decided.license.superseded.as_ref().map(|s| s.window_ends_at);
    match (decided.code, superseded_until) {
        (ValidationCode::PastDue, _) => {
            vec!["payment is past due: the subscription will be suspended unless paid".to_owned()]
        }
        (ValidationCode::Superseded, Some(until)) => {
            vec![format!("this key was superseded; switch to the new key before {until}")]
        }
        _ => Vec::new(),
    }
}

/// The lease of a valid answer: seven days offline, never past the key's
/// own end (`License::lease_expires_at`).
fn sign_lease(
    ledger: &Ledger,
    decided: &Decided,
    organization_id: OrganizationId,
    key: &str,
    asked: &Asked,
    tier: &str,
    limits: &Limits,
) -> SignedLease {
    let body = LeaseBody {
        version: 1,
        license_id: decided.license_id,
        organization_id,
        key_binding: domain::lease::key_binding(key),
        deployment_id: asked.deployment_id.clone(),
        nonce: asked.nonce.clone().unwrap_or_default(),
        client_time: asked.client_time,
        issued_at: decided.now,
        lease_expires_at: decided.license.lease_expires_at(&decided.facts, decided.now),
        code: decided.code.as_str().into(),
        tier: tier.into(),
        limits: limits.lease_limits(),
        features: limits.allowed_features.clone(),
    };
    SignedLease::sign(&body, &ledger.keys.lease)
}

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
//! What a validation reads of a key (license, subscription, organization
//! name) comes from the read-model tables through a bounded cache
//! (`validation_cache`: read-your-writes by the key's floor, entries used
//! for at most 500 ms). A validation that only records itself does not
//! raise the key's floor: it changes nothing a validation or usage report
//! of the key reads (the daily cap is the writer's), and raising it would
//! make the key's next validation miss the cache. One that activates a
//! deployment (the key's own stream) does, and forgets the cache entry.
//!
//! The per-address limit is the HTTP edge's (it knows addresses).

use chrono::NaiveDate;
use std::sync::Arc;

use domain::event::StoredEvent;
use domain::floating::FloatingPolicy;
use domain::keys::{SECRET_TEXT_BYTES_MAX, constant_time_eq, license_key_hash};
use domain::lease::{DEPLOYMENT_ID_CHARS_MAX, LeaseBody, NONCE_CHARS_MAX, RefusalBody, SignedLease, SignedRefusal};
use domain::license::{License, LicenseCommand, SubscriptionFacts, ValidationCode, valid_deployment_id};
use domain::record::Hash;
use domain::subscription::Subscription;
use domain::validation::{FloatingLeaseExtended, LicenseValidated, VALIDATIONS_PER_DAY_MAX, ValidationEvent};
use domain::{LicenseId, Metadata, OrganizationId, Timestamp};
use projections::db::DbError;
use projections::models::{licenses, organizations, subscriptions};
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use uuid::Uuid;

use crate::Ledger;
use crate::acknowledged::{self, Credential};
use crate::command::{ATTEMPTS_MAX, Context, load, new_event_id};
use crate::deployment_keys::{self, Proof};
use crate::error::Error;
use crate::limits::KeyedLimiter;
use crate::validation_cache::KeyFacts;
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
/// The name of the per-key limit on activations (a deployment taking a
/// place it did not hold, fixed or floating), in a rate-limited answer.
pub const ACTIVATIONS_PER_KEY_PER_HOUR: &str = "activations_per_key_per_hour";
/// Activations one key may make an hour on one server process, unless
/// configured (`--activations-per-key-per-hour`): floating deployments
/// come and go with their containers, a few an hour each; a key copied to
/// a crowd activates far more.
pub const ACTIVATIONS_PER_KEY_PER_HOUR_DEFAULT: u32 = 60;
/// The refusal's code when a deployment that bound a key presents none.
pub const DEPLOYMENT_KEY_REQUIRED: &str = "DEPLOYMENT_KEY_REQUIRED";
/// The refusal's code when a deployment presents another key than it bound.
pub const DEPLOYMENT_KEY_MISMATCH: &str = "DEPLOYMENT_KEY_MISMATCH";

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
    /// A heartbeat of a floating deployment (`domain::floating`).
    pub floating: bool,
    /// The deployment's proof of its key pair (`deployment_keys`), if it
    /// sent one.
    pub proof: Option<Proof>,
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
    floating: bool,
    proof: Option<Proof>,
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
    Ok(Asked {
        key: request.license_key,
        deployment_id,
        nonce: request.nonce,
        client_time,
        client_version,
        floating: request.floating,
        proof: request.proof,
    })
}

/// Validates a license key for a deployment: records the validation (and a
/// deployment's first activation) and answers with a signed lease or a
/// signed refusal. Over the key's daily cap: [`Error::RateLimited`] until
/// the next UTC midnight. Read models that failed or lag:
/// [`Error::ReadModelFailed`] or [`Error::ProjectionLagging`]. Activations
/// are not limited here: see [`validate_limited`].
pub async fn validate(
    ledger: &Ledger,
    request: ValidationRequest,
    origin: Origin,
) -> Result<ValidationResponse, Error> {
    validate_limited(ledger, request, origin, None).await
}

/// [`validate`], with a key's activations limited by `activations` (the
/// server's, per key and hour): over it, [`Error::RateLimited`]
/// ([`ACTIVATIONS_PER_KEY_PER_HOUR`]); deployments that hold their place
/// are never limited by it.
pub async fn validate_limited(
    ledger: &Ledger,
    request: ValidationRequest,
    origin: Origin,
    activations: Option<&KeyedLimiter<LicenseId>>,
) -> Result<ValidationResponse, Error> {
    let asked = asked(request).inspect_err(|_| ledger.metrics.validation("malformed", "none"))?;
    let Some(key) = asked.key.as_deref() else {
        ledger.metrics.validation("malformed", "none");
        return Ok(ValidationResponse::not_found(None));
    };
    if let Some(proof) = &asked.proof {
        let nonce = asked.nonce.as_deref().unwrap_or_default();
        deployment_keys::check_proof(ledger, proof, key, &asked.deployment_id, nonce)
            .await
            .inspect_err(|_| ledger.metrics.validation("bad_proof", "none"))?;
    }
    let Some(known) = key_facts(ledger, key).await? else {
        ledger.metrics.validation(ValidationCode::NotFound.as_str(), "none");
        let refusal = (key.len() <= SECRET_TEXT_BYTES_MAX)
            .then(|| sign_refusal(ledger, key, &asked, ValidationCode::NotFound.as_str(), ledger.now()));
        return Ok(ValidationResponse::not_found(refusal));
    };
    let license_id = known.license_id;
    let metadata = Metadata {
        actor: Some(format!("license:{license_id}")),
        correlation_id: None,
        source_ip: origin.source_ip,
        user_agent: origin.user_agent,
    };
    if let Err(code) = key_verdict(&known.license, &asked) {
        return Ok(key_refused(ledger, key, &asked, &known, code));
    }
    for _ in 0..ATTEMPTS_MAX {
        match attempt(ledger, &known, &asked, &metadata, activations).await? {
            Attempt::KeyRefused(code) => return Ok(key_refused(ledger, key, &asked, &known, code)),
            Attempt::Recorded(decided) => {
                if decided.license_changed {
                    // The key's own stream changed: its next validation
                    // here reads the tables again, once they include it.
                    ledger.acknowledged.record(Credential::License(license_id), decided.sequence);
                    ledger.validation_cache.remove(&known.key_hash);
                }
                let tier = known.subscription.tier_on(decided.today).map_or("none", |t| t.tier.as_str());
                ledger.metrics.validation(decided.code.as_str(), tier);
                return Ok(answer(ledger, &decided, key, &asked));
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
/// issued (no signature check is needed on this path). A read-model
/// error is logged and answers `None`: [`license_of_key`] says it instead.
pub(crate) async fn known_license(ledger: &Ledger, key: &str) -> Option<(LicenseId, OrganizationId)> {
    license_of_key(ledger, key).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "a license key could not be looked up");
        None
    })
}

/// [`known_license`], with the read models' errors.
pub(crate) async fn license_of_key(ledger: &Ledger, key: &str) -> Result<Option<(LicenseId, OrganizationId)>, Error> {
    if key.len() > SECRET_TEXT_BYTES_MAX {
        return Ok(None);
    }
    let found = by_key_hash(ledger, &presented_hashes(ledger, key)).await?;
    Ok(found.and_then(|(_, id, license)| Some((id, license.issued?.organization_id))))
}

/// The keyed hashes of a presented key under each server secret this
/// server accepts, the current one first: while the secret is rotated
/// (`ledger keys rotate-secret`) a key's stored hash is under the old one
/// until `ledger keys rehash-secret` made it again under the new one.
fn presented_hashes(ledger: &Ledger, key: &str) -> Vec<Hash> {
    ledger.keys.secrets().map(|secret| license_key_hash(secret, key)).collect()
}

/// The license whose stored keyed hash is one of `presented`, compared in
/// constant time, from the tables; with the hash that matched.
async fn by_key_hash(ledger: &Ledger, presented: &[Hash]) -> Result<Option<(Hash, LicenseId, License)>, Error> {
    for hash in presented {
        let found = licenses::by_key_hash(&ledger.models.db, *hash).await.map_err(unavailable)?;
        let found = found.filter(|(_, license)| {
            license.issued.as_ref().is_some_and(|issued| constant_time_eq(hash.as_bytes(), issued.key_hash.as_bytes()))
        });
        if let Some((id, license)) = found {
            return Ok(Some((*hash, id, license)));
        }
    }
    Ok(None)
}

/// A read-model database that did not answer: 503, the client keeps its lease.
fn unavailable(error: DbError) -> Error {
    Error::Unavailable(error.to_string())
}

/// Whole seconds until the next UTC midnight, at least one.
pub(crate) fn seconds_to_midnight(now: Timestamp, today: NaiveDate) -> u64 {
    let midnight = domain::license::start_of_day(today.succ_opt().expect("dates stay far from the end of time"));
    u64::try_from((midnight.as_micros() - now.as_micros()) / 1_000_000).unwrap_or(0).max(1)
}

/// Refuses to validate from read models that failed or fell behind. Past
/// [`READ_MODEL_LAG_MAX`] behind a head seen, the log's head is read again
/// before refusing: a head that went back (a stalled transaction's, rolled
/// back) is never reached, and must not keep refusing.
async fn fresh_enough(ledger: &Ledger) -> Result<(), Error> {
    if ledger.models.failed().is_some() {
        return Err(Error::ReadModelFailed);
    }
    if ledger.models.lag() > READ_MODEL_LAG_MAX {
        let applied = ledger.models.applied();
        if ledger.log.head().await?.sequence > applied {
            return Err(Error::ProjectionLagging(applied + 1));
        }
    }
    Ok(())
}

/// What a validation needs of a presented key, from read models that are
/// fresh enough: the node's cache when its entry is recent and includes
/// the key's floor (what this node acknowledged to the key, and its
/// revocation or release acknowledged here), else the tables.
async fn key_facts(ledger: &Ledger, key: &str) -> Result<Option<Arc<KeyFacts>>, Error> {
    fresh_enough(ledger).await?;
    if key.len() > SECRET_TEXT_BYTES_MAX {
        return Ok(None);
    }
    let hashes = presented_hashes(ledger, key);
    for presented in &hashes {
        if let Some(cached) = ledger.validation_cache.get(presented)
            && cached.filled_at >= ledger.acknowledged.floor(Some(Credential::License(cached.facts.license_id)))
        {
            return Ok(Some(cached.facts));
        }
    }
    let mut read_from = std::time::Instant::now();
    let Some((mut at, presented, license_id, mut license)) = license_of(ledger, &hashes).await? else {
        return Ok(None);
    };
    let credential = Credential::License(license_id);
    if at < ledger.acknowledged.floor(Some(credential)) {
        acknowledged::catch_up(ledger, Some(credential), None).await?;
        read_from = std::time::Instant::now();
        at = ledger.models.applied();
        license =
            licenses::license(&ledger.models.db, license_id).await.map_err(unavailable)?.ok_or(Error::NotFound)?;
    }
    let issued = license.issued.as_ref().ok_or(Error::NotFound)?;
    let (organization_id, subscription_id) = (issued.organization_id, issued.subscription_id);
    let db = &ledger.models.db;
    let subscription =
        subscriptions::subscription(db, subscription_id).await.map_err(unavailable)?.ok_or(Error::NotFound)?;
    let organization_name = organizations::name(db, organization_id).await.map_err(unavailable)?;
    let facts = Arc::new(KeyFacts {
        key_hash: presented,
        license_id,
        organization_id,
        license,
        subscription,
        organization_name,
    });
    ledger.validation_cache.insert(facts.clone(), at, read_from);
    Ok(Some(facts))
}

/// The license of a presented key's hashes (the one that matched), and the sequence the tables had
/// applied before it was read. A key they do not know: before saying it is
/// unknown, wait (up to [`READ_MODEL_LAG_MAX`]) until they include the
/// log's head, since another process may have issued the key a moment
/// ago, and look again.
async fn license_of(ledger: &Ledger, presented: &[Hash]) -> Result<Option<(u64, Hash, LicenseId, License)>, Error> {
    let at = ledger.models.applied();
    if let Some((hash, id, license)) = by_key_hash(ledger, presented).await? {
        return Ok(Some((at, hash, id, license)));
    }
    let head = ledger.log.head().await?.sequence;
    if at < head {
        ledger.models.wait_for(head, READ_MODEL_LAG_MAX).await.map_err(|_| Error::ProjectionLagging(head))?;
        fresh_enough(ledger).await?;
    }
    let at = ledger.models.applied();
    Ok(by_key_hash(ledger, presented).await?.map(|(hash, id, license)| (at, hash, id, license)))
}

/// A refusal of this request, signed with the lease key and bound to its
/// key, deployment and nonce, so the client can trust it (`domain::lease`).
fn sign_refusal(ledger: &Ledger, key: &str, asked: &Asked, code: &str, now: Timestamp) -> SignedRefusal {
    let body = RefusalBody {
        version: 1,
        key_binding: domain::lease::key_binding(key),
        deployment_id: asked.deployment_id.clone(),
        nonce: asked.nonce.clone().unwrap_or_default(),
        code: code.into(),
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
    /// The deployment's bound key was not presented (a code of
    /// [`key_verdict`]); nothing was recorded.
    KeyRefused(&'static str),
}

/// A recorded validation: what was decided, and on what.
struct Decided {
    code: ValidationCode,
    /// The key, its subscription and organization as the read models had them.
    known: Arc<KeyFacts>,
    facts: SubscriptionFacts,
    validation_id: Uuid,
    sequence: u64,
    /// Whether the validation activated a deployment or bound its key
    /// (appended to the key's stream).
    license_changed: bool,
    now: Timestamp,
    today: NaiveDate,
    /// A floating deployment's: until when its place, and its lease, runs.
    floating_until: Option<Timestamp>,
}

/// Decides the validation on the read model's state of the key (which
/// every command response waits for) and appends it; only a change of the
/// key's own stream (a deployment's first activation, a floating
/// deployment's place taken or extended: [`place`]) reloads the key from
/// the log and decides again there, with optimistic concurrency.
async fn attempt(
    ledger: &Ledger,
    known: &Arc<KeyFacts>,
    asked: &Asked,
    metadata: &Metadata,
    activations: Option<&KeyedLimiter<LicenseId>>,
) -> Result<Attempt, Error> {
    let (now, today) = (ledger.now(), ledger.today());
    let license_id = known.license_id;
    let facts = subscription_facts(&known.subscription, today)?;
    let at = Moment { now, today, facts: &facts };
    let place = match place(ledger, known, asked, at, activations).await? {
        Ok(place) => place,
        Err(refused) => return Ok(Attempt::KeyRefused(refused)),
    };
    let code = place.code;
    let mut commands = Vec::new();
    if let Some(fresh) = place.changed {
        let context = Context { metadata: metadata.clone(), idempotency: None, credential: None };
        commands.push(fresh.into_command(&context, now));
    }
    if let Some(extended) = place.extended {
        let event = NewEvent::from_event(&ValidationEvent::from(extended), new_event_id(), now, metadata);
        let stream_id = domain::validation::floating_stream(license_id, today);
        commands.push(Command { stream_id, expected: ExpectedRevision::Any, idempotency: None, events: vec![event] });
    }
    // Either changes what the key's next validation reads of it.
    let license_changed = !commands.is_empty();
    let validation_id = Uuid::now_v7();
    let day = domain::validation::stream(license_id, today);
    let validated = ValidationEvent::from(LicenseValidated {
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
    let floating_until = place.floating_until;
    Ok(match ledger.log.append_atomic(commands).await? {
        Ok(appended) => {
            let sequence = appended.iter().map(|a| a.last_sequence).max().unwrap_or_default();
            let known = known.clone();
            let decided =
                Decided { code, known, facts, validation_id, sequence, license_changed, now, today, floating_until };
            Attempt::Recorded(Box::new(decided))
        }
        Err(Rejection::WrongRevision { stream_id, .. }) if stream_id == day => Attempt::DayFull { now, today },
        Err(Rejection::WrongRevision { .. }) => Attempt::Raced,
        Err(other) => return Err(Error::Internal(other.to_string())),
    })
}

/// When a validation is decided, and on what of the subscription.
#[derive(Clone, Copy)]
struct Moment<'a> {
    now: Timestamp,
    today: NaiveDate,
    facts: &'a SubscriptionFacts,
}

/// How a validating deployment holds its place: the answer, the key as
/// loaded from the log with what the validation decided on it when it
/// changes the key's stream (an activation, a floating lease, a deployment
/// key bound on first use), and until when a floating deployment's place
/// (and so its lease) runs.
struct Place {
    code: ValidationCode,
    changed: Option<crate::command::Loaded<License>>,
    /// A held floating place renewed: kept on the key's per-day floating
    /// stream, not its own.
    extended: Option<FloatingLeaseExtended>,
    floating_until: Option<Timestamp>,
}

impl Place {
    fn answer(code: ValidationCode) -> Self {
        Self { code, changed: None, extended: None, floating_until: None }
    }
}

/// The place of the asking deployment: a fixed one activates once and
/// binds the deployment key it first proves; a floating one (a heartbeat,
/// `domain::floating`) takes a place or extends it once less than half its
/// lease is left. Taking a place it did not hold is an activation, limited
/// per key by `activations`. `Err`: the deployment's bound key was not
/// presented ([`key_verdict`], as the log has it).
async fn place(
    ledger: &Ledger,
    known: &KeyFacts,
    asked: &Asked,
    at: Moment<'_>,
    activations: Option<&KeyedLimiter<LicenseId>>,
) -> Result<Result<Place, &'static str>, Error> {
    let (deployment, license) = (asked.deployment_id.as_str(), &known.license);
    let policy = known.subscription.floating;
    let floating = asked.floating && !license.deployments.contains(deployment);
    let code = code_of(license, floating, &policy, deployment, at);
    let held = license.floating_until(deployment, at.now);
    let binds = !floating && key_verdict(license, asked) == Ok(true);
    let unchanged = match (floating, held) {
        (true, Some(until)) => !policy.needs_renewal(until, at.now),
        (true, None) => false,
        (false, _) => license.deployments.contains(deployment) && !binds,
    };
    if !code.is_valid() || unchanged {
        let floating_until = held.filter(|_| floating && code.is_valid());
        return Ok(Ok(Place { floating_until, ..Place::answer(code) }));
    }
    if floating && held.is_some() {
        // Its own place, held: no cap to check, nothing of the key's stream.
        let until = policy.slot_frees_at(at.now);
        let extended = FloatingLeaseExtended {
            license_id: known.license_id,
            deployment_id: deployment.to_owned(),
            at: at.now,
            slot_frees_at: until,
        };
        return Ok(Ok(Place { extended: Some(extended), floating_until: Some(until), ..Place::answer(code) }));
    }
    let mut fresh = load::<License>(ledger, known.license_id.stream()).await?;
    if policy.deployments > 0 {
        extend_from_log(ledger, &mut fresh.state, known.license_id, at.today).await?;
    }
    let holds = fresh.state.deployments.contains(deployment);
    let floating = floating && !holds;
    let code = code_of(&fresh.state, floating, &policy, deployment, at);
    if !code.is_valid() {
        return Ok(Ok(Place::answer(code)));
    }
    let mut floating_until = None;
    if !holds {
        if !(floating && fresh.state.floating_until(deployment, at.now).is_some()) {
            check_activation(activations, known.license_id)?;
        }
        let deployment_id = deployment.to_owned();
        let max_deployments = at.facts.max_deployments;
        let command = if floating {
            floating_until = Some(policy.slot_frees_at(at.now));
            LicenseCommand::LeaseFloating { deployment_id, now: at.now, policy, max_deployments }
        } else {
            LicenseCommand::ActivateDeployment { deployment_id, max_deployments }
        };
        fresh.decide(command, &()).await?;
    }
    if !floating && let Err(refused) = bind_key(&mut fresh, asked).await? {
        return Ok(Err(refused));
    }
    let changed = (!fresh.decided().is_empty()).then_some(fresh);
    Ok(Ok(Place { code, changed, extended: None, floating_until }))
}

/// Applies to a key loaded from its own stream the floating places its
/// heartbeats extended (`FloatingLeaseExtended`, on the per-day floating
/// streams of today and yesterday: a place is held at most
/// `FLOATING_LEASE_SECONDS_MAX`, a day, so older extensions have run out).
/// Each day's stream holds at most one extension per validation.
async fn extend_from_log(
    ledger: &Ledger,
    license: &mut License,
    license_id: LicenseId,
    today: NaiveDate,
) -> Result<(), Error> {
    for day in [today.pred_opt(), Some(today)].into_iter().flatten() {
        let stream = domain::validation::floating_stream(license_id, day);
        let records = ledger.log.read_stream(&stream, 1, VALIDATIONS_PER_DAY_MAX as usize).await?;
        for record in &records {
            let Some(payload) = record.event_bytes() else { continue };
            let header = &record.header;
            if let Ok(Some(ValidationEvent::FloatingLeaseExtended(extended))) =
                ValidationEvent::decode(&header.event_type, header.schema_version, payload)
            {
                license.extend_floating(&extended);
            }
        }
    }
    Ok(())
}

/// The answer for a deployment, fixed or floating, on a key's state.
fn code_of(
    license: &License,
    floating: bool,
    policy: &FloatingPolicy,
    deployment: &str,
    at: Moment<'_>,
) -> ValidationCode {
    if floating {
        license.floating_validation_code(at.facts, policy, deployment, at.now, at.today)
    } else {
        license.validation_code(at.facts, deployment, at.now, at.today)
    }
}

/// A fixed deployment's key, bound on its first proof (trust on first
/// use), on the key as loaded from the log. `Err`: the deployment's bound
/// key was not presented.
async fn bind_key(
    fresh: &mut crate::command::Loaded<License>,
    asked: &Asked,
) -> Result<Result<(), &'static str>, Error> {
    match (key_verdict(&fresh.state, asked), &asked.proof) {
        (Err(refused), _) => return Ok(Err(refused)),
        (Ok(true), Some(proof)) => {
            let bind = LicenseCommand::BindDeploymentKey {
                deployment_id: asked.deployment_id.clone(),
                public_key: proof.public_key.clone(),
            };
            fresh.decide(bind, &()).await?;
        }
        _ => {}
    }
    Ok(Ok(()))
}

/// A deployment taking a place it did not hold: refused past the key's
/// hourly allowance of activations on this process.
fn check_activation(activations: Option<&KeyedLimiter<LicenseId>>, license_id: LicenseId) -> Result<(), Error> {
    let Some(limiter) = activations else { return Ok(()) };
    limiter.check(&license_id).map_err(|seconds| Error::RateLimited {
        limit: ACTIVATIONS_PER_KEY_PER_HOUR,
        retry_after_seconds: seconds,
        message: "too many deployments of this key were activated this hour".into(),
    })
}

/// Refused when the request does not present the key bound to its
/// deployment: `DEPLOYMENT_KEY_REQUIRED` (none presented),
/// `DEPLOYMENT_KEY_MISMATCH` (another). Otherwise whether the presented key
/// is to be bound (none is yet).
fn key_verdict(license: &License, asked: &Asked) -> Result<bool, &'static str> {
    match (license.deployment_keys.get(&asked.deployment_id), &asked.proof) {
        (Some(_), None) => Err(DEPLOYMENT_KEY_REQUIRED),
        (Some(bound), Some(proof)) if *bound != proof.public_key => Err(DEPLOYMENT_KEY_MISMATCH),
        (Some(_), Some(_)) => Ok(false),
        (None, proof) => Ok(proof.is_some()),
    }
}

/// The answer to a request that did not present its deployment's bound
/// key: not valid, with a signed refusal naming why; nothing is recorded
/// (like an unknown key's), it is counted in the metrics.
fn key_refused(ledger: &Ledger, key: &str, asked: &Asked, known: &KeyFacts, code: &'static str) -> ValidationResponse {
    ledger.metrics.validation(code, "none");
    let mut answer = ValidationResponse::not_found(Some(sign_refusal(ledger, key, asked, code, ledger.now())));
    answer.code = code;
    answer.license_id = Some(known.license_id);
    answer
}

/// What a validation needs to know of the key's subscription today.
pub(crate) fn subscription_facts(subscription: &Subscription, today: NaiveDate) -> Result<SubscriptionFacts, Error> {
    Ok(SubscriptionFacts {
        status: subscription.status_on(today),
        term_end: subscription.end_date.ok_or(Error::NotFound)?,
        auto_renew: subscription.auto_renew,
        max_deployments: subscription.max_deployments,
    })
}

/// The answer to a recorded validation: the limits in effect today, a
/// lease when valid (never outliving the key), a signed refusal when not.
fn answer(ledger: &Ledger, decided: &Decided, key: &str, asked: &Asked) -> ValidationResponse {
    let known = &decided.known;
    let (code, now) = (decided.code, decided.now);
    let tier = known.subscription.tier_on(decided.today).map(|t| t.tier.as_str());
    let limits = Limits::on(&known.subscription, &ledger.catalog, decided.today);
    let features = limits.as_ref().map(|l| l.allowed_features.clone()).unwrap_or_default();
    let lease = match (code.is_valid(), &limits, tier) {
        (true, Some(limits), Some(tier)) => Some(sign_lease(ledger, decided, key, asked, tier, limits)),
        _ => None,
    };
    ValidationResponse {
        is_valid: code.is_valid(),
        is_expired: code == ValidationCode::Expired,
        code: code.as_str(),
        warnings: warnings(decided),
        license_id: Some(known.license_id),
        validation_id: Some(decided.validation_id),
        server_time: Some(now),
        subscription: Some(ValidatedSubscription {
            tier,
            limits,
            allowed_features: features.clone(),
            features,
            expires_at: known.license.end(&decided.facts),
        }),
        organization: Some(OrganizationRef { id: known.organization_id, name: known.organization_name.clone() }),
        lease,
        refusal: (!code.is_valid()).then(|| sign_refusal(ledger, key, asked, code.as_str(), now)),
        sequence: Some(decided.sequence),
    }
}

fn warnings(decided: &Decided) -> Vec<String> {
    let superseded_until = decided.known.license.superseded.as_ref().map(|s| s.window_ends_at);
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
    key: &str,
    asked: &Asked,
    tier: &str,
    limits: &Limits,
) -> SignedLease {
    let known = &decided.known;
    let body = LeaseBody {
        version: 1,
        license_id: known.license_id,
        organization_id: known.organization_id,
        key_binding: domain::lease::key_binding(key),
        deployment_id: asked.deployment_id.clone(),
        nonce: asked.nonce.clone().unwrap_or_default(),
        client_time: asked.client_time,
        issued_at: decided.now,
        lease_expires_at: match decided.floating_until {
            Some(until) => until.min(known.license.end(&decided.facts)),
            None => known.license.lease_expires_at(&decided.facts, decided.now),
        },
        heartbeat_interval_seconds: decided
            .floating_until
            .map(|_| known.subscription.floating.heartbeat_interval_seconds),
        code: decided.code.as_str().into(),
        tier: tier.into(),
        limits: limits.lease_limits(),
        features: limits.allowed_features.clone(),
        deployment_key: asked.proof.as_ref().map(|proof| proof.public_key.clone()),
    };
    SignedLease::sign(&body, &ledger.keys.lease)
}

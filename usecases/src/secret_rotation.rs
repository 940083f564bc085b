//! Rotating the server secret behind the keyed hashes of license keys and
//! API tokens (and the MACs of sign-in links and deployment challenges),
//! without downtime, on any number of nodes sharing one log:
//!
//! 1. `ledger keys prepare-secret` announces a next secret
//!    (`keys/secret.next`); each node restarted from then on accepts what
//!    either secret made, and still makes everything with the current one.
//! 2. `ledger keys rotate-secret` records `ServerSecretRotated` in the log
//!    (where the checkpoint key's rotations are), makes the bootstrap
//!    tokens' stored hashes again under the new secret (the tokens given in
//!    the environment), keeps the current secret as `keys/secret.previous`
//!    and makes the next one current. Each node restarted from then on
//!    makes everything with the new secret and still accepts the old one.
//! 3. `ledger keys retire-secret`, once every node was restarted: makes the
//!    stored hash of every license key, API token and service token again
//!    under the new secret (`LicenseKeyRehashed`, `ApiTokenRehashed`,
//!    `ServiceTokenRehashed`; a lookup finds a
//!    key under whichever accepted secret hashed it, so this runs while
//!    nodes serve), records `ServerSecretRetired` and deletes the old
//!    secret. Nothing the old secret makes matches a stored hash any more.
//!
//! A license key is derived again from its event with the license-key
//! signing key that made it; an API or service token from its id with the
//! secret that made its MAC, which must still be there: a token issued before an
//! earlier rotation was retired cannot be made again, and keeps working
//! only until the next retirement (`retire-secret` names how many, and
//! refuses unless told to drop them).
//!
//! Single sign-on configurations seal their client secret, and name their
//! identity links' streams, under the secret: between the steps both are
//! opened and looked up under either secret, and `retire-secret` seals
//! each client secret again (`SsoSecretResealed`) and records each link
//! again on the stream the new secret names (`SsoLinkRehashed`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use domain::checkpoint::{CHECKPOINT_STREAM, CheckpointEvent, ServerSecretRetired, ServerSecretRotated};
use domain::event::{LedgerEvent, StoredEvent};
use domain::keys::{ServerSecret, api_token, api_token_hash, constant_time_eq, license_key_hash};
use domain::license::{LicenseEvent, LicenseKeyRehashed};
use domain::organization::{ApiTokenRehashed, OrganizationEvent};
use domain::record::Hash;
use domain::sso::{SsoConfigured, SsoEvent, SsoLinkRehashed, SsoSecretResealed};
use domain::staff::{ServiceTokenId, ServiceTokenRehashed, StaffEvent, service_token, service_token_hash};
use domain::{LicenseId, Metadata, OrganizationId, StreamId, Timestamp, TokenId, UserId};
use store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent};

use crate::secrets::{
    AUDITOR_TOKEN_HASH, OPERATOR_TOKEN_HASH, SECRET, SECRET_NEXT, SECRET_PREVIOUS, ServerKeys, create_private_dir,
    load_or_create_random, place_new, read_file, read_key,
};

/// Records read from the log at a time while it is walked.
const WALK_PAGE: usize = 1_000;

/// `ledger keys prepare-secret`: creates the next secret (or keeps the one
/// already announced); returns its id.
pub fn prepare_secret(data_dir: &Path) -> anyhow::Result<Hash> {
    let keys = data_dir.join("keys");
    create_private_dir(&keys)?;
    load_or_create_random(&keys.join(SECRET))?;
    Ok(ServerSecret::from_bytes(load_or_create_random(&keys.join(SECRET_NEXT))?).id())
}

/// The bootstrap tokens as given in the environment, to make their stored
/// hashes again under the new secret.
#[derive(Default)]
pub struct BootstrapTokens {
    pub operator: Option<String>,
    pub auditor: Option<String>,
}

fn secret_in(keys: &Path, name: &str) -> anyhow::Result<Option<ServerSecret>> {
    Ok(read_key(&keys.join(name))?.map(|key| ServerSecret::from_bytes(key.to_bytes())))
}

/// `ledger keys rotate-secret`: the announced next secret becomes current
/// (see the module). Running it again after an interruption finishes the
/// same rotation. Returns the old and the new secret's id.
pub async fn rotate_secret(
    data_dir: &Path,
    log: &EventLog,
    now: Timestamp,
    tokens: &BootstrapTokens,
) -> anyhow::Result<(Hash, Hash)> {
    let keys = data_dir.join("keys");
    let current = secret_in(&keys, SECRET)?.context("there is no secret to rotate")?;
    let next = secret_in(&keys, SECRET_NEXT)?
        .context("no next secret is announced: run `ledger keys prepare-secret` and restart every server first")?;
    // A `secret.previous` holding the current secret is this rotation's,
    // interrupted before the rename: it is finished below.
    if let Some(previous) = read_file(&keys.join(SECRET_PREVIOUS))? {
        anyhow::ensure!(
            previous == current_bytes(&keys)?,
            "an earlier rotation is not retired ({} exists): run `ledger keys retire-secret` first",
            keys.join(SECRET_PREVIOUS).display()
        );
    }
    for (name, given, env) in [
        (OPERATOR_TOKEN_HASH, &tokens.operator, "LEDGER_OPERATOR_TOKEN"),
        (AUDITOR_TOKEN_HASH, &tokens.auditor, "LEDGER_AUDITOR_TOKEN"),
    ] {
        rehash_bootstrap(&keys, name, given.as_deref(), env, [&current, &next])?;
    }
    let (old_id, new_id) = (current.id(), next.id());
    let event =
        CheckpointEvent::ServerSecretRotated(ServerSecretRotated { old_secret_id: old_id, new_secret_id: new_id });
    let key = format!("server-secret-rotation:{}", hex::encode(new_id.as_bytes()));
    record(log, checkpoint_stream(), &event, key, now, "ledger keys rotate-secret").await?;
    place_new(&keys.join(SECRET_PREVIOUS), current_bytes(&keys)?.as_slice())?;
    std::fs::rename(keys.join(SECRET_NEXT), keys.join(SECRET))
        .with_context(|| format!("making {SECRET_NEXT} current in {}", keys.display()))?;
    std::fs::File::open(&keys)?.sync_all()?;
    Ok((old_id, new_id))
}

fn checkpoint_stream() -> StreamId {
    StreamId::new(CHECKPOINT_STREAM).expect("a valid stream id")
}

fn current_bytes(keys: &Path) -> anyhow::Result<Vec<u8>> {
    read_file(&keys.join(SECRET))?.context("the secret vanished")
}

/// Makes a generated bootstrap token's stored hash again under `new`, from
/// the token given in the environment (checked against the stored hash);
/// one stored under `new` already is left. A token given in the
/// environment at every start has no stored hash to make again.
fn rehash_bootstrap(
    keys: &Path,
    name: &str,
    given: Option<&str>,
    env: &str,
    [current, new]: [&ServerSecret; 2],
) -> anyhow::Result<()> {
    let path = keys.join(name);
    let Some(stored) = read_file(&path)? else { return Ok(()) };
    let token = given.with_context(|| {
        format!("{} holds a generated token's hash: set {env} to that token so it can be hashed again", path.display())
    })?;
    if constant_time_eq(api_token_hash(new, token).as_bytes(), &stored) {
        return Ok(());
    }
    anyhow::ensure!(
        constant_time_eq(api_token_hash(current, token).as_bytes(), &stored),
        "{env} is not the token whose hash {} holds",
        path.display()
    );
    // Written aside, then renamed over the old hash in one step.
    let aside = keys.join(format!("{name}.rehashed"));
    let _ = std::fs::remove_file(&aside);
    place_new(&aside, api_token_hash(new, token).as_bytes())?;
    std::fs::rename(&aside, &path).with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(keys)?.sync_all()?;
    Ok(())
}

/// What `ledger keys retire-secret` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub secret_id: Hash,
    /// Hashes made again now (others were made by an earlier run).
    pub license_keys: u64,
    pub tokens: u64,
    pub service_tokens: u64,
    /// SSO client secrets sealed again, and links recorded again.
    pub sso_configs: u64,
    pub sso_links: u64,
    /// API and service tokens whose MAC no loaded secret makes (issued before an
    /// earlier rotation): dropped, with `drop_unrehashable`.
    pub dropped_tokens: u64,
}

/// `ledger keys retire-secret` (every server restarted since
/// `rotate-secret`): makes every stored hash again under the current
/// secret, records the retirement and deletes the old secret. Keys or
/// tokens that cannot be made again refuse it, unless `drop_unrehashable`
/// (tokens only: a license key whose signing key is lost is refused).
pub async fn retire_secret(
    keys: &ServerKeys,
    data_dir: &Path,
    log: &EventLog,
    now: Timestamp,
    drop_unrehashable: bool,
) -> anyhow::Result<Retired> {
    let dir = data_dir.join("keys");
    let previous = secret_in(&dir, SECRET_PREVIOUS)?
        .context("no secret was rotated away from: run `ledger keys rotate-secret` first")?;
    let walked = walk(log).await?;
    let plan = plan(keys, &walked);
    let sso = sso_plan(keys, &walked)?;
    anyhow::ensure!(
        plan.lost_license_keys == 0,
        "{} license key(s) are made by no license-key signing key in keys/: restore them first",
        plan.lost_license_keys
    );
    anyhow::ensure!(
        plan.lost_tokens == 0 || drop_unrehashable,
        "{} API or service token(s) were issued before an earlier rotation and cannot be hashed again: they stop working once \
         the secret is retired; run again with --drop-unrehashable-tokens to accept that",
        plan.lost_tokens
    );
    let mut retired = rehash(log, plan, keys.secret.id(), previous.id(), now).await?;
    retired.sso_configs = reseal(log, &sso.resealed, now).await?;
    retired.sso_links = relink(keys, log, &walked, now).await?;
    let event = CheckpointEvent::ServerSecretRetired(ServerSecretRetired {
        secret_id: retired.secret_id,
        license_keys: retired.license_keys,
        tokens: retired.tokens,
    });
    let key = format!("server-secret-retirement:{}", hex::encode(retired.secret_id.as_bytes()));
    record(log, checkpoint_stream(), &event, key, now, "ledger keys retire-secret").await?;
    std::fs::remove_file(dir.join(SECRET_PREVIOUS)).context("deleting the old secret")?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(retired)
}

/// Records each hash made again under the secret `new_id` names.
async fn rehash(log: &EventLog, plan: Plan, new_id: Hash, retired_id: Hash, now: Timestamp) -> anyhow::Result<Retired> {
    let mut retired = Retired {
        secret_id: retired_id,
        license_keys: 0,
        tokens: 0,
        service_tokens: 0,
        sso_configs: 0,
        sso_links: 0,
        dropped_tokens: plan.lost_tokens,
    };
    for (license_id, key_hash) in plan.license_keys {
        let event = LicenseEvent::LicenseKeyRehashed(LicenseKeyRehashed { key_hash, secret_id: new_id });
        let key = format!("secret-rehash:{license_id}:{}", hex::encode(new_id.as_bytes()));
        record(log, license_id.stream(), &event, key, now, "ledger keys retire-secret").await?;
        retired.license_keys += 1;
    }
    for (token_id, (organization_id, token_hash)) in plan.tokens {
        let event = OrganizationEvent::ApiTokenRehashed(ApiTokenRehashed { token_id, token_hash, secret_id: new_id });
        let key = format!("secret-rehash:{}:{}", token_id.0, hex::encode(new_id.as_bytes()));
        record(log, organization_id.stream(), &event, key, now, "ledger keys retire-secret").await?;
        retired.tokens += 1;
    }
    for (token_id, token_hash) in plan.service_tokens {
        let event = StaffEvent::ServiceTokenRehashed(ServiceTokenRehashed { token_id, token_hash, secret_id: new_id });
        let key = format!("secret-rehash:service:{}:{}", token_id.0, hex::encode(new_id.as_bytes()));
        record(log, domain::staff::stream(), &event, key, now, "ledger keys retire-secret").await?;
        retired.service_tokens += 1;
    }
    Ok(retired)
}

/// Appends one event, once: its idempotency key answers a retry with the
/// first append.
async fn record<E: domain::event::StoredEvent>(
    log: &EventLog,
    stream_id: StreamId,
    event: &E,
    key: String,
    now: Timestamp,
    actor: &str,
) -> anyhow::Result<()> {
    let metadata = Metadata { actor: Some(actor.into()), ..Default::default() };
    let events = vec![NewEvent::from_event(event, crate::command::new_event_id(), now, &metadata)];
    let command = Command {
        idempotency: Some(Idempotency::of_events(key, &stream_id, &events)),
        stream_id,
        expected: ExpectedRevision::Any,
        events,
    };
    log.append_one(command).await?.map_err(|e| anyhow::anyhow!("not recorded: {e}"))?;
    Ok(())
}

/// What the log holds that a rotation needs: each key's random bytes and
/// stored hash, each token's stored hash, and how many SSO configurations.
#[derive(Default)]
struct Walked {
    license_keys: BTreeMap<LicenseId, ([u8; 16], Hash)>,
    tokens: BTreeMap<TokenId, (OrganizationId, Hash)>,
    service_tokens: BTreeMap<ServiceTokenId, Hash>,
    /// Each organization's SSO settings in force (none once removed), and
    /// its settings stream's revision.
    sso_configs: BTreeMap<OrganizationId, (Option<SsoConfigured>, u64)>,
    /// Each link: organization, issuer and subject, and the user.
    sso_links: BTreeMap<(OrganizationId, String, String), UserId>,
}

async fn walk(log: &EventLog) -> anyhow::Result<Walked> {
    let head = log.head().await?.sequence;
    let mut walked = Walked::default();
    let mut from = 1;
    while from <= head {
        let page = log.read_page(from..=head, WALK_PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.header.sequence + 1;
        for record in &page {
            let Some(payload) = record.event_bytes() else { continue };
            if matches!(record.header.stream_id.category(), "sso-config" | "sso-link") {
                take_sso(&mut walked, &record.header, payload)?;
                continue;
            }
            let Ok(Some(event)) = LedgerEvent::decode(&record.header, payload) else { continue };
            take(&mut walked, &record.header.stream_id, event);
        }
    }
    Ok(walked)
}

fn take(walked: &mut Walked, stream: &StreamId, event: LedgerEvent) {
    match event {
        LedgerEvent::License(LicenseEvent::LicenseIssued(issued)) => {
            walked.license_keys.insert(issued.license_id, (issued.nonce, issued.key_hash));
        }
        LedgerEvent::License(LicenseEvent::LicenseKeyRehashed(rehashed)) => {
            let id = entity(stream).map(LicenseId);
            if let Some(entry) = id.and_then(|id| walked.license_keys.get_mut(&id)) {
                entry.1 = rehashed.key_hash;
            }
        }
        LedgerEvent::Organization(OrganizationEvent::ApiTokenIssued(issued)) => {
            let id = entity(stream).map(OrganizationId);
            if let Some(organization_id) = id {
                walked.tokens.insert(issued.token_id, (organization_id, issued.token_hash));
            }
        }
        LedgerEvent::Organization(OrganizationEvent::ApiTokenRevoked(revoked)) => {
            // A revoked token needs no hash: it is refused either way.
            walked.tokens.remove(&revoked.token_id);
        }
        LedgerEvent::Organization(OrganizationEvent::ApiTokenRehashed(rehashed)) => {
            if let Some(entry) = walked.tokens.get_mut(&rehashed.token_id) {
                entry.1 = rehashed.token_hash;
            }
        }
        LedgerEvent::Staff(StaffEvent::ServiceTokenIssued(issued)) => {
            walked.service_tokens.insert(issued.token_id, issued.token_hash);
        }
        LedgerEvent::Staff(StaffEvent::ServiceTokenRevoked(revoked)) => {
            walked.service_tokens.remove(&revoked.token_id);
        }
        LedgerEvent::Staff(StaffEvent::ServiceTokenRehashed(rehashed)) => {
            if let Some(hash) = walked.service_tokens.get_mut(&rehashed.token_id) {
                *hash = rehashed.token_hash;
            }
        }
        _ => {}
    }
}

/// An SSO settings or link record: the settings in force, or the link.
fn take_sso(walked: &mut Walked, header: &domain::RecordHeader, payload: &[u8]) -> anyhow::Result<()> {
    let event = SsoEvent::decode(&header.event_type, header.schema_version, payload)
        .map_err(|e| anyhow::anyhow!("{} at {}: {e}", header.stream_id, header.sequence))?;
    let revision = header.stream_revision;
    match event {
        Some(SsoEvent::SsoConfigured(config)) => {
            walked.sso_configs.insert(config.organization_id, (Some(config), revision));
        }
        Some(SsoEvent::SsoSecretResealed(resealed)) => {
            walked.sso_configs.insert(resealed.organization_id, (Some(resealed.config()), revision));
        }
        Some(SsoEvent::SsoRemoved(removed)) => {
            walked.sso_configs.insert(removed.organization_id, (None, revision));
        }
        Some(SsoEvent::SsoLinked(linked)) => {
            walked.sso_links.insert((linked.organization_id, linked.issuer, linked.subject), linked.user_id);
        }
        Some(SsoEvent::SsoLinkRehashed(linked)) => {
            walked.sso_links.insert((linked.organization_id, linked.issuer, linked.subject), linked.user_id);
        }
        Some(SsoEvent::SsoSignedIn(_)) | None => {}
    }
    Ok(())
}

/// The SSO client secrets to seal again under the current secret.
struct SsoPlan {
    resealed: Vec<(SsoSecretResealed, u64)>,
}

/// Each configuration in force whose client secret the current secret
/// does not open, sealed again (opened under another loaded secret); one
/// that no loaded secret opens refuses the retirement.
fn sso_plan(keys: &ServerKeys, walked: &Walked) -> anyhow::Result<SsoPlan> {
    let mut plan = SsoPlan { resealed: Vec::new() };
    for (organization_id, (config, revision)) in &walked.sso_configs {
        let Some(config) = config else { continue };
        if config.client_secret(&keys.secret).is_some() {
            continue;
        }
        let client_secret = keys.secrets().find_map(|secret| config.client_secret(secret)).with_context(|| {
            format!("the SSO client secret of organization {organization_id} opens under no secret in keys/")
        })?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let (issuer, client_id) = (&config.issuer, &config.client_id);
        let sealed_secret =
            SsoConfigured::seal_secret(&keys.secret, *organization_id, issuer, client_id, &client_secret, nonce);
        let resealed = SsoSecretResealed {
            organization_id: *organization_id,
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            sealed_secret,
            secret_id: keys.secret.id(),
            at: config.at,
        };
        plan.resealed.push((resealed, *revision));
    }
    Ok(plan)
}

/// Appends each sealed-again configuration, expecting its stream where it
/// was walked: one changed since (by its admin, under the new secret)
/// stands. Returns how many were appended.
async fn reseal(log: &EventLog, resealed: &[(SsoSecretResealed, u64)], now: Timestamp) -> anyhow::Result<u64> {
    let mut appended = 0;
    for (event, revision) in resealed {
        let stream = domain::sso::config_stream(event.organization_id);
        let event = SsoEvent::SsoSecretResealed(event.clone());
        appended += u64::from(append_if(log, stream, &event, ExpectedRevision::Exactly(*revision), now).await?);
    }
    Ok(appended)
}

/// Records each link on the stream the current secret names, where it is
/// not yet. Returns how many were recorded.
async fn relink(keys: &ServerKeys, log: &EventLog, walked: &Walked, now: Timestamp) -> anyhow::Result<u64> {
    let mut appended = 0;
    for ((organization_id, issuer, subject), user_id) in &walked.sso_links {
        let stream = domain::sso::link_stream(&keys.secret, *organization_id, issuer, subject);
        let event = SsoEvent::SsoLinkRehashed(SsoLinkRehashed {
            organization_id: *organization_id,
            user_id: *user_id,
            issuer: issuer.clone(),
            subject: subject.clone(),
            secret_id: keys.secret.id(),
            at: now,
        });
        appended += u64::from(append_if(log, stream, &event, ExpectedRevision::NoStream, now).await?);
    }
    Ok(appended)
}

/// Appends one event if the stream is as `expected`; `false` when it is
/// not (nothing to do: it changed, or holds the event already).
async fn append_if(
    log: &EventLog,
    stream_id: StreamId,
    event: &SsoEvent,
    expected: ExpectedRevision,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let metadata = Metadata { actor: Some("ledger keys retire-secret".into()), ..Default::default() };
    let events = vec![NewEvent::from_event(event, crate::command::new_event_id(), now, &metadata)];
    let command = Command { idempotency: None, stream_id, expected, events };
    match log.append_one(command).await? {
        Ok(_) => Ok(true),
        Err(store::Rejection::WrongRevision { .. }) => Ok(false),
        Err(other) => Err(anyhow::anyhow!("not recorded: {other}")),
    }
}

/// The UUID of an entity's stream (`category/uuid`).
fn entity(stream: &StreamId) -> Option<uuid::Uuid> {
    stream.as_str().split_once('/')?.1.parse().ok()
}

/// The hashes to make again under the current secret, and what cannot be.
#[derive(Default)]
struct Plan {
    license_keys: Vec<(LicenseId, Hash)>,
    tokens: Vec<(TokenId, (OrganizationId, Hash))>,
    service_tokens: Vec<(ServiceTokenId, Hash)>,
    lost_license_keys: u64,
    lost_tokens: u64,
}

fn plan(keys: &ServerKeys, walked: &Walked) -> Plan {
    let mut plan = Plan::default();
    let signers: Vec<_> = std::iter::once(&keys.license).chain(&keys.license_retired).collect();
    for (&license_id, &(nonce, stored)) in &walked.license_keys {
        let key = keys.secrets().find_map(|secret| {
            let signers = signers.iter().copied();
            domain::keys::issued_license_key(signers, secret, license_id, nonce, &stored)
        });
        match key {
            None => plan.lost_license_keys += 1,
            Some(key) => {
                let hash = license_key_hash(&keys.secret, &key);
                if !constant_time_eq(hash.as_bytes(), stored.as_bytes()) {
                    plan.license_keys.push((license_id, hash));
                }
            }
        }
    }
    for (&token_id, &(organization_id, stored)) in &walked.tokens {
        let token = keys.secrets().map(|mac| api_token(mac, token_id)).find(|token| {
            keys.secrets().any(|hasher| constant_time_eq(api_token_hash(hasher, token).as_bytes(), stored.as_bytes()))
        });
        match token {
            None => plan.lost_tokens += 1,
            Some(token) => {
                let hash = api_token_hash(&keys.secret, &token);
                if !constant_time_eq(hash.as_bytes(), stored.as_bytes()) {
                    plan.tokens.push((token_id, (organization_id, hash)));
                }
            }
        }
    }
    plan_service_tokens(keys, walked, &mut plan);
    plan
}

/// A service token is made again from its id as an API token is (its MAC
/// under each loaded secret, its stored hash under each).
fn plan_service_tokens(keys: &ServerKeys, walked: &Walked, plan: &mut Plan) {
    for (&token_id, stored) in &walked.service_tokens {
        let token = keys.secrets().map(|mac| service_token(mac, token_id)).find(|token| {
            keys.secrets()
                .any(|hasher| constant_time_eq(service_token_hash(hasher, token).as_bytes(), stored.as_bytes()))
        });
        match token {
            None => plan.lost_tokens += 1,
            Some(token) => {
                let hash = service_token_hash(&keys.secret, &token);
                if !constant_time_eq(hash.as_bytes(), stored.as_bytes()) {
                    plan.service_tokens.push((token_id, hash));
                }
            }
        }
    }
}

//! Enterprise SSO (issue 14), without HTTP: an organization admin's
//! OpenID Connect settings (Enterprise tier only), the issuer URL's
//! checks, and what a verified sign-in does to the organization: find the
//! user by their link (issuer, subject), else by e-mail (verified), else
//! create a viewer within the seat limit; record the link and the sign-in.
//!
//! The protocol itself (discovery, PKCE, the code exchange, the ID token's
//! signature and nonce) is the portal's (`portal::sso`, `openidconnect`).

use domain::catalog::Tier;
use domain::event::{LedgerEvent, StoredEvent};
use domain::organization::{Organization, OrganizationCommand, OrganizationError, OrganizationEvent, Role};
use domain::sso::{self, SsoConfigured, SsoEvent, SsoLinked, SsoRemoved, SsoSignedIn};
use domain::{Metadata, OrganizationId, StreamId, UserId};
use projections::models::{organizations, subscriptions};
use serde::{Deserialize, Serialize};
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::command::{Context, execute, load, new_event_id};
use crate::signin::SignedInUser;
use crate::{Caller, Error, Ledger, Need};

/// What an admin sets (`PUT /organizations/{id}/sso`). Its `Debug`
/// leaves the secret out.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoInput {
    /// `https://…`, the issuer's identifier (discovery at `/.well-known/openid-configuration`).
    pub issuer_url: String,
    pub client_id: String,
    /// Stored sealed; never answered.
    pub client_secret: String,
}

impl std::fmt::Debug for SsoInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoInput")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An organization's SSO settings as answered: never the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoView {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret_set: bool,
    pub configured_at: String,
    pub sequence: u64,
}

/// An identity an issuer vouched for (the ID token checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

/// Why a verified identity did not sign anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoRefusal {
    /// The organization has no SSO settings (or they name another issuer).
    NotConfigured,
    /// A first sign-in without a verified e-mail address.
    EmailNotVerified,
    /// A new user would take a seat there is none of.
    SeatLimitReached,
    /// The linked or matched user was deactivated.
    Inactive,
}

/// Checks an issuer URL: `https` (or, with the test setting, `http` on a
/// loopback host), no credentials, query or fragment, and every address
/// its host resolves to public. Answers it without a trailing `/`.
pub async fn check_issuer(issuer: &str, allow_loopback: bool) -> Result<String, Error> {
    let invalid = |why: &str| Error::Validation(format!("issuerUrl: {why}"));
    if issuer.is_empty() || issuer.len() > sso::ISSUER_CHARS_MAX {
        return Err(invalid(&format!("1 to {} characters", sso::ISSUER_CHARS_MAX)));
    }
    let url = url::Url::parse(issuer).map_err(|_| invalid("not a URL"))?;
    let host = url.host_str().ok_or_else(|| invalid("no host"))?.to_owned();
    let plain_ok = allow_loopback && url.scheme() == "http";
    if url.scheme() != "https" && !plain_ok {
        return Err(invalid("must be https"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("no credentials, query or fragment"));
    }
    let port = url.port_or_known_default().ok_or_else(|| invalid("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let addresses: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| invalid("its host does not resolve"))?
        .collect();
    if addresses.is_empty() || !addresses.iter().all(|a| sso::address_allowed(a.ip(), allow_loopback)) {
        return Err(invalid("its host must resolve to public addresses only"));
    }
    if url.scheme() == "http" && !addresses.iter().all(|a| a.ip().is_loopback()) {
        return Err(invalid("must be https"));
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

/// The organization's SSO settings now, if any (its stream's last event).
pub async fn current(ledger: &Ledger, organization_id: OrganizationId) -> Result<Option<SsoConfigured>, Error> {
    let stream = sso::config_stream(organization_id);
    Ok(match last_event(ledger, &stream).await? {
        Some((event, _)) => configured(&event),
        None => None,
    })
}

/// The settings an event of an organization's SSO stream leaves in force.
fn configured(event: &SsoEvent) -> Option<SsoConfigured> {
    match event {
        SsoEvent::SsoConfigured(config) => Some(config.clone()),
        SsoEvent::SsoSecretResealed(resealed) => Some(resealed.config()),
        _ => None,
    }
}

/// The user a link stream's last event links (`SsoLinked`, or the same
/// link under a later secret, `SsoLinkRehashed`).
fn linked_user(event: &SsoEvent) -> Option<UserId> {
    match event {
        SsoEvent::SsoLinked(linked) => Some(linked.user_id),
        SsoEvent::SsoLinkRehashed(linked) => Some(linked.user_id),
        _ => None,
    }
}

/// The link of an identity, under whichever accepted secret named its
/// stream (while the secret rotates, a link made before is under the old
/// one until `ledger keys retire-secret` made it again under the new).
async fn find_link(
    ledger: &Ledger,
    organization_id: OrganizationId,
    identity: &Identity,
) -> Result<Option<UserId>, Error> {
    for secret in ledger.keys.secrets() {
        let stream = sso::link_stream(secret, organization_id, &identity.issuer, &identity.subject);
        if let Some(user_id) = last_event(ledger, &stream).await?.and_then(|(event, _)| linked_user(&event)) {
            return Ok(Some(user_id));
        }
    }
    Ok(None)
}

async fn last_event(ledger: &Ledger, stream: &StreamId) -> Result<Option<(SsoEvent, u64)>, Error> {
    let revision = ledger.log.stream_revision(stream).await?;
    if revision == 0 {
        return Ok(None);
    }
    let records = ledger.log.read_stream(stream, revision, 1).await?;
    let Some(record) = records.first() else { return Ok(None) };
    let payload = record.event_bytes().unwrap_or_default();
    let event = SsoEvent::decode(&record.header.event_type, record.header.schema_version, payload)
        .map_err(|e| Error::Internal(format!("{stream}: {e}")))?
        .ok_or_else(|| Error::Internal(format!("{stream}: unknown event {}", record.header.event_type)))?;
    Ok(Some((event, record.header.sequence)))
}

async fn require_enterprise(ledger: &Ledger, organization_id: OrganizationId) -> Result<(), Error> {
    let live = subscriptions::live(&ledger.models.db, organization_id).await?;
    let tier = live.and_then(|(_, s)| s.spec_on(&ledger.catalog, ledger.today()).map(|(spec, _)| spec.tier));
    if tier == Some(Tier::Enterprise) {
        Ok(())
    } else {
        let message = "single sign-on is part of the enterprise tier".to_owned();
        Err(Error::Conflict { code: "feature_not_in_tier", message })
    }
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Error::Validation(format!("{field}: 1 to {max} characters, no control characters")));
    }
    Ok(())
}

/// Sets an organization's SSO settings (its admin's; Enterprise only).
pub async fn configure(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
    input: SsoInput,
    allow_loopback: bool,
) -> Result<SsoView, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    bounded("clientId", &input.client_id, sso::CLIENT_ID_CHARS_MAX)?;
    bounded("clientSecret", &input.client_secret, sso::CLIENT_SECRET_CHARS_MAX)?;
    require_enterprise(ledger, organization_id).await?;
    let issuer = check_issuer(&input.issuer_url, allow_loopback).await?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let secret = &ledger.keys.secret;
    let sealed_secret =
        SsoConfigured::seal_secret(secret, organization_id, &issuer, &input.client_id, &input.client_secret, nonce);
    let config = SsoConfigured { organization_id, issuer, client_id: input.client_id, sealed_secret, at: ledger.now() };
    let sequence = append(ledger, sso::config_stream(organization_id), SsoEvent::from(config.clone()), caller).await?;
    Ok(view(&config, sequence))
}

fn view(config: &SsoConfigured, sequence: u64) -> SsoView {
    SsoView {
        issuer_url: config.issuer.clone(),
        client_id: config.client_id.clone(),
        client_secret_set: true,
        configured_at: config.at.to_datetime().to_rfc3339(),
        sequence,
    }
}

/// An organization's SSO settings, without the secret (its admin's).
pub async fn get(ledger: &Ledger, caller: &Caller, organization_id: OrganizationId) -> Result<SsoView, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    match last_event(ledger, &sso::config_stream(organization_id)).await? {
        Some((event, sequence)) => configured(&event).map(|config| view(&config, sequence)).ok_or(Error::NotFound),
        None => Err(Error::NotFound),
    }
}

/// Removes an organization's SSO settings; users signed in keep their
/// sessions, new SSO sign-ins are refused.
pub async fn remove(ledger: &Ledger, caller: &Caller, organization_id: OrganizationId) -> Result<u64, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    if current(ledger, organization_id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let event = SsoEvent::from(SsoRemoved { organization_id, at: ledger.now() });
    append(ledger, sso::config_stream(organization_id), event, caller).await
}

async fn append(ledger: &Ledger, stream_id: StreamId, event: SsoEvent, caller: &Caller) -> Result<u64, Error> {
    let metadata = Metadata { actor: Some(caller.actor()), correlation_id: None, source_ip: None, user_agent: None };
    let command = Command {
        stream_id,
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &metadata)],
    };
    let appended = ledger.log.append_one(command).await?.map_err(|r| Error::Internal(r.to_string()))?;
    Ok(appended.last_sequence)
}

/// What a verified identity does to its organization: the linked user, or
/// (first sign-in, e-mail verified) the active user with that address, or
/// a new viewer within the seat limit; then the sign-in is recorded. The
/// organization is the one the sign-in began for, whose settings name
/// `identity.issuer`: an issuer signs users into its organization only.
pub async fn sign_in(
    ledger: &Ledger,
    organization_id: OrganizationId,
    identity: &Identity,
    session_id: uuid::Uuid,
    address: &str,
) -> Result<Result<SignedInUser, SsoRefusal>, Error> {
    let Some(config) = current(ledger, organization_id).await? else { return Ok(Err(SsoRefusal::NotConfigured)) };
    if config.issuer != identity.issuer
        || identity.subject.is_empty()
        || identity.subject.len() > sso::SUBJECT_CHARS_MAX
    {
        return Ok(Err(SsoRefusal::NotConfigured));
    }
    let link = sso::link_stream(&ledger.keys.secret, organization_id, &identity.issuer, &identity.subject);
    let (user_id, created) = match find_link(ledger, organization_id, identity).await? {
        Some(user_id) => (user_id, false),
        None => match first_link(ledger, organization_id, identity, &link).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        },
    };
    // A user this sign-in just created is a viewer (the read models may
    // not have it yet); any other's role and state are read again.
    let role =
        if created { Some(Role::Viewer) } else { crate::signin::active_role(ledger, organization_id, user_id).await? };
    let Some(role) = role else { return Ok(Err(SsoRefusal::Inactive)) };
    let user = SignedInUser { organization_id, user_id, role };
    let event = SsoEvent::from(SsoSignedIn {
        organization_id,
        user_id,
        issuer: identity.issuer.clone(),
        session_id,
        address: address.to_owned(),
        at: ledger.now(),
    });
    let caller = Caller::User { organization_id, role, user_id };
    append(ledger, sso::signin_stream(session_id), event, &caller).await?;
    Ok(Ok(user))
}

/// A first sign-in: match by verified e-mail or create a viewer, then link
/// (expecting no link stream, so two first sign-ins at once link once).
/// Answers the user and whether this sign-in created it.
async fn first_link(
    ledger: &Ledger,
    organization_id: OrganizationId,
    identity: &Identity,
    link: &StreamId,
) -> Result<Result<(UserId, bool), SsoRefusal>, Error> {
    let email = identity.email.as_deref().map(str::trim).unwrap_or_default();
    if !identity.email_verified || email.is_empty() || email.len() > crate::signin::EMAIL_CHARS_MAX {
        return Ok(Err(SsoRefusal::EmailNotVerified));
    }
    let organization = organizations::organization(&ledger.models.db, organization_id).await?;
    let existing = organization.and_then(|o| {
        o.state.users.iter().find(|(_, u)| u.active && u.email.eq_ignore_ascii_case(email)).map(|(id, _)| *id)
    });
    let (user_id, created) = match existing {
        Some(user_id) => (user_id, false),
        None => match create_viewer(ledger, organization_id, email, &identity.issuer).await? {
            Ok(user_id) => (user_id, true),
            Err(refusal) => return Ok(Err(refusal)),
        },
    };
    let event = SsoEvent::from(SsoLinked {
        organization_id,
        user_id,
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        created,
        at: ledger.now(),
    });
    let metadata = Metadata { actor: Some(issuer_actor(&identity.issuer)), ..Metadata::default() };
    let command = Command {
        stream_id: link.clone(),
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &metadata)],
    };
    match ledger.log.append_one(command).await? {
        Ok(_) => Ok(Ok((user_id, created))),
        // Linked meanwhile (another node): that link stands.
        Err(Rejection::WrongRevision { .. }) => {
            match last_event(ledger, link).await?.and_then(|(event, _)| linked_user(&event)) {
                Some(linked) => Ok(Ok((linked, false))),
                None => Err(Error::Internal(format!("{link}: no link after a conflict"))),
            }
        }
        Err(other) => Err(Error::Internal(other.to_string())),
    }
}

fn issuer_actor(issuer: &str) -> String {
    format!("sso:{issuer}")
}

/// Adds a viewer for a first SSO sign-in, within the seat limit.
async fn create_viewer(
    ledger: &Ledger,
    organization_id: OrganizationId,
    email: &str,
    issuer: &str,
) -> Result<Result<UserId, SsoRefusal>, Error> {
    let metadata = Metadata { actor: Some(issuer_actor(issuer)), ..Metadata::default() };
    let context = Context { metadata, idempotency: None, credential: None };
    let appended = execute(ledger, &context, || async {
        let seat_limit = ledger.seat_limit(organization_id).await?;
        let mut org = load::<Organization>(ledger, organization_id.stream()).await?;
        let add = OrganizationCommand::AddUser {
            user_id: UserId(uuid::Uuid::now_v7()),
            email: email.to_owned(),
            role: Role::Viewer,
            seat_limit,
        };
        org.decide(add, &()).await?;
        Ok(vec![org.into_command(&context, ledger.now())])
    })
    .await;
    let appended = match appended {
        Ok(appended) => appended,
        Err(Error::Organization(OrganizationError::SeatLimitReached { .. })) => {
            return Ok(Err(SsoRefusal::SeatLimitReached));
        }
        Err(other) => return Err(other),
    };
    let user_id = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::UserAdded(u)) => Some(u.user_id),
        _ => None,
    })?;
    Ok(Ok(user_id))
}

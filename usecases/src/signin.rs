//! Signing in to the customer portal by magic link (issue 14), without
//! HTTP: making links, using one, and recording sign-ins, sign-outs and
//! revocations in the log.
//!
//! A link's token is self-contained and MAC'd (`domain::signin`): nothing
//! is stored when a link is made. Using it appends `PortalSignedIn` to the
//! stream named by the token's keyed hash, expecting no stream, so a link
//! works once on all nodes together. Expiry is read from the business
//! clock (the one that makes the link), so a test clock moves both.

use domain::organization::Role;
use domain::signin::{self, LinkClaims, SignInEvent};
use domain::{Metadata, OrganizationId, Timestamp, UserId};
use projections::models::organizations;
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::Ledger;
use crate::command::new_event_id;
use crate::error::Error;

/// The longest e-mail address a sign-in request may give (the
/// organization aggregate's bound).
pub const EMAIL_CHARS_MAX: usize = domain::organization::NAME_CHARS_MAX;

/// A sign-in link for one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub organization_id: OrganizationId,
    pub organization: String,
    pub user_id: UserId,
    pub email: String,
    pub url: String,
}

/// A user the portal signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedInUser {
    pub organization_id: OrganizationId,
    pub user_id: UserId,
    pub role: Role,
}

/// Why a link did not sign anyone in. `user` is set when the link was
/// this server's (its MAC checked), so the refusal names a known user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a link of this server.
    Invalid,
    Expired {
        user: UserId,
        organization_id: OrganizationId,
    },
    Used {
        user: UserId,
        organization_id: OrganizationId,
    },
    /// The user was deactivated (or is gone).
    Inactive {
        user: UserId,
        organization_id: OrganizationId,
    },
}

/// A new link token for a user, valid `lifetime_micros` from now.
pub fn token(
    ledger: &Ledger,
    organization_id: OrganizationId,
    user_id: UserId,
    lifetime_micros: i64,
) -> Result<String, Error> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let expires_at = Timestamp::from_micros(ledger.now().as_micros().saturating_add(lifetime_micros));
    let claims = LinkClaims { organization_id, user_id, expires_at };
    Ok(signin::link_token(&ledger.keys.secret, claims, nonce))
}

/// The page a link opens: it shows a button that POSTs the token (mail
/// scanners fetch links; only a person presses the button).
pub fn url(portal_url: &str, token: &str) -> String {
    format!("{}/portal/link?token={token}", portal_url.trim_end_matches('/'))
}

/// One link per organization where `email` is an active user's address
/// (none when it is nobody's). Addresses are compared as given, trimmed.
pub async fn links_for_email(ledger: &Ledger, portal_url: &str, email: &str) -> Result<Vec<Link>, Error> {
    let email = email.trim();
    if email.is_empty() || email.len() > EMAIL_CHARS_MAX {
        return Err(Error::Validation(format!("an e-mail address is 1 to {EMAIL_CHARS_MAX} characters")));
    }
    let users = organizations::active_users_by_email(&ledger.models.db, email).await?;
    let mut links = Vec::with_capacity(users.len());
    for (organization_id, user) in users {
        // A white-labelled organization is named by its display name.
        let name = crate::branding::shown_name(ledger, organization_id).await?.unwrap_or_default();
        let token = token(ledger, organization_id, user.user_id, signin::SIGN_IN_LINK_MICROS)?;
        links.push(Link {
            organization_id,
            organization: name,
            user_id: user.user_id,
            email: user.email,
            url: url(portal_url, &token),
        });
    }
    Ok(links)
}

/// The link for one user found by e-mail address in one organization, for
/// the operator (`ledger users login-link`) when there is no SMTP.
pub async fn link_for_user(
    ledger: &Ledger,
    portal_url: &str,
    organization_id: OrganizationId,
    email: &str,
) -> Result<Link, Error> {
    // The command line runs beside the server that acknowledged the user:
    // let the read models include the whole log first (bounded wait).
    let head = ledger.log.head().await?.sequence;
    let _ = ledger.models.wait_for(head, crate::command::READ_YOUR_WRITES_WAIT).await;
    let links = links_for_email(ledger, portal_url, email).await?;
    links.into_iter().find(|link| link.organization_id == organization_id).ok_or(Error::NotFound)
}

/// Uses a link: checks it, then records the sign-in on the link's own
/// stream, expecting none, so a second use (here or on another node) is
/// refused. `session_id` is the new session's public id.
pub async fn consume(
    ledger: &Ledger,
    token: &str,
    address: &str,
    session_id: uuid::Uuid,
) -> Result<Result<SignedInUser, Refusal>, Error> {
    // Under whichever accepted secret made it (the secret may be rotating).
    let verified = ledger.keys.secrets().find_map(|secret| Some((signin::verify_link_token(secret, token)?, secret)));
    let Some((claims, secret)) = verified else { return Ok(Err(Refusal::Invalid)) };
    let (user, organization_id) = (claims.user_id, claims.organization_id);
    let now = ledger.now();
    if now >= claims.expires_at {
        return Ok(Err(Refusal::Expired { user, organization_id }));
    }
    let Some(role) = active_role(ledger, organization_id, user).await? else {
        return Ok(Err(Refusal::Inactive { user, organization_id }));
    };
    let event = SignInEvent::from(signin::SignedIn {
        organization_id,
        user_id: user,
        session_id,
        address: address.to_owned(),
        at: now,
    });
    let command = Command {
        stream_id: signin::link_stream(secret, token),
        expected: ExpectedRevision::NoStream,
        idempotency: None,
        events: vec![NewEvent::from_event(
            &event,
            new_event_id(),
            now,
            &metadata(organization_id, user, role, address),
        )],
    };
    match ledger.log.append_one(command).await? {
        Ok(_) => Ok(Ok(SignedInUser { organization_id, user_id: user, role })),
        Err(Rejection::WrongRevision { .. }) => Ok(Err(Refusal::Used { user, organization_id })),
        Err(other) => Err(Error::Internal(other.to_string())),
    }
}

/// The role of an active user, or `None` (deactivated, unknown).
pub async fn active_role(
    ledger: &Ledger,
    organization_id: OrganizationId,
    user_id: UserId,
) -> Result<Option<Role>, Error> {
    let organization = organizations::organization(&ledger.models.db, organization_id).await?;
    let user = organization.and_then(|o| o.state.users.get(&user_id).cloned());
    Ok(user.filter(|u| u.active).and_then(|u| u.role))
}

/// Records a session's end (sign-out or revocation) on its own stream.
pub async fn record_end(
    ledger: &Ledger,
    user: SignedInUser,
    session_id: uuid::Uuid,
    event: SignInEvent,
    address: &str,
) -> Result<(), Error> {
    let now = ledger.now();
    let metadata = metadata(user.organization_id, user.user_id, user.role, address);
    let command = Command {
        stream_id: signin::session_stream(session_id),
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), now, &metadata)],
    };
    ledger.log.append_one(command).await?.map_err(|rejected| Error::Internal(rejected.to_string()))?;
    Ok(())
}

fn metadata(organization_id: OrganizationId, user_id: UserId, role: Role, address: &str) -> Metadata {
    Metadata {
        actor: Some(format!("org:{organization_id}:{}:user:{user_id}", role.as_str())),
        correlation_id: None,
        source_ip: Some(address.to_owned()),
        user_agent: None,
    }
}

/// The sign-in e-mail: one link per organization.
pub fn mail(links: &[Link], lifetime_minutes: i64) -> crate::notify::mail::Mail {
    let mut body = String::from("Someone (hopefully you) asked to sign in to the customer portal.\n\n");
    for link in links {
        body.push_str(&format!("{}:\n{}\n\n", link.organization, link.url));
    }
    body.push_str(&format!(
        "Each link works once, within {lifetime_minutes} minutes. If you did not ask for this, ignore this e-mail.\n"
    ));
    crate::notify::mail::Mail { subject: "Your sign-in link to the customer portal".into(), body }
}

/// Records a known user's refused link on the user's stream of the day,
/// at most [`signin::REFUSALS_PER_USER_PER_DAY_MAX`] a day (beyond, only the
/// server's log says so); an unknown link is never recorded.
pub async fn record_refusal(ledger: &Ledger, refusal: Refusal, address: &str) -> Result<(), Error> {
    let (user_id, organization_id, reason) = match refusal {
        Refusal::Invalid => return Ok(()),
        Refusal::Expired { user, organization_id } => (user, organization_id, "expired"),
        Refusal::Used { user, organization_id } => (user, organization_id, "used"),
        Refusal::Inactive { user, organization_id } => (user, organization_id, "inactive"),
    };
    let now = ledger.now();
    let event = SignInEvent::from(signin::SignInRefused {
        organization_id,
        user_id,
        reason: reason.into(),
        address: address.to_owned(),
        at: now,
    });
    let stream = signin::refusals_stream(user_id, ledger.today());
    if !append_refusal(ledger, stream, &event, address, signin::REFUSALS_PER_USER_PER_DAY_MAX).await? {
        tracing::warn!(%user_id, %organization_id, reason, "portal sign-in refused; the day's refusals are all recorded");
    }
    Ok(())
}

/// Appends a refused sign-in (anonymous, from `address`) to its stream of
/// the day while that holds fewer than `max` (the stream's revision counts
/// them, so the bound holds across nodes); `false` once it is full (the
/// portal's refusals and the console's).
pub(crate) async fn append_refusal(
    ledger: &Ledger,
    stream_id: domain::StreamId,
    event: &SignInEvent,
    address: &str,
    max: u64,
) -> Result<bool, Error> {
    let metadata =
        Metadata { actor: None, correlation_id: None, source_ip: Some(address.to_owned()), user_agent: None };
    let command = Command {
        stream_id,
        expected: ExpectedRevision::Below(max),
        idempotency: None,
        events: vec![NewEvent::from_event(event, new_event_id(), ledger.now(), &metadata)],
    };
    match ledger.log.append_one(command).await? {
        Ok(_) => Ok(true),
        Err(Rejection::WrongRevision { .. }) => Ok(false),
        Err(other) => Err(Error::Internal(other.to_string())),
    }
}

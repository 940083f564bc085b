//! Who is calling, and what they may do (docs/API.md, "Authentication").
//!
//! Every front end (the HTTP API, the CLI, the scheduler) names its caller
//! with a [`Caller`]; use cases check it with the `require_*` rules here, so
//! the roles table is written once.

use domain::keys::{api_token_hash, api_token_id, constant_time_eq};
use domain::organization::Role;
use domain::{OrganizationId, Timestamp, TokenId, UserId};
use projections::models::organizations;

use crate::Ledger;
use crate::acknowledged::{self, Credential};
use crate::command::READ_YOUR_WRITES_WAIT;
use crate::error::Error;
use crate::secrets::Bootstrap;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Auditor,
    Member {
        organization_id: OrganizationId,
        role: Role,
        token_id: TokenId,
    },
    /// An organization's user signed in to the customer portal (a session,
    /// not an API token); the same roles table applies.
    User {
        organization_id: OrganizationId,
        role: Role,
        user_id: UserId,
    },
}

/// How much an organization's own members need for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Any member: viewer and up.
    Read,
    /// Invoices and audit: analyst and up.
    Analyst,
    /// Changes: admins.
    Admin,
}

impl Caller {
    /// The label recorded as the actor of an event.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Auditor => "auditor".into(),
            Caller::Member { organization_id, role, token_id } => {
                format!("org:{organization_id}:{}:token:{token_id}", role.as_str())
            }
            Caller::User { organization_id, role, user_id } => {
                format!("org:{organization_id}:{}:user:{user_id}", role.as_str())
            }
        }
    }

    /// The credential this caller presented, for read-your-writes
    /// (`acknowledged`).
    pub fn credential(&self) -> Credential {
        match self {
            Caller::Operator => Credential::Operator,
            Caller::Auditor => Credential::Auditor,
            Caller::Member { token_id, .. } => Credential::Token(*token_id),
            Caller::User { user_id, .. } => Credential::User(*user_id),
        }
    }

    /// The scope of this caller's idempotency keys.
    pub fn scope(&self) -> String {
        match self {
            Caller::Member { token_id, .. } => format!("token:{token_id}"),
            Caller::User { user_id, .. } => format!("user:{user_id}"),
            other => other.actor(),
        }
    }

    pub fn require_operator(&self) -> Result<(), Error> {
        match self {
            Caller::Operator => Ok(()),
            _ => Err(Error::Forbidden),
        }
    }

    /// Access to one organization's resources. Members of another
    /// organization get 404, as if it did not exist.
    pub fn require_org(&self, organization_id: OrganizationId, need: Need) -> Result<(), Error> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Auditor if need == Need::Admin => Err(Error::Forbidden),
            Caller::Auditor => Ok(()),
            Caller::Member { organization_id: own, .. } | Caller::User { organization_id: own, .. }
                if *own != organization_id =>
            {
                Err(Error::NotFound)
            }
            Caller::Member { role, .. } | Caller::User { role, .. } => {
                let allowed = match need {
                    Need::Read => true,
                    Need::Analyst => matches!(role, Role::Admin | Role::Analyst),
                    Need::Admin => *role == Role::Admin,
                };
                if allowed { Ok(()) } else { Err(Error::Forbidden) }
            }
        }
    }

    /// All organizations, the log head, proofs: operator and auditor.
    pub fn require_vendor(&self) -> Result<(), Error> {
        match self {
            Caller::Operator | Caller::Auditor => Ok(()),
            _ => Err(Error::Forbidden),
        }
    }
}

/// The caller a bearer token names: a bootstrap token, or an organization's
/// API token that is issued, not revoked and not expired. Expiry is read
/// from `transport_now`, the system clock (a transport check, like a
/// webhook signature's age, never the business clock's).
///
/// Read-your-writes, for every request that presents a credential, query or
/// command: the one place every such path passes, before anything is read
/// on the caller's behalf. It waits, at most
/// [`READ_YOUR_WRITES_WAIT`] in all, until the read models include what
/// this node acknowledged to the credential (and, for an API token, its own
/// issue or revocation, so a token revoked here is refused from the moment
/// the revocation was answered), and then `min_sequence` (`?minSequence=`,
/// another node's writes) once the caller is known.
pub async fn authenticate(
    ledger: &Ledger,
    token: &str,
    transport_now: Timestamp,
    min_sequence: Option<u64>,
) -> Result<Caller, Error> {
    let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
    let caller = identify(ledger, token, transport_now, deadline).await?;
    let floor = ledger.acknowledged.floor(Some(caller.credential()));
    acknowledged::wait_until(ledger, floor.max(min_sequence.unwrap_or(0)), deadline).await?;
    Ok(caller)
}

async fn identify(
    ledger: &Ledger,
    token: &str,
    transport_now: Timestamp,
    deadline: tokio::time::Instant,
) -> Result<Caller, Error> {
    match ledger.keys.bootstrap(token) {
        Some(Bootstrap::Operator) => return Ok(Caller::Operator),
        Some(Bootstrap::Auditor) => return Ok(Caller::Auditor),
        None => {}
    }
    // The MAC is not checked: a token issued under a secret rotated away
    // from carries that secret's MAC, and is known by its stored hash.
    let token_id = api_token_id(token).ok_or(Error::Unauthorized)?;
    // Its entry is read from state that includes its issue or revocation,
    // when this node acknowledged either.
    let floor = ledger.acknowledged.floor(Some(Credential::Token(token_id)));
    acknowledged::wait_until(ledger, floor, deadline).await?;
    let entry = organizations::token(&ledger.models.db, token_id).await?.ok_or(Error::Unauthorized)?;
    // Under each accepted secret: while the secret rotates, the stored hash
    // is under the old one until `ledger keys retire-secret` made it again.
    let matches = ledger
        .keys
        .secrets()
        .any(|secret| constant_time_eq(api_token_hash(secret, token).as_bytes(), entry.token_hash.as_bytes()));
    if entry.revoked || !matches {
        return Err(Error::Unauthorized);
    }
    // The expiry the token was issued with (the organization aggregate's).
    if entry.expires_at.is_some_and(|expires_at| transport_now >= expires_at) {
        return Err(Error::Unauthorized);
    }
    Ok(Caller::Member { organization_id: entry.organization_id, role: entry.role, token_id })
}

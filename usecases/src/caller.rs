//! Who is calling, and what they may do (docs/API.md, "Authentication").
//!
//! Every front end (the HTTP API, the CLI, the scheduler) names its caller
//! with a [`Caller`]; use cases check it with the `require_*` rules here, so
//! the roles table is written once. The vendor's side (bootstrap tokens,
//! staff users, service tokens) has a [`StaffRole`] each, and every route
//! names the [`StaffPermission`] it needs (`Caller::require`).

use domain::keys::{api_token_hash, api_token_id, constant_time_eq};
use domain::organization::Role;
use domain::staff::{ServiceTokenId, StaffId, StaffPermission, StaffRole, service_token_hash, service_token_id};
use domain::{OrganizationId, Timestamp, TokenId, UserId};
use projections::models::{organizations, staff};

use crate::Ledger;
use crate::acknowledged::{self, Credential};
use crate::command::READ_YOUR_WRITES_WAIT;
use crate::error::Error;
use crate::secrets::Bootstrap;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `LEDGER_OPERATOR_TOKEN`: the bootstrap service token, staff admin.
    Operator,
    /// `LEDGER_AUDITOR_TOKEN`: the bootstrap auditor service token.
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
    /// A vendor's staff user signed in to the console.
    Staff {
        staff_id: StaffId,
        role: StaffRole,
    },
    /// A vendor's service token (`ls1_…`).
    Service {
        token_id: ServiceTokenId,
        role: StaffRole,
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
            Caller::Staff { staff_id, role } => format!("staff:{staff_id}:{}", role.as_str()),
            Caller::Service { token_id, role } => format!("service:{token_id}:{}", role.as_str()),
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
            Caller::Staff { staff_id, .. } => Credential::Staff(*staff_id),
            Caller::Service { token_id, .. } => Credential::Service(*token_id),
        }
    }

    /// The scope of this caller's idempotency keys.
    pub fn scope(&self) -> String {
        match self {
            Caller::Member { token_id, .. } => format!("token:{token_id}"),
            Caller::User { user_id, .. } => format!("user:{user_id}"),
            // Not the role: a key stays the caller's when its role changes.
            Caller::Staff { staff_id, .. } => format!("staff:{staff_id}"),
            Caller::Service { token_id, .. } => format!("service:{token_id}"),
            other => other.actor(),
        }
    }

    /// The vendor's role of this caller: the bootstrap tokens', a staff
    /// user's or a service token's; `None` for an organization's members.
    pub fn staff_role(&self) -> Option<StaffRole> {
        match self {
            Caller::Operator => Some(StaffRole::StaffAdmin),
            Caller::Auditor => Some(StaffRole::Auditor),
            Caller::Staff { role, .. } | Caller::Service { role, .. } => Some(*role),
            Caller::Member { .. } | Caller::User { .. } => None,
        }
    }

    /// Whether this caller's staff role grants `permission`.
    pub fn may(&self, permission: StaffPermission) -> bool {
        self.staff_role().is_some_and(|role| role.may(permission))
    }

    /// What a vendor's route needs (the issue's table, README "Staff and
    /// service tokens"); 403 otherwise.
    pub fn require(&self, permission: StaffPermission) -> Result<(), Error> {
        if self.may(permission) { Ok(()) } else { Err(Error::Forbidden) }
    }

    /// Access to one organization's resources. Members of another
    /// organization get 404, as if it did not exist. Staff who operate
    /// (staff admin, billing) may change it; those who read customers
    /// (support, auditor) may read it.
    pub fn require_org(&self, organization_id: OrganizationId, need: Need) -> Result<(), Error> {
        match self {
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
            _ if self.may(StaffPermission::Operate) => Ok(()),
            _ if need != Need::Admin && self.may(StaffPermission::ReadCustomers) => Ok(()),
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
    // A service token is known by its stored hash, checked under each
    // accepted secret, as an organization token is; its MAC is not checked
    // (one issued before the secret was retired carries the old secret's).
    if let Some(token_id) = service_token_id(token) {
        return service(ledger, token, token_id, transport_now, deadline).await;
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

/// A service token that is issued, not revoked and not expired, read from
/// state that includes its issue or revocation when this node answered
/// either (so a revocation is effective at once here, and on every node
/// once its tables include it).
async fn service(
    ledger: &Ledger,
    token: &str,
    token_id: ServiceTokenId,
    transport_now: Timestamp,
    deadline: tokio::time::Instant,
) -> Result<Caller, Error> {
    let floor = ledger.acknowledged.floor(Some(Credential::Service(token_id)));
    acknowledged::wait_until(ledger, floor, deadline).await?;
    let entry = staff::service_token(&ledger.models.db, token_id).await?.ok_or(Error::Unauthorized)?;
    let matches = ledger
        .keys
        .secrets()
        .any(|secret| constant_time_eq(service_token_hash(secret, token).as_bytes(), entry.token_hash.as_bytes()));
    if entry.revoked || !matches {
        return Err(Error::Unauthorized);
    }
    if transport_now >= entry.expires_at {
        return Err(Error::Unauthorized);
    }
    Ok(Caller::Service { token_id, role: entry.role })
}

/// A staff user signed in to the console, as the read models know them
/// now: `None` once disabled (their sessions end with it). The role is the
/// current one, not the one they signed in with.
pub async fn staff_caller(ledger: &Ledger, staff_id: StaffId) -> Result<Option<Caller>, Error> {
    let floor = ledger.acknowledged.floor(Some(Credential::Staff(staff_id)));
    acknowledged::wait_until(ledger, floor, tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT).await?;
    let row = staff::staff_user(&ledger.models.db, staff_id).await?;
    Ok(row.filter(|row| row.active).map(|row| Caller::Staff { staff_id, role: row.role }))
}

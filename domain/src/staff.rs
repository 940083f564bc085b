//! The vendor's staff (issue 15 part 1): named staff users and service
//! tokens, each with one [`StaffRole`].
//!
//! Stream `staff/directory`: one aggregate, [`StaffDirectory`], holds every
//! staff user and service token, so an e-mail address is unique among
//! active staff and the counts are bounded ([`STAFF_USERS_MAX`],
//! [`SERVICE_TOKENS_MAX`]). A service token is derived from the server
//! secret and its id (`ls1_…`, like an organization's `lt1_…`); only its
//! keyed hash reaches the log. A service token always expires, at most
//! [`SERVICE_TOKEN_LIFETIME_MICROS_MAX`] after it was issued, by the
//! system clock (a transport check, like an org token's expiry).
//!
//! The bootstrap tokens (`LEDGER_OPERATOR_TOKEN`, `LEDGER_AUDITOR_TOKEN`)
//! are not in this directory: they are the server's own service tokens,
//! staff admin and auditor, and stay the way back in when no staff admin
//! is left.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{SECRET_TEXT_BYTES_MAX, ServerSecret, constant_time_eq};
use crate::organization::normalize_email;
use crate::record::Hash;
use crate::{StreamId, Timestamp};

/// The longest staff user's or service token's name, in characters.
pub const STAFF_NAME_CHARS_MAX: usize = 100;
/// Staff users the directory holds at most (disabled ones included).
pub const STAFF_USERS_MAX: usize = 500;
/// Service tokens ever issued, at most (revoked and expired included).
pub const SERVICE_TOKENS_MAX: usize = 5_000;
/// Service tokens alive at once (neither revoked nor expired), at most:
/// automation needs a few dozen; more is a script issuing in a loop, which
/// would otherwise use up [`SERVICE_TOKENS_MAX`] for good in one sitting.
pub const SERVICE_TOKENS_ALIVE_MAX: usize = 100;
/// Role changes of one staff user in one UTC day, at most: a change and
/// its correction a few times over. Beyond, a scripted staff admin would
/// grow the directory's one stream without bound (its aggregate is read
/// whole for every decision).
pub const STAFF_ROLE_CHANGES_PER_DAY_MAX: u32 = 10;
const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;
/// The furthest ahead a service token's expiry may be: a year and a day.
pub const SERVICE_TOKEN_LIFETIME_MICROS_MAX: i64 = 366 * 24 * 3600 * 1_000_000;
/// A service token's text begins with this.
pub const SERVICE_TOKEN_PREFIX: &str = "ls1_";
const SERVICE_TOKEN_MAC_CONTEXT: &str = "ledger 2026-12-01 service token mac v1";
const SERVICE_TOKEN_HASH_CONTEXT: &str = "ledger 2026-12-01 service token hash v1";

/// The one stream of the staff directory.
pub fn stream() -> StreamId {
    StreamId::new("staff/directory").expect("a valid stream id")
}

/// A staff user of the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StaffId(pub Uuid);

/// A service token of the vendor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceTokenId(pub Uuid);

impl std::fmt::Display for StaffId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for ServiceTokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a staff user or service token may do (README, "Staff and service
/// tokens"). Stored: variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    StaffAdmin,
    Billing,
    Support,
    Auditor,
}

impl StaffRole {
    pub const ALL: [StaffRole; 4] = [StaffRole::StaffAdmin, StaffRole::Billing, StaffRole::Support, StaffRole::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::StaffAdmin => "staff_admin",
            StaffRole::Billing => "billing",
            StaffRole::Support => "support",
            StaffRole::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Whether this role grants `permission` (the issue's table).
    pub fn may(self, permission: StaffPermission) -> bool {
        use StaffPermission as P;
        match self {
            StaffRole::StaffAdmin => true,
            StaffRole::Billing => permission != P::ManageStaff,
            StaffRole::Support | StaffRole::Auditor => matches!(permission, P::ReadCustomers | P::Audit),
        }
    }
}

/// What a route needs of a staff caller. Each route names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaffPermission {
    /// Staff users and service tokens: staff admin.
    ManageStaff,
    /// Everything BILLING-RULES and API.md call "operator": organizations,
    /// subscriptions, prices, revocations, the test clock.
    Operate,
    /// Billing runs, voids, credit notes, Stripe retries.
    BillingOps,
    /// Every organization, its users, licenses, usage, invoices (the
    /// auditor reads only).
    ReadCustomers,
    /// The log head, proofs, audit, analytics.
    Audit,
}

/// What is decided on the staff directory.
#[derive(Debug, Clone, PartialEq)]
pub enum StaffCommand {
    AddUser {
        staff_id: StaffId,
        name: String,
        email: String,
        role: StaffRole,
    },
    /// `now` is the system clock's: the day whose role changes count.
    ChangeRole {
        staff_id: StaffId,
        role: StaffRole,
        now: Timestamp,
    },
    Disable {
        staff_id: StaffId,
    },
    /// `token_hash` is the keyed hash of the token the caller derived; the
    /// token itself never reaches the log. `now` is the system clock's.
    IssueToken {
        token_id: ServiceTokenId,
        name: String,
        role: StaffRole,
        token_hash: Hash,
        expires_at: Timestamp,
        now: Timestamp,
    },
    RevokeToken {
        token_id: ServiceTokenId,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffUserAdded {
    pub staff_id: StaffId,
    pub name: String,
    pub email: String,
    pub role: StaffRole,
}

/// A staff user's new role, from `at` (schema version 2: the day's role
/// changes are counted, [`STAFF_ROLE_CHANGES_PER_DAY_MAX`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffRoleChanged {
    pub staff_id: StaffId,
    pub role: StaffRole,
    pub at: Timestamp,
}

/// Schema version 1 of `StaffRoleChanged`: it did not say when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffRoleChangedV1 {
    pub staff_id: StaffId,
    pub role: StaffRole,
}

impl From<StaffRoleChangedV1> for StaffRoleChanged {
    /// A change recorded before changes were counted reads as made at the
    /// epoch, a day no later change counts against.
    fn from(old: StaffRoleChangedV1) -> Self {
        Self { staff_id: old.staff_id, role: old.role, at: Timestamp::from_micros(0) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffUserDisabled {
    pub staff_id: StaffId,
}

/// A service token; from `expires_at` on (system clock) it is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTokenIssued {
    pub token_id: ServiceTokenId,
    pub name: String,
    pub role: StaffRole,
    pub token_hash: Hash,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTokenRevoked {
    pub token_id: ServiceTokenId,
}

/// The service token's keyed hash under the server secret `secret_id`
/// names (`crate::keys::ServerSecret::id`), replacing the one kept before
/// (`ledger keys retire-secret`, like `ApiTokenRehashed`). The token
/// itself is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTokenRehashed {
    pub token_id: ServiceTokenId,
    pub token_hash: Hash,
    pub secret_id: Hash,
}

crate::stored_events! {
    /// What happened to the vendor's staff and service tokens.
    pub enum StaffEvent {
        StaffUserAdded = "StaffUserAdded" version 1,
        StaffRoleChanged = "StaffRoleChanged" version 2 { 1 => StaffRoleChangedV1 },
        StaffUserDisabled = "StaffUserDisabled" version 1,
        ServiceTokenIssued = "ServiceTokenIssued" version 1,
        ServiceTokenRevoked = "ServiceTokenRevoked" version 1,
        ServiceTokenRehashed = "ServiceTokenRehashed" version 1,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffError {
    #[error("name must be 1 to {STAFF_NAME_CHARS_MAX} characters, no control characters")]
    InvalidName,
    #[error("{0:?} is not an e-mail address")]
    InvalidEmail(String),
    #[error("an active staff user with e-mail {0} exists")]
    DuplicateEmail(String),
    #[error("the staff directory holds at most {STAFF_USERS_MAX} users")]
    TooManyUsers,
    #[error("no such staff user")]
    UserNotFound,
    #[error("the staff user is disabled")]
    UserDisabled,
    #[error("the staff user already has this role")]
    RoleUnchanged,
    #[error("the id is already in use")]
    IdInUse,
    #[error("at most {SERVICE_TOKENS_MAX} service tokens are ever issued")]
    TooManyTokens,
    #[error("at most {SERVICE_TOKENS_ALIVE_MAX} service tokens are alive at once: revoke one first")]
    TooManyAliveTokens,
    #[error("a staff user's role changes at most {STAFF_ROLE_CHANGES_PER_DAY_MAX} times a day (UTC)")]
    TooManyRoleChanges,
    #[error("expiresAt must be after now and at most 366 days ahead")]
    InvalidExpiry,
    #[error("no such service token")]
    TokenNotFound,
    #[error("the service token is already revoked")]
    TokenAlreadyRevoked,
}

/// A staff user as the directory knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffUser {
    pub name: String,
    pub email: String,
    pub role: StaffRole,
    pub active: bool,
    /// The UTC day (days since the epoch) of the last role change, and how
    /// many changes that day saw.
    #[serde(default)]
    pub role_changes: (i64, u32),
}

/// A service token as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceToken {
    pub name: String,
    pub role: StaffRole,
    pub revoked: bool,
    pub expires_at: Timestamp,
}

/// The state that decisions need: every staff user and service token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaffDirectory {
    pub users: BTreeMap<StaffId, StaffUser>,
    pub tokens: BTreeMap<ServiceTokenId, ServiceToken>,
}

/// A name, trimmed: 1 to [`STAFF_NAME_CHARS_MAX`] characters, none a
/// control character.
pub fn staff_name(raw: &str) -> Result<String, StaffError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > STAFF_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(StaffError::InvalidName);
    }
    Ok(name.to_owned())
}

/// An e-mail address as stored: trimmed, lower case, checked loosely.
pub fn staff_email(raw: &str) -> Result<String, StaffError> {
    normalize_email(raw).map_err(|_| StaffError::InvalidEmail(raw.trim().to_lowercase()))
}

/// The UTC day of a moment, in days since the epoch.
fn day_of(at: Timestamp) -> i64 {
    at.as_micros().div_euclid(DAY_MICROS)
}

impl StaffDirectory {
    fn taken(&self, id: Uuid) -> bool {
        self.users.contains_key(&StaffId(id)) || self.tokens.contains_key(&ServiceTokenId(id))
    }

    fn add_user(&self, staff_id: StaffId, name: &str, email: &str, role: StaffRole) -> Result<StaffEvent, StaffError> {
        let name = staff_name(name)?;
        let email = staff_email(email)?;
        if self.taken(staff_id.0) {
            return Err(StaffError::IdInUse);
        }
        if self.users.values().any(|user| user.active && user.email == email) {
            return Err(StaffError::DuplicateEmail(email));
        }
        if self.users.len() >= STAFF_USERS_MAX {
            return Err(StaffError::TooManyUsers);
        }
        Ok(StaffUserAdded { staff_id, name, email, role }.into())
    }

    fn active_user(&self, staff_id: StaffId) -> Result<&StaffUser, StaffError> {
        let user = self.users.get(&staff_id).ok_or(StaffError::UserNotFound)?;
        if user.active { Ok(user) } else { Err(StaffError::UserDisabled) }
    }

    fn decide(&self, command: StaffCommand) -> Result<StaffEvent, StaffError> {
        use StaffError as E;
        Ok(match command {
            StaffCommand::AddUser { staff_id, name, email, role } => self.add_user(staff_id, &name, &email, role)?,
            StaffCommand::ChangeRole { staff_id, role, now } => {
                let user = self.active_user(staff_id)?;
                if user.role == role {
                    return Err(E::RoleUnchanged);
                }
                let (day, changes) = user.role_changes;
                if day == day_of(now) && changes >= STAFF_ROLE_CHANGES_PER_DAY_MAX {
                    return Err(E::TooManyRoleChanges);
                }
                StaffRoleChanged { staff_id, role, at: now }.into()
            }
            StaffCommand::Disable { staff_id } => {
                self.active_user(staff_id)?;
                StaffUserDisabled { staff_id }.into()
            }
            StaffCommand::IssueToken { token_id, name, role, token_hash, expires_at, now } => {
                let name = staff_name(&name)?;
                if self.taken(token_id.0) {
                    return Err(E::IdInUse);
                }
                if self.tokens.len() >= SERVICE_TOKENS_MAX {
                    return Err(E::TooManyTokens);
                }
                let alive = self.tokens.values().filter(|t| !t.revoked && t.expires_at > now).count();
                if alive >= SERVICE_TOKENS_ALIVE_MAX {
                    return Err(E::TooManyAliveTokens);
                }
                let latest = now.as_micros().saturating_add(SERVICE_TOKEN_LIFETIME_MICROS_MAX);
                if expires_at <= now || expires_at.as_micros() > latest {
                    return Err(E::InvalidExpiry);
                }
                ServiceTokenIssued { token_id, name, role, token_hash, expires_at }.into()
            }
            StaffCommand::RevokeToken { token_id } => match self.tokens.get(&token_id) {
                None => return Err(E::TokenNotFound),
                Some(token) if token.revoked => return Err(E::TokenAlreadyRevoked),
                Some(_) => ServiceTokenRevoked { token_id }.into(),
            },
        })
    }
}

impl cqrs_es::Aggregate for StaffDirectory {
    const TYPE: &'static str = "staff";
    type Command = StaffCommand;
    type Event = StaffEvent;
    type Error = StaffError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            StaffEvent::StaffUserAdded(e) => {
                let user = StaffUser { name: e.name, email: e.email, role: e.role, active: true, role_changes: (0, 0) };
                self.users.insert(e.staff_id, user);
            }
            StaffEvent::StaffRoleChanged(e) => {
                if let Some(user) = self.users.get_mut(&e.staff_id) {
                    user.role = e.role;
                    let day = day_of(e.at);
                    let (last, changes) = user.role_changes;
                    user.role_changes = (day, if last == day { changes.saturating_add(1) } else { 1 });
                }
            }
            StaffEvent::StaffUserDisabled(e) => {
                if let Some(user) = self.users.get_mut(&e.staff_id) {
                    user.active = false;
                }
            }
            StaffEvent::ServiceTokenIssued(e) => {
                let token = ServiceToken { name: e.name, role: e.role, revoked: false, expires_at: e.expires_at };
                self.tokens.insert(e.token_id, token);
            }
            StaffEvent::ServiceTokenRevoked(e) => {
                if let Some(token) = self.tokens.get_mut(&e.token_id) {
                    token.revoked = true;
                }
            }
            // Decisions need no hash: only the read models keep it.
            StaffEvent::ServiceTokenRehashed(_) => {}
        }
    }
}

/// The service token of a token id: `ls1_` and the base64url of the id
/// and its MAC under the server secret.
pub fn service_token(secret: &ServerSecret, token_id: ServiceTokenId) -> String {
    let mac = secret.keyed(SERVICE_TOKEN_MAC_CONTEXT, token_id.0.as_bytes());
    let mut bytes = token_id.0.as_bytes().to_vec();
    bytes.extend_from_slice(mac.as_bytes());
    format!("{SERVICE_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The token id a service token names, if it is one of ours (its MAC
/// checks).
pub fn verify_service_token(secret: &ServerSecret, token: &str) -> Option<ServiceTokenId> {
    let token_id = service_token_id(token)?;
    constant_time_eq(service_token(secret, token_id), token).then_some(token_id)
}

/// The token id a service token's text names, its MAC unchecked: a token
/// made under a secret since retired carries that secret's MAC, and is
/// known by its stored keyed hash (`ledger keys retire-secret` made it
/// again under the current secret).
pub fn service_token_id(token: &str) -> Option<ServiceTokenId> {
    if token.len() > SECRET_TEXT_BYTES_MAX {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.strip_prefix(SERVICE_TOKEN_PREFIX)?).ok()?;
    if bytes.len() != 16 + 32 {
        return None;
    }
    let id: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(ServiceTokenId(Uuid::from_bytes(id)))
}

/// What the log keeps of a service token.
pub fn service_token_hash(secret: &ServerSecret, token: &str) -> Hash {
    secret.keyed(SERVICE_TOKEN_HASH_CONTEXT, token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_token_names_its_id_only_under_its_secret() {
        let secret = ServerSecret::from_bytes([5; 32]);
        let id = ServiceTokenId(Uuid::from_u128(9));
        let token = service_token(&secret, id);
        assert!(token.starts_with(SERVICE_TOKEN_PREFIX));
        assert_eq!(verify_service_token(&secret, &token), Some(id));
        assert_eq!(verify_service_token(&ServerSecret::from_bytes([6; 32]), &token), None);
        assert_eq!(verify_service_token(&secret, &token.replace("ls1_", "lt1_")), None);
        let api = crate::keys::api_token(&secret, crate::TokenId(id.0));
        assert_eq!(verify_service_token(&secret, &api), None, "an org token is not a service token");
        let other = service_token(&ServerSecret::from_bytes([6; 32]), id);
        assert_eq!(service_token_id(&other), Some(id), "the id is read without the MAC");
        assert_eq!(service_token_id(&api), None);
        assert_eq!(service_token_id(&token[..token.len() - 1]), None, "a cut token");
        assert_ne!(service_token_hash(&secret, &token), crate::keys::api_token_hash(&secret, &token));
    }

    #[test]
    fn the_roles_grant_the_issues_table() {
        use StaffPermission as P;
        let all = [P::ManageStaff, P::Operate, P::BillingOps, P::ReadCustomers, P::Audit];
        let granted = |role: StaffRole| all.into_iter().filter(|p| role.may(*p)).collect::<Vec<_>>();
        assert_eq!(granted(StaffRole::StaffAdmin), all);
        assert_eq!(granted(StaffRole::Billing), [P::Operate, P::BillingOps, P::ReadCustomers, P::Audit]);
        assert_eq!(granted(StaffRole::Support), [P::ReadCustomers, P::Audit]);
        assert_eq!(granted(StaffRole::Auditor), [P::ReadCustomers, P::Audit]);
        for role in StaffRole::ALL {
            assert_eq!(StaffRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(StaffRole::parse("operator"), None);
    }
}

//! The organization aggregate: a customer, its users and its API tokens.
//!
//! Stream `org/{id}`. The seat limit comes from the organization's
//! subscription; the caller reads it and puts it into `AddUser`, so this
//! aggregate needs nothing from outside while deciding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Hash;
use crate::{OrganizationId, SubscriptionId, Timestamp, TokenId, UserId};

/// The longest organization name, domain, industry and e-mail address.
pub const NAME_CHARS_MAX: usize = 255;
/// The furthest ahead an API token's expiry may be set: a year and a day.
/// A token meant to last is issued without one (and revoked when done);
/// an expiry is for tokens that should end on their own, and an expiry
/// years away would only look like one.
pub const TOKEN_LIFETIME_MICROS_MAX: i64 = 366 * 24 * 3600 * 1_000_000;

/// What an organization member may do (API.md, "Authentication").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Analyst,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Role::Admin, Role::Analyst, Role::Viewer].into_iter().find(|role| role.as_str() == text)
    }
}

/// Seats a subscription allows: `None` is unlimited.
pub type SeatLimit = Option<u32>;

#[derive(Debug, Clone, PartialEq)]
pub enum OrganizationCommand {
    Create {
        id: OrganizationId,
        name: String,
        domain: Option<String>,
        industry: Option<String>,
        employee_count: Option<u32>,
    },
    AddUser {
        user_id: UserId,
        email: String,
        role: Role,
        seat_limit: SeatLimit,
    },
    DeactivateUser {
        user_id: UserId,
    },
    /// An active user's role changes; the last active admin keeps theirs.
    ChangeRole {
        user_id: UserId,
        role: Role,
    },
    /// `token_hash` is the keyed hash of the token the caller derived; the
    /// token itself never reaches the log. `expires_at`, if given, must lie
    /// after `now` and at most [`TOKEN_LIFETIME_MICROS_MAX`] later; `now`
    /// is the system clock's, as the expiry is checked against it.
    IssueToken {
        token_id: TokenId,
        role: Role,
        token_hash: Hash,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    },
    RevokeToken {
        token_id: TokenId,
    },
    /// The server secret is rotated: the token's hash under the new secret
    /// (`secret_id` names it) replaces the stored one.
    RehashToken {
        token_id: TokenId,
        token_hash: Hash,
        secret_id: Hash,
    },
    /// A subscription starts; refused while another is live. Appended in
    /// the same transaction as the subscription's creation.
    StartSubscription {
        subscription_id: SubscriptionId,
    },
    /// The live subscription expired or its cancellation took effect.
    EndSubscription {
        subscription_id: SubscriptionId,
    },
}

crate::stored_events! {
    /// What happened to an organization.
    pub enum OrganizationEvent {
        OrganizationCreated = "OrganizationCreated" version 1,
        UserAdded = "UserAdded" version 1,
        UserDeactivated = "UserDeactivated" version 1,
        UserRoleChanged = "UserRoleChanged" version 1,
        ApiTokenIssued = "ApiTokenIssued" version 2 { 1 => ApiTokenIssuedV1 },
        ApiTokenRevoked = "ApiTokenRevoked" version 1,
        SubscriptionStarted = "SubscriptionStarted" version 1,
        SubscriptionEnded = "SubscriptionEnded" version 1,
        ApiTokenRehashed = "ApiTokenRehashed" version 1,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionStarted {
    pub subscription_id: SubscriptionId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionEnded {
    pub subscription_id: SubscriptionId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrganizationCreated {
    pub id: OrganizationId,
    pub name: String,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub employee_count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAdded {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDeactivated {
    pub user_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    pub user_id: UserId,
    pub role: Role,
}

/// An API token; from `expires_at` on (by the system clock) it is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenIssued {
    pub token_id: TokenId,
    pub role: Role,
    pub token_hash: Hash,
    pub expires_at: Option<Timestamp>,
}

/// Schema version 1 of `ApiTokenIssued`: tokens did not expire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenIssuedV1 {
    pub token_id: TokenId,
    pub role: Role,
    pub token_hash: Hash,
}

impl From<ApiTokenIssuedV1> for ApiTokenIssued {
    fn from(old: ApiTokenIssuedV1) -> Self {
        Self { token_id: old.token_id, role: old.role, token_hash: old.token_hash, expires_at: None }
    }
}

/// The token's keyed hash under the server secret `secret_id` names
/// (`crate::keys::secret_id`), replacing the one kept before (`ledger keys
/// rehash-secret`). The token itself is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRehashed {
    pub token_id: TokenId,
    pub token_hash: Hash,
    pub secret_id: Hash,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRevoked {
    pub token_id: TokenId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    #[error("the organization already exists")]
    AlreadyExists,
    #[error("the organization does not exist")]
    NotFound,
    #[error("{field} must be 1 to {NAME_CHARS_MAX} characters")]
    InvalidText { field: &'static str },
    #[error("{0:?} is not an e-mail address")]
    InvalidEmail(String),
    #[error("employeeCount must be at least 1")]
    InvalidEmployeeCount,
    #[error("a user with e-mail {0} already exists in this organization")]
    DuplicateEmail(String),
    #[error("all {limit} seats are taken")]
    SeatLimitReached { limit: u32 },
    #[error("no such user")]
    UserNotFound,
    #[error("the user is already deactivated")]
    UserAlreadyDeactivated,
    #[error("the user is deactivated")]
    UserNotActive,
    #[error("the user already has this role")]
    RoleUnchanged,
    #[error("the organization's last active admin keeps the admin role")]
    LastAdmin,
    #[error("the token id is already in use")]
    TokenExists,
    #[error("no such token")]
    TokenNotFound,
    #[error("the token is already revoked")]
    TokenAlreadyRevoked,
    #[error("expiresAt must be after now and at most 366 days ahead")]
    InvalidTokenExpiry,
    #[error("the organization already has a live subscription {0}")]
    LiveSubscriptionExists(SubscriptionId),
    #[error("{0} is not the organization's live subscription")]
    NotTheLiveSubscription(SubscriptionId),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub email: String,
    pub role: Option<Role>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub role: Role,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
}

impl Token {
    /// Whether the token has expired at `now` (the system clock's).
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }
}

/// The state that decisions need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: Option<OrganizationId>,
    pub name: String,
    pub users: BTreeMap<UserId, User>,
    pub tokens: BTreeMap<TokenId, Token>,
    /// The subscription that is not cancelled or expired, if any.
    pub live_subscription: Option<SubscriptionId>,
}

impl Organization {
    pub fn active_users(&self) -> u32 {
        self.users.values().filter(|user| user.active).count() as u32
    }

    fn change_role(&self, user_id: UserId, role: Role) -> Result<UserRoleChanged, OrganizationError> {
        use OrganizationError as E;
        let user = self.users.get(&user_id).ok_or(E::UserNotFound)?;
        if !user.active {
            return Err(E::UserNotActive);
        }
        if user.role == Some(role) {
            return Err(E::RoleUnchanged);
        }
        let admins = self.users.values().filter(|u| u.active && u.role == Some(Role::Admin)).count();
        if user.role == Some(Role::Admin) && admins == 1 {
            return Err(E::LastAdmin);
        }
        Ok(UserRoleChanged { user_id, role })
    }

    fn decide(&self, command: OrganizationCommand) -> Result<Vec<OrganizationEvent>, OrganizationError> {
        use OrganizationError as E;
        if !matches!(command, OrganizationCommand::Create { .. }) && self.id.is_none() {
            return Err(E::NotFound);
        }
        let event = match command {
            OrganizationCommand::Create { id, name, domain, industry, employee_count } => {
                if self.id.is_some() {
                    return Err(E::AlreadyExists);
                }
                let name = text("name", name)?;
                let domain = domain.map(|d| text("domain", d)).transpose()?;
                let industry = industry.map(|i| text("industry", i)).transpose()?;
                if employee_count == Some(0) {
                    return Err(E::InvalidEmployeeCount);
                }
                OrganizationCreated { id, name, domain, industry, employee_count }.into()
            }
            OrganizationCommand::AddUser { user_id, email, role, seat_limit } => {
                let email = normalize_email(&email)?;
                // Among active users: a deactivated person may be added again.
                if self.users.values().any(|user| user.active && user.email == email) {
                    return Err(E::DuplicateEmail(email));
                }
                if let Some(limit) = seat_limit
                    && self.active_users() >= limit
                {
                    return Err(E::SeatLimitReached { limit });
                }
                UserAdded { user_id, email, role }.into()
            }
            OrganizationCommand::DeactivateUser { user_id } => match self.users.get(&user_id) {
                None => return Err(E::UserNotFound),
                Some(user) if !user.active => return Err(E::UserAlreadyDeactivated),
                Some(_) => UserDeactivated { user_id }.into(),
            },
            OrganizationCommand::ChangeRole { user_id, role } => self.change_role(user_id, role)?.into(),
            OrganizationCommand::IssueToken { token_id, role, token_hash, expires_at, now } => {
                if self.tokens.contains_key(&token_id) {
                    return Err(E::TokenExists);
                }
                let latest = now.as_micros().saturating_add(TOKEN_LIFETIME_MICROS_MAX);
                if expires_at.is_some_and(|at| at <= now || at.as_micros() > latest) {
                    return Err(E::InvalidTokenExpiry);
                }
                ApiTokenIssued { token_id, role, token_hash, expires_at }.into()
            }
            OrganizationCommand::RevokeToken { token_id } => match self.tokens.get(&token_id) {
                None => return Err(E::TokenNotFound),
                Some(token) if token.revoked => return Err(E::TokenAlreadyRevoked),
                Some(_) => ApiTokenRevoked { token_id }.into(),
            },
            OrganizationCommand::RehashToken { token_id, token_hash, secret_id } => match self.tokens.get(&token_id) {
                None => return Err(E::TokenNotFound),
                Some(_) => ApiTokenRehashed { token_id, token_hash, secret_id }.into(),
            },
            OrganizationCommand::StartSubscription { subscription_id } => match self.live_subscription {
                Some(live) => return Err(E::LiveSubscriptionExists(live)),
                None => SubscriptionStarted { subscription_id }.into(),
            },
            OrganizationCommand::EndSubscription { subscription_id } => match self.live_subscription {
                Some(live) if live == subscription_id => SubscriptionEnded { subscription_id }.into(),
                _ => return Err(E::NotTheLiveSubscription(subscription_id)),
            },
        };
        Ok(vec![event])
    }
}

fn text(field: &'static str, value: String) -> Result<String, OrganizationError> {
    let value = value.trim().to_owned();
    if value.is_empty() || value.chars().count() > NAME_CHARS_MAX || value.chars().any(char::is_control) {
        return Err(OrganizationError::InvalidText { field });
    }
    Ok(value)
}

/// E-mail addresses compare case-insensitively; they are stored lowercased.
/// The check is deliberately simple (one `@`, something on each side, a dot
/// in the domain): delivery is what proves an address.
pub(crate) fn normalize_email(email: &str) -> Result<String, OrganizationError> {
    let email = email.trim().to_lowercase();
    let valid = email.chars().count() <= NAME_CHARS_MAX
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            }
            None => false,
        };
    if valid { Ok(email) } else { Err(OrganizationError::InvalidEmail(email)) }
}

impl cqrs_es::Aggregate for Organization {
    const TYPE: &'static str = "organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = OrganizationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OrganizationEvent::OrganizationCreated(e) => {
                self.id = Some(e.id);
                self.name = e.name;
            }
            OrganizationEvent::UserAdded(e) => {
                self.users.insert(e.user_id, User { email: e.email, role: Some(e.role), active: true });
            }
            OrganizationEvent::UserDeactivated(e) => {
                if let Some(user) = self.users.get_mut(&e.user_id) {
                    user.active = false;
                }
            }
            OrganizationEvent::UserRoleChanged(e) => {
                if let Some(user) = self.users.get_mut(&e.user_id) {
                    user.role = Some(e.role);
                }
            }
            OrganizationEvent::ApiTokenIssued(e) => {
                self.tokens.insert(e.token_id, Token { role: e.role, revoked: false, expires_at: e.expires_at });
            }
            OrganizationEvent::ApiTokenRevoked(e) => {
                if let Some(token) = self.tokens.get_mut(&e.token_id) {
                    token.revoked = true;
                }
            }
            OrganizationEvent::SubscriptionStarted(e) => self.live_subscription = Some(e.subscription_id),
            OrganizationEvent::SubscriptionEnded(_) => self.live_subscription = None,
            // The aggregate keeps no hashes: the read models do.
            OrganizationEvent::ApiTokenRehashed(_) => {}
        }
    }
}

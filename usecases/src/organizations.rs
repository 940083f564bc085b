//! Organizations, their users and API tokens (docs/API.md, "Commands").
//!
//! Creating an organization is the operator's; an organization's own
//! admin manages its users and tokens.

use domain::event::LedgerEvent;
use domain::keys::{api_token, api_token_hash};
use domain::organization::{Organization, OrganizationCommand, OrganizationEvent, Role};
use domain::staff::StaffPermission;
use domain::{OrganizationId, Timestamp, TokenId, UserId};
use uuid::Uuid;

use crate::command::{Appended, Context, execute, load};
use crate::views::SequenceResponse;
use crate::views::organizations::{AddUserResponse, CreateOrganizationResponse, IssueTokenResponse};
use crate::{Caller, Error, Ledger, Need};

/// A new organization, as the operator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrganizationInput {
    pub name: String,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub employee_count: Option<u32>,
}

/// A new user of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddUserInput {
    pub email: String,
    pub role: Role,
}

/// A new API token of an organization: its role and when it stops working
/// (by the system clock; `None` never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueTokenInput {
    pub role: Role,
    pub expires_at: Option<Timestamp>,
}

/// A role as the API writes it.
pub fn parse_role(text: &str) -> Result<Role, Error> {
    Role::parse(text).ok_or_else(|| Error::Validation(format!("unknown role {text:?}: admin, analyst or viewer")))
}

/// Creates an organization (the operator's).
pub async fn create_organization(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    input: CreateOrganizationInput,
) -> Result<CreateOrganizationResponse, Error> {
    caller.require(StaffPermission::Operate)?;
    let appended = execute(ledger, context, || async {
        let id = OrganizationId(Uuid::now_v7());
        let mut org = load::<Organization>(ledger, id.stream()).await?;
        let create = OrganizationCommand::Create {
            id,
            name: input.name.clone(),
            domain: input.domain.clone(),
            industry: input.industry.clone(),
            employee_count: input.employee_count,
        };
        org.decide(create, &()).await?;
        Ok(vec![org.into_command(context, ledger.now())])
    })
    .await?;
    let id = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::OrganizationCreated(c)) => Some(c.id),
        _ => None,
    })?;
    Ok(CreateOrganizationResponse { id: id.0, sequence: appended.sequence })
}

/// Adds a user, within the seats of the organization's live subscription
/// (`seat_limit_reached` when they are taken).
pub async fn add_user(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    input: AddUserInput,
) -> Result<AddUserResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let appended = execute(ledger, context, || async {
        let seat_limit = ledger.seat_limit(organization_id).await?;
        let mut org = load::<Organization>(ledger, organization_id.stream()).await?;
        let add = OrganizationCommand::AddUser {
            user_id: UserId(Uuid::now_v7()),
            email: input.email.clone(),
            role: input.role,
            seat_limit,
        };
        org.decide(add, &()).await?;
        Ok(vec![org.into_command(context, ledger.now())])
    })
    .await?;
    let id = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::UserAdded(u)) => Some(u.user_id),
        _ => None,
    })?;
    Ok(AddUserResponse { id: id.0, sequence: appended.sequence })
}

/// Deactivates a user, freeing a seat.
pub async fn deactivate_user(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    user_id: UserId,
) -> Result<SequenceResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let command = || OrganizationCommand::DeactivateUser { user_id };
    let appended = on_organization(ledger, context, organization_id, command).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// Changes an active user's role (an admin's); the organization's last
/// active admin keeps the admin role.
pub async fn change_role(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    user_id: UserId,
    role: Role,
) -> Result<SequenceResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let command = || OrganizationCommand::ChangeRole { user_id, role };
    let appended = on_organization(ledger, context, organization_id, command).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// Issues an API token for a role. The token is derived from the server's
/// secret and the token's id, so it is shown again to a retry and never
/// stored; only its keyed hash is.
pub async fn issue_token(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    input: IssueTokenInput,
) -> Result<IssueTokenResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    // Expiry is a transport check on the system clock (API.md), so its
    // bounds are too.
    let now = domain::Clock::now(&store::SystemClock);
    let secret = &ledger.keys.secret;
    let command = || {
        let token_id = TokenId(Uuid::now_v7());
        let token_hash = api_token_hash(secret, &api_token(secret, token_id));
        OrganizationCommand::IssueToken { token_id, role: input.role, token_hash, expires_at: input.expires_at, now }
    };
    let appended = on_organization(ledger, context, organization_id, command).await?;
    let (token_id, expires_at) = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::ApiTokenIssued(t)) => Some((t.token_id, t.expires_at)),
        _ => None,
    })?;
    Ok(IssueTokenResponse {
        token_id: token_id.0,
        token: api_token(secret, token_id),
        expires_at: expires_at.map(Timestamp::to_rfc3339),
        sequence: appended.sequence,
    })
}

/// Revokes an API token; it is refused from then on.
pub async fn revoke_token(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    token_id: TokenId,
) -> Result<SequenceResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let command = || OrganizationCommand::RevokeToken { token_id };
    let appended = on_organization(ledger, context, organization_id, command).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// Decides one command on an organization and appends it.
async fn on_organization(
    ledger: &Ledger,
    context: &Context,
    organization_id: OrganizationId,
    command: impl Fn() -> OrganizationCommand,
) -> Result<Appended, Error> {
    execute(ledger, context, || async {
        let mut org = load::<Organization>(ledger, organization_id.stream()).await?;
        org.decide(command(), &()).await?;
        Ok(vec![org.into_command(context, ledger.now())])
    })
    .await
}

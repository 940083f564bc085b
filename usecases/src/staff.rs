//! The vendor's staff users and service tokens (issue 15 part 1): staff
//! admins manage them ([`StaffPermission::ManageStaff`]).

use domain::event::LedgerEvent;
use domain::staff::{
    SERVICE_TOKEN_LIFETIME_MICROS_MAX, ServiceTokenId, StaffCommand, StaffDirectory, StaffError, StaffEvent, StaffId,
    StaffPermission, StaffRole, service_token, service_token_hash,
};
use domain::{Clock, Timestamp};
use projections::models::staff;
use uuid::Uuid;

use crate::command::{Appended, Context, execute, load};
use crate::views::SequenceResponse;
use crate::views::staff::{
    AddStaffResponse, IssueServiceTokenResponse, ServiceTokenList, ServiceTokenView, StaffList, StaffView,
};
use crate::{Caller, Error, Ledger};

/// The longest a service token may be issued for, in days (366: a year
/// and a day, [`SERVICE_TOKEN_LIFETIME_MICROS_MAX`]).
pub const SERVICE_TOKEN_DAYS_MAX: u32 = (SERVICE_TOKEN_LIFETIME_MICROS_MAX / (24 * 3600 * 1_000_000)) as u32;

/// A new staff user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddStaffInput {
    pub name: String,
    pub email: String,
    pub role: StaffRole,
}

/// A change to a staff user: a new role, or disabling them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffChange {
    Role(StaffRole),
    Disable,
}

/// A new service token: its name, role and lifetime in days (1 to
/// [`SERVICE_TOKEN_DAYS_MAX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueServiceTokenInput {
    pub name: String,
    pub role: StaffRole,
    pub expires_in_days: u32,
}

/// A role as the API writes it.
pub fn parse_staff_role(text: &str) -> Result<StaffRole, Error> {
    StaffRole::parse(text)
        .ok_or_else(|| Error::Validation(format!("unknown role {text:?}: staff_admin, billing, support or auditor")))
}

/// The limit a refused role change names (`429`, `Retry-After` the next
/// UTC day).
pub const STAFF_ROLE_CHANGES_PER_DAY: &str = "staff_role_changes_per_day";

/// A staff directory refusal as the API answers it; `now` is the system
/// clock's (a day's role changes are refused until the next UTC day).
fn refused(error: StaffError, now: Timestamp) -> Error {
    use StaffError as E;
    let code = match &error {
        E::TooManyRoleChanges => {
            let day_micros = 24 * 3600 * 1_000_000;
            let left = day_micros - now.as_micros().rem_euclid(day_micros);
            let retry_after_seconds = u64::try_from(left / 1_000_000 + 1).unwrap_or(1);
            return Error::RateLimited {
                limit: STAFF_ROLE_CHANGES_PER_DAY,
                retry_after_seconds,
                message: error.to_string(),
            };
        }
        E::InvalidName | E::InvalidEmail(_) | E::InvalidExpiry => return Error::Validation(error.to_string()),
        E::UserNotFound | E::TokenNotFound => return Error::NotFound,
        E::DuplicateEmail(_) => "duplicate_email",
        E::TooManyUsers | E::TooManyTokens | E::TooManyAliveTokens => "limit_reached",
        E::UserDisabled => "staff_disabled",
        E::RoleUnchanged => "role_unchanged",
        E::IdInUse => "id_in_use",
        E::TokenAlreadyRevoked => "already_revoked",
    };
    Error::Conflict { code, message: error.to_string() }
}

/// Decides one command on the staff directory and appends it.
async fn on_directory(
    ledger: &Ledger,
    context: &Context,
    command: impl Fn() -> StaffCommand,
) -> Result<Appended, Error> {
    execute(ledger, context, || async {
        let mut directory = load::<StaffDirectory>(ledger, domain::staff::stream()).await?;
        let now = Clock::now(&store::SystemClock);
        directory.decide(command(), &()).await.map_err(|error| refused(error, now))?;
        Ok(vec![directory.into_command(context, ledger.now())])
    })
    .await
}

/// Adds a staff user (a staff admin's, or `ledger staff add`'s).
pub async fn add_staff(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    input: AddStaffInput,
) -> Result<AddStaffResponse, Error> {
    caller.require(StaffPermission::ManageStaff)?;
    let command = || StaffCommand::AddUser {
        staff_id: StaffId(Uuid::now_v7()),
        name: input.name.clone(),
        email: input.email.clone(),
        role: input.role,
    };
    let appended = on_directory(ledger, context, command).await?;
    let id = appended.find(|e| match e {
        LedgerEvent::Staff(StaffEvent::StaffUserAdded(added)) => Some(added.staff_id),
        _ => None,
    })?;
    Ok(AddStaffResponse { id: id.0, sequence: appended.sequence })
}

/// Changes a staff user's role, or disables them (their console sessions
/// end with it).
pub async fn change_staff(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    staff_id: StaffId,
    change: StaffChange,
) -> Result<SequenceResponse, Error> {
    caller.require(StaffPermission::ManageStaff)?;
    // The system clock's day: the test clock is the operator's to move.
    let now = Clock::now(&store::SystemClock);
    let command = || match change {
        StaffChange::Role(role) => StaffCommand::ChangeRole { staff_id, role, now },
        StaffChange::Disable => StaffCommand::Disable { staff_id },
    };
    let appended = on_directory(ledger, context, command).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// Every staff user.
pub async fn list_staff(ledger: &Ledger, caller: &Caller) -> Result<StaffList, Error> {
    caller.require(StaffPermission::ManageStaff)?;
    let rows = staff::staff_users(&ledger.models.db).await?;
    let items = rows
        .into_iter()
        .map(|row| StaffView {
            id: row.staff_id.0,
            name: row.name,
            email: row.email,
            role: row.role.as_str().into(),
            active: row.active,
            added_at: row.added_at.to_rfc3339(),
        })
        .collect();
    Ok(StaffList { items })
}

/// Issues a service token. The token is derived from the server's secret
/// and the token's id, so it is shown again to a retry and never stored;
/// only its keyed hash is. Its expiry is on the system clock.
pub async fn issue_service_token(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    input: IssueServiceTokenInput,
) -> Result<IssueServiceTokenResponse, Error> {
    caller.require(StaffPermission::ManageStaff)?;
    if input.expires_in_days == 0 || input.expires_in_days > SERVICE_TOKEN_DAYS_MAX {
        return Err(Error::Validation(format!("expiresInDays: 1 to {SERVICE_TOKEN_DAYS_MAX}")));
    }
    let now = Clock::now(&store::SystemClock);
    let expires_at = Timestamp::from_micros(now.as_micros() + i64::from(input.expires_in_days) * 24 * 3600 * 1_000_000);
    let secret = &ledger.keys.secret;
    let command = || {
        let token_id = ServiceTokenId(Uuid::now_v7());
        let token_hash = service_token_hash(secret, &service_token(secret, token_id));
        StaffCommand::IssueToken { token_id, name: input.name.clone(), role: input.role, token_hash, expires_at, now }
    };
    let appended = on_directory(ledger, context, command).await?;
    let (token_id, expires_at) = appended.find(|e| match e {
        LedgerEvent::Staff(StaffEvent::ServiceTokenIssued(t)) => Some((t.token_id, t.expires_at)),
        _ => None,
    })?;
    Ok(IssueServiceTokenResponse {
        token_id: token_id.0,
        token: service_token(secret, token_id),
        expires_at: expires_at.to_rfc3339(),
        sequence: appended.sequence,
    })
}

/// Every service token, without the tokens.
pub async fn list_service_tokens(ledger: &Ledger, caller: &Caller) -> Result<ServiceTokenList, Error> {
    caller.require(StaffPermission::ManageStaff)?;
    let rows = staff::service_tokens(&ledger.models.db).await?;
    let items = rows
        .into_iter()
        .map(|row| ServiceTokenView {
            id: row.token_id.0,
            name: row.name,
            role: row.role.as_str().into(),
            revoked: row.revoked,
            expires_at: row.expires_at.to_rfc3339(),
            issued_at: row.issued_at.to_rfc3339(),
        })
        .collect();
    Ok(ServiceTokenList { items })
}

/// Revokes a service token: refused from then on, on every node.
pub async fn revoke_service_token(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    token_id: ServiceTokenId,
) -> Result<SequenceResponse, Error> {
    caller.require(StaffPermission::ManageStaff)?;
    let appended = on_directory(ledger, context, || StaffCommand::RevokeToken { token_id }).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

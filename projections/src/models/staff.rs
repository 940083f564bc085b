//! The vendor's staff ("staff-v1", issue 15): each staff user and service
//! token from the `staff/directory` stream, one row each. Authentication
//! reads a service token's row (its keyed hash, role, expiry and
//! revocation) on every request, so a revocation answered by one node is
//! refused by every node once its tables include it, as org tokens are.
//! The console reads a staff user's row (by id, or active by e-mail).

use domain::Timestamp;
use domain::event::LedgerEvent;
use domain::record::{Hash, Record};
use domain::staff::{SERVICE_TOKENS_MAX, STAFF_USERS_MAX, ServiceTokenId, StaffEvent, StaffId, StaffRole};
use serde::{Deserialize, Serialize};

use super::{decoded, encoded};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table};

pub const STAFF: Table = Table::new(
    "rm_staff",
    &[Column::blob("staff_id"), Column::text("email"), Column::bool("active"), Column::blob("staff")],
    1,
);
pub const SERVICE_TOKENS: Table =
    Table::new("rm_service_tokens", &[Column::blob("token_id"), Column::blob("token")], 1);

/// The projection's name (its checkpoint's).
pub const NAME: &str = "staff-v1";

/// A staff user as the read model keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRow {
    pub staff_id: StaffId,
    pub name: String,
    pub email: String,
    pub role: StaffRole,
    pub active: bool,
    pub added_at: Timestamp,
}

/// A service token as the read model keeps it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTokenRow {
    pub token_id: ServiceTokenId,
    pub name: String,
    pub role: StaffRole,
    pub token_hash: Hash,
    pub revoked: bool,
    pub expires_at: Timestamp,
    pub issued_at: Timestamp,
}

/// Keeps [`STAFF`] and [`SERVICE_TOKENS`].
pub struct Staff;

impl Projection for Staff {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [Table] {
        &[STAFF, SERVICE_TOKENS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let Some(LedgerEvent::Staff(event)) = event else { return Ok(()) };
        let at = record.header.recorded_at;
        match event {
            StaffEvent::StaffUserAdded(e) => {
                let row = StaffRow {
                    staff_id: e.staff_id,
                    name: e.name.clone(),
                    email: e.email.clone(),
                    role: e.role,
                    active: true,
                    added_at: at,
                };
                write_staff(changes, &row)?;
            }
            StaffEvent::StaffRoleChanged(e) => update_staff(changes, e.staff_id, |row| row.role = e.role)?,
            StaffEvent::StaffUserDisabled(e) => update_staff(changes, e.staff_id, |row| row.active = false)?,
            StaffEvent::ServiceTokenIssued(e) => {
                let row = ServiceTokenRow {
                    token_id: e.token_id,
                    name: e.name.clone(),
                    role: e.role,
                    token_hash: e.token_hash,
                    revoked: false,
                    expires_at: e.expires_at,
                    issued_at: at,
                };
                changes.upsert(&SERVICE_TOKENS, vec![e.token_id.0.into(), encoded(&row)])?;
            }
            StaffEvent::ServiceTokenRevoked(e) => {
                if let Some(row) = changes.get(&SERVICE_TOKENS, &[e.token_id.0.into()])? {
                    let mut token: ServiceTokenRow = decoded(&row, 1)?;
                    token.revoked = true;
                    changes.upsert(&SERVICE_TOKENS, vec![e.token_id.0.into(), encoded(&token)])?;
                }
            }
            StaffEvent::ServiceTokenRehashed(e) => {
                if let Some(row) = changes.get(&SERVICE_TOKENS, &[e.token_id.0.into()])? {
                    let mut token: ServiceTokenRow = decoded(&row, 1)?;
                    token.token_hash = e.token_hash;
                    changes.upsert(&SERVICE_TOKENS, vec![e.token_id.0.into(), encoded(&token)])?;
                }
            }
        }
        Ok(())
    }
}

fn write_staff(changes: &mut Changes<'_>, row: &StaffRow) -> Result<(), DbError> {
    changes.upsert(&STAFF, vec![row.staff_id.0.into(), row.email.as_str().into(), row.active.into(), encoded(row)])
}

fn update_staff(
    changes: &mut Changes<'_>,
    staff_id: StaffId,
    change: impl FnOnce(&mut StaffRow),
) -> Result<(), DbError> {
    if let Some(row) = changes.get(&STAFF, &[staff_id.0.into()])? {
        let mut staff: StaffRow = decoded(&row, 3)?;
        change(&mut staff);
        write_staff(changes, &staff)?;
    }
    Ok(())
}

/// One staff user.
pub async fn staff_user(db: &ReadModelDb, staff_id: StaffId) -> Result<Option<StaffRow>, DbError> {
    let row = db.query_opt("SELECT staff FROM rm_staff WHERE staff_id = $1", vec![staff_id.0.into()]).await?;
    row.map(|row| decoded(&row, 0)).transpose()
}

/// The active staff user with this (lower-case) e-mail address, if any.
pub async fn active_by_email(db: &ReadModelDb, email: &str) -> Result<Option<StaffRow>, DbError> {
    let sql = "SELECT staff FROM rm_staff WHERE email = $1 AND active = $2 ORDER BY staff_id LIMIT 1";
    let rows = db.query(sql, vec![email.into(), true.into()]).await?;
    rows.first().map(|row| decoded(row, 0)).transpose()
}

/// A staff user (active or disabled) with this (lower-case) e-mail
/// address, if any: the active one first.
pub async fn any_by_email(db: &ReadModelDb, email: &str) -> Result<Option<StaffRow>, DbError> {
    let sql = "SELECT staff FROM rm_staff WHERE email = $1 ORDER BY active DESC, staff_id LIMIT 1";
    let rows = db.query(sql, vec![email.into()]).await?;
    rows.first().map(|row| decoded(row, 0)).transpose()
}

/// Every staff user, oldest first (at most [`STAFF_USERS_MAX`]).
pub async fn staff_users(db: &ReadModelDb) -> Result<Vec<StaffRow>, DbError> {
    let sql = format!("SELECT staff FROM rm_staff ORDER BY staff_id LIMIT {STAFF_USERS_MAX}");
    db.query(&sql, vec![]).await?.iter().map(|row| decoded(row, 0)).collect()
}

/// One service token.
pub async fn service_token(db: &ReadModelDb, token_id: ServiceTokenId) -> Result<Option<ServiceTokenRow>, DbError> {
    let row = db.query_opt("SELECT token FROM rm_service_tokens WHERE token_id = $1", vec![token_id.0.into()]).await?;
    row.map(|row| decoded(&row, 0)).transpose()
}

/// Every service token, oldest first (at most [`SERVICE_TOKENS_MAX`]).
pub async fn service_tokens(db: &ReadModelDb) -> Result<Vec<ServiceTokenRow>, DbError> {
    let sql = format!("SELECT token FROM rm_service_tokens ORDER BY token_id LIMIT {SERVICE_TOKENS_MAX}");
    db.query(&sql, vec![]).await?.iter().map(|row| decoded(row, 0)).collect()
}

//! Organizations, their users (seats) and API tokens.
//!
//! The organization row keeps its creation details and its aggregate state
//! (`domain::organization::Organization`, applied by its own `apply`), plus
//! the columns queries filter by; users and tokens are rows of their own,
//! tokens indexed by their keyed hash.

use cqrs_es::Aggregate;
use domain::event::LedgerEvent;
use domain::organization::{Organization, OrganizationCreated, OrganizationEvent, Role};
use domain::record::{Hash, Record};
use domain::{OrganizationId, SubscriptionId, Timestamp, TokenId, UserId};

use super::{decoded, encoded, limit_param, micros, opt_uuid, page_limit, stream_uuid, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Row, Table, Value};

pub const ORGANIZATIONS: Table = Table::new(
    "rm_organizations",
    &[
        Column::blob("id"),
        Column::text("name"),
        Column::int("created_at"),
        Column::int("active_users"),
        Column::blob("live_subscription").nullable(),
        Column::blob("created"),
        Column::blob("state"),
    ],
    1,
);
pub const USERS: Table = Table::new(
    "rm_users",
    &[
        Column::blob("organization_id"),
        Column::blob("user_id"),
        Column::text("email"),
        Column::text("role").nullable(),
        Column::bool("active"),
    ],
    2,
);
pub const TOKENS: Table = Table::new(
    "rm_tokens",
    &[
        Column::blob("token_id"),
        Column::blob("organization_id"),
        Column::text("role"),
        Column::blob("token_hash"),
        Column::bool("revoked"),
        Column::int("expires_at").nullable(),
    ],
    1,
);

/// Keeps [`ORGANIZATIONS`], [`USERS`] and [`TOKENS`].
pub struct Organizations;

impl Projection for Organizations {
    fn name(&self) -> &'static str {
        "organizations-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[ORGANIZATIONS, USERS, TOKENS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let (Some(LedgerEvent::Organization(event)), Some(id)) = (event, stream_uuid(record, "org")) else {
            return Ok(());
        };
        let id = OrganizationId(id);
        let entry = match event {
            OrganizationEvent::OrganizationCreated(created) => {
                Some((created.clone(), record.header.recorded_at, Organization::default()))
            }
            OrganizationEvent::ApiTokenIssued(issued) => {
                let token = TokenRow {
                    token_id: issued.token_id,
                    organization_id: id,
                    role: issued.role,
                    token_hash: issued.token_hash,
                    revoked: false,
                    expires_at: issued.expires_at,
                };
                changes.upsert(&TOKENS, token.values())?;
                load(changes, id)?
            }
            OrganizationEvent::ApiTokenRehashed(rehashed) => {
                if let Some(row) = changes.get(&TOKENS, &[rehashed.token_id.0.into()])? {
                    let mut token = TokenRow::decode(&row)?;
                    token.token_hash = rehashed.token_hash;
                    changes.upsert(&TOKENS, token.values())?;
                }
                load(changes, id)?
            }
            OrganizationEvent::ApiTokenRevoked(revoked) => {
                if let Some(row) = changes.get(&TOKENS, &[revoked.token_id.0.into()])? {
                    let mut token = TokenRow::decode(&row)?;
                    token.revoked = true;
                    changes.upsert(&TOKENS, token.values())?;
                }
                load(changes, id)?
            }
            _ => load(changes, id)?,
        };
        // As `LedgerState`: events of an organization never created change
        // nothing but its tokens.
        let Some((created, created_at, mut state)) = entry else { return Ok(()) };
        state.apply(event.clone());
        let user = match event {
            OrganizationEvent::UserAdded(e) => Some(e.user_id),
            OrganizationEvent::UserDeactivated(e) => Some(e.user_id),
            OrganizationEvent::UserRoleChanged(e) => Some(e.user_id),
            _ => None,
        };
        if let Some(user_id) = user {
            write_user(changes, id, user_id, &state)?;
        }
        changes.upsert(
            &ORGANIZATIONS,
            vec![
                id.0.into(),
                created.name.as_str().into(),
                micros(created_at),
                Value::Int(state.active_users().into()),
                state.live_subscription.map(|s| s.0).into(),
                encoded(&created),
                encoded(&state),
            ],
        )?;
        Ok(())
    }
}

fn load(
    changes: &mut Changes<'_>,
    id: OrganizationId,
) -> Result<Option<(OrganizationCreated, Timestamp, Organization)>, DbError> {
    changes
        .get(&ORGANIZATIONS, &[id.0.into()])?
        .map(|row| Ok((decoded(&row, 5)?, Timestamp::from_micros(row.int(2)?), decoded(&row, 6)?)))
        .transpose()
}

fn write_user(
    changes: &mut Changes<'_>,
    id: OrganizationId,
    user_id: UserId,
    state: &Organization,
) -> Result<(), DbError> {
    match state.users.get(&user_id) {
        Some(user) => changes.upsert(
            &USERS,
            vec![
                id.0.into(),
                user_id.0.into(),
                user.email.as_str().into(),
                user.role.map(Role::as_str).into(),
                user.active.into(),
            ],
        ),
        None => changes.delete(&USERS, vec![id.0.into(), user_id.0.into()]),
    }
}

/// An organization as queries need it: `LedgerState`'s `OrganizationEntry`
/// without the lists (see [`super::subscriptions::of_organization`] and
/// [`super::licenses::of_organization`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationRow {
    pub id: OrganizationId,
    pub created: OrganizationCreated,
    pub created_at: Timestamp,
    pub state: Organization,
}

impl OrganizationRow {
    fn decode(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: OrganizationId(uuid(row, 0)?),
            created_at: Timestamp::from_micros(row.int(1)?),
            created: decoded(row, 2)?,
            state: decoded(row, 3)?,
        })
    }

    /// The live subscription, as the aggregate knows it.
    pub fn live_subscription(&self) -> Option<SubscriptionId> {
        self.state.live_subscription
    }
}

const ORGANIZATION_COLUMNS: &str = "id, created_at, created, state";

/// One organization.
pub async fn organization(db: &ReadModelDb, id: OrganizationId) -> Result<Option<OrganizationRow>, DbError> {
    let sql = format!("SELECT {ORGANIZATION_COLUMNS} FROM rm_organizations WHERE id = $1");
    db.query_opt(&sql, vec![id.0.into()]).await?.as_ref().map(OrganizationRow::decode).transpose()
}

/// Whether an organization exists.
pub async fn exists(db: &ReadModelDb, id: OrganizationId) -> Result<bool, DbError> {
    Ok(db.query_opt("SELECT 1 FROM rm_organizations WHERE id = $1", vec![id.0.into()]).await?.is_some())
}

/// Organizations in id order after `after`: at most `size` (capped at
/// [`super::PAGE_ITEMS_MAX`]) and the cursor of the next page, if any.
pub async fn page(
    db: &ReadModelDb,
    after: Option<OrganizationId>,
    size: usize,
) -> Result<(Vec<OrganizationRow>, Option<OrganizationId>), DbError> {
    let size = page_limit(size);
    let rows = match after {
        Some(after) => {
            let sql = format!("SELECT {ORGANIZATION_COLUMNS} FROM rm_organizations WHERE id > $1 ORDER BY id LIMIT $2");
            db.query(&sql, vec![after.0.into(), limit_param(size + 1)]).await?
        }
        None => {
            let sql = format!("SELECT {ORGANIZATION_COLUMNS} FROM rm_organizations ORDER BY id LIMIT $1");
            db.query(&sql, vec![limit_param(size + 1)]).await?
        }
    };
    let mut items = rows.iter().map(OrganizationRow::decode).collect::<Result<Vec<_>, _>>()?;
    let next = (items.len() > size).then(|| items[size - 1].id);
    items.truncate(size);
    Ok((items, next))
}

/// An organization's name (the validation answer's), without its state.
pub async fn name(db: &ReadModelDb, id: OrganizationId) -> Result<Option<String>, DbError> {
    let row = db.query_opt("SELECT name FROM rm_organizations WHERE id = $1", vec![id.0.into()]).await?;
    row.map(|row| row.text(0).map(str::to_owned)).transpose()
}

/// One user (seat) of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub user_id: UserId,
    pub email: String,
    pub role: Option<Role>,
    pub active: bool,
}

/// An organization's users in id order after `after`, at most `size`
/// (capped at [`super::PAGE_ITEMS_MAX`]).
pub async fn users(
    db: &ReadModelDb,
    organization_id: OrganizationId,
    after: Option<UserId>,
    size: usize,
) -> Result<Vec<UserRow>, DbError> {
    let after = after.map_or_else(|| vec![0u8; 0], |u| u.0.as_bytes().to_vec());
    let rows = db
        .query(
            "SELECT user_id, email, role, active FROM rm_users WHERE organization_id = $1 AND user_id > $2 \
             ORDER BY user_id LIMIT $3",
            vec![organization_id.0.into(), after.into(), limit_param(page_limit(size))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(UserRow {
                user_id: UserId(uuid(row, 0)?),
                email: row.text(1)?.to_owned(),
                role: row.opt_text(2)?.and_then(Role::parse),
                active: row.bool(3)?,
            })
        })
        .collect()
}

/// An API token: `LedgerState`'s `TokenEntry` and its expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub token_id: TokenId,
    pub organization_id: OrganizationId,
    pub role: Role,
    pub token_hash: Hash,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
}

impl TokenRow {
    fn values(&self) -> Vec<Value> {
        vec![
            self.token_id.0.into(),
            self.organization_id.0.into(),
            self.role.as_str().into(),
            self.token_hash.into(),
            self.revoked.into(),
            self.expires_at.map(Timestamp::as_micros).into(),
        ]
    }

    fn decode(row: &Row) -> Result<Self, DbError> {
        let role = row.text(2)?;
        Ok(Self {
            token_id: TokenId(uuid(row, 0)?),
            organization_id: OrganizationId(uuid(row, 1)?),
            role: Role::parse(role).ok_or_else(|| DbError::Decode(format!("{role:?} is not a role")))?,
            token_hash: row.hash(3)?,
            revoked: row.bool(4)?,
            expires_at: row.opt_int(5)?.map(Timestamp::from_micros),
        })
    }
}

const TOKEN_COLUMNS: &str = "token_id, organization_id, role, token_hash, revoked, expires_at";

/// A token by id (what a presented token names).
pub async fn token(db: &ReadModelDb, token_id: TokenId) -> Result<Option<TokenRow>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM rm_tokens WHERE token_id = $1");
    db.query_opt(&sql, vec![token_id.0.into()]).await?.as_ref().map(TokenRow::decode).transpose()
}

/// A token by its keyed hash (indexed).
pub async fn token_by_hash(db: &ReadModelDb, token_hash: Hash) -> Result<Option<TokenRow>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM rm_tokens WHERE token_hash = $1 ORDER BY token_id LIMIT 1");
    db.query(&sql, vec![token_hash.into()]).await?.first().map(TokenRow::decode).transpose()
}

/// The live subscription an organization's aggregate names, without
/// decoding its state.
pub async fn live_subscription(db: &ReadModelDb, id: OrganizationId) -> Result<Option<SubscriptionId>, DbError> {
    let row = db.query_opt("SELECT live_subscription FROM rm_organizations WHERE id = $1", vec![id.0.into()]).await?;
    Ok(row.map(|row| opt_uuid(&row, 0)).transpose()?.flatten().map(SubscriptionId))
}

/// Organizations one e-mail address may sign in to, at most (one e-mail
/// lists a link per organization; an address in more gets the first ones).
pub const ORGANIZATIONS_PER_EMAIL_MAX: usize = 20;

/// The active users with this e-mail address, in any organization, by
/// the `rm_users_by_email` index: at most [`ORGANIZATIONS_PER_EMAIL_MAX`].
pub async fn active_users_by_email(db: &ReadModelDb, email: &str) -> Result<Vec<(OrganizationId, UserRow)>, DbError> {
    let rows = db
        .query(
            "SELECT organization_id, user_id, email, role, active FROM rm_users WHERE email = $1 AND active \
             ORDER BY organization_id LIMIT $2",
            vec![email.to_owned().into(), limit_param(ORGANIZATIONS_PER_EMAIL_MAX)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let user = UserRow {
                user_id: UserId(uuid(row, 1)?),
                email: row.text(2)?.to_owned(),
                role: row.opt_text(3)?.and_then(Role::parse),
                active: row.bool(4)?,
            };
            Ok((OrganizationId(uuid(row, 0)?), user))
        })
        .collect()
}

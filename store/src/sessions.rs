//! The customer portal's session records (issue 14), in the log's own
//! database (SQLite file or PostgreSQL), so every node sees the same
//! sessions and a sign-out or revocation takes effect on all of them at
//! once. Plain rows beside the log, not events: a session is a credential
//! cache that ends, not history (the sign-in and its end are events).
//!
//! Only the keyed hash of the cookie value is stored; the hashing is the
//! caller's (`domain::signin::session_hash`).

use uuid::Uuid;

use crate::{EventLog, Reader, StoreError};
use domain::Timestamp;
use domain::record::Hash;

/// Sessions listed for one user, at most (the newest first); a user with
/// more sees the newest and may revoke from there.
pub const SESSIONS_LISTED_MAX: i64 = 50;
/// SQLite connections the sessions may hold open.
const SQLITE_CONNECTIONS_MAX: u32 = 2;

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: Uuid,
    pub token_hash: Hash,
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub created_at: Timestamp,
    pub last_seen: Timestamp,
    /// The absolute expiry, fixed at sign-in.
    pub expires_at: Timestamp,
    pub address: String,
    pub user_agent: String,
}

/// The session table of one log's database.
#[derive(Clone)]
pub enum Sessions {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const COLUMNS: &str =
    "id, token_hash, organization_id, user_id, created_at_us, last_seen_us, expires_at_us, address, user_agent";

/// Runs one query, the same text and binds, on either pool.
macro_rules! on_pool {
    ($sessions:expr, |$pool:ident| $body:expr) => {
        match $sessions {
            Sessions::Sqlite($pool) => $body,
            Sessions::Postgres($pool) => $body,
        }
    };
}

impl EventLog {
    /// The session table of this log's database (its own small pool on SQLite).
    pub async fn sessions(&self) -> Result<Sessions, StoreError> {
        Ok(match &self.reader {
            Reader::Postgres(pool) => Sessions::Postgres(pool.clone()),
            Reader::Sqlite(readers) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(readers.path())
                    .create_if_missing(false)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(crate::sqlite::LOCK_WAIT)
                    // A deleted session's address and user agent are
                    // overwritten, not left in a free page (issue 16).
                    .pragma("secure_delete", "ON");
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(SQLITE_CONNECTIONS_MAX)
                    .connect_with(options)
                    .await?;
                Sessions::Sqlite(pool)
            }
        })
    }
}

fn row_of<R: sqlx::Row>(row: &R) -> Result<SessionRow, StoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let uuid = |index: usize| -> Result<Uuid, StoreError> {
        let text: String = row.try_get(index)?;
        text.parse().map_err(|_| StoreError::Corrupt {
            sequence: 0,
            what: format!("portal session column {index}: {text:?} is not a UUID"),
        })
    };
    let hash: Vec<u8> = row.try_get(1)?;
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| StoreError::Corrupt { sequence: 0, what: "portal session token hash is not 32 bytes".into() })?;
    Ok(SessionRow {
        id: uuid(0)?,
        token_hash: Hash(hash),
        organization_id: uuid(2)?,
        user_id: uuid(3)?,
        created_at: Timestamp::from_micros(row.try_get(4)?),
        last_seen: Timestamp::from_micros(row.try_get(5)?),
        expires_at: Timestamp::from_micros(row.try_get(6)?),
        address: row.try_get(7)?,
        user_agent: row.try_get(8)?,
    })
}

impl Sessions {
    pub async fn create(&self, row: &SessionRow) -> Result<(), StoreError> {
        let text = format!("INSERT INTO portal_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        on_pool!(self, |pool| {
            sqlx::query(&text)
                .bind(row.id.to_string())
                .bind(row.token_hash.0.to_vec())
                .bind(row.organization_id.to_string())
                .bind(row.user_id.to_string())
                .bind(row.created_at.as_micros())
                .bind(row.last_seen.as_micros())
                .bind(row.expires_at.as_micros())
                .bind(&row.address)
                .bind(&row.user_agent)
                .execute(pool)
                .await
                .map(drop)?
        });
        Ok(())
    }

    /// The session whose cookie hashes to `token_hash`, if it exists.
    pub async fn find(&self, token_hash: &Hash) -> Result<Option<SessionRow>, StoreError> {
        let text = format!("SELECT {COLUMNS} FROM portal_sessions WHERE token_hash = $1");
        on_pool!(self, |pool| {
            let row = sqlx::query(&text).bind(token_hash.0.to_vec()).fetch_optional(pool).await?;
            row.as_ref().map(row_of).transpose()
        })
    }

    /// Records that the session was used at `at` (its idle expiry restarts).
    pub async fn touch(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
        let text = "UPDATE portal_sessions SET last_seen_us = $1 WHERE id = $2";
        on_pool!(self, |pool| sqlx::query(text)
            .bind(at.as_micros())
            .bind(id.to_string())
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Ends one session of `user_id`; whether there was one.
    pub async fn delete(&self, id: Uuid, user_id: Uuid) -> Result<bool, StoreError> {
        let text = "DELETE FROM portal_sessions WHERE id = $1 AND user_id = $2";
        let done = on_pool!(self, |pool| {
            sqlx::query(text).bind(id.to_string()).bind(user_id.to_string()).execute(pool).await?.rows_affected()
        });
        Ok(done > 0)
    }

    /// Ends every session of `user_id` (a deactivated or erased user); how
    /// many. On SQLite the WAL is then checkpointed and truncated, so the
    /// rows' earlier versions (addresses, user agents) leave the `-wal` too.
    pub async fn delete_user(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let text = "DELETE FROM portal_sessions WHERE user_id = $1";
        let done =
            on_pool!(self, |pool| sqlx::query(text).bind(user_id.to_string()).execute(pool).await?.rows_affected());
        if let Sessions::Sqlite(pool) = self {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
        }
        Ok(done)
    }

    /// The user's sessions, newest first, at most [`SESSIONS_LISTED_MAX`].
    pub async fn of_user(&self, user_id: Uuid) -> Result<Vec<SessionRow>, StoreError> {
        let text = format!(
            "SELECT {COLUMNS} FROM portal_sessions WHERE user_id = $1 ORDER BY created_at_us DESC, id LIMIT $2"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&text).bind(user_id.to_string()).bind(SESSIONS_LISTED_MAX).fetch_all(pool).await?;
            rows.iter().map(row_of).collect()
        })
    }

    /// Deletes the sessions past their absolute expiry or idle since
    /// before `idle_since`; how many.
    pub async fn delete_expired(&self, now: Timestamp, idle_since: Timestamp) -> Result<u64, StoreError> {
        let text = "DELETE FROM portal_sessions WHERE expires_at_us <= $1 OR last_seen_us < $2";
        Ok(on_pool!(self, |pool| {
            sqlx::query(text).bind(now.as_micros()).bind(idle_since.as_micros()).execute(pool).await?.rows_affected()
        }))
    }
}

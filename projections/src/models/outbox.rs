//! How much the outboxes (the notification e-mails, the Stripe sync) have
//! waiting, for `/metrics`: the items pending, counted up to a cap, and the
//! log sequence of the oldest, whose record's time gives its age. Both are
//! read by index (the pending tables are keyed or indexed by sequence) and
//! the count stops at its cap, so a scrape costs the same however far
//! behind an outbox is.

use super::limit_param;
use crate::db::{DbError, ReadModelDb};

/// The most pending items a backlog counts; past it the figure stays at
/// this (an outbox that far behind is an incident whatever the exact size).
pub const BACKLOG_ITEMS_MAX: usize = 100_000;

/// An outbox's pending items (at most [`BACKLOG_ITEMS_MAX`]) and the log
/// sequence of the oldest, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub items: u64,
    pub oldest_sequence: Option<u64>,
}

/// Notices decided and not yet sent or skipped.
pub async fn email(db: &ReadModelDb) -> Result<Backlog, DbError> {
    let items = count(db, "SELECT 1 FROM rm_notifications_pending").await?;
    let oldest = db.query_opt("SELECT MIN(decided_at) FROM rm_notifications_pending", vec![]).await?;
    let oldest_sequence = oldest.map(|row| row.opt_int(0)).transpose()?.flatten();
    Ok(Backlog { items, oldest_sequence: oldest_sequence.and_then(|s| u64::try_from(s).ok()) })
}

/// Invoices to send to Stripe and payment methods to make default, leaving
/// out what Stripe refused (an operator's matter, not a backlog) and
/// invoices from before the sync began.
pub async fn stripe(db: &ReadModelDb) -> Result<Backlog, DbError> {
    const INVOICES: &str = "FROM rm_stripe_pending_invoices p \
         WHERE p.sequence >= COALESCE((SELECT from_sequence FROM rm_stripe_sync WHERE id = 1), 0) \
         AND NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target)";
    let invoices = count(db, &format!("SELECT 1 {INVOICES}")).await?;
    let methods = count(
        db,
        "SELECT 1 FROM rm_stripe_pending_payment_methods p \
         WHERE NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target)",
    )
    .await?;
    let oldest = db.query_opt(&format!("SELECT MIN(p.sequence) {INVOICES}"), vec![]).await?;
    let oldest_sequence = oldest.map(|row| row.opt_int(0)).transpose()?.flatten();
    Ok(Backlog {
        items: (invoices + methods).min(BACKLOG_ITEMS_MAX as u64),
        oldest_sequence: oldest_sequence.and_then(|s| u64::try_from(s).ok()),
    })
}

/// The rows `select` yields, counted up to [`BACKLOG_ITEMS_MAX`].
async fn count(db: &ReadModelDb, select: &str) -> Result<u64, DbError> {
    let sql = format!("SELECT COUNT(*) FROM ({select} LIMIT $1) AS capped");
    let row = db.query_opt(&sql, vec![limit_param(BACKLOG_ITEMS_MAX)]).await?;
    Ok(row.map(|row| row.uint(0)).transpose()?.unwrap_or(0))
}

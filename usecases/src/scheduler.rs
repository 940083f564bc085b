//! Time-driven changes: a term's end (renewal or expiry), a cancellation
//! taking effect, a supersede window closing, a past-due subscription's
//! dunning grace ending (suspension).
//!
//! Every tick (and whenever the test clock moves) the scheduler looks in
//! the read-model tables for what is due (the live subscriptions and the
//! licenses not revoked, by index, a page at a time) and appends it through the same use
//! cases as a request would (`subscriptions`, `licenses`). Each change
//! carries an idempotency key named after the change itself
//! (`scheduler:end-term:{subscription}:{end date}`), so it is appended once,
//! however many ticks, restarts or processes see it.
//!
//! While the read models have failed (a log rolled back behind them, a
//! record this version cannot read) the scheduler decides nothing: what
//! they say is due may no longer be what the log holds.

use std::time::Duration;

use chrono::NaiveDate;
use domain::subscription::Status;
use domain::{LicenseId, Metadata, SubscriptionId, Timestamp};

use crate::command::{Context, request_digest};
use domain::subscription::Subscription;
use projections::models::{licenses, subscriptions};

use crate::{Error, Ledger};

/// How often the scheduler looks for due changes.
pub const TICK: Duration = Duration::from_secs(1);
/// Changes handled per tick, at most; the rest wait for the next.
pub const CHANGES_PER_TICK_MAX: usize = 500;
/// Live subscriptions (or licenses) read per page.
const PAGE_ITEMS: usize = projections::models::PAGE_ITEMS_MAX;
/// The most pages of each one tick reads: ten million live subscriptions
/// (and as many licenses not revoked).
const PAGES_PER_TICK_MAX: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    EndTerm {
        subscription_id: SubscriptionId,
        end: NaiveDate,
    },
    EndCancelled {
        subscription_id: SubscriptionId,
    },
    CloseWindow {
        license_id: LicenseId,
    },
    /// The dunning grace that began at `past_due_since` is over.
    Suspend {
        subscription_id: SubscriptionId,
        past_due_since: Timestamp,
    },
}

impl Due {
    fn key(&self) -> String {
        match self {
            Due::EndTerm { subscription_id, end } => format!("scheduler:end-term:{subscription_id}:{end}"),
            Due::EndCancelled { subscription_id } => format!("scheduler:end-cancelled:{subscription_id}"),
            Due::CloseWindow { license_id } => format!("scheduler:close-window:{license_id}"),
            Due::Suspend { subscription_id, past_due_since } => {
                format!("scheduler:suspend:{subscription_id}:{}", past_due_since.as_micros())
            }
        }
    }
}

/// Runs the scheduler for ever: a tick every [`TICK`], or when woken
/// (`Ledger::scheduler`).
pub async fn run(ledger: Ledger) {
    // The retention job, once a day by the business clock (issue 16).
    let mut retention = crate::retention::Daily::default();
    loop {
        match tick(&ledger).await {
            Ok(_) => ledger.metrics.scheduler_ticked(),
            Err(error) => tracing::warn!(%error, "scheduler tick failed; trying again"),
        }
        if ledger.models.failed().is_none() {
            retention.tick(&ledger).await;
        }
        let _ = tokio::time::timeout(TICK, ledger.scheduler.notified()).await;
    }
}

/// Appends every change that is due now; answers how many. Nothing while
/// the read models have failed.
pub async fn tick(ledger: &Ledger) -> Result<usize, Error> {
    if ledger.models.failed().is_some() {
        return Ok(0);
    }
    let due = due(ledger).await?;
    for change in &due {
        apply(ledger, change).await?;
    }
    Ok(due.len())
}

/// What is due now, at most [`CHANGES_PER_TICK_MAX`]: from the live
/// subscriptions (a term's end, a cancellation taking effect, a dunning
/// grace over) and the supersede windows that have ended, read by their
/// indexes: what has ended is never read.
async fn due(ledger: &Ledger) -> Result<Vec<Due>, Error> {
    let mut due = Vec::new();
    let mut after = None;
    for _ in 0..PAGES_PER_TICK_MAX {
        let page = subscriptions::live_page(&ledger.models.db, after, PAGE_ITEMS).await?;
        let Some((_, last, _)) = page.last() else { break };
        after = Some(*last);
        let full = page.len() == PAGE_ITEMS;
        due.extend(page.iter().flat_map(|(_, id, subscription)| subscription_due(ledger, *id, subscription)));
        if !full || due.len() >= CHANGES_PER_TICK_MAX {
            break;
        }
    }
    if let Some(room) = CHANGES_PER_TICK_MAX.checked_sub(due.len()).filter(|room| *room > 0) {
        let ended = licenses::windows_ended(&ledger.models.db, ledger.now(), room.min(PAGE_ITEMS)).await?;
        due.extend(ended.into_iter().map(|license_id| Due::CloseWindow { license_id }));
    }
    due.truncate(CHANGES_PER_TICK_MAX);
    Ok(due)
}

/// What is due now for one live subscription (its organization's).
fn subscription_due(ledger: &Ledger, id: SubscriptionId, subscription: &Subscription) -> Vec<Due> {
    let (today, now) = (ledger.today(), ledger.now());
    let mut due = Vec::new();
    let (Some(_), Some(end)) = (subscription.organization_id, subscription.end_date) else { return due };
    let status = subscription.status_on(today);
    if let Some(dunning) = subscription.dunning
        && status == Status::PastDue
        && now >= dunning.suspend_at
    {
        due.push(Due::Suspend { subscription_id: id, past_due_since: dunning.past_due_since });
    }
    if !status.is_ended() && end <= today {
        due.push(Due::EndTerm { subscription_id: id, end });
    } else if status == Status::Cancelled {
        due.push(Due::EndCancelled { subscription_id: id });
    }
    due
}

async fn apply(ledger: &Ledger, change: &Due) -> Result<u64, Error> {
    let key = change.key();
    let context = Context {
        metadata: Metadata { actor: Some("scheduler".into()), ..Metadata::default() },
        // The key names the change; its digest is the key's, so every
        // attempt at the same change is the same request.
        idempotency: Some((key.clone(), request_digest("SCHEDULE", &key, b""))),
        credential: None,
    };
    match change {
        Due::EndTerm { subscription_id, .. } => {
            crate::subscriptions::end_term(ledger, &context, *subscription_id).await
        }
        Due::EndCancelled { subscription_id } => {
            crate::subscriptions::end_cancelled(ledger, &context, *subscription_id).await
        }
        Due::Suspend { subscription_id, .. } => crate::subscriptions::suspend(ledger, &context, *subscription_id).await,
        Due::CloseWindow { license_id } => crate::licenses::close_supersede_window(ledger, &context, *license_id).await,
    }
}

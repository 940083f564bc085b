//! Time-driven changes: a term's end (renewal or expiry), a cancellation
//! taking effect, a supersede window closing, a past-due subscription's
//! dunning grace ending (suspension).
//!
//! Every tick (and whenever the test clock moves) the scheduler looks in
//! the read models for what is due and appends it through the same use
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
use crate::{Error, Ledger, licenses, subscriptions};

/// How often the scheduler looks for due changes.
pub const TICK: Duration = Duration::from_secs(1);
/// Changes handled per tick, at most; the rest wait for the next.
pub const CHANGES_PER_TICK_MAX: usize = 500;

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
    loop {
        if let Err(error) = tick(&ledger).await {
            tracing::warn!(%error, "scheduler tick failed; trying again");
        }
        let _ = tokio::time::timeout(TICK, ledger.scheduler.notified()).await;
    }
}

/// Appends every change that is due now; answers how many. Nothing while
/// the read models have failed.
pub async fn tick(ledger: &Ledger) -> Result<usize, Error> {
    if ledger.projections.failed().is_some() {
        return Ok(0);
    }
    let due = due(ledger).await;
    for change in &due {
        apply(ledger, change).await?;
    }
    Ok(due.len())
}

async fn due(ledger: &Ledger) -> Vec<Due> {
    let (today, now) = (ledger.today(), ledger.now());
    let state = ledger.projections.read().await;
    let mut due = Vec::new();
    for (id, subscription) in &state.subscriptions {
        let (Some(organization_id), Some(end)) = (subscription.organization_id, subscription.end_date) else {
            continue;
        };
        let status = subscription.status_on(today);
        if let Some(dunning) = subscription.dunning
            && status == Status::PastDue
            && now >= dunning.suspend_at
        {
            due.push(Due::Suspend { subscription_id: *id, past_due_since: dunning.past_due_since });
        }
        if !status.is_ended() && end <= today {
            due.push(Due::EndTerm { subscription_id: *id, end });
        } else if status == Status::Cancelled
            && state.organizations.get(&organization_id).and_then(|o| o.state.live_subscription) == Some(*id)
        {
            due.push(Due::EndCancelled { subscription_id: *id });
        }
    }
    for (id, license) in &state.licenses {
        if license.revoked.is_none() && license.superseded.as_ref().is_some_and(|s| now >= s.window_ends_at) {
            due.push(Due::CloseWindow { license_id: *id });
        }
    }
    due.truncate(CHANGES_PER_TICK_MAX);
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
        Due::EndTerm { subscription_id, .. } => subscriptions::end_term(ledger, &context, *subscription_id).await,
        Due::EndCancelled { subscription_id } => subscriptions::end_cancelled(ledger, &context, *subscription_id).await,
        Due::Suspend { subscription_id, .. } => subscriptions::suspend(ledger, &context, *subscription_id).await,
        Due::CloseWindow { license_id } => licenses::close_supersede_window(ledger, &context, *license_id).await,
    }
}

//! Time-driven changes: a term's end (renewal or expiry), a cancellation
//! taking effect, a supersede window closing, a past-due subscription's
//! dunning grace ending (suspension).
//!
//! Every tick (and whenever the test clock moves) the scheduler looks in
//! the read models for what is due and appends it through the same command
//! path as a request. Each change carries an idempotency key named after
//! the change itself (`scheduler:end-term:{subscription}:{end date}`), so
//! it is appended once, however many ticks, restarts or processes see it.

use std::time::Duration;

use domain::license::{License, LicenseCommand};
use domain::organization::{Organization, OrganizationCommand};
use domain::subscription::{Subscription, SubscriptionCommand};
use domain::{LicenseId, Metadata, OrganizationId, SubscriptionId};

use crate::AppState;
use crate::command::{Context, execute, load, request_digest};
use crate::error::ApiError;

/// How often the scheduler looks for due changes.
pub const TICK: Duration = Duration::from_secs(1);
/// Changes handled per tick, at most; the rest wait for the next.
pub const CHANGES_PER_TICK_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    EndTerm {
        subscription_id: SubscriptionId,
        organization_id: OrganizationId,
        end: chrono::NaiveDate,
    },
    EndCancelled {
        subscription_id: SubscriptionId,
        organization_id: OrganizationId,
    },
    CloseWindow {
        license_id: LicenseId,
    },
    /// The dunning grace that began at `past_due_since` is over.
    Suspend {
        subscription_id: SubscriptionId,
        past_due_since: domain::Timestamp,
    },
}

impl Due {
    fn key(&self) -> String {
        match self {
            Due::EndTerm { subscription_id, end, .. } => format!("scheduler:end-term:{subscription_id}:{end}"),
            Due::EndCancelled { subscription_id, .. } => format!("scheduler:end-cancelled:{subscription_id}"),
            Due::CloseWindow { license_id } => format!("scheduler:close-window:{license_id}"),
            Due::Suspend { subscription_id, past_due_since } => {
                format!("scheduler:suspend:{subscription_id}:{}", past_due_since.as_micros())
            }
        }
    }
}

pub async fn run(state: AppState) {
    loop {
        if let Err(error) = tick(&state).await {
            tracing::warn!(%error, "scheduler tick failed; trying again");
        }
        let _ = tokio::time::timeout(TICK, state.scheduler.notified()).await;
    }
}

/// Appends every change that is due now. Public for tests.
pub async fn tick(state: &AppState) -> Result<usize, ApiError> {
    let due = due(state).await;
    for change in &due {
        apply(state, change).await?;
    }
    Ok(due.len())
}

async fn due(state: &AppState) -> Vec<Due> {
    let (today, now) = (state.today(), state.now());
    let ledger = state.projections.read().await;
    let mut due = Vec::new();
    for (id, subscription) in &ledger.subscriptions {
        let (Some(organization_id), Some(end)) = (subscription.organization_id, subscription.end_date) else {
            continue;
        };
        let status = subscription.status_on(today);
        if let Some(dunning) = subscription.dunning
            && status == domain::subscription::Status::PastDue
            && now >= dunning.suspend_at
        {
            due.push(Due::Suspend { subscription_id: *id, past_due_since: dunning.past_due_since });
        }
        if !status.is_ended() && end <= today {
            due.push(Due::EndTerm { subscription_id: *id, organization_id, end });
        } else if status == domain::subscription::Status::Cancelled
            && ledger.organizations.get(&organization_id).and_then(|o| o.state.live_subscription) == Some(*id)
        {
            due.push(Due::EndCancelled { subscription_id: *id, organization_id });
        }
    }
    for (id, license) in &ledger.licenses {
        if license.revoked.is_none() && license.superseded.as_ref().is_some_and(|s| now >= s.window_ends_at) {
            due.push(Due::CloseWindow { license_id: *id });
        }
    }
    due.truncate(CHANGES_PER_TICK_MAX);
    due
}

async fn apply(state: &AppState, change: &Due) -> Result<(), ApiError> {
    let key = change.key();
    let context = Context {
        metadata: Metadata { actor: Some("scheduler".into()), ..Metadata::default() },
        // The key names the change; its digest is the key's, so every
        // attempt at the same change is the same request.
        idempotency: Some((key.clone(), request_digest("SCHEDULE", &key, b""))),
    };
    execute(state, &context, || async {
        let (now, today) = (state.now(), state.today());
        Ok(match change {
            Due::EndTerm { subscription_id, organization_id, .. } => {
                let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
                subscription.decide(SubscriptionCommand::EndTerm { today }, &state.subscription_services).await?;
                let mut commands = Vec::new();
                if subscription.state.expired {
                    commands.push(end_subscription(state, &context, *organization_id, *subscription_id).await?);
                }
                commands.insert(0, subscription.into_command(&context, now));
                commands
            }
            Due::EndCancelled { subscription_id, organization_id } => {
                vec![end_subscription(state, &context, *organization_id, *subscription_id).await?]
            }
            Due::Suspend { subscription_id, .. } => {
                let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
                subscription.decide(SubscriptionCommand::Suspend { now }, &state.subscription_services).await?;
                vec![subscription.into_command(&context, now)]
            }
            Due::CloseWindow { license_id } => {
                let mut license = load::<License>(state, license_id.stream()).await?;
                license.decide(LicenseCommand::EndSupersedeWindow { now }, &()).await?;
                vec![license.into_command(&context, now)]
            }
        })
    })
    .await?;
    Ok(())
}

async fn end_subscription(
    state: &AppState,
    context: &Context,
    organization_id: OrganizationId,
    subscription_id: SubscriptionId,
) -> Result<store::Command, ApiError> {
    let mut org = load::<Organization>(state, organization_id.stream()).await?;
    org.decide(OrganizationCommand::EndSubscription { subscription_id }, &()).await?;
    Ok(org.into_command(context, state.now()))
}

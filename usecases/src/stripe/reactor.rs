//! The reactor: handles each received Stripe event once, from the log.
//!
//! A webhook delivery is acknowledged once `StripeEventReceived` is
//! durable; the reactor (on the leader, `crate::leading`) then finds it
//! among the read models' pending events
//! (`projections::models::stripe::pending_events`), decides what it means, and appends the
//! decision and `StripeEventHandled` in one atomic group, the latter
//! expecting the event's stream at revision 1. So a crash between receiving
//! and handling only delays the handling, and two processes (or two ticks)
//! handling the same event cannot both succeed: the second finds the stream
//! moved and stops.
//!
//! Ordering: Stripe delivers in any order. Payment reports are ordered by
//! the event's `created` inside the subscription aggregate (an older report
//! never moves the status back); a `customer.subscription.*` event older
//! than one already received for the same Stripe subscription is ignored.

use std::sync::Arc;
use std::time::Duration;

use domain::event::StoredEvent;
use domain::stripe::{Outcome, StripeEvent, StripeEventHandled, StripeEventReceived, event_stream};
use domain::subscription::{Subscription, SubscriptionCommand, SubscriptionError};
use domain::{Metadata, SubscriptionId};
use serde_json::Value;
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use super::Stripe;
use crate::Ledger;
use crate::command::{ATTEMPTS_MAX, Context, load, new_event_id};
use crate::error::Error;

/// How often the reactor looks for pending events without being woken.
pub const TICK: Duration = Duration::from_secs(1);
/// Events handled per tick, at most.
pub const EVENTS_PER_TICK_MAX: usize = 200;
/// The metadata key naming the ledger's subscription on Stripe objects.
pub const SUBSCRIPTION_METADATA: &str = "ledger_subscription_id";

/// What handling an event decided: log commands to append with the
/// `StripeEventHandled` record, and the outcome it records.
pub struct Decision {
    pub commands: Vec<Command>,
    pub outcome: Outcome,
}

impl Decision {
    pub fn ignored(reason: impl Into<String>) -> Self {
        Self { commands: Vec::new(), outcome: Outcome::Ignored { reason: reason.into() } }
    }

    pub fn applied(commands: Vec<Command>, what: impl Into<String>) -> Self {
        Self { commands, outcome: Outcome::Applied { what: what.into() } }
    }
}

/// What the reactor needs besides the ledger: Stripe's wake-ups.
#[derive(Clone)]
pub struct Reactor {
    pub stripe: Arc<Stripe>,
}

/// Whether an error is a domain refusal (the event asks for something the
/// ledger's rules refuse), which is recorded as handled, not retried.
fn is_refusal(error: &Error) -> bool {
    matches!(error, Error::Organization(_) | Error::Subscription(_) | Error::License(_))
}

/// Runs the reactor for good, while this node leads (see
/// [`crate::leading`]); a follower waits.
pub async fn run(ledger: Ledger, reactor: Reactor) {
    loop {
        crate::leading::wait(&ledger).await;
        if let Err(error) = handle_pending(&ledger, &reactor).await {
            tracing::warn!(%error, "stripe reactor tick failed; trying again");
        }
        let _ = tokio::time::timeout(TICK, reactor.stripe.reactor.notified()).await;
    }
}

/// Handles the pending events the read model knows of. Public for tests.
pub async fn handle_pending(state: &Ledger, reactor: &Reactor) -> Result<usize, Error> {
    // Read models that do not match the log (a rollback) decide nothing;
    // received events stay pending in the log until they do.
    if state.models.failed().is_some() {
        return Ok(0);
    }
    let pending = projections::models::stripe::pending_events(&state.models.db, EVENTS_PER_TICK_MAX)
        .await
        .map_err(super::unavailable)?;
    let mut handled = 0;
    for event_id in pending {
        match handle(state, reactor, &event_id).await {
            Ok(true) => handled += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, event = %event_id, "stripe event not handled yet; will retry"),
        }
    }
    Ok(handled)
}

/// Handles one received event; `false` when it was handled already.
async fn handle(state: &Ledger, reactor: &Reactor, event_id: &str) -> Result<bool, Error> {
    let stream = event_stream(event_id).ok_or_else(|| Error::Internal(format!("bad event id {event_id:?}")))?;
    let records = state.log.read_stream(&stream, 1, 2).await?;
    let [record] = records.as_slice() else { return Ok(false) };
    let payload = record.event_bytes().unwrap_or_default();
    let received = match StripeEvent::decode(&record.header.event_type, record.header.schema_version, payload) {
        Ok(Some(StripeEvent::StripeEventReceived(received))) => received,
        other => return Err(Error::Internal(format!("{stream}: not a received event: {other:?}"))),
    };
    let metadata =
        Metadata { actor: Some("stripe".into()), correlation_id: Some(event_id.to_owned()), ..Metadata::default() };
    let context = Context { metadata, idempotency: None, credential: None };
    for attempt in 1..=ATTEMPTS_MAX {
        let Decision { mut commands, outcome } = decide(state, &context, &received).await?;
        let handled: StripeEvent =
            StripeEventHandled { event_id: event_id.to_owned(), outcome: outcome.clone() }.into();
        commands.push(Command {
            stream_id: stream.clone(),
            expected: ExpectedRevision::Exactly(1),
            idempotency: None,
            events: vec![NewEvent::from_event(&handled, new_event_id(), state.now(), &context.metadata)],
        });
        match state.log.append_atomic(commands).await? {
            Ok(appended) => {
                // Read on this node at once, as a command's change is: a
                // key validated a moment ago is not answered from the
                // validation cache's facts of before a failed payment.
                let last = appended.iter().map(|a| a.last_sequence).max().unwrap_or_default();
                state.acknowledged.record_command(last);
                tracing::info!(event = %event_id, kind = %received.event_type, ?outcome, "stripe event handled");
                reactor.stripe.sync.notify_one();
                state.scheduler.notify_one();
                return Ok(true);
            }
            Err(Rejection::WrongRevision { stream_id, .. }) if stream_id == stream => return Ok(false),
            Err(Rejection::WrongRevision { .. }) if attempt < ATTEMPTS_MAX => continue,
            Err(rejection) => return Err(Error::Internal(format!("{stream}: {rejection}"))),
        }
    }
    Err(Error::Internal(format!("{stream}: the streams it changes kept moving")))
}

/// Decides what an event means for the ledger.
async fn decide(state: &Ledger, context: &Context, received: &StripeEventReceived) -> Result<Decision, Error> {
    let Ok(body) = serde_json::from_str::<Value>(&received.body) else {
        return Ok(Decision::ignored("the body is not JSON"));
    };
    let object = &body["data"]["object"];
    let decision = match received.event_type.as_str() {
        "invoice.payment_failed" | "invoice.payment_succeeded" | "invoice.paid" => {
            payment(state, context, received, object).await
        }
        "customer.subscription.deleted" | "customer.subscription.updated" => {
            subscription_change(state, context, received, object).await
        }
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            crate::provisioning::provision(state, context, object).await.map(|provisioned| match provisioned {
                crate::provisioning::Provisioning::Ignored { reason } => Decision::ignored(reason),
                crate::provisioning::Provisioning::Applied { commands, what } => Decision::applied(commands, what),
            })
        }
        other => return Ok(Decision::ignored(format!("{other} is recorded, not handled"))),
    };
    match decision {
        Err(refusal) if is_refusal(&refusal) => Ok(Decision::ignored(format!("refused: {refusal}"))),
        other => other,
    }
}

/// The ledger subscription a Stripe object names in its metadata (the
/// invoice's own, or its Stripe subscription's).
fn ledger_subscription(object: &Value) -> Option<SubscriptionId> {
    [
        &object["metadata"],
        &object["subscription_details"]["metadata"],
        &object["parent"]["subscription_details"]["metadata"],
    ]
    .into_iter()
    .find_map(|metadata| metadata[SUBSCRIPTION_METADATA].as_str())
    .and_then(|id| id.parse().ok())
    .map(SubscriptionId)
}

async fn payment(
    state: &Ledger,
    context: &Context,
    received: &StripeEventReceived,
    object: &Value,
) -> Result<Decision, Error> {
    let Some(subscription_id) = ledger_subscription(object) else {
        return Ok(Decision::ignored("the invoice carries no ledger subscription"));
    };
    let Some(reference) = object["id"].as_str() else {
        return Ok(Decision::ignored("the invoice has no id"));
    };
    let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
    if subscription.state.id.is_none() {
        return Ok(Decision::ignored(format!("no ledger subscription {subscription_id}")));
    }
    let (reference, reported_at, now) = (reference.to_owned(), received.created, state.now());
    let command = if received.event_type == "invoice.payment_failed" {
        SubscriptionCommand::RecordPaymentFailed { reference, reported_at, now }
    } else {
        SubscriptionCommand::RecordPaymentSucceeded { reference, reported_at, now }
    };
    subscription.decide(command, &state.subscription_services).await?;
    let what = match subscription.decided().last() {
        None => return Ok(Decision::ignored("stale: an equal or newer payment report is recorded")),
        Some(event) => format!("{} on {subscription_id}", StoredEvent::event_type(event)),
    };
    Ok(Decision::applied(vec![subscription.into_command(context, now)], what))
}

async fn subscription_change(
    state: &Ledger,
    context: &Context,
    received: &StripeEventReceived,
    object: &Value,
) -> Result<Decision, Error> {
    let Some(subscription_id) = ledger_subscription(object) else {
        return Ok(Decision::ignored("the Stripe subscription carries no ledger subscription"));
    };
    if let Some(stripe_id) = &received.object_id {
        let newest = projections::models::stripe::subscription_newest(&state.models.db, stripe_id)
            .await
            .map_err(super::unavailable)?;
        if newest.is_some_and(|newest| newest > received.created) {
            return Ok(Decision::ignored("stale: a newer event of this Stripe subscription was received"));
        }
    }
    let deleted = received.event_type == "customer.subscription.deleted" || object["status"] == "canceled";
    let (now, today) = (state.now(), state.today());
    let command = if deleted {
        // Deleted in Stripe (by hand, in the dashboard): an immediate
        // cancellation, effective today.
        SubscriptionCommand::Cancel { immediate: true, effective_date: None, today }
    } else if object["cancel_at_period_end"] == true {
        SubscriptionCommand::Cancel { immediate: false, effective_date: None, today }
    } else {
        return Ok(Decision::ignored("no change the ledger follows"));
    };
    let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
    if subscription.state.id.is_none() {
        return Ok(Decision::ignored(format!("no ledger subscription {subscription_id}")));
    }
    match subscription.decide(command, &state.subscription_services).await {
        Ok(_) => {}
        // Already as Stripe says: nothing to do.
        Err(SubscriptionError::AutoRenewalAlreadyOff) => return Ok(Decision::ignored("auto-renewal is already off")),
        Err(refusal) => return Err(refusal.into()),
    }
    let what = if deleted { "cancelled" } else { "auto-renewal cancelled" };
    Ok(Decision::applied(vec![subscription.into_command(context, now)], format!("{subscription_id} {what}")))
}

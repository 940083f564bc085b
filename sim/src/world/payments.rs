//! Stripe charging the invoices the sync created there and telling the
//! ledger by webhook, and the reactor recording what it was told, as
//! `usecases::stripe` does: a delivery appends `StripeEventReceived` to
//! the event's own stream (a duplicate delivery, under the same key, is
//! answered with the first outcome), the reactor decides the payment on
//! the subscription aggregate (`domain`) and appends it with
//! `StripeEventHandled` in one atomic group, expecting the event's stream
//! at revision 1.
//!
//! Stripe makes each subscription's events in order and delivers each
//! subscription's first deliveries in that order (a failed delivery's
//! retry may come later), any subscription's before another's, and
//! delivers any event again now and then (a duplicate).
//!
//! Invariants (with [`World::check_payments`]): a payment recorded on a
//! subscription is one Stripe reported (a success Stripe collected, a
//! failure it reported); and every issued invoice's status in the read
//! models follows the reports the ledger applied: paid once a success was
//! applied (or for a total of zero or less), past due once only a failure
//! was, open before.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use domain::event::StoredEvent;
use domain::payment::PaymentStatus;
use domain::stripe::{Outcome, StripeEvent, StripeEventHandled, StripeEventReceived, event_stream};
use domain::subscription::{Subscription, SubscriptionCommand, SubscriptionEvent};
use domain::{Clock, SubscriptionId, Timestamp};
use projections::models::stripe;
use rust_decimal::Decimal;
use store::ExpectedRevision;

use super::{Effect, Request, World};
use crate::Bug;

/// Received events one reactor round handles, at most.
const EVENTS_PER_ROUND_MAX: usize = 8;
/// Delivered events kept to deliver again (duplicates), at most.
const DELIVERED_KEPT_MAX: usize = 32;
/// Events of one subscription's stream the reactor loads, at most.
const STREAM_EVENTS_MAX: usize = 4096;
/// The chance (per mille) that a charge succeeds.
const SUCCESS_PER_MILLE: u64 = 600;
/// The chance (per mille) that a delivery is a duplicate of one made.
const DUPLICATE_PER_MILLE: u64 = 300;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// One charge of a Stripe invoice, as Stripe's webhook event reports it.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    pub subscription_id: SubscriptionId,
    pub reference: String,
    pub success: bool,
    pub created: Timestamp,
}

/// Stripe's side of the payments.
#[derive(Default)]
pub(crate) struct Charges {
    /// Every event Stripe made, by its id (at most one a step).
    pub events: BTreeMap<String, Charge>,
    /// Events not delivered yet, in the order made.
    pub outbound: Vec<String>,
    /// Events delivered, the latest [`DELIVERED_KEPT_MAX`].
    pub delivered: Vec<String>,
    /// Stripe invoices paid: never charged again.
    pub paid: BTreeSet<String>,
    /// The last event's `created`, in whole seconds (each one later).
    pub last_created: i64,
}

fn err(error: impl std::fmt::Display) -> String {
    error.to_string()
}

impl World {
    /// Stripe charges one of the invoices it holds that is not paid (with
    /// none, a round of the sync, which sends it some).
    pub(crate) async fn charge(&mut self) -> Result<(), String> {
        let open: Vec<String> = (self.stripe.sent.iter())
            .filter(|(reference, sent)| !self.charges.paid.contains(*reference) && sent.2.amount() > Decimal::ZERO)
            .map(|(reference, _)| reference.clone())
            .collect();
        if open.is_empty() {
            self.trace("charge nothing");
            return self.sync_stripe().await;
        }
        let reference = open[self.rng.below(open.len() as u64) as usize].clone();
        let subscription_id = self.stripe.sent[&reference].0;
        let success = self.rng.chance(SUCCESS_PER_MILLE);
        let created = (self.clock.now().as_micros() / MICROS_PER_SECOND).max(self.charges.last_created + 1);
        self.charges.last_created = created;
        let event_id = format!("evt_{}", self.charges.events.len() + 1);
        if success {
            self.charges.paid.insert(reference.clone());
        }
        self.trace(&format!("charge {event_id} {reference} {success}"));
        let created = Timestamp::from_micros(created * MICROS_PER_SECOND);
        self.charges.events.insert(event_id.clone(), Charge { subscription_id, reference, success, created });
        self.charges.outbound.push(event_id);
        Ok(())
    }

    /// The event to deliver: a duplicate of one delivered, or the oldest
    /// undelivered event of a subscription chosen by the seed.
    fn next_delivery(&mut self) -> Option<String> {
        let charges = &mut self.charges;
        let duplicate =
            !charges.delivered.is_empty() && (charges.outbound.is_empty() || self.rng.chance(DUPLICATE_PER_MILLE));
        if duplicate {
            return Some(charges.delivered[self.rng.below(charges.delivered.len() as u64) as usize].clone());
        }
        if charges.outbound.is_empty() {
            return None;
        }
        let pick = &charges.outbound[self.rng.below(charges.outbound.len() as u64) as usize];
        let subscription_id = charges.events[pick].subscription_id;
        let first = charges.outbound.iter().position(|id| charges.events[id].subscription_id == subscription_id)?;
        let event_id = charges.outbound.remove(first);
        charges.delivered.push(event_id.clone());
        if charges.delivered.len() > DELIVERED_KEPT_MAX {
            charges.delivered.remove(0);
        }
        Some(event_id)
    }

    /// One webhook delivery, received as the webhook route does.
    pub(crate) async fn deliver_webhook(&mut self) -> Result<(), String> {
        let Some(event_id) = self.next_delivery() else {
            self.trace("webhook nothing");
            return self.charge().await;
        };
        self.counts.webhooks += 1;
        let charge = self.charges.events[&event_id].clone();
        let event_type = if charge.success { "invoice.payment_succeeded" } else { "invoice.payment_failed" };
        let body = serde_json::json!({
            "id": event_id,
            "type": event_type,
            "created": charge.created.as_micros() / MICROS_PER_SECOND,
            "data": { "object": {
                "id": charge.reference,
                "metadata": { "ledger_subscription_id": charge.subscription_id.0.to_string() },
            } },
        });
        let received = StripeEvent::from(StripeEventReceived {
            event_id: event_id.clone(),
            event_type: event_type.into(),
            created: charge.created,
            livemode: false,
            object_id: Some(charge.reference),
            body: body.to_string(),
        });
        let stream = event_stream(&event_id).ok_or("Stripe made an event id the ledger refuses")?;
        let key = format!("webhook:{event_id}");
        let command = self.command(&key, stream, ExpectedRevision::NoStream, &[received]);
        self.trace(&format!("webhook {event_id}"));
        self.submit(vec![Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None }])
            .await
    }

    /// The reactor's round: the read models caught up (so a reaction the
    /// log holds is not decided again), each pending event handled.
    pub(crate) async fn react(&mut self) -> Result<(), String> {
        self.catch_up().await?;
        let pending = stripe::pending_events(self.db(), EVENTS_PER_ROUND_MAX).await.map_err(err)?;
        let mut handled = 0;
        for event_id in pending {
            let Some(request) = self.reaction(&event_id).await? else { continue };
            self.submit(vec![request]).await?;
            handled += 1;
        }
        self.trace(&format!("reactor {handled}"));
        Ok(())
    }

    /// What the reactor appends for one received event, if it is still to
    /// handle.
    async fn reaction(&mut self, event_id: &str) -> Result<Option<Request>, String> {
        let stream = event_stream(event_id).ok_or("a pending event with a bad id")?;
        let records = self.log().read_stream(&stream, 1, 2).await.map_err(err)?;
        let [record] = records.as_slice() else { return Ok(None) };
        let payload = record.event_bytes().unwrap_or_default();
        let decoded = StripeEvent::decode(&record.header.event_type, record.header.schema_version, payload);
        let Ok(Some(StripeEvent::StripeEventReceived(received))) = decoded else {
            return Err(format!("{stream}: not a received event"));
        };
        let body: serde_json::Value = serde_json::from_str(&received.body).map_err(err)?;
        let object = &body["data"]["object"];
        let subscription_id = (object["metadata"]["ledger_subscription_id"].as_str())
            .and_then(|id| id.parse().ok())
            .map(SubscriptionId)
            .ok_or("an event without its subscription")?;
        let reference = object["id"].as_str().ok_or("an event without its invoice")?.to_owned();
        let (mut subscription, revision) = self.load_subscription(subscription_id).await?;
        let success =
            received.event_type == "invoice.payment_succeeded" || self.config.bug == Some(Bug::FailureRecordedAsPaid);
        let (reported_at, now) = (received.created, self.clock.now());
        let command = if success {
            SubscriptionCommand::RecordPaymentSucceeded { reference, reported_at, now }
        } else {
            SubscriptionCommand::RecordPaymentFailed { reference, reported_at, now }
        };
        let services = super::services();
        let sink = EventSink::<Subscription>::default();
        let decided = subscription.handle(command, &services, &sink).await;
        let decided = match decided {
            Ok(()) => sink.collect().await,
            Err(refusal) => return Ok(Some(self.ignored(event_id, format!("refused: {refusal}")))),
        };
        let Some(what) = decided.last().map(|event| event.event_type().to_owned()) else {
            return Ok(Some(self.ignored(event_id, "stale".into())));
        };
        let expected = if revision == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exactly(revision) };
        let key = format!("react:{event_id}:subscription");
        let payment = self.command(&key, subscription_id.stream(), expected, &decided);
        let handled = self.handled_command(event_id, Outcome::Applied { what });
        let name = format!("react:{event_id}");
        Ok(Some(Request {
            name: name.clone(),
            keys: vec![key, name],
            commands: vec![payment, handled],
            effect: Effect::None,
        }))
    }

    /// The reactor's request for an event it records and does not act on.
    fn ignored(&mut self, event_id: &str, reason: String) -> Request {
        let key = format!("react:{event_id}");
        let command = self.handled_command(event_id, Outcome::Ignored { reason });
        Request { name: key.clone(), keys: vec![key], commands: vec![command], effect: Effect::None }
    }

    fn handled_command(&mut self, event_id: &str, outcome: Outcome) -> store::Command {
        let stream = event_stream(event_id).expect("checked by the caller");
        let handled = StripeEvent::from(StripeEventHandled { event_id: event_id.to_owned(), outcome });
        self.command(&format!("react:{event_id}"), stream, ExpectedRevision::Exactly(1), &[handled])
    }

    /// A subscription's state and revision, replayed from the log.
    async fn load_subscription(&self, id: SubscriptionId) -> Result<(Subscription, u64), String> {
        let records = self.log().read_stream(&id.stream(), 1, STREAM_EVENTS_MAX).await.map_err(err)?;
        let mut state = Subscription::default();
        for record in &records {
            let payload = record.event_bytes().unwrap_or_default();
            let event = SubscriptionEvent::decode(&record.header.event_type, record.header.schema_version, payload)
                .map_err(|e| format!("{id} at {}: {e}", record.header.sequence))?
                .ok_or_else(|| format!("{id}: unknown event {}", record.header.event_type))?;
            state.apply(event);
        }
        Ok((state, records.last().map_or(0, |record| record.header.stream_revision)))
    }

    /// A payment recorded on a subscription is one Stripe reported.
    pub(crate) fn check_payment(&mut self, sequence: u64, event: &SubscriptionEvent) -> Result<(), String> {
        let (reference, success) = match event {
            SubscriptionEvent::PaymentSucceeded(paid) => (&paid.reference, true),
            SubscriptionEvent::PaymentFailed(failed) => (&failed.reference, false),
            _ => return Ok(()),
        };
        self.counts.payments += 1;
        if !self.charges.events.values().any(|c| &c.reference == reference && c.success == success) {
            let what = if success { "a payment of" } else { "a failed charge of" };
            return Err(format!("record {sequence} records {what} {reference}; Stripe reported none"));
        }
        Ok(())
    }

    /// A handled event whose outcome applied a payment, or a Stripe
    /// invoice linked: what [`World::check_payments`] expects from.
    pub(crate) fn note_stripe(&mut self, sequence: u64, event: &StripeEvent) {
        match event {
            StripeEvent::StripeEventHandled(StripeEventHandled { event_id, outcome: Outcome::Applied { .. } }) => {
                if let Some(charge) = self.charges.events.get(event_id) {
                    let handled = self.seen.handled.entry(charge.reference.clone()).or_default();
                    handled.push((sequence, charge.success));
                }
            }
            StripeEvent::StripeInvoiceCreated(created) => {
                self.seen.links.insert(created.stripe_invoice_id.clone(), sequence);
            }
            _ => {}
        }
    }

    /// Every invoice sent to Stripe (its link applied) has the status the
    /// payments applied by `applied` make (every status read in one query
    /// on the checker's connection: a query per invoice per step took a
    /// tenth of a seed's time).
    pub(crate) fn check_payments(&mut self, applied: u64) -> Result<(), String> {
        let statuses = self.seen.invoice_statuses()?;
        for (reference, (subscription_id, period, total)) in &self.stripe.sent {
            if self.seen.links.get(reference).is_none_or(|linked| *linked > applied) {
                continue;
            }
            let handled = self.seen.handled.get(reference).map(Vec::as_slice).unwrap_or_default();
            let reported = |success| handled.iter().any(|(sequence, s)| *sequence <= applied && *s == success);
            let expected = if total.amount() <= Decimal::ZERO || reported(true) {
                PaymentStatus::Paid
            } else if reported(false) {
                PaymentStatus::PastDue
            } else {
                PaymentStatus::Open
            };
            let status = statuses.get(&(subscription_id.0, period.format("%Y-%m-%d").to_string()));
            if status.map(String::as_str) != Some(expected.as_str()) {
                return Err(format!(
                    "invoice {subscription_id} {period} ({reference}) is {status:?} in the read models at sequence \
                     {applied}; the payments Stripe reported and the ledger applied make it {expected:?}"
                ));
            }
        }
        Ok(())
    }
}

//! What the ledger records about Stripe, and the outbox view built from it.
//!
//! Stripe collects; the ledger decides. Three stream categories:
//!
//! - `stripe-event/{evt_…}`: each webhook event Stripe delivered, once,
//!   keyed by its event id (`StripeEventReceived` at revision 1, appended
//!   expecting no stream, so a redelivery or a burst appends nothing new),
//!   then `StripeEventHandled` at revision 2, appended in the same atomic
//!   group as whatever handling it decided (a payment recorded on a
//!   subscription, an organization provisioned). A crash between receiving
//!   and handling leaves the event pending, and the reactor handles it on
//!   the next start: nothing is lost, nothing acted on twice.
//! - `stripe-customer/{organization}`: `StripeCustomerLinked`, the Stripe
//!   customer made for an organization.
//! - `stripe-invoice/{subscription}:{YYYY-MM}` (the invoice's own stream
//!   name): `StripeInvoiceCreated`, the Stripe invoice made for an issued
//!   invoice, or `StripeSyncRefused`, when Stripe refused it for good, and
//!   `StripeSyncRetried` when a staff member asked to try it again.
//! - `stripe-sync/started`: `StripeSyncStarted`, appended once, when a
//!   server first runs with a Stripe API key: invoices issued before it
//!   are not sent to Stripe (they were billed without it; collecting them
//!   now could charge twice).
//! - `stripe-payment-method/{organization}`: `StripePaymentMethodSaved`
//!   (Checkout saved the buyer's payment method, in a SetupIntent), then
//!   `StripeDefaultPaymentMethodSet` once it is the customer's default for
//!   invoices, so Stripe's automatic collection charges it.
//!
//! Dunning itself (past due, suspended, active again) is on the
//! subscription stream: `PaymentFailed`, `PaymentSucceeded`,
//! `SubscriptionSuspended` in `crate::subscription`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::billing::InvoiceEvent;
use crate::event::LedgerEvent;
use crate::{Money, OrganizationId, StreamId, SubscriptionId, Timestamp};

/// The longest Stripe object id the ledger accepts (Stripe's are far shorter).
pub const STRIPE_ID_CHARS_MAX: usize = 255;

crate::stored_events! {
    /// What happened between the ledger and Stripe.
    pub enum StripeEvent {
        StripeEventReceived = "StripeEventReceived" version 1,
        StripeEventHandled = "StripeEventHandled" version 1,
        StripeCustomerLinked = "StripeCustomerLinked" version 1,
        StripeInvoiceCreated = "StripeInvoiceCreated" version 1,
        StripeSyncRefused = "StripeSyncRefused" version 1,
        StripePaymentMethodSaved = "StripePaymentMethodSaved" version 1,
        StripeDefaultPaymentMethodSet = "StripeDefaultPaymentMethodSet" version 1,
        StripeSyncStarted = "StripeSyncStarted" version 1,
        StripeInvoiceVoided = "StripeInvoiceVoided" version 1,
        StripeCreditNoteCreated = "StripeCreditNoteCreated" version 1,
        StripeSyncRetried = "StripeSyncRetried" version 1,
    }
}

/// A staff member (BillingOps) asked for a refused sync to be tried
/// again, once its cause was fixed: appended on the refused target's own
/// stream, after its `StripeSyncRefused`, so the outbox takes the target
/// up again (issue 15 item 2). Who asked is the record's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeSyncRetried {
    /// The target refused: the stream of the invoice, void, credit note or
    /// payment method being synced.
    pub target: String,
}

/// How many times one target may be retried: each retry follows a
/// refusal on the target's stream, so its stream holds at most twice this
/// many events before its outcome.
pub const RETRIES_PER_TARGET_MAX: usize = 20;

/// The Stripe invoice of a voided invoice, voided in Stripe too (issue 15
/// part 2), on `stripe-void/{invoice id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeInvoiceVoided {
    pub invoice_id: uuid::Uuid,
    pub stripe_invoice_id: String,
}

/// A credit note mirrored to Stripe as a credit note on the invoice's
/// Stripe invoice, on `stripe-credit-note/{credit note id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeCreditNoteCreated {
    pub credit_note_id: uuid::Uuid,
    pub invoice_id: uuid::Uuid,
    pub stripe_invoice_id: String,
    pub stripe_credit_note_id: String,
}

/// The stream of a voided invoice's void in Stripe.
pub fn void_stream(invoice_id: uuid::Uuid) -> StreamId {
    StreamId::of("stripe-void", invoice_id)
}

/// The stream of a credit note's copy in Stripe.
pub fn credit_note_stream(credit_note_id: uuid::Uuid) -> StreamId {
    StreamId::of("stripe-credit-note", credit_note_id)
}

/// The stream of the Stripe invoice that collects the invoice of a month
/// at `revision` (`crate::billing::stream_of`): revision 0 is
/// [`invoice_stream`].
pub fn invoice_stream_of(subscription_id: SubscriptionId, period: NaiveDate, revision: u32) -> StreamId {
    if revision == 0 {
        return invoice_stream(subscription_id, period);
    }
    StreamId::new(format!("stripe-invoice/{subscription_id}:{}:r{revision}", period.format("%Y-%m")))
        .expect("a UUID, a month and a number form a valid stream id")
}

/// A webhook event, verified and accepted: the raw body as Stripe signed it
/// (so handling can be redone from the log), and what the handler needs to
/// order it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeEventReceived {
    pub event_id: String,
    /// Stripe's event type (`invoice.payment_failed`), whether or not the
    /// ledger handles it.
    pub event_type: String,
    /// Stripe's `created`: orders events that arrive out of order.
    pub created: Timestamp,
    pub livemode: bool,
    /// The id of the event's object (`data.object.id`), when it has one.
    pub object_id: Option<String>,
    /// The body exactly as received (JSON).
    pub body: String,
}

/// What the reactor did with a received event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeEventHandled {
    pub event_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Events were appended (named in `what`) in the same group.
    Applied { what: String },
    /// Acknowledged and recorded, nothing to do: an event type the ledger
    /// does not handle, an object without the ledger's metadata, a stale
    /// report, a refused change (the reason says which).
    Ignored { reason: String },
}

/// The Stripe customer of an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeCustomerLinked {
    pub organization_id: OrganizationId,
    pub customer_id: String,
}

/// The Stripe invoice that collects an issued invoice: its lines as
/// invoice items, finalized for automatic collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeInvoiceCreated {
    pub invoice_id: uuid::Uuid,
    pub subscription_id: SubscriptionId,
    pub organization_id: OrganizationId,
    pub period: NaiveDate,
    pub customer_id: String,
    pub stripe_invoice_id: String,
    pub total: Money,
}

/// Stripe refused a sync call for good (a 4xx other than a rate limit):
/// surfaced in the log and the outbox view, not retried until an operator
/// acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeSyncRefused {
    /// What was being synced: the invoice's stream, or the customer's.
    pub target: String,
    pub status: u16,
    pub message: String,
}

/// Checkout saved a payment method for the organization's customer; it is
/// still to become the default for the customer's invoices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripePaymentMethodSaved {
    pub organization_id: OrganizationId,
    pub customer_id: String,
    pub setup_intent_id: String,
}

/// The saved payment method is the customer's default for invoices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeDefaultPaymentMethodSet {
    pub organization_id: OrganizationId,
    pub customer_id: String,
    pub payment_method_id: String,
}

/// The outbound sync began: invoices issued at `from_sequence` or later are
/// sent to Stripe, earlier ones are not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeSyncStarted {
    pub from_sequence: u64,
}

/// The stream of the sync's start (one event, ever).
pub fn sync_started_stream() -> StreamId {
    StreamId::new("stripe-sync/started").expect("a valid stream id")
}

/// The stream of a webhook event, or `None` for an id the ledger would not
/// accept as a stream name.
pub fn event_stream(event_id: &str) -> Option<StreamId> {
    valid_stripe_id(event_id).then(|| StreamId::new(format!("stripe-event/{event_id}")).ok()).flatten()
}

/// The stream of an organization's Stripe customer.
pub fn customer_stream(organization_id: OrganizationId) -> StreamId {
    StreamId::of("stripe-customer", organization_id.0)
}

/// The stream of the Stripe invoice that collects an issued invoice.
pub fn invoice_stream(subscription_id: SubscriptionId, period: NaiveDate) -> StreamId {
    StreamId::new(format!("stripe-invoice/{subscription_id}:{}", period.format("%Y-%m")))
        .expect("a UUID and a month form a valid stream id")
}

/// The stream of an organization's saved payment method.
pub fn payment_method_stream(organization_id: OrganizationId) -> StreamId {
    StreamId::of("stripe-payment-method", organization_id.0)
}

/// Stripe ids are short ASCII: letters, digits and `_`.
pub fn valid_stripe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= STRIPE_ID_CHARS_MAX && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The outbox: what is still to be done with Stripe, built from the log in
/// order like every read model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StripeOutbox {
    /// Received webhook events not handled yet, by sequence.
    pub pending_events: BTreeMap<u64, String>,
    /// Stripe customer per organization.
    pub customers: BTreeMap<OrganizationId, String>,
    /// Issued invoices not in Stripe yet: (subscription, month) and the
    /// sequence of their `InvoiceIssued`.
    pub pending_invoices: BTreeMap<(SubscriptionId, NaiveDate), u64>,
    /// Where the outbound sync began (`StripeSyncStarted`), once it has.
    pub sync_from: Option<u64>,
    /// Stripe invoice per issued invoice.
    pub invoices: BTreeMap<(SubscriptionId, NaiveDate), String>,
    /// Sync calls Stripe refused for good, by target.
    pub refused: BTreeMap<String, StripeSyncRefused>,
    /// Per Stripe subscription: the newest `created` of its
    /// `customer.subscription.*` events received, so an older one arriving
    /// late is not acted on.
    pub subscription_events_newest: BTreeMap<String, Timestamp>,
    /// Saved payment methods still to become their customer's default.
    pub pending_payment_methods: BTreeMap<OrganizationId, StripePaymentMethodSaved>,
}

impl StripeOutbox {
    /// Applies one decoded event at `sequence` (records in global order).
    pub fn apply(&mut self, sequence: u64, event: &LedgerEvent) {
        match event {
            LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(issued))
                if self.sync_from.is_none_or(|from| sequence >= from) =>
            {
                self.pending_invoices.insert((issued.subscription_id, issued.invoice.period), sequence);
            }
            // A voided invoice not in Stripe yet is not sent.
            LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided)) => {
                self.pending_invoices.remove(&(voided.subscription_id, voided.period));
            }
            LedgerEvent::Stripe(event) => match event {
                StripeEvent::StripeEventReceived(received) => {
                    self.pending_events.insert(sequence, received.event_id.clone());
                    if received.event_type.starts_with("customer.subscription.")
                        && let Some(object) = &received.object_id
                    {
                        let newest = self.subscription_events_newest.entry(object.clone()).or_insert(received.created);
                        *newest = (*newest).max(received.created);
                    }
                }
                StripeEvent::StripeEventHandled(handled) => {
                    self.pending_events.retain(|_, id| *id != handled.event_id);
                }
                StripeEvent::StripeCustomerLinked(linked) => {
                    self.customers.insert(linked.organization_id, linked.customer_id.clone());
                }
                StripeEvent::StripeInvoiceCreated(created) => {
                    let key = (created.subscription_id, created.period);
                    self.pending_invoices.remove(&key);
                    self.invoices.insert(key, created.stripe_invoice_id.clone());
                }
                StripeEvent::StripeSyncRefused(refused) => {
                    self.refused.insert(refused.target.clone(), refused.clone());
                }
                StripeEvent::StripeSyncRetried(retried) => {
                    self.refused.remove(&retried.target);
                }
                StripeEvent::StripePaymentMethodSaved(saved) => {
                    self.pending_payment_methods.insert(saved.organization_id, saved.clone());
                }
                StripeEvent::StripeDefaultPaymentMethodSet(set) => {
                    self.pending_payment_methods.remove(&set.organization_id);
                }
                // Voids and credit notes in Stripe are the tables' alone
                // (`projections::models::stripe`).
                StripeEvent::StripeInvoiceVoided(_) | StripeEvent::StripeCreditNoteCreated(_) => {}
                StripeEvent::StripeSyncStarted(started) => {
                    if self.sync_from.is_none() {
                        self.sync_from = Some(started.from_sequence);
                        self.pending_invoices.retain(|_, issued_at| *issued_at >= started.from_sequence);
                    }
                }
            },
            _ => {}
        }
    }
}

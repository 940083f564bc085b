//! Outbound sync: a Stripe customer per organization and a Stripe invoice
//! per issued invoice, from the outbox the read models keep
//! (`projections::models::stripe::pending_invoices`).
//!
//! Each Stripe call carries an idempotency key derived from the ledger's
//! event (`ledger:invoice:{invoice id}:line:{n}`), so a retry after a
//! crash or a timeout makes nothing twice (Stripe keeps keys for at least
//! 24 hours); each outcome is appended (`StripeCustomerLinked`,
//! `StripeInvoiceCreated`, or `StripeSyncRefused` when Stripe refuses for
//! good). Network errors, rate limits and Stripe's 5xx are retried with
//! bounded exponential backoff: an outage delays sync and loses nothing,
//! because the outbox is the log itself.
//!
//! One process syncs at a time: the leader (`crate::leading`, asked before
//! each call), holding the log's `stripe-sync`
//! lock (`EventLog::try_lock`: a file lock beside a SQLite log, a
//! session-level advisory lock on PostgreSQL), asking before each invoice
//! whether it still holds it. Stripe answers 409 to a request whose
//! idempotency key another request is still using; should two processes
//! ever overlap (a holder whose session was lost mid-invoice), that is
//! retried later like an outage, never recorded as a refusal.
//!
//! A draft invoice is created with `auto_advance` off, its lines added,
//! and only finalization turns automatic collection on: Stripe finalizes an
//! auto-advancing draft on its own about an hour after creation, which
//! would charge a partial invoice if the sync stopped between its lines.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::backoff::Backoff;
use domain::billing::InvoiceIssued;
use domain::stripe::{
    StripeCreditNoteCreated, StripeCustomerLinked, StripeDefaultPaymentMethodSet, StripeEvent, StripeInvoiceCreated,
    StripeInvoiceVoided, StripePaymentMethodSaved, StripeSyncRefused, StripeSyncStarted, credit_note_stream,
    customer_stream, payment_method_stream, sync_started_stream, void_stream,
};
use domain::{Metadata, OrganizationId, StreamId};
use projections::models::stripe::{PendingCreditNote, PendingVoid, invoice_target};
use rust_decimal::prelude::ToPrimitive;
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use stripe::StripeRequest;

use super::Stripe;
use crate::Ledger;
use crate::command::new_event_id;
use crate::error::Error;

/// How often the sync looks for work without being woken.
pub const TICK: Duration = Duration::from_secs(1);
/// Invoices synced per tick, at most.
pub const INVOICES_PER_TICK_MAX: usize = 50;
/// The name of the lock whose holder syncs (`EventLog::try_lock`).
pub const LOCK: &str = "stripe-sync";
/// The first retry waits this long, doubling per failure…
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// …up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// Targets (an invoice, a payment method) whose failures are remembered
/// at most. Each tick attempts at most [`INVOICES_PER_TICK_MAX`] invoices
/// and as many payment methods, so this holds every target of ten ticks'
/// worth of distinct failures; beyond it, targets already due again are
/// forgotten first (they only lose the length of their next wait).
pub const RETRY_TARGETS_MAX: usize = 1024;

/// Failed targets, each with its backoff, when it may be tried again and
/// the last error.
#[derive(Debug, Default)]
pub struct Retries {
    failures: HashMap<String, (Backoff, Instant, String)>,
}

/// The longest last error kept per target, in characters.
pub const LAST_ERROR_CHARS_MAX: usize = 500;

impl Retries {
    fn ready(&self, target: &str, now: Instant) -> bool {
        self.failures.get(target).is_none_or(|(_, next, _)| now >= *next)
    }

    fn failed(&mut self, target: &str, now: Instant) -> Duration {
        self.failed_with(target, now, "")
    }

    fn failed_with(&mut self, target: &str, now: Instant, reason: &str) -> Duration {
        if self.failures.len() >= RETRY_TARGETS_MAX && !self.failures.contains_key(target) {
            self.failures.retain(|_, (_, next, _)| *next > now);
            if self.failures.len() >= RETRY_TARGETS_MAX {
                // All still waiting: the one due soonest goes.
                let soonest = self.failures.iter().min_by_key(|(_, (_, next, _))| *next).map(|(t, _)| t.clone());
                soonest.map(|t| self.failures.remove(&t));
            }
        }
        let (backoff, next, last) = self.failures.entry(target.to_owned()).or_insert((
            Backoff::new(BACKOFF_FIRST, BACKOFF_MAX),
            now,
            String::new(),
        ));
        let delay = backoff.failed();
        *next = now + delay;
        *last = reason.chars().take(LAST_ERROR_CHARS_MAX).collect();
        delay
    }

    /// Each failing target's last error (at most [`RETRY_TARGETS_MAX`]).
    pub fn last_errors(&self) -> HashMap<String, String> {
        self.failures.iter().map(|(target, (_, _, last))| (target.clone(), last.clone())).collect()
    }

    fn succeeded(&mut self, target: &str) {
        self.failures.remove(target);
    }
}

/// Why a sync step did not complete.
#[derive(Debug)]
pub enum SyncError {
    /// Try again later: the network, a rate limit, Stripe's 5xx, the log.
    Transient(String),
    /// Stripe refused (a 4xx): recorded, not retried.
    Refused { status: u16, message: String },
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Transient(reason) => f.write_str(reason),
            SyncError::Refused { status, message } => write!(f, "refused ({status}): {message}"),
        }
    }
}

impl From<stripe::StripeError> for SyncError {
    fn from(error: stripe::StripeError) -> Self {
        match error {
            // 409: another request is using the same idempotency key right
            // now (another process syncing the same invoice). Try later.
            stripe::StripeError::Stripe(errors, status) if status == 409 || status == 429 || status >= 500 => {
                SyncError::Transient(format!("Stripe answered {status}: {}", errors.message.as_deref().unwrap_or("")))
            }
            stripe::StripeError::Stripe(errors, status) => SyncError::Refused {
                status,
                message: errors.message.clone().unwrap_or_else(|| format!("{:?}", errors.type_)),
            },
            // Stripe acted but its answer did not parse: a retry with the same
            // key replays the same answer, so surface it instead of looping.
            stripe::StripeError::JSONDeserialize(message) => {
                SyncError::Refused { status: 0, message: format!("Stripe's answer did not parse: {message}") }
            }
            other => SyncError::Transient(other.to_string()),
        }
    }
}

impl From<Error> for SyncError {
    fn from(error: Error) -> Self {
        SyncError::Transient(error.to_string())
    }
}

fn transient(error: projections::db::DbError) -> SyncError {
    SyncError::Transient(error.to_string())
}

impl From<store::StoreError> for SyncError {
    fn from(error: store::StoreError) -> Self {
        SyncError::Transient(error.to_string())
    }
}

/// Runs the sync for good, while this node leads (see [`crate::leading`]);
/// a follower waits.
pub async fn run(state: Ledger, stripe: Arc<Stripe>) {
    let Some(client) = stripe.client.as_ref() else { return };
    crate::leading::wait(&state).await;
    let mut start = Backoff::new(BACKOFF_FIRST, BACKOFF_MAX);
    // Invoices issued before the sync first ran are not Stripe's to collect.
    while let Err(error) = mark_start(&state).await {
        let delay = start.failed();
        tracing::warn!(%error, retry_in = ?delay, "the stripe sync's start not recorded; will retry");
        tokio::time::sleep(delay).await;
    }
    let mut retries = Retries::default();
    let mut lock = None;
    loop {
        if !crate::leading::leading(&state) {
            // A follower holds no lock and waits to lead.
            lock = None;
            crate::leading::wait(&state).await;
        }
        lock = hold(&state, lock).await;
        if let Some(held) = &lock {
            sync_due(&state, client, held, &mut retries).await;
            stripe.publish_errors(retries.last_errors());
        }
        let _ = tokio::time::timeout(TICK, stripe.sync.notified()).await;
    }
}

/// The sync lock, if this process holds it (or takes it now). A lock whose
/// session no longer answers is let go, for whoever takes it next.
async fn hold(state: &Ledger, lock: Option<store::ExclusiveLock>) -> Option<store::ExclusiveLock> {
    match lock {
        Some(held) if held.held().await => return Some(held),
        Some(_) => tracing::warn!("the stripe sync lost its lock; another process may take over"),
        None => {}
    }
    match state.log.try_lock(LOCK).await {
        Ok(Some(taken)) => {
            tracing::info!("this process syncs invoices to Stripe");
            Some(taken)
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "the stripe sync lock could not be taken; will retry");
            None
        }
    }
}

/// Syncs what is due and not backing off, while holding the sync lock; the
/// number synced.
pub async fn sync_due(
    state: &Ledger,
    client: &stripe::Client,
    lock: &store::ExclusiveLock,
    retries: &mut Retries,
) -> usize {
    // Read models that do not match the log (a rollback) may list invoices
    // the log no longer holds: sync nothing from them.
    if state.models.failed().is_some() {
        return 0;
    }
    let db = &state.models.db;
    let saved = match projections::models::stripe::pending_payment_methods(db, INVOICES_PER_TICK_MAX).await {
        Ok(saved) => saved,
        Err(error) => {
            tracing::warn!(%error, "stripe sync: the read models did not answer; will retry");
            return 0;
        }
    };
    let mut synced = 0;
    for saved in saved {
        let target = payment_method_stream(saved.organization_id).to_string();
        if retries.ready(&target, Instant::now()) && crate::leading::leading(state) {
            synced += outcome(state, retries, &target, default_payment_method(state, client, &saved).await).await;
        }
    }
    let work = match projections::models::stripe::pending_invoices(db, INVOICES_PER_TICK_MAX).await {
        Ok(work) => work,
        Err(error) => {
            tracing::warn!(%error, "stripe sync: the read models did not answer; will retry");
            return synced;
        }
    };
    // One invoice of a customer at a time: an organization's invoices go
    // out in order.
    let mut customers_failing = HashSet::new();
    for issued in work {
        let target = invoice_target(&issued);
        if !retries.ready(&target, Instant::now()) || customers_failing.contains(&issued.organization_id) {
            continue;
        }
        if !crate::leading::leading(state) || !lock.held().await {
            break;
        }
        let result = sync_invoice(state, client, &issued).await;
        if result.is_err() {
            customers_failing.insert(issued.organization_id);
        }
        synced += outcome(state, retries, &target, result).await;
    }
    synced + sync_corrections(state, client, lock, retries).await
}

/// Voids and credit notes into Stripe (issue 15 part 2), for invoices
/// already in Stripe: the number done.
async fn sync_corrections(
    state: &Ledger,
    client: &stripe::Client,
    lock: &store::ExclusiveLock,
    retries: &mut Retries,
) -> usize {
    let db = &state.models.db;
    let mut synced = 0;
    let voids = projections::models::stripe::pending_voids(db, INVOICES_PER_TICK_MAX).await;
    for void in voids.unwrap_or_default() {
        if !retries.ready(&void.target, Instant::now()) {
            continue;
        }
        if !crate::leading::leading(state) || !lock.held().await {
            return synced;
        }
        synced += outcome(state, retries, &void.target, void_invoice(state, client, &void).await).await;
    }
    let notes = projections::models::stripe::pending_credit_notes(db, INVOICES_PER_TICK_MAX).await;
    for note in notes.unwrap_or_default() {
        if !retries.ready(&note.target, Instant::now()) {
            continue;
        }
        if !crate::leading::leading(state) || !lock.held().await {
            return synced;
        }
        synced += outcome(state, retries, &note.target, credit_note(state, client, &note).await).await;
    }
    synced
}

/// A voided invoice's Stripe invoice, voided.
async fn void_invoice(state: &Ledger, client: &stripe::Client, void: &PendingVoid) -> Result<(), SyncError> {
    stripe_billing::invoice::VoidInvoiceInvoice::new(void.stripe_invoice_id.as_str())
        .customize()
        .request_strategy(strategy(format!("ledger:invoice:{}:void", void.invoice_id))?)
        .send(client)
        .await?;
    let voided = StripeInvoiceVoided { invoice_id: void.invoice_id, stripe_invoice_id: void.stripe_invoice_id.clone() };
    append_new(state, void_stream(void.invoice_id), voided.into()).await?;
    Ok(())
}

/// A credit note, as a Stripe credit note on its invoice's Stripe invoice
/// (one custom line per line).
async fn credit_note(state: &Ledger, client: &stripe::Client, pending: &PendingCreditNote) -> Result<(), SyncError> {
    let note = &pending.note;
    let mut lines = Vec::with_capacity(note.lines.len());
    for line in &note.lines {
        let mut item = stripe_billing::credit_note::CreateCreditNoteLines::new(
            stripe_billing::credit_note::CreateCreditNoteLinesType::CustomLineItem,
        );
        item.description = Some(line.description.clone());
        item.quantity = Some(1);
        item.unit_amount = Some(cents(&line.amount)?);
        lines.push(item);
    }
    let created = stripe_billing::credit_note::CreateCreditNote::new(pending.stripe_invoice_id.as_str())
        .lines(lines)
        .memo(note.reason.clone())
        .metadata(HashMap::from([
            ("ledger_credit_note_id".to_owned(), note.credit_note_id.to_string()),
            ("ledger_invoice_id".to_owned(), note.invoice_id.to_string()),
        ]))
        .customize()
        .request_strategy(strategy(format!("ledger:credit-note:{}", note.credit_note_id))?)
        .send(client)
        .await?;
    let recorded = StripeCreditNoteCreated {
        credit_note_id: note.credit_note_id,
        invoice_id: note.invoice_id,
        stripe_invoice_id: pending.stripe_invoice_id.clone(),
        stripe_credit_note_id: created.id.as_str().to_owned(),
    };
    append_new(state, credit_note_stream(note.credit_note_id), recorded.into()).await?;
    Ok(())
}

/// Books a sync step's result: 1 when it was done.
async fn outcome(state: &Ledger, retries: &mut Retries, target: &str, result: Result<(), SyncError>) -> usize {
    match result {
        Ok(()) => {
            retries.succeeded(target);
            return 1;
        }
        Err(SyncError::Transient(reason)) => {
            let delay = retries.failed_with(target, Instant::now(), &reason);
            tracing::warn!(%target, %reason, retry_in = ?delay, "stripe sync failed; will retry");
        }
        Err(SyncError::Refused { status, message }) => {
            tracing::error!(%target, status, %message, "stripe refused the sync; recorded");
            if let Err(error) = record_refusal(state, target, status, &message).await {
                let delay = retries.failed(target, Instant::now());
                tracing::warn!(%target, %error, retry_in = ?delay, "stripe refusal not recorded; will retry");
            }
        }
    }
    0
}

/// Makes the payment method a Checkout session saved the customer's
/// default for invoices, so automatic collection charges it.
async fn default_payment_method(
    state: &Ledger,
    client: &stripe::Client,
    saved: &StripePaymentMethodSaved,
) -> Result<(), SyncError> {
    let intent = stripe_core::setup_intent::RetrieveSetupIntent::new(saved.setup_intent_id.as_str())
        .customize()
        .send(client)
        .await?;
    let payment_method =
        intent.payment_method.as_ref().map(|pm| pm.id().as_str().to_owned()).ok_or_else(|| SyncError::Refused {
            status: 0,
            message: format!("SetupIntent {} has no payment method", saved.setup_intent_id),
        })?;
    let settings = stripe_core::customer::UpdateCustomerInvoiceSettings {
        default_payment_method: Some(payment_method.clone()),
        ..Default::default()
    };
    stripe_core::customer::UpdateCustomer::new(saved.customer_id.as_str())
        .invoice_settings(settings)
        .customize()
        .request_strategy(strategy(format!("ledger:default-payment-method:{}", saved.organization_id))?)
        .send(client)
        .await?;
    let set: StripeEvent = StripeDefaultPaymentMethodSet {
        organization_id: saved.organization_id,
        customer_id: saved.customer_id.clone(),
        payment_method_id: payment_method,
    }
    .into();
    // Recorded meanwhile by another process, if not appended.
    append_expecting(state, payment_method_stream(saved.organization_id), set, ExpectedRevision::Exactly(1)).await?;
    Ok(())
}

/// Appends `StripeSyncStarted` at the log's head, once ever (the stream is
/// expected not to exist), and waits for the read model to include it.
async fn mark_start(state: &Ledger) -> Result<(), SyncError> {
    let head = state.log.head().await?.sequence;
    let started: StripeEvent = StripeSyncStarted { from_sequence: head + 1 }.into();
    append_new(state, sync_started_stream(), started).await?;
    let head = state.log.head().await?.sequence;
    state
        .models
        .wait_for(head, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|e| SyncError::Transient(e.to_string()))
}

fn metadata() -> Metadata {
    Metadata { actor: Some("stripe-sync".into()), ..Metadata::default() }
}

fn strategy(key: String) -> Result<stripe::RequestStrategy, SyncError> {
    stripe::IdempotencyKey::new(key)
        .map(stripe::RequestStrategy::Idempotent)
        .map_err(|e| SyncError::Refused { status: 0, message: e.to_string() })
}

/// Appends one event to a stream expected not to exist; `false` when it
/// exists already (another process recorded the same outcome).
async fn append_new(state: &Ledger, stream_id: StreamId, event: StripeEvent) -> Result<bool, SyncError> {
    append_expecting(state, stream_id, event, ExpectedRevision::NoStream).await
}

/// The most events a sync target's stream holds before its outcome: a
/// payment method's saving, then refusals each followed by a retry
/// (`domain::stripe::RETRIES_PER_TARGET_MAX`), and one last refusal.
pub const TARGET_STREAM_EVENTS_MAX: usize = 2 * domain::stripe::RETRIES_PER_TARGET_MAX + 2;

/// Appends a sync's outcome expecting `expected` (the stream as it is when
/// nothing went wrong) or, when a refusal was retried on the stream
/// (`StripeSyncRetried` is its last event), right after the retry;
/// `false` when neither holds (another process recorded the outcome).
async fn append_expecting(
    state: &Ledger,
    stream_id: StreamId,
    event: StripeEvent,
    mut expected: ExpectedRevision,
) -> Result<bool, SyncError> {
    for _ in 0..2 {
        let command = Command {
            stream_id: stream_id.clone(),
            expected,
            idempotency: None,
            events: vec![NewEvent::from_event(&event, new_event_id(), state.now(), &metadata())],
        };
        match state.log.append_one(command).await? {
            Ok(appended) => {
                let _ = state.models.wait_for(appended.last_sequence, Duration::from_secs(5)).await;
                return Ok(true);
            }
            Err(Rejection::WrongRevision { .. }) => {
                let records = state.log.read_stream(&stream_id, 1, TARGET_STREAM_EVENTS_MAX).await?;
                match records.last() {
                    Some(last) if last.header.event_type == "StripeSyncRetried" => {
                        expected = ExpectedRevision::Exactly(last.header.stream_revision);
                    }
                    _ => return Ok(false),
                }
            }
            Err(other) => return Err(SyncError::Transient(other.to_string())),
        }
    }
    Err(SyncError::Transient(format!("{stream_id} moved while the sync's outcome was recorded")))
}

async fn record_refusal(state: &Ledger, target: &str, status: u16, message: &str) -> Result<(), SyncError> {
    let stream_id = StreamId::new(target).map_err(|e| SyncError::Transient(e.to_string()))?;
    let refused: StripeEvent =
        StripeSyncRefused { target: target.to_owned(), status, message: message.chars().take(1000).collect() }.into();
    let command = Command {
        stream_id,
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(&refused, new_event_id(), state.now(), &metadata())],
    };
    state.log.append_one(command).await?.map_err(|e| SyncError::Transient(e.to_string()))?;
    Ok(())
}

/// The organization's Stripe customer, made (and linked) if it has none.
async fn customer(
    state: &Ledger,
    client: &stripe::Client,
    organization_id: OrganizationId,
) -> Result<String, SyncError> {
    let db = &state.models.db;
    if let Some(customer) = projections::models::stripe::customer(db, organization_id).await.map_err(transient)? {
        return Ok(customer);
    }
    let name = projections::models::organizations::name(db, organization_id).await.map_err(transient)?;
    let name = name.unwrap_or_default();
    let mut request = stripe_core::customer::CreateCustomer::new()
        .metadata(HashMap::from([("ledger_organization_id".to_owned(), organization_id.to_string())]));
    if !name.is_empty() {
        request = request.name(name);
    }
    let created = request
        .customize()
        .request_strategy(strategy(format!("ledger:customer:{organization_id}"))?)
        .send(client)
        .await?;
    let customer_id = created.id.as_str().to_owned();
    let linked = StripeCustomerLinked { organization_id, customer_id: customer_id.clone() };
    if append_new(state, customer_stream(organization_id), linked.into()).await? {
        return Ok(customer_id);
    }
    // Linked meanwhile by another process or a checkout: use that one.
    projections::models::stripe::customer(db, organization_id)
        .await
        .map_err(transient)?
        .ok_or_else(|| SyncError::Transient("the customer link is not in the read model yet".into()))
}

/// Cents of a rounded amount.
fn cents(amount: &domain::Money) -> Result<i64, SyncError> {
    let amount = amount.amount();
    if amount.scale() > 2 {
        return Err(SyncError::Refused { status: 0, message: format!("{amount} is not whole cents") });
    }
    (amount * rust_decimal::Decimal::ONE_HUNDRED)
        .to_i64()
        .ok_or_else(|| SyncError::Refused { status: 0, message: format!("{amount} does not fit in cents") })
}

/// One issued invoice into Stripe: a draft invoice that takes no pending
/// items and does not advance on its own, its lines as invoice items on
/// it, then finalized with automatic collection (auto-advance) on.
async fn sync_invoice(state: &Ledger, client: &stripe::Client, issued: &InvoiceIssued) -> Result<(), SyncError> {
    let customer_id = customer(state, client, issued.organization_id).await?;
    let invoice = &issued.invoice;
    let period = invoice.period.format("%Y-%m").to_string();
    let key = |step: &str| format!("ledger:invoice:{}:{step}", issued.invoice_id);
    let metadata = HashMap::from([
        ("ledger_invoice_id".to_owned(), issued.invoice_id.to_string()),
        (super::reactor::SUBSCRIPTION_METADATA.to_owned(), issued.subscription_id.to_string()),
        ("ledger_organization_id".to_owned(), issued.organization_id.to_string()),
        ("ledger_period".to_owned(), period.clone()),
    ]);
    // A draft that does not advance on its own: only the finalization
    // below, after every line, turns automatic collection on.
    let draft = stripe_billing::invoice::CreateInvoice::new()
        .customer(customer_id.clone())
        .collection_method(stripe_shared::InvoiceCollectionMethod::ChargeAutomatically)
        .auto_advance(false)
        .currency(stripe_types::Currency::USD)
        .pending_invoice_items_behavior(stripe_billing::invoice::CreateInvoicePendingInvoiceItemsBehavior::Exclude)
        .description(format!("Invoice {period}"))
        .metadata(metadata)
        .customize()
        .request_strategy(strategy(key("invoice"))?)
        .send(client)
        .await?;
    let stripe_invoice_id =
        draft.id.ok_or_else(|| SyncError::Refused { status: 0, message: "Stripe's invoice has no id".into() })?;
    for (n, line) in invoice.lines.iter().enumerate() {
        stripe_billing::invoice_item::CreateInvoiceItem::new()
            .customer(customer_id.clone())
            .invoice(stripe_invoice_id.as_str().to_owned())
            .amount(cents(&line.amount)?)
            .currency(stripe_types::Currency::USD)
            .description(line.description.clone())
            .metadata(HashMap::from([
                ("ledger_invoice_id".to_owned(), issued.invoice_id.to_string()),
                ("ledger_line".to_owned(), n.to_string()),
            ]))
            .customize()
            .request_strategy(strategy(key(&format!("line:{n}")))?)
            .send(client)
            .await?;
    }
    stripe_billing::invoice::FinalizeInvoiceInvoice::new(stripe_invoice_id.clone())
        .auto_advance(true)
        .customize()
        .request_strategy(strategy(key("finalize"))?)
        .send(client)
        .await?;
    let created = StripeInvoiceCreated {
        invoice_id: issued.invoice_id,
        subscription_id: issued.subscription_id,
        organization_id: issued.organization_id,
        period: invoice.period,
        customer_id,
        stripe_invoice_id: stripe_invoice_id.as_str().to_owned(),
        total: invoice.total,
    };
    let stream = StreamId::new(invoice_target(issued)).map_err(|e| SyncError::Transient(e.to_string()))?;
    append_new(state, stream, created.into()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_fifteen_minutes() {
        let mut backoff = Retries::default();
        let now = Instant::now();
        let delays: Vec<u64> = (0..14).map(|_| backoff.failed("t", now).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]);
        assert!(!backoff.ready("t", now));
        assert!(backoff.ready("t", now + BACKOFF_MAX));
        assert!(backoff.ready("other", now));
        backoff.succeeded("t");
        assert!(backoff.ready("t", now));
    }

    #[test]
    fn failures_are_remembered_for_a_bounded_number_of_targets() {
        let mut retries = Retries::default();
        let now = Instant::now();
        for n in 0..RETRY_TARGETS_MAX {
            retries.failed(&format!("t{n}"), now);
        }
        // One more while every target still waits: the soonest due goes.
        retries.failed("t0", now);
        retries.failed("new", now);
        assert_eq!(retries.failures.len(), RETRY_TARGETS_MAX);
        assert!(!retries.ready("new", now));
        assert!(!retries.ready("t0", now), "t0 failed twice: it waits longest");
        // Later, the targets due again are forgotten first.
        let later = now + Duration::from_secs(1);
        retries.failed("newer", later);
        assert!(retries.failures.len() <= RETRY_TARGETS_MAX);
        assert!(!retries.ready("t0", later) && !retries.ready("newer", later));
    }
}

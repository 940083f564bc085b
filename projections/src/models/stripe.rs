//! The Stripe outbox (`domain::stripe::StripeOutbox`) as rows: received
//! webhook events not handled yet, customers, issued invoices not yet in
//! Stripe, Stripe's invoices, refusals, the newest event per Stripe
//! subscription, payment methods still to become the default, and where
//! the outbound sync began.
//!
//! `StripeSyncStarted` drops, in memory, the pending invoices issued
//! before it; here they stay (a one-time, bounded set) and the query
//! leaves out what was issued before the sync's start.

use chrono::NaiveDate;
use domain::billing::{CreditNoteIssued, InvoiceEvent, InvoiceIssued, revision_of};
use domain::event::LedgerEvent;
use domain::record::Record;
use domain::stripe::{
    StripeEvent, StripePaymentMethodSaved, StripeSyncRefused, credit_note_stream, invoice_stream_of,
    payment_method_stream, void_stream,
};
use domain::{OrganizationId, SubscriptionId, Timestamp};

use super::{day, decoded, limit_param, page_limit, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};

pub const PENDING_EVENTS: Table =
    Table::new("rm_stripe_pending_events", &[Column::text("event_id"), Column::int("sequence")], 1);
pub const CUSTOMERS: Table =
    Table::new("rm_stripe_customers", &[Column::blob("organization_id"), Column::text("customer_id")], 1);
pub const PENDING_INVOICES: Table = Table::new(
    "rm_stripe_pending_invoices",
    &[
        Column::blob("subscription_id"),
        Column::text("period"),
        Column::int("sequence"),
        Column::text("target"),
        Column::int("issued_at"),
    ],
    2,
);
pub const STRIPE_INVOICES: Table = Table::new(
    "rm_stripe_invoices",
    &[Column::blob("subscription_id"), Column::text("period"), Column::text("stripe_invoice_id")],
    2,
);
pub const REFUSED: Table = Table::new(
    "rm_stripe_refused",
    &[Column::text("target"), Column::int("status"), Column::text("message"), Column::int("refused_at")],
    1,
);
pub const SUBSCRIPTION_NEWEST: Table =
    Table::new("rm_stripe_subscription_newest", &[Column::text("object_id"), Column::int("created")], 1);
pub const PENDING_PAYMENT_METHODS: Table = Table::new(
    "rm_stripe_pending_payment_methods",
    &[
        Column::blob("organization_id"),
        Column::text("customer_id"),
        Column::text("setup_intent_id"),
        Column::text("target"),
    ],
    1,
);
pub const SYNC: Table = Table::new("rm_stripe_sync", &[Column::int("id"), Column::int("from_sequence")], 1);
/// Each ledger invoice's Stripe invoice, by the ledger invoice's id.
pub const STRIPE_INVOICE_IDS: Table =
    Table::new("rm_stripe_invoice_ids", &[Column::blob("invoice_id"), Column::text("stripe_invoice_id")], 1);
/// Voided invoices whose Stripe invoice is still to void (the Stripe id
/// once the invoice is in Stripe; a void before that needs none).
pub const PENDING_VOIDS: Table = Table::new(
    "rm_stripe_pending_voids",
    &[
        Column::blob("invoice_id"),
        Column::text("stripe_invoice_id").nullable(),
        Column::int("sequence"),
        Column::text("target"),
    ],
    1,
);
/// Credit notes still to mirror to Stripe (the invoice's Stripe id once
/// the invoice is in Stripe).
pub const PENDING_CREDIT_NOTES: Table = Table::new(
    "rm_stripe_pending_credit_notes",
    &[
        Column::blob("credit_note_id"),
        Column::blob("invoice_id"),
        Column::text("stripe_invoice_id").nullable(),
        Column::int("sequence"),
        Column::text("target"),
        Column::blob("note"),
    ],
    1,
);

/// The one row of [`SYNC`].
const SYNC_ROW: i64 = 1;

/// Keeps the Stripe outbox's tables.
pub struct Stripe;

impl Projection for Stripe {
    fn name(&self) -> &'static str {
        "stripe-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[
            PENDING_EVENTS,
            CUSTOMERS,
            PENDING_INVOICES,
            STRIPE_INVOICES,
            REFUSED,
            SUBSCRIPTION_NEWEST,
            PENDING_PAYMENT_METHODS,
            SYNC,
            STRIPE_INVOICE_IDS,
            PENDING_VOIDS,
            PENDING_CREDIT_NOTES,
        ]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let sequence = record.header.sequence;
        match event {
            Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(issued))) => {
                let from = changes.get(&SYNC, &[Value::Int(SYNC_ROW)])?.map(|row| row.uint(1)).transpose()?;
                if from.is_none_or(|from| sequence >= from) {
                    let (subscription, period) = (issued.subscription_id, issued.invoice.period);
                    let since = Value::Int(record.header.recorded_at.as_micros());
                    changes.upsert(
                        &PENDING_INVOICES,
                        vec![
                            subscription.0.into(),
                            day(period),
                            Value::uint(sequence)?,
                            invoice_target(issued).into(),
                            since,
                        ],
                    )?;
                }
            }
            // A voided invoice not in Stripe yet is not sent; one in Stripe
            // is voided there.
            Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided))) => {
                changes.delete(&PENDING_INVOICES, vec![voided.subscription_id.0.into(), day(voided.period)])?;
                let stripe = stripe_id(changes, voided.invoice_id)?;
                changes.upsert(
                    &PENDING_VOIDS,
                    vec![
                        voided.invoice_id.into(),
                        stripe.into(),
                        Value::uint(sequence)?,
                        void_stream(voided.invoice_id).to_string().into(),
                    ],
                )?;
            }
            Some(LedgerEvent::Invoice(InvoiceEvent::CreditNoteIssued(note))) => {
                let stripe = stripe_id(changes, note.invoice_id)?;
                changes.upsert(
                    &PENDING_CREDIT_NOTES,
                    vec![
                        note.credit_note_id.into(),
                        note.invoice_id.into(),
                        stripe.into(),
                        Value::uint(sequence)?,
                        credit_note_stream(note.credit_note_id).to_string().into(),
                        super::encoded(note),
                    ],
                )?;
            }
            Some(LedgerEvent::Stripe(event)) => apply_stripe(changes, record, event)?,
            _ => {}
        }
        Ok(())
    }
}

fn apply_stripe(changes: &mut Changes<'_>, record: &Record, event: &StripeEvent) -> Result<(), DbError> {
    let sequence = record.header.sequence;
    match event {
        StripeEvent::StripeEventReceived(received) => {
            changes.upsert(&PENDING_EVENTS, vec![received.event_id.as_str().into(), Value::uint(sequence)?])?;
            if received.event_type.starts_with("customer.subscription.")
                && let Some(object) = &received.object_id
            {
                let key = [Value::from(object.as_str())];
                let stored = changes.get(&SUBSCRIPTION_NEWEST, &key)?.map(|row| row.int(1)).transpose()?;
                let newest = stored.map_or(received.created.as_micros(), |at| at.max(received.created.as_micros()));
                changes.upsert(&SUBSCRIPTION_NEWEST, vec![object.as_str().into(), Value::Int(newest)])?;
            }
        }
        StripeEvent::StripeEventHandled(handled) => {
            changes.delete(&PENDING_EVENTS, vec![handled.event_id.as_str().into()])?;
        }
        StripeEvent::StripeCustomerLinked(linked) => {
            changes.upsert(&CUSTOMERS, vec![linked.organization_id.0.into(), linked.customer_id.as_str().into()])?;
        }
        StripeEvent::StripeInvoiceCreated(created) => {
            let key = vec![created.subscription_id.0.into(), day(created.period)];
            changes.delete(&PENDING_INVOICES, key.clone())?;
            let mut row = key;
            row.push(created.stripe_invoice_id.as_str().into());
            changes.upsert(&STRIPE_INVOICES, row)?;
            linked(changes, created.invoice_id, &created.stripe_invoice_id)?;
        }
        StripeEvent::StripeInvoiceVoided(voided) => {
            changes.delete(&PENDING_VOIDS, vec![voided.invoice_id.into()])?;
        }
        StripeEvent::StripeCreditNoteCreated(created) => {
            changes.delete(&PENDING_CREDIT_NOTES, vec![created.credit_note_id.into()])?;
        }
        StripeEvent::StripeSyncRefused(refused) => {
            changes.upsert(
                &REFUSED,
                vec![
                    refused.target.as_str().into(),
                    Value::Int(refused.status.into()),
                    refused.message.as_str().into(),
                    Value::Int(record.header.recorded_at.as_micros()),
                ],
            )?;
        }
        StripeEvent::StripeSyncRetried(retried) => {
            changes.delete(&REFUSED, vec![retried.target.as_str().into()])?;
        }
        StripeEvent::StripePaymentMethodSaved(saved) => {
            changes.upsert(
                &PENDING_PAYMENT_METHODS,
                vec![
                    saved.organization_id.0.into(),
                    saved.customer_id.as_str().into(),
                    saved.setup_intent_id.as_str().into(),
                    payment_method_stream(saved.organization_id).to_string().into(),
                ],
            )?;
        }
        StripeEvent::StripeDefaultPaymentMethodSet(set) => {
            changes.delete(&PENDING_PAYMENT_METHODS, vec![set.organization_id.0.into()])?;
        }
        StripeEvent::StripeSyncStarted(started) => {
            if changes.get(&SYNC, &[Value::Int(SYNC_ROW)])?.is_none() {
                changes.upsert(&SYNC, vec![Value::Int(SYNC_ROW), Value::uint(started.from_sequence)?])?;
            }
        }
    }
    Ok(())
}

/// The sync target (and Stripe invoice stream) of an issued invoice: its
/// revision's (`domain::stripe::invoice_stream_of`).
pub fn invoice_target(issued: &InvoiceIssued) -> String {
    let (subscription, period) = (issued.subscription_id, issued.invoice.period);
    let revision = revision_of(subscription, period, issued.invoice_id).unwrap_or(0);
    invoice_stream_of(subscription, period, revision).to_string()
}

/// The Stripe invoice of a ledger invoice, if it is in Stripe.
fn stripe_id(changes: &mut Changes<'_>, invoice_id: uuid::Uuid) -> Result<Option<String>, DbError> {
    let row = changes.get(&STRIPE_INVOICE_IDS, &[invoice_id.into()])?;
    row.map(|row| row.text(1).map(str::to_owned)).transpose()
}

/// A ledger invoice is in Stripe: its link, and its void or credit notes
/// recorded before now know their Stripe invoice. An invoice's credit
/// notes are at most `CREDIT_NOTES_PER_INVOICE_MAX`.
fn linked(changes: &mut Changes<'_>, invoice_id: uuid::Uuid, stripe_invoice_id: &str) -> Result<(), DbError> {
    changes.upsert(&STRIPE_INVOICE_IDS, vec![invoice_id.into(), stripe_invoice_id.into()])?;
    if let Some(row) = changes.get(&PENDING_VOIDS, &[invoice_id.into()])? {
        let mut values = row.0;
        values[1] = stripe_invoice_id.into();
        changes.upsert(&PENDING_VOIDS, values)?;
    }
    for number in 1..=domain::billing::CREDIT_NOTES_PER_INVOICE_MAX {
        let id = domain::billing::credit_note_id(invoice_id, number);
        let Some(row) = changes.get(&PENDING_CREDIT_NOTES, &[id.into()])? else { break };
        let mut values = row.0;
        values[2] = stripe_invoice_id.into();
        changes.upsert(&PENDING_CREDIT_NOTES, values)?;
    }
    Ok(())
}

/// A voided invoice whose Stripe invoice is still to void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingVoid {
    pub invoice_id: uuid::Uuid,
    pub stripe_invoice_id: String,
    pub target: String,
}

/// Voids still to make in Stripe (of invoices in Stripe, after the sync's
/// start), leaving out those Stripe refused: at most `size` (capped at
/// [`super::PAGE_ITEMS_MAX`]), oldest first.
pub async fn pending_voids(db: &ReadModelDb, size: usize) -> Result<Vec<PendingVoid>, DbError> {
    let rows = db
        .query(
            "SELECT p.invoice_id, p.stripe_invoice_id, p.target FROM rm_stripe_pending_voids p \
             WHERE p.stripe_invoice_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target) \
             ORDER BY p.sequence LIMIT $1",
            vec![limit_param(page_limit(size))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingVoid {
                invoice_id: uuid(row, 0)?,
                stripe_invoice_id: row.text(1)?.to_owned(),
                target: row.text(2)?.to_owned(),
            })
        })
        .collect()
}

/// A credit note still to mirror to Stripe, with its invoice's Stripe id.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCreditNote {
    pub note: CreditNoteIssued,
    pub stripe_invoice_id: String,
    pub target: String,
}

/// Credit notes still to mirror to Stripe (of invoices in Stripe),
/// leaving out those Stripe refused: at most `size` (capped at
/// [`super::PAGE_ITEMS_MAX`]), oldest first.
pub async fn pending_credit_notes(db: &ReadModelDb, size: usize) -> Result<Vec<PendingCreditNote>, DbError> {
    let rows = db
        .query(
            "SELECT p.note, p.stripe_invoice_id, p.target FROM rm_stripe_pending_credit_notes p \
             WHERE p.stripe_invoice_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target) \
             ORDER BY p.sequence LIMIT $1",
            vec![limit_param(page_limit(size))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingCreditNote {
                note: decoded(row, 0)?,
                stripe_invoice_id: row.text(1)?.to_owned(),
                target: row.text(2)?.to_owned(),
            })
        })
        .collect()
}

/// Received webhook events not handled yet, oldest first, at most `size`
/// (capped at [`super::PAGE_ITEMS_MAX`]).
pub async fn pending_events(db: &ReadModelDb, size: usize) -> Result<Vec<String>, DbError> {
    let rows = db
        .query(
            "SELECT event_id FROM rm_stripe_pending_events ORDER BY sequence LIMIT $1",
            vec![limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(|row| row.text(0).map(str::to_owned)).collect()
}

/// An organization's Stripe customer.
pub async fn customer(db: &ReadModelDb, organization_id: OrganizationId) -> Result<Option<String>, DbError> {
    let row = db
        .query_opt(
            "SELECT customer_id FROM rm_stripe_customers WHERE organization_id = $1",
            vec![organization_id.0.into()],
        )
        .await?;
    row.map(|row| row.text(0).map(str::to_owned)).transpose()
}

/// Issued invoices still to send to Stripe, in (subscription, month)
/// order, leaving out those Stripe refused for good and those issued before
/// the sync began: at most `size` (capped at [`super::PAGE_ITEMS_MAX`]).
pub async fn pending_invoices(db: &ReadModelDb, size: usize) -> Result<Vec<InvoiceIssued>, DbError> {
    let rows = db
        .query(
            "SELECT i.issued FROM rm_stripe_pending_invoices p \
             JOIN rm_invoices i ON i.subscription_id = p.subscription_id AND i.period = p.period \
             WHERE p.sequence >= COALESCE((SELECT from_sequence FROM rm_stripe_sync WHERE id = 1), 0) \
             AND NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target) \
             ORDER BY p.subscription_id, p.period LIMIT $1",
            vec![limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(|row| decoded(row, 0)).collect()
}

/// Saved payment methods still to become their customer's default, in
/// organization order, leaving out those Stripe refused: at most `size`
/// (capped at [`super::PAGE_ITEMS_MAX`]).
pub async fn pending_payment_methods(db: &ReadModelDb, size: usize) -> Result<Vec<StripePaymentMethodSaved>, DbError> {
    let rows = db
        .query(
            "SELECT p.organization_id, p.customer_id, p.setup_intent_id FROM rm_stripe_pending_payment_methods p \
             WHERE NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target) \
             ORDER BY p.organization_id LIMIT $1",
            vec![limit_param(page_limit(size))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StripePaymentMethodSaved {
                organization_id: OrganizationId(uuid(row, 0)?),
                customer_id: row.text(1)?.to_owned(),
                setup_intent_id: row.text(2)?.to_owned(),
            })
        })
        .collect()
}

/// The Stripe invoice of an issued invoice.
pub async fn stripe_invoice(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
    period: NaiveDate,
) -> Result<Option<String>, DbError> {
    let row = db
        .query_opt(
            "SELECT stripe_invoice_id FROM rm_stripe_invoices WHERE subscription_id = $1 AND period = $2",
            vec![subscription_id.0.into(), day(period)],
        )
        .await?;
    row.map(|row| row.text(0).map(str::to_owned)).transpose()
}

/// Stripe's refusal of a sync target, if it refused it for good.
pub async fn refused(db: &ReadModelDb, target: &str) -> Result<Option<StripeSyncRefused>, DbError> {
    let row = db
        .query_opt("SELECT target, status, message FROM rm_stripe_refused WHERE target = $1", vec![target.into()])
        .await?;
    row.map(|row| {
        Ok(StripeSyncRefused {
            target: row.text(0)?.to_owned(),
            status: u16::try_from(row.int(1)?).map_err(|_| DbError::Decode("a status is not a u16".into()))?,
            message: row.text(2)?.to_owned(),
        })
    })
    .transpose()
}

/// The newest `created` of a Stripe subscription's events received.
pub async fn subscription_newest(db: &ReadModelDb, object_id: &str) -> Result<Option<Timestamp>, DbError> {
    let row = db
        .query_opt("SELECT created FROM rm_stripe_subscription_newest WHERE object_id = $1", vec![object_id.into()])
        .await?;
    row.map(|row| row.int(0).map(Timestamp::from_micros)).transpose()
}

/// Where the outbound sync began, once it has.
pub async fn sync_from(db: &ReadModelDb) -> Result<Option<u64>, DbError> {
    let row = db.query_opt("SELECT from_sequence FROM rm_stripe_sync WHERE id = 1", vec![]).await?;
    row.map(|row| row.uint(0)).transpose()
}

/// A sync Stripe refused for good, with when the refusal was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedSync {
    pub target: String,
    pub status: u16,
    pub message: String,
    pub refused_at: Timestamp,
}

/// Refused syncs by target, after `after` (a page's last target), at most
/// `size` (capped at [`super::PAGE_ITEMS_MAX`]).
pub async fn refused_page(db: &ReadModelDb, after: &str, size: usize) -> Result<Vec<RefusedSync>, DbError> {
    let target = super::text_order(db, "target");
    let sql = format!(
        "SELECT target, status, message, refused_at FROM rm_stripe_refused WHERE {target} > $1 \
         ORDER BY {target} LIMIT $2"
    );
    let rows = db.query(&sql, vec![after.into(), limit_param(page_limit(size))]).await?;
    rows.iter()
        .map(|row| {
            Ok(RefusedSync {
                target: row.text(0)?.to_owned(),
                status: u16::try_from(row.int(1)?).map_err(|_| DbError::Decode("a status is not a u16".into()))?,
                message: row.text(2)?.to_owned(),
                refused_at: Timestamp::from_micros(row.int(3)?),
            })
        })
        .collect()
}

/// An issued invoice still waiting to go to Stripe (not refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingInvoice {
    pub target: String,
    pub subscription_id: SubscriptionId,
    pub period: NaiveDate,
    /// When its `InvoiceIssued` was recorded.
    pub pending_since: Timestamp,
}

/// Invoices issued after the sync's start, not refused, and still not in
/// Stripe although issued before `before`, by target after `after`, at
/// most `size` (capped at [`super::PAGE_ITEMS_MAX`]).
pub async fn waiting_invoices(
    db: &ReadModelDb,
    before: Timestamp,
    after: &str,
    size: usize,
) -> Result<Vec<WaitingInvoice>, DbError> {
    let target = super::text_order(db, "p.target");
    let sql = format!(
        "SELECT p.target, p.subscription_id, p.period, p.issued_at FROM rm_stripe_pending_invoices p \
         WHERE p.sequence >= COALESCE((SELECT from_sequence FROM rm_stripe_sync WHERE id = 1), 0) \
         AND NOT EXISTS (SELECT 1 FROM rm_stripe_refused r WHERE r.target = p.target) \
         AND p.issued_at < $1 AND {target} > $2 ORDER BY {target} LIMIT $3"
    );
    let params = vec![Value::Int(before.as_micros()), after.into(), limit_param(page_limit(size))];
    let rows = db.query(&sql, params).await?;
    rows.iter()
        .map(|row| {
            Ok(WaitingInvoice {
                target: row.text(0)?.to_owned(),
                subscription_id: SubscriptionId(uuid(row, 1)?),
                period: super::parse_day(row, 2)?,
                pending_since: Timestamp::from_micros(row.int(3)?),
            })
        })
        .collect()
}

/// The Stripe invoice of a ledger invoice (in force or voided), by the
/// ledger invoice's id.
pub async fn stripe_invoice_of(db: &ReadModelDb, invoice_id: uuid::Uuid) -> Result<Option<String>, DbError> {
    let row = db
        .query_opt("SELECT stripe_invoice_id FROM rm_stripe_invoice_ids WHERE invoice_id = $1", vec![invoice_id.into()])
        .await?;
    row.map(|row| row.text(0).map(str::to_owned)).transpose()
}

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
use domain::billing::{InvoiceEvent, InvoiceIssued};
use domain::event::LedgerEvent;
use domain::record::Record;
use domain::stripe::{StripeEvent, StripePaymentMethodSaved, StripeSyncRefused, invoice_stream, payment_method_stream};
use domain::{OrganizationId, SubscriptionId, Timestamp};

use super::{day, decoded, limit_param, page_limit, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};

pub const PENDING_EVENTS: Table =
    Table::new("rm_stripe_pending_events", &[Column::text("event_id"), Column::int("sequence")], 1);
pub const CUSTOMERS: Table =
    Table::new("rm_stripe_customers", &[Column::blob("organization_id"), Column::text("customer_id")], 1);
pub const PENDING_INVOICES: Table = Table::new(
    "rm_stripe_pending_invoices",
    &[Column::blob("subscription_id"), Column::text("period"), Column::int("sequence"), Column::text("target")],
    2,
);
pub const STRIPE_INVOICES: Table = Table::new(
    "rm_stripe_invoices",
    &[Column::blob("subscription_id"), Column::text("period"), Column::text("stripe_invoice_id")],
    2,
);
pub const REFUSED: Table =
    Table::new("rm_stripe_refused", &[Column::text("target"), Column::int("status"), Column::text("message")], 1);
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
                    changes.upsert(
                        &PENDING_INVOICES,
                        vec![
                            subscription.0.into(),
                            day(period),
                            Value::uint(sequence)?,
                            invoice_stream(subscription, period).to_string().into(),
                        ],
                    )?;
                }
            }
            // A voided invoice not in Stripe yet is not sent.
            Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided))) => {
                changes.delete(&PENDING_INVOICES, vec![voided.subscription_id.0.into(), day(voided.period)])?;
            }
            Some(LedgerEvent::Stripe(event)) => apply_stripe(changes, sequence, event)?,
            _ => {}
        }
        Ok(())
    }
}

fn apply_stripe(changes: &mut Changes<'_>, sequence: u64, event: &StripeEvent) -> Result<(), DbError> {
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
        }
        StripeEvent::StripeSyncRefused(refused) => {
            changes.upsert(
                &REFUSED,
                vec![
                    refused.target.as_str().into(),
                    Value::Int(refused.status.into()),
                    refused.message.as_str().into(),
                ],
            )?;
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

//! Invoice payment status ("invoice-payments-v1"): each issued invoice's
//! [`PaymentStatus`] (open, paid, past due), derived by
//! `domain::payment`'s rule from the events the ledger already records
//! (`InvoiceIssued`, the sync's `StripeInvoiceCreated`, the reactor's
//! `PaymentFailed`/`PaymentSucceeded`), and each organization's payment
//! method (`stripe` once a Checkout saved one, else `invoice`).
//!
//! A projection of its own, with its own checkpoint: a server that did not
//! have it starts it from sequence 1 and catches up, and the issued
//! invoices' rows (`rm_invoices`) stay as they were. The fold is written
//! once ([`apply`]) over [`PaymentRows`], for the tables
//! ([`InvoicePayments`]) and for `LedgerState`'s [`Payments`] (the oracle
//! the tables are tested against and `replay as-of`'s source), so both
//! answer the same.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use domain::billing::InvoiceEvent;
use domain::event::LedgerEvent;
use domain::payment::{self, PaymentOutcome, PaymentStatus};
use domain::record::Record;
use domain::stripe::StripeEvent;
use domain::subscription::SubscriptionEvent;
use domain::{Money, OrganizationId, SubscriptionId};
use serde::{Deserialize, Serialize};

use super::{day, decoded, encoded, limit_param};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Row, Table};

pub const INVOICE_PAYMENTS: Table = Table::new(
    "rm_invoice_payments",
    &[
        Column::blob("subscription_id"),
        Column::text("period"),
        Column::blob("organization_id"),
        Column::text("status"),
        Column::blob("payment"),
    ],
    2,
);
pub const PAYMENT_REFERENCES: Table =
    Table::new("rm_payment_references", &[Column::text("reference"), Column::blob("payment")], 1);
pub const PAYMENT_METHODS: Table =
    Table::new("rm_payment_methods", &[Column::blob("organization_id"), Column::text("method")], 1);

/// The most invoices one status query returns: as
/// [`super::invoices::INVOICES_PER_QUERY_MAX`], a thousand months.
pub const PAYMENTS_PER_QUERY_MAX: usize = super::invoices::INVOICES_PER_QUERY_MAX;

/// The payment method of an organization whose Checkout saved one in
/// Stripe: its invoices are charged automatically.
pub const METHOD_STRIPE: &str = "stripe";
/// Without a saved payment method: the invoice is paid as sent.
pub const METHOD_INVOICE: &str = "invoice";

/// One issued invoice and where its payment stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoicePayment {
    pub subscription_id: SubscriptionId,
    pub period: NaiveDate,
    pub organization_id: OrganizationId,
    pub invoice_id: uuid::Uuid,
    pub total: Money,
    /// The Stripe invoice it was sent as, once the sync created it.
    pub stripe_invoice_id: Option<String>,
    /// The last reported charge of that Stripe invoice.
    pub outcome: Option<PaymentOutcome>,
    pub status: PaymentStatus,
    /// The total of its credit notes (at most `total`).
    pub credited: Money,
}

/// What is known of one Stripe invoice (a payment `reference`): the ledger
/// invoice it was made from, and its last reported charge. Either may come
/// first (a webhook can be handled before the sync records the link).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub invoice: Option<(SubscriptionId, NaiveDate)>,
    pub outcome: Option<PaymentOutcome>,
}

/// Where the fold keeps its rows: the tables, or memory.
pub trait PaymentRows {
    type Error;
    fn invoice(&mut self, key: (SubscriptionId, NaiveDate)) -> Result<Option<InvoicePayment>, Self::Error>;
    fn put_invoice(&mut self, payment: InvoicePayment) -> Result<(), Self::Error>;
    fn reference(&mut self, reference: &str) -> Result<Option<Reference>, Self::Error>;
    fn put_reference(&mut self, reference: &str, row: Reference) -> Result<(), Self::Error>;
    fn put_method(&mut self, organization_id: OrganizationId, method: &'static str) -> Result<(), Self::Error>;
}

/// The fold: one record's event into `rows`.
pub fn apply<R: PaymentRows>(rows: &mut R, event: Option<&LedgerEvent>) -> Result<(), R::Error> {
    match event {
        Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(issued))) => {
            let key = (issued.subscription_id, issued.invoice.period);
            // A month issued again keeps its Stripe invoice and outcome;
            // one billed again after a void starts afresh.
            let prior = rows.invoice(key)?.filter(|p| p.status != PaymentStatus::Void);
            let (stripe_invoice_id, outcome) = prior.map(|p| (p.stripe_invoice_id, p.outcome)).unwrap_or_default();
            let total = issued.invoice.total;
            rows.put_invoice(InvoicePayment {
                subscription_id: issued.subscription_id,
                period: issued.invoice.period,
                organization_id: issued.organization_id,
                invoice_id: issued.invoice_id,
                total,
                stripe_invoice_id,
                outcome,
                status: payment::status(total, outcome),
                credited: Money::zero(total.currency()),
            })
        }
        Some(LedgerEvent::Invoice(InvoiceEvent::CreditNoteIssued(note))) => {
            let Some(invoice) = rows.invoice((note.subscription_id, note.period))? else { return Ok(()) };
            if invoice.invoice_id != note.invoice_id {
                return Ok(());
            }
            // Decided at most the total: no overflow.
            let credited = invoice.credited.checked_add(note.total).unwrap_or(invoice.credited);
            let outcome = invoice.outcome;
            rows.put_invoice(with_outcome(InvoicePayment { credited, ..invoice }, outcome))
        }
        Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided))) => {
            let Some(invoice) = rows.invoice((voided.subscription_id, voided.period))? else { return Ok(()) };
            if invoice.invoice_id != voided.invoice_id {
                return Ok(());
            }
            rows.put_invoice(InvoicePayment { status: PaymentStatus::Void, ..invoice })
        }
        Some(LedgerEvent::Stripe(StripeEvent::StripeInvoiceCreated(created))) => {
            let key = (created.subscription_id, created.period);
            let mut reference = rows.reference(&created.stripe_invoice_id)?.unwrap_or_default();
            reference.invoice = Some(key);
            let outcome = reference.outcome;
            rows.put_reference(&created.stripe_invoice_id, reference)?;
            let Some(invoice) = rows.invoice(key)? else { return Ok(()) };
            let stripe_invoice_id = Some(created.stripe_invoice_id.clone());
            rows.put_invoice(InvoicePayment { stripe_invoice_id, ..with_outcome(invoice, outcome) })
        }
        Some(LedgerEvent::Stripe(
            StripeEvent::StripePaymentMethodSaved(domain::stripe::StripePaymentMethodSaved { organization_id, .. })
            | StripeEvent::StripeDefaultPaymentMethodSet(domain::stripe::StripeDefaultPaymentMethodSet {
                organization_id,
                ..
            }),
        )) => rows.put_method(*organization_id, METHOD_STRIPE),
        Some(LedgerEvent::Subscription(SubscriptionEvent::PaymentFailed(failed))) => {
            reported(rows, &failed.reference, PaymentOutcome::Failed { at: failed.at })
        }
        Some(LedgerEvent::Subscription(SubscriptionEvent::PaymentSucceeded(paid))) => {
            reported(rows, &paid.reference, PaymentOutcome::Paid { at: paid.at })
        }
        _ => Ok(()),
    }
}

/// The invoice with its Stripe invoice's last outcome; a voided invoice
/// stays void.
fn with_outcome(invoice: InvoicePayment, outcome: Option<PaymentOutcome>) -> InvoicePayment {
    let owed = invoice.total.checked_sub(invoice.credited).unwrap_or(invoice.total);
    let status = match invoice.status {
        PaymentStatus::Void => PaymentStatus::Void,
        _ => payment::status(owed, outcome),
    };
    InvoicePayment { outcome, status, ..invoice }
}

/// A charge of the Stripe invoice `reference` reported.
fn reported<R: PaymentRows>(rows: &mut R, reference: &str, next: PaymentOutcome) -> Result<(), R::Error> {
    let mut row = rows.reference(reference)?.unwrap_or_default();
    let outcome = PaymentOutcome::then(row.outcome, next);
    row.outcome = Some(outcome);
    let key = row.invoice;
    rows.put_reference(reference, row)?;
    let Some(invoice) = key.map(|key| rows.invoice(key)).transpose()?.flatten() else { return Ok(()) };
    rows.put_invoice(with_outcome(invoice, Some(outcome)))
}

/// The fold's rows in memory: `LedgerState`'s (so `replay` derives the
/// statuses the server's tables hold). Not part of `LedgerState`'s
/// encoding or digest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payments {
    pub invoices: BTreeMap<(SubscriptionId, NaiveDate), InvoicePayment>,
    pub references: BTreeMap<String, Reference>,
    pub methods: BTreeMap<OrganizationId, &'static str>,
}

impl Payments {
    /// Applies one record's event (see [`apply`]).
    pub fn apply(&mut self, event: Option<&LedgerEvent>) {
        let Ok(()) = apply(self, event);
    }

    /// The organization's payment method.
    pub fn method(&self, organization_id: OrganizationId) -> &'static str {
        self.methods.get(&organization_id).copied().unwrap_or(METHOD_INVOICE)
    }
}

impl PaymentRows for Payments {
    type Error = std::convert::Infallible;

    fn invoice(&mut self, key: (SubscriptionId, NaiveDate)) -> Result<Option<InvoicePayment>, Self::Error> {
        Ok(self.invoices.get(&key).cloned())
    }

    fn put_invoice(&mut self, payment: InvoicePayment) -> Result<(), Self::Error> {
        self.invoices.insert((payment.subscription_id, payment.period), payment);
        Ok(())
    }

    fn reference(&mut self, reference: &str) -> Result<Option<Reference>, Self::Error> {
        Ok(self.references.get(reference).cloned())
    }

    fn put_reference(&mut self, reference: &str, row: Reference) -> Result<(), Self::Error> {
        self.references.insert(reference.to_owned(), row);
        Ok(())
    }

    fn put_method(&mut self, organization_id: OrganizationId, method: &'static str) -> Result<(), Self::Error> {
        self.methods.insert(organization_id, method);
        Ok(())
    }
}

impl PaymentRows for Changes<'_> {
    type Error = DbError;

    fn invoice(
        &mut self,
        (subscription, period): (SubscriptionId, NaiveDate),
    ) -> Result<Option<InvoicePayment>, DbError> {
        let row = self.get(&INVOICE_PAYMENTS, &[subscription.0.into(), day(period)])?;
        row.map(|row| decoded(&row, 4)).transpose()
    }

    fn put_invoice(&mut self, payment: InvoicePayment) -> Result<(), DbError> {
        self.upsert(
            &INVOICE_PAYMENTS,
            vec![
                payment.subscription_id.0.into(),
                day(payment.period),
                payment.organization_id.0.into(),
                payment.status.as_str().into(),
                encoded(&payment),
            ],
        )
    }

    fn reference(&mut self, reference: &str) -> Result<Option<Reference>, DbError> {
        let row = self.get(&PAYMENT_REFERENCES, &[reference.into()])?;
        row.map(|row| decoded(&row, 1)).transpose()
    }

    fn put_reference(&mut self, reference: &str, row: Reference) -> Result<(), DbError> {
        self.upsert(&PAYMENT_REFERENCES, vec![reference.into(), encoded(&row)])
    }

    fn put_method(&mut self, organization_id: OrganizationId, method: &'static str) -> Result<(), DbError> {
        self.upsert(&PAYMENT_METHODS, vec![organization_id.0.into(), method.into()])
    }
}

/// Keeps [`INVOICE_PAYMENTS`], [`PAYMENT_REFERENCES`] and [`PAYMENT_METHODS`].
pub struct InvoicePayments;

impl Projection for InvoicePayments {
    fn name(&self) -> &'static str {
        "invoice-payments-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[INVOICE_PAYMENTS, PAYMENT_REFERENCES, PAYMENT_METHODS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        _record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        Ok(apply(changes, event)?)
    }
}

fn decode_all(rows: &[Row]) -> Result<Vec<InvoicePayment>, DbError> {
    rows.iter().map(|row| decoded(row, 0)).collect()
}

/// One invoice's payment.
pub async fn invoice(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
    period: NaiveDate,
) -> Result<Option<InvoicePayment>, DbError> {
    let row = db
        .query_opt(
            "SELECT payment FROM rm_invoice_payments WHERE subscription_id = $1 AND period = $2",
            vec![subscription_id.0.into(), day(period)],
        )
        .await?;
    row.map(|row| decoded(&row, 0)).transpose()
}

/// A subscription's invoices not paid (nor voided), oldest first, at most
/// [`PAYMENTS_PER_QUERY_MAX`] (by its primary key).
pub async fn due_of_subscription(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
) -> Result<Vec<InvoicePayment>, DbError> {
    let rows = db
        .query(
            "SELECT payment FROM rm_invoice_payments WHERE subscription_id = $1 AND status IN ($2, $3) ORDER BY \
             period LIMIT $4",
            vec![
                subscription_id.0.into(),
                PaymentStatus::Open.as_str().into(),
                PaymentStatus::PastDue.as_str().into(),
                limit_param(PAYMENTS_PER_QUERY_MAX),
            ],
        )
        .await?;
    decode_all(&rows)
}

/// An organization's invoices' payments, at most
/// [`PAYMENTS_PER_QUERY_MAX`] (by `rm_invoice_payments_by_organization`).
pub async fn of_organization(
    db: &ReadModelDb,
    organization_id: OrganizationId,
) -> Result<Vec<InvoicePayment>, DbError> {
    let rows = db
        .query(
            "SELECT payment FROM rm_invoice_payments WHERE organization_id = $1 ORDER BY period, subscription_id \
             LIMIT $2",
            vec![organization_id.0.into(), limit_param(PAYMENTS_PER_QUERY_MAX)],
        )
        .await?;
    decode_all(&rows)
}

/// The organization's payment method: [`METHOD_STRIPE`] or [`METHOD_INVOICE`].
pub async fn method(db: &ReadModelDb, organization_id: OrganizationId) -> Result<&'static str, DbError> {
    let row = db
        .query_opt("SELECT method FROM rm_payment_methods WHERE organization_id = $1", vec![organization_id.0.into()])
        .await?;
    Ok(match row.as_ref().map(|row| row.text(0)).transpose()? {
        Some(METHOD_STRIPE) => METHOD_STRIPE,
        _ => METHOD_INVOICE,
    })
}

/// The invoices of a month (in force, or the last voided when its month
/// is not billed again yet), by subscription, at most `size` (by
/// `rm_invoice_payments_by_period`).
pub async fn of_period(db: &ReadModelDb, period: NaiveDate, size: usize) -> Result<Vec<InvoicePayment>, DbError> {
    let rows = db
        .query(
            "SELECT payment FROM rm_invoice_payments WHERE period = $1 ORDER BY subscription_id LIMIT $2",
            vec![day(period), limit_param(size)],
        )
        .await?;
    decode_all(&rows)
}

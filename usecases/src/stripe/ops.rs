//! The billing team's view of the Stripe sync (issue 15 item 2): the
//! syncs Stripe refused or that are stuck ([`syncs`]), a refused sync
//! tried again ([`retry`]), and a month's reconciliation of the ledger's
//! invoices against Stripe's ([`reconcile`]).
//!
//! A retry is a fact in the log (`StripeSyncRetried`, on the refused
//! target's own stream, after its refusal, attributed to the staff member
//! in its metadata): the outbox leaves out refused targets, and the retry
//! takes the target off that list, so the sync picks it up again. It is
//! decided on the target's stream as the log holds it and appended
//! expecting its revision, so two retries at once append one.
//!
//! The reconciliation reads both sides as they are now: the month's
//! invoices from the read models, Stripe's from Stripe's invoice search
//! (`metadata['ledger_period']`, which the sync sets on every invoice),
//! a page at a time, at most [`REPORT_INVOICES_MAX`] invoices per side.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use domain::event::StoredEvent;
use domain::payment::PaymentStatus;
use domain::staff::StaffPermission;
use domain::stripe::{RETRIES_PER_TARGET_MAX, StripeEvent, StripeSyncRetried};
use domain::{Metadata, StreamId, Timestamp};
use projections::models::{invoices, payments, stripe as stripe_model};
use rust_decimal::Decimal;
use serde::Serialize;
use store::{Command, ExpectedRevision, NewEvent, Rejection};
use utoipa::ToSchema;

use super::Stripe;
use super::sync::TARGET_STREAM_EVENTS_MAX;
use crate::command::{READ_YOUR_WRITES_WAIT, new_event_id};
use crate::queries::page_size;
use crate::{Caller, Error, Ledger};

/// An invoice still not in Stripe this long after it was issued is stuck:
/// the sync tries each invoice within seconds, and its backoff reaches 15
/// minutes only after about 17 minutes of failures.
pub const STUCK_AFTER: Duration = Duration::from_secs(30 * 60);
/// The most invoices one reconciliation report reads per side.
pub const REPORT_INVOICES_MAX: usize = 1_000;
/// Invoices per Stripe search call (Stripe's own maximum).
pub const SEARCH_PAGE_INVOICES: i64 = 100;
/// The longest sync target accepted, in bytes (a stream id).
pub const TARGET_BYTES_MAX: usize = 200;
/// The categories of the sync's targets, the only ones a retry accepts.
const TARGET_CATEGORIES: [&str; 4] =
    ["stripe-invoice/", "stripe-void/", "stripe-credit-note/", "stripe-payment-method/"];

/// A sync Stripe refused for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusedSyncView {
    /// The stream of what was being synced (`stripe-invoice/{subscription}:{YYYY-MM}`, …).
    pub target: String,
    /// Stripe's HTTP status (0: Stripe's answer could not be used).
    pub status: u16,
    /// Stripe's reason.
    pub reason: String,
    /// When the refusal was recorded (RFC 3339).
    pub refused_at: String,
}

/// An invoice waiting for Stripe longer than [`STUCK_AFTER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StuckSyncView {
    pub target: String,
    pub subscription_id: uuid::Uuid,
    /// `YYYY-MM`.
    pub period: String,
    /// When its invoice was issued (RFC 3339).
    pub pending_since: String,
    /// The sync's last error, when this node syncs and is backing off
    /// from it (absent otherwise: the sync may not have tried it yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One page of refused and of stuck syncs, each by target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncsPage {
    pub refused: Vec<RefusedSyncView>,
    pub stuck: Vec<StuckSyncView>,
    /// Pending longer than this many seconds counts as stuck.
    pub stuck_after_seconds: u64,
    /// Pass as `after` for the next page (absent: this was the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The refused syncs and the stuck ones, by target after `after`, at most
/// `limit` of each (the page's default and bounds).
pub async fn syncs(
    ledger: &Ledger,
    caller: &Caller,
    stripe: &Stripe,
    after: Option<&str>,
    limit: Option<usize>,
) -> Result<SyncsPage, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let size = page_size(limit)?;
    let after = after.unwrap_or_default();
    if after.len() > TARGET_BYTES_MAX {
        return Err(Error::Validation(format!("after is at most {TARGET_BYTES_MAX} bytes")));
    }
    let db = &ledger.models.db;
    let mut refused = stripe_model::refused_page(db, after, size + 1).await?;
    let stuck_before = Timestamp::from_micros(
        ledger.now().as_micros().saturating_sub(i64::try_from(STUCK_AFTER.as_micros()).unwrap_or(i64::MAX)),
    );
    let mut stuck = stripe_model::waiting_invoices(db, stuck_before, after, size + 1).await?;
    let more = refused.len() > size || stuck.len() > size;
    refused.truncate(size);
    stuck.truncate(size);
    // The next page starts after the smaller of the two last targets, so
    // neither list skips a target.
    let last = [refused.last().map(|r| r.target.clone()), stuck.last().map(|s| s.target.clone())];
    let next = more.then(|| last.into_iter().flatten().min()).flatten();
    let refused = refused.into_iter().filter(|r| next.as_ref().is_none_or(|n| r.target <= *n));
    let stuck = stuck.into_iter().filter(|s| next.as_ref().is_none_or(|n| s.target <= *n));
    Ok(SyncsPage {
        refused: refused
            .map(|r| RefusedSyncView {
                target: r.target,
                status: r.status,
                reason: r.message,
                refused_at: r.refused_at.to_rfc3339(),
            })
            .collect(),
        stuck: stuck
            .map(|s| StuckSyncView {
                last_error: stripe.last_error(&s.target),
                target: s.target,
                subscription_id: s.subscription_id.0,
                period: s.period.format("%Y-%m").to_string(),
                pending_since: s.pending_since.to_rfc3339(),
            })
            .collect(),
        stuck_after_seconds: STUCK_AFTER.as_secs(),
        next,
    })
}

/// A retry, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRetry {
    pub target: String,
    /// The log sequence of the `StripeSyncRetried`.
    pub sequence: u64,
    /// When it was recorded (RFC 3339).
    pub retried_at: String,
    /// Who asked (the record's actor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `true` when this request found the refusal already retried and
    /// appended nothing.
    pub already_retried: bool,
}

/// A sync target as a stream the sync writes to; refused otherwise.
fn target_stream(target: &str) -> Result<StreamId, Error> {
    let known = TARGET_CATEGORIES.iter().any(|category| target.starts_with(category));
    if target.len() > TARGET_BYTES_MAX || !known {
        return Err(Error::Validation(format!(
            "target must be a sync target ({}…), at most {TARGET_BYTES_MAX} bytes",
            TARGET_CATEGORIES.join("…, ")
        )));
    }
    StreamId::new(target).map_err(|e| Error::Validation(format!("target: {e}")))
}

/// Where a target's stream stands: its revision, its last refusal or
/// retry (with the record), and how many retries it holds.
struct TargetStream {
    revision: u64,
    last: Option<(bool, domain::record::Record)>,
    retries: usize,
}

async fn read_target(ledger: &Ledger, stream_id: &StreamId) -> Result<TargetStream, Error> {
    let records = ledger.log.read_stream(stream_id, 1, TARGET_STREAM_EVENTS_MAX).await?;
    let mut stream = TargetStream { revision: 0, last: None, retries: 0 };
    for record in records {
        let payload = record.event_bytes().unwrap_or_default();
        let event = StripeEvent::decode(&record.header.event_type, record.header.schema_version, payload)
            .map_err(|e| Error::Internal(format!("{stream_id} at {}: {e}", record.header.sequence)))?;
        stream.revision = record.header.stream_revision;
        match event {
            Some(StripeEvent::StripeSyncRefused(_)) => stream.last = Some((false, record)),
            Some(StripeEvent::StripeSyncRetried(_)) => {
                stream.retries += 1;
                stream.last = Some((true, record));
            }
            // The outcome: nothing is refused any more.
            Some(_) => stream.last = None,
            None => {}
        }
    }
    Ok(stream)
}

/// Tries the refused sync `target` again: `StripeSyncRetried` appended by
/// `metadata`'s actor, and the sync woken. A target whose refusal was
/// retried already is answered with that retry (nothing appended); one
/// not refused is `sync_not_refused`, one retried
/// [`RETRIES_PER_TARGET_MAX`] times `sync_retries_exhausted` (409s).
pub async fn retry(
    ledger: &Ledger,
    caller: &Caller,
    stripe: &Stripe,
    metadata: Metadata,
    target: &str,
) -> Result<SyncRetry, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let stream_id = target_stream(target)?;
    let stream = read_target(ledger, &stream_id).await?;
    match stream.last {
        None => {
            return Err(Error::conflict(
                "sync_not_refused",
                format!("Stripe has not refused {target}: nothing to retry"),
            ));
        }
        Some((true, record)) => return Ok(answer(target, &record, true)),
        Some((false, _)) if stream.retries >= RETRIES_PER_TARGET_MAX => {
            return Err(Error::conflict(
                "sync_retries_exhausted",
                format!("{target} was retried {RETRIES_PER_TARGET_MAX} times; fix the cause in Stripe first"),
            ));
        }
        Some((false, _)) => {}
    }
    let event: StripeEvent = StripeSyncRetried { target: target.to_owned() }.into();
    let command = Command {
        stream_id: stream_id.clone(),
        expected: ExpectedRevision::Exactly(stream.revision),
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), &metadata)],
    };
    let mine = match ledger.log.append_one(command).await? {
        Ok(appended) => {
            ledger.acknowledged.record_command(appended.last_sequence);
            let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
            let _ = crate::acknowledged::wait_until(ledger, appended.last_sequence, deadline).await;
            stripe.sync.notify_one();
            Some(appended.last_sequence)
        }
        // Another retry, or the sync, came first: answer from the stream.
        Err(Rejection::WrongRevision { .. }) => None,
        Err(other) => return Err(Error::Internal(other.to_string())),
    };
    let stream = read_target(ledger, &stream_id).await?;
    match stream.last {
        Some((true, record)) => Ok(answer(target, &record, mine != Some(record.header.sequence))),
        // The sync took the target up and synced it already.
        _ if mine.is_some() => Ok(SyncRetry {
            target: target.to_owned(),
            sequence: mine.unwrap_or_default(),
            retried_at: ledger.now().to_rfc3339(),
            actor: metadata.actor,
            already_retried: false,
        }),
        _ => Err(Error::conflict("sync_not_refused", format!("{target} changed meanwhile: nothing retried"))),
    }
}

fn answer(target: &str, record: &domain::record::Record, already: bool) -> SyncRetry {
    SyncRetry {
        target: target.to_owned(),
        sequence: record.header.sequence,
        retried_at: record.header.recorded_at.to_rfc3339(),
        actor: record.metadata.as_deref().and_then(|bytes| Metadata::decode(bytes).ok()).and_then(|m| m.actor),
        already_retried: already,
    }
}

/// A difference between the ledger's invoice and Stripe's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReconciliationDifference)]
pub enum Difference {
    MissingInStripe,
    MissingInLedger,
    AmountDiffers,
    StatusDiffers,
    CustomerDiffers,
    CreditNotesDiffer,
}

impl Difference {
    pub fn as_str(self) -> &'static str {
        match self {
            Difference::MissingInStripe => "missing_in_stripe",
            Difference::MissingInLedger => "missing_in_ledger",
            Difference::AmountDiffers => "amount_differs",
            Difference::StatusDiffers => "status_differs",
            Difference::CustomerDiffers => "customer_differs",
            Difference::CreditNotesDiffer => "credit_notes_differ",
        }
    }
}

/// One side's view of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSide {
    /// The total, two decimals.
    pub total: String,
    /// `open`, `paid` or `void` (Stripe's own status on Stripe's side:
    /// `draft` and `uncollectible` too).
    pub status: String,
    /// The Stripe customer (the ledger's: its organization's link).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The total of its credit notes, two decimals.
    pub credited: String,
}

/// One invoice of the month, on either side or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledInvoice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_invoice_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<InvoiceSide>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe: Option<InvoiceSide>,
    /// Empty: the invoice matches.
    pub differences: Vec<Difference>,
}

/// A month's reconciliation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    /// `YYYY-MM`.
    pub period: String,
    pub matching: usize,
    pub differing: usize,
    /// `true` when a side held more than the report's maximum invoices:
    /// the report covers only the first of them.
    pub truncated: bool,
    /// Ledger invoices first (by invoice id), then Stripe's missing in the
    /// ledger (by Stripe id).
    pub invoices: Vec<ReconciledInvoice>,
}

/// The ledger's invoice of the month as compared.
struct LedgerInvoice {
    organization_id: uuid::Uuid,
    stripe_invoice_id: Option<String>,
    side: InvoiceSide,
}

fn two_places(amount: Decimal) -> String {
    format!("{:.2}", amount.round_dp(2))
}

fn cents(amount: i64) -> Decimal {
    Decimal::new(amount, 2)
}

fn ledger_status(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Paid => "paid",
        PaymentStatus::Void => "void",
        _ => "open",
    }
}

/// The month's invoices in the ledger by invoice id (in force, and voided),
/// and whether there were more than [`REPORT_INVOICES_MAX`].
async fn ledger_side(ledger: &Ledger, period: NaiveDate) -> Result<(BTreeMap<uuid::Uuid, LedgerInvoice>, bool), Error> {
    let db = &ledger.models.db;
    let mut found = BTreeMap::new();
    let in_force = payments::of_period(db, period, REPORT_INVOICES_MAX + 1).await?;
    let voided = invoices::voided_of_period(db, period, REPORT_INVOICES_MAX + 1).await?;
    let truncated = in_force.len() > REPORT_INVOICES_MAX || voided.len() > REPORT_INVOICES_MAX;
    for payment in in_force.into_iter().take(REPORT_INVOICES_MAX) {
        let customer = stripe_model::customer(db, payment.organization_id).await?;
        let side = InvoiceSide {
            total: two_places(payment.total.amount()),
            status: ledger_status(payment.status).to_owned(),
            customer,
            credited: two_places(payment.credited.amount()),
        };
        let row = LedgerInvoice {
            organization_id: payment.organization_id.0,
            stripe_invoice_id: payment.stripe_invoice_id,
            side,
        };
        found.insert(payment.invoice_id, row);
    }
    for void in voided.into_iter().take(REPORT_INVOICES_MAX) {
        let issued = &void.issued;
        if found.contains_key(&issued.invoice_id) {
            continue;
        }
        let notes = invoices::credit_notes(db, issued.invoice_id).await?;
        let credited = notes.iter().try_fold(Decimal::ZERO, |sum, (note, _)| sum.checked_add(note.total.amount()));
        let credited =
            credited.ok_or_else(|| Error::Internal(format!("{}: credit notes overflow", issued.invoice_id)))?;
        let side = InvoiceSide {
            total: two_places(issued.invoice.total.amount()),
            status: "void".to_owned(),
            customer: stripe_model::customer(db, issued.organization_id).await?,
            credited: two_places(credited),
        };
        let stripe_invoice_id = stripe_model::stripe_invoice_of(db, issued.invoice_id).await?;
        found.insert(
            issued.invoice_id,
            LedgerInvoice { organization_id: issued.organization_id.0, stripe_invoice_id, side },
        );
    }
    Ok((found, truncated))
}

/// Stripe's invoices of the month (those the sync made carry
/// `ledger_period`), and whether there were more than
/// [`REPORT_INVOICES_MAX`].
async fn stripe_side(client: &stripe::Client, period: &str) -> Result<(Vec<stripe_shared::Invoice>, bool), Error> {
    let query = format!("metadata['ledger_period']:'{period}'");
    let mut found = Vec::new();
    let mut page: Option<String> = None;
    let pages_max = REPORT_INVOICES_MAX.div_ceil(usize::try_from(SEARCH_PAGE_INVOICES).unwrap_or(1)) + 1;
    for _ in 0..pages_max {
        let mut search = stripe_billing::invoice::SearchInvoice::new(query.clone()).limit(SEARCH_PAGE_INVOICES);
        if let Some(token) = page.take() {
            search = search.page(token);
        }
        let answer =
            search.send(client).await.map_err(|e| Error::Unavailable(format!("Stripe's invoice search: {e}")))?;
        found.extend(answer.data);
        if found.len() > REPORT_INVOICES_MAX {
            found.truncate(REPORT_INVOICES_MAX);
            return Ok((found, true));
        }
        match answer.next_page {
            Some(next) if answer.has_more => page = Some(next),
            _ => return Ok((found, false)),
        }
    }
    Ok((found, true))
}

fn stripe_invoice_side(invoice: &stripe_shared::Invoice) -> InvoiceSide {
    let credited = invoice.pre_payment_credit_notes_amount.saturating_add(invoice.post_payment_credit_notes_amount);
    InvoiceSide {
        total: two_places(cents(invoice.total)),
        status: invoice.status.as_ref().map_or("draft", |s| s.as_str()).to_owned(),
        customer: invoice.customer.as_ref().map(|c| c.id().as_str().to_owned()),
        credited: two_places(cents(credited)),
    }
}

fn differences(ledger: &InvoiceSide, stripe: &InvoiceSide) -> Vec<Difference> {
    let mut found = Vec::new();
    if ledger.total != stripe.total {
        found.push(Difference::AmountDiffers);
    }
    if ledger.status != stripe.status {
        found.push(Difference::StatusDiffers);
    }
    if ledger.customer != stripe.customer {
        found.push(Difference::CustomerDiffers);
    }
    if ledger.credited != stripe.credited {
        found.push(Difference::CreditNotesDiffer);
    }
    found
}

/// The reconciliation of the month `period` (`YYYY-MM`): each ledger
/// invoice of the month against its Stripe invoice, and Stripe's invoices
/// of the month the ledger does not hold, each with its differences.
pub async fn reconcile(
    ledger: &Ledger,
    caller: &Caller,
    client: &stripe::Client,
    period: &str,
) -> Result<Reconciliation, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let month = crate::billing::parse_period(period)?;
    let period = month.format("%Y-%m").to_string();
    let (ledger_invoices, ledger_truncated) = ledger_side(ledger, month).await?;
    let (stripe_invoices, stripe_truncated) = stripe_side(client, &period).await?;
    let mut by_ledger_id = BTreeMap::new();
    let mut unmatched = BTreeMap::new();
    for invoice in stripe_invoices {
        let id = invoice.id.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default();
        let ledger_id = invoice.metadata.as_ref().and_then(|m| m.get("ledger_invoice_id")).and_then(|t| t.parse().ok());
        match ledger_id.filter(|id| ledger_invoices.contains_key(id)) {
            Some(ledger_id) => {
                by_ledger_id.insert(ledger_id, (id, stripe_invoice_side(&invoice)));
            }
            None => {
                unmatched.insert(id, (ledger_id, stripe_invoice_side(&invoice)));
            }
        }
    }
    let mut rows = Vec::with_capacity(ledger_invoices.len() + unmatched.len());
    for (invoice_id, row) in ledger_invoices {
        let stripe = by_ledger_id.remove(&invoice_id);
        let differences = match &stripe {
            Some((_, side)) => differences(&row.side, side),
            None => vec![Difference::MissingInStripe],
        };
        rows.push(ReconciledInvoice {
            invoice_id: Some(invoice_id),
            stripe_invoice_id: stripe.as_ref().map(|(id, _)| id.clone()).or(row.stripe_invoice_id),
            organization_id: Some(row.organization_id),
            ledger: Some(row.side),
            stripe: stripe.map(|(_, side)| side),
            differences,
        });
    }
    for (stripe_id, (ledger_id, side)) in unmatched {
        rows.push(ReconciledInvoice {
            invoice_id: ledger_id,
            stripe_invoice_id: Some(stripe_id),
            organization_id: None,
            ledger: None,
            stripe: Some(side),
            differences: vec![Difference::MissingInLedger],
        });
    }
    let matching = rows.iter().filter(|r| r.differences.is_empty()).count();
    Ok(Reconciliation {
        period,
        matching,
        differing: rows.len() - matching,
        truncated: ledger_truncated || stripe_truncated,
        invoices: rows,
    })
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

impl Reconciliation {
    /// The report as CSV: a header, then one line per invoice.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "period,invoice_id,stripe_invoice_id,organization_id,ledger_total,stripe_total,ledger_status,\
             stripe_status,ledger_customer,stripe_customer,ledger_credited,stripe_credited,differences\n",
        );
        let none = String::new();
        for row in &self.invoices {
            let (ledger, stripe) = (row.ledger.as_ref(), row.stripe.as_ref());
            let differences: Vec<&str> = row.differences.iter().map(|d| d.as_str()).collect();
            let fields = [
                self.period.clone(),
                row.invoice_id.map(|id| id.to_string()).unwrap_or_default(),
                row.stripe_invoice_id.clone().unwrap_or_default(),
                row.organization_id.map(|id| id.to_string()).unwrap_or_default(),
                ledger.map_or(none.clone(), |s| s.total.clone()),
                stripe.map_or(none.clone(), |s| s.total.clone()),
                ledger.map_or(none.clone(), |s| s.status.clone()),
                stripe.map_or(none.clone(), |s| s.status.clone()),
                ledger.and_then(|s| s.customer.clone()).unwrap_or_default(),
                stripe.and_then(|s| s.customer.clone()).unwrap_or_default(),
                ledger.map_or(none.clone(), |s| s.credited.clone()),
                stripe.map_or(none.clone(), |s| s.credited.clone()),
                differences.join(";"),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}

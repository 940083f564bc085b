//! The billing team's operations on issued invoices (issue 15 part 2):
//! voiding an invoice that is not paid, and credit notes. The operator's
//! (the merger maps them to the staff billing role).
//!
//! Both are events on the invoice's own stream, after its `InvoiceIssued`,
//! decided on that stream as the log holds it and appended expecting its
//! revision, so two concurrent decisions cannot both be appended (one is
//! refused and changes nothing).
//!
//! A void (`InvoiceVoided`) makes the invoice ask for nothing (status
//! `void`, out of `amountDue`) and unbills its month: the next billing run
//! issues it under the next revision's id and stream
//! (`domain::billing::invoice_id_of`), and late-usage adjustments count its
//! overage as never invoiced. A credit note (`CreditNoteIssued`) lowers
//! what the invoice asks for; the credit notes of one invoice never total
//! more than the invoice (`domain::billing::credit_note`).

use domain::Metadata;
use domain::billing::{
    CREDIT_NOTES_PER_INVOICE_MAX, CreditNoteError, CreditNoteIssued, INVOICE_REVISIONS_MAX, InvoiceEvent,
    InvoiceIssued, InvoiceVoided, VOID_REASON_CHARS_MAX, revision_of, stream_of,
};
use domain::event::StoredEvent;
use domain::payment::PaymentStatus;
use domain::staff::StaffPermission;
use projections::models::{invoices, payments};
use rust_decimal::Decimal;
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::command::{READ_YOUR_WRITES_WAIT, new_event_id};
use crate::views::billing::{CreditNote, Invoice};
use crate::{Caller, Error, Ledger, Need};

/// A reason: trimmed, 1 to `max` characters, no control characters.
fn reason(text: &str, max: usize) -> Result<String, Error> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(Error::Validation(format!("reason must be 1 to {max} characters without control characters")));
    }
    Ok(text.to_owned())
}

/// An invoice's stream as the log holds it: the invoice, its credit notes,
/// whether it is voided, and the stream's revision.
struct InvoiceStream {
    issued: InvoiceIssued,
    credit_notes: Vec<CreditNoteIssued>,
    voided: bool,
    revision: u64,
    stream_id: domain::StreamId,
}

/// The most events an invoice's stream holds: the invoice, its credit
/// notes and a void.
const INVOICE_STREAM_EVENTS_MAX: usize = CREDIT_NOTES_PER_INVOICE_MAX as usize + 2;

/// Finds the invoice `invoice_id` (in force or voided) in the read models
/// and reads its stream from the log; not found otherwise.
async fn load(ledger: &Ledger, caller: &Caller, invoice_id: uuid::Uuid) -> Result<InvoiceStream, Error> {
    crate::acknowledged::catch_up(ledger, Some(caller.credential()), None).await?;
    let db = &ledger.models.db;
    let issued = match invoices::by_id(db, invoice_id).await? {
        Some((issued, _)) => issued,
        None => invoices::voided(db, invoice_id).await?.ok_or(Error::NotFound)?.issued,
    };
    caller.require_org(issued.organization_id, Need::Analyst)?;
    let (subscription_id, period) = (issued.subscription_id, issued.invoice.period);
    let revision = revision_of(subscription_id, period, invoice_id)
        .ok_or_else(|| Error::Internal(format!("the invoice {invoice_id} has no derived id")))?;
    let stream_id = stream_of(subscription_id, period, revision);
    let records = ledger.log.read_stream(&stream_id, 1, INVOICE_STREAM_EVENTS_MAX).await?;
    let mut stream = InvoiceStream { issued, credit_notes: Vec::new(), voided: false, revision: 0, stream_id };
    for record in &records {
        let payload = record.event_bytes().unwrap_or_default();
        let event = InvoiceEvent::decode(&record.header.event_type, record.header.schema_version, payload)
            .map_err(|e| Error::Internal(format!("{} at {}: {e}", stream.stream_id, record.header.sequence)))?;
        match event {
            Some(InvoiceEvent::CreditNoteIssued(note)) => stream.credit_notes.push(note),
            Some(InvoiceEvent::InvoiceVoided(_)) => stream.voided = true,
            _ => {}
        }
        stream.revision = record.header.stream_revision;
    }
    Ok(stream)
}

/// Appends `event` on the invoice's stream expecting the revision it was
/// decided on; a stream that moved meanwhile is `moved`'s refusal.
async fn append(
    ledger: &Ledger,
    stream: &InvoiceStream,
    event: InvoiceEvent,
    metadata: &Metadata,
    moved: Error,
) -> Result<u64, Error> {
    let command = Command {
        stream_id: stream.stream_id.clone(),
        expected: ExpectedRevision::Exactly(stream.revision),
        idempotency: None,
        events: vec![NewEvent::from_event(&event, new_event_id(), ledger.now(), metadata)],
    };
    let sequence = match ledger.log.append_one(command).await? {
        Ok(appended) => appended.last_sequence,
        Err(Rejection::WrongRevision { .. }) => return Err(moved),
        Err(other) => return Err(Error::Internal(other.to_string())),
    };
    ledger.acknowledged.record_command(sequence);
    let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
    let _ = crate::acknowledged::wait_until(ledger, sequence, deadline).await;
    Ok(sequence)
}

fn already_voided(invoice_id: uuid::Uuid) -> Error {
    Error::conflict("invoice_already_voided", format!("the invoice {invoice_id} is voided already"))
}

/// Voids the invoice `invoice_id`: refused (`invoice_paid`,
/// `invoice_already_voided`, `invoice_revisions_exhausted`) or not found,
/// changing nothing. Answers the voided invoice.
pub async fn void(
    ledger: &Ledger,
    caller: &Caller,
    metadata: Metadata,
    invoice_id: uuid::Uuid,
    why: &str,
) -> Result<Invoice, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let why = reason(why, VOID_REASON_CHARS_MAX)?;
    let stream = load(ledger, caller, invoice_id).await?;
    if stream.voided {
        return Err(already_voided(invoice_id));
    }
    let (subscription_id, period) = (stream.issued.subscription_id, stream.issued.invoice.period);
    let status = payments::invoice(&ledger.models.db, subscription_id, period).await?.map(|p| p.status);
    if status == Some(PaymentStatus::Paid) {
        return Err(Error::conflict("invoice_paid", format!("the invoice {invoice_id} is paid; issue a credit note")));
    }
    let revision = revision_of(subscription_id, period, invoice_id).unwrap_or(INVOICE_REVISIONS_MAX);
    if revision + 1 >= INVOICE_REVISIONS_MAX {
        return Err(Error::conflict(
            "invoice_revisions_exhausted",
            format!("a month is issued at most {INVOICE_REVISIONS_MAX} times"),
        ));
    }
    let organization_id = stream.issued.organization_id;
    let voided = InvoiceVoided { invoice_id, subscription_id, organization_id, period, reason: why };
    let event = InvoiceEvent::InvoiceVoided(voided.clone());
    append(ledger, &stream, event, &metadata, already_voided(invoice_id)).await?;
    Ok(Invoice::voided(&invoices::Voided { issued: stream.issued, voided }))
}

/// A credit note as asked for: a reason and lines of (description,
/// amount).
#[derive(Debug, Clone)]
pub struct CreditNoteRequest {
    pub reason: String,
    pub lines: Vec<(String, Decimal)>,
}

/// Issues a credit note against the invoice `invoice_id`: refused
/// (`credit_exceeds_invoice`, `invoice_voided`, `credit_notes_exhausted`,
/// a bad line) or not found, changing nothing.
pub async fn credit(
    ledger: &Ledger,
    caller: &Caller,
    metadata: Metadata,
    invoice_id: uuid::Uuid,
    request: &CreditNoteRequest,
) -> Result<CreditNote, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let stream = load(ledger, caller, invoice_id).await?;
    let decided = domain::billing::credit_note(
        &stream.issued,
        &stream.credit_notes,
        stream.voided,
        &request.reason,
        &request.lines,
    )
    .map_err(|error| match error {
        CreditNoteError::Invalid(message) => Error::Validation(message),
        CreditNoteError::Voided => Error::conflict("invoice_voided", error),
        CreditNoteError::TooMany => Error::conflict("credit_notes_exhausted", error),
        CreditNoteError::Exceeds { .. } => Error::conflict("credit_exceeds_invoice", error),
    })?;
    let moved = Error::conflict("invoice_changed", "the invoice changed meanwhile; try again");
    let sequence = append(ledger, &stream, InvoiceEvent::CreditNoteIssued(decided.clone()), &metadata, moved).await?;
    Ok(CreditNote::of(&decided, sequence))
}

/// The credit notes of the invoice `invoice_id`, by number: its
/// organization's members from analyst up, the operator and the auditor.
pub async fn credit_notes(ledger: &Ledger, caller: &Caller, invoice_id: uuid::Uuid) -> Result<Vec<CreditNote>, Error> {
    crate::acknowledged::catch_up(ledger, Some(caller.credential()), None).await?;
    let db = &ledger.models.db;
    let organization_id = match invoices::by_id(db, invoice_id).await? {
        Some((issued, _)) => issued.organization_id,
        None => invoices::voided(db, invoice_id).await?.ok_or(Error::NotFound)?.issued.organization_id,
    };
    caller.require_org(organization_id, Need::Analyst)?;
    let notes = invoices::credit_notes(db, invoice_id).await?;
    Ok(notes.iter().map(|(note, sequence)| CreditNote::of(note, *sequence)).collect())
}

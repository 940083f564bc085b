//! The console's invoice page (issue 15 part 2): an invoice's lines,
//! status and credit notes (support and up, the auditor too), with the
//! Void and Credit note forms for the roles with billing operations (staff
//! admin, billing). A forged form from any other role is refused by the
//! use case (403) and changes nothing.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::OrganizationId;
use domain::billing::{CREDIT_LINE_DESCRIPTION_CHARS_MAX, CREDIT_REASON_CHARS_MAX, VOID_REASON_CHARS_MAX};
use domain::staff::StaffPermission;
use rust_decimal::Decimal;
use serde::Deserialize;
use usecases::invoice_ops::CreditNoteRequest;
use usecases::views::billing::{CreditNote, Invoice};

use super::pages::{Nav, context, nav};
use super::{ConsoleError, StaffSigned};
use crate::invoices::{kind_text, status_text};
use crate::{Portal, PortalError};

/// The lines the console's credit note form has (the API takes up to
/// `domain::billing::CREDIT_NOTE_LINES_MAX`; a form this long covers what
/// the billing team asked for, and a longer note can be made over the API).
pub const CREDIT_FORM_LINES: usize = 3;

pub struct LineView {
    kind: &'static str,
    description: String,
    amount: String,
}

pub struct NoteView {
    number: u32,
    reason: String,
    total: String,
    lines: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/invoice.html")]
pub struct InvoicePage {
    nav: Nav,
    org: String,
    id: String,
    period: String,
    status: &'static str,
    total: String,
    credited: String,
    void_reason: Option<String>,
    lines: Vec<LineView>,
    notes: Vec<NoteView>,
    /// The Void and Credit note forms are shown (billing operations).
    operate: bool,
    voidable: bool,
    form_lines: Vec<usize>,
    void_reason_max: usize,
    credit_reason_max: usize,
    description_max: usize,
    message: Option<String>,
}

fn note_view(note: CreditNote) -> NoteView {
    NoteView {
        number: note.number,
        reason: note.reason,
        total: note.total.text(),
        lines: note.lines.into_iter().map(|l| (l.description, l.amount.text())).collect(),
    }
}

/// The invoice `invoice_id` of the organization `org` and its page.
async fn invoice_page(
    portal: &Portal,
    signed: &StaffSigned,
    org: OrganizationId,
    invoice_id: uuid::Uuid,
    message: Option<String>,
) -> Result<InvoicePage, ConsoleError> {
    let (ledger, caller) = (&portal.ledger, signed.staff.caller());
    if !signed.may(StaffPermission::ReadCustomers) {
        return Err(super::forbidden());
    }
    let invoices = usecases::billing::invoices(ledger, &caller, org).await?;
    let invoice: Invoice = invoices.into_iter().find(|i| i.id == invoice_id).ok_or(PortalError::NotFound)?;
    let notes = usecases::invoice_ops::credit_notes(ledger, &caller, invoice_id).await?;
    let status = invoice.status;
    Ok(InvoicePage {
        nav: nav(signed, "customers"),
        org: org.to_string(),
        id: invoice.id.to_string(),
        period: invoice.period,
        status: status_text(status),
        total: format!("{} {}", invoice.total.text(), invoice.currency),
        credited: invoice.credited.map(|c| c.text()).unwrap_or_else(|| "0.00".into()),
        void_reason: invoice.voided.map(|v| v.reason),
        lines: invoice
            .lines
            .into_iter()
            .map(|l| LineView { kind: kind_text(l.kind), description: l.description, amount: l.amount.text() })
            .collect(),
        notes: notes.into_iter().map(note_view).collect(),
        operate: signed.may(StaffPermission::BillingOps),
        voidable: !matches!(
            status,
            usecases::views::billing::InvoiceStatus::Void | usecases::views::billing::InvoiceStatus::Paid
        ),
        form_lines: (1..=CREDIT_FORM_LINES).collect(),
        void_reason_max: VOID_REASON_CHARS_MAX,
        credit_reason_max: CREDIT_REASON_CHARS_MAX,
        description_max: CREDIT_LINE_DESCRIPTION_CHARS_MAX,
        message,
    })
}

/// One invoice (support and up, the auditor too).
pub async fn invoice(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path((org, invoice_id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<Response, ConsoleError> {
    Ok(invoice_page(&portal, &signed, OrganizationId(org), invoice_id, None).await?.into_response())
}

#[derive(Deserialize)]
pub struct VoidForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

/// The caller and organization of a void or credit note: the form's CSRF
/// token checks, the staff user has billing operations, and the invoice is
/// the organization's.
async fn may_correct(
    portal: &Portal,
    signed: &StaffSigned,
    org: uuid::Uuid,
    invoice_id: uuid::Uuid,
    csrf: &str,
) -> Result<(usecases::Caller, OrganizationId), ConsoleError> {
    signed.check_csrf(csrf)?;
    if !signed.may(StaffPermission::BillingOps) {
        return Err(super::forbidden());
    }
    let org = OrganizationId(org);
    belongs_to(portal, signed, org, invoice_id).await?;
    Ok((signed.staff.caller(), org))
}

/// Voids the invoice (billing operations).
pub async fn void(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path((org, invoice_id)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(form): Form<VoidForm>,
) -> Result<Response, ConsoleError> {
    let (caller, org) = may_correct(&portal, &signed, org, invoice_id, &form.csrf).await?;
    let metadata = context(&signed).metadata;
    usecases::invoice_ops::void(&portal.ledger, &caller, metadata, invoice_id, &form.reason).await?;
    let page = invoice_page(&portal, &signed, org, invoice_id, Some("The invoice was voided.".into())).await?;
    Ok(page.into_response())
}

/// The invoice is the organization's (a form names both): not found
/// otherwise, before anything is decided.
async fn belongs_to(
    portal: &Portal,
    signed: &StaffSigned,
    org: OrganizationId,
    invoice_id: uuid::Uuid,
) -> Result<(), ConsoleError> {
    let invoices = usecases::billing::invoices(&portal.ledger, &signed.staff.caller(), org).await?;
    if invoices.iter().any(|i| i.id == invoice_id) { Ok(()) } else { Err(ConsoleError(PortalError::NotFound)) }
}

/// The credit note form: a reason and [`CREDIT_FORM_LINES`] lines, of
/// which the empty ones are left out.
#[derive(Deserialize)]
pub struct CreditForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    description_1: String,
    #[serde(default)]
    amount_1: String,
    #[serde(default)]
    description_2: String,
    #[serde(default)]
    amount_2: String,
    #[serde(default)]
    description_3: String,
    #[serde(default)]
    amount_3: String,
    #[serde(default)]
    csrf: String,
}

/// The form's lines that are filled in: a description and an amount each.
fn credit_lines(form: &CreditForm) -> Result<Vec<(String, Decimal)>, PortalError> {
    let given = [
        (&form.description_1, &form.amount_1),
        (&form.description_2, &form.amount_2),
        (&form.description_3, &form.amount_3),
    ];
    let mut lines = Vec::with_capacity(CREDIT_FORM_LINES);
    for (n, (description, amount)) in given.into_iter().enumerate() {
        let (description, amount) = (description.trim(), amount.trim());
        if description.is_empty() && amount.is_empty() {
            continue;
        }
        // The domain bounds the amount; a text far longer than any amount
        // is refused before it is parsed.
        let parsed = (amount.len() <= 20).then(|| amount.parse::<Decimal>().ok()).flatten();
        let amount =
            parsed.ok_or_else(|| PortalError::Invalid(format!("line {}: the amount is not a number", n + 1)))?;
        lines.push((description.to_owned(), amount));
    }
    Ok(lines)
}

/// Issues a credit note against the invoice (billing operations).
pub async fn credit(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path((org, invoice_id)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(form): Form<CreditForm>,
) -> Result<Response, ConsoleError> {
    let (caller, org) = may_correct(&portal, &signed, org, invoice_id, &form.csrf).await?;
    let request = CreditNoteRequest { reason: form.reason.clone(), lines: credit_lines(&form)? };
    let metadata = context(&signed).metadata;
    let note = usecases::invoice_ops::credit(&portal.ledger, &caller, metadata, invoice_id, &request).await?;
    let message = format!("Credit note {} for {} was issued.", note.number, note.total.text());
    Ok(invoice_page(&portal, &signed, org, invoice_id, Some(message)).await?.into_response())
}

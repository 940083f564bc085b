//! The invoices pages: the list, one invoice (lines, inputs, adjustments,
//! status), its printable view, its CSV and JSON downloads, and "prove
//! it": the inclusion proof of the event that issued it, the document
//! `replay check-proof` reads. An organization's analysts and admins see
//! them (the API's roles table); a viewer is refused.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::OrganizationId;
use usecases::views::billing::{Invoice, InvoiceLineKind, InvoiceStatus};

use crate::pages::Nav;
use crate::session::Signed;
use crate::{Portal, PortalError};

/// The characters a spreadsheet reads as the start of a formula (and tab
/// and carriage return, which some strip before looking): a cell that
/// begins with one is written with a leading `'`.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// What the templates call to name a status or a line's kind.
macro_rules! names {
    ($($page:ty),*) => {$(
        impl $page {
            fn status(&self, status: &InvoiceStatus) -> &'static str {
                status_text(*status)
            }

            #[allow(dead_code, reason = "not every page lists lines")]
            fn kind(&self, kind: &InvoiceLineKind) -> &'static str {
                kind_text(*kind)
            }

            #[allow(dead_code, reason = "only the list marks its rows")]
            fn status_class(&self, status: &InvoiceStatus) -> &'static str {
                match status {
                    InvoiceStatus::Open => "open",
                    InvoiceStatus::Paid => "paid",
                    InvoiceStatus::PastDue => "past_due",
                    InvoiceStatus::Void => "void",
                }
            }
        }
    )*};
}

names!(InvoicesPage, InvoicePage, PrintPage);

pub fn status_text(status: InvoiceStatus) -> &'static str {
    match status {
        InvoiceStatus::Open => "open",
        InvoiceStatus::Paid => "paid",
        InvoiceStatus::PastDue => "past due",
        InvoiceStatus::Void => "void",
    }
}

pub fn kind_text(kind: InvoiceLineKind) -> &'static str {
    match kind {
        InvoiceLineKind::Base => "base",
        InvoiceLineKind::Addon => "add-on",
        InvoiceLineKind::OneTimeAddon => "one-time add-on",
        InvoiceLineKind::DataOverage => "data overage",
        InvoiceLineKind::UsageAdjustment => "usage adjustment",
    }
}

/// An organization's invoices, as the API lists them (at most the read
/// model's cap); the use case checks the role.
async fn invoices(portal: &Portal, signed: &Signed, org: OrganizationId) -> Result<Vec<Invoice>, PortalError> {
    Ok(usecases::billing::invoices(&portal.ledger, &signed.caller(), org).await?)
}

/// One of the organization's invoices, or "not found".
async fn invoice(portal: &Portal, signed: &Signed, org: uuid::Uuid, id: uuid::Uuid) -> Result<Invoice, PortalError> {
    let org = signed.organization(org)?;
    invoices(portal, signed, org).await?.into_iter().find(|i| i.id == id).ok_or(PortalError::NotFound)
}

#[derive(Template, WebTemplate)]
#[template(path = "invoices.html")]
pub struct InvoicesPage {
    nav: Nav,
    invoices: Vec<Invoice>,
}

pub async fn list(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<InvoicesPage, PortalError> {
    let org = signed.organization(org)?;
    let mut invoices = invoices(&portal, &signed, org).await?;
    // The newest first: the one a customer looks for.
    invoices.reverse();
    Ok(InvoicesPage { nav: Nav::of(&signed, "invoices"), invoices })
}

#[derive(Template, WebTemplate)]
#[template(path = "invoice.html")]
pub struct InvoicePage {
    nav: Nav,
    invoice: Invoice,
}

pub async fn detail(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<InvoicePage, PortalError> {
    let invoice = invoice(&portal, &signed, org, id).await?;
    Ok(InvoicePage { nav: Nav::of(&signed, "invoices"), invoice })
}

/// The invoice alone, for paper: no navigation, the print style sheet.
#[derive(Template, WebTemplate)]
#[template(path = "invoice_print.html")]
pub struct PrintPage {
    organization: String,
    invoice: Invoice,
}

pub async fn print(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<PrintPage, PortalError> {
    let invoice = invoice(&portal, &signed, org, id).await?;
    let db = &portal.ledger.models.db;
    let name = projections::models::organizations::name(db, OrganizationId(invoice.organization_id))
        .await
        .map_err(|e| PortalError::from(usecases::Error::from(e)))?;
    let organization = name.unwrap_or_else(|| invoice.organization_id.to_string());
    Ok(PrintPage { organization, invoice })
}

/// A download: its type and file name (made of ids and `YYYY-MM` only).
fn attachment(content_type: &'static str, name: String, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

/// The invoice exactly as `GET /api/v1/organizations/{id}/invoices` lists it.
pub async fn json(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<Response, PortalError> {
    let invoice = invoice(&portal, &signed, org, id).await?;
    let body = serde_json::to_vec_pretty(&invoice).map_err(|_| PortalError::Internal)?;
    Ok(attachment("application/json", format!("invoice-{}-{}.json", invoice.period, invoice.id), body))
}

pub async fn csv(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<Response, PortalError> {
    let invoice = invoice(&portal, &signed, org, id).await?;
    let body = csv_of(&invoice).map_err(|_| PortalError::Internal)?;
    Ok(attachment("text/csv; charset=utf-8", format!("invoice-{}-{}.csv", invoice.period, invoice.id), body))
}

/// A cell as a spreadsheet will not run it: one beginning with a formula
/// character gets a leading `'`, except an amount the ledger wrote (a
/// plain decimal such as `-12.50`, which no spreadsheet reads as a formula).
pub fn neutralised(cell: &str) -> String {
    let plain_decimal = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let (whole, cents) = digits.split_once('.').unwrap_or((digits, "0"));
        !whole.is_empty()
            && !cents.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && cents.bytes().all(|b| b.is_ascii_digit())
    };
    if cell.starts_with(FORMULA_STARTS) && !plain_decimal(cell) { format!("'{cell}") } else { cell.to_owned() }
}

/// The invoice's lines, then its total, one row each; every cell
/// neutralised (a description holds a catalog's or add-on's text).
pub fn csv_of(invoice: &Invoice) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["period", "kind", "description", "days", "amount", "currency", "reports"])?;
    for line in &invoice.lines {
        let reports = line.reports.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        let days = line.days.map(|d| d.to_string()).unwrap_or_default();
        let row = [
            &invoice.period,
            kind_text(line.kind),
            &line.description,
            &days,
            &line.amount.text(),
            &invoice.currency,
            &reports,
        ];
        out.write_record(row.map(neutralised))?;
    }
    let total = [&invoice.period, "total", "", "", &invoice.total.text(), &invoice.currency, ""];
    out.write_record(total.map(neutralised))?;
    out.into_inner().map_err(|e| e.into_error().into())
}

/// The inclusion proof of one of the organization's events (its invoice's,
/// or an audit entry's), as a file for `replay check-proof`, with a
/// checkpoint of the log's head signed now.
pub async fn proof(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, sequence)): Path<(uuid::Uuid, u64)>,
) -> Result<Response, PortalError> {
    signed.organization(org)?;
    let caller = signed.caller();
    let proof = usecases::log::inclusion(&portal.ledger, &portal.log_tree, &caller, sequence, None).await?;
    let body = serde_json::to_vec_pretty(&proof).map_err(|_| PortalError::Internal)?;
    Ok(attachment("application/json", format!("proof-{sequence}.json"), body))
}

/// "Prove it" for an invoice: to the proof of the event that issued it.
pub async fn prove(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<Response, PortalError> {
    let invoice = invoice(&portal, &signed, org, id).await?;
    let org = OrganizationId(invoice.organization_id);
    let sequence = projections::models::invoices::sequence(&portal.ledger.models.db, org, invoice.id)
        .await
        .map_err(|e| PortalError::from(usecases::Error::from(e)))?
        .ok_or(PortalError::NotFound)?;
    proof(State(portal), signed, Path((org.0, sequence))).await
}

#[cfg(test)]
mod tests {
    use domain::money::Money;
    use rust_decimal::Decimal;
    use usecases::views::Amount;
    use usecases::views::billing::{InvoiceInputs, InvoiceLine};

    use super::*;

    fn amount(cents: i64) -> Amount {
        Amount(Money::usd(Decimal::new(cents, 2)))
    }

    #[test]
    fn the_csv_neutralises_a_formula_in_any_cell_and_keeps_amounts_numbers() {
        let line = |description: &str, cents| InvoiceLine {
            kind: InvoiceLineKind::UsageAdjustment,
            description: description.into(),
            days: None,
            amount: amount(cents),
            reports: vec![7, 9],
        };
        let invoice = Invoice {
            id: uuid::Uuid::nil(),
            subscription_id: uuid::Uuid::nil(),
            organization_id: uuid::Uuid::nil(),
            period: "2026-01".into(),
            lines: vec![line("=HYPERLINK(\"http://x\")", -1250), line("@SUM(A1), \"quoted\"", 300)],
            total: amount(-950),
            currency: "USD".into(),
            status: InvoiceStatus::Open,
            inputs: InvoiceInputs { runs: Vec::new(), overage: None, adjustments: Vec::new() },
            digest: String::new(),
            usage_sequence: 1,
            voided: None,
            credited: None,
        };
        let text = String::from_utf8(csv_of(&invoice).unwrap()).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[1], "2026-01,usage adjustment,\"'=HYPERLINK(\"\"http://x\"\")\",,-12.50,USD,7 9");
        assert_eq!(rows[2], "2026-01,usage adjustment,\"'@SUM(A1), \"\"quoted\"\"\",,3.00,USD,7 9");
        assert_eq!(rows[3], "2026-01,total,,,-9.50,USD,");
    }

    #[test]
    fn cells_that_begin_like_formulas_are_neutralised() {
        for cell in ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\r=x", "-", "-1.2.3", "-.5"] {
            assert_eq!(neutralised(cell), format!("'{cell}"), "{cell:?}");
        }
        for cell in ["Starter plan", "12.50", "-12.50", "-3", "", "a=b"] {
            assert_eq!(neutralised(cell), cell, "{cell:?}");
        }
    }
}

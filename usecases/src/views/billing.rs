//! Invoices and billing runs as the API answers them and `replay` prints
//! them: one [`Invoice`] shape, built from an issued invoice in one
//! function ([`Invoice::from`]); an organization's list in one
//! ([`Invoice::of_organization`] from `replay`'s state,
//! [`Invoice::of_organization_in`] from the read-model tables).

use chrono::NaiveDate;
use domain::OrganizationId;
use domain::billing::{self, InvoiceIssued, period_text};
use domain::payment::{self, PaymentStatus};
use projections::LedgerState;
use projections::db::{DbError, ReadModelDb};
use projections::models::payments::InvoicePayment;
use projections::models::{invoices, organizations, payments};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Amount;

/// An issued invoice: its lines, total and status, what it was computed
/// from (so anyone can recompute it), its digest and the log sequence up
/// to which it saw usage.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// Derived from the subscription and the month: the same month is
    /// always the same invoice.
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub organization_id: Uuid,
    /// The month, `YYYY-MM`.
    #[schema(example = "2026-01")]
    pub period: String,
    pub lines: Vec<InvoiceLine>,
    /// The sum of the rounded lines.
    pub total: Amount,
    /// ISO 4217.
    #[schema(example = "USD")]
    pub currency: String,
    pub status: InvoiceStatus,
    pub inputs: InvoiceInputs,
    /// BLAKE3 of the invoice and its inputs as stored (hex): a
    /// recomputation is compared by it.
    pub digest: String,
    /// The log sequence up to which the invoice saw usage.
    pub usage_sequence: u64,
    /// Its void, for a voided invoice (status `void`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided: Option<InvoiceVoid>,
    /// The total of its credit notes, when it has any (what it asks for is
    /// `total` less this); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credited: Option<Amount>,
}

/// A credit note against an invoice: it lowers what the invoice asks for
/// by its total.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditNote {
    /// Derived from the invoice and the number.
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub organization_id: Uuid,
    /// The invoice's month, `YYYY-MM`.
    #[schema(example = "2026-01")]
    pub period: String,
    /// 1 for the invoice's first credit note, then 2, …
    pub number: u32,
    pub reason: String,
    pub lines: Vec<CreditNoteLine>,
    /// The sum of the lines.
    pub total: Amount,
    /// The log sequence it was appended at.
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditNoteLine {
    pub description: String,
    pub amount: Amount,
}

impl CreditNote {
    pub fn of(note: &billing::CreditNoteIssued, sequence: u64) -> Self {
        Self {
            id: note.credit_note_id,
            invoice_id: note.invoice_id,
            organization_id: note.organization_id.0,
            period: period_text(note.period),
            number: note.number,
            reason: note.reason.clone(),
            lines: note
                .lines
                .iter()
                .map(|l| CreditNoteLine { description: l.description.clone(), amount: l.amount.into() })
                .collect(),
            total: note.total.into(),
            sequence,
        }
    }
}

/// Why an invoice was voided.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceVoid {
    pub reason: String,
}

/// Where the invoice's payment stands (`domain::payment`): `open` until a
/// payment of its Stripe invoice is recorded (always, without Stripe),
/// `paid` once one succeeded (or when it asks for nothing: a total of zero
/// or a credit), `past_due` while its last reported charge failed (its
/// subscription's dunning: past due, then suspended after the grace).
/// Issued invoices never change otherwise; corrections are lines of later
/// invoices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Paid,
    PastDue,
    /// Voided before it was paid: it asks for nothing, and its month is
    /// billed again by the next billing run under a new id.
    Void,
}

impl From<PaymentStatus> for InvoiceStatus {
    fn from(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::Open => InvoiceStatus::Open,
            PaymentStatus::Paid => InvoiceStatus::Paid,
            PaymentStatus::PastDue => InvoiceStatus::PastDue,
            PaymentStatus::Void => InvoiceStatus::Void,
        }
    }
}

/// One line, rounded once to cents, half away from zero.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    pub kind: InvoiceLineKind,
    pub description: String,
    /// The days it covers, for lines billed by the day; `null` otherwise.
    pub days: Option<u32>,
    pub amount: Amount,
    /// For a late-usage adjustment, the usage reports (log sequences) it
    /// comes from; empty for other lines.
    pub reports: Vec<u64>,
}

/// What a line bills (docs/BILLING-RULES.md, "Monthly invoices").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceLineKind {
    Base,
    Addon,
    OneTimeAddon,
    DataOverage,
    /// An earlier month's data overage changed by usage reported late
    /// (negative for a credit).
    UsageAdjustment,
}

impl From<billing::LineKind> for InvoiceLineKind {
    fn from(kind: billing::LineKind) -> Self {
        match kind {
            billing::LineKind::Base => InvoiceLineKind::Base,
            billing::LineKind::Addon => InvoiceLineKind::Addon,
            billing::LineKind::OneTimeAddon => InvoiceLineKind::OneTimeAddon,
            billing::LineKind::DataOverage => InvoiceLineKind::DataOverage,
            billing::LineKind::UsageAdjustment => InvoiceLineKind::UsageAdjustment,
        }
    }
}

/// What an invoice was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceInputs {
    /// The runs of consecutive billable days at one tier and price.
    pub runs: Vec<InvoiceDayRun>,
    /// The month's own data overage inputs; `null` for an adjustment-only
    /// invoice.
    pub overage: Option<OverageInputs>,
    /// Earlier months whose data overage changed with late usage.
    pub adjustments: Vec<InvoiceAdjustment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceDayRun {
    pub from: NaiveDate,
    /// The run's last day (inclusive).
    pub to: NaiveDate,
    #[schema(example = "starter")]
    pub tier: String,
    pub catalog_version: u32,
    pub annual_price: Amount,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverageInputs {
    /// The month's largest reported data volume, a decimal string.
    #[serde(rename = "peakDataGB")]
    #[schema(example = "4250")]
    pub peak_data_gb: String,
    /// The data limit on the month's last billable day, add-ons included.
    #[serde(rename = "dataLimitGB")]
    pub data_limit_gb: u64,
    /// Per started TB over the limit.
    pub overage_rate: Amount,
}

/// A late-usage adjustment of an earlier month.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceAdjustment {
    /// The month adjusted, `YYYY-MM`.
    pub period: String,
    pub inputs: OverageInputs,
    /// The month's data overage, recomputed.
    pub recomputed: Amount,
    /// Its invoice's overage line plus the adjustments for it since.
    pub billed: Amount,
}

impl From<&billing::OverageInputs> for OverageInputs {
    fn from(inputs: &billing::OverageInputs) -> Self {
        Self {
            peak_data_gb: inputs.peak_data_gb.to_string(),
            data_limit_gb: inputs.data_limit_gb,
            overage_rate: inputs.overage_rate.into(),
        }
    }
}

impl Invoice {
    /// The organization's issued invoices in the read models, oldest first
    /// (by month, then id): what `GET /organizations/{id}/invoices` answers
    /// and `replay as-of` prints. `None` for an organization not in `state`.
    pub fn of_organization(state: &LedgerState, organization_id: OrganizationId) -> Option<Vec<Self>> {
        let entry = state.organizations.get(&organization_id)?;
        let items: Vec<&InvoiceIssued> = entry
            .subscriptions
            .iter()
            .filter_map(|id| state.invoices.get(id))
            .flat_map(|by_month| by_month.values())
            .collect();
        let payment = |issued: &InvoiceIssued| {
            state
                .payments
                .invoices
                .get(&(issued.subscription_id, issued.invoice.period))
                .filter(|p| p.invoice_id == issued.invoice_id)
        };
        let mut all: Vec<Self> =
            items.into_iter().map(|issued| Self::from(issued).with_payment(payment(issued))).collect();
        let voided = state.voided.values().filter(|v| v.issued.organization_id == organization_id);
        all.extend(voided.map(Self::voided));
        all.sort_by(|a, b| (&a.period, a.id).cmp(&(&b.period, b.id)));
        Some(all)
    }

    /// A voided invoice: as issued, with status `void` and its reason.
    pub fn voided(voided: &invoices::Voided) -> Self {
        Self {
            status: InvoiceStatus::Void,
            voided: Some(InvoiceVoid { reason: voided.voided.reason.clone() }),
            ..Self::from(&voided.issued)
        }
    }
}

impl Invoice {
    /// [`Invoice::of_organization`] from the read-model tables: the same
    /// list, by month and id, at most
    /// [`invoices::INVOICES_PER_QUERY_MAX`]. `None` for an organization
    /// the tables do not hold.
    pub async fn of_organization_in(
        db: &ReadModelDb,
        organization_id: OrganizationId,
    ) -> Result<Option<Vec<Self>>, DbError> {
        if !organizations::exists(db, organization_id).await? {
            return Ok(None);
        }
        let issued = invoices::of_organization(db, organization_id).await?;
        let payments: std::collections::BTreeMap<_, _> = payments::of_organization(db, organization_id)
            .await?
            .into_iter()
            .map(|p: InvoicePayment| (p.invoice_id, p))
            .collect();
        let mut all: Vec<Self> =
            issued.iter().map(|issued| Self::from(issued).with_payment(payments.get(&issued.invoice_id))).collect();
        all.extend(invoices::voided_of_organization(db, organization_id).await?.iter().map(Self::voided));
        all.sort_by(|a, b| (&a.period, a.id).cmp(&(&b.period, b.id)));
        Ok(Some(all))
    }

    /// The invoice with its payment status as recorded (`None`: as just
    /// issued, with no payment recorded).
    pub fn with_status(self, status: Option<PaymentStatus>) -> Self {
        match status {
            Some(status) => Self { status: status.into(), ..self },
            None => self,
        }
    }

    /// The invoice with its payment row: its status and credit notes.
    pub fn with_payment(self, payment: Option<&InvoicePayment>) -> Self {
        let credited = payment.map(|p| p.credited).filter(|c| !c.amount().is_zero()).map(Amount::from);
        Self { credited, ..self.with_status(payment.map(|p| p.status)) }
    }
}

impl From<&InvoiceIssued> for Invoice {
    fn from(issued: &InvoiceIssued) -> Self {
        let invoice = &issued.invoice;
        let lines = invoice
            .lines
            .iter()
            .map(|line| InvoiceLine {
                kind: line.kind.into(),
                description: line.description.clone(),
                days: line.days,
                amount: line.amount.into(),
                reports: line.reports.clone(),
            })
            .collect();
        let runs = invoice
            .inputs
            .runs
            .iter()
            .map(|run| InvoiceDayRun {
                from: run.from,
                to: run.to,
                tier: run.tier.as_str().to_owned(),
                catalog_version: run.catalog_version,
                annual_price: run.annual_price.into(),
            })
            .collect();
        let adjustments = invoice
            .inputs
            .adjustments
            .iter()
            .map(|adjustment| InvoiceAdjustment {
                period: period_text(adjustment.month),
                inputs: (&adjustment.inputs).into(),
                recomputed: adjustment.recomputed.into(),
                billed: adjustment.billed.into(),
            })
            .collect();
        Invoice {
            id: issued.invoice_id,
            subscription_id: issued.subscription_id.0,
            organization_id: issued.organization_id.0,
            period: period_text(invoice.period),
            lines,
            total: invoice.total.into(),
            currency: invoice.total.currency().code().to_owned(),
            // As issued: no payment recorded yet (`with_status` adds one).
            status: payment::status(invoice.total, None).into(),
            inputs: InvoiceInputs {
                runs,
                overage: invoice.inputs.overage.as_ref().map(OverageInputs::from),
                adjustments,
            },
            digest: issued.digest.to_hex(),
            usage_sequence: issued.usage_sequence,
            voided: None,
            credited: None,
        }
    }
}

/// A subscription whose invoice for the month was not issued, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedInvoice {
    pub subscription_id: Uuid,
    pub organization_id: Option<Uuid>,
    pub reason: String,
}

/// The answer of a billing run: the invoices it issued (for a preview, the
/// ones it would issue), the subscriptions whose invoice could not be
/// issued, and the log head after it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingRun {
    pub invoices: Vec<Invoice>,
    pub failed: Vec<FailedInvoice>,
    pub sequence: u64,
}

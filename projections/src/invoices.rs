//! Re-deriving issued invoices from the log.
//!
//! [`InvoiceCheck`] is fed every record in global order. It keeps, per
//! subscription, the subscription's own events and its usage reports, and
//! when it meets an `InvoiceIssued` it computes that invoice again with
//! `domain::billing::invoice` from the events up to the invoice's
//! `usage_sequence` (what the billing run saw) and from the invoices it
//! recomputed before, never from the issued invoice's own lines. The two
//! must agree byte for byte, digest and id included. An invoice issued at
//! schema version 1 (before lines named their reports) is compared in
//! version 1's shape, with version 1's digest: the recomputation is the
//! same, only the stored form differs.
//!
//! `replay verify` runs it over a whole history; the scenario tests run it
//! after every scenario.

use std::collections::HashMap;

use chrono::NaiveDate;

use cqrs_es::Aggregate;
use domain::RecordHeader;
use domain::SubscriptionId;
use domain::billing::{
    Billed, CreditNoteIssued, Invoice, InvoiceEvent, InvoiceIssued, InvoiceV1, InvoiceVoided, invoice, invoice_id_of,
    period_text,
};
use domain::catalog::Catalog;
use domain::event::LedgerEvent;
use domain::subscription::{Subscription, SubscriptionEvent};
use domain::usage::{Usage, UsageEvent, UsageReported};

/// An issued invoice that its events do not reproduce.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the invoice {invoice_id} ({period}) at sequence {sequence} does not follow from the events: {reason}")]
pub struct InvoiceMismatch {
    pub sequence: u64,
    pub invoice_id: uuid::Uuid,
    pub period: String,
    pub reason: String,
}

/// What a subscription's invoices are computed from.
#[derive(Default)]
struct History {
    /// Its events and usage reports with their sequences, in order.
    facts: Vec<(u64, Fact)>,
    /// Both folded over all of `facts`.
    subscription: Subscription,
    usage: Usage,
    /// The invoices recomputed so far: the sequence each was issued at,
    /// the invoice, and the sequence up to which it saw usage.
    invoices: Vec<(u64, Invoice, u64)>,
    /// The voids: the invoice voided and the sequence of its void.
    voids: Vec<(uuid::Uuid, NaiveDate, u64)>,
    /// The ids of the invoices recomputed so far, as `invoices`.
    ids: Vec<uuid::Uuid>,
    /// The credit notes so far: the invoice and the note's total.
    credits: Vec<(uuid::Uuid, domain::Money)>,
    /// Its retired usage reports: the first one's sequence and the
    /// earliest day of any.
    retired: Option<(u64, NaiveDate)>,
}

enum Fact {
    Subscription(SubscriptionEvent),
    Usage(UsageReported),
}

impl History {
    fn fold(&mut self, sequence: u64, fact: &Fact) {
        match fact {
            Fact::Subscription(event) => self.subscription.apply(event.clone()),
            Fact::Usage(report) => self.usage.apply(report, sequence),
        }
    }

    /// Whether usage reports a run that saw up to `seen` read for the
    /// invoice of `period` (its own month's, or an earlier month's for a
    /// late-usage adjustment) were retired.
    fn retired_before(&self, seen: u64, period: NaiveDate) -> bool {
        let end = period.checked_add_months(chrono::Months::new(1)).unwrap_or(NaiveDate::MAX);
        self.retired.is_some_and(|(sequence, day)| sequence <= seen && day < end)
    }

    /// The subscription and usage as of `sequence`.
    fn as_of(&self, sequence: u64) -> (Subscription, Usage) {
        let mut then = History::default();
        for (at, fact) in self.facts.iter().take_while(|(at, _)| *at <= sequence) {
            then.fold(*at, fact);
        }
        (then.subscription, then.usage)
    }
}

/// The invoice the events give for `issued`'s month as the run saw them
/// (or why none), the organization then, and the invoice's revision.
fn recompute(
    history: &History,
    catalog: &Catalog,
    issued: &InvoiceIssued,
) -> (Result<Invoice, String>, Option<domain::OrganizationId>, u32) {
    let (period, seen) = (issued.invoice.period, issued.usage_sequence);
    // Usually nothing of this subscription came between what the run saw
    // and the invoice; otherwise fold again up to what it saw.
    let then;
    let (subscription, usage) = match history.facts.last() {
        Some((last, _)) if *last > seen => {
            then = history.as_of(seen);
            (&then.0, &then.1)
        }
        _ => (&history.subscription, &history.usage),
    };
    // The invoices in force when the run read: issued, and not voided, up
    // to what it saw.
    let voided_by = |id: &uuid::Uuid| history.voids.iter().any(|(v, _, at)| v == id && *at <= seen);
    let earlier = history
        .invoices
        .iter()
        .zip(&history.ids)
        .filter(|((at, _, _), id)| *at <= seen && !voided_by(id))
        .map(|((_, invoice, usage_sequence), _)| Billed { invoice, usage_sequence: *usage_sequence });
    let recomputed = match invoice(subscription, usage, catalog, period, earlier) {
        Ok(Some(invoice)) => Ok(invoice),
        Ok(None) => Err("the events give no invoice for this month".into()),
        Err(e) => Err(format!("the events give no computable invoice: {e}")),
    };
    let revision = history.voids.iter().filter(|(_, month, at)| *month == period && *at <= seen).count();
    (recomputed, subscription.organization_id, u32::try_from(revision).unwrap_or(u32::MAX))
}

/// The stored shape's bytes and digest of an invoice issued at
/// `schema_version`.
fn stored(schema_version: u32, invoice: &Invoice) -> (Vec<u8>, domain::record::Hash) {
    match schema_version {
        1 => {
            let v1 = InvoiceV1::from(invoice);
            (domain::codec::encode(&v1), v1.digest())
        }
        _ => (domain::codec::encode(invoice), invoice.digest()),
    }
}

/// The recomputed invoice against the issued one, in the shape it was
/// stored in, with that shape's digest.
fn compare(schema_version: u32, recomputed: Result<&Invoice, &String>, issued: &InvoiceIssued) -> Result<(), String> {
    let recomputed = recomputed.map_err(Clone::clone)?;
    let (recomputed_bytes, digest) = stored(schema_version, recomputed);
    let (issued_bytes, _) = stored(schema_version, &issued.invoice);
    if recomputed_bytes != issued_bytes {
        return Err(format!(
            "recomputed lines {:?} (total {}), issued {:?} (total {})",
            recomputed.lines, recomputed.total, issued.invoice.lines, issued.invoice.total
        ));
    }
    if digest != issued.digest {
        return Err("its digest is not the digest of its contents".into());
    }
    Ok(())
}

/// An invoice whose usage was retired, against what it recorded: its
/// digest is its contents', its total the sum of its lines, and its day
/// runs (from the subscription's events, all kept) the ones the events
/// give.
fn on_recorded_inputs(schema_version: u32, recomputed: Option<&Invoice>, issued: &InvoiceIssued) -> Result<(), String> {
    let invoice = &issued.invoice;
    if stored(schema_version, invoice).1 != issued.digest {
        return Err("its digest is not the digest of its contents (usage retired)".into());
    }
    let sum =
        invoice.lines.iter().try_fold(domain::Money::zero(invoice.total.currency()), |s, l| s.checked_add(l.amount));
    if sum.ok() != Some(invoice.total) {
        return Err("its total is not the sum of its lines (usage retired)".into());
    }
    let runs = recomputed.map(|r| r.inputs.runs.as_slice()).unwrap_or_default();
    if runs != invoice.inputs.runs.as_slice() {
        return Err(format!(
            "its recorded day runs {:?} are not the ones the subscription's events give {runs:?} (usage retired)",
            invoice.inputs.runs
        ));
    }
    Ok(())
}

/// Recomputes every issued invoice from the events before it.
pub struct InvoiceCheck {
    catalog: Catalog,
    histories: HashMap<SubscriptionId, History>,
    checked: u64,
    on_recorded_inputs: u64,
}

impl InvoiceCheck {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog, histories: HashMap::new(), checked: 0, on_recorded_inputs: 0 }
    }

    /// How many issued invoices were recomputed and matched.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// How many issued invoices could not be recomputed because usage
    /// they were computed from was retired (issue 16), and were checked
    /// against their recorded inputs instead.
    pub fn checked_on_recorded_inputs(&self) -> u64 {
        self.on_recorded_inputs
    }

    /// Takes a record in global order whose payload was retired (erased,
    /// nothing kept): a usage report of the subscription and day its
    /// stream names (`usage/{subscription}:{day}`). Invoices that saw it
    /// can only be checked against their recorded inputs.
    pub fn retired(&mut self, header: &RecordHeader) {
        let Some((subscription, day)) = header
            .stream_id
            .as_str()
            .strip_prefix("usage/")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(id, day)| Some((SubscriptionId(id.parse().ok()?), day.parse::<NaiveDate>().ok()?)))
        else {
            return;
        };
        let history = self.histories.entry(subscription).or_default();
        let (sequence, earliest) = history.retired.get_or_insert((header.sequence, day));
        *sequence = (*sequence).min(header.sequence);
        *earliest = (*earliest).min(day);
    }

    /// Takes the next record in global order (its header and decoded
    /// event), and checks it if it issues an invoice.
    pub fn apply(&mut self, header: &RecordHeader, event: &LedgerEvent) -> Result<(), InvoiceMismatch> {
        let sequence = header.sequence;
        let (subscription_id, fact) = match event {
            LedgerEvent::Subscription(event) => {
                let Some(id) = header.stream_id.as_str().split_once('/').and_then(|(_, id)| id.parse().ok()) else {
                    return Ok(());
                };
                (SubscriptionId(id), Fact::Subscription(event.clone()))
            }
            LedgerEvent::Usage(UsageEvent::UsageReported(report)) => {
                (report.subscription_id, Fact::Usage(report.clone()))
            }
            LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(issued)) => {
                return self.check(sequence, header.schema_version, issued);
            }
            LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided)) => return self.void(sequence, voided),
            LedgerEvent::Invoice(InvoiceEvent::CreditNoteIssued(note)) => return self.credit(sequence, note),
            _ => return Ok(()),
        };
        let history = self.histories.entry(subscription_id).or_default();
        history.fold(sequence, &fact);
        history.facts.push((sequence, fact));
        Ok(())
    }

    fn check(&mut self, sequence: u64, schema_version: u32, issued: &InvoiceIssued) -> Result<(), InvoiceMismatch> {
        let period = issued.invoice.period;
        let mismatch = |reason: String| InvoiceMismatch {
            sequence,
            invoice_id: issued.invoice_id,
            period: period_text(period),
            reason,
        };
        if issued.usage_sequence >= sequence {
            return Err(mismatch(format!("it claims to have seen usage up to sequence {}", issued.usage_sequence)));
        }
        let history = self.histories.entry(issued.subscription_id).or_default();
        let (recomputed, organization_id, revision) = recompute(history, &self.catalog, issued);
        if organization_id != Some(issued.organization_id) {
            return Err(mismatch(format!("it names organization {}", issued.organization_id)));
        }
        if issued.invoice_id != invoice_id_of(issued.subscription_id, period, revision) {
            return Err(mismatch(format!(
                "its id is not the one derived from subscription, month and revision {revision}"
            )));
        }
        let retired = history.retired_before(issued.usage_sequence, period);
        let invoice = match (compare(schema_version, recomputed.as_ref(), issued), retired) {
            (Ok(()), _) => {
                self.checked += 1;
                recomputed.expect("compared")
            }
            // Its usage was retired: what is left are its recorded inputs.
            (Err(_), true) => {
                on_recorded_inputs(schema_version, recomputed.as_ref().ok(), issued).map_err(mismatch)?;
                self.on_recorded_inputs += 1;
                issued.invoice.clone()
            }
            (Err(reason), false) => return Err(mismatch(reason)),
        };
        history.invoices.push((sequence, invoice, issued.usage_sequence));
        history.ids.push(issued.invoice_id);
        Ok(())
    }

    /// A void: of an invoice recomputed before, in force, of that month.
    fn void(&mut self, sequence: u64, voided: &InvoiceVoided) -> Result<(), InvoiceMismatch> {
        let mismatch = |reason: &str| InvoiceMismatch {
            sequence,
            invoice_id: voided.invoice_id,
            period: period_text(voided.period),
            reason: reason.to_owned(),
        };
        let history = self.histories.entry(voided.subscription_id).or_default();
        let Some(index) = history.ids.iter().position(|id| *id == voided.invoice_id) else {
            return Err(mismatch("it voids an invoice that was not issued"));
        };
        if history.invoices[index].1.period != voided.period {
            return Err(mismatch("it names another month than the invoice's"));
        }
        if history.voids.iter().any(|(id, _, _)| *id == voided.invoice_id) {
            return Err(mismatch("it voids an invoice voided before"));
        }
        history.voids.push((voided.invoice_id, voided.period, sequence));
        Ok(())
    }

    /// A credit note: against an invoice recomputed before and not voided,
    /// its total the sum of its lines, and the invoice's credit notes
    /// totalling at most the invoice.
    fn credit(&mut self, sequence: u64, note: &CreditNoteIssued) -> Result<(), InvoiceMismatch> {
        let mismatch = |reason: String| InvoiceMismatch {
            sequence,
            invoice_id: note.invoice_id,
            period: period_text(note.period),
            reason,
        };
        let history = self.histories.entry(note.subscription_id).or_default();
        let Some(index) = history.ids.iter().position(|id| *id == note.invoice_id) else {
            return Err(mismatch("a credit note against an invoice that was not issued".into()));
        };
        if history.voids.iter().any(|(id, _, _)| *id == note.invoice_id) {
            return Err(mismatch("a credit note against a voided invoice".into()));
        }
        let total = history.invoices[index].1.total;
        let lines =
            note.lines.iter().try_fold(domain::Money::zero(total.currency()), |sum, l| sum.checked_add(l.amount));
        if lines.ok() != Some(note.total) {
            return Err(mismatch(format!("credit note {}: its total is not the sum of its lines", note.number)));
        }
        let mut earlier = history.credits.iter().filter(|(id, _)| *id == note.invoice_id);
        let credited = earlier.try_fold(note.total, |sum, (_, t)| sum.checked_add(*t));
        if credited.map_or(true, |c| c.amount() > total.amount()) {
            return Err(mismatch(format!("its credit notes total more than its total {total}")));
        }
        history.credits.push((note.invoice_id, note.total));
        Ok(())
    }
}

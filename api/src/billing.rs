//! The monthly billing run: `POST /api/v1/billing/runs` and `ledger billing
//! run --period YYYY-MM` both call [`run`].
//!
//! It computes every subscription's invoice for the month from the read
//! models (`domain::billing::invoice`) and appends one `InvoiceIssued` per
//! invoice on its own stream, expecting the stream not to exist: a second
//! run of the same month (or a run in another process at the same time)
//! issues nothing new. A month that has not ended is refused unless the run
//! is a preview, which appends nothing.
//!
//! A subscription whose invoice cannot be computed (an amount overflows:
//! only a log written before prices were bounded holds such an add-on)
//! fails alone: the run issues every other invoice and names the failed
//! ones. Months are issued in order, so a subscription's later months fail
//! too ("waits for …") while an earlier billable month has no invoice (a
//! preview computes them anyway, as a forecast).
//! Nothing records a failure: it is derived on each run from the invoices
//! in the log, so once the operator fixes the add-on, the next run of the
//! month issues it, and the later months follow.

use std::collections::BTreeMap;

use chrono::{Months, NaiveDate};
use domain::billing::{Billed, InvoiceEvent, InvoiceIssued, invoice, invoice_id, period_text, unbilled_month_before};
use domain::calendar::first_of_month;
use domain::{OrganizationId, SubscriptionId};
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::AppState;
use crate::command::new_event_id;
use crate::error::ApiError;

/// Subscriptions billed per batch of appends.
pub const INVOICES_PER_APPEND_MAX: usize = 500;

/// The answer of a run: the invoices issued by it (or, for a preview, the
/// ones it would issue), the subscriptions whose invoice could not be
/// issued, and the log head after it.
pub struct Run {
    pub invoices: Vec<InvoiceIssued>,
    pub failed: Vec<Failed>,
    pub sequence: u64,
}

/// A subscription whose invoice for the month was not issued, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub subscription_id: SubscriptionId,
    pub organization_id: Option<OrganizationId>,
    pub reason: String,
}

/// The invoices of `month` not issued yet, and the subscriptions whose
/// invoice cannot be issued. A preview shows each invoice as it computes
/// now, an earlier month without an invoice or not (a forecast of a month
/// under way is its use); only a run holds a later month back.
fn due(
    ledger: &projections::LedgerState,
    catalog: &domain::catalog::Catalog,
    month: NaiveDate,
    preview: bool,
) -> (Vec<InvoiceIssued>, Vec<Failed>) {
    let empty = domain::usage::Usage::default();
    let none = BTreeMap::new();
    let (mut due, mut failed) = (Vec::new(), Vec::new());
    for (id, subscription) in &ledger.subscriptions {
        let issued = ledger.invoices.get(id).unwrap_or(&none);
        if issued.contains_key(&month) {
            continue;
        }
        let usage = ledger.usage.get(id).unwrap_or(&empty);
        let computed = invoice(subscription, usage, catalog, month, issued.values().map(Billed::from));
        if matches!(computed, Ok(None)) {
            continue;
        }
        let fail =
            |reason: String| Failed { subscription_id: *id, organization_id: subscription.organization_id, reason };
        if let Some(earlier) = unbilled_month_before(subscription, month, |m| issued.contains_key(&m))
            && !preview
        {
            let (earlier, month) = (period_text(earlier), period_text(month));
            failed.push(fail(format!(
                "{month} waits for {earlier}, which has no invoice: a subscription's months are issued in order"
            )));
            continue;
        }
        match (computed, subscription.organization_id) {
            (Ok(Some(invoice)), Some(organization_id)) => due.push(InvoiceIssued {
                invoice_id: invoice_id(*id, month),
                subscription_id: *id,
                organization_id,
                digest: invoice.digest(),
                invoice,
                usage_sequence: ledger.sequence,
            }),
            (Err(error), _) => failed.push(fail(format!("{}: {error}", period_text(month)))),
            _ => {}
        }
    }
    (due, failed)
}

/// Parses `YYYY-MM` to the month's first day.
pub fn parse_period(text: &str) -> Result<NaiveDate, ApiError> {
    let well_formed = text.len() == 7 && text.as_bytes()[4] == b'-';
    well_formed
        .then(|| NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| ApiError::Validation(format!("period must be YYYY-MM, not {text:?}")))
}

pub async fn run(state: &AppState, period: NaiveDate, preview: bool, actor: &str) -> Result<Run, ApiError> {
    let month = first_of_month(period);
    let ended = state.today() >= month.checked_add_months(Months::new(1)).expect("dates stay far from the end of time");
    if !preview && !ended {
        return Err(ApiError::conflict(
            "month_not_ended",
            format!("{} has not ended; a preview can run now", period_text(month)),
        ));
    }
    // Let the read models include everything appended so far: the
    // invoices see all usage reported before the run.
    let head = state.log.head().await?.sequence;
    state.projections.wait_for(head, crate::command::READ_YOUR_WRITES_WAIT).await?;
    let (due, failed) = {
        let ledger = state.projections.read().await;
        due(&ledger, &state.catalog, month, preview)
    };
    if preview {
        return Ok(Run { invoices: due, failed, sequence: state.log.head().await?.sequence });
    }
    for failure in &failed {
        tracing::warn!(
            subscription = %failure.subscription_id,
            period = %period_text(month),
            reason = %failure.reason,
            "an invoice could not be issued"
        );
    }
    let metadata = domain::Metadata { actor: Some(actor.to_owned()), ..domain::Metadata::default() };
    let now = state.now();
    let mut issued = Vec::with_capacity(due.len());
    for chunk in due.chunks(INVOICES_PER_APPEND_MAX) {
        let commands = chunk
            .iter()
            .map(|invoice| Command {
                stream_id: domain::billing::stream(invoice.subscription_id, month),
                expected: ExpectedRevision::NoStream,
                idempotency: None,
                events: vec![NewEvent::from_event(
                    &InvoiceEvent::from(invoice.clone()),
                    new_event_id(),
                    now,
                    &metadata,
                )],
            })
            .collect();
        for (invoice, outcome) in chunk.iter().zip(state.log.append(commands).await?) {
            match outcome {
                Ok(_) => issued.push(invoice.clone()),
                // Issued meanwhile (another run): it stays as it was.
                Err(Rejection::WrongRevision { .. }) => {}
                Err(other) => return Err(ApiError::Internal(other.to_string())),
            }
        }
    }
    let sequence = state.log.head().await?.sequence;
    let _ = state.projections.wait_for(sequence, crate::command::READ_YOUR_WRITES_WAIT).await;
    Ok(Run { invoices: issued, failed, sequence })
}

/// A failed invoice as the API shows it.
pub fn failed_json(failed: &Failed) -> Value {
    json!({
        "subscriptionId": failed.subscription_id,
        "organizationId": failed.organization_id,
        "reason": failed.reason,
    })
}

/// An invoice as the API shows it.
pub fn invoice_json(issued: &InvoiceIssued) -> Value {
    let money = |m: &domain::Money| format!("{:.2}", m.amount());
    let invoice = &issued.invoice;
    let overage = |inputs: &domain::billing::OverageInputs| {
        json!({
            "peakDataGB": inputs.peak_data_gb.to_string(),
            "dataLimitGB": inputs.data_limit_gb,
            "overageRate": money(&inputs.overage_rate),
        })
    };
    json!({
        "id": issued.invoice_id,
        "subscriptionId": issued.subscription_id,
        "organizationId": issued.organization_id,
        "period": period_text(invoice.period),
        "lines": invoice.lines.iter().map(|line| json!({
            "kind": line.kind,
            "description": line.description,
            "days": line.days,
            "amount": money(&line.amount),
            // The usage reports (log sequences) a late-usage adjustment
            // comes from; empty for other lines.
            "reports": line.reports,
        })).collect::<Vec<_>>(),
        "total": money(&invoice.total),
        "currency": invoice.total.currency().code(),
        "status": "issued",
        "inputs": {
            "runs": invoice.inputs.runs.iter().map(|run| json!({
                "from": run.from,
                "to": run.to,
                "tier": run.tier.as_str(),
                "catalogVersion": run.catalog_version,
                "annualPrice": money(&run.annual_price),
            })).collect::<Vec<_>>(),
            "overage": invoice.inputs.overage.as_ref().map(overage),
            "adjustments": invoice.inputs.adjustments.iter().map(|adjustment| json!({
                "period": period_text(adjustment.month),
                "inputs": overage(&adjustment.inputs),
                "recomputed": money(&adjustment.recomputed),
                "billed": money(&adjustment.billed),
            })).collect::<Vec<_>>(),
        },
        "digest": issued.digest.to_hex(),
        "usageSequence": issued.usage_sequence,
    })
}

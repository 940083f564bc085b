//! The monthly billing run: `POST /api/v1/billing/runs` and `ledger billing
//! run --period YYYY-MM` both call [`run`].
//!
//! It computes every subscription's invoice for the month from the read
//! models (`domain::billing::invoice`) and appends one `InvoiceIssued` per
//! invoice on its own stream, expecting the stream not to exist: a second
//! run of the same month (or a run in another process at the same time)
//! issues nothing new. A month that has not ended is refused unless the run
//! is a preview, which appends nothing.

use std::collections::BTreeMap;

use chrono::{Months, NaiveDate};
use domain::billing::{InvoiceEvent, InvoiceIssued, invoice, invoice_id, period_text};
use domain::calendar::first_of_month;
use serde_json::{Value, json};
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::AppState;
use crate::command::new_event_id;
use crate::error::ApiError;

/// Subscriptions billed per batch of appends.
pub const INVOICES_PER_APPEND_MAX: usize = 500;

/// The answer of a run: the invoices issued by it (or, for a preview, the
/// ones it would issue) and the log head after it.
pub struct Run {
    pub invoices: Vec<InvoiceIssued>,
    pub sequence: u64,
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
    let due: Vec<InvoiceIssued> = {
        let ledger = state.projections.read().await;
        let empty = domain::usage::Usage::default();
        let none = BTreeMap::new();
        ledger
            .subscriptions
            .iter()
            .filter_map(|(id, subscription)| {
                let issued = ledger.invoices.get(id).unwrap_or(&none);
                if issued.contains_key(&month) {
                    return None;
                }
                let usage = ledger.usage.get(id).unwrap_or(&empty);
                let invoice = invoice(subscription, usage, &state.catalog, month, issued.values().map(|i| &i.invoice))?;
                Some(InvoiceIssued {
                    invoice_id: invoice_id(*id, month),
                    subscription_id: *id,
                    organization_id: subscription.organization_id?,
                    digest: invoice.digest(),
                    invoice,
                    usage_sequence: ledger.sequence,
                })
            })
            .collect()
    };
    if preview {
        return Ok(Run { invoices: due, sequence: state.log.head().await?.sequence });
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
    Ok(Run { invoices: issued, sequence })
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

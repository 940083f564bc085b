//! The monthly billing run and the invoices query. `POST
//! /api/v1/billing/runs` and `ledger billing run --period YYYY-MM` both call
//! [`run`].
//!
//! A run computes every subscription's invoice for the month from the read
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

use domain::staff::StaffPermission;
use std::collections::BTreeMap;

use chrono::{Months, NaiveDate};
use domain::billing::{
    Billed, InvoiceEvent, InvoiceIssued, invoice, invoice_id_of, period_text, revision_of, unbilled_month_before,
};
use domain::subscription::Subscription;
use domain::{Metadata, OrganizationId, SubscriptionId};
use projections::db::{DbError, ReadModelDb};
use projections::models::{invoices, subscriptions, usage};
use store::{Command, ExpectedRevision, NewEvent, Rejection};

use crate::command::{READ_YOUR_WRITES_WAIT, new_event_id};
use crate::error::Error;
use crate::views::billing::{BillingRun, FailedInvoice, Invoice};
use crate::{Caller, Ledger, Need};

/// Subscriptions billed per batch of appends.
pub const INVOICES_PER_APPEND_MAX: usize = 500;
/// Subscriptions read (and their invoices computed and issued) per page of
/// a run: a run holds one page of them at a time, whatever the log holds.
pub const SUBSCRIPTIONS_PER_PAGE: usize = projections::models::PAGE_ITEMS_MAX;
/// The most pages one run walks: a hundred million subscriptions.
pub const RUN_PAGES_MAX: usize = 500_000;

/// Parses `YYYY-MM` to the month's first day.
pub fn parse_period(text: &str) -> Result<NaiveDate, Error> {
    let well_formed = text.len() == 7 && text.as_bytes()[4] == b'-';
    well_formed
        .then(|| NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| Error::Validation(format!("period must be YYYY-MM, not {text:?}")))
}

/// Runs (or, with `preview`, previews) the billing of the month `period`
/// (`YYYY-MM`): the operator's. `actor` is recorded as the invoices' actor.
pub async fn run(
    ledger: &Ledger,
    caller: &Caller,
    actor: &str,
    period: &str,
    preview: bool,
) -> Result<BillingRun, Error> {
    let started = std::time::Instant::now();
    let result = run_month(ledger, caller, actor, period, preview).await;
    let refused =
        matches!(result, Err(Error::Unauthorized | Error::Forbidden | Error::Validation(_) | Error::Conflict { .. }));
    if !preview && !refused {
        ledger.metrics.billing_run_seconds.observe(started.elapsed().as_secs_f64());
        if result.as_ref().map_or(true, |run| !run.failed.is_empty()) {
            ledger.metrics.billing_run_failures.inc();
        }
    }
    result
}

/// [`run`], unmeasured.
async fn run_month(
    ledger: &Ledger,
    caller: &Caller,
    actor: &str,
    period: &str,
    preview: bool,
) -> Result<BillingRun, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let month = parse_period(period)?;
    let ended =
        ledger.today() >= month.checked_add_months(Months::new(1)).expect("dates stay far from the end of time");
    if !preview && !ended {
        return Err(Error::conflict(
            "month_not_ended",
            format!("{} has not ended; a preview can run now", period_text(month)),
        ));
    }
    // Let the read models include everything appended so far: the
    // invoices see all usage reported before the run.
    if ledger.models.failed().is_some() {
        return Err(Error::ReadModelFailed);
    }
    let head = ledger.log.head().await?.sequence;
    let at = ledger.models.wait_for(head, READ_YOUR_WRITES_WAIT).await.map_err(|_| Error::ProjectionLagging(head))?;
    let (mut issued, mut failed) = (Vec::new(), Vec::new());
    let mut after = None;
    for _ in 0..RUN_PAGES_MAX {
        let page = subscriptions::page(&ledger.models.db, after, SUBSCRIPTIONS_PER_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let full = page.len() == SUBSCRIPTIONS_PER_PAGE;
        let (due, page_failed) = due(ledger, page, month, preview, at).await?;
        if !preview {
            for failure in &page_failed {
                tracing::warn!(
                    subscription = %failure.subscription_id,
                    period = %period_text(month),
                    reason = %failure.reason,
                    "an invoice could not be issued"
                );
            }
        }
        issued.extend(if preview { due } else { issue(ledger, actor, month, due).await? });
        failed.extend(page_failed);
        if !full {
            break;
        }
    }
    let sequence = ledger.log.head().await?.sequence;
    if !preview {
        let _ = ledger.models.wait_for(sequence, READ_YOUR_WRITES_WAIT).await;
    }
    Ok(BillingRun { invoices: issued.iter().map(Invoice::from).collect(), failed, sequence })
}

/// An organization's invoices, oldest first: its members from analyst up,
/// the operator and the auditor.
pub async fn invoices(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
) -> Result<Vec<Invoice>, Error> {
    caller.require_org(organization_id, Need::Analyst)?;
    Invoice::of_organization_in(&ledger.models.db, organization_id).await?.ok_or(Error::NotFound)
}

/// The invoices of `month` not issued yet among one page of
/// subscriptions, and the subscriptions whose invoice cannot be issued. A
/// preview shows each invoice as it computes now, an earlier month without
/// an invoice or not (a forecast of a month under way is its use); only a
/// run holds a later month back. `usage_sequence` is what the read models
/// include. One subscription's data that cannot be read fails it alone.
pub(crate) async fn due(
    ledger: &Ledger,
    page: Vec<(SubscriptionId, Subscription)>,
    month: NaiveDate,
    preview: bool,
    usage_sequence: u64,
) -> Result<(Vec<InvoiceIssued>, Vec<FailedInvoice>), Error> {
    let (mut due, mut failed) = (Vec::new(), Vec::new());
    let ids: Vec<SubscriptionId> = page.iter().map(|(id, _)| *id).collect();
    let mut inputs = page_inputs(&ledger.models.db, &ids, month).await?;
    for (id, subscription) in page {
        let outcome = match inputs.remove(&id).unwrap_or(Ok(None)) {
            Ok(None) => continue,
            Ok(Some((issued, usage, revision))) => {
                due_one(&ledger.catalog, (id, &subscription), &usage, &issued, (month, revision), preview)
                    .map(|found| found.map(|invoice| InvoiceIssued { usage_sequence, ..invoice }))
            }
            Err(DbError::Decode(error) | DbError::Schema(error)) => {
                Err(format!("{}: its invoices or usage cannot be read: {error}", period_text(month)))
            }
            Err(error) => return Err(error.into()),
        };
        match outcome {
            Ok(Some(invoice)) => due.push(invoice),
            Ok(None) => {}
            Err(reason) => failed.push(FailedInvoice {
                subscription_id: id.0,
                organization_id: subscription.organization_id.map(|o| o.0),
                reason,
            }),
        }
    }
    Ok((due, failed))
}

/// A subscription's invoices in force, the usage its invoice of `month`
/// is computed from and the revision that invoice takes (how many of the
/// month's invoices were voided), or `None` when it has that month's
/// invoice already: see [`inputs`].
type Inputs = Option<(BTreeMap<NaiveDate, InvoiceIssued>, domain::usage::Usage, u32)>;

/// [`inputs`] of a page of subscriptions, in two queries (their invoices,
/// then the usage of the months each needs) instead of two a
/// subscription; one subscription's rows that cannot be read fail it alone.
async fn page_inputs(
    db: &ReadModelDb,
    ids: &[SubscriptionId],
    month: NaiveDate,
) -> Result<BTreeMap<SubscriptionId, Result<Inputs, DbError>>, DbError> {
    let mut found = BTreeMap::new();
    let mut issued_of = BTreeMap::new();
    let mut months = BTreeMap::new();
    let voids = invoices::voids_of_subscriptions(db, ids).await?;
    for (id, issued) in invoices::of_subscriptions(db, ids).await? {
        match issued {
            Ok(issued) if issued.contains_key(&month) => {
                found.insert(id, Ok(None));
            }
            Ok(issued) => {
                months.insert(id, std::iter::once(month).chain(issued.keys().copied()).collect());
                issued_of.insert(id, issued);
            }
            Err(error) => {
                found.insert(id, Err(error));
            }
        }
    }
    for (id, usage) in usage::months_of(db, &months).await? {
        let issued = issued_of.remove(&id).unwrap_or_default();
        let revision = voids.get(&(id, month)).copied().unwrap_or(0);
        found.insert(id, usage.map(|usage| Some((issued, usage, revision))));
    }
    Ok(found)
}

/// A subscription's invoices and the usage its invoice of `month` is
/// computed from (that month's and, for late-usage adjustments, the
/// invoiced months'); `None` when `month` has its invoice already.
async fn inputs(db: &ReadModelDb, id: SubscriptionId, month: NaiveDate) -> Result<Inputs, DbError> {
    let issued = invoices::of_subscription(db, id).await?;
    if issued.contains_key(&month) {
        return Ok(None);
    }
    let usage = usage::months(db, id, std::iter::once(month).chain(issued.keys().copied())).await?;
    let revision = invoices::voids_of_subscriptions(db, &[id]).await?.get(&(id, month)).copied().unwrap_or(0);
    Ok(Some((issued, usage, revision)))
}

/// The invoice of the month of `day` for the subscription `id` in the
/// state `subscription` (a change's preview: its state before and after),
/// as it computes now; `None` when the month is already invoiced or bills
/// nothing. Appends nothing.
pub(crate) async fn month_preview(
    ledger: &Ledger,
    id: SubscriptionId,
    subscription: &Subscription,
    day: NaiveDate,
) -> Result<Option<Invoice>, Error> {
    let month = domain::calendar::first_of_month(day);
    let Some((issued, usage, revision)) = inputs(&ledger.models.db, id, month).await? else { return Ok(None) };
    let preview = due_one(&ledger.catalog, (id, subscription), &usage, &issued, (month, revision), true);
    let issued = preview.map_err(|reason| Error::conflict("invoice_not_computable", reason))?;
    Ok(issued.as_ref().map(Invoice::from))
}

/// One subscription's invoice of `month`, if it has one to issue (its
/// `usage_sequence` left for the caller to set); why not when it cannot be
/// issued.
pub(crate) fn due_one(
    catalog: &domain::catalog::Catalog,
    (id, subscription): (SubscriptionId, &Subscription),
    usage: &domain::usage::Usage,
    issued: &BTreeMap<NaiveDate, InvoiceIssued>,
    (month, revision): (NaiveDate, u32),
    preview: bool,
) -> Result<Option<InvoiceIssued>, String> {
    let computed = invoice(subscription, usage, catalog, month, issued.values().map(Billed::from));
    if matches!(computed, Ok(None)) {
        return Ok(None);
    }
    if let Some(earlier) = unbilled_month_before(subscription, month, |m| issued.contains_key(&m))
        && !preview
    {
        let (earlier, month) = (period_text(earlier), period_text(month));
        return Err(format!(
            "{month} waits for {earlier}, which has no invoice: a subscription's months are issued in order"
        ));
    }
    match (computed, subscription.organization_id) {
        (Ok(Some(invoice)), Some(organization_id)) => Ok(Some(InvoiceIssued {
            invoice_id: invoice_id_of(id, month, revision),
            subscription_id: id,
            organization_id,
            digest: invoice.digest(),
            invoice,
            usage_sequence: 0,
        })),
        (Err(error), _) => Err(format!("{}: {error}", period_text(month))),
        _ => Ok(None),
    }
}

/// Appends the due invoices, each on its own stream expected not to exist;
/// returns the ones this run issued (one issued meanwhile by another run
/// stays as it was, and is not this run's).
pub(crate) async fn issue(
    ledger: &Ledger,
    actor: &str,
    month: NaiveDate,
    due: Vec<InvoiceIssued>,
) -> Result<Vec<InvoiceIssued>, Error> {
    let metadata = Metadata { actor: Some(actor.to_owned()), ..Metadata::default() };
    let now = ledger.now();
    let mut issued = Vec::with_capacity(due.len());
    for chunk in due.chunks(INVOICES_PER_APPEND_MAX) {
        let commands = chunk
            .iter()
            .map(|invoice| Command {
                stream_id: domain::billing::stream_of(
                    invoice.subscription_id,
                    month,
                    revision_of(invoice.subscription_id, month, invoice.invoice_id)
                        .expect("a due invoice's id is derived from a revision"),
                ),
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
        for (invoice, outcome) in chunk.iter().zip(ledger.log.append(commands).await?) {
            match outcome {
                Ok(_) => issued.push(invoice.clone()),
                Err(Rejection::WrongRevision { .. }) => {}
                Err(other) => return Err(Error::Internal(other.to_string())),
            }
        }
    }
    Ok(issued)
}

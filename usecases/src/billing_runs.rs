//! Billing runs for the billing team (issue 15, "billing runs"): a month's
//! preview compared with the invoices already issued, then a run in the
//! background whose progress can be read while it goes.
//!
//! The preview walks one page of subscriptions (the run's own paging,
//! [`billing::SUBSCRIPTIONS_PER_PAGE`] at most) and says, per
//! subscription, what the run would do: issue a `new` invoice, find one
//! already issued that recomputes the `same` or `differs` (naming the
//! amounts), find one `already_issued` that no longer recomputes to an
//! invoice, or bill a `voided_would_rebill` month again under its next
//! revision's id. It appends nothing.
//!
//! A background run is the synchronous run's commands, page by page: each
//! invoice is appended on its own stream expected not to exist, so a
//! background run, a synchronous run and a run on another node issue each
//! invoice once between them. What this module keeps is only the progress,
//! in this process's memory: the last [`RUNS_KEPT_MAX`] runs, one running
//! per month. On several nodes each node knows the runs it started; the
//! invoices themselves are in the log for every node.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use chrono::{Months, NaiveDate};
use domain::billing::{Billed, InvoiceIssued, LineKind, invoice, invoice_id_of, period_text};
use domain::staff::StaffPermission;
use domain::subscription::Subscription;
use domain::{Money, SubscriptionId};
use projections::db::DbError;
use projections::models::{invoices, subscriptions, usage};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::billing::{self, RUN_PAGES_MAX, SUBSCRIPTIONS_PER_PAGE, parse_period};
use crate::command::READ_YOUR_WRITES_WAIT;
use crate::error::Error;
use crate::views::Amount;
use crate::views::billing::{FailedInvoice, InvoiceLineKind};
use crate::{Caller, Ledger};

/// The runs one process remembers (running or done): enough for a month's
/// runs and reruns to stay readable, few enough that their failure lists
/// stay small in memory.
pub const RUNS_KEPT_MAX: usize = 32;
/// The failed subscriptions one run names (the count goes on past it):
/// a run where every invoice fails holds at most this many reasons.
pub const RUN_FAILURES_KEPT_MAX: usize = 1_000;
/// The subscriptions one preview page walks, unless asked for fewer.
pub const PREVIEW_PAGE_ITEMS_MAX: usize = SUBSCRIPTIONS_PER_PAGE;

/// What the run would do with one subscription's month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// No invoice of the month yet: the run issues this one.
    New,
    /// Issued, and recomputing it now gives the same invoice (digest).
    Same,
    /// Issued, and recomputing it now gives another invoice (late usage,
    /// a corrected add-on): the issued one stands; `differences` names the
    /// amounts, and late usage is billed by a later month's adjustment.
    Differs,
    /// Issued, and the month no longer computes to an invoice (nothing
    /// billable now, or an amount that cannot be computed): the issued one
    /// stands and the run issues nothing.
    AlreadyIssued,
    /// The month's invoice was voided: the run bills it again under the
    /// next revision's id.
    VoidedWouldRebill,
}

/// An invoice as the preview shows it: its id, lines and total.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewInvoice {
    pub id: Uuid,
    pub lines: Vec<PreviewLine>,
    pub total: Amount,
    /// BLAKE3 of the invoice and its inputs (hex), as an issued invoice's.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewLine {
    pub kind: InvoiceLineKind,
    pub description: String,
    pub amount: Amount,
}

/// An amount that differs between the issued invoice and its
/// recomputation: the sum of a kind of line (`base`, `addon`,
/// `one_time_addon`, `data_overage`, `usage_adjustment`), the `total`, or
/// `inputs` (no amount differs, what they were computed from does).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PreviewDifference)]
pub struct Difference {
    pub what: String,
    /// In the issued invoice; `null` when it has no such line.
    pub issued: Option<Amount>,
    /// Recomputed now; `null` when it has no such line.
    pub now: Option<Amount>,
}

/// One subscription's month in a preview.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewItem {
    pub subscription_id: Uuid,
    pub organization_id: Uuid,
    pub comparison: Comparison,
    /// The invoice the run would issue (`new`, `voided_would_rebill`) or
    /// the issued one as it recomputes now (`same`, `differs`); `null` for
    /// `already_issued`.
    pub computed: Option<PreviewInvoice>,
    /// The month's issued invoice in force, or for `voided_would_rebill`
    /// the last voided one; `null` for `new`.
    pub issued: Option<PreviewInvoice>,
    /// For `differs`: what differs. Empty otherwise.
    pub differences: Vec<Difference>,
}

/// A page of a month's preview.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPreview {
    /// `YYYY-MM`.
    pub period: String,
    /// Whether the month has ended (only then may a run issue it; before,
    /// the preview is a forecast and does not hold later months back).
    pub ended: bool,
    /// The page's subscriptions that bill the month or have its invoice,
    /// in subscription id order.
    pub items: Vec<PreviewItem>,
    /// The page's subscriptions whose invoice the run could not issue.
    pub failed: Vec<FailedInvoice>,
    /// The cursor of the next page (the last subscription walked); absent
    /// on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Uuid>,
    /// The log sequence the read models included.
    pub sequence: u64,
}

/// Where a background run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Every subscription walked; `failed` names the ones not issued.
    Finished,
    /// The run stopped (the log or the read models refused): `error` says
    /// so; what it issued stays issued, and a new run goes on from there.
    Failed,
}

/// A background billing run's progress, as this node knows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundRun {
    pub id: Uuid,
    /// `YYYY-MM`.
    pub period: String,
    pub state: RunState,
    /// Who started it (recorded as the invoices' actor).
    pub actor: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The subscriptions the read models held when the run started.
    pub subscriptions_total: u64,
    /// The subscriptions walked so far.
    pub subscriptions_done: u64,
    /// The invoices this run issued (an invoice issued before, by any run,
    /// is not issued again nor counted).
    pub invoices_issued: u64,
    /// The subscriptions whose invoice could not be issued so far.
    pub failures: u64,
    /// The first [`RUN_FAILURES_KEPT_MAX`] of them, with their reasons.
    pub failed: Vec<FailedInvoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The log head after its last page.
    pub sequence: u64,
}

/// The runs this process remembers, newest last (at most
/// [`RUNS_KEPT_MAX`]).
#[derive(Debug, Default)]
pub struct BillingRuns {
    runs: Mutex<VecDeque<BackgroundRun>>,
}

impl BillingRuns {
    fn lock(&self) -> MutexGuard<'_, VecDeque<BackgroundRun>> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: Uuid) -> Option<BackgroundRun> {
        self.lock().iter().find(|run| run.id == id).cloned()
    }

    fn update(&self, id: Uuid, change: impl FnOnce(&mut BackgroundRun)) {
        if let Some(run) = self.lock().iter_mut().find(|run| run.id == id) {
            change(run);
        }
    }

    /// The running run of `period`, or `fresh` added (forgetting the
    /// oldest finished run when full): `(run, true)` when `fresh` was added.
    fn start(&self, fresh: BackgroundRun) -> Result<(BackgroundRun, bool), Error> {
        let mut runs = self.lock();
        let running = runs.iter().find(|run| run.period == fresh.period && run.state == RunState::Running);
        if let Some(running) = running {
            return Ok((running.clone(), false));
        }
        if runs.len() >= RUNS_KEPT_MAX {
            let Some(done) = runs.iter().position(|run| run.state != RunState::Running) else {
                return Err(Error::conflict(
                    "too_many_runs",
                    format!("{RUNS_KEPT_MAX} billing runs are running on this node; wait for one to finish"),
                ));
            };
            runs.remove(done);
        }
        runs.push_back(fresh.clone());
        Ok((fresh, true))
    }
}

/// Parses a preview's cursor (a subscription id).
fn parse_cursor(cursor: Option<&str>) -> Result<Option<SubscriptionId>, Error> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            Uuid::parse_str(c)
                .map(SubscriptionId)
                .map_err(|_| Error::Validation(format!("cursor must be a subscription id (a UUID), not {c:?}")))
        })
        .transpose()
}

/// Waits (bounded) until the read models include the log's head: the
/// preview and the run see all usage reported before them.
async fn caught_up(ledger: &Ledger) -> Result<u64, Error> {
    if ledger.models.failed().is_some() {
        return Err(Error::ReadModelFailed);
    }
    let head = ledger.log.head().await?.sequence;
    ledger.models.wait_for(head, READ_YOUR_WRITES_WAIT).await.map_err(|_| Error::ProjectionLagging(head))
}

fn has_ended(ledger: &Ledger, month: NaiveDate) -> bool {
    ledger.today() >= month.checked_add_months(Months::new(1)).expect("dates stay far from the end of time")
}

/// One page of the month `period`'s preview (BillingOps): at most `limit`
/// subscriptions (1 to [`PREVIEW_PAGE_ITEMS_MAX`], that many by default)
/// after `cursor`. Appends nothing.
pub async fn preview(
    ledger: &Ledger,
    caller: &Caller,
    period: &str,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<RunPreview, Error> {
    caller.require(StaffPermission::BillingOps)?;
    let month = parse_period(period)?;
    let after = parse_cursor(cursor)?;
    let size = limit.unwrap_or(PREVIEW_PAGE_ITEMS_MAX);
    if !(1..=PREVIEW_PAGE_ITEMS_MAX).contains(&size) {
        return Err(Error::Validation(format!("limit must be 1 to {PREVIEW_PAGE_ITEMS_MAX}, not {size}")));
    }
    let sequence = caught_up(ledger).await?;
    let ended = has_ended(ledger, month);
    let page = subscriptions::page(&ledger.models.db, after, size).await?;
    let next_cursor = (page.len() == size).then(|| page.last().map(|(id, _)| id.0)).flatten();
    let (items, failed) = compare_page(ledger, page, month, ended).await?;
    Ok(RunPreview { period: period_text(month), ended, items, failed, next_cursor, sequence })
}

/// A subscription's invoices in force by month and the usage of the
/// month and of its invoiced months, or why they cannot be read.
type Compared = Result<(BTreeMap<NaiveDate, InvoiceIssued>, domain::usage::Usage), DbError>;

/// The preview of one page of subscriptions, in three queries (invoices,
/// voids, usage) and one more per voided month.
async fn compare_page(
    ledger: &Ledger,
    page: Vec<(SubscriptionId, Subscription)>,
    month: NaiveDate,
    ended: bool,
) -> Result<(Vec<PreviewItem>, Vec<FailedInvoice>), Error> {
    let db = &ledger.models.db;
    let ids: Vec<SubscriptionId> = page.iter().map(|(id, _)| *id).collect();
    let voids = invoices::voids_of_subscriptions(db, &ids).await?;
    let mut found: BTreeMap<SubscriptionId, Compared> = BTreeMap::new();
    let (mut months, mut issued_of) = (BTreeMap::new(), BTreeMap::new());
    for (id, issued) in invoices::of_subscriptions(db, &ids).await? {
        match issued {
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
        found.insert(id, usage.map(|usage| (issued, usage)));
    }
    let (mut items, mut failed) = (Vec::new(), Vec::new());
    for (id, subscription) in page {
        let fail = |reason: String| FailedInvoice {
            subscription_id: id.0,
            organization_id: subscription.organization_id.map(|o| o.0),
            reason,
        };
        let (issued, usage) = match found.remove(&id) {
            Some(Ok(inputs)) => inputs,
            None => continue,
            Some(Err(DbError::Decode(error) | DbError::Schema(error))) => {
                failed.push(fail(format!("{}: its invoices or usage cannot be read: {error}", period_text(month))));
                continue;
            }
            Some(Err(error)) => return Err(error.into()),
        };
        let revision = voids.get(&(id, month)).copied().unwrap_or(0);
        let one = Subject { id, subscription: &subscription, usage: &usage, issued: &issued, month };
        match compare_one(ledger, &one, revision, ended).await? {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(reason) => failed.push(fail(reason)),
        }
    }
    Ok((items, failed))
}

/// What one subscription's month is compared from.
struct Subject<'a> {
    id: SubscriptionId,
    subscription: &'a Subscription,
    usage: &'a domain::usage::Usage,
    issued: &'a BTreeMap<NaiveDate, InvoiceIssued>,
    month: NaiveDate,
}

/// One subscription's month: `None` when it bills nothing and has no
/// invoice; `Err` with the reason when the run could not issue it.
async fn compare_one(
    ledger: &Ledger,
    one: &Subject<'_>,
    revision: u32,
    ended: bool,
) -> Result<Result<Option<PreviewItem>, String>, Error> {
    let organization_id = |issued: &InvoiceIssued| issued.organization_id.0;
    if let Some(existing) = one.issued.get(&one.month) {
        let earlier = one.issued.range(..one.month).map(|(_, issued)| Billed::from(issued));
        let now = invoice(one.subscription, one.usage, &ledger.catalog, one.month, earlier).ok().flatten();
        let (comparison, differences) = match &now {
            None => (Comparison::AlreadyIssued, Vec::new()),
            Some(now) if now.digest() == existing.invoice.digest() => (Comparison::Same, Vec::new()),
            Some(now) => (Comparison::Differs, differences(&existing.invoice, now)),
        };
        let computed = now.map(|now| shown(existing.invoice_id, &now));
        return Ok(Ok(Some(PreviewItem {
            subscription_id: one.id.0,
            organization_id: organization_id(existing),
            comparison,
            computed,
            issued: Some(shown(existing.invoice_id, &existing.invoice)),
            differences,
        })));
    }
    // Before the month ends the preview is a forecast: like the
    // synchronous preview, it does not hold a month back for an earlier
    // one without an invoice. After, it says what the run would do.
    let due = billing::due_one(
        &ledger.catalog,
        (one.id, one.subscription),
        one.usage,
        one.issued,
        (one.month, revision),
        !ended,
    );
    let Some(due) = (match due {
        Ok(due) => due,
        Err(reason) => return Ok(Err(reason)),
    }) else {
        return Ok(Ok(None));
    };
    let voided = match revision.checked_sub(1) {
        Some(last) => invoices::voided(&ledger.models.db, invoice_id_of(one.id, one.month, last)).await?,
        None => None,
    };
    Ok(Ok(Some(PreviewItem {
        subscription_id: one.id.0,
        organization_id: organization_id(&due),
        comparison: if revision > 0 { Comparison::VoidedWouldRebill } else { Comparison::New },
        computed: Some(shown(due.invoice_id, &due.invoice)),
        issued: voided.map(|v| shown(v.issued.invoice_id, &v.issued.invoice)),
        differences: Vec::new(),
    })))
}

fn shown(id: Uuid, invoice: &domain::billing::Invoice) -> PreviewInvoice {
    PreviewInvoice {
        id,
        lines: invoice
            .lines
            .iter()
            .map(|l| PreviewLine { kind: l.kind.into(), description: l.description.clone(), amount: l.amount.into() })
            .collect(),
        total: invoice.total.into(),
        digest: invoice.digest().to_hex(),
    }
}

const LINE_KINDS: [(LineKind, &str); 5] = [
    (LineKind::Base, "base"),
    (LineKind::Addon, "addon"),
    (LineKind::OneTimeAddon, "one_time_addon"),
    (LineKind::DataOverage, "data_overage"),
    (LineKind::UsageAdjustment, "usage_adjustment"),
];

/// The amounts that differ: each kind of line's sum, then the total; the
/// inputs when no amount does.
fn differences(issued: &domain::billing::Invoice, now: &domain::billing::Invoice) -> Vec<Difference> {
    let sum = |invoice: &domain::billing::Invoice, kind: LineKind| {
        let mut lines = invoice.lines.iter().filter(|l| l.kind == kind).map(|l| l.amount).peekable();
        lines.peek()?;
        // Lines of one invoice were summed once already into its total;
        // should they no longer sum, the kind is shown as unknown.
        lines.try_fold(Money::zero(invoice.total.currency()), |sum, amount| sum.checked_add(amount).ok())
    };
    let mut found: Vec<Difference> = LINE_KINDS
        .iter()
        .filter_map(|(kind, what)| {
            let (issued, now) = (sum(issued, *kind), sum(now, *kind));
            (issued != now).then(|| Difference {
                what: (*what).to_owned(),
                issued: issued.map(Amount::from),
                now: now.map(Amount::from),
            })
        })
        .collect();
    if issued.total != now.total {
        found.push(Difference { what: "total".into(), issued: Some(issued.total.into()), now: Some(now.total.into()) });
    }
    if found.is_empty() {
        found.push(Difference { what: "inputs".into(), issued: None, now: None });
    }
    found
}

/// Starts a background run of the month `period` (BillingOps), or finds
/// the one of that month running on this node: `(run, true)` when it
/// started one. A month that has not ended is refused, as by the
/// synchronous run.
pub async fn start(ledger: &Ledger, caller: &Caller, period: &str) -> Result<(BackgroundRun, bool), Error> {
    caller.require(StaffPermission::BillingOps)?;
    let month = parse_period(period)?;
    if !has_ended(ledger, month) {
        return Err(Error::conflict(
            "month_not_ended",
            format!("{} has not ended; a preview can run now", period_text(month)),
        ));
    }
    if ledger.models.failed().is_some() {
        return Err(Error::ReadModelFailed);
    }
    let fresh = BackgroundRun {
        id: Uuid::now_v7(),
        period: period_text(month),
        state: RunState::Running,
        actor: caller.actor(),
        started_at: ledger.now().to_datetime().to_rfc3339(),
        finished_at: None,
        subscriptions_total: subscriptions::count(&ledger.models.db).await?,
        subscriptions_done: 0,
        invoices_issued: 0,
        failures: 0,
        failed: Vec::new(),
        error: None,
        sequence: ledger.log.head().await?.sequence,
    };
    let (run, started) = ledger.billing_runs.start(fresh)?;
    if started {
        tokio::spawn(proceed(ledger.clone(), run.id, run.actor.clone(), month));
    }
    Ok((run, started))
}

/// A background run's progress (BillingOps); `NotFound` for a run this
/// node does not know (started on another node, or forgotten).
pub fn progress(ledger: &Ledger, caller: &Caller, id: Uuid) -> Result<BackgroundRun, Error> {
    caller.require(StaffPermission::BillingOps)?;
    ledger.billing_runs.get(id).ok_or(Error::NotFound)
}

/// The runs this node remembers, newest first (BillingOps).
pub fn recent(ledger: &Ledger, caller: &Caller) -> Result<Vec<BackgroundRun>, Error> {
    caller.require(StaffPermission::BillingOps)?;
    Ok(ledger.billing_runs.lock().iter().rev().cloned().collect())
}

/// The run itself, measured like the synchronous run, its end recorded.
async fn proceed(ledger: Ledger, id: Uuid, actor: String, month: NaiveDate) {
    let started = std::time::Instant::now();
    let outcome = walk(&ledger, id, &actor, month).await;
    ledger.metrics.billing_run_seconds.observe(started.elapsed().as_secs_f64());
    let failures = ledger.billing_runs.get(id).map_or(0, |run| run.failures);
    if outcome.is_err() || failures > 0 {
        ledger.metrics.billing_run_failures.inc();
    }
    if let Err(error) = &outcome {
        tracing::error!(run = %id, period = %period_text(month), %error, "a background billing run stopped");
    }
    let sequence = ledger.log.head().await.map(|head| head.sequence).ok();
    let finished_at = ledger.now().to_datetime().to_rfc3339();
    ledger.billing_runs.update(id, |run| {
        run.finished_at = Some(finished_at);
        run.sequence = sequence.unwrap_or(run.sequence);
        match outcome {
            Ok(()) => run.state = RunState::Finished,
            Err(error) => {
                run.state = RunState::Failed;
                run.error = Some(stopped_reason(&error));
            }
        }
    });
}

/// What a stopped run says: its refusals as they are, anything else
/// without internals (the server's log has it).
fn stopped_reason(error: &Error) -> String {
    match error {
        Error::ProjectionLagging(_) | Error::ReadModelFailed | Error::Unavailable(_) => {
            format!("the run stopped: {error}; a new run goes on where it stopped")
        }
        _ => "the run stopped on an internal error (see the server's log); a new run goes on where it stopped".into(),
    }
}

/// The run's pages: the synchronous run's commands, its progress recorded
/// after each page.
async fn walk(ledger: &Ledger, id: Uuid, actor: &str, month: NaiveDate) -> Result<(), Error> {
    let at = caught_up(ledger).await?;
    let mut after = None;
    for _ in 0..RUN_PAGES_MAX {
        let page = subscriptions::page(&ledger.models.db, after, SUBSCRIPTIONS_PER_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let (walked, full) = (page.len() as u64, page.len() == SUBSCRIPTIONS_PER_PAGE);
        let (due, failed) = billing::due(ledger, page, month, false, at).await?;
        for failure in &failed {
            tracing::warn!(
                subscription = %failure.subscription_id,
                period = %period_text(month),
                reason = %failure.reason,
                "an invoice could not be issued"
            );
        }
        let issued = billing::issue(ledger, actor, month, due).await?.len() as u64;
        let sequence = ledger.log.head().await?.sequence;
        ledger.billing_runs.update(id, |run| {
            run.subscriptions_done = run.subscriptions_done.saturating_add(walked);
            // Subscriptions created while the run goes are walked too.
            run.subscriptions_total = run.subscriptions_total.max(run.subscriptions_done);
            run.invoices_issued = run.invoices_issued.saturating_add(issued);
            run.failures = run.failures.saturating_add(failed.len() as u64);
            let room = RUN_FAILURES_KEPT_MAX.saturating_sub(run.failed.len());
            run.failed.extend(failed.into_iter().take(room));
            run.sequence = sequence;
        });
        if !full {
            break;
        }
    }
    let _ = ledger.models.wait_for(ledger.log.head().await?.sequence, READ_YOUR_WRITES_WAIT).await;
    Ok(())
}

//! The console's Billing runs page (billing staff): choose a month, see
//! its preview compared with the invoices issued
//! (`usecases::billing_runs::preview`), issue it in the background, then
//! follow the run's progress on a page that refreshes itself (a meta
//! refresh, no script) until it is done.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use domain::staff::StaffPermission;
use serde::Deserialize;
use usecases::billing_runs::{self, BackgroundRun, Comparison, PreviewItem, RunState};

use super::pages::{Nav, nav};
use super::{ConsoleError, StaffSigned, forbidden};
use crate::Portal;

/// Seconds between two refreshes of a running run's page.
const PROGRESS_REFRESH_SECONDS: u32 = 2;
/// The longest period or cursor text the page reads from its query.
const QUERY_CHARS_MAX: usize = 64;

/// One row of the preview table, as text.
pub struct PreviewRow {
    organization: String,
    subscription: String,
    comparison: &'static str,
    computed_total: String,
    issued_total: String,
    invoice_id: String,
    differences: String,
}

pub struct FailedRow {
    subscription: String,
    reason: String,
}

pub struct RunRow {
    id: String,
    period: String,
    state: &'static str,
    done: u64,
    total: u64,
    issued: u64,
    failures: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/runs.html")]
pub struct RunsPage {
    nav: Nav,
    period: String,
    /// Whether a preview was asked for (a period given).
    shown: bool,
    ended: bool,
    rows: Vec<PreviewRow>,
    failed: Vec<FailedRow>,
    next: Option<String>,
    runs: Vec<RunRow>,
}

#[derive(Deserialize)]
pub struct RunsQuery {
    period: Option<String>,
    cursor: Option<String>,
}

fn comparison_text(comparison: Comparison) -> &'static str {
    match comparison {
        Comparison::New => "new",
        Comparison::Same => "same",
        Comparison::Differs => "differs",
        Comparison::AlreadyIssued => "already issued",
        Comparison::VoidedWouldRebill => "voided → would rebill",
    }
}

fn state_text(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Finished => "finished",
        RunState::Failed => "failed",
    }
}

fn preview_row(item: PreviewItem) -> PreviewRow {
    let total = |i: &Option<billing_runs::PreviewInvoice>| i.as_ref().map_or_else(|| "—".into(), |i| i.total.text());
    let differences = item
        .differences
        .iter()
        .map(|d| {
            let text = |a: &Option<usecases::views::Amount>| a.map_or_else(|| "none".into(), |a| a.text());
            match (&d.issued, &d.now) {
                (None, None) => d.what.clone(),
                (issued, now) => format!("{}: {} → {}", d.what, text(issued), text(now)),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    PreviewRow {
        organization: item.organization_id.to_string(),
        subscription: item.subscription_id.to_string(),
        comparison: comparison_text(item.comparison),
        computed_total: total(&item.computed),
        issued_total: total(&item.issued),
        invoice_id: item.computed.as_ref().or(item.issued.as_ref()).map(|i| i.id.to_string()).unwrap_or_default(),
        differences,
    }
}

fn run_row(run: &BackgroundRun) -> RunRow {
    RunRow {
        id: run.id.to_string(),
        period: run.period.clone(),
        state: state_text(run.state),
        done: run.subscriptions_done,
        total: run.subscriptions_total,
        issued: run.invoices_issued,
        failures: run.failures,
    }
}

/// The page: the month's form, the runs this node remembers and, for a
/// chosen month, a page of its preview with the Issue button.
pub async fn page(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Query(query): Query<RunsQuery>,
) -> Result<Response, ConsoleError> {
    if !signed.may(StaffPermission::BillingOps) {
        return Err(forbidden());
    }
    let caller = signed.staff.caller();
    let runs = billing_runs::recent(&portal.ledger, &caller)?.iter().map(run_row).collect();
    let period = query.period.filter(|p| !p.is_empty()).map(|p| p.chars().take(QUERY_CHARS_MAX).collect::<String>());
    let Some(period) = period else {
        let this_month = portal.ledger.today().format("%Y-%m").to_string();
        let page = RunsPage {
            nav: nav(&signed, "runs"),
            period: this_month,
            shown: false,
            ended: false,
            rows: Vec::new(),
            failed: Vec::new(),
            next: None,
            runs,
        };
        return Ok(page.into_response());
    };
    let cursor = query.cursor.as_deref().filter(|c| c.len() <= QUERY_CHARS_MAX);
    let preview = billing_runs::preview(&portal.ledger, &caller, &period, cursor, None).await?;
    let failed =
        preview.failed.into_iter().map(|f| FailedRow { subscription: f.subscription_id.to_string(), reason: f.reason });
    Ok(RunsPage {
        nav: nav(&signed, "runs"),
        period: preview.period,
        shown: true,
        ended: preview.ended,
        rows: preview.items.into_iter().map(preview_row).collect(),
        failed: failed.collect(),
        next: preview.next_cursor.map(|c| c.to_string()),
        runs,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct IssueForm {
    period: String,
    #[serde(default)]
    csrf: String,
}

/// Starts the month's run in the background (or finds it running), then
/// on to its progress page.
pub async fn issue(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Form(form): Form<IssueForm>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&form.csrf)?;
    let (run, _) = billing_runs::start(&portal.ledger, &signed.staff.caller(), &form.period).await?;
    Ok(Redirect::to(&format!("/console/runs/{}", run.id)).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "console/run.html")]
pub struct ProgressPage {
    nav: Nav,
    run: RunRow,
    running: bool,
    refresh_seconds: u32,
    failed: Vec<FailedRow>,
    error: Option<String>,
    finished_at: Option<String>,
}

/// A run's progress; while it runs the page refreshes itself.
pub async fn progress(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Path(run_id): Path<uuid::Uuid>,
) -> Result<Response, ConsoleError> {
    let run = billing_runs::progress(&portal.ledger, &signed.staff.caller(), run_id)?;
    let failed =
        run.failed.iter().map(|f| FailedRow { subscription: f.subscription_id.to_string(), reason: f.reason.clone() });
    let running = run.state == RunState::Running;
    let page = ProgressPage {
        nav: nav(&signed, "runs"),
        running,
        refresh_seconds: PROGRESS_REFRESH_SECONDS,
        failed: failed.collect(),
        error: run.error.clone(),
        finished_at: run.finished_at.clone(),
        run: run_row(&run),
    };
    // The `Refresh` header is the meta refresh's HTTP form: the console's
    // base template has no place for a meta element, and no script runs.
    let refresh = running.then(|| [(axum::http::header::REFRESH, PROGRESS_REFRESH_SECONDS.to_string())]);
    Ok((refresh, page).into_response())
}

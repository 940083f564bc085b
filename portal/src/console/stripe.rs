//! The console's Stripe page (issue 15 item 2), for the billing team
//! (`StaffPermission::BillingOps`): the syncs Stripe refused, each with a
//! Retry button (a CSRF-checked form), the stuck ones, and a month's
//! reconciliation of the ledger's invoices against Stripe's. Everything
//! goes through `usecases::stripe::ops`, as the API's routes do.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Datelike;
use domain::staff::StaffPermission;
use serde::Deserialize;
use usecases::stripe::ops::{self, Reconciliation, RefusedSyncView, StuckSyncView};

use super::pages::{Nav, context, nav};
use super::{ConsoleError, StaffSigned, forbidden};
use crate::Portal;

#[derive(Template, WebTemplate)]
#[template(path = "console/stripe.html")]
pub struct StripePage {
    nav: Nav,
    refused: Vec<RefusedSyncView>,
    stuck: Vec<StuckSyncView>,
    stuck_minutes: u64,
    more: bool,
    period: String,
    /// The month's report, or why there is none.
    report: Result<Reconciliation, String>,
    message: Option<String>,
}

#[derive(Deserialize)]
pub struct StripeQuery {
    period: Option<String>,
}

/// The month before the ledger's today, `YYYY-MM` (the last billed one).
fn last_month(portal: &Portal) -> String {
    let today = portal.ledger.now().to_datetime().date_naive();
    let first = today.with_day0(0).unwrap_or(today);
    first.pred_opt().unwrap_or(first).format("%Y-%m").to_string()
}

async fn render(
    portal: &Portal,
    signed: &StaffSigned,
    period: Option<String>,
    message: Option<String>,
) -> Result<Response, ConsoleError> {
    if !signed.may(StaffPermission::BillingOps) {
        return Err(forbidden());
    }
    let caller = signed.staff.caller();
    let syncs = ops::syncs(&portal.ledger, &caller, &portal.stripe, None, None).await?;
    let period = period.filter(|p| !p.is_empty()).unwrap_or_else(|| last_month(portal));
    let report = match (usecases::billing::parse_period(&period), portal.stripe.client.as_ref()) {
        (Err(error), _) => Err(error.to_string()),
        (Ok(_), None) => Err("Stripe is not configured (STRIPE_SECRET_KEY).".to_owned()),
        (Ok(_), Some(client)) => match ops::reconcile(&portal.ledger, &caller, client, &period).await {
            Ok(report) => Ok(report),
            Err(usecases::Error::Unavailable(why)) => Err(why),
            Err(other) => return Err(other.into()),
        },
    };
    Ok(StripePage {
        nav: nav(signed, "stripe"),
        refused: syncs.refused,
        stuck: syncs.stuck,
        stuck_minutes: syncs.stuck_after_seconds / 60,
        more: syncs.next.is_some(),
        period: period.chars().take(7).collect(),
        report,
        message,
    }
    .into_response())
}

/// The page: syncs, and the reconciliation of `period` (default: last
/// month).
pub async fn page(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Query(query): Query<StripeQuery>,
) -> Result<Response, ConsoleError> {
    render(&portal, &signed, query.period, None).await
}

#[derive(Deserialize)]
pub struct RetryForm {
    target: String,
    #[serde(default)]
    csrf: String,
}

/// A Retry button: the refused sync tried again, as the staff user.
pub async fn retry(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Form(form): Form<RetryForm>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&form.csrf)?;
    let caller = signed.staff.caller();
    let metadata = context(&signed).metadata;
    let done = ops::retry(&portal.ledger, &caller, &portal.stripe, metadata, &form.target).await?;
    usecases::acknowledged::catch_up(&portal.ledger, Some(caller.credential()), Some(done.sequence)).await?;
    let message = format!("{} will be synced again.", done.target);
    render(&portal, &signed, None, Some(message)).await
}

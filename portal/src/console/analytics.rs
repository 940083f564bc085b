//! The console's revenue analytics (issue 15 part 3), for every staff
//! role: a day's figures (README, "Revenue analytics"), the MRR chart and
//! the CSV export, through `usecases::revenue::report_as_of` as
//! `Caller::Staff` (the Audit permission, as the API's
//! `GET /api/v1/analytics/revenue`).
//!
//! The "as of" day is a query parameter of a GET form, so a page for a
//! past day can be bookmarked and its CSV link names the same day. A bad
//! day answers 400 with the page's form and the reason, nothing else.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use usecases::views::revenue::{RevenueView, mrr_chart_svg};

use super::pages::{Nav, nav};
use super::{ConsoleError, StaffSigned};
use crate::{Portal, PortalError};

#[derive(Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/analytics.html")]
pub struct AnalyticsPage {
    nav: Nav,
    /// What the form shows: the day asked for (as typed, when refused).
    as_of: String,
    /// The latest day the form accepts.
    today: String,
    earliest: String,
    refused: Option<String>,
    view: Option<RevenueView>,
    /// The MRR chart, an SVG built by `mrr_chart_svg` with its text escaped.
    chart: String,
}

/// The figures of a day's month up to the day (`?as_of=YYYY-MM-DD`,
/// default today).
pub async fn page(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Query(query): Query<AsOfQuery>,
) -> Result<Response, ConsoleError> {
    let caller = signed.staff.caller();
    let today = portal.ledger.today();
    let asked = query.as_of.unwrap_or_default();
    let mut page = AnalyticsPage {
        nav: nav(&signed, "analytics"),
        // A refused day is shown back, cut to the form's own bound.
        as_of: asked.chars().take(usecases::revenue::AS_OF_CHARS_MAX).collect(),
        today: today.to_string(),
        earliest: usecases::revenue::AS_OF_EARLIEST.to_string(),
        refused: None,
        view: None,
        chart: String::new(),
    };
    match usecases::revenue::report_as_of(&portal.ledger, &caller, Some(&asked)).await {
        Ok(view) => {
            page.as_of.clone_from(&view.through);
            page.chart = mrr_chart_svg(&view.mrr_by_month);
            page.view = Some(view);
            Ok(page.into_response())
        }
        Err(usecases::Error::Validation(why)) => {
            page.refused = Some(why);
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(other) => Err(ConsoleError(PortalError::from(other))),
    }
}

/// The same figures as CSV (`RevenueView::csv`, the API's export), on the
/// console's session.
pub async fn csv(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Query(query): Query<AsOfQuery>,
) -> Result<Response, ConsoleError> {
    let caller = signed.staff.caller();
    let view = usecases::revenue::report_as_of(&portal.ledger, &caller, query.as_of.as_deref()).await?;
    let filename = format!("attachment; filename=\"revenue-{}.csv\"", view.through);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, filename)],
        view.csv(),
    )
        .into_response())
}

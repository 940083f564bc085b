//! Revenue analytics (issue 15 part 3): a month's figures from the
//! `revenue-v1` read model, for the vendor's staff (operator, auditor).
//! `GET /api/v1/analytics/revenue` and the console call [`report`];
//! `ledger report --as-of` computes the same figures from the log rebuilt
//! up to a date ([`projections::revenue::Book::of_state`]).

use chrono::NaiveDate;
use domain::staff::StaffPermission;
use projections::models::revenue::{self, FiguresError};
use projections::revenue::{last_day, month_of};

use crate::views::revenue::RevenueView;
use crate::{Caller, Error, Ledger};

impl From<FiguresError> for Error {
    fn from(error: FiguresError) -> Self {
        match error {
            FiguresError::Db(error) => error.into(),
            FiguresError::Revenue(error) => Error::Internal(error.to_string()),
        }
    }
}

/// The month a report is for: `YYYY-MM`, or this month; never a month
/// after today's.
pub fn month(text: Option<&str>, today: NaiveDate) -> Result<NaiveDate, Error> {
    let month = match text {
        Some(text) => crate::billing::parse_period(text)
            .map_err(|_| Error::Validation(format!("month must be YYYY-MM, not {text:?}")))?,
        None => month_of(today),
    };
    if month > month_of(today) {
        return Err(Error::Validation(format!("month {} has not begun", month.format("%Y-%m"))));
    }
    Ok(month)
}

/// The figures of `month` (`YYYY-MM`, default this month) up to its last
/// day, or up to today in the current month.
pub async fn report(ledger: &Ledger, caller: &Caller, month_text: Option<&str>) -> Result<RevenueView, Error> {
    caller.require(StaffPermission::Audit)?;
    let today = ledger.today();
    let month = month(month_text, today)?;
    let through = last_day(month).min(today);
    let figures = revenue::figures(&ledger.models.db, month, through).await?;
    Ok(RevenueView::from(&figures))
}

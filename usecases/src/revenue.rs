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

/// The longest "as of" text read: `YYYY-MM-DD`, with room for a sign and
/// a wider year, so a longer one is refused before it is parsed.
pub const AS_OF_CHARS_MAX: usize = 12;

/// The earliest day figures are asked for: the ledger keeps no
/// subscription before it, and it bounds the chart's walk back.
pub const AS_OF_EARLIEST: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(day) => day,
    None => panic!("a valid day"),
};

/// The day a report is "as of": `YYYY-MM-DD`, or today; not before
/// [`AS_OF_EARLIEST`], never after today.
pub fn as_of_day(text: Option<&str>, today: NaiveDate) -> Result<NaiveDate, Error> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(today) };
    let invalid = || Error::Validation(format!("the date must be a day as YYYY-MM-DD, such as {today}"));
    if text.chars().count() > AS_OF_CHARS_MAX {
        return Err(invalid());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
    if day > today {
        return Err(Error::Validation(format!("{day} is after today ({today}): there are no figures for it yet")));
    }
    if day < AS_OF_EARLIEST {
        return Err(Error::Validation(format!("{day} is before {AS_OF_EARLIEST}, the earliest day with figures")));
    }
    Ok(day)
}

/// The figures of a day's month up to that day (`YYYY-MM-DD`, default
/// today), from the read model: what the log holds now for those days. A
/// change recorded later with an earlier effective date counts here, and
/// so do the month's invoices issued after the day (its usage and
/// overage); `ledger report --as-of` instead answers from what was
/// recorded by the day's end. The MRR figures agree unless a change was
/// backdated.
pub async fn report_as_of(ledger: &Ledger, caller: &Caller, day_text: Option<&str>) -> Result<RevenueView, Error> {
    caller.require(StaffPermission::Audit)?;
    let day = as_of_day(day_text, ledger.today())?;
    let figures = revenue::figures(&ledger.models.db, month_of(day), day).await?;
    Ok(RevenueView::from(&figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn an_as_of_day_is_a_past_day_or_today() {
        let today = day("2026-04-01");
        assert_eq!(as_of_day(None, today).unwrap(), today);
        assert_eq!(as_of_day(Some(" "), today).unwrap(), today);
        assert_eq!(as_of_day(Some("2026-02-12"), today).unwrap(), day("2026-02-12"));
        assert_eq!(as_of_day(Some("2026-04-01"), today).unwrap(), today);
        assert_eq!(as_of_day(Some("2000-01-01"), today).unwrap(), AS_OF_EARLIEST);
        for (text, why) in [
            ("2026-04-02", "after today"),
            ("1999-12-31", "before 2000-01-01"),
            ("2026-02-30", "YYYY-MM-DD"),
            ("2026-02", "YYYY-MM-DD"),
            ("12.02.2026", "YYYY-MM-DD"),
            ("+002026-02-12", "YYYY-MM-DD"),
            ("2026-02-12T00:00:00Z", "YYYY-MM-DD"),
        ] {
            match as_of_day(Some(text), today) {
                Err(Error::Validation(message)) => assert!(message.contains(why), "{text}: {message}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}

//! `replay as-of`: an organization (or, with `--revenue`, the revenue
//! figures) as the ledger had recorded it at a time or sequence, in the API's own shapes (`usecases::views`), built by the
//! same constructors the API's queries call, so an auditor reads the past
//! exactly as a client read the present. Only the envelope (`asOf` and the
//! names of its parts) is replay's.

use anyhow::Context;
use chrono::NaiveDate;
use domain::catalog::Catalog;
use domain::{OrganizationId, Timestamp};
use projections::LedgerState;
use projections::revenue::{Book, month_of};
use serde::Serialize;
use usecases::views::billing::Invoice;
use usecases::views::queries::{OrganizationView, SubscriptionDetails};
use usecases::views::revenue::RevenueView;
use usecases::views::usage::UsageView;

use crate::Outcome;
use crate::walk::{self, Failure, Plan};

/// What `as-of` prints: each part is what an API query answers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AsOf {
    pub as_of: Position,
    /// As `GET /organizations` lists it.
    pub organization: OrganizationView,
    /// Each of the organization's subscriptions as `GET
    /// /subscriptions/{orgId}` answers for its live one, on `asOf.date`.
    pub subscriptions: Vec<SubscriptionDetails>,
    /// `GET /organizations/{id}/usage?period=` for the month of `asOf.date`.
    pub usage: UsageView,
    /// `GET /organizations/{id}/invoices`: the invoices issued by then.
    pub invoices: Vec<Invoice>,
}

/// Where in the history the answer stands.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The last sequence applied.
    pub sequence: u64,
    /// The time asked, or the last applied record's when a sequence was.
    #[serde(with = "domain::time::rfc3339")]
    pub recorded_at: Timestamp,
    /// The day the subscriptions and limits are shown on (UTC).
    pub date: NaiveDate,
}

impl AsOf {
    /// The organization in `state` on `date`; `None` when it did not exist.
    pub fn of(state: &LedgerState, organization_id: OrganizationId, recorded_at: Timestamp) -> Option<Self> {
        let date = recorded_at.to_datetime().date_naive();
        let catalog = Catalog::builtin();
        let entry = state.organizations.get(&organization_id)?;
        let subscriptions = entry
            .subscriptions
            .iter()
            .filter_map(|id| SubscriptionDetails::on(state, &catalog, organization_id, *id, date))
            .collect();
        Some(Self {
            as_of: Position { sequence: state.sequence, recorded_at, date },
            organization: OrganizationView::of(organization_id, entry),
            subscriptions,
            usage: UsageView::of(state, organization_id, date)?,
            invoices: Invoice::of_organization(state, organization_id)?,
        })
    }
}

/// A time, a date (its end) or a sequence.
enum At {
    Sequence(u64),
    Time(Timestamp),
}

fn parse_at(text: &str) -> anyhow::Result<At> {
    if let Ok(sequence) = text.parse::<u64>() {
        return Ok(At::Sequence(sequence));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let next = date.succ_opt().context("a date too far")?.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        return Ok(At::Time(Timestamp::from_micros(Timestamp::from_datetime(next).as_micros() - 1)));
    }
    Ok(At::Time(Timestamp::parse_rfc3339(text).context("not a sequence, a date or an RFC 3339 time")?))
}

/// What `as-of` shows.
pub enum What {
    /// An organization, in the API's shapes.
    Organization(OrganizationId),
    /// The revenue figures of the day's month up to the day.
    Revenue,
}

/// Walks the history up to `at` and prints the organization, or the
/// revenue figures, as they were.
pub async fn as_of(at: &str, what: What, from: crate::From) -> Outcome {
    let at = parse_at(at)?;
    let source = from.open().await?;
    let mut plan = Plan { state: true, ..Default::default() };
    match at {
        At::Sequence(sequence) => plan.until_sequence = Some(sequence),
        At::Time(time) => plan.until_time = Some(time),
    }
    let done = match walk::walk(&source, &plan).await? {
        Ok(done) => done,
        Err(failure) => return Ok(Err(failure)),
    };
    let when = match at {
        At::Time(time) => time,
        At::Sequence(_) => done.last_recorded_at.unwrap_or(Timestamp::from_micros(0)),
    };
    let answer = match what {
        What::Organization(org) => {
            let Some(answer) = AsOf::of(&done.state, org, when) else {
                return Ok(Err(Failure { sequence: None, what: format!("organization {} did not exist then", org.0) }));
            };
            serde_json::to_string_pretty(&answer)?
        }
        What::Revenue => {
            let day = when.to_datetime().date_naive();
            let figures = Book::of_state(&done.state, &Catalog::builtin(), month_of(day), day)?;
            serde_json::to_string_pretty(&RevenueView::from(&figures))?
        }
    };
    println!("{answer}");
    Ok(Ok(()))
}

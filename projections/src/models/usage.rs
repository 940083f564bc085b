//! Usage per subscription, day and deployment: the latest report of each
//! (a later report of the same day and deployment replaces it), with the
//! log sequence it came from, as `domain::usage::Usage` keeps it. Queries
//! read one month, or one day, of one subscription by its primary key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use domain::SubscriptionId;
use domain::event::LedgerEvent;
use domain::privacy::PrivacyEvent;
use domain::record::Record;
use domain::usage::{Metrics, Reported, Usage, UsageEvent};

use super::{PAGE_ITEMS_MAX, day, decimal, limit_param, parse_day, parse_decimal, placeholders, text_order, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Row, Table, Value};

pub const USAGE: Table = Table::new(
    "rm_usage",
    &[
        Column::blob("subscription_id"),
        Column::text("day"),
        Column::text("deployment_id"),
        Column::int("sequence"),
        Column::int("active_users"),
        Column::text("data_volume_gb"),
        Column::int("api_calls_count"),
        Column::text("training_hours"),
    ],
    3,
);

/// The latest retention run's rule (issue 16): reports of days before
/// `before`, at or before `up_to_sequence`, are retired. One row (id 1).
pub const USAGE_RETIRED: Table =
    Table::new("rm_usage_retired", &[Column::int("id"), Column::text("before"), Column::int("up_to_sequence")], 1);

/// The most rows one month of one subscription may return: 31 days of
/// up to a thousand deployments each (a key's deployments are capped far
/// lower); bounds the query whatever the log holds.
pub const USAGE_ROWS_PER_MONTH_MAX: usize = 31_000;

/// Keeps [`USAGE`].
pub struct UsageProjection;

impl Projection for UsageProjection {
    fn name(&self) -> &'static str {
        "usage-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[USAGE, USAGE_RETIRED]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        if let Some(LedgerEvent::Privacy(PrivacyEvent::RetentionApplied(retired))) = event {
            let before = retired.usage_before.to_datetime().date_naive();
            let row = vec![Value::Int(1), day(before), Value::uint(retired.up_to_sequence)?];
            changes.upsert(&USAGE_RETIRED, row)?;
            return Ok(());
        }
        let Some(LedgerEvent::Usage(UsageEvent::UsageReported(report))) = event else { return Ok(()) };
        let int = |n: u64| Value::uint(n);
        let metrics = &report.metrics;
        changes.upsert(
            &USAGE,
            vec![
                report.subscription_id.0.into(),
                day(report.day),
                report.deployment_id.as_str().into(),
                int(record.header.sequence)?,
                int(metrics.active_users)?,
                decimal(metrics.data_volume_gb),
                int(metrics.api_calls_count)?,
                decimal(metrics.training_hours),
            ],
        )?;
        Ok(())
    }
}

/// Rows `day, deployment_id, sequence, metrics…` as a `Usage`.
fn usage(rows: &[Row]) -> Result<Usage, DbError> {
    let mut days: BTreeMap<chrono::NaiveDate, BTreeMap<String, Reported>> = BTreeMap::new();
    for row in rows {
        let metrics = Metrics {
            active_users: row.uint(3)?,
            data_volume_gb: parse_decimal(row, 4)?,
            api_calls_count: row.uint(5)?,
            training_hours: parse_decimal(row, 6)?,
        };
        let reported = Reported { metrics, sequence: row.uint(2)? };
        days.entry(parse_day(row, 0)?).or_default().insert(row.text(1)?.to_owned(), reported);
    }
    Ok(Usage { days })
}

const COLUMNS: &str = "day, deployment_id, sequence, active_users, data_volume_gb, api_calls_count, training_hours";

/// The reports of the month of `any_day` (`Usage::of_month` of
/// `LedgerState::usage`): what the usage queries, the enforcement check,
/// a usage report's acknowledgement and the month's invoice read.
pub async fn month(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
    any_day: chrono::NaiveDate,
) -> Result<Usage, DbError> {
    let (first, last) = (domain::calendar::first_of_month(any_day), domain::calendar::last_of_month(any_day));
    let sql = format!(
        "SELECT {COLUMNS} FROM rm_usage WHERE subscription_id = $1 AND day >= $2 AND day <= $3 \
         ORDER BY day, {} LIMIT $4",
        text_order(db, "deployment_id")
    );
    let params = vec![subscription_id.0.into(), day(first), day(last), limit_param(USAGE_ROWS_PER_MONTH_MAX)];
    usage(&db.query(&sql, params).await?)
}

/// The reports of the latest day that has any (what
/// `Usage::latest_data_volume` reads): the enforcement check's UPLOAD_DATA.
pub async fn latest_day(db: &ReadModelDb, subscription_id: SubscriptionId) -> Result<Usage, DbError> {
    let latest = db
        .query(
            "SELECT day FROM rm_usage WHERE subscription_id = $1 ORDER BY day DESC LIMIT 1",
            vec![subscription_id.0.into()],
        )
        .await?;
    let Some(row) = latest.first() else { return Ok(Usage::default()) };
    let sql = format!(
        "SELECT {COLUMNS} FROM rm_usage WHERE subscription_id = $1 AND day = $2 ORDER BY {} LIMIT $3",
        text_order(db, "deployment_id")
    );
    let params = vec![subscription_id.0.into(), row.0[0].clone(), limit_param(USAGE_ROWS_PER_MONTH_MAX)];
    usage(&db.query(&sql, params).await?)
}

/// The reports of several months merged (each read as [`month`]): what an
/// invoice is computed from (`domain::billing::invoice` reads the invoiced
/// month and, for late-usage adjustments, the months already invoiced).
/// At most [`MONTHS_PER_QUERY_MAX`] distinct months are read.
pub async fn months(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
    months: impl IntoIterator<Item = chrono::NaiveDate>,
) -> Result<Usage, DbError> {
    let firsts: std::collections::BTreeSet<chrono::NaiveDate> =
        months.into_iter().map(domain::calendar::first_of_month).collect();
    if firsts.len() > MONTHS_PER_QUERY_MAX {
        return Err(DbError::Schema(format!(
            "{} months asked for at once; at most {MONTHS_PER_QUERY_MAX}",
            firsts.len()
        )));
    }
    let mut merged = Usage::default();
    for first in firsts {
        merged.days.extend(month(db, subscription_id, first).await?.days);
    }
    Ok(merged)
}

/// The most months [`months`] reads at once: a century of invoices.
pub const MONTHS_PER_QUERY_MAX: usize = 1_200;

/// The most rows [`months_of`] reads in its one query for a page of
/// subscriptions (a few tens of megabytes): a page of 200 subscriptions
/// with two deployments each has a year of months' reports in it. Above
/// it, each subscription is read on its own ([`months`]).
pub const USAGE_ROWS_PER_PAGE_MAX: usize = 250_000;

/// What [`months_of`] returns: each subscription's usage, or why it
/// cannot be read.
pub type UsageOf = BTreeMap<SubscriptionId, Result<Usage, DbError>>;

/// The usage of several subscriptions (at most [`PAGE_ITEMS_MAX`]), each
/// of its own months (firsts of months, as [`months`] takes them), in one
/// query: what a billing run reads per page. A subscription asking for
/// more than [`MONTHS_PER_QUERY_MAX`] months, or whose rows do not decode,
/// gets its own error. The result is what [`months`] reads for each: when
/// the page's rows pass [`USAGE_ROWS_PER_PAGE_MAX`], or one month of one
/// subscription passes [`USAGE_ROWS_PER_MONTH_MAX`] (where [`months`]
/// stops), those are read by [`months`] itself.
pub async fn months_of(
    db: &ReadModelDb,
    wanted: &BTreeMap<SubscriptionId, BTreeSet<NaiveDate>>,
) -> Result<UsageOf, DbError> {
    if wanted.len() > PAGE_ITEMS_MAX {
        return Err(DbError::Schema(format!(
            "{} subscriptions asked for at once; at most {PAGE_ITEMS_MAX}",
            wanted.len()
        )));
    }
    let mut found = UsageOf::new();
    let mut asked = BTreeMap::new();
    for (id, months) in wanted {
        let firsts: BTreeSet<NaiveDate> = months.iter().copied().map(domain::calendar::first_of_month).collect();
        if firsts.len() > MONTHS_PER_QUERY_MAX {
            let error = format!("{} months asked for at once; at most {MONTHS_PER_QUERY_MAX}", firsts.len());
            found.insert(*id, Err(DbError::Schema(error)));
        } else if !firsts.is_empty() {
            asked.insert(*id, firsts);
        } else {
            found.insert(*id, Ok(Usage::default()));
        }
    }
    // `None`: too many rows for one query; each is read on its own.
    let mut grouped = page_rows(db, &asked).await?;
    for (id, firsts) in asked {
        let own = grouped.as_mut().map(|grouped| grouped.remove(&id).unwrap_or_default());
        let usage = match own {
            Some(own) if !month_overfull(&own) => usage(&own),
            _ => months(db, id, firsts).await,
        };
        found.insert(id, usage);
    }
    Ok(found)
}

/// The rows (`day, deployment_id, …`) of the asked months of each
/// subscription, in one query; `None` when they pass
/// [`USAGE_ROWS_PER_PAGE_MAX`] (or an empty map when nothing is asked).
async fn page_rows(
    db: &ReadModelDb,
    asked: &BTreeMap<SubscriptionId, BTreeSet<NaiveDate>>,
) -> Result<Option<BTreeMap<SubscriptionId, Vec<Row>>>, DbError> {
    if asked.is_empty() {
        return Ok(Some(BTreeMap::new()));
    }
    let months: BTreeSet<NaiveDate> = asked.values().flatten().copied().collect();
    let ranges = month_ranges(&months);
    let mut params = vec![limit_param(USAGE_ROWS_PER_PAGE_MAX + 1)];
    params.extend(asked.keys().map(|id| Value::from(id.0)));
    let mut days = Vec::new();
    for (first, last) in &ranges {
        let n = params.len();
        days.push(format!("(day >= ${} AND day <= ${})", n + 1, n + 2));
        params.extend([day(*first), day(*last)]);
    }
    let sql = format!(
        "SELECT subscription_id, {COLUMNS} FROM rm_usage WHERE subscription_id IN ({}) AND ({}) LIMIT $1",
        placeholders(2, asked.len()),
        days.join(" OR ")
    );
    let rows = db.query(&sql, params).await?;
    if rows.len() > USAGE_ROWS_PER_PAGE_MAX {
        return Ok(None);
    }
    let mut grouped: BTreeMap<SubscriptionId, Vec<Row>> = BTreeMap::new();
    for Row(mut values) in rows {
        let id = SubscriptionId(uuid(&Row(vec![values.remove(0)]), 0)?);
        let row = Row(values);
        let first = domain::calendar::first_of_month(parse_day(&row, 0)?);
        // Another subscription's month: not one this one asked for.
        if asked.get(&id).is_some_and(|firsts| firsts.contains(&first)) {
            grouped.entry(id).or_default().push(row);
        }
    }
    Ok(Some(grouped))
}

/// Consecutive months merged: `(first day, last day)` of each run.
fn month_ranges(months: &BTreeSet<NaiveDate>) -> Vec<(NaiveDate, NaiveDate)> {
    let mut ranges: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for first in months {
        let last = domain::calendar::last_of_month(*first);
        match ranges.last_mut() {
            Some((_, end)) if end.succ_opt() == Some(*first) => *end = last,
            _ => ranges.push((*first, last)),
        }
    }
    ranges
}

/// True when one month of the rows passes [`USAGE_ROWS_PER_MONTH_MAX`].
fn month_overfull(rows: &[Row]) -> bool {
    let mut per_month: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    rows.iter().any(|row| {
        let Ok(day) = parse_day(row, 0) else { return false };
        let count = per_month.entry(domain::calendar::first_of_month(day)).or_default();
        *count += 1;
        *count > USAGE_ROWS_PER_MONTH_MAX
    })
}

/// The latest retention run's rule, if one ran: the UTC day of its
/// `usage_before` and its `up_to_sequence` (reports that occurred before
/// it, at or before the sequence, may be retired). A month that ends before
/// that day may have lost its daily usage: its invoice holds what was
/// billed, and billing must not read it as usage that dropped.
pub async fn retired(db: &ReadModelDb) -> Result<Option<(NaiveDate, u64)>, DbError> {
    let row = db.query_opt("SELECT before, up_to_sequence FROM rm_usage_retired WHERE id = 1", vec![]).await?;
    row.map(|row| Ok((parse_day(&row, 0)?, row.uint(1)?))).transpose()
}

//! Usage per subscription, day and deployment: the latest report of each
//! (a later report of the same day and deployment replaces it), with the
//! log sequence it came from, as `domain::usage::Usage` keeps it. Queries
//! read one month, or one day, of one subscription by its primary key.

use std::collections::BTreeMap;

use domain::SubscriptionId;
use domain::event::LedgerEvent;
use domain::record::Record;
use domain::usage::{Metrics, Reported, Usage, UsageEvent};

use super::{day, decimal, limit_param, parse_day, parse_decimal, text_order};
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
        &[USAGE]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
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

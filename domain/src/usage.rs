//! Usage reports (BILLING-RULES.md, "Usage reports").
//!
//! A report covers one subscription, one deployment and one day. Reports
//! are appended to `usage/{subscription}:{YYYY-MM}`; a later report for the
//! same subscription, deployment and day replaces the earlier one when read
//! (retries and corrections never double count). A day's value of a metric
//! is the sum over deployments; a month's value is the largest day for the
//! gauges (active users, data volume) and the sum of days for the counts
//! (API calls, training hours).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{LicenseId, StreamId, SubscriptionId};

/// The largest value any metric may report.
pub const METRIC_VALUE_MAX: u64 = 1_000_000_000_000;

/// The stream of a subscription's usage in the month of `day`.
pub fn stream(subscription_id: SubscriptionId, day: NaiveDate) -> StreamId {
    StreamId::new(format!("usage/{subscription_id}:{:04}-{:02}", day.year(), day.month()))
        .expect("a UUID and a month form a valid stream id")
}

/// One day's metrics from one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub active_users: u64,
    pub data_volume_gb: Decimal,
    pub api_calls_count: u64,
    pub training_hours: Decimal,
}

/// Two values of one day added (deployments, subscriptions).
impl std::ops::Add for Metrics {
    type Output = Metrics;

    fn add(self, other: Metrics) -> Metrics {
        Metrics {
            active_users: self.active_users + other.active_users,
            data_volume_gb: self.data_volume_gb + other.data_volume_gb,
            api_calls_count: self.api_calls_count + other.api_calls_count,
            training_hours: self.training_hours + other.training_hours,
        }
    }
}

crate::stored_events! {
    /// Usage, as reported.
    pub enum UsageEvent {
        UsageReported = 1,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReported {
    pub subscription_id: SubscriptionId,
    pub license_id: LicenseId,
    pub deployment_id: String,
    pub day: NaiveDate,
    pub metrics: Metrics,
}

/// Why a report is refused; nothing of it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("{0} must not be negative")]
    Negative(&'static str),
    #[error("{0} has more than two decimal places")]
    TooPrecise(&'static str),
    #[error("{0} is larger than {METRIC_VALUE_MAX}")]
    TooLarge(&'static str),
    #[error("reportingPeriod {day} is more than one day in the future (today is {today})")]
    TooFarAhead { day: NaiveDate, today: NaiveDate },
    #[error("reportingPeriod {day} is before the subscription started on {start}")]
    BeforeStart { day: NaiveDate, start: NaiveDate },
}

/// Checks a report's numbers and day; the raw values are decimals so that
/// negative and over-precise input is refused, not rounded.
pub fn check(
    values: [(&'static str, Decimal); 4],
    day: NaiveDate,
    today: NaiveDate,
    start: NaiveDate,
) -> Result<Metrics, UsageError> {
    for (name, value) in values {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(UsageError::Negative(name));
        }
        if value.normalize().scale() > 2 {
            return Err(UsageError::TooPrecise(name));
        }
        if value > Decimal::from(METRIC_VALUE_MAX) {
            return Err(UsageError::TooLarge(name));
        }
    }
    if day > today + chrono::Days::new(1) {
        return Err(UsageError::TooFarAhead { day, today });
    }
    if day < start {
        return Err(UsageError::BeforeStart { day, start });
    }
    let [(users_name, users), (_, data), (calls_name, calls), (_, hours)] = values;
    let whole = |name: &'static str, value: Decimal| {
        if value.fract().is_zero() {
            u64::try_from(value).map_err(|_| UsageError::TooLarge(name))
        } else {
            Err(UsageError::TooPrecise(name))
        }
    };
    Ok(Metrics {
        active_users: whole(users_name, users)?,
        data_volume_gb: data.normalize(),
        api_calls_count: whole(calls_name, calls)?,
        training_hours: hours.normalize(),
    })
}

/// One subscription's usage: the latest report per day and deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub days: BTreeMap<NaiveDate, BTreeMap<String, Metrics>>,
}

/// A month's values, and each day's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthUsage {
    /// Largest day of the gauges, sum of days of the counts.
    pub total: Metrics,
    pub days: Vec<(NaiveDate, Metrics)>,
}

/// A month's value from its days' values: the largest day for the gauges,
/// the sum of the days for the counts.
pub fn month_total<'a>(days: impl IntoIterator<Item = &'a Metrics>) -> Metrics {
    days.into_iter().fold(Metrics::default(), |total, m| Metrics {
        active_users: total.active_users.max(m.active_users),
        data_volume_gb: total.data_volume_gb.max(m.data_volume_gb),
        api_calls_count: total.api_calls_count + m.api_calls_count,
        training_hours: total.training_hours + m.training_hours,
    })
}

impl Usage {
    /// Records a report, replacing any earlier one for its day and deployment.
    pub fn apply(&mut self, report: &UsageReported) {
        self.days.entry(report.day).or_default().insert(report.deployment_id.clone(), report.metrics);
    }

    /// A day's value: the sum over deployments.
    pub fn day(&self, day: NaiveDate) -> Metrics {
        self.days
            .get(&day)
            .map(|deployments| deployments.values().fold(Metrics::default(), |a, m| a + *m))
            .unwrap_or_default()
    }

    /// The reports of the month of `any_day` only.
    pub fn of_month(&self, any_day: NaiveDate) -> Usage {
        let (first, last) = (crate::calendar::first_of_month(any_day), crate::calendar::last_of_month(any_day));
        Usage { days: self.days.range(first..=last).map(|(day, reports)| (*day, reports.clone())).collect() }
    }

    /// The values of the month of `any_day`.
    pub fn month(&self, any_day: NaiveDate) -> MonthUsage {
        let first = crate::calendar::first_of_month(any_day);
        let last = crate::calendar::last_of_month(any_day);
        let days: Vec<(NaiveDate, Metrics)> =
            self.days.range(first..=last).map(|(day, _)| (*day, self.day(*day))).collect();
        MonthUsage { total: month_total(days.iter().map(|(_, m)| m)), days }
    }

    /// The latest reported data volume (the enforcement check's
    /// UPLOAD_DATA): the value of the latest day with a report.
    pub fn latest_data_volume(&self) -> Decimal {
        self.days.keys().next_back().map(|day| self.day(*day).data_volume_gb).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn values(users: &str, data: &str, calls: &str, hours: &str) -> [(&'static str, Decimal); 4] {
        [
            ("activeUsers", dec(users)),
            ("dataVolumeGB", dec(data)),
            ("apiCallsCount", dec(calls)),
            ("trainingHours", dec(hours)),
        ]
    }

    fn report(deployment: &str, day: NaiveDate, calls: u64, data: &str) -> UsageReported {
        UsageReported {
            subscription_id: SubscriptionId(uuid::Uuid::nil()),
            license_id: LicenseId(uuid::Uuid::nil()),
            deployment_id: deployment.into(),
            day,
            metrics: Metrics {
                active_users: 3,
                data_volume_gb: dec(data),
                api_calls_count: calls,
                training_hours: Decimal::ZERO,
            },
        }
    }

    #[test]
    fn input_is_checked_before_anything_is_recorded() {
        let (today, start) = (d(2026, 3, 10), d(2026, 3, 1));
        let ok = check(values("3", "12.5", "300", "1.25"), d(2026, 3, 11), today, start).unwrap();
        assert_eq!((ok.active_users, ok.data_volume_gb, ok.api_calls_count), (3, dec("12.5"), 300));
        assert_eq!(check(values("-1", "0", "0", "0"), today, today, start), Err(UsageError::Negative("activeUsers")));
        assert_eq!(
            check(values("1", "1.005", "0", "0"), today, today, start),
            Err(UsageError::TooPrecise("dataVolumeGB"))
        );
        assert_eq!(
            check(values("1.5", "0", "0", "0"), today, today, start),
            Err(UsageError::TooPrecise("activeUsers"))
        );
        assert_eq!(check(values("1", "1.50", "0", "0"), today, today, start).unwrap().data_volume_gb, dec("1.5"));
        assert!(matches!(
            check(values("1", "0", "0", "0"), d(2026, 3, 12), today, start),
            Err(UsageError::TooFarAhead { .. })
        ));
        assert!(matches!(
            check(values("1", "0", "0", "0"), d(2026, 2, 28), today, start),
            Err(UsageError::BeforeStart { .. })
        ));
    }

    /// Worked example 5: 300 then 250 for the same key and day counts 250.
    #[test]
    fn a_later_report_replaces_the_earlier_and_deployments_add_up() {
        let mut usage = Usage::default();
        usage.apply(&report("default", d(2026, 3, 5), 300, "100"));
        usage.apply(&report("default", d(2026, 3, 5), 250, "100"));
        assert_eq!(usage.month(d(2026, 3, 1)).total.api_calls_count, 250);
        usage.apply(&report("edge-2", d(2026, 3, 5), 50, "20"));
        usage.apply(&report("default", d(2026, 3, 6), 10, "90"));
        let march = usage.month(d(2026, 3, 31));
        assert_eq!(march.total.api_calls_count, 310, "counts sum over days and deployments");
        assert_eq!(march.total.data_volume_gb, dec("120"), "gauges take the largest day");
        assert_eq!(march.total.active_users, 6);
        assert_eq!(usage.latest_data_volume(), dec("90"));
        assert_eq!(usage.month(d(2026, 4, 1)), MonthUsage::default());
    }
}

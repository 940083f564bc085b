//! Usage reports (BILLING-RULES.md, "Usage reports").
//!
//! A report covers one subscription, one deployment and one day. Reports
//! are appended to `usage/{subscription}:{YYYY-MM-DD}`, one stream per
//! reported day, so the stream's length is the day's count of reports and
//! caps it exactly (logs written before issue 11 have one stream per month,
//! `usage/{subscription}:{YYYY-MM}`; readers take reports from any). A
//! later report for the same subscription, deployment and day replaces the
//! earlier one when read (retries and corrections never double count). A
//! day's value of a metric is the sum over deployments; a month's value is
//! the largest day for the gauges (active users, data volume) and the sum
//! of days for the counts (API calls, training hours).
//!
//! Sums saturate where they only inform (answers, enforcement), and are
//! checked where money depends on them (the billed peak): history written
//! before the bounds were checked still reads, and never panics.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{LicenseId, StreamId, SubscriptionId};

/// The largest value any metric may report (BILLING-RULES, "Who sets
/// prices, and bounds": usage values at most 10^12).
pub const METRIC_VALUE_MAX: u64 = 1_000_000_000_000;
/// Decimal places a metric may have.
pub const METRIC_DECIMALS_MAX: u32 = 2;
/// The longest text a metric's value may be written with: 10^12 with two
/// decimals is 16 characters; a little room for a sign, zeros and an
/// exponent, and no room to make the parser work.
pub const METRIC_TEXT_CHARS_MAX: usize = 40;
/// Reports one subscription may make for one reported day, by default.
/// A deployment reports a day once and retries a few times; a hundred is
/// far above that and keeps a day's stream (and a month's reads) small.
pub const REPORTS_PER_DAY_DEFAULT: u64 = 100;
/// How many days back a report may correct usage, by default
/// (BILLING-RULES: 35, a month's invoice plus a few days of grace).
pub const CORRECTION_DAYS_DEFAULT: u32 = 35;

/// The stream of a subscription's reports for `day`.
pub fn stream(subscription_id: SubscriptionId, day: NaiveDate) -> StreamId {
    StreamId::new(format!("usage/{subscription_id}:{day}")).expect("a UUID and a date form a valid stream id")
}

/// One day's metrics from one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub active_users: u64,
    pub data_volume_gb: Decimal,
    pub api_calls_count: u64,
    pub training_hours: Decimal,
}

impl Metrics {
    /// Two values of one day added (deployments, subscriptions); `None`
    /// when a sum overflows.
    pub fn checked_add(self, other: Metrics) -> Option<Metrics> {
        Some(Metrics {
            active_users: self.active_users.checked_add(other.active_users)?,
            data_volume_gb: self.data_volume_gb.checked_add(other.data_volume_gb)?,
            api_calls_count: self.api_calls_count.checked_add(other.api_calls_count)?,
            training_hours: self.training_hours.checked_add(other.training_hours)?,
        })
    }

    /// Two values added, each sum held at its type's largest value: for
    /// answers and enforcement, where "over every limit" is all that counts.
    pub fn saturating_add(self, other: Metrics) -> Metrics {
        Metrics {
            active_users: self.active_users.saturating_add(other.active_users),
            data_volume_gb: self.data_volume_gb.saturating_add(other.data_volume_gb),
            api_calls_count: self.api_calls_count.saturating_add(other.api_calls_count),
            training_hours: self.training_hours.saturating_add(other.training_hours),
        }
    }
}

crate::stored_events! {
    /// Usage, as reported.
    pub enum UsageEvent {
        UsageReported = "UsageReported" version 1 as UsageReportedV1,
    }
}

/// `UsageReported` as schema version 1 stores it. [`Metrics`] is the usage
/// domain's arithmetic type and grows with each new metric; what a log
/// holds does not: a new metric is a new version of `UsageReported`, and
/// the conversions below, which name every field, stop the build until it
/// is one (ARCHITECTURE.md, "Stored events").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReportedV1 {
    pub subscription_id: SubscriptionId,
    pub license_id: LicenseId,
    pub deployment_id: String,
    pub day: NaiveDate,
    pub metrics: MetricsV1,
}

/// One day's metrics as `UsageReported` version 1 stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsV1 {
    pub active_users: u64,
    pub data_volume_gb: Decimal,
    pub api_calls_count: u64,
    pub training_hours: Decimal,
}

impl From<&UsageReported> for UsageReportedV1 {
    fn from(event: &UsageReported) -> Self {
        let UsageReported { subscription_id, license_id, deployment_id, day, metrics } = event;
        let Metrics { active_users, data_volume_gb, api_calls_count, training_hours } = *metrics;
        Self {
            subscription_id: *subscription_id,
            license_id: *license_id,
            deployment_id: deployment_id.clone(),
            day: *day,
            metrics: MetricsV1 { active_users, data_volume_gb, api_calls_count, training_hours },
        }
    }
}

impl From<UsageReportedV1> for UsageReported {
    fn from(stored: UsageReportedV1) -> Self {
        let UsageReportedV1 { subscription_id, license_id, deployment_id, day, metrics } = stored;
        let MetricsV1 { active_users, data_volume_gb, api_calls_count, training_hours } = metrics;
        let metrics = Metrics { active_users, data_volume_gb, api_calls_count, training_hours };
        Self { subscription_id, license_id, deployment_id, day, metrics }
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
    #[error("{0} is not a decimal number")]
    NotANumber(&'static str),
    #[error("{0} must not be negative")]
    Negative(&'static str),
    #[error("{0} has more than two decimal places")]
    TooPrecise(&'static str),
    #[error("{0} is larger than {METRIC_VALUE_MAX}")]
    TooLarge(&'static str),
    #[error("reportingPeriod {day} is more than one day in the future (today is {today})")]
    TooFarAhead { day: NaiveDate, today: NaiveDate },
    #[error(
        "reportingPeriod {day} is more than {days} days in the past (today is {today}): usage can be corrected for {days} days"
    )]
    TooOld { day: NaiveDate, today: NaiveDate, days: u32 },
    #[error("reportingPeriod {day} is before the subscription started on {start}")]
    BeforeStart { day: NaiveDate, start: NaiveDate },
}

/// A metric's value from the text it was sent as (a JSON number, or the
/// same digits in a string), exactly: never through a float, which would
/// take `1e-400` for 0. The grammar is JSON's number:
/// `-? digits (. digits)? ([eE] [+-]? digits)?`; a value with more than two
/// decimals or beyond 10^13 is refused here, before a `Decimal` (which
/// would round or overflow) is built. The rest of the rules is [`check`]'s.
pub fn parse_metric(name: &'static str, text: &str) -> Result<Decimal, UsageError> {
    let not_a_number = || UsageError::NotANumber(name);
    if text.len() > METRIC_TEXT_CHARS_MAX {
        return Err(not_a_number());
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (number, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return Err(not_a_number());
    }
    // An exponent beyond an i64 is held at a quarter of its range: far
    // beyond any metric either way, and no sum below can overflow.
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) if all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)) => {
            e.parse().unwrap_or(if e.starts_with('-') { i64::MIN / 4 } else { i64::MAX / 4 })
        }
        Some(_) => return Err(not_a_number()),
    };
    let fraction = fraction.unwrap_or_default();
    // value = digits × 10^power, digits without leading or trailing zeros.
    let digits = format!("{whole}{fraction}");
    let mut power = exponent - fraction.len() as i64;
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    power += (digits.len() - significant.len()) as i64;
    if significant.is_empty() {
        return Ok(Decimal::ZERO);
    }
    if negative {
        return Err(UsageError::Negative(name));
    }
    if power < -i64::from(METRIC_DECIMALS_MAX) {
        return Err(UsageError::TooPrecise(name));
    }
    // More than 13 whole digits is at least 10^13, beyond any metric.
    if significant.len() as i64 + power > 13 {
        return Err(UsageError::TooLarge(name));
    }
    let mantissa: i128 = significant.parse().map_err(|_| not_a_number())?;
    Ok(if power >= 0 {
        Decimal::from_i128_with_scale(mantissa * 10i128.pow(power as u32), 0)
    } else {
        Decimal::from_i128_with_scale(mantissa, (-power) as u32)
    })
}

/// Checks a report's numbers and day; the raw values are decimals so that
/// negative and over-precise input is refused, not rounded. A day more
/// than `correction_days_max` days back is refused: billed usage can only
/// be corrected for that long (BILLING-RULES, "Monthly invoices").
pub fn check(
    values: [(&'static str, Decimal); 4],
    day: NaiveDate,
    today: NaiveDate,
    start: NaiveDate,
    correction_days_max: u32,
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
    if today.checked_sub_days(chrono::Days::new(u64::from(correction_days_max))).is_some_and(|oldest| day < oldest) {
        return Err(UsageError::TooOld { day, today, days: correction_days_max });
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

/// One deployment's latest report of a day, and where the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub metrics: Metrics,
    /// The report's log sequence: late-usage adjustments name the reports
    /// they come from.
    pub sequence: u64,
}

/// One subscription's usage: the latest report per day and deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub days: BTreeMap<NaiveDate, BTreeMap<String, Reported>>,
}

/// A day whose reports add up to more than a decimal holds: only a log
/// written outside the API can hold one, and it is named, not billed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the data volumes reported for {0} add up to more than a decimal holds")]
pub struct UsageOverflow(pub NaiveDate);

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
        api_calls_count: total.api_calls_count.saturating_add(m.api_calls_count),
        training_hours: total.training_hours.saturating_add(m.training_hours),
    })
}

impl Usage {
    /// Records a report appended at `sequence`, replacing any earlier one
    /// for its day and deployment.
    pub fn apply(&mut self, report: &UsageReported, sequence: u64) {
        let reported = Reported { metrics: report.metrics, sequence };
        self.days.entry(report.day).or_default().insert(report.deployment_id.clone(), reported);
    }

    /// A day's value: the sum over deployments (saturating).
    pub fn day(&self, day: NaiveDate) -> Metrics {
        self.days
            .get(&day)
            .map(|deployments| deployments.values().fold(Metrics::default(), |a, r| a.saturating_add(r.metrics)))
            .unwrap_or_default()
    }

    /// Whether any report of the month of `any_day` is held.
    pub fn has_reports_in(&self, any_day: NaiveDate) -> bool {
        let (first, last) = (crate::calendar::first_of_month(any_day), crate::calendar::last_of_month(any_day));
        self.days.range(first..=last).next().is_some()
    }

    /// The largest data volume of a day of the month of `any_day`, each
    /// day the sum over deployments, checked: what overage is billed on.
    pub fn peak_data_gb(&self, any_day: NaiveDate) -> Result<Decimal, UsageOverflow> {
        let (first, last) = (crate::calendar::first_of_month(any_day), crate::calendar::last_of_month(any_day));
        let mut peak = Decimal::ZERO;
        for (day, deployments) in self.days.range(first..=last) {
            let sum = deployments
                .values()
                .try_fold(Decimal::ZERO, |sum, r| sum.checked_add(r.metrics.data_volume_gb))
                .ok_or(UsageOverflow(*day))?;
            peak = peak.max(sum);
        }
        Ok(peak)
    }

    /// The sequences of the reports of the month of `any_day` in effect now
    /// that were appended after `seen`, in log order: what a recomputation
    /// of the month uses that a computation up to `seen` did not.
    pub fn reports_after(&self, any_day: NaiveDate, seen: u64) -> Vec<u64> {
        let (first, last) = (crate::calendar::first_of_month(any_day), crate::calendar::last_of_month(any_day));
        let mut sequences: Vec<u64> = self
            .days
            .range(first..=last)
            .flat_map(|(_, deployments)| deployments.values())
            .map(|reported| reported.sequence)
            .filter(|sequence| *sequence > seen)
            .collect();
        sequences.sort_unstable();
        sequences
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

    /// `check` with the default correction window.
    fn check_35(
        values: [(&'static str, Decimal); 4],
        day: NaiveDate,
        today: NaiveDate,
        start: NaiveDate,
    ) -> Result<Metrics, UsageError> {
        check(values, day, today, start, CORRECTION_DAYS_DEFAULT)
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
        let ok = check_35(values("3", "12.5", "300", "1.25"), d(2026, 3, 11), today, start).unwrap();
        assert_eq!((ok.active_users, ok.data_volume_gb, ok.api_calls_count), (3, dec("12.5"), 300));
        assert_eq!(
            check_35(values("-1", "0", "0", "0"), today, today, start),
            Err(UsageError::Negative("activeUsers"))
        );
        assert_eq!(
            check_35(values("1", "1.005", "0", "0"), today, today, start),
            Err(UsageError::TooPrecise("dataVolumeGB"))
        );
        assert_eq!(
            check_35(values("1.5", "0", "0", "0"), today, today, start),
            Err(UsageError::TooPrecise("activeUsers"))
        );
        assert_eq!(check_35(values("1", "1.50", "0", "0"), today, today, start).unwrap().data_volume_gb, dec("1.5"));
        assert!(matches!(
            check_35(values("1", "0", "0", "0"), d(2026, 3, 12), today, start),
            Err(UsageError::TooFarAhead { .. })
        ));
        assert!(matches!(
            check_35(values("1", "0", "0", "0"), d(2026, 2, 28), today, start),
            Err(UsageError::BeforeStart { .. })
        ));
        // The correction window: 35 days back is the oldest day taken.
        let (today, start) = (d(2026, 3, 1), d(2025, 6, 1));
        assert!(check_35(values("1", "0", "0", "0"), d(2026, 1, 25), today, start).is_ok());
        assert_eq!(
            check_35(values("1", "0", "0", "0"), d(2026, 1, 24), today, start),
            Err(UsageError::TooOld { day: d(2026, 1, 24), today, days: 35 })
        );
        assert!(check(values("1", "0", "0", "0"), d(2026, 2, 26), today, start, 3).is_ok());
        assert!(check(values("1", "0", "0", "0"), d(2026, 2, 25), today, start, 3).is_err());
    }

    /// Numbers are read from their text: `1e-400` is not 0, and nothing
    /// beyond two decimals or 10^13 is ever built into a decimal.
    #[test]
    fn metrics_are_parsed_from_their_text_exactly() {
        let parse = |text: &str| parse_metric("dataVolumeGB", text);
        for (text, value) in [
            ("0", "0"),
            ("12", "12"),
            ("12.50", "12.5"),
            ("1.005e1", "10.05"),
            ("1E2", "100"),
            ("1e+2", "100"),
            ("25e-1", "2.5"),
            ("0.000", "0"),
            ("0e-400", "0"),
            ("-0", "0"),
            ("1000000000000", "1000000000000"),
            ("1e12", "1000000000000"),
            ("9999999999999.99", "9999999999999.99"),
        ] {
            assert_eq!(parse(text).map(|v| v.normalize()), Ok(dec(value)), "{text}");
        }
        for text in ["1e-400", "1.001", "1e-3", "0.125"] {
            assert_eq!(parse(text), Err(UsageError::TooPrecise("dataVolumeGB")), "{text}");
        }
        for text in ["1e13", "1e400", "10000000000000", "1e99999999999999999999"] {
            assert_eq!(parse(text), Err(UsageError::TooLarge("dataVolumeGB")), "{text}");
        }
        assert_eq!(parse("1e-99999999999999999999"), Err(UsageError::TooPrecise("dataVolumeGB")));
        assert_eq!(parse("-0.5"), Err(UsageError::Negative("dataVolumeGB")));
        for text in ["", "-", ".5", "5.", "0x10", "12,5", "1e", "1e+", "+1", " 1", "NaN", "inf", &"1".repeat(41)] {
            assert_eq!(parse(text), Err(UsageError::NotANumber("dataVolumeGB")), "{text:?}");
        }
        // Over 10^12 with two decimals parses, and the check refuses it.
        let over = parse("1000000000000.01").unwrap();
        let (today, start) = (d(2026, 3, 10), d(2026, 3, 1));
        let values = [
            ("activeUsers", Decimal::ONE),
            ("dataVolumeGB", over),
            ("apiCallsCount", Decimal::ZERO),
            ("trainingHours", Decimal::ZERO),
        ];
        assert_eq!(check_35(values, today, today, start), Err(UsageError::TooLarge("dataVolumeGB")));
    }

    /// Worked example 5: 300 then 250 for the same key and day counts 250.
    #[test]
    fn a_later_report_replaces_the_earlier_and_deployments_add_up() {
        let mut usage = Usage::default();
        usage.apply(&report("default", d(2026, 3, 5), 300, "100"), 1);
        usage.apply(&report("default", d(2026, 3, 5), 250, "100"), 2);
        assert_eq!(usage.month(d(2026, 3, 1)).total.api_calls_count, 250);
        usage.apply(&report("edge-2", d(2026, 3, 5), 50, "20"), 3);
        usage.apply(&report("default", d(2026, 3, 6), 10, "90"), 4);
        let march = usage.month(d(2026, 3, 31));
        assert_eq!(march.total.api_calls_count, 310, "counts sum over days and deployments");
        assert_eq!(march.total.data_volume_gb, dec("120"), "gauges take the largest day");
        assert_eq!(march.total.active_users, 6);
        assert_eq!(usage.latest_data_volume(), dec("90"));
        assert_eq!(usage.month(d(2026, 4, 1)), MonthUsage::default());
        assert_eq!(usage.peak_data_gb(d(2026, 3, 1)), Ok(dec("120")));
        // The reports in effect after sequence 2: the replaced one is not.
        assert_eq!(usage.reports_after(d(2026, 3, 1), 2), vec![3, 4]);
        assert_eq!(usage.reports_after(d(2026, 3, 1), 0), vec![2, 3, 4]);
    }

    /// History written outside the API may hold any value: sums never
    /// panic; they saturate for answers and are an error for billing.
    #[test]
    fn sums_of_planted_history_never_panic() {
        let mut usage = Usage::default();
        let mut huge = report("default", d(2026, 3, 5), u64::MAX, "0");
        huge.metrics.data_volume_gb = Decimal::MAX;
        huge.metrics.active_users = u64::MAX;
        usage.apply(&huge, 1);
        huge.deployment_id = "edge-2".into();
        usage.apply(&huge, 2);
        usage.apply(&report("default", d(2026, 3, 6), u64::MAX, "1"), 3);
        let day = usage.day(d(2026, 3, 5));
        assert_eq!((day.active_users, day.api_calls_count, day.data_volume_gb), (u64::MAX, u64::MAX, Decimal::MAX));
        assert_eq!(usage.month(d(2026, 3, 1)).total.api_calls_count, u64::MAX);
        assert_eq!(usage.peak_data_gb(d(2026, 3, 1)), Err(UsageOverflow(d(2026, 3, 5))));
        assert_eq!(huge.metrics.checked_add(huge.metrics), None);
    }
}

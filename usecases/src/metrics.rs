//! Counters and histograms kept by this process (Prometheus); gauges are
//! computed from the read models at scrape time by the HTTP layer, with
//! [`crate::figures`], and the active subscriptions here
//! ([`active_subscriptions`]): from the live subscriptions in the tables,
//! by index, read again only when the read models or the day moved since
//! the last scrape.
//!
//! No label names an organization, a key or a client: every label's values
//! come from a fixed set (a route template, a status class, a tier, a
//! code), so the series are bounded by construction.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::subscription::Status;
use projections::models::subscriptions;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    /// The validation code, or `malformed` / `rate_limited`.
    pub status: String,
    /// The key's tier, or `none` when the key is not known.
    pub tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// The notice's kind (`onboarding`, `usage_warning`, …).
    pub kind: String,
    /// `sent`, `skipped`, or `failed` (an attempt the SMTP server did not accept).
    pub outcome: String,
}

/// An HTTP request's route and outcome: the route's template as the
/// router matched it (`/api/v1/subscriptions/{org_id}`) or `unmatched`, a
/// method of [`HTTP_METHODS`] or `other`, and the status class (`2xx`…).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: String,
    pub status_class: &'static str,
}

/// The methods named in the HTTP label; any other is `other`.
pub const HTTP_METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "HEAD"];

/// The plan's buckets (0.1, 0.5, 1, 2, 5 s) with finer ones below 0.1 s,
/// where a usage report is answered in practice.
pub const USAGE_REPORT_SECONDS_BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0];
/// HTTP request durations: from a cached validation (well under a
/// millisecond) to a request at the edge's timeout.
pub const HTTP_SECONDS_BUCKETS: [f64; 13] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// A billing run takes seconds for hundreds of subscriptions and minutes
/// for hundreds of thousands.
pub const BILLING_RUN_SECONDS_BUCKETS: [f64; 9] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_SECONDS_BUCKETS)
}

/// This process's counters and histograms. Gauges are computed at scrape
/// time instead.
pub struct Metrics {
    pub license_validations: Family<ValidationLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    /// `usage_report_processing_seconds`: a usage report from its body to
    /// its answer.
    pub usage_report_processing: Histogram,
    /// `ledger_http_request_duration_seconds`.
    pub http_requests: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// `ledger_billing_run_duration_seconds`: billing runs (not previews)
    /// that got as far as billing.
    pub billing_run_seconds: Histogram,
    /// `ledger_billing_run_failures_total`: runs that ended in an error
    /// other than a caller's mistake, or left invoices unissued.
    pub billing_run_failures: Counter,
    /// When the scheduler last finished a tick without error.
    scheduler_ticked: Mutex<Option<Instant>>,
    /// The last [`active_subscriptions`] count and what it was counted at.
    active: Mutex<Option<ActiveCount>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            license_validations: Family::default(),
            notifications: Family::default(),
            usage_report_processing: Histogram::new(USAGE_REPORT_SECONDS_BUCKETS),
            http_requests: Family::new_with_constructor(http_histogram),
            billing_run_seconds: Histogram::new(BILLING_RUN_SECONDS_BUCKETS),
            billing_run_failures: Counter::default(),
            scheduler_ticked: Mutex::new(None),
            active: Mutex::new(None),
        }
    }
}

/// Active subscriptions by tier ([`Tier::ALL`]'s order), counted on `today`
/// from the read models at `applied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ActiveCount {
    applied: u64,
    today: NaiveDate,
    by_tier: [i64; Tier::ALL.len()],
}

/// Live subscriptions read per page when counting.
const COUNT_PAGE_ITEMS: usize = projections::models::PAGE_ITEMS_MAX;
/// The most pages one count reads: ten million live subscriptions.
const COUNT_PAGES_MAX: usize = 50_000;

/// The subscriptions active today (active or past due), by the tier in
/// effect today, in [`Tier::ALL`]'s order: counted over the live
/// subscriptions (each organization's one), a page at a time, and kept
/// until the read models apply something more or the day changes.
pub async fn active_subscriptions(ledger: &crate::Ledger) -> Result<[(Tier, i64); Tier::ALL.len()], crate::Error> {
    let (applied, today) = (ledger.models.applied(), ledger.today());
    let cached = *ledger.metrics.active.lock().unwrap_or_else(PoisonError::into_inner);
    let by_tier = match cached {
        Some(count) if count.applied == applied && count.today == today => count.by_tier,
        _ => {
            let by_tier = count_active(ledger, today).await?;
            let count = ActiveCount { applied, today, by_tier };
            *ledger.metrics.active.lock().unwrap_or_else(PoisonError::into_inner) = Some(count);
            by_tier
        }
    };
    Ok(std::array::from_fn(|i| (Tier::ALL[i], by_tier[i])))
}

async fn count_active(ledger: &crate::Ledger, today: NaiveDate) -> Result<[i64; Tier::ALL.len()], crate::Error> {
    let mut by_tier = [0; Tier::ALL.len()];
    let mut after = None;
    for _ in 0..COUNT_PAGES_MAX {
        let page = subscriptions::live_page(&ledger.models.db, after, COUNT_PAGE_ITEMS).await?;
        let Some((_, last, _)) = page.last() else { break };
        after = Some(*last);
        for (_, _, subscription) in &page {
            let live = matches!(subscription.status_on(today), Status::Active | Status::PastDue);
            if let (true, Some(period)) = (live, subscription.tier_on(today))
                && let Some(i) = Tier::ALL.iter().position(|tier| *tier == period.tier)
            {
                by_tier[i] += 1;
            }
        }
        if page.len() < COUNT_PAGE_ITEMS {
            break;
        }
    }
    Ok(by_tier)
}

impl Metrics {
    /// One HTTP request answered with `status` on `route` (the matched
    /// template, or `None` for a path no route matched).
    pub fn http_request(&self, method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
        let method = HTTP_METHODS.iter().find(|known| **known == method).copied().unwrap_or("other");
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let labels = HttpLabels { method, route: route.unwrap_or("unmatched").to_owned(), status_class };
        self.http_requests.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// The scheduler finished a tick without error.
    pub fn scheduler_ticked(&self) {
        *self.scheduler_ticked.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// How long since the scheduler last finished a tick without error;
    /// `None` before its first.
    pub fn scheduler_lag(&self) -> Option<Duration> {
        self.scheduler_ticked.lock().unwrap_or_else(PoisonError::into_inner).map(|at| at.elapsed())
    }

    pub fn notification(&self, kind: &str, outcome: &str) {
        self.notifications.get_or_create(&NotificationLabels { kind: kind.into(), outcome: outcome.into() }).inc();
    }

    pub fn validation(&self, status: &str, tier: &str) {
        self.license_validations.get_or_create(&ValidationLabels { status: status.into(), tier: tier.into() }).inc();
    }
}

//! Counters kept by this process, and the per-address rate limiter.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

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

/// This process's counters. Gauges are computed at scrape time instead.
#[derive(Default)]
pub struct Metrics {
    pub license_validations: Family<ValidationLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
}

impl Metrics {
    pub fn notification(&self, kind: &str, outcome: &str) {
        self.notifications.get_or_create(&NotificationLabels { kind: kind.into(), outcome: outcome.into() }).inc();
    }

    pub fn validation(&self, status: &str, tier: &str) {
        self.license_validations.get_or_create(&ValidationLabels { status: status.into(), tier: tier.into() }).inc();
    }
}

/// Requests one client address may make to the validation route, per
/// minute; `None` turns the limit off (benchmarks).
pub struct AddressLimiter(Option<DefaultKeyedRateLimiter<IpAddr>>);

impl AddressLimiter {
    pub fn per_minute(requests: u32) -> Self {
        Self(NonZeroU32::new(requests).map(|n| governor::RateLimiter::keyed(Quota::per_minute(n))))
    }

    /// `Err(seconds to wait)` when the address is over its limit.
    pub fn check(&self, address: Option<IpAddr>) -> Result<(), u64> {
        let (Some(limiter), Some(address)) = (&self.0, address) else { return Ok(()) };
        limiter.check_key(&address).map_err(|not_until| {
            let clock = governor::clock::DefaultClock::default();
            not_until.wait_time_from(governor::clock::Clock::now(&clock)).as_secs().max(1)
        })
    }
}

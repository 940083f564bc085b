//! Counters kept by this process (Prometheus); gauges are computed from
//! the read models at scrape time by the HTTP layer.

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

//! Counters kept by this process (Prometheus); gauges are computed from
//! the read models at scrape time by the HTTP layer, the active
//! subscriptions here ([`active_subscriptions`]): from the live
//! subscriptions in the tables, by index, read again only when the read
//! models or the day moved since the last scrape.

use std::sync::{Mutex, PoisonError};

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::subscription::Status;
use projections::models::subscriptions;

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
    /// The last [`active_subscriptions`] count and what it was counted at.
    active: Mutex<Option<ActiveCount>>,
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
    pub fn notification(&self, kind: &str, outcome: &str) {
        self.notifications.get_or_create(&NotificationLabels { kind: kind.into(), outcome: outcome.into() }).inc();
    }

    pub fn validation(&self, status: &str, tier: &str) {
        self.license_validations.get_or_create(&ValidationLabels { status: status.into(), tier: tier.into() }).inc();
    }
}

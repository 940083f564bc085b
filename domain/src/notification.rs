//! Notifications: the e-mails the ledger sends an organization's admins,
//! and the record that each was sent (BILLING-RULES.md; issue 6, item 5).
//!
//! A notice is decided from events (a license issued, a usage report, a
//! payment failing) or from time (a term ending without renewal). Each has
//! an id derived from what made it due, so deciding it again, in another
//! process or after a restart, gives the same id, and its stream
//! `notification/{id}` is appended once (expecting no stream): the log says
//! whether it was sent. This module decides; sending is the API's outbox.
//!
//! Nothing here holds a secret: an onboarding notice names the license,
//! and the key is derived again from the license's event when the e-mail
//! is written, never stored.

use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::TierSpec;
use crate::subscription::Subscription;
use crate::usage::Metrics;
use crate::{EventId, LicenseId, OrganizationId, StreamId, SubscriptionId, UserId};

/// The expiry reminder goes out this many days before a term's end
/// (BILLING-RULES: "30 days before `end_date` when auto-renew is off").
pub const EXPIRY_REMINDER_DAYS: u64 = 30;
const ID_CONTEXT: &str = "ledger 2026-11-29 notification id v1";

/// A notification's id: a UUID (version 8) derived from its notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NotificationId(pub Uuid);

impl NotificationId {
    /// The stream its sending is recorded on.
    pub fn stream(&self) -> StreamId {
        StreamId::of("notification", self.0)
    }
}

impl std::fmt::Display for NotificationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A metric with a monthly limit, named as in the usage report's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum UsageMetric {
    Users,
    DataVolumeGb,
    ApiCalls,
}

impl UsageMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageMetric::Users => "users",
            UsageMetric::DataVolumeGb => "dataVolumeGB",
            UsageMetric::ApiCalls => "apiCalls",
        }
    }
}

/// How close a metric is to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum UsageLevel {
    /// 80% to under 100% (the answer's `limitsApproaching`).
    Approaching,
    /// 100% or more (the answer's `warningsIssued`).
    Reached,
}

impl UsageLevel {
    pub fn percent(self) -> u32 {
        match self {
            UsageLevel::Approaching => 80,
            UsageLevel::Reached => 100,
        }
    }
}

/// A metric's value against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCheck {
    pub metric: UsageMetric,
    pub level: UsageLevel,
    pub value: Decimal,
    pub limit: Decimal,
}

/// The metrics of a month's values at 80% of their limit or more (the
/// usage report's answer and the usage warnings both use this). Unlimited
/// metrics, and limits of zero, are never near.
pub fn usage_levels(month: &Metrics, spec: &TierSpec, extra_data_gb: u64) -> Vec<UsageCheck> {
    let checks = [
        (UsageMetric::Users, Decimal::from(month.active_users), spec.seats.map(Decimal::from)),
        (UsageMetric::DataVolumeGb, month.data_volume_gb, Some(Decimal::from(spec.data_gb + extra_data_gb))),
        (UsageMetric::ApiCalls, Decimal::from(month.api_calls_count), spec.api_calls_per_month.map(Decimal::from)),
    ];
    let mut near = Vec::new();
    for (metric, value, limit) in checks {
        let Some(limit) = limit.filter(|l| !l.is_zero()) else { continue };
        let level = if value >= limit {
            UsageLevel::Reached
        } else if value * Decimal::from(5) >= limit * Decimal::from(4) {
            UsageLevel::Approaching
        } else {
            continue;
        };
        near.push(UsageCheck { metric, level, value, limit });
    }
    near
}

/// What a notification tells, and about what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// A license was issued (a new subscription, or an upgrade's new key):
    /// the e-mail carries the key.
    Onboarding { organization_id: OrganizationId, subscription_id: SubscriptionId, license_id: LicenseId },
    /// The term ends on `end_date` and will not renew.
    ExpiryReminder { organization_id: OrganizationId, subscription_id: SubscriptionId, end_date: NaiveDate },
    /// A metric of the month starting `month` reached a level.
    UsageWarning {
        organization_id: OrganizationId,
        subscription_id: SubscriptionId,
        metric: UsageMetric,
        level: UsageLevel,
        month: NaiveDate,
    },
    /// A payment failed (the event `PaymentFailed` with id `trigger`).
    PaymentFailed { organization_id: OrganizationId, subscription_id: SubscriptionId, trigger: EventId },
    /// The dunning grace ended: the subscription is suspended.
    Suspended { organization_id: OrganizationId, subscription_id: SubscriptionId, trigger: EventId },
    /// A payment succeeded and the subscription is active again.
    Restored { organization_id: OrganizationId, subscription_id: SubscriptionId, trigger: EventId },
}

impl Notice {
    /// A stable name of the kind, for logs, metrics and ids.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Onboarding { .. } => "onboarding",
            Notice::ExpiryReminder { .. } => "expiry_reminder",
            Notice::UsageWarning { .. } => "usage_warning",
            Notice::PaymentFailed { .. } => "payment_failed",
            Notice::Suspended { .. } => "suspended",
            Notice::Restored { .. } => "restored",
        }
    }

    pub fn organization_id(&self) -> OrganizationId {
        match self {
            Notice::Onboarding { organization_id, .. }
            | Notice::ExpiryReminder { organization_id, .. }
            | Notice::UsageWarning { organization_id, .. }
            | Notice::PaymentFailed { organization_id, .. }
            | Notice::Suspended { organization_id, .. }
            | Notice::Restored { organization_id, .. } => *organization_id,
        }
    }

    pub fn subscription_id(&self) -> SubscriptionId {
        match self {
            Notice::Onboarding { subscription_id, .. }
            | Notice::ExpiryReminder { subscription_id, .. }
            | Notice::UsageWarning { subscription_id, .. }
            | Notice::PaymentFailed { subscription_id, .. }
            | Notice::Suspended { subscription_id, .. }
            | Notice::Restored { subscription_id, .. } => *subscription_id,
        }
    }

    /// The id, from the kind and what makes this notice the one it is:
    /// the license for an onboarding; the subscription and term end for a
    /// reminder; subscription, metric, level and month for a usage
    /// warning; the triggering event for dunning notices. The organization
    /// is not part of it: it follows from each of these.
    pub fn id(&self) -> NotificationId {
        let mut hasher = blake3::Hasher::new_derive_key(ID_CONTEXT);
        let mut put = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        put(self.kind().as_bytes());
        match self {
            Notice::Onboarding { license_id, .. } => put(license_id.0.as_bytes()),
            Notice::ExpiryReminder { subscription_id, end_date, .. } => {
                put(subscription_id.0.as_bytes());
                put(end_date.to_string().as_bytes());
            }
            Notice::UsageWarning { subscription_id, metric, level, month, .. } => {
                put(subscription_id.0.as_bytes());
                put(metric.as_str().as_bytes());
                put(&level.percent().to_le_bytes());
                put(format!("{:04}-{:02}", month.year(), month.month()).as_bytes());
            }
            Notice::PaymentFailed { trigger, .. }
            | Notice::Suspended { trigger, .. }
            | Notice::Restored { trigger, .. } => put(trigger.as_bytes()),
        }
        let digest = hasher.finalize();
        let bytes: [u8; 16] = digest.as_bytes()[..16].try_into().expect("16 of 32 bytes");
        NotificationId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

/// The expiry reminder due for a subscription on `today`, if any: its term
/// ends within [`EXPIRY_REMINDER_DAYS`] days, auto-renewal is off, and it
/// has not ended nor been cancelled (a cancellation says when it ends).
pub fn expiry_reminder(subscription: &Subscription, today: NaiveDate) -> Option<Notice> {
    let (Some(subscription_id), Some(organization_id), Some(end_date)) =
        (subscription.id, subscription.organization_id, subscription.end_date)
    else {
        return None;
    };
    let window_opens = end_date.checked_sub_days(Days::new(EXPIRY_REMINDER_DAYS))?;
    let due = !subscription.auto_renew
        && !subscription.expired
        && subscription.cancelled_from.is_none()
        && window_opens <= today
        && today < end_date;
    due.then_some(Notice::ExpiryReminder { organization_id, subscription_id, end_date })
}

/// The usage warnings a month's values call for: one per metric at 80% or
/// more, at the highest level reached. (A metric that jumps past 100% gets
/// the 100% warning only; the outbox does not send an 80% warning after
/// the 100% one of the same month.)
pub fn usage_warnings(
    organization_id: OrganizationId,
    subscription_id: SubscriptionId,
    month: NaiveDate,
    checks: &[UsageCheck],
) -> Vec<Notice> {
    let month = crate::calendar::first_of_month(month);
    checks
        .iter()
        .map(|check| Notice::UsageWarning {
            organization_id,
            subscription_id,
            metric: check.metric,
            level: check.level,
            month,
        })
        .collect()
}

crate::stored_events! {
    /// What became of a notification.
    pub enum NotificationEvent {
        NotificationSent = "NotificationSent" version 1,
        NotificationSkipped = "NotificationSkipped" version 1,
    }
}

/// The e-mail was handed to the SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub id: NotificationId,
    pub notice: Notice,
    /// The admins it went to, by id (their addresses are in the
    /// organization's events; not repeating them keeps erasure to one place).
    pub recipients: Vec<UserId>,
    /// The e-mail's `Message-ID`, to match a repeated delivery.
    pub message_id: String,
}

/// The notification will not be sent, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSkipped {
    pub id: NotificationId,
    pub notice: Notice,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// The organization had no active admin to write to when it was due.
    NoRecipient,
    /// What it was about no longer exists (an unknown license or subscription).
    Obsolete,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoRecipient => "no_recipient",
            SkipReason::Obsolete => "obsolete",
        }
    }
}

impl NotificationEvent {
    pub fn id(&self) -> NotificationId {
        match self {
            NotificationEvent::NotificationSent(sent) => sent.id,
            NotificationEvent::NotificationSkipped(skipped) => skipped.id,
        }
    }
}

//! The notification outbox as rows: notices decided from the log and not
//! yet recorded as sent or skipped (`NotificationSent`/`NotificationSkipped`),
//! decided as `usecases::notify` decides them (onboarding on a license
//! issued, usage warnings at 80% and 100% of a limit, dunning notices).
//!
//! Done notices do not accumulate. Onboarding and dunning notices are
//! decided once, by the one event that calls for them (a license issued, a
//! payment event), so nothing of them is kept once done. What can be
//! decided again is kept per subscription and slot ([`DONE`]): for each
//! usage metric and level, the latest month done; for the expiry reminder,
//! the latest term end reminded of. So a month's warning is never sent
//! twice, nor one of a month before a month already warned of (a late
//! report of a past month does not warn again), and the table holds at
//! most seven rows per subscription.
//!
//! The expiry reminder comes from the clock, not the log: [`due_reminders`]
//! lists what is due on a day and not done yet; its send is recorded like
//! any other and lands in [`DONE`].
//!
//! Onboarding waits for an admin; the sender, not this projection, decides
//! whether a notice is still worth sending (`NotificationSkipped`).

use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use domain::catalog::Catalog;
use domain::event::LedgerEvent;
use domain::license::LicenseEvent;
use domain::notification::{Notice, NotificationEvent, NotificationId, UsageLevel, expiry_reminder, usage_levels};
use domain::record::Record;
use domain::subscription::{Subscription, SubscriptionEvent};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::{OrganizationId, SubscriptionId};

use super::{day, decoded, encoded, limit_param, page_limit, parse_day, stream_uuid, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};

pub const PENDING: Table = Table::new(
    "rm_notifications_pending",
    &[
        Column::blob("id"),
        Column::int("decided_at"),
        Column::blob("organization_id"),
        Column::text("kind"),
        Column::blob("notice"),
    ],
    1,
);
pub const DONE: Table = Table::new(
    "rm_notifications_done",
    &[Column::blob("subscription_id"), Column::text("slot"), Column::text("day")],
    2,
);
pub const NOTIFY_SUBSCRIPTIONS: Table =
    Table::new("rm_notify_subscriptions", &[Column::blob("id"), Column::blob("state")], 1);
pub const NOTIFY_USAGE_DAYS: Table = Table::new(
    "rm_notify_usage_days",
    &[Column::blob("subscription_id"), Column::text("day"), Column::blob("reports")],
    2,
);

/// Keeps the outbox's tables.
pub struct Notifications {
    catalog: Catalog,
}

impl Notifications {
    /// The outbox deciding usage warnings against `catalog`'s limits.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

impl Projection for Notifications {
    fn name(&self) -> &'static str {
        "notifications-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[PENDING, DONE, NOTIFY_SUBSCRIPTIONS, NOTIFY_USAGE_DAYS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let sequence = record.header.sequence;
        match event {
            Some(LedgerEvent::License(LicenseEvent::LicenseIssued(issued))) => {
                let notice = Notice::Onboarding {
                    organization_id: issued.organization_id,
                    subscription_id: issued.subscription_id,
                    license_id: issued.license_id,
                };
                add(changes, notice, sequence)?;
            }
            Some(LedgerEvent::Usage(UsageEvent::UsageReported(report))) => {
                for notice in self.usage_warnings(changes, report)? {
                    add(changes, notice, sequence)?;
                }
            }
            Some(LedgerEvent::Subscription(event)) => {
                if let Some(notice) = subscription_event(changes, record, event)? {
                    add(changes, notice, sequence)?;
                }
            }
            Some(LedgerEvent::Notification(event)) => finish(changes, event)?,
            _ => {}
        }
        Ok(())
    }
}

impl Notifications {
    /// Records the report in its day and returns the warnings its month's
    /// values call for now.
    fn usage_warnings(&self, changes: &mut Changes<'_>, report: &UsageReported) -> Result<Vec<Notice>, DbError> {
        let key = [report.subscription_id.0.into(), day(report.day)];
        let mut reports: BTreeMap<String, Metrics> = match changes.get(&NOTIFY_USAGE_DAYS, &key)? {
            Some(row) => decoded(&row, 2)?,
            None => BTreeMap::new(),
        };
        reports.insert(report.deployment_id.clone(), report.metrics);
        let [subscription, report_day] = key;
        changes.upsert(&NOTIFY_USAGE_DAYS, vec![subscription, report_day, encoded(&reports)])?;
        let Some(state) = subscription_state(changes, report.subscription_id)? else { return Ok(Vec::new()) };
        let (Some(organization_id), Some((spec, extra_gb))) =
            (state.organization_id, state.spec_on(&self.catalog, report.day))
        else {
            return Ok(Vec::new());
        };
        let month = month_total(changes, report.subscription_id, report.day)?;
        let checks = usage_levels(&month, spec, extra_gb);
        Ok(domain::notification::usage_warnings(organization_id, report.subscription_id, report.day, &checks))
    }
}

fn subscription_state(changes: &mut Changes<'_>, id: SubscriptionId) -> Result<Option<Subscription>, DbError> {
    changes.get(&NOTIFY_SUBSCRIPTIONS, &[id.0.into()])?.map(|row| decoded(&row, 1)).transpose()
}

/// The month's values (`Usage::month(..).total`): each day the sum over its
/// deployments, the largest day of the gauges, the sum of the counts.
fn month_total(changes: &mut Changes<'_>, id: SubscriptionId, any_day: chrono::NaiveDate) -> Result<Metrics, DbError> {
    let first = domain::calendar::first_of_month(any_day);
    let last = domain::calendar::last_of_month(any_day);
    let mut days = Vec::new();
    for date in first.iter_days().take_while(|date| *date <= last) {
        if let Some(row) = changes.get(&NOTIFY_USAGE_DAYS, &[id.0.into(), day(date)])? {
            let reports: BTreeMap<String, Metrics> = decoded(&row, 2)?;
            days.push(reports.values().fold(Metrics::default(), |sum, m| sum.saturating_add(*m)));
        }
    }
    Ok(domain::usage::month_total(days.iter()))
}

/// Applies a subscription event to the outbox's copy of the subscription,
/// and returns the dunning notice it calls for.
fn subscription_event(
    changes: &mut Changes<'_>,
    record: &Record,
    event: &SubscriptionEvent,
) -> Result<Option<Notice>, DbError> {
    let Some(id) = stream_uuid(record, "subscription").map(SubscriptionId) else { return Ok(None) };
    let mut state = subscription_state(changes, id)?.unwrap_or_default();
    state.apply(event.clone());
    changes.upsert(&NOTIFY_SUBSCRIPTIONS, vec![id.0.into(), encoded(&state)])?;
    let Some(organization_id) = state.organization_id else { return Ok(None) };
    let (subscription_id, trigger) = (id, record.header.event_id);
    Ok(match event {
        SubscriptionEvent::PaymentFailed(_) => {
            Some(Notice::PaymentFailed { organization_id, subscription_id, trigger })
        }
        SubscriptionEvent::SubscriptionSuspended(_) => {
            Some(Notice::Suspended { organization_id, subscription_id, trigger })
        }
        SubscriptionEvent::PaymentSucceeded(paid) if paid.reactivated => {
            Some(Notice::Restored { organization_id, subscription_id, trigger })
        }
        _ => None,
    })
}

/// The slot a notice that can be decided again is remembered in, and the
/// day that orders it; `None` for a notice decided once.
fn slot(notice: &Notice) -> Option<(SubscriptionId, String, chrono::NaiveDate)> {
    match notice {
        Notice::UsageWarning { subscription_id, metric, level, month, .. } => {
            Some((*subscription_id, format!("usage:{}:{}", metric.as_str(), level.percent()), *month))
        }
        Notice::ExpiryReminder { subscription_id, end_date, .. } => {
            Some((*subscription_id, "expiry".to_owned(), *end_date))
        }
        _ => None,
    }
}

/// Whether a notice that can be decided again was done: its slot holds its
/// day or a later one.
fn done(changes: &mut Changes<'_>, notice: &Notice) -> Result<bool, DbError> {
    let Some((subscription_id, slot, date)) = slot(notice) else { return Ok(false) };
    let row = changes.get(&DONE, &[subscription_id.0.into(), slot.into()])?;
    Ok(row.map(|row| parse_day(&row, 2)).transpose()?.is_some_and(|done| done >= date))
}

fn known(changes: &mut Changes<'_>, notice: &Notice) -> Result<bool, DbError> {
    Ok(changes.get(&PENDING, &[notice.id().0.into()])?.is_some() || done(changes, notice)?)
}

/// Adds a notice unless it is known; a metric that has its 100% warning
/// of a month does not get the 80% one afterwards.
fn add(changes: &mut Changes<'_>, notice: Notice, decided_at: u64) -> Result<(), DbError> {
    if known(changes, &notice)? {
        return Ok(());
    }
    if let Notice::UsageWarning { level: UsageLevel::Approaching, .. } = &notice {
        let mut reached = notice.clone();
        if let Notice::UsageWarning { level, .. } = &mut reached {
            *level = UsageLevel::Reached;
        }
        if known(changes, &reached)? {
            return Ok(());
        }
    }
    changes.upsert(
        &PENDING,
        vec![
            notice.id().0.into(),
            Value::uint(decided_at)?,
            notice.organization_id().0.into(),
            notice.kind().into(),
            encoded(&notice),
        ],
    )
}

/// A notice recorded as sent or skipped: no longer pending, and its slot
/// remembers it if it could be decided again.
fn finish(changes: &mut Changes<'_>, event: &NotificationEvent) -> Result<(), DbError> {
    changes.delete(&PENDING, vec![event.id().0.into()])?;
    let notice = match event {
        NotificationEvent::NotificationSent(sent) => &sent.notice,
        NotificationEvent::NotificationSkipped(skipped) => &skipped.notice,
    };
    if let Some((subscription_id, slot, date)) = slot(notice)
        && !done(changes, notice)?
    {
        changes.upsert(&DONE, vec![subscription_id.0.into(), slot.into(), day(date)])?;
    }
    Ok(())
}

/// A decided notice waiting to be sent (`usecases::notify::Pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    pub id: NotificationId,
    pub notice: Notice,
    /// The log sequence it was decided at: notices go out in this order.
    pub decided_at: u64,
}

/// Pending notices in the order they were decided, at most `size` (capped
/// at [`super::PAGE_ITEMS_MAX`]).
pub async fn pending(db: &ReadModelDb, size: usize) -> Result<Vec<PendingNotice>, DbError> {
    let rows = db
        .query(
            "SELECT id, decided_at, notice FROM rm_notifications_pending ORDER BY decided_at, id LIMIT $1",
            vec![limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(pending_of).collect()
}

/// One pending notice: what the sender looks up right before sending.
pub async fn pending_notice(db: &ReadModelDb, id: NotificationId) -> Result<Option<PendingNotice>, DbError> {
    let row = db
        .query_opt("SELECT id, decided_at, notice FROM rm_notifications_pending WHERE id = $1", vec![id.0.into()])
        .await?;
    row.as_ref().map(pending_of).transpose()
}

/// The expiry reminders due on `today` and not sent (nor skipped) yet:
/// from the term-end index (terms ending within the reminder window), at
/// most `size` (capped at [`super::PAGE_ITEMS_MAX`]) after `after`.
pub async fn due_reminders(
    db: &ReadModelDb,
    today: chrono::NaiveDate,
    after: Option<SubscriptionId>,
    size: usize,
) -> Result<Vec<Notice>, DbError> {
    let window = chrono::Days::new(domain::notification::EXPIRY_REMINDER_DAYS);
    let last = today.checked_add_days(window).unwrap_or(today);
    let candidates = super::subscriptions::expiring(db, today, last, after, size).await?;
    let mut due = Vec::new();
    for (_, subscription) in candidates {
        let Some(notice) = expiry_reminder(&subscription, today) else { continue };
        let Some((subscription_id, slot, end_date)) = slot(&notice) else { continue };
        let row = db
            .query_opt(
                "SELECT day FROM rm_notifications_done WHERE subscription_id = $1 AND slot = $2",
                vec![subscription_id.0.into(), slot.into()],
            )
            .await?;
        if row.map(|row| parse_day(&row, 0)).transpose()?.is_some_and(|done| done >= end_date) {
            continue;
        }
        due.push(notice);
    }
    Ok(due)
}

/// The organization a pending notice is for (listed for operators).
pub async fn pending_of_organization(
    db: &ReadModelDb,
    organization_id: OrganizationId,
    size: usize,
) -> Result<Vec<PendingNotice>, DbError> {
    let rows = db
        .query(
            "SELECT id, decided_at, notice FROM rm_notifications_pending WHERE organization_id = $1 \
             ORDER BY decided_at, id LIMIT $2",
            vec![organization_id.0.into(), limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(pending_of).collect()
}

/// Pending notices decided after sequence `from` (where the sender began:
/// what was decided before it is history, never sent), in the order they
/// were decided, after the cursor `after` (a notice's `decided_at` and id):
/// at most `size` (capped at [`super::PAGE_ITEMS_MAX`]), by the
/// `decided_at` index.
pub async fn pending_since(
    db: &ReadModelDb,
    from: u64,
    after: Option<(u64, NotificationId)>,
    size: usize,
) -> Result<Vec<PendingNotice>, DbError> {
    let (at, id) = match after {
        Some((at, id)) if at >= from => (at, id.0.as_bytes().to_vec()),
        _ => (from, Vec::new()),
    };
    let rows = db
        .query(
            "SELECT id, decided_at, notice FROM rm_notifications_pending \
             WHERE decided_at > $1 OR (decided_at = $1 AND id > $2) ORDER BY decided_at, id LIMIT $3",
            vec![Value::uint(at)?, id.into(), limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(pending_of).collect()
}

/// [`due_reminders`] a page at a time: the reminders due on `today` among
/// at most `size` candidates after `after`, and the cursor of the next
/// page (`None` after the last).
pub async fn due_reminders_page(
    db: &ReadModelDb,
    today: chrono::NaiveDate,
    after: Option<SubscriptionId>,
    size: usize,
) -> Result<(Vec<Notice>, Option<SubscriptionId>), DbError> {
    let window = chrono::Days::new(domain::notification::EXPIRY_REMINDER_DAYS);
    let last = today.checked_add_days(window).unwrap_or(today);
    let size = page_limit(size);
    let candidates = super::subscriptions::expiring(db, today, last, after, size).await?;
    let next = (candidates.len() == size).then(|| candidates.last().map(|(id, _)| *id)).flatten();
    let mut due = Vec::new();
    for (_, subscription) in candidates {
        let Some(notice) = expiry_reminder(&subscription, today) else { continue };
        let Some((subscription_id, slot, end_date)) = slot(&notice) else { continue };
        let row = db
            .query_opt(
                "SELECT day FROM rm_notifications_done WHERE subscription_id = $1 AND slot = $2",
                vec![subscription_id.0.into(), slot.into()],
            )
            .await?;
        if row.map(|row| parse_day(&row, 0)).transpose()?.is_none_or(|done| done < end_date) {
            due.push(notice);
        }
    }
    Ok((due, next))
}

/// A row of `rm_notifications_pending` read as `id, decided_at, notice`.
fn pending_of(row: &crate::db::Row) -> Result<PendingNotice, DbError> {
    Ok(PendingNotice { id: NotificationId(uuid(row, 0)?), decided_at: row.uint(1)?, notice: decoded(row, 2)? })
}

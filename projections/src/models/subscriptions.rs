//! Subscriptions with their current terms and limits: the aggregate's state
//! (`domain::subscription::Subscription`: status, tiers, term, seats,
//! add-ons, dunning), applied by its own `apply`, plus the columns queries
//! select by (organization, creation order, term end).

use cqrs_es::Aggregate;
use domain::event::LedgerEvent;
use domain::record::Record;
use domain::subscription::{Subscription, SubscriptionEvent};
use domain::{OrganizationId, SubscriptionId};

use super::{day, decoded, encoded, limit_param, page_limit, stream_uuid, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Row, Table, Value};

pub const SUBSCRIPTIONS: Table = Table::new(
    "rm_subscriptions",
    &[
        Column::blob("id"),
        Column::blob("organization_id").nullable(),
        Column::int("created_sequence").nullable(),
        Column::text("end_date").nullable(),
        Column::bool("auto_renew"),
        Column::bool("ended"),
        Column::blob("state"),
    ],
    1,
);

/// The most subscriptions of one organization a query lists: far more than
/// an organization has (one live at a time; a new one only after the last
/// ended), so the list is never cut in practice, and a query stays bounded.
pub const SUBSCRIPTIONS_PER_ORGANIZATION_MAX: usize = 1_000;

/// Keeps [`SUBSCRIPTIONS`].
pub struct Subscriptions;

impl Projection for Subscriptions {
    fn name(&self) -> &'static str {
        "subscriptions-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[SUBSCRIPTIONS]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let (Some(LedgerEvent::Subscription(event)), Some(id)) = (event, stream_uuid(record, "subscription")) else {
            return Ok(());
        };
        let stored = changes.get(&SUBSCRIPTIONS, &[id.into()])?;
        let (mut state, mut created_sequence) = match &stored {
            Some(row) => (decoded::<Subscription>(row, 6)?, row.opt_int(2)?),
            None => (Subscription::default(), None),
        };
        if let SubscriptionEvent::SubscriptionCreated(_) = event {
            created_sequence = Some(i64::try_from(record.header.sequence).map_err(|e| e.to_string())?);
        }
        state.apply(event.clone());
        changes.upsert(
            &SUBSCRIPTIONS,
            vec![
                id.into(),
                state.organization_id.map(|o| o.0).into(),
                created_sequence.into(),
                state.end_date.map_or(Value::Null, day),
                state.auto_renew.into(),
                (state.expired || state.cancelled_from.is_some()).into(),
                encoded(&state),
            ],
        )?;
        Ok(())
    }
}

fn decode(row: &Row) -> Result<(SubscriptionId, Subscription), DbError> {
    Ok((SubscriptionId(uuid(row, 0)?), decoded(row, 1)?))
}

/// One subscription's state.
pub async fn subscription(db: &ReadModelDb, id: SubscriptionId) -> Result<Option<Subscription>, DbError> {
    let row = db.query_opt("SELECT state FROM rm_subscriptions WHERE id = $1", vec![id.0.into()]).await?;
    row.map(|row| decoded(&row, 0)).transpose()
}

/// An organization's subscriptions in the order they were created
/// (`OrganizationEntry::subscriptions`), at most
/// [`SUBSCRIPTIONS_PER_ORGANIZATION_MAX`].
pub async fn of_organization(
    db: &ReadModelDb,
    organization_id: OrganizationId,
) -> Result<Vec<(SubscriptionId, Subscription)>, DbError> {
    let rows = db
        .query(
            "SELECT id, state FROM rm_subscriptions WHERE organization_id = $1 AND created_sequence IS NOT NULL \
             ORDER BY created_sequence LIMIT $2",
            vec![organization_id.0.into(), limit_param(SUBSCRIPTIONS_PER_ORGANIZATION_MAX)],
        )
        .await?;
    rows.iter().map(decode).collect()
}

/// The organization's most recently created subscription, live or not
/// (`LedgerState::latest_subscription`).
pub async fn latest(
    db: &ReadModelDb,
    organization_id: OrganizationId,
) -> Result<Option<(SubscriptionId, Subscription)>, DbError> {
    let rows = db
        .query(
            "SELECT id, state FROM rm_subscriptions WHERE organization_id = $1 AND created_sequence IS NOT NULL \
             ORDER BY created_sequence DESC LIMIT 1",
            vec![organization_id.0.into()],
        )
        .await?;
    rows.first().map(decode).transpose()
}

/// The organization's live subscription (`LedgerState::live_subscription`):
/// the one its aggregate names, if that subscription is known.
pub async fn live(
    db: &ReadModelDb,
    organization_id: OrganizationId,
) -> Result<Option<(SubscriptionId, Subscription)>, DbError> {
    let Some(id) = super::organizations::live_subscription(db, organization_id).await? else { return Ok(None) };
    Ok(subscription(db, id).await?.map(|state| (id, state)))
}

/// The live subscription, or else the latest: what the subscription
/// queries and changes act on.
pub async fn live_or_latest(
    db: &ReadModelDb,
    organization_id: OrganizationId,
) -> Result<Option<(SubscriptionId, Subscription)>, DbError> {
    match live(db, organization_id).await? {
        Some(found) => Ok(Some(found)),
        None => latest(db, organization_id).await,
    }
}

/// Every subscription in id order after `after`, at most `size` (capped at
/// [`super::PAGE_ITEMS_MAX`]): what the billing run walks, a page at a time.
pub async fn page(
    db: &ReadModelDb,
    after: Option<SubscriptionId>,
    size: usize,
) -> Result<Vec<(SubscriptionId, Subscription)>, DbError> {
    let after = after.map_or_else(Vec::new, |id| id.0.as_bytes().to_vec());
    let rows = db
        .query(
            "SELECT id, state FROM rm_subscriptions WHERE id > $1 ORDER BY id LIMIT $2",
            vec![after.into(), limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(decode).collect()
}

/// How many subscriptions the read models hold: the total a background
/// billing run (`usecases::billing_runs`) reports its progress against.
pub async fn count(db: &ReadModelDb) -> Result<u64, DbError> {
    let row = db.query_opt("SELECT COUNT(*) FROM rm_subscriptions", Vec::new()).await?;
    row.map_or(Ok(0), |row| row.uint(0))
}

/// Subscriptions whose term ends from `first` to `last` (inclusive), do not
/// renew and have not ended or been cancelled: the candidates of the expiry
/// reminder (`domain::notification::expiry_reminder` decides), by the
/// term-end index, at most `size` after `after` (capped at
/// [`super::PAGE_ITEMS_MAX`]).
pub async fn expiring(
    db: &ReadModelDb,
    first: chrono::NaiveDate,
    last: chrono::NaiveDate,
    after: Option<SubscriptionId>,
    size: usize,
) -> Result<Vec<(SubscriptionId, Subscription)>, DbError> {
    let after = after.map_or_else(Vec::new, |id| id.0.as_bytes().to_vec());
    let rows = db
        .query(
            "SELECT id, state FROM rm_subscriptions WHERE end_date >= $1 AND end_date <= $2 AND auto_renew = $3 \
             AND ended = $3 AND id > $4 ORDER BY id LIMIT $5",
            vec![day(first), day(last), false.into(), after.into(), limit_param(page_limit(size))],
        )
        .await?;
    rows.iter().map(decode).collect()
}

/// The live subscriptions (each organization's `live_subscription`, as its
/// aggregate names it), in subscription id order after `after`, at most
/// `size` (capped at [`super::PAGE_ITEMS_MAX`]), with their organization:
/// what the scheduler and the active-subscriptions gauge walk, a page at a
/// time. By the `rm_organizations_by_live_subscription` index, so an
/// organization without a live subscription (or a subscription that
/// ended) is never read.
pub async fn live_page(
    db: &ReadModelDb,
    after: Option<SubscriptionId>,
    size: usize,
) -> Result<Vec<(OrganizationId, SubscriptionId, Subscription)>, DbError> {
    let after = after.map_or_else(Vec::new, |id| id.0.as_bytes().to_vec());
    let rows = db
        .query(
            "SELECT o.id, s.id, s.state FROM rm_organizations o JOIN rm_subscriptions s \
             ON s.id = o.live_subscription WHERE o.live_subscription > $1 ORDER BY o.live_subscription LIMIT $2",
            vec![after.into(), limit_param(page_limit(size))],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((OrganizationId(uuid(row, 0)?), SubscriptionId(uuid(row, 1)?), decoded(row, 2)?)))
        .collect()
}

//! Revenue analytics ("revenue-v1", issue 15 part 3): per subscription its
//! state (applied by the aggregate's own `apply`), its MRR schedule
//! (`revenue::Schedule`) and its current MRR contribution; per month and
//! tier the usage and overage billed. Rows are bounded by live entities
//! (subscriptions; months × tiers of invoices). The figures of a month
//! ([`figures`]) fold the subscription rows a page at a time with the
//! same [`Book`] that `replay` and `ledger report --as-of` fold over the
//! state rebuilt from the log.

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use domain::billing::InvoiceEvent;
use domain::catalog::{Catalog, Tier};
use domain::event::LedgerEvent;
use domain::record::Record;
use domain::subscription::Subscription;
use domain::{OrganizationId, SubscriptionId};

use super::{day, decimal, decoded, encoded, limit_param, stream_uuid, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};
use crate::revenue::{Billed, Book, Figures, RevenueError, Schedule, month_of};

pub const REVENUE_SUBSCRIPTIONS: Table = Table::new(
    "rm_revenue_subscriptions",
    &[
        Column::blob("id"),
        Column::blob("organization_id").nullable(),
        Column::text("mrr"),
        Column::blob("schedule"),
        Column::blob("state"),
    ],
    1,
);

pub const REVENUE_BILLED: Table =
    Table::new("rm_revenue_billed", &[Column::text("month"), Column::text("tier"), Column::blob("billed")], 2);

/// What each invoice in force added to [`REVENUE_BILLED`], so a void takes
/// it out again (a voided invoice bills nothing, as in `LedgerState`).
pub const REVENUE_INVOICES: Table = Table::new(
    "rm_revenue_invoices",
    &[Column::blob("invoice_id"), Column::text("month"), Column::text("tier"), Column::blob("billed")],
    1,
);

/// The projection's name (its checkpoint's).
pub const NAME: &str = "revenue-v1";

/// Keeps [`REVENUE_SUBSCRIPTIONS`] and [`REVENUE_BILLED`]; `catalog` prices
/// the tiers.
pub struct Revenue {
    catalog: Catalog,
}

impl Revenue {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    fn subscription(
        &self,
        changes: &mut Changes<'_>,
        id: uuid::Uuid,
        event: &domain::subscription::SubscriptionEvent,
    ) -> Result<(), ApplyError> {
        let stored = changes.get(&REVENUE_SUBSCRIPTIONS, &[id.into()])?;
        let mut state = match &stored {
            Some(row) => decoded::<Subscription>(row, 4)?,
            None => Subscription::default(),
        };
        state.apply(event.clone());
        let schedule = Schedule::of_or_none(&state, &self.catalog, id);
        let current = schedule.steps.last().map_or(rust_decimal::Decimal::ZERO, |step| step.mrr);
        changes.upsert(
            &REVENUE_SUBSCRIPTIONS,
            vec![
                id.into(),
                state.organization_id.map(|o| o.0).into(),
                decimal(current),
                encoded(&schedule),
                encoded(&state),
            ],
        )?;
        Ok(())
    }

    /// An issued invoice adds its usage to its month and tier; a void takes
    /// it out. Credit notes are not usage: they change nothing here.
    fn invoice(changes: &mut Changes<'_>, event: &InvoiceEvent) -> Result<(), ApplyError> {
        match event {
            InvoiceEvent::InvoiceIssued(issued) => {
                let Some((month, tier, billed)) = Billed::of_invoice(issued).map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                let (month, tier) = (day(month_of(month)), Value::Text(tier.as_str().to_owned()));
                let row = vec![issued.invoice_id.into(), month.clone(), tier.clone(), encoded(&billed)];
                changes.upsert(&REVENUE_INVOICES, row)?;
                Self::billed(changes, [month, tier], |total| total.add(&billed))
            }
            InvoiceEvent::InvoiceVoided(voided) => {
                let key = [Value::from(voided.invoice_id)];
                let Some(row) = changes.get(&REVENUE_INVOICES, &key)? else { return Ok(()) };
                let billed = decoded::<Billed>(&row, 3)?;
                let (month, tier) = (Value::Text(row.text(1)?.to_owned()), Value::Text(row.text(2)?.to_owned()));
                changes.delete(&REVENUE_INVOICES, key.to_vec())?;
                Self::billed(changes, [month, tier], |total| total.sub(&billed))
            }
            _ => Ok(()),
        }
    }

    /// Changes one month and tier's total.
    fn billed(
        changes: &mut Changes<'_>,
        key: [Value; 2],
        change: impl FnOnce(&mut Billed) -> Result<(), RevenueError>,
    ) -> Result<(), ApplyError> {
        let mut total = match changes.get(&REVENUE_BILLED, &key)? {
            Some(row) => decoded::<Billed>(&row, 2)?,
            None => Billed::default(),
        };
        change(&mut total).map_err(|e| e.to_string())?;
        let [month, tier] = key;
        changes.upsert(&REVENUE_BILLED, vec![month, tier, encoded(&total)])?;
        Ok(())
    }
}

impl Projection for Revenue {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [Table] {
        &[REVENUE_SUBSCRIPTIONS, REVENUE_BILLED, REVENUE_INVOICES]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        match event {
            Some(LedgerEvent::Subscription(event)) => match stream_uuid(record, "subscription") {
                Some(id) => self.subscription(changes, id, event),
                None => Ok(()),
            },
            Some(LedgerEvent::Invoice(event)) => Self::invoice(changes, event),
            _ => Ok(()),
        }
    }
}

/// Why the figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Revenue(#[from] RevenueError),
}

/// The figures of the month starting `month`, up to `through`: every
/// subscription row, a page of [`super::PAGE_ITEMS_MAX`] at a time in id
/// order, and the month's billed rows (one per tier at most).
pub async fn figures(db: &ReadModelDb, month: NaiveDate, through: NaiveDate) -> Result<Figures, FiguresError> {
    let mut book = Book::new(month, through);
    let mut after: Option<SubscriptionId> = None;
    loop {
        let rows = db
            .query(
                "SELECT id, organization_id, schedule FROM rm_revenue_subscriptions WHERE id > $1 ORDER BY id \
                 LIMIT $2",
                vec![
                    after.map_or_else(Vec::new, |id| id.0.as_bytes().to_vec()).into(),
                    limit_param(super::PAGE_ITEMS_MAX),
                ],
            )
            .await?;
        for row in &rows {
            after = Some(SubscriptionId(uuid(row, 0)?));
            if let Some(organization) = super::opt_uuid(row, 1)? {
                book.add_subscription(OrganizationId(organization), &decoded::<Schedule>(row, 2)?)?;
            }
        }
        if rows.len() < super::PAGE_ITEMS_MAX {
            break;
        }
    }
    let rows = db
        .query(
            "SELECT tier, billed FROM rm_revenue_billed WHERE month = $1 ORDER BY tier LIMIT $2",
            vec![day(month_of(month)), limit_param(Tier::ALL.len())],
        )
        .await?;
    for row in &rows {
        let tier = Tier::ALL
            .into_iter()
            .find(|t| Ok(t.as_str()) == row.text(0).map_err(|_| ()))
            .ok_or_else(|| DbError::Decode(format!("{:?} is not a tier", row.text(0).unwrap_or_default())))?;
        book.add_billed(month_of(month), tier, &decoded::<Billed>(row, 1)?)?;
    }
    Ok(book.figures()?)
}

//! Issued invoices, by subscription and month, with their lines as rows
//! (for reporting in SQL); the issued event itself is kept encoded, so a
//! query returns exactly what was issued (its digest included).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use domain::billing::{CreditNoteIssued, InvoiceEvent, InvoiceIssued, InvoiceVoided};
use domain::event::LedgerEvent;
use domain::record::Record;
use domain::{OrganizationId, SubscriptionId};

use super::{PAGE_ITEMS_MAX, day, decoded, encoded, limit_param, parse_day, placeholders, uuid};
use crate::db::{ApplyError, Changes, Column, DbError, Projection, ReadModelDb, Table, Value};

pub const INVOICES: Table = Table::new(
    "rm_invoices",
    &[
        Column::blob("subscription_id"),
        Column::text("period"),
        Column::blob("invoice_id"),
        Column::blob("organization_id"),
        Column::text("total"),
        Column::int("sequence"),
        Column::blob("issued"),
    ],
    2,
);
pub const INVOICE_LINES: Table = Table::new(
    "rm_invoice_lines",
    &[
        Column::blob("invoice_id"),
        Column::int("line_no"),
        Column::text("kind"),
        Column::text("description"),
        Column::int("days").nullable(),
        Column::text("amount"),
    ],
    2,
);
pub const VOIDED_INVOICES: Table = Table::new(
    "rm_voided_invoices",
    &[
        Column::blob("invoice_id"),
        Column::blob("subscription_id"),
        Column::text("period"),
        Column::blob("organization_id"),
        Column::int("sequence"),
        Column::blob("issued"),
        Column::blob("voided"),
    ],
    1,
);
pub const CREDIT_NOTES: Table = Table::new(
    "rm_credit_notes",
    &[
        Column::blob("invoice_id"),
        Column::int("number"),
        Column::blob("subscription_id"),
        Column::blob("organization_id"),
        Column::text("total"),
        Column::int("sequence"),
        Column::blob("note"),
    ],
    2,
);

/// The most invoices one query returns: one a month, so eighty years of
/// one subscription's, or of one organization's.
pub const INVOICES_PER_QUERY_MAX: usize = 1_000;

/// Keeps [`INVOICES`] and [`INVOICE_LINES`].
pub struct Invoices;

impl Projection for Invoices {
    fn name(&self) -> &'static str {
        "invoices-v1"
    }

    fn tables(&self) -> &'static [Table] {
        &[INVOICES, INVOICE_LINES, VOIDED_INVOICES, CREDIT_NOTES]
    }

    fn apply(
        &mut self,
        changes: &mut Changes<'_>,
        record: &Record,
        event: Option<&LedgerEvent>,
    ) -> Result<(), ApplyError> {
        let issued = match event {
            Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceIssued(issued))) => issued,
            Some(LedgerEvent::Invoice(InvoiceEvent::InvoiceVoided(voided))) => return void(changes, record, voided),
            Some(LedgerEvent::Invoice(InvoiceEvent::CreditNoteIssued(note))) => {
                changes.upsert(
                    &CREDIT_NOTES,
                    vec![
                        note.invoice_id.into(),
                        Value::uint(u64::from(note.number))?,
                        note.subscription_id.0.into(),
                        note.organization_id.0.into(),
                        note.total.to_string().into(),
                        Value::uint(record.header.sequence)?,
                        encoded(note),
                    ],
                )?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        let key = [issued.subscription_id.0.into(), day(issued.invoice.period)];
        // An invoice of the same month replaces the stored one (as the
        // in-memory map did): its lines that are no more go.
        if let Some(row) = changes.get(&INVOICES, &key)? {
            let old: InvoiceIssued = decoded(&row, 6)?;
            for line_no in issued.invoice.lines.len()..old.invoice.lines.len() {
                changes.delete(&INVOICE_LINES, vec![old.invoice_id.into(), Value::uint(line_no as u64)?])?;
            }
        }
        for (line_no, line) in issued.invoice.lines.iter().enumerate() {
            changes.upsert(
                &INVOICE_LINES,
                vec![
                    issued.invoice_id.into(),
                    Value::uint(line_no as u64)?,
                    format!("{:?}", line.kind).into(),
                    line.description.as_str().into(),
                    line.days.into(),
                    line.amount.to_string().into(),
                ],
            )?;
        }
        let [subscription, period] = key;
        changes.upsert(
            &INVOICES,
            vec![
                subscription,
                period,
                issued.invoice_id.into(),
                issued.organization_id.0.into(),
                issued.invoice.total.to_string().into(),
                Value::uint(record.header.sequence)?,
                encoded(issued),
            ],
        )?;
        Ok(())
    }
}

/// An invoice voided: it leaves [`INVOICES`] (and its lines) for
/// [`VOIDED_INVOICES`], so its month is unbilled again.
fn void(changes: &mut Changes<'_>, record: &Record, voided: &InvoiceVoided) -> Result<(), ApplyError> {
    let key = [voided.subscription_id.0.into(), day(voided.period)];
    let Some(row) = changes.get(&INVOICES, &key)? else { return Ok(()) };
    let issued: InvoiceIssued = decoded(&row, 6)?;
    if issued.invoice_id != voided.invoice_id {
        return Ok(());
    }
    for line_no in 0..issued.invoice.lines.len() {
        changes.delete(&INVOICE_LINES, vec![issued.invoice_id.into(), Value::uint(line_no as u64)?])?;
    }
    changes.delete(&INVOICES, key.to_vec())?;
    changes.upsert(
        &VOIDED_INVOICES,
        vec![
            voided.invoice_id.into(),
            voided.subscription_id.0.into(),
            day(voided.period),
            voided.organization_id.0.into(),
            Value::uint(record.header.sequence)?,
            encoded(&issued),
            encoded(voided),
        ],
    )?;
    Ok(())
}

/// An invoice's credit notes, by number, with the log sequence of each
/// (at most `CREDIT_NOTES_PER_INVOICE_MAX`, which the decision bounds).
pub async fn credit_notes(db: &ReadModelDb, invoice_id: uuid::Uuid) -> Result<Vec<(CreditNoteIssued, u64)>, DbError> {
    let rows = db
        .query(
            "SELECT note, sequence FROM rm_credit_notes WHERE invoice_id = $1 ORDER BY number LIMIT $2",
            vec![invoice_id.into(), limit_param(domain::billing::CREDIT_NOTES_PER_INVOICE_MAX as usize)],
        )
        .await?;
    rows.iter().map(|row| Ok((decoded(row, 0)?, row.uint(1)?))).collect()
}

/// A voided invoice as issued, and its void.
#[derive(Debug, Clone, PartialEq)]
pub struct Voided {
    pub issued: InvoiceIssued,
    pub voided: InvoiceVoided,
}

/// An invoice in force by its id, with the log sequence that issued it.
pub async fn by_id(db: &ReadModelDb, invoice_id: uuid::Uuid) -> Result<Option<(InvoiceIssued, u64)>, DbError> {
    let row =
        db.query_opt("SELECT issued, sequence FROM rm_invoices WHERE invoice_id = $1", vec![invoice_id.into()]).await?;
    row.map(|row| Ok((decoded(&row, 0)?, row.uint(1)?))).transpose()
}

/// A voided invoice by its id.
pub async fn voided(db: &ReadModelDb, invoice_id: uuid::Uuid) -> Result<Option<Voided>, DbError> {
    let row = db
        .query_opt("SELECT issued, voided FROM rm_voided_invoices WHERE invoice_id = $1", vec![invoice_id.into()])
        .await?;
    row.map(|row| Ok(Voided { issued: decoded(&row, 0)?, voided: decoded(&row, 1)? })).transpose()
}

/// An organization's voided invoices by month, at most
/// [`INVOICES_PER_QUERY_MAX`].
pub async fn voided_of_organization(db: &ReadModelDb, organization_id: OrganizationId) -> Result<Vec<Voided>, DbError> {
    let rows = db
        .query(
            "SELECT issued, voided FROM rm_voided_invoices WHERE organization_id = $1 ORDER BY period, sequence \
             LIMIT $2",
            vec![organization_id.0.into(), limit_param(INVOICES_PER_QUERY_MAX)],
        )
        .await?;
    rows.iter().map(|row| Ok(Voided { issued: decoded(row, 0)?, voided: decoded(row, 1)? })).collect()
}

/// How many invoices of each month of the given subscriptions (at most
/// [`PAGE_ITEMS_MAX`]) were voided: the revision its next invoice takes.
pub async fn voids_of_subscriptions(
    db: &ReadModelDb,
    ids: &[SubscriptionId],
) -> Result<BTreeMap<(SubscriptionId, NaiveDate), u32>, DbError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    if ids.len() > PAGE_ITEMS_MAX {
        return Err(DbError::Schema(format!(
            "{} subscriptions asked for at once; at most {PAGE_ITEMS_MAX}",
            ids.len()
        )));
    }
    let sql = format!(
        "SELECT subscription_id, period, COUNT(*) FROM rm_voided_invoices WHERE subscription_id IN ({}) \
         GROUP BY subscription_id, period",
        placeholders(1, ids.len())
    );
    let rows = db.query(&sql, ids.iter().map(|id| Value::from(id.0)).collect()).await?;
    let mut found = BTreeMap::new();
    for row in rows {
        let count = u32::try_from(row.uint(2)?).unwrap_or(u32::MAX);
        found.insert((SubscriptionId(uuid(&row, 0)?), parse_day(&row, 1)?), count);
    }
    Ok(found)
}

/// A subscription's invoices by month (`LedgerState::invoices[id]`), at
/// most [`INVOICES_PER_QUERY_MAX`], oldest first.
pub async fn of_subscription(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
) -> Result<BTreeMap<NaiveDate, InvoiceIssued>, DbError> {
    let rows = db
        .query(
            "SELECT period, issued FROM rm_invoices WHERE subscription_id = $1 ORDER BY period LIMIT $2",
            vec![subscription_id.0.into(), limit_param(INVOICES_PER_QUERY_MAX)],
        )
        .await?;
    rows.iter().map(|row| Ok((parse_day(row, 0)?, decoded(row, 1)?))).collect()
}

/// The invoices of several subscriptions (at most [`PAGE_ITEMS_MAX`]),
/// each as [`of_subscription`] reads them (its oldest
/// [`INVOICES_PER_QUERY_MAX`]), in one query: what a billing run reads per
/// page. A subscription whose rows do not decode gets its own error.
pub async fn of_subscriptions(
    db: &ReadModelDb,
    ids: &[SubscriptionId],
) -> Result<BTreeMap<SubscriptionId, Result<BTreeMap<NaiveDate, InvoiceIssued>, DbError>>, DbError> {
    if ids.len() > PAGE_ITEMS_MAX {
        return Err(DbError::Schema(format!(
            "{} subscriptions asked for at once; at most {PAGE_ITEMS_MAX}",
            ids.len()
        )));
    }
    let mut found: BTreeMap<SubscriptionId, Result<BTreeMap<NaiveDate, InvoiceIssued>, DbError>> =
        ids.iter().map(|id| (*id, Ok(BTreeMap::new()))).collect();
    if ids.is_empty() {
        return Ok(found);
    }
    let sql = format!(
        "SELECT subscription_id, period, issued FROM (SELECT subscription_id, period, issued, \
         ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY period) AS n FROM rm_invoices \
         WHERE subscription_id IN ({})) AS t WHERE n <= $1",
        placeholders(2, ids.len())
    );
    let mut params = vec![limit_param(INVOICES_PER_QUERY_MAX)];
    params.extend(ids.iter().map(|id| Value::from(id.0)));
    for row in db.query(&sql, params).await? {
        let id = SubscriptionId(uuid(&row, 0)?);
        let Some(Ok(invoices)) = found.get_mut(&id) else { continue };
        match parse_day(&row, 1).and_then(|period| Ok((period, decoded(&row, 2)?))) {
            Ok((period, issued)) => {
                invoices.insert(period, issued);
            }
            Err(error) => {
                found.insert(id, Err(error));
            }
        }
    }
    Ok(found)
}

/// One subscription's invoice of a month.
pub async fn invoice(
    db: &ReadModelDb,
    subscription_id: SubscriptionId,
    period: NaiveDate,
) -> Result<Option<InvoiceIssued>, DbError> {
    let row = db
        .query_opt(
            "SELECT issued FROM rm_invoices WHERE subscription_id = $1 AND period = $2",
            vec![subscription_id.0.into(), day(period)],
        )
        .await?;
    row.map(|row| decoded(&row, 0)).transpose()
}

/// The last month a subscription has an invoice for.
pub async fn last_invoiced(db: &ReadModelDb, subscription_id: SubscriptionId) -> Result<Option<NaiveDate>, DbError> {
    let rows = db
        .query(
            "SELECT period FROM rm_invoices WHERE subscription_id = $1 ORDER BY period DESC LIMIT 1",
            vec![subscription_id.0.into()],
        )
        .await?;
    rows.first().map(|row| parse_day(row, 0)).transpose()
}

/// An organization's invoices ordered by month and invoice id (what
/// `usecases::billing::invoices` lists), at most [`INVOICES_PER_QUERY_MAX`].
pub async fn of_organization(db: &ReadModelDb, organization_id: OrganizationId) -> Result<Vec<InvoiceIssued>, DbError> {
    let rows = db
        .query(
            "SELECT issued FROM rm_invoices WHERE organization_id = $1 ORDER BY period, invoice_id LIMIT $2",
            vec![organization_id.0.into(), limit_param(INVOICES_PER_QUERY_MAX)],
        )
        .await?;
    rows.iter().map(|row| decoded(row, 0)).collect()
}

/// One line of an invoice, as stored for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRow {
    pub kind: String,
    pub description: String,
    pub days: Option<i64>,
    pub amount: String,
}

/// An invoice's lines in order.
pub async fn lines(db: &ReadModelDb, invoice_id: uuid::Uuid) -> Result<Vec<LineRow>, DbError> {
    let rows = db
        .query(
            "SELECT kind, description, days, amount FROM rm_invoice_lines WHERE invoice_id = $1 ORDER BY line_no \
             LIMIT $2",
            vec![invoice_id.into(), limit_param(INVOICES_PER_QUERY_MAX)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(LineRow {
                kind: row.text(0)?.to_owned(),
                description: row.text(1)?.to_owned(),
                days: row.opt_int(2)?,
                amount: row.text(3)?.to_owned(),
            })
        })
        .collect()
}

/// The log sequence of the event that issued an organization's invoice
/// (the one a "prove it" link proves); `None` for another organization's.
pub async fn sequence(
    db: &ReadModelDb,
    organization_id: OrganizationId,
    invoice_id: uuid::Uuid,
) -> Result<Option<u64>, DbError> {
    let row = db
        .query_opt(
            "SELECT sequence FROM rm_invoices WHERE invoice_id = $1 AND organization_id = $2",
            vec![invoice_id.into(), organization_id.0.into()],
        )
        .await?;
    row.map(|row| row.uint(0)).transpose()
}

/// The voided invoices of a month, in the order they were issued, at most
/// `size` (by `rm_voided_invoices_by_period`).
pub async fn voided_of_period(db: &ReadModelDb, period: NaiveDate, size: usize) -> Result<Vec<Voided>, DbError> {
    let rows = db
        .query(
            "SELECT issued, voided FROM rm_voided_invoices WHERE period = $1 ORDER BY sequence LIMIT $2",
            vec![day(period), limit_param(size)],
        )
        .await?;
    rows.iter().map(|row| Ok(Voided { issued: decoded(row, 0)?, voided: decoded(row, 1)? })).collect()
}

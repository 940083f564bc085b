//! The read models that replace the in-memory [`LedgerState`](crate::LedgerState),
//! as tables (schema in `migrations/sqlite-readmodels/0003_models.sql` and
//! `migrations/postgres/0006_models.sql`), each kept by a
//! [`Projection`] that the one [`Runner`](crate::db::Runner) applies in
//! global order, and read by typed queries over [`ReadModelDb`].
//!
//! One file per area: [`organizations`] (organizations, users, tokens),
//! [`subscriptions`], [`licenses`] (licenses, key hashes, deployments),
//! [`validations`], [`usage`], [`invoices`] (with their lines), [`payments`]
//! (each invoice's payment status, each organization's payment method), [`audit`],
//! [`stripe`] and [`notifications`] (the outboxes), [`branding`] (white-label), [`revenue`] (revenue analytics),
//! [`customers`] (customer search), [`staff`] (the vendor's staff and service tokens). [`all`] is the one list
//! the runner and `replay rebuild` use.
//!
//! Invariants:
//! - Rows that hold an aggregate keep its encoded state, applied with the
//!   aggregate's own `apply` (as `LedgerState` does): the read side and the
//!   deciding side cannot drift apart.
//! - Rows are bounded by live entities (organizations, subscriptions,
//!   licenses, their days of usage and months of invoices), except the
//!   audit index, one row per record, which is read by index and `LIMIT`
//!   only. Nothing is held in memory across records.
//! - Every query reads by primary key or an index declared in the
//!   migrations, with a `LIMIT` where a list could grow with history.

use domain::catalog::Catalog;
use domain::record::Record;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{DbError, Projection, ReadModelDb, Row, Table, Value};

pub mod audit;
pub mod branding;
pub mod customers;
pub mod invoices;
pub mod licenses;
pub mod notifications;
pub mod organizations;
pub mod outbox;
pub mod payments;
pub mod revenue;
pub mod staff;
pub mod stripe;
pub mod subscriptions;
pub mod usage;
pub mod validations;

/// The most items one page of a listing query returns, whatever is asked:
/// the API's own cap (`usecases::queries::PAGE_ITEMS_MAX`).
pub const PAGE_ITEMS_MAX: usize = 200;

/// Every model projection, in the order the runner applies them: the one
/// list the server's runner and `replay rebuild` use. `catalog` is the
/// server's tier catalog (the notification outbox's usage warnings compare
/// with its limits).
pub fn all(catalog: Catalog) -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(organizations::Organizations),
        Box::new(subscriptions::Subscriptions),
        Box::new(licenses::Licenses),
        Box::new(validations::Validations),
        Box::new(usage::UsageProjection),
        Box::new(invoices::Invoices),
        Box::new(payments::InvoicePayments),
        Box::new(audit::Audit),
        Box::new(stripe::Stripe),
        Box::new(notifications::Notifications::new(catalog.clone())),
        Box::new(branding::Branding),
        Box::new(revenue::Revenue::new(catalog)),
        Box::new(customers::Customers),
        Box::new(staff::Staff),
    ]
}

/// Every table of [`all`], for digests and rebuild comparisons.
pub fn tables() -> Vec<Table> {
    all(Catalog::builtin()).iter().flat_map(|projection| projection.tables().iter().copied()).collect()
}

/// A value in its postcard encoding (an aggregate's state, an event).
pub(crate) fn encoded<T: Serialize>(value: &T) -> Value {
    Value::Blob(domain::codec::encode(value))
}

/// A postcard-encoded column.
pub(crate) fn decoded<T: DeserializeOwned>(row: &Row, index: usize) -> Result<T, DbError> {
    domain::codec::decode(row.blob(index)?).map_err(|error| DbError::Decode(format!("column {index}: {error}")))
}

/// A UUID column (16 bytes).
pub(crate) fn uuid(row: &Row, index: usize) -> Result<uuid::Uuid, DbError> {
    uuid::Uuid::from_slice(row.blob(index)?).map_err(|_| DbError::Decode(format!("column {index} is not a UUID")))
}

pub(crate) fn opt_uuid(row: &Row, index: usize) -> Result<Option<uuid::Uuid>, DbError> {
    row.opt_blob(index)?
        .map(|bytes| {
            uuid::Uuid::from_slice(bytes).map_err(|_| DbError::Decode(format!("column {index} is not a UUID")))
        })
        .transpose()
}

/// A day as its `YYYY-MM-DD` text, which orders as the day does.
pub(crate) fn day(date: chrono::NaiveDate) -> Value {
    Value::Text(date.format("%Y-%m-%d").to_string())
}

pub(crate) fn parse_day(row: &Row, index: usize) -> Result<chrono::NaiveDate, DbError> {
    let text = row.text(index)?;
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| DbError::Decode(format!("{text:?} is not a day")))
}

/// An instant as microseconds since the epoch.
pub(crate) fn micros(at: domain::Timestamp) -> Value {
    Value::Int(at.as_micros())
}

/// A decimal as its exact text (scale kept: "1.50" stays "1.50").
pub(crate) fn decimal(value: rust_decimal::Decimal) -> Value {
    Value::Text(value.to_string())
}

pub(crate) fn parse_decimal(row: &Row, index: usize) -> Result<rust_decimal::Decimal, DbError> {
    let text = row.text(index)?;
    text.parse().map_err(|_| DbError::Decode(format!("{text:?} is not a decimal")))
}

/// The UUID an entity stream (`org/…`, `subscription/…`, `license/…`) is
/// named by, if `record` is on one of `category`; as `LedgerState` parses it.
pub(crate) fn stream_uuid(record: &Record, category: &str) -> Option<uuid::Uuid> {
    let stream = &record.header.stream_id;
    if stream.category() != category {
        return None;
    }
    stream.as_str().split_once('/').and_then(|(_, id)| id.parse::<uuid::Uuid>().ok())
}

/// The page size of a listing: what was asked, capped at [`PAGE_ITEMS_MAX`].
pub(crate) fn page_limit(asked: usize) -> usize {
    asked.clamp(1, PAGE_ITEMS_MAX)
}

/// `$first, $first+1, …`: `count` placeholders for an `IN (…)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// A page size as a SQL parameter (one more than the page, to know if
/// another follows).
pub(crate) fn limit_param(size: usize) -> Value {
    Value::Int(i64::try_from(size).unwrap_or(i64::MAX))
}

/// `column` for `ORDER BY`, ordering text by its bytes on both backends
/// (as Rust's maps do): PostgreSQL's `"C"` collation, SQLite's default.
pub(crate) fn text_order(db: &ReadModelDb, column: &str) -> String {
    match db.backend_name() {
        "postgres" => format!("{column} COLLATE \"C\""),
        _ => column.to_owned(),
    }
}

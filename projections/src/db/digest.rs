//! A digest of every read-model table, and a row-by-row comparison of two
//! read-model databases: what `replay verify` compares a rebuild (into a
//! scratch SQLite file) with the live database by.
//!
//! Both read each table in primary-key order, in the same order on both
//! backends, as a stream: memory stays bounded however large the tables.
//! Compare databases at the same checkpoint; the checkpoints themselves
//! are not part of a digest.

use std::cmp::Ordering;

use domain::record::Hash;
use futures::StreamExt;

use super::table::{Row, Table, Value};
use super::{DbError, Scan};

const DIGEST_CONTEXT: &str = "ledger 2026-11-29 read model table digest v1";

/// One table's digest: its name and columns, then every row in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    pub table: &'static str,
    pub rows: u64,
    pub digest: Hash,
}

/// The digest of each of `tables` in `db`, in the order given.
pub async fn digest(db: &impl Scan, tables: &[Table]) -> Result<Vec<TableDigest>, DbError> {
    let mut digests = Vec::with_capacity(tables.len());
    for table in tables {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        Value::from(table.name).digest_into(&mut hasher);
        for column in table.columns {
            Value::from(column.name).digest_into(&mut hasher);
        }
        let mut rows = db.scan_table(*table);
        let mut count = 0u64;
        while let Some(row) = rows.next().await {
            for value in &row?.0 {
                value.digest_into(&mut hasher);
            }
            count += 1;
        }
        digests.push(TableDigest { table: table.name, rows: count, digest: Hash(*hasher.finalize().as_bytes()) });
    }
    Ok(digests)
}

/// The first row where two databases differ: its table and key, and the
/// row on each side (`None` where that side has no row of the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub table: &'static str,
    pub key: Vec<Value>,
    pub left: Option<Row>,
    pub right: Option<Row>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {} key {:?}: {:?} vs {:?}", self.table, self.key, self.left, self.right)
    }
}

/// Compares `tables` of two databases row by row, in key order; the first
/// difference, or `None` when they hold the same rows.
pub async fn compare(left: &impl Scan, right: &impl Scan, tables: &[Table]) -> Result<Option<Difference>, DbError> {
    for table in tables {
        let key = |row: &Row| row.0[..table.key_columns].to_vec();
        let (mut lefts, mut rights) = (left.scan_table(*table), right.scan_table(*table));
        let (mut l, mut r) = (lefts.next().await.transpose()?, rights.next().await.transpose()?);
        loop {
            let order = match (&l, &r) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => key(a).cmp(&key(b)),
            };
            let difference = |left: Option<Row>, right: Option<Row>| {
                let key = left.as_ref().or(right.as_ref()).map(key).unwrap_or_default();
                Some(Difference { table: table.name, key, left, right })
            };
            match order {
                Ordering::Less => return Ok(difference(l, None)),
                Ordering::Greater => return Ok(difference(None, r)),
                Ordering::Equal if l != r => return Ok(difference(l, r)),
                Ordering::Equal => {
                    l = lefts.next().await.transpose()?;
                    r = rights.next().await.transpose()?;
                }
            }
        }
    }
    Ok(None)
}

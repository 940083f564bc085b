//! A batch of read-model changes: what the projections' applies produce
//! between two commits, coalesced by primary key, and read through by
//! later applies of the same batch.

use std::collections::{BTreeMap, HashMap};

use super::table::{Row, Table, Value};
use super::{DbError, RowReader};

/// What a batch does to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Insert the row or replace every non-key column.
    Upsert(Vec<Value>),
    /// Insert the row, or sum its counters into the stored row's and
    /// replace its other non-key columns: no read needed.
    Add(Vec<Value>),
    Delete,
}

/// The changes of one table, at most one per key.
#[derive(Debug)]
pub(crate) struct TableChanges {
    pub table: Table,
    pub rows: HashMap<Vec<Value>, Change>,
}

/// Every change of a batch, by table.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub tables: BTreeMap<&'static str, TableChanges>,
    /// Changes made, counting those a later change of the same key
    /// replaced; what bounds a batch besides its records.
    pub changes: usize,
}

/// Sums `delta`'s counters into `base` and takes its other non-key values.
fn add_into(table: &Table, base: &mut [Value], delta: &[Value]) -> Result<(), DbError> {
    for (index, column) in table.columns.iter().enumerate().skip(table.key_columns) {
        base[index] = match (column.counter, &base[index], &delta[index]) {
            (true, Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(*b).ok_or_else(|| {
                DbError::Schema(format!(
                    "{}.{}: the counter overflows a signed 64-bit integer",
                    table.name, column.name
                ))
            })?),
            (true, stored, _) => {
                return Err(DbError::Decode(format!("{}.{} holds {stored:?}, not a counter", table.name, column.name)));
            }
            (false, _, value) => value.clone(),
        };
    }
    Ok(())
}

impl Batch {
    fn change(&mut self, table: &Table, key: Vec<Value>, change: Change) -> Result<(), DbError> {
        self.changes += 1;
        let changes =
            self.tables.entry(table.name).or_insert_with(|| TableChanges { table: *table, rows: HashMap::new() });
        let merged = match (changes.rows.remove(&key), change) {
            (Some(Change::Upsert(mut row)), Change::Add(delta)) => {
                add_into(table, &mut row, &delta)?;
                Change::Upsert(row)
            }
            (Some(Change::Add(mut row)), Change::Add(delta)) => {
                add_into(table, &mut row, &delta)?;
                Change::Add(row)
            }
            // After a delete the row is absent, so adding inserts it as given.
            (Some(Change::Delete), Change::Add(row)) => Change::Upsert(row),
            (_, change) => change,
        };
        changes.rows.insert(key, merged);
        Ok(())
    }
}

/// Rows cached per runner: entity rows that applies read again and again
/// (a license for each of its validations) are read from the database
/// once. Big enough for every live entity of a large vendor's ledger
/// (tens of thousands), small enough to stay a few megabytes.
pub const ROW_CACHE_ROWS_MAX: usize = 65_536;

/// Rows as last committed (`None`: known absent), by table and key,
/// least recently used first out. Only the runner that writes the rows
/// keeps one; it is updated after each commit and emptied after any
/// error, so it never shows what is not committed.
pub(crate) struct RowCache {
    rows: hashlink::LruCache<(&'static str, Vec<Value>), Option<Vec<Value>>>,
}

impl RowCache {
    pub fn new() -> Self {
        Self { rows: hashlink::LruCache::new(ROW_CACHE_ROWS_MAX) }
    }

    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// Brings the cached rows up to a batch that was just committed.
    pub fn committed(&mut self, batch: &Batch) {
        for (name, changes) in &batch.tables {
            for (key, change) in &changes.rows {
                let cache_key = (*name, key.clone());
                match change {
                    Change::Upsert(row) => {
                        self.rows.insert(cache_key, Some(row.clone()));
                    }
                    Change::Delete => {
                        self.rows.insert(cache_key, None);
                    }
                    Change::Add(delta) => {
                        let summed = match self.rows.get_mut(&cache_key) {
                            Some(Some(row)) => add_into(&changes.table, row, delta).is_ok(),
                            Some(known_absent) => {
                                *known_absent = Some(delta.clone());
                                true
                            }
                            // Not cached: the sum is only in the database.
                            None => true,
                        };
                        if !summed {
                            self.rows.remove(&cache_key);
                        }
                    }
                }
            }
        }
    }
}

/// What the projections see of the database while applying: their rows
/// as this batch leaves them, and only the tables they declared.
pub struct Changes<'a> {
    pub(crate) projection: &'static str,
    pub(crate) tables: &'static [Table],
    pub(crate) batch: &'a mut Batch,
    pub(crate) cache: &'a mut RowCache,
    pub(crate) reader: &'a dyn RowReader,
}

impl Changes<'_> {
    fn own(&self, table: &Table) -> Result<(), DbError> {
        if self.tables.iter().any(|own| own == table) {
            Ok(())
        } else {
            Err(DbError::Schema(format!("projection {} does not declare the table {}", self.projection, table.name)))
        }
    }

    /// Inserts `row` (every column, in order) or replaces the stored row of
    /// its key.
    pub fn upsert(&mut self, table: &Table, row: Vec<Value>) -> Result<(), DbError> {
        self.own(table)?;
        table.check(table.columns, &row, "row")?;
        self.batch.change(table, table.key_of(&row), Change::Upsert(row))
    }

    /// Inserts `row`, or adds its counter columns to the stored row's and
    /// replaces the other non-key columns: a counter that needs no read.
    pub fn add(&mut self, table: &Table, row: Vec<Value>) -> Result<(), DbError> {
        self.own(table)?;
        table.check(table.columns, &row, "row")?;
        if !table.columns.iter().any(|c| c.counter) {
            return Err(DbError::Schema(format!("{} has no counter column to add to", table.name)));
        }
        self.batch.change(table, table.key_of(&row), Change::Add(row))
    }

    /// Deletes the row of `key` (the key columns' values), if there is one.
    pub fn delete(&mut self, table: &Table, key: Vec<Value>) -> Result<(), DbError> {
        self.own(table)?;
        table.check(table.key(), &key, "key")?;
        self.batch.change(table, key, Change::Delete)
    }

    /// The row of `key` as this batch leaves it: the batch's change first,
    /// then the committed row (cached, or read from the database).
    pub fn get(&mut self, table: &Table, key: &[Value]) -> Result<Option<Row>, DbError> {
        self.own(table)?;
        table.check(table.key(), key, "key")?;
        let pending = self.batch.tables.get(table.name).and_then(|changes| changes.rows.get(key)).cloned();
        match pending {
            Some(Change::Upsert(row)) => Ok(Some(Row(row))),
            Some(Change::Delete) => Ok(None),
            Some(Change::Add(delta)) => match self.committed(table, key)? {
                Some(Row(mut stored)) => {
                    add_into(table, &mut stored, &delta)?;
                    Ok(Some(Row(stored)))
                }
                None => Ok(Some(Row(delta))),
            },
            None => self.committed(table, key),
        }
    }

    fn committed(&mut self, table: &Table, key: &[Value]) -> Result<Option<Row>, DbError> {
        let cache_key = (table.name, key.to_vec());
        if let Some(known) = self.cache.rows.get(&cache_key) {
            return Ok(known.clone().map(Row));
        }
        let row = self.reader.get(table, key)?;
        self.cache.rows.insert(cache_key, row.as_ref().map(|row| row.0.clone()));
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::super::table::Column;
    use super::*;

    const COUNTS: Table =
        Table::new("counts", &[Column::text("name"), Column::int("n").counter(), Column::text("last")], 1);
    const OTHER: Table = Table::new("other", &[Column::int("id")], 1);

    /// A stored table in memory.
    struct Stored(RefCell<HashMap<Vec<Value>, Vec<Value>>>);

    impl RowReader for Stored {
        fn get(&self, _table: &Table, key: &[Value]) -> Result<Option<Row>, DbError> {
            Ok(self.0.borrow().get(key).map(|row| Row(row.clone())))
        }
    }

    fn row(name: &str, n: i64, last: &str) -> Vec<Value> {
        vec![name.into(), Value::Int(n), last.into()]
    }

    #[test]
    fn changes_coalesce_by_key_and_reads_see_them() {
        let stored = Stored(RefCell::new(HashMap::from([(vec!["a".into()], row("a", 10, "s"))])));
        let mut batch = Batch::default();
        let mut cache = RowCache::new();
        let mut changes =
            Changes { projection: "p", tables: &[COUNTS], batch: &mut batch, cache: &mut cache, reader: &stored };
        changes.add(&COUNTS, row("a", 1, "x")).unwrap();
        changes.add(&COUNTS, row("a", 2, "y")).unwrap();
        assert_eq!(changes.get(&COUNTS, &["a".into()]).unwrap(), Some(Row(row("a", 13, "y"))), "stored + pending adds");
        assert_eq!(changes.get(&COUNTS, &["b".into()]).unwrap(), None);
        changes.add(&COUNTS, row("b", 5, "z")).unwrap();
        assert_eq!(changes.get(&COUNTS, &["b".into()]).unwrap(), Some(Row(row("b", 5, "z"))));
        changes.upsert(&COUNTS, row("c", 7, "u")).unwrap();
        changes.add(&COUNTS, row("c", 1, "v")).unwrap();
        changes.delete(&COUNTS, vec!["a".into()]).unwrap();
        assert_eq!(changes.get(&COUNTS, &["a".into()]).unwrap(), None, "deleted in this batch");
        changes.add(&COUNTS, row("a", 4, "w")).unwrap();

        assert!(changes.upsert(&OTHER, vec![Value::Int(1)]).is_err(), "not this projection's table");
        assert!(changes.upsert(&COUNTS, vec!["x".into()]).is_err(), "a short row");
        assert!(changes.delete(&COUNTS, vec![Value::Int(1)]).is_err(), "a key of the wrong type");

        let rows = &batch.tables["counts"].rows;
        assert_eq!(rows[&vec!["a".into()]], Change::Upsert(row("a", 4, "w")), "a delete then an add inserts");
        assert_eq!(rows[&vec!["b".into()]], Change::Add(row("b", 5, "z")));
        assert_eq!(rows[&vec!["c".into()]], Change::Upsert(row("c", 8, "v")), "an add onto an upsert is summed");
        assert_eq!(batch.changes, 7);
    }

    #[test]
    fn a_counter_overflow_is_an_error_not_a_wrap() {
        let stored = Stored(RefCell::new(HashMap::new()));
        let mut batch = Batch::default();
        let mut cache = RowCache::new();
        let mut changes =
            Changes { projection: "p", tables: &[COUNTS], batch: &mut batch, cache: &mut cache, reader: &stored };
        changes.add(&COUNTS, row("a", i64::MAX, "x")).unwrap();
        assert!(changes.add(&COUNTS, row("a", 1, "x")).is_err());
    }
}

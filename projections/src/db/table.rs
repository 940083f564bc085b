//! Table descriptors, values and rows: what a read model declares once so
//! that its statements are generated, the same for both backends.
//!
//! A table's primary key is its leading columns (`key_columns` of them).
//! Descriptors are `const` items, and [`Table::new`] checks them while
//! compiling: a key of no column, a counter that is not a non-null integer,
//! or a name that is not a plain SQL identifier does not build.

use domain::record::Hash;

use super::DbError;

/// A column's type, the same meaning on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// SQLite `INTEGER`, PostgreSQL `BIGINT`.
    Int,
    /// `TEXT` on both.
    Text,
    /// SQLite `BLOB`, PostgreSQL `BYTEA`.
    Blob,
    /// SQLite `INTEGER` (0 or 1), PostgreSQL `BOOLEAN`.
    Bool,
}

impl ColumnType {
    /// The PostgreSQL array type a column travels in through `UNNEST`.
    pub(crate) fn pg_array(self) -> &'static str {
        match self {
            Self::Int => "bigint[]",
            Self::Text => "text[]",
            Self::Blob => "bytea[]",
            Self::Bool => "boolean[]",
        }
    }
}

/// One column of a read-model table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    /// Summed, not replaced, by [`Changes::add`](super::Changes::add).
    pub counter: bool,
}

impl Column {
    const fn of(name: &'static str, ty: ColumnType) -> Self {
        Self { name, ty, nullable: false, counter: false }
    }

    pub const fn int(name: &'static str) -> Self {
        Self::of(name, ColumnType::Int)
    }

    pub const fn text(name: &'static str) -> Self {
        Self::of(name, ColumnType::Text)
    }

    pub const fn blob(name: &'static str) -> Self {
        Self::of(name, ColumnType::Blob)
    }

    pub const fn bool(name: &'static str) -> Self {
        Self::of(name, ColumnType::Bool)
    }

    /// The column may hold NULL.
    pub const fn nullable(self) -> Self {
        Self { nullable: true, ..self }
    }

    /// An "add to" column: [`Changes::add`](super::Changes::add) sums it
    /// into the stored value instead of replacing it.
    pub const fn counter(self) -> Self {
        Self { counter: true, ..self }
    }
}

/// A read-model table: its name, its columns, and how many leading
/// columns form its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub key_columns: usize,
}

const fn is_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 || bytes[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

impl Table {
    /// A table descriptor, checked: used in a `const` item, a mistake here
    /// fails the build.
    pub const fn new(name: &'static str, columns: &'static [Column], key_columns: usize) -> Self {
        assert!(is_identifier(name), "a table name is a lowercase SQL identifier");
        assert!(key_columns >= 1 && key_columns <= columns.len(), "the key is 1 to all columns");
        let mut i = 0;
        while i < columns.len() {
            let column = &columns[i];
            assert!(is_identifier(column.name), "a column name is a lowercase SQL identifier");
            assert!(!(i < key_columns && column.nullable), "key columns are not nullable");
            assert!(
                !column.counter || (i >= key_columns && !column.nullable && matches!(column.ty, ColumnType::Int)),
                "a counter is a non-null, non-key integer column"
            );
            i += 1;
        }
        Self { name, columns, key_columns }
    }

    /// The key columns.
    pub fn key(&self) -> &'static [Column] {
        &self.columns[..self.key_columns]
    }

    /// The columns outside the key.
    pub fn values(&self) -> &'static [Column] {
        &self.columns[self.key_columns..]
    }

    /// `a, b, c`: every column, in order.
    pub(crate) fn column_list(&self) -> String {
        self.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }

    /// Checks that `values` fit `columns` (count, types, NULLs).
    pub(crate) fn check(&self, columns: &[Column], values: &[Value], what: &str) -> Result<(), DbError> {
        if values.len() != columns.len() {
            return Err(DbError::Schema(format!(
                "{}: a {what} has {} values, the table needs {}",
                self.name,
                values.len(),
                columns.len()
            )));
        }
        for (column, value) in columns.iter().zip(values) {
            let fits = match value {
                Value::Null => column.nullable,
                Value::Int(_) => column.ty == ColumnType::Int,
                Value::Text(_) => column.ty == ColumnType::Text,
                Value::Blob(_) => column.ty == ColumnType::Blob,
                Value::Bool(_) => column.ty == ColumnType::Bool,
            };
            if !fits {
                return Err(DbError::Schema(format!(
                    "{}.{}: a {:?}{} column cannot hold {value:?}",
                    self.name,
                    column.name,
                    column.ty,
                    if column.nullable { " (nullable)" } else { "" }
                )));
            }
        }
        Ok(())
    }

    /// The key part of a full row.
    pub(crate) fn key_of(&self, row: &[Value]) -> Vec<Value> {
        row[..self.key_columns].to_vec()
    }
}

/// One value of a column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl Value {
    /// A u64 (a sequence, a count) as the signed integer both databases
    /// store; beyond 2^63 is refused, never wrapped.
    pub fn uint(value: u64) -> Result<Self, DbError> {
        i64::try_from(value)
            .map(Self::Int)
            .map_err(|_| DbError::Schema(format!("{value} does not fit a signed 64-bit column")))
    }

    /// A value read back as the type its column declares: SQLite keeps
    /// booleans as integers.
    pub(crate) fn into_column(self, ty: ColumnType) -> Self {
        match (self, ty) {
            (Self::Int(n), ColumnType::Bool) => Self::Bool(n != 0),
            (value, _) => value,
        }
    }

    /// The value's canonical bytes for digests: a type tag, then the value.
    pub(crate) fn digest_into(&self, hasher: &mut blake3::Hasher) {
        match self {
            Self::Null => hasher.update(&[0]),
            Self::Int(n) => hasher.update(&[1]).update(&n.to_be_bytes()),
            Self::Text(s) => hasher.update(&[2]).update(&(s.len() as u64).to_be_bytes()).update(s.as_bytes()),
            Self::Blob(b) => hasher.update(&[3]).update(&(b.len() as u64).to_be_bytes()).update(b),
            Self::Bool(b) => hasher.update(&[4, u8::from(*b)]),
        };
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Self::Int(value.into())
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Self::Int(value.into())
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Self::Blob(value)
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Self::Blob(value.to_vec())
    }
}

impl From<Hash> for Value {
    fn from(value: Hash) -> Self {
        Self::Blob(value.0.to_vec())
    }
}

impl From<uuid::Uuid> for Value {
    /// UUIDs are stored as their 16 bytes: they order as their bytes on
    /// both backends.
    fn from(value: uuid::Uuid) -> Self {
        Self::Blob(value.as_bytes().to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

/// One row a query returned, with typed getters by column index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn value(&self, index: usize) -> Result<&Value, DbError> {
        self.0.get(index).ok_or_else(|| DbError::Decode(format!("the row has no column {index}")))
    }

    fn wrong(&self, index: usize, wanted: &str) -> DbError {
        DbError::Decode(format!("column {index} is {:?}, not {wanted}", self.0.get(index)))
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, DbError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(*n)),
            _ => Err(self.wrong(index, "an integer")),
        }
    }

    pub fn int(&self, index: usize) -> Result<i64, DbError> {
        self.opt_int(index)?.ok_or_else(|| self.wrong(index, "an integer"))
    }

    /// A non-negative integer (a sequence, a count).
    pub fn uint(&self, index: usize) -> Result<u64, DbError> {
        u64::try_from(self.int(index)?).map_err(|_| self.wrong(index, "a non-negative integer"))
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<&str>, DbError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            _ => Err(self.wrong(index, "text")),
        }
    }

    pub fn text(&self, index: usize) -> Result<&str, DbError> {
        self.opt_text(index)?.ok_or_else(|| self.wrong(index, "text"))
    }

    pub fn opt_blob(&self, index: usize) -> Result<Option<&[u8]>, DbError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b)),
            _ => Err(self.wrong(index, "bytes")),
        }
    }

    pub fn blob(&self, index: usize) -> Result<&[u8], DbError> {
        self.opt_blob(index)?.ok_or_else(|| self.wrong(index, "bytes"))
    }

    /// A 32-byte hash.
    pub fn hash(&self, index: usize) -> Result<Hash, DbError> {
        Hash::from_slice(self.blob(index)?).ok_or_else(|| self.wrong(index, "32 bytes"))
    }

    /// A boolean: SQLite returns it as 0 or 1.
    pub fn opt_bool(&self, index: usize) -> Result<Option<bool>, DbError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Int(n @ (0 | 1)) => Ok(Some(*n == 1)),
            _ => Err(self.wrong(index, "a boolean")),
        }
    }

    pub fn bool(&self, index: usize) -> Result<bool, DbError> {
        self.opt_bool(index)?.ok_or_else(|| self.wrong(index, "a boolean"))
    }
}

/// `$1`-style placeholders as SQLite's `?1`, leaving quoted text alone.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('?');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// Which SQL a statement is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// What a table's changes do to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Insert, or replace every non-key column.
    Upsert,
    /// Insert, or sum the counters and replace the other non-key columns.
    Add,
    Delete,
}

impl Table {
    /// The `DO UPDATE SET …` of an upsert (or `DO NOTHING`).
    fn conflict_action(&self, write: Write) -> String {
        let sets: Vec<String> = self
            .values()
            .iter()
            .map(|c| match (write, c.counter) {
                (Write::Add, true) => format!("{0} = {1}.{0} + excluded.{0}", c.name, self.name),
                _ => format!("{0} = excluded.{0}", c.name),
            })
            .collect();
        let key: Vec<&str> = self.key().iter().map(|c| c.name).collect();
        if sets.is_empty() {
            format!("ON CONFLICT ({}) DO NOTHING", key.join(", "))
        } else {
            format!("ON CONFLICT ({}) DO UPDATE SET {}", key.join(", "), sets.join(", "))
        }
    }

    /// The statement that writes one row (SQLite, run once per row from the
    /// statement cache) or all rows of a batch (PostgreSQL, columns as arrays).
    pub(crate) fn write_sql(&self, write: Write, dialect: Dialect) -> String {
        let name = self.name;
        match (write, dialect) {
            (Write::Delete, Dialect::Sqlite) => {
                let wheres: Vec<String> =
                    self.key().iter().enumerate().map(|(i, c)| format!("{} = ?{}", c.name, i + 1)).collect();
                format!("DELETE FROM {name} WHERE {}", wheres.join(" AND "))
            }
            (Write::Delete, Dialect::Postgres) => {
                let arrays: Vec<String> =
                    self.key().iter().enumerate().map(|(i, c)| format!("${}::{}", i + 1, c.ty.pg_array())).collect();
                let names: Vec<&str> = self.key().iter().map(|c| c.name).collect();
                let wheres: Vec<String> = names.iter().map(|c| format!("{name}.{c} = d.{c}")).collect();
                format!(
                    "DELETE FROM {name} USING UNNEST({}) AS d({}) WHERE {}",
                    arrays.join(", "),
                    names.join(", "),
                    wheres.join(" AND ")
                )
            }
            (_, Dialect::Sqlite) => {
                let values: Vec<String> = (1..=self.columns.len()).map(|i| format!("?{i}")).collect();
                format!(
                    "INSERT INTO {name} ({}) VALUES ({}) {}",
                    self.column_list(),
                    values.join(", "),
                    self.conflict_action(write)
                )
            }
            (_, Dialect::Postgres) => {
                let arrays: Vec<String> =
                    self.columns.iter().enumerate().map(|(i, c)| format!("${}::{}", i + 1, c.ty.pg_array())).collect();
                format!(
                    "INSERT INTO {name} ({}) SELECT * FROM UNNEST({}) {}",
                    self.column_list(),
                    arrays.join(", "),
                    self.conflict_action(write)
                )
            }
        }
    }

    /// `SELECT every column FROM table WHERE key = $1 …`.
    pub(crate) fn get_sql(&self) -> String {
        let wheres: Vec<String> =
            self.key().iter().enumerate().map(|(i, c)| format!("{} = ${}", c.name, i + 1)).collect();
        format!("SELECT {} FROM {} WHERE {}", self.column_list(), self.name, wheres.join(" AND "))
    }

    /// Every row in primary-key order, the same order on both backends:
    /// text compares by its bytes (PostgreSQL's `"C"` collation, SQLite's
    /// default), so a rebuild on SQLite compares row by row with PostgreSQL.
    pub(crate) fn scan_sql(&self, dialect: Dialect) -> String {
        let order: Vec<String> = self
            .key()
            .iter()
            .map(|c| match (dialect, c.ty) {
                (Dialect::Postgres, ColumnType::Text) => format!("{} COLLATE \"C\"", c.name),
                _ => c.name.to_owned(),
            })
            .collect();
        format!("SELECT {} FROM {} ORDER BY {}", self.column_list(), self.name, order.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: Table = Table::new(
        "counts",
        &[
            Column::text("category"),
            Column::int("day"),
            Column::int("events").counter(),
            Column::int("last").nullable(),
        ],
        2,
    );

    #[test]
    fn statements_are_generated_for_both_dialects() {
        assert_eq!(
            COUNTS.write_sql(Write::Add, Dialect::Sqlite),
            "INSERT INTO counts (category, day, events, last) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (category, day) \
             DO UPDATE SET events = counts.events + excluded.events, last = excluded.last"
        );
        assert_eq!(
            COUNTS.write_sql(Write::Upsert, Dialect::Postgres),
            "INSERT INTO counts (category, day, events, last) SELECT * FROM UNNEST($1::text[], $2::bigint[], \
             $3::bigint[], $4::bigint[]) ON CONFLICT (category, day) DO UPDATE SET events = excluded.events, \
             last = excluded.last"
        );
        assert_eq!(
            COUNTS.write_sql(Write::Delete, Dialect::Postgres),
            "DELETE FROM counts USING UNNEST($1::text[], $2::bigint[]) AS d(category, day) \
             WHERE counts.category = d.category AND counts.day = d.day"
        );
        assert_eq!(
            COUNTS.write_sql(Write::Delete, Dialect::Sqlite),
            "DELETE FROM counts WHERE category = ?1 AND day = ?2"
        );
        assert_eq!(COUNTS.get_sql(), "SELECT category, day, events, last FROM counts WHERE category = $1 AND day = $2");
        assert_eq!(
            COUNTS.scan_sql(Dialect::Postgres),
            "SELECT category, day, events, last FROM counts ORDER BY category COLLATE \"C\", day"
        );
    }

    #[test]
    fn rows_are_checked_against_their_columns() {
        let row = [Value::from("a"), Value::Int(1), Value::Int(2), Value::Null];
        COUNTS.check(COUNTS.columns, &row, "row").unwrap();
        let wrong = [Value::from("a"), Value::Int(1), Value::Null, Value::Null];
        assert!(COUNTS.check(COUNTS.columns, &wrong, "row").is_err(), "a counter is not nullable");
        assert!(COUNTS.check(COUNTS.columns, &row[..3], "row").is_err(), "too few values");
        let typed = [Value::Int(1), Value::Int(1), Value::Int(2), Value::Null];
        assert!(COUNTS.check(COUNTS.columns, &typed, "row").is_err(), "text column given an integer");
    }

    #[test]
    fn placeholders_are_translated_outside_quotes() {
        assert_eq!(
            sqlite_placeholders("SELECT a FROM t WHERE b = $1 AND c = '$2' AND \"$d\" = $10"),
            "SELECT a FROM t WHERE b = ?1 AND c = '$2' AND \"$d\" = ?10"
        );
    }

    #[test]
    fn typed_getters_decode_and_refuse() {
        let row =
            Row(vec![Value::Int(1), Value::Int(-1), Value::Text("x".into()), Value::Null, Value::Blob(vec![7; 32])]);
        assert!(row.bool(0).unwrap());
        assert_eq!(row.uint(0).unwrap(), 1);
        assert!(row.uint(1).is_err());
        assert_eq!(row.text(2).unwrap(), "x");
        assert_eq!(row.opt_text(3).unwrap(), None);
        assert!(row.text(3).is_err());
        assert_eq!(row.hash(4).unwrap(), Hash([7; 32]));
        assert!(row.int(9).is_err());
        assert!(Value::uint(u64::MAX).is_err());
    }
}

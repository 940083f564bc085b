//! The log opened to read only, for the auditor's `replay`: no migration,
//! no writer task, no snapshot written, and on SQLite no file created.
//!
//! Opening checks the schema instead of migrating it: a log whose applied
//! migrations are not exactly this version's (fewer, one this version does
//! not know, one applied with other contents, one that failed part-way) or
//! that lacks a table it reads is refused with [`StoreError::Schema`],
//! naming what differs. A PostgreSQL session is also read-only on the
//! server's side (`default_transaction_read_only`), so even a bug here
//! could not write.
//!
//! SQLite needs its `-wal` and `-shm` files to read a WAL database under
//! its locks, and creates them when they are missing, even for a read-only
//! connection. So a log with a `-wal` (a server has it open, or stopped
//! without closing) is read under the locks, beside any writer; a log
//! without one (no process has it open) is read as SQLite's `immutable`
//! file, without locks, and every read is followed by a check that no
//! process has opened it since (no `-wal`, the same length and
//! modification time): otherwise the read fails with
//! [`StoreError::Changed`] rather than answer from a file that changed
//! under it.

use std::ops::RangeInclusive;
use std::path::Path;

use domain::record::Record;
use sqlx::migrate::Migration;

use crate::{Head, Reader, Snapshot, StoreError};

/// The tables a reader of the log reads.
pub(crate) const TABLES_READ: [&str; 4] = ["events", "log_head", "projection_snapshots", "erasures"];

/// A migration as the database recorded it (sqlx's `_sqlx_migrations`).
pub(crate) struct Applied {
    pub version: i64,
    pub description: String,
    pub success: bool,
    pub checksum: Vec<u8>,
}

/// The log, to read only. Cheap to clone.
#[derive(Clone)]
pub struct ReadOnlyLog {
    reader: Reader,
}

impl ReadOnlyLog {
    /// Opens the SQLite log at `path`, which must exist, without creating
    /// or changing any file.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self { reader: Reader::Sqlite(crate::sqlite::open_read_only(path).await?) })
    }

    /// Connects to a PostgreSQL log in read-only sessions.
    pub async fn open_postgres(options: sqlx::postgres::PgConnectOptions) -> Result<Self, StoreError> {
        Ok(Self { reader: Reader::Postgres(crate::postgres::open_read_only(options).await?) })
    }

    /// The last record's sequence, chain hash and recordedAt.
    pub async fn head(&self) -> Result<Head, StoreError> {
        self.reader.head().await
    }

    /// Up to `limit` records in global order with sequences in `range`.
    pub async fn read_page(&self, range: RangeInclusive<u64>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.reader.read_page(range, limit).await
    }

    /// The latest snapshot of a projection, if one was saved.
    pub async fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>, StoreError> {
        self.reader.load_snapshot(name).await
    }
}

/// Whether the applied migrations are exactly the `known` ones (this
/// version's migrator's), and the tables a reader reads are there. `what`
/// names the database in the error.
pub(crate) fn check_schema<'m>(
    what: &str,
    applied: &[Applied],
    known: impl IntoIterator<Item = &'m Migration>,
    missing_tables: &[&str],
) -> Result<(), StoreError> {
    let refuse = |why: String| Err(StoreError::Schema(format!("{what}: {why}")));
    let known: Vec<&Migration> = known.into_iter().filter(|m| !m.migration_type.is_down_migration()).collect();
    if let Some(failed) = applied.iter().find(|a| !a.success) {
        return refuse(format!(
            "migration {} ({}) failed part-way (it is recorded as unsuccessful); repair the database before reading it",
            failed.version, failed.description
        ));
    }
    for applied in applied {
        match known.iter().find(|m| m.version == applied.version) {
            None => {
                return refuse(format!(
                    "it has migration {} ({}), which this version does not know: a newer version of the ledger \
                     wrote it; read it with that version's replay",
                    applied.version, applied.description
                ));
            }
            Some(known) if *known.checksum != *applied.checksum => {
                return refuse(format!(
                    "migration {} ({}) was applied with other contents than this version's, so its tables may not \
                     be the ones this version reads",
                    applied.version, applied.description
                ));
            }
            Some(_) => {}
        }
    }
    let missing: Vec<String> = known
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect();
    if !missing.is_empty() {
        return refuse(format!(
            "the schema is out of date: {} of the {} migrations this version knows are applied, not {}. Reading \
             never migrates a log: start this version of the ledger on it once (it migrates at start), or read it \
             with the replay of the version that wrote it",
            applied.len(),
            known.len(),
            missing.join(", ")
        ));
    }
    if !missing_tables.is_empty() {
        return refuse(format!(
            "the table(s) {} are missing: this is not a whole ledger log",
            missing_tables.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::migrate::{Migration, MigrationType};

    use super::{Applied, check_schema};
    use crate::StoreError;

    fn migrator() -> Vec<Migration> {
        let migration = |version, description: &'static str, sql: &'static str| {
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
        };
        vec![migration(1, "event log", "CREATE TABLE a (x INT)"), migration(2, "more", "SELECT 1")]
    }

    fn applied(migrator: &[Migration], versions: &[i64]) -> Vec<Applied> {
        let all = migrator.iter().filter(|m| versions.contains(&m.version));
        all.map(|m| Applied {
            version: m.version,
            description: m.description.to_string(),
            success: true,
            checksum: m.checksum.to_vec(),
        })
        .collect()
    }

    fn refused(result: Result<(), StoreError>) -> String {
        match result {
            Err(StoreError::Schema(why)) => why,
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn exactly_this_versions_migrations_and_tables_are_accepted() {
        let migrator = migrator();
        check_schema("the log", &applied(&migrator, &[1, 2]), &migrator, &[]).unwrap();
    }

    #[test]
    fn a_schema_behind_names_the_migrations_it_lacks() {
        let migrator = migrator();
        let why = refused(check_schema("the log", &applied(&migrator, &[1]), &migrator, &[]));
        assert!(why.contains("out of date") && why.contains("1 of the 2") && why.contains("2 (more)"), "{why}");
        let why = refused(check_schema("the log", &[], &migrator, &[]));
        assert!(why.contains("1 (event log), 2 (more)"), "{why}");
    }

    #[test]
    fn a_newer_a_changed_or_a_failed_migration_is_refused() {
        let migrator = migrator();
        let mut newer = applied(&migrator, &[1, 2]);
        newer.push(Applied { version: 3, description: "later".into(), success: true, checksum: vec![1] });
        assert!(refused(check_schema("the log", &newer, &migrator, &[])).contains("3 (later)"));
        let mut changed = applied(&migrator, &[1, 2]);
        changed[1].checksum = vec![0; 48];
        assert!(refused(check_schema("the log", &changed, &migrator, &[])).contains("other contents"));
        let mut failed = applied(&migrator, &[1, 2]);
        failed[0].success = false;
        assert!(refused(check_schema("the log", &failed, &migrator, &[])).contains("failed part-way"));
    }

    #[test]
    fn a_missing_table_is_named() {
        let migrator = migrator();
        let why = refused(check_schema("the log", &applied(&migrator, &[1, 2]), &migrator, &["log_head"]));
        assert!(why.contains("log_head"), "{why}");
    }
}

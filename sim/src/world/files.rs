//! The files a seed starts from: the log and an empty read-model file,
//! each migrated once per process and kept in memory, then written out for
//! each seed (and each scratch rebuild) instead of migrating a new file:
//! migrating made about a third of a seed's time.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use projections::db::ReadModelDb;
use store::EventLog;

use super::SimClock;

/// A database file as SQLite left it once closed: the main file and any
/// file beside it (`-wal`), byte for byte.
pub(crate) struct Template {
    files: Vec<(&'static str, Vec<u8>)>,
}

/// The migrated, empty log and read-model files.
pub(crate) struct Templates {
    pub log: Template,
    pub readmodels: Template,
}

static TEMPLATES: OnceLock<Templates> = OnceLock::new();

/// Suffixes of the files SQLite may leave beside a closed database.
const BESIDE: [&str; 2] = ["", "-wal"];

fn err(error: impl std::fmt::Display) -> String {
    error.to_string()
}

impl Template {
    fn read(path: &Path) -> Result<Self, String> {
        let mut files = Vec::new();
        for suffix in BESIDE {
            let file = format!("{}{suffix}", path.display());
            if Path::new(&file).exists() {
                files.push((suffix, std::fs::read(&file).map_err(|e| format!("reading {file}: {e}"))?));
            }
        }
        Ok(Self { files })
    }

    /// Writes the files at `path` (which must not exist yet), private to
    /// this user as the store makes them.
    pub(crate) fn write(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        for (suffix, bytes) in &self.files {
            let file = format!("{}{suffix}", path.display());
            let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file);
            out.as_mut().map_err(|e| format!("creating {file}: {e}"))?.write_all(bytes).map_err(err)?;
        }
        Ok(())
    }
}

/// The templates, made on the first call of the process (on the caller's
/// runtime); threads that race to make them each make a set, and one is
/// kept.
pub(crate) async fn templates() -> Result<&'static Templates, String> {
    if let Some(templates) = TEMPLATES.get() {
        return Ok(templates);
    }
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let log_path = dir.path().join("ledger.sqlite");
    let log = EventLog::open_sqlite(&log_path, Arc::new(SimClock::new(super::START_MICROS)))
        .await
        .map_err(|e| format!("migrating the log template: {e}"))?;
    log.close().await;
    let readmodels_path = dir.path().join("readmodels.sqlite");
    // Closed when dropped: its connections fold the WAL into the file.
    drop(ReadModelDb::open_sqlite_file(&readmodels_path).await.map_err(err)?);
    let made = Templates { log: Template::read(&log_path)?, readmodels: Template::read(&readmodels_path)? };
    Ok(TEMPLATES.get_or_init(|| made))
}

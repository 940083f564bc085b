//! The durable read models, rebuilt from the history into a scratch
//! SQLite file of replay's own (a temporary directory, or `--out`), never
//! the log's database nor anything in the data directory; and the live
//! read models, opened read-only, to compare the rebuild with.
//!
//! Every projection of `projections::models::all` and the Merkle
//! projection are rebuilt, each up to the sequence it is compared at: the
//! live read models' checkpoint (projections whose checkpoints differ are
//! rebuilt each to its own, by one [`Rebuild`] per checkpoint). The live
//! read models are read through one snapshot taken when they are opened,
//! so a server may go on applying the log while replay compares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use domain::catalog::Catalog;
use domain::record::Record;
use projections::db::merkle::MerkleProjection;
use projections::db::{
    Checkpoint, Difference, Projection, READMODELS_FILE, ReadModelDb, Rebuild, Row, RunnerError, Snapshot, Table, Value,
};

use crate::walk::Failure;

/// Every projection a rebuild builds, in the runner's order.
pub fn projections() -> Vec<Box<dyn Projection>> {
    let mut all = projections::models::all(Catalog::builtin());
    all.push(Box::new(MerkleProjection::new()));
    all
}

/// Every table of [`projections`], in order.
pub fn tables() -> Vec<Table> {
    projections().iter().flat_map(|p| p.tables().iter().copied()).collect()
}

/// The projection that keeps `table`.
fn projection_of(table: &str) -> Option<&'static str> {
    projections().iter().find(|p| p.tables().iter().any(|t| t.name == table)).map(|p| p.name())
}

/// Hex digits of a blob shown before it is cut short.
const SHOWN_HEX_MAX: usize = 64;

/// A value as an auditor reads it: a 16-byte blob as a UUID, other
/// blobs as hex (cut short), text quoted.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(text) => format!("{text:?}"),
        Value::Blob(bytes) => match uuid::Uuid::from_slice(bytes) {
            Ok(id) => id.to_string(),
            Err(_) => {
                let hex = hex::encode(bytes);
                match hex.get(..SHOWN_HEX_MAX) {
                    Some(start) if hex.len() > SHOWN_HEX_MAX => format!("x'{start}…' ({} bytes)", bytes.len()),
                    _ => format!("x'{hex}'"),
                }
            }
        },
    }
}

fn show_values(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(show).collect();
    format!("({})", shown.join(", "))
}

/// What differs in a row: a row on one side only, or each differing
/// column with both values.
fn show_difference(difference: &Difference) -> String {
    let columns = tables().into_iter().find(|t| t.name == difference.table).map_or(&[][..], |t| t.columns);
    match (&difference.left, &difference.right) {
        (Some(_), None) => "the rebuild has this row, the live read models do not".into(),
        (None, Some(_)) => "the live read models have this row, the rebuild does not".into(),
        (Some(Row(rebuilt)), Some(Row(live))) => {
            let differing: Vec<String> = rebuilt
                .iter()
                .zip(live)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(index, (a, b))| {
                    let name = columns.get(index).map_or("?", |c| c.name);
                    format!("column {name} rebuilt {}, live {}", show(a), show(b))
                })
                .collect();
            differing.join("; ")
        }
        (None, None) => "no row on either side".into(),
    }
}

/// The read models being rebuilt into the scratch file.
pub struct Scratch {
    pub db: ReadModelDb,
    pub path: PathBuf,
    /// One per sequence the projections are rebuilt to.
    rebuilds: Vec<Rebuild>,
    /// The temporary directory holding the file (and its `-wal`), removed
    /// when dropped; `None` for `--out`.
    _temp: Option<tempfile::TempDir>,
}

impl Scratch {
    /// A new scratch file: `out` (which must not exist, nor be in the data
    /// directory) or one in a temporary directory. `until` gives each
    /// projection's last sequence by name (`None`: the whole history).
    pub async fn create(
        out: Option<&Path>,
        data_dir: Option<&Path>,
        until: impl Fn(&str) -> u64,
    ) -> anyhow::Result<Self> {
        let (path, temp) = match out {
            Some(path) => {
                check_out(path, data_dir)?;
                (path.to_owned(), None)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("replay-readmodels-").tempdir()?;
                (temp.path().join(READMODELS_FILE), Some(temp))
            }
        };
        let db = ReadModelDb::open_sqlite_file(&path).await.with_context(|| format!("creating {}", path.display()))?;
        let mut groups: Vec<(u64, Vec<Box<dyn Projection>>)> = Vec::new();
        for projection in projections() {
            let last = until(projection.name());
            match groups.iter_mut().find(|(at, _)| *at == last) {
                Some((_, group)) => group.push(projection),
                None => groups.push((last, vec![projection])),
            }
        }
        let mut rebuilds = Vec::with_capacity(groups.len());
        for (last, group) in groups {
            rebuilds.push(Rebuild::new(db.clone(), group, last).await?);
        }
        Ok(Self { db, path, rebuilds, _temp: temp })
    }

    /// Applies a page of records (checked by the walk) to every rebuild.
    pub async fn apply(&mut self, page: Vec<Record>) -> anyhow::Result<Result<(), Failure>> {
        let page: Arc<[Record]> = page.into();
        for rebuild in &mut self.rebuilds {
            if let Err(error) = rebuild.apply(page.clone()).await {
                return failure(error);
            }
        }
        Ok(Ok(()))
    }

    /// Commits the rest; each projection's name and checkpoint.
    pub async fn finish(&mut self) -> anyhow::Result<Result<Vec<(&'static str, Checkpoint)>, Failure>> {
        let mut checkpoints = Vec::new();
        for rebuild in std::mem::take(&mut self.rebuilds) {
            match rebuild.finish().await {
                Ok(done) => checkpoints.extend(done),
                Err(error) => return failure(error).map(|r| r.map(|()| Vec::new())),
            }
        }
        Ok(Ok(checkpoints))
    }

    /// Whether the file is kept (`--out`) or removed on exit.
    pub fn kept(&self) -> bool {
        self._temp.is_none()
    }
}

/// A record the read models cannot apply is a failure of the history
/// (exit 1); a database that fails is a failure to run (exit 2).
fn failure<T>(error: RunnerError) -> anyhow::Result<Result<T, Failure>> {
    match error.sequence() {
        Some(sequence) if !error.is_transient() => {
            Ok(Err(Failure { sequence: Some(sequence), what: format!("the read models cannot be rebuilt: {error}") }))
        }
        _ => Err(anyhow::Error::new(error).context("rebuilding the read models")),
    }
}

/// `--out` must be a new file outside the data directory: replay writes
/// nothing there.
fn check_out(path: &Path, data_dir: Option<&Path>) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists: --out names a new file", path.display());
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().with_context(|| format!("the directory of {}", path.display()))?;
    if let Some(dir) = data_dir {
        let dir = dir.canonicalize().with_context(|| format!("{}", dir.display()))?;
        if parent.starts_with(&dir) {
            bail!("{} is in the data directory {}: replay writes nothing there", path.display(), dir.display());
        }
    }
    Ok(())
}

/// The live read models, opened read-only, one snapshot of them taken
/// when opened, and where each projection's checkpoint stood in it.
pub struct Live {
    /// What is compared: the tables as they were when opened, however a
    /// server's runner moves them on while replay runs.
    pub snapshot: Snapshot,
    /// Where they are, for messages.
    pub what: String,
    pub checkpoints: Vec<(&'static str, Option<Checkpoint>)>,
    /// A SQLite file read without locks (no `-wal`): its stamp when opened.
    unlocked: Option<(PathBuf, FileStamp)>,
}

/// Opens the live read models beside the log read-only; `Err` says why
/// there are none to compare with (no file, nothing applied yet).
pub async fn open_live(
    data_dir: Option<&Path>,
    database_url: Option<&str>,
    is_file: bool,
) -> anyhow::Result<Result<Live, String>> {
    let (db, what, unlocked) = match (database_url, data_dir) {
        _ if is_file => return Ok(Err("an export file has no live read models".into())),
        (Some(url), _) => {
            let options = url.parse().context("--database-url is not a PostgreSQL URL")?;
            let db = ReadModelDb::open_postgres_read_only(options).await?;
            (db, "the PostgreSQL read-model tables".to_owned(), None)
        }
        (None, Some(dir)) => {
            let path = dir.join(READMODELS_FILE);
            if !path.exists() {
                return Ok(Err(format!("{} holds no live read models ({READMODELS_FILE})", dir.display())));
            }
            let stamp = FileStamp::of(&path)?;
            let db = ReadModelDb::open_sqlite_read_only(&path).await?;
            let unlocked = (!stamp.wal).then_some((path.clone(), stamp));
            (db, path.display().to_string(), unlocked)
        }
        (None, None) => return Ok(Err("no live read models".into())),
    };
    let names: Vec<&'static str> = projections().iter().map(|p| p.name()).collect();
    let snapshot = db.snapshot().await.with_context(|| format!("reading {what}"))?;
    let found = snapshot.checkpoints(&names).await.with_context(|| format!("reading the checkpoints of {what}"))?;
    if found.iter().all(|c| c.is_none_or(|c| c.sequence == 0)) {
        return Ok(Err(format!("{what} hold nothing yet (every checkpoint at sequence 0)")));
    }
    let live = Live { snapshot, what, checkpoints: names.into_iter().zip(found).collect(), unlocked };
    live.unchanged()?;
    Ok(Ok(live))
}

impl Live {
    /// The sequence a projection is compared at: its live checkpoint's.
    pub fn sequence_of(&self, name: &str) -> u64 {
        self.checkpoints.iter().find(|(n, _)| *n == name).and_then(|(_, c)| *c).map_or(0, |c| c.sequence)
    }

    /// Fails when a file read without locks changed since it was opened
    /// (a ledger process opened it): its snapshot is not one.
    fn unchanged(&self) -> anyhow::Result<()> {
        let Some((path, stamp)) = &self.unlocked else { return Ok(()) };
        if FileStamp::of(path)? != *stamp {
            bail!(
                "{} changed while replay read it without locks (a ledger process opened it): run replay again",
                path.display()
            );
        }
        Ok(())
    }
}

/// A file's length and modification time, and whether it has a `-wal`.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: std::time::SystemTime,
    wal: bool,
}

impl FileStamp {
    fn of(path: &Path) -> anyhow::Result<Self> {
        let metadata = std::fs::metadata(path).with_context(|| path.display().to_string())?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self { len: metadata.len(), modified: metadata.modified()?, wal: Path::new(&wal).exists() })
    }
}

/// The rebuild against the live read models: every projection at its live
/// checkpoint (sequence and chain hash), then every table row by row. The
/// line to print when they match.
pub async fn compare_live(
    live: &Live,
    rebuilt: &[(&'static str, Checkpoint)],
    scratch: &Scratch,
) -> anyhow::Result<Result<String, Failure>> {
    live.unchanged()?;
    for (name, then) in &live.checkpoints {
        let Some(then) = then else { continue };
        let built = rebuilt.iter().find(|(n, _)| n == name).map_or(Checkpoint::START, |(_, c)| *c);
        if built.sequence != then.sequence {
            let what = format!(
                "the live read models' projection {name} is at sequence {}, past the log's end ({})",
                then.sequence, built.sequence
            );
            return Ok(Err(Failure { sequence: None, what }));
        }
        if built.chain_hash != then.chain_hash {
            let what = format!(
                "the live read models' projection {name} has chain hash {} at its checkpoint, the log {}",
                then.chain_hash, built.chain_hash
            );
            return Ok(Err(Failure { sequence: Some(then.sequence), what }));
        }
    }
    let tables = tables();
    let difference = projections::db::compare(&scratch.db, &live.snapshot, &tables).await?;
    live.unchanged()?;
    if let Some(difference) = difference {
        let sequence = projection_of(difference.table).map_or(0, |name| live.sequence_of(name));
        let what = format!(
            "the live read models ({}) differ from the rebuild at sequence {sequence}: table {} key {}: {}",
            live.what,
            difference.table,
            show_values(&difference.key),
            show_difference(&difference)
        );
        return Ok(Err(Failure { sequence: None, what }));
    }
    let sequences: std::collections::BTreeSet<u64> = rebuilt.iter().map(|(_, c)| c.sequence).collect();
    let at: Vec<String> = sequences.iter().map(u64::to_string).collect();
    Ok(Ok(format!(
        "{} tables rebuilt from sequence 1 to {} match the live read models ({}) row for row",
        tables.len(),
        at.join(", "),
        live.what
    )))
}

/// The live read models and a scratch rebuild up to their checkpoints,
/// when there are live ones; `Err` says why there are none.
pub async fn prepare(
    data_dir: Option<&Path>,
    database_url: Option<&str>,
    is_file: bool,
) -> anyhow::Result<Result<(Live, Scratch), String>> {
    match open_live(data_dir, database_url, is_file).await? {
        Ok(live) => {
            let scratch = Scratch::create(None, data_dir, |name| live.sequence_of(name)).await?;
            Ok(Ok((live, scratch)))
        }
        Err(none) => Ok(Err(none)),
    }
}

/// After a whole walk: the rebuild finished and compared with the live
/// read models, or why there were none. The line to print when it holds.
pub async fn verify(prepared: Result<(Live, Scratch), String>) -> anyhow::Result<Result<String, Failure>> {
    let (live, mut scratch) = match prepared {
        Ok(prepared) => prepared,
        Err(none) => return Ok(Ok(format!("{none}, so none were rebuilt to compare (`replay rebuild` builds them)"))),
    };
    let rebuilt = match scratch.finish().await? {
        Ok(rebuilt) => rebuilt,
        Err(failure) => return Ok(Err(failure)),
    };
    compare_live(&live, &rebuilt, &scratch).await
}

//! The durable read models through the `replay` binary: `rebuild` builds
//! every table into a scratch file of its own and prints each one's rows
//! and digest; `verify` compares the rebuild with the live read models at
//! their checkpoint and names the first differing table and key; neither
//! creates or changes a file in the data directory. On SQLite and
//! PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use domain::catalog::Catalog;
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::{Clock, EventId, Metadata, OrganizationId, Timestamp};
use projections::db::merkle::MerkleProjection;
use projections::db::{Projection, ReadModelDb, Runner};
use store::{Command, EventLog, ExpectedRevision, NewEvent};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::parse_rfc3339("2026-03-01T10:00:00Z").unwrap()
    }
}

fn org(n: u16) -> OrganizationId {
    let [high, low] = n.to_be_bytes();
    OrganizationId(uuid::Uuid::from_bytes([1, 148, 160, 0, 0, 0, 112, 0, 128, 0, 0, 0, 0, 0, high, low]))
}

fn replay(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the replay binary runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A new data directory, with the checkpoint key a server keeps there.
fn new_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/checkpoint.ed25519"), [7; 32]).unwrap();
    dir
}

/// Appends `count` organizations, from number `first` on.
async fn organizations(log: &EventLog, first: u16, count: u16) {
    for n in first..first + count {
        let created = OrganizationEvent::OrganizationCreated(OrganizationCreated {
            id: org(n),
            name: format!("Organization {n}"),
            domain: None,
            industry: None,
            employee_count: Some(u32::from(n)),
        });
        let metadata = Metadata { actor: Some("operator".into()), ..Metadata::default() };
        let event = NewEvent::from_event(&created, EventId(uuid::Uuid::now_v7()), FixedClock.now(), &metadata);
        let command = Command {
            stream_id: org(n).stream(),
            expected: ExpectedRevision::Any,
            idempotency: None,
            events: vec![event],
        };
        log.append_one(command).await.unwrap().unwrap();
    }
}

/// Every projection `replay` rebuilds, as a server's runner runs them.
fn all_projections() -> Vec<Box<dyn Projection>> {
    let mut all = projections::models::all(Catalog::builtin());
    all.push(Box::new(MerkleProjection::new()));
    all
}

/// Runs the live projections up to the log's head: the live read models.
async fn project(log: &EventLog, db: &ReadModelDb) -> u64 {
    let mut runner = Runner::new(log.clone(), db.clone(), all_projections()).unwrap();
    runner.catch_up().await.unwrap()
}

/// The files of a data directory that hold data (not SQLite's `-shm`,
/// which readers beside a writer touch), with their bytes.
fn data_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && !path.to_string_lossy().ends_with("-shm"))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn names(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
}

/// A data directory: a log of `count` organizations, and its live read
/// models built by a runner. The log and the read models stay open.
async fn data_dir(count: u8) -> (tempfile::TempDir, EventLog, ReadModelDb) {
    let dir = new_dir();
    let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(FixedClock)).await.unwrap();
    organizations(&log, 1, count.into()).await;
    let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
    assert_eq!(project(&log, &db).await, u64::from(count));
    (dir, log, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_prints_every_table_with_its_rows_and_digest() {
    let (dir, _log, db) = data_dir(3).await;
    let source = dir.path().to_str().unwrap();
    let (before, files_before) = (names(dir.path()), data_files(dir.path()));
    let output = replay(&["rebuild", "--data-dir", source]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    // The same digests as the live read models, which a runner built.
    let digests = projections::db::digest(&db, &projections::models::tables()).await.unwrap();
    assert!(digests.len() > 10, "{digests:?}");
    for table in &digests {
        let line = format!("table {} rows {} digest {}", table.table, table.rows, table.digest);
        assert!(said.contains(&line), "{line} is printed: {said}");
    }
    assert!(said.contains("table rm_organizations rows 3 "), "{said}");
    assert!(said.contains("table merkle_nodes rows 0 "), "{said}");
    assert!(said.contains("tables rebuilt to sequence 3"), "{said}");
    assert!(said.contains("removed on exit"), "{said}");
    assert_eq!(names(dir.path()), before, "rebuild adds no file to the data directory");
    assert_eq!(data_files(dir.path()), files_before, "rebuild changes no file of the data directory");

    // --out keeps the file, which holds the tables; never an existing file or one in the data directory.
    let out = tempfile::tempdir().unwrap();
    let kept = out.path().join("rebuilt.sqlite");
    let output = replay(&["rebuild", "--data-dir", source, "--out", kept.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let rebuilt = ReadModelDb::open_sqlite_file(&kept).await.unwrap();
    assert_eq!(projections::db::digest(&rebuilt, &projections::models::tables()).await.unwrap(), digests);
    let output = replay(&["rebuild", "--data-dir", source, "--out", kept.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let inside = dir.path().join("rebuilt.sqlite");
    let output = replay(&["rebuild", "--data-dir", source, "--out", inside.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("data directory"), "{}", text(&output));
    assert_eq!(names(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_the_live_read_models_at_their_checkpoint() {
    let (dir, log, db) = data_dir(3).await;
    let source = dir.path().to_str().unwrap();
    let (before, files_before) = (names(dir.path()), data_files(dir.path()));
    let output = replay(&["verify", "--data-dir", source]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("ok read models: ") && said.contains("to 3 match the live read models"), "{said}");
    assert_eq!(names(dir.path()), before, "verify adds no file to the data directory");
    assert_eq!(data_files(dir.path()), files_before, "verify changes no file of the data directory");

    // The log moves on past the live read models: they are compared at
    // their own checkpoint, not the head.
    organizations(&log, 4, 2).await;
    let output = replay(&["verify", "--data-dir", source]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("ok records: 5") && said.contains("to 3 match the live read models"), "{said}");

    // One live row altered: the table and the key are named.
    db.execute_script(&format!(
        "UPDATE rm_organizations SET name = 'Forged' WHERE id = X'{}'",
        hex::encode(org(2).0.as_bytes())
    ))
    .await
    .unwrap();
    let output = replay(&["verify", "--data-dir", source]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let key =
        format!("table rm_organizations key ({}): column name rebuilt \"Organization 2\", live \"Forged\"", org(2).0);
    assert!(said.contains("FAILED") && said.contains(&key), "{said}");
    assert!(said.contains("at sequence 3"), "{said}");
}

/// Read models no process has open (no `-wal`) are read as SQLite's
/// immutable file: no `-wal` or `-shm` is created beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_of_a_stopped_server_are_read_without_creating_a_file() {
    let (dir, log, db) = data_dir(3).await;
    drop((log, db));
    let wal = dir.path().join(format!("{}-wal", projections::db::READMODELS_FILE));
    // A writing connection closing last checkpoints the read models'
    // `-wal` and removes it (a read-only one closing last leaves it).
    let started = std::time::Instant::now();
    while wal.exists() && started.elapsed() < std::time::Duration::from_secs(30) {
        use sqlx::Connection;
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join(projections::db::READMODELS_FILE));
        let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("SELECT count(*) FROM readmodel_checkpoints").fetch_one(&mut connection).await.unwrap();
        connection.close().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!wal.exists(), "the closed read models' -wal is gone");
    let source = dir.path().to_str().unwrap();
    let (before, files_before) = (names(dir.path()), data_files(dir.path()));
    for command in ["verify", "rebuild"] {
        let output = replay(&[command, "--data-dir", source]);
        assert!(output.status.success(), "{command}: {}", text(&output));
        assert_eq!(names(dir.path()), before, "{command} adds no file to the data directory");
        assert_eq!(data_files(dir.path()), files_before, "{command} changes no file of the data directory");
    }
    let output = replay(&["verify", "--data-dir", source]);
    assert!(text(&output).contains("to 3 match the live read models"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_live_row_the_history_does_not_hold() {
    let (dir, _log, db) = data_dir(2).await;
    db.execute_script("DELETE FROM rm_audit").await.unwrap();
    let output = replay(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("table rm_audit key (") && said.contains("the rebuild has this row, the live read models do not"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_without_live_read_models_says_so_and_passes() {
    let dir = new_dir();
    let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(FixedClock)).await.unwrap();
    organizations(&log, 1, 2).await;
    let output = replay(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("holds no live read models"), "{said}");
    assert!(!dir.path().join(projections::db::READMODELS_FILE).exists());
    // A read-model file whose projections applied nothing yet.
    let _db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
    let output = replay(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("hold nothing yet"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_the_postgres_read_models_beside_the_log() {
    let Some(url) = store::testing::postgres_url("read_models::verify_compares_the_postgres_read_models") else {
        return;
    };
    let schema = store::testing::fresh_schema(&url).await;
    let log = EventLog::open_postgres(schema.options.clone(), Arc::new(FixedClock)).await.unwrap();
    organizations(&log, 1, 3).await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);

    let output = replay(&["verify", "--database-url", &database_url]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("hold nothing yet"), "{}", text(&output));

    let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
    assert_eq!(project(&log, &db).await, 3);
    organizations(&log, 4, 1).await;
    let output = replay(&["verify", "--database-url", &database_url]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("to 3 match the live read models (the PostgreSQL"), "{said}");
    let output = replay(&["rebuild", "--database-url", &database_url]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("table rm_organizations rows 4 "), "{}", text(&output));

    db.execute_script(&format!(
        "UPDATE rm_organizations SET name = 'Forged' WHERE id = '\\x{}'::bytea",
        hex::encode(org(3).0.as_bytes())
    ))
    .await
    .unwrap();
    let output = replay(&["verify", "--database-url", &database_url]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let key =
        format!("table rm_organizations key ({}): column name rebuilt \"Organization 3\", live \"Forged\"", org(3).0);
    assert!(said.contains(&key), "{said}");
}

/// `replay verify` run three times while a runner appends and applies
/// organizations beside it, as a live server does: each run compares one
/// snapshot of the live read models, so the tables moving on meanwhile is
/// no failure (it was: "the live read models moved while replay ran").
async fn verify_while_the_read_models_move(args: &[&str], log: EventLog, db: ReadModelDb) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (stop, applied) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mover = tokio::spawn({
        let (stop, applied) = (stop.clone(), applied.clone());
        async move {
            let mut runner = Runner::new(log.clone(), db, all_projections()).unwrap();
            let mut next = 1000;
            while !stop.load(Ordering::SeqCst) && next < 60_000 {
                organizations(&log, next, 5).await;
                applied.store(runner.catch_up().await.unwrap(), Ordering::SeqCst);
                next += 5;
            }
        }
    });
    while applied.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    for _ in 0..3 {
        let before = applied.load(Ordering::SeqCst);
        let args = args.clone();
        let output = tokio::task::spawn_blocking(move || replay(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap();
        let said = text(&output);
        assert!(applied.load(Ordering::SeqCst) > before, "the read models moved while verify ran");
        assert!(output.status.success(), "{said}");
        assert!(said.contains("match the live read models"), "{said}");
    }
    stop.store(true, Ordering::SeqCst);
    mover.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_a_snapshot_while_a_server_applies_the_log() {
    let (dir, log, db) = data_dir(3).await;
    verify_while_the_read_models_move(&["verify", "--data-dir", dir.path().to_str().unwrap()], log, db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_a_postgres_snapshot_while_a_server_applies_the_log() {
    let Some(url) = store::testing::postgres_url("read_models::verify_compares_a_postgres_snapshot") else {
        return;
    };
    let schema = store::testing::fresh_schema(&url).await;
    let log = EventLog::open_postgres(schema.options.clone(), Arc::new(FixedClock)).await.unwrap();
    organizations(&log, 1, 3).await;
    let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
    assert_eq!(project(&log, &db).await, 3);
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
    verify_while_the_read_models_move(&["verify", "--database-url", &database_url], log, db).await;
}

//! `replay` opens the log read-only: it runs no migration, starts no
//! writer and saves no snapshot, so an auditor's run changes nothing. A log
//! whose schema is behind this version's is reported (exit 2), not
//! migrated; and no command creates or changes a file in a data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointSigned};
use domain::event::StoredEvent;
use domain::merkle::MerkleTree;
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::{Clock, EventId, Metadata, OrganizationId, StreamId, Timestamp};
use ed25519_dalek::SigningKey;
use sqlx::Row;
use store::{Command, EventLog, ExpectedRevision, NewEvent};

const ORG: OrganizationId = OrganizationId(uuid::uuid!("0194a000-0000-7000-8000-0000000000aa"));

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::parse_rfc3339("2026-02-01T10:00:00Z").unwrap()
    }
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

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            all.insert(path, bytes);
        }
    }
    all
}

/// The last of a migrations directory's files: its version and its
/// description, as sqlx names them (`0003_snapshot_chain_hash.sql` is 3,
/// "snapshot chain hash").
fn last_migration(migrations: &Path) -> (PathBuf, String) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(migrations).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let last = names.pop().unwrap();
    let stem = last.file_stem().unwrap().to_str().unwrap().to_owned();
    let (version, description) = stem.split_once('_').unwrap();
    let named = format!("{} ({})", version.parse::<u64>().unwrap(), description.replace('_', " "));
    (last, named)
}

/// A copy of a migrations directory without its last migration: a log
/// migrated with it is one migration behind this version.
fn all_but_last(backend: &str) -> (tempfile::TempDir, String) {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(backend);
    let (last, named) = last_migration(&migrations);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&migrations).unwrap() {
        let path = entry.unwrap().path();
        if path != last {
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    (copy, named)
}

/// Names the files that differ (added, removed or changed), never their bytes.
fn assert_same_files(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let differ: Vec<&PathBuf> =
        before.keys().chain(after.keys()).filter(|path| before.get(*path) != after.get(*path)).collect();
    assert!(differ.is_empty(), "{what} created, removed or changed {differ:?}");
}

fn assert_out_of_date(output: &Output, last: &str) {
    let said = text(output);
    assert_eq!(output.status.code(), Some(2), "an out-of-date schema is a failure to run: {said}");
    assert!(said.contains("out of date") && said.contains(last), "the missing migration {last} is named: {said}");
}

#[tokio::test]
async fn a_sqlite_log_one_migration_behind_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/checkpoint.ed25519"), [9; 32]).unwrap();
    let (migrations, last) = all_but_last("sqlite");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.path()).await.unwrap().run(&pool).await.unwrap();
    pool.close().await;
    let before = files(dir.path());

    for command in [&["verify"][..], &["rebuild"], &["export"]] {
        let output = replay(&[command, &["--data-dir", dir.path().to_str().unwrap()]].concat());
        assert_out_of_date(&output, &last);
        assert_same_files(&before, &files(dir.path()), &format!("{command:?}"));
    }
}

/// What a PostgreSQL schema holds: its tables, its applied migrations and
/// the head row.
async fn postgres_state(pool: &sqlx::PgPool) -> Vec<String> {
    let tables = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let migrations = sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap();
    let head = sqlx::query("SELECT sequence, chain_hash FROM log_head").fetch_all(pool).await.unwrap();
    let mut state: Vec<String> = tables.iter().map(|r| format!("table {}", r.get::<String, _>(0))).collect();
    state.extend(
        migrations
            .iter()
            .map(|r| format!("migration {} {} {:?}", r.get::<i64, _>(0), r.get::<bool, _>(1), r.get::<Vec<u8>, _>(2))),
    );
    state.extend(head.iter().map(|r| format!("head {} {:?}", r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1))));
    state
}

#[tokio::test]
async fn a_postgres_log_one_migration_behind_is_reported_and_left_alone() {
    let Some(url) = store::testing::postgres_url("read_only::a_postgres_log_one_migration_behind") else { return };
    let schema = store::testing::fresh_schema(&url).await;
    let pool = sqlx::PgPool::connect_with(schema.options.clone()).await.unwrap();
    let (migrations, last) = all_but_last("postgres");
    sqlx::migrate::Migrator::new(migrations.path()).await.unwrap().run(&pool).await.unwrap();
    let before = postgres_state(&pool).await;
    assert!(before.iter().any(|line| line.starts_with("table events")), "{before:?}");

    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
    for command in ["verify", "rebuild", "export"] {
        let output = replay(&[command, "--database-url", &database_url]);
        assert_out_of_date(&output, &last);
        assert_eq!(postgres_state(&pool).await, before, "{command} changed the database");
    }
}

/// A log as a server leaves it: an organization and a checkpoint kept in
/// the log, the checkpoint key in `keys/`.
async fn history(dir: &Path) -> EventLog {
    let key = SigningKey::from_bytes(&[9; 32]);
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/checkpoint.ed25519"), key.to_bytes()).unwrap();
    let log = EventLog::open_sqlite(&dir.join("ledger.sqlite"), Arc::new(FixedClock)).await.unwrap();
    let created = OrganizationEvent::OrganizationCreated(OrganizationCreated {
        id: ORG,
        name: "Read Only AG".into(),
        domain: None,
        industry: None,
        employee_count: None,
    });
    append(&log, ORG.stream(), &created).await;
    let records = log.read_page(1..=1, 1).await.unwrap();
    let mut tree = MerkleTree::new();
    tree.push_record(&records[0].leaf_hash);
    let checkpoint = Checkpoint {
        origin: "ledger".into(),
        size: 1,
        root: tree.root(1).unwrap(),
        chain: records[0].chain_hash,
        time: FixedClock.now(),
    };
    let note = checkpoint.sign(&key).unwrap();
    let signed = CheckpointEvent::CheckpointSigned(CheckpointSigned { note });
    append(&log, StreamId::new(CHECKPOINT_STREAM).unwrap(), &signed).await;
    log
}

async fn append<E: StoredEvent>(log: &EventLog, stream: StreamId, event: &E) {
    let metadata = Metadata { actor: Some("operator".into()), ..Metadata::default() };
    let event = NewEvent::from_event(event, EventId(uuid::Uuid::now_v7()), FixedClock.now(), &metadata);
    let command =
        Command { stream_id: stream, expected: ExpectedRevision::Any, idempotency: None, events: vec![event] };
    log.append_one(command).await.unwrap().unwrap();
}

/// Closes a log as a stopped server leaves it: the writer's connection,
/// closing last, folds the `-wal` into the database and removes it with
/// the `-shm`.
async fn stop_cleanly(log: EventLog, path: &Path) {
    log.close().await;
    for suffix in ["-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        assert!(!file.exists(), "the stopped log's {suffix} is gone");
    }
}

/// Every command an auditor runs on a data directory.
fn every_command(dir: &Path) -> Vec<Vec<String>> {
    let org = ORG.0.to_string();
    let commands: [&[&str]; 6] = [
        &["verify"],
        &["rebuild"],
        &["export"],
        &["audit", "--org", &org],
        &["as-of", "2", "--org", &org],
        &["prove", "--sequence", "1"],
    ];
    let dir = dir.to_str().unwrap();
    commands.iter().map(|c| c.iter().chain(&["--data-dir", dir]).map(|a| (*a).to_owned()).collect()).collect()
}

fn run_all(dir: &Path, unchanged: impl Fn(&str)) {
    for command in every_command(dir) {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let output = replay(&args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        unchanged(args[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_creates_and_changes_no_file_in_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let log = history(dir.path()).await;
    // The server stopped: its last connection closed, and SQLite removed
    // the `-wal` and `-shm` files with it.
    stop_cleanly(log, &dir.path().join("ledger.sqlite")).await;
    let before = files(dir.path());
    run_all(dir.path(), |command| {
        assert_same_files(&before, &files(dir.path()), &format!("{command} on a stopped server's log"))
    });

    // A server runs on it (its `-wal` and `-shm` exist): replay reads
    // beside it under SQLite's locks and adds no file.
    let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(FixedClock)).await.unwrap();
    assert_eq!(log.head().await.unwrap().sequence, 2);
    let names = |files: BTreeMap<PathBuf, Vec<u8>>| files.into_keys().collect::<Vec<_>>();
    let (running, database) = (names(files(dir.path())), std::fs::read(dir.path().join("ledger.sqlite")).unwrap());
    run_all(dir.path(), |command| {
        assert_eq!(names(files(dir.path())), running, "{command} beside a running server");
        let now = std::fs::read(dir.path().join("ledger.sqlite")).unwrap();
        assert!(now == database, "{command} changed the database file beside a running server");
    });
    drop(log);
}

//! `ReadOnlyLog` on SQLite: it creates no file, reads a log no process has
//! open without locks and refuses to answer once a writer came, and reads
//! beside a running writer under SQLite's locks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use domain::{EventId, StreamId, Timestamp};
use ledger_store::{Command, EventLog, ExpectedRevision, NewEvent, ReadOnlyLog, StoreError, SystemClock};

fn command(payload: &[u8]) -> Command {
    let event = NewEvent {
        event_id: EventId(uuid::Uuid::now_v7()),
        event_type: "TestEvent".into(),
        schema_version: 1,
        occurred_at: Timestamp::from_micros(1_767_225_600_000_000),
        metadata: domain::Metadata::default().encode(),
        payload: payload.to_vec(),
    };
    Command {
        stream_id: StreamId::new("org/read-only").unwrap(),
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![event],
    }
}

async fn append(log: &EventLog, payload: &[u8]) {
    log.append_one(command(payload)).await.unwrap().unwrap();
}

fn names(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
}

/// Closes a log as a stopped server leaves it: the writer's connection,
/// closing last, folds the `-wal` into the database and removes it with
/// the `-shm`.
async fn stop(log: EventLog, path: &Path) {
    log.close().await;
    for suffix in ["-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        assert!(!file.exists(), "the closed log's {suffix} is gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_is_an_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let error = ReadOnlyLog::open_sqlite(&dir.path().join("ledger.sqlite")).await.err().unwrap();
    assert!(matches!(error, StoreError::Io(_)), "{error}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_no_process_has_open_is_read_without_locks_until_a_writer_comes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let log = EventLog::open_sqlite(&path, Arc::new(SystemClock)).await.unwrap();
    append(&log, b"one").await;
    stop(log, &path).await;
    let before = names(dir.path());

    let reader = ReadOnlyLog::open_sqlite(&path).await.unwrap();
    assert_eq!(reader.head().await.unwrap().sequence, 1);
    assert_eq!(reader.read_page(1..=10, 10).await.unwrap().len(), 1);
    assert_eq!(names(dir.path()), before, "reading created a file");

    // A server starts on it and appends: what the reader would read next
    // may be half written, so it refuses instead of answering.
    let log = EventLog::open_sqlite(&path, Arc::new(SystemClock)).await.unwrap();
    append(&log, b"two").await;
    let error = reader.read_page(1..=10, 10).await.err().unwrap();
    assert!(matches!(error, StoreError::Changed(_)), "{error}");
    assert!(error.to_string().contains("changed while it was read without locks"), "{error}");

    // Opened again, it reads beside the running writer, and sees its appends.
    let reader = ReadOnlyLog::open_sqlite(&path).await.unwrap();
    assert_eq!(reader.head().await.unwrap().sequence, 2);
    append(&log, b"three").await;
    assert_eq!(reader.head().await.unwrap().sequence, 3);
    assert_eq!(reader.read_page(1..=10, 10).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_no_ledger_log_is_named_as_such() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("CREATE TABLE notes (text TEXT)").execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    let before = std::fs::read(&path).unwrap();
    let error = ReadOnlyLog::open_sqlite(&path).await.err().unwrap();
    assert!(matches!(error, StoreError::Schema(_)) && error.to_string().contains("no ledger schema"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(names(dir.path()), [path]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_log_reads_each_records_format_salt_and_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let log = EventLog::open_sqlite(&path, Arc::new(SystemClock)).await.unwrap();
    log.append_legacy_v1_for_tests(vec![command(b"old")]).await.unwrap().pop().unwrap().unwrap();
    append(&log, b"personal").await;
    append(&log, b"the privacy event").await;
    let rows = [ledger_store::ErasedRow { sequence: 2, facts: Some(b"facts".to_vec()) }];
    assert_eq!(log.erase(3, &rows).await.unwrap(), 1);
    let expected = log.read_page(1..=3, 10).await.unwrap();
    // Beside the running writer (under locks), then with no process on it.
    let beside = ReadOnlyLog::open_sqlite(&path).await.unwrap().read_page(1..=3, 10).await.unwrap();
    stop(log, &path).await;
    let alone = ReadOnlyLog::open_sqlite(&path).await.unwrap().read_page(1..=3, 10).await.unwrap();
    for records in [&beside, &alone] {
        assert_eq!(records, &expected);
        let seen: Vec<_> = records.iter().map(|r| (r.format, r.salt.is_some(), r.event_bytes())).collect();
        assert_eq!(
            seen,
            [
                (1, false, Some(&b"old"[..])),
                (2, false, Some(&b"facts"[..])),
                (2, true, Some(&b"the privacy event"[..]))
            ]
        );
        assert_eq!(records[1].erasure.as_ref().map(|e| e.by), Some(3));
    }
}

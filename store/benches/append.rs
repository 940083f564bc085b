//! Durable append throughput of the log and `verify` throughput, each
//! against the limit it should approach, measured in the same run (issue
//! 19). Run with `cargo bench -p ledger-store --bench append`; PostgreSQL
//! rows need `DATABASE_URL`. Prints a Markdown table: the log's figure, its
//! limit, the ratio and the target for it.
//!
//! Payloads are 300 bytes. "N appenders" are N tasks each appending
//! single-event commands with an idempotency key, as the server's commands
//! do; "B-event commands" is one task appending commands of B events. The
//! limits:
//! - raw INSERT, 1 row per transaction: one task inserting the same bytes
//!   into a table with the same columns and indexes, one durable
//!   transaction per row (the limit of 1 appender);
//! - raw INSERT, 1,000 rows per transaction: the same, 1,000 rows per
//!   transaction in one statement on PostgreSQL (the limit of batches and
//!   of many appenders);
//! - hashing: a bare single-core loop computing the hashes the record
//!   format computes per record (metadata, payload, leaf, chain; version 2
//!   salted) over the same records, in the format the log writes, measured
//!   just before `verify` (its limit).
//!
//! The raw limits run on the same database as the log, in the same
//! conditions: on SQLite a connection set up as the log's writer's, a table
//! defined as the events table, each transaction on a blocking thread an
//! async task awaits; and in alternating slices with the log's figure they
//! limit (1 appender with the one-row insert, 1,000-event commands with
//! the 1,000-row one), so both see the same disk and neighbours.
//!
//! The raw baselines do no hashing, ordering, idempotency or revision
//! checks. `BENCH_SECONDS` (default 3) sets each append run's length;
//! `BENCH_VERIFY_EVENTS` (default 1,000,000) the log size for `verify` and
//! the number of records the hashing limit hashes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{EventId, StreamId, Timestamp};
use ledger_store::{Command, EventLog, ExpectedRevision, Idempotency, NewEvent, SystemClock, testing};

const PAYLOAD_BYTES: usize = 300;
const RAW_BATCH: usize = 1000;

enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(Box<sqlx::postgres::PgConnectOptions>),
}

impl Backend {
    async fn open(&self) -> EventLog {
        match self {
            Backend::Sqlite(path) => EventLog::open_sqlite(path, Arc::new(SystemClock)).await.unwrap(),
            Backend::Postgres(options) => {
                EventLog::open_postgres((**options).clone(), Arc::new(SystemClock)).await.unwrap()
            }
        }
    }
}

fn event(n: u64) -> NewEvent {
    let mut payload = vec![0u8; PAYLOAD_BYTES];
    payload[..8].copy_from_slice(&n.to_le_bytes());
    NewEvent {
        event_id: EventId(uuid::Uuid::now_v7()),
        event_type: "UsageReported".into(),
        schema_version: 1,
        occurred_at: Timestamp::from_micros(1_767_225_600_000_000),
        metadata: domain::Metadata { actor: Some("bench".into()), ..Default::default() }.encode(),
        payload,
    }
}

fn command(stream: &StreamId, key: String, events: Vec<NewEvent>) -> Command {
    Command {
        idempotency: Some(Idempotency::of_events(key, stream, &events)),
        stream_id: stream.clone(),
        expected: ExpectedRevision::Any,
        events,
    }
}

/// Events appended (and the seconds it took) by `appenders` tasks
/// appending commands of `batch` events each for `seconds`; `slice` tells
/// the runs of one workload apart (their idempotency keys).
async fn append_slice(log: &EventLog, appenders: usize, batch: usize, seconds: Duration, slice: usize) -> (u64, f64) {
    let start = Instant::now();
    let deadline = start + seconds;
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("license/bench-{appenders}-{batch}-{task}")).unwrap();
                let mut appended = 0u64;
                while Instant::now() < deadline {
                    let events = (0..batch as u64).map(|i| event(appended + i)).collect();
                    let key = format!("{}-{slice}-{appended}", stream.as_str());
                    log.append_one(command(&stream, key, events)).await.unwrap().unwrap();
                    appended += batch as u64;
                }
                appended
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    (total, start.elapsed().as_secs_f64())
}

/// Slices each workload measured against its limit is cut into, the two
/// alternating, so both see the same disk and the same neighbours (this
/// machine's fsync latency moves ×5 within seconds under others' builds).
const SLICES: usize = 3;

/// Events per second of the log and rows per second of its raw limit
/// (`raw_batch` rows per transaction), measured in alternating slices of
/// `seconds` / `SLICES`, each on the same database.
async fn interleaved(
    backend: &Backend,
    log: &EventLog,
    (appenders, batch): (usize, usize),
    raw_batch: usize,
    seconds: Duration,
) -> (f64, f64) {
    let (mut log_sum, mut raw_sum) = ((0, 0.0), (0, 0.0));
    for slice in 0..SLICES {
        let (events, elapsed) = append_slice(log, appenders, batch, seconds / SLICES as u32, slice).await;
        log_sum = (log_sum.0 + events, log_sum.1 + elapsed);
        let (rows, elapsed) = raw_slice(backend, raw_batch, seconds / SLICES as u32).await;
        raw_sum = (raw_sum.0 + rows, raw_sum.1 + elapsed);
    }
    (log_sum.0 as f64 / log_sum.1, raw_sum.0 as f64 / raw_sum.1)
}

/// Events per second of `appenders` tasks appending commands of `batch`
/// events each for `seconds`.
async fn append_rate(log: &EventLog, appenders: usize, batch: usize, seconds: Duration) -> f64 {
    let (events, elapsed) = append_slice(log, appenders, batch, seconds, 0).await;
    events as f64 / elapsed
}

const RAW_COLUMNS: &str = "sequence, event_id, stream_id, stream_revision, event_type, schema_version, occurred_at_us, \
    recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash, format, salt";

/// Rows inserted in `seconds` (and the seconds it took) inserting the
/// same bytes without the log's work, `batch` rows per transaction. Called
/// again, it goes on appending to the same raw table.
async fn raw_slice(backend: &Backend, batch: usize, seconds: Duration) -> (u64, f64) {
    let metadata = domain::Metadata { actor: Some("bench".into()), ..Default::default() }.encode();
    let start = Instant::now();
    let rows = match backend {
        Backend::Sqlite(path) => raw_rows_sqlite(path, metadata, batch, start + seconds).await,
        Backend::Postgres(options) => raw_rows_postgres(options, &metadata, batch, start + seconds).await,
    };
    (rows as u64, start.elapsed().as_secs_f64())
}

/// The hash and salt columns' bytes in the raw baseline (records of
/// format 2, as the log writes).
const RAW_HASH: [u8; 32] = [7; 32];

/// Rows inserted into a raw copy of the SQLite events table until
/// `deadline`, `batch` per transaction, with the same driver, connection
/// settings and statement reuse the log's SQLite backend uses, and as the
/// log's writer does, each transaction on a blocking thread the async task
/// awaits. (Run in one tight loop on one thread instead, the one-row
/// transactions measured 256–520/s against the log's 1,300–2,700: on this
/// VM a core left idle while its thread waits in `fsync` wakes up late; the
/// log's runtime keeps its cores busy. A thread spinning beside the tight
/// loop took it from 523 to 1,866/s.)
async fn raw_rows_sqlite(path: &std::path::Path, metadata: Vec<u8>, batch: usize, deadline: Instant) -> i64 {
    let path = path.to_owned();
    let (connection, first) = tokio::task::spawn_blocking(move || raw_table_sqlite(&path, batch)).await.unwrap();
    let connection = Arc::new(std::sync::Mutex::new(connection));
    let metadata = Arc::new(metadata);
    let mut sequence = first;
    while Instant::now() < deadline {
        let (connection, metadata) = (connection.clone(), metadata.clone());
        sequence = tokio::task::spawn_blocking(move || {
            raw_transaction_sqlite(&mut connection.lock().unwrap(), &metadata, batch, sequence)
        })
        .await
        .unwrap();
    }
    sequence - first
}

/// A connection to the log's file and its raw table for `batch`-row
/// transactions, created as the events table is (its rowid the sequence,
/// the same unique indexes), and the last sequence it holds.
fn raw_table_sqlite(path: &std::path::Path, batch: usize) -> (rusqlite::Connection, i64) {
    let connection = raw_connection_sqlite(path);
    let definition: String = connection
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'", [], |row| row.get(0))
        .unwrap();
    let table = format!("raw_events_{batch}");
    connection
        .execute_batch(&format!(
            "{};",
            definition.replacen("CREATE TABLE events", &format!("CREATE TABLE IF NOT EXISTS {table}"), 1)
        ))
        .unwrap();
    let last =
        connection.query_row(&format!("SELECT coalesce(max(sequence), 0) FROM {table}"), [], |row| row.get(0)).unwrap();
    (connection, last)
}

/// One durable transaction of `batch` raw rows after `sequence`; the new
/// last sequence.
fn raw_transaction_sqlite(connection: &mut rusqlite::Connection, metadata: &[u8], batch: usize, sequence: i64) -> i64 {
    let hash = RAW_HASH.to_vec();
    let mut sequence = sequence;
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    {
        let mut insert = tx
            .prepare_cached(&format!(
                "INSERT INTO raw_events_{batch} ({RAW_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))
            .unwrap();
        for _ in 0..batch {
            sequence += 1;
            let e = event(sequence as u64);
            insert
                .execute(rusqlite::params![
                    sequence,
                    &e.event_id.as_bytes()[..],
                    "license/raw",
                    sequence,
                    e.event_type,
                    1,
                    0,
                    0,
                    "key",
                    metadata,
                    hash,
                    e.payload,
                    hash,
                    hash,
                    hash,
                    2,
                    hash
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    sequence
}

/// A connection set up as the log's writer is (`ledger_store::sqlite`'s
/// `connect`): the same flags and pragmas.
fn raw_connection_sqlite(path: &std::path::Path) -> rusqlite::Connection {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(path, flags).unwrap();
    connection.busy_timeout(Duration::from_secs(30)).unwrap();
    connection.pragma_update(None, "synchronous", "FULL").unwrap();
    connection.pragma_update(None, "secure_delete", "ON").unwrap();
    connection
}

/// Rows inserted into a raw copy of the PostgreSQL events table until
/// `deadline`, `batch` rows per statement, each statement its own
/// transaction (one round trip).
async fn raw_rows_postgres(
    options: &sqlx::postgres::PgConnectOptions,
    metadata: &[u8],
    batch: usize,
    deadline: Instant,
) -> i64 {
    let hash = RAW_HASH.to_vec();
    let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
    let table = format!("raw_events_{batch}");
    sqlx::query(&format!("CREATE TABLE IF NOT EXISTS {table} (LIKE events INCLUDING INDEXES)"))
        .execute(&pool)
        .await
        .unwrap();
    let first: i64 =
        sqlx::query_scalar(&format!("SELECT coalesce(max(sequence), 0) FROM {table}")).fetch_one(&pool).await.unwrap();
    let statement = format!(
        "INSERT INTO {table} ({RAW_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], \
         $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bytea[], \
         $11::bytea[], $12::bytea[], $13::bytea[], $14::bytea[], $15::bytea[], $16::integer[], $17::bytea[])"
    );
    let mut sequence = first;
    while Instant::now() < deadline {
        let events: Vec<NewEvent> = (0..batch).map(|i| event(i as u64)).collect();
        let sequences: Vec<i64> = (0..batch as i64).map(|i| sequence + 1 + i).collect();
        sequence += batch as i64;
        sqlx::query(&statement)
            .bind(&sequences)
            .bind(events.iter().map(|e| e.event_id.0).collect::<Vec<_>>())
            .bind(vec!["license/raw"; batch])
            .bind(&sequences)
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(vec![1i64; batch])
            .bind(vec![0i64; batch])
            .bind(vec![0i64; batch])
            .bind(vec![Some("key"); batch])
            .bind(vec![metadata.to_vec(); batch])
            .bind(vec![hash.clone(); batch])
            .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
            .bind(vec![hash.clone(); batch])
            .bind(vec![hash.clone(); batch])
            .bind(vec![hash.clone(); batch])
            .bind(vec![2i32; batch])
            .bind(vec![hash.clone(); batch])
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    sequence - first
}

/// The append limits of one backend: its two raw inserts.
struct Limits {
    raw_row: f64,
    raw_batch: f64,
}

/// One line of the table: the log's figure, the limit it should approach,
/// the ratio and, where the issue sets one, the target ratio.
fn row(backend: &str, what: &str, rate: f64, limit: (&str, f64), target: Option<f64>) {
    let (limit_name, limit_rate) = limit;
    let ratio = rate / limit_rate;
    let target = match target {
        Some(t) if ratio >= t => format!("≥ {t:.1}: met"),
        Some(t) => format!("≥ {t:.1}: **missed**"),
        None => "–".to_owned(),
    };
    println!("| {backend} | {what} | {rate:>9.0} | {limit_name} | {limit_rate:>9.0} | {ratio:.2} | {target} |");
}

/// The target ratios for this backend: (1 appender, 64 appenders,
/// 1,000-event commands, verify).
fn targets(name: &str) -> [Option<f64>; 4] {
    if name == "SQLite" { [None, Some(0.3), Some(0.7), Some(0.5)] } else { [Some(0.8), None, Some(0.8), Some(0.3)] }
}

const RAW_ROW: &str = "raw INSERT, 1 row per transaction";
const RAW_BATCH_NAME: &str = "raw INSERT, 1,000 rows per transaction";

/// The log's append figures and the raw limits on the same database: the
/// log's 1 appender alternating with the raw one-row insert, its
/// 1,000-event commands with the raw batch, then the rest; then the rows.
async fn bench_appends(name: &str, backend: &Backend, log: &EventLog, seconds: Duration) -> Limits {
    let (one_appender, raw_row) = interleaved(backend, log, (1, 1), 1, seconds).await;
    let (thousand_events, raw_batch) = interleaved(backend, log, (1, 1000), RAW_BATCH, seconds).await;
    let mut rates = vec![one_appender];
    for (appenders, batch) in [(8, 1), (64, 1), (1, 100)] {
        rates.push(append_rate(log, appenders, batch, seconds).await);
    }
    rates.push(thousand_events);
    let limits = Limits { raw_row, raw_batch };
    let [one, many, thousand, _] = targets(name);
    for (appenders, rate) in [1, 8, 64].into_iter().zip(&rates) {
        let (who, limit, target) = match appenders {
            1 => ("1 appender".to_owned(), (RAW_ROW, limits.raw_row), one),
            64 => ("64 appenders".to_owned(), (RAW_BATCH_NAME, limits.raw_batch), many),
            n => (format!("{n} appenders"), (RAW_BATCH_NAME, limits.raw_batch), None),
        };
        row(name, &format!("{who}, 1-event commands"), *rate, limit, target);
    }
    for ((batch, target), rate) in [(100, None), (1000, thousand)].into_iter().zip(&rates[3..]) {
        row(name, &format!("1 appender, {batch}-event commands"), *rate, (RAW_BATCH_NAME, limits.raw_batch), target);
    }
    limits
}

async fn bench(name: &str, backend: Backend, seconds: Duration, verify_events: u64) {
    let log = backend.open().await;
    let limits = bench_appends(name, &backend, &log, seconds).await;

    // Grow the log to `verify_events` with large commands, then verify it.
    let head = log.head().await.unwrap().sequence;
    let stream = StreamId::new("license/bench-verify").unwrap();
    let mut sequence = head;
    while sequence < verify_events {
        let n = (verify_events - sequence).min(4000) as usize;
        let events = (0..n as u64).map(|i| event(sequence + i)).collect();
        log.append_one(command(&stream, format!("verify-{sequence}"), events)).await.unwrap().unwrap();
        sequence += n as u64;
    }
    // The hashing limit is measured just before `verify`, under the same
    // load, for the format the log writes.
    // (The first record: the log may have held `verify_events` already.)
    let format = log.read_page(1..=1, 1).await.unwrap()[0].format;
    let hashing = ledger_store::testing::hashing_rate(format, verify_events, PAYLOAD_BYTES);
    let start = Instant::now();
    let report = log.verify(1..=u64::MAX).await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(report.failure, None);
    row(
        name,
        &format!("verify {} events ({elapsed:.2} s)", report.checked),
        report.checked as f64 / elapsed,
        (&format!("hashing, version {format} records, 1 core"), hashing),
        targets(name)[3],
    );
    println!("| {name} | {RAW_ROW} |  |  | {:>9.0} |  |  |", limits.raw_row);
    println!("| {name} | {RAW_BATCH_NAME} |  |  | {:>9.0} |  |  |", limits.raw_batch);
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let seconds =
        Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0));
    let verify_events = std::env::var("BENCH_VERIFY_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    println!("| backend | workload | the log (/s) | the limit it should approach | limit (/s) | ratio | target |");
    println!("|---|---|---:|---|---:|---:|---|");
    let dir = tempfile::tempdir().unwrap();
    bench("SQLite", Backend::Sqlite(dir.path().join("bench.sqlite")), seconds, verify_events).await;
    if let Some(url) = testing::postgres_url("PostgreSQL benchmark") {
        let options = Box::new(testing::fresh_schema(&url).await.options);
        bench("PostgreSQL", Backend::Postgres(options), seconds, verify_events).await;
    }
}

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
//! The raw limits are measured after the log's append runs on the same
//! database.
//!
//! The raw baselines do no hashing, ordering, idempotency or revision
//! checks. `BENCH_SECONDS` (default 3) sets each append run's length;
//! `BENCH_VERIFY_EVENTS` (default 1,000,000) the log size for `verify` and
//! the number of records the hashing limit hashes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{EventId, RecordHeader, StreamId, Timestamp};
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

/// Events per second of `appenders` tasks appending commands of `batch`
/// events each for `seconds`.
async fn append_rate(log: &EventLog, appenders: usize, batch: usize, seconds: Duration) -> f64 {
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
                    let key = format!("{}-{appended}", stream.as_str());
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
    total as f64 / start.elapsed().as_secs_f64()
}

const RAW_COLUMNS: &str = "sequence, event_id, stream_id, stream_revision, event_type, schema_version, occurred_at_us, \
    recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash, format, salt";

/// Rows per second inserting the same bytes without the log's work,
/// `batch` rows per transaction.
async fn raw_rate(backend: &Backend, batch: usize, seconds: Duration) -> f64 {
    let metadata = domain::Metadata { actor: Some("bench".into()), ..Default::default() }.encode();
    let start = Instant::now();
    let rows = match backend {
        Backend::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || raw_rows_sqlite(&path, &metadata, batch, start + seconds))
                .await
                .unwrap()
        }
        Backend::Postgres(options) => raw_rows_postgres(options, &metadata, batch, start + seconds).await,
    };
    rows as f64 / start.elapsed().as_secs_f64()
}

/// The hash and salt columns' bytes in the raw baseline (records of
/// format 2, as the log writes).
const RAW_HASH: [u8; 32] = [7; 32];

/// Rows inserted into a raw copy of the SQLite events table until
/// `deadline`, `batch` per transaction, with the same driver and statement
/// reuse the log's SQLite backend uses.
fn raw_rows_sqlite(path: &std::path::Path, metadata: &[u8], batch: usize, deadline: Instant) -> i64 {
    let hash = RAW_HASH.to_vec();
    let mut connection = rusqlite::Connection::open(path).unwrap();
    connection.pragma_update(None, "synchronous", "FULL").unwrap();
    connection
        .execute_batch(&format!(
            "CREATE TABLE raw_events_{batch} AS SELECT * FROM events WHERE 0; \
             CREATE UNIQUE INDEX raw_event_id_{batch} ON raw_events_{batch} (event_id); \
             CREATE UNIQUE INDEX raw_stream_{batch} ON raw_events_{batch} (stream_id, stream_revision);"
        ))
        .unwrap();
    let mut sequence = 0i64;
    while Instant::now() < deadline {
        let tx = connection.transaction().unwrap();
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
    }
    sequence
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
    sqlx::query(&format!("CREATE TABLE {table} (LIKE events INCLUDING INDEXES)")).execute(&pool).await.unwrap();
    let statement = format!(
        "INSERT INTO {table} ({RAW_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], \
         $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bytea[], \
         $11::bytea[], $12::bytea[], $13::bytea[], $14::bytea[], $15::bytea[], $16::integer[], $17::bytea[])"
    );
    let mut sequence = 0i64;
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
    sequence
}

/// Distinct records the hashing limit cycles over (its working set, ~30 MB
/// of metadata and payload: larger than the caches, as a log is).
const HASH_RECORDS: usize = 100_000;

/// The hashing limit: records per second of a bare single-core loop
/// computing, for `count` records like the `verify` run's, the hashes the
/// record `format` computes per record: metadata and payload hashes
/// (version 2: over the record's salt first), the leaf over the canonical
/// header and those two, and the chain.
fn hash_rate(format: u8, count: u64) -> f64 {
    use domain::record::{self, HEADER_FORMAT_V2};
    let stream = StreamId::new("license/bench-verify").unwrap();
    let metadata = domain::Metadata { actor: Some("bench".into()), ..Default::default() }.encode();
    let records: Vec<_> = (0..HASH_RECORDS.min(count as usize) as u64)
        .map(|n| {
            let e = event(n);
            let header = RecordHeader {
                sequence: n + 1,
                event_id: e.event_id,
                stream_id: stream.clone(),
                stream_revision: n + 1,
                event_type: e.event_type,
                schema_version: e.schema_version,
                occurred_at: e.occurred_at,
                recorded_at: e.occurred_at,
                idempotency_key: Some(format!("verify-{}", n / 4000 * 4000)),
            };
            let mut salt = [0u8; domain::record::SALT_BYTES];
            salt[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            (header, salt, metadata.clone(), e.payload)
        })
        .collect();
    let start = Instant::now();
    let mut chain = record::CHAIN_GENESIS;
    for (header, salt, metadata, payload) in records.iter().cycle().take(count as usize) {
        let (metadata_hash, payload_hash) = if format == HEADER_FORMAT_V2 {
            (record::metadata_hash_v2(salt, metadata), record::payload_hash_v2(salt, payload))
        } else {
            (record::metadata_hash(metadata), record::payload_hash(payload))
        };
        let leaf = record::leaf_hash_as(format, header, &metadata_hash, &payload_hash);
        chain = record::chain_hash(&chain, &leaf);
    }
    std::hint::black_box(chain);
    count as f64 / start.elapsed().as_secs_f64()
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

/// The log's append figures, then the raw limits on the same database
/// (after the log's runs, so neither measures a WAL file still growing),
/// then the rows.
async fn bench_appends(name: &str, backend: &Backend, log: &EventLog, seconds: Duration) -> Limits {
    let mut rates = Vec::new();
    for (appenders, batch) in [(1, 1), (8, 1), (64, 1), (1, 100), (1, 1000)] {
        rates.push(append_rate(log, appenders, batch, seconds).await);
    }
    let limits =
        Limits { raw_row: raw_rate(backend, 1, seconds).await, raw_batch: raw_rate(backend, RAW_BATCH, seconds).await };
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
    let format = log.read_page(head + 1..=head + 1, 1).await.unwrap()[0].format;
    let hashing = hash_rate(format, verify_events);
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

//! Durable append throughput of the log, against a raw-insert baseline, and
//! `verify` throughput. Run with `cargo bench -p ledger-store --bench
//! append`; PostgreSQL rows need `DATABASE_URL`. Prints a Markdown table.
//!
//! Payloads are 300 bytes. "N appenders" are N tasks each appending
//! single-event commands with an idempotency key, as the server's commands
//! do; "batch B" is one task appending commands of B events. The raw
//! baseline inserts the same bytes into a table with the same columns and
//! indexes, 1,000 rows per transaction, without hashing, ordering,
//! idempotency or revision checks.
//!
//! `BENCH_SECONDS` (default 3) sets each append run's length;
//! `BENCH_VERIFY_EVENTS` (default 1,000,000) the log size for `verify`.

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
    recorded_at_us, idempotency_key, metadata, metadata_hash, payload, payload_hash, leaf_hash, chain_hash";

/// Rows per second inserting the same bytes without the log's work.
async fn raw_rate(backend: &Backend, seconds: Duration) -> f64 {
    let metadata = domain::Metadata { actor: Some("bench".into()), ..Default::default() }.encode();
    let start = Instant::now();
    let rows = match backend {
        Backend::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || raw_rows_sqlite(&path, &metadata, start + seconds)).await.unwrap()
        }
        Backend::Postgres(options) => raw_rows_postgres(options, &metadata, start + seconds).await,
    };
    rows as f64 / start.elapsed().as_secs_f64()
}

/// The hash columns' bytes in the raw baseline.
const RAW_HASH: [u8; 32] = [7; 32];

/// Rows inserted into a raw copy of the SQLite events table until
/// `deadline`, with the same driver and statement reuse the log's SQLite
/// backend uses.
fn raw_rows_sqlite(path: &std::path::Path, metadata: &[u8], deadline: Instant) -> i64 {
    let hash = RAW_HASH.to_vec();
    let mut connection = rusqlite::Connection::open(path).unwrap();
    connection.pragma_update(None, "synchronous", "FULL").unwrap();
    connection
        .execute_batch(
            "CREATE TABLE raw_events AS SELECT * FROM events WHERE 0; \
             CREATE UNIQUE INDEX raw_event_id ON raw_events (event_id); \
             CREATE UNIQUE INDEX raw_stream ON raw_events (stream_id, stream_revision);",
        )
        .unwrap();
    let mut sequence = 0i64;
    while Instant::now() < deadline {
        let tx = connection.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO raw_events ({RAW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ))
                .unwrap();
            for _ in 0..RAW_BATCH {
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
/// `deadline`, a batch per statement.
async fn raw_rows_postgres(options: &sqlx::postgres::PgConnectOptions, metadata: &[u8], deadline: Instant) -> i64 {
    let hash = RAW_HASH.to_vec();
    let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING INDEXES)").execute(&pool).await.unwrap();
    let mut sequence = 0i64;
    while Instant::now() < deadline {
        let events: Vec<NewEvent> = (0..RAW_BATCH).map(|i| event(i as u64)).collect();
        let sequences: Vec<i64> = (0..RAW_BATCH as i64).map(|i| sequence + 1 + i).collect();
        sequence += RAW_BATCH as i64;
        let n = RAW_BATCH;
        sqlx::query(&format!(
            "INSERT INTO raw_events ({RAW_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], \
             $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bytea[], \
             $11::bytea[], $12::bytea[], $13::bytea[], $14::bytea[], $15::bytea[])"
        ))
        .bind(&sequences)
        .bind(events.iter().map(|e| e.event_id.0).collect::<Vec<_>>())
        .bind(vec!["license/raw"; n])
        .bind(&sequences)
        .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(vec![1i64; n])
        .bind(vec![0i64; n])
        .bind(vec![0i64; n])
        .bind(vec![Some("key"); n])
        .bind(vec![metadata.to_vec(); n])
        .bind(vec![hash.clone(); n])
        .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
        .bind(vec![hash.clone(); n])
        .bind(vec![hash.clone(); n])
        .bind(vec![hash.clone(); n])
        .execute(&pool)
        .await
        .unwrap();
    }
    sequence
}

fn row(backend: &str, what: &str, rate: f64, note: &str) {
    println!("| {backend} | {what} | {rate:>10.0} | {note} |");
}

async fn bench(name: &str, backend: Backend, seconds: Duration, verify_events: u64) {
    let log = backend.open().await;
    for appenders in [1, 8, 64] {
        let rate = append_rate(&log, appenders, 1, seconds).await;
        let who = if appenders == 1 { "1 appender".to_owned() } else { format!("{appenders} appenders") };
        row(name, &format!("{who}, 1-event commands"), rate, "events/s");
    }
    let mut batch_1000 = 0.0;
    for batch in [100, 1000] {
        let rate = append_rate(&log, 1, batch, seconds).await;
        row(name, &format!("1 appender, {batch}-event commands"), rate, "events/s");
        batch_1000 = rate;
    }
    let raw = raw_rate(&backend, seconds).await;
    row(name, "raw INSERT baseline, 1,000 rows per transaction", raw, "rows/s");
    println!("| {name} | log ÷ raw at batch 1,000 | {:.2} | ratio |", batch_1000 / raw);

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
    let start = Instant::now();
    let report = log.verify(1..=u64::MAX).await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(report.failure, None);
    row(
        name,
        &format!("verify {} events", report.checked),
        report.checked as f64 / elapsed,
        &format!("events/s ({elapsed:.2} s)"),
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let seconds =
        Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0));
    let verify_events = std::env::var("BENCH_VERIFY_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    println!("| backend | workload | rate | unit |");
    println!("|---|---|---:|---|");
    let dir = tempfile::tempdir().unwrap();
    bench("SQLite", Backend::Sqlite(dir.path().join("bench.sqlite")), seconds, verify_events).await;
    if let Some(url) = testing::postgres_url("PostgreSQL benchmark") {
        bench(
            "PostgreSQL",
            Backend::Postgres(Box::new(testing::fresh_schema(&url).await.options)),
            seconds,
            verify_events,
        )
        .await;
    }
}

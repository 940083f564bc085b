//! Apply throughput of the read-model runner: the Merkle projection and a
//! validation-statistics counter projection (per license: count, last time,
//! code and deployment, written with "add to" upserts) over a log of
//! synthetic `LicenseValidated` records on 1,000 licenses. Run with `cargo
//! bench -p ledger-projections --bench readmodels`; PostgreSQL rows need
//! `DATABASE_URL`. Prints a Markdown table.
//!
//! `BENCH_RECORDS` (default 1,000,000) sets the log's size. The databases
//! live in a temporary directory (SQLite) or a fresh schema (PostgreSQL),
//! both removed at the end.

use std::sync::Arc;
use std::time::Instant;

use domain::event::LedgerEvent;
use domain::license::ValidationCode;
use domain::record::Record;
use domain::validation::{LicenseValidated, ValidationEvent};
use domain::{EventId, LicenseId, Metadata, Timestamp};
use ledger_projections::db::merkle::{MERKLE_NODES, MerkleProjection};
use ledger_projections::db::{ApplyError, Changes, Column, Projection, ReadModelDb, Runner, Table, Value};
use store::{Command, EventLog, ExpectedRevision, NewEvent, SystemClock, testing};

const LICENSES: u128 = 1000;
const APPEND_COMMANDS: usize = 2000;

const STATS: Table = Table::new(
    "bench_validation_stats",
    &[
        Column::blob("license_id"),
        Column::int("count").counter(),
        Column::int("last_at_us"),
        Column::text("last_code"),
        Column::text("last_deployment"),
    ],
    1,
);

struct ValidationStats;

impl Projection for ValidationStats {
    fn name(&self) -> &'static str {
        "bench-validation-stats"
    }

    fn tables(&self) -> &'static [Table] {
        &[STATS]
    }

    fn apply(&mut self, changes: &mut Changes<'_>, _: &Record, event: Option<&LedgerEvent>) -> Result<(), ApplyError> {
        if let Some(LedgerEvent::Validation(ValidationEvent::LicenseValidated(validated))) = event {
            changes.add(
                &STATS,
                vec![
                    validated.license_id.0.into(),
                    Value::Int(1),
                    Value::Int(validated.at.as_micros()),
                    format!("{:?}", validated.code).into(),
                    validated.deployment_id.as_str().into(),
                ],
            )?;
        }
        Ok(())
    }
}

async fn fill(log: &EventLog, records: u64) {
    let metadata = Metadata { actor: Some("license-client".into()), ..Metadata::default() }.encode();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut appended = 0u64;
    while appended < records {
        let commands: Vec<Command> = (0..APPEND_COMMANDS.min((records - appended) as usize))
            .map(|i| {
                let n = appended + i as u64;
                let license_id = LicenseId(uuid::Uuid::from_u128(1 + u128::from(n) % LICENSES));
                let at = Timestamp::from_micros(1_767_225_600_000_000 + n as i64 * 1000);
                let event = ValidationEvent::LicenseValidated(LicenseValidated {
                    license_id,
                    validation_id: uuid::Uuid::from_u128(u128::from(n)),
                    deployment_id: format!("deployment-{}", n % 3),
                    code: ValidationCode::Valid,
                    client_version: Some("1.4.2".into()),
                    at,
                });
                let mut new = NewEvent::from_event(&event, EventId(uuid::Uuid::now_v7()), at, &Metadata::default());
                new.metadata = metadata.clone();
                Command {
                    stream_id: domain::validation::stream(license_id, day),
                    expected: ExpectedRevision::Any,
                    idempotency: None,
                    events: vec![new],
                }
            })
            .collect();
        appended += commands.len() as u64;
        for result in log.append(commands).await.unwrap() {
            result.unwrap();
        }
    }
}

fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn bench(name: &str, log: EventLog, db: ReadModelDb, records: u64) {
    let fill_started = Instant::now();
    fill(&log, records).await;
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let projections: Vec<Box<dyn Projection>> = vec![Box::new(MerkleProjection::new()), Box::new(ValidationStats)];
    let mut runner = Runner::new(log, db.clone(), projections).unwrap();
    let started = Instant::now();
    let applied = runner.catch_up().await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(applied, records);
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    let nodes = db.query(&count(MERKLE_NODES.name), vec![]).await.unwrap()[0].int(0).unwrap();
    let stats = db.query(&count(STATS.name), vec![]).await.unwrap()[0].int(0).unwrap();
    println!(
        "| {name} | {records} | {fill_seconds:.1} | {seconds:.1} | {:.0} | {nodes} | {stats} | {} |",
        records as f64 / seconds,
        rss_mb()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let records: u64 = std::env::var("BENCH_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    println!("| backend | records | fill s | apply s | records/s | merkle rows | stats rows | RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(SystemClock)).await.unwrap();
        let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
        db.execute_script(
            "CREATE TABLE bench_validation_stats (license_id BLOB PRIMARY KEY, count INTEGER NOT NULL, \
             last_at_us INTEGER NOT NULL, last_code TEXT NOT NULL, last_deployment TEXT NOT NULL) WITHOUT ROWID",
        )
        .await
        .unwrap();
        bench("SQLite", log, db, records).await;
    }
    if let Some(url) = testing::postgres_url("readmodels bench") {
        let schema = testing::fresh_schema(&url).await;
        let log = EventLog::open_postgres(schema.options.clone(), Arc::new(SystemClock)).await.unwrap();
        let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
        db.execute_script(
            "CREATE TABLE bench_validation_stats (license_id BYTEA PRIMARY KEY, count BIGINT NOT NULL, \
             last_at_us BIGINT NOT NULL, last_code TEXT NOT NULL, last_deployment TEXT NOT NULL)",
        )
        .await
        .unwrap();
        bench("PostgreSQL", log, db.clone(), records).await;
        db.execute_script(&format!("DROP SCHEMA {} CASCADE", schema.name)).await.unwrap();
    }
}

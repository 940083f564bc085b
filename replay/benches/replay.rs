//! `replay verify` and `replay rebuild` over a long history, through the
//! real binary. Run with `cargo bench -p ledger-replay --bench replay`
//! (with `DATABASE_URL` for the PostgreSQL rows); prints a Markdown table.
//!
//! The history (`BENCH_REPLAY_EVENTS`, default 1,000,000): 1,000
//! organizations, each with a starter subscription, then usage reports
//! (three deployments, every day of a month, over and over) on their
//! subscriptions, appended 1,000 to a command, and a signed checkpoint
//! kept in the log every 100,000 records. Every record is a real event
//! that `verify` decodes and the projections apply.
//!
//! `replay verify` is reported whole and by phase (its integrity phase,
//! with its ratio to the hashing limit measured in the same run by
//! `store::testing::hashing_rate` over records of the same payload size,
//! and its rebuild phase).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use domain::catalog::Tier;
use domain::checkpoint::{CHECKPOINT_STREAM, Checkpoint, CheckpointEvent, CheckpointSigned};
use domain::merkle::MerkleTree;
use domain::organization::{OrganizationCreated, OrganizationEvent};
use domain::record::Hash;
use domain::subscription::{SubscriptionCreated, SubscriptionEvent};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::{EventId, LicenseId, Metadata, OrganizationId, StreamId, SubscriptionId, Timestamp};
use ed25519_dalek::SigningKey;
use store::{Command, EventLog, ExpectedRevision, NewEvent};

const ORGANIZATIONS: u64 = 1_000;
const COMMAND_EVENTS: u64 = 1_000;
const CHECKPOINT_EVERY: u64 = 100_000;

struct Clock;

impl domain::Clock for Clock {
    fn now(&self) -> Timestamp {
        Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
    }
}

fn id(kind: u64, n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0194_a000_0000_7000_8000_0000_0000_0000 | (u128::from(kind) << 40) | u128::from(n))
}

fn new_event<E: domain::event::StoredEvent>(event: &E) -> NewEvent {
    let metadata =
        Metadata { actor: Some("bench".into()), source_ip: Some("203.0.113.7".into()), ..Default::default() };
    NewEvent::from_event(event, EventId(uuid::Uuid::now_v7()), Timestamp::from_micros(1_767_225_600_000_000), &metadata)
}

async fn append(log: &EventLog, stream: StreamId, events: Vec<NewEvent>) {
    let command = Command { stream_id: stream, expected: ExpectedRevision::Any, idempotency: None, events };
    log.append_one(command).await.unwrap().unwrap();
}

/// Writes the history; returns the number of records.
async fn fill(log: &EventLog, total: u64, key: &SigningKey) -> u64 {
    let mut written = subscribe(log).await;
    let mut n = 0u64;
    let mut tree = MerkleTree::new();
    let mut chain = domain::record::CHAIN_GENESIS;
    while written < total {
        let subscription = SubscriptionId(id(2, n % ORGANIZATIONS));
        let count = COMMAND_EVENTS.min(total - written).min(CHECKPOINT_EVERY - written % CHECKPOINT_EVERY);
        let events = (0..count)
            .map(|i| {
                let report = UsageReported {
                    subscription_id: subscription,
                    license_id: LicenseId(id(3, n % ORGANIZATIONS)),
                    deployment_id: format!("edge-{}", i % 3),
                    day: day(i / 3),
                    metrics: Metrics {
                        active_users: i % 5,
                        data_volume_gb: (i % 100).into(),
                        api_calls_count: i,
                        training_hours: 0.into(),
                    },
                };
                new_event(&UsageEvent::UsageReported(report))
            })
            .collect();
        append(log, domain::usage::stream(subscription, day(0)), events).await;
        written += count;
        n += 1;
        if written % CHECKPOINT_EVERY == 0 && written < total {
            keep_checkpoint(log, &mut tree, &mut chain, written, key).await;
            written += 1;
        }
    }
    written
}

/// Day `n` of January 2026 (mod 28).
fn day(n: u64) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(n % 28)
}

/// Every organization and its starter subscription; returns the records
/// written.
async fn subscribe(log: &EventLog) -> u64 {
    for n in 0..ORGANIZATIONS {
        let org = OrganizationId(id(1, n));
        let created = OrganizationCreated {
            id: org,
            name: format!("Org {n}"),
            domain: None,
            industry: None,
            employee_count: Some(100),
        };
        let subscription = SubscriptionId(id(2, n));
        let subscribed = SubscriptionCreated {
            id: subscription,
            organization_id: org,
            tier: Tier::Starter,
            catalog_version: 1,
            start_date: day(0),
            end_date: day(0) + chrono::Days::new(365),
            auto_renew: true,
            max_deployments: 3,
            enterprise_overage_rate: None,
            license_id: LicenseId(id(3, n)),
        };
        append(log, org.stream(), vec![new_event(&OrganizationEvent::OrganizationCreated(created))]).await;
        append(log, subscription.stream(), vec![new_event(&SubscriptionEvent::SubscriptionCreated(subscribed))]).await;
    }
    2 * ORGANIZATIONS
}

/// A checkpoint of the first `written` records, signed and kept in the
/// log; `tree` and `chain` follow the log up to it.
async fn keep_checkpoint(log: &EventLog, tree: &mut MerkleTree, chain: &mut Hash, written: u64, key: &SigningKey) {
    while tree.size() < written {
        for record in log.read_page(tree.size() + 1..=written, 4096).await.unwrap() {
            tree.push_record(&record.leaf_hash);
            *chain = record.chain_hash;
        }
    }
    let checkpoint = Checkpoint {
        origin: "bench".into(),
        size: written,
        root: tree.root(written).unwrap(),
        chain: *chain,
        time: domain::Clock::now(&Clock),
    };
    let note = checkpoint.sign(key).unwrap();
    let event = CheckpointEvent::CheckpointSigned(CheckpointSigned { note });
    append(log, StreamId::new(CHECKPOINT_STREAM).unwrap(), vec![new_event(&event)]).await;
}

/// Runs the binary; returns its wall time and standard output.
fn run(args: &[&str], source: &[String]) -> (f64, String) {
    let started = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .args(source)
        .env_remove("DATABASE_URL")
        .output()
        .expect("replay runs");
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "replay {args:?} failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    (seconds, stdout)
}

fn row(backend: &str, what: &str, records: u64, seconds: f64, against: &str) {
    println!(
        "| {backend} | {what} {records} events | {:.0} | events/s ({seconds:.2} s){against} |",
        records as f64 / seconds
    );
}

/// The seconds `replay verify` reports for a phase (its line starting
/// with `phase`: "… N records in S s (R records/s)").
fn phase_seconds(stdout: &str, phase: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with(phase)).unwrap_or_else(|| panic!("no {phase} line: {stdout}"));
    let after = &line[line.rfind(" records in ").expect("a phase line") + " records in ".len()..];
    after.split(' ').next().and_then(|s| s.parse().ok()).expect("seconds")
}

/// The mean payload size of the history's last records, for the hashing
/// limit over records like these.
async fn payload_bytes(log: &EventLog, records: u64) -> usize {
    let page = log.read_page(records.saturating_sub(999).max(1)..=records, 1000).await.unwrap();
    let bytes: usize = page.iter().map(|r| r.payload.as_ref().map_or(0, Vec::len)).sum();
    bytes / page.len().max(1)
}

async fn bench(backend: &str, log: EventLog, dir: &Path, source: Vec<String>, total: u64) {
    let key = SigningKey::from_bytes(&[9; 32]);
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/checkpoint.ed25519"), key.to_bytes()).unwrap();
    let started = Instant::now();
    let records = fill(&log, total, &key).await;
    eprintln!("{backend}: wrote {records} records in {:.1} s", started.elapsed().as_secs_f64());
    let payload = payload_bytes(&log, records).await;
    drop(log);
    use base64::Engine;
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes());
    let (verify, stdout) = run(&["verify", "--public-key", &public], &source);
    let limit = store::testing::hashing_rate(domain::record::HEADER_FORMAT_V2, records, payload);
    row(backend, "replay verify", records, verify, "");
    let integrity = phase_seconds(&stdout, "integrity (");
    let ratio = records as f64 / integrity / limit;
    row(backend, "replay verify, integrity phase,", records, integrity, &format!("; {ratio:.2} of the hashing limit"));
    row(backend, "replay verify, rebuild phase,", records, phase_seconds(&stdout, "rebuild ("), "");
    println!(
        "| {backend} | hashing limit (one core, {payload}-byte payloads) {records} records | {limit:.0} | records/s |"
    );
    let (rebuild, _) = run(&["rebuild"], &source);
    row(backend, "replay rebuild", records, rebuild, "");
}

#[tokio::main]
async fn main() {
    let total: u64 = std::env::var("BENCH_REPLAY_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("| backend | workload | rate | unit |");
    println!("|---|---|---:|---|");
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(Clock)).await.unwrap();
    bench("SQLite", log, dir.path(), vec!["--data-dir".into(), dir.path().display().to_string()], total).await;
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        let schema = store::testing::fresh_schema(&url).await;
        let log = EventLog::open_postgres(schema.options.clone(), Arc::new(Clock)).await.unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
        let pg_dir = tempfile::tempdir().unwrap();
        bench("PostgreSQL", log, pg_dir.path(), vec!["--database-url".into(), database_url], total).await;
    }
}

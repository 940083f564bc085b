//! The projector's apply rate: every model projection
//! (`ledger_projections::models::all`) and the Merkle projection, applied
//! by the runner over a log of a realistic mix: `BENCH_ORGANIZATIONS`
//! (default 1,000) organizations, each with users, a token, a subscription
//! and its key, then `BENCH_RECORDS` (default 1,000,000) records of which
//! about 70% are validations, 25% usage reports (two deployments per key,
//! a new day every 2,000 records, some reports replaced) and 5% lifecycle
//! events (deployments, add-ons, user changes). Run with `cargo bench -p
//! ledger-projections --bench models`; PostgreSQL rows need
//! `DATABASE_URL`. Prints a Markdown table: records/s of the apply, the
//! resident memory after it, and the peak during it (the peak is reset
//! after the fill, where the kernel allows).

use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use domain::catalog::{Catalog, Tier};
use domain::event::StoredEvent;
use domain::license::{DeploymentActivated, LicenseEvent, LicenseIssued, ValidationCode};
use domain::organization::{
    ApiTokenIssued, OrganizationCreated, OrganizationEvent, Role, SubscriptionStarted, UserAdded,
};
use domain::record::Hash;
use domain::subscription::{AddonAdded, AddonKind, SubscriptionCreated, SubscriptionEvent};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::validation::{LicenseValidated, ValidationEvent};
use domain::{
    AddonId, EventId, LicenseId, Metadata, Money, OrganizationId, StreamId, SubscriptionId, Timestamp, TokenId, UserId,
};
use ledger_projections::db::merkle::MerkleProjection;
use ledger_projections::db::{Projection, ReadModelDb, Runner};
use ledger_projections::models;
use rust_decimal::Decimal;
use store::{Command, EventLog, ExpectedRevision, NewEvent, SystemClock, testing};

const APPEND_COMMANDS: usize = 2_000;
const START: i64 = 1_767_225_600_000_000;

fn id(kind: u128, n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128((kind << 64) | u128::from(n))
}

fn command<E: StoredEvent>(stream: StreamId, event: &E, n: u64) -> Command {
    let metadata = Metadata { actor: Some("bench".into()), ..Metadata::default() };
    let at = Timestamp::from_micros(START + n as i64 * 1_000);
    Command {
        stream_id: stream,
        expected: ExpectedRevision::Any,
        idempotency: None,
        events: vec![NewEvent::from_event(event, EventId(id(99, n)), at, &metadata)],
    }
}

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(n / 2_000)
}

/// An organization with two users, a token, a subscription and its key.
fn organization(o: u64, n: &mut u64) -> Vec<Command> {
    let (org, sub, lic) = (OrganizationId(id(1, o)), SubscriptionId(id(2, o)), LicenseId(id(3, o)));
    let mut next = || {
        *n += 1;
        *n
    };
    let created =
        OrganizationCreated { id: org, name: format!("Org {o}"), domain: None, industry: None, employee_count: None };
    let mut commands = vec![command(org.stream(), &OrganizationEvent::from(created), next())];
    for u in 0..2 {
        let added =
            UserAdded { user_id: UserId(id(4, o * 10 + u)), email: format!("u{u}@{o}.example"), role: Role::Admin };
        commands.push(command(org.stream(), &OrganizationEvent::from(added), next()));
    }
    let token =
        ApiTokenIssued { token_id: TokenId(id(5, o)), role: Role::Admin, token_hash: Hash([1; 32]), expires_at: None };
    commands.push(command(org.stream(), &OrganizationEvent::from(token), next()));
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let subscription = SubscriptionCreated {
        id: sub,
        organization_id: org,
        tier: [Tier::Starter, Tier::Professional, Tier::Enterprise][o as usize % 3],
        catalog_version: 1,
        start_date: start,
        end_date: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
        auto_renew: true,
        max_deployments: 3,
        enterprise_overage_rate: None,
        license_id: lic,
    };
    commands.push(command(sub.stream(), &SubscriptionEvent::from(subscription), next()));
    commands.push(command(
        org.stream(),
        &OrganizationEvent::from(SubscriptionStarted { subscription_id: sub }),
        next(),
    ));
    let issued = LicenseIssued {
        license_id: lic,
        subscription_id: sub,
        organization_id: org,
        nonce: [0; 16],
        key_hash: Hash(*blake3::hash(lic.0.as_bytes()).as_bytes()),
        issued_at: Timestamp::from_micros(START),
    };
    commands.push(command(lic.stream(), &LicenseEvent::from(issued), next()));
    for deployment in 0..2 {
        let activated = DeploymentActivated { deployment_id: format!("dep-{deployment}") };
        commands.push(command(lic.stream(), &LicenseEvent::from(activated), next()));
    }
    commands
}

/// Record `n` of the traffic, on organization `o`.
fn traffic(n: u64, o: u64) -> Command {
    let (sub, lic) = (SubscriptionId(id(2, o)), LicenseId(id(3, o)));
    let deployment = format!("dep-{}", n % 2);
    match n % 20 {
        0..=13 => {
            let validated = LicenseValidated {
                license_id: lic,
                validation_id: id(6, n),
                deployment_id: deployment,
                code: ValidationCode::Valid,
                client_version: Some("1.4.2".into()),
                at: Timestamp::from_micros(START + n as i64 * 1_000),
            };
            command(domain::validation::stream(lic, day(n)), &ValidationEvent::from(validated), n)
        }
        14..=18 => {
            let report = UsageReported {
                subscription_id: sub,
                license_id: lic,
                deployment_id: deployment,
                day: day(n),
                metrics: Metrics {
                    active_users: 3 + n % 5,
                    data_volume_gb: Decimal::new((n % 10_000) as i64, 2),
                    api_calls_count: 1_000 + n % 777,
                    training_hours: Decimal::new((n % 40) as i64, 1),
                },
            };
            command(domain::usage::stream(sub, day(n)), &UsageEvent::from(report), n)
        }
        _ if n % 40 == 19 => {
            let added = UserAdded { user_id: UserId(id(4, n)), email: format!("u{n}@{o}.example"), role: Role::Viewer };
            command(OrganizationId(id(1, o)).stream(), &OrganizationEvent::from(added), n)
        }
        _ => {
            let added = AddonAdded {
                addon_id: AddonId(id(7, n)),
                kind: AddonKind::TrainingSession,
                quantity: 1,
                annual_price: None,
                one_time_price: Some(Money::usd(Decimal::new(500, 0))),
                effective_date: day(n),
            };
            command(sub.stream(), &SubscriptionEvent::from(added), n)
        }
    }
}

async fn append(log: &EventLog, commands: Vec<Command>) {
    for chunk in commands.chunks(APPEND_COMMANDS) {
        for result in log.append(chunk.to_vec()).await.unwrap() {
            result.unwrap();
        }
    }
}

/// Appends the organizations, then the traffic; returns the log's head.
async fn fill(log: &EventLog, organizations: u64, records: u64) -> u64 {
    let mut n = 0;
    let setup: Vec<Command> = (0..organizations).flat_map(|o| organization(o, &mut n)).collect();
    append(log, setup).await;
    let mut appended = 0u64;
    while appended < records {
        let batch = (APPEND_COMMANDS as u64).min(records - appended);
        // A prime stride spreads consecutive records over organizations.
        let commands = (appended..appended + batch).map(|i| traffic(n + 1 + i, (i * 7_919) % organizations)).collect();
        append(log, commands).await;
        appended += batch;
    }
    log.head().await.unwrap().sequence
}

fn status_mb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn bench(name: &str, log: EventLog, db: ReadModelDb, organizations: u64, records: u64) {
    let fill_started = Instant::now();
    let head = fill(&log, organizations, records).await;
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    // Resets the peak resident size (VmHWM), so the peak is the apply's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut projections: Vec<Box<dyn Projection>> = models::all(Catalog::builtin());
    projections.push(Box::new(MerkleProjection::new()));
    let mut runner = Runner::new(log, db.clone(), projections).unwrap();
    let started = Instant::now();
    assert_eq!(runner.catch_up().await.unwrap(), head);
    let seconds = started.elapsed().as_secs_f64();
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    let audit = db.query(&count("rm_audit"), vec![]).await.unwrap()[0].int(0).unwrap();
    let usage = db.query(&count("rm_usage"), vec![]).await.unwrap()[0].int(0).unwrap();
    println!(
        "| {name} | {organizations} | {head} | {fill_seconds:.0} | {seconds:.1} | {:.0} | {audit} | {usage} | {} | {} |",
        head as f64 / seconds,
        status_mb("VmRSS:"),
        status_mb("VmHWM:"),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    let (organizations, records) = (var("BENCH_ORGANIZATIONS", 1_000), var("BENCH_RECORDS", 1_000_000));
    println!(
        "| backend | organizations | records | fill s | apply s | records/s | audit rows | usage rows | RSS MB | peak RSS MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // BENCH_BACKENDS=postgres (or sqlite) runs one backend only.
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite postgres".into());
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_sqlite(&dir.path().join("ledger.sqlite"), Arc::new(SystemClock)).await.unwrap();
        let db = ReadModelDb::open_sqlite(dir.path()).await.unwrap();
        bench("SQLite", log, db, organizations, records).await;
    }
    if let Some(url) = testing::postgres_url("models bench").filter(|_| backends.contains("postgres")) {
        let schema = testing::fresh_schema(&url).await;
        let log = EventLog::open_postgres(schema.options.clone(), Arc::new(SystemClock)).await.unwrap();
        let db = ReadModelDb::open_postgres(schema.options.clone()).await.unwrap();
        bench("PostgreSQL", log, db.clone(), organizations, records).await;
        db.execute_script(&format!("DROP SCHEMA {} CASCADE", schema.name)).await.unwrap();
    }
}

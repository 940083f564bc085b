//! The month's money path at scale. Run with
//! `cargo bench -p ledger-api --bench billing` (PostgreSQL rows need
//! `DATABASE_URL`).
//!
//! - Ingestion: usage reports over HTTP on loopback, 64 keep-alive
//!   connections over 64 licenses, every report appended to the log. The
//!   server runs in this process beside the load generator; both share the
//!   machine's cores. `BENCH_SECONDS` (default 5) sets the length.
//! - The billing run: 10,000 subscriptions, each with a report for every
//!   day of January (320,000 events appended straight to the log), then
//!   `billing::run` for January, timed from the call to the invoices being
//!   appended and projected.

mod support;

use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use domain::catalog::Tier;
use domain::subscription::{SubscriptionCreated, SubscriptionEvent};
use domain::usage::{Metrics, UsageEvent, UsageReported};
use domain::{EventId, LicenseId, Metadata, OrganizationId, SubscriptionId, Timestamp};
use rust_decimal::Decimal;
use serde_json::json;
use store::{Command, EventLog, ExpectedRevision, NewEvent};

const CONNECTIONS: usize = 64;
const SUBSCRIPTIONS: usize = 10_000;

async fn ingestion(name: &str, base: String, seconds: Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let subscriptions = support::subscribe(&client, &base, CONNECTIONS, "professional").await;
    let keys: Vec<String> = subscriptions.iter().map(|s| s["licenseKey"].as_str().unwrap().to_owned()).collect();
    // Reports come from an activated deployment: each key validates once.
    for key in &keys {
        let validation = client.post(format!("{base}/license/validate")).json(&json!({ "licenseKey": key }));
        assert!(validation.send().await.unwrap().status().is_success());
    }
    let keys = keys.into_iter();
    let deadline = Instant::now() + seconds;
    let started = Instant::now();
    let tasks: Vec<_> = keys
        .map(|key| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    // Days 1 to 15 of January (the clock stands on the 15th);
                    // a later report for a day replaces the earlier one.
                    let day = format!("2026-01-{:02}", 1 + n % 15);
                    let body = json!({
                        "licenseKey": key,
                        "reportingPeriod": day,
                        "metrics": { "activeUsers": 3, "dataVolumeGB": 100 + n, "apiCallsCount": n, "trainingHours": 0 },
                    });
                    let at = Instant::now();
                    let response = client.post(format!("{base}/usage/report")).json(&body).send().await.unwrap();
                    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
                    latencies.push(at.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    println!("| {name} | {} |", support::summary(latencies, started.elapsed()));
}

/// Appends 10,000 subscriptions with a report for each day of January.
async fn month_of_usage(log: &EventLog) {
    let now = Timestamp::from_micros(1_767_225_600_000_000);
    let metadata = Metadata::default();
    let january = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut commands = Vec::new();
    for n in 0..SUBSCRIPTIONS {
        let id = SubscriptionId(uuid::Uuid::now_v7());
        let license_id = LicenseId(uuid::Uuid::now_v7());
        let created: SubscriptionEvent = SubscriptionCreated {
            id,
            organization_id: OrganizationId(uuid::Uuid::now_v7()),
            tier: [Tier::Starter, Tier::Professional, Tier::Enterprise][n % 3],
            catalog_version: 1,
            start_date: january,
            end_date: domain::calendar::term_end(january),
            auto_renew: true,
            max_deployments: 1,
            enterprise_overage_rate: None,
            license_id,
        }
        .into();
        commands.push(Command {
            stream_id: id.stream(),
            expected: ExpectedRevision::NoStream,
            idempotency: None,
            events: vec![NewEvent::from_event(&created, EventId(uuid::Uuid::now_v7()), now, &metadata)],
        });
        let reports = (0..31u64)
            .map(|d| {
                let report: UsageEvent = UsageReported {
                    subscription_id: id,
                    license_id,
                    deployment_id: "default".into(),
                    day: january + Days::new(d),
                    metrics: Metrics {
                        active_users: 4,
                        data_volume_gb: Decimal::from(900 + 20 * d + (n as u64 % 7) * 300),
                        api_calls_count: 1_000 + d,
                        training_hours: Decimal::ZERO,
                    },
                }
                .into();
                NewEvent::from_event(&report, EventId(uuid::Uuid::now_v7()), now, &metadata)
            })
            .collect();
        commands.push(Command {
            stream_id: domain::usage::stream(id, january),
            expected: ExpectedRevision::Any,
            idempotency: None,
            events: reports,
        });
        if commands.len() >= 200 {
            for outcome in log.append(std::mem::take(&mut commands)).await.unwrap() {
                outcome.unwrap();
            }
        }
    }
    for outcome in log.append(commands).await.unwrap() {
        outcome.unwrap();
    }
}

async fn billing_run(name: &str, data_dir: &std::path::Path, database_url: Option<String>) {
    let config = support::config(data_dir, database_url, "fixed:2026-02-01T06:00:00Z");
    let state = ledger_api::open(&config).await.unwrap();
    month_of_usage(&state.log).await;
    let head = state.log.head().await.unwrap().sequence;
    state.models.wait_for(head, Duration::from_secs(600)).await.unwrap();

    let started = Instant::now();
    let preview = usecases::billing::run(&state, &usecases::Caller::Operator, "bench", "2026-01", true).await.unwrap();
    let previewed = started.elapsed();
    let started = Instant::now();
    let issued = usecases::billing::run(&state, &usecases::Caller::Operator, "bench", "2026-01", false).await.unwrap();
    let ran = started.elapsed();
    assert_eq!((preview.invoices.len(), issued.invoices.len()), (SUBSCRIPTIONS, SUBSCRIPTIONS));
    let again = usecases::billing::run(&state, &usecases::Caller::Operator, "bench", "2026-01", false).await.unwrap();
    assert!(again.invoices.is_empty());
    println!("| {name} | {SUBSCRIPTIONS} | {head} | {:.3} | {:.3} |", previewed.as_secs_f64(), ran.as_secs_f64());
}

fn main() {
    let seconds = support::seconds();
    let clock = "fixed:2026-01-15T12:00:00Z";
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| backend | usage reports | per second | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        let dir = tempfile::tempdir().unwrap();
        let (base, _) = support::serve(&support::config(dir.path(), None, clock)).await;
        ingestion("SQLite", base, seconds).await;
        if let Some(url) = support::postgres("PostgreSQL ingestion benchmark").await {
            let dir = tempfile::tempdir().unwrap();
            let (base, _) = support::serve(&support::config(dir.path(), Some(url), clock)).await;
            ingestion("PostgreSQL", base, seconds).await;
        }

        println!();
        println!("| backend | subscriptions | events in the log | preview s | run s |");
        println!("|---|---:|---:|---:|---:|");
        let dir = tempfile::tempdir().unwrap();
        billing_run("SQLite", dir.path(), None).await;
        if let Some(url) = support::postgres("PostgreSQL billing benchmark").await {
            let dir = tempfile::tempdir().unwrap();
            billing_run("PostgreSQL", dir.path(), Some(url)).await;
        }
    });
}

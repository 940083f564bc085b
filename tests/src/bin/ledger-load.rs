//! `ledger-load`: the growth benchmark's load generator (issue 13, item 6),
//! a process of its own beside the server.
//!
//! Two modes:
//! - **open loop** (`--rate R`): request *i* is due at `start + i / R`
//!   whether or not earlier ones have been answered, and its latency is
//!   measured from that intended time, not from when it was sent: a server
//!   that stalls is charged for every request it kept waiting (no
//!   coordinated omission). At most `--connections` requests are in flight;
//!   a request that waits for one is late, and that lateness is its latency.
//! - **closed loop** (no `--rate`): `--connections` workers each send the
//!   next request when the last is answered: the saturation rate.
//!
//! Scenarios: `validate` (license validations cycling the keys and their
//! deployments), `usage` (usage reports, today and the two days before,
//! cycling keys and deployments: start the server with
//! `--usage-reports-per-key-per-minute 0` and a raised
//! `--usage-reports-per-day-max`), `reads` (portal queries with the
//! operator token: subscription details, invoices, an audit page of one
//! organization, cycling organizations).
//!
//! Prints one JSON line on stdout and a human summary on stderr.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Latency samples kept at most (one per request); past it, requests are
/// still sent and counted but their latencies are not kept.
const SAMPLES_MAX: usize = 20_000_000;
/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Days back (today included) the usage scenario reports for.
const USAGE_DAYS: u64 = 3;
/// The audit page size the reads scenario asks for.
const AUDIT_PAGE: u32 = 50;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    Validate,
    Usage,
    Reads,
}

#[derive(Parser)]
#[command(name = "ledger-load", about = "Open- and closed-loop load for the ledger's server")]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The keys file `ledger-fill` wrote.
    #[arg(long)]
    keys: std::path::PathBuf,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Offered requests a second (open loop); none: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Connections (closed loop: workers; open loop: requests in flight at most).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The operator token, for the reads scenario.
    #[arg(long, env = "LEDGER_OPERATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A label copied into the JSON line (e.g. the log size).
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct KeyLine {
    organization_id: String,
    license_key: String,
    deployments: Vec<String>,
}

/// What every request needs: the client, the keys, the scenario.
struct Plan {
    client: reqwest::Client,
    url: String,
    keys: Vec<KeyLine>,
    scenario: Scenario,
    token: Option<String>,
    today: chrono::NaiveDate,
}

/// The answers: latencies in microseconds, and counts by status.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, latency: Duration, status: String) {
        if self.latencies_us.len() < SAMPLES_MAX {
            self.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        }
        *self.statuses.entry(status).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Arc::new(plan(&args)?);
    let duration = Duration::from_secs(args.duration);
    let started = Instant::now();
    let tally = match args.rate {
        Some(rate) if rate > 0.0 => open_loop(plan.clone(), rate, args.connections, duration).await,
        Some(_) => bail!("--rate must be positive"),
        None => closed_loop(plan.clone(), args.connections, duration).await,
    };
    summarize(&args, tally, started.elapsed());
    Ok(())
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(&args.keys).with_context(|| format!("reading {}", args.keys.display()))?;
    let keys: Vec<KeyLine> =
        text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    if keys.is_empty() || keys.iter().any(|k| k.deployments.is_empty()) {
        bail!("the keys file has no keys, or a key without deployments");
    }
    if matches!(args.scenario, Scenario::Reads) && args.token.is_none() {
        bail!("the reads scenario needs the operator token (--token or LEDGER_OPERATOR_TOKEN)");
    }
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(args.connections).timeout(REQUEST_TIMEOUT).build()?;
    Ok(Plan {
        client,
        url: args.url.trim_end_matches('/').to_owned(),
        keys,
        scenario: args.scenario,
        token: args.token.clone(),
        today: chrono::Utc::now().date_naive(),
    })
}

/// Sends request number `index` of the scenario; answers its status (or
/// the kind of transport error).
async fn send(plan: &Plan, index: u64) -> String {
    let count = plan.keys.len() as u64;
    let key = &plan.keys[(index % count) as usize];
    let round = index / count;
    let deployment = &key.deployments[(round % key.deployments.len() as u64) as usize];
    let request = match plan.scenario {
        Scenario::Validate => plan.client.post(format!("{}/api/v1/license/validate", plan.url)).json(
            &serde_json::json!({"licenseKey": key.license_key, "clientInfo": {"deployment_id": deployment, "version": "ledger-load/1"}}),
        ),
        Scenario::Usage => {
            let day = plan.today - chrono::Days::new(round % USAGE_DAYS);
            plan.client.post(format!("{}/api/v1/usage/report", plan.url)).json(&serde_json::json!({
                "licenseKey": key.license_key,
                "deploymentId": deployment,
                "reportingPeriod": day.to_string(),
                "metrics": {"activeUsers": 3 + index % 20, "dataVolumeGB": format!("{}.5", 10 + index % 40),
                            "apiCallsCount": 1_000 + index % 5_000, "trainingHours": index % 4},
            }))
        }
        Scenario::Reads => {
            let org = &key.organization_id;
            let path = match round % 3 {
                0 => format!("/api/v1/subscriptions/{org}"),
                1 => format!("/api/v1/organizations/{org}/invoices"),
                _ => format!("/api/v1/audit?organizationId={org}&limit={AUDIT_PAGE}"),
            };
            plan.client.get(format!("{}{path}", plan.url)).bearer_auth(plan.token.as_deref().unwrap_or_default())
        }
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16().to_string();
            // Read the whole body: the answer is not complete before it.
            match response.bytes().await {
                Ok(_) => status,
                Err(_) => "body_error".into(),
            }
        }
        Err(error) if error.is_timeout() => "timeout".into(),
        Err(error) if error.is_connect() => "connect_error".into(),
        Err(_) => "transport_error".into(),
    }
}

/// `connections` workers, each sending its next request when the last is
/// answered, until the time is up.
async fn closed_loop(plan: Arc<Plan>, connections: usize, duration: Duration) -> Tally {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (plan, next) = (plan.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let status = send(&plan, index).await;
                    tally.record(sent.elapsed(), status);
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.unwrap_or_default());
    }
    tally
}

/// Requests due at a fixed rate, each measured from when it was due.
async fn open_loop(plan: Arc<Plan>, rate: f64, connections: usize, duration: Duration) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(connections));
    let start = tokio::time::Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let due = start + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(due).await;
        // Waiting for a free connection makes this request late; its
        // latency still counts from `due`.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let (plan, tally) = (plan.clone(), tally.clone());
        tasks.spawn(async move {
            let status = send(&plan, index).await;
            let latency = due.elapsed();
            drop(permit);
            tally.lock().expect("not poisoned").record(latency, status);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(tally).map(|m| m.into_inner().expect("not poisoned")).unwrap_or_default()
}

fn percentile_ms(sorted_us: &[u64], fraction: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

fn summarize(args: &Args, mut tally: Tally, took: Duration) {
    tally.latencies_us.sort_unstable();
    let requests: u64 = tally.statuses.values().sum();
    let ok: u64 = tally.statuses.iter().filter(|(s, _)| s.starts_with('2')).map(|(_, n)| n).sum();
    let seconds = took.as_secs_f64();
    let lat = &tally.latencies_us;
    let line = serde_json::json!({
        "label": args.label,
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "offeredRate": args.rate,
        "connections": args.connections,
        "seconds": (seconds * 10.0).round() / 10.0,
        "requests": requests,
        "achievedRate": (requests as f64 / seconds).round(),
        "okRate": (ok as f64 / seconds).round(),
        "p50Ms": percentile_ms(lat, 0.50),
        "p99Ms": percentile_ms(lat, 0.99),
        "p999Ms": percentile_ms(lat, 0.999),
        "maxMs": percentile_ms(lat, 1.0),
        "statuses": tally.statuses,
    });
    println!("{line}");
    eprintln!(
        "{} {} ({}): {requests} requests in {seconds:.1} s = {:.0}/s ({:.0}/s 2xx); p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; statuses {:?}",
        line["scenario"],
        line["mode"],
        args.rate.map_or(format!("{} connections", args.connections), |r| format!("offered {r}/s")),
        requests as f64 / seconds,
        ok as f64 / seconds,
        percentile_ms(lat, 0.50),
        percentile_ms(lat, 0.99),
        percentile_ms(lat, 0.999),
        percentile_ms(lat, 1.0),
        tally.statuses
    );
}

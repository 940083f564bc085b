//! License validations over HTTP on loopback: 64 keep-alive connections,
//! spread over 64 keys, every validation appended to the log. Run with
//! `cargo bench -p ledger-api --bench validate` (PostgreSQL rows need
//! `DATABASE_URL`). The server runs in this process on its own runtime
//! threads, the load generator beside it: both share the machine's cores.
//!
//! `BENCH_SECONDS` (default 5) sets the length of each run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CONNECTIONS: usize = 64;
const OPERATOR: &str = "bench-operator-token-0123456789abcdefghij";

async fn start(data_dir: &std::path::Path, database_url: Option<String>) -> String {
    let config = ledger_api::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        database_url,
        clock: "fixed:2026-01-15T12:00:00Z".into(),
        operator_token: Some(OPERATOR.into()),
        auditor_token: Some(format!("{OPERATOR}-auditor")),
        policy: Default::default(),
        // The per-address limit would stop one load generator at once.
        validations_per_address_per_minute: 0,
        notifications: None,
    };
    let state = ledger_api::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, ledger_api::app(state).into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    format!("http://{address}/api/v1")
}

async fn keys(client: &reqwest::Client, base: &str, count: usize) -> Vec<String> {
    let mut keys = Vec::with_capacity(count);
    for n in 0..count {
        let post =
            |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(OPERATOR).json(&body).send();
        let org: Value =
            post("/organizations", json!({ "name": format!("Bench {n}") })).await.unwrap().json().await.unwrap();
        let body = json!({ "organizationId": org["id"], "tier": "professional", "startDate": "2026-01-01" });
        let subscription: Value = post("/subscriptions", body).await.unwrap().json().await.unwrap();
        keys.push(subscription["licenseKey"].as_str().unwrap().to_owned());
    }
    keys
}

async fn run(name: &str, base: String, seconds: Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let keys = keys(&client, &base, CONNECTIONS).await;
    let deadline = Instant::now() + seconds;
    let started = Instant::now();
    let tasks: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(n, key)| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": format!("edge-{n}") }, "nonce": "bench" });
                    let at = Instant::now();
                    let answer: Value =
                        client.post(format!("{base}/license/validate")).json(&body).send().await.unwrap().json().await.unwrap();
                    latencies.push(at.elapsed());
                    assert_eq!(answer["code"], "VALID", "{answer}");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "| {name} | {} | {:.0} | {:.2} | {:.2} |",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        at(0.50),
        at(0.99)
    );
}

fn main() {
    let seconds =
        Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| backend | validations | per second | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        let dir = tempfile::tempdir().unwrap();
        run("SQLite", start(dir.path(), None).await, seconds).await;
        if let Some(url) = store::testing::postgres_url("PostgreSQL validation benchmark") {
            let schema = store::testing::fresh_schema(&url).await;
            let separator = if url.contains('?') { '&' } else { '?' };
            let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
            let dir = tempfile::tempdir().unwrap();
            run("PostgreSQL", start(dir.path(), Some(database_url)).await, seconds).await;
        }
    });
}

//! License validations over HTTP on loopback: 64 keep-alive connections,
//! spread over 64 keys, every validation appended to the log. Run with
//! `cargo bench -p ledger-api --bench validate` (PostgreSQL rows need
//! `DATABASE_URL`). The server runs in this process on its own runtime
//! threads, the load generator beside it: both share the machine's cores.
//!
//! `BENCH_SECONDS` (default 5) sets the length of each run.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CONNECTIONS: usize = 64;

async fn run(name: &str, base: String, seconds: Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let subscriptions = support::subscribe(&client, &base, CONNECTIONS, "professional").await;
    let keys = subscriptions.iter().map(|s| s["licenseKey"].as_str().unwrap().to_owned());
    let deadline = Instant::now() + seconds;
    let started = Instant::now();
    let tasks: Vec<_> = keys
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
    println!("| {name} | {} |", support::summary(latencies, started.elapsed()));
}

fn main() {
    let seconds = support::seconds();
    let clock = "fixed:2026-01-15T12:00:00Z";
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| backend | validations | per second | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        let dir = tempfile::tempdir().unwrap();
        let (base, _) = support::serve(&support::config(dir.path(), None, clock)).await;
        run("SQLite", base, seconds).await;
        if let Some(url) = support::postgres("PostgreSQL validation benchmark").await {
            let dir = tempfile::tempdir().unwrap();
            let (base, _) = support::serve(&support::config(dir.path(), Some(url), clock)).await;
            run("PostgreSQL", base, seconds).await;
        }
    });
}

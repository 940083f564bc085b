//! What the API benchmarks share: a server in this process on loopback,
//! customers to load it with, a PostgreSQL schema of their own, and the
//! latency summary they print.

#![allow(dead_code)] // each benchmark uses its part

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

pub const OPERATOR: &str = "bench-operator-token-0123456789abcdefghij";

/// A server's configuration on `data_dir` (SQLite) or `database_url`,
/// with the business clock given (`fixed:…`), the per-address validation
/// limit and the usage reports' limits off (one load generator would hit
/// them at once) and no e-mail.
pub fn config(data_dir: &std::path::Path, database_url: Option<String>, clock: &str) -> ledger_api::Config {
    ledger_api::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        database_url,
        clock: clock.into(),
        operator_token: Some(OPERATOR.into()),
        auditor_token: Some(format!("{OPERATOR}-auditor")),
        policy: Default::default(),
        validations_per_address_per_minute: 0,
        notifications: None,
        usage: usecases::usage::UsageSettings {
            reports_per_key_per_minute: 0,
            reports_per_day_max: u64::MAX,
            ..Default::default()
        },
    }
}

/// Serves `config` in this process; returns the API's base URL
/// (`http://…/api/v1`) and the server's state.
pub async fn serve(config: &ledger_api::Config) -> (String, ledger_api::AppState) {
    let state = ledger_api::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = ledger_api::app(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    (format!("http://{address}/api/v1"), state)
}

/// Creates `count` organizations, each with a subscription of `tier` from
/// 2026-01-01; returns the subscriptions' answers (`subscriptionId`,
/// `licenseKey`, …).
pub async fn subscribe(client: &reqwest::Client, base: &str, count: usize, tier: &str) -> Vec<Value> {
    let mut answers = Vec::with_capacity(count);
    for n in 0..count {
        let post =
            |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(OPERATOR).json(&body).send();
        let org: Value =
            post("/organizations", json!({ "name": format!("Bench {n}") })).await.unwrap().json().await.unwrap();
        let body = json!({ "organizationId": org["id"], "tier": tier, "startDate": "2026-01-01" });
        answers.push(post("/subscriptions", body).await.unwrap().json().await.unwrap());
    }
    answers
}

/// A fresh PostgreSQL schema's URL, or `None` (with a notice) without
/// `DATABASE_URL`.
pub async fn postgres(what: &str) -> Option<String> {
    let url = store::testing::postgres_url(what)?;
    let schema = store::testing::fresh_schema(&url).await;
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options=-c%20search_path%3D{}", schema.name))
}

/// `BENCH_SECONDS` (default 5): the length of a load run.
pub fn seconds() -> Duration {
    Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0))
}

/// A load run's count, rate, p50 and p99 (ms), as table cells.
pub fn summary(mut latencies: Vec<Duration>, elapsed: Duration) -> String {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    format!(
        "{} | {:.0} | {:.2} | {:.2}",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99)
    )
}

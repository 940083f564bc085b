//! Stripe webhooks over HTTP on loopback: 32 keep-alive connections
//! delivering signed `invoice.payment_failed` events (each a new event id,
//! for one of 32 subscriptions), each verified and appended before its 200;
//! then the reactor handles the backlog (each event decided on its
//! subscription and appended with `StripeEventHandled` atomically). Run with
//! `cargo bench -p ledger-api --bench stripe_webhook` (PostgreSQL rows need
//! `DATABASE_URL`). `BENCH_SECONDS` (default 5) sets the delivery run.
//!
//! The bodies are signed here with the hmac crate; the tests check the
//! scheme against Stripe's own library.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const CONNECTIONS: usize = 32;
const OPERATOR: &str = "bench-operator-token-0123456789abcdefghij";
const SECRET: &str = "whsec_bench_0123456789abcdef";

async fn start(data_dir: &std::path::Path, database_url: Option<String>) -> (String, ledger_api::AppState) {
    let config = ledger_api::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        database_url,
        clock: "fixed:2026-01-15T12:00:00Z".into(),
        operator_token: Some(OPERATOR.into()),
        auditor_token: Some(format!("{OPERATOR}-auditor")),
        policy: Default::default(),
        validations_per_address_per_minute: 0,
        notifications: None,
    };
    let state = ledger_api::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = ledger_api::app(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    (format!("http://{address}/api/v1"), state)
}

async fn subscriptions(client: &reqwest::Client, base: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let post =
            |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(OPERATOR).json(&body).send();
        let org: Value =
            post("/organizations", json!({ "name": format!("Bench {n}") })).await.unwrap().json().await.unwrap();
        let body = json!({ "organizationId": org["id"], "tier": "starter", "startDate": "2026-01-01" });
        let subscription: Value = post("/subscriptions", body).await.unwrap().json().await.unwrap();
        ids.push(subscription["subscriptionId"].as_str().unwrap().to_owned());
    }
    ids
}

fn sign(body: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn run(name: &str, (base, state): (String, ledger_api::AppState), seconds: Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let ids = subscriptions(&client, &base, CONNECTIONS).await;
    let deadline = Instant::now() + seconds;
    let started = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .enumerate()
        .map(|(n, subscription)| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let created = 1_800_000_000 + i as i64;
                    let body = json!({
                        "id": format!("evt_bench_{n}_{i}"), "object": "event", "type": "invoice.payment_failed",
                        "created": created, "livemode": false,
                        "data": { "object": { "id": format!("in_bench_{n}_{i}"), "object": "invoice",
                            "metadata": { "ledger_subscription_id": subscription } } },
                    })
                    .to_string();
                    let at = Instant::now();
                    let answer = client
                        .post(format!("{base}/webhooks/stripe"))
                        .header("stripe-signature", sign(&body))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    latencies.push(at.elapsed());
                    assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
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
    // The backlog, handled by the reactor (in this process, one at a time).
    let head = state.log.head().await.unwrap().sequence;
    state.projections.wait_for(head, Duration::from_secs(60)).await.unwrap();
    let handling = Instant::now();
    let mut handled = 0;
    loop {
        let n = ledger_api::stripe::reactor::handle_pending(&state).await.unwrap();
        if n == 0 {
            break;
        }
        handled += n;
        let head = state.log.head().await.unwrap().sequence;
        state.projections.wait_for(head, Duration::from_secs(60)).await.unwrap();
    }
    let handling = handling.elapsed().as_secs_f64();
    assert_eq!(handled, latencies.len(), "every accepted event is handled once");
    println!(
        "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        at(0.50),
        at(0.99),
        handled as f64 / handling
    );
}

fn main() {
    // Read by `ledger_api::open`, before any thread starts.
    unsafe { std::env::set_var("STRIPE_WEBHOOK_SECRET", SECRET) };
    let seconds =
        Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| backend | webhooks | accepted per second | p50 ms | p99 ms | handled per second |");
        println!("|---|---:|---:|---:|---:|---:|");
        let dir = tempfile::tempdir().unwrap();
        run("SQLite", start(dir.path(), None).await, seconds).await;
        if let Some(url) = store::testing::postgres_url("PostgreSQL webhook benchmark") {
            let schema = store::testing::fresh_schema(&url).await;
            let separator = if url.contains('?') { '&' } else { '?' };
            let database_url = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
            let dir = tempfile::tempdir().unwrap();
            run("PostgreSQL", start(dir.path(), Some(database_url)).await, seconds).await;
        }
    });
}

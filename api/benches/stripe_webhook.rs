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

mod support;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const CONNECTIONS: usize = 32;
const SECRET: &str = "whsec_bench_0123456789abcdef";

fn sign(body: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn run(name: &str, (base, state): (String, ledger_api::AppState), seconds: Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let subscriptions = support::subscribe(&client, &base, CONNECTIONS, "starter").await;
    let ids = subscriptions.iter().map(|s| s["subscriptionId"].as_str().unwrap().to_owned());
    let deadline = Instant::now() + seconds;
    let started = Instant::now();
    let tasks: Vec<_> = ids
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
    let elapsed = started.elapsed();
    let accepted = latencies.len();
    // The backlog, handled by the reactor (in this process, one at a time).
    let head = state.log.head().await.unwrap().sequence;
    state.models.wait_for(head, Duration::from_secs(60)).await.unwrap();
    let handling = Instant::now();
    let mut handled = 0;
    loop {
        let n = ledger_api::stripe::reactor::handle_pending(&state).await.unwrap();
        if n == 0 {
            break;
        }
        handled += n;
        let head = state.log.head().await.unwrap().sequence;
        state.models.wait_for(head, Duration::from_secs(60)).await.unwrap();
    }
    let handling = handling.elapsed().as_secs_f64();
    assert_eq!(handled, accepted, "every accepted event is handled once");
    println!("| {name} | {} | {:.0} |", support::summary(latencies, elapsed), handled as f64 / handling);
}

fn main() {
    // Read by `ledger_api::open`, before any thread starts.
    unsafe { std::env::set_var("STRIPE_WEBHOOK_SECRET", SECRET) };
    let seconds = support::seconds();
    let clock = "fixed:2026-01-15T12:00:00Z";
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| backend | webhooks | accepted per second | p50 ms | p99 ms | handled per second |");
        println!("|---|---:|---:|---:|---:|---:|");
        let dir = tempfile::tempdir().unwrap();
        run("SQLite", support::serve(&support::config(dir.path(), None, clock)).await, seconds).await;
        if let Some(url) = support::postgres("PostgreSQL webhook benchmark").await {
            let dir = tempfile::tempdir().unwrap();
            run("PostgreSQL", support::serve(&support::config(dir.path(), Some(url), clock)).await, seconds).await;
        }
    });
}

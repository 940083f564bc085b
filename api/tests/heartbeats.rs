//! The Rust client's `LicenseClient::run_heartbeats` against the real
//! `ledger` binary (issue 18 items 2 and 5): a floating deployment that
//! keeps sending heartbeats keeps its place past its first lease; once its
//! heartbeats stop, its place frees when the last lease it got runs out,
//! with no admin. Renewals go to the key's per-day floating stream, never
//! the key's own.
//!
//! The heartbeat interval is the shortest the server allows (60 s, the
//! client's floor too), so this test waits about a minute of real time for
//! the second heartbeat; the server's clock is the manual test clock.

#[allow(dead_code, unused_macros)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Config, LicenseClient, ManualTime};
use common::{Backend, OPERATOR, Server, id};
use serde_json::{Value, json};

/// The second heartbeat comes after 60 s; this is how long the test waits.
const SECOND_HEARTBEAT_WITHIN: Duration = Duration::from_secs(120);

/// A key of one deployment, which may be floating (heartbeat every 60 s,
/// place lease 120 s): (org, license id, key).
async fn floating_key(s: &Server) -> (String, String, String) {
    let org = s.create_org("Acme").await;
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "maxDeployments": 1 });
    let key = id(&s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201)["licenseKey"]);
    let floating = json!({ "floatingDeployments": 1, "heartbeatIntervalSeconds": 60, "leaseSeconds": 120 });
    s.post(&format!("/api/v1/subscriptions/{org}/floating-deployments"), Some(OPERATOR), floating).await.expect(200);
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={head}");
    let license = id(&s.get(&path, Some(OPERATOR)).await.expect(200)[0]["id"]);
    (org, license, key)
}

/// The floating deployments the key's listing shows: (deployment, lease end).
async fn floating_places(s: &Server, org: &str) -> Vec<(String, String)> {
    let head = s.head().await;
    let path = format!("/api/v1/organizations/{org}/licenses?minSequence={head}");
    let listed = s.get(&path, Some(OPERATOR)).await.expect(200);
    let places = listed[0]["floatingDeployments"].as_array().cloned().unwrap_or_default();
    places.iter().map(|p| (id(&p["deploymentId"]), id(&p["leaseEndsAt"]))).collect()
}

/// Polls the listing until the deployment's lease ends at `until`.
async fn wait_for_lease_end(s: &Server, org: &str, until: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let places = floating_places(s, org).await;
        if places.iter().any(|(deployment, end)| deployment == "pod-a" && end == until) {
            return;
        }
        assert!(Instant::now() < deadline, "no lease of pod-a until {until}: {places:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Another floating deployment's heartbeat, over plain HTTP; its code.
async fn other(s: &Server, key: &str) -> Value {
    let body = json!({ "licenseKey": key, "clientInfo": { "deployment_id": "pod-b" }, "floating": true });
    s.post("/api/v1/license/validate", None, body).await.expect(200)["code"].clone()
}

async fn stream_revision(backend: &Backend, stream: &str) -> usize {
    let log = backend.open_log().await;
    let stream = domain::StreamId::new(stream).unwrap();
    log.read_stream(&stream, 1, 10_000).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_heartbeats_keeps_the_place_and_a_stopped_deployment_frees_it_after_its_lease() {
    let backend = Backend::sqlite().await;
    let s = backend.start().await;
    let (org, license, key) = floating_key(&s).await;
    s.move_clock("2026-01-05T10:00:00Z").await;
    let keys = s.get("/api/v1/keys", None).await.expect(200);
    let pinned = vec![client::parse_public_key(&id(&keys["leases"]["current"])).unwrap()];
    let state = tempfile::tempdir().unwrap();
    let mut config = Config::new(s.base.clone(), key.clone(), state.path(), pinned);
    config.deployment_id = "pod-a".into();
    config.allow_plain_http = true;
    config.floating = true;
    config.time = Arc::new(ManualTime::new("2026-01-05T10:00:00Z".parse().unwrap()));
    let client = LicenseClient::new(config).unwrap();

    // The first heartbeat takes the place (the key's own stream), now.
    let heartbeats = client.run_heartbeats();
    wait_for_lease_end(&s, &org, "2026-01-05T10:02:00Z", Duration::from_secs(10)).await;
    assert_eq!(client.heartbeat_interval(), Some(Duration::from_secs(60)), "named in the signed lease");
    assert_eq!(other(&s, &key).await, "TOO_MANY_DEPLOYMENTS");
    let own = format!("license/{license}");
    let key_events = stream_revision(&backend, &own).await;

    // Past half of the lease: the next heartbeat renews it, on the key's
    // floating stream of the day.
    s.move_clock("2026-01-05T10:01:01Z").await;
    wait_for_lease_end(&s, &org, "2026-01-05T10:03:01Z", SECOND_HEARTBEAT_WITHIN).await;
    assert_eq!(stream_revision(&backend, &own).await, key_events, "a renewal is not the key's own event");
    assert_eq!(stream_revision(&backend, &format!("floating/{license}:2026-01-05")).await, 1);
    // Past the first lease's end, the place is still held.
    s.move_clock("2026-01-05T10:02:30Z").await;
    assert_eq!(other(&s, &key).await, "TOO_MANY_DEPLOYMENTS");

    // Stopped (as a killed container): the place frees when the lease ends.
    heartbeats.abort();
    s.move_clock("2026-01-05T10:03:00Z").await;
    assert_eq!(other(&s, &key).await, "TOO_MANY_DEPLOYMENTS", "a second before its lease ends");
    s.move_clock("2026-01-05T10:03:01Z").await;
    assert_eq!(other(&s, &key).await, "VALID", "no admin released it");
    assert!(floating_places(&s, &org).await.iter().all(|(deployment, _)| deployment == "pod-b"));
    s.stop().await;
}

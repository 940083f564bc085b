//! How long the offline check takes: the lease is verified once when the
//! client loads it, after which a check is clock reads and arithmetic. The
//! target is under 100 µs per check; this prints the measured mean and
//! fails if the target is missed.

use std::hint::black_box;
use std::time::Instant;

use domain::lease::{LEASE_MICROS, LeaseBody, LeaseLimits, SignedLease, key_binding};
use domain::{LicenseId, OrganizationId, Timestamp};
use ed25519_dalek::SigningKey;
use ledger_client::{Action, Config, LEASE_FILE, LicenseClient};

const LICENSE_KEY: &str = "LK1-bench";
const CHECKS: u32 = 1_000_000;
const TARGET_MICROS: f64 = 100.0;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = SigningKey::from_bytes(&[7; 32]);
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let body = LeaseBody {
        version: 1,
        license_id: LicenseId(uuid::Uuid::from_u128(1)),
        organization_id: OrganizationId(uuid::Uuid::from_u128(2)),
        key_binding: key_binding(LICENSE_KEY),
        deployment_id: ledger_client::DEFAULT_DEPLOYMENT_ID.into(),
        nonce: "bench".into(),
        client_time: Some(now),
        issued_at: now,
        lease_expires_at: Timestamp::from_micros(now.as_micros() + LEASE_MICROS),
        code: "VALID".into(),
        tier: "professional".into(),
        limits: LeaseLimits {
            max_users: 10,
            max_data_volume_gb: 3000,
            max_api_calls: 50_000,
            model_size: "medium".into(),
        },
        features: ["basic_analytics", "advanced_analytics", "custom_models", "custom_integrations"]
            .map(String::from)
            .into(),
        heartbeat_interval_seconds: None,
        deployment_key: None,
    };
    let lease = serde_json::to_vec(&SignedLease::sign(&body, &key)).expect("a lease serializes");
    std::fs::write(dir.path().join(LEASE_FILE), lease).expect("the lease is written");

    let loaded = Instant::now();
    // Nothing listens on port 9 (discard): the client never goes online here.
    let config = Config {
        allow_plain_http: true,
        ..Config::new("http://127.0.0.1:9", LICENSE_KEY, dir.path(), vec![key.verifying_key()])
    };
    let client = LicenseClient::new(config).expect("the client loads");
    let load_micros = loaded.elapsed().as_secs_f64() * 1e6;
    assert!(client.status().is_valid(), "the bench lease must be valid");

    let mean = |name: &str, check: &dyn Fn() -> bool| {
        for _ in 0..CHECKS / 10 {
            black_box(check());
        }
        let started = Instant::now();
        for _ in 0..CHECKS {
            assert!(black_box(check()));
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS);
        println!("{name}: mean {micros:.3} µs per check over {CHECKS} checks");
        micros
    };
    println!("load (read + verify the lease once): {load_micros:.1} µs");
    let worst = [
        mean("check(ADD_USER)", &|| client.check(black_box(&Action::AddUser { active_users: 9 })).is_allowed()),
        mean("allows_feature", &|| client.allows_feature(black_box("custom_integrations"))),
        mean("status (clones the lease's fields)", &|| client.status().is_valid()),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    assert!(worst < TARGET_MICROS, "an offline check took {worst:.3} µs on average; the target is {TARGET_MICROS} µs");
}

//! A small ledger server for the client's tests: real HTTP on a loopback
//! port, real leases signed with a test key through `domain::lease`. It can
//! be switched off at the socket (connections accepted and dropped), made
//! to answer 5xx or 429, or made to misbehave in the ways an attacker
//! would (replay an old lease, sign with another key, …).
#![allow(dead_code)]
// each test binary uses a different part of it
// Test code: a scenario or fixture reads best in one piece; the 70-line
// limit (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use domain::lease::{LEASE_MICROS, LeaseBody, LeaseLimits, RefusalBody, SignedLease, SignedRefusal, key_binding};
use domain::{LicenseId, OrganizationId, Timestamp};
use ed25519_dalek::SigningKey;
use ledger_client::{Config, ManualTime, VerifyingKey};
use serde_json::{Value, json};

pub const LICENSE_KEY: &str = "LK1-test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const OTHER_LICENSE_KEY: &str = "LK1-test-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const DEPLOYMENT: &str = "plant-7";
pub const DAY: Duration = Duration::from_secs(24 * 3600);
pub const MINUTE: Duration = Duration::from_secs(60);

/// The client's wall clock at the start of every test.
pub fn client_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00.123456Z").unwrap().with_timezone(&Utc)
}

/// The server's clock: three hours ahead of the client's, so any test that
/// passes shows the client's skew does not matter.
pub fn server_start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-01T15:00:00Z").unwrap()
}

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// How the validation endpoint answers.
#[derive(Clone)]
pub enum Mode {
    /// Validates honestly and signs a lease with `Fake::signer`.
    Valid,
    /// `isValid: false` with this code, signed as the real server signs it.
    Invalid(&'static str),
    /// `isValid: false` with this code and no signature: what a man in the
    /// middle (or a proxy) could answer.
    UnsignedInvalid(&'static str),
    /// `isValid: false`, signed, but for another nonce (a replayed refusal).
    InvalidForAnotherNonce(&'static str),
    Unavailable,
    RateLimited {
        seconds: u64,
    },
    /// Answers with the last lease it issued (a replay: old nonce).
    ReplayLast,
    /// Signs a lease bound to another license key.
    BindTo(&'static str),
    /// Signs a lease for another deployment.
    OtherDeployment,
    /// Signs a lease without the client's time.
    NoClientTime,
    /// Signs a lease bound to another deployment key pair (a copied lease).
    OtherDeploymentKey,
    BadRequest,
}

/// How the usage endpoint answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UsageMode {
    /// Acknowledges, except a report with `activeUsers: 999`, which it
    /// refuses with 400 like a validation error.
    Accept,
    Unavailable,
    RateLimited {
        seconds: u64,
    },
}

pub struct Fake {
    pub signer: SigningKey,
    /// What `GET /api/v1/keys` lists as the lease keys.
    pub advertised: (VerifyingKey, Option<VerifyingKey>),
    /// Whether `GET /api/v1/keys` signs the next key with `signer`, as the
    /// real server signs it with its current key.
    pub sign_next: bool,
    pub now: Timestamp,
    pub mode: Mode,
    pub usage_mode: UsageMode,
    /// Every validation request received, as JSON.
    pub validations: Vec<Value>,
    pub last_lease: Option<SignedLease>,
    /// Every usage report received (before deciding), as JSON.
    pub reports_received: Vec<Value>,
    /// The acknowledged reports.
    pub reports_acknowledged: Vec<Value>,
}

#[derive(Clone)]
pub struct FakeServer {
    pub url: String,
    fake: Arc<Mutex<Fake>>,
    down: Arc<AtomicBool>,
}

impl FakeServer {
    pub async fn start(signer: SigningKey) -> Self {
        let advertised = (signer.verifying_key(), None);
        let fake = Arc::new(Mutex::new(Fake {
            signer,
            advertised,
            sign_next: true,
            now: server_start(),
            mode: Mode::Valid,
            usage_mode: UsageMode::Accept,
            validations: Vec::new(),
            last_lease: None,
            reports_received: Vec::new(),
            reports_acknowledged: Vec::new(),
        }));
        let down = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/api/v1/license/validate", post(validate))
            .route("/api/v1/license/challenge", post(challenge))
            .route("/api/v1/usage/report", post(report))
            .route("/api/v1/keys", get(keys))
            .with_state(Arc::clone(&fake));
        let gate = Gate { inner: listener, down: Arc::clone(&down) };
        tokio::spawn(async move { axum::serve(gate, app).await.unwrap() });
        Self { url: format!("http://{addr}"), fake, down }
    }

    pub fn state(&self) -> MutexGuard<'_, Fake> {
        self.fake.lock().unwrap()
    }

    /// Off at the socket: connections are accepted and dropped at once, so
    /// the client sees a network error, not an HTTP answer.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state().mode = mode;
    }

    pub fn set_usage_mode(&self, mode: UsageMode) {
        self.state().usage_mode = mode;
    }
}

/// A client configuration for `dir`, pinned to `pinned`, on `time`.
pub fn config(url: &str, dir: &std::path::Path, pinned: Vec<VerifyingKey>, time: &Arc<ManualTime>) -> Config {
    let mut config = Config::new(url, LICENSE_KEY, dir, pinned);
    config.deployment_id = DEPLOYMENT.into();
    // The fake listens on loopback without TLS.
    config.allow_plain_http = true;
    config.request_timeout = Duration::from_secs(5);
    config.time = Arc::clone(time) as Arc<dyn ledger_client::TimeSource>;
    config
}

pub fn manual_time() -> Arc<ManualTime> {
    Arc::new(ManualTime::new(client_start()))
}

/// A URL where nothing listens.
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

struct Gate {
    inner: tokio::net::TcpListener,
    down: Arc<AtomicBool>,
}

impl axum::serve::Listener for Gate {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else { continue };
            if self.down.load(Ordering::SeqCst) {
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Every answer closes its connection, so no pooled connection outlives a
/// switch to "down".
fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn rate_limited(seconds: u64) -> Response {
    let mut response = answer(StatusCode::TOO_MANY_REQUESTS, json!({"code": "rate_limited"}));
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn problem(detail: &str) -> Response {
    let mut response = answer(StatusCode::BAD_REQUEST, json!({"type": "about:blank", "status": 400, "detail": detail}));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// A challenge as the real server mints it (this fake checks no proof).
async fn challenge() -> Response {
    let secret = domain::keys::ServerSecret::from_bytes([1; 32]);
    let expires = chrono::Utc::now().timestamp_micros() + domain::deployment_key::CHALLENGE_LIFETIME_MICROS;
    answer(StatusCode::OK, json!({ "challenge": domain::deployment_key::mint_challenge(&secret, [2; 16], expires) }))
}

async fn validate(State(fake): State<Arc<Mutex<Fake>>>, axum::Json(request): axum::Json<Value>) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.validations.push(request.clone());
    let license_key = request["licenseKey"].as_str().unwrap_or_default().to_owned();
    let nonce = request["nonce"].as_str().unwrap_or_default().to_owned();
    let deployment = request["clientInfo"]["deployment_id"].as_str().unwrap_or_default().to_owned();
    let client_time = request["clientTime"].as_str().and_then(|t| Timestamp::parse_rfc3339(t).ok());
    if nonce.is_empty() || client_time.is_none() {
        return problem("nonce and clientTime are required");
    }
    let mode = fake.mode.clone();
    let known = license_key == LICENSE_KEY || license_key == OTHER_LICENSE_KEY;
    let (valid, code) = match (&mode, known) {
        (_, false) => (false, "NOT_FOUND"),
        (Mode::Invalid(code) | Mode::UnsignedInvalid(code) | Mode::InvalidForAnotherNonce(code), true) => {
            (false, *code)
        }
        _ => (true, "VALID"),
    };
    let refusal = match &mode {
        _ if valid => None,
        Mode::UnsignedInvalid(_) => None,
        _ => {
            let body = RefusalBody {
                version: 1,
                key_binding: key_binding(&license_key),
                deployment_id: deployment.clone(),
                nonce: if matches!(mode, Mode::InvalidForAnotherNonce(_)) { "another".into() } else { nonce.clone() },
                code: code.into(),
                issued_at: fake.now,
            };
            Some(SignedRefusal::sign(&body, &fake.signer))
        }
    };
    let lease = match mode {
        Mode::Unavailable => return answer(StatusCode::SERVICE_UNAVAILABLE, json!({"code": "unavailable"})),
        Mode::RateLimited { seconds } => return rate_limited(seconds),
        Mode::BadRequest => return problem("bad nonce"),
        _ if !valid => None,
        Mode::ReplayLast => fake.last_lease.clone(),
        _ => {
            let body = LeaseBody {
                version: 1,
                license_id: LicenseId(uuid_of(1)),
                organization_id: OrganizationId(uuid_of(2)),
                key_binding: key_binding(match mode {
                    Mode::BindTo(other) => other,
                    _ => &license_key,
                }),
                deployment_id: if matches!(mode, Mode::OtherDeployment) { "elsewhere".into() } else { deployment },
                nonce,
                client_time: if matches!(mode, Mode::NoClientTime) { None } else { client_time },
                issued_at: fake.now,
                lease_expires_at: Timestamp::from_micros(fake.now.as_micros() + LEASE_MICROS),
                code: code.into(),
                tier: "starter".into(),
                limits: LeaseLimits {
                    max_users: 5,
                    max_data_volume_gb: 1000,
                    max_api_calls: 10_000,
                    model_size: "small".into(),
                },
                features: vec!["basic_analytics".into()],
                heartbeat_interval_seconds: None,
                deployment_key: match mode {
                    Mode::OtherDeploymentKey => Some("7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E".into()),
                    _ => request["deploymentKey"].as_str().map(str::to_owned),
                },
            };
            let lease = SignedLease::sign(&body, &fake.signer);
            fake.last_lease = Some(lease.clone());
            Some(lease)
        }
    };
    let subscription = valid.then(|| {
        json!({
            "tier": "starter",
            "limits": {"maxUsers": 5, "maxDataVolumeGB": 1000, "maxApiCalls": 10000,
                       "allowedFeatures": ["basic_analytics"], "modelSize": "small"},
            "features": ["basic_analytics"],
            "allowedFeatures": ["basic_analytics"],
            "expiresAt": "2026-12-31T00:00:00Z",
        })
    });
    answer(
        StatusCode::OK,
        json!({
            "isValid": valid,
            "isExpired": code == "EXPIRED",
            "code": code,
            "warnings": if valid { json!(["renewal due in 30 days"]) } else { json!([]) },
            "licenseId": if known { json!(uuid_of(1)) } else { Value::Null },
            "validationId": "val-1",
            "serverTime": fake.now.to_rfc3339(),
            "subscription": subscription,
            "organization": if known { json!({"id": uuid_of(2), "name": "Acme"}) } else { Value::Null },
            "lease": lease,
            "refusal": refusal,
            "sequence": 42,
        }),
    )
}

async fn report(State(fake): State<Arc<Mutex<Fake>>>, axum::Json(request): axum::Json<Value>) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.reports_received.push(request.clone());
    match fake.usage_mode {
        UsageMode::Unavailable => return answer(StatusCode::BAD_GATEWAY, json!({"code": "unavailable"})),
        UsageMode::RateLimited { seconds } => return rate_limited(seconds),
        UsageMode::Accept => {}
    }
    if request["licenseKey"] != LICENSE_KEY {
        return problem("unknown license key");
    }
    if request["metrics"]["activeUsers"] == 999 {
        return problem("activeUsers is not plausible");
    }
    fake.reports_acknowledged.push(request);
    answer(
        StatusCode::OK,
        json!({"acknowledged": true, "warningsIssued": [], "limitsApproaching": [],
               "nextReportDue": "2026-03-02T00:00:00Z", "sequence": 7}),
    )
}

async fn keys(State(fake): State<Arc<Mutex<Fake>>>) -> Response {
    let fake = fake.lock().unwrap();
    let b64 = |key: &VerifyingKey| STANDARD.encode(key.as_bytes());
    let next_signature = fake
        .advertised
        .1
        .filter(|_| fake.sign_next)
        .map(|next| STANDARD.encode(domain::lease::sign_next_key(&fake.signer, &next)));
    answer(
        StatusCode::OK,
        json!({
            "algorithm": "Ed25519",
            "licenseKeys": {"current": b64(&signing_key(200).verifying_key()), "next": null},
            "leases": {"current": b64(&fake.advertised.0), "next": fake.advertised.1.as_ref().map(b64),
                       "nextSignature": next_signature},
            "checkpoints": {"current": b64(&signing_key(201).verifying_key()), "next": null},
        }),
    )
}

fn uuid_of(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

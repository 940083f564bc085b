//! What protects the server at its edge, and who may see its figures:
//! connection and request limits (`transport`), trusted proxies
//! (`address`), rate limits of the routes anyone can call or that grow the
//! log, and the metrics endpoint's access.
//!
//! Every limit here holds per server process (the limiters live in memory);
//! with several processes behind a load balancer, each allows its share.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use domain::LicenseId;
use domain::keys::constant_time_eq;

use crate::address::TrustedProxies;
use crate::metrics::{KeyedLimiter, LogThrottle};

/// How often a refused webhook may be logged: one warning per interval,
/// with the count of those held back, so a flood of forged webhooks cannot
/// flood the log.
pub const WEBHOOK_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest metrics token accepted (as the bootstrap tokens).
pub const METRICS_TOKEN_CHARS_MIN: usize = 32;

/// The edge's settings (`ledger serve` flags; the defaults are sane for a
/// server on the internet).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a client may take to send a request's headers, and how
    /// long an idle connection is kept.
    pub header_read_timeout: Duration,
    /// How long a request body may pause between two pieces.
    pub body_read_timeout: Duration,
    /// How long a whole request may take, body and answer included.
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub connections_max: usize,
    /// Connections one client address may hold at once (trusted proxies
    /// are exempt); more are closed at once.
    pub connections_per_address_max: usize,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Serve `/metrics` here, without a token, and not on the API's address.
    pub metrics_listen: Option<SocketAddr>,
    /// A bearer token that may read `/metrics` and `/ready`'s figures.
    pub metrics_token: Option<String>,
    /// Deployment releases one license may make an hour (0: no limit).
    pub releases_per_license_per_hour: u32,
    /// Deployments one license key may activate an hour (fixed, or
    /// floating taking a place), on each server process (0: no limit).
    pub activations_per_key_per_hour: u32,
    /// Checkout sessions one client address may start an hour (0: no limit).
    pub checkouts_per_address_per_hour: u32,
    /// Checkout sessions all clients together may start an hour (0: no limit).
    pub checkouts_per_hour: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Slow clients are cut off in seconds, not held for minutes;
            // a real client on a slow link sends headers in well under 10 s.
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            // The slowest legitimate request, a billing run of a large
            // vendor, takes a few seconds; queries wait at most 5 s.
            request_timeout: Duration::from_secs(30),
            // A file descriptor each; far below the usual 65,536 limit and
            // the database's own connections.
            connections_max: 1024,
            connections_per_address_max: 64,
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            metrics_token: None,
            // An admin releases a deployment when a machine is retired:
            // a few an hour is generous, and each release is a log event.
            releases_per_license_per_hour: 10,
            activations_per_key_per_hour: usecases::validation::ACTIVATIONS_PER_KEY_PER_HOUR_DEFAULT,
            // A buyer starts one checkout, maybe retries a few times.
            checkouts_per_address_per_hour: 10,
            // Each checkout makes a Stripe customer and session.
            checkouts_per_hour: 100,
        }
    }
}

/// The edge's state, shared by every request (`AppState::edge`).
pub struct Edge {
    pub settings: Settings,
    pub trusted_proxies: TrustedProxies,
    /// The metrics token's hash, compared in constant time.
    metrics_token: Option<blake3::Hash>,
    pub releases: KeyedLimiter<LicenseId>,
    pub activations: KeyedLimiter<LicenseId>,
    pub checkouts_per_address: KeyedLimiter<IpAddr>,
    checkouts: Option<governor::DefaultDirectRateLimiter>,
    /// Checkouts refused by everyone's hourly allowance (`checkouts`).
    checkouts_refused: std::sync::atomic::AtomicU64,
    pub webhook_warnings: LogThrottle,
}

impl Edge {
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let trusted_proxies = TrustedProxies::parse(&settings.trusted_proxies).map_err(anyhow::Error::msg)?;
        let metrics_token = match &settings.metrics_token {
            Some(token) if token.chars().count() < METRICS_TOKEN_CHARS_MIN => {
                anyhow::bail!("LEDGER_METRICS_TOKEN must be at least {METRICS_TOKEN_CHARS_MIN} characters")
            }
            Some(token) => Some(blake3::hash(token.as_bytes())),
            None => None,
        };
        let checkouts = NonZeroU32::new(settings.checkouts_per_hour)
            .map(|n| governor::RateLimiter::direct(governor::Quota::per_hour(n)));
        Ok(Self {
            trusted_proxies,
            metrics_token,
            releases: KeyedLimiter::per_hour("deployment_releases_per_license", settings.releases_per_license_per_hour),
            activations: KeyedLimiter::per_hour(
                usecases::validation::ACTIVATIONS_PER_KEY_PER_HOUR,
                settings.activations_per_key_per_hour,
            ),
            checkouts_per_address: KeyedLimiter::per_hour(
                "checkouts_per_address",
                settings.checkouts_per_address_per_hour,
            ),
            checkouts,
            checkouts_refused: std::sync::atomic::AtomicU64::new(0),
            webhook_warnings: LogThrottle::new(WEBHOOK_WARNING_INTERVAL),
            settings,
        })
    }

    /// Whether `token` is the metrics token.
    pub fn is_metrics_token(&self, token: &str) -> bool {
        self.metrics_token
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), blake3::hash(token.as_bytes()).as_bytes()))
    }

    /// Whether `/metrics` is served on its own listener (and so not on the API's).
    pub fn metrics_elsewhere(&self) -> bool {
        self.settings.metrics_listen.is_some()
    }

    /// A checkout from `client` (when known): `Err(seconds to wait)` when
    /// the client's or everyone's hourly allowance is spent. The client's
    /// is checked first, so one client cannot spend everyone's.
    pub fn check_checkout(&self, client: Option<IpAddr>) -> Result<(), u64> {
        if let Some(client) = client {
            self.checkouts_per_address.check(&crate::address::limit_key(client))?;
        }
        match &self.checkouts {
            Some(limiter) => limiter.check().map_err(|not_until| {
                self.checkouts_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let clock = governor::clock::DefaultClock::default();
                not_until.wait_time_from(governor::clock::Clock::now(&clock)).as_secs().max(1)
            }),
            None => Ok(()),
        }
    }

    /// The keyed limiters, for sweeping and for `/metrics`.
    pub fn limiters(&self) -> [(&'static str, usize); 3] {
        [
            (self.releases.name(), self.releases.len()),
            (self.activations.name(), self.activations.len()),
            (self.checkouts_per_address.name(), self.checkouts_per_address.len()),
        ]
    }

    /// Requests each of the edge's limiters refused, for `/metrics`.
    pub fn refusals(&self) -> [(&'static str, u64); 4] {
        [
            (self.releases.name(), self.releases.refusals()),
            (self.activations.name(), self.activations.refusals()),
            (self.checkouts_per_address.name(), self.checkouts_per_address.refusals()),
            ("checkouts", self.checkouts_refused.load(std::sync::atomic::Ordering::Relaxed)),
        ]
    }

    /// Drops idle entries from the keyed limiters.
    pub fn sweep(&self) {
        self.releases.sweep();
        self.activations.sweep();
        self.checkouts_per_address.sweep();
    }
}

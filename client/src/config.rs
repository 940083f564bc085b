//! How a deployment is set up: one struct, filled at install time.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;

use crate::{ClientError, SystemTime, TimeSource};

/// The default deployment id, as the server assumes when none is sent.
pub const DEFAULT_DEPLOYMENT_ID: &str = "default";
/// How many lease keys the client holds at most (pinned and learned).
pub const LEASE_KEYS_MAX: usize = 8;
/// How many usage reports may wait in the queue by default.
pub const USAGE_QUEUE_REPORTS_MAX: usize = 10_000;

/// The client's configuration. [`Config::new`] fills the tunables with
/// their defaults; set a public field to change one.
#[derive(Clone)]
pub struct Config {
    /// The server, e.g. `https://ledger.example.com` (no trailing path).
    pub base_url: String,
    pub license_key: String,
    /// Which deployment of the license this is: 1 to 128 visible ASCII
    /// characters.
    pub deployment_id: String,
    /// Where the lease, the clock marks and the usage queue live. One
    /// process per directory.
    pub state_dir: PathBuf,
    /// The server's public lease keys (current and next), pinned at
    /// install. Only these (and keys learned with `learn_lease_keys`)
    /// verify leases; keys fetched from the server are never trusted alone.
    pub lease_public_keys: Vec<VerifyingKey>,
    /// The longest the client works offline after a validation, whatever
    /// the lease says (the lease's own end still applies when earlier).
    pub offline_grace: Duration,
    /// How far the wall clock may step back (NTP corrections) before the
    /// client calls it tampering.
    pub clock_tolerance: Duration,
    /// Per request, connection included.
    pub request_timeout: Duration,
    /// Sent as `clientInfo.version`.
    pub client_version: String,
    /// After a lease verified with a *pinned* key, fetch `GET /api/v1/keys`
    /// and hold the server's announced next lease key in memory (see
    /// [`LicenseClient::lease_keys`](crate::LicenseClient::lease_keys)), so a
    /// long-running process survives a key rotation. The next key is
    /// learned only when the key that verified the lease signed it
    /// (`leases.nextSignature`). Off by default.
    pub learn_lease_keys: bool,
    /// Allow a plain `http://` base_url. Off by default: without TLS a man
    /// in the middle reads the license key and can keep the deployment
    /// from reaching the server (it cannot forge a lease or a refusal,
    /// which are signed). For a server on the same host or a trusted
    /// network only.
    pub allow_plain_http: bool,
    pub usage_queue_max: usize,
    /// A floating deployment (a container that comes and goes): each
    /// validation is a heartbeat, the deployment holds its place of the
    /// key's `maxDeployments` only while it sends them, and its lease ends
    /// with its place (an hour by default, not seven days). Send them with
    /// [`LicenseClient::heartbeat`](crate::LicenseClient::heartbeat) every
    /// [`heartbeat_interval`](crate::LicenseClient::heartbeat_interval), or
    /// let [`LicenseClient::run_heartbeats`](crate::LicenseClient::run_heartbeats)
    /// do it. The operator must allow the subscription floating deployments.
    /// Off by default.
    pub floating: bool,
    /// Where time comes from; tests pass a [`ManualTime`](crate::ManualTime).
    pub time: Arc<dyn TimeSource>,
}

impl Config {
    pub fn new(
        base_url: impl Into<String>,
        license_key: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        lease_public_keys: Vec<VerifyingKey>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            license_key: license_key.into(),
            deployment_id: DEFAULT_DEPLOYMENT_ID.to_owned(),
            state_dir: state_dir.into(),
            lease_public_keys,
            offline_grace: Duration::from_micros(domain::lease::LEASE_MICROS as u64),
            clock_tolerance: Duration::from_secs(5 * 60),
            request_timeout: Duration::from_secs(10),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            learn_lease_keys: false,
            allow_plain_http: false,
            usage_queue_max: USAGE_QUEUE_REPORTS_MAX,
            floating: false,
            time: Arc::new(SystemTime),
        }
    }

    pub(crate) fn check(&self) -> Result<(), ClientError> {
        let problem = if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            Some("base_url must start with http:// or https://")
        } else if self.base_url.starts_with("http://") && !self.allow_plain_http {
            Some("a plain http:// base_url needs allow_plain_http (use https:// with the `tls` feature)")
        } else if self.base_url.starts_with("https://") && !cfg!(feature = "tls") {
            // Otherwise every request would fail as if the server were down,
            // and the deployment would quietly run offline until its lease ends.
            Some("an https:// base_url needs ledger-client's `tls` feature")
        } else if self.license_key.is_empty() {
            Some("license_key is empty")
        } else if self.deployment_id.is_empty()
            || self.deployment_id.len() > domain::lease::DEPLOYMENT_ID_CHARS_MAX
            || !self.deployment_id.bytes().all(|b| b.is_ascii_graphic())
        {
            // The server's rule: refused here rather than by a 400 later.
            Some("deployment_id must be 1 to 128 visible ASCII characters")
        } else if self.lease_public_keys.is_empty() {
            Some("at least one lease public key must be pinned")
        } else if self.lease_public_keys.len() > LEASE_KEYS_MAX {
            Some("too many lease public keys")
        } else if self.clock_tolerance >= self.offline_grace {
            Some("clock_tolerance must be shorter than offline_grace")
        } else if self.usage_queue_max == 0 {
            Some("usage_queue_max must be at least 1")
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(ClientError::Config(p.to_owned())))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }
}

/// The license key is a secret: it never appears in logs.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("license_key", &"<redacted>")
            .field("deployment_id", &self.deployment_id)
            .field("state_dir", &self.state_dir)
            .field("lease_public_keys", &self.lease_public_keys)
            .field("offline_grace", &self.offline_grace)
            .field("clock_tolerance", &self.clock_tolerance)
            .field("request_timeout", &self.request_timeout)
            .field("client_version", &self.client_version)
            .field("learn_lease_keys", &self.learn_lease_keys)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("usage_queue_max", &self.usage_queue_max)
            .finish_non_exhaustive()
    }
}

/// Reads a public key as `GET /api/v1/keys` shows it: standard, padded
/// base64 of the 32 key bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, ClientError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| ClientError::Config("a public key is not base64".into()))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| ClientError::Config("a public key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ClientError::Config("not an Ed25519 public key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str, deployment_id: &str) -> Config {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        Config {
            deployment_id: deployment_id.into(),
            allow_plain_http: true,
            ..Config::new(base_url, "LK1-x", "/tmp/unused", vec![key])
        }
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let plain = Config { allow_plain_http: false, ..config("http://ledger.local", "plant-7") };
        assert!(matches!(plain.check(), Err(ClientError::Config(why)) if why.contains("allow_plain_http")));
        assert!(Config { allow_plain_http: true, ..plain }.check().is_ok());
    }

    #[test]
    fn misconfigurations_are_refused_at_start_not_discovered_offline() {
        assert!(config("http://ledger.local", "plant-7").check().is_ok());
        assert!(config("ledger.local", "plant-7").check().is_err());
        assert_eq!(config("https://ledger.local", "plant-7").check().is_ok(), cfg!(feature = "tls"));
        assert!(config("http://ledger.local", "plant 7").check().is_err());
        assert!(config("http://ledger.local", "").check().is_err());
        assert!(config("http://ledger.local", &"x".repeat(129)).check().is_err());
        assert!(Config { lease_public_keys: vec![], ..config("http://ledger.local", "a") }.check().is_err());
    }

    #[test]
    fn the_license_key_never_appears_in_debug_output() {
        assert!(!format!("{:?}", config("http://ledger.local", "a")).contains("LK1-x"));
    }

    #[test]
    fn public_keys_read_as_the_keys_endpoint_shows_them() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert_eq!(parse_public_key(&STANDARD.encode(key.as_bytes())).unwrap(), key);
        assert!(parse_public_key("AAAA").is_err());
    }
}

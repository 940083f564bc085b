//! The on-premises library: validates the deployment's license with the
//! ledger server, keeps working offline on the server's signed lease for
//! its grace period, gates features and limits, and reports usage through
//! a durable queue.
//!
//! ```no_run
//! # async fn run() -> Result<(), ledger_client::ClientError> {
//! use ledger_client::{Action, Config, LicenseClient, parse_public_key};
//! let key = parse_public_key("…the server's lease key, as GET /api/v1/keys shows it…")?;
//! let client = LicenseClient::new(Config::new("https://ledger.example.com", "LK1-…", "/var/lib/app/license", vec![key]))?;
//! let status = client.validate().await?; // online, or the stored lease offline
//! if client.check(&Action::AddUser { active_users: 4 }).is_allowed() { /* add the user */ }
//! # Ok(()) }
//! ```
//!
//! What it trusts: only leases signed by a pinned key (never a key it was
//! merely told about), bound to its license key and deployment, answering
//! its own nonce. How it judges time offline, and against whom, is in
//! [`offline`].
//!
//! The state directory holds [`DEPLOYMENT_KEY_FILE`] (the deployment's
//! own Ed25519 key, made on the first run, mode 0600; leases are bound to
//! its public key), [`LEASE_FILE`] (the signed lease exactly as
//! received), [`CLOCK_FILE`] (the clock high-water marks) and
//! [`USAGE_DIR`] (the usage queue, and its [`REJECTED_DIR`]); every write is
//! atomic and fsynced. One process per state directory.

pub mod airgap;
mod backoff;
mod config;
mod enforce;
mod error;
mod files;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod identity;
mod license;
pub mod offline;
mod status;
mod time;
mod usage;
mod wire;

pub use backoff::Backoff;
pub use config::{Config, DEFAULT_DEPLOYMENT_ID, LEASE_KEYS_MAX, USAGE_QUEUE_REPORTS_MAX, parse_public_key};
pub use enforce::{Action, Decision, Denial};
pub use error::{ClientError, LeaseRejection};
pub use identity::DEPLOYMENT_KEY_FILE;
pub use license::{CLOCK_FILE, HEARTBEAT_RETRY, LEASE_FILE, LicenseClient};
pub use status::{Limits, Status, UNLIMITED, ValidationCode};
pub use time::{ManualTime, SystemTime, TimeSource};
pub use usage::{FlushOutcome, REJECTED_DIR, ReportId, USAGE_DIR, UsageMetrics, UsageReport, UsageReporter};

pub use chrono::NaiveDate;
pub use domain::lease::LeaseError;
pub use ed25519_dalek::VerifyingKey;
pub use rust_decimal::Decimal;

/// Both are shared across tasks and threads of a service.
#[cfg(test)]
const _: () = {
    const fn shareable<T: Send + Sync + Clone>() {}
    shareable::<LicenseClient>();
    shareable::<UsageReporter>();
};

//! Operations: liveness, readiness, the server's public keys, the test
//! clock.

use serde::Serialize;
use utoipa::ToSchema;

/// Liveness: the process answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness: the database answers and the read models have caught up.
/// The figures (`head`, `applied`, `detail`) are for those who may see
/// them; everyone else gets `status` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `catching up`, `database unavailable`, `projection
    /// stopped`, or that the log was rolled back behind the read models.
    pub status: &'static str,
    /// The log's last sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// The last sequence the read models include.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<u64>,
    /// Why the read models stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether to route requests here (the HTTP status says it).
    #[serde(skip)]
    pub ready: bool,
}

impl Readiness {
    /// The status alone, without the server's figures.
    pub fn without_figures(self) -> Self {
        Self { head: None, applied: None, detail: None, ..self }
    }
}

/// The server's Ed25519 public keys (standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeys {
    #[schema(example = "Ed25519")]
    pub algorithm: &'static str,
    pub license_keys: AnnouncedKeys,
    pub leases: AnnouncedKeys,
    pub checkpoints: KeyPair,
}

/// A purpose's current key and the next one announced, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPair {
    pub current: String,
    pub next: Option<String>,
}

/// A purpose's current key and the next one announced, which comes with
/// the current key's signature over it, so clients trust it only through
/// the key they already trust (license keys and leases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedKeys {
    pub current: String,
    pub next: Option<String>,
    /// The current key's signature over a domain ‖ current key ‖ next key:
    /// `ledger 2026-11-29 next lease key v1\0` for leases, `ledger
    /// 2026-12-01 next license-key signing key v1\0` for license keys.
    pub next_signature: Option<String>,
}

/// Where the manual test clock is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClockMoved {
    /// RFC 3339.
    pub now: String,
}

//! What the client concludes about its license.

use std::fmt;

use chrono::{DateTime, Utc};

pub use domain::lease::LeaseLimits as Limits;

/// `-1` in a limit: no limit (as in the seed's JSON).
pub const UNLIMITED: i64 = -1;

/// The server's validation codes (BILLING-RULES, "License keys and
/// validation"); a code this version does not know is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValidationCode {
    Valid,
    PastDue,
    Superseded,
    NotFound,
    Revoked,
    Expired,
    Suspended,
    TooManyDeployments,
    Other(String),
}

impl ValidationCode {
    pub fn parse(code: &str) -> Self {
        match code {
            "VALID" => Self::Valid,
            "PAST_DUE" => Self::PastDue,
            "SUPERSEDED" => Self::Superseded,
            "NOT_FOUND" => Self::NotFound,
            "REVOKED" => Self::Revoked,
            "EXPIRED" => Self::Expired,
            "SUSPENDED" => Self::Suspended,
            "TOO_MANY_DEPLOYMENTS" => Self::TooManyDeployments,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Valid => "VALID",
            Self::PastDue => "PAST_DUE",
            Self::Superseded => "SUPERSEDED",
            Self::NotFound => "NOT_FOUND",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::Suspended => "SUSPENDED",
            Self::TooManyDeployments => "TOO_MANY_DEPLOYMENTS",
            Self::Other(code) => code,
        }
    }

    /// The three codes under which the license may be used (and a lease is
    /// issued).
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid | Self::PastDue | Self::Superseded)
    }
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client's verdict on its license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The license may be used. Everything but `offline` and `warnings`
    /// comes from the signed lease, never from the unsigned answer.
    Valid {
        code: ValidationCode,
        tier: String,
        limits: Limits,
        features: Vec<String>,
        /// When offline use ends (the lease's end, capped by the
        /// configured offline grace), in the server's time.
        lease_expires_at: DateTime<Utc>,
        /// The last attempt to reach the server failed (or none was made
        /// since start): this verdict rests on the stored lease alone.
        offline: bool,
        /// The server's warnings when online (e.g. payment past due); when
        /// offline, why the server could not be reached.
        warnings: Vec<String>,
    },
    /// The server said the license is not valid (REVOKED, EXPIRED, …). The
    /// stored lease was dropped: a revoked license does not keep working
    /// offline.
    Invalid { code: ValidationCode },
    /// The wall clock is earlier than the client has already seen (beyond
    /// the tolerance): nothing is allowed until it is put right or the
    /// server is reached.
    ClockTampered,
    /// No usable lease: never validated, the lease expired, or the lease
    /// file did not verify.
    NoLease,
}

impl Status {
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }
}

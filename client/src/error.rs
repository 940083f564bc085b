//! What can go wrong, typed, so callers decide by variant and never by
//! message.

use std::io;
use std::path::PathBuf;

use domain::lease::LeaseError;

/// An operating error of the client. Network failures during validation
/// are not errors: they fall back to the offline judgement.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The server refused the request as malformed (400) or answered with a
    /// status the contract does not have; retrying the same request would
    /// get the same answer.
    #[error("the server answered {status}: {body}")]
    Http { status: u16, body: String },
    /// A 200 whose body is not the contract's answer.
    #[error("the server's answer could not be read: {0}")]
    Protocol(String),
    /// The server said "valid" but its lease cannot be trusted. The stored
    /// lease (if any) is kept and [`LicenseClient::status`](crate::LicenseClient::status)
    /// still judges it: an answer that fails verification is treated as no
    /// answer, never as a new lease.
    #[error("the server's lease was not accepted: {0}")]
    LeaseRejected(#[from] LeaseRejection),
    #[error("the usage queue already holds {max} reports; flush before enqueueing more")]
    QueueFull { max: usize },
    #[error("invalid usage report: {0}")]
    InvalidReport(String),
    #[error("no random bytes for the nonce: {0}")]
    Random(String),
}

/// Why a lease in a "valid" answer (or in the lease file) was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRejection {
    #[error("the answer says valid but carries no lease")]
    Missing,
    /// Not well-formed, not signed by any pinned key, or issued to another
    /// license key.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The lease answers another request: a replay of an old answer.
    #[error("the lease's nonce is not this request's")]
    StaleNonce,
    #[error("the lease is for deployment {0:?}, not this one")]
    OtherDeployment(String),
    /// The lease is bound to another deployment key pair (or none): a
    /// lease copied from another machine.
    #[error("the lease is bound to another deployment key")]
    OtherDeploymentKey,
    /// The signed `clientTime` is missing or is not what this request
    /// sent; the offline judgement measures elapsed time from it.
    #[error("the lease's clientTime is not the time this request sent")]
    ClientTimeMismatch,
    #[error("lease format version {0} is not supported")]
    UnsupportedVersion(u32),
    #[error("the lease carries code {0:?}, which is not a valid code")]
    NotAValidCode(String),
}

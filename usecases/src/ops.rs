//! Operations: readiness, the server's public keys, the manual test clock.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use domain::Timestamp;
use domain::staff::StaffPermission;

use crate::clock::ClockError;
use crate::error::Error;
use crate::views::ops::{AnnouncedKeys, ClockMoved, KeyPair, PublicKeys, Readiness};
use crate::{Caller, Ledger};

/// How long the read models may stay behind the log's head with the node
/// still ready.
pub const READY_LAG_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the log's database answers and the read models have caught up
/// with it (and have not stopped), with the figures behind the answer.
pub async fn readiness(ledger: &Ledger) -> Readiness {
    let not_ready = |status| Readiness { status, head: None, applied: None, detail: None, ready: false };
    let head = match ledger.log.head().await {
        Ok(head) => head.sequence,
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            return not_ready("database unavailable");
        }
    };
    if let Some(failure) = ledger.models.failed() {
        let status =
            if failure.rolled_back { "the log was rolled back behind the read models" } else { "projection stopped" };
        return Readiness { detail: Some(failure.to_string()), ..not_ready(status) };
    }
    let applied = ledger.models.applied();
    // Commands answer before the read models apply them, so being a few
    // records behind for a moment is the normal state of a busy node, and
    // reads wait for what they must see (`acknowledged`): only a lag that
    // lasts makes it not ready, or a node that has not yet caught up with
    // the log as it was when it started.
    let ready = applied >= head || (ledger.models.started() && ledger.models.lag() < READY_LAG_MAX);
    Readiness {
        status: if ready { "ready" } else { "catching up" },
        head: Some(head),
        applied: Some(applied),
        detail: None,
        ready,
    }
}

/// The server's public keys for license keys, leases and checkpoints;
/// anyone may ask.
pub fn public_keys(ledger: &Ledger) -> PublicKeys {
    let public = |key: &ed25519_dalek::SigningKey| STANDARD.encode(key.verifying_key().to_bytes());
    let keys = &ledger.keys;
    PublicKeys {
        algorithm: "Ed25519",
        license_keys: AnnouncedKeys {
            current: public(&keys.license),
            next: keys.license_next.as_ref().map(public),
            next_signature: keys.license_next_signature.map(|signature| STANDARD.encode(signature)),
        },
        leases: AnnouncedKeys {
            current: public(&keys.lease),
            next: keys.lease_next.as_ref().map(public),
            next_signature: keys.lease_next_signature.map(|signature| STANDARD.encode(signature)),
        },
        checkpoints: KeyPair { current: public(&keys.checkpoint), next: None },
    }
}

/// Moves the manual test clock forward to `to` (the operator's), and wakes
/// the scheduler. Not found unless the clock is manual.
pub fn move_clock(ledger: &Ledger, caller: &Caller, to: &str) -> Result<ClockMoved, Error> {
    caller.require(StaffPermission::Operate)?;
    let to = Timestamp::parse_rfc3339(to).map_err(|e| Error::Validation(e.to_string()))?;
    let now = ledger.clock.advance(to).ok_or(Error::NotFound)?.map_err(|e| match e {
        ClockError::Backwards { .. } => Error::conflict("clock_backwards", e),
        other => Error::Internal(other.to_string()),
    })?;
    ledger.scheduler.notify_one();
    Ok(ClockMoved { now: now.to_rfc3339() })
}

//! Validations of license keys, one stream per key per UTC day:
//! `validation/{license id}:{YYYY-MM-DD}`.
//!
//! Every answered validation of a known key is recorded, refusals
//! included. A key may be validated at most [`VALIDATIONS_PER_DAY_MAX`]
//! times a day: that bounds the stream, and the stream's revision is the
//! day's count, so the limit is counted from the log itself and holds
//! across restarts and across processes (appends expect the revision read).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::license::ValidationCode;
use crate::{LicenseId, StreamId, Timestamp};

/// The seed's 1,440 validations a day (one a minute).
pub const VALIDATIONS_PER_DAY_MAX: u64 = 1440;

/// The stream of a key's validations on a day.
pub fn stream(license_id: LicenseId, day: NaiveDate) -> StreamId {
    StreamId::new(format!("validation/{license_id}:{day}")).expect("a UUID and a date form a valid stream id")
}

/// The license a validation stream belongs to.
pub fn license_of(stream: &StreamId) -> Option<LicenseId> {
    let (_, name) = stream.as_str().split_once('/')?;
    let (id, _) = name.split_once(':')?;
    id.parse().ok().map(LicenseId)
}

/// The stream of a key's floating lease extensions on a day:
/// `floating/{license id}:{YYYY-MM-DD}` ([`FloatingLeaseExtended`]).
pub fn floating_stream(license_id: LicenseId, day: NaiveDate) -> StreamId {
    StreamId::new(format!("floating/{license_id}:{day}")).expect("a UUID and a date form a valid stream id")
}

crate::stored_events! {
    /// A validation, answered; a floating deployment's place extended.
    pub enum ValidationEvent {
        LicenseValidated = "LicenseValidated" version 1,
        FloatingLeaseExtended = "FloatingLeaseExtended" version 1,
    }
}

/// A floating deployment's heartbeat extended the place it held until
/// `slot_frees_at`, at `at` (`crate::floating`). Kept on the key's
/// per-day floating stream ([`floating_stream`]), not the key's own, so a
/// key's stream does not grow with every renewal; appended with the
/// heartbeat's validation, so there are at most as many a day as
/// validations. Its first place is the key's own `FloatingDeploymentLeased`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatingLeaseExtended {
    pub license_id: LicenseId,
    pub deployment_id: String,
    pub at: Timestamp,
    pub slot_frees_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseValidated {
    pub license_id: LicenseId,
    /// Returned to the client as `validationId`.
    pub validation_id: uuid::Uuid,
    pub deployment_id: String,
    pub code: ValidationCode,
    pub client_version: Option<String>,
    pub at: Timestamp,
}

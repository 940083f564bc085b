//! Privacy (issue 16): which stored events hold personal data, what of
//! each is a fact, and the events that sanction an erasure.
//!
//! STUB: the signatures here are the contract between the store, the use
//! cases and `replay`; the bodies are filled in by the privacy work.

use serde::{Deserialize, Serialize};

use crate::record::RecordHeader;
use crate::staff::StaffId;
use crate::{OrganizationId, StreamId, Timestamp, UserId};

/// The stream every privacy event is appended to.
pub fn privacy_stream() -> StreamId {
    StreamId::new("privacy/log".to_owned()).expect("a valid stream id")
}

/// At most this many records are listed by one `SubjectErased`; a larger
/// erasure is several events.
pub const ERASED_RECORDS_PER_EVENT_MAX: usize = 1_000;

/// Whether a stored event type holds personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Ids, amounts, roles, flags, times: nothing that names a person.
    Facts,
    /// Names, e-mail addresses, IP addresses, user agents, free text or
    /// OIDC subjects, in fields [`facts`] redacts.
    Personal,
}

/// The class of a stored event type; `None` for a type nobody classed,
/// which a test forbids for every type this version stores.
pub fn class(event_type: &str) -> Option<Class> {
    let _ = event_type;
    todo!("issue 16: the classification")
}

/// Whose data an erasure removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    /// One user of a customer organization.
    User { organization_id: OrganizationId, user_id: UserId },
    /// A customer organization and every one of its users.
    Organization { organization_id: OrganizationId },
    /// One of the vendor's staff users.
    Staff { staff_id: StaffId },
}

/// Why an erasure was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErasureReason {
    /// A data subject's (or the customer's) request.
    Request,
    /// The retention policy (cancelled subscriptions anonymized).
    Retention,
}

/// Whether a record holds personal data of `subject`: in its payload (the
/// event's personal fields name or belong to the subject) or in its
/// metadata (the subject is the actor). `metadata` is the stored metadata
/// bytes, if any.
pub fn concerns(header: &RecordHeader, payload: &[u8], metadata: Option<&[u8]>, subject: &Subject) -> bool {
    let _ = (header, payload, metadata, subject);
    todo!("issue 16: subject matching")
}

/// The facts of a record's payload: the event with every personal field
/// redacted, encoded at the record's own type and version, so readers
/// decode it as they decode the payload. For a [`Class::Facts`] type the
/// payload itself.
pub fn facts(header: &RecordHeader, payload: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    let _ = (header, payload);
    todo!("issue 16: redaction")
}

/// Why a payload's facts cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    #[error("sequence {sequence}: event type {event_type} version {version} is not classed")]
    Unclassed { sequence: u64, event_type: String, version: u32 },
    #[error("sequence {sequence}: the payload does not decode: {reason}")]
    Undecodable { sequence: u64, reason: String },
}

/// One record a `SubjectErased` erases, with the facts that stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedRecord {
    pub sequence: u64,
    /// [`facts`] of the erased payload; `None` when the payload was kept
    /// (only the metadata held the subject's data).
    pub facts: Option<Vec<u8>>,
}

/// A sanctioned erasure: whose data, why, and every record it erases, in
/// ascending sequence. Holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectErased {
    pub subject: Subject,
    pub reason: ErasureReason,
    pub at: Timestamp,
    pub records: Vec<ErasedRecord>,
}

/// One run of the retention job: usage reports that occurred before
/// `usage_before`, up to `up_to_sequence`, are retired (erased, nothing
/// kept); counts of what else the run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionApplied {
    pub at: Timestamp,
    pub usage_before: Timestamp,
    pub up_to_sequence: u64,
    pub usage_records: u64,
    pub keys_archived: u64,
    pub subscriptions_anonymized: u64,
}

crate::stored_events! {
    /// Sanctioned erasures and retention runs, on `privacy/log`.
    pub enum PrivacyEvent {
        SubjectErased = "SubjectErased" version 1,
        RetentionApplied = "RetentionApplied" version 1,
    }
}

/// Whether the privacy event `by` sanctions erasing the record `header`:
/// a `SubjectErased` that lists its sequence, or a `RetentionApplied`
/// whose rule covers it.
pub fn sanctions(by: &PrivacyEvent, header: &RecordHeader) -> bool {
    let _ = (by, header);
    todo!("issue 16: sanctions")
}

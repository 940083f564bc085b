//! Privacy (issue 16): which stored events hold personal data, what of
//! each is a fact, and the events that sanction an erasure.
//!
//! Every stored event type is classed ([`class`]): `Facts` (ids, roles,
//! flags, amounts, times, hashes, codes) or `Personal` (names, e-mail
//! addresses, IP addresses, user agents, free text people typed, OIDC
//! subjects, Stripe's event bodies, company names). [`facts`] redacts a
//! personal payload's personal fields and re-encodes it at its own type
//! and version; the placeholders:
//! - an e-mail address becomes [`erased_email`] of its owner's id (unique,
//!   so read models' unique indexes and the aggregates' duplicate checks
//!   behave as before);
//! - an IP address becomes the empty string;
//! - any other personal text (names, reasons, subjects, messages) becomes
//!   [`ERASED_TEXT`], and Stripe's event body [`ERASED_JSON`].
//!
//! The signatures here are the contract between the store, the use cases
//! and `replay` (/work/notes/privacy-design.md).

use serde::{Deserialize, Serialize};

use crate::event::StoredEvent;
use crate::notification::NotificationEvent;
use crate::record::{Metadata, RecordHeader};
use crate::staff::StaffId;
use crate::{LicenseId, OrganizationId, StreamId, Timestamp, UserId};
use crate::{billing, branding, license, organization, signin, sso, staff, stripe};

/// What erased personal text (a name, a reason, a subject, a message)
/// reads as in an event's facts.
pub const ERASED_TEXT: &str = "[erased]";

/// What an erased Stripe event body reads as: valid, empty JSON.
pub const ERASED_JSON: &str = "{}";

/// The e-mail address an erased user's (or staff user's) address reads
/// as: unique per id, in the reserved `.invalid` domain (RFC 2606), so it
/// names nobody and can never be delivered.
pub fn erased_email(id: &uuid::Uuid) -> String {
    format!("erased-{id}@erased.invalid")
}

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
    if PERSONAL.contains(&event_type) {
        Some(Class::Personal)
    } else if FACTS.contains(&event_type) {
        Some(Class::Facts)
    } else {
        None
    }
}

/// The stored types holding personal data, each with the fields
/// [`facts`] redacts (ARCHITECTURE.md, "Personal data in events").
pub const PERSONAL: &[&str] = &[
    // organization: the company's name and domain; a user's e-mail.
    "OrganizationCreated",
    "UserAdded",
    // staff: a staff user's name and e-mail; a service token's name (typed by staff).
    "StaffUserAdded",
    "ServiceTokenIssued",
    // branding: the company's display name.
    "BrandingSet",
    // free text typed by people.
    "LicenseRevoked",
    "InvoiceVoided",
    "CreditNoteIssued",
    // Stripe: event bodies hold customers' names, e-mails and addresses; refusals quote them.
    "StripeEventReceived",
    "StripeSyncRefused",
    // portal sign-ins: IP addresses, e-mails and OIDC subjects.
    "PortalSignedIn",
    "PortalSignedOut",
    "PortalSessionRevoked",
    "PortalSignInRefused",
    "ConsoleSignInRefused",
    // SSO: OIDC subjects, IP addresses.
    "SsoLinked",
    "SsoSignedIn",
    "SsoLinkRehashed",
];

/// The stored types holding no personal data: ids, roles, flags, amounts,
/// times, hashes, codes, generated text.
pub const FACTS: &[&str] = &[
    "UserDeactivated",
    "UserRoleChanged",
    "ApiTokenIssued",
    "ApiTokenRevoked",
    "SubscriptionStarted",
    "SubscriptionEnded",
    "ApiTokenRehashed",
    "SubscriptionCreated",
    "SubscriptionUpgraded",
    "DowngradeScheduled",
    "AutoRenewalCancelled",
    "SubscriptionCancelled",
    "AddonAdded",
    "SubscriptionRenewed",
    "SubscriptionExpired",
    "PaymentFailed",
    "PaymentSucceeded",
    "SubscriptionSuspended",
    "AddonEnded",
    "AddonRepriced",
    "FloatingDeploymentsSet",
    "LicenseIssued",
    "LicenseSuperseded",
    "DeploymentActivated",
    "DeploymentReleased",
    "FloatingDeploymentLeased",
    "DeploymentKeyBound",
    "DeploymentKeyReset",
    "LicenseKeyRehashed",
    "OfflineActivated",
    "OfflineUsageImported",
    "LicenseValidated",
    "FloatingLeaseExtended",
    "UsageReported",
    "InvoiceIssued",
    "CheckpointSigned",
    "CheckpointKeyRotated",
    "LogRollbackAccepted",
    "ServerSecretRotated",
    "ServerSecretRetired",
    "NotificationSent",
    "NotificationSkipped",
    "StripeEventHandled",
    "StripeCustomerLinked",
    "StripeInvoiceCreated",
    "StripePaymentMethodSaved",
    "StripeDefaultPaymentMethodSet",
    "StripeSyncStarted",
    "StripeInvoiceVoided",
    "StripeCreditNoteCreated",
    "StripeSyncRetried",
    "BrandingRemoved",
    "StaffRoleChanged",
    "StaffUserDisabled",
    "ServiceTokenRevoked",
    "ServiceTokenRehashed",
    "PortalMailResent",
    "SsoConfigured",
    "SsoRemoved",
    "SsoSecretResealed",
    "SubjectErased",
    "RetentionApplied",
    "LicenseKeysArchived",
];

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
///
/// An actor names a user as `org:{organization}:{role}:user:{user}`, an
/// organization's token as `org:{organization}:{role}:token:{token}` (the
/// organization's, not one user's), a staff user as `staff:{id}:{role}`
/// (`usecases::caller::Caller::actor`). A payload names its subject by its
/// ids; a payload that does not decode names nobody.
pub fn concerns(header: &RecordHeader, payload: &[u8], metadata: Option<&[u8]>, subject: &Subject) -> bool {
    let actor = metadata.and_then(|bytes| Metadata::decode(bytes).ok()).and_then(|m| m.actor);
    if actor.is_some_and(|actor| actor_is(&actor, subject)) {
        return true;
    }
    payload_names(header, payload).is_some_and(|named| named.matches(subject))
}

/// Whether an actor label names the subject (or, for an organization, any
/// of its users or tokens).
fn actor_is(actor: &str, subject: &Subject) -> bool {
    let parts: Vec<&str> = actor.split(':').collect();
    match (subject, parts.as_slice()) {
        (Subject::Organization { organization_id }, ["org", org, ..]) => *org == organization_id.0.to_string(),
        (Subject::User { organization_id, user_id }, ["org", org, _, "user", user]) => {
            *org == organization_id.0.to_string() && *user == user_id.0.to_string()
        }
        (Subject::Staff { staff_id }, ["staff", id, ..]) => *id == staff_id.0.to_string(),
        _ => false,
    }
}

/// Whose personal data a payload holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    /// The organization's own fields.
    Organization(OrganizationId),
    /// One user of an organization.
    User(OrganizationId, UserId),
    /// Users of an organization (a notification's recipients).
    Users(OrganizationId, Vec<UserId>),
    /// A staff user.
    Staff(StaffId),
}

impl Named {
    fn matches(&self, subject: &Subject) -> bool {
        match (self, subject) {
            (
                Named::Organization(org) | Named::User(org, _) | Named::Users(org, _),
                Subject::Organization { organization_id },
            ) => org == organization_id,
            (Named::User(org, user), Subject::User { organization_id, user_id }) => {
                org == organization_id && user == user_id
            }
            (Named::Users(org, users), Subject::User { organization_id, user_id }) => {
                org == organization_id && users.contains(user_id)
            }
            (Named::Staff(id), Subject::Staff { staff_id }) => id == staff_id,
            _ => false,
        }
    }
}

/// The organization an `org/{id}` stream belongs to.
fn stream_organization(stream: &StreamId) -> Option<OrganizationId> {
    let (category, id) = stream.as_str().split_once('/')?;
    (category == "org").then(|| uuid::Uuid::parse_str(id).ok()).flatten().map(OrganizationId)
}

/// Whose personal data the payload holds, by its ids; `None` for a payload
/// naming no subject (or not decoding).
fn payload_names(header: &RecordHeader, payload: &[u8]) -> Option<Named> {
    let (kind, version) = (header.event_type.as_str(), header.schema_version);
    if let Ok(Some(event)) = organization::OrganizationEvent::decode(kind, version, payload) {
        let org = stream_organization(&header.stream_id)?;
        return match event {
            organization::OrganizationEvent::OrganizationCreated(_) => Some(Named::Organization(org)),
            organization::OrganizationEvent::UserAdded(e) => Some(Named::User(org, e.user_id)),
            _ => None,
        };
    }
    if let Ok(Some(event)) = signin::SignInEvent::decode(kind, version, payload) {
        return signin_names(event);
    }
    if let Ok(Some(event)) = sso::SsoEvent::decode(kind, version, payload) {
        return match event {
            sso::SsoEvent::SsoLinked(e) => Some(Named::User(e.organization_id, e.user_id)),
            sso::SsoEvent::SsoSignedIn(e) => Some(Named::User(e.organization_id, e.user_id)),
            sso::SsoEvent::SsoLinkRehashed(e) => Some(Named::User(e.organization_id, e.user_id)),
            _ => None,
        };
    }
    other_names(kind, version, payload)
}

fn signin_names(event: signin::SignInEvent) -> Option<Named> {
    use signin::SignInEvent as E;
    match event {
        E::SignedIn(e) => Some(Named::User(e.organization_id, e.user_id)),
        E::SignedOut(e) => Some(Named::User(e.organization_id, e.user_id)),
        E::SessionRevoked(e) => Some(Named::User(e.organization_id, e.user_id)),
        E::SignInRefused(e) => Some(Named::User(e.organization_id, e.user_id)),
        E::MailResent(e) => Some(Named::User(e.organization_id, e.user_id)),
        // Names no staff user by id (an unknown address or identity): no subject's by id.
        E::ConsoleSignInRefused(_) => None,
    }
}

fn other_names(kind: &str, version: u32, payload: &[u8]) -> Option<Named> {
    if let Ok(Some(event)) = staff::StaffEvent::decode(kind, version, payload) {
        return match event {
            staff::StaffEvent::StaffUserAdded(e) => Some(Named::Staff(e.staff_id)),
            _ => None,
        };
    }
    if let Ok(Some(event)) = branding::BrandingEvent::decode(kind, version, payload) {
        return match event {
            branding::BrandingEvent::BrandingSet(e) => Some(Named::Organization(e.organization_id)),
            branding::BrandingEvent::BrandingRemoved(_) => None,
        };
    }
    if let Ok(Some(NotificationEvent::NotificationSent(e))) = NotificationEvent::decode(kind, version, payload) {
        return Some(Named::Users(e.notice.organization_id(), e.recipients));
    }
    if let Ok(Some(stripe::StripeEvent::StripeSyncRefused(e))) = stripe::StripeEvent::decode(kind, version, payload) {
        let (category, id) = e.target.split_once('/')?;
        let org = uuid::Uuid::parse_str(id).ok().filter(|_| category == "stripe-payment-method")?;
        return Some(Named::Organization(OrganizationId(org)));
    }
    if let Ok(Some(event)) = billing::InvoiceEvent::decode(kind, version, payload) {
        return match event {
            billing::InvoiceEvent::InvoiceVoided(e) => Some(Named::Organization(e.organization_id)),
            billing::InvoiceEvent::CreditNoteIssued(e) => Some(Named::Organization(e.organization_id)),
            billing::InvoiceEvent::InvoiceIssued(_) => None,
        };
    }
    None
}

/// The facts of a record's payload: the event with every personal field
/// redacted, encoded at the record's own type and version, so readers
/// decode it as they decode the payload. For a [`Class::Facts`] type the
/// payload itself.
pub fn facts(header: &RecordHeader, payload: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    match class(&header.event_type) {
        Some(Class::Facts) => Ok(payload.to_vec()),
        Some(Class::Personal) => redact_personal(header, payload),
        None => Err(unclassed(header)),
    }
}

fn unclassed(header: &RecordHeader) -> PrivacyError {
    PrivacyError::Unclassed {
        sequence: header.sequence,
        event_type: header.event_type.clone(),
        version: header.schema_version,
    }
}

/// Decodes the payload as `E`, redacts it and re-encodes it; `Ok(None)`
/// when the type is not `E`'s. A personal type is redacted only at its
/// current version (every personal type has one version so far): an older
/// one would be re-encoded in the current shape, which readers of that
/// version would not decode, so it is refused as unclassed.
fn redact_as<E: StoredEvent>(
    header: &RecordHeader,
    payload: &[u8],
    redact: impl FnOnce(E) -> E,
) -> Result<Option<Vec<u8>>, PrivacyError> {
    let (kind, version) = (header.event_type.as_str(), header.schema_version);
    let event = E::decode(kind, version, payload)
        .map_err(|e| PrivacyError::Undecodable { sequence: header.sequence, reason: e.to_string() })?;
    let Some(event) = event else { return Ok(None) };
    if event.schema_version() != version {
        return Err(unclassed(header));
    }
    Ok(Some(redact(event).encode_payload()))
}

/// One enum's redaction: the facts, or `None` when the type is not its.
type Redaction = fn(&RecordHeader, &[u8]) -> Result<Option<Vec<u8>>, PrivacyError>;

fn redact_personal(header: &RecordHeader, payload: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    let attempts: [Redaction; 8] = [
        |h, p| redact_as(h, p, redact_organization),
        |h, p| redact_as(h, p, redact_staff),
        |h, p| redact_as(h, p, redact_branding),
        |h, p| redact_as(h, p, redact_license),
        |h, p| redact_as(h, p, redact_invoice),
        |h, p| redact_as(h, p, redact_stripe),
        |h, p| redact_as(h, p, redact_signin),
        |h, p| redact_as(h, p, redact_sso),
    ];
    for attempt in attempts {
        if let Some(facts) = attempt(header, payload)? {
            return Ok(facts);
        }
    }
    Err(unclassed(header))
}

fn text() -> String {
    ERASED_TEXT.to_owned()
}

fn redact_organization(event: organization::OrganizationEvent) -> organization::OrganizationEvent {
    use organization::OrganizationEvent as E;
    match event {
        E::OrganizationCreated(e) => E::OrganizationCreated(organization::OrganizationCreated {
            name: text(),
            domain: e.domain.map(|_| text()),
            ..e
        }),
        E::UserAdded(e) => E::UserAdded(organization::UserAdded { email: erased_email(&e.user_id.0), ..e }),
        other => other,
    }
}

fn redact_staff(event: staff::StaffEvent) -> staff::StaffEvent {
    use staff::StaffEvent as E;
    match event {
        E::StaffUserAdded(e) => {
            E::StaffUserAdded(staff::StaffUserAdded { name: text(), email: erased_email(&e.staff_id.0), ..e })
        }
        E::ServiceTokenIssued(e) => E::ServiceTokenIssued(staff::ServiceTokenIssued { name: text(), ..e }),
        other => other,
    }
}

fn redact_branding(event: branding::BrandingEvent) -> branding::BrandingEvent {
    match event {
        branding::BrandingEvent::BrandingSet(e) => {
            branding::BrandingEvent::BrandingSet(branding::BrandingSet { display_name: text(), ..e })
        }
        other => other,
    }
}

fn redact_license(event: license::LicenseEvent) -> license::LicenseEvent {
    match event {
        license::LicenseEvent::LicenseRevoked(_) => {
            license::LicenseEvent::LicenseRevoked(license::LicenseRevoked { reason: text() })
        }
        other => other,
    }
}

fn redact_invoice(event: billing::InvoiceEvent) -> billing::InvoiceEvent {
    use billing::InvoiceEvent as E;
    match event {
        E::InvoiceVoided(e) => E::InvoiceVoided(billing::InvoiceVoided { reason: text(), ..e }),
        E::CreditNoteIssued(e) => E::CreditNoteIssued(billing::CreditNoteIssued { reason: text(), ..e }),
        other => other,
    }
}

fn redact_stripe(event: stripe::StripeEvent) -> stripe::StripeEvent {
    use stripe::StripeEvent as E;
    match event {
        E::StripeEventReceived(e) => {
            E::StripeEventReceived(stripe::StripeEventReceived { body: ERASED_JSON.to_owned(), ..e })
        }
        E::StripeSyncRefused(e) => E::StripeSyncRefused(stripe::StripeSyncRefused { message: text(), ..e }),
        other => other,
    }
}

fn redact_signin(event: signin::SignInEvent) -> signin::SignInEvent {
    use signin::SignInEvent as E;
    match event {
        E::SignedIn(e) => E::SignedIn(signin::SignedIn { address: String::new(), ..e }),
        E::SignedOut(e) => E::SignedOut(signin::SignedOut { address: String::new(), ..e }),
        E::SessionRevoked(e) => E::SessionRevoked(signin::SessionRevoked { address: String::new(), ..e }),
        E::SignInRefused(e) => E::SignInRefused(signin::SignInRefused { address: String::new(), ..e }),
        E::ConsoleSignInRefused(e) => E::ConsoleSignInRefused(signin::ConsoleSignInRefused {
            email: e.email.as_ref().map(|_| text()),
            subject: e.subject.as_ref().map(|_| text()),
            address: String::new(),
            ..e
        }),
        other => other,
    }
}

fn redact_sso(event: sso::SsoEvent) -> sso::SsoEvent {
    use sso::SsoEvent as E;
    match event {
        E::SsoLinked(e) => E::SsoLinked(sso::SsoLinked { subject: text(), ..e }),
        E::SsoSignedIn(e) => E::SsoSignedIn(sso::SsoSignedIn { address: String::new(), ..e }),
        E::SsoLinkRehashed(e) => E::SsoLinkRehashed(sso::SsoLinkRehashed { subject: text(), ..e }),
        other => other,
    }
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

/// At most this many licenses are listed by one `LicenseKeysArchived`.
pub const ARCHIVED_LICENSES_PER_EVENT_MAX: usize = 1_000;

/// License keys archived by the retention job: each listed license's key
/// stopped being valid (its license ended) before `expired_before`. An
/// archived license is left out of its organization's license listings;
/// its key validates as before. Erases nothing; at most
/// [`ARCHIVED_LICENSES_PER_EVENT_MAX`] licenses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseKeysArchived {
    pub at: Timestamp,
    pub expired_before: Timestamp,
    pub licenses: Vec<LicenseId>,
}

crate::stored_events! {
    /// Sanctioned erasures and retention runs, on `privacy/log`.
    pub enum PrivacyEvent {
        SubjectErased = "SubjectErased" version 1,
        RetentionApplied = "RetentionApplied" version 1,
        LicenseKeysArchived = "LicenseKeysArchived" version 1,
    }
}

/// Whether the privacy event `by` sanctions erasing the record `header`:
/// a `SubjectErased` that lists its sequence, or a `RetentionApplied`
/// whose rule covers it.
pub fn sanctions(by: &PrivacyEvent, header: &RecordHeader) -> bool {
    match by {
        PrivacyEvent::SubjectErased(erased) => {
            erased.records.binary_search_by_key(&header.sequence, |record| record.sequence).is_ok()
        }
        PrivacyEvent::RetentionApplied(run) => {
            header.event_type == USAGE_REPORTED
                && header.occurred_at < run.usage_before
                && header.sequence <= run.up_to_sequence
        }
        PrivacyEvent::LicenseKeysArchived(_) => false,
    }
}

/// The usage report's stored type, the one retention retires.
const USAGE_REPORTED: &str = "UsageReported";

/// Whether a `StripeEventReceived` payload's body mentions `needle` (a
/// Stripe customer id the organization was linked to,
/// `StripeCustomerLinked`): [`concerns`] cannot tell a Stripe event's
/// organization without that link, so the caller who knows the
/// organization's customer ids asks this too.
pub fn stripe_event_mentions(header: &RecordHeader, payload: &[u8], needle: &str) -> bool {
    let (kind, version) = (header.event_type.as_str(), header.schema_version);
    match stripe::StripeEvent::decode(kind, version, payload) {
        Ok(Some(stripe::StripeEvent::StripeEventReceived(e))) => !needle.is_empty() && e.body.contains(needle),
        _ => false,
    }
}

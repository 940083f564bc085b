//! Privacy (issue 16): every stored type is classed; a personal payload's
//! facts keep every fact and no personal byte; the organization decides
//! the same on its redacted history; which records concern a subject;
//! which records a privacy event sanctions erasing.

use std::collections::BTreeSet;
use std::path::Path;

use cqrs_es::test::TestFramework;
use ledger_domain::billing::InvoiceEvent;
use ledger_domain::branding::BrandingEvent;
use ledger_domain::checkpoint::CheckpointEvent;
use ledger_domain::event::{LedgerEvent, StoredEvent, StoredType};
use ledger_domain::license::LicenseEvent;
use ledger_domain::notification::NotificationEvent;
use ledger_domain::organization::{
    Organization, OrganizationCommand, OrganizationCreated, OrganizationEvent, Role, UserAdded, UserDeactivated,
};
use ledger_domain::privacy::{
    self, Class, ERASED_TEXT, ErasedRecord, ErasureReason, PrivacyError, PrivacyEvent, RetentionApplied, Subject,
    SubjectErased,
};
use ledger_domain::record::{Hash, Metadata, RecordHeader};
use ledger_domain::signin::{self, SignInEvent};
use ledger_domain::sso::{self, SsoEvent};
use ledger_domain::staff::{StaffEvent, StaffId};
use ledger_domain::stripe::StripeEvent;
use ledger_domain::subscription::SubscriptionEvent;
use ledger_domain::usage::UsageEvent;
use ledger_domain::validation::ValidationEvent;
use ledger_domain::{EventId, OrganizationId, StreamId, SubscriptionId, Timestamp, TokenId, UserId};
use serde_json::Value;
use uuid::Uuid;

/// Every `stored_events!` enum of the ledger, by name, with its stored types.
fn enums() -> Vec<(&'static str, &'static [StoredType])> {
    vec![
        ("OrganizationEvent", OrganizationEvent::STORED_TYPES),
        ("SubscriptionEvent", SubscriptionEvent::STORED_TYPES),
        ("LicenseEvent", LicenseEvent::STORED_TYPES),
        ("ValidationEvent", ValidationEvent::STORED_TYPES),
        ("UsageEvent", UsageEvent::STORED_TYPES),
        ("InvoiceEvent", InvoiceEvent::STORED_TYPES),
        ("CheckpointEvent", CheckpointEvent::STORED_TYPES),
        ("NotificationEvent", NotificationEvent::STORED_TYPES),
        ("StripeEvent", StripeEvent::STORED_TYPES),
        ("BrandingEvent", BrandingEvent::STORED_TYPES),
        ("StaffEvent", StaffEvent::STORED_TYPES),
        ("PrivacyEvent", PrivacyEvent::STORED_TYPES),
        ("SignInEvent", SignInEvent::STORED_TYPES),
        ("SsoEvent", SsoEvent::STORED_TYPES),
    ]
}

/// The enums the workspace's sources declare with `stored_events!`
/// (outside `event.rs`'s own tests and documentation).
fn declared_enums() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = BTreeSet::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("src")))
        .filter(|path| path.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("domain/src/event.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for block in text.split("stored_events! {").skip(1) {
                    let name = block.split("pub enum ").nth(1).unwrap().split_whitespace().next().unwrap();
                    found.insert(name.to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn every_stored_type_of_every_stored_events_enum_is_classed() {
    let checked: BTreeSet<String> = enums().iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(checked, declared_enums(), "a stored_events! enum this test does not walk (add it to enums())");
    let walked: BTreeSet<StoredType> = enums().iter().flat_map(|(_, types)| types.iter().copied()).collect();
    for types in LedgerEvent::STORED_TYPES {
        assert!(types.iter().all(|t| walked.contains(t)), "LedgerEvent stores a type this test does not walk");
    }
    let unclassed: Vec<_> = walked.iter().filter(|t| privacy::class(t.name).is_none()).map(|t| t.name).collect();
    assert!(unclassed.is_empty(), "unclassed stored types: {unclassed:?}");
    // The lists name no type that is not stored (a typo would class nothing).
    let names: BTreeSet<&str> = walked.iter().map(|t| t.name).collect();
    for name in privacy::PERSONAL.iter().chain(privacy::FACTS) {
        assert!(names.contains(name), "{name} is classed but not stored");
    }
    assert!(privacy::PERSONAL.iter().all(|name| !privacy::FACTS.contains(name)), "a type classed twice");
    // A personal type's facts are re-encoded at its own version: each has one.
    for name in privacy::PERSONAL {
        let versions = walked.iter().filter(|t| t.name == *name).count();
        assert_eq!(versions, 1, "{name} has older versions: facts() must re-encode them in their frozen shape");
    }
    assert_eq!(privacy::class("NoSuchEvent"), None);
}

/// The personal fields of each personal type, as the JSON of its event.
fn personal_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "OrganizationCreated" => &["name", "domain"],
        "UserAdded" => &["email"],
        "StaffUserAdded" => &["name", "email"],
        "ServiceTokenIssued" => &["name"],
        "BrandingSet" => &["display_name"],
        "LicenseRevoked" | "InvoiceVoided" | "CreditNoteIssued" => &["reason"],
        "StripeEventReceived" => &["body"],
        "StripeSyncRefused" => &["message"],
        "PortalSignedIn" | "PortalSignedOut" | "PortalSessionRevoked" | "PortalSignInRefused" | "SsoSignedIn" => {
            &["address"]
        }
        "ConsoleSignInRefused" => &["email", "subject", "address"],
        "SsoLinked" | "SsoLinkRehashed" => &["subject"],
        other => panic!("{other}: no personal fields listed in this test"),
    }
}

fn fields_of<E: StoredEvent + serde::Serialize>(event: &E) -> Value {
    let json = serde_json::to_value(event).unwrap();
    json.as_object().and_then(|map| map.values().next().cloned()).unwrap()
}

/// A payload's event as JSON fields, by its type and version.
fn decode_fields(header: &RecordHeader, payload: &[u8]) -> Value {
    fn attempt<E: StoredEvent + serde::Serialize>(header: &RecordHeader, payload: &[u8]) -> Option<Value> {
        E::decode(&header.event_type, header.schema_version, payload).unwrap().map(|event| fields_of(&event))
    }
    None.or_else(|| attempt::<OrganizationEvent>(header, payload))
        .or_else(|| attempt::<StaffEvent>(header, payload))
        .or_else(|| attempt::<BrandingEvent>(header, payload))
        .or_else(|| attempt::<LicenseEvent>(header, payload))
        .or_else(|| attempt::<InvoiceEvent>(header, payload))
        .or_else(|| attempt::<StripeEvent>(header, payload))
        .or_else(|| attempt::<SignInEvent>(header, payload))
        .or_else(|| attempt::<SsoEvent>(header, payload))
        .unwrap_or_else(|| panic!("{} does not decode as a personal type", header.event_type))
}

/// The strings a personal field holds, and the e-mail addresses in them.
fn personal_strings(value: &Value) -> Vec<String> {
    let Some(text) = value.as_str() else { return Vec::new() };
    let mut strings = vec![text.to_owned()];
    let parts = text.split(|c: char| !(c.is_ascii_alphanumeric() || "@._+-".contains(c)));
    strings.extend(parts.filter(|part| part.contains('@')).map(str::to_owned));
    strings
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Checks one record's facts; returns whether its type is personal.
fn check_facts(header: &RecordHeader, payload: &[u8]) -> bool {
    let facts = privacy::facts(header, payload).unwrap();
    if privacy::class(&header.event_type) == Some(Class::Facts) {
        assert_eq!(facts, payload, "{}: a Facts type's facts are its payload", header.event_type);
        return false;
    }
    let (mut before, mut after) = (decode_fields(header, payload), decode_fields(header, &facts));
    for field in personal_fields(&header.event_type) {
        let original = before.as_object_mut().unwrap().remove(*field).unwrap();
        let erased = after.as_object_mut().unwrap().remove(*field).unwrap();
        for personal in personal_strings(&original).iter().filter(|s| !s.is_empty()) {
            assert!(
                !contains(&facts, personal.as_bytes()),
                "{}: the facts still hold {field} {personal:?}",
                header.event_type
            );
        }
        assert_eq!(original.is_null(), erased.is_null(), "{}: {field} keeps its presence", header.event_type);
    }
    assert_eq!(before, after, "{}: every non-personal field is kept", header.event_type);
    true
}

fn header(sequence: u64, stream: &str, event_type: &str, version: u32) -> RecordHeader {
    RecordHeader {
        sequence,
        event_id: EventId(Uuid::from_u128(u128::from(sequence))),
        stream_id: StreamId::new(stream.to_owned()).unwrap(),
        stream_revision: 1,
        event_type: event_type.to_owned(),
        schema_version: version,
        occurred_at: Timestamp::from_micros(1_800_000_000_000_000),
        recorded_at: Timestamp::from_micros(1_800_000_000_000_000),
        idempotency_key: None,
    }
}

#[test]
fn every_golden_example_keeps_its_facts_and_loses_its_personal_data() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/events-v1.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut personal = BTreeSet::new();
    for record in golden["records"].as_array().unwrap() {
        let event_type = record["event_type"].as_str().unwrap();
        let version = u32::try_from(record["schema_version"].as_u64().unwrap()).unwrap();
        let mut header =
            header(record["sequence"].as_u64().unwrap(), record["stream_id"].as_str().unwrap(), event_type, version);
        header.occurred_at = Timestamp::from_micros(record["occurred_at_us"].as_i64().unwrap());
        let payload = hex::decode(record["payload_hex"].as_str().unwrap()).unwrap();
        if check_facts(&header, &payload) {
            personal.insert(event_type.to_owned());
        }
    }
    // Each personal type the golden file has an example of was checked.
    let expected: BTreeSet<String> = privacy::PERSONAL
        .iter()
        .filter(|name| golden["records"].as_array().unwrap().iter().any(|r| r["event_type"] == **name))
        .map(|name| (*name).to_owned())
        .collect();
    assert_eq!(personal, expected);
    assert!(personal.contains("UserAdded") && personal.contains("StripeEventReceived"));
}

const ORG: OrganizationId = OrganizationId(Uuid::from_u128(0x0a));
const OTHER_ORG: OrganizationId = OrganizationId(Uuid::from_u128(0x0b));
const JANA: UserId = UserId(Uuid::from_u128(0x101));
const PIET: UserId = UserId(Uuid::from_u128(0x102));
const ADA: StaffId = StaffId(Uuid::from_u128(0x5a01));
const AT: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);

/// Realistic portal events (the golden file holds none): each with its stream.
fn portal_examples() -> Vec<(String, SignInEvent)> {
    let session = Uuid::from_u128(0x5e55);
    vec![
        (
            "signin/ab12".into(),
            signin::SignedIn {
                organization_id: ORG,
                user_id: JANA,
                session_id: session,
                address: "203.0.113.7".into(),
                at: AT,
            }
            .into(),
        ),
        (
            format!("portal-session/{session}"),
            signin::SignedOut {
                organization_id: ORG,
                user_id: JANA,
                session_id: session,
                address: "2001:db8::7".into(),
                at: AT,
            }
            .into(),
        ),
        (
            format!("portal-session/{session}"),
            signin::SessionRevoked {
                organization_id: ORG,
                user_id: JANA,
                session_id: session,
                by_session_id: Uuid::from_u128(9),
                address: "203.0.113.8".into(),
                at: AT,
            }
            .into(),
        ),
        (
            format!("portal-refusals/{}:2027-01-02", JANA.0),
            signin::SignInRefused {
                organization_id: ORG,
                user_id: JANA,
                reason: "expired".into(),
                address: "203.0.113.9".into(),
                at: AT,
            }
            .into(),
        ),
        (
            "portal-refusals/console:2027-01-02".into(),
            signin::ConsoleSignInRefused {
                method: "oidc".into(),
                reason: "unknown".into(),
                email: Some("mallory@evil.example".into()),
                subject: Some("00u1abcd2EFGH3ijk4l5".into()),
                address: "198.51.100.66".into(),
                at: AT,
            }
            .into(),
        ),
        (
            format!("portal-resend/{}", JANA.0),
            signin::MailResent { organization_id: ORG, user_id: JANA, kind: "invitation".into(), at: AT }.into(),
        ),
    ]
}

fn sso_examples() -> Vec<(String, SsoEvent)> {
    let issuer = "https://login.nordwind.example".to_owned();
    vec![
        (
            "sso-link/cd34".into(),
            sso::SsoLinked {
                organization_id: ORG,
                user_id: JANA,
                issuer: issuer.clone(),
                subject: "248289761001".into(),
                created: true,
                at: AT,
            }
            .into(),
        ),
        (
            "sso-signin/ef56".into(),
            sso::SsoSignedIn {
                organization_id: ORG,
                user_id: JANA,
                issuer: issuer.clone(),
                session_id: Uuid::from_u128(7),
                address: "203.0.113.70".into(),
                at: AT,
            }
            .into(),
        ),
        (
            "sso-link/cd35".into(),
            sso::SsoLinkRehashed {
                organization_id: ORG,
                user_id: JANA,
                issuer: issuer.clone(),
                subject: "248289761001".into(),
                secret_id: Hash([3; 32]),
                at: AT,
            }
            .into(),
        ),
        (
            format!("sso-config/{}", ORG.0),
            sso::SsoConfigured {
                organization_id: ORG,
                issuer,
                client_id: "ledger".into(),
                sealed_secret: "c2VhbGVk".into(),
                at: AT,
            }
            .into(),
        ),
    ]
}

fn record_of<E: StoredEvent>(sequence: u64, stream: &str, event: &E) -> (RecordHeader, Vec<u8>) {
    (header(sequence, stream, event.event_type(), event.schema_version()), event.encode_payload())
}

#[test]
fn the_portal_and_sso_events_keep_their_facts_and_lose_addresses_and_subjects() {
    let mut personal = 0;
    for (n, (stream, event)) in portal_examples().into_iter().enumerate() {
        let (header, payload) = record_of(n as u64 + 1, &stream, &event);
        personal += usize::from(check_facts(&header, &payload));
    }
    for (n, (stream, event)) in sso_examples().into_iter().enumerate() {
        let (header, payload) = record_of(n as u64 + 10, &stream, &event);
        personal += usize::from(check_facts(&header, &payload));
    }
    assert_eq!(personal, 8, "five personal sign-in types and three SSO ones");
    // An erased address reads as empty, an erased subject as the marker.
    let (header, payload) = record_of(1, "sso-link/cd34", &sso_examples()[0].1);
    let facts = privacy::facts(&header, &payload).unwrap();
    let Some(SsoEvent::SsoLinked(linked)) = SsoEvent::decode("SsoLinked", 1, &facts).unwrap() else { panic!() };
    assert_eq!(linked.subject, ERASED_TEXT);
}

#[test]
fn a_user_added_reads_with_the_erased_email_of_its_user() {
    let event: OrganizationEvent =
        UserAdded { user_id: JANA, email: "jana@nordwind.example".into(), role: Role::Admin }.into();
    let (header, payload) = record_of(2, &format!("org/{}", ORG.0), &event);
    let facts = privacy::facts(&header, &payload).unwrap();
    let read = OrganizationEvent::decode("UserAdded", 1, &facts).unwrap().unwrap();
    let expected: OrganizationEvent =
        UserAdded { user_id: JANA, email: privacy::erased_email(&JANA.0), role: Role::Admin }.into();
    assert_eq!(read, expected);
    assert_eq!(privacy::erased_email(&JANA.0), format!("erased-{}@erased.invalid", JANA.0));
    assert_ne!(privacy::erased_email(&JANA.0), privacy::erased_email(&PIET.0));
}

#[test]
fn facts_refuse_an_unclassed_type_and_an_undecodable_payload() {
    let unknown = header(5, "org/x", "SomethingNew", 1);
    assert_eq!(
        privacy::facts(&unknown, b"x"),
        Err(PrivacyError::Unclassed { sequence: 5, event_type: "SomethingNew".into(), version: 1 })
    );
    let broken = header(6, &format!("org/{}", ORG.0), "UserAdded", 1);
    assert!(matches!(privacy::facts(&broken, &[0xff]), Err(PrivacyError::Undecodable { sequence: 6, .. })));
    // A personal type at a version this ledger does not read is not guessed at.
    let later = header(7, &format!("org/{}", ORG.0), "UserAdded", 2);
    assert!(privacy::facts(&later, &[]).is_err());
}

/// The organization's history: Jana (admin, active), Piet (analyst,
/// deactivated), a token, a live subscription.
fn history() -> Vec<OrganizationEvent> {
    vec![
        OrganizationCreated {
            id: ORG,
            name: "Nordwind Analytics GmbH".into(),
            domain: Some("nordwind.example".into()),
            industry: Some("Logistics".into()),
            employee_count: Some(240),
        }
        .into(),
        UserAdded { user_id: JANA, email: "jana@nordwind.example".into(), role: Role::Admin }.into(),
        UserAdded { user_id: PIET, email: "piet@nordwind.example".into(), role: Role::Analyst }.into(),
        UserDeactivated { user_id: PIET }.into(),
        ledger_domain::organization::SubscriptionStarted { subscription_id: SubscriptionId(Uuid::from_u128(0x300)) }
            .into(),
    ]
}

/// The history with the records `erase` picks replaced by their facts.
fn redacted(events: &[OrganizationEvent], erase: impl Fn(&OrganizationEvent) -> bool) -> Vec<OrganizationEvent> {
    let stream = format!("org/{}", ORG.0);
    events
        .iter()
        .enumerate()
        .map(|(n, event)| {
            if !erase(event) {
                return event.clone();
            }
            let (header, payload) = record_of(n as u64 + 1, &stream, event);
            let facts = privacy::facts(&header, &payload).unwrap();
            OrganizationEvent::decode(&header.event_type, header.schema_version, &facts).unwrap().unwrap()
        })
        .collect()
}

fn commands() -> Vec<OrganizationCommand> {
    let add = |user: u128, email: &str, role| OrganizationCommand::AddUser {
        user_id: UserId(Uuid::from_u128(user)),
        email: email.into(),
        role,
        seat_limit: Some(3),
    };
    vec![
        add(0x103, "piet@nordwind.example", Role::Viewer),
        add(0x103, "PIET@nordwind.example", Role::Admin),
        add(0x104, "jana@nordwind.example", Role::Viewer),
        add(0x105, &privacy::erased_email(&PIET.0), Role::Viewer),
        add(0x106, "new@nordwind.example", Role::Analyst),
        OrganizationCommand::DeactivateUser { user_id: PIET },
        OrganizationCommand::DeactivateUser { user_id: JANA },
        OrganizationCommand::ChangeRole { user_id: PIET, role: Role::Admin },
        OrganizationCommand::ChangeRole { user_id: JANA, role: Role::Viewer },
        OrganizationCommand::IssueToken {
            token_id: TokenId(Uuid::from_u128(0x200)),
            role: Role::Viewer,
            token_hash: Hash([1; 32]),
            expires_at: None,
            now: AT,
        },
        OrganizationCommand::RevokeToken { token_id: TokenId(Uuid::from_u128(0x201)) },
        OrganizationCommand::StartSubscription { subscription_id: SubscriptionId(Uuid::from_u128(0x301)) },
        OrganizationCommand::EndSubscription { subscription_id: SubscriptionId(Uuid::from_u128(0x300)) },
        OrganizationCommand::Create {
            id: ORG,
            name: "Again".into(),
            domain: None,
            industry: None,
            employee_count: None,
        },
    ]
}

fn answer(events: &[OrganizationEvent], command: OrganizationCommand) -> String {
    format!("{:?}", TestFramework::<Organization>::with(()).given(events.to_vec()).when(command).inspect_result())
}

#[test]
fn the_organization_answers_every_command_the_same_after_an_inactive_users_erasure() {
    let original = history();
    // Piet (deactivated) erased, and the organization's own name and domain.
    let erased = redacted(&original, |event| match event {
        OrganizationEvent::UserAdded(e) => e.user_id == PIET,
        OrganizationEvent::OrganizationCreated(_) => true,
        _ => false,
    });
    assert_ne!(erased, original, "something was redacted");
    for command in commands() {
        let case = format!("{command:?}");
        assert_eq!(answer(&original, command.clone()), answer(&erased, command), "{case}");
    }
    // After further events too: Jana deactivated, Piet's address added again.
    let mut later = original.clone();
    later.push(UserDeactivated { user_id: JANA }.into());
    let later_erased = redacted(&later, |event| matches!(event, OrganizationEvent::UserAdded(_)));
    for command in commands() {
        let case = format!("{command:?}");
        assert_eq!(answer(&later, command.clone()), answer(&later_erased, command), "all inactive: {case}");
    }
}

#[test]
fn erasing_an_active_user_would_change_a_decision_which_is_why_erasure_requires_deactivation() {
    let original = history();
    let erased = redacted(&original, |event| matches!(event, OrganizationEvent::UserAdded(e) if e.user_id == JANA));
    let again = OrganizationCommand::AddUser {
        user_id: UserId(Uuid::from_u128(0x107)),
        email: "jana@nordwind.example".into(),
        role: Role::Viewer,
        seat_limit: None,
    };
    assert!(answer(&original, again.clone()).starts_with("Err(DuplicateEmail"));
    assert!(answer(&erased, again).starts_with("Ok("));
}

fn metadata(actor: &str) -> Vec<u8> {
    Metadata {
        actor: Some(actor.into()),
        correlation_id: None,
        source_ip: Some("203.0.113.1".into()),
        user_agent: None,
    }
    .encode()
}

#[test]
fn a_record_concerns_the_users_and_organizations_its_payload_or_actor_names() {
    let jana = Subject::User { organization_id: ORG, user_id: JANA };
    let piet = Subject::User { organization_id: ORG, user_id: PIET };
    let org = Subject::Organization { organization_id: ORG };
    let other = Subject::Organization { organization_id: OTHER_ORG };
    let ada = Subject::Staff { staff_id: ADA };
    let stream = format!("org/{}", ORG.0);
    let (added, payload) = record_of(
        2,
        &stream,
        &OrganizationEvent::from(UserAdded { user_id: JANA, email: "jana@nordwind.example".into(), role: Role::Admin }),
    );
    assert!(privacy::concerns(&added, &payload, None, &jana));
    assert!(privacy::concerns(&added, &payload, None, &org));
    assert!(!privacy::concerns(&added, &payload, None, &piet));
    assert!(!privacy::concerns(&added, &payload, None, &other));
    assert!(!privacy::concerns(&added, &payload, None, &ada));
    // A facts-only event concerns its actor, not the user it names.
    let (deactivated, payload) = record_of(3, &stream, &OrganizationEvent::from(UserDeactivated { user_id: PIET }));
    assert!(!privacy::concerns(&deactivated, &payload, None, &piet));
    let by_jana = metadata(&format!("org:{}:admin:user:{}", ORG.0, JANA.0));
    assert!(privacy::concerns(&deactivated, &payload, Some(&by_jana), &jana));
    assert!(privacy::concerns(&deactivated, &payload, Some(&by_jana), &org));
    assert!(!privacy::concerns(&deactivated, &payload, Some(&by_jana), &piet));
    assert!(!privacy::concerns(&deactivated, &payload, Some(&by_jana), &other));
    // A token's actor is the organization's, no one user's.
    let by_token = metadata(&format!("org:{}:admin:token:{}", ORG.0, Uuid::from_u128(0x200)));
    assert!(privacy::concerns(&deactivated, &payload, Some(&by_token), &org));
    assert!(!privacy::concerns(&deactivated, &payload, Some(&by_token), &jana));
    let by_ada = metadata(&format!("staff:{}:staff_admin", ADA.0));
    assert!(privacy::concerns(&deactivated, &payload, Some(&by_ada), &ada));
    assert!(!privacy::concerns(&deactivated, &payload, Some(&by_ada), &org));
    assert!(!privacy::concerns(&deactivated, &payload, Some(&metadata("operator")), &org));
    // The organization's own name.
    let (created, payload) = record_of(1, &stream, &history()[0]);
    assert!(privacy::concerns(&created, &payload, None, &org));
    assert!(!privacy::concerns(&created, &payload, None, &jana));
    assert!(!privacy::concerns(&created, &payload, None, &other));
}

#[test]
fn sign_ins_sso_links_resends_and_notifications_concern_their_user() {
    let jana = Subject::User { organization_id: ORG, user_id: JANA };
    let piet = Subject::User { organization_id: ORG, user_id: PIET };
    let org = Subject::Organization { organization_id: ORG };
    let other = Subject::Organization { organization_id: OTHER_ORG };
    let wrong_org = Subject::User { organization_id: OTHER_ORG, user_id: JANA };
    for (stream, event) in portal_examples() {
        let (header, payload) = record_of(1, &stream, &event);
        let named = !matches!(event, SignInEvent::ConsoleSignInRefused(_));
        assert_eq!(privacy::concerns(&header, &payload, None, &jana), named, "{stream}");
        assert_eq!(privacy::concerns(&header, &payload, None, &org), named, "{stream}");
        for subject in [&piet, &other, &wrong_org] {
            assert!(!privacy::concerns(&header, &payload, None, subject), "{stream}");
        }
    }
    for (stream, event) in sso_examples() {
        let (header, payload) = record_of(1, &stream, &event);
        let named = !matches!(event, SsoEvent::SsoConfigured(_));
        assert_eq!(privacy::concerns(&header, &payload, None, &jana), named, "{stream}");
        assert!(!privacy::concerns(&header, &payload, None, &piet), "{stream}");
    }
    let sent: NotificationEvent = ledger_domain::notification::NotificationSent {
        id: ledger_domain::notification::NotificationId(Uuid::from_u128(0x77)),
        notice: ledger_domain::notification::Notice::ExpiryReminder {
            organization_id: ORG,
            subscription_id: SubscriptionId(Uuid::from_u128(0x300)),
            end_date: chrono::NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
        },
        recipients: vec![JANA],
        message_id: "<0000000000000077@ledger.example>".into(),
    }
    .into();
    let (header, payload) = record_of(1, "notification/77", &sent);
    assert!(privacy::concerns(&header, &payload, None, &jana));
    assert!(privacy::concerns(&header, &payload, None, &org));
    assert!(!privacy::concerns(&header, &payload, None, &piet));
    assert!(!privacy::concerns(&header, &payload, None, &wrong_org));
}

#[test]
fn a_staff_users_record_concerns_them() {
    let ada = Subject::Staff { staff_id: ADA };
    let added: StaffEvent = ledger_domain::staff::StaffUserAdded {
        staff_id: ADA,
        name: "Ada Lovelace".into(),
        email: "ada@vendor.example".into(),
        role: ledger_domain::staff::StaffRole::Billing,
    }
    .into();
    let (header, payload) = record_of(1, "staff/directory", &added);
    assert!(privacy::concerns(&header, &payload, None, &ada));
    assert!(!privacy::concerns(&header, &payload, None, &Subject::Staff { staff_id: StaffId(Uuid::from_u128(1)) }));
    assert!(!privacy::concerns(&header, &payload, None, &Subject::Organization { organization_id: ORG }));
    let facts = privacy::facts(&header, &payload).unwrap();
    let Some(StaffEvent::StaffUserAdded(read)) = StaffEvent::decode("StaffUserAdded", 1, &facts).unwrap() else {
        panic!()
    };
    assert_eq!((read.name.as_str(), read.email), (ERASED_TEXT, privacy::erased_email(&ADA.0)));
}

fn usage_header(sequence: u64, occurred: i64) -> RecordHeader {
    let mut header = header(sequence, "usage/x", "UsageReported", 1);
    header.occurred_at = Timestamp::from_micros(occurred);
    header
}

#[test]
fn a_privacy_event_sanctions_exactly_what_it_names() {
    let records: Vec<ErasedRecord> =
        [3, 7, 12, 40].into_iter().map(|sequence| ErasedRecord { sequence, facts: Some(vec![1]) }).collect();
    let erased = PrivacyEvent::SubjectErased(SubjectErased {
        subject: Subject::User { organization_id: ORG, user_id: JANA },
        reason: ErasureReason::Request,
        at: AT,
        records,
    });
    for sequence in 1..=41 {
        let expected = [3, 7, 12, 40].contains(&sequence);
        assert_eq!(privacy::sanctions(&erased, &header(sequence, "org/x", "UserAdded", 1)), expected, "{sequence}");
    }
    let run = PrivacyEvent::RetentionApplied(RetentionApplied {
        at: AT,
        usage_before: Timestamp::from_micros(1_000),
        up_to_sequence: 50,
        usage_records: 2,
        keys_archived: 0,
        subscriptions_anonymized: 0,
    });
    assert!(privacy::sanctions(&run, &usage_header(10, 999)));
    assert!(privacy::sanctions(&run, &usage_header(50, 0)));
    assert!(!privacy::sanctions(&run, &usage_header(51, 999)), "after the run's sequence");
    assert!(!privacy::sanctions(&run, &usage_header(10, 1_000)), "not before usage_before");
    let mut other = usage_header(10, 999);
    other.event_type = "LicenseValidated".into();
    assert!(!privacy::sanctions(&run, &other), "only usage reports");
    assert!(!privacy::sanctions(&erased, &usage_header(10, 999)));
}

#[test]
fn the_privacy_events_hold_no_personal_data_and_round_trip() {
    let erased = PrivacyEvent::SubjectErased(SubjectErased {
        subject: Subject::Organization { organization_id: ORG },
        reason: ErasureReason::Retention,
        at: AT,
        records: vec![ErasedRecord { sequence: 2, facts: None }],
    });
    let run = PrivacyEvent::RetentionApplied(RetentionApplied {
        at: AT,
        usage_before: Timestamp::from_micros(1_000),
        up_to_sequence: 9,
        usage_records: 3,
        keys_archived: 1,
        subscriptions_anonymized: 0,
    });
    for event in [erased, run] {
        let bytes = event.encode_payload();
        assert_eq!(PrivacyEvent::decode(event.event_type(), 1, &bytes).unwrap(), Some(event));
    }
    assert_eq!(privacy::class("SubjectErased"), Some(Class::Facts));
    assert_eq!(privacy::class("RetentionApplied"), Some(Class::Facts));
}

#[test]
fn the_golden_erasure_lists_the_facts_of_the_records_it_names() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/events-v1.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let records = golden["records"].as_array().unwrap();
    let read = |record: &Value| {
        let event_type = record["event_type"].as_str().unwrap();
        let version = u32::try_from(record["schema_version"].as_u64().unwrap()).unwrap();
        let header =
            header(record["sequence"].as_u64().unwrap(), record["stream_id"].as_str().unwrap(), event_type, version);
        (header, hex::decode(record["payload_hex"].as_str().unwrap()).unwrap())
    };
    let erasure = records.iter().find(|r| r["event_type"] == "SubjectErased").expect("a golden SubjectErased");
    let (header, payload) = read(erasure);
    let Some(PrivacyEvent::SubjectErased(erased)) = PrivacyEvent::decode("SubjectErased", 1, &payload).unwrap() else {
        panic!()
    };
    assert!(erased.records.windows(2).all(|pair| pair[0].sequence < pair[1].sequence));
    let by = PrivacyEvent::SubjectErased(erased.clone());
    for listed in &erased.records {
        let record = records.iter().find(|r| r["sequence"] == listed.sequence).unwrap();
        let (named, payload) = read(record);
        assert!(named.sequence < header.sequence && privacy::sanctions(&by, &named));
        let metadata = hex::decode(record["metadata_hex"].as_str().unwrap()).unwrap();
        assert!(privacy::concerns(&named, &payload, Some(&metadata), &erased.subject), "{}", listed.sequence);
        if let Some(facts) = &listed.facts {
            assert_eq!(facts, &privacy::facts(&named, &payload).unwrap(), "{}", listed.sequence);
        }
    }
}

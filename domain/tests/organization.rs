//! Given / when / then tests of the organization aggregate: creation, users
//! and their seats, API tokens, and the one live subscription
//! (BILLING-RULES.md, "Subscriptions" and "Enforcement").
//!
//! Tables that try several inputs print the case before running it, so a
//! failure names the case that broke (libtest shows a failing test's output).

use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use ledger_domain::event::{EventDecodeError, StoredEvent};
use ledger_domain::organization::{
    ApiTokenIssued, ApiTokenIssuedV1, ApiTokenRehashed, ApiTokenRevoked, NAME_CHARS_MAX, Organization,
    OrganizationCommand, OrganizationCreated, OrganizationError, OrganizationEvent, Role, SeatLimit, SubscriptionEnded,
    SubscriptionStarted, TOKEN_LIFETIME_MICROS_MAX, UserAdded, UserDeactivated, UserRoleChanged,
};
use ledger_domain::record::Hash;
use ledger_domain::{OrganizationId, SubscriptionId, Timestamp, TokenId, UserId};
use uuid::Uuid;

const ORG: OrganizationId = OrganizationId(Uuid::from_u128(0x0a));

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(0x100 + n))
}

fn token(n: u128) -> TokenId {
    TokenId(Uuid::from_u128(0x200 + n))
}

fn subscription(n: u128) -> SubscriptionId {
    SubscriptionId(Uuid::from_u128(0x300 + n))
}

fn token_hash(n: u8) -> Hash {
    Hash([n; 32])
}

fn given(events: Vec<OrganizationEvent>) -> AggregateTestExecutor<Organization> {
    TestFramework::<Organization>::with(()).given(events)
}

// Givens.

fn created() -> OrganizationEvent {
    OrganizationCreated {
        id: ORG,
        name: "Acme".into(),
        domain: Some("acme.example".into()),
        industry: Some("Manufacturing".into()),
        employee_count: Some(120),
    }
    .into()
}

fn user_added(n: u128, email: &str) -> OrganizationEvent {
    UserAdded { user_id: user(n), email: email.into(), role: Role::Analyst }.into()
}

fn user_deactivated(n: u128) -> OrganizationEvent {
    UserDeactivated { user_id: user(n) }.into()
}

/// The organization with `count` active users, `user0@acme.example` …
fn with_users(count: u128) -> Vec<OrganizationEvent> {
    let mut events = vec![created()];
    events.extend((0..count).map(|n| user_added(n, &format!("user{n}@acme.example"))));
    events
}

fn token_issued(n: u128) -> OrganizationEvent {
    ApiTokenIssued { token_id: token(n), role: Role::Admin, token_hash: token_hash(n as u8), expires_at: None }.into()
}

/// The system clock's time a token command is decided at.
fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-01T12:00:00Z").unwrap()
}

/// `now` plus `seconds`.
fn later(seconds: i64) -> Timestamp {
    Timestamp::from_micros(now().as_micros() + seconds * 1_000_000)
}

fn issue_token(n: u128, role: Role, hash: u8, expires_at: Option<Timestamp>) -> OrganizationCommand {
    OrganizationCommand::IssueToken { token_id: token(n), role, token_hash: token_hash(hash), expires_at, now: now() }
}

fn started(n: u128) -> OrganizationEvent {
    SubscriptionStarted { subscription_id: subscription(n) }.into()
}

fn ended(n: u128) -> OrganizationEvent {
    SubscriptionEnded { subscription_id: subscription(n) }.into()
}

// Commands.

fn create(
    name: &str,
    domain: Option<&str>,
    industry: Option<&str>,
    employee_count: Option<u32>,
) -> OrganizationCommand {
    OrganizationCommand::Create {
        id: ORG,
        name: name.into(),
        domain: domain.map(Into::into),
        industry: industry.map(Into::into),
        employee_count,
    }
}

fn add_user(n: u128, email: &str, seat_limit: SeatLimit) -> OrganizationCommand {
    OrganizationCommand::AddUser { user_id: user(n), email: email.into(), role: Role::Viewer, seat_limit }
}

// Create.

#[test]
fn create_records_the_organization_with_trimmed_texts() {
    given(vec![])
        .when(create("  Acme  ", Some(" acme.example "), Some("\tManufacturing\n"), Some(120)))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_needs_only_a_name_and_accepts_the_longest_texts() {
    let longest = "n".repeat(NAME_CHARS_MAX);
    for (case, command, expected) in [
        (
            "name only",
            create("Acme", None, None, None),
            OrganizationCreated { id: ORG, name: "Acme".into(), domain: None, industry: None, employee_count: None },
        ),
        (
            "255 characters each, one employee",
            create(&longest, Some(&longest), Some(&longest), Some(1)),
            OrganizationCreated {
                id: ORG,
                name: longest.clone(),
                domain: Some(longest.clone()),
                industry: Some(longest.clone()),
                employee_count: Some(1),
            },
        ),
        // Characters, not bytes: 255 three-byte characters are allowed.
        (
            "255 non-ASCII characters",
            create(&"ü".repeat(NAME_CHARS_MAX), None, None, None),
            OrganizationCreated {
                id: ORG,
                name: "ü".repeat(NAME_CHARS_MAX),
                domain: None,
                industry: None,
                employee_count: None,
            },
        ),
    ] {
        println!("case: {case}");
        given(vec![]).when(command).then_expect_events(vec![expected.into()]);
    }
}

#[test]
fn create_refuses_empty_too_long_or_control_character_texts() {
    let too_long = "n".repeat(NAME_CHARS_MAX + 1);
    let bad_texts = ["", "   ", too_long.as_str(), "Ac\u{0}me", "Ac\nme"];
    for bad in bad_texts {
        for (field, command) in [
            ("name", create(bad, None, None, None)),
            ("domain", create("Acme", Some(bad), None, None)),
            ("industry", create("Acme", None, Some(bad), None)),
        ] {
            println!("case: {field} = {bad:?}");
            given(vec![]).when(command).then_expect_error(OrganizationError::InvalidText { field });
        }
    }
}

#[test]
fn create_refuses_an_employee_count_of_zero() {
    given(vec![]).when(create("Acme", None, None, Some(0))).then_expect_error(OrganizationError::InvalidEmployeeCount);
}

#[test]
fn creating_an_existing_organization_is_refused() {
    given(vec![created()]).when(create("Acme", None, None, None)).then_expect_error(OrganizationError::AlreadyExists);
}

#[test]
fn every_other_command_on_a_missing_organization_is_not_found() {
    for command in [
        add_user(1, "alice@acme.example", None),
        OrganizationCommand::DeactivateUser { user_id: user(1) },
        issue_token(1, Role::Admin, 1, None),
        OrganizationCommand::RevokeToken { token_id: token(1) },
        OrganizationCommand::StartSubscription { subscription_id: subscription(1) },
        OrganizationCommand::EndSubscription { subscription_id: subscription(1) },
    ] {
        println!("case: {command:?}");
        given(vec![]).when(command).then_expect_error(OrganizationError::NotFound);
    }
}

// Users and seats.

#[test]
fn add_user_records_the_email_trimmed_and_lowercased() {
    given(vec![created()])
        .when(OrganizationCommand::AddUser {
            user_id: user(1),
            email: "  Alice.Smith@ACME.example ".into(),
            role: Role::Admin,
            seat_limit: Some(5),
        })
        .then_expect_events(vec![
            UserAdded { user_id: user(1), email: "alice.smith@acme.example".into(), role: Role::Admin }.into(),
        ]);
}

#[test]
fn add_user_without_a_seat_limit_is_unlimited() {
    given(with_users(200)).when(add_user(999, "one.more@acme.example", None)).then_expect_events(vec![
        UserAdded { user_id: user(999), email: "one.more@acme.example".into(), role: Role::Viewer }.into(),
    ]);
}

#[test]
fn add_user_may_take_the_last_free_seat() {
    given(with_users(4)).when(add_user(9, "fifth@acme.example", Some(5))).then_expect_events(vec![
        UserAdded { user_id: user(9), email: "fifth@acme.example".into(), role: Role::Viewer }.into(),
    ]);
}

#[test]
fn add_user_is_refused_when_every_seat_is_taken() {
    for (active, limit) in [(5, 5), (6, 5), (0, 0)] {
        println!("case: {active} active users, {limit} seats");
        given(with_users(active))
            .when(add_user(99, "newcomer@acme.example", Some(limit)))
            .then_expect_error(OrganizationError::SeatLimitReached { limit });
    }
}

#[test]
fn a_deactivated_user_frees_a_seat() {
    let mut events = with_users(5);
    events.push(user_deactivated(2));
    given(events).when(add_user(9, "replacement@acme.example", Some(5))).then_expect_events(vec![
        UserAdded { user_id: user(9), email: "replacement@acme.example".into(), role: Role::Viewer }.into(),
    ]);
}

#[test]
fn add_user_refuses_an_email_already_in_use_whatever_its_case() {
    for email in ["user1@acme.example", "USER1@Acme.Example", "  User1@acme.example  "] {
        println!("case: {email:?}");
        given(with_users(3))
            .when(add_user(9, email, None))
            .then_expect_error(OrganizationError::DuplicateEmail("user1@acme.example".into()));
    }
}

#[test]
fn add_user_refuses_what_is_not_an_email_address() {
    let too_long = format!("{}@acme.example", "a".repeat(NAME_CHARS_MAX));
    for (email, reported) in [
        ("", ""),
        ("   ", ""),
        ("alice", "alice"),
        ("alice.acme.example", "alice.acme.example"),
        ("@acme.example", "@acme.example"),
        ("alice@", "alice@"),
        ("alice@localhost", "alice@localhost"),
        ("alice@.acme.example", "alice@.acme.example"),
        ("alice@acme.example.", "alice@acme.example."),
        ("alice@acme@example.com", "alice@acme@example.com"),
        ("Alice Smith@acme.example", "alice smith@acme.example"),
        ("alice@acme\u{7}.example", "alice@acme\u{7}.example"),
        (too_long.as_str(), too_long.as_str()),
    ] {
        println!("case: {email:?}");
        given(vec![created()])
            .when(add_user(1, email, None))
            .then_expect_error(OrganizationError::InvalidEmail(reported.into()));
    }
}

#[test]
fn deactivate_user_records_it() {
    given(with_users(2))
        .when(OrganizationCommand::DeactivateUser { user_id: user(1) })
        .then_expect_events(vec![user_deactivated(1)]);
}

#[test]
fn deactivating_an_unknown_user_is_refused() {
    given(with_users(2))
        .when(OrganizationCommand::DeactivateUser { user_id: user(7) })
        .then_expect_error(OrganizationError::UserNotFound);
}

#[test]
fn deactivating_a_user_twice_is_refused() {
    let mut events = with_users(2);
    events.push(user_deactivated(1));
    given(events)
        .when(OrganizationCommand::DeactivateUser { user_id: user(1) })
        .then_expect_error(OrganizationError::UserAlreadyDeactivated);
}

// API tokens.

#[test]
fn issue_token_records_its_role_and_hash() {
    given(vec![created()]).when(issue_token(1, Role::Analyst, 9, None)).then_expect_events(vec![
        ApiTokenIssued { token_id: token(1), role: Role::Analyst, token_hash: token_hash(9), expires_at: None }.into(),
    ]);
}

#[test]
fn issue_token_records_an_expiry_within_its_bounds() {
    let day = 24 * 3600;
    for expires_at in [later(1), later(30 * day), later(TOKEN_LIFETIME_MICROS_MAX / 1_000_000)] {
        println!("case: {expires_at:?}");
        given(vec![created()]).when(issue_token(1, Role::Viewer, 3, Some(expires_at))).then_expect_events(vec![
            ApiTokenIssued {
                token_id: token(1),
                role: Role::Viewer,
                token_hash: token_hash(3),
                expires_at: Some(expires_at),
            }
            .into(),
        ]);
    }
}

#[test]
fn an_expiry_now_in_the_past_or_past_the_longest_lifetime_is_refused() {
    for expires_at in [later(0), later(-1), later(-400 * 24 * 3600), later(TOKEN_LIFETIME_MICROS_MAX / 1_000_000 + 1)] {
        println!("case: {expires_at:?}");
        given(vec![created()])
            .when(issue_token(1, Role::Viewer, 3, Some(expires_at)))
            .then_expect_error(OrganizationError::InvalidTokenExpiry);
    }
}

#[test]
fn a_token_expires_at_its_time_and_a_token_without_one_never_does() {
    let mut organization = Organization::default();
    for event in [created(), token_issued(1)] {
        cqrs_es::Aggregate::apply(&mut organization, event);
    }
    let expiring = ApiTokenIssued {
        token_id: token(2),
        role: Role::Viewer,
        token_hash: token_hash(2),
        expires_at: Some(later(60)),
    };
    cqrs_es::Aggregate::apply(&mut organization, expiring.into());
    let (lasting, expiring) = (&organization.tokens[&token(1)], &organization.tokens[&token(2)]);
    assert!(!expiring.expired_at(later(59)));
    assert!(expiring.expired_at(later(60)), "expired from its time on");
    assert!(!lasting.expired_at(later(100 * 365 * 24 * 3600)));
}

#[test]
fn issuing_a_token_with_an_id_in_use_is_refused_even_once_revoked() {
    let revoked = vec![created(), token_issued(1), ApiTokenRevoked { token_id: token(1) }.into()];
    for (case, events) in [("live", vec![created(), token_issued(1)]), ("revoked", revoked)] {
        println!("case: {case}");
        given(events).when(issue_token(1, Role::Viewer, 2, None)).then_expect_error(OrganizationError::TokenExists);
    }
}

#[test]
fn revoke_token_records_it() {
    given(vec![created(), token_issued(1), token_issued(2)])
        .when(OrganizationCommand::RevokeToken { token_id: token(2) })
        .then_expect_events(vec![ApiTokenRevoked { token_id: token(2) }.into()]);
}

#[test]
fn revoking_an_unknown_token_is_refused() {
    given(vec![created(), token_issued(1)])
        .when(OrganizationCommand::RevokeToken { token_id: token(2) })
        .then_expect_error(OrganizationError::TokenNotFound);
}

#[test]
fn revoking_a_token_twice_is_refused() {
    given(vec![created(), token_issued(1), ApiTokenRevoked { token_id: token(1) }.into()])
        .when(OrganizationCommand::RevokeToken { token_id: token(1) })
        .then_expect_error(OrganizationError::TokenAlreadyRevoked);
}

// The one live subscription.

#[test]
fn start_subscription_records_it() {
    given(vec![created()])
        .when(OrganizationCommand::StartSubscription { subscription_id: subscription(1) })
        .then_expect_events(vec![started(1)]);
}

#[test]
fn start_subscription_is_refused_while_another_is_live() {
    for (case, events) in [
        ("one live", vec![created(), started(1)]),
        ("an ended one, then a live one", vec![created(), started(0), ended(0), started(1)]),
    ] {
        println!("case: {case}");
        given(events)
            .when(OrganizationCommand::StartSubscription { subscription_id: subscription(2) })
            .then_expect_error(OrganizationError::LiveSubscriptionExists(subscription(1)));
    }
}

#[test]
fn a_subscription_may_start_once_the_previous_one_ended() {
    given(vec![created(), started(1), ended(1)])
        .when(OrganizationCommand::StartSubscription { subscription_id: subscription(2) })
        .then_expect_events(vec![started(2)]);
}

#[test]
fn end_subscription_records_the_end_of_the_live_one() {
    given(vec![created(), started(1)])
        .when(OrganizationCommand::EndSubscription { subscription_id: subscription(1) })
        .then_expect_events(vec![ended(1)]);
}

#[test]
fn ending_a_subscription_that_is_not_live_is_refused() {
    for (case, events) in [
        ("none ever started", vec![created()]),
        ("another one is live", vec![created(), started(2)]),
        ("it already ended", vec![created(), started(1), ended(1)]),
    ] {
        println!("case: {case}");
        given(events)
            .when(OrganizationCommand::EndSubscription { subscription_id: subscription(1) })
            .then_expect_error(OrganizationError::NotTheLiveSubscription(subscription(1)));
    }
}

// The stored form.

/// One event of each variant. The match makes this fail to compile when a
/// variant is added, so the round trip below cannot silently skip it.
fn one_of_each_event() -> Vec<OrganizationEvent> {
    let events = vec![
        created(),
        user_added(1, "alice@acme.example"),
        user_deactivated(1),
        token_issued(1),
        ApiTokenRevoked { token_id: token(1) }.into(),
        started(1),
        ended(1),
        UserRoleChanged { user_id: user(1), role: Role::Viewer }.into(),
        ApiTokenRehashed { token_id: token(1), token_hash: token_hash(9), secret_id: token_hash(8) }.into(),
    ];
    let mut seen = [false; 9];
    for event in &events {
        let index = match event {
            OrganizationEvent::OrganizationCreated(_) => 0,
            OrganizationEvent::UserAdded(_) => 1,
            OrganizationEvent::UserDeactivated(_) => 2,
            OrganizationEvent::ApiTokenIssued(_) => 3,
            OrganizationEvent::ApiTokenRevoked(_) => 4,
            OrganizationEvent::SubscriptionStarted(_) => 5,
            OrganizationEvent::SubscriptionEnded(_) => 6,
            OrganizationEvent::UserRoleChanged(_) => 7,
            OrganizationEvent::ApiTokenRehashed(_) => 8,
        };
        seen[index] = true;
    }
    assert!(seen.iter().all(|&s| s), "one event of each variant: {seen:?}");
    events
}

#[test]
fn every_event_survives_its_stored_form() {
    for event in one_of_each_event() {
        let payload = event.encode_payload();
        let decoded = OrganizationEvent::decode(event.event_type(), event.schema_version(), &payload);
        assert_eq!(decoded.unwrap(), Some(event.clone()), "{}", event.event_type());
        // Only the token event changed shape (its expiry), at version 2.
        let current = if matches!(event, OrganizationEvent::ApiTokenIssued(_)) { 2 } else { 1 };
        assert_eq!(event.schema_version(), current, "{}", event.event_type());
    }
}

/// A token issued before tokens could expire (schema version 1, as stored
/// in existing logs) still decodes, as a token without an expiry.
#[test]
fn a_version_1_token_event_still_decodes_without_an_expiry() {
    let stored = ledger_domain::codec::encode(&ApiTokenIssuedV1 {
        token_id: token(4),
        role: Role::Analyst,
        token_hash: token_hash(4),
    });
    let decoded = OrganizationEvent::decode("ApiTokenIssued", 1, &stored).unwrap();
    let expected =
        ApiTokenIssued { token_id: token(4), role: Role::Analyst, token_hash: token_hash(4), expires_at: None };
    assert_eq!(decoded, Some(expected.into()));
}

#[test]
fn decoding_an_unknown_schema_version_is_an_error() {
    for event in one_of_each_event() {
        let decoded = OrganizationEvent::decode(event.event_type(), 3, &event.encode_payload());
        assert!(
            matches!(&decoded, Err(EventDecodeError::UnknownVersion { event_type, schema_version: 3 })
                if event_type == event.event_type()),
            "{}: {decoded:?}",
            event.event_type()
        );
    }
}

#[test]
fn decoding_a_truncated_payload_is_an_error() {
    let event = created();
    let payload = event.encode_payload();
    let decoded = OrganizationEvent::decode(event.event_type(), 1, &payload[..payload.len() - 1]);
    assert!(matches!(decoded, Err(EventDecodeError::Payload { .. })), "{decoded:?}");
}

#[test]
fn decoding_another_aggregates_event_type_gives_none() {
    for event_type in ["SubscriptionCreated", "LicenseIssued", "organizationcreated", ""] {
        let decoded = OrganizationEvent::decode(event_type, 1, &created().encode_payload());
        assert!(matches!(decoded, Ok(None)), "{event_type}: {decoded:?}");
    }
}

#[test]
fn a_deactivated_users_email_may_be_added_again() {
    given(vec![created(), user_added(900, "kim@acme.example"), user_deactivated(900)])
        .when(OrganizationCommand::AddUser {
            user_id: user(901),
            email: "Kim@Acme.example".into(),
            role: Role::Viewer,
            seat_limit: Some(5),
        })
        .then_expect_events(vec![
            UserAdded { user_id: user(901), email: "kim@acme.example".into(), role: Role::Viewer }.into(),
        ]);
}

// Roles.

fn admin_added(n: u128, email: &str) -> OrganizationEvent {
    UserAdded { user_id: user(n), email: email.into(), role: Role::Admin }.into()
}

#[test]
fn an_active_users_role_changes() {
    given(vec![created(), admin_added(1, "a@acme.example"), user_added(2, "b@acme.example")])
        .when(OrganizationCommand::ChangeRole { user_id: user(2), role: Role::Admin })
        .then_expect_events(vec![UserRoleChanged { user_id: user(2), role: Role::Admin }.into()]);
    // With two admins, either may step down.
    given(vec![created(), admin_added(1, "a@acme.example"), admin_added(2, "b@acme.example")])
        .when(OrganizationCommand::ChangeRole { user_id: user(1), role: Role::Viewer })
        .then_expect_events(vec![UserRoleChanged { user_id: user(1), role: Role::Viewer }.into()]);
}

#[test]
fn role_changes_the_organization_refuses() {
    let cases: Vec<(&str, Vec<OrganizationEvent>, OrganizationCommand, OrganizationError)> = vec![
        (
            "the last active admin",
            vec![created(), admin_added(1, "a@acme.example"), user_added(2, "b@acme.example")],
            OrganizationCommand::ChangeRole { user_id: user(1), role: Role::Analyst },
            OrganizationError::LastAdmin,
        ),
        (
            "the other admin is deactivated",
            vec![created(), admin_added(1, "a@acme.example"), admin_added(2, "b@acme.example"), user_deactivated(2)],
            OrganizationCommand::ChangeRole { user_id: user(1), role: Role::Viewer },
            OrganizationError::LastAdmin,
        ),
        (
            "a deactivated user",
            vec![created(), admin_added(1, "a@acme.example"), user_added(2, "b@acme.example"), user_deactivated(2)],
            OrganizationCommand::ChangeRole { user_id: user(2), role: Role::Admin },
            OrganizationError::UserNotActive,
        ),
        (
            "the same role",
            vec![created(), user_added(2, "b@acme.example")],
            OrganizationCommand::ChangeRole { user_id: user(2), role: Role::Analyst },
            OrganizationError::RoleUnchanged,
        ),
        (
            "no such user",
            vec![created()],
            OrganizationCommand::ChangeRole { user_id: user(9), role: Role::Admin },
            OrganizationError::UserNotFound,
        ),
    ];
    for (case, events, command, error) in cases {
        println!("case: {case}");
        given(events).when(command).then_expect_error(error);
    }
}

#[test]
fn a_changed_role_is_the_users_role_from_then_on() {
    let mut organization = Organization::default();
    for event in [created(), admin_added(1, "a@acme.example"), user_added(2, "b@acme.example")] {
        cqrs_es::Aggregate::apply(&mut organization, event);
    }
    cqrs_es::Aggregate::apply(&mut organization, UserRoleChanged { user_id: user(2), role: Role::Admin }.into());
    assert_eq!(organization.users[&user(2)].role, Some(Role::Admin));
    // Now the first admin may step down: another admin remains.
    given(vec![
        created(),
        admin_added(1, "a@acme.example"),
        user_added(2, "b@acme.example"),
        UserRoleChanged { user_id: user(2), role: Role::Admin }.into(),
    ])
    .when(OrganizationCommand::ChangeRole { user_id: user(1), role: Role::Viewer })
    .then_expect_events(vec![UserRoleChanged { user_id: user(1), role: Role::Viewer }.into()]);
}

/// A rotation of the server secret replaces a known token's hash; an
/// unknown token has none.
#[test]
fn a_rehash_names_a_known_token() {
    let rehash = |n| OrganizationCommand::RehashToken {
        token_id: token(n),
        token_hash: token_hash(9),
        secret_id: token_hash(8),
    };
    let rehashed = ApiTokenRehashed { token_id: token(1), token_hash: token_hash(9), secret_id: token_hash(8) };
    given(vec![created(), token_issued(1)]).when(rehash(1)).then_expect_events(vec![rehashed.into()]);
    given(vec![created(), token_issued(1)]).when(rehash(2)).then_expect_error(OrganizationError::TokenNotFound);
}

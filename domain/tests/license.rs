//! Given / when / then tests of the license aggregate, and of a key's own
//! state over time (BILLING-RULES.md, "Subscriptions" on upgrades and
//! "License keys and validation").
//!
//! Tables that try several inputs print the case before running it, so a
//! failure names the case that broke (libtest shows a failing test's output).

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use ledger_domain::event::{EventDecodeError, StoredEvent};
use ledger_domain::floating::{FloatingDeploymentLeased, FloatingPolicy};
use ledger_domain::license::{
    DeploymentActivated, DeploymentKeyBound, DeploymentKeyReset, DeploymentReleased, DeploymentReleasedV1, KeyState,
    License, LicenseCommand, LicenseError, LicenseEvent, LicenseIssued, LicenseKeyRehashed, LicenseRevoked,
    LicenseSuperseded, OfflineActivated, OfflineUsageImported, REASON_CHARS_MAX, SubscriptionFacts, ValidationCode,
    last_lease_end,
};
use ledger_domain::record::Hash;
use ledger_domain::validation::LicenseValidated;
use ledger_domain::{LicenseId, OrganizationId, SubscriptionId, Timestamp};
use uuid::Uuid;

const OLD_KEY: LicenseId = LicenseId(Uuid::from_u128(0x1101));
const NEW_KEY: LicenseId = LicenseId(Uuid::from_u128(0x1102));
const SUB: SubscriptionId = SubscriptionId(Uuid::from_u128(0x5b));
const ORG: OrganizationId = OrganizationId(Uuid::from_u128(0x0a));

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// An RFC 3339 UTC time.
fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn given(events: Vec<LicenseEvent>) -> AggregateTestExecutor<License> {
    TestFramework::<License>::with(()).given(events)
}

// Givens.

fn issued() -> LicenseEvent {
    LicenseIssued {
        license_id: OLD_KEY,
        subscription_id: SUB,
        organization_id: ORG,
        nonce: [7; 16],
        key_hash: Hash([9; 32]),
        issued_at: at("2026-01-01T09:30:00Z"),
    }
    .into()
}

/// Superseded by an upgrade effective 2026-01-16: the window runs from
/// 2026-01-16T00:00Z for 7 × 24 hours.
fn superseded() -> LicenseEvent {
    LicenseSuperseded { by: NEW_KEY, effective_date: d(2026, 1, 16), window_ends_at: at("2026-01-23T00:00:00Z") }.into()
}

fn revoked(reason: &str) -> LicenseEvent {
    LicenseRevoked { reason: reason.into() }.into()
}

// Commands.

fn issue() -> LicenseCommand {
    LicenseCommand::Issue {
        license_id: OLD_KEY,
        subscription_id: SUB,
        organization_id: ORG,
        nonce: [7; 16],
        key_hash: Hash([9; 32]),
        issued_at: at("2026-01-01T09:30:00Z"),
    }
}

fn supersede(effective: NaiveDate) -> LicenseCommand {
    LicenseCommand::Supersede { by: NEW_KEY, effective_date: effective }
}

fn revoke(reason: &str) -> LicenseCommand {
    LicenseCommand::Revoke { reason: reason.into() }
}

fn end_window(now: &str) -> LicenseCommand {
    LicenseCommand::EndSupersedeWindow { now: at(now) }
}

// Issue.

#[test]
fn issue_records_the_key_hash_and_its_random_bytes() {
    given(vec![]).when(issue()).then_expect_events(vec![issued()]);
}

#[test]
fn issuing_a_license_twice_is_refused() {
    for (case, events) in [
        ("issued", vec![issued()]),
        ("superseded", vec![issued(), superseded()]),
        ("revoked", vec![issued(), revoked("fraud")]),
    ] {
        println!("case: {case}");
        given(events).when(issue()).then_expect_error(LicenseError::AlreadyExists);
    }
}

#[test]
fn every_other_command_on_a_missing_license_is_not_found() {
    for command in [supersede(d(2026, 1, 16)), revoke("fraud"), end_window("2026-02-01T00:00:00Z")] {
        println!("case: {command:?}");
        given(vec![]).when(command).then_expect_error(LicenseError::NotFound);
    }
}

// Supersede.

#[test]
fn supersede_opens_a_window_of_7_times_24_hours_from_the_start_of_the_effective_day() {
    for (effective, window_end) in [
        (d(2026, 1, 16), "2026-01-23T00:00:00Z"),
        // Across a month and a year's end, and over a leap day.
        (d(2026, 12, 28), "2027-01-04T00:00:00Z"),
        (d(2028, 2, 25), "2028-03-03T00:00:00Z"),
    ] {
        println!("case: {effective}");
        given(vec![issued()]).when(supersede(effective)).then_expect_events(vec![
            LicenseSuperseded { by: NEW_KEY, effective_date: effective, window_ends_at: at(window_end) }.into(),
        ]);
    }
}

#[test]
fn superseding_a_license_twice_is_refused() {
    given(vec![issued(), superseded()])
        .when(supersede(d(2026, 1, 20)))
        .then_expect_error(LicenseError::AlreadySuperseded);
}

#[test]
fn superseding_a_revoked_license_is_refused() {
    given(vec![issued(), revoked("fraud")])
        .when(supersede(d(2026, 1, 16)))
        .then_expect_error(LicenseError::AlreadyRevoked);
}

// Revoke.

#[test]
fn revoke_records_the_trimmed_reason() {
    for (case, events) in [("valid", vec![issued()]), ("in its supersede window", vec![issued(), superseded()])] {
        println!("case: {case}");
        given(events)
            .when(revoke("  key leaked on a forum \n"))
            .then_expect_events(vec![revoked("key leaked on a forum")]);
    }
}

#[test]
fn a_reason_of_the_longest_length_is_accepted() {
    let longest = "é".repeat(REASON_CHARS_MAX);
    given(vec![issued()]).when(revoke(&format!(" {longest} "))).then_expect_events(vec![revoked(&longest)]);
}

#[test]
fn an_empty_or_too_long_reason_is_refused() {
    let too_long = "x".repeat(REASON_CHARS_MAX + 1);
    for reason in ["", "   ", "\t\n", too_long.as_str()] {
        println!("case: {} characters", reason.chars().count());
        given(vec![issued()]).when(revoke(reason)).then_expect_error(LicenseError::InvalidReason);
    }
}

#[test]
fn revoking_a_license_twice_is_refused() {
    for (case, events) in [
        ("revoked by an operator", vec![issued(), revoked("fraud")]),
        ("revoked when its window ended", vec![issued(), superseded(), revoked("superseded")]),
    ] {
        println!("case: {case}");
        given(events).when(revoke("again")).then_expect_error(LicenseError::AlreadyRevoked);
    }
}

// The end of a supersede window.

#[test]
fn end_supersede_window_revokes_the_key_once_the_window_is_over() {
    for now in ["2026-01-23T00:00:00Z", "2026-03-01T12:00:00Z"] {
        println!("case: {now}");
        given(vec![issued(), superseded()]).when(end_window(now)).then_expect_events(vec![revoked("superseded")]);
    }
}

#[test]
fn end_supersede_window_before_the_window_is_over_is_refused() {
    for (case, events, now) in [
        ("a microsecond early", vec![issued(), superseded()], "2026-01-22T23:59:59.999999Z"),
        ("before the effective day", vec![issued(), superseded()], "2026-01-10T00:00:00Z"),
        ("never superseded", vec![issued()], "2026-03-01T00:00:00Z"),
    ] {
        println!("case: {case}");
        given(events).when(end_window(now)).then_expect_error(LicenseError::WindowNotOver);
    }
}

#[test]
fn end_supersede_window_of_a_revoked_key_is_refused() {
    given(vec![issued(), superseded(), revoked("fraud")])
        .when(end_window("2026-01-23T00:00:00Z"))
        .then_expect_error(LicenseError::AlreadyRevoked);
}

// A key's own state over time.

fn license(events: Vec<LicenseEvent>) -> License {
    let mut license = License::default();
    for event in events {
        license.apply(event);
    }
    license
}

#[test]
fn a_superseded_key_is_valid_then_superseded_for_7_days_then_revoked() {
    let key = license(vec![issued(), superseded()]);
    let window = KeyState::Superseded { until: at("2026-01-23T00:00:00Z") };
    for (now, state) in [
        ("2026-01-01T09:30:00Z", KeyState::Valid),
        ("2026-01-15T23:59:59.999999Z", KeyState::Valid),
        ("2026-01-16T00:00:00Z", window),
        ("2026-01-19T12:00:00Z", window),
        ("2026-01-22T23:59:59.999999Z", window),
        ("2026-01-23T00:00:00Z", KeyState::Revoked),
        ("2027-01-01T00:00:00Z", KeyState::Revoked),
    ] {
        assert_eq!(key.state_at(at(now)), state, "at {now}");
    }
}

#[test]
fn a_key_never_superseded_stays_valid() {
    let key = license(vec![issued()]);
    for now in ["2026-01-01T09:30:00Z", "2030-01-01T00:00:00Z"] {
        assert_eq!(key.state_at(at(now)), KeyState::Valid, "at {now}");
    }
}

#[test]
fn a_revoked_key_is_revoked_at_every_time() {
    for (case, events) in [
        ("revoked while valid", vec![issued(), revoked("fraud")]),
        ("revoked before its effective day", vec![issued(), superseded(), revoked("fraud")]),
        ("revoked when the window ended", vec![issued(), superseded(), revoked("superseded")]),
    ] {
        let key = license(events);
        for now in ["2026-01-01T09:30:00Z", "2026-01-16T00:00:00Z", "2026-01-23T00:00:00Z"] {
            assert_eq!(key.state_at(at(now)), KeyState::Revoked, "{case}, at {now}");
        }
    }
}

// The stored form.

/// One event of each variant. The match makes this fail to compile when a
/// variant is added, so the round trip below cannot silently skip it.
fn one_of_each_event() -> Vec<LicenseEvent> {
    let events = vec![
        issued(),
        superseded(),
        revoked("key leaked on a forum"),
        activated("edge-1"),
        released("edge-1"),
        floated("pod-1", "2026-01-05T00:00:00Z"),
        key_bound(),
        DeploymentKeyReset { deployment_id: "edge-1".into() }.into(),
        LicenseKeyRehashed { key_hash: Hash([8; 32]), secret_id: Hash([9; 32]) }.into(),
        offline_activated("n-1", "2026-01-01T00:00:00Z"),
        imported("e-1", "2026-01-10T00:00:00Z"),
    ];
    let mut seen = [false; 11];
    for event in &events {
        let index = match event {
            LicenseEvent::LicenseIssued(_) => 0,
            LicenseEvent::LicenseSuperseded(_) => 1,
            LicenseEvent::LicenseRevoked(_) => 2,
            LicenseEvent::DeploymentActivated(_) => 3,
            LicenseEvent::DeploymentReleased(_) => 4,
            LicenseEvent::FloatingDeploymentLeased(_) => 5,
            LicenseEvent::DeploymentKeyBound(_) => 6,
            LicenseEvent::DeploymentKeyReset(_) => 7,
            LicenseEvent::LicenseKeyRehashed(_) => 8,
            LicenseEvent::OfflineActivated(_) => 9,
            LicenseEvent::OfflineUsageImported(_) => 10,
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
        let decoded = LicenseEvent::decode(event.event_type(), event.schema_version(), &payload);
        assert_eq!(decoded.unwrap(), Some(event.clone()), "{}", event.event_type());
        // Only the release changed shape (when its place frees), at version 2.
        let current = if matches!(event, LicenseEvent::DeploymentReleased(_)) { 2 } else { 1 };
        assert_eq!(event.schema_version(), current, "{}", event.event_type());
    }
}

/// A release stored before places were held (schema version 1) still
/// decodes, and its place was free at once.
#[test]
fn a_version_1_release_still_decodes_and_holds_no_place() {
    let stored = ledger_domain::codec::encode(&DeploymentReleasedV1 { deployment_id: "edge-1".into() });
    let decoded = LicenseEvent::decode("DeploymentReleased", 1, &stored).unwrap().expect("a license event");
    let LicenseEvent::DeploymentReleased(release) = &decoded else { panic!("{decoded:?}") };
    assert_eq!((release.deployment_id.as_str(), release.slot_frees_at), ("edge-1", release.released_at));
    let key = license(vec![issued(), activated("edge-1"), decoded]);
    assert_eq!(key.places_taken("edge-2", at("2026-01-01T00:00:00Z")), 0);
    assert_eq!(key.held_places(at("1970-01-01T00:00:00Z")).count(), 0);
}

#[test]
fn decoding_an_unknown_schema_version_is_an_error() {
    for event in one_of_each_event() {
        let decoded = LicenseEvent::decode(event.event_type(), 3, &event.encode_payload());
        assert!(
            matches!(&decoded, Err(EventDecodeError::UnknownVersion { event_type, schema_version: 3 })
                if event_type == event.event_type()),
            "{}: {decoded:?}",
            event.event_type()
        );
    }
}

#[test]
fn decoding_a_payload_with_trailing_bytes_is_an_error() {
    let event = superseded();
    let mut payload = event.encode_payload();
    payload.push(0);
    let decoded = LicenseEvent::decode(event.event_type(), 1, &payload);
    assert!(matches!(decoded, Err(EventDecodeError::Payload { .. })), "{decoded:?}");
}

#[test]
fn decoding_another_aggregates_event_type_gives_none() {
    let payload = issued().encode_payload();
    for event_type in ["SubscriptionCreated", "ApiTokenRevoked", "LicenseExpired", "licenseissued"] {
        let decoded = LicenseEvent::decode(event_type, 1, &payload);
        assert!(matches!(decoded, Ok(None)), "{event_type}: {decoded:?}");
    }
}

// Deployments and validation codes.

fn activated(deployment: &str) -> LicenseEvent {
    DeploymentActivated { deployment_id: deployment.into() }.into()
}

/// Released at `released_at`; its place frees at `frees_at`.
fn released_until(deployment: &str, released_at: &str, frees_at: &str) -> LicenseEvent {
    DeploymentReleased { deployment_id: deployment.into(), released_at: at(released_at), slot_frees_at: at(frees_at) }
        .into()
}

/// Released with no lease running: the place frees at once.
fn released(deployment: &str) -> LicenseEvent {
    released_until(deployment, "2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z")
}

fn release(deployment: &str, now: &str, last_lease_ends: Option<&str>) -> LicenseCommand {
    LicenseCommand::ReleaseDeployment {
        deployment_id: deployment.into(),
        now: at(now),
        last_lease_ends: last_lease_ends.map(at),
    }
}

fn activate(deployment: &str, max: u32) -> LicenseCommand {
    LicenseCommand::ActivateDeployment { deployment_id: deployment.into(), max_deployments: max }
}

#[test]
fn a_deployment_activates_while_places_are_free() {
    given(vec![issued()]).when(activate("edge-1", 1)).then_expect_events(vec![activated("edge-1")]);
    given(vec![issued(), activated("edge-1")])
        .when(activate("edge-2", 2))
        .then_expect_events(vec![activated("edge-2")]);
}

#[test]
fn a_full_key_refuses_another_deployment() {
    given(vec![issued(), activated("edge-1")])
        .when(activate("edge-2", 1))
        .then_expect_error(LicenseError::TooManyDeployments { max: 1 });
}

#[test]
fn a_deployment_id_is_visible_ascii_of_bounded_length() {
    for bad in ["", "has space", "ü", &"x".repeat(129)] {
        given(vec![issued()]).when(activate(bad, 5)).then_expect_error(LicenseError::InvalidDeploymentId);
    }
}

#[test]
fn releasing_frees_a_place_and_unknown_deployments_are_refused() {
    given(vec![issued(), activated("edge-1")])
        .when(release("edge-1", "2026-01-05T00:00:00Z", None))
        .then_expect_events(vec![released("edge-1")]);
    given(vec![issued(), activated("edge-1"), released("edge-1")])
        .when(activate("edge-2", 1))
        .then_expect_events(vec![activated("edge-2")]);
    given(vec![issued()])
        .when(release("edge-9", "2026-01-05T00:00:00Z", None))
        .then_expect_error(LicenseError::DeploymentNotFound("edge-9".into()));
}

/// The release records when the place frees: the end of the deployment's
/// last lease, or now if that lease has already ended.
#[test]
fn a_release_holds_the_place_until_the_last_lease_ends() {
    for (case, last_lease_ends, frees_at) in [
        ("a lease running", Some("2026-01-10T08:00:00Z"), "2026-01-10T08:00:00Z"),
        ("the last lease ended", Some("2026-01-04T23:59:59Z"), "2026-01-05T00:00:00Z"),
        ("no valid lease", None, "2026-01-05T00:00:00Z"),
    ] {
        println!("case: {case}");
        given(vec![issued(), activated("edge-1")])
            .when(release("edge-1", "2026-01-05T00:00:00Z", last_lease_ends))
            .then_expect_events(vec![released_until("edge-1", "2026-01-05T00:00:00Z", frees_at)]);
    }
}

/// The hostile review's bypass, with maxDeployments 1: released and
/// activated in turn, deployments got a lease each. A held place counts
/// against the cap until it frees; the released deployment itself may come
/// back to it.
#[test]
fn a_held_place_counts_against_the_cap_until_it_frees() {
    use ledger_domain::subscription::Status;
    let facts =
        SubscriptionFacts { status: Status::Active, term_end: d(2027, 1, 1), auto_renew: true, max_deployments: 1 };
    let today = d(2026, 1, 6);
    let key = license(vec![
        issued(),
        activated("edge-1"),
        released_until("edge-1", "2026-01-05T00:00:00Z", "2026-01-10T08:00:00Z"),
    ]);
    let code = |deployment: &str, now: &str| key.validation_code(&facts, deployment, at(now), today);
    assert_eq!(code("edge-2", "2026-01-05T00:00:00Z"), ValidationCode::TooManyDeployments);
    assert_eq!(code("edge-3", "2026-01-10T08:00:00Z"), ValidationCode::Valid, "the place frees at the lease's end");
    assert_eq!(code("edge-3", "2026-01-10T07:59:59Z"), ValidationCode::TooManyDeployments);
    assert_eq!(code("edge-1", "2026-01-06T00:00:00Z"), ValidationCode::Valid, "its own place");
    let held: Vec<_> = key.held_places(at("2026-01-06T00:00:00Z")).collect();
    assert_eq!(held, [("edge-1", at("2026-01-10T08:00:00Z"))]);
    assert_eq!(key.held_places(at("2026-01-10T08:00:00Z")).count(), 0);
    // Coming back to its place ends the hold; a second place is still refused.
    let back = license(vec![
        issued(),
        activated("edge-1"),
        released_until("edge-1", "2026-01-05T00:00:00Z", "2026-01-10T08:00:00Z"),
        activated("edge-1"),
    ]);
    assert_eq!(back.held_places(at("2026-01-06T00:00:00Z")).count(), 0);
    assert_eq!(
        back.validation_code(&facts, "edge-2", at("2026-01-06T00:00:00Z"), today),
        ValidationCode::TooManyDeployments
    );
}

/// Places that have freed are forgotten at the next release, so the state
/// holds no more released deployments than the cap allows.
#[test]
fn freed_places_are_forgotten_at_the_next_release() {
    let mut events = vec![issued()];
    // Each deployment released on a day of February, its place held until
    // noon, so each release finds the one before freed.
    for day in 1..=28 {
        let deployment = format!("edge-{day}");
        events.push(activated(&deployment));
        let (released_at, frees_at) = (format!("2026-02-{day:02}T00:00:00Z"), format!("2026-02-{day:02}T12:00:00Z"));
        events.push(released_until(&deployment, &released_at, &frees_at));
    }
    let key = license(events);
    assert_eq!(key.released.len(), 1, "only the last release still holds a place: {:?}", key.released);
}

/// The last lease of a deployment: 7 days after its latest valid answer.
#[test]
fn the_last_lease_ends_7_days_after_the_latest_valid_answer() {
    let validated = |deployment: &str, code, time: &str| LicenseValidated {
        license_id: OLD_KEY,
        validation_id: Uuid::nil(),
        deployment_id: deployment.into(),
        code,
        client_version: None,
        at: at(time),
    };
    let validations = [
        validated("edge-1", ValidationCode::Valid, "2026-01-02T10:00:00Z"),
        validated("edge-1", ValidationCode::PastDue, "2026-01-03T08:00:00Z"),
        validated("edge-1", ValidationCode::Suspended, "2026-01-04T08:00:00Z"),
        validated("edge-2", ValidationCode::Valid, "2026-01-05T08:00:00Z"),
    ];
    assert_eq!(last_lease_end(&validations, "edge-1"), Some(at("2026-01-10T08:00:00Z")));
    assert_eq!(last_lease_end(&validations, "edge-2"), Some(at("2026-01-12T08:00:00Z")));
    assert_eq!(last_lease_end(&validations, "edge-3"), None);
    assert_eq!(last_lease_end(&validations[2..3], "edge-1"), None, "a refusal carries no lease");
}

/// The validation codes in BILLING-RULES.md's order of precedence: each
/// case makes one more condition true, and the first that applies wins.
#[test]
fn validation_codes_follow_their_precedence() {
    use ledger_domain::subscription::Status;
    let facts =
        |status, auto_renew| SubscriptionFacts { status, term_end: d(2027, 1, 1), auto_renew, max_deployments: 1 };
    let (before, during, after) = (at("2026-01-10T00:00:00Z"), at("2026-01-20T00:00:00Z"), at("2026-01-24T00:00:00Z"));
    let today = d(2026, 1, 20);
    let code = |events: Vec<LicenseEvent>, facts: SubscriptionFacts, deployment: &str, now| {
        license(events).validation_code(&facts, deployment, now, today)
    };
    let active = facts(Status::Active, true);
    assert_eq!(code(vec![], active, "a", during), ValidationCode::NotFound);
    assert_eq!(code(vec![issued(), revoked("fraud")], active, "a", during), ValidationCode::Revoked);
    assert_eq!(code(vec![issued(), superseded()], active, "a", after), ValidationCode::Revoked, "window over");
    assert_eq!(code(vec![issued(), revoked("x")], facts(Status::Expired, true), "a", during), ValidationCode::Revoked);
    assert_eq!(code(vec![issued()], facts(Status::Expired, true), "a", during), ValidationCode::Expired);
    assert_eq!(code(vec![issued()], facts(Status::Cancelled, true), "a", during), ValidationCode::Expired);
    let ended = SubscriptionFacts { term_end: d(2026, 1, 20), ..facts(Status::Active, false) };
    assert_eq!(code(vec![issued()], ended, "a", during), ValidationCode::Expired, "term over, not renewing");
    let renewing = SubscriptionFacts { term_end: d(2026, 1, 20), ..active };
    assert_eq!(code(vec![issued()], renewing, "a", during), ValidationCode::Valid, "the renewal is on its way");
    assert_eq!(code(vec![issued()], facts(Status::Suspended, true), "a", during), ValidationCode::Suspended);
    let full = vec![issued(), activated("a")];
    assert_eq!(code(full.clone(), facts(Status::Suspended, true), "b", during), ValidationCode::Suspended);
    assert_eq!(code(full.clone(), active, "b", during), ValidationCode::TooManyDeployments);
    assert_eq!(
        code(vec![issued(), activated("a"), superseded()], active, "b", during),
        ValidationCode::TooManyDeployments
    );
    assert_eq!(code(vec![issued(), activated("a"), superseded()], active, "a", during), ValidationCode::Superseded);
    assert_eq!(
        code(vec![issued(), superseded()], active, "a", before),
        ValidationCode::Valid,
        "before the effective day"
    );
    assert_eq!(
        code(vec![issued(), superseded()], facts(Status::PastDue, true), "a", during),
        ValidationCode::Superseded
    );
    assert_eq!(code(full.clone(), facts(Status::PastDue, true), "a", during), ValidationCode::PastDue);
    assert_eq!(code(full, active, "a", during), ValidationCode::Valid);
    for valid in [ValidationCode::Valid, ValidationCode::PastDue, ValidationCode::Superseded] {
        assert!(valid.is_valid());
    }
    assert!(!ValidationCode::TooManyDeployments.is_valid() && !ValidationCode::NotFound.is_valid());
}

#[test]
fn a_lease_never_outlives_the_term_or_the_supersede_window() {
    use ledger_domain::subscription::Status;
    let facts =
        SubscriptionFacts { status: Status::Active, term_end: d(2027, 1, 1), auto_renew: true, max_deployments: 1 };
    assert_eq!(license(vec![issued()]).end(&facts), at("2027-01-01T00:00:00Z"));
    assert_eq!(license(vec![issued(), superseded()]).end(&facts), at("2026-01-23T00:00:00Z"));
}

/// Lease lifetime (BILLING-RULES.md, "License keys and validation"): given
/// a key and its term, when a lease is given at a moment, then it ends
/// seven days later, never past the key's own end (its term's, or its
/// supersede window's).
#[test]
fn a_lease_lasts_seven_days_but_never_past_the_keys_own_end() {
    use ledger_domain::subscription::Status;
    let facts = |term_end| SubscriptionFacts { status: Status::Active, term_end, auto_renew: true, max_deployments: 1 };
    let cases = [
        ("mid-term: seven days", vec![issued()], d(2027, 1, 1), "2026-03-01T10:00:00Z", "2026-03-08T10:00:00Z"),
        ("the term ends in three days", vec![issued()], d(2026, 3, 4), "2026-03-01T10:00:00Z", "2026-03-04T00:00:00Z"),
        (
            "superseded: the window ends first",
            vec![issued(), superseded()],
            d(2027, 1, 1),
            "2026-01-20T12:00:00Z",
            "2026-01-23T00:00:00Z",
        ),
        (
            "superseded, long before its window ends: seven days",
            vec![issued(), superseded()],
            d(2027, 1, 1),
            "2026-01-10T00:00:00Z",
            "2026-01-17T00:00:00Z",
        ),
        (
            "superseded, the term ends before the window",
            vec![issued(), superseded()],
            d(2026, 1, 21),
            "2026-01-19T00:00:00Z",
            "2026-01-21T00:00:00Z",
        ),
        ("a key already over", vec![issued()], d(2026, 1, 1), "2026-01-05T00:00:00Z", "2026-01-01T00:00:00Z"),
    ];
    for (case, given, term_end, now, then) in cases {
        println!("{case}");
        assert_eq!(license(given).lease_expires_at(&facts(term_end), at(now)), at(then), "{case}");
    }
}

#[test]
fn a_lease_end_saturates_at_the_end_of_time() {
    use ledger_domain::lease::{LEASE_MICROS, expires_at, longest_end};
    let last = Timestamp::from_micros(i64::MAX);
    assert_eq!(longest_end(Timestamp::from_micros(i64::MAX - 1)), last);
    assert_eq!(longest_end(Timestamp::from_micros(0)), Timestamp::from_micros(LEASE_MICROS));
    assert_eq!(expires_at(Timestamp::from_micros(0), last), Timestamp::from_micros(LEASE_MICROS));
}

// Floating deployments (issue 18 part 2).

/// A floating place taken at `at`, held for an hour.
fn floated(deployment: &str, at_: &str) -> LicenseEvent {
    let now = at(at_);
    FloatingDeploymentLeased {
        deployment_id: deployment.into(),
        at: now,
        slot_frees_at: Timestamp::from_micros(now.as_micros() + 3600 * 1_000_000),
    }
    .into()
}

fn lease_floating(deployment: &str, now: &str, floating: u32, max_deployments: u32) -> LicenseCommand {
    let policy = FloatingPolicy { deployments: floating, ..FloatingPolicy::default() };
    LicenseCommand::LeaseFloating { deployment_id: deployment.into(), now: at(now), policy, max_deployments }
}

/// A floating deployment takes a place under both caps and holds it for
/// its lease; a heartbeat extends it; one that stopped heartbeating frees
/// it when its lease ends, so another takes it without an admin.
#[test]
fn a_floating_place_is_held_for_its_lease_and_then_free() {
    given(vec![issued()])
        .when(lease_floating("pod-1", "2026-01-05T00:00:00Z", 1, 2))
        .then_expect_events(vec![floated("pod-1", "2026-01-05T00:00:00Z")]);
    // The subscription allows no floating deployment, or all its places are taken.
    given(vec![issued()])
        .when(lease_floating("pod-1", "2026-01-05T00:00:00Z", 0, 2))
        .then_expect_error(LicenseError::TooManyDeployments { max: 0 });
    given(vec![issued(), activated("edge-1")])
        .when(lease_floating("pod-1", "2026-01-05T00:00:00Z", 1, 1))
        .then_expect_error(LicenseError::TooManyDeployments { max: 1 });
    // pod-1 holds the one floating place until 01:00.
    let held = || vec![issued(), floated("pod-1", "2026-01-05T00:00:00Z")];
    given(held())
        .when(lease_floating("pod-2", "2026-01-05T00:59:59Z", 1, 2))
        .then_expect_error(LicenseError::TooManyDeployments { max: 1 });
    given(held())
        .when(lease_floating("pod-2", "2026-01-05T01:00:00Z", 1, 2))
        .then_expect_events(vec![floated("pod-2", "2026-01-05T01:00:00Z")]);
    // Its own heartbeat extends it, even with the place counted.
    given(held())
        .when(lease_floating("pod-1", "2026-01-05T00:40:00Z", 1, 1))
        .then_expect_events(vec![floated("pod-1", "2026-01-05T00:40:00Z")]);
    // A fixed deployment counts a held floating place against maxDeployments.
    use ledger_domain::subscription::Status;
    let facts =
        SubscriptionFacts { status: Status::Active, term_end: d(2027, 1, 1), auto_renew: true, max_deployments: 1 };
    let key = license(held());
    let today = d(2026, 1, 5);
    let code = |deployment: &str, now: &str| key.validation_code(&facts, deployment, at(now), today);
    assert_eq!(code("edge-1", "2026-01-05T00:30:00Z"), ValidationCode::TooManyDeployments);
    assert_eq!(code("edge-1", "2026-01-05T01:00:00Z"), ValidationCode::Valid);
    let policy = FloatingPolicy { deployments: 1, ..FloatingPolicy::default() };
    let facts = SubscriptionFacts { max_deployments: 2, ..facts };
    let floating =
        |deployment: &str, now: &str| key.floating_validation_code(&facts, &policy, deployment, at(now), today);
    assert_eq!(floating("pod-1", "2026-01-05T00:30:00Z"), ValidationCode::Valid);
    assert_eq!(floating("pod-2", "2026-01-05T00:30:00Z"), ValidationCode::TooManyDeployments);
    assert_eq!(floating("pod-2", "2026-01-05T01:00:00Z"), ValidationCode::Valid);
    assert_eq!(key.floating_until("pod-1", at("2026-01-05T00:30:00Z")), Some(at("2026-01-05T01:00:00Z")));
    assert_eq!(key.floating_until("pod-1", at("2026-01-05T01:00:00Z")), None);
}

/// Floating places that have freed are forgotten at the next floating
/// lease, so the state holds no more of them than the cap allows.
#[test]
fn freed_floating_places_are_forgotten() {
    let mut events = vec![issued()];
    for hour in 0..24 {
        events.push(floated(&format!("pod-{hour}"), &format!("2026-01-05T{hour:02}:00:00Z")));
    }
    let key = license(events);
    assert_eq!(key.floating.len(), 1, "{:?}", key.floating);
    // Activating it as a fixed deployment ends its floating place.
    let fixed = license(vec![issued(), floated("pod-1", "2026-01-05T00:00:00Z"), activated("pod-1")]);
    assert!(fixed.floating.is_empty());
}
// Deployment keys (issue 18 item 2).

const PUBLIC_KEY: &str = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E";

fn edge_activated() -> LicenseEvent {
    DeploymentActivated { deployment_id: "edge-1".into() }.into()
}

fn bind(public_key: &str) -> LicenseCommand {
    LicenseCommand::BindDeploymentKey { deployment_id: "edge-1".into(), public_key: public_key.into() }
}

fn key_bound() -> LicenseEvent {
    DeploymentKeyBound { deployment_id: "edge-1".into(), public_key: PUBLIC_KEY.into() }.into()
}

#[test]
fn an_active_deployment_binds_its_key_once() {
    given(vec![issued(), edge_activated()]).when(bind(PUBLIC_KEY)).then_expect_events(vec![key_bound()]);
    given(vec![issued(), edge_activated(), key_bound()])
        .when(bind(PUBLIC_KEY))
        .then_expect_error(LicenseError::DeploymentKeyAlreadyBound("edge-1".into()));
}

#[test]
fn a_key_is_bound_only_to_an_active_deployment_and_only_a_public_key() {
    given(vec![issued()]).when(bind(PUBLIC_KEY)).then_expect_error(LicenseError::DeploymentNotFound("edge-1".into()));
    for bad in
        ["", "short", "7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9", "7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E=="]
    {
        println!("{bad:?}");
        given(vec![issued(), edge_activated()]).when(bind(bad)).then_expect_error(LicenseError::InvalidDeploymentKey);
    }
}

#[test]
fn a_reset_forgets_the_key_and_the_next_binds_again() {
    let reset = || LicenseCommand::ResetDeploymentKey { deployment_id: "edge-1".into() };
    given(vec![issued(), edge_activated()])
        .when(reset())
        .then_expect_error(LicenseError::DeploymentKeyNotBound("edge-1".into()));
    given(vec![issued(), edge_activated(), key_bound()])
        .when(reset())
        .then_expect_events(vec![DeploymentKeyReset { deployment_id: "edge-1".into() }.into()]);
    let after = license(vec![
        issued(),
        edge_activated(),
        key_bound(),
        DeploymentKeyReset { deployment_id: "edge-1".into() }.into(),
    ]);
    assert!(after.deployment_keys.is_empty());
    given(vec![issued(), edge_activated(), key_bound(), DeploymentKeyReset { deployment_id: "edge-1".into() }.into()])
        .when(bind(PUBLIC_KEY))
        .then_expect_events(vec![key_bound()]);
}

#[test]
fn a_released_deployment_keeps_its_key_while_it_holds_a_place_and_loses_it_after() {
    let released = |at_: &str, frees: &str| -> LicenseEvent {
        DeploymentReleased { deployment_id: "edge-1".into(), released_at: at(at_), slot_frees_at: at(frees) }.into()
    };
    let held = license(vec![
        issued(),
        edge_activated(),
        key_bound(),
        released("2026-01-10T00:00:00Z", "2026-01-15T00:00:00Z"),
    ]);
    assert_eq!(
        held.deployment_keys.get("edge-1").map(String::as_str),
        Some(PUBLIC_KEY),
        "it may come back to its place"
    );
    let freed = license(vec![
        issued(),
        edge_activated(),
        key_bound(),
        released("2026-01-10T00:00:00Z", "2026-01-10T00:00:00Z"),
    ]);
    assert!(freed.deployment_keys.is_empty(), "a deployment with no place keeps no key: the map stays bounded");
}

/// A rotation of the server secret replaces the key's stored hash, on a
/// revoked key too (it keeps answering REVOKED); a key never issued has
/// none to replace.
#[test]
fn a_rehash_replaces_the_stored_hash_even_of_a_revoked_key() {
    let rehash = || LicenseCommand::RehashKey { key_hash: Hash([8; 32]), secret_id: Hash([9; 32]) };
    let rehashed: LicenseEvent = LicenseKeyRehashed { key_hash: Hash([8; 32]), secret_id: Hash([9; 32]) }.into();
    given(vec![issued(), revoked("key leaked")]).when(rehash()).then_expect_events(vec![rehashed.clone()]);
    given(vec![]).when(rehash()).then_expect_error(LicenseError::NotFound);
    let mut license = License::default();
    for event in [issued(), rehashed] {
        license.apply(event);
    }
    assert_eq!(license.issued.unwrap().key_hash, Hash([8; 32]));
}

/// A heartbeat's extension (kept on the key's per-day floating stream)
/// extends a place held when it was made, never one that had freed, and
/// never shortens one.
#[test]
fn an_extension_extends_only_a_held_place() {
    use ledger_domain::validation::FloatingLeaseExtended;
    let mut license = License::default();
    for event in [issued(), floated("pod-1", "2026-01-05T10:00:00Z")] {
        license.apply(event);
    }
    let extension = |at_: &str, until: &str| FloatingLeaseExtended {
        license_id: LicenseId(Uuid::from_u128(1)),
        deployment_id: "pod-1".into(),
        at: at(at_),
        slot_frees_at: at(until),
    };
    license.extend_floating(&extension("2026-01-05T10:40:00Z", "2026-01-05T11:40:00Z"));
    assert_eq!(license.floating_until("pod-1", at("2026-01-05T11:30:00Z")), Some(at("2026-01-05T11:40:00Z")));
    license.extend_floating(&extension("2026-01-05T10:50:00Z", "2026-01-05T11:20:00Z"));
    assert_eq!(license.floating_until("pod-1", at("2026-01-05T11:30:00Z")), Some(at("2026-01-05T11:40:00Z")));
    license.extend_floating(&extension("2026-01-05T11:40:00Z", "2026-01-05T12:40:00Z"));
    assert_eq!(license.floating_until("pod-1", at("2026-01-05T11:40:00Z")), None, "freed before the extension");
    let mut other = extension("2026-01-05T11:00:00Z", "2026-01-05T12:00:00Z");
    other.deployment_id = "pod-2".into();
    license.extend_floating(&other);
    assert_eq!(license.floating_until("pod-2", at("2026-01-05T11:00:00Z")), None, "an extension takes no place");
}

// Air-gapped deployments (issue 18 item 1).

const OTHER_KEY: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w";

fn offline_activated(nonce: &str, client_time: &str) -> LicenseEvent {
    OfflineActivated {
        deployment_id: "vault-1".into(),
        public_key: PUBLIC_KEY.into(),
        nonce: nonce.into(),
        client_time: at(client_time),
        activated_at: at("2026-01-01T10:00:00Z"),
        valid_until: at("2026-04-01T10:00:00Z"),
    }
    .into()
}

fn activate_offline(nonce: &str, client_time: &str, public_key: &str, max_deployments: u32) -> LicenseCommand {
    LicenseCommand::ActivateOffline {
        deployment_id: "vault-1".into(),
        public_key: public_key.into(),
        nonce: nonce.into(),
        client_time: at(client_time),
        now: at("2026-01-01T10:00:00Z"),
        valid_until: at("2026-04-01T10:00:00Z"),
        max_deployments,
    }
}

fn imported(export_id: &str, created_at: &str) -> LicenseEvent {
    OfflineUsageImported {
        deployment_id: "vault-1".into(),
        export_id: export_id.into(),
        created_at: at(created_at),
        imported_at: at("2026-02-01T00:00:00Z"),
        days: 3,
    }
    .into()
}

fn import(export_id: &str, created_at: &str, public_key: &str, license_nonce: &str) -> LicenseCommand {
    LicenseCommand::ImportUsage {
        deployment_id: "vault-1".into(),
        public_key: public_key.into(),
        license_nonce: license_nonce.into(),
        export_id: export_id.into(),
        created_at: at(created_at),
        now: at("2026-02-01T00:00:00Z"),
        days: 3,
    }
}

#[test]
fn an_offline_activation_takes_a_place_binds_the_key_and_refuses_replays() {
    given(vec![issued()])
        .when(activate_offline("n-1", "2026-01-01T00:00:00Z", PUBLIC_KEY, 1))
        .then_expect_events(vec![offline_activated("n-1", "2026-01-01T00:00:00Z")]);
    let key = license(vec![issued(), offline_activated("n-1", "2026-01-01T00:00:00Z")]);
    assert!(key.deployments.contains("vault-1"));
    assert_eq!(key.deployment_keys.get("vault-1").map(String::as_str), Some(PUBLIC_KEY));
    // Full: no place for it.
    given(vec![issued(), activated("edge-1")])
        .when(activate_offline("n-1", "2026-01-01T00:00:00Z", PUBLIC_KEY, 1))
        .then_expect_error(LicenseError::TooManyDeployments { max: 1 });
    // The same nonce, or a request no newer than the last: a replay.
    for (nonce, time) in [("n-1", "2026-01-02T00:00:00Z"), ("n-2", "2026-01-01T00:00:00Z")] {
        println!("{nonce} {time}");
        given(vec![issued(), offline_activated("n-1", "2026-01-01T00:00:00Z")])
            .when(activate_offline(nonce, time, PUBLIC_KEY, 1))
            .then_expect_error(LicenseError::OfflineReplayed);
    }
    // A renewal: a newer request of the same key pair, in its own place.
    given(vec![issued(), offline_activated("n-1", "2026-01-01T00:00:00Z")])
        .when(activate_offline("n-2", "2026-03-01T00:00:00Z", PUBLIC_KEY, 1))
        .then_expect_events(vec![offline_activated("n-2", "2026-03-01T00:00:00Z")]);
    // Another key pair for the deployment bound to the first: foreign.
    given(vec![issued(), offline_activated("n-1", "2026-01-01T00:00:00Z")])
        .when(activate_offline("n-2", "2026-03-01T00:00:00Z", OTHER_KEY, 1))
        .then_expect_error(LicenseError::OfflineForeign);
}

#[test]
fn an_import_comes_from_the_file_s_key_pair_and_nonce_once_and_in_order() {
    let activated = || vec![issued(), offline_activated("n-1", "2026-01-01T00:00:00Z")];
    given(activated())
        .when(import("e-1", "2026-01-10T00:00:00Z", PUBLIC_KEY, "n-1"))
        .then_expect_events(vec![imported("e-1", "2026-01-10T00:00:00Z")]);
    given(activated())
        .when(import("e-1", "2026-01-10T00:00:00Z", OTHER_KEY, "n-1"))
        .then_expect_error(LicenseError::OfflineForeign);
    given(activated())
        .when(import("e-1", "2026-01-10T00:00:00Z", PUBLIC_KEY, "n-9"))
        .then_expect_error(LicenseError::OfflineForeign);
    given(vec![issued()])
        .when(import("e-1", "2026-01-10T00:00:00Z", PUBLIC_KEY, "n-1"))
        .then_expect_error(LicenseError::OfflineForeign);
    let mut after_one = activated();
    after_one.push(imported("e-1", "2026-01-10T00:00:00Z"));
    for (id, time) in [("e-1", "2026-01-11T00:00:00Z"), ("e-2", "2026-01-10T00:00:00Z")] {
        println!("{id} {time}");
        given(after_one.clone())
            .when(import(id, time, PUBLIC_KEY, "n-1"))
            .then_expect_error(LicenseError::OfflineReplayed);
    }
}

#[test]
fn a_released_offline_deployment_holds_its_place_until_its_license_file_ends() {
    let released = DeploymentReleased {
        deployment_id: "vault-1".into(),
        released_at: at("2026-01-10T00:00:00Z"),
        slot_frees_at: at("2026-04-01T10:00:00Z"),
    };
    given(vec![issued(), offline_activated("n-1", "2026-01-01T00:00:00Z")])
        .when(release("vault-1", "2026-01-10T00:00:00Z", Some("2026-01-17T00:00:00Z")))
        .then_expect_events(vec![released.into()]);
    let key = license(vec![
        issued(),
        offline_activated("n-1", "2026-01-01T00:00:00Z"),
        released_until("vault-1", "2026-01-10T00:00:00Z", "2026-04-01T10:00:00Z"),
    ]);
    assert_eq!(key.places_taken("edge-1", at("2026-03-01T00:00:00Z")), 1);
    assert!(key.offline.contains_key("vault-1"), "held while its place is");
}

//! Given / when / then tests of the staff directory (issue 15 part 1):
//! staff users, their roles, and service tokens.

use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use ledger_domain::Timestamp;
use ledger_domain::record::Hash;
use ledger_domain::staff::{
    SERVICE_TOKEN_LIFETIME_MICROS_MAX, SERVICE_TOKENS_ALIVE_MAX, STAFF_NAME_CHARS_MAX, STAFF_ROLE_CHANGES_PER_DAY_MAX,
    ServiceTokenId, ServiceTokenIssued, ServiceTokenRevoked, StaffCommand, StaffDirectory, StaffError, StaffEvent,
    StaffId, StaffRole, StaffRoleChanged, StaffRoleChangedV1, StaffUserAdded, StaffUserDisabled,
};
use uuid::Uuid;

fn staff(n: u128) -> StaffId {
    StaffId(Uuid::from_u128(0x100 + n))
}

fn token(n: u128) -> ServiceTokenId {
    ServiceTokenId(Uuid::from_u128(0x200 + n))
}

const NOW: i64 = 1_800_000_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_micros(NOW)
}

fn given(events: Vec<StaffEvent>) -> AggregateTestExecutor<StaffDirectory> {
    TestFramework::<StaffDirectory>::with(()).given(events)
}

fn added(n: u128, email: &str, role: StaffRole) -> StaffEvent {
    StaffUserAdded { staff_id: staff(n), name: format!("Staff {n}"), email: email.into(), role }.into()
}

fn add(n: u128, name: &str, email: &str, role: StaffRole) -> StaffCommand {
    StaffCommand::AddUser { staff_id: staff(n), name: name.into(), email: email.into(), role }
}

fn change(n: u128, role: StaffRole, at: i64) -> StaffCommand {
    StaffCommand::ChangeRole { staff_id: staff(n), role, now: Timestamp::from_micros(at) }
}

fn changed(n: u128, role: StaffRole, at: i64) -> StaffEvent {
    StaffRoleChanged { staff_id: staff(n), role, at: Timestamp::from_micros(at) }.into()
}

fn issue(n: u128, expires_at: i64) -> StaffCommand {
    StaffCommand::IssueToken {
        token_id: token(n),
        name: "ci".into(),
        role: StaffRole::Billing,
        token_hash: Hash([n as u8; 32]),
        expires_at: Timestamp::from_micros(expires_at),
        now: now(),
    }
}

fn issued(n: u128, expires_at: i64) -> StaffEvent {
    ServiceTokenIssued {
        token_id: token(n),
        name: "ci".into(),
        role: StaffRole::Billing,
        token_hash: Hash([n as u8; 32]),
        expires_at: Timestamp::from_micros(expires_at),
    }
    .into()
}

#[test]
fn a_staff_user_is_added_with_a_trimmed_name_and_a_lower_case_address() {
    given(vec![]).when(add(1, "  Ada Lovelace ", " Ada@Vendor.Example ", StaffRole::Support)).then_expect_events(vec![
        StaffUserAdded {
            staff_id: staff(1),
            name: "Ada Lovelace".into(),
            email: "ada@vendor.example".into(),
            role: StaffRole::Support,
        }
        .into(),
    ]);
}

#[test]
fn bad_names_and_addresses_are_refused() {
    let long = "x".repeat(STAFF_NAME_CHARS_MAX + 1);
    for name in ["", "   ", "a\nb", long.as_str()] {
        println!("name {name:?}");
        given(vec![]).when(add(1, name, "a@b.example", StaffRole::Support)).then_expect_error(StaffError::InvalidName);
    }
    for email in ["nobody", "a@b", "a b@c.example"] {
        println!("email {email:?}");
        given(vec![])
            .when(add(1, "A", email, StaffRole::Support))
            .then_expect_error_message(&format!("{:?} is not an e-mail address", email.to_lowercase()));
    }
}

#[test]
fn an_address_is_unique_among_active_staff_and_free_again_once_disabled() {
    given(vec![added(1, "ada@vendor.example", StaffRole::Billing)])
        .when(add(2, "Ada", "ADA@vendor.example", StaffRole::Support))
        .then_expect_error(StaffError::DuplicateEmail("ada@vendor.example".into()));
    given(vec![added(1, "ada@vendor.example", StaffRole::Billing), StaffUserDisabled { staff_id: staff(1) }.into()])
        .when(add(2, "Ada", "ada@vendor.example", StaffRole::Support))
        .then_expect_events(vec![
            StaffUserAdded {
                staff_id: staff(2),
                name: "Ada".into(),
                email: "ada@vendor.example".into(),
                role: StaffRole::Support,
            }
            .into(),
        ]);
    given(vec![added(1, "ada@vendor.example", StaffRole::Billing)])
        .when(add(1, "Bob", "bob@vendor.example", StaffRole::Support))
        .then_expect_error(StaffError::IdInUse);
}

#[test]
fn roles_change_and_users_are_disabled_only_while_active() {
    let ada = || added(1, "ada@vendor.example", StaffRole::Billing);
    given(vec![ada()]).when(change(1, StaffRole::StaffAdmin, NOW)).then_expect_events(vec![changed(
        1,
        StaffRole::StaffAdmin,
        NOW,
    )]);
    given(vec![ada()]).when(change(1, StaffRole::Billing, NOW)).then_expect_error(StaffError::RoleUnchanged);
    given(vec![]).when(change(1, StaffRole::Billing, NOW)).then_expect_error(StaffError::UserNotFound);
    given(vec![ada()])
        .when(StaffCommand::Disable { staff_id: staff(1) })
        .then_expect_events(vec![StaffUserDisabled { staff_id: staff(1) }.into()]);
    let disabled = || vec![ada(), StaffUserDisabled { staff_id: staff(1) }.into()];
    given(disabled()).when(StaffCommand::Disable { staff_id: staff(1) }).then_expect_error(StaffError::UserDisabled);
    given(disabled()).when(change(1, StaffRole::Support, NOW)).then_expect_error(StaffError::UserDisabled);
}

#[test]
fn a_service_token_expires_after_now_and_within_a_year_and_a_day() {
    let latest = NOW + SERVICE_TOKEN_LIFETIME_MICROS_MAX;
    given(vec![]).when(issue(1, latest)).then_expect_events(vec![issued(1, latest)]);
    given(vec![]).when(issue(1, NOW + 1)).then_expect_events(vec![issued(1, NOW + 1)]);
    for bad in [NOW, NOW - 1, latest + 1] {
        println!("expires at {bad}");
        given(vec![]).when(issue(1, bad)).then_expect_error(StaffError::InvalidExpiry);
    }
    given(vec![issued(1, NOW + 1)]).when(issue(1, NOW + 5)).then_expect_error(StaffError::IdInUse);
}

#[test]
fn a_service_token_is_revoked_once() {
    given(vec![issued(1, NOW + 1)])
        .when(StaffCommand::RevokeToken { token_id: token(1) })
        .then_expect_events(vec![ServiceTokenRevoked { token_id: token(1) }.into()]);
    given(vec![issued(1, NOW + 1), ServiceTokenRevoked { token_id: token(1) }.into()])
        .when(StaffCommand::RevokeToken { token_id: token(1) })
        .then_expect_error(StaffError::TokenAlreadyRevoked);
    given(vec![]).when(StaffCommand::RevokeToken { token_id: token(1) }).then_expect_error(StaffError::TokenNotFound);
}

#[test]
fn the_directory_is_bounded() {
    let many: Vec<StaffEvent> = (0..ledger_domain::staff::STAFF_USERS_MAX as u128)
        .map(|n| added(1000 + n, &format!("s{n}@vendor.example"), StaffRole::Support))
        .collect();
    given(many)
        .when(add(1, "One more", "more@vendor.example", StaffRole::Support))
        .then_expect_error(StaffError::TooManyUsers);
}

const DAY: i64 = 24 * 3600 * 1_000_000;

#[test]
fn a_staff_users_role_changes_at_most_so_often_a_day() {
    // NOW is 2027-01-15T08:00:00Z; the day's changes alternate two roles.
    let roles = [StaffRole::Support, StaffRole::Billing];
    let mut history = vec![added(1, "ada@vendor.example", StaffRole::Billing)];
    for n in 0..STAFF_ROLE_CHANGES_PER_DAY_MAX as usize {
        history.push(changed(1, roles[n % 2], NOW + n as i64));
    }
    let next = roles[STAFF_ROLE_CHANGES_PER_DAY_MAX as usize % 2];
    let later_today = NOW - NOW.rem_euclid(DAY) + DAY - 1;
    given(history.clone()).when(change(1, next, later_today)).then_expect_error(StaffError::TooManyRoleChanges);
    // Another staff user is not held back by Ada's changes.
    let mut with_bob = history.clone();
    with_bob.push(added(2, "bob@vendor.example", StaffRole::Billing));
    given(with_bob).when(change(2, StaffRole::Support, NOW)).then_expect_events(vec![changed(
        2,
        StaffRole::Support,
        NOW,
    )]);
    // The next UTC day counts afresh.
    let tomorrow = NOW - NOW.rem_euclid(DAY) + DAY;
    given(history.clone()).when(change(1, next, tomorrow)).then_expect_events(vec![changed(1, next, tomorrow)]);
    // One change fewer today: allowed.
    history.pop();
    let last = roles[(STAFF_ROLE_CHANGES_PER_DAY_MAX as usize - 1) % 2];
    given(history).when(change(1, last, later_today)).then_expect_events(vec![changed(1, last, later_today)]);
}

#[test]
fn a_role_change_recorded_before_changes_were_counted_counts_on_no_day() {
    let old = StaffRoleChangedV1 { staff_id: staff(1), role: StaffRole::Support };
    let read = StaffRoleChanged::from(old);
    assert_eq!(read.at, Timestamp::from_micros(0));
    let mut history = vec![added(1, "ada@vendor.example", StaffRole::Billing)];
    history.extend((0..STAFF_ROLE_CHANGES_PER_DAY_MAX * 2).map(|n| {
        let role = if n.is_multiple_of(2) { StaffRole::Support } else { StaffRole::Billing };
        StaffEvent::from(StaffRoleChanged { staff_id: staff(1), role, at: Timestamp::from_micros(0) })
    }));
    given(history).when(change(1, StaffRole::Support, NOW)).then_expect_events(vec![changed(
        1,
        StaffRole::Support,
        NOW,
    )]);
}

#[test]
fn service_tokens_alive_at_once_are_bounded_and_a_revoked_or_expired_one_frees_its_place() {
    let alive: Vec<StaffEvent> = (0..SERVICE_TOKENS_ALIVE_MAX as u128).map(|n| issued(10 + n, NOW + DAY)).collect();
    given(alive.clone()).when(issue(1, NOW + DAY)).then_expect_error(StaffError::TooManyAliveTokens);
    let mut one_revoked = alive.clone();
    one_revoked.push(ServiceTokenRevoked { token_id: token(10) }.into());
    given(one_revoked).when(issue(1, NOW + DAY)).then_expect_events(vec![issued(1, NOW + DAY)]);
    let mut one_expired = alive[1..].to_vec();
    one_expired.push(issued(9, NOW));
    given(one_expired).when(issue(1, NOW + DAY)).then_expect_events(vec![issued(1, NOW + DAY)]);
}

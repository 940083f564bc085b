//! Given / when / then tests of the enforcement decision
//! (BILLING-RULES.md, "Enforcement"; `ledger_domain::enforcement::decide`):
//! given what the live subscription grants, when the organization is about
//! to do something with the usage it has, then allowed or not, and why.
//!
//! Tables print each case before checking it, so a failure names it.

use ledger_domain::catalog::{Catalog, Tier};
use ledger_domain::enforcement::{Action, Decision, Entitlement, Limit, Measured, Reason, decide};
use ledger_domain::subscription::Status;
use rust_decimal::Decimal;

fn gb(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Given a tier of catalog version 1 with `extra_data_gb` of add-ons, in `status`.
fn given<R>(tier: Tier, status: Status, extra_data_gb: u64, then: impl FnOnce(&Entitlement<'_>) -> R) -> R {
    let catalog = Catalog::builtin();
    let spec = catalog.version(1).expect("catalog version 1").tier(tier);
    then(&Entitlement::of_tier(status, spec, extra_data_gb))
}

fn allowed(limit: Limit, current: Decimal) -> Decision {
    Decision { denied: None, measured: Some(Measured { limit, current }) }
}

fn full(limit: Limit, current: Decimal) -> Decision {
    Decision { denied: Some(Reason::LimitReached), measured: Some(Measured { limit, current }) }
}

fn denied(reason: Reason) -> Decision {
    Decision { denied: Some(reason), measured: None }
}

const FEATURE_ALLOWED: Decision = Decision { denied: None, measured: None };

#[test]
fn each_check_allows_below_its_limit_only() {
    let (seats, data, calls) = (Limit::Max(5), Limit::Max(1000), Limit::Max(10_000));
    let cases = [
        ("4 of 5 seats", Action::AddUser { active_users: 4 }, allowed(seats, 4.into())),
        ("5 of 5 seats", Action::AddUser { active_users: 5 }, full(seats, 5.into())),
        ("999.99 of 1,000 GB", Action::UploadData { data_volume_gb: gb("999.99") }, allowed(data, gb("999.99"))),
        ("1,000 of 1,000 GB", Action::UploadData { data_volume_gb: gb("1000") }, full(data, gb("1000"))),
        ("9,999 of 10,000 calls", Action::ApiCall { calls_this_month: 9_999 }, allowed(calls, 9_999.into())),
        ("10,000 of 10,000 calls", Action::ApiCall { calls_this_month: 10_000 }, full(calls, 10_000.into())),
        ("a starter feature", Action::AccessFeature("basic_analytics"), FEATURE_ALLOWED),
        ("an enterprise feature", Action::AccessFeature("white_labeling"), denied(Reason::FeatureNotInTier)),
        ("an unknown feature", Action::AccessFeature("teleportation"), denied(Reason::FeatureNotInTier)),
    ];
    for (case, when, then) in cases {
        println!("starter, {case}");
        given(Tier::Starter, Status::Active, 0, |entitlement| assert_eq!(decide(&when, Some(entitlement)), then));
    }
}

#[test]
fn extra_data_raises_the_data_limit() {
    given(Tier::Professional, Status::Active, 1000, |entitlement| {
        let when = Action::UploadData { data_volume_gb: gb("3999.5") };
        assert_eq!(decide(&when, Some(entitlement)), allowed(Limit::Max(4000), gb("3999.5")));
        let when = Action::UploadData { data_volume_gb: gb("4000") };
        assert_eq!(decide(&when, Some(entitlement)), full(Limit::Max(4000), gb("4000")));
    });
}

#[test]
fn unlimited_always_allows() {
    given(Tier::Enterprise, Status::Active, 0, |entitlement| {
        let many = u64::MAX;
        let when = Action::AddUser { active_users: many };
        assert_eq!(decide(&when, Some(entitlement)), allowed(Limit::Unlimited, many.into()));
        let when = Action::ApiCall { calls_this_month: many };
        assert_eq!(decide(&when, Some(entitlement)), allowed(Limit::Unlimited, many.into()));
        assert!(decide(&Action::AccessFeature("white_labeling"), Some(entitlement)).is_allowed());
    });
}

#[test]
fn a_past_due_subscription_still_allows() {
    given(Tier::Starter, Status::PastDue, 0, |entitlement| {
        assert!(decide(&Action::AccessFeature("basic_analytics"), Some(entitlement)).is_allowed());
        assert!(decide(&Action::AddUser { active_users: 0 }, Some(entitlement)).is_allowed());
    });
}

#[test]
fn a_suspended_cancelled_or_expired_subscription_or_none_allows_nothing() {
    let actions = [
        Action::AddUser { active_users: 0 },
        Action::UploadData { data_volume_gb: Decimal::ZERO },
        Action::ApiCall { calls_this_month: 0 },
        Action::AccessFeature("basic_analytics"),
    ];
    for when in actions {
        for (status, reason) in [
            (Status::Suspended, Reason::Suspended),
            (Status::Cancelled, Reason::Cancelled),
            (Status::Expired, Reason::Expired),
        ] {
            println!("{status:?}, {when:?}");
            given(Tier::Enterprise, status, 0, |entitlement| {
                assert_eq!(decide(&when, Some(entitlement)), denied(reason))
            });
        }
        println!("no subscription, {when:?}");
        assert_eq!(decide(&when, None), denied(Reason::NoSubscription));
    }
}

#[test]
fn reasons_are_written_as_the_api_writes_them() {
    let written = [
        (Reason::NoSubscription, "no_subscription"),
        (Reason::Suspended, "suspended"),
        (Reason::Cancelled, "cancelled"),
        (Reason::Expired, "expired"),
        (Reason::LimitReached, "limit_reached"),
        (Reason::FeatureNotInTier, "feature_not_in_tier"),
    ];
    for (reason, text) in written {
        assert_eq!(reason.as_str(), text);
    }
}

#[test]
fn limits_read_and_write_the_seeds_minus_one() {
    assert_eq!((Limit::from_seed(-1), Limit::from_seed(5)), (Limit::Unlimited, Limit::Max(5)));
    assert_eq!(Limit::from_seed(-2), Limit::Max(0), "any other negative allows nothing");
    assert!(!Limit::from_seed(-2).allows(Decimal::ZERO));
    assert_eq!(
        (Limit::Unlimited.to_seed(), Limit::Max(5).to_seed(), Limit::Max(u64::MAX).to_seed()),
        (-1, 5, i64::MAX)
    );
    assert_eq!((Limit::from_option(None), Limit::from_option(Some(3))), (Limit::Unlimited, Limit::Max(3)));
}

//! Given / when / then tests of the rules that span aggregates
//! (`domain::workflows`): starting a subscription, provisioning from
//! Checkout, upgrading (BILLING-RULES.md worked example 2), and "an
//! organization's live subscription ends when it is cancelled or expires".
//!
//! Given the aggregates' events, when a workflow runs, then each aggregate
//! decided these events, or the workflow answered this refusal.

use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use ledger_domain::catalog::{Catalog, Tier};
use ledger_domain::license::{License, LicenseError, LicenseEvent, LicenseIssued, LicenseRevoked, LicenseSuperseded};
use ledger_domain::organization::{
    Organization, OrganizationCreated, OrganizationError, OrganizationEvent, Role, SubscriptionEnded,
    SubscriptionStarted, UserAdded,
};
use ledger_domain::record::Hash;
use ledger_domain::subscription::{
    AddonAdded, AddonKind, AutoRenewalCancelled, Policy, Pricing, Services, Subscription, SubscriptionCancelled,
    SubscriptionCreated, SubscriptionError, SubscriptionEvent, SubscriptionExpired, SubscriptionRenewed,
    SubscriptionUpgraded,
};
use ledger_domain::workflows::{
    AddonPurchase, CheckoutIds, Ended, NewKey, NewSubscription, Purchase, Refusal, Subscribed, UpgradeOrder, Upgraded,
    cancel, end_live_subscription, end_term, provision, subscribe, upgrade,
};
use ledger_domain::{AddonId, LicenseId, Money, OrganizationId, SubscriptionId, Timestamp, UserId};
use rust_decimal::Decimal;
use uuid::Uuid;

const ORG: OrganizationId = OrganizationId(Uuid::from_u128(0x0a));
const SUB: SubscriptionId = SubscriptionId(Uuid::from_u128(0x5b));
const OTHER_SUB: SubscriptionId = SubscriptionId(Uuid::from_u128(0x5c));
const OLD_KEY: LicenseId = LicenseId(Uuid::from_u128(0x1101));
const NEW_KEY: LicenseId = LicenseId(Uuid::from_u128(0x1102));
const ADMIN: UserId = UserId(Uuid::from_u128(0x100));

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn usd(text: &str) -> Money {
    Money::usd(Decimal::from_str(text).unwrap())
}

fn services() -> Services {
    Services { catalog: Arc::new(Catalog::builtin()), policy: Policy::default() }
}

/// An aggregate's state, given its events.
fn given<A: Aggregate>(events: Vec<A::Event>) -> A {
    let mut state = A::default();
    for event in events {
        state.apply(event);
    }
    state
}

// Givens.

fn org_created() -> OrganizationEvent {
    OrganizationCreated { id: ORG, name: "Acme".into(), domain: None, industry: None, employee_count: None }.into()
}

fn started(subscription_id: SubscriptionId) -> OrganizationEvent {
    SubscriptionStarted { subscription_id }.into()
}

/// Created 2026-01-01 at `tier`, license `OLD_KEY`.
fn created(tier: Tier, auto_renew: bool) -> SubscriptionEvent {
    SubscriptionCreated {
        id: SUB,
        organization_id: ORG,
        tier,
        catalog_version: 1,
        start_date: d(2026, 1, 1),
        end_date: d(2027, 1, 1),
        auto_renew,
        max_deployments: 1,
        enterprise_overage_rate: None,
        license_id: OLD_KEY,
    }
    .into()
}

fn key(license_id: LicenseId, issued_at: &str) -> NewKey {
    NewKey { license_id, nonce: [7; 16], key_hash: Hash([9; 32]), issued_at: at(issued_at) }
}

fn issued(key: &NewKey, subscription_id: SubscriptionId, organization_id: OrganizationId) -> LicenseEvent {
    LicenseIssued {
        license_id: key.license_id,
        subscription_id,
        organization_id,
        nonce: key.nonce,
        key_hash: key.key_hash,
        issued_at: key.issued_at,
    }
    .into()
}

fn old_key_issued() -> LicenseEvent {
    issued(&key(OLD_KEY, "2026-01-01T09:00:00Z"), SUB, ORG)
}

fn starter_from(start: NaiveDate, today: NaiveDate) -> NewSubscription {
    NewSubscription {
        subscription_id: SUB,
        tier: Tier::Starter,
        start_date: start,
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        today,
    }
}

// Starting a subscription.

#[tokio::test]
async fn an_organization_starts_a_subscription_and_its_key_is_issued() {
    let organization = given::<Organization>(vec![org_created()]);
    let key = key(OLD_KEY, "2026-01-01T09:00:00Z");
    let new = starter_from(d(2026, 1, 1), d(2026, 1, 1));
    let decided =
        subscribe(&organization, &Subscription::default(), &License::default(), new, key.clone(), &services())
            .await
            .unwrap();
    assert_eq!(
        decided,
        Subscribed {
            organization: vec![started(SUB)],
            subscription: vec![created(Tier::Starter, true)],
            license: vec![issued(&key, SUB, ORG)],
        }
    );
}

#[tokio::test]
async fn a_second_live_subscription_is_refused_and_nothing_is_decided() {
    let organization = given::<Organization>(vec![org_created(), started(OTHER_SUB)]);
    let new = starter_from(d(2026, 1, 1), d(2026, 1, 1));
    let refused = subscribe(
        &organization,
        &Subscription::default(),
        &License::default(),
        new,
        key(OLD_KEY, "2026-01-01T09:00:00Z"),
        &services(),
    )
    .await;
    assert_eq!(refused, Err(Refusal::Organization(OrganizationError::LiveSubscriptionExists(OTHER_SUB))));
}

#[tokio::test]
async fn an_unknown_organization_starts_nothing() {
    let new = starter_from(d(2026, 1, 1), d(2026, 1, 1));
    let refused = subscribe(
        &Organization::default(),
        &Subscription::default(),
        &License::default(),
        new,
        key(OLD_KEY, "2026-01-01T09:00:00Z"),
        &services(),
    )
    .await;
    assert_eq!(refused, Err(Refusal::Organization(OrganizationError::NotFound)));
}

#[tokio::test]
async fn the_subscription_s_own_rules_refuse_the_whole_start() {
    let organization = given::<Organization>(vec![org_created()]);
    let new = starter_from(d(2025, 11, 30), d(2026, 1, 1));
    let refused = subscribe(
        &organization,
        &Subscription::default(),
        &License::default(),
        new,
        key(OLD_KEY, "2026-01-01T09:00:00Z"),
        &services(),
    )
    .await;
    let too_early = SubscriptionError::StartTooFarInPast { start: d(2025, 11, 30), days: 31 };
    assert_eq!(refused, Err(Refusal::Subscription(too_early)));
}

// Provisioning from Checkout.

fn purchase(email: &str) -> Purchase {
    Purchase {
        organization_id: ORG,
        organization_name: "  Acme  ".into(),
        admin_id: ADMIN,
        admin_email: email.into(),
        subscription_id: SUB,
        tier: Tier::Starter,
        today: d(2026, 1, 1),
    }
}

#[tokio::test]
async fn checkout_provisions_the_organization_its_admin_and_a_subscription_from_today() {
    let key = key(OLD_KEY, "2026-01-01T09:00:00Z");
    let decided = provision(
        &Organization::default(),
        &Subscription::default(),
        &License::default(),
        purchase("Admin@Acme.example"),
        key.clone(),
        &services(),
    )
    .await
    .unwrap();
    assert_eq!(
        decided,
        Subscribed {
            organization: vec![
                org_created(),
                UserAdded { user_id: ADMIN, email: "admin@acme.example".into(), role: Role::Admin }.into(),
                started(SUB),
            ],
            // From today, renewing, one deployment, at the catalog's price.
            subscription: vec![created(Tier::Starter, true)],
            license: vec![issued(&key, SUB, ORG)],
        }
    );
}

#[tokio::test]
async fn checkout_refuses_what_the_organization_refuses() {
    let key = key(OLD_KEY, "2026-01-01T09:00:00Z");
    let (org, sub, license) = (Organization::default(), Subscription::default(), License::default());
    let refused = provision(&org, &sub, &license, purchase("not an address"), key.clone(), &services()).await;
    assert_eq!(refused, Err(Refusal::Organization(OrganizationError::InvalidEmail("not an address".into()))));
    let existing = given::<Organization>(vec![org_created()]);
    let refused = provision(&existing, &sub, &license, purchase("admin@acme.example"), key, &services()).await;
    assert_eq!(refused, Err(Refusal::Organization(OrganizationError::AlreadyExists)));
}

#[test]
fn checkout_ids_are_derived_from_the_session_and_never_change() {
    let ids = CheckoutIds::of("cs_test_a1b2c3");
    assert_eq!(ids, CheckoutIds::of("cs_test_a1b2c3"));
    assert_ne!(ids.organization_id, CheckoutIds::of("cs_test_a1b2c4").organization_id);
    // Pinned: a changed derivation would provision a redelivered session twice.
    let pinned = [
        ids.organization_id.0.to_string(),
        ids.admin_id.0.to_string(),
        ids.subscription_id.0.to_string(),
        ids.license_id.0.to_string(),
    ];
    assert_eq!(pinned, PINNED_CHECKOUT_IDS);
}

const PINNED_CHECKOUT_IDS: [&str; 4] = [
    "77e7b5d9-25ce-88c4-ab47-dd8395f9dc26",
    "e727c82e-582b-81b2-ad93-b8b375cb1620",
    "3a7da3ad-50b3-880d-bd3e-a60433cb030e",
    "4d531a1b-7994-8106-b384-697b30d860bd",
];

// Upgrading.

fn upgrade_to(
    target_tier: Tier,
    effective_date: Option<NaiveDate>,
    addons: Vec<AddonPurchase>,
    pricing: Pricing,
) -> UpgradeOrder {
    UpgradeOrder { target_tier, effective_date, addons, pricing, today: d(2026, 1, 10) }
}

fn extra_data(quantity: u32, annual_price: Option<&str>, effective_date: Option<NaiveDate>) -> AddonPurchase {
    AddonPurchase {
        addon_id: AddonId(Uuid::from_u128(0xadd1)),
        kind: AddonKind::ExtraDataTb,
        quantity,
        annual_price: annual_price.map(|p| Decimal::from_str(p).unwrap()),
        one_time_price: None,
        effective_date,
    }
}

/// Starter from 2026-01-01 with its key; upgraded as `order` asks.
async fn upgraded(order: UpgradeOrder, old_key: Vec<LicenseEvent>) -> Result<Upgraded, Refusal> {
    let subscription = given::<Subscription>(vec![created(Tier::Starter, true)]);
    let old_license = given::<License>(old_key);
    let new_key = key(NEW_KEY, "2026-01-10T12:00:00Z");
    upgrade(&subscription, &old_license, &License::default(), order, new_key, &services()).await
}

#[tokio::test]
async fn worked_example_2_an_upgrade_supersedes_the_old_key_and_issues_a_new_one() {
    let order = upgrade_to(Tier::Professional, Some(d(2026, 1, 16)), vec![], Pricing::Catalog);
    let decided = upgraded(order, vec![old_key_issued()]).await.unwrap();
    assert_eq!(
        decided,
        Upgraded {
            subscription: vec![
                SubscriptionUpgraded {
                    from_tier: Tier::Starter,
                    to_tier: Tier::Professional,
                    effective_date: d(2026, 1, 16),
                    prorated_amount: usd("1290.32"),
                    previous_license_id: OLD_KEY,
                    new_license_id: NEW_KEY,
                }
                .into()
            ],
            // Valid until the effective day, superseded for 7 × 24 hours from its start.
            old_license: vec![
                LicenseSuperseded {
                    by: NEW_KEY,
                    effective_date: d(2026, 1, 16),
                    window_ends_at: at("2026-01-23T00:00:00Z")
                }
                .into()
            ],
            new_license: vec![issued(&key(NEW_KEY, "2026-01-10T12:00:00Z"), SUB, ORG)],
        }
    );
}

#[tokio::test]
async fn add_ons_bought_with_an_upgrade_start_on_its_day_unless_dated() {
    let addons = vec![
        extra_data(2, None, None),
        AddonPurchase { addon_id: AddonId(Uuid::from_u128(0xadd2)), ..extra_data(1, None, Some(d(2026, 1, 20))) },
    ];
    let order = upgrade_to(Tier::Professional, Some(d(2026, 1, 16)), addons, Pricing::Catalog);
    let decided = upgraded(order, vec![old_key_issued()]).await.unwrap();
    let added: Vec<(u32, NaiveDate, Option<Money>)> = decided
        .subscription
        .iter()
        .filter_map(|event| match event {
            SubscriptionEvent::AddonAdded(AddonAdded { quantity, effective_date, annual_price, .. }) => {
                Some((*quantity, *effective_date, *annual_price))
            }
            _ => None,
        })
        .collect();
    // At professional's catalog price, the tier they are bought at.
    assert_eq!(added, vec![(2, d(2026, 1, 16), Some(usd("4000.00"))), (1, d(2026, 1, 20), Some(usd("4000.00")))]);
}

#[tokio::test]
async fn a_customer_s_price_is_refused_before_anything_else() {
    // Not even an upgrade: the price is answered first, whatever the rest.
    let order = upgrade_to(Tier::Starter, None, vec![extra_data(1, Some("0.01"), None)], Pricing::Catalog);
    assert_eq!(upgraded(order, vec![]).await, Err(Refusal::Subscription(SubscriptionError::PriceNotAllowed)));
    // The operator may set it.
    let order = upgrade_to(Tier::Enterprise, None, vec![extra_data(1, Some("3000.00"), None)], Pricing::Operator);
    assert!(upgraded(order, vec![old_key_issued()]).await.is_ok());
}

#[tokio::test]
async fn each_aggregate_s_refusal_refuses_the_whole_upgrade() {
    let order = upgrade_to(Tier::Starter, None, vec![], Pricing::Catalog);
    let not_an_upgrade = SubscriptionError::NotAnUpgrade { current: Tier::Starter, target: Tier::Starter };
    assert_eq!(upgraded(order, vec![old_key_issued()]).await, Err(Refusal::Subscription(not_an_upgrade)));
    // An add-on enterprise has no catalog price for is the operator's.
    let order = upgrade_to(Tier::Enterprise, None, vec![extra_data(1, None, None)], Pricing::Catalog);
    let operator_only = SubscriptionError::OperatorOnlyAddon("extra_data_tb");
    assert_eq!(upgraded(order, vec![old_key_issued()]).await, Err(Refusal::Subscription(operator_only)));
    // A revoked key is not superseded.
    let order = upgrade_to(Tier::Professional, None, vec![], Pricing::Catalog);
    let revoked = vec![old_key_issued(), LicenseRevoked { reason: "lost".into() }.into()];
    assert_eq!(upgraded(order, revoked).await, Err(Refusal::License(LicenseError::AlreadyRevoked)));
}

#[tokio::test]
async fn only_the_subscription_s_own_key_is_superseded() {
    let order = upgrade_to(Tier::Professional, None, vec![], Pricing::Catalog);
    let another_key = vec![issued(&key(NEW_KEY, "2026-01-01T09:00:00Z"), SUB, ORG)];
    assert_eq!(upgraded(order.clone(), another_key).await, Err(Refusal::License(LicenseError::NotFound)));
    assert_eq!(upgraded(order, vec![]).await, Err(Refusal::License(LicenseError::NotFound)));
}

// The live subscription's end.

fn live_org() -> Organization {
    given(vec![org_created(), started(SUB)])
}

fn ended() -> OrganizationEvent {
    SubscriptionEnded { subscription_id: SUB }.into()
}

#[tokio::test]
async fn the_live_subscription_ends_when_it_is_cancelled_or_expires_and_not_before() {
    let running = given::<Subscription>(vec![created(Tier::Starter, true)]);
    let cancelled_from = |day| {
        given::<Subscription>(vec![created(Tier::Starter, true), SubscriptionCancelled { effective_date: day }.into()])
    };
    let expired =
        given::<Subscription>(vec![created(Tier::Starter, false), SubscriptionExpired { on: d(2027, 1, 1) }.into()]);
    let today = d(2026, 1, 20);
    let cases: Vec<(&str, Subscription, Organization, Vec<OrganizationEvent>)> = vec![
        ("running", running, live_org(), vec![]),
        ("cancelled from today", cancelled_from(today), live_org(), vec![ended()]),
        ("cancelled from an earlier day", cancelled_from(d(2026, 1, 15)), live_org(), vec![ended()]),
        ("cancelled from a later day", cancelled_from(d(2026, 1, 25)), live_org(), vec![]),
        ("expired", expired.clone(), live_org(), vec![ended()]),
        (
            "ended by the organization already",
            expired.clone(),
            given(vec![org_created(), started(SUB), ended()]),
            vec![],
        ),
        ("not the live one", expired, given(vec![org_created(), started(OTHER_SUB)]), vec![]),
    ];
    for (case, subscription, organization, then) in cases {
        println!("case: {case}");
        assert_eq!(end_live_subscription(&organization, &subscription, today).await, Ok(then), "{case}");
    }
}

#[tokio::test]
async fn a_cancellation_ends_the_live_subscription_once_its_day_has_come() {
    let subscription = given::<Subscription>(vec![created(Tier::Starter, true)]);
    let today = d(2026, 1, 20);
    let services = services();
    let at_term_end = cancel(&subscription, &live_org(), false, None, today, &services).await.unwrap();
    assert_eq!(
        at_term_end,
        Ended {
            subscription: vec![AutoRenewalCancelled { effective_date: d(2027, 1, 1) }.into()],
            organization: vec![]
        }
    );
    let now = cancel(&subscription, &live_org(), true, None, today, &services).await.unwrap();
    assert_eq!(
        now,
        Ended {
            subscription: vec![SubscriptionCancelled { effective_date: today }.into()],
            organization: vec![ended()]
        }
    );
    let later = cancel(&subscription, &live_org(), true, Some(d(2026, 1, 25)), today, &services).await.unwrap();
    assert_eq!(
        later,
        Ended {
            subscription: vec![SubscriptionCancelled { effective_date: d(2026, 1, 25) }.into()],
            organization: vec![]
        }
    );
    let again = cancel(
        &given(vec![created(Tier::Starter, true), SubscriptionCancelled { effective_date: d(2026, 1, 25) }.into()]),
        &live_org(),
        true,
        None,
        today,
        &services,
    )
    .await;
    assert_eq!(again, Err(Refusal::Subscription(SubscriptionError::AlreadyCancelled(d(2026, 1, 25)))));
}

#[tokio::test]
async fn a_term_s_end_renews_or_expires_and_an_expiry_ends_the_live_subscription() {
    let services = services();
    let today = d(2027, 1, 1);
    let renewing = given::<Subscription>(vec![created(Tier::Starter, true)]);
    let renewed =
        SubscriptionRenewed { start_date: today, end_date: d(2028, 1, 1), tier: Tier::Starter, catalog_version: 1 };
    assert_eq!(
        end_term(&renewing, &live_org(), today, &services).await,
        Ok(Ended { subscription: vec![renewed.into()], organization: vec![] })
    );
    let not_renewing = given::<Subscription>(vec![created(Tier::Starter, false)]);
    assert_eq!(
        end_term(&not_renewing, &live_org(), today, &services).await,
        Ok(Ended { subscription: vec![SubscriptionExpired { on: today }.into()], organization: vec![ended()] })
    );
    assert_eq!(
        end_term(&renewing, &live_org(), d(2026, 12, 31), &services).await,
        Err(Refusal::Subscription(SubscriptionError::TermNotEnded))
    );
}

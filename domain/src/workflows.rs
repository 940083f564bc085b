//! Rules that span aggregates: what starting, provisioning, upgrading and
//! ending a subscription decide on the organization, the subscription and
//! their license keys together.
//!
//! Each rule is a pure function: given the aggregates' states (as loaded
//! from their streams) and the request, it answers the events each
//! aggregate decides, or the first refusal. Every decision goes through the
//! aggregates' own command handling, so a workflow adds the order and the
//! hand-over between aggregates, never a second copy of their rules. What
//! comes from outside (new ids, a key's random nonce and keyed hash,
//! today) is in the arguments.

use chrono::NaiveDate;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use rust_decimal::Decimal;

use crate::catalog::Tier;
use crate::license::{License, LicenseCommand, LicenseError, LicenseEvent};
use crate::organization::{Organization, OrganizationCommand, OrganizationError, OrganizationEvent, Role};
use crate::record::Hash;
use crate::subscription::{
    AddonKind, Pricing, Services, Subscription, SubscriptionCommand, SubscriptionError, SubscriptionEvent,
};
use crate::{AddonId, LicenseId, OrganizationId, SubscriptionId, Timestamp, UserId};

/// The first aggregate that refused, with its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Organization(#[from] OrganizationError),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    #[error(transparent)]
    License(#[from] LicenseError),
}

/// An aggregate's state and the events decided on it so far, each applied
/// as it is decided, so the next command sees it.
struct Deciding<A: Aggregate> {
    state: A,
    events: Vec<A::Event>,
}

impl<A: Aggregate + Clone> Deciding<A> {
    fn new(state: &A) -> Self {
        Self { state: state.clone(), events: Vec::new() }
    }

    /// Decides through the aggregate's own `handle` (which awaits no I/O).
    async fn decide(&mut self, command: A::Command, services: &A::Services) -> Result<&A, A::Error> {
        let sink = EventSink::<A>::default();
        self.state.handle(command, services, &sink).await?;
        self.events.extend(sink.collect().await);
        Ok(&self.state)
    }
}

/// A new license key: its id and what the key is derived from (random
/// bytes and the keyed hash of the key, both made outside the domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub license_id: LicenseId,
    pub nonce: [u8; 16],
    pub key_hash: Hash,
    pub issued_at: Timestamp,
}

/// A subscription as an organization starts it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub subscription_id: SubscriptionId,
    pub tier: Tier,
    pub start_date: NaiveDate,
    pub auto_renew: bool,
    pub max_deployments: u32,
    pub enterprise_overage_rate: Option<Decimal>,
    pub today: NaiveDate,
}

/// What starting a subscription decided, per aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscribed {
    pub organization: Vec<OrganizationEvent>,
    pub subscription: Vec<SubscriptionEvent>,
    pub license: Vec<LicenseEvent>,
}

/// An organization starts a subscription, and its license key is issued:
/// the organization takes it as its one live subscription (refused while
/// another is live), the subscription is created naming the key, the key
/// names both. `subscription` and `license` are the new ids' streams
/// (empty, unless an id was used before).
pub async fn subscribe(
    organization: &Organization,
    subscription: &Subscription,
    license: &License,
    new: NewSubscription,
    key: NewKey,
    services: &Services,
) -> Result<Subscribed, Refusal> {
    let mut organization = Deciding::new(organization);
    let (subscription, license) =
        start_subscription(&mut organization, subscription, license, new, key, services).await?;
    Ok(Subscribed { organization: organization.events, subscription, license })
}

async fn start_subscription(
    organization: &mut Deciding<Organization>,
    subscription: &Subscription,
    license: &License,
    new: NewSubscription,
    key: NewKey,
    services: &Services,
) -> Result<(Vec<SubscriptionEvent>, Vec<LicenseEvent>), Refusal> {
    let subscription_id = new.subscription_id;
    let org = organization.decide(OrganizationCommand::StartSubscription { subscription_id }, &()).await?;
    let organization_id = org.id.ok_or(OrganizationError::NotFound)?;
    let create = SubscriptionCommand::Create {
        id: subscription_id,
        organization_id,
        tier: new.tier,
        start_date: new.start_date,
        auto_renew: new.auto_renew,
        max_deployments: new.max_deployments,
        enterprise_overage_rate: new.enterprise_overage_rate,
        license_id: key.license_id,
        today: new.today,
    };
    let mut subscription = Deciding::new(subscription);
    subscription.decide(create, services).await?;
    let mut license = Deciding::new(license);
    license.decide(issue(key, subscription_id, organization_id), &()).await?;
    Ok((subscription.events, license.events))
}

fn issue(key: NewKey, subscription_id: SubscriptionId, organization_id: OrganizationId) -> LicenseCommand {
    let NewKey { license_id, nonce, key_hash, issued_at } = key;
    LicenseCommand::Issue { license_id, subscription_id, organization_id, nonce, key_hash, issued_at }
}

/// What a completed Checkout session bought: a new organization with its
/// first admin, and a subscription to a tier from `today`, at catalog
/// prices, renewing, on one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub organization_id: OrganizationId,
    pub organization_name: String,
    pub admin_id: UserId,
    pub admin_email: String,
    pub subscription_id: SubscriptionId,
    pub tier: Tier,
    pub today: NaiveDate,
}

/// Provisioning from Checkout: the organization is created with its admin
/// (no seat limit yet: it has no subscription), then starts its
/// subscription exactly as [`subscribe`] does.
pub async fn provision(
    organization: &Organization,
    subscription: &Subscription,
    license: &License,
    purchase: Purchase,
    key: NewKey,
    services: &Services,
) -> Result<Subscribed, Refusal> {
    let mut organization = Deciding::new(organization);
    let create = OrganizationCommand::Create {
        id: purchase.organization_id,
        name: purchase.organization_name,
        domain: None,
        industry: None,
        employee_count: None,
    };
    organization.decide(create, &()).await?;
    let admin = OrganizationCommand::AddUser {
        user_id: purchase.admin_id,
        email: purchase.admin_email,
        role: Role::Admin,
        seat_limit: None,
    };
    organization.decide(admin, &()).await?;
    let new = NewSubscription {
        subscription_id: purchase.subscription_id,
        tier: purchase.tier,
        start_date: purchase.today,
        auto_renew: true,
        max_deployments: 1,
        enterprise_overage_rate: None,
        today: purchase.today,
    };
    let (subscription, license) =
        start_subscription(&mut organization, subscription, license, new, key, services).await?;
    Ok(Subscribed { organization: organization.events, subscription, license })
}

/// The ids a Checkout session provisions, derived from the session's id
/// (BLAKE3 `derive_key`, one context each), so every delivery of its
/// completion names the same organization and the second one finds it.
/// These derivations never change: a changed one would provision twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutIds {
    pub organization_id: OrganizationId,
    pub admin_id: UserId,
    pub subscription_id: SubscriptionId,
    pub license_id: LicenseId,
}

impl CheckoutIds {
    pub fn of(session_id: &str) -> Self {
        let id = |what: &str| {
            let context = format!("ledger 2026-11-29 checkout {what} id v1");
            let hash = blake3::Hasher::new_derive_key(&context).update(session_id.as_bytes()).finalize();
            let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().expect("16 of 32 bytes");
            uuid::Builder::from_custom_bytes(bytes).into_uuid()
        };
        Self {
            organization_id: OrganizationId(id("organization")),
            admin_id: UserId(id("admin")),
            subscription_id: SubscriptionId(id("subscription")),
            license_id: LicenseId(id("license")),
        }
    }
}

/// An add-on bought with an upgrade; without a date it starts on the
/// upgrade's effective day.
#[derive(Debug, Clone, PartialEq)]
pub struct AddonPurchase {
    pub addon_id: AddonId,
    pub kind: AddonKind,
    pub quantity: u32,
    pub annual_price: Option<Decimal>,
    pub one_time_price: Option<Decimal>,
    pub effective_date: Option<NaiveDate>,
}

impl AddonPurchase {
    pub fn names_a_price(&self) -> bool {
        self.annual_price.is_some() || self.one_time_price.is_some()
    }

    fn command(&self, default_date: NaiveDate, today: NaiveDate, pricing: Pricing) -> SubscriptionCommand {
        SubscriptionCommand::AddAddon {
            addon_id: self.addon_id,
            kind: self.kind,
            quantity: self.quantity,
            annual_price: self.annual_price,
            one_time_price: self.one_time_price,
            effective_date: self.effective_date.unwrap_or(default_date),
            today,
            pricing,
        }
    }
}

/// An upgrade as asked for: the tier, the day (today when not given),
/// add-ons bought with it, and who sets their prices.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeOrder {
    pub target_tier: Tier,
    pub effective_date: Option<NaiveDate>,
    pub addons: Vec<AddonPurchase>,
    pub pricing: Pricing,
    pub today: NaiveDate,
}

/// What an upgrade decided, per aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upgraded {
    pub subscription: Vec<SubscriptionEvent>,
    pub old_license: Vec<LicenseEvent>,
    pub new_license: Vec<LicenseEvent>,
}

/// An upgrade (BILLING-RULES, "Upgrade"): the subscription moves to the
/// higher tier and buys the add-ons, its current key is superseded from
/// the effective day, and a new key is issued at once. Who may set a price
/// is decided before anything else, as for a single add-on.
/// `old_license` is the subscription's current key; `new_license` is the
/// new key's stream (empty unless its id was used before).
pub async fn upgrade(
    subscription: &Subscription,
    old_license: &License,
    new_license: &License,
    order: UpgradeOrder,
    key: NewKey,
    services: &Services,
) -> Result<Upgraded, Refusal> {
    order.pricing.allows_price(order.addons.iter().any(AddonPurchase::names_a_price))?;
    let (Some(subscription_id), Some(organization_id)) = (subscription.id, subscription.organization_id) else {
        return Err(SubscriptionError::NotFound.into());
    };
    if old_license.issued.as_ref().map(|issued| issued.license_id) != subscription.license_id {
        return Err(LicenseError::NotFound.into());
    }
    let mut upgraded = Deciding::new(subscription);
    let (target_tier, effective_date, new_license_id, today) =
        (order.target_tier, order.effective_date, key.license_id, order.today);
    let state = upgraded
        .decide(SubscriptionCommand::Upgrade { target_tier, effective_date, new_license_id, today }, services)
        .await?;
    let effective_date = state.latest_tier().map_or(today, |tier| tier.from);
    for addon in &order.addons {
        upgraded.decide(addon.command(effective_date, today, order.pricing), services).await?;
    }
    let mut old = Deciding::new(old_license);
    old.decide(LicenseCommand::Supersede { by: new_license_id, effective_date }, &()).await?;
    let mut new = Deciding::new(new_license);
    new.decide(issue(key, subscription_id, organization_id), &()).await?;
    Ok(Upgraded { subscription: upgraded.events, old_license: old.events, new_license: new.events })
}

/// What ending (or cancelling) a subscription decided, per aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ended {
    pub subscription: Vec<SubscriptionEvent>,
    pub organization: Vec<OrganizationEvent>,
}

/// The rule "an organization's live subscription ends when it is
/// cancelled or expires": once `subscription` (as decided so far) is
/// cancelled from a day that has come, or expired, the organization ends
/// it as its live subscription and may start another. Nothing while it
/// still runs (a cancellation dated later ends it on its day), and nothing
/// when the organization has ended it already.
pub async fn end_live_subscription(
    organization: &Organization,
    subscription: &Subscription,
    today: NaiveDate,
) -> Result<Vec<OrganizationEvent>, Refusal> {
    let Some(subscription_id) = subscription.id else { return Err(SubscriptionError::NotFound.into()) };
    if !subscription.status_on(today).is_ended() || organization.live_subscription != Some(subscription_id) {
        return Ok(Vec::new());
    }
    let mut organization = Deciding::new(organization);
    organization.decide(OrganizationCommand::EndSubscription { subscription_id }, &()).await?;
    Ok(organization.events)
}

/// A cancellation: at the term's end (auto-renewal off), or immediately
/// from a day (`effective_date`, today when not given), which ends the
/// organization's live subscription once that day has come.
pub async fn cancel(
    subscription: &Subscription,
    organization: &Organization,
    immediate: bool,
    effective_date: Option<NaiveDate>,
    today: NaiveDate,
    services: &Services,
) -> Result<Ended, Refusal> {
    let mut cancelled = Deciding::new(subscription);
    let state = cancelled.decide(SubscriptionCommand::Cancel { immediate, effective_date, today }, services).await?;
    let organization = end_live_subscription(organization, state, today).await?;
    Ok(Ended { subscription: cancelled.events, organization })
}

/// The term's end has come: the subscription renews, or expires, which
/// ends the organization's live subscription.
pub async fn end_term(
    subscription: &Subscription,
    organization: &Organization,
    today: NaiveDate,
    services: &Services,
) -> Result<Ended, Refusal> {
    let mut ended = Deciding::new(subscription);
    let state = ended.decide(SubscriptionCommand::EndTerm { today }, services).await?;
    let organization = end_live_subscription(organization, state, today).await?;
    Ok(Ended { subscription: ended.events, organization })
}

//! Subscriptions: starting one with its license key, upgrades,
//! downgrades, cancellations, add-ons and the operator's corrections of
//! them (docs/API.md, "Commands"), and the scheduler's steps (a term's
//! end, a cancellation taking effect, a dunning grace ending).
//!
//! Rules that span aggregates are decided by `domain::workflows`; these
//! functions check the caller, load the aggregates, hand them over and
//! append what was decided as one atomic group.

use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::event::LedgerEvent;
use domain::license::License;
use domain::organization::Organization;
use domain::staff::StaffPermission;
use domain::subscription::{AddonKind, Pricing, Subscription, SubscriptionCommand, SubscriptionEvent};
use domain::workflows::{self, AddonPurchase, NewSubscription, Purchase, Subscribed, UpgradeOrder};
use domain::{AddonId, LicenseId, OrganizationId, SubscriptionId};
use rust_decimal::Decimal;
use store::Command;
use uuid::Uuid;

use crate::command::{Appended, Context, Loaded, execute, load};
use crate::licenses::{issued_key, new_key};
use crate::views::Amount;
use crate::views::SequenceResponse;
use crate::views::licensing::Limits;
use crate::views::subscriptions::{
    AddAddonResponse, CancelResponse, ChangePreview, CreateSubscriptionResponse, DowngradeResponse, UpgradeResponse,
};
use crate::{Caller, Error, Ledger, Need};

/// A tier as the API writes it.
pub fn parse_tier(text: &str) -> Result<Tier, Error> {
    Tier::parse(text)
        .ok_or_else(|| Error::Validation(format!("unknown tier {text:?}: starter, professional or enterprise")))
}

/// An add-on kind as the API writes it.
pub fn parse_addon_kind(text: &str) -> Result<AddonKind, Error> {
    AddonKind::parse(text).ok_or_else(|| {
        Error::Validation(format!(
            "unknown add-on kind {text:?}: extra_data_tb, custom_module, training_session or dedicated_support"
        ))
    })
}

/// A subscription the operator starts for an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSubscriptionInput {
    pub organization_id: OrganizationId,
    pub tier: Tier,
    pub start_date: NaiveDate,
    pub auto_renew: bool,
    pub max_deployments: u32,
    /// The enterprise contract's overage rate (a price: the operator's).
    pub enterprise_overage_rate: Option<Decimal>,
}

/// An add-on to buy. Prices are the operator's; an organization's admin
/// buys at the catalog price.
#[derive(Debug, Clone, PartialEq)]
pub struct AddonInput {
    pub kind: AddonKind,
    pub quantity: u32,
    pub annual_price: Option<Decimal>,
    pub one_time_price: Option<Decimal>,
    /// Required for an add-on bought alone; with an upgrade, its day.
    pub effective_date: Option<NaiveDate>,
}

impl AddonInput {
    fn names_a_price(&self) -> bool {
        self.annual_price.is_some() || self.one_time_price.is_some()
    }

    fn purchase(&self, addon_id: AddonId) -> AddonPurchase {
        AddonPurchase {
            addon_id,
            kind: self.kind,
            quantity: self.quantity,
            annual_price: self.annual_price,
            one_time_price: self.one_time_price,
            effective_date: self.effective_date,
        }
    }

    /// The day an add-on bought alone takes effect: required.
    fn alone_from(&self) -> Result<NaiveDate, Error> {
        self.effective_date.ok_or_else(|| Error::Validation("effectiveDate is required".into()))
    }

    /// The command that adds this add-on alone (a new add-on id) from
    /// `effective_date`.
    fn add_command(&self, effective_date: NaiveDate, today: NaiveDate, pricing: Pricing) -> SubscriptionCommand {
        SubscriptionCommand::AddAddon {
            addon_id: AddonId(Uuid::now_v7()),
            kind: self.kind,
            quantity: self.quantity,
            annual_price: self.annual_price,
            one_time_price: self.one_time_price,
            effective_date,
            today,
            pricing,
        }
    }
}

/// An upgrade: the seed's `UpgradeRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeInput {
    pub target_tier: Tier,
    /// A day of the current month; today when not given.
    pub effective_date: Option<NaiveDate>,
    pub addons: Vec<AddonInput>,
}

/// A cancellation: at the term's end, or (the operator's) immediately from
/// a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelInput {
    pub immediate: bool,
    pub effective_date: Option<NaiveDate>,
}

/// Who decides prices for this caller: the operator, or (an organization's
/// admin) the catalog.
fn pricing(caller: &Caller) -> Pricing {
    if caller.may(StaffPermission::Operate) { Pricing::Operator } else { Pricing::Catalog }
}

/// A price in a request of anyone but the operator is refused, never
/// ignored: customers buy at catalog prices (BILLING-RULES, "Who sets
/// prices, and bounds"). Checked before anything is looked up, so the
/// answer does not depend on the state.
fn prices_are_the_operators<'a>(
    caller: &Caller,
    addons: impl IntoIterator<Item = &'a AddonInput>,
) -> Result<(), Error> {
    Ok(pricing(caller).allows_price(addons.into_iter().any(AddonInput::names_a_price))?)
}

/// Starts a subscription for an organization (the operator's) and issues
/// its license key.
pub async fn create_subscription(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    input: CreateSubscriptionInput,
) -> Result<CreateSubscriptionResponse, Error> {
    caller.require(StaffPermission::Operate)?;
    let appended = execute(ledger, context, || async {
        let organization = load::<Organization>(ledger, input.organization_id.stream()).await?;
        if organization.state.id.is_none() {
            return Err(Error::NotFound);
        }
        let new = NewSubscription {
            subscription_id: SubscriptionId(Uuid::now_v7()),
            tier: input.tier,
            start_date: input.start_date,
            auto_renew: input.auto_renew,
            max_deployments: input.max_deployments,
            enterprise_overage_rate: input.enterprise_overage_rate,
            today: ledger.today(),
        };
        start_subscription(ledger, context, organization, Start::Subscribe(new), LicenseId(Uuid::now_v7())).await
    })
    .await?;
    let subscription_id = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::SubscriptionCreated(c)) => Some(c.id),
        _ => None,
    })?;
    let license_key = issued_key(ledger, &appended)?;
    Ok(CreateSubscriptionResponse { subscription_id: subscription_id.0, license_key, sequence: appended.sequence })
}

/// How an organization comes to start a subscription.
pub(crate) enum Start {
    /// An existing organization, by the operator.
    Subscribe(NewSubscription),
    /// A new organization and its admin, from a Checkout purchase.
    Provision(Purchase),
}

/// The one workflow for "an organization's subscription and its license",
/// behind both the operator's command and Checkout's provisioning: it
/// loads the new subscription's and key's streams, makes the key, lets the
/// domain decide (`workflows::subscribe` or `workflows::provision`) and
/// answers the log commands of the three aggregates.
pub(crate) async fn start_subscription(
    ledger: &Ledger,
    context: &Context,
    mut organization: Loaded<Organization>,
    start: Start,
    license_id: LicenseId,
) -> Result<Vec<Command>, Error> {
    let now = ledger.now();
    let subscription_id = match &start {
        Start::Subscribe(new) => new.subscription_id,
        Start::Provision(purchase) => purchase.subscription_id,
    };
    let mut subscription = load::<Subscription>(ledger, subscription_id.stream()).await?;
    let mut license = load::<License>(ledger, license_id.stream()).await?;
    let key = new_key(ledger, license_id, now)?;
    let (org, services) = (&organization.state, &ledger.subscription_services);
    let decided: Subscribed = match start {
        Start::Subscribe(new) => {
            workflows::subscribe(org, &subscription.state, &license.state, new, key, services).await?
        }
        Start::Provision(purchase) => {
            workflows::provision(org, &subscription.state, &license.state, purchase, key, services).await?
        }
    };
    organization.record(decided.organization);
    subscription.record(decided.subscription);
    license.record(decided.license);
    Ok(vec![
        organization.into_command(context, now),
        subscription.into_command(context, now),
        license.into_command(context, now),
    ])
}

/// Upgrades the organization's subscription: a higher tier from a day of
/// this month, add-ons bought with it, the old key superseded and a new one
/// issued at once.
pub async fn upgrade(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    input: UpgradeInput,
) -> Result<UpgradeResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    prices_are_the_operators(caller, &input.addons)?;
    let pricing = pricing(caller);
    let appended = execute(ledger, context, || async {
        let (now, today) = (ledger.now(), ledger.today());
        let subscription_id = live_subscription(ledger, organization_id).await?;
        let mut subscription = load::<Subscription>(ledger, subscription_id.stream()).await?;
        let old_license_id = subscription.state.license_id.ok_or(Error::NotFound)?;
        let mut old_license = load::<License>(ledger, old_license_id.stream()).await?;
        let new_license_id = LicenseId(Uuid::now_v7());
        let mut new_license = load::<License>(ledger, new_license_id.stream()).await?;
        let order = UpgradeOrder {
            target_tier: input.target_tier,
            effective_date: input.effective_date,
            addons: input.addons.iter().map(|addon| addon.purchase(AddonId(Uuid::now_v7()))).collect(),
            pricing,
            today,
        };
        let (key, services) = (new_key(ledger, new_license_id, now)?, &ledger.subscription_services);
        let decided =
            workflows::upgrade(&subscription.state, &old_license.state, &new_license.state, order, key, services)
                .await?;
        subscription.record(decided.subscription);
        old_license.record(decided.old_license);
        new_license.record(decided.new_license);
        Ok(vec![
            subscription.into_command(context, now),
            old_license.into_command(context, now),
            new_license.into_command(context, now),
        ])
    })
    .await?;
    let upgraded = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::SubscriptionUpgraded(u)) => Some(u.clone()),
        _ => None,
    })?;
    // An upgrade keeps the subscription: the seed's `newSubscriptionId` is it.
    let subscription_id = subscription_of(&appended)?;
    Ok(UpgradeResponse::new(&upgraded, subscription_id.0, issued_key(ledger, &appended)?, appended.sequence))
}

/// The subscription whose stream an answer's events were appended to (a
/// retried request is answered from the first attempt's events).
fn subscription_of(appended: &Appended) -> Result<SubscriptionId, Error> {
    appended
        .records
        .iter()
        .find(|(record, _)| record.header.stream_id.category() == "subscription")
        .and_then(|(record, _)| record.header.stream_id.as_str().split_once('/').and_then(|(_, id)| id.parse().ok()))
        .map(SubscriptionId)
        .ok_or_else(|| Error::Internal("no subscription event".into()))
}

/// Schedules a downgrade for the renewal at the term's end.
pub async fn downgrade(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    target_tier: Tier,
) -> Result<DowngradeResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let command = |today| SubscriptionCommand::ScheduleDowngrade { target_tier, today };
    let appended = on_live_subscription(ledger, context, organization_id, command).await?;
    let effective_date = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::DowngradeScheduled(d)) => Some(d.effective_date),
        _ => None,
    })?;
    Ok(DowngradeResponse { effective_date, sequence: appended.sequence })
}

/// Cancels at the term's end (auto-renewal off), or immediately (the
/// vendor's decision) from a day; a cancellation in effect today ends the
/// organization's live subscription at once, a later one on its day (the
/// scheduler).
pub async fn cancel(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    input: CancelInput,
) -> Result<CancelResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    if input.immediate {
        caller.require(StaffPermission::Operate)?;
    } else if input.effective_date.is_some() {
        return Err(Error::Validation("effectiveDate applies to an immediate cancellation only".into()));
    }
    let appended = execute(ledger, context, || async {
        let subscription_id = live_subscription(ledger, organization_id).await?;
        let (mut subscription, mut organization) = subscription_and_organization(ledger, subscription_id).await?;
        let (today, services) = (ledger.today(), &ledger.subscription_services);
        let (immediate, effective_date) = (input.immediate, input.effective_date);
        let decided =
            workflows::cancel(&subscription.state, &organization.state, immediate, effective_date, today, services)
                .await?;
        subscription.record(decided.subscription);
        organization.record(decided.organization);
        Ok(changed(ledger, context, subscription, organization))
    })
    .await?;
    let effective_date = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::SubscriptionCancelled(c)) => Some(c.effective_date),
        LedgerEvent::Subscription(SubscriptionEvent::AutoRenewalCancelled(c)) => Some(c.effective_date),
        _ => None,
    })?;
    Ok(CancelResponse { effective_date, sequence: appended.sequence })
}

/// Buys an add-on for the organization's subscription, from its
/// `effective_date` (required).
pub async fn add_addon(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    input: AddonInput,
) -> Result<AddAddonResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    prices_are_the_operators(caller, [&input])?;
    let (effective_date, pricing) = (input.alone_from()?, pricing(caller));
    let command = |today| input.add_command(effective_date, today, pricing);
    let appended = on_live_subscription(ledger, context, organization_id, command).await?;
    let addon_id = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::AddonAdded(a)) => Some(a.addon_id),
        _ => None,
    })?;
    Ok(AddAddonResponse { addon_id: addon_id.0, sequence: appended.sequence })
}

/// The operator ends an add-on: not billed from `effective_date` on.
pub async fn end_addon(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    addon_id: AddonId,
    effective_date: NaiveDate,
) -> Result<SequenceResponse, Error> {
    let command = |invoiced_through| SubscriptionCommand::EndAddon { addon_id, effective_date, invoiced_through };
    correct_addon(ledger, caller, context, organization_id, addon_id, command).await
}

/// The operator corrects an add-on's price for every month not invoiced yet.
pub async fn reprice_addon(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    addon_id: AddonId,
    annual_price: Option<Decimal>,
    one_time_price: Option<Decimal>,
) -> Result<SequenceResponse, Error> {
    let command = |_| SubscriptionCommand::RepriceAddon { addon_id, annual_price, one_time_price };
    correct_addon(ledger, caller, context, organization_id, addon_id, command).await
}

/// The operator sets the floating deployments of an organization's live
/// subscription (`domain::floating`): how many of its `maxDeployments`
/// may float, their heartbeat interval and place lease.
pub async fn set_floating(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    policy: domain::floating::FloatingPolicy,
) -> Result<SequenceResponse, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    caller.require(StaffPermission::Operate)?;
    let command = |today| SubscriptionCommand::SetFloating { policy, today };
    let appended = on_live_subscription(ledger, context, organization_id, command).await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// The scheduler's step at a term's end: the subscription renews, or
/// expires and ends the organization's live subscription.
pub async fn end_term(ledger: &Ledger, context: &Context, subscription_id: SubscriptionId) -> Result<u64, Error> {
    let appended = execute(ledger, context, || async {
        let (mut subscription, mut organization) = subscription_and_organization(ledger, subscription_id).await?;
        let (today, services) = (ledger.today(), &ledger.subscription_services);
        let decided = workflows::end_term(&subscription.state, &organization.state, today, services).await?;
        subscription.record(decided.subscription);
        organization.record(decided.organization);
        Ok(changed(ledger, context, subscription, organization))
    })
    .await?;
    Ok(appended.sequence)
}

/// The scheduler's step on the day a cancellation dated later takes
/// effect: the organization's live subscription ends.
pub async fn end_cancelled(ledger: &Ledger, context: &Context, subscription_id: SubscriptionId) -> Result<u64, Error> {
    let appended = execute(ledger, context, || async {
        let (subscription, mut organization) = subscription_and_organization(ledger, subscription_id).await?;
        let ended = workflows::end_live_subscription(&organization.state, &subscription.state, ledger.today()).await?;
        if ended.is_empty() {
            return Err(Error::conflict("conflict", format!("{subscription_id} is not a live subscription to end")));
        }
        organization.record(ended);
        Ok(vec![organization.into_command(context, ledger.now())])
    })
    .await?;
    Ok(appended.sequence)
}

/// The scheduler's step when a past-due subscription's dunning grace is
/// over: it is suspended.
pub async fn suspend(ledger: &Ledger, context: &Context, subscription_id: SubscriptionId) -> Result<u64, Error> {
    let appended = execute(ledger, context, || async {
        let mut subscription = load::<Subscription>(ledger, subscription_id.stream()).await?;
        let now = ledger.now();
        subscription.decide(SubscriptionCommand::Suspend { now }, &ledger.subscription_services).await?;
        Ok(vec![subscription.into_command(context, now)])
    })
    .await?;
    Ok(appended.sequence)
}

/// A subscription and its organization, loaded from their streams.
async fn subscription_and_organization(
    ledger: &Ledger,
    subscription_id: SubscriptionId,
) -> Result<(Loaded<Subscription>, Loaded<Organization>), Error> {
    let subscription = load::<Subscription>(ledger, subscription_id.stream()).await?;
    let organization_id = subscription.state.organization_id.ok_or(Error::NotFound)?;
    let organization = load::<Organization>(ledger, organization_id.stream()).await?;
    Ok((subscription, organization))
}

/// The log commands of a subscription and its organization, for those that
/// decided anything (the subscription always has).
fn changed(
    ledger: &Ledger,
    context: &Context,
    subscription: Loaded<Subscription>,
    organization: Loaded<Organization>,
) -> Vec<Command> {
    let now = ledger.now();
    let mut commands = vec![subscription.into_command(context, now)];
    if !organization.decided().is_empty() {
        commands.push(organization.into_command(context, now));
    }
    commands
}

/// The subscription a change applies to: the organization's live one, or
/// else its latest, so that a change to a cancelled or expired
/// subscription is answered by the domain's own rule
/// (`subscription_not_changeable`). `NotFound` for an unknown organization.
async fn live_subscription(ledger: &Ledger, organization_id: OrganizationId) -> Result<SubscriptionId, Error> {
    let db = &ledger.models.db;
    if !projections::models::organizations::exists(db, organization_id).await? {
        return Err(Error::NotFound);
    }
    projections::models::subscriptions::live_or_latest(db, organization_id)
        .await?
        .map(|(id, _)| id)
        .ok_or_else(|| Error::conflict("no_subscription", "the organization has no subscription"))
}

/// Decides one command, given today's date, on an organization's live
/// subscription and appends it.
async fn on_live_subscription(
    ledger: &Ledger,
    context: &Context,
    organization_id: OrganizationId,
    command: impl Fn(NaiveDate) -> SubscriptionCommand,
) -> Result<Appended, Error> {
    execute(ledger, context, || async {
        let subscription_id = live_subscription(ledger, organization_id).await?;
        let mut subscription = load::<Subscription>(ledger, subscription_id.stream()).await?;
        subscription.decide(command(ledger.today()), &ledger.subscription_services).await?;
        Ok(vec![subscription.into_command(context, ledger.now())])
    })
    .await
}

/// The subscription of an organization (any of its subscriptions, ended
/// ones too) that holds an add-on, and the last month it has an invoice for.
async fn subscription_with_addon(
    ledger: &Ledger,
    organization_id: OrganizationId,
    addon_id: AddonId,
) -> Result<(SubscriptionId, Option<NaiveDate>), Error> {
    let db = &ledger.models.db;
    // An unknown organization has no subscriptions: not found either way.
    let id = projections::models::subscriptions::of_organization(db, organization_id)
        .await?
        .into_iter()
        .find(|(_, s)| s.addons.iter().any(|a| a.addon_id == addon_id))
        .map(|(id, _)| id)
        .ok_or(Error::NotFound)?;
    let invoiced_through = projections::models::invoices::last_invoiced(db, id).await?;
    Ok((id, invoiced_through))
}

/// Decides an operator's correction of an add-on and appends it.
async fn correct_addon(
    ledger: &Ledger,
    caller: &Caller,
    context: &Context,
    organization_id: OrganizationId,
    addon_id: AddonId,
    command: impl Fn(Option<NaiveDate>) -> SubscriptionCommand,
) -> Result<SequenceResponse, Error> {
    // The path names the organization: another organization's admin is
    // answered as if it did not exist, this one's members lack the role.
    caller.require_org(organization_id, Need::Admin)?;
    caller.require(StaffPermission::Operate)?;
    let appended = execute(ledger, context, || async {
        let (subscription_id, invoiced_through) = subscription_with_addon(ledger, organization_id, addon_id).await?;
        let mut subscription = load::<Subscription>(ledger, subscription_id.stream()).await?;
        subscription.decide(command(invoiced_through), &ledger.subscription_services).await?;
        Ok(vec![subscription.into_command(context, ledger.now())])
    })
    .await?;
    Ok(SequenceResponse { sequence: appended.sequence })
}

/// A change of plan to preview: what the confirming command takes.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeInput {
    Upgrade(UpgradeInput),
    Downgrade { target_tier: Tier },
    Cancel(CancelInput),
    Addon(AddonInput),
}

/// What a change would do, decided by the same aggregates and rules as its
/// command (`upgrade`, `downgrade`, `cancel`, `add_addon`) and with the
/// same caller checks, and never appended: the day it takes effect, the
/// upgrade's prorated amount, the limits on that day and the invoice of
/// its month as it computes now, without and with the change. Prices are
/// the catalog's for an organization's admin, as when confirming.
pub async fn preview(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
    change: ChangeInput,
) -> Result<ChangePreview, Error> {
    caller.require_org(organization_id, Need::Admin)?;
    let sequence = ledger.models.applied();
    let subscription_id = live_subscription(ledger, organization_id).await?;
    let (subscription, organization) = subscription_and_organization(ledger, subscription_id).await?;
    let before = subscription.state.clone();
    let decided = decide_change(ledger, caller, &subscription, &organization, change).await?;
    let mut after = before.clone();
    let mut summary = ChangeSummary::default();
    for event in decided {
        summary.note(&event);
        cqrs_es::Aggregate::apply(&mut after, event);
    }
    let (kind, effective_date) = summary
        .kind
        .zip(summary.effective_date)
        .ok_or(Error::Conflict { code: "nothing_to_change", message: "the change would change nothing".into() })?;
    let catalog = &ledger.catalog;
    let invoice_before = crate::billing::month_preview(ledger, subscription_id, &before, effective_date).await?;
    let invoice_after = crate::billing::month_preview(ledger, subscription_id, &after, effective_date).await?;
    Ok(ChangePreview {
        change: kind,
        effective_date,
        prorated_amount: summary.prorated_amount.map(Amount),
        limits_before: Limits::on(&before, catalog, effective_date),
        limits_after: Limits::on(&after, catalog, effective_date),
        invoice_before,
        invoice_after,
        sequence,
    })
}

/// The subscription's events the change decides (licenses' left out: a
/// preview issues no key).
async fn decide_change(
    ledger: &Ledger,
    caller: &Caller,
    subscription: &Loaded<Subscription>,
    organization: &Loaded<Organization>,
    change: ChangeInput,
) -> Result<Vec<SubscriptionEvent>, Error> {
    let (now, today, services) = (ledger.now(), ledger.today(), &ledger.subscription_services);
    let pricing = pricing(caller);
    let command = match change {
        ChangeInput::Upgrade(input) => {
            prices_are_the_operators(caller, &input.addons)?;
            let old_license_id = subscription.state.license_id.ok_or(Error::NotFound)?;
            let old_license = load::<License>(ledger, old_license_id.stream()).await?;
            let new_license_id = LicenseId(Uuid::now_v7());
            let order = UpgradeOrder {
                target_tier: input.target_tier,
                effective_date: input.effective_date,
                addons: input.addons.iter().map(|addon| addon.purchase(AddonId(Uuid::now_v7()))).collect(),
                pricing,
                today,
            };
            let key = new_key(ledger, new_license_id, now)?;
            let fresh = License::default();
            let decided =
                workflows::upgrade(&subscription.state, &old_license.state, &fresh, order, key, services).await?;
            return Ok(decided.subscription);
        }
        ChangeInput::Cancel(input) => {
            if input.immediate {
                caller.require(StaffPermission::Operate)?;
            }
            let (immediate, day) = (input.immediate, input.effective_date);
            let decided =
                workflows::cancel(&subscription.state, &organization.state, immediate, day, today, services).await?;
            return Ok(decided.subscription);
        }
        ChangeInput::Downgrade { target_tier } => SubscriptionCommand::ScheduleDowngrade { target_tier, today },
        ChangeInput::Addon(input) => {
            prices_are_the_operators(caller, [&input])?;
            input.add_command(input.alone_from()?, today, pricing)
        }
    };
    let mut scratch = load::<Subscription>(ledger, subscription.stream_id.clone()).await?;
    scratch.decide(command, services).await?;
    Ok(scratch.decided().to_vec())
}

/// What a preview reads of the decided events.
#[derive(Default)]
struct ChangeSummary {
    kind: Option<&'static str>,
    effective_date: Option<NaiveDate>,
    prorated_amount: Option<domain::Money>,
}

impl ChangeSummary {
    fn note(&mut self, event: &SubscriptionEvent) {
        let (kind, day) = match event {
            SubscriptionEvent::SubscriptionUpgraded(u) => {
                self.prorated_amount = Some(u.prorated_amount);
                ("upgrade", u.effective_date)
            }
            SubscriptionEvent::DowngradeScheduled(d) => ("downgrade", d.effective_date),
            SubscriptionEvent::AutoRenewalCancelled(c) => ("cancel", c.effective_date),
            SubscriptionEvent::SubscriptionCancelled(c) => ("cancel", c.effective_date),
            SubscriptionEvent::AddonAdded(a) if self.kind.is_none() => ("addon", a.effective_date),
            _ => return,
        };
        self.kind = Some(kind);
        self.effective_date = Some(day);
    }
}

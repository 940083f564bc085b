//! Command routes (API.md, "Commands").

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use domain::catalog::Tier;
use domain::event::LedgerEvent;
use domain::keys::{api_token, license_key, license_key_hash};
use domain::license::{License, LicenseCommand, LicenseEvent};
use domain::organization::{Organization, OrganizationCommand, OrganizationEvent, Role};
use domain::subscription::{AddonKind, Pricing, Subscription, SubscriptionCommand, SubscriptionEvent};
use domain::{AddonId, LicenseId, OrganizationId, SubscriptionId, TokenId, UserId};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::command::{Appended, execute, load};
use crate::error::ApiError;
use crate::extract::CommandRequest;

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

fn new_id() -> Uuid {
    Uuid::now_v7()
}

fn random_16() -> Result<[u8; 16], ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    Ok(bytes)
}

fn parse_tier(text: &str) -> Result<Tier, ApiError> {
    Tier::parse(text)
        .ok_or_else(|| ApiError::Validation(format!("unknown tier {text:?}: starter, professional or enterprise")))
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| ApiError::Validation(format!("unknown role {text:?}: admin, analyst or viewer")))
}

fn money(amount: Decimal) -> String {
    format!("{:.2}", amount.round_dp(2))
}

/// Decides one command on an organization and appends it.
async fn on_organization<T>(
    state: &AppState,
    request: &CommandRequest<T>,
    organization_id: OrganizationId,
    command: impl Fn() -> OrganizationCommand,
) -> Result<Appended, ApiError> {
    execute(state, &request.context, || async {
        let mut org = load::<Organization>(state, organization_id.stream()).await?;
        org.decide(command(), &()).await?;
        Ok(vec![org.into_command(&request.context, state.now())])
    })
    .await
}

/// Decides one command, given today's date, on an organization's live
/// subscription and appends it.
async fn on_live_subscription<T>(
    state: &AppState,
    request: &CommandRequest<T>,
    organization_id: OrganizationId,
    command: impl Fn(NaiveDate) -> Result<SubscriptionCommand, ApiError>,
) -> Result<Appended, ApiError> {
    execute(state, &request.context, || async {
        let subscription_id = live_subscription(state, organization_id).await?;
        let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
        subscription.decide(command(state.today())?, &state.subscription_services).await?;
        Ok(vec![subscription.into_command(&request.context, state.now())])
    })
    .await
}

/// The subscription a change applies to: the organization's live one, or
/// else its latest, so that a change to a cancelled or expired
/// subscription is answered by the domain's own rule
/// (`subscription_not_changeable`). 404 for an unknown organization.
async fn live_subscription(state: &AppState, organization_id: OrganizationId) -> Result<SubscriptionId, ApiError> {
    let ledger = state.projections.read().await;
    if !ledger.organizations.contains_key(&organization_id) {
        return Err(ApiError::NotFound);
    }
    ledger
        .live_subscription(organization_id)
        .or_else(|| ledger.latest_subscription(organization_id))
        .map(|(id, _)| id)
        .ok_or_else(|| ApiError::conflict("no_subscription", "the organization has no subscription"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrganization {
    name: String,
    domain: Option<String>,
    industry: Option<String>,
    employee_count: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations",
    tag = "ledger",
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "Create an organization (operator). Answers {id, sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn create_organization(
    State(state): State<AppState>,
    request: CommandRequest<CreateOrganization>,
) -> Result<Response, ApiError> {
    request.caller.require_operator()?;
    let body = &request.body;
    let appended = execute(&state, &request.context, || async {
        let id = OrganizationId(new_id());
        let mut org = load::<Organization>(&state, id.stream()).await?;
        org.decide(
            OrganizationCommand::Create {
                id,
                name: body.name.clone(),
                domain: body.domain.clone(),
                industry: body.industry.clone(),
                employee_count: body.employee_count,
            },
            &(),
        )
        .await?;
        Ok(vec![org.into_command(&request.context, state.now())])
    })
    .await?;
    let id = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::OrganizationCreated(c)) => Some(c.id),
        _ => None,
    })?;
    Ok(created(json!({ "id": id, "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddUser {
    email: String,
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/users",
    tag = "ledger",
    request_body = AddUser,
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 201, description = "Add a user; 409 seat_limit_reached when seats are full. Answers {id, sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn add_user(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<AddUser>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    let role = parse_role(&request.body.role)?;
    let appended = execute(&state, &request.context, || async {
        let seat_limit = state.seat_limit(organization_id).await;
        let mut org = load::<Organization>(&state, organization_id.stream()).await?;
        let command = OrganizationCommand::AddUser {
            user_id: UserId(new_id()),
            email: request.body.email.clone(),
            role,
            seat_limit,
        };
        org.decide(command, &()).await?;
        Ok(vec![org.into_command(&request.context, state.now())])
    })
    .await?;
    let id = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::UserAdded(u)) => Some(u.user_id),
        _ => None,
    })?;
    Ok(created(json!({ "id": id, "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/users/{user_id}/deactivate",
    tag = "ledger",
    params(
        ("org_id" = String, Path, description = "UUID"),
        ("user_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Deactivate a user, freeing a seat. Answers {sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn deactivate_user(
    State(state): State<AppState>,
    Path((org_id, user_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<NoBody>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    let command = || OrganizationCommand::DeactivateUser { user_id: UserId(user_id) };
    let appended = on_organization(&state, &request, organization_id, command).await?;
    Ok(ok(json!({ "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssueToken {
    role: String,
    /// RFC 3339; the token is refused from then on (by the system clock).
    expires_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/tokens",
    tag = "ledger",
    request_body = IssueToken,
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 201, description = "Issue an org API token for a role, optionally expiring (expiresAt, RFC 3339, at most 366 days ahead; 401 from then on). Answers {tokenId, token, expiresAt, sequence}; the token is shown again only to a retry with the same Idempotency-Key."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn issue_token(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<IssueToken>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    let role = parse_role(&request.body.role)?;
    let expires_at = request.body.expires_at.as_deref().map(domain::Timestamp::parse_rfc3339).transpose();
    let expires_at = expires_at.map_err(|e| ApiError::Validation(format!("expiresAt: {e}")))?;
    // Expiry is a transport check on the system clock (API.md), so its
    // bounds are too.
    let now = domain::Clock::now(&store::SystemClock);
    let command = || {
        let token_id = TokenId(new_id());
        let token_hash = domain::keys::api_token_hash(&state.keys.secret, &api_token(&state.keys.secret, token_id));
        OrganizationCommand::IssueToken { token_id, role, token_hash, expires_at, now }
    };
    let appended = on_organization(&state, &request, organization_id, command).await?;
    let (token_id, expires_at) = appended.find(|e| match e {
        LedgerEvent::Organization(OrganizationEvent::ApiTokenIssued(t)) => Some((t.token_id, t.expires_at)),
        _ => None,
    })?;
    // Derived again from the event, never stored: a retry shows the same token.
    let token = api_token(&state.keys.secret, token_id);
    let expires_at = expires_at.map(|t| t.to_rfc3339());
    Ok(created(json!({ "tokenId": token_id, "token": token, "expiresAt": expires_at, "sequence": appended.sequence })))
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/tokens/{token_id}/revoke",
    tag = "ledger",
    params(
        ("org_id" = String, Path, description = "UUID"),
        ("token_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Revoke an org API token. Answers {sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path((org_id, token_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<NoBody>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    let command = || OrganizationCommand::RevokeToken { token_id: TokenId(token_id) };
    let appended = on_organization(&state, &request, organization_id, command).await?;
    Ok(ok(json!({ "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSubscription {
    organization_id: Uuid,
    tier: String,
    #[serde(deserialize_with = "crate::extract::date")]
    start_date: NaiveDate,
    auto_renew: Option<bool>,
    max_deployments: Option<u32>,
    enterprise_overage_rate: Option<Decimal>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions",
    tag = "ledger",
    request_body = CreateSubscription,
    responses(
        (status = 201, description = "Create a subscription and issue its license key (operator). Answers {subscriptionId, licenseKey, sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn create_subscription(
    State(state): State<AppState>,
    request: CommandRequest<CreateSubscription>,
) -> Result<Response, ApiError> {
    request.caller.require_operator()?;
    let body = &request.body;
    let tier = parse_tier(&body.tier)?;
    let organization_id = OrganizationId(body.organization_id);
    let appended = execute(&state, &request.context, || async {
        let (now, today) = (state.now(), state.today());
        let (subscription_id, license_id) = (SubscriptionId(new_id()), LicenseId(new_id()));
        let mut org = load::<Organization>(&state, organization_id.stream()).await?;
        if org.state.id.is_none() {
            return Err(ApiError::NotFound);
        }
        org.decide(OrganizationCommand::StartSubscription { subscription_id }, &()).await?;
        let mut subscription = load::<Subscription>(&state, subscription_id.stream()).await?;
        let create = SubscriptionCommand::Create {
            id: subscription_id,
            organization_id,
            tier,
            start_date: body.start_date,
            auto_renew: body.auto_renew.unwrap_or(true),
            max_deployments: body.max_deployments.unwrap_or(1),
            enterprise_overage_rate: body.enterprise_overage_rate,
            license_id,
            today,
        };
        subscription.decide(create, &state.subscription_services).await?;
        let license = issue_license(&state, license_id, subscription_id, organization_id, now).await?;
        Ok(vec![
            org.into_command(&request.context, now),
            subscription.into_command(&request.context, now),
            license.into_command(&request.context, now),
        ])
    })
    .await?;
    let subscription_id = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::SubscriptionCreated(c)) => Some(c.id),
        _ => None,
    })?;
    let key = issued_key(&state, &appended)?;
    Ok(created(json!({ "subscriptionId": subscription_id, "licenseKey": key, "sequence": appended.sequence })))
}

pub(crate) async fn issue_license(
    state: &AppState,
    license_id: LicenseId,
    subscription_id: SubscriptionId,
    organization_id: OrganizationId,
    now: domain::Timestamp,
) -> Result<crate::command::Loaded<License>, ApiError> {
    let nonce = random_16()?;
    let key_hash = license_key_hash(&state.keys.secret, &license_key(&state.keys.license, license_id, nonce));
    let mut license = load::<License>(state, license_id.stream()).await?;
    let issue = LicenseCommand::Issue { license_id, subscription_id, organization_id, nonce, key_hash, issued_at: now };
    license.decide(issue, &()).await?;
    Ok(license)
}

/// The key of the license issued among `appended`, derived again from its
/// event: the key itself is never stored.
fn issued_key(state: &AppState, appended: &Appended) -> Result<String, ApiError> {
    Ok(appended.find(|e| match e {
        LedgerEvent::License(LicenseEvent::LicenseIssued(issued)) => {
            Some(license_key(&state.keys.license, issued.license_id, issued.nonce))
        }
        _ => None,
    })?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddonRequest {
    kind: String,
    quantity: u32,
    annual_price: Option<Decimal>,
    one_time_price: Option<Decimal>,
    #[serde(default, deserialize_with = "crate::extract::optional_date")]
    effective_date: Option<NaiveDate>,
}

impl AddonRequest {
    fn names_a_price(&self) -> bool {
        self.annual_price.is_some() || self.one_time_price.is_some()
    }

    fn command(
        &self,
        default_date: NaiveDate,
        today: NaiveDate,
        pricing: Pricing,
    ) -> Result<SubscriptionCommand, ApiError> {
        let kind = AddonKind::parse(&self.kind).ok_or_else(|| {
            ApiError::Validation(format!(
                "unknown add-on kind {:?}: extra_data_tb, custom_module, training_session or dedicated_support",
                self.kind
            ))
        })?;
        Ok(SubscriptionCommand::AddAddon {
            addon_id: AddonId(new_id()),
            kind,
            quantity: self.quantity,
            annual_price: self.annual_price,
            one_time_price: self.one_time_price,
            effective_date: self.effective_date.unwrap_or(default_date),
            today,
            pricing,
        })
    }
}

/// Who decides prices for this caller: the operator, or (an organization's
/// admin) the catalog.
fn pricing(caller: &Caller) -> Pricing {
    match caller {
        Caller::Operator => Pricing::Operator,
        _ => Pricing::Catalog,
    }
}

/// A price in a request of anyone but the operator is refused, never
/// ignored: customers buy at catalog prices (BILLING-RULES, "Who sets
/// prices, and bounds"). Checked before anything is looked up, so the
/// answer does not depend on the state.
fn prices_are_the_operators<'a>(
    caller: &Caller,
    addons: impl IntoIterator<Item = &'a AddonRequest>,
) -> Result<(), ApiError> {
    let priced = addons.into_iter().any(AddonRequest::names_a_price);
    if priced && pricing(caller) != Pricing::Operator { Err(ApiError::Forbidden) } else { Ok(()) }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upgrade {
    target_tier: String,
    #[serde(default)]
    addons: Vec<AddonRequest>,
    #[serde(default, deserialize_with = "crate::extract::optional_date")]
    effective_date: Option<NaiveDate>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/upgrade",
    tag = "ledger",
    request_body = Upgrade,
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Upgrade the live subscription (the seed's UpgradeRequest/UpgradeResponse) plus sequence. Add-ons in the body follow the add-on route's rules on prices."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden: a price, or an add-on without a catalog price, from anyone but the operator"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn upgrade(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<Upgrade>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    let body = &request.body;
    prices_are_the_operators(&request.caller, &body.addons)?;
    let target_tier = parse_tier(&body.target_tier)?;
    let pricing = pricing(&request.caller);
    let appended = execute(&state, &request.context, || async {
        let (now, today) = (state.now(), state.today());
        let subscription_id = live_subscription(&state, organization_id).await?;
        let new_license_id = LicenseId(new_id());
        let mut subscription = load::<Subscription>(&state, subscription_id.stream()).await?;
        let old_license_id = subscription.state.license_id.ok_or(ApiError::NotFound)?;
        let upgrade =
            SubscriptionCommand::Upgrade { target_tier, effective_date: body.effective_date, new_license_id, today };
        subscription.decide(upgrade, &state.subscription_services).await?;
        let effective_date = subscription.state.latest_tier().map(|t| t.from).unwrap_or(today);
        for addon in &body.addons {
            let command = addon.command(effective_date, today, pricing)?;
            subscription.decide(command, &state.subscription_services).await?;
        }
        let mut old_license = load::<License>(&state, old_license_id.stream()).await?;
        let supersede = LicenseCommand::Supersede { by: new_license_id, effective_date };
        old_license.decide(supersede, &()).await?;
        let new_license = issue_license(&state, new_license_id, subscription_id, organization_id, now).await?;
        Ok(vec![
            subscription.into_command(&request.context, now),
            old_license.into_command(&request.context, now),
            new_license.into_command(&request.context, now),
        ])
    })
    .await?;
    let upgraded = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::SubscriptionUpgraded(u)) => Some(u.clone()),
        _ => None,
    })?;
    // An upgrade keeps the subscription: the seed's `newSubscriptionId` is it.
    Ok(ok(json!({
        "success": true,
        "newSubscriptionId": subscription_of(&appended)?,
        "proratedAmount": money(upgraded.prorated_amount.amount()),
        "effectiveDate": upgraded.effective_date,
        "newLicenseKey": issued_key(&state, &appended)?,
        "sequence": appended.sequence,
    })))
}

/// The subscription whose stream an answer's events were appended to.
fn subscription_of(appended: &Appended) -> Result<Uuid, ApiError> {
    appended
        .records
        .iter()
        .find(|(record, _)| record.header.stream_id.category() == "subscription")
        .and_then(|(record, _)| record.header.stream_id.as_str().split_once('/').and_then(|(_, id)| id.parse().ok()))
        .ok_or_else(|| ApiError::Internal("no subscription event".into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Downgrade {
    target_tier: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/downgrade",
    tag = "ledger",
    request_body = Downgrade,
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Schedule a downgrade at the term end. Answers {effectiveDate, sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn downgrade(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<Downgrade>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    let target_tier = parse_tier(&request.body.target_tier)?;
    let command = |today| Ok(SubscriptionCommand::ScheduleDowngrade { target_tier, today });
    let appended = on_live_subscription(&state, &request, organization_id, command).await?;
    let effective = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::DowngradeScheduled(d)) => Some(d.effective_date),
        _ => None,
    })?;
    Ok(ok(json!({ "effectiveDate": effective, "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cancel {
    immediate: Option<bool>,
    #[serde(default, deserialize_with = "crate::extract::optional_date")]
    effective_date: Option<NaiveDate>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/cancel",
    tag = "ledger",
    request_body = Cancel,
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Cancel at term end (auto-renewal off), or immediately (operator). Answers {effectiveDate, sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<Cancel>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    let immediate = request.body.immediate.unwrap_or(false);
    if immediate {
        // An immediate cancellation is the vendor's decision.
        request.caller.require_org(organization_id, Need::Admin)?;
        request.caller.require_operator()?;
    } else {
        request.caller.require_org(organization_id, Need::Admin)?;
        if request.body.effective_date.is_some() {
            return Err(ApiError::Validation("effectiveDate applies to an immediate cancellation only".into()));
        }
    }
    let appended = execute(&state, &request.context, || async {
        let today = state.today();
        let subscription_id = live_subscription(&state, organization_id).await?;
        let mut subscription = load::<Subscription>(&state, subscription_id.stream()).await?;
        let command = SubscriptionCommand::Cancel { immediate, effective_date: request.body.effective_date, today };
        subscription.decide(command, &state.subscription_services).await?;
        let mut commands = Vec::new();
        // A cancellation in effect already ends the organization's live
        // subscription now; a later one is ended by the scheduler on its day.
        let ends_now = subscription.state.cancelled_from.is_some_and(|from| from <= today);
        if ends_now {
            let mut org = load::<Organization>(&state, organization_id.stream()).await?;
            org.decide(OrganizationCommand::EndSubscription { subscription_id }, &()).await?;
            commands.push(org.into_command(&request.context, state.now()));
        }
        commands.insert(0, subscription.into_command(&request.context, state.now()));
        Ok(commands)
    })
    .await?;
    let effective = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::SubscriptionCancelled(c)) => Some(c.effective_date),
        LedgerEvent::Subscription(SubscriptionEvent::AutoRenewalCancelled(c)) => Some(c.effective_date),
        _ => None,
    })?;
    Ok(ok(json!({ "effectiveDate": effective, "sequence": appended.sequence })))
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/addons",
    tag = "ledger",
    request_body = AddonRequest,
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 201, description = "Buy an add-on. Answers {addonId, sequence}. An organization's admin buys at the catalog price: annualPrice and oneTimePrice are the operator's (at most 10000000.00, in cents), and add-ons without a catalog price for the tier (custom_module, dedicated_support, training_session; extra_data_tb on enterprise) are the operator's to add."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden: a price, or an add-on without a catalog price, from anyone but the operator"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn add_addon(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<AddonRequest>,
) -> Result<Response, ApiError> {
    let organization_id = OrganizationId(org_id);
    request.caller.require_org(organization_id, Need::Admin)?;
    prices_are_the_operators(&request.caller, [&request.body])?;
    if request.body.effective_date.is_none() {
        return Err(ApiError::Validation("effectiveDate is required".into()));
    }
    let pricing = pricing(&request.caller);
    let command = |today| request.body.command(today, today, pricing);
    let appended = on_live_subscription(&state, &request, organization_id, command).await?;
    let addon_id = appended.find(|e| match e {
        LedgerEvent::Subscription(SubscriptionEvent::AddonAdded(a)) => Some(a.addon_id),
        _ => None,
    })?;
    Ok(created(json!({ "addonId": addon_id, "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeLicense {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/licenses/{license_id}/revoke",
    tag = "ledger",
    request_body = RevokeLicense,
    params(
        ("license_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Revoke a license key (operator). Answers {sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "a refused command, with its code"),
    ),
)]
pub async fn revoke_license(
    State(state): State<AppState>,
    Path(license_id): Path<Uuid>,
    request: CommandRequest<RevokeLicense>,
) -> Result<Response, ApiError> {
    request.caller.require_operator()?;
    let license_id = LicenseId(license_id);
    let appended = execute(&state, &request.context, || async {
        let mut license = load::<License>(&state, license_id.stream()).await?;
        license.decide(LicenseCommand::Revoke { reason: request.body.reason.clone() }, &()).await?;
        Ok(vec![license.into_command(&request.context, state.now())])
    })
    .await?;
    Ok(ok(json!({ "sequence": appended.sequence })))
}

/// The subscription of an organization (any of its subscriptions, ended
/// ones too) that holds an add-on, and the last month it has an invoice for.
async fn subscription_with_addon(
    state: &AppState,
    organization_id: OrganizationId,
    addon_id: AddonId,
) -> Result<(SubscriptionId, Option<NaiveDate>), ApiError> {
    let ledger = state.projections.read().await;
    let entry = ledger.organizations.get(&organization_id).ok_or(ApiError::NotFound)?;
    let id = entry
        .subscriptions
        .iter()
        .find(|id| ledger.subscriptions.get(id).is_some_and(|s| s.addons.iter().any(|a| a.addon_id == addon_id)))
        .copied()
        .ok_or(ApiError::NotFound)?;
    let invoiced_through = ledger.invoices.get(&id).and_then(|by_month| by_month.keys().next_back().copied());
    Ok((id, invoiced_through))
}

/// Decides an operator's correction of an add-on and appends it.
async fn correct_addon<T>(
    state: &AppState,
    request: &CommandRequest<T>,
    organization_id: OrganizationId,
    addon_id: AddonId,
    command: impl Fn(Option<NaiveDate>) -> SubscriptionCommand,
) -> Result<Response, ApiError> {
    // The path names the organization: another organization's admin is
    // answered as if it did not exist, this one's members lack the role.
    request.caller.require_org(organization_id, Need::Admin)?;
    request.caller.require_operator()?;
    let appended = execute(state, &request.context, || async {
        let (subscription_id, invoiced_through) = subscription_with_addon(state, organization_id, addon_id).await?;
        let mut subscription = load::<Subscription>(state, subscription_id.stream()).await?;
        subscription.decide(command(invoiced_through), &state.subscription_services).await?;
        Ok(vec![subscription.into_command(&request.context, state.now())])
    })
    .await?;
    Ok(ok(json!({ "sequence": appended.sequence })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndAddon {
    /// From this day on (inclusive) the add-on is not billed.
    #[serde(deserialize_with = "crate::extract::date")]
    #[schema(value_type = String)]
    effective_date: NaiveDate,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/addons/{addon_id}/end",
    tag = "ledger",
    request_body = EndAddon,
    params(
        ("org_id" = String, Path, description = "UUID"),
        ("addon_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "End an add-on (operator): it is not billed from effectiveDate on (a one-time add-on ended on its own date is not billed at all), and extra data stops raising the limit. The date lies after the subscription's last invoiced month and on or after the add-on's start; moving an end earlier is allowed. Answers {sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
        (status = 409, description = "effective_date_invoiced, effective_date_out_of_range, addon_already_ended"),
    ),
)]
pub async fn end_addon(
    State(state): State<AppState>,
    Path((org_id, addon_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<EndAddon>,
) -> Result<Response, ApiError> {
    let (addon_id, effective_date) = (AddonId(addon_id), request.body.effective_date);
    let command = |invoiced_through| SubscriptionCommand::EndAddon { addon_id, effective_date, invoiced_through };
    correct_addon(&state, &request, OrganizationId(org_id), addon_id, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepriceAddon {
    /// Per unit per year, for a recurring add-on.
    annual_price: Option<Decimal>,
    /// Per unit, for a one-time add-on.
    one_time_price: Option<Decimal>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/addons/{addon_id}/reprice",
    tag = "ledger",
    request_body = RepriceAddon,
    params(
        ("org_id" = String, Path, description = "UUID"),
        ("addon_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Correct an add-on's price (operator): annualPrice for a recurring add-on, oneTimePrice for a one-time one, positive, in cents, at most 10000000.00. It applies to every month not invoiced yet, so an invoice that could not be computed is issued by the next run of its month. Answers {sequence}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
        (status = 400, description = "validation_failed"),
    ),
)]
pub async fn reprice_addon(
    State(state): State<AppState>,
    Path((org_id, addon_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<RepriceAddon>,
) -> Result<Response, ApiError> {
    let addon_id = AddonId(addon_id);
    let (annual_price, one_time_price) = (request.body.annual_price, request.body.one_time_price);
    let command = |_| SubscriptionCommand::RepriceAddon { addon_id, annual_price, one_time_price };
    correct_addon(&state, &request, OrganizationId(org_id), addon_id, command).await
}

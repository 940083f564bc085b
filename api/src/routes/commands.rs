//! Command routes (API.md, "Commands"): organizations, users, tokens,
//! subscriptions, add-ons, license revocation.
//!
//! Each handler extracts the request (caller, context, path, JSON body),
//! turns the body into the use case's typed input and answers the use
//! case's typed response; the rules, the role checks included, are the use
//! cases' (`usecases::organizations`, `subscriptions`, `licenses`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use domain::{AddonId, LicenseId, OrganizationId, TokenId, UserId};
use rust_decimal::Decimal;
use serde::Deserialize;
use usecases::organizations::{self, AddUserInput, CreateOrganizationInput, IssueTokenInput, parse_role};
use usecases::subscriptions::{
    self, AddonInput, CancelInput, ChangeInput, CreateSubscriptionInput, UpgradeInput, parse_addon_kind, parse_tier,
};
use usecases::views::SequenceResponse;
use usecases::views::organizations::{AddUserResponse, CreateOrganizationResponse, IssueTokenResponse};
use usecases::views::subscriptions::{
    AddAddonResponse, CancelResponse, ChangePreview, CreateSubscriptionResponse, DowngradeResponse, UpgradeResponse,
};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, OneOf, Schema, Type};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::CommandRequest;
use crate::openapi::{Problem, ProblemResponses};

type Answer<T> = Result<(StatusCode, Json<T>), ApiError>;

fn created<T>(body: T) -> Answer<T> {
    Ok((StatusCode::CREATED, Json(body)))
}

fn ok<T>(body: T) -> Answer<T> {
    Ok((StatusCode::OK, Json(body)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrganization {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    domain: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    industry: Option<String>,
    #[schema(minimum = 1)]
    employee_count: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations",
    tag = "ledger",
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "Create an organization (operator).", body = CreateOrganizationResponse),
        ProblemResponses,
    ),
)]
pub async fn create_organization(
    State(state): State<AppState>,
    request: CommandRequest<CreateOrganization>,
) -> Answer<CreateOrganizationResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = CreateOrganizationInput {
        name: body.name,
        domain: body.domain,
        industry: body.industry,
        employee_count: body.employee_count,
    };
    created(organizations::create_organization(&state, &caller, &context, input).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddUser {
    #[schema(
        max_length = 255,
        pattern = r"^\s*[^\s@\u0000-\u001f\u007f-\u009f]+@[^\s@.\u0000-\u001f\u007f-\u009f][^\s@\u0000-\u001f\u007f-\u009f]*\.[^\s@\u0000-\u001f\u007f-\u009f]*[^\s@.\u0000-\u001f\u007f-\u009f]\s*$"
    )]
    email: String,
    #[schema(pattern = "^(admin|analyst|viewer)$")]
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/users",
    tag = "ledger",
    request_body = AddUser,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 201, description = "Add a user; 409 seat_limit_reached when seats are full.", body = AddUserResponse),
        ProblemResponses,
    ),
)]
pub async fn add_user(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<AddUser>,
) -> Answer<AddUserResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = AddUserInput { email: body.email, role: parse_role(&body.role)? };
    created(organizations::add_user(&state, &caller, &context, OrganizationId(org_id), input).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeRole {
    #[schema(pattern = "^(admin|analyst|viewer)$")]
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/users/{user_id}/role",
    tag = "ledger",
    request_body = ChangeRole,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("user_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Change an active user's role (the organization's admin or the operator); 409 last_admin when it would leave no active admin, 409 conflict for a deactivated user or the same role.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn change_role(
    State(state): State<AppState>,
    Path((org_id, user_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<ChangeRole>,
) -> Answer<SequenceResponse> {
    let CommandRequest { caller, context, body } = request;
    let (organization_id, user_id, role) = (OrganizationId(org_id), UserId(user_id), parse_role(&body.role)?);
    ok(organizations::change_role(&state, &caller, &context, organization_id, user_id, role).await?)
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/users/{user_id}/deactivate",
    tag = "ledger",
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("user_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Deactivate a user, freeing a seat.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn deactivate_user(
    State(state): State<AppState>,
    Path((org_id, user_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<NoBody>,
) -> Answer<SequenceResponse> {
    let (organization_id, user_id) = (OrganizationId(org_id), UserId(user_id));
    ok(organizations::deactivate_user(&state, &request.caller, &request.context, organization_id, user_id).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssueToken {
    #[schema(pattern = "^(admin|analyst|viewer)$")]
    role: String,
    /// RFC 3339; the token is refused from then on (by the system clock).
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$")]
    expires_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/tokens",
    tag = "ledger",
    request_body = IssueToken,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 201, description = "Issue an org API token for a role, optionally expiring (expiresAt, RFC 3339, at most 366 days ahead; 401 from then on). The token is shown again only to a retry with the same Idempotency-Key.", body = IssueTokenResponse),
        ProblemResponses,
    ),
)]
pub async fn issue_token(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<IssueToken>,
) -> Answer<IssueTokenResponse> {
    let CommandRequest { caller, context, body } = request;
    let role = parse_role(&body.role)?;
    let expires_at = body.expires_at.as_deref().map(domain::Timestamp::parse_rfc3339).transpose();
    let expires_at = expires_at.map_err(|e| ApiError::Validation(format!("expiresAt: {e}")))?;
    let input = IssueTokenInput { role, expires_at };
    created(organizations::issue_token(&state, &caller, &context, OrganizationId(org_id), input).await?)
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/tokens/{token_id}/revoke",
    tag = "ledger",
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("token_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Revoke an org API token.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path((org_id, token_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<NoBody>,
) -> Answer<SequenceResponse> {
    let (organization_id, token_id) = (OrganizationId(org_id), TokenId(token_id));
    ok(organizations::revoke_token(&state, &request.caller, &request.context, organization_id, token_id).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSubscription {
    organization_id: Uuid,
    #[schema(value_type = String, pattern = "^(starter|professional|enterprise)$")]
    tier: String,
    #[serde(deserialize_with = "crate::extract::date")]
    start_date: NaiveDate,
    auto_renew: Option<bool>,
    #[schema(minimum = 1, maximum = 1000)]
    max_deployments: Option<u32>,
    #[schema(pattern = r"^[0-9]{1,7}(\.[0-9]{1,2})?$")]
    enterprise_overage_rate: Option<Decimal>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions",
    tag = "ledger",
    request_body = CreateSubscription,
    responses(
        (status = 201, description = "Create a subscription and issue its license key (operator).", body = CreateSubscriptionResponse),
        ProblemResponses,
    ),
)]
pub async fn create_subscription(
    State(state): State<AppState>,
    request: CommandRequest<CreateSubscription>,
) -> Answer<CreateSubscriptionResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = CreateSubscriptionInput {
        organization_id: OrganizationId(body.organization_id),
        tier: parse_tier(&body.tier)?,
        start_date: body.start_date,
        auto_renew: body.auto_renew.unwrap_or(true),
        max_deployments: body.max_deployments.unwrap_or(1),
        enterprise_overage_rate: body.enterprise_overage_rate,
    };
    created(subscriptions::create_subscription(&state, &caller, &context, input).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddonRequest {
    #[schema(pattern = "^(extra_data_tb|custom_module|training_session|dedicated_support)$")]
    kind: String,
    #[schema(minimum = 1, maximum = 1000)]
    quantity: u32,
    #[schema(pattern = r"^[1-9][0-9]{0,6}(\.[0-9]{1,2})?$")]
    annual_price: Option<Decimal>,
    #[schema(pattern = r"^[1-9][0-9]{0,6}(\.[0-9]{1,2})?$")]
    one_time_price: Option<Decimal>,
    #[serde(default, deserialize_with = "crate::extract::optional_date")]
    effective_date: Option<NaiveDate>,
}

impl AddonRequest {
    fn input(self) -> Result<AddonInput, ApiError> {
        Ok(AddonInput {
            kind: parse_addon_kind(&self.kind)?,
            quantity: self.quantity,
            annual_price: self.annual_price,
            one_time_price: self.one_time_price,
            effective_date: self.effective_date,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upgrade {
    #[schema(value_type = String, pattern = "^(starter|professional|enterprise)$")]
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
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Upgrade the live subscription (the seed's UpgradeRequest/UpgradeResponse) plus sequence. Add-ons in the body follow the add-on route's rules on prices.", body = UpgradeResponse),
        ProblemResponses,
        (status = 403, body = Problem, content_type = "application/problem+json", description = "forbidden: a price, or an add-on without a catalog price, from anyone but the operator"),
    ),
)]
pub async fn upgrade(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<Upgrade>,
) -> Answer<UpgradeResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = UpgradeInput {
        target_tier: parse_tier(&body.target_tier)?,
        effective_date: body.effective_date,
        addons: body.addons.into_iter().map(AddonRequest::input).collect::<Result<_, _>>()?,
    };
    ok(subscriptions::upgrade(&state, &caller, &context, OrganizationId(org_id), input).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Downgrade {
    #[schema(value_type = String, pattern = "^(starter|professional|enterprise)$")]
    target_tier: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/downgrade",
    tag = "ledger",
    request_body = Downgrade,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Schedule a downgrade at the term end.", body = DowngradeResponse),
        ProblemResponses,
    ),
)]
pub async fn downgrade(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<Downgrade>,
) -> Answer<DowngradeResponse> {
    let CommandRequest { caller, context, body } = request;
    let target_tier = parse_tier(&body.target_tier)?;
    ok(subscriptions::downgrade(&state, &caller, &context, OrganizationId(org_id), target_tier).await?)
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
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Cancel at term end (auto-renewal off), or immediately (operator).", body = CancelResponse),
        ProblemResponses,
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<Cancel>,
) -> Answer<CancelResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = CancelInput { immediate: body.immediate.unwrap_or(false), effective_date: body.effective_date };
    ok(subscriptions::cancel(&state, &caller, &context, OrganizationId(org_id), input).await?)
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/addons",
    tag = "ledger",
    request_body = AddonRequest,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 201, description = "Buy an add-on. An organization's admin buys at the catalog price: annualPrice and oneTimePrice are the operator's (at most 10000000.00, in cents), and add-ons without a catalog price for the tier (custom_module, dedicated_support, training_session; extra_data_tb on enterprise) are the operator's to add.", body = AddAddonResponse),
        ProblemResponses,
        (status = 403, body = Problem, content_type = "application/problem+json", description = "forbidden: a price, or an add-on without a catalog price, from anyone but the operator"),
    ),
)]
pub async fn add_addon(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<AddonRequest>,
) -> Answer<AddAddonResponse> {
    let CommandRequest { caller, context, body } = request;
    let input = body.input()?;
    created(subscriptions::add_addon(&state, &caller, &context, OrganizationId(org_id), input).await?)
}

/// A change of plan to preview: the body of its command, with `change`
/// naming which.
#[derive(Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ChangeRequest {
    Upgrade(Upgrade),
    Downgrade(Downgrade),
    Cancel(Cancel),
    Addon(AddonRequest),
}

/// Written by hand: the derived schema is an `allOf` of the command's body
/// (which allows no other property) and `change`, which no object
/// satisfies. Here each branch is the command's body with `change` added.
impl utoipa::PartialSchema for ChangeRequest {
    fn schema() -> RefOr<Schema> {
        let branches = [
            ("upgrade", Upgrade::schema()),
            ("downgrade", Downgrade::schema()),
            ("cancel", Cancel::schema()),
            ("addon", AddonRequest::schema()),
        ];
        let mut one_of = OneOf::builder()
            .description(Some("A change of plan to preview: the body of its command, with `change` naming which."));
        for (change, body) in branches {
            one_of = one_of.item(with_change(change, body));
        }
        one_of.into()
    }
}

impl utoipa::ToSchema for ChangeRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <Upgrade as utoipa::ToSchema>::schemas(schemas);
        schemas.push(("AddonRequest".to_owned(), <AddonRequest as utoipa::PartialSchema>::schema()));
    }
}

/// A command body's object schema with the required `change` tag added.
fn with_change(change: &str, body: RefOr<Schema>) -> RefOr<Schema> {
    let RefOr::T(Schema::Object(mut object)) = body else { return body };
    let tag = Object::builder().schema_type(Type::String).enum_values(Some([change])).build();
    object.properties.insert("change".to_owned(), tag.into());
    object.required.push("change".to_owned());
    RefOr::T(Schema::Object(object))
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/changes/preview",
    tag = "ledger",
    request_body = ChangeRequest,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Preview a change of plan (upgrade, downgrade at term end, cancel, add-on): the day it takes effect, an upgrade's prorated amount, the limits and the month's invoice without and with it. Decided by the same rules and role checks as its command (org admin or operator), and appends nothing; confirm with the change's own route.", body = ChangePreview),
        ProblemResponses,
        (status = 403, body = Problem, content_type = "application/problem+json", description = "forbidden: a price, or an add-on without a catalog price, from anyone but the operator"),
    ),
)]
pub async fn preview_change(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<ChangeRequest>,
) -> Answer<ChangePreview> {
    let CommandRequest { caller, body, .. } = request;
    let change = match body {
        ChangeRequest::Upgrade(body) => ChangeInput::Upgrade(UpgradeInput {
            target_tier: parse_tier(&body.target_tier)?,
            effective_date: body.effective_date,
            addons: body.addons.into_iter().map(AddonRequest::input).collect::<Result<_, _>>()?,
        }),
        ChangeRequest::Downgrade(body) => ChangeInput::Downgrade { target_tier: parse_tier(&body.target_tier)? },
        ChangeRequest::Cancel(body) => ChangeInput::Cancel(CancelInput {
            immediate: body.immediate.unwrap_or(false),
            effective_date: body.effective_date,
        }),
        ChangeRequest::Addon(body) => ChangeInput::Addon(body.input()?),
    };
    ok(subscriptions::preview(&state, &caller, OrganizationId(org_id), change).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeLicense {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/licenses/{license_id}/revoke",
    tag = "ledger",
    request_body = RevokeLicense,
    params(
        ("license_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Revoke a license key (operator).", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn revoke_license(
    State(state): State<AppState>,
    Path(license_id): Path<Uuid>,
    request: CommandRequest<RevokeLicense>,
) -> Answer<SequenceResponse> {
    let CommandRequest { caller, context, body } = request;
    let license_id = LicenseId(license_id);
    ok(usecases::licenses::revoke_license(&state, &caller, &context, license_id, body.reason).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndAddon {
    /// From this day on (inclusive) the add-on is not billed.
    #[serde(deserialize_with = "crate::extract::date")]
    #[schema(value_type = String, format = Date)]
    effective_date: NaiveDate,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/addons/{addon_id}/end",
    tag = "ledger",
    request_body = EndAddon,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("addon_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "End an add-on (operator): it is not billed from effectiveDate on (a one-time add-on ended on its own date is not billed at all), and extra data stops raising the limit. The date lies after the subscription's last invoiced month and on or after the add-on's start; moving an end earlier is allowed.", body = SequenceResponse),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "effective_date_invoiced, effective_date_out_of_range, addon_already_ended"),
    ),
)]
pub async fn end_addon(
    State(state): State<AppState>,
    Path((org_id, addon_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<EndAddon>,
) -> Answer<SequenceResponse> {
    let CommandRequest { caller, context, body } = request;
    let (organization_id, addon_id) = (OrganizationId(org_id), AddonId(addon_id));
    let answer =
        subscriptions::end_addon(&state, &caller, &context, organization_id, addon_id, body.effective_date).await?;
    ok(answer)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepriceAddon {
    /// Per unit per year, for a recurring add-on.
    #[schema(pattern = r"^[1-9][0-9]{0,6}(\.[0-9]{1,2})?$")]
    annual_price: Option<Decimal>,
    /// Per unit, for a one-time add-on.
    #[schema(pattern = r"^[1-9][0-9]{0,6}(\.[0-9]{1,2})?$")]
    one_time_price: Option<Decimal>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/addons/{addon_id}/reprice",
    tag = "ledger",
    request_body = RepriceAddon,
    params(
        ("org_id" = Uuid, Path, description = "UUID"),
        ("addon_id" = Uuid, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "Correct an add-on's price (operator): annualPrice for a recurring add-on, oneTimePrice for a one-time one, positive, in cents, at most 10000000.00. It applies to every month not invoiced yet, so an invoice that could not be computed is issued by the next run of its month.", body = SequenceResponse),
        ProblemResponses,
    ),
)]
pub async fn reprice_addon(
    State(state): State<AppState>,
    Path((org_id, addon_id)): Path<(Uuid, Uuid)>,
    request: CommandRequest<RepriceAddon>,
) -> Answer<SequenceResponse> {
    let CommandRequest { caller, context, body } = request;
    let (organization_id, addon_id) = (OrganizationId(org_id), AddonId(addon_id));
    let (annual, one_time) = (body.annual_price, body.one_time_price);
    ok(subscriptions::reprice_addon(&state, &caller, &context, organization_id, addon_id, annual, one_time).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetFloating {
    /// How many of the subscription's `maxDeployments` may be floating (0: none).
    #[schema(minimum = 0, maximum = 1000)]
    floating_deployments: u32,
    /// Seconds between a floating deployment's heartbeats (600 when absent).
    #[schema(minimum = 60, maximum = 86400)]
    heartbeat_interval_seconds: Option<u32>,
    /// Seconds a floating deployment's place is held after a heartbeat: its
    /// lease (3600 when absent); at least two heartbeat intervals.
    #[schema(minimum = 120, maximum = 86400)]
    lease_seconds: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{org_id}/floating-deployments",
    tag = "ledger",
    request_body = SetFloating,
    params(("org_id" = Uuid, Path, description = "UUID")),
    responses(
        (status = 200, description = "Set how many of the live subscription's maxDeployments may be floating (operator): a floating deployment holds its place only while it sends heartbeats (validations with `floating: true`) and frees it when its lease ends.", body = SequenceResponse),
        ProblemResponses,
        (status = 409, body = Problem, content_type = "application/problem+json", description = "floating_unchanged: the subscription has these settings already; subscription_not_changeable"),
    ),
)]
pub async fn set_floating(
    State(state): State<AppState>,
    Path(org_id): Path<Uuid>,
    request: CommandRequest<SetFloating>,
) -> Answer<SequenceResponse> {
    use domain::floating::FloatingPolicy;
    let CommandRequest { caller, context, body } = request;
    let defaults = FloatingPolicy::default();
    let policy = FloatingPolicy {
        deployments: body.floating_deployments,
        heartbeat_interval_seconds: body.heartbeat_interval_seconds.unwrap_or(defaults.heartbeat_interval_seconds),
        lease_seconds: body.lease_seconds.unwrap_or(defaults.lease_seconds),
    };
    ok(subscriptions::set_floating(&state, &caller, &context, OrganizationId(org_id), policy).await?)
}

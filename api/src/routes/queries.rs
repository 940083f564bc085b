//! Query routes (API.md, "Queries"). They read the projections only.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::NaiveDate;
use domain::calendar::first_of_month;
use domain::catalog::TierSpec;
use domain::license::KeyState;
use domain::subscription::{Status, Subscription};
use domain::{LicenseId, OrganizationId, SubscriptionId};
use projections::LedgerState;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::extract::Consistency;

/// The most items a page holds.
pub const PAGE_ITEMS_MAX: usize = 200;
const PAGE_ITEMS_DEFAULT: usize = 50;

/// Unlimited limits are `-1` in JSON, as in the seed.
fn limit(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| v as i64)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    limit: Option<usize>,
    cursor: Option<String>,
    #[serde(rename = "minSequence")]
    _min_sequence: Option<u64>,
}

fn page_size(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(PAGE_ITEMS_DEFAULT),
        Some(n) if (1..=PAGE_ITEMS_MAX).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::Validation(format!("limit must be 1 to {PAGE_ITEMS_MAX}"))),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations",
    tag = "ledger",
    responses(
        (status = 200, description = "Organizations, paged (operator, auditor): {items, nextCursor}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn organizations(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    caller.require_vendor()?;
    let size = page_size(page.limit)?;
    let after = page
        .cursor
        .map(|c| c.parse::<Uuid>().map(OrganizationId).map_err(|_| ApiError::Validation("invalid cursor".into())))
        .transpose()?;
    let ledger = state.projections.read().await;
    let mut items: Vec<Value> = ledger
        .organizations
        .range((after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded), std::ops::Bound::Unbounded))
        .take(size + 1)
        .map(|(id, entry)| {
            json!({
                "id": id,
                "name": entry.created.name,
                "domain": entry.created.domain,
                "industry": entry.created.industry,
                "employeeCount": entry.created.employee_count,
                "createdAt": entry.created_at.to_rfc3339(),
            })
        })
        .collect();
    let next = (items.len() > size).then(|| items[size - 1]["id"].clone());
    items.truncate(size);
    Ok(Json(json!({ "items": items, "nextCursor": next, "sequence": ledger.sequence })))
}

/// The limits of a subscription on a day, as the seed's `SubscriptionLimits`.
pub fn limits_json(state: &AppState, subscription: &Subscription, today: NaiveDate) -> Option<Value> {
    let (spec, extra_gb) = effective_spec(state, subscription, today)?;
    Some(json!({
        "maxUsers": limit(spec.seats.map(u64::from)),
        "maxDataVolumeGB": spec.data_gb + extra_gb,
        "maxApiCalls": limit(spec.api_calls_per_month),
        "allowedFeatures": spec.features,
        "modelSize": spec.model_size,
    }))
}

/// The tier spec in effect on a day, and the extra data its add-ons buy.
pub fn effective_spec<'a>(
    state: &'a AppState,
    subscription: &Subscription,
    today: NaiveDate,
) -> Option<(&'a TierSpec, u64)> {
    subscription.spec_on(&state.catalog, today)
}

fn subscription_of(
    ledger: &LedgerState,
    organization_id: OrganizationId,
) -> Result<(SubscriptionId, &Subscription), ApiError> {
    ledger
        .live_subscription(organization_id)
        .or_else(|| ledger.latest_subscription(organization_id))
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{org_id}",
    tag = "ledger",
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "The seed's SubscriptionDetails of the organization's subscription."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn subscription(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = OrganizationId(org_id);
    caller.require_org(organization_id, Need::Read)?;
    let today = state.today();
    let ledger = state.projections.read().await;
    let entry = ledger.organizations.get(&organization_id).ok_or(ApiError::NotFound)?;
    let (id, subscription) = subscription_of(&ledger, organization_id)?;
    let period = subscription.tier_on(today).ok_or(ApiError::NotFound)?;
    let month = ledger.usage.get(&id).map(|usage| usage.month(today)).unwrap_or_default();
    let addons: Vec<Value> = subscription
        .addons
        .iter()
        .map(|a| {
            json!({
                "id": a.addon_id,
                "kind": a.kind.as_str(),
                "quantity": a.quantity,
                "annualPrice": a.annual_price.map(|m| format!("{:.2}", m.amount())),
                "oneTimePrice": a.one_time_price.map(|m| format!("{:.2}", m.amount())),
                "effectiveDate": a.effective_date,
            })
        })
        .collect();
    let next_billing = first_of_month(today).checked_add_months(chrono::Months::new(1));
    Ok(Json(json!({
        "id": id,
        "organizationId": organization_id,
        "tier": period.tier.as_str(),
        "status": subscription.status_on(today).as_str(),
        "startDate": subscription.start_date,
        "endDate": subscription.end_date,
        "autoRenew": subscription.auto_renew,
        "scheduledDowngrade": subscription.scheduled_downgrade.map(|t| t.as_str()),
        "cancelledFrom": subscription.cancelled_from,
        "catalogVersion": period.catalog_version,
        "maxDeployments": subscription.max_deployments,
        "limits": limits_json(&state, subscription, today),
        // Seats are the organization's active users; the rest is this
        // month's reported usage (invoices arrive with the billing run).
        "currentUsage": {
            "users": entry.state.active_users(),
            "dataVolumeGB": month.total.data_volume_gb.to_string(),
            "apiCalls": month.total.api_calls_count,
            "trainingHours": month.total.training_hours.to_string(),
        },
        "billing": {
            "nextBillingDate": next_billing,
            "amountDue": "0.00",
            "paymentMethod": "invoice",
        },
        "addons": addons,
        "sequence": ledger.sequence,
    })))
}

fn license_status(ledger: &LedgerState, license_id: LicenseId, state: &AppState) -> (&'static str, Option<String>) {
    let Some(license) = ledger.licenses.get(&license_id) else { return ("not_found", None) };
    let subscription = license.issued.as_ref().and_then(|issued| ledger.subscriptions.get(&issued.subscription_id));
    let today = state.today();
    let ended = subscription.map(|s| s.status_on(today)).filter(|status| status.is_ended());
    match (license.state_at(state.now()), ended) {
        (KeyState::Revoked, _) => ("revoked", None),
        (_, Some(Status::Expired | Status::Cancelled)) => ("expired", None),
        (KeyState::Superseded { until }, _) => ("superseded", Some(until.to_rfc3339())),
        (KeyState::Valid, _) => ("valid", None),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/licenses",
    tag = "ledger",
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "The organization's licenses: [{id, status, tier, issuedAt, expiresAt, deployments, releasedDeployments: [{deploymentId, slotFreesAt}]}], never a key."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn licenses(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = OrganizationId(org_id);
    caller.require_org(organization_id, Need::Read)?;
    let ledger = state.projections.read().await;
    let entry = ledger.organizations.get(&organization_id).ok_or(ApiError::NotFound)?;
    let today = state.today();
    let items: Vec<Value> = entry
        .licenses
        .iter()
        .filter_map(|id| {
            let license = ledger.licenses.get(id)?;
            let issued = license.issued.as_ref()?;
            let subscription = ledger.subscriptions.get(&issued.subscription_id)?;
            let (status, superseded_until) = license_status(&ledger, *id, &state);
            // A superseded key reports the limits in effect now, which are
            // the new key's; its own tier is the one it was issued for.
            let tier = subscription.tier_on(today).map(|t| t.tier.as_str());
            let expires = match &license.superseded {
                Some(s) => Some(s.window_ends_at.to_rfc3339()),
                None => subscription.end_date.map(|end| format!("{end}T00:00:00Z")),
            };
            Some(json!({
                "id": id,
                "status": status,
                "tier": tier,
                "issuedAt": issued.issued_at.to_rfc3339(),
                "expiresAt": expires,
                "supersededUntil": superseded_until,
                "revocationReason": license.revoked,
                "deployments": license.deployments,
                // Released, but their place is taken until their last lease ends.
                "releasedDeployments": license
                    .held_places(state.now())
                    .map(|(deployment, frees_at)| json!({ "deploymentId": deployment, "slotFreesAt": frees_at.to_rfc3339() }))
                    .collect::<Vec<_>>(),
                "validationCount": ledger.validations.get(id).map_or(0, |s| s.count),
                "lastValidatedAt": ledger.validations.get(id).and_then(|s| s.last_at).map(|t| t.to_rfc3339()),
            }))
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

#[derive(Deserialize)]
pub struct Check {
    action: String,
    feature: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/enforcement/{org_id}/check",
    tag = "ledger",
    params(
        ("org_id" = String, Path, description = "UUID"),
    ),
    responses(
        (status = 200, description = "The seed's validateUsage: ?action=ADD_USER|UPLOAD_DATA|API_CALL|ACCESS_FEATURE&feature= answers {allowed, reason?, limit?, current?}."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn enforcement(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Path(org_id): Path<Uuid>,
    Query(check): Query<Check>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = OrganizationId(org_id);
    caller.require_org(organization_id, Need::Read)?;
    let today = state.today();
    let ledger = state.projections.read().await;
    let entry = ledger.organizations.get(&organization_id).ok_or(ApiError::NotFound)?;
    let refuse = |reason: &str| Ok(Json(json!({ "allowed": false, "reason": reason })));
    let Some((subscription_id, subscription)) = ledger.live_subscription(organization_id) else {
        return refuse("no_subscription");
    };
    let usage = ledger.usage.get(&subscription_id).cloned().unwrap_or_default();
    let status = subscription.status_on(today);
    if matches!(status, Status::Suspended | Status::Cancelled | Status::Expired) {
        return refuse(status.as_str());
    }
    let (spec, extra_gb) = effective_spec(&state, subscription, today).ok_or(ApiError::NotFound)?;
    let against = |limit: Option<u64>, current: u64| {
        let allowed = limit.is_none_or(|limit| current < limit);
        Json(json!({
            "allowed": allowed,
            "reason": (!allowed).then_some("limit_reached"),
            "limit": limit.map_or(-1, |l| l as i64),
            "current": current,
        }))
    };
    match check.action.as_str() {
        "ADD_USER" => Ok(against(spec.seats.map(u64::from), u64::from(entry.state.active_users()))),
        // The latest reported data volume, and this month's API calls.
        "UPLOAD_DATA" => {
            // Compared exactly: 999.5 GB is under a 1,000 GB limit.
            let (limit, current) = (spec.data_gb + extra_gb, usage.latest_data_volume());
            let allowed = current < rust_decimal::Decimal::from(limit);
            Ok(Json(json!({
                "allowed": allowed,
                "reason": (!allowed).then_some("limit_reached"),
                "limit": limit,
                "current": rust_decimal::prelude::ToPrimitive::to_f64(&current),
            })))
        }
        "API_CALL" => Ok(against(spec.api_calls_per_month, usage.month(today).total.api_calls_count)),
        "ACCESS_FEATURE" => {
            let feature = check.feature.ok_or_else(|| ApiError::Validation("ACCESS_FEATURE needs feature=…".into()))?;
            let allowed = spec.features.contains(&feature);
            Ok(Json(json!({ "allowed": allowed, "reason": (!allowed).then_some("feature_not_in_tier") })))
        }
        other => Err(ApiError::Validation(format!(
            "unknown action {other:?}: ADD_USER, UPLOAD_DATA, API_CALL or ACCESS_FEATURE"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    organization_id: Option<Uuid>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "ledger",
    responses(
        (status = 200, description = "Audit entries, oldest first, paged: ?organizationId=&from=&to=&cursor=&limit=."),
        (status = 401, description = "unauthorized"),
        (status = 403, description = "forbidden"),
        (status = 404, description = "not_found"),
    ),
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    _consistency: Consistency,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let organization = query.organization_id.map(OrganizationId);
    match (caller, organization) {
        // All organizations' audit is the vendor's (API.md's roles table).
        (Caller::Member { .. }, None) => return Err(ApiError::Forbidden),
        (_, Some(id)) => caller.require_org(id, Need::Analyst)?,
        (_, None) => caller.require_vendor()?,
    }
    let time = |text: &Option<String>| {
        text.as_deref()
            .map(|t| domain::Timestamp::parse_rfc3339(t).map_err(|e| ApiError::Validation(e.to_string())))
            .transpose()
    };
    let (from, to) = (time(&query.from)?, time(&query.to)?);
    let size = page_size(query.limit)?;
    let after = query.cursor.unwrap_or(0);
    let ledger = state.projections.read().await;
    // Entries are in sequence order: start after the cursor.
    let start = ledger.audit.partition_point(|entry| entry.sequence <= after);
    let mut items: Vec<Value> = ledger.audit[start..]
        .iter()
        .filter(|e| organization.is_none_or(|id| e.organization_id == Some(id)))
        .filter(|e| from.is_none_or(|from| e.recorded_at >= from) && to.is_none_or(|to| e.recorded_at < to))
        .take(size + 1)
        .map(|e| {
            json!({
                "sequence": e.sequence,
                "recordedAt": e.recorded_at.to_rfc3339(),
                "occurredAt": e.occurred_at.to_rfc3339(),
                "streamId": e.stream_id,
                "eventType": e.event_type,
                "organizationId": e.organization_id,
                "actor": e.actor,
                "sourceIp": e.source_ip,
                "leafHash": e.leaf_hash.to_hex(),
            })
        })
        .collect();
    let next = (items.len() > size).then(|| items[size - 1]["sequence"].clone());
    items.truncate(size);
    Ok(Json(json!({ "items": items, "nextCursor": next })))
}

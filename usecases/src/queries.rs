//! The read queries (docs/API.md, "Queries"): organizations, subscription
//! details, licenses, the enforcement check, the audit. They read the read
//! models only.

use chrono::NaiveDate;
use domain::enforcement::{Action, Entitlement, decide};
use domain::license::{KeyState, License};
use domain::subscription::{Status, Subscription};
use domain::{LicenseId, OrganizationId, SubscriptionId, Timestamp};
use projections::LedgerState;

use crate::Ledger;
use crate::caller::{Caller, Need};
use crate::error::Error;
use crate::views::licensing::{LicenseView, ReleasedDeployment};
use crate::views::queries::{
    AuditEntryView, AuditPage, EnforcementView, OrganizationPage, OrganizationView, SubscriptionDetails,
};

/// The most items a page holds.
pub const PAGE_ITEMS_MAX: usize = 200;
/// The items a page holds when the caller does not say.
pub const PAGE_ITEMS_DEFAULT: usize = 50;

/// The size of a page: `requested`, 1 to [`PAGE_ITEMS_MAX`].
pub fn page_size(requested: Option<usize>) -> Result<usize, Error> {
    match requested {
        None => Ok(PAGE_ITEMS_DEFAULT),
        Some(n) if (1..=PAGE_ITEMS_MAX).contains(&n) => Ok(n),
        Some(_) => Err(Error::Validation(format!("limit must be 1 to {PAGE_ITEMS_MAX}"))),
    }
}

/// Organizations in id order (operator, auditor), after `cursor`.
pub async fn organizations(
    ledger: &Ledger,
    caller: &Caller,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<OrganizationPage, Error> {
    use std::ops::Bound;
    caller.require_vendor()?;
    let size = page_size(limit)?;
    let after = cursor
        .map(|c| c.parse().map(OrganizationId).map_err(|_| Error::Validation("invalid cursor".into())))
        .transpose()?;
    let state = ledger.projections.read().await;
    let mut items: Vec<OrganizationView> = state
        .organizations
        .range((after.map_or(Bound::Unbounded, Bound::Excluded), Bound::Unbounded))
        .take(size + 1)
        .map(|(id, entry)| OrganizationView::of(*id, entry))
        .collect();
    let next_cursor = (items.len() > size).then(|| items[size - 1].id);
    items.truncate(size);
    Ok(OrganizationPage { items, next_cursor, sequence: state.sequence })
}

/// The organization's live subscription, or its latest.
fn subscription_of(
    state: &LedgerState,
    organization_id: OrganizationId,
) -> Result<(SubscriptionId, &Subscription), Error> {
    state
        .live_subscription(organization_id)
        .or_else(|| state.latest_subscription(organization_id))
        .ok_or(Error::NotFound)
}

/// The seed's `SubscriptionDetails` of the organization's subscription, as
/// in effect today.
pub async fn subscription(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
) -> Result<SubscriptionDetails, Error> {
    caller.require_org(organization_id, Need::Read)?;
    let today = ledger.today();
    let state = ledger.projections.read().await;
    let (id, _) = subscription_of(&state, organization_id)?;
    SubscriptionDetails::on(&state, &ledger.catalog, organization_id, id, today).ok_or(Error::NotFound)
}

/// The organization's licenses (never their keys).
pub async fn licenses(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
) -> Result<Vec<LicenseView>, Error> {
    caller.require_org(organization_id, Need::Read)?;
    let (now, today) = (ledger.now(), ledger.today());
    let state = ledger.projections.read().await;
    let entry = state.organizations.get(&organization_id).ok_or(Error::NotFound)?;
    Ok(entry.licenses.iter().filter_map(|id| license_view(&state, *id, now, today)).collect())
}

fn license_view(state: &LedgerState, id: LicenseId, now: Timestamp, today: NaiveDate) -> Option<LicenseView> {
    let license = state.licenses.get(&id)?;
    let issued = license.issued.as_ref()?;
    let subscription = state.subscriptions.get(&issued.subscription_id)?;
    let (status, superseded_until) = license_status(license, subscription, now, today);
    let validations = state.validations.get(&id);
    Some(LicenseView {
        id,
        status,
        // A superseded key reports the limits in effect now, which are the
        // new key's.
        tier: subscription.tier_on(today).map(|t| t.tier.as_str()),
        issued_at: issued.issued_at,
        expires_at: match &license.superseded {
            Some(s) => Some(s.window_ends_at),
            None => subscription.end_date.map(domain::license::start_of_day),
        },
        superseded_until,
        revocation_reason: license.revoked.clone(),
        deployments: license.deployments.iter().cloned().collect(),
        released_deployments: license
            .held_places(now)
            .map(|(deployment, slot_frees_at)| ReleasedDeployment { deployment_id: deployment.into(), slot_frees_at })
            .collect(),
        validation_count: validations.map_or(0, |s| s.count),
        last_validated_at: validations.and_then(|s| s.last_at),
    })
}

/// A key's status as listed, and until when a superseded key runs.
fn license_status(
    license: &License,
    subscription: &Subscription,
    now: Timestamp,
    today: NaiveDate,
) -> (&'static str, Option<Timestamp>) {
    let ended = Some(subscription.status_on(today)).filter(|status| status.is_ended());
    match (license.state_at(now), ended) {
        (KeyState::Revoked, _) => ("revoked", None),
        (_, Some(Status::Expired | Status::Cancelled)) => ("expired", None),
        (KeyState::Superseded { until }, _) => ("superseded", Some(until)),
        (KeyState::Valid, _) => ("valid", None),
    }
}

/// What the enforcement check is asked: an action of the seed's
/// `validateUsage`, with the feature for `ACCESS_FEATURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked<'a> {
    AddUser,
    UploadData,
    ApiCall,
    AccessFeature(&'a str),
}

fn asked<'a>(action: &str, feature: Option<&'a str>) -> Result<Asked<'a>, Error> {
    match action {
        "ADD_USER" => Ok(Asked::AddUser),
        "UPLOAD_DATA" => Ok(Asked::UploadData),
        "API_CALL" => Ok(Asked::ApiCall),
        "ACCESS_FEATURE" => {
            feature.map(Asked::AccessFeature).ok_or_else(|| Error::Validation("ACCESS_FEATURE needs feature=…".into()))
        }
        other => Err(Error::Validation(format!(
            "unknown action {other:?}: ADD_USER, UPLOAD_DATA, API_CALL or ACCESS_FEATURE"
        ))),
    }
}

/// The seed's `validateUsage` for the organization's live subscription
/// today, by `domain::enforcement::decide` (the on-premises client's rules
/// too): the active users, the latest reported data volume and this month's
/// API calls against the limits in effect.
pub async fn enforcement(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
    action: &str,
    feature: Option<&str>,
) -> Result<EnforcementView, Error> {
    caller.require_org(organization_id, Need::Read)?;
    let asked = asked(action, feature)?;
    let today = ledger.today();
    let state = ledger.projections.read().await;
    let entry = state.organizations.get(&organization_id).ok_or(Error::NotFound)?;
    let live = state.live_subscription(organization_id);
    let usage = live.and_then(|(subscription_id, _)| state.usage.get(&subscription_id));
    let action = match asked {
        Asked::AddUser => Action::AddUser { active_users: u64::from(entry.state.active_users()) },
        Asked::UploadData => {
            Action::UploadData { data_volume_gb: usage.map(|u| u.latest_data_volume()).unwrap_or_default() }
        }
        Asked::ApiCall => {
            Action::ApiCall { calls_this_month: usage.map_or(0, |u| u.month(today).total.api_calls_count) }
        }
        Asked::AccessFeature(feature) => Action::AccessFeature(feature),
    };
    let entitlement = match live {
        Some((_, subscription)) => {
            let (spec, extra_data_gb) = subscription.spec_on(&ledger.catalog, today).ok_or(Error::NotFound)?;
            Some(Entitlement::of_tier(subscription.status_on(today), spec, extra_data_gb))
        }
        None => None,
    };
    Ok(decide(&action, entitlement.as_ref()).into())
}

/// Which audit entries are asked for, and the page.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One organization's (members: their own); all (vendor) when `None`.
    pub organization_id: Option<OrganizationId>,
    /// Recorded at or after, RFC 3339.
    pub from: Option<String>,
    /// Recorded before, RFC 3339.
    pub to: Option<String>,
    /// The sequence after which the page starts.
    pub cursor: Option<u64>,
    pub limit: Option<usize>,
}

/// Audit entries in log order, after the cursor: one organization's
/// (analysts and up, the vendor), or all (the vendor only).
pub async fn audit(ledger: &Ledger, caller: &Caller, filter: AuditFilter) -> Result<AuditPage, Error> {
    let organization = filter.organization_id;
    match (caller, organization) {
        // All organizations' audit is the vendor's (API.md's roles table).
        (Caller::Member { .. }, None) => return Err(Error::Forbidden),
        (_, Some(id)) => caller.require_org(id, Need::Analyst)?,
        (_, None) => caller.require_vendor()?,
    }
    let time = |text: &Option<String>| {
        text.as_deref().map(|t| Timestamp::parse_rfc3339(t).map_err(|e| Error::Validation(e.to_string()))).transpose()
    };
    let (from, to) = (time(&filter.from)?, time(&filter.to)?);
    let size = page_size(filter.limit)?;
    let after = filter.cursor.unwrap_or(0);
    let state = ledger.projections.read().await;
    // Entries are in sequence order: start after the cursor.
    let start = state.audit.partition_point(|entry| entry.sequence <= after);
    let mut items: Vec<AuditEntryView> = state.audit[start..]
        .iter()
        .filter(|e| organization.is_none_or(|id| e.organization_id == Some(id)))
        .filter(|e| from.is_none_or(|from| e.recorded_at >= from) && to.is_none_or(|to| e.recorded_at < to))
        .take(size + 1)
        .map(AuditEntryView::from)
        .collect();
    let next_cursor = (items.len() > size).then(|| items[size - 1].sequence);
    items.truncate(size);
    Ok(AuditPage { items, next_cursor })
}

//! The read queries (docs/API.md, "Queries"): organizations, subscription
//! details, licenses, the enforcement check, the audit. They read the read
//! models only.

use chrono::NaiveDate;
use domain::enforcement::{Action, Entitlement, decide};
use domain::license::{KeyState, License};
use domain::staff::StaffPermission;
use std::collections::BTreeMap;

use domain::subscription::{Status, Subscription};
use domain::{OrganizationId, SubscriptionId, Timestamp};
use projections::ValidationStats;
use projections::models::{audit as audit_model, licenses as license_model, organizations as organization_model};
use projections::models::{subscriptions as subscription_model, usage as usage_model, validations};

use crate::Ledger;
use crate::caller::{Caller, Need};
use crate::error::Error;
use crate::views::licensing::{BoundDeploymentKey, FloatingDeployment, LicenseView, ReleasedDeployment};
use crate::views::queries::{
    AuditEntryView, AuditPage, Dues, EnforcementView, OrganizationPage, OrganizationView, Read, SubscriptionDetails,
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
    caller.require(StaffPermission::ReadCustomers)?;
    let size = page_size(limit)?;
    let after = cursor
        .map(|c| c.parse().map(OrganizationId).map_err(|_| Error::Validation("invalid cursor".into())))
        .transpose()?;
    // Read before the rows: the rows include at least it.
    let sequence = ledger.models.applied();
    let (rows, next_cursor) = organization_model::page(&ledger.models.db, after, size).await?;
    let items = rows.iter().map(OrganizationView::of_row).collect();
    Ok(OrganizationPage { items, next_cursor, sequence })
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
    let (db, sequence) = (&ledger.models.db, ledger.models.applied());
    let organization = organization_model::organization(db, organization_id).await?.ok_or(Error::NotFound)?;
    let (id, subscription) = subscription_model::live_or_latest(db, organization_id).await?.ok_or(Error::NotFound)?;
    let usage = usage_model::month(db, id, today).await?;
    let due = projections::models::payments::due_of_subscription(db, id).await?;
    let method = projections::models::payments::method(db, organization_id).await?;
    let dues = Dues::of(due.iter(), method).map_err(|error| Error::Internal(format!("the amount due: {error}")))?;
    let read = Read { organization_id, active_users: organization.state.active_users(), sequence, dues };
    SubscriptionDetails::of(read, &ledger.catalog, id, &subscription, &usage, today).ok_or(Error::NotFound)
}

/// The organization's licenses (never their keys).
pub async fn licenses(
    ledger: &Ledger,
    caller: &Caller,
    organization_id: OrganizationId,
) -> Result<Vec<LicenseView>, Error> {
    caller.require_org(organization_id, Need::Read)?;
    let (now, today) = (ledger.now(), ledger.today());
    let db = &ledger.models.db;
    if !organization_model::exists(db, organization_id).await? {
        return Err(Error::NotFound);
    }
    // An organization's keys share few subscriptions: each is read once.
    let mut subscriptions = BTreeMap::<SubscriptionId, Option<Subscription>>::new();
    let mut views = Vec::new();
    for (id, license) in license_model::of_organization(db, organization_id).await? {
        let Some(issued) = license.issued.as_ref() else { continue };
        let subscription_id = issued.subscription_id;
        if let std::collections::btree_map::Entry::Vacant(slot) = subscriptions.entry(subscription_id) {
            slot.insert(subscription_model::subscription(db, subscription_id).await?);
        }
        let Some(Some(subscription)) = subscriptions.get(&subscription_id) else { continue };
        let stats = validations::stats(db, id).await?;
        let issued_at = issued.issued_at;
        views.push(license_view(id, &license, issued_at, subscription, stats.as_ref(), (now, today)));
    }
    Ok(views)
}

fn license_view(
    id: domain::LicenseId,
    license: &License,
    issued_at: Timestamp,
    subscription: &Subscription,
    validations: Option<&ValidationStats>,
    (now, today): (Timestamp, NaiveDate),
) -> LicenseView {
    let (status, superseded_until) = license_status(license, subscription, now, today);
    LicenseView {
        id,
        status,
        // A superseded key reports the limits in effect now, which are the
        // new key's.
        tier: subscription.tier_on(today).map(|t| t.tier.as_str()),
        issued_at,
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
        floating_deployments: license
            .floating
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(deployment, until)| FloatingDeployment { deployment_id: deployment.clone(), lease_ends_at: *until })
            .collect(),
        deployment_keys: license
            .deployment_keys
            .iter()
            .map(|(deployment_id, public_key)| BoundDeploymentKey {
                deployment_id: deployment_id.clone(),
                public_key: public_key.clone(),
            })
            .collect(),
        validation_count: validations.map_or(0, |s| s.count),
        last_validated_at: validations.and_then(|s| s.last_at),
    }
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
    let db = &ledger.models.db;
    let organization = organization_model::organization(db, organization_id).await?.ok_or(Error::NotFound)?;
    let live = subscription_model::live(db, organization_id).await?;
    let live_id = live.as_ref().map(|(id, _)| *id);
    let action = match asked {
        Asked::AddUser => Action::AddUser { active_users: u64::from(organization.state.active_users()) },
        Asked::UploadData => {
            let data_volume_gb = match live_id {
                Some(id) => usage_model::latest_day(db, id).await?.latest_data_volume(),
                None => Default::default(),
            };
            Action::UploadData { data_volume_gb }
        }
        Asked::ApiCall => {
            let calls_this_month = match live_id {
                Some(id) => usage_model::month(db, id, today).await?.month(today).total.api_calls_count,
                None => 0,
            };
            Action::ApiCall { calls_this_month }
        }
        Asked::AccessFeature(feature) => Action::AccessFeature(feature),
    };
    let entitlement = match &live {
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
        (Caller::Member { .. } | Caller::User { .. }, None) => return Err(Error::Forbidden),
        (_, Some(id)) => caller.require_org(id, Need::Analyst)?,
        (_, None) => caller.require(StaffPermission::Audit)?,
    }
    let time = |text: &Option<String>| {
        text.as_deref().map(|t| Timestamp::parse_rfc3339(t).map_err(|e| Error::Validation(e.to_string()))).transpose()
    };
    let (from, to) = (time(&filter.from)?, time(&filter.to)?);
    let size = page_size(filter.limit)?;
    let query = audit_model::AuditQuery {
        organization_id: organization,
        after: filter.cursor.unwrap_or(0),
        from,
        to,
        limit: size,
    };
    // By the organization index (or the sequence), a bounded window:
    // never the whole audit.
    let page = audit_model::page(&ledger.models.db, query).await?;
    Ok(AuditPage { items: page.items.iter().map(AuditEntryView::from).collect(), next_cursor: page.next_cursor })
}

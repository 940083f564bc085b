//! The signed-in pages, each scoped to the user's organization (another
//! organization's URL is "not found") and role (API.md's roles table,
//! through the use cases' `Caller::User`).

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use domain::organization::Role;
use domain::signin::{SessionRevoked, SignInEvent};
use domain::{LicenseId, Metadata, UserId};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use usecases::command::Context;
use usecases::queries::AuditFilter;
use usecases::views::queries::{AuditEntryView, SubscriptionDetails};

use crate::session::Signed;
use crate::{Portal, PortalError};

/// Audit entries on one page.
pub const AUDIT_PAGE_ITEMS: usize = 10;
/// Users listed on the users page, at most (the largest tier's seats fit).
pub const USERS_LISTED_MAX: usize = 200;

/// What the layout needs: the organization, the page, the sign-out form.
pub struct Nav {
    pub org: String,
    pub active: &'static str,
    pub csrf: String,
    pub email: String,
    pub role: &'static str,
    /// The organization's white-label branding, if it applies.
    pub brand: Option<crate::branding::Brand>,
}

impl Nav {
    pub(crate) fn of(signed: &Signed, active: &'static str) -> Self {
        Nav {
            org: signed.user.organization_id.to_string(),
            active,
            csrf: signed.csrf.clone(),
            email: signed.email.clone(),
            role: signed.user.role.as_str(),
            brand: signed.brand.clone(),
        }
    }
}

pub(crate) fn context(signed: &Signed) -> Context {
    let caller = signed.caller();
    Context {
        metadata: Metadata {
            actor: Some(caller.actor()),
            correlation_id: None,
            source_ip: Some(signed.address.clone()),
            user_agent: Some(signed.session.user_agent.clone()),
        },
        idempotency: None,
        credential: Some(caller.credential()),
    }
}

pub async fn home(signed: Result<Signed, PortalError>) -> Redirect {
    match signed {
        Ok(signed) => Redirect::to(&format!("/portal/orgs/{}", signed.user.organization_id)),
        Err(_) => Redirect::to("/portal/signin"),
    }
}

/// One metric against its limit.
pub struct Meter {
    pub name: &'static str,
    pub used: String,
    pub limit: String,
    /// `ok`, `warning` (80 % or more) or `over` (100 % or more).
    pub state: &'static str,
    pub percent: u32,
}

fn meter(name: &'static str, used: Decimal, limit: i64) -> Meter {
    let (state, percent, limit_text) = if limit < 0 {
        ("ok", 0, "unlimited".to_owned())
    } else {
        let percent = if limit == 0 {
            100
        } else {
            (used * Decimal::from(100) / Decimal::from(limit)).to_u32().unwrap_or(u32::MAX)
        };
        let state = match percent {
            100.. => "over",
            80..=99 => "warning",
            _ => "ok",
        };
        (state, percent, limit.to_string())
    };
    Meter { name, used: used.normalize().to_string(), limit: limit_text, state, percent }
}

fn meters(details: &SubscriptionDetails) -> Vec<Meter> {
    let Some(limits) = &details.limits else { return Vec::new() };
    let usage = &details.current_usage;
    vec![
        meter("Users", Decimal::from(usage.users), limits.max_users),
        meter("Data volume (GB)", usage.data_volume_gb.0, limits.max_data_volume_gb),
        meter("API calls", Decimal::from(usage.api_calls), limits.max_api_calls),
    ]
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    nav: Nav,
    details: Option<SubscriptionDetails>,
    meters: Vec<Meter>,
    /// Whether the billing details' button is shown (Stripe, an admin).
    billing: bool,
}

pub async fn overview(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<Response, PortalError> {
    let org = signed.organization(org)?;
    let details = match usecases::queries::subscription(&portal.ledger, &signed.caller(), org).await {
        Ok(details) => Some(details),
        Err(usecases::Error::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    let meters = details.as_ref().map(meters).unwrap_or_default();
    let billing = crate::billing::offered(&portal, &signed);
    let page = OverviewPage { nav: Nav::of(&signed, "overview"), details, meters, billing };
    if !billing {
        return Ok(page.into_response());
    }
    let csp = crate::billing::content_security_policy(&portal);
    Ok(([(axum::http::header::CONTENT_SECURITY_POLICY, csp)], page).into_response())
}

/// One day's bar of the usage chart (SVG coordinates).
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub height: u32,
    pub day: String,
    pub value: u64,
}

/// The chart's drawing height and one day's width, in SVG units.
const CHART_HEIGHT: u32 = 120;
const BAR_WIDTH: u32 = 12;

fn bars(points: &[(String, u64)]) -> Vec<Bar> {
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    points
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let height = u32::try_from(value.saturating_mul(u64::from(CHART_HEIGHT)) / max).unwrap_or(CHART_HEIGHT);
            Bar {
                x: u32::try_from(i).unwrap_or(0) * (BAR_WIDTH + 2),
                y: CHART_HEIGHT - height,
                height,
                day: label.clone(),
                value: *value,
            }
        })
        .collect()
}

fn chart_width(bars: &[Bar]) -> u32 {
    u32::try_from(bars.len()).unwrap_or(0).max(1) * (BAR_WIDTH + 2)
}

/// Months the usage page's second chart covers (this one included).
pub const CHART_MONTHS: u32 = 12;

/// The organization's API calls in each of the last [`CHART_MONTHS`]
/// months, oldest first: one read of a month's usage each.
async fn last_months(
    portal: &Portal,
    caller: &usecases::Caller,
    org: domain::OrganizationId,
) -> Result<Vec<(String, u64)>, PortalError> {
    let this_month = domain::calendar::first_of_month(portal.ledger.today());
    let mut points = Vec::with_capacity(CHART_MONTHS as usize);
    for back in (0..CHART_MONTHS).rev() {
        let Some(month) = this_month.checked_sub_months(chrono::Months::new(back)) else { continue };
        let period = month.format("%Y-%m").to_string();
        let view = usecases::usage::usage(&portal.ledger, caller, org, Some(&period)).await?;
        points.push((period, view.total.api_calls_count));
    }
    Ok(points)
}

#[derive(Template, WebTemplate)]
#[template(path = "usage.html")]
pub struct UsagePage {
    nav: Nav,
    period: String,
    meters: Vec<Meter>,
    bars: Vec<Bar>,
    chart_width: u32,
    month_bars: Vec<Bar>,
    months_width: u32,
}

async fn org_meters(
    portal: &Portal,
    caller: &usecases::Caller,
    org: domain::OrganizationId,
) -> Result<Vec<Meter>, PortalError> {
    match usecases::queries::subscription(&portal.ledger, caller, org).await {
        Ok(details) => Ok(meters(&details)),
        Err(usecases::Error::NotFound) => Ok(Vec::new()),
        Err(other) => Err(other.into()),
    }
}

pub async fn usage(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<UsagePage, PortalError> {
    let org = signed.organization(org)?;
    let caller = signed.caller();
    let view = usecases::usage::usage(&portal.ledger, &caller, org, None).await?;
    let meters = org_meters(&portal, &caller, org).await?;
    let days: Vec<_> = view.days.iter().map(|d| (d.day.to_string(), d.metrics.api_calls_count)).collect();
    let month_bars = bars(&last_months(&portal, &caller, org).await?);
    let bars = bars(&days);
    let (chart_width, months_width) = (chart_width(&bars), chart_width(&month_bars));
    Ok(UsagePage {
        nav: Nav::of(&signed, "usage"),
        period: view.period,
        meters,
        bars,
        chart_width,
        month_bars,
        months_width,
    })
}

/// The meters alone: what htmx swaps in when it refreshes them.
#[derive(Template, WebTemplate)]
#[template(path = "meters.html")]
pub struct MetersPartial {
    meters: Vec<Meter>,
}

pub async fn usage_meters(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<MetersPartial, PortalError> {
    let org = signed.organization(org)?;
    Ok(MetersPartial { meters: org_meters(&portal, &signed.caller(), org).await? })
}

/// A license as the page shows it: its key masked.
pub struct LicenseRow {
    pub id: String,
    pub masked_key: String,
    pub status: &'static str,
    pub tier: &'static str,
    pub last_validated: String,
    pub validations: u64,
    pub deployments: Vec<DeploymentRow>,
}

/// A deployment of a key, and the key pair it bound (base64url), if any.
pub struct DeploymentRow {
    pub id: String,
    pub key: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "licenses.html")]
pub struct LicensesPage {
    nav: Nav,
    admin: bool,
    licenses: Vec<LicenseRow>,
    released: Option<String>,
    key_reset: Option<String>,
}

/// The first and last characters of a key: enough to tell keys apart.
fn mask(key: &str) -> String {
    let head: String = key.chars().take(6).collect();
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}…{tail}")
}

async fn license_rows(
    portal: &Portal,
    signed: &Signed,
    org: domain::OrganizationId,
) -> Result<Vec<LicenseRow>, PortalError> {
    let views = usecases::queries::licenses(&portal.ledger, &signed.caller(), org).await?;
    let mut rows = Vec::with_capacity(views.len());
    for view in views {
        let issued = projections::models::licenses::license(&portal.ledger.models.db, view.id)
            .await
            .map_err(|e| PortalError::from(usecases::Error::from(e)))?
            .and_then(|l| l.issued);
        let masked_key = issued.map_or_else(String::new, |i| {
            mask(&domain::keys::license_key(&portal.ledger.keys.license, i.license_id, i.nonce))
        });
        rows.push(LicenseRow {
            id: view.id.to_string(),
            masked_key,
            status: view.status,
            tier: view.tier.unwrap_or("—"),
            last_validated: view.last_validated_at.map_or_else(|| "never".into(), |t| t.to_datetime().to_rfc3339()),
            validations: view.validation_count,
            deployments: view
                .deployments
                .iter()
                .map(|d| DeploymentRow {
                    id: d.clone(),
                    key: view.deployment_keys.iter().find(|k| &k.deployment_id == d).map(|k| k.public_key.clone()),
                })
                .collect(),
        });
    }
    Ok(rows)
}

#[derive(Deserialize)]
pub struct Released {
    released: Option<String>,
    #[serde(rename = "keyReset")]
    key_reset: Option<String>,
}

pub async fn licenses(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Query(query): Query<Released>,
) -> Result<LicensesPage, PortalError> {
    let org = signed.organization(org)?;
    let licenses = license_rows(&portal, &signed, org).await?;
    let released = query.released.map(|d| d.chars().take(128).collect());
    let key_reset = query.key_reset.map(|d| d.chars().take(128).collect());
    Ok(LicensesPage { nav: Nav::of(&signed, "licenses"), admin: signed.is_admin(), licenses, released, key_reset })
}

#[derive(Deserialize)]
pub struct ReleaseForm {
    #[serde(default)]
    csrf: String,
    deployment: String,
}

pub async fn release(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, license)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(input): Form<ReleaseForm>,
) -> Result<Redirect, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let context = context(&signed);
    let (caller, license) = (signed.caller(), LicenseId(license));
    usecases::deployments::release(&portal.ledger, &caller, &context, &portal.releases, license, &input.deployment)
        .await?;
    let deployment = query_safe(&input.deployment);
    Ok(Redirect::to(&format!("/portal/orgs/{org}/licenses?released={deployment}")))
}

/// An organization admin resets a deployment's bound key pair
/// (`DeploymentKeyReset`): its next validation binds the key it presents.
pub async fn reset_key(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, license)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(input): Form<ReleaseForm>,
) -> Result<Redirect, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let context = context(&signed);
    let (caller, license) = (signed.caller(), LicenseId(license));
    usecases::deployment_keys::reset_key(&portal.ledger, &caller, &context, license, &input.deployment).await?;
    let deployment = query_safe(&input.deployment);
    Ok(Redirect::to(&format!("/portal/orgs/{org}/licenses?keyReset={deployment}")))
}

/// A deployment id as a query parameter of the page redirected to: only
/// characters that need no escaping, at most a deployment id's length.
fn query_safe(deployment: &str) -> String {
    deployment
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(domain::lease::DEPLOYMENT_ID_CHARS_MAX)
        .collect()
}

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub active: bool,
    pub me: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
pub struct UsersPage {
    nav: Nav,
    admin: bool,
    users: Vec<UserRow>,
    active: u32,
    seats: String,
    message: Option<String>,
    error: Option<String>,
}

async fn users_page(
    portal: &Portal,
    signed: &Signed,
    message: Option<String>,
    error: Option<String>,
) -> Result<UsersPage, PortalError> {
    let org = signed.user.organization_id;
    let db = &portal.ledger.models.db;
    let to_error = |e| PortalError::from(usecases::Error::from(e));
    let rows = projections::models::organizations::users(db, org, None, USERS_LISTED_MAX).await.map_err(to_error)?;
    let users: Vec<UserRow> = rows
        .into_iter()
        .map(|u| UserRow {
            id: u.user_id.to_string(),
            me: u.user_id == signed.user.user_id,
            email: u.email,
            role: u.role.map_or("—", Role::as_str),
            active: u.active,
        })
        .collect();
    let active = u32::try_from(users.iter().filter(|u| u.active).count()).unwrap_or(u32::MAX);
    let seats = portal.ledger.seat_limit(org).await?.map_or_else(|| "unlimited".into(), |s| s.to_string());
    Ok(UsersPage { nav: Nav::of(signed, "users"), admin: signed.is_admin(), users, active, seats, message, error })
}

pub async fn users(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<UsersPage, PortalError> {
    signed.organization(org)?;
    users_page(&portal, &signed, None, None).await
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    email: String,
    role: String,
}

/// Adds a user and e-mails them a sign-in link valid three days. A refusal
/// (the seat limit) is shown on the page, with status 409.
pub async fn invite(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Form(input): Form<InviteForm>,
) -> Result<Response, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let role = usecases::organizations::parse_role(&input.role)?;
    let email = input.email.trim().to_owned();
    let added = usecases::organizations::AddUserInput { email: email.clone(), role };
    let context = context(&signed);
    match usecases::organizations::add_user(&portal.ledger, &signed.caller(), &context, org, added).await {
        Ok(added) => {
            let user_id = UserId(added.id);
            let lifetime = domain::signin::INVITATION_LINK_MICROS;
            let token = usecases::signin::token(&portal.ledger, org, user_id, lifetime)?;
            let url = usecases::signin::url(&portal.settings.portal_url, &token);
            // A white-labelled organization invites by its display name,
            // in the text and as the sender's name.
            let name = usecases::branding::shown_name(&portal.ledger, org).await.map_err(usecases::Error::from)?;
            let sender = usecases::branding::display_name(&portal.ledger, org).await.map_err(usecases::Error::from)?;
            portal.queue_mail(&email, invitation(&url, &name.unwrap_or_default()), sender);
            let sent =
                if portal.mails() { "invited; a sign-in link was e-mailed" } else { "added (no e-mail is configured)" };
            Ok(users_page(&portal, &signed, Some(format!("{email} {sent}.")), None).await?.into_response())
        }
        Err(usecases::Error::Organization(refused)) => {
            let page = users_page(&portal, &signed, None, Some(refused.to_string())).await?;
            Ok((axum::http::StatusCode::CONFLICT, page).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

fn invitation(url: &str, organization: &str) -> usecases::notify::mail::Mail {
    usecases::notify::mail::Mail {
        subject: format!("You were invited to {organization}'s customer portal"),
        body: format!(
            "You were added to {organization}'s customer portal. Sign in (this link works once, within 3 days):\n\n{url}\n"
        ),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf: String,
    role: String,
}

/// Changes a user's role (an admin's). A refusal (the last admin, the same
/// role) is shown on the page, with status 409.
pub async fn change_role(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, user)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(input): Form<RoleForm>,
) -> Result<Response, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let role = usecases::organizations::parse_role(&input.role)?;
    let context = context(&signed);
    match usecases::organizations::change_role(&portal.ledger, &signed.caller(), &context, org, UserId(user), role)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/portal/orgs/{org}/users")).into_response()),
        Err(usecases::Error::Organization(refused)) => {
            let page = users_page(&portal, &signed, None, Some(refused.to_string())).await?;
            Ok((axum::http::StatusCode::CONFLICT, page).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn deactivate(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, user)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(input): Form<CsrfForm>,
) -> Result<Redirect, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    let context = context(&signed);
    usecases::organizations::deactivate_user(&portal.ledger, &signed.caller(), &context, org, UserId(user)).await?;
    // Its sessions end now, not at their next request's check.
    portal.sessions.delete_user(user).await?;
    Ok(Redirect::to(&format!("/portal/orgs/{org}/users")))
}

pub struct SessionItem {
    pub id: String,
    pub created: String,
    pub last_seen: String,
    pub address: String,
    pub user_agent: String,
    pub current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sessions.html")]
pub struct SessionsPage {
    nav: Nav,
    sessions: Vec<SessionItem>,
}

pub async fn sessions(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
) -> Result<SessionsPage, PortalError> {
    signed.organization(org)?;
    let rows = portal.sessions.of_user(signed.user.user_id.0).await?;
    let sessions = rows
        .into_iter()
        .map(|s| SessionItem {
            id: s.id.to_string(),
            created: s.created_at.to_datetime().to_rfc3339(),
            last_seen: s.last_seen.to_datetime().to_rfc3339(),
            current: s.id == signed.session.id,
            address: s.address,
            user_agent: s.user_agent,
        })
        .collect();
    Ok(SessionsPage { nav: Nav::of(&signed, "sessions"), sessions })
}

pub async fn revoke(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path((org, session)): Path<(uuid::Uuid, uuid::Uuid)>,
    Form(input): Form<CsrfForm>,
) -> Result<Redirect, PortalError> {
    signed.check_csrf(&input.csrf)?;
    let org = signed.organization(org)?;
    // Only the user's own sessions: another's id deletes nothing.
    if !portal.sessions.delete(session, signed.user.user_id.0).await? {
        return Err(PortalError::NotFound);
    }
    let event = SignInEvent::from(SessionRevoked {
        organization_id: org,
        user_id: signed.user.user_id,
        session_id: session,
        by_session_id: signed.session.id,
        address: signed.address.clone(),
        at: portal.ledger.now(),
    });
    usecases::signin::record_end(&portal.ledger, signed.user, session, event, &signed.address).await?;
    tracing::info!(user = %signed.user.user_id, %session, "portal session revoked");
    Ok(Redirect::to(&format!("/portal/orgs/{org}/sessions")))
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    nav: Nav,
    entries: Vec<AuditEntryView>,
    next: Option<u64>,
    first: bool,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    after: Option<u64>,
}

pub async fn audit(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Path(org): Path<uuid::Uuid>,
    Query(query): Query<AuditQuery>,
) -> Result<AuditPage, PortalError> {
    let org = signed.organization(org)?;
    let filter = AuditFilter {
        organization_id: Some(org),
        from: None,
        to: None,
        cursor: query.after,
        limit: Some(AUDIT_PAGE_ITEMS),
    };
    let page = usecases::queries::audit(&portal.ledger, &signed.caller(), filter).await?;
    Ok(AuditPage {
        nav: Nav::of(&signed, "audit"),
        entries: page.items,
        next: page.next_cursor,
        first: query.after.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_name_the_80_and_100_percent_states() {
        assert_eq!(meter("x", Decimal::from(79), 100).state, "ok");
        assert_eq!(meter("x", Decimal::from(80), 100).state, "warning");
        assert_eq!(meter("x", Decimal::from(100), 100).state, "over");
        assert_eq!(meter("x", Decimal::from(5), -1).limit, "unlimited");
    }

    #[test]
    fn bars_scale_to_the_busiest_day() {
        let day = |d: u32| format!("2026-11-{d:02}");
        let bars = bars(&[(day(1), 50), (day(2), 100), (day(3), 0)]);
        assert_eq!(bars.iter().map(|b| b.height).collect::<Vec<_>>(), [CHART_HEIGHT / 2, CHART_HEIGHT, 0]);
        assert_eq!(bars[1].y, 0);
        assert_eq!(bars[2].x, 2 * (BAR_WIDTH + 2));
    }

    #[test]
    fn a_masked_key_shows_only_its_ends() {
        assert_eq!(mask("ABCDEFGHIJKLMNOP"), "ABCDEF…MNOP");
    }
}

//! Sessions and CSRF.
//!
//! The session cookie holds a random value; the server's database holds
//! only its keyed hash (`store::sessions`), so every node sees a sign-out
//! or revocation at once. Each request checks the absolute and idle
//! expiry and reads the user's role again, so a deactivation or a role
//! change applies on the next request.
//!
//! CSRF: a signed-in form carries the session's synchronizer token, a
//! keyed hash of the session's cookie value (`domain::signin::csrf_token`:
//! nothing more to store, and a new one at each sign-in). The forms before
//! sign-in (asking for a link, using one) use the double-submit pattern: a
//! random value in a cookie of its own and in the form, compared in
//! constant time. Both ride on SameSite=Lax cookies.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use domain::keys::constant_time_eq;
use domain::organization::Role;
use domain::{OrganizationId, Timestamp, UserId};
use store::sessions::SessionRow;
use usecases::Caller;
use usecases::signin::SignedInUser;

use crate::{ClientIp, Portal, PortalError};

pub const SESSION_COOKIE: &str = "ledger_portal_session";
pub const CSRF_COOKIE: &str = "ledger_portal_csrf";
/// A session unused this long ends: 30 minutes.
pub const SESSION_IDLE_MICROS: i64 = 30 * 60 * 1_000_000;
/// A session ends this long after sign-in, used or not: 12 hours.
pub const SESSION_ABSOLUTE_MICROS: i64 = 12 * 3600 * 1_000_000;
/// A session's last use is written at most this often.
const TOUCH_EVERY_MICROS: i64 = 60 * 1_000_000;
/// The longest User-Agent kept with a session.
const USER_AGENT_CHARS_MAX: usize = 200;

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: SignedInUser,
    pub session: SessionRow,
    pub email: String,
    /// The session's CSRF token, for its forms.
    pub csrf: String,
    pub address: String,
    /// The organization's white-label branding, if it applies.
    pub brand: Option<crate::branding::Brand>,
}

impl Signed {
    pub fn caller(&self) -> Caller {
        Caller::User { organization_id: self.user.organization_id, role: self.user.role, user_id: self.user.user_id }
    }

    /// The organization of a URL, if it is this user's; another
    /// organization's is "not found", as if it did not exist.
    pub fn organization(&self, org: uuid::Uuid) -> Result<OrganizationId, PortalError> {
        if org == self.user.organization_id.0 { Ok(self.user.organization_id) } else { Err(PortalError::NotFound) }
    }

    pub fn check_csrf(&self, presented: &str) -> Result<(), PortalError> {
        if constant_time_eq(presented, &self.csrf) { Ok(()) } else { Err(PortalError::Csrf) }
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

pub fn random_token() -> Result<String, PortalError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| PortalError::Internal)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, the portal's path, Secure
/// unless turned off for local http; `None` as the value removes it.
pub fn set_cookie(portal: &Portal, name: &'static str, value: Option<&str>) -> String {
    cookie_on(portal, "/portal", name, value)
}

/// A `Set-Cookie` value on `path` (the portal's or the console's):
/// HttpOnly, SameSite=Lax, Secure unless turned off for local http;
/// `None` as the value removes it.
pub fn cookie_on(portal: &Portal, path: &'static str, name: &'static str, value: Option<&str>) -> String {
    let mut cookie = Cookie::build((name, value.unwrap_or("").to_owned()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(portal.settings.secure_cookies)
        .path(path);
    if value.is_none() {
        cookie = cookie.max_age(cookie::time::Duration::ZERO);
    }
    cookie.build().to_string()
}

/// `response` with one more `Set-Cookie` header.
pub fn with_cookie(mut response: Response, cookie: &str) -> Result<Response, PortalError> {
    let value = cookie.parse().map_err(|_| PortalError::Internal)?;
    response.headers_mut().append(header::SET_COOKIE, value);
    Ok(response)
}

/// A page of a form before sign-in (the portal's or the console's), with
/// its double-submit CSRF cookie, which `csrf_cookie` makes of the token.
pub fn with_csrf_cookie(
    csrf_cookie: impl FnOnce(&str) -> String,
    page: impl FnOnce(String) -> Response,
) -> Result<Response, PortalError> {
    let csrf = random_token()?;
    let cookie = csrf_cookie(&csrf);
    with_cookie(page(csrf), &cookie)
}

/// The double-submit check of a form before sign-in: the cookie `name`
/// holds what the form presents (compared in constant time).
pub fn check_double_submit(headers: &HeaderMap, name: &str, presented: &str) -> Result<(), PortalError> {
    let cookie = cookie_value(headers, name).ok_or(PortalError::Csrf)?;
    if !presented.is_empty() && constant_time_eq(cookie, presented) { Ok(()) } else { Err(PortalError::Csrf) }
}

pub fn address_of(client: Option<ClientIp>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |ip| ip.0.to_string())
}

/// Starts a session for a user that just signed in: a new random id and
/// cookie value (never one the browser brought); the row keeps its hash.
pub async fn start(
    portal: &Portal,
    user: SignedInUser,
    session_id: uuid::Uuid,
    address: &str,
    user_agent: &str,
) -> Result<String, PortalError> {
    start_for(portal, user.organization_id, user.user_id.0, session_id, address, user_agent).await
}

/// Starts a session of `user_id` in `organization_id` (a portal user's,
/// or a staff user's in the vendor's organization, the console's).
pub async fn start_for(
    portal: &Portal,
    organization_id: OrganizationId,
    user_id: uuid::Uuid,
    session_id: uuid::Uuid,
    address: &str,
    user_agent: &str,
) -> Result<String, PortalError> {
    let token = random_token()?;
    let now = portal.ledger.now();
    let row = SessionRow {
        id: session_id,
        token_hash: domain::signin::session_hash(&portal.ledger.keys.secret, &token),
        organization_id: organization_id.0,
        user_id,
        created_at: now,
        last_seen: now,
        expires_at: Timestamp::from_micros(now.as_micros().saturating_add(SESSION_ABSOLUTE_MICROS)),
        address: address.to_owned(),
        user_agent: user_agent.chars().take(USER_AGENT_CHARS_MAX).collect(),
    };
    portal.sessions.create(&row).await?;
    Ok(token)
}

impl FromRequestParts<Arc<Portal>> for Signed {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, portal: &Arc<Portal>) -> Result<Self, PortalError> {
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or(PortalError::SignIn)?;
        let secret = &portal.ledger.keys.secret;
        let session = portal.sessions.find(&domain::signin::session_hash(secret, &token)).await?;
        let session = session.ok_or(PortalError::SignIn)?;
        let now = portal.ledger.now().as_micros();
        let idle = session.last_seen.as_micros().saturating_add(SESSION_IDLE_MICROS);
        if now >= session.expires_at.as_micros() || now >= idle {
            portal.sessions.delete(session.id, session.user_id).await?;
            return Err(PortalError::SignIn);
        }
        let (organization_id, user_id) = (OrganizationId(session.organization_id), UserId(session.user_id));
        let db = &portal.ledger.models.db;
        let organization = projections::models::organizations::organization(db, organization_id)
            .await
            .map_err(|e| PortalError::from(usecases::Error::from(e)))?;
        let user = organization.and_then(|o| o.state.users.get(&user_id).cloned()).filter(|u| u.active);
        let (Some(user), true) = (user.clone(), user.as_ref().is_some_and(|u| u.role.is_some())) else {
            portal.sessions.delete(session.id, session.user_id).await?;
            return Err(PortalError::SignIn);
        };
        if now - session.last_seen.as_micros() >= TOUCH_EVERY_MICROS {
            portal.sessions.touch(session.id, portal.ledger.now()).await?;
        }
        let role = user.role.unwrap_or(Role::Viewer);
        let brand = crate::branding::brand_of(portal, organization_id).await?;
        Ok(Signed {
            brand,
            user: SignedInUser { organization_id, user_id, role },
            csrf: domain::signin::csrf_token(secret, &token),
            email: user.email,
            session,
            address: address_of(parts.extensions.get::<ClientIp>().copied()),
        })
    }
}

/// The browser's User-Agent, as given.
pub fn user_agent(headers: &HeaderMap) -> String {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

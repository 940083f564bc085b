//! The vendor's console (issue 15 part 1): staff users sign in (magic link
//! to their staff address, or the vendor's OIDC provider) and use the
//! console's pages under `/console`, on the portal's machinery: its session
//! table (a console session names the vendor's organization,
//! `usecases::console::VENDOR`, and the staff user), its CSRF rules, its
//! e-mail queue and rate limits, its security headers and stylesheet.
//!
//! Each request reads the staff user's row again
//! (`usecases::console::active_staff`): a disabled user's sessions end,
//! and a role change applies at once. Every page acts through the use
//! cases with `Caller::Staff`, so the roles table is the API's.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use domain::keys::constant_time_eq;
use domain::staff::{StaffId, StaffPermission};
use store::sessions::SessionRow;
use usecases::console::{SignedInStaff, VENDOR};

use crate::session::{SESSION_IDLE_MICROS, address_of, cookie_value};
use crate::{ClientIp, Portal, PortalError};

mod analytics;
mod customers;
mod invoices;
pub mod oidc;
mod pages;
mod runs;
mod signin;
mod stripe;

pub const SESSION_COOKIE: &str = "ledger_console_session";
pub const CSRF_COOKIE: &str = "ledger_console_csrf";
/// A session's last use is written at most this often.
const TOUCH_EVERY_MICROS: i64 = 60 * 1_000_000;

/// The console's routes, with their whole paths (`/console`, `/console/`,
/// `/console/…`), to merge into the server's router: nested, `/console/`
/// would not be served.
pub fn router<S: Clone + Send + Sync + 'static>(portal: Arc<Portal>) -> Router<S> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route("/console/signin", get(signin::form).post(signin::request))
        .route("/console/link", get(signin::link_page).post(signin::use_link))
        .route("/console/signout", post(signin::sign_out))
        .route("/console/analytics", get(analytics::page))
        .route("/console/analytics/revenue.csv", get(analytics::csv))
        .route("/console/staff", get(pages::staff).post(pages::add_staff))
        .route("/console/staff/{staff}/role", post(pages::change_role))
        .route("/console/staff/{staff}/disable", post(pages::disable))
        .route("/console/customers", get(customers::search))
        .route("/console/customers/{org}", get(customers::customer))
        .route("/console/customers/{org}/users/{user}/resend", post(customers::resend))
        .route("/console/customers/{org}/invoices/{invoice}", get(invoices::invoice))
        .route("/console/customers/{org}/invoices/{invoice}/void", post(invoices::void))
        .route("/console/customers/{org}/invoices/{invoice}/credit-notes", post(invoices::credit))
        .route("/console/runs", get(runs::page).post(runs::issue))
        .route("/console/runs/{run}", get(runs::progress))
        .route("/console/stripe", get(stripe::page))
        .route("/console/stripe/retry", post(stripe::retry))
        .merge(oidc::routes())
        .layer(axum::middleware::from_fn(crate::headers::security))
        .with_state(portal)
}

/// The portal's errors, with the console's sign-in page and error page.
#[derive(Debug)]
pub struct ConsoleError(pub PortalError);

impl<E: Into<PortalError>> From<E> for ConsoleError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "console/error.html")]
struct ErrorPage {
    title: &'static str,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if matches!(self.0, PortalError::SignIn) {
            return Redirect::to("/console/signin").into_response();
        }
        let (status, title) = self.0.status();
        (status, ErrorPage { title, message: self.0.to_string() }).into_response()
    }
}

/// A `Set-Cookie` value on the console's path: HttpOnly, SameSite=Lax,
/// Secure unless turned off for local http; `None` removes it.
pub fn set_cookie(portal: &Portal, name: &'static str, value: Option<&str>) -> String {
    crate::session::cookie_on(portal, "/console", name, value)
}

/// Starts a console session for a staff user that just signed in: a new
/// random cookie value; the session table keeps its keyed hash.
pub async fn start(
    portal: &Portal,
    staff: &SignedInStaff,
    session_id: uuid::Uuid,
    address: &str,
    headers: &HeaderMap,
) -> Result<String, PortalError> {
    let agent = crate::session::user_agent(headers);
    crate::session::start_for(portal, VENDOR, staff.staff_id.0, session_id, address, &agent).await
}

/// A response that signs a staff user in: the session cookie set, the
/// pre-sign-in CSRF cookie cleared, on to the console's home.
pub fn signed_in_response(portal: &Portal, token: &str) -> Result<Response, PortalError> {
    let mut response = Redirect::to("/console/").into_response();
    for cookie in [set_cookie(portal, SESSION_COOKIE, Some(token)), set_cookie(portal, CSRF_COOKIE, None)] {
        let value = cookie.parse().map_err(|_| PortalError::Internal)?;
        response.headers_mut().append(axum::http::header::SET_COOKIE, value);
    }
    Ok(response)
}

/// A signed-in console request.
#[derive(Debug, Clone)]
pub struct StaffSigned {
    pub staff: SignedInStaff,
    pub session: SessionRow,
    /// The session's CSRF token, for its forms.
    pub csrf: String,
    pub address: String,
}

impl StaffSigned {
    pub fn check_csrf(&self, presented: &str) -> Result<(), ConsoleError> {
        if constant_time_eq(presented, &self.csrf) { Ok(()) } else { Err(ConsoleError(PortalError::Csrf)) }
    }

    pub fn may(&self, permission: StaffPermission) -> bool {
        self.staff.caller().may(permission)
    }
}

impl FromRequestParts<Arc<Portal>> for StaffSigned {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, portal: &Arc<Portal>) -> Result<Self, ConsoleError> {
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or(PortalError::SignIn)?;
        let secret = &portal.ledger.keys.secret;
        let session = portal.sessions.find(&domain::signin::session_hash(secret, &token)).await?;
        // A portal session is never a console one.
        let session = session.filter(|s| s.organization_id == VENDOR.0).ok_or(PortalError::SignIn)?;
        let now = portal.ledger.now().as_micros();
        let idle = session.last_seen.as_micros().saturating_add(SESSION_IDLE_MICROS);
        let staff = if now >= session.expires_at.as_micros() || now >= idle {
            None
        } else {
            usecases::console::active_staff(&portal.ledger, StaffId(session.user_id)).await?
        };
        let Some(staff) = staff else {
            portal.sessions.delete(session.id, session.user_id).await?;
            return Err(ConsoleError(PortalError::SignIn));
        };
        if now - session.last_seen.as_micros() >= TOUCH_EVERY_MICROS {
            portal.sessions.touch(session.id, portal.ledger.now()).await?;
        }
        Ok(StaffSigned {
            staff,
            csrf: domain::signin::csrf_token(secret, &token),
            session,
            address: address_of(parts.extensions.get::<ClientIp>().copied()),
        })
    }
}

/// A page of a form before sign-in, with its double-submit CSRF cookie.
fn with_csrf_cookie(portal: &Portal, page: impl FnOnce(String) -> Response) -> Result<Response, ConsoleError> {
    Ok(crate::session::with_csrf_cookie(|csrf| set_cookie(portal, CSRF_COOKIE, Some(csrf)), page)?)
}

fn check_double_submit(headers: &HeaderMap, presented: &str) -> Result<(), ConsoleError> {
    Ok(crate::session::check_double_submit(headers, CSRF_COOKIE, presented)?)
}

/// 403 with the console's error page.
fn forbidden() -> ConsoleError {
    ConsoleError(PortalError::Forbidden)
}

//! The sign-in pages: ask for a link, open it, use it; sign out.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use domain::signin::{SIGN_IN_LINK_MICROS, SignInEvent, SignedOut};
use serde::Deserialize;
use usecases::signin::{self as links, Refusal};

use crate::session::{self, CSRF_COOKIE, SESSION_COOKIE, Signed};
use crate::{Portal, PortalError};

/// The longest link token a form may bring (a valid one is shorter); the
/// console's forms too.
pub(crate) const TOKEN_CHARS_MAX: usize = 256;

#[derive(Template, WebTemplate)]
#[template(path = "signin.html")]
pub struct SignInPage {
    csrf: String,
    sent: bool,
    mails: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "link.html")]
pub struct LinkPage {
    csrf: String,
    token: String,
    refused: Option<&'static str>,
}

/// A page of a form before sign-in, with its double-submit CSRF cookie.
fn with_csrf_cookie(portal: &Portal, page: impl FnOnce(String) -> Response) -> Result<Response, PortalError> {
    session::with_csrf_cookie(|csrf| session::set_cookie(portal, CSRF_COOKIE, Some(csrf)), page)
}

fn check_double_submit(headers: &HeaderMap, presented: &str) -> Result<(), PortalError> {
    session::check_double_submit(headers, CSRF_COOKIE, presented)
}

pub async fn form(State(portal): State<Arc<Portal>>) -> Result<Response, PortalError> {
    let mails = portal.mails();
    with_csrf_cookie(&portal, |csrf| SignInPage { csrf, sent: false, mails }.into_response())
}

/// The sign-in form (the portal's and the console's).
#[derive(Deserialize)]
pub struct SignInForm {
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) csrf: String,
}

/// Sends the links, if the address is a user's; the answer is the same
/// either way, and so is its timing (the e-mail goes out from a queue).
pub async fn request(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Form(input): Form<SignInForm>,
) -> Result<Response, PortalError> {
    check_double_submit(&headers, &input.csrf)?;
    let client = client.map(|ip| ip.0.0);
    if let Some(client) = client
        && portal.requests_per_client.check(&client).is_err()
    {
        return Err(PortalError::RateLimited);
    }
    let email = input.email.trim().to_owned();
    if email.is_empty() || email.len() > links::EMAIL_CHARS_MAX {
        return Err(PortalError::Invalid("Enter your e-mail address.".into()));
    }
    let sent = portal.mails_per_address.check(&email.to_ascii_lowercase()).is_ok();
    if sent {
        let found = links::links_for_email(&portal.ledger, &portal.settings.portal_url, &email).await?;
        if let Some(first) = found.first() {
            let mail = links::mail(&found, SIGN_IN_LINK_MICROS / 60_000_000);
            portal.queue_mail(&first.email, mail, None);
        }
    }
    let mails = portal.mails();
    with_csrf_cookie(&portal, |csrf| SignInPage { csrf, sent: true, mails }.into_response())
}

/// The query of a link's page (the portal's and the console's).
#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    pub(crate) token: String,
}

impl LinkQuery {
    /// The token the page's form brings back, cut to [`TOKEN_CHARS_MAX`].
    pub(crate) fn token(&self) -> String {
        self.token.chars().take(TOKEN_CHARS_MAX).collect()
    }
}

/// The page a link opens: a button that POSTs the token. Opening it uses
/// nothing (mail scanners fetch links).
pub async fn link_page(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<LinkQuery>,
) -> Result<Response, PortalError> {
    let token = query.token();
    with_csrf_cookie(&portal, |csrf| LinkPage { csrf, token, refused: None }.into_response())
}

/// The form that uses a link (the portal's and the console's).
#[derive(Deserialize)]
pub struct UseLink {
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) csrf: String,
}

/// Uses a link: a new session (new id, new cookie), then the overview.
pub async fn use_link(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Form(input): Form<UseLink>,
) -> Result<Response, PortalError> {
    check_double_submit(&headers, &input.csrf)?;
    if input.token.len() > TOKEN_CHARS_MAX {
        return Err(PortalError::Invalid("This is not a sign-in link.".into()));
    }
    let address = session::address_of(client.map(|ip| ip.0));
    let session_id = uuid::Uuid::new_v4();
    match links::consume(&portal.ledger, &input.token, &address, session_id).await? {
        Ok(user) => {
            let agent = session::user_agent(&headers);
            let token = session::start(&portal, user, session_id, &address, &agent).await?;
            tracing::info!(organization = %user.organization_id, user = %user.user_id, session = %session_id, "portal sign-in");
            let cookie = session::set_cookie(&portal, SESSION_COOKIE, Some(&token));
            let clear = session::set_cookie(&portal, CSRF_COOKIE, None);
            let mut response = Redirect::to(&format!("/portal/orgs/{}", user.organization_id)).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie.parse().map_err(|_| PortalError::Internal)?);
            response.headers_mut().append(header::SET_COOKIE, clear.parse().map_err(|_| PortalError::Internal)?);
            Ok(response)
        }
        Err(refusal) => {
            links::record_refusal(&portal.ledger, refusal, &address).await?;
            let why = match refusal {
                Refusal::Invalid => "This is not a sign-in link.",
                Refusal::Expired { .. } => "This link has expired. Ask for a new one.",
                Refusal::Used { .. } => "This link was used already. Ask for a new one.",
                Refusal::Inactive { .. } => "This user cannot sign in.",
            };
            tracing::info!(reason = why, "portal sign-in refused");
            let page =
                |csrf| (axum::http::StatusCode::FORBIDDEN, LinkPage { csrf, token: String::new(), refused: Some(why) });
            with_csrf_cookie(&portal, |csrf| page(csrf).into_response())
        }
    }
}

/// A form of nothing but its CSRF token (the portal's and the console's).
#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub(crate) csrf: String,
}

pub async fn sign_out(
    State(portal): State<Arc<Portal>>,
    signed: Signed,
    Form(input): Form<CsrfOnly>,
) -> Result<Response, PortalError> {
    signed.check_csrf(&input.csrf)?;
    portal.sessions.delete(signed.session.id, signed.user.user_id.0).await?;
    let event = SignInEvent::from(SignedOut {
        organization_id: signed.user.organization_id,
        user_id: signed.user.user_id,
        session_id: signed.session.id,
        address: signed.address.clone(),
        at: portal.ledger.now(),
    });
    links::record_end(&portal.ledger, signed.user, signed.session.id, event, &signed.address).await?;
    tracing::info!(user = %signed.user.user_id, session = %signed.session.id, "portal sign-out");
    let mut response = Redirect::to("/portal/signin").into_response();
    let clear = session::set_cookie(&portal, SESSION_COOKIE, None);
    response.headers_mut().append(header::SET_COOKIE, clear.parse().map_err(|_| PortalError::Internal)?);
    Ok(response)
}

//! The console's sign-in pages: ask for a link (sent to a staff
//! address), open it, use it; sign out.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use domain::signin::{SignInEvent, SignedOut};
use usecases::console::{self, Method, Refusal, Refused, VENDOR};

use super::{ConsoleError, SESSION_COOKIE, StaffSigned, check_double_submit, with_csrf_cookie};
use crate::signin::{CsrfOnly, LinkQuery, SignInForm, TOKEN_CHARS_MAX, UseLink};
use crate::{Portal, PortalError, session};

#[derive(Template, WebTemplate)]
#[template(path = "console/signin.html")]
pub struct SignInPage {
    csrf: String,
    sent: bool,
    mails: bool,
    oidc: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/link.html")]
pub struct LinkPage {
    csrf: String,
    token: String,
    refused: Option<&'static str>,
}

pub async fn form(State(portal): State<Arc<Portal>>) -> Result<Response, ConsoleError> {
    let (mails, oidc) = (portal.mails(), portal.console_oidc.is_some());
    let csp = super::oidc::sign_in_content_security_policy(&portal).await;
    with_csrf_cookie(&portal, |csrf| {
        ([(header::CONTENT_SECURITY_POLICY, csp)], SignInPage { csrf, sent: false, mails, oidc }).into_response()
    })
}

/// Sends a link, if the address is an active staff user's; the answer is
/// the same either way, and so is its timing (the e-mail is queued; a
/// refusal is recorded in the log in the background).
pub async fn request(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Form(input): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    check_double_submit(&headers, &input.csrf)?;
    let client = client.map(|ip| ip.0);
    if let Some(crate::ClientIp(client)) = client
        && portal.requests_per_client.check(&client).is_err()
    {
        return Err(ConsoleError(PortalError::RateLimited));
    }
    let address = session::address_of(client);
    let email = input.email.trim().to_lowercase();
    if email.is_empty() || email.len() > usecases::signin::EMAIL_CHARS_MAX {
        return Err(ConsoleError(PortalError::Invalid("Enter your e-mail address.".into())));
    }
    if portal.mails_per_address.check(&email).is_ok() {
        match console::link_for_email(&portal.ledger, &portal.settings.portal_url, &email).await? {
            Some((staff, url)) => portal.queue_mail(&staff.email, console::mail(&url), None),
            None => {
                tracing::info!("console sign-in link refused: no active staff user");
                record_in_background(&portal, email, address);
            }
        }
    }
    let (mails, oidc) = (portal.mails(), portal.console_oidc.is_some());
    let csp = super::oidc::sign_in_content_security_policy(&portal).await;
    with_csrf_cookie(&portal, |csrf| {
        ([(header::CONTENT_SECURITY_POLICY, csp)], SignInPage { csrf, sent: true, mails, oidc }).into_response()
    })
}

/// Records a link asked for an address that is no active staff user's,
/// off the request's path, so such an answer is as fast as a sent one's.
fn record_in_background(portal: &Portal, email: String, address: String) {
    let ledger = portal.ledger.clone();
    tokio::spawn(async move {
        let recorded = match console::refused_email(&ledger, Method::Link, &email, None).await {
            Ok(refused) => console::record_refusal(&ledger, refused, &address).await,
            Err(error) => Err(error),
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "a refused console sign-in was not recorded");
        }
    });
}

/// The page a link opens: a button that POSTs the token (mail scanners
/// fetch links; only a person presses the button).
pub async fn link_page(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<LinkQuery>,
) -> Result<Response, ConsoleError> {
    let token = query.token();
    with_csrf_cookie(&portal, |csrf| LinkPage { csrf, token, refused: None }.into_response())
}

/// Uses a link: a new session (new id, new cookie), then the home page.
pub async fn use_link(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Form(input): Form<UseLink>,
) -> Result<Response, ConsoleError> {
    check_double_submit(&headers, &input.csrf)?;
    if input.token.len() > TOKEN_CHARS_MAX {
        return Err(ConsoleError(PortalError::Invalid("This is not a sign-in link.".into())));
    }
    let address = session::address_of(client.map(|ip| ip.0));
    let session_id = uuid::Uuid::new_v4();
    let refusal = match console::consume(&portal.ledger, &input.token, &address, session_id).await? {
        Ok(staff) => {
            let token = super::start(&portal, &staff, session_id, &address, &headers).await?;
            tracing::info!(staff = %staff.staff_id, session = %session_id, "console sign-in");
            return Ok(super::signed_in_response(&portal, &token)?);
        }
        Err(refusal) => refusal,
    };
    console::record_refusal(&portal.ledger, Refused::Staff(refusal), &address).await?;
    let why = match refusal {
        Refusal::Invalid => "This is not a sign-in link.",
        Refusal::Expired { .. } => "This link has expired. Ask for a new one.",
        Refusal::Used { .. } => "This link was used already. Ask for a new one.",
        Refusal::Inactive { .. } => "This staff user cannot sign in.",
    };
    tracing::info!(reason = why, "console sign-in refused");
    let page = |csrf| (StatusCode::FORBIDDEN, LinkPage { csrf, token: String::new(), refused: Some(why) });
    with_csrf_cookie(&portal, |csrf| page(csrf).into_response())
}

/// Ends the session, and records its end in the log.
pub async fn sign_out(
    State(portal): State<Arc<Portal>>,
    signed: StaffSigned,
    Form(input): Form<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    signed.check_csrf(&input.csrf)?;
    let staff_id = signed.staff.staff_id;
    portal.sessions.delete(signed.session.id, staff_id.0).await?;
    let event = SignInEvent::from(SignedOut {
        organization_id: VENDOR,
        user_id: domain::UserId(staff_id.0),
        session_id: signed.session.id,
        address: signed.address.clone(),
        at: portal.ledger.now(),
    });
    console::record_end(&portal.ledger, &signed.staff, signed.session.id, event, &signed.address).await?;
    tracing::info!(staff = %staff_id, session = %signed.session.id, "console sign-out");
    let mut response = Redirect::to("/console/signin").into_response();
    let clear = super::set_cookie(&portal, SESSION_COOKIE, None);
    response.headers_mut().append(header::SET_COOKIE, clear.parse().map_err(|_| PortalError::Internal)?);
    Ok(response)
}

//! Staff sign-in by the vendor's own OIDC provider (issue 15 part 1):
//! the portal's enterprise SSO code (`crate::sso`: the guarded issuer
//! client, discovery cache, PKCE, state and nonce in a sealed pending
//! cookie, the ID token's checks), with the provider configured by the
//! server's settings as an SSO configuration of the vendor's organization
//! (`usecases::console::VENDOR`). The ID token must vouch for a verified
//! e-mail address that is an active staff user's; the provider never
//! creates staff users.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use domain::sso::SsoConfigured;
use serde::Deserialize;
use usecases::console::{self, Method, Refused, VENDOR};

use super::{ConsoleError, check_double_submit, set_cookie};
use crate::sso::CallbackQuery;
use crate::{ConsoleOidc, Portal, PortalError, session};

/// The cookie of a console sign-in on its way through the provider.
pub const PENDING_COOKIE: &str = "ledger_console_oidc";
/// Where the provider sends staff back (on the portal's URL).
pub const CALLBACK_PATH: &str = "/console/oidc/callback";

/// The provider as an SSO configuration of the vendor's organization, its
/// client secret sealed under the server secret.
pub fn configured(ledger: &usecases::Ledger, oidc: &ConsoleOidc) -> anyhow::Result<SsoConfigured> {
    let issuer = oidc.issuer.trim_end_matches('/').to_owned();
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = &ledger.keys.secret;
    let sealed_secret =
        SsoConfigured::seal_secret(secret, VENDOR, &issuer, &oidc.client_id, &oidc.client_secret, nonce);
    Ok(SsoConfigured {
        organization_id: VENDOR,
        issuer,
        client_id: oidc.client_id.clone(),
        sealed_secret,
        at: ledger.now(),
    })
}

pub fn routes() -> axum::Router<Arc<Portal>> {
    use axum::routing::{get, post};
    axum::Router::new().route("/console/oidc", post(start)).route(CALLBACK_PATH, get(callback))
}

/// The sign-in page's CSP. With the vendor's provider on, the page's
/// provider form answers with a redirect to the provider's authorization
/// endpoint, and browsers hold a form's redirect to its page's
/// `form-action` (chromium stays on the sign-in page otherwise): that
/// endpoint's origin is added, from the provider's discovery document (as
/// cached for sign-ins), or the issuer's own origin while it cannot be read.
pub async fn sign_in_content_security_policy(portal: &Portal) -> String {
    let policy = crate::headers::CONTENT_SECURITY_POLICY;
    let Some(config) = portal.console_oidc.as_ref() else { return policy.to_owned() };
    let endpoint = match portal.sso.metadata(&config.issuer, false).await {
        Ok(metadata) => Some(metadata.authorization_endpoint().url().clone()),
        Err(_) => openidconnect::url::Url::parse(&config.issuer).ok(),
    };
    let origin = endpoint.map(|url| url.origin()).filter(openidconnect::url::Origin::is_tuple);
    match origin {
        Some(origin) => {
            policy.replace("form-action 'self'", &format!("form-action 'self' {}", origin.ascii_serialization()))
        }
        None => policy.to_owned(),
    }
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/oidc`: to the provider, with a sealed pending sign-in.
pub async fn start(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Form(input): Form<StartForm>,
) -> Result<Response, ConsoleError> {
    check_double_submit(&headers, &input.csrf)?;
    if let Some(Extension(crate::ClientIp(ip))) = client
        && portal.requests_per_client.check(&ip).is_err()
    {
        return Err(ConsoleError(PortalError::RateLimited));
    }
    let config = portal.console_oidc.as_ref().ok_or(PortalError::NotFound)?;
    let pending_cookie = |sealed: &str| set_cookie(&portal, PENDING_COOKIE, Some(sealed));
    let (url, cookie) = crate::sso::to_issuer(&portal, config, VENDOR, CALLBACK_PATH, pending_cookie).await?;
    // A redirect: the sign-in page's `form-action` names the provider.
    Ok(session::with_cookie(Redirect::to(url.as_str()).into_response(), &cookie)?)
}

fn refused(why: &str) -> ConsoleError {
    ConsoleError(PortalError::Invalid(why.to_owned()))
}

/// `GET /console/oidc/callback`: the state against the pending sign-in,
/// the code exchanged (PKCE), the ID token checked, then the staff user
/// whose verified e-mail address it names is signed in.
pub async fn callback(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, ConsoleError> {
    let config = portal.console_oidc.as_ref().ok_or(PortalError::NotFound)?;
    let pending = crate::sso::pending(&portal, &headers, PENDING_COOKIE, &query.state);
    let Some(pending) = pending.filter(|p| p.organization_id == VENDOR) else {
        return Err(refused("This sign-in has expired or was not started here. Start again."));
    };
    if !query.usable() {
        return Err(refused("The identity provider did not sign you in."));
    }
    let identity = crate::sso::identity(&portal, config, &pending, query.code, CALLBACK_PATH).await?;
    let Some(identity) = identity else { return Err(refused("The identity provider's answer did not check out.")) };
    let address = session::address_of(client.map(|ip| ip.0));
    let staff = match (identity.email_verified, identity.email.as_deref()) {
        (true, Some(email)) => console::active_by_email(&portal.ledger, email).await?,
        _ => None,
    };
    let Some(staff) = staff else {
        tracing::info!("console OIDC sign-in refused: no active staff user with a verified e-mail");
        let refused = match (identity.email_verified, identity.email) {
            (true, Some(email)) => {
                console::refused_email(&portal.ledger, Method::Oidc, &email, Some(identity.subject)).await?
            }
            (_, email) => Refused::Unverified { email, subject: identity.subject },
        };
        console::record_refusal(&portal.ledger, refused, &address).await?;
        let page =
            super::ErrorPage { title: "Not allowed", message: "This account is not an active staff user's.".into() };
        return Ok((StatusCode::FORBIDDEN, page).into_response());
    };
    let session_id = uuid::Uuid::new_v4();
    let stream = domain::signin::session_stream(session_id);
    let expected = store::ExpectedRevision::NoStream;
    console::record_sign_in(&portal.ledger, &staff, stream, expected, session_id, &address)
        .await?
        .map_err(|rejected| PortalError::from(usecases::Error::Internal(rejected.to_string())))?;
    let token = super::start(&portal, &staff, session_id, &address, &headers).await?;
    tracing::info!(staff = %staff.staff_id, session = %session_id, "console OIDC sign-in");
    let response = super::signed_in_response(&portal, &token)?;
    Ok(session::with_cookie(response, &set_cookie(&portal, PENDING_COOKIE, None))?)
}

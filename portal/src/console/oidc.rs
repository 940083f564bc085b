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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use domain::sso::{PENDING_MICROS, Pending, SsoConfigured};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, Scope};
use serde::Deserialize;
use usecases::console::{self, VENDOR};

use super::{ConsoleError, check_double_submit, set_cookie};
use crate::{ConsoleOidc, Portal, PortalError, session};

/// The cookie of a console sign-in on its way through the provider.
pub const PENDING_COOKIE: &str = "ledger_console_oidc";
/// Where the provider sends staff back (on the portal's URL).
pub const CALLBACK_PATH: &str = "/console/oidc/callback";
/// The longest `code` or `state` a callback may bring.
const CALLBACK_PARAM_CHARS_MAX: usize = 2048;

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
    let client = crate::sso::oidc_client(&portal, config, false, CALLBACK_PATH).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        organization_id: VENDOR,
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        expires_at: domain::Timestamp::from_micros(portal.ledger.now().as_micros().saturating_add(PENDING_MICROS)),
    };
    let mut seal_nonce = [0u8; 12];
    getrandom::fill(&mut seal_nonce).map_err(|_| PortalError::Internal)?;
    let sealed = pending.seal(&portal.ledger.keys.secret, seal_nonce);
    let mut response = Redirect::to(url.as_str()).into_response();
    let cookie = set_cookie(&portal, PENDING_COOKIE, Some(&sealed));
    response.headers_mut().append(header::SET_COOKIE, cookie.parse().map_err(|_| PortalError::Internal)?);
    Ok(response)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
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
    let sealed = session::cookie_value(&headers, PENDING_COOKIE).unwrap_or_default();
    let pending = Pending::open(&portal.ledger.keys.secret, &sealed, portal.ledger.now()).filter(|p| {
        p.organization_id == VENDOR && !query.state.is_empty() && domain::keys::constant_time_eq(&p.state, &query.state)
    });
    let Some(pending) = pending else {
        return Err(refused("This sign-in has expired or was not started here. Start again."));
    };
    if query.code.is_empty()
        || query.code.len() > CALLBACK_PARAM_CHARS_MAX
        || query.state.len() > CALLBACK_PARAM_CHARS_MAX
    {
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
        tracing::info!(%address, "console OIDC sign-in refused: no active staff user with a verified e-mail");
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
    tracing::info!(staff = %staff.staff_id, session = %session_id, %address, "console OIDC sign-in");
    let mut response = super::signed_in_response(&portal, &token)?;
    let clear = set_cookie(&portal, PENDING_COOKIE, None);
    response.headers_mut().append(header::SET_COOKIE, clear.parse().map_err(|_| PortalError::Internal)?);
    Ok(response)
}

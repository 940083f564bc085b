//! Enterprise SSO's pages (issue 14): "Sign in with your organization's
//! SSO" → the organization's issuer (OpenID Connect authorization code
//! with PKCE, state and nonce; `openidconnect`) → the callback → a session.
//!
//! The pending sign-in (organization, state, nonce, PKCE verifier, 10
//! minutes) rides in a sealed cookie (`domain::sso::Pending`), so the
//! server keeps nothing per attempt. Every request to an issuer goes
//! through [`IssuerHttp`]: no redirects followed, every address the host
//! resolves to (or an address literal) public, `https` only (a loopback
//! `http` issuer only with `--sso-allow-loopback-issuer`), bounded answers
//! and time. Each issuer's discovery document and keys are cached (at most
//! [`ISSUERS_CACHED_MAX`], for [`DISCOVERY_TTL`]); an ID token signed by a
//! key id not in the cache fetches the keys again once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use domain::OrganizationId;
use domain::keys::constant_time_eq;
use domain::sso::{PENDING_MICROS, Pending, SsoConfigured};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use usecases::sso::{Identity, SsoRefusal};

use crate::session::{self, CSRF_COOKIE, SESSION_COOKIE};
use crate::{Portal, PortalError};

/// The cookie of a sign-in on its way through the issuer.
pub const PENDING_COOKIE: &str = "ledger_portal_sso";
/// Issuers whose discovery and keys are cached, at most.
pub const ISSUERS_CACHED_MAX: usize = 256;
/// A cached discovery document (and its keys) is used this long.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The largest answer read from an issuer.
pub const ISSUER_ANSWER_BYTES_MAX: usize = 256 * 1024;
/// The longest an issuer may take to answer.
pub const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest organization text (id or e-mail domain) the form takes.
const ORGANIZATION_CHARS_MAX: usize = 255;
/// The longest `code` or `state` a callback may bring.
const CALLBACK_PARAM_CHARS_MAX: usize = 2048;

/// Enterprise SSO's client side: the guarded HTTP client and the cache.
pub struct Sso {
    http: IssuerHttp,
    cache: Mutex<HashMap<String, (CoreProviderMetadata, Instant)>>,
}

impl Sso {
    pub fn new(allow_loopback: bool) -> anyhow::Result<Self> {
        Ok(Self { http: IssuerHttp::new(allow_loopback)?, cache: Mutex::new(HashMap::new()) })
    }

    pub(crate) async fn metadata(&self, issuer: &str, refresh_keys: bool) -> Result<CoreProviderMetadata, PortalError> {
        let cached = self.cache.lock().map_err(|_| PortalError::Internal)?.get(issuer).cloned();
        let metadata = match cached {
            Some((metadata, at)) if at.elapsed() < DISCOVERY_TTL && !refresh_keys => return Ok(metadata),
            Some((metadata, at)) if at.elapsed() < DISCOVERY_TTL => {
                let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http).await.map_err(|e| {
                    tracing::warn!(issuer, error = %e, "SSO issuer's keys not fetched");
                    PortalError::Unavailable
                })?;
                metadata.set_jwks(jwks)
            }
            _ => {
                let url = IssuerUrl::new(issuer.to_owned()).map_err(|_| PortalError::Internal)?;
                CoreProviderMetadata::discover_async(url, &self.http).await.map_err(|e| {
                    tracing::warn!(issuer, error = %e, "SSO issuer's discovery failed");
                    PortalError::Unavailable
                })?
            }
        };
        let mut cache = self.cache.lock().map_err(|_| PortalError::Internal)?;
        if cache.len() >= ISSUERS_CACHED_MAX && !cache.contains_key(issuer) {
            cache.retain(|_, (_, at)| at.elapsed() < DISCOVERY_TTL);
            if cache.len() >= ISSUERS_CACHED_MAX {
                cache.clear();
            }
        }
        cache.insert(issuer.to_owned(), (metadata.clone(), Instant::now()));
        Ok(metadata)
    }
}

/// The HTTP client for issuers (see the module's notes).
pub struct IssuerHttp {
    client: reqwest::Client,
    allow_loopback: bool,
}

/// Resolves a host only when every address it has may be reached.
struct PublicOnly {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if addresses.is_empty() || !addresses.iter().all(|a| domain::sso::address_allowed(a.ip(), allow_loopback)) {
                return Err(format!("{} resolves to an address an issuer may not have", name.as_str()).into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// Why a request to an issuer was not made or not answered.
#[derive(Debug, thiserror::Error)]
pub enum IssuerHttpError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("the answer is over {ISSUER_ANSWER_BYTES_MAX} bytes")]
    TooLarge,
    #[error("{0}")]
    Http(#[from] openidconnect::http::Error),
}

impl IssuerHttp {
    fn new(allow_loopback: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ISSUER_TIMEOUT)
            .dns_resolver(Arc::new(PublicOnly { allow_loopback }))
            .build()?;
        Ok(Self { client, allow_loopback })
    }

    /// Refuses what the resolver does not see: address literals and schemes.
    fn check(&self, uri: &openidconnect::http::Uri) -> Result<(), IssuerHttpError> {
        let refused = |why: &str| Err(IssuerHttpError::Refused(format!("{uri}: {why}")));
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.allow_loopback => {}
            _ => return refused("not https"),
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>()
            && !domain::sso::address_allowed(ip, self.allow_loopback)
        {
            return refused("not a public address");
        }
        Ok(())
    }

    async fn send(&self, request: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, IssuerHttpError> {
        self.check(request.uri())?;
        let (parts, body) = request.into_parts();
        let mut outgoing = self.client.request(parts.method, parts.uri.to_string()).body(body);
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name, value);
        }
        let mut answer = outgoing.send().await?;
        let mut builder = openidconnect::http::Response::builder().status(answer.status().as_u16());
        for (name, value) in answer.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            if bytes.len() + chunk.len() > ISSUER_ANSWER_BYTES_MAX {
                return Err(IssuerHttpError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(builder.body(bytes)?)
    }
}

type Sending<'c> = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, IssuerHttpError>> + Send + 'c>>;

impl<'c> openidconnect::AsyncHttpClient<'c> for IssuerHttp {
    type Error = IssuerHttpError;
    type Future = Sending<'c>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "sso.html")]
pub struct SsoPage {
    csrf: String,
    refused: Option<&'static str>,
}

fn page(portal: &Portal, status: StatusCode, refused: Option<&'static str>) -> Result<Response, PortalError> {
    let csrf_cookie = |csrf: &str| session::set_cookie(portal, CSRF_COOKIE, Some(csrf));
    session::with_csrf_cookie(csrf_cookie, |csrf| (status, SsoPage { csrf, refused }).into_response())
}

/// `GET /portal/sso`: the form that asks for the organization.
pub async fn form(State(portal): State<Arc<Portal>>) -> Result<Response, PortalError> {
    page(&portal, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct StartForm {
    organization: String,
    #[serde(default)]
    csrf: String,
}

const NO_SSO: &str =
    "This organization does not sign in with SSO here. Check the organization id, or sign in by e-mail.";

/// The page `POST /portal/sso` answers: on to the issuer's authorization
/// endpoint by a `<meta http-equiv="refresh">` and a link. Not a 303: a
/// browser holds a form's redirect to the form page's CSP `form-action`
/// (chromium does), and the issuer depends on the organization typed, so
/// the SSO form's page cannot list it; a top-level navigation is not held.
#[derive(Template, WebTemplate)]
#[template(path = "sso_continue.html")]
pub struct SsoContinue {
    url: String,
    /// The issuer's origin, named on the link.
    provider: String,
}

/// `POST /portal/sso`: on to the organization's issuer (a page, see
/// [`SsoContinue`]), with a sealed pending sign-in in a cookie.
pub async fn start(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Form(input): Form<StartForm>,
) -> Result<Response, PortalError> {
    session::check_double_submit(&headers, CSRF_COOKIE, &input.csrf)?;
    if let Some(Extension(crate::ClientIp(ip))) = client
        && portal.requests_per_client.check(&ip).is_err()
    {
        return Err(PortalError::RateLimited);
    }
    let text = input.organization.trim();
    if text.is_empty() || text.len() > ORGANIZATION_CHARS_MAX {
        return Err(PortalError::Invalid("Enter your organization's id.".into()));
    }
    let Ok(id) = uuid::Uuid::parse_str(text) else { return page(&portal, StatusCode::NOT_FOUND, Some(NO_SSO)) };
    let organization_id = OrganizationId(id);
    let Some(config) = usecases::sso::current(&portal.ledger, organization_id).await? else {
        return page(&portal, StatusCode::NOT_FOUND, Some(NO_SSO));
    };
    let pending_cookie = |sealed: &str| session::set_cookie(&portal, PENDING_COOKIE, Some(sealed));
    let (url, cookie) = to_issuer(&portal, &config, organization_id, CALLBACK_PATH, pending_cookie).await?;
    let provider = url.origin().ascii_serialization();
    session::with_cookie(SsoContinue { url: url.to_string(), provider }.into_response(), &cookie)
}

/// To `config`'s issuer (the portal's and the console's sign-ins): the
/// authorization request's URL (PKCE, state, nonce), and the cookie
/// `pending_cookie` makes of the pending sign-in for `organization_id`,
/// sealed under the server secret.
pub(crate) async fn to_issuer(
    portal: &Portal,
    config: &SsoConfigured,
    organization_id: OrganizationId,
    callback: &str,
    pending_cookie: impl FnOnce(&str) -> String,
) -> Result<(openidconnect::url::Url, String), PortalError> {
    let client = oidc_client(portal, config, false, callback).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        organization_id,
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        expires_at: domain::Timestamp::from_micros(portal.ledger.now().as_micros().saturating_add(PENDING_MICROS)),
    };
    let mut seal_nonce = [0u8; 12];
    getrandom::fill(&mut seal_nonce).map_err(|_| PortalError::Internal)?;
    let sealed = pending.seal(&portal.ledger.keys.secret, seal_nonce);
    Ok((url, pending_cookie(&sealed)))
}

/// The pending sign-in the cookie `name` seals, if it opens, has not
/// expired, and its state is the callback's (compared in constant time).
pub(crate) fn pending(portal: &Portal, headers: &HeaderMap, name: &str, state: &str) -> Option<Pending> {
    let sealed = session::cookie_value(headers, name).unwrap_or_default();
    // Sealed by this node or another, under either secret while it rotates.
    let now = portal.ledger.now();
    let pending = portal.ledger.keys.secrets().find_map(|secret| Pending::open(secret, &sealed, now));
    pending.filter(|p| !state.is_empty() && constant_time_eq(&p.state, state))
}

pub(crate) type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Where the issuer sends the portal's users back.
const CALLBACK_PATH: &str = "/portal/sso/callback";

/// The OIDC client of `config`'s issuer, its redirect URL `callback` (a
/// path on the portal's URL).
pub(crate) async fn oidc_client(
    portal: &Portal,
    config: &SsoConfigured,
    refresh_keys: bool,
    callback: &str,
) -> Result<Client, PortalError> {
    let metadata = portal.sso.metadata(&config.issuer, refresh_keys).await?;
    // Under whichever accepted secret sealed it: while the secret rotates,
    // a configuration is sealed under the old one until `ledger keys
    // retire-secret` seals it again.
    let secret = portal.ledger.keys.secrets().find_map(|secret| config.client_secret(secret)).ok_or_else(|| {
        tracing::error!(organization = %config.organization_id, "SSO client secret does not open with this server's secret");
        PortalError::Internal
    })?;
    let redirect = format!("{}{callback}", portal.settings.portal_url.trim_end_matches('/'));
    let redirect = RedirectUrl::new(redirect).map_err(|_| PortalError::Internal)?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(redirect))
}

/// The issuer's answer (the portal's and the console's callbacks).
#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) state: String,
}

impl CallbackQuery {
    /// Whether it brings a code, and neither it nor the state is overlong.
    pub(crate) fn usable(&self) -> bool {
        !self.code.is_empty()
            && self.code.len() <= CALLBACK_PARAM_CHARS_MAX
            && self.state.len() <= CALLBACK_PARAM_CHARS_MAX
    }
}

/// `GET /portal/sso/callback`: checks the state against the pending
/// sign-in, exchanges the code (with the PKCE verifier), checks the ID
/// token (signature, issuer, audience, expiry, nonce), then signs in.
pub async fn callback(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    client: Option<Extension<crate::ClientIp>>,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, PortalError> {
    const EXPIRED: &str = "This sign-in has expired or was not started here. Start again.";
    let Some(pending) = pending(&portal, &headers, PENDING_COOKIE, &query.state) else {
        return page(&portal, StatusCode::FORBIDDEN, Some(EXPIRED));
    };
    if !query.usable() {
        return page(&portal, StatusCode::FORBIDDEN, Some("The identity provider did not sign you in."));
    }
    let Some(config) = usecases::sso::current(&portal.ledger, pending.organization_id).await? else {
        return page(&portal, StatusCode::FORBIDDEN, Some(NO_SSO));
    };
    let Some(identity) = identity(&portal, &config, &pending, query.code, CALLBACK_PATH).await? else {
        return page(&portal, StatusCode::FORBIDDEN, Some("The identity provider's answer did not check out."));
    };
    let address = session::address_of(client.map(|ip| ip.0));
    let session_id = uuid::Uuid::new_v4();
    let signed =
        usecases::sso::sign_in(&portal.ledger, pending.organization_id, &identity, session_id, &address).await?;
    let user = match signed {
        Ok(user) => user,
        Err(refusal) => {
            tracing::info!(organization = %pending.organization_id, ?refusal, "SSO sign-in refused");
            return page(&portal, StatusCode::FORBIDDEN, Some(refusal_text(refusal)));
        }
    };
    let token = session::start(&portal, user, session_id, &address, &session::user_agent(&headers)).await?;
    tracing::info!(organization = %user.organization_id, user = %user.user_id, session = %session_id, "portal SSO sign-in");
    let mut response = Redirect::to(&format!("/portal/orgs/{}", user.organization_id)).into_response();
    for cookie in [
        session::set_cookie(&portal, SESSION_COOKIE, Some(&token)),
        session::set_cookie(&portal, PENDING_COOKIE, None),
        session::set_cookie(&portal, CSRF_COOKIE, None),
    ] {
        response.headers_mut().append(header::SET_COOKIE, cookie.parse().map_err(|_| PortalError::Internal)?);
    }
    Ok(response)
}

fn refusal_text(refusal: SsoRefusal) -> &'static str {
    match refusal {
        SsoRefusal::NotConfigured => NO_SSO,
        SsoRefusal::EmailNotVerified => {
            "Your identity provider did not confirm your e-mail address, which a first sign-in needs."
        }
        SsoRefusal::SeatLimitReached => {
            "Your organization has no free seat for a new user. Ask your organization's admin to free one or add seats."
        }
        SsoRefusal::Inactive => "This user cannot sign in.",
    }
}

/// The identity the ID token vouches for, or `None` when the exchange or
/// the token does not check out (logged). An unknown key id fetches the
/// issuer's keys again, once.
pub(crate) async fn identity(
    portal: &Portal,
    config: &SsoConfigured,
    pending: &Pending,
    code: String,
    callback: &str,
) -> Result<Option<Identity>, PortalError> {
    let client = oidc_client(portal, config, false, callback).await?;
    let exchange = client.exchange_code(AuthorizationCode::new(code)).map_err(|_| PortalError::Unavailable)?;
    let answer = exchange.set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
    let answer = match answer.request_async(&portal.sso.http).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(issuer = %config.issuer, %error, "SSO code exchange failed");
            return Ok(None);
        }
    };
    let Some(id_token) = answer.id_token() else { return Ok(None) };
    let nonce = Nonce::new(pending.nonce.clone());
    let claims: CoreIdTokenClaims = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Ok(claims) => claims.clone(),
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey,
        )) => {
            let client = oidc_client(portal, config, true, callback).await?;
            match id_token.claims(&client.id_token_verifier(), &nonce) {
                Ok(claims) => claims.clone(),
                Err(error) => {
                    tracing::warn!(issuer = %config.issuer, %error, "SSO ID token refused after a key refresh");
                    return Ok(None);
                }
            }
        }
        Err(error) => {
            tracing::warn!(issuer = %config.issuer, %error, "SSO ID token refused");
            return Ok(None);
        }
    };
    Ok(Some(Identity {
        issuer: claims.issuer().as_str().trim_end_matches('/').to_owned(),
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: claims.email_verified().unwrap_or(false),
    }))
}

/// SSO's routes, merged into the portal's.
pub fn routes() -> axum::Router<Arc<Portal>> {
    use axum::routing::get;
    axum::Router::new().route("/sso", get(form).post(start)).route("/sso/callback", get(callback))
}

impl Portal {
    /// Whether an `http` issuer on a loopback address may be configured.
    pub fn sso_allows_loopback_issuer(&self) -> bool {
        self.settings.sso_allow_loopback_issuer
    }
}

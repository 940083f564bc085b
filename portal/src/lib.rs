//! The customer portal (issue 14): server-rendered pages for an
//! organization's users, signed in by magic link, served by `ledger serve`
//! under `/portal`.
//!
//! Templates are askama's (checked at compile time, escaping by default);
//! htmx 2 is vendored as a static file; no page has an inline script or
//! style, so the Content-Security-Policy allows only the portal's own
//! files. Every page works as plain HTML forms.
//!
//! **Invariant:** the portal reads only through the use cases' queries
//! (the read models) and changes only through the use cases' commands;
//! its own state is the session table (`store::sessions`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use domain::LicenseId;
use usecases::Ledger;
use usecases::limits::KeyedLimiter;
use usecases::notify::Mailer;
use usecases::notify::mail::Mail;

mod airgap;
mod billing;
pub mod branding;
pub mod console;
mod error;
mod headers;
mod invoices;
mod pages;
mod plan;
mod session;
mod signin;
pub mod sso;
mod sso_settings;

pub use error::PortalError;
pub use session::{SESSION_ABSOLUTE_MICROS, SESSION_IDLE_MICROS};

/// Sign-in e-mails waiting for the sender, at most; beyond, a request is
/// answered the same but its e-mail is dropped (and logged).
pub const MAIL_QUEUE_MAX: usize = 256;
/// Sign-in e-mails one address may be sent an hour.
pub const SIGN_IN_MAILS_PER_ADDRESS_PER_HOUR: u32 = 5;
/// Sign-in requests one client address may make an hour.
pub const SIGN_IN_REQUESTS_PER_CLIENT_PER_HOUR: u32 = 30;

/// How the portal is reached and what it may send.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public URL the links in e-mails begin with (no trailing `/portal`).
    pub portal_url: String,
    /// Cookies with `Secure`; off only for local plain http.
    pub secure_cookies: bool,
    /// Deployment releases one license may make an hour (0: no limit).
    pub releases_per_license_per_hour: u32,
    /// Enterprise SSO may use an `http` issuer on a loopback address (tests only).
    pub sso_allow_loopback_issuer: bool,
    /// The vendor's own OIDC provider for staff sign-in to the console.
    pub console_oidc: Option<ConsoleOidc>,
    /// The usage reports' settings, which the offline sites' license files
    /// and imports follow as the API's do (`usecases::airgap`).
    pub usage: usecases::usage::UsageSettings,
}

/// The vendor's OIDC provider (`LEDGER_CONSOLE_OIDC_ISSUER`, `_CLIENT_ID`,
/// `_CLIENT_SECRET`). No `Debug`: it holds the client secret.
#[derive(Clone)]
pub struct ConsoleOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ConsoleOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOidc").field("issuer", &self.issuer).field("client_id", &self.client_id).finish()
    }
}

/// The client's address as the server resolved it (behind trusted
/// proxies, the forwarded one); the API's middleware puts it here.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Everything the portal's handlers use.
pub struct Portal {
    pub ledger: Ledger,
    pub settings: Settings,
    /// The log's Merkle tree, for the proofs the pages hand out.
    pub log_tree: Arc<usecases::log::LogTree>,
    sessions: store::sessions::Sessions,
    mail: Option<tokio::sync::mpsc::Sender<Outgoing>>,
    mails_per_address: KeyedLimiter<String>,
    requests_per_client: KeyedLimiter<IpAddr>,
    releases: KeyedLimiter<LicenseId>,
    sso: sso::Sso,
    /// Stripe, for the billing details' customer-portal sessions.
    stripe: Arc<usecases::stripe::Stripe>,
    /// The console's OIDC provider, as an SSO configuration of the
    /// vendor's organization (its client secret sealed).
    console_oidc: Option<domain::sso::SsoConfigured>,
    /// The console's and the API's resent e-mails, limited per user.
    resender: usecases::resend::Resender,
}

impl Portal {
    /// Opens the session table and starts the sign-in e-mail sender (when
    /// there is a mailer).
    pub async fn open(
        ledger: Ledger,
        log_tree: Arc<usecases::log::LogTree>,
        settings: Settings,
        mailer: Option<Mailer>,
        stripe: Arc<usecases::stripe::Stripe>,
    ) -> anyhow::Result<Arc<Self>> {
        let sessions = ledger.log.sessions().await?;
        let mail = mailer.map(|mailer| {
            let (queue, waiting) = tokio::sync::mpsc::channel(MAIL_QUEUE_MAX);
            tokio::spawn(send_mails(mailer, waiting));
            queue
        });
        let sso = sso::Sso::new(settings.sso_allow_loopback_issuer)?;
        let console_oidc =
            settings.console_oidc.as_ref().map(|oidc| console::oidc::configured(&ledger, oidc)).transpose()?;
        Ok(Arc::new(Self {
            resender: usecases::resend::Resender::default(),
            console_oidc,
            sso,
            stripe,
            releases: KeyedLimiter::per_hour("portal_releases_per_license", settings.releases_per_license_per_hour),
            ledger,
            settings,
            log_tree,
            sessions,
            mail,
            mails_per_address: KeyedLimiter::per_hour("portal_sign_in_mails", SIGN_IN_MAILS_PER_ADDRESS_PER_HOUR),
            requests_per_client: KeyedLimiter::per_hour(
                "portal_sign_in_requests",
                SIGN_IN_REQUESTS_PER_CLIENT_PER_HOUR,
            ),
        }))
    }

    /// Drops idle entries of the portal's rate limiters.
    pub fn sweep(&self) {
        self.mails_per_address.sweep();
        self.requests_per_client.sweep();
        self.releases.sweep();
        self.resender.sweep();
    }

    /// Deletes the sessions past their absolute or idle expiry (each
    /// request checks both anyway; this keeps the table small).
    pub async fn sweep_sessions(&self) {
        let now = self.ledger.now();
        let idle_since = domain::Timestamp::from_micros(now.as_micros().saturating_sub(SESSION_IDLE_MICROS));
        if let Err(error) = self.sessions.delete_expired(now, idle_since).await {
            tracing::warn!(%error, "expired portal sessions not deleted");
        }
    }

    /// Whether sign-in e-mails can be sent.
    pub fn mails(&self) -> bool {
        self.mail.is_some()
    }

    /// Sends a customer's user their invitation or a sign-in e-mail again
    /// (`usecases::resend`), through this queue: refused, changing
    /// nothing, when the caller may not or no e-mail is configured.
    pub async fn resend(
        &self,
        caller: &usecases::Caller,
        metadata: &domain::Metadata,
        target: (domain::OrganizationId, domain::UserId),
        kind: usecases::resend::ResendKind,
    ) -> Result<u64, usecases::Error> {
        if !usecases::resend::may_resend(caller) {
            return Err(usecases::Error::Forbidden);
        }
        if !self.mails() {
            return Err(usecases::Error::conflict("mail_not_configured", "e-mail is not configured on this server"));
        }
        let resent =
            self.resender.resend(&self.ledger, caller, metadata, &self.settings.portal_url, target, kind).await?;
        self.queue_mail(&resent.to, resent.mail, resent.sender_name);
        Ok(resent.sequence)
    }

    fn queue_mail(&self, to: &str, mail: Mail, sender_name: Option<String>) {
        let Some(queue) = &self.mail else { return };
        if queue.try_send(Outgoing { to: to.to_owned(), mail, sender_name }).is_err() {
            tracing::warn!("portal sign-in e-mail queue full or closed; an e-mail was dropped");
        }
    }
}

/// A sign-in or invitation e-mail waiting for the sender.
struct Outgoing {
    to: String,
    mail: Mail,
    /// A white-labelled organization's display name, as the sender's name.
    sender_name: Option<String>,
}

/// Sends the queued sign-in e-mails, one at a time, for good.
async fn send_mails(mailer: Mailer, mut waiting: tokio::sync::mpsc::Receiver<Outgoing>) {
    while let Some(Outgoing { to, mail, sender_name }) = waiting.recv().await {
        // The address is the user's own; it is not logged, nor the link.
        if let Err(error) = mailer.send_mail(&to, mail, sender_name).await {
            tracing::warn!(server = %mailer.server, %error, "portal sign-in e-mail not sent");
        }
    }
}

/// The portal's routes, to nest under `/portal`.
pub fn router<S: Clone + Send + Sync + 'static>(portal: Arc<Portal>) -> Router<S> {
    use pages as p;
    Router::new()
        .route("/", get(p::home))
        .route("/signin", get(signin::form).post(signin::request))
        .route("/link", get(signin::link_page).post(signin::use_link))
        .route("/signout", post(signin::sign_out))
        .merge(sso::routes())
        .route("/orgs/{org}", get(p::overview))
        .route("/orgs/{org}/usage", get(p::usage))
        .route("/orgs/{org}/usage/meters", get(p::usage_meters))
        .route("/orgs/{org}/licenses", get(p::licenses))
        .route("/orgs/{org}/licenses/{license}/release", post(p::release))
        .route("/orgs/{org}/licenses/{license}/reset-key", post(p::reset_key))
        .route("/orgs/{org}/users", get(p::users).post(p::invite))
        .route("/orgs/{org}/users/{user}/deactivate", post(p::deactivate))
        .route("/orgs/{org}/users/{user}/role", post(p::change_role))
        .route("/orgs/{org}/sessions", get(p::sessions))
        .route("/orgs/{org}/sessions/{session}/revoke", post(p::revoke))
        .route("/orgs/{org}/audit", get(p::audit))
        .route("/orgs/{org}/offline-sites", get(airgap::form))
        .route(
            "/orgs/{org}/offline-sites/activate",
            post(airgap::activate).layer(axum::extract::DefaultBodyLimit::max(airgap::UPLOAD_FORM_BYTES_MAX)),
        )
        .route(
            "/orgs/{org}/offline-sites/import",
            post(airgap::import).layer(axum::extract::DefaultBodyLimit::max(airgap::UPLOAD_FORM_BYTES_MAX)),
        )
        .route(
            "/orgs/{org}/branding",
            get(branding::form)
                .post(branding::save)
                .layer(axum::extract::DefaultBodyLimit::max(branding::BRANDING_FORM_BYTES_MAX)),
        )
        .route("/orgs/{org}/branding/remove", post(branding::remove))
        .route("/orgs/{org}/billing", post(billing::open))
        .route("/orgs/{org}/sso", get(sso_settings::page).post(sso_settings::save))
        .route("/orgs/{org}/sso/remove", post(sso_settings::remove))
        .route("/orgs/{org}/plan", get(plan::plan))
        .route("/orgs/{org}/plan/preview", post(plan::preview))
        .route("/orgs/{org}/plan/confirm", post(plan::confirm))
        .route("/orgs/{org}/invoices", get(invoices::list))
        .route("/orgs/{org}/invoices/{invoice}", get(invoices::detail))
        .route("/orgs/{org}/invoices/{invoice}/print", get(invoices::print))
        .route("/orgs/{org}/invoices/{invoice}/csv", get(invoices::csv))
        .route("/orgs/{org}/invoices/{invoice}/json", get(invoices::json))
        .route("/orgs/{org}/invoices/{invoice}/proof", get(invoices::prove))
        .route("/orgs/{org}/proofs/{sequence}", get(invoices::proof))
        .route("/static/htmx.min.js", get(headers::htmx))
        .route("/static/portal.css", get(headers::css))
        .route("/static/brand/{file}", get(branding::stylesheet))
        .route("/static/brand/{org}/{file}", get(branding::logo))
        .fallback(|| async { PortalError::NotFound })
        .layer(axum::middleware::from_fn(headers::security))
        .with_state(portal)
}
